"""The OpenWrt package list of a router's image, derived from the site.

``minimal`` (the default) installs exactly the strongSwan plugins the site
needs, decided from strongSwan's plugin documentation:

======================  ==========================================================
plugin                  why
======================  ==========================================================
random, nonce           RNG and IKE nonces (nonce ships in the base package from 23.05)
openssl                 every IKE algorithm of our proposals: AES-CBC/GCM,
                        ChaCha20-Poly1305, SHA-1/2 HMAC and PRFs, MODP, ECP and
                        Curve25519 DH, RSA and ECDSA signatures, 3DES (legacy)
kdf                     prf+ key derivation (strongSwan 5.9.10+ moved it out of
                        the core; where packaged)
x509, pem, pkcs1,       certificates, PEM armour, RSA keys, PKCS#8 keys (the PKI
pkcs8                   writes PKCS#8)
revocation              CRL checking of client certificates
constraints             basicConstraints/pathlen and name-constraint checks of the chain
kernel-netlink,         kernel SAs/policies and the IKE sockets
socket-default
vici / stroke           swanctl style (strongswan-swanctl) / legacy ipsec.conf
attr                    legacy style only: DNS/NBNS attributes from strongswan.d
                        (swanctl pools carry them per connection)
eap-identity            the server asks EAP clients for their identity (eap_id = %any)
eap-mschapv2, md4, des  EAP-MSCHAPv2 (MD4 for the NT hash, DES for the response)
eap-tls                 EAP-TLS (+ strongswan-libtls)
======================  ==========================================================

The kernel modules follow the ESP proposals of the crypto profile (see
``profiles/packages.toml``). ``packages = "full"`` installs ``strongswan-full``
as the guide does; it ships both init scripts, so the unused one goes into
the ImageBuilder's ``DISABLED_SERVICES`` (:func:`disabled_services`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError, Problem
from owrt_vpn.render import proposals
from owrt_vpn.site.keys import router_key
from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH, Router, Site

PLUGIN_PREFIX = "strongswan-mod-"

# Always needed by a certificate-authenticated IKEv2 responder.
CORE_PLUGINS = (
    "random",
    "nonce",
    "openssl",
    "kdf",
    "x509",
    "pem",
    "pkcs1",
    "pkcs8",
    "revocation",
    "constraints",
    "kernel-netlink",
    "socket-default",
)


@dataclass(frozen=True)
class Needs:
    """What a router's VPN needs, in the terms the package list is built from."""

    series: str
    config_style: str
    firewall: str
    auth: frozenset[str]
    legacy_attr: bool


def config_style(router: Router, override: str | None = None) -> str:
    """``swanctl`` or ``ipsec``: ``override``, else the router's setting, else by release."""
    if override is not None:
        if override not in ("swanctl", "ipsec"):
            raise ConfigError(f"--config-style: {override!r} is not one of 'swanctl', 'ipsec'")
        return override
    if router.config_style != "auto":
        return router.config_style
    return profiles.release_info(router.release).config_style


def _series(router: Router) -> tuple[str, dict[str, Any]]:
    info = profiles.release_info(router.release)
    data = profiles.load("packages")["series"]
    if info.series not in data:
        raise ConfigError(f"profiles/packages.toml has no package data for {info.series!r}")
    return info.series, data[info.series]


def needs(site: Site, router: Router, style: str | None = None) -> Needs:
    """Summarise what ``router`` must support (auth methods of its users, style, firewall)."""
    series, _ = _series(router)
    st = config_style(router, style)
    auth = frozenset(u.auth for u in site.router_users(router))
    legacy_attr = st == "ipsec" and bool(router.dns or router.nbns)
    return Needs(series, st, profiles.release_info(router.release).firewall, auth, legacy_attr)


