"""`owrt-vpn flash` against real SSH routers (dropbear in namespaces, see sshrouter.py).

The flasher runs as the real CLI inside the management namespace; every
router is a separate dropbear with OpenWrt stand-ins whose upgrades really
drop the session, reboot and come back running the uploaded image's files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sitefile
from requires import require

from .conftest import NAMESPACES, SSH_LAB_TOOLS
from .sshrouter import RouterSpec, SshLab, TestRouter, make_client_key, openwrt_release

pytestmark = pytest.mark.integration
Proc = subprocess.CompletedProcess[str]

NEW_RELEASE = "24.10.2"
NEW_REVISION = "r28739-d9340319c6"
SWANCTL_CONF = """\
# rendered by owrt-vpn (test stand-in)
connections {
    rw-pubkey {
        version = 2
        local_addrs = %any
        pools = rw-pool
        local { auth = pubkey
            certs = server.crt }
        children { rw-pubkey { local_ts = 0.0.0.0/0 } }
    }
    rw-eap {
        version = 2
        children {
            rw-eap { local_ts = 0.0.0.0/0 }
        }
    }
}
pools { rw-pool { addrs = 10.10.10.0/24 } }
"""


def make_build(tmp: Path, build_dir: Path, *, router: str) -> dict[str, Any]:
    """A hand-made router build in the shape `owrt-vpn build` leaves (build/runner.py): a squashfs
    of the root fs (as the ImageBuilder double makes), build-info baked without digests, and
    a uci-defaults script that installs the VPN files at first boot. Quicker than a real
    build (no CA, no ImageBuilder) for the tests about the flasher's own decisions."""
    info: dict[str, Any] = {
        "format": 1,
        "router": router,
        "site": {"name": "lab"},
        "release": {"version": NEW_RELEASE, "requested": NEW_RELEASE, "revision": NEW_REVISION},
        "target": "bcm53xx",
        "subtarget": "generic",
        "device": {"profile": "phicomm_k3", "supported_devices": ["phicomm,k3"]},
        "config_style": "swanctl",
    }
    root = tmp / f"rootfs-{router}"
    (root / "etc/uci-defaults").mkdir(parents=True)
    (root / "etc/openwrt_release").write_text(openwrt_release(NEW_RELEASE, NEW_REVISION))
    (root / "etc/uci-defaults/90-owrt-vpn").write_text("cp -R /usr/share/owrt-vpn/files/. /\n")
    ours = root / "usr/share/owrt-vpn"
    (ours / "files/etc/swanctl/conf.d").mkdir(parents=True)
    (ours / "files/etc/swanctl/conf.d/owrt-vpn.conf").write_text(SWANCTL_CONF)
    (ours / "build-info.json").write_text(json.dumps(info, sort_keys=True, separators=(",", ":")))
    build_dir.mkdir(parents=True)
    name = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"
    image = build_dir / name
    subprocess.run(
        ["mksquashfs", root, image, "-quiet", "-noappend", "-all-root", "-no-progress"],
        check=True,
        capture_output=True,
    )
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    images = [{"name": name, "type": "trx", "filesystem": "squashfs", "sha256": sha}]
    info["images"] = images
    profile = {
        "id": "phicomm_k3",
        "images": images,
        "supported_devices": ["phicomm,k3"],
        "titles": [{"vendor": "Phicomm", "model": "K3"}],
    }
    (build_dir / "profile.json").write_text(json.dumps(profile))
    (build_dir / "build-info.json").write_text(json.dumps(info))
    with tarfile.open(build_dir / "overlay.tar", "w") as tar:
        data = SWANCTL_CONF.encode()
        member = tarfile.TarInfo("usr/share/owrt-vpn/files/etc/swanctl/conf.d/owrt-vpn.conf")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    (build_dir / "sha256sums").write_text(
        "".join(
            f"{hashlib.sha256(f.read_bytes()).hexdigest()} *{f.name}\n"
            for f in sorted(build_dir.iterdir())
        )
    )
    return info


