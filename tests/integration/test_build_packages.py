"""What goes into the image, end to end: `owrt-vpn build` against the ImageBuilder double adds
what the release images carry (LuCI) and the site's extra_packages, says so, records it in
build-info, and refuses unknown or conflicting packages naming the site key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imagebuilder_double.fixtures import served_mirror  # noqa: F401

from . import test_build
from .test_build import K3_TRX, Lab, installed_packages, unsquash

pytestmark = pytest.mark.integration
lab = test_build.lab  # the same fixture: a site with a PKI, the served mirror


def set_site_keys(lab: Lab, site_keys: str = "", router_keys: str = "") -> None:
    path = lab.site / "owrt-vpn.toml"
    text = path.read_text()
    text = text.replace('crypto = "compat"', f'crypto = "compat"\n{site_keys}', 1)
    text = text.replace('tunnel = "full"', f'tunnel = "full"\n{router_keys}', 1)
    path.write_text(text)


def test_release_and_site_packages_are_added_and_said(lab: Lab, tmp_path: Path) -> None:
    set_site_keys(
        lab,
        'extra_packages = ["luci-ssl", "-ppp", "-ppp-mod-pppoe"]',
        'extra_packages = ["wireguard-tools"]',
    )
    proc = lab.build()
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"gw: beyond the device profile: the VPN \(\d+ packages\), luci \(as the release's "
        r"own images\), luci-ssl wireguard-tools \(extra_packages\); removed: ppp ppp-mod-pppoe",
        proc.stderr,
    ), proc.stderr
    info = json.loads((lab.router_dir / "build-info.json").read_text())
    beyond = info["packages"]["beyond_profile"]
    assert beyond["release"] == ["luci"]
    assert beyond["site"] == ["luci-ssl", "wireguard-tools"]
    assert beyond["removed"] == ["ppp", "ppp-mod-pppoe"]
    root = unsquash(lab.router_dir / K3_TRX, tmp_path / "rootfs")
    have = installed_packages(root)
    assert {"luci", "uhttpd", "luci-ssl", "wireguard-tools", "strongswan-swanctl"} <= have
    assert not {"ppp", "ppp-mod-pppoe"} & have


def test_unknown_and_conflicting_packages_name_the_key(lab: Lab) -> None:
    set_site_keys(lab, 'extra_packages = ["luci-sll"]')
    proc = lab.build()
    assert proc.returncode == 2, proc.stderr
    assert (
        "error: owrt-vpn.toml: site.extra_packages: 'luci-sll' is not a package of "
        "OpenWrt 24.10.2 bcm53xx/generic (did you mean 'luci-ssl'?)"
    ) in proc.stderr, proc.stderr
    path = lab.site / "owrt-vpn.toml"
    path.write_text(path.read_text().replace('"luci-sll"', '"dnsmasq-full"'))
    proc = lab.build()
    assert proc.returncode == 2, proc.stderr
    assert (
        "site.extra_packages: dnsmasq-full replaces dnsmasq, a default package of phicomm_k3: "
        'add "-dnsmasq" to remove it (they conflict)'
    ) in proc.stderr, proc.stderr
    text = path.read_text().replace('"dnsmasq-full"', '"dnsmasq-full", "-dnsmasq", "-pppp"')
    path.write_text(text)
    proc = lab.build()
    assert proc.returncode == 0, proc.stderr
    # A removal that removes nothing (make image ignores it silently) is said.
    assert (
        'warning: gw: site.extra_packages: "-pppp" removes nothing: pppp is not a default '
        "package of phicomm_k3 (did you mean 'ppp'?)"
    ) in proc.stderr, proc.stderr


def test_check_online_asks_the_mirror_and_remembers(lab: Lab) -> None:
    online = ["check", "--online", "--mirror", lab.mirror.url]
    online += ["--trust-key", str(lab.mirror.key.public)]
    proc = lab.cli(*online, cwd=lab.site, env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert "whether the mirror has release" not in proc.stderr  # now remembered
    meta = json.loads((lab.cache / "metadata/24.10.2/bcm53xx/generic.json").read_text())
    assert "phicomm_k3" in meta["profiles"]
    path = lab.site / "owrt-vpn.toml"
    path.write_text(path.read_text().replace('release = "24.10.2"', 'release = "24.10.9"'))
    proc = lab.cli(*online, cwd=lab.site, env=lab.env)
    assert proc.returncode == 2
    # The mirror's answer names the file and the router that asked (not a bare release).
    assert "error: owrt-vpn.toml: routers[gw]: release '24.10.9' is not on the mirror" in (
        proc.stderr
    )


def test_image_too_big_names_what_can_go(lab: Lab) -> None:
    # the double's bloat package (600 MB) makes any image too big for the flash
    set_site_keys(lab, 'extra_packages = ["double-test-bloat"]')
    proc = lab.build()
    assert proc.returncode != 0
    assert re.search(
        r"error: bcm53xx/generic phicomm_k3: the image is too big for the device's flash: "
        + re.escape(K3_TRX)
        + r" \(\d+ > \d+ bytes\)",
        proc.stderr,
    ), proc.stderr
    assert (
        "hint: leave out luci (release_packages = false for router gw or in [site]); or "
        "drop double-test-bloat from extra_packages; full output: "
    ) in proc.stderr, proc.stderr
    assert not (lab.router_dir / K3_TRX).exists()
