"""Render a router's files-overlay tree (what ``make image FILES=`` bakes in).

Layout of the rendered tree (see HACKING.md "Image layout of our files")::

    usr/share/owrt-vpn/files/        the VPN file set, mirroring target paths
        etc/swanctl/...  | etc/ipsec.conf, etc/ipsec.secrets, etc/ipsec.d/...
        etc/strongswan.d/owrt-vpn.conf
        usr/share/nftables.d/chain-pre/{input,forward,srcnat,dstnat}/owrt-vpn.nft  (fw4)
        usr/share/owrt-vpn/firewall3.sh                                     (fw3)
        _meta/                       the installer's inputs (not a target path):
            manifest                 "<mode> <path>" of every file above
            connections.json         the strongSwan connections (name, whose)
            style                    swanctl | ipsec
            uci/<package>.batch      `uci batch` input (firewall, dhcp, network)
            authorized_keys, root_password_hash   (optional management access)
    usr/share/owrt-vpn/install       the persistent installer (install [--boot] SRC_DIR)
    etc/uci-defaults/90-owrt-vpn     first boot after a flash: install --boot <files>
    lib/upgrade/keep.d/owrt-vpn      keeps /etc/owrt-vpn (what the installer put in place)

The VPN files live outside strongSwan's conffiles so that a keep-settings
sysupgrade cannot restore stale copies over them; the installer (also used by
``push`` with an uploaded set) puts them in place. Who may connect follows
the site file exactly: every certificate device gets connections pinned to
its own identities (e-mail style identity, subject DN, and the shared iOS
identity when it opted in), so a user allowed on other routers only, or a
``pubkey+eap-mschapv2`` user trying to skip the EAP round, matches nothing.
The templates in ``files-overlay/`` are plain config files; every value is
prepared and escaped here, with the quoting rules of :mod:`owrt_vpn.render.swan_syntax`.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError
from owrt_vpn.fsutil import atomic_dir
from owrt_vpn.render import packages, proposals, uci
from owrt_vpn.render.connections import ca_dn, conn_name, connections, local_ts, uci_batches
from owrt_vpn.render.swan_syntax import (
    legacy_quote,
    legacy_secret,
    list_value,
    swan_secret,
    swan_str,
)
from owrt_vpn.repro import source_date_epoch
from owrt_vpn.resources import templates_dir
from owrt_vpn.site.model import (
    EAP_PASSWORD_AUTH,
    Router,
    Site,
)

FILES = "usr/share/owrt-vpn/files"
INSTALLER = "usr/share/owrt-vpn/install"
UCI_DEFAULTS = "etc/uci-defaults/90-owrt-vpn"
KEEP = "lib/upgrade/keep.d/owrt-vpn"
BUILD_INFO = "usr/share/owrt-vpn/build-info.json"
META = "_meta"
CONNECTIONS = "connections.json"  # in _meta: the connection names (metadata for push/status)
CA_FILE = "owrt-vpn-ca.crt"
CRL_FILE = "owrt-vpn.crl"

SECRET_MODE = 0o600
SCRIPT_MODE = 0o755
FILE_MODE = 0o644
DIR_MODE = 0o755


class PkiSource(Protocol):
    """What rendering reads from the PKI (:class:`owrt_vpn.pki.authority.Pki` provides it)."""

    def ca_cert_pem(self) -> bytes: ...
    def server_cert_pem(self, router: str) -> bytes: ...
    def server_key_pem(self, router: str) -> bytes: ...
    def eap_status(self, user: str) -> str: ...
    def eap_password(self, user: str) -> str: ...
    def crl_pem(self) -> bytes | None: ...


@dataclass(frozen=True)
class Connection:
    """One strongSwan connection of the router: its name and whose it is."""

    name: str
    comment: str  # the device(s) and auth method, e.g. "alice/phone (pubkey), identity"


@dataclass(frozen=True)
class Rendered:
    """A router's overlay as data (:func:`render_files`); :func:`write` puts it on disk.

    ``files`` maps every path of the tree to (bytes, mode); ``connections``
    are the strongSwan connections its config defines (also recorded in the
    file set as ``_meta/connections.json``), in config order.
    """

    files: dict[str, tuple[bytes, int]]
    config_style: str
    firewall: str
    connections: tuple[Connection, ...]
    warnings: tuple[str, ...] = ()

    @property
    def file_set(self) -> dict[str, tuple[bytes, int]]:
        """The VPN file set (what ``push`` uploads), by path inside the set."""
        prefix = FILES + "/"
        return {r[len(prefix) :]: v for r, v in self.files.items() if r.startswith(prefix)}

    @property
    def manifest(self) -> dict[str, int]:
        """Target path -> mode of every file the installer puts in place."""
        return {r: m for r, (_, m) in self.file_set.items() if not r.startswith(META + "/")}

    @property
    def connection_names(self) -> tuple[str, ...]:
        """The connection names, in config order."""
        return tuple(c.name for c in self.connections)


@dataclass
class RenderResult:
    """A rendered overlay tree."""

    root: Path
    files: list[str]
    config_style: str
    firewall: str
    warnings: list[str] = field(default_factory=list)
    connections: tuple[Connection, ...] = ()

    @property
    def file_set(self) -> Path:
        """The VPN file set (``usr/share/owrt-vpn/files``): what ``push`` uploads."""
        return vpn_file_set(self.root)

    def add_file(self, rel: str, data: bytes | str, mode: int = FILE_MODE) -> None:
        """Add (or replace) ``rel`` in the tree, e.g. ``BUILD_INFO`` before ``make image``."""
        path = _safe_join(self.root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        _normalise(self.root, source_date_epoch())
        os.chmod(path, mode)
        os.utime(path, (source_date_epoch(), source_date_epoch()))
        self.files = sorted(set(self.files) | {rel})


def vpn_file_set(root: Path) -> Path:
    """The VPN file set inside a rendered tree (what ``install SRC_DIR`` takes)."""
    return root / FILES


# --------------------------------------------------------------------------
# rendering


def render(
    site: Site,
    router: Router,
    pki: PkiSource,
    out_dir: Path,
    config_style: str | None = None,
) -> RenderResult:
    """Render ``router``'s overlay into ``out_dir`` (replaced atomically); see the module docstring.

    The PKI must already hold what the router needs
    (``Pki.ensure_router(site, router)``); nothing is issued here.
    """
    return write(render_files(site, router, pki, config_style), out_dir)


def write(rendered: Rendered, out_dir: Path) -> RenderResult:
    """The one writer: put a rendered overlay into ``out_dir`` (replaced atomically)."""
    epoch = source_date_epoch()
    with atomic_dir(out_dir) as tmp:
        for rel, (data, mode) in rendered.files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chmod(path, mode)
        _normalise(tmp, epoch)
    return RenderResult(
        out_dir,
        sorted(rendered.files),
        rendered.config_style,
        rendered.firewall,
        list(rendered.warnings),
        rendered.connections,
    )


def render_files(
    site: Site, router: Router, pki: PkiSource, config_style: str | None = None
) -> Rendered:
    """``router``'s overlay as data, with its metadata (pure: nothing is written)."""
    style = packages.config_style(router, config_style)
    firewall = profiles.release_info(router.release).firewall
    warnings: list[str] = []
    files: dict[str, tuple[bytes, int]] = {}
    ctx = _context(site, router, pki, style, firewall, warnings)

    def put(rel: str, data: bytes | str, mode: int = FILE_MODE) -> None:
        files[rel] = (data.encode() if isinstance(data, str) else data, mode)

    fset: dict[str, tuple[bytes, int]] = {}

    def put_set(rel: str, data: bytes | str, mode: int = FILE_MODE) -> None:
        fset[rel] = (data.encode() if isinstance(data, str) else data, mode)

    def from_template(rel: str, mode: int = FILE_MODE) -> None:
        put_set(rel, render_template(f"{FILES}/{rel}", ctx), mode)

    key = pki.server_key_pem(router.name)
    crl = pki.crl_pem()
    # A router no VPN user may use gets no strongSwan files and no firewall
    # openings: the installer removes what an earlier set installed.
    if site.router_users(router):
        if style == "swanctl":
            from_template("etc/swanctl/conf.d/owrt-vpn.conf")
            # The EAP passwords sit in their own file, readable by root only.
            from_template("etc/swanctl/conf.d/owrt-vpn-secrets.conf", SECRET_MODE)
            put_set(f"etc/swanctl/x509ca/{CA_FILE}", pki.ca_cert_pem())
            put_set(f"etc/swanctl/x509/{router.name}.crt", pki.server_cert_pem(router.name))
            put_set(f"etc/swanctl/private/{router.name}.key", key, SECRET_MODE)
            if crl is not None:
                put_set(f"etc/swanctl/x509crl/{CRL_FILE}", crl)
        else:
            from_template("etc/ipsec.conf")
            from_template("etc/ipsec.secrets", SECRET_MODE)
            put_set(f"etc/ipsec.d/cacerts/{CA_FILE}", pki.ca_cert_pem())
            put_set(f"etc/ipsec.d/certs/{router.name}.crt", pki.server_cert_pem(router.name))
            put_set(f"etc/ipsec.d/private/{router.name}.key", key, SECRET_MODE)
            if crl is not None:
                put_set(f"etc/ipsec.d/crls/{CRL_FILE}", crl)
        from_template("etc/strongswan.d/owrt-vpn.conf")
        if firewall == "fw4":
            for chain in ("input", "forward", "srcnat", "dstnat"):
                from_template(f"usr/share/nftables.d/chain-pre/{chain}/owrt-vpn.nft")
        else:
            from_template("usr/share/owrt-vpn/firewall3.sh", SCRIPT_MODE)

    manifest = "".join(f"{mode:04o} {rel}\n" for rel, (_, mode) in sorted(fset.items()))
    for rel, (data, mode) in fset.items():
        put(f"{FILES}/{rel}", data, mode)
    put(f"{FILES}/{META}/manifest", manifest)
    put(f"{FILES}/{META}/style", style + "\n")
    conns = tuple(Connection(c.name, c.comment) for c in ctx["conns"]) if fset else ()
    put(f"{FILES}/{META}/{CONNECTIONS}", connections_json(conns))
    for package, cmds in uci_batches(site, router, firewall).items():
        put(f"{FILES}/{META}/uci/{package}.batch", uci.render_batch(cmds))
    mgmt = router.management
    if mgmt.authorized_keys:
        put(f"{FILES}/{META}/authorized_keys", "".join(k + "\n" for k in mgmt.authorized_keys))
    if mgmt.root_password_hash:
        put(f"{FILES}/{META}/root_password_hash", mgmt.root_password_hash + "\n", SECRET_MODE)
    put(INSTALLER, render_template(INSTALLER, ctx), SCRIPT_MODE)
    put(UCI_DEFAULTS, render_template(UCI_DEFAULTS, ctx), SCRIPT_MODE)
    put(KEEP, render_template(KEEP, ctx))
    _check_no_foreign_keys(files, key)
    return Rendered(files, style, firewall, conns, tuple(warnings))


