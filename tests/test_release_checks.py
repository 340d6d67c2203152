"""`check` before any download: what it validates offline (cached metadata of an earlier
download, else the data we ship), what it says it could not check, and release warnings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import sitefile
from owrt_vpn import profiles
from owrt_vpn.imagebuilder import metadata
from owrtcli import CliRunner


def write(tmp_path: Path, text: str) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(text)


def test_snapshot_eap_mschapv2_users_are_warned(cli: CliRunner, tmp_path: Path) -> None:
    users = [sitefile.user("bob", [("phone", "android")], auth="eap-mschapv2")]
    write(tmp_path, sitefile.site(routers=[sitefile.router(release="snapshot")], users=users))
    proc = cli("check")
    assert proc.returncode == 0, proc.stderr
    assert (
        "router gw runs a snapshot: master's strongSwan builds eap-mschapv2/md4 only with "
        "STRONGSWAN_INCLUDE_INSECURE"
    ) in proc.stderr
    assert "EAP-MSCHAPv2 users bob" in proc.stderr
    write(tmp_path, sitefile.site(routers=[sitefile.router(release="25.12.0")], users=users))
    assert "STRONGSWAN_INCLUDE_INSECURE" not in cli("check").stderr


def check(
    cli: CliRunner, tmp_path: Path, text: str, *args: str
) -> subprocess.CompletedProcess[str]:
    write(tmp_path, text)
    return cli("check", *args, env={"OWRT_VPN_CACHE": str(tmp_path / "cache")})


def refused(cli: CliRunner, tmp_path: Path, *routers: str) -> str:
    """`check`'s messages for a site of ``routers``, which it must refuse (exit 2)."""
    proc = check(cli, tmp_path, sitefile.site(routers=list(routers)))
    assert proc.returncode == 2, proc.stderr
    return proc.stderr


def test_typos_and_foreign_devices_are_caught_offline(cli: CliRunner, tmp_path: Path) -> None:
    proc = check(cli, tmp_path, sitefile.site(routers=[sitefile.router(target="bcm53xxx")]))
    assert proc.returncode == 2
    assert (
        "error: owrt-vpn.toml: routers[gw].target: 'bcm53xxx' is not an OpenWrt target "
        "(did you mean 'bcm53xx'?)"
    ) in proc.stderr
    proc = check(cli, tmp_path, sitefile.site(routers=[sitefile.router(device="phicomm-k3")]))
    assert "routers[gw].device: unknown device 'phicomm-k3' (did you mean 'phicomm_k3'?)" in (
        proc.stderr
    )
    foreign = sitefile.router(device="tplink_archer-c7-v2")
    proc = check(cli, tmp_path, sitefile.site(routers=[foreign]))
    assert proc.returncode == 2
    assert "'tplink_archer-c7-v2' is a device of target ath79, not bcm53xx" in (proc.stderr)


def test_real_targets_and_subtargets_the_list_once_lacked_pass_offline(
    cli: CliRunner, tmp_path: Path
) -> None:
    # ath79/mikrotik (21.02 on) and ixp4xx (24.10, 25.12) are on OpenWrt's download
    # site (profiles/targets.toml names the sources); a typo of the subtarget is not.
    mikrotik = sitefile.router(
        target="ath79", subtarget="mikrotik", device="mikrotik_routerboard-wap-g-5hact2hnd"
    )
    ixp4xx = sitefile.router(
        name="nas", server_id="nas.example.org", target="ixp4xx", device="gateworks_gw2348"
    )
    proc = check(cli, tmp_path, sitefile.site(routers=[mikrotik, ixp4xx]))
    assert proc.returncode == 0, proc.stderr
    assert "routers[0].subtarget" not in proc.stderr
    assert "routers[1].target" not in proc.stderr
    typo = sitefile.router(target="ath79", subtarget="mikrotk", device="tplink_archer-c7-v2")
    assert (
        "routers[gw].subtarget: target ath79 has no subtarget 'mikrotk' "
        "(known: generic, mikrotik, nand, tiny)"
    ) in refused(cli, tmp_path, typo)


