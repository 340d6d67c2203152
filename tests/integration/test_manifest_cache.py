"""The remembered `make manifest` answer and the make timings of `build --json`:
the real CLI against the signed ImageBuilder double on loopback."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import CliRunner
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrt_vpn.imagebuilder.manifests import ManifestCache, manifest_key

pytestmark = pytest.mark.integration

MAKE_LINE = re.compile(r"^\+ \(in \S+\) make --no-print-directory (\w+)", re.M)


def _build(
    cli: CliRunner, site: Path, env: dict[str, str], mirror: ServedMirror, *args: str
) -> subprocess.CompletedProcess[str]:
    argv = ["build", "--mirror", mirror.url, "--trust-key", str(mirror.key.public)]
    return cli(*argv, *args, cwd=site, env=env, check=True)


def test_rebuild_reuses_the_confirmed_manifest_and_recovers_from_a_stale_one(
    tmp_path: Path,
    cli: CliRunner,
    served_mirror: ServedMirror,  # noqa: F811
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    cache = tmp_path / "cache"
    env = {"OWRT_VPN_CACHE": str(cache), "OWRT_VPN_KEYS_DIR": str(tmp_path / "keys")}
    cli("init", "--server-id", "vpn.example.org", cwd=site, env=env, check=True)
    log = site / "dist/home/logs/gw.log"
    info_path = site / "dist/home/routers/gw/build-info.json"

    first = json.loads(_build(cli, site, env, served_mirror, "--json").stdout)["routers"][0]
    assert first["status"] == "built"
    assert set(first["timings"]) == {"make_manifest", "make_image"}
    assert all(v > 0 for v in first["timings"].values())
    text = log.read_text()
    # make info: the revision the build checks against profiles.json (release_check)
    assert MAKE_LINE.findall(text) == ["manifest", "info", "image"]
    assert re.search(r"^# owrt-vpn: make image: status 0 after \d+\.\d{3} s$", text, re.M)
    info = json.loads(info_path.read_text())
    entries = list((cache / "manifests").glob("*.json"))
    assert len(entries) == 1
    assert json.loads(entries[0].read_text())["packages"] == info["packages"]["installed"]

    # A site change that keeps the package list: no `make manifest`, same packages.
    site_file = site / "owrt-vpn.toml"
    site_file.write_text(site_file.read_text().replace('name = "laptop"', 'name = "desktop"'))
    second = json.loads(_build(cli, site, env, served_mirror, "--json").stdout)["routers"][0]
    assert second["status"] == "built" and set(second["timings"]) == {"make_image"}
    assert MAKE_LINE.findall(log.read_text()) == ["info", "image"]
    again = json.loads(info_path.read_text())
    assert again["packages"] == info["packages"]
    assert again["input_key"] != info["input_key"]

    # The feeds moved on (a stale entry): the image disagrees, so the build asks
    # make manifest again, builds again, and remembers the real answer.
    stale = json.loads(entries[0].read_text())
    name = sorted(stale["packages"])[0]
    stale["packages"][name] = "0.0-stale"
    entries[0].write_text(json.dumps(stale))
    proc = _build(cli, site, env, served_mirror, "--force")
    assert "package versions changed since the last build: building again" in proc.stderr
    assert MAKE_LINE.findall(log.read_text()) == ["info", "image", "manifest", "image"]
    fixed = json.loads(info_path.read_text())
    assert fixed["packages"]["installed"] == info["packages"]["installed"]
    assert json.loads(entries[0].read_text())["packages"] == info["packages"]["installed"]


def test_manifest_cache_ignores_foreign_and_broken_entries(tmp_path: Path) -> None:
    mc = ManifestCache(tmp_path)
    key = manifest_key("local", "ab" * 32, "phicomm_k3", ["strongswan", "-ppp"])
    other = manifest_key("local", "ab" * 32, "phicomm_k3", ["strongswan"])
    assert mc.get(key) is None
    mc.put(key, {"strongswan": "5.9.14-r1"})
    assert mc.get(key) == {"strongswan": "5.9.14-r1"}
    assert mc.get(other) is None
    path = next((tmp_path / "manifests").glob("*.json"))
    for broken in ("{", "[]", json.dumps({"key": other, "packages": {"a": "1"}})):
        path.write_text(broken)
        assert mc.get(key) is None
    path.write_text(json.dumps({"key": key, "packages": {"a": 1}}))
    assert mc.get(key) is None
    mc.put(key, {})  # nothing confirmed: nothing remembered
    assert mc.get(key) is None
    mc.put(key, {"a": "1"})
    mc.forget(key)
    assert mc.get(key) is None and not path.exists()