def connections_json(conns: tuple[Connection, ...]) -> str:
    """``_meta/connections.json``: the set's connections (name, whose), canonical JSON."""
    import json

    data = [{"name": c.name, "comment": c.comment} for c in conns]
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def parse_connections_json(text: str) -> tuple[str, ...]:
    """Connection names from ``_meta/connections.json`` (empty when unreadable)."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    return tuple(str(c["name"]) for c in data if isinstance(c, dict) and "name" in c)


def render_template(rel: str, ctx: dict[str, Any]) -> str:
    """Render ``files-overlay/<rel>.j2`` (templates hold text; ``ctx`` holds escaped values)."""
    import jinja2

    env = _jinja_env(jinja2)
    text: str = env.get_template(f"{rel}.j2").render(ctx)
    return text


def _jinja_env(jinja2: Any) -> Any:
    # autoescape off on purpose: these are config files, not HTML; every
    # value is quoted for its own syntax before it reaches the template.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def _context(
    site: Site, router: Router, pki: PkiSource, style: str, firewall: str, warnings: list[str]
) -> dict[str, Any]:
    conns = connections(site, router, warnings)
    secrets = []
    taken: set[str] = set()
    for u in site.router_users(router):
        if u.auth not in EAP_PASSWORD_AUTH:
            continue
        status = pki.eap_status(u.name)
        if status != "active":
            warnings.append(
                f"router {router.name}: EAP password of {u.name} is {status}: not installed"
            )
            continue
        password = pki.eap_password(u.name)
        section, value = swan_secret(password)
        secrets.append(
            {
                "section": conn_name(taken, section, u.name),
                "id": swan_str(u.name),
                "secret": value,
                "legacy": f"{list_value([u.name])} : EAP {legacy_secret(password)}",
            }
        )
        if not password.isascii() and style == "ipsec":
            warnings.append(
                f"router {router.name}: the EAP password of {u.name} is not ASCII; strongSwan's "
                "ipsec.secrets NT hash covers only ASCII correctly (use the swanctl style "
                "or an ASCII password)"
            )
    v4_dns = [d for d in router.dns if ipaddress.ip_address(d).version == 4]
    v6_dns = [d for d in router.dns if ipaddress.ip_address(d).version == 6]
    # Attributes go with the pool an address came from: IPv6 DNS servers
    # with the IPv6 pool when there is one.
    pools = [
        ("owrt-vpn-v4", router.pool, v4_dns if router.pool6 else list(router.dns), router.nbns)
    ]
    if router.pool6:
        pools.append(("owrt-vpn-v6", router.pool6, v6_dns, ()))
    ike = list(proposals.server_ike(site.settings.crypto))
    esp = list(packages.esp_proposals(site, router))
    ts = local_ts(router)
    source_ips = [router.pool] + ([router.pool6] if router.pool6 else [])
    return {
        "site": site.name,
        "router": router.name,
        "style": style,
        "firewall": firewall,
        "tunnel": router.tunnel,
        "router_access": packages.vpn_router_access(site, router),
        "server_id": swan_str(router.server_id),
        "server_id_legacy": legacy_quote(router.server_id),
        "server_cert": f"{router.name}.crt",
        "server_key": f"{router.name}.key",
        "server_key_token": "RSA" if site.settings.server_key.startswith("rsa") else "ECDSA",
        "ca_file": CA_FILE,
        "ca_dn_legacy": _maybe(ca_dn(pki.ca_cert_pem()), legacy_quote),
        "conns": conns,
        "secrets": secrets,
        "pools": [
            {
                "name": name,
                "addrs": list_value([addrs]),
                "dns": list_value(list(dns)) if dns else None,
                "nbns": list_value(list(nbns)) if nbns else None,
            }
            for name, addrs, dns, nbns in pools
        ],
        "pool_names": list_value([p[0] for p in pools]),
        "attr_dns": list_value(list(router.dns)) if router.dns else None,
        "attr_nbns": list_value(list(router.nbns)) if router.nbns else None,
        "local_ts": list_value(ts),
        "ike_proposals": list_value(ike),
        "esp_proposals": list_value(esp),
        # ipsec.conf lists: comma-separated without blanks
        "local_ts_legacy": list_value(ts).replace(" ", ""),
        "source_ips_legacy": list_value(source_ips).replace(" ", ""),
        "ike_proposals_legacy": list_value(ike).replace(" ", ""),
        "esp_proposals_legacy": list_value(esp).replace(" ", ""),
        "pool4": router.pool,
        "pool6": router.pool6,
    }


def _maybe(value: str | None, fn: Callable[[str], str]) -> str | None:
    return None if value is None else fn(value)


def _check_no_foreign_keys(files: dict[str, tuple[bytes, int]], server_key: bytes) -> None:
    """Refuse to write a tree holding any private key other than the router's own."""
    for rel, (data, _) in files.items():
        if b"PRIVATE KEY-----" in data and data != server_key:
            raise ConfigError(
                f"refusing to write {rel}: it holds a private key that is not the router's"
            )


