"""`owrt-vpn build --backend docker` against a private podman serving the Docker API.

The images are made here without any registry and tagged like the official
ones (``ghcr.io/openwrt/imagebuilder:bcm53xx-generic-v24.10.2``): this
host's sh/make/awk/coreutils/mksquashfs with their libraries, a non-root
``buildbot`` user, and the ImageBuilder double at ``/builder``. Every build
runs with ``OWRT_VPN_CONTAINER_NETWORK=none``.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sitefile
from imagebuilder_double import Variant, cached_imagebuilder
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from imagebuilder_double.mirror_tree import make_mirror
from integration.mirror import serve
from integration.podman import (
    SLOW_MAKE,
    PodmanService,
    Registry,
    build_rootfs_tar,
    import_image,
    official_tag,
    podman_unusable,
)
from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.base import BuildRequest
from owrt_vpn.imagebuilder.backends.engine import LABEL
from owrt_vpn.imagebuilder.backends.local import LocalBackend
from owrt_vpn.imagebuilder.backends.output import parse_info
from owrt_vpn.imagebuilder.cache import Cache, sha256_file
from owrtcli import CliRunner, cli_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(podman_unusable() is not None, reason=str(podman_unusable())),
]

K3_TRX = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"
OFFICIAL = official_tag("bcm53xx", "generic", "24.10.2")
TEST_REPO = "localhost/owrt-vpn-test"
NO_KDF = Variant(omit_packages=("strongswan-mod-kdf",))  # a package our list asks for
SMALL_FLASH = Variant(flash_kib={"phicomm_k3": 2048})


@dataclass
class Engine:
    """The running podman and the images made for these tests."""

    service: PodmanService
    client: Any
    registry: Registry | None  # a local registry to pull from (None: not installed)

    def leftovers(self) -> list[dict[str, Any]]:
        """Containers carrying the backend's label (there must never be any).

        The plain listing: ``containers.list()`` inspects each one and fails
        when a container goes away meanwhile.
        """
        return list(self.client.api.containers(all=True, filters={"label": LABEL}))

    def assert_no_leftovers(self) -> None:
        """Fail on leftovers, after removing them (one failure must not cascade)."""
        left = self.leftovers()
        for entry in left:
            self.client.api.remove_container(entry["Id"], force=True)
        assert [entry["Labels"] for entry in left] == []


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    work = tmp_path_factory.mktemp("podman")
    registry = Registry(work / "registry") if shutil.which("docker-registry") else None
    service = PodmanService(work / "svc")
    try:
        if registry is not None:
            service.insecure_registries = (registry.start().host,)
        service.start()
        # The no-kdf image has an ENTRYPOINT (like the snapshot images' setup.sh):
        # the backend must not run it.
        entrypoint = ('ENTRYPOINT ["/usr/bin/true"]',)
        images = [
            (OFFICIAL, "24.10.2", None, None, ()),
            (official_tag("bcm53xx", "generic", "25.12.0"), "25.12.0", None, None, ()),
            (f"{TEST_REPO}/no-kdf:bcm53xx-generic-v24.10.2", "24.10.2", NO_KDF, None, entrypoint),
            (f"{TEST_REPO}/small-flash:bcm53xx-generic-v24.10.2", "24.10.2", SMALL_FLASH, None, ()),
            (f"{TEST_REPO}/slow:bcm53xx-generic-v24.10.2", "24.10.2", None, SLOW_MAKE, ()),
        ]
        for i, (tag, release, variant, slow, changes) in enumerate(images):
            archive = cached_imagebuilder(release, "bcm53xx", "generic", variant)
            extra = {"/usr/local/bin/make": slow} if slow else None
            root = build_rootfs_tar(work / f"root{i}.tar", archive, extra)
            import_image(service, root, tag, changes)
            root.unlink()
        client = service.client()
        try:
            yield Engine(service, client, registry)
        finally:
            client.close()
    finally:
        service.stop()
        if registry is not None:
            registry.stop()


@dataclass
class Lab:
    """A site with a PKI, the served mirror and the engine."""

    site: Path
    env: dict[str, str]
    mirror: ServedMirror
    engine: Engine
    cli: CliRunner

    def build(self, *args: str, mirror: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "build",
            "--mirror",
            mirror or self.mirror.url,
            "--trust-key",
            str(self.mirror.key.public),
            *args,
            cwd=self.site,
            env=self.env,
        )

    def routers(self, out: str = "dist") -> Path:
        return self.site / out / "home" / "routers"


@pytest.fixture
def lab(
    tmp_path: Path,
    cli: CliRunner,
    served_mirror: ServedMirror,  # noqa: F811
    engine: Engine,
) -> Iterator[Lab]:
    site = tmp_path / "site"
    site.mkdir()
    env = {
        "OWRT_VPN_CACHE": str(tmp_path / "cache"),
        "OWRT_VPN_KEYS_DIR": str(tmp_path / "userkeys"),
        "DOCKER_HOST": engine.service.url,
        "OWRT_VPN_CONTAINER_NETWORK": "none",  # never the engine's bridge on the host
    }
    cli("init", "--server-id", "vpn.example.org", cwd=site, env=env, check=True)
    cli("pki", "init", cwd=site, env=env, check=True)
    yield Lab(site, env, served_mirror, engine, cli)
    engine.assert_no_leftovers()


def listing(image: Path) -> dict[str, str]:
    """path -> ``ls -l`` style mode, owner and size from ``unsquashfs -lls``."""
    out = subprocess.run(
        ["unsquashfs", "-lls", "-d", "", str(image)], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[0][0] in "-dlcbps":
            name = parts[5].split(" -> ")[0]
            entries[name] = f"{parts[0]} {parts[1]} {parts[2]}"
    return entries


def unsquash(image: Path, dest: Path) -> dict[str, bytes]:
    subprocess.run(["unsquashfs", "-q", "-no-xattrs", "-d", str(dest), str(image)], check=True,
                   capture_output=True)  # fmt: skip
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# ----------------------------------------------------------------- end to end


def test_docker_build_equals_local_build(lab: Lab, tmp_path: Path) -> None:
    local = lab.build("--backend", "local", "--out", "dist-local")
    assert local.returncode == 0, local.stderr
    lab.mirror.server.reset_log()
    proc = lab.build("--backend", "docker", "--out", "dist-docker")
    assert proc.returncode == 0, proc.stderr
    assert "gw: built 24.10.2 bcm53xx/generic phicomm_k3" in proc.stdout
    # The image carries the ImageBuilder: nothing but the signed indexes was downloaded.
    assert lab.mirror.server.count(lab.mirror.archive_path("24.10.2", "bcm53xx", "generic")) == 0

    a, b = lab.routers("dist-local") / "gw", lab.routers("dist-docker") / "gw"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert (a / "overlay.tar").read_bytes() == (b / "overlay.tar").read_bytes()
    manifest = K3_TRX.replace("-squashfs.trx", ".manifest")
    assert (a / manifest).read_bytes() == (b / manifest).read_bytes()
    subprocess.run(["sha256sum", "--quiet", "-c", "sha256sums"], cwd=b, check=True)
    assert stat.S_IMODE((b / K3_TRX).stat().st_mode) == 0o600
    # Same firmware: every file, mode and owner, except the baked build-info
    # (it names the backend and the image it ran in).
    baked = "usr/share/owrt-vpn/build-info.json"
    root_a = unsquash(a / K3_TRX, tmp_path / "a")
    root_b = unsquash(b / K3_TRX, tmp_path / "b")
    assert root_a.keys() == root_b.keys()
    assert [n for n in root_a if root_a[n] != root_b[n]] == [baked]
    la, lb = listing(a / K3_TRX), listing(b / K3_TRX)
    assert {k: v.rsplit(" ", 1)[0] for k, v in la.items()} == {
        k: v.rsplit(" ", 1)[0] for k, v in lb.items()
    }
    # The router key reached the unprivileged build user without a looser mode.
    key = lb["/usr/share/owrt-vpn/files/etc/swanctl/private/gw.key"]
    assert key.startswith("-rw------- root/root")

    # build-info and the lock record the image's digest instead of the archive's sha256.
    image = lab.engine.client.images.get(OFFICIAL)
    info = json.loads((b / "build-info.json").read_text())
    ib = info["imagebuilder"]
    assert ib["backend"] == "docker" and ib["name"] == OFFICIAL
    assert ib["digest"] in image.attrs["RepoDigests"] or ib["digest"] == image.id
    assert ib["digest"].endswith("sha256:" + ib["sha256"]) and ib["id"] == image.id
    assert "url" not in ib and info["inputs"]["backend"] == "docker"
    assert json.loads(root_b[baked])["imagebuilder"] == ib
    lock = json.loads((lab.site / "owrt-vpn.lock").read_text())
    assert lock["routers"]["gw"]["imagebuilder"] == {"name": OFFICIAL, "sha256": ib["sha256"]}
    # make's output streamed into the log, headed by the image and the user.
    log = (lab.site / "dist-docker" / "home" / "logs" / "gw.log").read_text()
    assert f"+ [{OFFICIAL} {ib['digest']} as buildbot] make --no-print-directory image" in log
    assert "Building images..." in log

    # --locked: the same image passes; another one is refused before any make.
    again = lab.build("--backend", "docker", "--out", "dist-docker", "--locked", "--force")
    assert again.returncode == 0, again.stderr
    other = f"{TEST_REPO}/slow"  # its make would hang: the lock check comes first
    proc = lab.build("--backend", "docker", "--out", "dist-docker", "--locked", "--force",
                     "--container-image", other)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert f"the ImageBuilder {other}:bcm53xx-generic-v24.10.2 has sha256 " in proc.stderr
    assert f"pins {ib['sha256']}" in proc.stderr


def test_site_file_backend_docker(lab: Lab) -> None:
    site_file = lab.site / "owrt-vpn.toml"
    text = site_file.read_text()
    assert "\n[site]\n" in text
    site_file.write_text(text.replace("\n[site]\n", '\n[site]\nbackend = "docker"\n', 1))
    proc = lab.build("-v")
    assert proc.returncode == 0, proc.stderr
    assert "preparing the ImageBuilder (docker backend)" in proc.stderr
    assert "gw | Building images..." in proc.stderr  # make's output, as with the local backend
    info = json.loads((lab.routers() / "gw" / "build-info.json").read_text())
    assert info["imagebuilder"]["name"] == OFFICIAL
    again = lab.build()
    assert again.returncode == 0 and "gw: up to date" in again.stdout


def test_image_is_pulled_when_missing(lab: Lab) -> None:
    registry = lab.engine.registry
    if registry is None:
        pytest.skip("docker-registry is not installed (see .ci/run)")
    repo = f"{registry.host}/openwrt/imagebuilder"
    ref = f"{repo}:bcm53xx-generic-v24.10.2"
    lab.engine.service.podman("push", "--tls-verify=false", OFFICIAL, ref)  # not tagged here
    try:
        assert not any(ref in i.tags for i in lab.engine.client.images.list())
        proc = lab.build("--backend", "docker", "--container-image", repo)
        assert proc.returncode == 0, proc.stderr
        assert f"gw: pulling {ref}" in proc.stderr
        image = lab.engine.client.images.get(ref)
        info = json.loads((lab.routers() / "gw" / "build-info.json").read_text())
        # The digest the registry gave, under the name that was asked for.
        assert info["imagebuilder"]["name"] == ref
        assert info["imagebuilder"]["digest"].startswith(f"{repo}@sha256:")
        assert info["imagebuilder"]["digest"] in image.attrs["RepoDigests"]
        again = lab.build("--backend", "docker", "--container-image", repo, "--force")
        assert again.returncode == 0, again.stderr
        assert "pulling" not in again.stderr  # present now
    finally:
        lab.engine.client.images.remove(ref)


def test_missing_image_names_it(lab: Lab) -> None:
    # A registry that refuses connections: the pull fails at once, offline.
    repo = "127.0.0.1:9/openwrt/imagebuilder"
    proc = lab.build("--backend", "docker", "--container-image", repo)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot pull the container image {repo}:bcm53xx-generic-v24.10.2" in proc.stderr
    assert "older releases" in proc.stderr and "--backend local" in proc.stderr
    assert not (lab.site / "dist" / "home" / "routers").exists()


def test_failing_make_gives_the_same_error_as_locally(lab: Lab, tmp_path: Path) -> None:
    # The same ImageBuilder lacking a package we ask for: on a mirror for the
    # local backend, in an image for the docker backend.
    mirror = make_mirror(tmp_path / "no-kdf", lab.mirror.key, variant=NO_KDF)
    with serve(mirror.base) as srv:
        local = lab.build("--backend", "local", mirror=srv.url)
        docker = lab.build("--backend", "docker", "--container-image", f"{TEST_REPO}/no-kdf",
                           mirror=srv.url)  # fmt: skip
    assert local.returncode == docker.returncode == 1
    errors = [
        [line for line in p.stderr.splitlines() if line.startswith(("error:", "hint:"))]
        for p in (local, docker)
    ]
    assert errors[0] == errors[1]
    assert errors[1][0] == (
        "error: bcm53xx/generic phicomm_k3: unknown package(s) for this release/target: "
        "strongswan-mod-kdf"
    )
    log = (lab.site / "dist" / "home" / "logs" / "gw.log").read_text()
    # (make manifest discards opkg's stdout "Unknown package"; the collected error stays)
    assert " * opkg_install_cmd: Cannot install package strongswan-mod-kdf." in log
    assert not (lab.routers() / "gw").exists()


# ----------------------------------------------------------------- interruption


def _wait_for_running(engine: Engine, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = [c for c in engine.leftovers() if c["State"] == "running"]
        if len(running) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the build's container never ran")


SECOND_ROUTER = sitefile.router(
    "gw2",
    server_id="vpn2.example.org",
    subtarget="generic",
    device="tenda_ac9",
    lan=["192.168.2.0/24"],
    pool="10.10.20.0/24",
)


@pytest.mark.parametrize(
    ("signum", "jobs"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)]
)
def test_interrupted_build_leaves_no_container(lab: Lab, signum: int, jobs: int) -> None:
    if jobs == 2:
        site_file = lab.site / "owrt-vpn.toml"
        head, users = site_file.read_text().split("[[users]]", 1)
        site_file.write_text(head + SECOND_ROUTER + "\n[[users]]" + users)
    argv = [sys.executable, "-m", "owrt_vpn", "build", "--mirror", lab.mirror.url,
            "--trust-key", str(lab.mirror.key.public), "--backend", "docker",
            "--container-image", f"{TEST_REPO}/slow", "--jobs", str(jobs)]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=lab.site, env=cli_env(lab.env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for_running(lab.engine, jobs, proc)
        t0 = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30  # the slow make sleeps 300 s: it was killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert lab.engine.leftovers() == []
    assert not lab.routers().exists()


def test_kill_9_leaves_a_container_the_next_build_removes(lab: Lab) -> None:
    argv = [sys.executable, "-m", "owrt_vpn", "build", "--mirror", lab.mirror.url,
            "--trust-key", str(lab.mirror.key.public), "--backend", "docker",
            "--container-image", f"{TEST_REPO}/slow", "--no-bundles"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=lab.site, env=cli_env(lab.env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_for_running(lab.engine, 1, proc)
        # The work tree (rendered overlay: the router's key) is 0700 from its creation.
        trees = [p for p in (lab.site.parent / "cache" / "work").iterdir() if p.is_dir()]
        assert [stat.S_IMODE(t.stat().st_mode) for t in trees] == [0o700]
    finally:
        proc.kill()
        proc.communicate()
    # No watchdog, no finally ran: the container is still there, running make.
    assert [c["State"] for c in lab.engine.leftovers()] == ["running"]
    r = lab.build("--backend", "docker", "--no-bundles")
    assert r.returncode == 0, r.stderr
    assert lab.engine.leftovers() == []  # the orphan was found by its owner label and removed
    assert not [p for p in (lab.site.parent / "cache" / "work").iterdir() if p.is_dir()]


def test_time_limit_kills_the_container(lab: Lab) -> None:
    lab.env["OWRT_VPN_CONTAINER_TIMEOUT"] = "2"
    t0 = time.monotonic()
    proc = lab.build("--backend", "docker", "--container-image", f"{TEST_REPO}/slow")
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1, proc.stderr
    assert "`make manifest` in the container timed out after 2 s" in proc.stderr
    assert "OWRT_VPN_CONTAINER_TIMEOUT" in proc.stderr


# ----------------------------------------------------------------- the session API


def _request(tmp_path: Path, release: str = "24.10.2", **kw: Any) -> BuildRequest:
    work = tmp_path / f"work-{len(list(tmp_path.glob('work-*')))}"
    work.mkdir()
    fields: dict[str, Any] = {
        "imagebuilder": Path(),
        "imagebuilder_sha256": "0" * 64,
        "profile": "phicomm_k3",
        "packages": ("strongswan-minimal", "strongswan-mod-openssl", "strongswan-swanctl"),
        "disabled_services": (),
        "extra_image_name": "vpn-gw",
        "expected_images": (K3_TRX.replace("24.10.2", release),),
        "work_dir": work,
        "log_path": tmp_path / "build.log",
        "target": "bcm53xx/generic",
        "release": release,
    }
    fields.update(kw)
    return BuildRequest(**fields)


@pytest.fixture
def docker_host(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("DOCKER_HOST", engine.service.url)
    monkeypatch.setenv("OWRT_VPN_CONTAINER_NETWORK", "none")
    yield engine
    engine.assert_no_leftovers()


def _both(tmp_path: Path, release: str, variant: Variant | None, image: str | None, **kw: Any
          ) -> list[Any]:  # fmt: skip
    """A local session on the double's tree and a docker session on its image."""
    from owrt_vpn.imagebuilder.backends.docker import DockerBackend

    archive = cached_imagebuilder(release, "bcm53xx", "generic", variant)
    tree = Cache(tmp_path / "cache").tree(archive, sha256_file(archive))
    local = LocalBackend().open(_request(tmp_path, release, imagebuilder=tree, **kw))
    docker = DockerBackend(image).open(_request(tmp_path, release, **kw))
    return [local, docker]