@dataclass
class Fleet:
    """A site whose routers are the lab's routers, plus a runner for the CLI."""

    lab: SshLab
    dir: Path

    @property
    def site(self) -> Path:
        return self.dir / "owrt-vpn.toml"

    def write_site(self, routers: list[TestRouter]) -> None:
        """A site file with one site router per test router, each with a hand-made build."""
        management = {"identity_file": str(self.lab.client_key), "known_hosts": "known_hosts"}
        site_routers = [
            sitefile.router(
                r.spec.name,
                release=NEW_RELEASE,
                subtarget="generic",
                lan=["192.168.1.0/24"],
                management={"address": r.address, **management},
            )
            for r in routers
        ]
        for r in routers:
            make_build(self.dir, self.dir / "dist/lab/routers" / r.spec.name, router=r.spec.name)
        self.site.write_text(sitefile.site("lab", routers=site_routers, users=[]))

    def flash(self, *args: str, timeout: float = 180) -> tuple[Proc, Any]:
        """Run `owrt-vpn --json flash ARGS` in the management namespace; (process, JSON)."""
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
        env.pop("OWRT_VPN_SITE", None)
        argv = [sys.executable, "-m", "owrt_vpn", "--site", str(self.site), "--json", "flash"]
        proc = self.lab.run_in_mgmt([*argv, *args], env=env, cwd=self.dir, timeout=timeout)
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            msg = f"no JSON from flash (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            raise AssertionError(msg) from None
        return proc, data


def by_name(data: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in data["routers"]}


def sysupgrades(router: TestRouter) -> list[str]:
    """The argv of every real (not -T) sysupgrade call the router saw."""
    return [e["argv"] for e in router.events("sysupgrade-called") if not e["argv"].startswith("-T")]


@pytest.fixture
def lab(tmp_path: Path) -> Any:
    require(*SSH_LAB_TOOLS, root=NAMESPACES)
    lab = SshLab(tmp_path / "lab")
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def fleet(lab: SshLab, tmp_path: Path) -> Fleet:
    (tmp_path / "site").mkdir()
    return Fleet(lab, tmp_path / "site")


def real_site(key: Path, pub: str) -> str:
    """One router at the lab's first address, baking the flasher's key; alice's iPhone."""
    management = {
        "address": "198.51.100.10",  # the first router of a lab
        "identity_file": str(key),
        "known_hosts": "known_hosts",
        "authorized_keys": [pub],
        "lan_address": "192.168.1.1/24",
    }
    return sitefile.site(
        "lab", routers=[sitefile.router(subtarget="generic", management=management)]
    )


@dataclass(frozen=True)
class RealBuild:
    """A site built by the real `owrt-vpn build`, and the flasher key its image bakes."""

    site_dir: Path
    client_key: Path