def charon_plugins(site: Site, router: Router, style: str | None = None) -> list[str]:
    """The strongSwan plugins the image's charon loads (sorted).

    With ``packages = "minimal"`` exactly the plugins our package list
    installs; with ``"full"`` everything strongswan-full pulls in.
    """
    n = needs(site, router, style)
    data = profiles.load("packages")
    series = data["series"][n.series]
    if site.settings.packages == "full":
        return sorted(data["full_plugins"][series["full_plugins"]])
    plugins = set(CORE_PLUGINS)
    plugins.add("vici" if n.config_style == "swanctl" else "stroke")
    if n.legacy_attr:
        plugins.add("attr")
    if n.auth & EAP_PASSWORD_AUTH or "eap-tls" in n.auth:
        plugins.add("eap-identity")
    if n.auth & EAP_PASSWORD_AUTH:
        plugins |= {"eap-mschapv2", "md4", "des"}
    if "eap-tls" in n.auth:
        plugins.add("eap-tls")
    plugins -= set(series["unavailable_plugins"])
    return sorted(plugins)


def esp_proposals(site: Site, router: Router) -> tuple[str, ...]:
    """The router's ESP proposals minus algorithms its release's kernel lacks."""
    _, series = _series(router)
    drop = set(series.get("unavailable_esp", []))
    out = []
    for prop in proposals.server_esp(site.settings.crypto):
        words = [w for w in prop.split("-") if w not in drop]
        if any(w in _ENCRYPTION for w in words):
            out.append("-".join(words))
    return tuple(dict.fromkeys(out))


_ENCRYPTION = frozenset(
    {
        "aes128",
        "aes192",
        "aes256",
        "aes128gcm16",
        "aes192gcm16",
        "aes256gcm16",
        "aes128ccm16",
        "aes256ccm16",
        "chacha20poly1305",
        "3des",
    }
)


def kernel_modules(site: Site, router: Router) -> list[str]:
    """Kernel crypto modules for the router's ESP proposals (sorted, unique)."""
    table = profiles.load("packages")["kmods"]
    mods: set[str] = set()
    for prop in esp_proposals(site, router):
        words = prop.split("-")
        for w in words:
            mods.update(table.get(w, []))
        if any(w in ("aes128", "aes192", "aes256", "3des") for w in words):
            mods.update(table["cbc"])
    return sorted(mods)


def package_list(site: Site, router: Router, style: str | None = None) -> list[str]:
    """``PACKAGES=`` for ``make image``: packages to add, then ``-pkg`` removals.

    Deterministic order: strongSwan components, plugin packages, kernel
    modules, firewall modules (each group sorted), then removals.
    """
    n = needs(site, router, style)
    _, series = _series(router)
    out: list[str] = []
    if site.settings.packages == "full":
        out += series["full"]
    else:
        out += series["base"]
        out += series["swanctl"] if n.config_style == "swanctl" else series["ipsec"]
        builtin = set(series["builtin_plugins"])
        mods = [
            f"{PLUGIN_PREFIX}{p}" for p in charon_plugins(site, router, style) if p not in builtin
        ]
        out += [m for m in sorted(mods) if m not in out]
        if "eap-tls" in n.auth:
            out.append("strongswan-libtls")
    out += kernel_modules(site, router)
    out += [p for p in series["firewall"] if p not in out]
    out += [f"-{p}" for p in series["removals"]]
    return list(dict.fromkeys(out))


def disabled_services(site: Site, router: Router, style: str | None = None) -> list[str]:
    """Init scripts to pass as ``DISABLED_SERVICES`` (the unused strongSwan flavour)."""
    if site.settings.packages != "full":
        return []
    return ["ipsec"] if config_style(router, style) == "swanctl" else ["swanctl"]


def plugin_package_count(packages: list[str]) -> int:
    """How many ``strongswan-mod-*`` packages a list names (the size benchmark)."""
    return sum(1 for p in packages if p.startswith(PLUGIN_PREFIX))


def uses_certificates(site: Site, router: Router) -> bool:
    """True when some user of the router authenticates with a certificate."""
    return any(u.auth in CERT_AUTH for u in site.router_users(router))


# ------------------------------------------------------------------ the whole image


