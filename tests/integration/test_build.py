"""`owrt-vpn build` end to end: the real CLI, a signed mirror of ImageBuilder doubles on
loopback, the real overlay and PKI; then the firmware is opened with unsquashfs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sitefile
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrtcli import CliRunner, cli_env

pytestmark = pytest.mark.integration

K3_TRX = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"
C7 = "openwrt-24.10.2-vpn-gw-ath79-generic-tplink_archer-c7-v2-squashfs"


@dataclass
class Lab:
    """A site with a PKI, a cache, and the served mirror."""

    site: Path
    cache: Path
    env: dict[str, str]
    mirror: ServedMirror
    cli: CliRunner

    def build(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "build",
            "--mirror",
            self.mirror.url,
            "--trust-key",
            str(self.mirror.key.public),
            *args,
            cwd=self.site,
            env=self.env,
            check=check,
        )

    @property
    def router_dir(self) -> Path:
        return self.site / "dist" / "home" / "routers" / "gw"

    def archive(self, target: str = "bcm53xx") -> str:
        return self.mirror.archive_path("24.10.2", target, "generic")

    def sig(self, target: str = "bcm53xx") -> Path:
        return self.mirror.mirror.target_dir("24.10.2", target, "generic") / "sha256sums.sig"


@pytest.fixture
def lab(tmp_path: Path, cli: CliRunner, served_mirror: ServedMirror) -> Iterator[Lab]:  # noqa: F811
    site = tmp_path / "site"
    site.mkdir()
    env = {
        "OWRT_VPN_CACHE": str(tmp_path / "cache"),
        "OWRT_VPN_KEYS_DIR": str(tmp_path / "userkeys"),
        "OWRT_VPN_MIRROR": "/nonexistent/owrt-vpn-test-mirror",  # builds pass --mirror
    }
    cli("init", "--server-id", "vpn.example.org", cwd=site, env=env, check=True)
    cli("pki", "init", cwd=site, env=env, check=True)
    yield Lab(site, tmp_path / "cache", env, served_mirror, cli)


def assert_cache_clean(cache: Path) -> None:
    """Only verified archives, no partial download, only complete trees."""
    for archive in cache.glob("archives/*/*"):
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == archive.parent.name, archive
    assert list(cache.glob("partial/*")) == []
    for tree in cache.glob("trees/*"):
        if not tree.name.startswith("."):
            marker = json.loads((tree / ".owrt-vpn-tree.json").read_text())
            assert marker["sha256"] == tree.name
    assert [p for p in cache.glob("trees/.*") if p.is_dir()] == []
    assert [p for p in cache.glob("work/*") if p.is_dir()] == []


def unsquash(image: Path, dest: Path) -> Path:
    subprocess.run(
        ["unsquashfs", "-no-xattrs", "-d", str(dest), str(image)], check=True, capture_output=True
    )
    return dest


def installed_packages(root: Path) -> set[str]:
    status = root / "usr/lib/opkg/status"
    return set(re.findall(r"^Package: (\S+)$", status.read_text(), re.M))


def test_bcm53xx_build_then_noop_then_rebuild_on_change(lab: Lab, tmp_path: Path) -> None:
    proc = lab.build("--target", "bcm53xx")
    assert proc.returncode == 0, proc.stderr
    out = lab.router_dir
    image = out / K3_TRX
    assert image.is_file()
    assert "gw: built 24.10.2 bcm53xx/generic phicomm_k3" in proc.stdout
    assert "signed by key " + lab.mirror.key.keynum_hex in proc.stderr

    # dist: every file listed in sha256sums, the image private (it holds the key).
    subprocess.run(["sha256sum", "--quiet", "-c", "sha256sums"], cwd=out, check=True)
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "overlay.tar").stat().st_mode) == 0o600
    info = json.loads((out / "build-info.json").read_text())
    assert info["release"] == {
        "version": "24.10.2",
        "requested": "24.10.2",
        "revision": "r28739-d9340319c6",
    }
    assert (info["target"], info["subtarget"], info["device"]["profile"]) == (
        "bcm53xx",
        "generic",
        "phicomm_k3",
    )
    assert info["device"]["supported_devices"] == ["phicomm,k3"]
    assert info["signature"] == {
        "verified": True,
        "skipped": False,
        "key_id": lab.mirror.key.keynum_hex,
        "key_comment": "test-release key public key",
    }
    archive = lab.mirror.mirror.archive("24.10.2", "bcm53xx", "generic")
    assert info["imagebuilder"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert info["imagebuilder"]["url"] == lab.mirror.url + lab.archive()
    assert info["images"] == [
        {
            "name": K3_TRX,
            "type": "trx",
            "filesystem": "squashfs",
            "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
            "size": image.stat().st_size,
        }
    ]
    assert (
        info["overlay"]["sha256"] == hashlib.sha256((out / "overlay.tar").read_bytes()).hexdigest()
    )
    assert info["source_date_epoch"]["overlay"] == 1700000000
    profile = json.loads((out / "profile.json").read_text())
    # image_prefix names our images (with EXTRA_IMAGE_NAME), not the release's own
    assert profile["image_prefix"] == "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3"
    assert all(i["name"].startswith(profile["image_prefix"]) for i in profile["images"])
    assert profile["supported_devices"] == ["phicomm,k3"] and profile["images"] == info["images"]
    lock = json.loads((lab.site / "owrt-vpn.lock").read_text())
    assert lock["routers"]["gw"]["imagebuilder"]["sha256"] == info["imagebuilder"]["sha256"]
    assert lock["routers"]["gw"]["packages"] == info["packages"]["installed"]

    # The firmware: our files, the CA, the server cert and key (0600), the
    # uci-defaults script, every package we asked for, the build-info.
    root = unsquash(image, tmp_path / "rootfs")
    files = root / "usr/share/owrt-vpn/files"
    assert (files / "etc/swanctl/conf.d/owrt-vpn.conf").is_file()
    ca = (lab.site / "pki/ca.crt").read_bytes()
    assert (files / "etc/swanctl/x509ca/owrt-vpn-ca.crt").read_bytes() == ca
    assert (files / "etc/swanctl/x509/gw.crt").read_bytes() == (
        lab.site / "pki/servers/gw.crt"
    ).read_bytes()
    key = files / "etc/swanctl/private/gw.key"
    assert key.read_bytes() == (lab.site / "pki/servers/gw.key").read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert os.access(root / "etc/uci-defaults/90-owrt-vpn", os.X_OK)
    wanted = {p for p in info["packages"]["requested"] if not p.startswith("-")}
    assert wanted and wanted <= installed_packages(root)
    assert {"strongswan-swanctl", "strongswan-mod-openssl"} <= wanted
    baked = json.loads((root / "usr/share/owrt-vpn/build-info.json").read_text())
    assert baked == {k: v for k, v in info.items() if k != "images"}
    release = (root / "etc/openwrt_release").read_text()
    assert "DISTRIB_RELEASE='24.10.2'" in release and "r28739-d9340319c6" in release
    assert_cache_clean(lab.cache)

    # Nothing changed: "up to date", not one request to the mirror.
    lab.mirror.server.reset_log()
    again = lab.build("--target", "bcm53xx")
    assert again.returncode == 0, again.stderr
    assert "gw: up to date" in again.stdout
    assert lab.mirror.server.log == []
    assert json.loads((out / "build-info.json").read_text()) == info
    # ... and without loading the heavy libraries (lazy imports; file digests only).
    argv = [sys.executable, "-X", "importtime", "-m", "owrt_vpn", "build", "--mirror"]
    timed = subprocess.run(
        [*argv, lab.mirror.url, "--target", "bcm53xx"],
        cwd=lab.site,
        env=cli_env(lab.env),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "gw: up to date" in timed.stdout
    loaded = set(re.findall(r"\|\s+([\w.]+)$", timed.stderr, re.M))
    assert loaded and not loaded & {"cryptography", "jinja2", "requests", "rich", "zstandard"}
    assert lab.mirror.server.log == []

    # A changed user: rebuilt, with the cached ImageBuilder (no archive request).
    site_file = lab.site / "owrt-vpn.toml"
    site_file.write_text(site_file.read_text().replace('name = "laptop"', 'name = "desktop"'))
    changed = lab.build("--target", "bcm53xx")
    assert changed.returncode == 0, changed.stderr
    assert "gw: building (changed: site.users)" in changed.stderr
    assert "gw: built" in changed.stdout
    assert lab.mirror.server.count(lab.archive()) == 0
    assert json.loads((out / "build-info.json").read_text())["input_key"] != info["input_key"]
    assert_cache_clean(lab.cache)


def test_firmware_holds_no_ca_key_and_no_client_keys(lab: Lab, tmp_path: Path) -> None:
    assert lab.build(check=True).returncode == 0
    root = unsquash(lab.router_dir / K3_TRX, tmp_path / "rootfs")
    pki = lab.site / "pki"
    secrets = {p: p.read_bytes() for p in [pki / "ca.key", *pki.glob("clients/*/*.key")]}
    secrets |= {p: p.read_bytes() for p in pki.glob("clients/*/*.p12")}
    assert len(secrets) >= 3  # the CA key and alice's phone and laptop keys (+ .p12)
    server_key = (pki / "servers/gw.key").read_bytes()
    private = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        for secret_path, secret in secrets.items():
            assert secret.strip() not in data, f"{secret_path.name} leaked into {path}"
        if b"PRIVATE KEY" in data or path.name.endswith(".key"):
            private.append(path)
            assert data == server_key
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert [p.name for p in private] == ["gw.key"]
    # The dist overlay tarball: the same rule.
    import tarfile

    with tarfile.open(lab.router_dir / "overlay.tar") as tar:
        keys = [m for m in tar.getmembers() if m.name.endswith(".key")]
        assert [(m.name.rsplit("/", 1)[-1], stat.S_IMODE(m.mode)) for m in keys] == [
            ("gw.key", 0o600)
        ]


def test_ath79_builds_sysupgrade_and_factory(lab: Lab, tmp_path: Path) -> None:
    proc = lab.build("--target", "ath79", "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^gw \| .*Building images", proc.stderr, re.M)  # make output, --verbose
    assert "Building images" in (lab.site / "dist/home/logs/gw.log").read_text()
    sysupgrade = lab.router_dir / f"{C7}-sysupgrade.bin"
    factory = lab.router_dir / f"{C7}-factory.bin"
    assert sysupgrade.is_file() and factory.is_file()
    info = json.loads((lab.router_dir / "build-info.json").read_text())
    assert [(i["name"], i["type"]) for i in info["images"]] == [
        (sysupgrade.name, "sysupgrade"),
        (factory.name, "factory"),
    ]
    assert info["device"]["supported_devices"] == ["tplink,archer-c7-v2"]
    root = unsquash(sysupgrade, tmp_path / "rootfs")
    assert (root / "usr/share/owrt-vpn/files/etc/swanctl/private/gw.key").is_file()
    assert "DISTRIB_TARGET='ath79/generic'" in (root / "etc/openwrt_release").read_text()
    assert_cache_clean(lab.cache)


def test_two_routers_build_in_parallel_each_in_its_own_copy(lab: Lab) -> None:
    site_file = lab.site / "owrt-vpn.toml"
    text = site_file.read_text()
    head, users = text.split("[[users]]", 1)
    site_file.write_text(head + sitefile.SECOND_ROUTER + "\n[[users]]" + users)
    proc = lab.build("--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^gw: built .* -> ", proc.stdout, re.M)
    assert re.search(r"^gw2: built 24.10.2 ath79/generic tplink_archer-c7-v5", proc.stdout, re.M)
    dist = lab.site / "dist" / "home" / "routers"
    assert (dist / "gw" / K3_TRX).is_file()
    c7v5 = "openwrt-24.10.2-vpn-gw2-ath79-generic-tplink_archer-c7-v5-squashfs-sysupgrade.bin"
    assert (dist / "gw2" / c7v5).is_file()
    # Both started before either finished, in different ImageBuilder copies.
    stages = proc.stderr.splitlines()
    first_done = min(i for i, line in enumerate(stages) if ": done: " in line)
    for router in ("gw", "gw2"):
        started = re.compile(rf"\] {router}: (copying|preparing) the ImageBuilder")
        assert any(started.search(s) for s in stages[:first_done]), proc.stderr
    logs = lab.site / "dist" / "home" / "logs"
    dirs = {
        r: set(re.findall(r"^\+ \(in (\S+)\) make", (logs / f"{r}.log").read_text(), re.M))
        for r in ("gw", "gw2")
    }
    assert len(dirs["gw"]) == 1 and len(dirs["gw2"]) == 1
    assert dirs["gw"] != dirs["gw2"]
    assert not any("/trees/" in d for d in dirs["gw"] | dirs["gw2"])
    lock = json.loads((lab.site / "owrt-vpn.lock").read_text())
    assert sorted(lock["routers"]) == ["gw", "gw2"]
    assert_cache_clean(lab.cache)

    # The rebuild rule: an edit that does not reach gw (a user allowed on gw2 only, a
    # client-only device setting) rebuilds gw2 alone, and gw's image stays byte-identical.
    gw_image = (dist / "gw" / K3_TRX).read_bytes()
    gw_info = (dist / "gw" / "build-info.json").read_bytes()
    text = site_file.read_text().replace('name = "phone"', 'name = "phone"\non_demand = true', 1)
    assert "on_demand = true" in text
    site_file.write_text(text + sitefile.user("bob", [("tablet", "android")], routers=["gw2"]))
    again = lab.build("--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert re.search(r"^gw: up to date", again.stdout, re.M), again.stdout
    assert "gw2: building (changed: site.users)" in again.stderr
    forced = lab.build("--router", "gw", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (dist / "gw" / K3_TRX).read_bytes() == gw_image
    assert (dist / "gw" / "build-info.json").read_bytes() == gw_info

    # A batch names each router once per error line ("error: gw: gw: ..." before).
    (lab.site / "owrt-vpn.lock").unlink()
    locked = lab.build("--locked")
    assert locked.returncode == 1, locked.stderr
    for router in ("gw", "gw2"):
        assert f"error: {router}: --locked, but owrt-vpn.lock has no entry" in locked.stderr
    assert "error: gw: gw:" not in locked.stderr


def test_locked_refuses_another_imagebuilder(lab: Lab) -> None:
    assert lab.build(check=True).returncode == 0
    lock_path = lab.site / "owrt-vpn.lock"
    assert lab.build("--locked", check=True).returncode == 0  # unchanged: fine
    lock = json.loads(lock_path.read_text())
    pinned = lock["routers"]["gw"]["imagebuilder"]["sha256"]
    lock["routers"]["gw"]["imagebuilder"]["sha256"] = "0" * 64
    lock_path.write_text(json.dumps(lock))
    noop = lab.build("--locked")  # nothing to build, but the lock still must match
    assert noop.returncode == 3 and "pins " + "0" * 64 in noop.stderr
    proc = lab.build("--locked", "--force")
    assert proc.returncode == 3, proc.stderr
    assert f"has sha256 {pinned}" in proc.stderr and "pins " + "0" * 64 in proc.stderr
    assert json.loads(lock_path.read_text()) == lock  # --locked never rewrites the lock
    # Package versions are checked too.
    lock["routers"]["gw"]["imagebuilder"]["sha256"] = pinned
    lock["routers"]["gw"]["packages"]["busybox"] = "0.0-r0"
    lock_path.write_text(json.dumps(lock))
    proc = lab.build("--locked", "--force")
    assert proc.returncode == 3 and "busybox 0.0-r0 -> " in proc.stderr


def test_override_build_leaves_the_site_lock_alone(lab: Lab) -> None:
    assert lab.build(check=True).returncode == 0
    lock_path = lab.site / "owrt-vpn.lock"
    pinned = json.loads(lock_path.read_text())["routers"]
    proc = lab.build("--router", "gw", "--target", "ath79")
    assert proc.returncode == 0, proc.stderr
    assert "recorded under overrides.gw in owrt-vpn.lock" in proc.stderr
    lock = json.loads(lock_path.read_text())
    assert lock["routers"] == pinned
    assert lock["overrides"]["gw"]["target"] == "ath79/generic"
    # The site's own build, --locked: checked against the site's pin, so it passes.
    proc = lab.build("--locked")
    assert proc.returncode == 0, proc.stderr
    assert "gw: built 24.10.2 bcm53xx/generic phicomm_k3" in proc.stdout
    # The override again, --locked: checked against its own record.
    proc = lab.build("--target", "ath79", "--locked")
    assert proc.returncode == 0, proc.stderr
    # The site moved to another device: --locked names that, not a checksum.
    site_file = lab.site / "owrt-vpn.toml"
    text = site_file.read_text().replace('target = "bcm53xx"', 'target = "ath79"')
    site_file.write_text(text.replace('"phicomm_k3"', '"tplink_archer-c7-v2"'))
    proc = lab.build("--locked")
    assert proc.returncode == 3, proc.stderr
    assert (
        "gw: --locked: owrt-vpn.lock (routers.gw) pins another build: "
        "target bcm53xx/generic -> ath79/generic; device phicomm_k3 -> tplink_archer-c7-v2"
    ) in proc.stderr
    assert "sha256" not in proc.stderr
    # The site's own build has no overrides to drop: the hint does not suggest it.
    assert "drop the --target/--device/--release overrides" not in proc.stderr
    assert json.loads(lock_path.read_text()) == lock


def test_unknown_device_gets_the_closest_names(lab: Lab) -> None:
    proc = lab.build("--device", "phicomm_k2")
    assert proc.returncode == 2
    assert "device 'phicomm_k2' is not a profile of bcm53xx/generic 24.10.2" in proc.stderr
    assert "closest profile names: phicomm_k3" in proc.stderr


# ------------------------------------------------------------------ faults


def test_bad_signature_is_refused(lab: Lab) -> None:
    from imagebuilder_double.mirror_tree import corrupt_signature

    corrupt_signature(lab.sig())
    proc = lab.build()
    assert proc.returncode == 3
    assert "BAD signature by key " + lab.mirror.key.keynum_hex in proc.stderr
    assert lab.mirror.server.count(lab.archive()) == 0
    assert not lab.router_dir.exists()
    assert list(lab.cache.glob("archives/*/*")) == []
    assert_cache_clean(lab.cache)


def test_signature_by_unknown_key_names_it_and_how_to_add_it(lab: Lab, tmp_path: Path) -> None:
    from imagebuilder_double.mirror_tree import sign_with_other_key

    other = sign_with_other_key(lab.mirror.mirror, "24.10.2", "bcm53xx", "generic", tmp_path / "k2")
    proc = lab.build()
    assert proc.returncode == 3
    assert f"signed by key {other.keynum_hex}, which is not in the keyring" in proc.stderr
    assert "owrt-vpn keys add FILE" in proc.stderr and "signatures" in proc.stderr
    assert lab.mirror.server.count(lab.archive()) == 0
    assert_cache_clean(lab.cache)
    # After checking it, the user adds the key: the build goes through.
    lab.cli("keys", "add", str(other.public), cwd=lab.site, env=lab.env, check=True)
    assert lab.build().returncode == 0


def test_insecure_skip_signature_warns_and_is_recorded(lab: Lab) -> None:
    from imagebuilder_double.mirror_tree import corrupt_signature

    corrupt_signature(lab.sig())
    proc = lab.build("--insecure-skip-signature")
    assert proc.returncode == 0, proc.stderr
    assert "warning: --insecure-skip-signature" in proc.stderr
    info = json.loads((lab.router_dir / "build-info.json").read_text())
    assert info["signature"]["skipped"] is True and info["signature"]["verified"] is False


def test_sha256_mismatch_is_refused(lab: Lab) -> None:
    from imagebuilder_double.mirror_tree import tamper_archive

    tamper_archive(lab.mirror.mirror, "24.10.2", "bcm53xx", "generic")
    proc = lab.build()
    assert proc.returncode == 3
    assert "sha256 mismatch" in proc.stderr
    assert not lab.router_dir.exists()
    assert list(lab.cache.glob("archives/*/*")) == []
    assert_cache_clean(lab.cache)


def test_404_fails_clearly(lab: Lab) -> None:
    lab.mirror.server.not_found(lab.archive())
    proc = lab.build()
    assert proc.returncode == 1
    assert "not found on the mirror (HTTP 404" in proc.stderr
    assert lab.mirror.server.count(lab.archive()) == 1
    assert_cache_clean(lab.cache)


def test_http_500_then_success_is_retried(lab: Lab) -> None:
    lab.mirror.server.fail(lab.archive(), 500, times=2)
    proc = lab.build()
    assert proc.returncode == 0, proc.stderr
    assert [r.status for r in lab.mirror.server.requests_for(lab.archive())] == [500, 500, 200]
    assert (lab.router_dir / K3_TRX).is_file()
    assert_cache_clean(lab.cache)


def test_connection_cut_mid_transfer_is_resumed(lab: Lab) -> None:
    lab.mirror.server.cut(lab.archive(), after=5000)
    proc = lab.build()
    assert proc.returncode == 0, proc.stderr
    reqs = lab.mirror.server.requests_for(lab.archive())
    assert len(reqs) == 2 and not reqs[0].complete and reqs[0].bytes_sent == 5000
    assert reqs[1].range == "bytes=5000-" and reqs[1].status == 206
    assert (lab.router_dir / K3_TRX).is_file()
    assert_cache_clean(lab.cache)


def test_killed_mid_download_then_rerun_resumes(lab: Lab) -> None:
    lab.mirror.server.slow(lab.archive(), delay=2.0)
    argv = [sys.executable, "-m", "owrt_vpn", "build", "--mirror", lab.mirror.url]
    argv += ["--trust-key", str(lab.mirror.key.public)]
    proc = subprocess.Popen(
        argv, cwd=lab.site, env=cli_env(lab.env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        import time

        deadline = time.monotonic() + 30
        parts: list[Path] = []
        while time.monotonic() < deadline and not parts:
            parts = [p for p in lab.cache.glob("partial/*.part") if p.stat().st_size > 0]
            time.sleep(0.05)
        assert parts, "the download never started"
    finally:
        proc.kill()
        proc.wait()
    have = parts[0].stat().st_size
    assert 0 < have < lab.mirror.mirror.archive("24.10.2", "bcm53xx", "generic").stat().st_size
    assert list(lab.cache.glob("archives/*/*")) == []
    lab.mirror.server.clear_faults()
    rerun = lab.build()
    assert rerun.returncode == 0, rerun.stderr
    last = lab.mirror.server.requests_for(lab.archive())[-1]
    assert last.range == f"bytes={have}-" and last.status == 206
    assert_cache_clean(lab.cache)


def test_first_build_creates_the_ca(lab: Lab) -> None:
    import shutil

    shutil.rmtree(lab.site / "pki")
    proc = lab.build()
    assert proc.returncode == 0, proc.stderr
    assert "created the CA in" in proc.stderr
    assert (lab.site / "pki/ca.crt").is_file() and (lab.site / "pki/servers/gw.key").is_file()
    assert (lab.router_dir / K3_TRX).is_file()


def test_one_router_failing_of_two_is_a_partial_failure(lab: Lab) -> None:
    site_file = lab.site / "owrt-vpn.toml"
    head, users = site_file.read_text().split("[[users]]", 1)
    broken = sitefile.SECOND_ROUTER.replace("tplink_archer-c7-v5", "tplink_archer-c7-v9")
    site_file.write_text(head + broken + "\n[[users]]" + users)
    proc = lab.build("--jobs", "2")
    assert proc.returncode == 4, proc.stderr
    assert re.search(r"^gw: built ", proc.stdout, re.M)
    assert "gw2: FAILED" in proc.stdout
    assert "error: gw2: device 'tplink_archer-c7-v9' is not a profile" in proc.stderr
    assert (lab.router_dir / K3_TRX).is_file()
    assert not (lab.site / "dist/home/routers/gw2").exists()
    assert sorted(json.loads((lab.site / "owrt-vpn.lock").read_text())["routers"]) == ["gw"]


def test_build_writes_the_client_bundles_beside_the_firmware(lab: Lab) -> None:
    clients = lab.site / "dist" / "home" / "clients"
    proc = lab.build("--json", check=True)
    data = json.loads(proc.stdout)
    assert data["bundles"] == {
        "status": "written",
        "clients": "dist/home/clients",
        "devices": 2,
        "reason": None,
    }
    zips = sorted(p.name for p in (clients / "alice").glob("*.zip"))
    assert zips == ["alice-laptop.zip", "alice-phone.zip"]
    # Passwords are never in build output (CI logs): `owrt-vpn bundle` shows them.
    p12_password = (lab.site / "pki/clients/alice/laptop.p12.password").read_text().strip()
    assert p12_password and p12_password not in proc.stdout + proc.stderr
    before = {p: p.read_bytes() for p in clients.rglob("*") if p.is_file()}
    dist = lab.site / "dist" / "home"
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in dist.rglob("*")}
    secret = {p for p, m in modes.items() if not m & 0o077}
    assert lab.router_dir in secret and lab.router_dir / "overlay.tar" in secret
    assert clients / "alice" in secret and clients / "alice" / "alice-phone.zip" in secret
    # Someone loosens the modes (`chmod -R a+rX dist`); the next build skips the
    # router and the bundles as up to date, and still tightens them back.
    subprocess.run(["chmod", "-R", "a+rX", str(dist)], check=True)

    proc = lab.build("--json", check=True)
    again = json.loads(proc.stdout)
    assert again["bundles"]["status"] == "up-to-date"
    assert {p: p.read_bytes() for p in clients.rglob("*") if p.is_file()} == before
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in dist.rglob("*")} == modes
    warned = {ln.split(": mode ")[0][len("warning: ") :] for ln in proc.stderr.splitlines()
              if " lets other users read " in ln}  # fmt: skip
    assert warned == {str(p.relative_to(lab.site)) for p in secret}, proc.stderr

    # A new device: the bundles are rewritten, the firmware is not rebuilt.
    site_file = lab.site / "owrt-vpn.toml"
    site_file.write_text(
        site_file.read_text() + '\n[[users.devices]]\nname = "tablet"\nplatform = "android"\n'
    )
    third = json.loads(lab.build("--json", check=True).stdout)
    assert third["bundles"]["status"] == "written" and third["bundles"]["devices"] == 3
    assert (clients / "alice" / "alice-tablet.zip").is_file()

    fourth = json.loads(lab.build("--json", "--no-bundles", check=True).stdout)
    assert "bundles" not in fourth


def test_build_skips_bundles_when_the_pki_cannot_issue(lab: Lab) -> None:
    # A new device needs a certificate; without the CA passphrase none can be
    # issued: the firmware still builds, the bundles are skipped with the reason.
    site_file = lab.site / "owrt-vpn.toml"
    site_file.write_text(
        site_file.read_text() + '\n[[users.devices]]\nname = "tablet"\nplatform = "android"\n'
    )
    env = dict(lab.env, OWRT_VPN_CA_PASSPHRASE="")
    proc = lab.cli(
        "build", "--json", "--mirror", lab.mirror.url,
        "--trust-key", str(lab.mirror.key.public),
        cwd=lab.site, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["bundles"]["status"] == "skipped" and data["bundles"]["reason"]
    assert "warning: client bundles not written:" in proc.stderr
    assert (lab.router_dir / K3_TRX).is_file()