@pytest.fixture(scope="module")
def real_build(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    """`owrt-vpn build` of a one-router site against the ImageBuilder double on a loopback
    mirror (the images are squashfs file systems with our real overlay and installer)."""
    require(*SSH_LAB_TOOLS, root=NAMESPACES)
    from imagebuilder_double.fixtures import start_served_mirror

    root = tmp_path_factory.mktemp("real-build")
    key = root / "client_key"
    make_client_key(key)
    site = root / "site"
    site.mkdir()
    pub = key.with_suffix(".pub").read_text().strip()
    (site / "owrt-vpn.toml").write_text(real_site(key, pub))
    served, server = start_served_mirror(root / "double", [("24.10.2", "bcm53xx", "generic")])
    env = dict(os.environ, OWRT_VPN_CA_PASSPHRASE="test-ca-passphrase")
    env.update(
        SOURCE_DATE_EPOCH="1700000000",
        OWRT_VPN_CACHE=str(root / "cache"),
        OWRT_VPN_KEYS_DIR=str(root / "keys"),
    )
    env.pop("OWRT_VPN_SITE", None)
    argv = [sys.executable, "-m", "owrt_vpn", "build", "--mirror", served.url]
    argv += ["--trust-key", str(served.key.public)]
    try:
        proc = subprocess.run(
            argv, cwd=site, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return RealBuild(site, key)


@pytest.fixture
def real(real_build: RealBuild, tmp_path: Path) -> Iterator[tuple[SshLab, Fleet]]:
    """A lab whose flasher key is the one the real build bakes, and a copy of the built site."""
    site = tmp_path / "site"
    shutil.copytree(real_build.site_dir, site)
    lab = SshLab(tmp_path / "lab", client_key=real_build.client_key)
    try:
        lab.start()
        yield lab, Fleet(lab, site)
    finally:
        lab.close()


def overlay_file(fleet: Fleet, rel: str) -> bytes:
    """A file of the VPN file set in the build's overlay.tar."""
    with tarfile.open(fleet.dir / "dist/lab/routers/gw/overlay.tar") as tar:
        fh = tar.extractfile(f"usr/share/owrt-vpn/files/{rel}")
        assert fh is not None
        return fh.read()


def test_real_build_flashed_end_to_end_then_skipped(real: tuple[SshLab, Fleet]) -> None:
    lab, fleet = real
    r = lab.add_router(RouterSpec("gw"))
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())

    proc, data = fleet.flash("--dry-run")
    assert proc.returncode == 0, proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "would-flash"
    assert "23.05.5 r24106-10cc5fcd00 -> 24.10.2 r28739-d9340319c6" in rep["message"]
    assert r.events("upload") == [] and r.events("sysupgrade-called") == []

    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "flashed", rep
    assert rep["before"] == {"version": "23.05.5", "revision": "r24106-10cc5fcd00"}
    assert rep["after"] == {"version": NEW_RELEASE, "revision": NEW_REVISION}
    assert rep["board_name"] == "phicomm,k3"
    # One upload, one real upgrade keeping settings, never forced.
    assert len(r.events("upload")) == 1
    assert sysupgrades(r) == [f"/tmp/{rep['image']}"]
    boots = r.events("boot")
    assert len(boots) == 2 and boots[-1]["revision"] == NEW_REVISION
    # The image's own uci-defaults script ran the real installer at first boot...
    (ran,) = r.events("uci-defaults")
    assert (ran["script"], ran["status"]) == ("90-owrt-vpn", 0), ran
    assert not r.etc_file("uci-defaults/90-owrt-vpn").exists()
    conf = "swanctl/conf.d/owrt-vpn.conf"
    assert r.etc_file(conf).read_bytes() == overlay_file(fleet, f"etc/{conf}")
    assert r.etc_file("owrt-vpn/manifest").exists()  # the installer's state, beside our marker
    # ...and charon loaded the connections of the site's one device.
    listed = lab.ssh(r, "swanctl --list-conns").stdout
    assert "rw-pubkey-alice-phone: IKEv2" in listed and "rw-pubkey-alice-phone-dn: IKEv2" in listed
    marker = json.loads(r.etc_file("owrt-vpn/flashed.json").read_text())
    image = fleet.dir / "dist/lab/routers/gw" / rep["image"]
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert marker["image_sha256"] == digest == rep["image_sha256"]
    assert (marker["release"], marker["revision"]) == (NEW_RELEASE, NEW_REVISION)

    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert by_name(data)["gw"]["status"] == "skipped"
    assert by_name(data)["gw"]["message"].startswith("already runs this image")
    assert len(r.events("upload")) == 1 and len(r.events("boot")) == 2

    # A run that flashed but died before writing the marker: the router runs the
    # build (its baked build-info says so), so the next run only writes the marker.
    assert lab.ssh(r, "rm /etc/owrt-vpn/flashed.json").returncode == 0
    proc, data = fleet.flash("--dry-run")
    assert by_name(data)["gw"]["status"] == "skipped"
    assert by_name(data)["gw"]["message"].endswith("marker missing")
    assert not r.etc_file("owrt-vpn/flashed.json").exists()
    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert by_name(data)["gw"]["message"].endswith("marker written")
    assert json.loads(r.etc_file("owrt-vpn/flashed.json").read_text())["image_sha256"] == digest
    assert len(r.events("upload")) == 1 and len(r.events("boot")) == 2

    # The rebuild rule: an edit gw does not carry (alice's iPhone goes on-demand) leaves
    # gw's build current (no mirror asked: the build's mirror is gone), so flash skips gw.
    text = fleet.site.read_text().replace('platform = "ios"', 'platform = "ios"\non_demand = true')
    assert "on_demand" in text
    fleet.site.write_text(text)
    env = dict(
        os.environ, SOURCE_DATE_EPOCH="1700000000", OWRT_VPN_CA_PASSPHRASE="test-ca-passphrase"
    )
    env.pop("OWRT_VPN_SITE", None)
    argv = [sys.executable, "-m", "owrt_vpn", "--site", str(fleet.site), "build"]
    build_info = fleet.dir / "dist/lab/routers/gw/build-info.json"
    built = subprocess.run(
        [*argv, "--mirror", json.loads(build_info.read_text())["inputs"]["mirror"]],
        cwd=fleet.dir, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert built.returncode == 0 and "gw: up to date" in built.stdout, built.stdout + built.stderr
    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert by_name(data)["gw"]["status"] == "skipped"
    assert by_name(data)["gw"]["message"].startswith("already runs this image")
    assert len(r.events("upload")) == 1 and len(r.events("boot")) == 2


def test_real_build_reset_settings_with_baked_access(real: tuple[SshLab, Fleet]) -> None:
    lab, fleet = real
    r = lab.add_router(RouterSpec("gw"))
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())
    old_key = r.host_key

    proc, data = fleet.flash("--reset-settings", "--timeout", "30")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "flashed", rep
    assert sysupgrades(r) == [f"-n /tmp/{rep['image']}"]
    # The reset wiped the router's keys: it let us in again only through the
    # keys the image bakes, which its installer put in place at first boot.
    keys = r.etc_file("dropbear/authorized_keys").read_text()
    assert keys.startswith("# owrt-vpn keys: begin")
    assert lab.client_pubkey() in keys
    # It made a new host key: the report names it, known_hosts is left alone.
    assert rep["new_host_key"] and old_key.split()[1] not in rep["new_host_key"]
    assert "new host key" in proc.stderr
    assert (fleet.dir / "known_hosts").read_text() == lab.known_hosts()


def test_refusals_leave_routers_untouched_and_others_flash(lab: SshLab, fleet: Fleet) -> None:
    wrong_board = lab.add_router(RouterSpec("wrongboard", board_name="netgear,r7000"))
    low_mem = lab.add_router(RouterSpec("lowmem", mem_available_kb=3000))
    corrupt = lab.add_router(RouterSpec("corrupt", faults=frozenset({"corrupt-upload"})))
    good = lab.add_router(RouterSpec("good"))
    fleet.write_site([wrong_board, low_mem, corrupt, good])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())

    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    reps = by_name(data)
    assert reps["wrongboard"]["status"] == "refused"
    assert "'netgear,r7000' is not one this image supports" in reps["wrongboard"]["message"]
    assert wrong_board.events("upload") == [] and wrong_board.events("sysupgrade-called") == []

    assert reps["lowmem"]["status"] == "refused"
    assert "not enough free memory" in reps["lowmem"]["message"]
    assert low_mem.events("upload") == []

    assert reps["corrupt"]["status"] == "refused"
    assert "uploaded image is damaged" in reps["corrupt"]["message"]
    assert len(corrupt.events("upload")) == 1
    assert corrupt.events("sysupgrade-called") == []  # not even -T
    assert len(corrupt.events("boot")) == 1

    assert reps["good"]["status"] == "flashed"
    assert good.events("boot")[-1]["revision"] == NEW_REVISION
    assert data["counts"] == {"flashed": 1, "refused": 3}