@dataclass(frozen=True)
class ImagePackages:
    """Everything ``make image`` gets in ``PACKAGES``, grouped by why it is there.

    ``vpn``: :func:`package_list` (the VPN's packages and removals);
    ``release``: what the release's own images carry beyond the device
    profile (``profiles/packages.toml`` ``[release_images]``: LuCI), unless
    ``release_packages = false``; ``added`` / ``removed``: the site's and the
    router's ``extra_packages``.
    """

    vpn: tuple[str, ...]
    release: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def request(self) -> tuple[str, ...]:
        """``PACKAGES=`` for ``make image``: additions first, then ``-pkg`` removals."""
        adds = [p for p in self.vpn if not p.startswith("-")]
        adds += [*self.release, *self.added]
        drops = [p for p in self.vpn if p.startswith("-")] + [f"-{p}" for p in self.removed]
        return tuple(dict.fromkeys(adds + drops))

    def beyond_profile(self) -> dict[str, list[str]]:
        """What the image carries beyond the device profile, by reason (build-info)."""
        return {
            "vpn": [p for p in self.vpn if not p.startswith("-")],
            "release": list(self.release),
            "site": list(self.added),
            "removed": list(self.removed) + [p[1:] for p in self.vpn if p.startswith("-")],
        }

    def optional(self) -> list[str]:
        """What the site may leave out when the image is too big (release's, then site's)."""
        return [*self.release, *self.added]


def release_image_packages(router: Router) -> tuple[str, ...]:
    """What the release's downloadable images carry beyond the device profile."""
    series = profiles.release_info(router.release).series
    table = profiles.load("packages").get("release_images", {})
    return tuple(table.get(series, ()))


def image_packages(site: Site, router: Router, style: str | None = None) -> ImagePackages:
    """The image's whole package request for ``router`` (see :class:`ImagePackages`).

    ConfigError (naming the site key) when ``extra_packages`` removes a
    package the VPN needs.
    """
    vpn = tuple(package_list(site, router, style))
    keep = router.release_packages
    if keep is None:
        keep = site.settings.release_packages
    specs = [("site.extra_packages", s) for s in site.settings.extra_packages]
    specs += [(f"{router_key(router)}.extra_packages", s) for s in router.extra_packages]
    need = {p for p in vpn if not p.startswith("-")}
    problems = [
        Problem(site.path.name, key, f"{s!r} would remove {s[1:]}, which the VPN needs")
        for key, s in specs
        if s.startswith("-") and s[1:] in need
    ]
    if problems:
        raise ConfigError(problems)
    removed = tuple(dict.fromkeys(s[1:] for _, s in specs if s.startswith("-")))
    release = tuple(p for p in (release_image_packages(router) if keep else ()) if p not in removed)
    added = tuple(dict.fromkeys(s for _, s in specs if not s.startswith("-") and s not in need))
    # A later "-x" (the router's) wins over an earlier "x" (the site's), and the reverse.
    added = tuple(p for p in added if p not in removed)
    return ImagePackages(vpn, release, added, removed)


def conflicts(pk: ImagePackages, defaults: set[str]) -> list[tuple[str, str]]:
    """(added package, default package it replaces) pairs the request does not remove.

    ``defaults``: the device's default packages (profiles.json
    ``default_packages`` + the profile's ``device_packages``).
    """
    table: dict[str, list[str]] = profiles.load("packages").get("conflicts", {})
    removed = set(pk.removed) | {p[1:] for p in pk.vpn if p.startswith("-")}
    out = []
    for p in (*pk.release, *pk.added):
        for other in table.get(p, []):
            if other in defaults and other not in removed:
                out.append((p, other))
    return out


def idle_removals(pk: ImagePackages, defaults: set[str], router: Router) -> list[str]:
    """``extra_packages`` removals (``"-name"``) that remove nothing: ``name`` is
    neither one of the device's default packages nor one the release's images
    carry. ``make image`` ignores them silently (a typo such as ``"-pppp"``
    leaves ``ppp`` in the image).
    """
    known = defaults | set(release_image_packages(router))
    return [name for name in pk.removed if name not in known]


def vpn_router_access(site: Site, router: Router) -> str:
    """``lan`` (VPN clients reach the router like the LAN) or ``dns-ping``."""
    return router.vpn_router_access or site.settings.vpn_router_access