def _files(tmp_path: Path) -> Path:
    d = tmp_path / "files" / "etc"
    d.mkdir(parents=True, exist_ok=True)
    (d / "hello").write_text("hi\n")
    return d.parent


@pytest.mark.parametrize(
    ("release", "packages", "expected"),
    [
        ("24.10.2", ("strongswan-mod-nope",), "unknown package(s) for this release/target: "
         "strongswan-mod-nope"),
        ("25.12.0", ("strongswan-mod-nope",), "unknown package(s) for this release/target: "
         "strongswan-mod-nope"),
        ("24.10.2", ("dnsmasq-full",), "package conflict: dnsmasq-full conflicts with dnsmasq"),
    ],
)  # fmt: skip
def test_make_failures_read_the_same(
    tmp_path: Path, docker_host: Engine, release: str, packages: tuple[str, ...], expected: str
) -> None:
    sessions = _both(tmp_path, release, None, None, packages=("strongswan-minimal", *packages))
    errors = []
    for session in sessions:
        try:
            with pytest.raises(BuildError) as exc:
                session.manifest()
            errors.append((exc.value.message, exc.value.hint))
        finally:
            session.close()
    assert errors[0] == errors[1]
    assert expected in errors[1][0]
    assert sessions[1].package_manager == ("apk" if release == "25.12.0" else "opkg")