def test_router_lost_or_booting_old_firmware_fails(lab: SshLab, fleet: Fleet) -> None:
    """Routers that do not come back from the upgrade: the timeout names the last
    attempt really made (not an error from before the router answered again)."""
    lost = lab.add_router(RouterSpec("lost", faults=frozenset({"never-return"})))
    old = lab.add_router(RouterSpec("old", faults=frozenset({"boot-old-firmware"})))
    # drops the sessions, is down for a second (refused connections), then answers
    # again from the same boot until the timeout: it never rebooted
    stuck = lab.add_router(RouterSpec("stuck", faults=frozenset({"no-reboot"})))
    good = lab.add_router(RouterSpec("good"))
    fleet.write_site([lost, old, stuck, good])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())

    proc, data = fleet.flash("--timeout", "6", "--connect-timeout", "2")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    reps = by_name(data)
    assert reps["lost"]["status"] == "failed"
    assert reps["lost"]["message"].startswith(
        "the router did not come back within 6 s after sysupgrade (last attempt: cannot reach "
        f"root@{lost.address}: "
    ), reps["lost"]["message"]
    assert "Connection refused" in reps["lost"]["message"]
    assert reps["lost"]["stage"] == "waiting for reboot"
    assert lost.events("down-forever")

    assert reps["stuck"]["status"] == "failed"
    assert reps["stuck"]["stage"] == "waiting for reboot"
    assert reps["stuck"]["message"] == (
        "the router did not come back within 6 s after sysupgrade "
        "(last attempt: it answers, still from the same boot (boot id unchanged))"
    )
    (back,) = stuck.events("back-same-boot")
    assert back["t"] < stuck.events("upgrade-start")[0]["t"] + 3  # answering well in time
    assert len(stuck.events("boot")) == 1

    assert reps["old"]["status"] == "failed"
    assert "came back running 23.05.5 r24106-10cc5fcd00, not 24.10.2" in reps["old"]["message"]
    assert len(old.events("boot")) == 2  # it did reboot
    assert not old.etc_file("owrt-vpn/flashed.json").exists()

    assert reps["good"]["status"] == "flashed"
    assert good.etc_file("owrt-vpn/flashed.json").exists()


