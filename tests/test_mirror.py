"""Resolving release/target/device against a mirror's signed indexes (a directory mirror)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from owrt_vpn.errors import ConfigError, IntegrityError
from owrt_vpn.imagebuilder import mirror
from owrt_vpn.imagebuilder.cache import RetryPolicy, Transport
from owrt_vpn.imagebuilder.keys import Keyring, parse_public_key

T = Transport(RetryPolicy(attempts=1))
ARCHIVE = "openwrt-imagebuilder-24.10.2-bcm53xx-generic.Linux-x86_64.tar.zst"
PROFILES = {
    "metadata_version": 1,
    "target": "bcm53xx/generic",
    "version_code": "r28739-d9340319c6",
    "version_number": "24.10.2",
    "source_date_epoch": 1750711236,
    "profiles": {
        "phicomm_k3": {
            "image_prefix": "openwrt-24.10.2-bcm53xx-generic-phicomm_k3-",
            "images": [{"type": "sysupgrade", "name": "x-squashfs.trx", "filesystem": "squashfs"}],
            "supported_devices": ["phicomm,k3"],
            "titles": [{"vendor": "Phicomm", "model": "K3"}],
        },
        "netgear_r7000": {"images": [], "supported_devices": ["netgear,r7000"]},
        "asus_rt-ac68u": {"images": [], "supported_devices": ["asus,rt-ac68u"]},
    },
}


def keypair(tmp: Path, name: str) -> tuple[Path, Path]:
    pub, sec = tmp / f"{name}.pub", tmp / f"{name}.sec"
    subprocess.run(
        ["signify-openbsd", "-G", "-n", "-p", pub, "-s", sec], check=True, capture_output=True
    )
    return pub, sec


def build_mirror(root: Path, sec: Path, versions: list[str] | None = None) -> Path:
    versions = versions or ["24.10.0-rc1", "24.10.1", "24.10.2", "23.05.5"]
    (root / ".versions.json").parent.mkdir(parents=True, exist_ok=True)
    (root / ".versions.json").write_text(
        json.dumps({"stable_version": "24.10.2", "versions_list": versions})
    )
    for v in versions:
        rel = root / "releases" / v
        rel.mkdir(parents=True, exist_ok=True)
        (rel / ".targets.json").write_text(
            json.dumps(
                {
                    "bcm53xx/generic": "arm_cortex-a9",
                    "ath79/generic": "mips_24kc",
                    "ath79/nand": "mips_24kc",
                }
            )
        )
        d = rel / "targets" / "bcm53xx" / "generic"
        d.mkdir(parents=True)
        pj = dict(PROFILES, version_number=v)
        (d / "profiles.json").write_text(json.dumps(pj))
        archive = ARCHIVE.replace("24.10.2", v)
        (d / archive).write_bytes(b"archive of " + v.encode())
        sums = "".join(
            f"{hashlib.sha256((d / n).read_bytes()).hexdigest()} *{n}\n"
            for n in sorted(["profiles.json", archive])
        )
        (d / "sha256sums").write_text(sums)
        subprocess.run(
            [
                "signify-openbsd",
                "-S",
                "-s",
                sec,
                "-m",
                d / "sha256sums",
                "-x",
                d / "sha256sums.sig",
            ],
            check=True,
            capture_output=True,
        )
    return root


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Keyring, Path]:
    pub, sec = keypair(tmp_path, "k")
    root = build_mirror(tmp_path / "mirror", sec)
    return root, Keyring.load(trust_files=[pub], include_user=False), pub


def test_resolve_exact_release(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, pub = setup
    r = mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", ring, T)
    d = root / "releases/24.10.2/targets/bcm53xx/generic"
    assert r.release == "24.10.2"
    assert r.archive_name == ARCHIVE
    assert r.archive_sha256 == hashlib.sha256((d / ARCHIVE).read_bytes()).hexdigest()
    assert r.archive_url == f"{root}/releases/24.10.2/targets/bcm53xx/generic/{ARCHIVE}"
    assert r.profile["supported_devices"] == ["phicomm,k3"]
    assert r.version_code == "r28739-d9340319c6"
    assert r.source_date_epoch == 1750711236
    assert r.signature.verified and not r.signature.skipped
    assert r.signature.key_id == parse_public_key(pub.read_bytes()).key_id


def test_floating_release_picks_newest_final(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, _ = setup
    r = mirror.resolve(str(root), "24.10.x", "bcm53xx", "generic", "phicomm_k3", ring, T)
    assert r.release == "24.10.2" and r.requested_release == "24.10.x"
    assert mirror.version_key("24.10.2") > mirror.version_key("24.10.2-rc1")


def test_board_name_selects_profile(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, _ = setup
    r = mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "netgear,r7000", ring, T)
    assert r.device == "netgear_r7000"


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (("22.03.9", "bcm53xx", "generic", "phicomm_k3"), "release '22.03.9' is not on", "23.05.5"),
        (
            ("24.10.2", "bcm53xxx", "generic", "phicomm_k3"),
            "target 'bcm53xxx' does not exist",
            "bcm53xx",
        ),
        (("24.10.2", "ath79", "genric", "phicomm_k3"), "no subtarget 'genric'", "generic, nand"),
        (
            ("24.10.2", "bcm53xx", "generic", "phicomm_k2"),
            "device 'phicomm_k2' is not a profile",
            "phicomm_k3",
        ),
        (("24.10.2", "bcm53xx", "generic", "asus_rt-ac86u"), "is not a profile", "asus_rt-ac68u"),
    ],
)
def test_unknown_names_get_closest_real_ones(
    setup: tuple[Path, Keyring, Path], args: tuple[str, str, str, str], message: str, hint: str
) -> None:
    root, ring, _ = setup
    with pytest.raises(ConfigError) as exc:
        mirror.resolve(str(root), *args, ring, T)
    assert message in exc.value.message
    assert exc.value.hint is not None and hint in exc.value.hint


def test_altered_profiles_json_is_refused(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, _ = setup
    pj = root / "releases/24.10.2/targets/bcm53xx/generic/profiles.json"
    pj.write_text(pj.read_text().replace("phicomm,k3", "evil,k3"))
    with pytest.raises(IntegrityError, match=r"profiles\.json sha256 mismatch"):
        mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", ring, T)


def test_altered_sha256sums_is_refused(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, _ = setup
    sums = root / "releases/24.10.2/targets/bcm53xx/generic/sha256sums"
    sums.write_text(sums.read_text().replace("*profiles", "*profilez"))
    with pytest.raises(IntegrityError, match="BAD signature"):
        mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", ring, T)


def test_missing_signature_and_insecure_skip(setup: tuple[Path, Keyring, Path]) -> None:
    root, ring, _ = setup
    (root / "releases/24.10.2/targets/bcm53xx/generic/sha256sums.sig").unlink()
    with pytest.raises(IntegrityError, match="no usign signature"):
        mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", ring, T)
    r = mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", None, T)
    assert r.signature.skipped and not r.signature.verified


def test_unknown_signing_key_names_its_number(
    tmp_path: Path, setup: tuple[Path, Keyring, Path]
) -> None:
    root, _, _ = setup
    other_pub, _ = keypair(tmp_path, "other")
    ring = Keyring.load(trust_files=[other_pub], include_user=False)
    with pytest.raises(
        IntegrityError, match=r"signed by key [0-9a-f]{16}, which is not in the keyring"
    ):
        mirror.resolve(str(root), "24.10.2", "bcm53xx", "generic", "phicomm_k3", ring, T)


def test_snapshot_and_sums_parsing() -> None:
    assert mirror.release_dir("http://m", "snapshot", "ath79", "generic") == (
        "http://m/snapshots/targets/ath79/generic"
    )
    sums = mirror.parse_sums(f"{'a' * 64} *x.bin\n{'B' * 64}  y.bin\ngarbage\n")
    assert sums == {"x.bin": "a" * 64, "y.bin": "b" * 64}
    name = "openwrt-imagebuilder-ath79-generic.Linux-x86_64.tar.zst"
    assert mirror.find_archive({name: "0" * 64}, "snapshot", "ath79", "generic") == name


def test_normalize_mirror(tmp_path: Path) -> None:
    assert mirror.normalize_mirror("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert mirror.normalize_mirror(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ConfigError, match="no such directory"):
        mirror.normalize_mirror(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="not an http"):
        mirror.normalize_mirror("ftp://x")


def test_a_device_of_another_target_lists_this_targets_profiles() -> None:
    profiles = {"phicomm_k3": {}, "netgear_r7000": {}, "asus_rt-ac68u": {}}
    with pytest.raises(ConfigError) as exc:
        mirror.find_profile(profiles, "zzz_unrelated-9000", "bcm53xx/generic 24.10.2")
    assert exc.value.hint == (
        "profiles of bcm53xx/generic 24.10.2: asus_rt-ac68u, netgear_r7000, phicomm_k3"
    )


def test_an_empty_upcoming_version_is_not_listed(tmp_path: Path) -> None:
    # The real .versions.json has "upcoming_version": "" between releases.
    (tmp_path / ".versions.json").write_text(
        json.dumps(
            {
                "stable_version": "24.10.4",
                "oldstable_version": "23.05.5",
                "upcoming_version": "",
                "versions_list": ["24.10.4", "23.05.5"],
            }
        )
    )
    with pytest.raises(ConfigError) as exc:
        mirror.resolve_release(T, str(tmp_path), "24.10.9")
    assert (exc.value.hint or "").startswith("releases there: 24.10.4, 23.05.5; or a series")
    # A release branch is not in the index: it is taken as asked (releases/<x>-SNAPSHOT/).
    assert mirror.resolve_release(T, str(tmp_path), "24.10-SNAPSHOT") == "24.10-SNAPSHOT"


@pytest.mark.parametrize(
    "hostile",
    ["24.10./../../../x", "24.10.9\n", "24.10.9\x1b[31m", "24.10.9/../../snapshots"],
)
def test_unsigned_versions_index_names_that_are_not_releases_are_ignored(
    tmp_path: Path, hostile: str
) -> None:
    # .versions.json is unsigned: a name in it reaches URLs, paths and the terminal.
    (tmp_path / ".versions.json").write_text(
        json.dumps({"stable_version": "24.10.1", "versions_list": [hostile, "24.10.1"]})
    )
    assert mirror.resolve_release(T, str(tmp_path), "24.10.x") == "24.10.1"
    with pytest.raises(ConfigError) as exc:
        mirror.resolve_release(T, str(tmp_path), hostile)
    assert exc.value.hint == "releases there: 24.10.1; or a series like 24.10.x, or snapshot"


def test_unsigned_targets_index_names_that_are_not_targets_stay_out_of_hints(
    tmp_path: Path,
) -> None:
    rel = tmp_path / "releases" / "24.10.2"
    rel.mkdir(parents=True)
    hostile = {"ath79/generic": "x", "ath79/\x1b[2Jnand": "x", "ath80\n/x": "x"}
    (rel / ".targets.json").write_text(json.dumps(hostile))
    with pytest.raises(ConfigError) as exc:
        mirror.check_target(T, str(tmp_path), "24.10.2", "ath79", "nand")
    assert exc.value.hint == "subtargets of ath79: generic"
