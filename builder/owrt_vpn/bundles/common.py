"""Shared pieces of the client bundles: the per-site and per-device context, files, zip, README.

Everything a platform module needs is computed here once per site
(:class:`SiteContext`: the CA in its encodings, the proposal per platform,
the router profiles) and once per device (:class:`DeviceContext`), so that
the per-device work stays small: no certificate parsing, no template
compiling, no proposal matching per device.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from owrt_vpn.errors import ConfigError, Problem
from owrt_vpn.render import proposals
from owrt_vpn.site.model import (
    CERT_AUTH,
    EAP_PASSWORD_AUTH,
    Device,
    Router,
    Site,
    User,
    device_identity,
    eap_identity,
)

# uuid5 namespace of every UUID we derive: the same site, user, device and
# purpose give the same UUID on every run (Apple and the strongSwan app
# replace a profile with the same UUID instead of adding a second one).
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/owrt-vpn/owrt-vpn/bundles")

PUBLIC_MODE = 0o644
SECRET_MODE = 0o600
TEMPLATES = Path(__file__).resolve().parent / "templates"


def stable_uuid(*parts: str) -> str:
    """A UUID derived from ``parts`` (upper case, as Apple's tools write them)."""
    return str(uuid.uuid5(UUID_NAMESPACE, "\x1f".join(parts))).upper()


@dataclass(frozen=True)
class BundleFile:
    """One output file of a device bundle.

    ``secret`` files are written 0600 (keys, PKCS#12, anything embedding
    them). ``beside`` files carry a password that unlocks something else in
    the bundle (the certificate ``.mobileconfig``): they are written next to
    the device folder, never into it or its zip.
    """

    name: str
    data: bytes
    secret: bool = False
    beside: bool = False

    @property
    def mode(self) -> int:
        """The file mode on disk and in the zip."""
        return SECRET_MODE if self.secret else PUBLIC_MODE


@dataclass(frozen=True)
class CaInfo:
    """The CA certificate in every encoding the bundles use (computed once per site)."""

    pem: bytes
    der: bytes
    common_name: str

    @property
    def b64(self) -> str:
        """Base64 of the DER form (``.sswan`` remote.cert, PowerShell)."""
        return base64.b64encode(self.der).decode()


@dataclass(frozen=True)
class RouterProfile:
    """One VPN profile of a device: the values for one router the user may use."""

    router: Router
    display: str  # "home VPN (gw)": what the user sees in the OS
    conn: str  # "home-gw": identifiers (swanctl connection, file names)
    server: str  # the address the client dials
    remote_id: str  # the server identity, = the SAN of the server certificate
    proposal: proposals.ClientProposal
    full_tunnel: bool
    ipv6: bool  # the router hands out IPv6 addresses (pool6)
    remote_ts: tuple[str, ...]  # what the client asks to route through the tunnel
    dns: tuple[str, ...]

    @property
    def block_ipv6(self) -> bool:
        """Full tunnel without an IPv6 pool: IPv6 would leak beside the tunnel."""
        return self.full_tunnel and not self.ipv6


@dataclass(frozen=True)
class Credentials:
    """A certificate device's own key material (never another user's)."""

    cert_pem: bytes
    key_pem: bytes
    key_type: str  # ecdsa-p256 | rsa3072 | ...
    p12: bytes
    p12_password: str


@dataclass(frozen=True)
class DeviceContext:
    """Everything a platform module needs to render one device's bundle."""

    site: Site
    user: User
    device: Device
    identity: str  # the IKE identity the client presents (a SAN of its certificate)
    eap_id: str | None  # EAP-MSCHAPv2 user name
    creds: Credentials | None
    ca: CaInfo
    profiles: tuple[RouterProfile, ...]

    @property
    def auth(self) -> str:
        """The user's auth method."""
        return self.user.auth

    @property
    def platform(self) -> str:
        """The device's platform."""
        return self.device.platform

    @property
    def uses_cert(self) -> bool:
        """True when the device authenticates with its own certificate."""
        return self.user.auth in CERT_AUTH

    @property
    def uses_eap_password(self) -> bool:
        """True when the user also types an EAP-MSCHAPv2 password."""
        return self.user.auth in EAP_PASSWORD_AUTH

    @property
    def stem(self) -> str:
        """The file name stem of the device's files."""
        return self.device.name

    def uuid(self, *purpose: str) -> str:
        """A stable UUID for one payload/profile of this device."""
        return stable_uuid(self.site.name, self.user.name, self.device.name, *purpose)

    def profile_file(self, profile: RouterProfile, suffix: str) -> str:
        """``<device><suffix>`` for one router, ``<device>-<router><suffix>`` for several."""
        if len(self.profiles) == 1:
            return f"{self.stem}{suffix}"
        return f"{self.stem}-{profile.router.name}{suffix}"

    def template_values(self) -> dict[str, Any]:
        """Values every README template gets."""
        return {
            "site": self.site,
            "user": self.user,
            "device": self.device,
            "auth": self.auth,
            "identity": self.identity,
            "eap_id": self.eap_id,
            "creds": self.creds,
            "ca": self.ca,
            "profiles": self.profiles,
            "stem": self.stem,
            "uses_cert": self.uses_cert,
            "uses_eap_password": self.uses_eap_password,
            "p12_name": f"{self.stem}.p12",
            "cert_label": device_identity(self.site, self.user, self.device),
            "connection_names": " / ".join(f"*{p.display}*" for p in self.profiles),
        }


@dataclass
class SiteContext:
    """Per-site values shared by every device (computed once)."""

    site: Site
    ca: CaInfo
    # (platform, router name) -> what that platform's bundle requests from that router
    proposals: Mapping[tuple[str, str], proposals.ClientProposal | None]

    @classmethod
    def create(cls, site: Site, ca_pem: bytes, ca_der: bytes, ca_cn: str) -> SiteContext:
        """Precompute the CA encodings and each platform's proposal for each router.

        The router's lists are the ones its overlay renders: the crypto
        profile's IKE proposals, and its ESP proposals minus what the
        release's kernel lacks (``packages.esp_proposals``).
        """
        from owrt_vpn.render import packages

        names = [conn_name(site, r) for r in site.routers]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(
                [Problem(site.path.name, "routers", f"router names give the same connection "
                         f"name {clash[0]!r} ('.' and '_' read alike): rename one")]
            )  # fmt: skip
        ike = proposals.server_ike(site.settings.crypto)
        chosen: dict[tuple[str, str], proposals.ClientProposal | None] = {}
        for router in site.routers:
            esp = packages.esp_proposals(site, router)
            for p in proposals.platforms():
                chosen[(p, router.name)] = proposals.for_platform(p, site.settings.crypto, ike, esp)
        return cls(site=site, ca=CaInfo(ca_pem, ca_der, ca_cn), proposals=chosen)

    def profiles_for(self, user: User, device: Device) -> tuple[RouterProfile, ...]:
        """One profile per router the user may use and the platform has a proposal with."""
        out = []
        for r in self.site.user_routers(user):
            chosen = self.proposals.get((device.platform, r.name))
            if chosen is not None:
                out.append(router_profile(self.site, r, chosen))
        return tuple(out)

    def routers_without_proposal(self, user: User, device: Device) -> list[str]:
        """The user's routers that the device's platform has no common proposal with."""
        return [
            r.name
            for r in self.site.user_routers(user)
            if self.proposals.get((device.platform, r.name)) is None
        ]


def conn_name(site: Site, router: Router) -> str:
    """The swanctl connection name of ``router`` in the Linux bundle: ``<site>-<router>``.

    strongSwan's settings parser reads a dot in a section name as nesting
    (``home-gw.2 {`` is section ``2`` inside ``home-gw``: the connection
    would vanish without a word), so dots become underscores.
    """
    return f"{site.name}-{router.name}".replace(".", "_")


def router_profile(site: Site, router: Router, chosen: proposals.ClientProposal) -> RouterProfile:
    """The client-side view of ``router``."""
    full = router.tunnel == "full"
    ipv6 = router.pool6 is not None
    if full:
        ts: tuple[str, ...] = ("0.0.0.0/0", "::/0") if ipv6 else ("0.0.0.0/0",)
    else:
        nets = [ipaddress.ip_network(n) for n in router.lan]
        ts = tuple(str(n) for n in nets if n.version == 4 or ipv6)
    return RouterProfile(
        router=router,
        display=f"{site.name} VPN ({router.name})",
        conn=conn_name(site, router),
        server=router.server_id,
        remote_id=router.server_id,
        proposal=chosen,
        full_tunnel=full,
        ipv6=ipv6,
        remote_ts=ts,
        dns=router.dns,
    )


def local_identity(site: Site, user: User, device: Device) -> str:
    """The IKE identity a device presents.

    Certificate devices: their own SAN (``site.device_identity``), or the
    site's shared SAN for devices marked ``shared_identity`` (the guide's iOS
    manual-setup variant). EAP-MSCHAPv2-only users: their EAP user name.
    """
    if user.auth in CERT_AUTH:
        if device.shared_identity and site.settings.shared_identity:
            return site.settings.shared_identity
        return device_identity(site, user, device)
    return eap_identity(user)


# --------------------------------------------------------------------------
# README templates


@cache
def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # noqa: S701 - Markdown and text, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, values: Mapping[str, Any]) -> bytes:
    """Render ``templates/<template>`` (compiled once per process) to UTF-8 bytes."""
    text: str = _env().get_template(template).render(**values)
    return text.encode()


# --------------------------------------------------------------------------
# files on disk and in the zip


def zip_bytes(prefix: str, files: Sequence[BundleFile], epoch: int) -> bytes:
    """A deterministic zip of ``files`` under folder ``prefix``/.

    Sorted entries, one fixed timestamp (``epoch``, clamped to zip's 1980
    floor), fixed Unix modes, fixed compression: the same files give the
    same bytes.
    """
    stamp = time.gmtime(max(epoch, 315532800))[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for f in sorted(files, key=lambda f: f.name):
            info = zipfile.ZipInfo(f"{prefix}/{f.name}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so that external_attr holds the mode
            info.external_attr = (0o100000 | f.mode) << 16
            zf.writestr(info, f.data, compresslevel=9)
    return buf.getvalue()


def write_files(folder: Path, files: Iterable[BundleFile], epoch: int) -> None:
    """Write ``files`` into ``folder`` (a fresh temporary tree) with their modes and mtime."""
    import os

    files = list(files)
    folder.mkdir(parents=True, exist_ok=True)
    # A folder holding a key, a PKCS#12 or a script embedding one: owner only.
    os.chmod(folder, 0o700 if any(f.secret for f in files) else 0o755)
    for f in files:
        path = folder / f.name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        os.fchmod(fd, f.mode)  # the umask must not widen or narrow it
        with os.fdopen(fd, "wb") as fh:
            fh.write(f.data)
        os.utime(path, (epoch, epoch))
