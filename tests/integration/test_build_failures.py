"""ImageBuilder failures become clear errors: the local backend against the ImageBuilder double.

Each test runs the real ``make`` of a double ImageBuilder (extracted by our
safe extractor into a content-addressed cache) in a fresh copy, like a
build does, and checks the error a user would see.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imagebuilder_double import Variant, cached_imagebuilder
from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.base import BuildRequest
from owrt_vpn.imagebuilder.backends.local import LocalBackend, detect_package_manager
from owrt_vpn.imagebuilder.backends.output import parse_info
from owrt_vpn.imagebuilder.cache import Cache, sha256_file

pytestmark = pytest.mark.integration

K3_TRX = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"
VPN = ("strongswan-minimal", "strongswan-mod-openssl", "strongswan-swanctl")


def ib_tree(tmp_path: Path, release: str = "24.10.2", variant: Variant | None = None) -> Path:
    archive = cached_imagebuilder(release, "bcm53xx", "generic", variant)
    return Cache(tmp_path / "cache").tree(archive, sha256_file(archive))


def request(
    tmp_path: Path,
    tree: Path,
    packages: tuple[str, ...] = VPN,
    profile: str = "phicomm_k3",
    expected: tuple[str, ...] = (K3_TRX,),
) -> BuildRequest:
    work = tmp_path / f"work-{len(list(tmp_path.glob('work-*')))}"
    work.mkdir()
    return BuildRequest(
        imagebuilder=tree,
        imagebuilder_sha256="0" * 64,
        profile=profile,
        packages=packages,
        disabled_services=(),
        extra_image_name="vpn-gw",
        expected_images=expected,
        work_dir=work,
        log_path=tmp_path / "build.log",
        target="bcm53xx/generic",
    )


def files_dir(tmp_path: Path) -> Path:
    d = tmp_path / "files" / "etc"
    d.mkdir(parents=True, exist_ok=True)
    (d / "hello").write_text("hi\n")
    return d.parent


def test_good_build_in_a_fresh_copy_leaves_the_cached_tree_alone(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path)
    before = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    session = LocalBackend().open(request(tmp_path, tree))
    assert session.package_manager == "opkg" == detect_package_manager(tree)
    predicted = session.manifest()
    result = session.image(files_dir(tmp_path))
    session.close()
    assert [p.name for p in result.images] == [K3_TRX]
    assert result.installed == predicted
    assert {"strongswan-minimal", "strongswan-mod-openssl"} <= set(result.installed)
    assert result.identity == {"backend": "local", "imagebuilder_sha256": "0" * 64}
    # make wrote build_dir/, tmp/... into the copy only.
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == before
    assert "(in " in (tmp_path / "build.log").read_text()


def test_unknown_profile_lists_real_names_from_make_info(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path)
    session = LocalBackend().open(request(tmp_path, tree, profile="phicomm_k2"))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert "has no profile 'phicomm_k2'" in exc.value.message
    assert exc.value.hint is not None and "phicomm_k3" in exc.value.hint
    info = parse_info(session._make(["info"])[1])  # the names come from the real output
    assert {"phicomm_k3", "tenda_ac9", "netgear_r7000"} <= set(info.profiles)
    assert info.profiles["phicomm_k3"] == ("phicomm,k3",)
    assert info.target == "bcm53xx/generic" and info.revision.startswith("r")


def test_unknown_package_opkg_wording(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path)
    session = LocalBackend().open(request(tmp_path, tree, packages=(*VPN, "strongswan-mod-nope")))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert exc.value.message.endswith(
        "unknown package(s) for this release/target: strongswan-mod-nope"
    )
    # `make manifest` discards opkg's stdout, where "Unknown package 'P'." goes
    # (a NOTICE): the collected error names the package
    log = (tmp_path / "build.log").read_text()
    assert "Unknown package" not in log
    assert " * opkg_install_cmd: Cannot install package strongswan-mod-nope." in log


def test_unknown_package_apk_wording(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path, "25.12.0")
    assert detect_package_manager(tree) == "apk"
    session = LocalBackend().open(request(tmp_path, tree, packages=(*VPN, "strongswan-mod-nope")))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert "unknown package(s) for this release/target: strongswan-mod-nope" in exc.value.message
    # apk's explanation goes to stdout, which `make manifest` discards: the
    # backend asks `make image` (it stops at the same install) and reads it there
    log = (tmp_path / "build.log").read_text()
    manifest, image = log.split("# owrt-vpn: make manifest: status 2")
    assert "ERROR: unable to select packages:" in manifest and "no such package" not in manifest
    assert "  strongswan-mod-nope (no such package):" in image
    assert "# owrt-vpn: make image: status 2" in image


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_package_conflict(tmp_path: Path, release: str) -> None:
    tree = ib_tree(tmp_path, release)
    session = LocalBackend().open(request(tmp_path, tree, packages=(*VPN, "dnsmasq-full")))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert "package conflict: dnsmasq-full" in exc.value.message
    assert "dnsmasq" in exc.value.message.split("conflicts with")[1]


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_image_too_big_although_make_succeeds(tmp_path: Path, release: str) -> None:
    tree = ib_tree(tmp_path, release, variant=Variant(flash_kib={"phicomm_k3": 2048}))
    trx = K3_TRX.replace("24.10.2", release)
    session = LocalBackend().open(request(tmp_path, tree, expected=(trx,)))
    session.manifest()
    with pytest.raises(BuildError) as exc:
        session.image(files_dir(tmp_path))
    assert "too big for the device's flash" in exc.value.message
    assert trx in exc.value.message
    assert not (session.bin_dir / trx).exists()


def test_missing_expected_image_is_an_error(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path)
    req = request(tmp_path, tree, expected=(K3_TRX, "openwrt-never-made.bin"))
    session = LocalBackend().open(req)
    with pytest.raises(BuildError, match=r"did not produce openwrt-never-made\.bin"):
        session.image(files_dir(tmp_path))


def test_concurrent_sessions_use_separate_copies(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path)
    a = LocalBackend().open(request(tmp_path, tree))
    b = LocalBackend().open(request(tmp_path, tree))
    assert a.tree != b.tree and a.tree.is_dir() and b.tree.is_dir()
    assert os.stat(a.tree / "Makefile").st_ino != os.stat(b.tree / "Makefile").st_ino
    a.close()
    assert not a.tree.exists() and b.tree.is_dir()
    b.close()


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_unsatisfiable_dependency_is_named(tmp_path: Path, release: str) -> None:
    # A feed without libopenssl: opkg "Cannot satisfy the following dependencies
    # for"; apk "  libopenssl (no such package):" / "    required by: <pkg>[libopenssl]"
    # (on stdout, which make manifest discards: the backend asks make image)
    tree = ib_tree(tmp_path, release, variant=Variant(omit_packages=("libopenssl3",)))
    session = LocalBackend().open(request(tmp_path, tree))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert exc.value.message == (
        "bcm53xx/generic phicomm_k3: cannot satisfy the dependencies of "
        "strongswan-mod-openssl (missing: libopenssl)"
    )
    assert "leave the package out" in (exc.value.hint or "")


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_kernel_too_big_is_named(tmp_path: Path, release: str) -> None:
    tree = ib_tree(tmp_path, release, variant=Variant(kernel_kib={"phicomm_k3": 1}))
    trx = K3_TRX.replace("24.10.2", release)
    session = LocalBackend().open(request(tmp_path, tree, expected=(trx,)))
    session.manifest()
    with pytest.raises(BuildError) as exc:
        session.image(files_dir(tmp_path))
    assert re.fullmatch(
        r"bcm53xx/generic phicomm_k3: this release's kernel is too big for the kernel "
        r"partition of phicomm_k3 \(phicomm_k3-kernel\.bin, \d+ > 1024 bytes; no image "
        r"was made\)",
        exc.value.message,
    ), exc.value.message
    assert "packages do not change the kernel's size" in (exc.value.hint or "")


def test_apk_out_of_space_is_named(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path, "25.12.0", variant=Variant(disk_free_kib=100))
    session = LocalBackend().open(request(tmp_path, tree))
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert re.search(
        r"ran out of disk space while apk installed the packages \(\S+-\d\S*\)$",
        exc.value.message,
    ), exc.value.message
    assert "free disk space" in (exc.value.hint or "")


def test_too_big_hint_is_the_callers(tmp_path: Path) -> None:
    tree = ib_tree(tmp_path, variant=Variant(flash_kib={"phicomm_k3": 2048}))
    req = request(tmp_path, tree)
    req = BuildRequest(**{**req.__dict__, "too_big_hint": "leave out luci"})
    session = LocalBackend().open(req)
    session.manifest()
    with pytest.raises(BuildError) as exc:
        session.image(files_dir(tmp_path))
    assert (exc.value.hint or "").startswith("leave out luci; full output: ")


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_package_index_lists_the_feeds(tmp_path: Path, release: str) -> None:
    session = LocalBackend().open(request(tmp_path, ib_tree(tmp_path, release)))
    index = session.package_index()
    session.close()
    assert index is not None
    assert {"luci", "luci-ssl", "strongswan-mod-openssl", "dnsmasq-full"} <= set(index)
    # opkg list --size shows the size; apk list shows none (0: unknown)
    assert index["luci-ssl"] == (1000 if release == "24.10.2" else 0)
    log = (tmp_path / "build.log").read_text()
    if release == "25.12.0":  # `apk list --size` failed, `apk list` answered
        assert "usage: apk list" in log and "make owrt-vpn-package-list: status 0" in log


def test_snapshot_without_eap_mschapv2_says_why(tmp_path: Path) -> None:
    # master's strongSwan builds eap-mschapv2 only with STRONGSWAN_INCLUDE_INSECURE
    tree = ib_tree(tmp_path, "SNAPSHOT", Variant(omit_packages=("strongswan-mod-eap-mschapv2",)))
    session = LocalBackend().open(
        request(tmp_path, tree, packages=(*VPN, "strongswan-mod-eap-mschapv2"))
    )
    with pytest.raises(BuildError) as exc:
        session.manifest()
    assert exc.value.message.endswith(": strongswan-mod-eap-mschapv2")
    assert "only with STRONGSWAN_INCLUDE_INSECURE" in (exc.value.hint or "")
