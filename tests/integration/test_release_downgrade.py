"""Release downgrades: another release's genuinely signed files are refused (exit 3).

A loopback mirror of ImageBuilder doubles with 24.10.1 and 24.10.2, signed
with one key; then the mirror misbehaves the ways a stale or hostile mirror
can without the signing key: it serves 24.10.1's directory (archive,
sha256sums, signature, profiles.json: all genuinely signed) under
``releases/24.10.2/``, or rolls ``.versions.json`` back. Files re-signed with
the key stand for an inconsistency inside a signed release (profiles.json's
version or revision disagreeing with the ImageBuilder's ``make info``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagebuilder_double.mirror_tree import Mirror, SigningKey, make_mirror, make_signing_key
from integration.mirror import MirrorServer, serve
from owrtcli import CliRunner

pytestmark = pytest.mark.integration

T = ("bcm53xx", "generic")


@dataclass
class Lab:
    site: Path
    env: dict[str, str]
    mirror: Mirror
    key: SigningKey
    server: MirrorServer
    cli: CliRunner

    def build(self, *args: str) -> Any:
        return self.cli(
            "build",
            "--mirror",
            self.server.url,
            "--trust-key",
            str(self.key.public),
            "--no-bundles",
            *args,
            cwd=self.site,
            env=self.env,
        )

    def lock(self) -> dict[str, Any]:
        """gw's lock entry; a --release build is an override, recorded apart."""
        data = json.loads((self.site / "owrt-vpn.lock").read_text())
        return dict(data.get("overrides", {}).get("gw") or data["routers"]["gw"])

    def dist_info(self) -> dict[str, Any]:
        path = self.site / "dist" / "home" / "routers" / "gw" / "build-info.json"
        return dict(json.loads(path.read_text()))


@pytest.fixture
def lab(tmp_path: Path, cli: CliRunner) -> Iterator[Lab]:
    key = make_signing_key(tmp_path / "keys")
    mirror = make_mirror(tmp_path / "mirror", key, [("24.10.1", *T), ("24.10.2", *T)])
    site = tmp_path / "site"
    site.mkdir()
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "uk")}
    cli("init", "--server-id", "vpn.example.org", cwd=site, env=env, check=True)
    with serve(mirror.base) as server:
        yield Lab(site, env, mirror, key, server, cli)


def _serve_old_as_new(mirror: Mirror) -> None:
    """releases/24.10.2/targets/bcm53xx/generic/ := 24.10.1's signed directory, unchanged."""
    new = mirror.target_dir("24.10.2", *T)
    shutil.rmtree(new)
    shutil.copytree(mirror.target_dir("24.10.1", *T), new)


def test_old_release_signed_files_under_the_new_name_are_refused(lab: Lab) -> None:
    _serve_old_as_new(lab.mirror)
    r = lab.build("--release", "24.10.2")
    assert r.returncode == 3, r.stderr
    assert "openwrt-imagebuilder-24.10.1-bcm53xx-generic" in r.stderr
    assert "not one of 24.10.2" in r.stderr
    assert "built" not in r.stdout
    assert not (lab.site / "owrt-vpn.lock").exists()
    assert not (lab.site / "dist" / "home" / "routers" / "gw" / "build-info.json").exists()


def _edit_profiles(lab: Lab, **changes: str) -> None:
    path = lab.mirror.target_dir("24.10.2", *T) / "profiles.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))
    lab.mirror.resign("24.10.2", *T)


def test_profiles_json_version_number_must_be_the_release(lab: Lab) -> None:
    _edit_profiles(lab, version_number="24.10.1")
    r = lab.build("--release", "24.10.2")
    assert r.returncode == 3, r.stderr
    assert "version_number '24.10.1', not '24.10.2'" in r.stderr


def test_profiles_json_revision_must_be_make_infos(lab: Lab) -> None:
    _edit_profiles(lab, version_code="r99999-0123456789")
    r = lab.build("--release", "24.10.2")
    assert r.returncode == 3, r.stderr
    assert "revision 'r99999-0123456789'" in r.stderr and "`make info` says" in r.stderr
    assert not (lab.site / "dist" / "home" / "routers" / "gw" / "build-info.json").exists()


def test_series_never_resolves_older_than_the_lock_and_names_its_index(lab: Lab) -> None:
    r = lab.build("--release", "24.10.x")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert f"24.10.x is 24.10.2 by {lab.server.url}/.versions.json (unsigned index)" in out
    assert lab.lock()["release"] == "24.10.2"
    assert lab.lock()["revision"] == lab.dist_info()["release"]["revision"]

    # The mirror's (unsigned) index rolls back to 24.10.1.
    index = lab.mirror.base / ".versions.json"
    doc = json.loads(index.read_text())
    doc.update(versions_list=["24.10.1"], stable_version="24.10.1")
    index.write_text(json.dumps(doc))
    r = lab.build("--release", "24.10.x", "--force")
    assert r.returncode == 3, r.stderr
    assert "24.10.x resolved to 24.10.1" in r.stderr and "older than 24.10.2" in r.stderr
    assert lab.lock()["release"] == "24.10.2"
    # Going back on purpose, by name, is allowed.
    r = lab.build("--release", "24.10.1")
    assert r.returncode == 0, r.stderr
    assert lab.lock()["release"] == "24.10.1"


def test_locked_build_checks_the_locks_revision(lab: Lab) -> None:
    assert lab.build("--release", "24.10.2").returncode == 0
    lock_path = lab.site / "owrt-vpn.lock"
    doc = json.loads(lock_path.read_text())
    doc["routers"]["gw"]["revision"] = "r1-0000000000"
    lock_path.write_text(json.dumps(doc))
    r = lab.build("--release", "24.10.2", "--locked", "--force")
    assert r.returncode == 3, r.stderr
    assert "the lock pins 'r1-0000000000'" in r.stderr
