"""The image's package list (owrt_vpn.render.packages): per release, per auth method, per style."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sitefile
from conftest import CliRunner
from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError
from owrt_vpn.render import packages
from owrt_vpn.site.load import parse_site
from owrt_vpn.site.model import Site


def make_site(
    *auths: str,
    release: str = "24.10.2",
    crypto: str = "compat",
    full: bool = False,
    style: str = "auto",
    dns: str = "",
) -> Site:
    """One router and one user per auth method."""
    platform = {"pubkey": "ios", "eap-tls": "macos", "eap-mschapv2": "android"}
    text = sitefile.site(
        "lab",
        crypto=crypto,
        allow_weak=True,
        packages="full" if full else "minimal",
        routers=[sitefile.router(release=release, config_style=style, dns=[dns] if dns else None)],
        users=[
            sitefile.user(f"u{i}", [("d", platform.get(auth, "linux"))], auth=auth)
            for i, auth in enumerate(auths)
        ],
    )
    return parse_site(text, Path("owrt-vpn.toml"))


def plist(site: Site, style: str | None = None) -> list[str]:
    return packages.package_list(site, site.routers[0], style)


def test_certificate_and_eap_mschapv2_site_on_24_10() -> None:
    site = make_site("pubkey", "eap-mschapv2")
    pk = plist(site)
    assert pk[:4] == [
        "strongswan",
        "strongswan-charon",
        "strongswan-swanctl",
        "strongswan-mod-vici",
    ]
    mods = {p for p in pk if p.startswith("strongswan-mod-")}
    assert mods == {
        f"strongswan-mod-{p}"
        for p in (
            "vici",
            "openssl",
            "kdf",
            "random",
            "x509",
            "pem",
            "pkcs1",
            "pkcs8",
            "revocation",
            "constraints",
            "kernel-netlink",
            "socket-default",
            "eap-identity",
            "eap-mschapv2",
            "md4",
            "des",
        )
    }
    # nonce ships inside the base package from 23.05: no package of its own
    assert "strongswan-mod-nonce" not in pk
    assert "nonce" in packages.charon_plugins(site, site.routers[0])
    # the size target of the benchmark
    assert packages.plugin_package_count(pk) <= 20
    assert len(pk) == len(set(pk))


@pytest.mark.parametrize(
    "release", ["19.07.10", "21.02.7", "22.03.5", "23.05.5", "24.10.2", "25.12.0"]
)
@pytest.mark.parametrize("auth", ["eap-mschapv2", "pubkey+eap-mschapv2"])
def test_eap_mschapv2_brings_md4_and_des_explicitly(release: str, auth: str) -> None:
    # OpenWrt's OpenSSL 3 keeps MD4/DES in a separate legacy provider, and
    # Debian's OpenSSL would hide a missing one in the handshake tests: the
    # list itself must name the md4 and des plugins.
    pk = plist(make_site(auth, release=release))
    assert "strongswan-mod-eap-mschapv2" in pk
    assert "strongswan-mod-md4" in pk
    assert "strongswan-mod-des" in pk
    assert "strongswan-mod-eap-identity" in pk


def test_certificate_only_site_has_no_eap_plugins() -> None:
    pk = plist(make_site("pubkey"))
    assert not [p for p in pk if "eap" in p or p.endswith(("-md4", "-des"))]
    assert "strongswan-libtls" not in pk


def test_eap_tls_brings_libtls() -> None:
    pk = plist(make_site("eap-tls"))
    assert "strongswan-mod-eap-tls" in pk and "strongswan-libtls" in pk
    assert "strongswan-mod-eap-mschapv2" not in pk


def test_before_23_05_nonce_is_a_package_and_there_is_no_kdf() -> None:
    site = make_site("pubkey", release="22.03.5")
    pk = plist(site)
    assert "strongswan-mod-nonce" in pk
    assert "strongswan-mod-kdf" not in pk
    assert "kdf" not in packages.charon_plugins(site, site.routers[0])


def test_legacy_style_uses_stroke_and_attr_for_dns() -> None:
    site = make_site("pubkey", release="21.02.7", dns="192.168.1.1")
    assert packages.config_style(site.routers[0]) == "ipsec"
    pk = plist(site)
    assert "strongswan-ipsec" in pk and "strongswan-mod-stroke" in pk
    assert "strongswan-swanctl" not in pk and "strongswan-mod-vici" not in pk
    assert "strongswan-mod-attr" in pk
    # firewall3: the iptables policy match
    assert {"kmod-ipt-ipsec", "iptables-mod-ipsec"} <= set(pk)
    # swanctl style carries DNS in its pools: no attr plugin
    assert "strongswan-mod-attr" not in plist(site, "swanctl")
    assert "strongswan-swanctl" in plist(site, "swanctl")


def test_style_override_and_router_setting() -> None:
    site = make_site("pubkey", release="24.10.2", style="ipsec")
    assert packages.config_style(site.routers[0]) == "ipsec"
    assert packages.config_style(site.routers[0], "swanctl") == "swanctl"
    with pytest.raises(ConfigError):
        packages.config_style(site.routers[0], "bogus")


def test_kernel_modules_follow_the_esp_proposals() -> None:
    pk = set(plist(make_site("pubkey", crypto="compat")))
    assert {
        "kmod-crypto-gcm",
        "kmod-crypto-seqiv",
        "kmod-crypto-sha256",
        "kmod-crypto-sha512",
        "kmod-crypto-cbc",
        "kmod-crypto-authenc",
        "kmod-crypto-chacha20poly1305",
    } <= pk
    assert "kmod-crypto-des" not in pk  # no 3DES in compat
    modern = set(plist(make_site("pubkey", crypto="modern")))
    assert "kmod-crypto-gcm" in modern and "kmod-crypto-cbc" not in modern
    legacy = set(plist(make_site("pubkey", crypto="legacy")))
    assert {"kmod-crypto-des", "kmod-crypto-sha1"} <= legacy


def test_19_07_kernel_lacks_chacha_so_the_router_does_not_offer_it() -> None:
    site = make_site("pubkey", release="19.07.10")
    assert "kmod-crypto-chacha20poly1305" not in plist(site)
    assert not any("chacha20poly1305" in p for p in packages.esp_proposals(site, site.routers[0]))
    site24 = make_site("pubkey")
    assert any("chacha20poly1305" in p for p in packages.esp_proposals(site24, site24.routers[0]))


def test_full_uses_strongswan_full_and_disables_the_unused_init_script() -> None:
    site = make_site("pubkey", "eap-mschapv2", full=True)
    pk = plist(site)
    assert pk[0] == "strongswan-full"
    assert not [p for p in pk if p.startswith("strongswan-mod-")]
    assert packages.disabled_services(site, site.routers[0]) == ["ipsec"]
    assert packages.disabled_services(site, site.routers[0], "ipsec") == ["swanctl"]
    plugins = packages.charon_plugins(site, site.routers[0])
    assert {"eap-mschapv2", "md4", "des", "vici", "stroke", "openssl"} <= set(plugins)
    assert packages.disabled_services(make_site("pubkey"), make_site("pubkey").routers[0]) == []


def test_every_series_has_package_data() -> None:
    releases = profiles.load("releases")["series"]
    data = profiles.load("packages")
    assert set(releases) == set(data["series"])
    for series in data["series"].values():
        assert series["full_plugins"] in data["full_plugins"]


def test_packages_command(cli: CliRunner, tmp_path: Path) -> None:
    site_file = tmp_path / "owrt-vpn.toml"
    cli("init", check=True)
    proc = cli("packages", "--json", check=True)
    [entry] = json.loads(proc.stdout)["routers"]
    assert entry["router"] == "gw" and entry["config_style"] == "swanctl"
    assert "strongswan-mod-openssl" in entry["packages"]
    assert entry["plugin_packages"] == packages.plugin_package_count(entry["packages"])
    human = cli("packages", "--router", "gw", check=True).stdout.split()
    assert human == entry["packages"]
    bad = cli("packages", "--router", "nope")
    assert bad.returncode == 2 and "no router named 'nope'" in bad.stderr
    assert site_file.exists()