def test_unknown_host_key_needs_the_flag(lab: SshLab, fleet: Fleet) -> None:
    r = lab.add_router(RouterSpec("gw"))
    fleet.write_site([r])
    known = fleet.dir / "known_hosts"
    known.write_text("")

    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "refused"
    assert "host key not known" in rep["message"]
    assert "--accept-new-host-keys" in rep["hint"]
    assert r.events("upload") == []
    assert known.read_text() == ""

    proc, data = fleet.flash("--timeout", "30", "--accept-new-host-keys")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_name(data)["gw"]["status"] == "flashed"
    assert r.host_key in known.read_text()


def test_host_key_change_refused_before_the_upload_failed_after_the_upgrade(
    lab: SshLab, fleet: Fleet
) -> None:
    """A host key that changes between the checks and the upload: nothing was changed,
    so refused (nothing uploaded); one that changes with the upgrade (keeping settings):
    the router was changed, so failed, and no marker is written."""
    early = lab.add_router(RouterSpec("early", faults=frozenset({"rekey-after-ubus"})))
    late = lab.add_router(RouterSpec("late", faults=frozenset({"new-host-key"})))
    fleet.write_site([early, late])
    known = fleet.dir / "known_hosts"
    known.write_text(lab.known_hosts())

    proc, data = fleet.flash("--timeout", "10", "--connect-timeout", "2", "--jobs", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # none flashed
    reps = by_name(data)
    rep = reps["early"]
    assert (rep["status"], rep["stage"]) == ("refused", "uploading"), rep["message"]
    assert rep["message"] == f"root@{early.address}: the host key differs from the one in {known}"
    assert len(early.events("rekeyed")) == 1
    assert early.events("upload") == [] and early.events("sysupgrade-called") == []
    assert [p.name for p in (early.state / "tmp").iterdir() if p.name.startswith("openwrt")] == []

    rep = reps["late"]
    assert (rep["status"], rep["stage"]) == ("failed", "waiting for reboot"), rep
    assert rep["message"] == f"root@{late.address}: the host key differs from the one in {known}"
    assert "known_hosts" in rep["hint"]
    assert len(late.events("boot")) == 2  # it did upgrade and come back
    assert not late.etc_file("owrt-vpn/flashed.json").exists()
    assert known.read_text() == lab.known_hosts()  # never rewritten


def test_reset_settings_needs_baked_access(lab: SshLab, fleet: Fleet) -> None:
    r = lab.add_router(RouterSpec("gw"))
    fleet.write_site([r])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())

    proc, data = fleet.flash("--reset-settings", "--timeout", "30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "refused"
    assert "does not bake management access" in rep["message"]
    assert r.events("upload") == [] and r.events("sysupgrade-called") == []


def test_unmarked_router_without_vpn_is_not_marked(lab: SshLab, fleet: Fleet) -> None:
    r = lab.add_router(RouterSpec("gw"))
    fleet.write_site([r])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())
    proc, data = fleet.flash("--timeout", "30")
    assert by_name(data)["gw"]["status"] == "flashed", proc.stdout + proc.stderr
    # It runs the build, but strongSwan lost its connections and the marker is gone:
    # resuming must not paper over that with a marker.
    assert lab.ssh(r, "rm /etc/owrt-vpn/flashed.json /tmp/.charon/conns").returncode == 0
    proc, data = fleet.flash("--timeout", "30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "failed"
    assert "VPN connections are not loaded" in rep["message"]
    assert not r.etc_file("owrt-vpn/flashed.json").exists()
    assert len(r.events("upload")) == 1


def test_ten_routers_four_jobs_overlap(lab: SshLab, fleet: Fleet) -> None:
    routers = [lab.add_router(RouterSpec(f"shop{i}")) for i in range(10)]
    fleet.write_site(routers[:1])  # one site router ("shop0"): its build goes to every shop
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())
    inventory = fleet.dir / "fleet.toml"
    inventory.write_text(
        f'[defaults]\nidentity_file = "{lab.client_key}"\nknown_hosts = "known_hosts"\n'
        + "".join(
            f'\n[[routers]]\nname = "{r.spec.name}"\nrouter = "shop0"\naddress = "{r.address}"\n'
            for r in routers
        )
    )

    args = ("--inventory", str(inventory), "--jobs", "4", "--timeout", "60")
    args += ("--out", str(fleet.dir / "dist"))
    proc, data = fleet.flash(*args, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["status"] for r in data["routers"]] == ["flashed"] * 10
    spans = []
    for r in routers:
        start = r.events("upgrade-start")[0]["t"]
        back = r.events("boot")[-1]["t"]
        assert r.events("boot")[-1]["revision"] == NEW_REVISION
        spans.append((start, back))
    # The most upgrades in progress at one moment: some overlap, never more than --jobs.
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert 2 <= peak <= 4, spans


