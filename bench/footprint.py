"""Benchmark 5: how many strongSwan plugin packages our list installs.

For every combination of auth methods among a router's users, the
``strongswan-mod-*`` packages of ``owrt_vpn.render.packages.package_list`` (the
``PACKAGES=`` of ``make image``, which names every plugin dependency itself:
md4/des for EAP-MSCHAPv2...), in both config styles, against the metapackages
the guide installs: ``strongswan-full`` (``[full_plugins]`` of
profiles/packages.toml) and ``strongswan-default``.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from lab import site_text

RELEASE = "24.10.2"
# The metapackages' plugin counts given in issue 8 (openwrt/packages net/strongswan).
REFERENCE = {"strongswan-full": 79, "strongswan-default": 29}
TARGET = 20  # a certificate + EAP-MSCHAPv2 site
# A platform that can do each auth method (site.PLATFORM_AUTH).
PLATFORM = {
    "pubkey": "ios",
    "eap-tls": "ios",
    "eap-mschapv2": "ios",
    "pubkey+eap-mschapv2": "linux",
}


def _site(auths: tuple[str, ...], workdir: Path) -> Any:
    from owrt_vpn.site.load import load_site

    users = [(f"user{i}", auth, [("dev", PLATFORM[auth])]) for i, auth in enumerate(auths)]
    path = workdir / f"{'_'.join(auths).replace('+', 'plus')}.toml"
    text = site_text(["gw"], users).replace('"24.10.2"', f'"{RELEASE}"')
    if {"eap-mschapv2", "pubkey+eap-mschapv2"} <= set(auths):
        # The package footprint of the mix is measured; `check` wants the opt-in.
        text = text.replace("[site]\n", "[site]\nallow_password_only_alongside_2fa = true\n", 1)
    path.write_text(text)
    return load_site(path)


def footprint() -> dict[str, Any]:
    """Plugin package counts per auth combination and style, with the references."""
    from owrt_vpn import profiles
    from owrt_vpn.render import packages
    from owrt_vpn.site.model import AUTH_METHODS

    series = profiles.release_info(RELEASE).series
    pk = profiles.load("packages")
    full = len(pk["full_plugins"][pk["series"][series]["full_plugins"]])
    combos: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="owrt-bench-footprint-") as tmp:
        for n in range(1, len(AUTH_METHODS) + 1):
            for auths in itertools.combinations(AUTH_METHODS, n):
                site = _site(auths, Path(tmp))
                router = site.routers[0]
                counts = {}
                for style in ("swanctl", "ipsec"):
                    plist = packages.package_list(site, router, style)
                    counts[style] = packages.plugin_package_count(plist)
                combos[" + ".join(auths)] = counts
    # The larger of the two styles (ipsec.conf adds the attr plugin for DNS).
    cert_mschap = max(
        n for key in ("pubkey + eap-mschapv2", "pubkey+eap-mschapv2") for n in combos[key].values()
    )
    worst = max(n for c in combos.values() for n in c.values())
    return {
        "release": RELEASE,
        "per_auth_combination": combos,
        "certificate_plus_eap_mschapv2": cert_mschap,
        "largest_combination": worst,
        "strongswan_full_profiles": full,
        "reference": REFERENCE,
        "ratio_to_full": round(cert_mschap / REFERENCE["strongswan-full"], 3),
        "ratio_to_default": round(cert_mschap / REFERENCE["strongswan-default"], 3),
        "target": TARGET,
    }


def installed_plugins(build_info: dict[str, Any]) -> int:
    """``strongswan-mod-*`` packages a built image really holds (its manifest)."""
    installed = build_info["packages"]["installed"]
    return sum(1 for name in installed if name.startswith("strongswan-mod-"))