@pytest.mark.parametrize("release", ["24.10.2", "25.12.0"])
def test_package_index_in_the_container(tmp_path: Path, docker_host: Engine, release: str) -> None:
    """`make package_list` in the image lists the same feeds as the local tree
    (apk: through `apk list`, as `apk list --size` fails there too)."""
    local, docker = _both(tmp_path, release, None, None)
    try:
        indexes = [session.package_index() for session in (local, docker)]
    finally:
        local.close()
        docker.close()
    assert indexes[1] is not None and indexes[0] == indexes[1]
    assert {"luci", "luci-ssl", "strongswan-mod-openssl", "dnsmasq-full"} <= set(indexes[1])
    # opkg shows sizes (`opkg list --size`), apk none
    assert indexes[1]["luci-ssl"] == (1000 if release == "24.10.2" else 0)


def test_unknown_profile_lists_names_from_make_info_in_the_container(
    tmp_path: Path, docker_host: Engine
) -> None:
    local, docker = _both(tmp_path, "24.10.2", None, None, profile="phicomm_k2")
    try:
        for session in (local, docker):
            with pytest.raises(BuildError) as exc:
                session.manifest()
            assert "has no profile 'phicomm_k2'" in exc.value.message
            assert exc.value.hint is not None and "phicomm_k3" in exc.value.hint
        info = parse_info(docker._make(["info"], "info")[1])
        assert {"phicomm_k3", "tenda_ac9"} <= set(info.profiles)
    finally:
        local.close()
        docker.close()


