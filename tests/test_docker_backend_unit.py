"""The docker backend's pure parts: image names, the overlay tar, pull progress, digests.

The backend against a real Docker API (podman) is in
``integration/test_docker_backend.py``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends import engine
from owrt_vpn.imagebuilder.backends.docker import DockerSession
from owrt_vpn.imagebuilder.backends.engine import (
    image_identity,
    image_ref,
    layer_progress,
    overlay_tar,
)

HEX = "ab" * 32
TAG = "bcm53xx-generic-v24.10.2"
TAG2 = "bcm53xx_generic_24.10.2"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (engine.IMAGE_ENV, engine.TIMEOUT_ENV, engine.NETWORK_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (None, "ghcr.io/openwrt/imagebuilder:" + TAG),
        ("docker.io/openwrt/imagebuilder", "docker.io/openwrt/imagebuilder:" + TAG),
        ("mirror.lan:5000/openwrt/imagebuilder", "mirror.lan:5000/openwrt/imagebuilder:" + TAG),
        ("mirror.lan:5000/ib:{target}_{subtarget}_{release}", "mirror.lan:5000/ib:" + TAG2),
        ("mine/ib:pinned", "mine/ib:pinned"),
        (f"mine/ib@sha256:{HEX}", f"mine/ib@sha256:{HEX}"),
    ],
)
def test_image_ref_forms(image: str | None, expected: str) -> None:
    assert image_ref("bcm53xx", "generic", "24.10.2", image) == expected


def test_image_ref_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engine.IMAGE_ENV, "quay.io/openwrt/imagebuilder")
    assert image_ref("ath79", "generic", "23.05.5") == (
        "quay.io/openwrt/imagebuilder:ath79-generic-v23.05.5"
    )
    assert image_ref("ath79", "generic", "23.05.5", "x/y") == "x/y:ath79-generic-v23.05.5"


def test_image_ref_refuses_snapshots_and_bad_templates() -> None:
    with pytest.raises(BuildError, match="releases only") as exc:
        image_ref("bcm53xx", "generic", "SNAPSHOT")
    assert exc.value.hint is not None and "--backend local" in exc.value.hint
    with pytest.raises(BuildError, match=r"template 'x:\{board\}'") as exc:
        image_ref("bcm53xx", "generic", "24.10.2", "x:{board}")
    assert exc.value.hint is not None and "{target}" in exc.value.hint


@pytest.mark.parametrize(("raw", "seconds"), [("", 3600.0), ("90", 90.0), ("2.5", 2.5)])
def test_step_timeout(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: float) -> None:
    monkeypatch.setenv(engine.TIMEOUT_ENV, raw)
    assert engine.step_timeout() == seconds


@pytest.mark.parametrize("raw", ["0", "-5", "soon"])
def test_step_timeout_rejects_nonsense(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(engine.TIMEOUT_ENV, raw)
    with pytest.raises(BuildError, match=f"OWRT_VPN_CONTAINER_TIMEOUT='{raw}'"):
        engine.step_timeout()


def test_overlay_tar_belongs_to_the_build_user_and_keeps_modes(tmp_path: Path) -> None:
    files = tmp_path / "files"
    (files / "etc/swanctl/private").mkdir(parents=True)
    key = files / "etc/swanctl/private/gw.key"
    key.write_bytes(b"secret\n")
    key.chmod(0o600)
    script = files / "etc/uci-defaults/90-owrt-vpn"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (files / "etc/link").symlink_to("swanctl/private")
    for p in [files, *files.rglob("*")]:
        os.utime(p, (1700000000, 1700000000), follow_symlinks=False)

    data = overlay_tar(files, 1000, 1001)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        content = tar.extractfile(members["owrt-vpn/files/etc/swanctl/private/gw.key"])
        assert content is not None and content.read() == b"secret\n"
    assert list(members)[:3] == ["owrt-vpn", "owrt-vpn/bin", "owrt-vpn/files"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(1000, 1001, "", "")}
    assert members["owrt-vpn"].mode == 0o700  # only the build user gets in at all
    assert members["owrt-vpn/files/etc/swanctl/private/gw.key"].mode == 0o600
    assert members["owrt-vpn/files/etc/uci-defaults/90-owrt-vpn"].mode == 0o755
    link = members["owrt-vpn/files/etc/link"]
    assert link.issym() and link.linkname == "swanctl/private"
    assert members["owrt-vpn/files/etc/swanctl/private/gw.key"].mtime == 1700000000
    assert overlay_tar(files, 1000, 1001) == data  # sorted, stable


def test_overlay_tar_refuses_special_files(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    os.mkfifo(files / "pipe")
    with pytest.raises(BuildError, match="overlay: pipe is not a file, directory or symlink"):
        overlay_tar(files, 1000, 1000)


def test_layer_progress_sums_layers() -> None:
    layers: dict[str, tuple[int, int]] = {}
    events = [
        {"status": "Pulling from openwrt/imagebuilder", "id": "bcm53xx-generic-v24.10.2"},
        {"status": "Pulling fs layer", "id": "aaaaaaaaaaaa", "progressDetail": {}},
        {"status": "Downloading", "id": "aaaaaaaaaaaa",
         "progressDetail": {"current": 100, "total": 1000}},
        {"status": "Already exists", "id": "bbbbbbbbbbbb", "progressDetail": {}},
        {"status": "Downloading", "id": "cccccccccccc",
         "progressDetail": {"current": 5, "total": 50}},
        {"status": "Download complete", "id": "cccccccccccc", "progressDetail": {}},
    ]  # fmt: skip
    for event in events:
        layer_progress(event, layers)
    assert layers == {"aaaaaaaaaaaa": (100, 1000), "cccccccccccc": (50, 50)}


def _image(digests: list[str], image_id: str = f"sha256:{'cd' * 32}") -> SimpleNamespace:
    return SimpleNamespace(id=image_id, attrs={"RepoDigests": digests})


def test_identity_prefers_the_registry_digest_of_the_same_repository() -> None:
    ref = "ghcr.io/openwrt/imagebuilder:bcm53xx-generic-v24.10.2"
    other = f"mirror/imagebuilder@sha256:{'ef' * 32}"
    ident = image_identity(ref, _image([other, f"ghcr.io/openwrt/imagebuilder@sha256:{HEX}"]))
    assert ident == {
        "backend": "docker",
        "name": ref,
        "digest": f"ghcr.io/openwrt/imagebuilder@sha256:{HEX}",
        "sha256": HEX,
        "id": f"sha256:{'cd' * 32}",
    }


def test_identity_falls_back_to_the_image_id() -> None:
    ident = image_identity("local/ib:x", _image([]))
    assert ident["digest"] == f"sha256:{'cd' * 32}" and ident["sha256"] == "cd" * 32
    with pytest.raises(BuildError, match="unexpected digest"):
        image_identity("local/ib:x", _image([], "sha512:00"))


def test_engine_error_causes_are_short() -> None:
    exc = Exception(
        "Error while fetching server API version: HTTPConnectionPool(host='192.0.2.1', "
        "port=2375): Max retries exceeded with url: /version (Caused by NewConnectionError("
        "\"HTTPConnection(host='192.0.2.1', port=2375): Failed to establish a new connection: "
        '[Errno 111] Connection refused"))'
    )
    assert engine._cause(exc) == "Connection refused"
    exc = Exception(
        "Error while fetching server API version: ('Connection aborted.', "
        "FileNotFoundError(2, 'No such file or directory'))"
    )
    assert engine._cause(exc) == "No such file or directory"
    assert engine._cause(Exception("something else")) == "something else"


def test_missing_sdk_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # import docker -> ImportError
    with pytest.raises(BuildError, match="needs the Python `docker` package") as exc:
        engine.sdk()
    assert exc.value.hint is not None and "owrt-vpn[docker]" in exc.value.hint
    status = engine.engine_status()
    assert status["reachable"] is False and "docker` package" in status["error"]
    assert engine.describe(status).startswith("not reachable at ")


class _Container:
    """A container whose start the engine answers with an error (podman's cgroup race)."""

    def __init__(self, error: str, state: dict[str, str]) -> None:
        self.error, self.state, self.attrs = error, state, {"State": {"Status": "created"}}

    def start(self) -> None:
        raise docker.errors.APIError(self.error)

    def reload(self) -> None:
        self.attrs = {"State": self.state}


RACE = "read /proc/31483/cgroup: no such process"


def test_start_survives_podmans_cgroup_race_after_the_command_ran() -> None:
    ran = {"Status": "exited", "StartedAt": "2026-12-06T03:40:00.1Z"}
    DockerSession._start(_Container(RACE, ran))  # no error: the logs and status are there


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (RACE, {"Status": "created", "StartedAt": "0001-01-01T00:00:00Z"}),
        (RACE, {"Status": "exited", "StartedAt": "0001-01-01T00:00:00Z"}),
        ("no space left on device", {"Status": "exited", "StartedAt": "2026-12-06T03:40:00Z"}),
    ],
)
def test_start_errors_that_are_not_the_race_stay_errors(error: str, state: dict[str, str]) -> None:
    with pytest.raises(docker.errors.APIError):
        DockerSession._start(_Container(error, state))
