"""First boot as OpenWrt runs it: our image overlay on a fresh OpenWrt root.

The uci-defaults script is sourced the way base-files does it, under
busybox ash with a PATH holding only the applets of OpenWrt's default
busybox build and OpenWrt's real ``uci`` (built from the pinned sources,
tests/openwrt/). What the router then holds is read with the real
``uci show``. The persistent installer that ``push`` runs is run the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import sitefile
from openwrt.router import RouterRoot
from openwrt.userland import Userland
from owrt_vpn.pki.authority import Pki
from owrt_vpn.render import overlay
from owrt_vpn.site.load import load_site
from owrt_vpn.site.model import Site
from requires import requires

pytestmark = requires("busybox")

EPOCH = "1700000000"
OUR_RULES = ("owrt_vpn_ike", "owrt_vpn_nat_t", "owrt_vpn_esp")
SITE = sitefile.site(
    "lab",
    routers=[
        sitefile.router(
            "gw",
            lan=["192.168.7.0/24"],
            dns=["192.168.7.1"],
            management={"lan_address": "192.168.7.1/24"},
        ),
        sitefile.router("old", server_id="203.0.113.7", release="21.02.7", allow_ipsec_to_wan=True),
        # a router every user is kept away from: no VPN users
        sitefile.router("idle", server_id="vpn2.example.org"),
    ],
    users=[
        sitefile.user("alice", (("phone", "ios"),), routers=["gw", "old"]),
        sitefile.user("bob", (("phone", "android"),), auth="eap-mschapv2", routers=["gw"]),
    ],
)


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, Pki]:
    folder = tmp_path_factory.mktemp("site")
    (folder / "owrt-vpn.toml").write_text(SITE)
    site = load_site(folder / "owrt-vpn.toml")
    pki = Pki.open(site)
    pki.init(site, encrypt=False)
    for r in site.routers:
        pki.ensure_router(site, r)
    pki.ensure(site)
    return site, pki


@pytest.fixture(scope="module")
def fw4_default(openwrt: Userland) -> Path:
    """The firewall4 checkout whose default /etc/config/firewall the router starts from."""
    return openwrt.firewall4("HEAD")


def overlay_of(lab: tuple[Site, Pki], router: str, out: Path) -> overlay.RenderResult:
    site, pki = lab
    return overlay.render(site, site.router(router), pki, out)


def fresh(tmp: Path, openwrt: Userland, fw4: Path) -> RouterRoot:
    return RouterRoot(tmp, openwrt, fw4)


def ours(show: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in show.items() if ".owrt_vpn" in k}


def test_first_boot_applies_everything_once_and_deletes_the_script(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    stock = r.show("firewall")
    r.flash(overlay_of(lab, "gw", tmp_path / "ov").root)
    run = r.first_boot()
    assert run.returncode == 0, run.stderr
    assert not (r.root / overlay.UCI_DEFAULTS).exists()
    fw = r.show("firewall")
    # OpenWrt's own sections are untouched, ours are there once each
    assert {k: v for k, v in fw.items() if k in stock} == stock
    assert ours(fw) == {
        **{f"firewall.{n}": "rule" for n in OUR_RULES},
        "firewall.owrt_vpn_ike.name": "'owrt-vpn IKE'",
        "firewall.owrt_vpn_ike.src": "'wan'",
        "firewall.owrt_vpn_ike.proto": "'udp'",
        "firewall.owrt_vpn_ike.dest_port": "'500'",
        "firewall.owrt_vpn_ike.target": "'ACCEPT'",
        "firewall.owrt_vpn_nat_t.name": "'owrt-vpn IKE NAT-T and ESP in UDP'",
        "firewall.owrt_vpn_nat_t.src": "'wan'",
        "firewall.owrt_vpn_nat_t.proto": "'udp'",
        "firewall.owrt_vpn_nat_t.dest_port": "'4500'",
        "firewall.owrt_vpn_nat_t.target": "'ACCEPT'",
        "firewall.owrt_vpn_esp.name": "'owrt-vpn ESP'",
        "firewall.owrt_vpn_esp.src": "'wan'",
        "firewall.owrt_vpn_esp.proto": "'esp'",
        "firewall.owrt_vpn_esp.target": "'ACCEPT'",
    }
    assert sum(v == "rule" and "owrt_vpn" in k for k, v in fw.items()) == 3
    dhcp = r.show("dhcp")
    assert dhcp["dhcp.@dnsmasq[0].localservice"] == "'0'"
    assert [k for k in dhcp if k.endswith(".localservice")] == ["dhcp.@dnsmasq[0].localservice"]
    net = r.show("network")
    assert net["network.lan.ipaddr"] == "'192.168.7.1'"
    assert net["network.lan.netmask"] == "'255.255.255.0'"
    # committed for real: nothing pending, the files hold it
    assert r.uci("changes") == ""
    assert "owrt_vpn_ike" in (r.root / "etc/config/firewall").read_text()
    for rel in ("etc/swanctl/conf.d/owrt-vpn.conf", "etc/swanctl/private/gw.key"):
        assert (r.root / rel).is_file()
    assert (r.root / "etc/swanctl/private/gw.key").stat().st_mode & 0o777 == 0o600
    nft = sorted(p.name for p in (r.root / "usr/share/nftables.d/chain-pre").iterdir())
    assert nft == ["dstnat", "forward", "input", "srcnat"]


def test_a_second_boot_a_push_and_a_kept_settings_flash_change_nothing(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    tree = overlay_of(lab, "gw", tmp_path / "ov").root
    r.flash(tree)
    assert r.first_boot().returncode == 0
    configs = {p: (r.root / "etc/config" / p).read_bytes() for p in ("firewall", "dhcp", "network")}
    # a flash keeping settings: the script is back, the configs are the kept ones
    r.flash(tree)
    run = r.first_boot()
    assert run.returncode == 0, run.stderr
    assert "updated" not in run.stderr
    assert not (r.root / overlay.UCI_DEFAULTS).exists()
    # push: the persistent installer with the same set, under the same shell
    push = r.ash(f'"$OWRT_VPN_ROOT/{overlay.INSTALLER}" "$OWRT_VPN_ROOT/{overlay.FILES}"')
    assert push.returncode == 0, push.stderr
    assert "updated" not in push.stderr
    assert {p: (r.root / "etc/config" / p).read_bytes() for p in configs} == configs


def test_legacy_router_gets_the_fw3_include_once(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    r.flash(overlay_of(lab, "old", tmp_path / "ov").root)
    for _ in range(2):
        r.flash(overlay_of(lab, "old", tmp_path / "ov").root)
        run = r.first_boot()
        assert run.returncode == 0, run.stderr
    fw = r.show("firewall")
    assert fw["firewall.owrt_vpn_include"] == "include"
    assert fw["firewall.owrt_vpn_include.path"] == "'/usr/share/owrt-vpn/firewall3.sh'"
    assert fw["firewall.owrt_vpn_ipsec2wan.dest"] == "'wan'"
    assert sum(1 for k, v in fw.items() if v in ("rule", "include") and "owrt_vpn" in k) == 5
    assert (r.root / "etc/ipsec.conf").is_file()


def test_a_router_without_vpn_users_removes_what_we_added(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    site, _ = lab
    assert not site.router_users(site.router("idle"))
    r = fresh(tmp_path, openwrt, fw4_default)
    stock = {p: r.show(p) for p in ("firewall", "dhcp")}
    # first the router served users (same files, its own name) ...
    r.flash(overlay_of(lab, "gw", tmp_path / "ov").root)
    assert r.first_boot().returncode == 0
    assert ours(r.show("firewall"))
    # ... then a push of a set without users: our sections and settings go
    idle = overlay_of(lab, "idle", tmp_path / "idle")
    push = r.ash('"$1" "$2"', str(idle.root / overlay.INSTALLER), str(idle.file_set))
    assert push.returncode == 0, push.stderr
    assert ours(r.show("firewall")) == {}
    assert r.show("firewall") == stock["firewall"]
    assert r.show("dhcp") == stock["dhcp"]
    assert not (r.root / "etc/swanctl/conf.d/owrt-vpn.conf").exists()
    assert not (r.root / "usr/share/nftables.d/chain-pre/input/owrt-vpn.nft").exists()


def test_a_failing_first_boot_keeps_the_script(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    r.flash(overlay_of(lab, "gw", tmp_path / "ov").root)
    # a file where the installer needs a folder: it cannot write the swanctl files
    (r.root / "etc/swanctl").write_text("in the way\n")
    run = r.first_boot()
    assert (r.root / overlay.UCI_DEFAULTS).exists()
    assert "cannot create" in run.stderr
    # fixed: the next boot applies it and deletes the script
    (r.root / "etc/swanctl").unlink()
    run = r.first_boot()
    assert run.returncode == 0, run.stderr
    assert not (r.root / overlay.UCI_DEFAULTS).exists()
    assert ours(r.show("firewall"))


def test_the_installer_notices_a_failing_uci_batch(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    res = overlay_of(lab, "gw", tmp_path / "ov")
    batch = res.file_set / "_meta/uci/firewall.batch"
    # uci batch exits 0 when a command fails: setting an option of a missing section
    batch.write_text(batch.read_text() + "set firewall.no_such_section.name='x'\n")
    before = (r.root / "etc/config/firewall").read_bytes()
    run = r.ash('"$1" "$2"', str(res.root / overlay.INSTALLER), str(res.file_set))
    assert run.returncode == 1
    assert "uci batch for /etc/config/firewall failed" in run.stderr
    assert "updated /etc/config/firewall" not in run.stderr
    assert (r.root / "etc/config/firewall").read_bytes() == before
    assert r.uci("changes", "firewall") == ""


def test_the_installer_reports_only_what_it_committed(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    res = overlay_of(lab, "gw", tmp_path / "ov")
    run = r.ash('"$1" "$2"', str(res.root / overlay.INSTALLER), str(res.file_set))
    assert run.returncode == 0, run.stderr
    for pkg in ("firewall", "dhcp", "network"):
        assert f"updated /etc/config/{pkg}" in run.stderr
    # each "updated" is true of the file on disk, read by a uci with no change files
    fw = (r.root / "etc/config/firewall").read_text()
    assert fw.count("config rule 'owrt_vpn_ike'") == 1
    assert "option localservice '0'" in (r.root / "etc/config/dhcp").read_text()


def test_our_scripts_need_no_applet_openwrt_lacks(
    lab: tuple[Site, Pki], openwrt: Userland, fw4_default: Path, tmp_path: Path
) -> None:
    r = fresh(tmp_path, openwrt, fw4_default)
    res = overlay_of(lab, "gw", tmp_path / "ov")
    # busybox ash parses both scripts (syntax check) ...
    for rel in (overlay.INSTALLER, overlay.UCI_DEFAULTS):
        chk = r.ash('ash -n "$1"', str(res.root / rel))
        assert chk.returncode == 0, chk.stderr
    # ... and no command they run is missing from OpenWrt's busybox
    run = r.ash('"$1" "$2"', str(res.root / overlay.INSTALLER), str(res.file_set))
    assert "not found" not in run.stderr, run.stderr