def test_what_could_not_be_checked_offline_is_said(cli: CliRunner, tmp_path: Path) -> None:
    router = sitefile.router(release="24.10.9", device="asus_rt-ac88u", extra_packages=["luci-ssl"])
    proc = check(cli, tmp_path, sitefile.site(routers=[router]))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "not checked offline: router gw: whether the mirror has release 24.10.9" in err
    assert "not checked offline: router gw: device 'asus_rt-ac88u' (not in the shipped list" in err
    assert "not checked offline: router gw: extra_packages luci-ssl" in err
    data = json.loads(check(cli, tmp_path, sitefile.site(routers=[router]), "--json").stdout)
    assert len(data["unchecked"]) == 3


def test_cached_metadata_of_an_earlier_download_decides(cli: CliRunner, tmp_path: Path) -> None:
    metadata.remember(
        tmp_path / "cache",
        "24.10.2",
        "bcm53xx",
        "generic",
        profiles=["phicomm_k3", "asus_rt-ac88u"],
        packages=["luci", "luci-ssl", "wireguard-tools"],
    )
    ok = sitefile.router(device="asus_rt-ac88u", extra_packages=["wireguard-tools"])
    proc = check(cli, tmp_path, sitefile.site(routers=[ok]))
    assert proc.returncode == 0, proc.stderr
    assert "not checked offline" not in proc.stderr
    bad = sitefile.router(device="asus_rt-ac86u", extra_packages=["wireguard-tool"])
    proc = check(cli, tmp_path, sitefile.site(routers=[bad]))
    assert proc.returncode == 2
    err = proc.stderr
    assert (
        "routers[gw].device: bcm53xx/generic of 24.10.2 has no device 'asus_rt-ac86u' "
        "(did you mean 'asus_rt-ac88u'?)"
    ) in err
    assert (
        "routers[gw].extra_packages: 'wireguard-tool' is not a package of OpenWrt 24.10.2 "
        "bcm53xx/generic (did you mean 'wireguard-tools'?)"
    ) in err


@pytest.mark.integration
def test_init_writes_the_newest_stable_release_the_mirror_announces(
    cli: CliRunner, tmp_path: Path
) -> None:
    from integration.mirror import MirrorServer

    root = tmp_path / "mirror"
    root.mkdir()

    def versions(stable: str) -> None:
        index = {"stable_version": stable, "oldstable_version": "23.05.5", "upcoming_version": ""}
        (root / ".versions.json").write_text(json.dumps(index))

    server = MirrorServer(root).start()
    url = server.url
    try:
        versions("25.12.0")
        proc = cli("init", "--json", "a", env={"OWRT_VPN_MIRROR": server.url})
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["release"] == "25.12.0"
        assert data["release_source"] == f"{server.url}/.versions.json (stable_version)"
        site = tmp_path / "a/owrt-vpn.toml"
        assert 'release = "25.12.0"' in site.read_text()
        assert cli("--site", str(site), "check").returncode == 0
        # Never older than the pinned default: the index is unsigned.
        versions("23.05.5")
        data = json.loads(cli("init", "--json", "b", env={"OWRT_VPN_MIRROR": server.url}).stdout)
        assert data["release"] == profiles.default_release()
        assert "announces 23.05.5 (not newer)" in data["release_source"]
        # A server that answers 404 (not an OpenWrt mirror): said so, not "not reachable".
        (root / ".versions.json").unlink()
        proc = cli("init", "d", env={"OWRT_VPN_MIRROR": server.url})
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == (
            f"release {profiles.default_release()}: the pinned default (profiles/releases.toml): "
            f"{server.url}/.versions.json not found (HTTP 404: wrong --mirror?)\n"
        )
    finally:
        server.stop()
    # Unreachable: the pinned default, saying why.
    proc = cli("init", "c", env={"OWRT_VPN_MIRROR": url})
    assert proc.returncode == 0, proc.stderr
    assert f"release {profiles.default_release()}: the pinned default" in proc.stderr
    assert "not reachable within 3 s" in proc.stderr


def test_removing_what_the_vpn_needs_is_caught_by_check(cli: CliRunner, tmp_path: Path) -> None:
    router = sitefile.router(extra_packages=["-strongswan-swanctl"])
    assert (
        "routers[gw].extra_packages: '-strongswan-swanctl' would remove strongswan-swanctl, "
        "which the VPN needs"
    ) in refused(cli, tmp_path, router)
