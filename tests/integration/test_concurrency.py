"""Concurrent edits and builds lose nothing; a symlinked site file stays a link;
a build never silently replaces a missing CA.

Real CLI processes started together (``Popen``), the real PKI and a served
mirror of ImageBuilder doubles.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrtcli import CliRunner, cli_env, owrt_argv

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path: Path, cli: CliRunner) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache")}
    cli("init", "--server-id", "vpn.example.org", cwd=folder, env=env, check=True)
    cli("pki", "init", cwd=folder, env=env, check=True)
    return folder


def _start(args: list[str], cwd: Path, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as fh:
        return subprocess.Popen(
            owrt_argv(*args), cwd=cwd, env=cli_env(env), stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


def test_parallel_user_adds_lose_nothing(site: Path, cli: CliRunner, tmp_path: Path) -> None:
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache")}
    names = [f"u{i}" for i in range(6)]
    procs = [
        _start(["user", "add", n, "--device", "pc:linux"], site, env, tmp_path / f"{n}.out")
        for n in names
    ]
    codes = [p.wait(timeout=300) for p in procs]
    outputs = [(tmp_path / f"{n}.out").read_text() for n in names]
    assert codes == [0] * 6, outputs
    listed = json.loads(cli("user", "list", "--json", cwd=site, check=True).stdout)
    users = {u["name"]: u for u in listed["users"]}
    assert set(names) <= set(users)
    for n in names:  # recorded in the site file and issued, for every one of them
        assert users[n]["devices"][0]["certificate"] == "valid"
        assert (site / "pki" / "clients" / n / "pc.crt").is_file()
    issued = {p.name for p in (site / "pki" / "clients").iterdir()}
    assert issued == set(users) & issued  # nothing issued that the site file lacks
    assert cli("check", cwd=site).returncode == 0


def test_user_add_with_the_pki_in_the_site_folder(
    site: Path, cli: CliRunner, tmp_path: Path
) -> None:
    # pki_dir = ".": the site edit lock and the PKI lock are one folder's.
    folder = tmp_path / "flat"
    folder.mkdir()
    text = re.sub(r"(?m)^pki_dir = .*$", 'pki_dir = "."', (site / "owrt-vpn.toml").read_text())
    assert 'pki_dir = "."' in text
    (folder / "owrt-vpn.toml").write_text(text)
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache")}
    assert cli("pki", "init", cwd=folder, env=env).returncode == 0
    r = cli("user", "add", "eve", "--device", "pc:linux", cwd=folder, env=env)
    assert r.returncode == 0, r.stderr
    assert (folder / "clients" / "eve" / "pc.crt").is_file()


def test_symlinked_site_file_is_edited_through_its_link(
    site: Path, cli: CliRunner, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = elsewhere / "owrt-vpn.toml"
    link.symlink_to(os.path.relpath(site / "owrt-vpn.toml", elsewhere))
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache")}
    r = cli("user", "add", "eve", "--device", "pc:linux", cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink()
    assert 'name = "eve"' in (site / "owrt-vpn.toml").read_text()
    # Relative paths (pki_dir) resolve from the real file, not from the link.
    assert (site / "pki" / "clients" / "eve" / "pc.crt").is_file()
    assert not (elsewhere / "pki").exists()
    r = cli("user", "remove", "eve", cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and 'name = "eve"' not in link.read_text()


def _build_args(mirror: ServedMirror, *extra: str) -> list[str]:
    return [
        "build", "--mirror", mirror.url, "--trust-key", str(mirror.key.public),
        "--no-bundles", *extra,
    ]  # fmt: skip


def test_build_refuses_to_replace_a_missing_ca(
    site: Path,
    cli: CliRunner,
    tmp_path: Path,
    served_mirror: ServedMirror,  # noqa: F811
) -> None:
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache")}
    assert cli(*_build_args(served_mirror), cwd=site, env=env).returncode == 0
    for name in ("ca.crt", "ca.key"):
        (site / "pki" / name).unlink()
    r = cli(*_build_args(served_mirror, "--force"), cwd=site, env=env)
    assert r.returncode == 3, r.stderr
    assert (
        "ca.crt: the CA is missing: restore it from your backup, or `owrt-vpn pki init` "
        "to start over" in r.stderr
    )
    assert not (site / "pki" / "ca.crt").exists()
    r = cli("bundle", cwd=site, env=env)  # the sibling path that also made a CA
    assert r.returncode == 3, r.stderr
    assert "the CA is missing" in r.stderr
    assert not (site / "pki" / "ca.crt").exists()


def test_parallel_forced_builds_of_one_dist_root_serialise(
    site: Path,
    tmp_path: Path,
    served_mirror: ServedMirror,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from owrt_vpn.build.runner import dist_lock_path
    from owrt_vpn.fsutil import held_lock

    cache = tmp_path / "cache"
    monkeypatch.setenv("OWRT_VPN_CACHE", str(cache))
    env = {"OWRT_VPN_CACHE": str(cache)}
    outs = [tmp_path / f"build{i}.out" for i in range(2)]
    # Hold the dist root's lock until both builds say they wait, so they
    # really run together; then they must take turns, and all succeed.
    with held_lock(dist_lock_path(site / "dist" / "home")):
        procs = [_start(_build_args(served_mirror, "--force"), site, env, o) for o in outs]
        deadline = time.monotonic() + 120
        while not all("waiting for another build" in o.read_text() for o in outs):
            assert time.monotonic() < deadline, [o.read_text() for o in outs]
            assert all(p.poll() is None for p in procs), [o.read_text() for o in outs]
            time.sleep(0.1)
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], [o.read_text() for o in outs]
    info = json.loads((site / "dist" / "home" / "routers" / "gw" / "build-info.json").read_text())
    for image in info["images"]:
        assert (site / "dist" / "home" / "routers" / "gw" / image["name"]).is_file()
    assert not list((site / "dist" / "home" / "routers").glob(".*"))  # no temp dirs left
