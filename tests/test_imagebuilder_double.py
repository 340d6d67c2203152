"""The ImageBuilder double behaves like reference/imagebuilder.md says the real one does."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from imagebuilder_double import (
    RELEASES,
    Variant,
    archive_name,
    cached_imagebuilder,
    extract_imagebuilder,
    make_imagebuilder,
)
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from imagebuilder_double.mirror_tree import (
    corrupt_signature,
    make_mirror,
    make_signing_key,
    sign_with_other_key,
    tamper_archive,
    wrong_sha256_line,
)
from imagebuilder_double.package_data import packages
from integration.mirror import MirrorServer, mirror_server  # noqa: F401

K3 = "openwrt-24.10.2-bcm53xx-generic-phicomm_k3"


def ib(
    tmp_path: Path,
    release: str = "24.10.2",
    target: str = "bcm53xx",
    subtarget: str = "generic",
    variant: Variant | None = None,
) -> Path:
    """A fresh extracted ImageBuilder tree (each build gets its own, like the driver's)."""
    archive = cached_imagebuilder(release, target, subtarget, variant)
    return extract_imagebuilder(archive, tmp_path / "ib")


def make(tree: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``make ARGS`` in the ImageBuilder tree."""
    # Drop the variables of an outer make (`make test`): with MAKELEVEL set, the
    # inner make prints "Entering directory" lines a top-level run would not.
    skip = ("PROFILE", "PACKAGES", "FILES", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")
    e = {k: v for k, v in os.environ.items() if k not in skip}
    e.update(env)
    return subprocess.run(
        ["make", *args], cwd=tree, capture_output=True, text=True, env=e, timeout=120
    )


def listing(image: Path) -> dict[str, str]:
    """``unsquashfs -lls``: path (without squashfs-root) -> mode string."""
    out = subprocess.run(
        ["unsquashfs", "-lls", str(image)], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split(" -> ")[0].split()
        if len(parts) >= 6 and parts[-1].startswith("squashfs-root"):
            entries[parts[-1].removeprefix("squashfs-root")] = parts[0]
    return entries


def cat(image: Path, path: str) -> str:
    """One file's content from a squashfs image."""
    return subprocess.run(
        ["unsquashfs", "-cat", str(image), path], capture_output=True, text=True, check=True
    ).stdout


def overlay(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    (files / "etc/swanctl/conf.d").mkdir(parents=True)
    (files / "etc/swanctl/private").mkdir(parents=True)
    (files / "etc/uci-defaults").mkdir(parents=True)
    (files / "etc/swanctl/conf.d/owrt-vpn.conf").write_text("connections {}\n")
    key = files / "etc/swanctl/private/server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    script = files / "etc/uci-defaults/90-owrt-vpn"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return files


def test_make_info_lists_real_profiles(tmp_path: Path) -> None:
    res = make(ib(tmp_path), "info")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == 'Current Target: "bcm53xx/generic"'
    assert lines[1] == 'Current Architecture: "arm"'
    assert lines[2] == 'Current Revision: "r28739-d9340319c6"'
    assert lines[3].startswith("Default Packages: ") and " dnsmasq " in lines[3]
    assert "Available Profiles:" in lines
    i = lines.index("phicomm_k3:")
    assert lines[i + 1] == "    Phicomm K3"
    assert lines[i + 2].startswith("    Packages: kmod-brcmfmac ")
    assert lines[i + 3] == "    hasImageMetadata: 1"
    assert lines[i + 4] == "    SupportedDevices: phicomm,k3"
    for prof in ("dlink_dir-885l:", "netgear_r7000:", "asus_rt-ac68u:", "tenda_ac9:"):
        assert prof in lines


def test_image_phicomm_k3(tmp_path: Path) -> None:
    tree, bin_dir = ib(tmp_path), tmp_path / "bin"
    res = make(
        tree,
        "image",
        "PROFILE=phicomm_k3",
        "PACKAGES=strongswan-default strongswan-mod-openssl strongswan-ipsec -ppp -ppp-mod-pppoe",
        f"FILES={overlay(tmp_path)}",
        f"BIN_DIR={bin_dir}",
        "DISABLED_SERVICES=ipsec",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Building images for bcm53xx - Phicomm K3" in res.stdout
    image = bin_dir / f"{K3}-squashfs.trx"
    names = sorted(p.name for p in bin_dir.iterdir())
    assert names == sorted([image.name, f"{K3}.manifest", "profiles.json", "sha256sums"])

    files = listing(image)
    assert files["/etc/swanctl/conf.d/owrt-vpn.conf"].startswith("-rw-r--r--")
    assert files["/etc/swanctl/private/server.key"] == "-rw-------"
    assert files["/etc/uci-defaults/90-owrt-vpn"] == "-rwxr-xr-x"
    assert "/usr/lib/ipsec/plugins/libstrongswan-openssl.so" in files
    assert "/usr/lib/ipsec/plugins/libstrongswan-md4.so" not in files  # not in -default
    assert "/etc/rc.d/S90swanctl" in files and "/etc/rc.d/S19dnsmasq" in files
    assert "/etc/init.d/ipsec" in files and "/etc/rc.d/S90ipsec" not in files
    release = cat(image, "/etc/openwrt_release")
    assert "DISTRIB_RELEASE='24.10.2'" in release
    assert "DISTRIB_REVISION='r28739-d9340319c6'" in release
    assert "DISTRIB_TARGET='bcm53xx/generic'" in release
    status = cat(image, "/usr/lib/opkg/status")
    assert "Package: strongswan-mod-openssl\nVersion: 5.9.14-r1\n" in status
    assert "Package: libopenssl3\n" in status  # pulled in through Provides: libopenssl
    assert "include /var/swanctl/swanctl.conf" in cat(image, "/etc/swanctl/swanctl.conf")

    manifest = (bin_dir / f"{K3}.manifest").read_text().splitlines()
    assert (
        "strongswan-swanctl - 5.9.14-r1" in manifest
        and "strongswan-mod-vici - 5.9.14-r1" in manifest
    )
    assert not any(m.startswith("ppp ") or m.startswith("ppp-mod-pppoe ") for m in manifest)
    assert manifest == sorted(manifest)

    sums = (bin_dir / "sha256sums").read_text().splitlines()
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert f"{digest} *{image.name}" in sums
    prof = json.loads((bin_dir / "profiles.json").read_text())
    assert prof["target"] == "bcm53xx/generic" and prof["version_number"] == "24.10.2"
    assert prof["version_code"] == "r28739-d9340319c6" and prof["metadata_version"] == 1
    k3 = prof["profiles"]["phicomm_k3"]
    assert k3["supported_devices"] == ["phicomm,k3"]
    assert k3["titles"] == [{"vendor": "Phicomm", "model": "K3"}]
    assert k3["images"] == [
        {
            "type": "trx",
            "name": image.name,
            "sha256": digest,
            "sha256_unsigned": digest,
            "filesystem": "squashfs",
        }
    ]
    # written inside the tree, like the real one
    assert (tree / "build_dir").is_dir() and (tree / "staging_dir").is_dir()


def test_image_is_reproducible_and_ignores_env_epoch(tmp_path: Path) -> None:
    digests = []
    for i, epoch in enumerate(("1", "1700000000")):
        tree, bin_dir = ib(tmp_path / str(i)), tmp_path / f"bin{i}"
        res = make(
            tree,
            "image",
            "PROFILE=phicomm_k3",
            f"BIN_DIR={bin_dir}",
            "EXTRA_IMAGE_NAME=Home_Site",
            SOURCE_DATE_EPOCH=epoch,
        )
        assert res.returncode == 0, res.stderr
        image = bin_dir / "openwrt-24.10.2-home-site-bcm53xx-generic-phicomm_k3-squashfs.trx"
        digests.append(hashlib.sha256(image.read_bytes()).hexdigest())
        assert (bin_dir / "openwrt-24.10.2-home-site-bcm53xx-generic-phicomm_k3.manifest").exists()
    assert digests[0] == digests[1]


def test_unknown_package_opkg_wording(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    res = make(
        ib(tmp_path),
        "image",
        "PROFILE=phicomm_k3",
        "PACKAGES=strongswan-mod-nosuch",
        f"BIN_DIR={bin_dir}",
    )
    assert res.returncode == 2
    # a NOTICE on stdout; the collected errors on stderr (libopkg opkg_message.c)
    assert "Unknown package 'strongswan-mod-nosuch'." in res.stdout
    assert (
        "Collected errors:\n * opkg_install_cmd: Cannot install package strongswan-mod-nosuch."
        in res.stderr
    )
    assert not list(bin_dir.glob("*.trx"))


def test_unknown_profile(tmp_path: Path) -> None:
    res = make(ib(tmp_path), "image", "PROFILE=phicomm_k4")
    assert res.returncode == 2
    assert 'Profile "phicomm_k4" does not exist!' in res.stdout
    assert 'Use "make info" to get a list of available profile names.' in res.stdout


def test_conflict_and_removal(tmp_path: Path) -> None:
    tree = ib(tmp_path)
    res = make(
        tree, "image", "PROFILE=phicomm_k3", "PACKAGES=dnsmasq-full", f"BIN_DIR={tmp_path / 'a'}"
    )
    assert res.returncode == 2
    # variants installing the same file: opkg's file-clash check, as reported for
    # OpenWrt's dnsmasq-full (openwrt/openwrt#15103, openwrt/asu#822)
    assert re.search(
        r"^ \* check_data_file_clashes: Package dnsmasq-full wants to install file "
        r"/\S+/root-bcm53xx/usr/sbin/dnsmasq\n\tBut that file is already provided by package"
        r"  \* dnsmasq\n",
        res.stderr,
        re.M,
    ), res.stderr
    res = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=dnsmasq-full -dnsmasq")
    assert res.returncode == 0, res.stderr
    names = [line.split(" - ")[0] for line in res.stdout.splitlines()]
    assert "dnsmasq-full" in names and "dnsmasq" not in names


def test_manifest_strip_abi(tmp_path: Path) -> None:
    tree = ib(tmp_path)
    plain = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=strongswan-mod-openssl")
    stripped = make(
        tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=strongswan-mod-openssl", "STRIP_ABI=1"
    )
    assert "libopenssl3 - 3.0.16-r1" in plain.stdout.splitlines()
    assert "libopenssl - 3.0.16-r1" in stripped.stdout.splitlines()


def test_too_big_deletes_image_but_exits_zero(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    res = make(
        ib(tmp_path),
        "image",
        "PROFILE=phicomm_k3",
        "PACKAGES=double-test-bloat",
        f"BIN_DIR={bin_dir}",
    )
    assert res.returncode == 0, res.stderr
    assert "WARNING: Image file " in res.stderr and f"{K3}-squashfs.trx is too big" in res.stderr
    assert not (bin_dir / f"{K3}-squashfs.trx").exists()
    assert (bin_dir / f"{K3}.manifest").exists()
    assert ".trx" not in (bin_dir / "sha256sums").read_text()


def test_too_big_by_flash_size_variant(tmp_path: Path) -> None:
    tree = ib(tmp_path, variant=Variant(flash_kib={"phicomm_k3": 2048}))
    res = make(tree, "image", "PROFILE=phicomm_k3", f"BIN_DIR={tmp_path / 'bin'}")
    assert res.returncode == 0 and "is too big" in res.stderr
    assert not list((tmp_path / "bin").glob("*.trx"))


def test_ath79_sysupgrade_and_factory(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    res = make(
        ib(tmp_path, target="ath79"),
        "image",
        "PROFILE=tplink_archer-c7-v2",
        "PACKAGES=strongswan-minimal strongswan-mod-openssl",
        f"BIN_DIR={bin_dir}",
    )
    assert res.returncode == 0, res.stderr
    prefix = "openwrt-24.10.2-ath79-generic-tplink_archer-c7-v2-squashfs"
    sysupgrade, factory = bin_dir / f"{prefix}-sysupgrade.bin", bin_dir / f"{prefix}-factory.bin"
    assert sysupgrade.exists() and factory.exists()
    assert "/usr/lib/ipsec/plugins/libstrongswan-stroke.so" in listing(sysupgrade)
    prof = json.loads((bin_dir / "profiles.json").read_text())["profiles"]["tplink_archer-c7-v2"]
    assert sorted(i["type"] for i in prof["images"]) == ["factory", "sysupgrade"]
    assert prof["titles"] == [{"vendor": "TP-Link", "model": "Archer C7", "variant": "v2"}]


def test_2305_is_tar_xz_with_old_versions(tmp_path: Path) -> None:
    archive = cached_imagebuilder("23.05.5", "bcm53xx", "generic")
    assert archive.name == "openwrt-imagebuilder-23.05.5-bcm53xx-generic.Linux-x86_64.tar.xz"
    assert archive.read_bytes()[:6] == b"\xfd7zXZ\x00"
    res = make(
        ib(tmp_path, "23.05.5"), "manifest", "PROFILE=phicomm_k3", "PACKAGES=strongswan-full"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "strongswan-mod-eap-mschapv2 - 5.9.11-1" in lines
    plugins = [x for x in lines if x.startswith("strongswan-mod-")]
    assert len(plugins) == 79


def test_apk_flavour_2512(tmp_path: Path) -> None:
    tree = ib(tmp_path, "25.12.0")
    assert (tree / "repositories").exists() and not (tree / "repositories.conf").exists()
    res = make(tree, "image", "PROFILE=phicomm_k3", "PACKAGES=nosuch")
    assert res.returncode == 2
    # "ERROR:" on stderr, the solver's explanation on stdout (apk-tools src/commit.c)
    assert "ERROR: unable to select packages:\n" in res.stderr
    assert "  nosuch (no such package):\n    required by: world[nosuch]\n" in res.stdout
    # `make manifest` discards the install's stdout: only the ERROR line remains
    res = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=nosuch")
    assert res.returncode == 2 and "ERROR: unable to select packages:" in res.stderr
    assert "no such package" not in res.stdout + res.stderr
    bin_dir = tmp_path / "bin"
    res = make(
        tree,
        "image",
        "PROFILE=phicomm_k3",
        "PACKAGES=strongswan-default strongswan-mod-openssl",
        f"BIN_DIR={bin_dir}",
    )
    assert res.returncode == 0, res.stderr
    image = bin_dir / "openwrt-25.12.0-bcm53xx-generic-phicomm_k3-squashfs.trx"
    files = listing(image)
    assert "/lib/apk/db/installed" in files and "/usr/lib/opkg/status" not in files
    assert "P:strongswan-swanctl\nV:6.0.3-r1\n" in cat(image, "/lib/apk/db/installed")
    assert "strongswan-default" in cat(image, "/etc/apk/world").split()
    res = make(tree, "manifest", "PROFILE=phicomm_k3")
    assert "base-files 1630-r1" in res.stdout.splitlines()  # apk list --manifest form
    res = make(tree, "image", "PROFILE=phicomm_k3", "PACKAGES=dnsmasq-full")
    assert res.returncode == 2
    assert "  dnsmasq-full-2.90-r1:\n    conflicts: dnsmasq-2.90-r1[dnsmasq]" in res.stdout


def test_archive_is_deterministic(tmp_path: Path) -> None:
    a = make_imagebuilder("24.10.2", "bcm53xx", "generic", tmp_path / "a")
    b = make_imagebuilder("24.10.2", "bcm53xx", "generic", tmp_path / "b")
    assert a.name == "openwrt-imagebuilder-24.10.2-bcm53xx-generic.Linux-x86_64.tar.zst"
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    top = extract_imagebuilder(a, tmp_path / "x")
    assert top.name == "openwrt-imagebuilder-24.10.2-bcm53xx-generic.Linux-x86_64"
    assert (top / "Makefile").exists() and (top / "repositories.conf").exists()


def _verify(pub: Path, sums: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["signify-openbsd", "-V", "-p", str(pub), "-m", str(sums), "-x", f"{sums}.sig"],
        capture_output=True,
        text=True,
    )


def test_mirror_tree_signed_and_faults(tmp_path: Path) -> None:
    key = make_signing_key(tmp_path / "keys")
    m = make_mirror(
        tmp_path / "mirror",
        key,
        [("24.10.2", "bcm53xx", "generic"), ("24.10.2", "ath79", "generic")],
    )
    versions = json.loads((m.base / ".versions.json").read_text())
    assert versions["stable_version"] == "24.10.2" and "24.10.2" in versions["versions_list"]
    targets = json.loads((m.base / "releases/24.10.2/.targets.json").read_text())
    assert targets == {"ath79/generic": "mips_24kc", "bcm53xx/generic": "arm_cortex-a9"}
    tdir = m.target_dir("24.10.2", "bcm53xx", "generic")
    sums = tdir / "sha256sums"
    assert _verify(key.public, sums).returncode == 0
    # the signature's key number is the key's
    sig_raw = base64.b64decode((tdir / "sha256sums.sig").read_text().splitlines()[1])
    assert len(sig_raw) == 74 and sig_raw[:2] == b"Ed" and sig_raw[2:10] == key.keynum
    name = archive_name("24.10.2", "bcm53xx", "generic")
    digest = hashlib.sha256((tdir / name).read_bytes()).hexdigest()
    assert f"{digest} *{name}" in sums.read_text().splitlines()
    site = json.loads((tdir / "profiles.json").read_text())
    assert site["profiles"]["netgear_r7000"]["supported_devices"] == ["netgear,r7000"]
    assert (tdir / "version.buildinfo").read_text().strip() == "r28739-d9340319c6"

    corrupt_signature(tdir / "sha256sums.sig")
    assert _verify(key.public, sums).returncode != 0
    m.resign("24.10.2", "bcm53xx", "generic")
    other = sign_with_other_key(m, "24.10.2", "bcm53xx", "generic", tmp_path / "other")
    assert other.keynum != key.keynum and _verify(key.public, sums).returncode != 0
    m.resign("24.10.2", "bcm53xx", "generic")
    wrong_sha256_line(m, "24.10.2", "bcm53xx", "generic")
    assert _verify(key.public, sums).returncode == 0
    assert f"{digest} *{name}" not in sums.read_text()
    m.resign("24.10.2", "bcm53xx", "generic")
    tamper_archive(m, "24.10.2", "bcm53xx", "generic")
    assert hashlib.sha256((tdir / name).read_bytes()).hexdigest() != digest


def test_mirror_server_ranges_and_faults(mirror_server: MirrorServer) -> None:  # noqa: F811
    blob = bytes(range(256)) * 1024  # 256 KiB
    (mirror_server.root / "dir").mkdir()
    (mirror_server.root / "dir/blob.bin").write_bytes(blob)
    url = f"{mirror_server.url}/dir/blob.bin"

    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == blob
    r = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=10)
    assert r.status_code == 206 and r.content == blob[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{len(blob) - 1}/{len(blob)}"
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert r.status_code == 206 and r.content == blob[10:20]
    r = requests.get(url, headers={"Range": f"bytes={len(blob)}-"}, timeout=10)
    assert r.status_code == 416
    assert requests.get(f"{mirror_server.url}/nope", timeout=10).status_code == 404
    assert requests.get(f"{mirror_server.url}/../etc/passwd", timeout=10).status_code == 404

    mirror_server.fail("/dir/blob.bin", 500, times=2)
    codes = [requests.get(url, timeout=10).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    mirror_server.not_found("/dir/blob.bin")
    assert requests.get(url, timeout=10).status_code == 404
    mirror_server.clear_faults()

    mirror_server.cut("/dir/blob.bin", after=50_000)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, timeout=10).raise_for_status()
    cut = mirror_server.requests_for("/dir/blob.bin")[-1]
    assert cut.bytes_sent == 50_000 and not cut.complete
    r = requests.get(url, headers={"Range": "bytes=50000-"}, timeout=10)  # resume works
    assert r.status_code == 206 and r.content == blob[50_000:]

    mirror_server.reset_log()
    assert mirror_server.count("blob.bin") == 0
    requests.head(url, timeout=10)
    assert [(q.method, q.status, q.bytes_sent) for q in mirror_server.log] == [("HEAD", 200, 0)]


def test_runs_unprivileged_without_python(tmp_path: Path) -> None:
    """As the container's buildbot user would: no root, nothing but sh/make/awk/coreutils."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    work = Path(tempfile.mkdtemp(prefix="ibd-nobody-"))
    try:
        tree = extract_imagebuilder(cached_imagebuilder("24.10.2", "bcm53xx", "generic"), work)
        files = overlay(work)
        subprocess.run(["chown", "-R", "65534:65534", str(work)], check=True)
        tools = work / "bin"  # a PATH holding only what the double may use
        tools.mkdir()
        allowed = "sh make awk sed cat cut tr sort head od base64 date env mkdir rm cp ln chmod "
        allowed += "touch stat sha256sum mksquashfs"
        for tool in allowed.split():
            found = shutil.which(tool)
            assert found, tool
            (tools / tool).symlink_to(found)
        setpriv = shutil.which("setpriv") or "setpriv"
        res = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
             "make", "image", "PROFILE=phicomm_k3", "PACKAGES=strongswan-default",
             f"FILES={files}", "BIN_DIR=out"],
            cwd=tree, capture_output=True, text=True, timeout=120,
            env={"PATH": str(tools), "HOME": str(work)},
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        image = tree / "out" / f"{K3}-squashfs.trx"
        owner = image.stat().st_uid
        assert owner == 65534
        assert listing(image)["/etc/swanctl/private/server.key"] == "-rw-------"
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_index_is_closed_under_dependencies(release: str) -> None:
    """Every dependency of every package resolves (by name or Provides), in every release."""
    rel = RELEASES[release]
    index = packages((), rel.package_manager, rel.series)
    have = {p.name for p in index} | {x for p in index for x in p.provides}
    dangling = {(p.name, d) for p in index for d in p.depends if d not in have}
    assert dangling == set()
    names = {p.name for p in index}
    assert {"strongswan-mod-md4", "strongswan-mod-openssl", "libopenssl-legacy"} <= names
    assert {"kmod-crypto-gcm", "kmod-crypto-aes", "kmod-ipsec4", "kmod-nft-xfrm"} <= names
    assert ("opkg" in names) == (rel.package_manager == "opkg")


def test_missing_dependency_wording(tmp_path: Path) -> None:
    tree = ib(tmp_path, variant=Variant(omit_packages=("libopenssl3",)))
    res = make(tree, "image", "PROFILE=phicomm_k3", "PACKAGES=strongswan-mod-openssl")
    assert res.returncode == 2
    assert (
        " * pkg_hash_check_unresolved: cannot find dependency libopenssl for "
        "strongswan-mod-openssl" in res.stderr
    )
    assert " * opkg_install_cmd: Cannot install package strongswan-mod-openssl." in res.stderr
    # opkg names the direct dependencies it could not satisfy: one collected
    # message each ("\t<dep>", no newline), so they share the next line.
    assert (
        " * satisfy_dependencies_for: Cannot satisfy the following dependencies for "
        "strongswan-mod-openssl:\n * \tlibopenssl * \n" in res.stderr
    )


def test_kernel_too_big_leaves_no_image(tmp_path: Path) -> None:
    tree = ib(tmp_path, variant=Variant(kernel_kib={"phicomm_k3": 1}))
    res = make(tree, "image", "PROFILE=phicomm_k3", "BIN_DIR=out")
    assert res.returncode == 0, res.stderr  # make goes on, as after Build/check-size
    # Build/check-size's text on the kernel ($(KDIR)/<device>-kernel.bin)
    assert re.search(
        r"^    WARNING: Image file /\S+/linux-bcm53xx_generic/phicomm_k3-kernel\.bin is too "
        r"big: \d+ > 1024$",
        res.stderr,
        re.M,
    ), res.stderr
    assert not list((tree / "out").glob("*.trx"))
    assert list((tree / "out").glob("*.manifest"))


def test_apk_out_of_space_and_package_list(tmp_path: Path) -> None:
    tree = ib(tmp_path, "25.12.0", variant=Variant(disk_free_kib=100))
    res = make(tree, "manifest", "PROFILE=phicomm_k3")
    assert res.returncode == 2
    assert re.search(r"^ERROR: \S+-\S+: No space left on device$", res.stderr, re.M), res.stderr
    # the summary is apk_message's, on stdout, which `make manifest` discards
    assert "MiB in" not in res.stdout + res.stderr
    res = make(tree, "image", "PROFILE=phicomm_k3")
    assert re.search(r"^1 error; \d+ MiB in \d+ packages$", res.stdout, re.M), res.stdout
    # `make package_list` runs `apk list --size`: apk's `list` has no --size,
    # so it fails with apk's usage; `apk list` through the Makefile's $(APK)
    # lists the feeds (no size). opkg: `opkg list --size`, with the size.
    res = make(tree, "package_list")
    assert res.returncode == 2 and "usage: apk list" in res.stdout, res.stdout + res.stderr
    res = make(tree, "--eval", "x: ; @$(MAKE) -s package_reload; $(APK) list", "x")
    listed = res.stdout.splitlines()
    assert "luci-ssl-25.051-r1 arm_cortex-a9 {luci-ssl} (GPL-2.0)" in listed, listed[:5]
    opkg = make(ib(tmp_path / "o"), "package_list").stdout.splitlines()
    assert any(line.startswith("luci-ssl - 25.051-r1 - 1000 - ") for line in opkg), opkg[:5]


def test_local_key_help_clean_default_profile(tmp_path: Path) -> None:
    tree = ib(tmp_path)
    assert "make image PROFILE=" in make(tree, "help").stdout
    res = make(tree, "image", "ADD_LOCAL_KEY=1", "BIN_DIR=out", "FILES=rel-files")
    assert res.returncode == 0, res.stderr
    assert "Generate local signing keys..." in res.stderr
    # no PROFILE: the first profile; relative BIN_DIR is inside the tree
    image = tree / "out/openwrt-24.10.2-bcm53xx-generic-asus_rt-ac68u-squashfs.trx"
    keynum = (tree / "key-build.keynum").read_text().strip()
    assert f"/etc/opkg/keys/{keynum}" in listing(image)
    res = make(tree, "clean", "BIN_DIR=out")
    assert res.returncode == 0 and not (tree / "out").exists() and not (tree / "tmp").exists()


def test_virtual_packages_pick_one_provider(tmp_path: Path) -> None:
    tree = ib(tmp_path)
    res = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=strongswan-charon")
    names = [line.split(" - ")[0] for line in res.stdout.splitlines()]
    assert "ip-tiny" in names and "ip-full" not in names  # `ip` by its smallest provider
    res = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=ip-full strongswan-charon")
    assert res.returncode == 0, res.stderr
    names = [line.split(" - ")[0] for line in res.stdout.splitlines()]
    assert "ip-full" in names and "ip-tiny" not in names  # the chosen provider satisfies `ip`
    # Both at once, as OpenWrt's iproute2 allows (separate files, ALTERNATIVES for /sbin/ip).
    res = make(tree, "manifest", "PROFILE=phicomm_k3", "PACKAGES=ip-full ip-tiny")
    assert res.returncode == 0, res.stderr
    names = [line.split(" - ")[0] for line in res.stdout.splitlines()]
    assert "ip-full" in names and "ip-tiny" in names


def test_served_mirror_fixture(served_mirror: ServedMirror) -> None:  # noqa: F811
    base = f"{served_mirror.url}/releases/24.10.2/targets/bcm53xx/generic"
    sums = requests.get(f"{base}/sha256sums", timeout=10).text.splitlines()
    archive = requests.get(served_mirror.url + served_mirror.archive_path(
        "24.10.2", "bcm53xx", "generic"), timeout=10)  # fmt: skip
    assert archive.status_code == 200
    name = archive_name("24.10.2", "bcm53xx", "generic")
    assert f"{hashlib.sha256(archive.content).hexdigest()} *{name}" in sums
    assert served_mirror.server.count(name) == 1
    kmods = served_mirror.mirror.target_dir("24.10.2", "bcm53xx", "generic") / "kmods"
    assert [p.name.split("-")[0] for p in kmods.iterdir()] == ["6.6.93"]


def test_serve_command_for_make_demo(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagebuilder_double", "serve", str(tmp_path / "demo"),
         "--build", "24.10.2/bcm53xx/generic"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["builds"] == ["24.10.2/bcm53xx/generic"]
        versions = requests.get(f"{info['url']}/.versions.json", timeout=10).json()
        assert versions["versions_list"] == ["24.10.2"]
        assert Path(info["public_key"]).read_text().startswith("untrusted comment: ")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_snapshot_layout_and_names(tmp_path: Path) -> None:
    key = make_signing_key(tmp_path / "keys")
    m = make_mirror(tmp_path / "mirror", key, [("snapshot", "bcm53xx", "generic")])
    tdir = m.base / "snapshots/targets/bcm53xx/generic"
    archive = tdir / "openwrt-imagebuilder-bcm53xx-generic.Linux-x86_64.tar.zst"
    assert m.archive("snapshot", "bcm53xx", "generic") == archive and archive.exists()
    assert _verify(key.public, tdir / "sha256sums").returncode == 0
    assert json.loads((m.base / "snapshots/.targets.json").read_text()) == {
        "bcm53xx/generic": "arm_cortex-a9"
    }
    assert json.loads((tdir / "profiles.json").read_text())["version_number"] == "SNAPSHOT"
    tree = extract_imagebuilder(archive, tmp_path / "ib")
    res = make(tree, "image", "PROFILE=phicomm_k3", "BIN_DIR=out")
    assert res.returncode == 0, res.stderr
    image = tree / "out/openwrt-bcm53xx-generic-phicomm_k3-squashfs.trx"
    assert "DISTRIB_RELEASE='SNAPSHOT'" in cat(image, "/etc/openwrt_release")
    assert (tree / "out/openwrt-bcm53xx-generic-phicomm_k3.manifest").exists()


def test_flash_sizes_are_plausible(tmp_path: Path) -> None:
    """An 8 MB ath79 board takes strongswan-default + openssl but not strongswan-full."""
    tree = ib(tmp_path, target="ath79")
    fits = make(tree, "image", "PROFILE=tplink_tl-wdr4300-v1", "BIN_DIR=a",
                "PACKAGES=strongswan-default strongswan-mod-openssl")  # fmt: skip
    assert fits.returncode == 0 and "too big" not in fits.stderr
    full = make(tree, "image", "PROFILE=tplink_tl-wdr4300-v1", "PACKAGES=strongswan-full",
                "BIN_DIR=b")  # fmt: skip
    assert full.returncode == 0 and "-squashfs-sysupgrade.bin is too big" in full.stderr
    assert not list((tree / "b").glob("*.bin"))
    big = make(tree, "image", "PROFILE=tplink_archer-c7-v2", "PACKAGES=strongswan-full",
               "BIN_DIR=c")  # fmt: skip
    assert big.returncode == 0 and len(list((tree / "c").glob("*.bin"))) == 2


def test_mirror_server_slow(mirror_server: MirrorServer) -> None:  # noqa: F811
    (mirror_server.root / "slow.bin").write_bytes(b"x" * 65536)
    mirror_server.slow("/slow.bin", delay=0.1)
    started = time.monotonic()
    r = requests.get(f"{mirror_server.url}/slow.bin", timeout=10)
    assert r.content == b"x" * 65536 and time.monotonic() - started >= 0.25  # 3 pauses
