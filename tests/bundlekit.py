"""Test helpers for the client bundles: sites with every platform x auth method, a real PKI."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sitefile
from owrt_vpn.pki.authority import Pki
from owrt_vpn.site.load import parse_site
from owrt_vpn.site.model import AUTH_METHODS, PLATFORM_AUTH, PLATFORMS, Site


@dataclass(frozen=True)
class Dev:
    """One device line of a test site."""

    name: str
    platform: str
    extra: Mapping[str, object] = field(default_factory=dict, hash=False)  # more device keys


@dataclass(frozen=True)
class Usr:
    """One user of a test site."""

    name: str
    auth: str
    devices: tuple[Dev, ...]
    routers: tuple[str, ...] | None = None


ROUTER_GW = sitefile.router(
    lan=["10.77.0.0/24"],
    pool="10.10.10.0/24",
    dns=["10.77.0.1"],
)

ROUTER_OFFICE = sitefile.router(
    "office",
    server_id="203.0.113.7",
    lan=["10.88.0.0/24", "fd00:88::/64"],
    pool="10.20.20.0/24",
    pool6="fd00:20:20::/64",
    tunnel="split",
)


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
    settings: Mapping[str, object] | None = None,
) -> str:
    """A site file with ``users`` and ``routers`` (sitefile.py); ``settings`` go to ``[site]``.

    A site mixing pubkey+eap-mschapv2 and eap-mschapv2 users (every
    combination does) opts in to it: ``check`` refuses the mix otherwise.
    """
    users = list(users)
    if {"pubkey+eap-mschapv2", "eap-mschapv2"} <= {u.auth for u in users}:
        settings = {"allow_password_only_alongside_2fa": True, **(settings or {})}
    return sitefile.site(
        name,
        crypto=crypto,
        **(settings or {}),
        routers=routers,
        users=[
            sitefile.user(
                u.name,
                [(d.name, d.platform, d.extra) for d in u.devices],
                auth=u.auth,
                routers=None if u.routers is None else list(u.routers),
            )
            for u in users
        ],
    )


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
    """The IKE and ESP proposals of the router's *rendered* swanctl config."""
    import re

    from owrt_vpn.render import overlay

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

    Written here independently of owrt_vpn.render.proposals, from strongSwan's rules:
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


# --------------------------------------------------------------------------
# the vendors' values -> strongSwan proposals (from Apple's and Microsoft's
# documentation; independent of the generators' tables)

APPLE_ENC = {
    "AES-128": "aes128",
    "AES-256": "aes256",
    "AES-128-GCM": "aes128gcm16",
    "AES-256-GCM": "aes256gcm16",
    "ChaCha20Poly1305": "chacha20poly1305",
    "3DES": "3des",
}
APPLE_INTEG = {
    "SHA1-96": "sha1",
    "SHA1-160": "sha1",
    "SHA2-256": "sha256",
    "SHA2-384": "sha384",
    "SHA2-512": "sha512",
}
APPLE_DH = {2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072", 16: "modp4096",
            19: "ecp256", 20: "ecp384", 21: "ecp521", 31: "curve25519"}  # fmt: skip


def apple_ike(sa: dict[str, Any]) -> str:
    """The strongSwan IKE proposal of a profile's IKESecurityAssociationParameters."""
    enc = APPLE_ENC[sa["EncryptionAlgorithm"]]
    integ = APPLE_INTEG[sa["IntegrityAlgorithm"]]
    dh = APPLE_DH[sa["DiffieHellmanGroup"]]
    aead = "gcm" in enc or "chacha" in enc
    # With AEAD ciphers Apple uses the integrity setting as the PRF.
    return f"{enc}-prf{integ}-{dh}" if aead else f"{enc}-{integ}-{dh}"


def apple_esp(sa: dict[str, Any], pfs: bool) -> str:
    """The ESP proposal of ChildSecurityAssociationParameters (+ DH group with EnablePFS)."""
    enc = APPLE_ENC[sa["EncryptionAlgorithm"]]
    parts = (
        [enc] if ("gcm" in enc or "chacha" in enc) else [enc, APPLE_INTEG[sa["IntegrityAlgorithm"]]]
    )
    if pfs:
        parts.append(APPLE_DH[sa["DiffieHellmanGroup"]])
    return "-".join(parts)


WIN_ENCRYPTION = {"DES3": "3des", "AES128": "aes128", "AES192": "aes192", "AES256": "aes256",
                  "GCMAES128": "aes128gcm16", "GCMAES256": "aes256gcm16"}  # fmt: skip
WIN_INTEGRITY = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384"}
WIN_DH = {"Group1": "modp768", "Group2": "modp1024", "Group14": "modp2048", "ECP256": "ecp256",
          "ECP384": "ecp384", "Group24": "modp2048s256"}  # fmt: skip
WIN_CIPHER = {"DES3": "3des", "AES128": "aes128", "AES192": "aes192", "AES256": "aes256",
              "GCMAES128": "aes128gcm16", "GCMAES192": "aes192gcm16",
              "GCMAES256": "aes256gcm16"}  # fmt: skip
WIN_AUTH = {"MD596": "md5", "SHA196": "sha1", "SHA256128": "sha256", "GCMAES128": None,
            "GCMAES192": None, "GCMAES256": None}  # fmt: skip
WIN_PFS = {"None": None, "PFS1": "modp768", "PFS2": "modp1024", "PFS2048": "modp2048",
           "ECP256": "ecp256", "ECP384": "ecp384", "PFS24": "modp2048s256"}  # fmt: skip


def ps_commands(text: str) -> list[str]:
    """Logical PowerShell lines (backtick continuations joined)."""
    return re.sub(r"`\r?\n\s*", " ", text).splitlines()


def ps_params(line: str) -> dict[str, str]:
    """``-Name Value`` pairs of one PowerShell command line."""
    return dict(re.findall(r"-(\w+)(?::|\s+)(\$\w+|'[^']*'|[^\s-][^\s]*)", line))


def windows_proposals(params: dict[str, str]) -> tuple[str, str]:
    """IKE and ESP proposals of Set-VpnConnectionIPsecConfiguration parameters."""
    enc = WIN_ENCRYPTION[params["EncryptionMethod"]]
    integ = WIN_INTEGRITY[params["IntegrityCheckMethod"]]
    aead = "gcm" in enc
    ike = (
        f"{enc}-prf{integ}-{WIN_DH[params['DHGroup']]}"
        if aead
        else f"{enc}-{integ}-{WIN_DH[params['DHGroup']]}"
    )
    cipher = WIN_CIPHER[params["CipherTransformConstants"]]
    auth = WIN_AUTH[params["AuthenticationTransformConstants"]]
    if "gcm" in cipher:
        assert auth is None, "GCM cipher needs the matching GCM authentication transform"
        assert params["AuthenticationTransformConstants"] == params["CipherTransformConstants"]
    parts = [cipher] + ([auth] if auth else [])
    pfs = WIN_PFS[params["PfsGroup"]]
    return ike, "-".join(parts + ([pfs] if pfs else []))
