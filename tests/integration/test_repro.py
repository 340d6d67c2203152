"""Reproducible rebuilds, `verify`, `build --all` and `matrix`, end to end: the real CLI
against the signed ImageBuilder-double mirror on loopback, the real PKI and bundles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sitefile
from conftest import CliRunner
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from requires import requires

pytestmark = pytest.mark.integration

EPOCH = 1700000000  # conftest's SOURCE_DATE_EPOCH
K3_TRX = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"


@dataclass
class Lab:
    """A folder for sites, a cache, and the served mirror."""

    root: Path
    env: dict[str, str]
    mirror: ServedMirror
    cli: CliRunner

    @property
    def mirror_args(self) -> list[str]:
        return ["--mirror", self.mirror.url, "--trust-key", str(self.mirror.key.public)]

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return self.cli(*args, cwd=cwd, env={**self.env, **(env or {})})

    def site(self, folder: Path, name: str = "home", two_routers: bool = False) -> Path:
        """`owrt-vpn init` in ``folder``, renamed to ``name`` (+ an ath79 router)."""
        folder.mkdir(parents=True)
        self.cli("init", "--server-id", "vpn.example.org", cwd=folder, env=self.env, check=True)
        site_file = folder / "owrt-vpn.toml"
        text = site_file.read_text().replace('name = "home"', f'name = "{name}"', 1)
        if two_routers:
            head, users = text.split("[[users]]", 1)
            text = head + sitefile.SECOND_ROUTER + "\n[[users]]" + users
        site_file.write_text(text)
        return folder

    def archive(self, target: str) -> str:
        return self.mirror.archive_path("24.10.2", target, "generic")


@pytest.fixture
def lab(tmp_path: Path, cli: CliRunner, served_mirror: ServedMirror) -> Iterator[Lab]:  # noqa: F811
    env = {
        "OWRT_VPN_CACHE": str(tmp_path / "cache"),
        "OWRT_VPN_KEYS_DIR": str(tmp_path / "userkeys"),
        "OWRT_VPN_MIRROR": "/nonexistent/owrt-vpn-test-mirror",  # builds pass --mirror
    }
    yield Lab(tmp_path, env, served_mirror, cli)


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), logs left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(root).parts
    }


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_two_clean_builds_give_identical_bytes(lab: Lab) -> None:
    site = lab.site(lab.root / "site", two_routers=True)
    ok(lab.run("pki", "init", cwd=site))
    outside = lab.root / "passwords.txt"
    ok(lab.run("build", *lab.mirror_args, "--out", "d1", "--jobs", "2", cwd=site))
    ok(lab.run("bundle", "--out", "d1", "--password-file", str(outside), cwd=site))
    lock = (site / "owrt-vpn.lock").read_bytes()
    time.sleep(1.1)  # a leaked wall-clock second would now show
    # The second build from a clean state: a new dist root and an empty cache.
    clean = {"OWRT_VPN_CACHE": str(lab.root / "cache2")}
    ok(lab.run("build", *lab.mirror_args, "--out", "d2", cwd=site, env=clean))
    ok(lab.run("bundle", "--out", "d2", "--password-file", str(outside), cwd=site, env=clean))
    assert (site / "owrt-vpn.lock").read_bytes() == lock
    first, second = files_of(site / "d1"), files_of(site / "d2")
    assert first.keys() == second.keys()
    differ = [name for name in first if first[name] != second[name]]
    assert differ == []
    # Everything we generate is there: images, overlay, build-info, sums, bundles, zips.
    names = set(first)
    for router in ("gw", "gw2"):
        for f in ("overlay.tar", "build-info.json", "sha256sums", "profile.json"):
            assert f"home/routers/{router}/{f}" in names
    assert f"home/routers/gw/{K3_TRX}" in names
    assert any(n.endswith("-sysupgrade.bin") for n in names)
    assert {"home/clients/alice/alice-phone.zip", "home/clients/alice/alice-laptop.zip"} <= names
    assert "home/clients/alice/bundle-info.json" in names
    # Archive mtimes are SOURCE_DATE_EPOCH, not the clock.
    with tarfile.open(site / "d1/home/routers/gw/overlay.tar") as tar:
        assert {m.mtime for m in tar.getmembers()} == {EPOCH}
    with zipfile.ZipFile(site / "d1/home/clients/alice/alice-phone.zip") as zf:
        stamps = {i.date_time for i in zf.infolist()}
    assert stamps == {time.gmtime(EPOCH)[:6]}


def test_verify_identical_then_tampered_then_changed_inputs(lab: Lab) -> None:
    site = lab.site(lab.root / "site")
    ok(lab.run("build", *lab.mirror_args, cwd=site))
    ok(lab.run("bundle", "--password-file", str(lab.root / "pw.txt"), cwd=site))
    dist = site / "dist" / "home"
    before = files_of(dist)

    # Identical: exit 0, the cached ImageBuilder (no archive request), dist untouched.
    lab.mirror.server.reset_log()
    proc = ok(lab.run("verify", "--trust-key", str(lab.mirror.key.public), cwd=site))
    assert "router gw: identical (6 files)" in proc.stdout
    assert re.search(r"^bundles alice: identical \(\d+ files\)$", proc.stdout, re.M)
    assert "reproducible: every artifact rebuilt byte for byte" in proc.stdout
    assert lab.mirror.server.count(lab.archive("bcm53xx")) == 0
    assert files_of(dist) == before
    assert not list(Path(lab.env["OWRT_VPN_CACHE"]).glob("work/*/"))

    # A tampered image and a tampered zip: exit 3, each named, with where.
    image = dist / "routers/gw" / K3_TRX
    data = bytearray(image.read_bytes())
    data[4096] ^= 0xFF
    image.write_bytes(bytes(data))
    zip_path = dist / "clients/alice/alice-phone.zip"
    zip_path.write_bytes(
        zip_path.read_bytes().replace(b"alice-phone/ca.pem", b"alice-phone/ca.PEM")
    )
    proc = lab.run("verify", "--no-diffoscope", "--trust-key", str(lab.mirror.key.public), cwd=site)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "router gw: DIFFERS (1 of 6 files)" in proc.stdout
    assert f"content: home/routers/gw/{K3_TRX}" in proc.stdout
    assert "first difference at byte 4096" in proc.stdout
    assert "content: home/clients/alice/alice-phone.zip" in proc.stdout
    assert "zip member alice-phone/ca.PEM: only in the built file" in proc.stdout
    assert "NOT reproducible" in proc.stdout
    data = json.loads(
        lab.run(
            "--json", "verify", "--router", "gw", "--no-diffoscope", *lab.mirror_args[2:], cwd=site
        ).stdout
    )
    assert data["exit_code"] == 3 and [i["name"] for i in data["items"]] == ["gw"]
    assert [d["path"] for d in data["items"][0]["differences"]] == [f"home/routers/gw/{K3_TRX}"]

    # A changed user: inputs changed (site file), not a reproducibility failure.
    for name, content in before.items():
        (dist / name).write_bytes(content)
    site_file = site / "owrt-vpn.toml"
    site_file.write_text(site_file.read_text().replace('name = "laptop"', 'name = "desktop"'))
    proc = lab.run("verify", *lab.mirror_args[2:], cwd=site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "router gw: not verified, inputs changed since the build: site file" in proc.stdout
    assert "bundles alice: not verified, inputs changed since the build: site file" in proc.stdout
    assert "DIFFERS" not in proc.stdout
    # ... and after `build` + `bundle` it verifies again.
    ok(lab.run("build", *lab.mirror_args, cwd=site))
    ok(lab.run("bundle", "--password-file", str(lab.root / "pw.txt"), cwd=site))
    ok(lab.run("verify", *lab.mirror_args[2:], cwd=site))

    # A build recorded by an older owrt-vpn (inputs.site: the whole file's digest) still
    # says what changed: the site file, in the words of that older record.
    info_path = dist / "routers/gw/build-info.json"
    current = info_path.read_bytes()
    info = json.loads(current)
    info["inputs"]["site"] = "0" * 64
    info["site"] = {"name": "home", "file": "owrt-vpn.toml", "sha256": "0" * 64}
    info_path.write_text(json.dumps(info))
    proc = lab.run("verify", "--router", "gw", *lab.mirror_args[2:], cwd=site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "router gw: not verified, inputs changed since the build: site file (recorded by an "
        "older owrt-vpn, which digested the whole file)"
    ) in proc.stdout
    info_path.write_bytes(current)

    # A renewed server certificate is a PKI change; an edited lock a lock change.
    (site / "pki/servers/gw.crt").write_bytes(b"changed\n")
    lock_path = site / "owrt-vpn.lock"
    lock = json.loads(lock_path.read_text())
    lock["routers"]["gw"]["packages"]["busybox"] = "0.0-r0"
    lock_path.write_text(json.dumps(lock))
    proc = lab.run("verify", "--router", "gw", *lab.mirror_args[2:], cwd=site)
    assert proc.returncode == 1
    assert "inputs changed since the build: PKI, lock" in proc.stdout


@requires("diffoscope")
def test_verify_says_where_with_diffoscope(lab: Lab) -> None:
    """Without --no-diffoscope, a differing file is explained by diffoscope (time-limited)."""
    site = lab.site(lab.root / "site")
    ok(lab.run("build", *lab.mirror_args, cwd=site))
    dist = site / "dist" / "home"
    (dist / "routers/gw/profile.json").write_text(
        (dist / "routers/gw/profile.json").read_text().replace('"K3"', '"K4"')
    )
    proc = lab.run("verify", "-r", "gw", *lab.mirror_args[2:], cwd=site)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "diffoscope:" in proc.stdout and '"model": "K4"' in proc.stdout


def test_verify_adopts_the_builds_epoch_and_keeps_the_scratch(lab: Lab) -> None:
    site = lab.site(lab.root / "site")
    ok(lab.run("build", *lab.mirror_args, cwd=site, env={"SOURCE_DATE_EPOCH": "1712345678"}))
    keep = lab.root / "rebuild"
    # No SOURCE_DATE_EPOCH now (conftest sets one: an empty value counts as unset).
    proc = ok(
        lab.run(
            "verify",
            "--scratch",
            str(keep),
            *lab.mirror_args[2:],
            cwd=site,
            env={"SOURCE_DATE_EPOCH": ""},
        )
    )
    assert "router gw: identical" in proc.stdout and f"rebuild kept in {keep}" in proc.stdout
    assert (keep / "home/routers/gw" / K3_TRX).read_bytes() == (
        site / "dist/home/routers/gw" / K3_TRX
    ).read_bytes()
    # Another epoch named explicitly is a changed input.
    proc = lab.run("verify", *lab.mirror_args[2:], cwd=site, env={"SOURCE_DATE_EPOCH": "1"})
    assert (
        proc.returncode == 1 and "inputs changed since the build: SOURCE_DATE_EPOCH" in proc.stdout
    )
    # Nothing built at all: a usage error, not "reproducible".
    proc = lab.run("verify", "--out", "elsewhere", cwd=site)
    assert proc.returncode == 2 and "nothing to verify" in proc.stderr


def test_build_all_two_sites_in_parallel_one_download_per_archive(lab: Lab) -> None:
    fleet = lab.root / "fleet"
    lab.site(fleet / "paris", "paris", two_routers=True)
    lab.site(fleet / "region" / "lyon", "lyon", two_routers=True)
    lab.site(fleet / ".hidden", "hidden")  # skipped: hidden folder
    lab.mirror.server.reset_log()
    proc = lab.run(
        "build",
        "--all",
        str(fleet),
        "--jobs",
        "2",
        *lab.mirror_args,
        "--out",
        str(lab.root / "dist"),
        cwd=lab.root,
    )
    ok(proc)
    assert "2 site(s): 4 built" in proc.stdout
    for name in ("paris/gw", "paris/gw2", "lyon/gw", "lyon/gw2"):
        assert re.search(rf"^{name}: built 24\.10\.2 ", proc.stdout, re.M), proc.stdout
    dist = lab.root / "dist"
    for site in ("paris", "lyon"):
        assert (dist / site / "routers/gw" / K3_TRX).is_file()
        assert list((dist / site / "routers/gw2").glob("*-sysupgrade.bin"))
        lock = json.loads(
            (fleet / ("region/lyon" if site == "lyon" else site) / "owrt-vpn.lock").read_text()
        )
        assert sorted(lock["routers"]) == ["gw", "gw2"]
    assert not (dist / "hidden").exists()
    # As `build` of one site: each site's client bundles beside its firmware.
    for site in ("paris", "lyon"):
        assert (dist / site / "clients/alice/bundle-info.json").is_file()
        assert re.search(rf"^{site}: client bundles: \d+ device\(s\)", proc.stdout, re.M)
    # One verified download per ImageBuilder archive, shared by both sites.
    assert lab.mirror.server.count(lab.archive("bcm53xx")) == 1
    assert lab.mirror.server.count(lab.archive("ath79")) == 1
    # Builds ran in parallel: two routers had started before the first finished.
    stages = proc.stderr.splitlines()
    first_done = min(i for i, line in enumerate(stages) if ": done: " in line)
    started = {
        m.group(1)
        for s in stages[:first_done]
        if (m := re.search(r"\] (\S+): (?:copying|preparing) the ImageBuilder", s))
    }
    assert len(started) >= 2, proc.stderr

    # The CI matrix lists every site x router.
    out = ok(lab.run("matrix", "--all", "fleet", cwd=lab.root)).stdout
    entries = json.loads(out)["include"]
    assert [(e["site"], e["router"]) for e in entries] == [
        ("paris", "gw"),
        ("paris", "gw2"),
        ("lyon", "gw"),
        ("lyon", "gw2"),
    ]
    assert entries[0] == {
        "name": "paris/gw",
        "site_file": "fleet/paris/owrt-vpn.toml",
        "site": "paris",
        "router": "gw",
        "release": "24.10.2",
        "target": "bcm53xx",
        "subtarget": "generic",
        "device": "phicomm_k3",
    }
    assert entries[3]["site_file"] == "fleet/region/lyon/owrt-vpn.toml"
    assert (entries[3]["target"], entries[3]["device"]) == ("ath79", "tplink_archer-c7-v5")

    # A broken site file among good ones: the others still build (up to date), exit 4.
    (fleet / "broken").mkdir()
    (fleet / "broken/owrt-vpn.toml").write_text("[site]\nname = 'broken'\nbogus = 1\n")
    proc = lab.run(
        "--json", "build", "--all", str(fleet), *lab.mirror_args, "--out", str(dist), cwd=lab.root
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert [(s["site"], s["ok"]) for s in data["sites"]] == [
        (None, False),
        ("paris", True),
        ("lyon", True),
    ]
    assert "bogus" in data["sites"][0]["error"]
    statuses = [r["status"] for s in data["sites"] for r in s["routers"]]
    assert statuses == ["up-to-date"] * 4
    assert [s.get("bundles", {}).get("status") for s in data["sites"]] == [
        None,
        "up-to-date",
        "up-to-date",
    ]
    # The broken site's path once per error line, not twice.
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line.count("broken/owrt-vpn.toml") == 1 for line in errors), errors
    # matrix refuses an incomplete fleet (a CI matrix must list every job).
    bad = lab.run("matrix", "--all", str(fleet), cwd=lab.root)
    assert bad.returncode == 2 and "broken/owrt-vpn.toml" in bad.stderr

    # --no-bundles works for --all as for build: firmware only, no bundles written.
    shutil.rmtree(fleet / "broken")
    shutil.rmtree(dist / "paris/clients")
    proc = lab.run(
        "build", "--all", str(fleet), "--no-bundles", *lab.mirror_args, "--out", str(dist),
        cwd=lab.root,
    )  # fmt: skip
    ok(proc)
    assert "2 site(s): 4 up-to-date" in proc.stdout, proc.stdout
    assert "client bundles" not in proc.stdout and not (dist / "paris/clients").exists()


def test_ci_pki_subset_without_ca_key_builds_the_same_bytes(lab: Lab) -> None:
    """What the CI example ships: ca.crt, index.json, servers/ (eap/, crl.pem when there
    are any); no CA key, no client keys, no passphrase. The router build is identical."""
    site = lab.site(lab.root / "site")
    ok(lab.run("build", *lab.mirror_args, cwd=site))
    ci = lab.root / "ci"
    (ci / "pki").mkdir(parents=True)
    for name in ("owrt-vpn.toml", "owrt-vpn.lock"):
        shutil.copy2(site / name, ci / name)
    shutil.copy2(site / "pki/ca.crt", ci / "pki/ca.crt")
    shutil.copy2(site / "pki/index.json", ci / "pki/index.json")
    shutil.copytree(site / "pki/servers", ci / "pki/servers")
    assert not (site / "pki/eap").exists() and not (site / "pki/crl.pem").exists()
    proc = lab.run(
        "build", "--locked", *lab.mirror_args, cwd=ci, env={"OWRT_VPN_CA_PASSPHRASE": ""}
    )
    ok(proc)
    # The firmware is identical; the client bundles need the client keys, which
    # CI does not get: build skips them and says why.
    [name] = [p.name for p in (site / "dist").iterdir()]
    assert files_of(ci / "dist" / name / "routers") == files_of(site / "dist" / name / "routers")
    assert "warning: client bundles not written:" in proc.stderr
    assert not (ci / "dist" / name / "clients").exists()
    assert not (ci / "pki/ca.key").exists() and not (ci / "pki/clients").exists()
