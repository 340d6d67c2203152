"""What an image carries beyond the device profile (render/packages.image_packages): the VPN,
the release images' packages (LuCI, per release, profiles/packages.toml), the site's
extra_packages, removals, conflicts; and the too-big hint that names what can go."""

from __future__ import annotations

from pathlib import Path

import pytest

import sitefile
from owrt_vpn.build.packages import beyond_text, too_big_hint
from owrt_vpn.errors import ConfigError
from owrt_vpn.render import packages
from owrt_vpn.site.load import parse_site
from owrt_vpn.site.model import Site


def site_of(tmp_path: Path, text: str) -> Site:
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(text)
    return parse_site(text, path)


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("23.05.5", ("luci",)),
        ("24.10.2", ("luci",)),
        ("25.12.0", ("luci", "luci-app-attendedsysupgrade")),
        ("snapshot", ()),
    ],
)
def test_release_images_packages_per_release(
    tmp_path: Path, release: str, expected: tuple[str, ...]
) -> None:
    site = site_of(tmp_path, sitefile.site(routers=[sitefile.router(release=release)]))
    pk = packages.image_packages(site, site.routers[0])
    assert pk.release == expected
    vpn = [p for p in pk.vpn if not p.startswith("-")]
    assert list(pk.request) == vpn + list(expected)  # after the VPN's packages
    assert pk.beyond_profile()["release"] == list(expected)


def test_release_packages_off_site_wide_or_per_router(tmp_path: Path) -> None:
    site = site_of(
        tmp_path,
        sitefile.site(
            release_packages=False,
            routers=[sitefile.router(), sitefile.router("ap", release_packages=True)],
        ),
    )
    gw, ap = site.routers
    assert packages.image_packages(site, gw).release == ()
    assert packages.image_packages(site, ap).release == ("luci",)


def test_extra_packages_add_and_remove(tmp_path: Path) -> None:
    site = site_of(
        tmp_path,
        sitefile.site(
            extra_packages=["luci-ssl", "-ppp"],
            routers=[sitefile.router(extra_packages=["wireguard-tools", "-luci", "-luci-ssl"])],
        ),
    )
    pk = packages.image_packages(site, site.routers[0])
    assert pk.added == ("wireguard-tools",)  # the router's "-luci-ssl" wins
    assert pk.removed == ("ppp", "luci", "luci-ssl")
    assert pk.release == ()  # "-luci" drops the release images' LuCI
    assert pk.request[-3:] == ("-ppp", "-luci", "-luci-ssl")
    assert "wireguard-tools" in pk.request
    text = beyond_text(pk.beyond_profile())
    assert text.endswith("wireguard-tools (extra_packages); removed: ppp luci luci-ssl")


def test_removing_what_the_vpn_needs_is_refused_with_the_key(tmp_path: Path) -> None:
    site = site_of(
        tmp_path,
        sitefile.site(routers=[sitefile.router(extra_packages=["-strongswan-swanctl"])]),
    )
    with pytest.raises(ConfigError) as exc:
        packages.image_packages(site, site.routers[0])
    assert str(exc.value.problems[0]) == (
        "owrt-vpn.toml: routers[gw].extra_packages: '-strongswan-swanctl' would remove "
        "strongswan-swanctl, which the VPN needs"
    )


def test_conflicts_with_default_packages(tmp_path: Path) -> None:
    site = site_of(tmp_path, sitefile.site(extra_packages=["dnsmasq-full"]))
    pk = packages.image_packages(site, site.routers[0])
    assert packages.conflicts(pk, {"dnsmasq", "busybox"}) == [("dnsmasq-full", "dnsmasq")]
    assert packages.conflicts(pk, {"busybox"}) == []  # not a default of this device
    site = site_of(tmp_path, sitefile.site(extra_packages=["dnsmasq-full", "-dnsmasq"]))
    pk = packages.image_packages(site, site.routers[0])
    assert packages.conflicts(pk, {"dnsmasq"}) == []
    # ip-full and ip-tiny install side by side in OpenWrt (ALTERNATIVES for /sbin/ip).
    site = site_of(tmp_path, sitefile.site(extra_packages=["ip-full"]))
    pk = packages.image_packages(site, site.routers[0])
    assert packages.conflicts(pk, {"ip-tiny", "busybox"}) == []


def test_removals_that_remove_nothing(tmp_path: Path) -> None:
    site = site_of(tmp_path, sitefile.site(extra_packages=["-pppp", "-ppp", "-luci"]))
    gw = site.routers[0]
    pk = packages.image_packages(site, gw)
    # ppp is a default of the device, luci one the release's images carry; pppp is a typo.
    assert packages.idle_removals(pk, {"ppp", "dnsmasq"}, gw) == ["pppp"]


def test_too_big_hint_fits_the_site(tmp_path: Path) -> None:
    site = site_of(tmp_path, sitefile.site(extra_packages=["luci-ssl"]))
    gw = site.routers[0]
    hint = too_big_hint(site, gw, packages.image_packages(site, gw))
    assert hint == (
        "leave out luci (release_packages = false for router gw or in [site]); "
        "or drop luci-ssl from extra_packages"
    )
    assert "minimal" not in hint  # the site already uses packages = "minimal"
    full = site_of(tmp_path, sitefile.site(packages="full", release_packages=False))
    hint = too_big_hint(full, full.routers[0], packages.image_packages(full, full.routers[0]))
    assert hint == 'use packages = "minimal" in [site] (only the plugins the site needs)'
    bare = site_of(tmp_path, sitefile.site(release_packages=False))
    hint = too_big_hint(bare, bare.routers[0], packages.image_packages(bare, bare.routers[0]))
    assert "flash is too small" in hint and "-ppp" in hint


def test_vpn_router_access(tmp_path: Path) -> None:
    site = site_of(
        tmp_path,
        sitefile.site(
            vpn_router_access="dns-ping",
            routers=[sitefile.router(), sitefile.router("ap", vpn_router_access="lan")],
        ),
    )
    assert [packages.vpn_router_access(site, r) for r in site.routers] == ["dns-ping", "lan"]
    assert packages.vpn_router_access(site_of(tmp_path, sitefile.site()), site.routers[0]) == "lan"