def test_too_big_and_missing_images_are_errors(tmp_path: Path, docker_host: Engine) -> None:
    from owrt_vpn.imagebuilder.backends.docker import DockerBackend

    small = DockerBackend(f"{TEST_REPO}/small-flash").open(_request(tmp_path))
    try:
        small.manifest()
        with pytest.raises(BuildError) as exc:
            small.image(_files(tmp_path))
        assert "too big for the device's flash" in exc.value.message and K3_TRX in exc.value.message
    finally:
        small.close()
    req = _request(tmp_path, expected_images=(K3_TRX, "openwrt-never-made.bin"))
    session = DockerBackend().open(req)
    try:
        with pytest.raises(BuildError, match=r"did not produce openwrt-never-made\.bin"):
            session.image(_files(tmp_path))
        assert (session.bin_dir / K3_TRX).is_file()  # what make did produce was copied out
    finally:
        session.close()


def test_container_is_locked_down(tmp_path: Path, docker_host: Engine) -> None:
    """No capabilities, no-new-privileges, the build user, no network, our label."""
    from owrt_vpn.imagebuilder.backends.docker import DockerBackend

    session = DockerBackend().open(_request(tmp_path))
    try:
        container = session._create(["true"], "probe")
        try:
            host = container.attrs["HostConfig"]
            # Docker keeps ["ALL"]; podman lists what ALL dropped of its default set.
            dropped = {c.upper().removeprefix("CAP_") for c in host["CapDrop"]}
            assert dropped == {"ALL"} or {"CHOWN", "SETUID", "NET_RAW", "KILL"} <= dropped
            assert any("no-new-privileges" in o for o in host["SecurityOpt"])
            assert host["NetworkMode"] == "none"
            assert container.attrs["Config"]["User"] == "buildbot"
            assert container.attrs["Config"]["Labels"][LABEL] == session.session_id
        finally:
            session._remove(container)
        # Inside, as the backend creates it: uid 1000, no capabilities, NoNewPrivs.
        probe = session._create(["sh", "-c", "id -u; cat /proc/self/status; ls /sys/class/net"],
                                "probe")  # fmt: skip
        try:
            probe.start()
            assert probe.wait(timeout=60)["StatusCode"] == 0
            text = probe.logs().decode()
        finally:
            session._remove(probe)
        assert text.splitlines()[0] == "1000"
        assert re.search(r"^CapEff:\s+0+$", text, re.M), text
        assert re.search(r"^NoNewPrivs:\s+1$", text, re.M), text
        assert text.split("\n")[-2:] == ["lo", ""]  # network none: loopback only
    finally:
        session.close()


