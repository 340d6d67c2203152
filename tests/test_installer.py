"""The installer and the uci-defaults script, run for real in a scratch root.

``OWRT_VPN_ROOT`` points both scripts at a scratch root laid out like an
OpenWrt system. ``uci`` is OpenWrt's real one, built from the pinned sources
(tests/openwrt/userland.py, the ``openwrt`` fixture). ``pidof`` and the init
scripts are stubs, so the reload decisions can be observed. Everything else
(cp, cmp, awk, chmod ...) is the host's /bin/sh world; the same scripts under
busybox ash with OpenWrt's applet set are in test_router_firstboot.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from openwrt.userland import Userland
from owrt_vpn.render import overlay, uci
from test_overlay import EPOCH, HASH, KEY, Lab, make_lab

INIT_STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SERVICE_LOG"
exit "${SERVICE_STATUS:-0}"
"""

FIREWALL = [
    uci.Section("defaults", None, {"input": "REJECT", "output": "ACCEPT", "forward": "REJECT"}),
    uci.Section("zone", None, {"name": "lan", "network": ["lan"], "input": "ACCEPT"}),
    uci.Section("zone", None, {"name": "wan", "network": ["wan", "wan6"], "masq": "1"}),
    uci.Section("rule", None, {"name": "Allow-Ping", "src": "wan", "proto": "icmp"}),
]
DHCP = [
    uci.Section("dnsmasq", None, {"domainneeded": "1", "localservice": "1"}),
    uci.Section("dhcp", "lan", {"interface": "lan", "start": "100"}),
]
NETWORK = [
    uci.Section("interface", "loopback", {"device": "lo", "proto": "static"}),
    uci.Section(
        "interface",
        "lan",
        {
            "device": "br-lan",
            "proto": "static",
            "ipaddr": "192.168.1.1",
            "netmask": "255.255.255.0",
        },
    ),
]
OLD_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@else"