# --------------------------------------------------------------------------
# deterministic tree and tarball


def _safe_join(root: Path, rel: str) -> Path:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise ValueError(f"not a relative path inside the tree: {rel!r}")
    return root.joinpath(*parts)


def _normalise(root: Path, epoch: int) -> None:
    """Directories 0755 and every mtime = ``epoch`` (file modes are set by the writer)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
        os.chmod(dirpath, DIR_MODE)
        os.utime(dirpath, (epoch, epoch))


def tree_entries(root: Path) -> list[tuple[str, int, bool]]:
    """``(relative path, mode, is_dir)`` of everything under ``root``, sorted."""
    out: list[tuple[str, int, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in dirnames:
            p = base / name
            out.append((p.relative_to(root).as_posix(), p.stat().st_mode & 0o7777, True))
        for name in filenames:
            p = base / name
            out.append((p.relative_to(root).as_posix(), p.stat().st_mode & 0o7777, False))
    return sorted(out)


def write_tarball(root: Path, tar_path: Path, epoch: int | None = None) -> str:
    """Write ``root`` as a deterministic tar; return its sha256.

    Sorted entries, uid/gid 0, the tree's modes (directories 0755), every
    mtime ``epoch`` (default: :func:`owrt_vpn.repro.source_date_epoch`).
    """
    from owrt_vpn.fsutil import write_atomic

    when = source_date_epoch() if epoch is None else epoch
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, mode, is_dir in tree_entries(root):
            info = tarfile.TarInfo(rel + ("/" if is_dir else ""))
            info.mode = DIR_MODE if is_dir else mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = when
            if is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = (root / rel).read_bytes()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    # It holds the router's private key: owner only.
    write_atomic(tar_path, data, 0o600)
    return hashlib.sha256(data).hexdigest()
