"""Test helpers for the client bundles: sites with every platform x auth method, a real PKI."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from owrt_vpn.pki import Pki
from owrt_vpn.site import AUTH_METHODS, PLATFORM_AUTH, PLATFORMS, Site, parse_site


@dataclass(frozen=True)
class Dev:
    """One device line of a test site."""

    name: str
    platform: str
    extra: str = ""


@dataclass(frozen=True)
class Usr:
    """One user of a test site."""

    name: str
    auth: str
    devices: tuple[Dev, ...]
    routers: tuple[str, ...] | None = None


ROUTER_GW = """
[[routers]]
name = "gw"
server_id = "vpn.example.org"
release = "24.10.2"
target = "bcm53xx"
device = "phicomm_k3"
lan = ["10.77.0.0/24"]
pool = "10.10.10.0/24"
dns = ["10.77.0.1"]
"""

ROUTER_OFFICE = """
[[routers]]
name = "office"
server_id = "203.0.113.7"
release = "24.10.2"
target = "bcm53xx"
device = "phicomm_k3"
lan = ["10.88.0.0/24", "fd00:88::/64"]
pool = "10.20.20.0/24"
pool6 = "fd00:20:20::/64"
tunnel = "split"
"""


def all_combinations() -> list[Usr]:
    """One user per auth method, with one device per platform that can use it."""
    users = []
    for auth in AUTH_METHODS:
        name = auth.replace("+", "-").replace("eap-", "e")
        devices = tuple(
            Dev(p.replace("android-strongswan", "asw"), p)
            for p in PLATFORMS
            if auth in PLATFORM_AUTH[p]
        )
        users.append(Usr(name, auth, devices))
    return users


def site_text(
    users: Iterable[Usr],
    *,
    name: str = "home",
    crypto: str = "compat",
    routers: Sequence[str] = (ROUTER_GW,),
    settings: str = "",
) -> str:
    """A site file with ``users`` and ``routers``."""
    text = f'[site]\nname = "{name}"\ncrypto = "{crypto}"\n{settings}\n'
    text += "".join(routers)
    for u in users:
        text += f'\n[[users]]\nname = "{u.name}"\nauth = "{u.auth}"\n'
        if u.routers is not None:
            text += "routers = [" + ", ".join(f'"{r}"' for r in u.routers) + "]\n"
        for d in u.devices:
            text += f'[[users.devices]]\nname = "{d.name}"\nplatform = "{d.platform}"\n{d.extra}\n'
    return text


def make_site(directory: Path, users: Iterable[Usr], **kw: object) -> Site:
    """Write and parse a site file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "owrt-vpn.toml"
    text = site_text(users, **kw)  # type: ignore[arg-type]
    path.write_text(text)
    return parse_site(text, path)


def make_pki(site: Site) -> Pki:
    """A real PKI for ``site`` (CA key unencrypted: no passphrase in unit tests)."""
    pki = Pki.open(site)
    pki.init(site, encrypt=False)
    return pki


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def zip_members(path: Path) -> dict[str, bytes]:
    """The members of a zip by name."""
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


# --------------------------------------------------------------------------
# what the rendered router accepts (not the constants in profiles/)


def rendered_router_proposals(
    site: Site, pki: Pki, router: str, out: Path
) -> tuple[list[str], list[str]]:
    """The IKE and ESP proposals of the router's *rendered* swanctl config.

    Skips the calling test while the overlay renderer does not exist yet.
    """
    import re

    import pytest

    try:
        from owrt_vpn import overlay  # type: ignore[attr-defined]
    except ImportError:
        pytest.skip("owrt_vpn.overlay is not there yet: cannot check against the router config")
    overlay.render(site, site.router(router), pki, out)
    files = out / "usr/share/owrt-vpn/files/etc/swanctl"
    ike: list[str] = []
    esp: list[str] = []
    for conf in sorted(files.rglob("*.conf")):
        text = conf.read_text()
        for key, target in (("proposals", ike), ("esp_proposals", esp)):
            for m in re.finditer(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, re.M):
                for p in m.group(1).split(","):
                    if p.strip() and p.strip() not in target:
                        target.append(p.strip())
    assert ike and esp, f"no proposals found in the rendered {files}"
    return ike, esp


def _kind_of(token: str) -> str:
    """Transform type of a strongSwan keyword (just what the tests' proposals use)."""
    import re

    if re.fullmatch(r"(aes\d+(gcm|ccm)\d*|chacha20poly1305)", token):
        return "aead"
    if re.fullmatch(r"(aes\d+(ctr)?|3des)", token):
        return "encr"
    if token.startswith("prf"):
        return "prf"
    if re.fullmatch(r"(md5|sha1|sha256|sha384|sha512|aesxcbc|aescmac)", token):
        return "integ"
    if re.fullmatch(r"(modp\d+\w*|ecp\d+\w*|curve25519|curve448)", token):
        return "dh"
    raise AssertionError(f"unknown algorithm keyword {token!r}")


def router_accepts(server: Sequence[str], client: str, kind: str) -> bool:
    """Does a router offering ``server`` accept a client proposing exactly ``client``?

    Written here independently of owrt_vpn.proposals, from strongSwan's rules:
    every algorithm of the single-algorithm client proposal must be in one
    server proposal; AEAD and classic ciphers never mix; an IKE proposal
    without PRF keywords uses its integrity algorithms as PRFs; an ESP DH
    group (PFS) needs the group in the server proposal, no group needs a
    server proposal without groups.
    """
    want: dict[str, set[str]] = {}
    for tok in client.split("-"):
        want.setdefault(_kind_of(tok), set()).add(tok)
    for prop in server:
        have: dict[str, set[str]] = {}
        for tok in prop.split("-"):
            have.setdefault(_kind_of(tok), set()).add(tok)
        if kind == "ike":
            for side in (want, have):
                if "prf" not in side and "integ" in side:
                    side["prf"] = {"prf" + i for i in side["integ"]}
        ok = True
        for t in ("aead", "encr", "integ", "prf", "dh"):
            mine, theirs = want.get(t, set()), have.get(t, set())
            if not mine and not theirs:
                continue
            if not mine & theirs:
                ok = False
                break
        if ok:
            return True
    return False