class Router:
    """A scratch root with the image's files and stubbed commands."""

    def __init__(self, tmp: Path, openwrt: Userland) -> None:
        self.root = tmp / "root"
        self.bin = tmp / "bin"
        self.openwrt = openwrt
        self.service_log = tmp / "services.log"
        self.bin.mkdir()
        (self.bin / "uci").symlink_to(openwrt.uci)
        self.set_running(False)
        etc = self.root / "etc"
        (etc / "config").mkdir(parents=True)
        (etc / "config/firewall").write_text(uci.render_config(FIREWALL))
        (etc / "config/dhcp").write_text(uci.render_config(DHCP))
        (etc / "config/network").write_text(uci.render_config(NETWORK))
        (etc / "shadow").write_text(
            "root:$1$old$oldoldoldold:19000:0:99999:7:::\ndaemon:*:0:0:99999:7:::\n"
        )
        (etc / "shadow").chmod(0o600)
        (etc / "dropbear").mkdir()
        (etc / "dropbear/authorized_keys").write_text(OLD_KEY + "\n")
        # OpenWrt's packages create these (conffile directories)
        for d in (
            "swanctl/conf.d",
            "swanctl/x509",
            "swanctl/x509ca",
            "swanctl/private",
            "swanctl/x509crl",
        ):
            (etc / d).mkdir(parents=True)
        (etc / "swanctl/x509/unrelated.crt").write_text("not ours\n")

    def set_running(self, running: bool, init_status: int = 0) -> None:
        pidof = self.bin / "pidof"
        pidof.write_text(f"#!/bin/sh\nexit {0 if running else 1}\n")
        pidof.chmod(0o755)
        self.init_status = init_status

    def add_init_scripts(self, *names: str) -> None:
        (self.root / "etc/init.d").mkdir(parents=True, exist_ok=True)
        for name in names:
            p = self.root / "etc/init.d" / name
            p.write_text(INIT_STUB)
            p.chmod(0o755)

    def flash(self, tree: Path) -> None:
        """What the image holds: the rendered tree copied over the root."""
        shutil.copytree(tree, self.root, dirs_exist_ok=True)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "OWRT_VPN_ROOT": str(self.root),
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            **self.openwrt.env(),
            "SERVICE_LOG": str(self.service_log),
            "SERVICE_STATUS": str(self.init_status),
        }

    def run(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def uci_defaults(self) -> subprocess.CompletedProcess[str]:
        return self.run("sh", self.root / overlay.UCI_DEFAULTS)

    def install(self, src: Path, *opts: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.root / overlay.INSTALLER, *opts, src)

    def config(self, pkg: str) -> list[uci.Section]:
        return uci.parse_config((self.root / "etc/config" / pkg).read_text())

    def services(self) -> list[str]:
        return self.service_log.read_text().splitlines() if self.service_log.exists() else []


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes | None, int]]:
    """Every file's mode, owner, bytes and mtime; directories without mtime (temp
    files come and go in them); /tmp left out (uci's change files live there)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel == "tmp" or rel.startswith("tmp/"):
            continue
        st = p.lstat()
        if p.is_file():
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, p.read_bytes(), st.st_mtime_ns)
        else:
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, None, 0)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("site"))


@pytest.fixture(autouse=True)
def _epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))


def rendered(lab: Lab, tmp: Path, router: str = "gw", name: str = "ov") -> overlay.RenderResult:
    return overlay.render(lab.site, lab.site.router(router), lab.pki, tmp / name)


def test_scripts_are_posix_sh(lab: Lab, tmp_path: Path) -> None:
    res = rendered(lab, tmp_path)
    for rel in (overlay.INSTALLER, overlay.UCI_DEFAULTS):
        text = (res.root / rel).read_text()
        assert text.startswith("#!/bin/sh\n")
        subprocess.run(["sh", "-n", str(res.root / rel)], check=True)
        if shutil.which("checkbashisms"):
            subprocess.run(["checkbashisms", str(res.root / rel)], check=True)


def test_uci_defaults_twice_in_a_scratch_root(lab: Lab, tmp_path: Path, openwrt: Userland) -> None:
    r = Router(tmp_path, openwrt)
    res = rendered(lab, tmp_path)
    r.flash(res.root)
    first = r.uci_defaults()
    # strongSwan is not running at first boot: not a failure (the script must exit 0)
    assert first.returncode == 0, first.stderr

    root = r.root
    manifest = (res.file_set / "_meta/manifest").read_text().splitlines()
    assert manifest
    for line in manifest:
        mode, rel = line.split(" ", 1)
        dst = root / rel
        assert dst.read_bytes() == (res.file_set / rel).read_bytes(), rel
        st = dst.stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (int(mode, 8), 0, 0), rel
    assert (root / "etc/swanctl/private/gw.key").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/swanctl/conf.d/owrt-vpn-secrets.conf").stat().st_mode & 0o777 == 0o600
    assert (root / "usr/share/nftables.d/chain-pre/srcnat").stat().st_mode & 0o777 == 0o755
    assert (root / "etc/owrt-vpn/manifest").read_text() == "\n".join(manifest) + "\n"
    assert (root / "etc/swanctl/x509/unrelated.crt").read_text() == "not ours\n"

    fw = {s.name: s for s in r.config("firewall") if s.name}
    assert fw["owrt_vpn_ike"].options == {
        "name": "owrt-vpn IKE",
        "src": "wan",
        "proto": "udp",
        "dest_port": "500",
        "target": "ACCEPT",
    }
    assert fw["owrt_vpn_nat_t"].options["dest_port"] == "4500"
    assert fw["owrt_vpn_esp"].options["proto"] == "esp"
    assert "owrt_vpn_ipsec2wan" not in fw and "owrt_vpn_include" not in fw
    assert len([s for s in r.config("firewall") if s.type == "zone"]) == 2  # the rest untouched
    assert r.config("dhcp")[0].options["localservice"] == "0"
    lan = {s.name: s for s in r.config("network")}["lan"]
    assert (lan.options["ipaddr"], lan.options["netmask"]) == ("192.168.7.1", "255.255.255.0")
    assert (root / "etc/shadow").read_text().splitlines()[0] == f"root:{HASH}:19000:0:99999:7:::"
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o600
    keys = (root / "etc/dropbear/authorized_keys").read_text().splitlines()
    assert keys[0] == OLD_KEY and KEY in keys
    assert (root / "etc/dropbear/authorized_keys").stat().st_mode & 0o777 == 0o600

    # second boot of the same image: nothing changes, nothing is committed
    before = snapshot(root)
    second = r.uci_defaults()
    assert second.returncode == 0, second.stderr
    assert snapshot(root) == before  # the config files too: nothing was committed
    assert "updated" not in second.stderr


def test_stale_files_go_and_reloads_follow_what_changed(tmp_path: Path, openwrt: Userland) -> None:
    lab = make_lab(tmp_path / "site")
    r = Router(tmp_path, openwrt)
    a = rendered(lab, tmp_path, name="a")
    r.flash(a.root)
    assert r.uci_defaults().returncode == 0
    # a revocation adds the CRL; the router now runs strongSwan and the firewall
    lab.pki.revoke(lab.site, "alice", "laptop")
    b = rendered(lab, tmp_path, name="b")
    r.add_init_scripts("swanctl", "ipsec", "firewall", "dnsmasq")
    r.set_running(True)
    proc = r.install(b.file_set)
    assert proc.returncode == 0, proc.stderr
    assert (r.root / "etc/swanctl/x509crl/owrt-vpn.crl").read_bytes() == lab.pki.crl_pem()
    assert r.services() == ["swanctl reload"]
    # same set again: nothing to reload
    assert r.install(b.file_set).returncode == 0
    assert r.services() == ["swanctl reload"]
    # back to the set without a CRL: the stale CRL is removed, strongSwan reloaded
    proc = r.install(a.file_set)
    assert proc.returncode == 0, proc.stderr
    assert not (r.root / "etc/swanctl/x509crl/owrt-vpn.crl").exists()
    assert r.services() == ["swanctl reload", "swanctl reload"]
    # a changed firewall setting reloads the firewall
    fw = r.root / "etc/config/firewall"
    fw.write_text(fw.read_text().replace("'4500'", "'4501'"))
    assert r.install(a.file_set).returncode == 0
    assert r.services()[-1] == "firewall reload"
    assert {s.name: s for s in r.config("firewall") if s.name}["owrt_vpn_nat_t"].options[
        "dest_port"
    ] == "4500"


def test_not_running_is_not_an_error_but_a_failed_reload_is(
    tmp_path: Path, openwrt: Userland
) -> None:
    lab = make_lab(tmp_path / "site")
    r = Router(tmp_path, openwrt)
    res = rendered(lab, tmp_path)
    r.flash(res.root)
    r.add_init_scripts("swanctl")
    proc = r.install(res.file_set)  # strongSwan not running
    assert proc.returncode == 0, proc.stderr
    assert "not running" in proc.stderr and r.services() == []
    (r.root / "etc/swanctl/conf.d/owrt-vpn.conf").write_text("tampered\n")
    r.set_running(True, init_status=1)
    proc = r.install(res.file_set)
    assert proc.returncode == 1
    assert "/etc/init.d/swanctl reload failed" in proc.stderr
    assert (r.root / "etc/swanctl/conf.d/owrt-vpn.conf").read_bytes() == (
        res.file_set / "etc/swanctl/conf.d/owrt-vpn.conf"
    ).read_bytes()


def test_keys_block_is_replaced_and_removed(lab: Lab, tmp_path: Path, openwrt: Userland) -> None:
    r = Router(tmp_path, openwrt)
    res = rendered(lab, tmp_path)
    r.flash(res.root)
    assert r.install(res.file_set, "--boot").returncode == 0
    keys = r.root / "etc/dropbear/authorized_keys"
    keys.write_text(keys.read_text() + "ssh-ed25519 AAAA added@later\n")
    # a set without management keys removes our block, keeps the others
    old = rendered(lab, tmp_path, router="old", name="old")
    assert r.install(old.file_set, "--boot").returncode == 0
    assert keys.read_text().splitlines() == [OLD_KEY, "ssh-ed25519 AAAA added@later"]


def test_legacy_style_installs_ipsec_files_and_the_fw3_include(
    lab: Lab, tmp_path: Path, openwrt: Userland
) -> None:
    r = Router(tmp_path, openwrt)
    res = rendered(lab, tmp_path, router="old")
    r.flash(res.root)
    proc = r.install(res.file_set, "--boot")
    assert proc.returncode == 0, proc.stderr
    assert (r.root / "etc/ipsec.secrets").stat().st_mode & 0o777 == 0o600
    assert (r.root / "usr/share/owrt-vpn/firewall3.sh").stat().st_mode & 0o777 == 0o755
    fw = {s.name: s for s in r.config("firewall") if s.name}
    assert fw["owrt_vpn_include"].options == {
        "path": "/usr/share/owrt-vpn/firewall3.sh",
        "type": "script",
        "reload": "1",
    }
    assert fw["owrt_vpn_ipsec2wan"].options["dest"] == "wan"
    # dhcp/network untouched (no batch for them)
    assert r.config("dhcp")[0].options["localservice"] == "1"


@pytest.mark.parametrize(
    "case",
    ["no-args", "missing-set", "bad-option", "evil-manifest"],
)
def test_bad_input_exits_2(lab: Lab, tmp_path: Path, case: str, openwrt: Userland) -> None:
    r = Router(tmp_path, openwrt)
    res = rendered(lab, tmp_path)
    installer = res.root / overlay.INSTALLER
    if case == "no-args":
        proc = r.run(installer)
    elif case == "missing-set":
        proc = r.run(installer, tmp_path / "nothing")
    elif case == "bad-option":
        proc = r.run(installer, "--frobnicate", res.file_set)
    else:
        (res.file_set / "_meta/manifest").write_text("0644 ../../etc/passwd\n")
        proc = r.run(installer, res.file_set)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("owrt-vpn: error:")
    assert not (r.root / "etc/swanctl/conf.d/owrt-vpn.conf").exists()