def test_engine_unreachable_and_doctor(
    tmp_path: Path, cli: CliRunner, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from owrt_vpn.imagebuilder.backends.docker import DockerBackend
    from owrt_vpn.imagebuilder.backends.engine import engine_status

    nothing = f"unix://{tmp_path}/nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", nothing)
    assert engine_status() == {
        "host": nothing,
        "reachable": False,
        "error": "No such file or directory",
    }
    with pytest.raises(BuildError) as exc:
        DockerBackend().open(_request(tmp_path))
    assert exc.value.message == f"no container engine reachable at {nothing}: " + (
        "No such file or directory"
    )
    assert exc.value.hint is not None and "DOCKER_HOST" in exc.value.hint
    proc = cli("doctor", env={"DOCKER_HOST": nothing})
    assert f"engine   not reachable at {nothing} (No such file or directory)" in proc.stdout
    proc = cli("--json", "doctor", env={"DOCKER_HOST": engine.service.url})
    data = json.loads(proc.stdout)
    version = engine.client.version()
    assert data["container_engine"] == {
        "host": engine.service.url,
        "reachable": True,
        "engine": "Podman Engine",
        "version": version["Version"],
        "api_version": version["ApiVersion"],
    }
    proc = cli("doctor", env={"DOCKER_HOST": engine.service.url})
    want = f"engine   Podman Engine {version['Version']}, API {version['ApiVersion']} at "
    assert want + engine.service.url in proc.stdout