def test_interrupt_reports_what_was_done(lab: SshLab, fleet: Fleet) -> None:
    """SIGINT to owrt-vpn while one router reboots and the next waits for its turn
    (--jobs 1): each says how far it got; the waiting one was never touched."""
    lost = lab.add_router(RouterSpec("lost", faults=frozenset({"never-return"})))
    later = lab.add_router(RouterSpec("later"))
    fleet.write_site([lost, later])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())
    argv = [sys.executable, "-m", "owrt_vpn", "--site", str(fleet.site), "--json", "flash"]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.mgmt, *argv, "--timeout", "120", "--jobs", "1"],
        cwd=fleet.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not lost.events("down-forever") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lost.events("down-forever")
        proc.send_signal(signal.SIGINT)  # ip netns exec execs: this is the flasher itself
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    reps = by_name(json.loads(out))
    rep = reps["lost"]
    assert rep["status"] == "failed"
    assert rep["message"].startswith("interrupted while waiting for reboot")
    rep = reps["later"]
    assert (rep["status"], rep["stage"], rep["message"]) == (
        "failed", "queued", "interrupted before it started"
    ), rep  # fmt: skip
    assert later.events("upload") == [] and later.events("sysupgrade-called") == []


@pytest.mark.parametrize(
    ("slow", "stage"),
    [("scp", "uploading"), ("sha256sum", "verifying upload"), ("sysupgrade", "testing image")],
)
def test_ctrl_c_after_upload_names_the_stage_and_removes_the_image(
    lab: SshLab, fleet: Fleet, slow: str, stage: str
) -> None:
    """A terminal's Ctrl-C (SIGINT to the whole process group, ssh clients included)
    while the upload ends (the router has the file, scp has not returned), or while the
    router checks the uploaded image (its sha256, then `sysupgrade -T`): reported as
    interrupted at that stage, not as a router-side failure ("sha256sum ... failed",
    "sysupgrade failed (status -2)"); the image leaves the router's RAM and no real
    sysupgrade ran."""
    r = lab.add_router(RouterSpec("gw"))
    fleet.write_site([r])
    (fleet.dir / "known_hosts").write_text(lab.known_hosts())
    shims = r.state / "shims"
    real = f"/usr/bin/{slow}"
    if (shims / slow).exists():  # the sysupgrade stand-in: wrap it
        (shims / slow).rename(shims / f"{slow}.real")
        real = f"/usr/local/sbin/{slow}.real"
    hold = "touch /srv/slow-started; sleep 60"
    (shims / slow).write_text(
        f'#!/bin/sh\n{real} "$@"; rc=$?; {hold}; exit $rc\n'  # scp: once the file is in
        if slow == "scp"
        else f'#!/bin/sh\n{hold}\nexec {real} "$@"\n'
    )
    (shims / slow).chmod(0o755)
    uploaded: list[str] = []

    def checking() -> bool:  # the router's /tmp holds the image now
        if not (r.state / "slow-started").exists():
            return False
        uploaded.extend(p.name for p in (r.state / "tmp").iterdir() if p.name.startswith("openwrt"))
        return True

    argv = [sys.executable, "-m", "owrt_vpn", "--site", str(fleet.site), "--json", "flash"]
    proc = lab.ctrl_c_in_mgmt([*argv, "--timeout", "60"], when=checking, cwd=fleet.dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(json.loads(proc.stdout))["gw"]
    assert rep["status"] == "failed", rep
    assert rep["stage"] == stage
    assert rep["message"] == f"interrupted while {stage}"
    assert rep["hint"] == "run flash again: finished routers are skipped"
    order = ["connecting", "checking", "uploading", "verifying upload", "testing image"]
    assert [s["stage"] for s in rep["stages"]] == order[: order.index(stage) + 1]
    assert sysupgrades(r) == [] and r.events("upgrade-start") == []
    assert rep["image"] in uploaded
    assert not (r.state / "tmp" / rep["image"]).exists()  # removed from the router's RAM
