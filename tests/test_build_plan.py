"""Build planning, the input key, the lock file, ImageBuilder output parsing (no make run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sitefile
from owrt_vpn.build import state as build_state
from owrt_vpn.build.plan import BuildOptions, inputs, plan
from owrt_vpn.errors import ConfigError, IntegrityError, UsageError
from owrt_vpn.imagebuilder.backends.base import BuildRequest
from owrt_vpn.imagebuilder.backends.output import diagnose, parse_manifest
from owrt_vpn.pki.digest import pki_digest
from owrt_vpn.repro import digest
from owrt_vpn.site.load import parse_site

SITE = sitefile.site()

SECOND = sitefile.router(
    "gw2",
    server_id="vpn2.example.org",
    release="23.05.5",
    target="ath79",
    subtarget="generic",
    device="tplink_archer-c7-v5",
    pool="10.10.20.0/24",
)


def site_at(tmp_path: Path, text: str = SITE):  # type: ignore[no-untyped-def]
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(text)
    return parse_site(text, path)


def test_plan_uses_site_values_and_target_defaults(tmp_path: Path) -> None:
    site = site_at(tmp_path)
    [p] = plan(site, BuildOptions(out=tmp_path / "dist"))
    assert (p.release, p.target, p.subtarget, p.device) == (
        "24.10.2",
        "bcm53xx",
        "generic",
        "phicomm_k3",
    )
    assert p.out_dir == tmp_path / "dist/home/routers/gw"
    assert p.log_path == tmp_path / "dist/home/logs/gw.log"
    # The plan's site carries the overridden router, so that users stay attached.
    [p] = plan(site, BuildOptions(target="ath79", release="24.10.x"))
    assert (p.target, p.subtarget, p.device, p.release) == (
        "ath79", "generic", "tplink_archer-c7-v2", "24.10.x",
    )  # fmt: skip
    assert p.site.router_users(p.router)[0].name == "alice"
    [p] = plan(site, BuildOptions(target="ath79", device="netgear_wndr3700-v4"))
    assert p.subtarget == "nand"


def test_plan_refuses_ambiguous_or_bad_overrides(tmp_path: Path) -> None:
    two = site_at(tmp_path, sitefile.site(routers=[sitefile.router(), SECOND]))
    assert [p.name for p in plan(two, BuildOptions())] == ["gw", "gw2"]
    with pytest.raises(UsageError, match="--target override one router, but 2"):
        plan(two, BuildOptions(target="ath79"))
    [p] = plan(two, BuildOptions(routers=("gw2",), device="tplink_archer-c7-v2"))
    assert (p.name, p.device, p.subtarget) == ("gw2", "tplink_archer-c7-v2", "generic")
    with pytest.raises(ConfigError, match="no router named 'gw3'"):
        plan(two, BuildOptions(routers=("gw3",)))
    site = site_at(tmp_path)
    with pytest.raises(ConfigError, match="--device"):
        plan(site, BuildOptions(device="k3 PACKAGES=evil"))
    with pytest.raises(ConfigError, match="--release"):
        plan(site, BuildOptions(release="24.10.2;rm"))
    with pytest.raises(UsageError, match="no default subtarget known for target 'x86'"):
        plan(site, BuildOptions(target="x86"))
    # A target that does not exist says so (not "no default subtarget").
    with pytest.raises(UsageError, match=r"--target: 'bcm99xx' is not an OpenWrt target"):
        plan(site, BuildOptions(target="bcm99xx"))


def test_input_key_names_what_changed(tmp_path: Path) -> None:
    site = site_at(tmp_path)
    [p] = plan(site, BuildOptions())
    a = inputs(p, BuildOptions())
    assert a == inputs(p, BuildOptions())
    site = site_at(tmp_path, sitefile.site(users=[sitefile.user(devices=[("tablet", "ios")])]))
    [p] = plan(site, BuildOptions())
    b = inputs(p, BuildOptions())
    assert build_state.changed_inputs(a, b) == ["site.users"]
    c = inputs(p, BuildOptions(insecure_skip_signature=True))
    assert build_state.changed_inputs(b, c) == ["signature"]
    (tmp_path / "pki" / "servers").mkdir(parents=True)
    (tmp_path / "pki" / "servers" / "gw.crt").write_text("cert")
    assert build_state.changed_inputs(c, inputs(p, BuildOptions(insecure_skip_signature=True))) == [
        "pki"
    ]


def test_up_to_date_checks_key_and_images(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inp = {"site": "1", "tool": {"code": "x"}}
    assert build_state.up_to_date(out, inp) == (False, "no previous build")
    (out / "img.bin").write_bytes(b"image")
    info = {
        "input_key": digest(inp),
        "inputs": inp,
        "images": [{"name": "img.bin", "sha256": build_state.sha256_file(out / "img.bin")}],
    }
    (out / "build-info.json").write_text(json.dumps(info))
    assert build_state.up_to_date(out, inp) == (True, "")
    assert build_state.up_to_date(out, {"site": "1", "tool": {"code": "y"}}) == (
        False,
        "changed: tool.code",
    )
    (out / "img.bin").write_bytes(b"other")
    assert build_state.up_to_date(out, inp) == (False, "image img.bin was modified")
    (out / "img.bin").unlink()
    assert build_state.up_to_date(out, inp) == (False, "image img.bin is missing")


def test_lock_round_trip_and_locked_checks(tmp_path: Path) -> None:
    site_path = tmp_path / "owrt-vpn.toml"
    lock = build_state.Lock.load(site_path)
    with pytest.raises(IntegrityError, match="no entry for this router"):
        lock.check_imagebuilder("gw", "a" * 64, "ib.tar.zst")
    info = {
        "release": {"version": "24.10.2"},
        "target": "bcm53xx",
        "subtarget": "generic",
        "device": {"profile": "phicomm_k3"},
        "imagebuilder": {"name": "ib.tar.zst", "sha256": "a" * 64},
        "packages": {"installed": {"strongswan": "5.9.14-r1", "busybox": "1.36.1-r1"}},
    }
    assert lock.update("gw", build_state.Lock.entry(info))
    lock.save()
    again = build_state.Lock.load(site_path)
    assert again.routers == lock.routers
    assert not again.update("gw", build_state.Lock.entry(info))
    again.check_imagebuilder("gw", "a" * 64, "ib.tar.zst")
    again.check_packages("gw", {"strongswan": "5.9.14-r1", "busybox": "1.36.1-r1"})
    with pytest.raises(IntegrityError, match=f"pins {'a' * 64}"):
        again.check_imagebuilder("gw", "b" * 64, "ib.tar.zst")
    with pytest.raises(IntegrityError, match=r"strongswan 5\.9\.14-r1 -> 5\.9\.14-r2"):
        again.check_packages("gw", {"strongswan": "5.9.14-r2", "busybox": "1.36.1-r1"})
    (tmp_path / "owrt-vpn.lock").write_text("[not json")
    with pytest.raises(ConfigError, match="not a valid owrt-vpn lock file"):
        build_state.Lock.load(site_path)


def test_pki_digest_matches_the_pki_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from owrt_vpn.pki.authority import Pki

    monkeypatch.setenv("OWRT_VPN_CA_PASSPHRASE", "test-ca-passphrase")
    site = site_at(tmp_path)
    pki = Pki.open(site)
    pki.init(site)
    assert pki_digest(site.pki_path) == pki.digest()
    assert pki_digest(site.pki_path, "gw") == pki.digest(router="gw")
    other = site.pki_path / "servers" / "other.crt"
    other.write_text("another router's certificate")
    assert pki_digest(site.pki_path, "gw") == pki.digest(router="gw")
    assert pki_digest(site.pki_path) == pki.digest() != pki.digest(router="gw")


def test_parse_manifest_opkg_and_apk() -> None:
    text = "make[1]: noise\nbase-files - 1630-r1\nlibubox20240329 - 2024.03.29~eb9b-r1\n"
    assert parse_manifest(text) == {
        "base-files": "1630-r1",
        "libubox20240329": "2024.03.29~eb9b-r1",
    }
    assert parse_manifest("busybox 1.37.0-r5\nWARNING: x\n") == {"busybox": "1.37.0-r5"}


def _req(tmp_path: Path) -> BuildRequest:
    return BuildRequest(
        tmp_path, "0" * 64, "phicomm_k3", (), (), "vpn-gw", (), tmp_path, tmp_path / "log",
        target="bcm53xx/generic",
    )  # fmt: skip


def test_diagnose_falls_back_to_the_output_tail(tmp_path: Path) -> None:
    err = diagnose("line 1\nmake: *** [image] Error 2\n", _req(tmp_path), 2, "image")
    assert err.message == "bcm53xx/generic phicomm_k3: ImageBuilder `make image` failed (status 2)"
    assert err.hint is not None and "make: *** [image] Error 2" in err.hint
    assert str(tmp_path / "log") in err.hint


def test_a_symlinked_lock_is_written_through_the_link(tmp_path: Path) -> None:
    site_path = tmp_path / "owrt-vpn.toml"
    target = tmp_path / "kept" / "site.lock"
    target.parent.mkdir()
    target.write_text('{"format": 1, "routers": {}}\n')
    (tmp_path / "owrt-vpn.lock").symlink_to(target)
    lock = build_state.Lock.load(site_path)
    info = {"imagebuilder": {"name": "ib.tar.zst", "sha256": "a" * 64}, "packages": {}}
    assert lock.update("gw", build_state.Lock.entry(info))
    lock.save()
    assert (tmp_path / "owrt-vpn.lock").is_symlink()
    assert (tmp_path / "owrt-vpn.lock").readlink() == target
    assert json.loads(target.read_text())["routers"]["gw"]["imagebuilder"]["sha256"] == "a" * 64
    assert build_state.Lock.load(site_path).routers == lock.routers
