"""A 25.12-shaped build end to end (apk ImageBuilder, apk manifest, apk errors): the real CLI
against a signed loopback mirror of ImageBuilder doubles, the image opened with unsquashfs."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import sitefile
from imagebuilder_double import catalog
from imagebuilder_double.fixtures import ServedMirror, start_served_mirror
from imagebuilder_double.mirror_tree import make_mirror
from owrtcli import CliRunner

pytestmark = pytest.mark.integration

IMAGE = "openwrt-25.12.0-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedMirror]:
    served, server = start_served_mirror(
        tmp_path_factory.mktemp("mirror-2512"), [("25.12.0", "bcm53xx", "generic")]
    )
    try:
        yield served
    finally:
        server.stop()


def test_2512_apk_build_end_to_end(mirror: ServedMirror, cli: CliRunner, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    users = [
        sitefile.user("alice", [("phone", "ios")]),
        sitefile.user("bob", [("laptop", "android")], auth="eap-mschapv2"),
    ]
    text = sitefile.site(routers=[sitefile.router(release="25.12.0")], users=users)
    (site / "owrt-vpn.toml").write_text(text)
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "k")}
    args = ["build", "--mirror", mirror.url, "--trust-key", str(mirror.key.public)]
    proc = cli(*args, cwd=site, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "gw: built 25.12.0 bcm53xx/generic phicomm_k3" in proc.stdout
    out = site / "dist/home/routers/gw"
    info = json.loads((out / "build-info.json").read_text())
    assert info["imagebuilder"]["package_manager"] == "apk"
    assert info["imagebuilder"]["name"].endswith(".tar.zst")
    assert info["packages"]["beyond_profile"]["release"] == ["luci", "luci-app-attendedsysupgrade"]
    installed = info["packages"]["installed"]
    # strongSwan 6.0 on 25.12 still builds eap-mschapv2 and md4 (only master gates them)
    assert {"strongswan-mod-eap-mschapv2", "strongswan-mod-md4", "luci"} <= set(installed)
    assert re.fullmatch(r"6\.0\.\d+-r\d+", installed["strongswan-charon"])
    # the image: apk's database, our files, no opkg
    root = tmp_path / "rootfs"
    subprocess.run(
        ["unsquashfs", "-no-xattrs", "-d", str(root), str(out / IMAGE)],
        check=True,
        capture_output=True,
    )
    db = (root / "lib/apk/db/installed").read_text()
    assert "P:strongswan-mod-eap-mschapv2\n" in db and "P:luci-app-attendedsysupgrade\n" in db
    assert not (root / "usr/lib/opkg").exists()
    assert (root / "usr/share/owrt-vpn/files/etc/swanctl/conf.d/owrt-vpn.conf").is_file()
    manifest = next(out.glob("*.manifest")).read_text()
    assert "strongswan-swanctl - 6.0." in manifest
    # The lock holds apk's package versions as the manifest gave them: --locked rebuilds.
    lock = json.loads((site / "owrt-vpn.lock").read_text())["routers"]["gw"]
    assert lock["packages"]["strongswan-charon"] == installed["strongswan-charon"]
    proc = cli(*args, "--locked", "--force", cwd=site, env=env)
    assert proc.returncode == 0, proc.stderr

    # apk's wording for an unknown package, caught from the index with a did-you-mean
    (site / "owrt-vpn.toml").write_text(
        text.replace('name = "home"', 'name = "home"\nextra_packages = ["wireguard-tool"]')
    )
    proc = cli(*args, cwd=site, env=env)
    assert proc.returncode == 2, proc.stderr
    assert (
        "site.extra_packages: 'wireguard-tool' is not a package of OpenWrt 25.12.0 "
        "bcm53xx/generic (did you mean 'wireguard-tools'?)"
    ) in proc.stderr


def test_release_branch_builds_like_a_snapshot(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = [("24.10-SNAPSHOT", "bcm53xx", "generic")]
    served, server = start_served_mirror(tmp_path / "m", build)
    url = served.url
    try:
        site = tmp_path / "site"
        site.mkdir()
        text = sitefile.site(routers=[sitefile.router(release="24.10-SNAPSHOT")])
        (site / "owrt-vpn.toml").write_text(text)
        env = {"OWRT_VPN_CACHE": str(tmp_path / "cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "k")}
        args = ["build", "--mirror", served.url, "--trust-key", str(served.key.public)]
        proc = cli(*args, cwd=site, env=env)
        assert proc.returncode == 0, proc.stderr
        # The branch moves: the next nightly build is another revision. --locked names
        # that, not the ImageBuilder checksum it implies.
        rel = catalog.release("24.10-SNAPSHOT")
        moved = dataclasses.replace(rel, revision="r28802-0123456789")
        monkeypatch.setitem(catalog.RELEASES, "24.10-SNAPSHOT", moved)
        make_mirror(served.mirror.base, served.key, build)
        locked = cli(*args, "--locked", "--force", cwd=site, env=env)
    finally:
        server.stop()
    assert "gw: built 24.10-SNAPSHOT bcm53xx/generic phicomm_k3" in proc.stdout
    info = json.loads((site / "dist/home/routers/gw/build-info.json").read_text())
    assert info["imagebuilder"]["url"].startswith(url + "/releases/24.10-SNAPSHOT/targets/")
    assert info["config_style"] == "swanctl" and info["packages"]["beyond_profile"]["release"] == [
        "luci"
    ]
    assert locked.returncode == 3, locked.stderr
    assert (
        "error: gw: --locked: the mirror now has another build of 24.10-SNAPSHOT "
        f"(revision r28802-0123456789); owrt-vpn.lock pins revision {rel.revision}"
    ) in locked.stderr, locked.stderr
    assert "has sha256" not in locked.stderr
