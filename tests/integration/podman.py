"""A private rootful podman serving the Docker API on a unix socket, and ImageBuilder images.

Docker's engine does not run on the test machines; ``podman system
service`` speaks the same API to the ``docker`` SDK. Everything lives under
one work dir (storage, run root, socket, configs) and is removed by
:meth:`PodmanService.stop`. The settings are those of
``../shared/recipes/podman/`` (runc, cgroupfs, file events, ulimits within
the sandbox's limits), given through ``CONTAINERS_CONF`` /
``CONTAINERS_STORAGE_CONF`` from the first podman call on the storage root.
Containers must use ``network_mode="none"`` (the default network would
create a bridge and firewall rules in the host's namespace).

Images are made without any registry: a root file system assembled from this
host's own binaries and their shared libraries (``ldd``), the ImageBuilder
double extracted at ``/builder`` owned by an unprivileged ``buildbot``, as
in the official images, then ``podman import`` tagged like the official
image (``ghcr.io/openwrt/imagebuilder:<t>-<s>-v<release>``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from requires import why_not

# What the double runs (its README: POSIX sh, GNU make, awk, sed, coreutils,
# mksquashfs), plus `sleep` for the deliberately slow image.
TOOLS = [
    "sh",
    "make",
    "awk",
    "sed",
    "cat",
    "cut",
    "tr",
    "sort",
    "head",
    "od",
    "base64",
    "date",
    "env",
    "mkdir",
    "rm",
    "cp",
    "ln",
    "chmod",
    "touch",
    "stat",
    "sha256sum",
    "mksquashfs",
    "true",
    "id",
    "ls",
    "sleep",
]
BUILD_UID = 1000
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{work}/tmp"
"""
STORAGE_CONF = """[storage]
driver = "overlay"
runroot = "{work}/runroot"
graphroot = "{work}/root"
"""
# The slow image's `make` waits before the real one: a build to interrupt.
SLOW_MAKE = '#!/bin/sh\necho "slow make: waiting"\nsleep 300\nexec /usr/bin/make "$@"\n'


PODMAN_TOOLS = ("podman", "runc", "conmon", "mksquashfs", "ldd")


def podman_unusable() -> str | None:
    """Why these tests cannot run here (None when they can)."""
    return why_not(*PODMAN_TOOLS, root="rootful podman", extra_dirs=("/usr/libexec/podman",))


@dataclass
class PodmanService:
    """``podman system service`` on ``<work>/podman.sock``."""

    work: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    insecure_registries: tuple[str, ...] = ()  # host:port served over plain HTTP

    @property
    def socket(self) -> Path:
        """The API socket."""
        return self.work / "podman.sock"

    @property
    def url(self) -> str:
        """``unix://...``: the value for DOCKER_HOST."""
        return f"unix://{self.socket}"

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the podman CLI on this storage root (raises on failure)."""
        return subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )

    def client(self) -> Any:
        """A docker SDK client for the socket."""
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def start(self) -> PodmanService:
        """Write the configs, initialise storage and serve the API."""
        for sub in ("tmp", "runroot", "root"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        conf = self.work / "containers.conf"
        conf.write_text(CONTAINERS_CONF.format(work=self.work))
        storage = self.work / "storage.conf"
        storage.write_text(STORAGE_CONF.format(work=self.work))
        registries = self.work / "registries.conf"
        registries.write_text(
            "".join(
                f'[[registry]]\nlocation = "{r}"\ninsecure = true\n\n'
                for r in self.insecure_registries
            )
        )
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.work),
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_STORAGE_CONF": str(storage),
            # Also keeps the host's registries.conf (short names, mirrors) out.
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }
        self.podman("info", "--format", "{{.Store.GraphRoot}}")  # first call fixes the driver
        log = (self.work / "service.log").open("wb")
        self.proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.url],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "podman system service did not start:\n"
                    + (self.work / "service.log").read_text(errors="replace")
                )
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Remove every container, stop the service, unmount and delete the work dir."""
        try:
            if self.env:
                subprocess.run(
                    ["podman", "rm", "--all", "--force", "--time", "0"],
                    env=self.env,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=15)
            _unmount_under(self.work)
            shutil.rmtree(self.work, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever is still mounted below ``root`` (overlay layers)."""
    prefix = str(root.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@dataclass
class Registry:
    """Distribution's registry (Debian's ``docker-registry``) on 127.0.0.1, plain HTTP."""

    work: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        """Serve an empty registry; wait until it answers."""
        import socket
        import urllib.request

        self.work.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:  # a free port, given to the registry at once
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        conf = self.work / "registry.yml"
        conf.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.work}/data\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log = (self.work / "registry.log").open("wb")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "docker-registry did not start:\n"
                        + (self.work / "registry.log").read_text(errors="replace")
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the registry."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ----------------------------------------------------------------- the image


def official_tag(target: str, subtarget: str, release: str) -> str:
    """The official ImageBuilder image for a release/target."""
    return f"ghcr.io/openwrt/imagebuilder:{target}-{subtarget}-v{release}"


def _libraries(binary: str) -> set[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    libs = set(re.findall(r"=>\s+(/\S+)", out))
    libs |= {m for m in re.findall(r"^\s*(/\S+)\s+\(", out, re.M)}
    return libs


def _dlopened() -> set[str]:
    """Libraries glibc loads at run time, which ldd does not list (mksquashfs's
    threads need libgcc_s for pthread_exit)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return set(re.findall(r"^\s*libgcc_s\.so\.1 \(libc6,x86-64\) => (/\S+)", out, re.M))


def _add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, uid: int = 0, **kw: Any) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 1700000000
    data: bytes | None = kw.get("data")
    if kind == tarfile.SYMTYPE:
        info.linkname = kw["link"]
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def build_rootfs_tar(
    dest: Path, imagebuilder_archive: Path, extra: dict[str, str] | None = None
) -> Path:
    """A root file system tar: host tools + libraries, users, the double at /builder.

    ``extra`` maps absolute paths to executable script text (e.g. a slow make).
    """
    import zstandard

    files: dict[str, str] = {}  # path in the root -> host file
    links: dict[str, str] = {}
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            raise RuntimeError(f"{tool} not found on this host")
        real = os.path.realpath(found)
        files[f"usr/bin/{tool}"] = real
        for lib in _libraries(real) | _dlopened():
            # Keep the name the loader asks for; store the file where it really is.
            real_lib = os.path.realpath(lib)
            in_root = os.path.realpath(os.path.dirname(lib)).lstrip("/")
            files[real_lib.lstrip("/")] = real_lib
            asked = f"{in_root}/{os.path.basename(lib)}"
            if asked != real_lib.lstrip("/"):
                links[asked] = real_lib  # absolute: resolved inside the container
    ib = imagebuilder_archive.read_bytes()
    if imagebuilder_archive.name.endswith(".zst"):
        ib = zstandard.ZstdDecompressor().decompressobj().decompress(ib)
    else:
        import lzma

        ib = lzma.decompress(ib)
    passwd = "root:x:0:0:root:/root:/bin/sh\nbuildbot:x:1000:1000:buildbot:/builder:/bin/sh\n"
    group = "root:x:0:\nbuildbot:x:1000:\n"
    dirs = sorted({str(Path(p).parent) for p in [*files, *links]} | {"usr/bin", "usr/local/bin"})
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("dev", "proc", "sys", "etc", "root", "run"):
            _add(tar, d, tarfile.DIRTYPE, 0o755)
        _add(tar, "tmp", tarfile.DIRTYPE, 0o1777)
        done: set[str] = set()
        for d in dirs:
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in done:
                    done.add(sub)
                    _add(tar, sub, tarfile.DIRTYPE, 0o755)
        # Debian 12's merged /usr: /bin, /lib, /lib64 point into /usr.
        for top in ("bin", "sbin", "lib", "lib64"):
            _add(tar, top, tarfile.SYMTYPE, 0o777, link=f"usr/{top}")
        for name, host in sorted(files.items()):
            _add(tar, name, tarfile.REGTYPE, 0o755, data=Path(host).read_bytes())
        for name, target in sorted(links.items()):
            if name not in files:
                _add(tar, name, tarfile.SYMTYPE, 0o777, link=target)
        _add(tar, "etc/passwd", tarfile.REGTYPE, 0o644, data=passwd.encode())
        _add(tar, "etc/group", tarfile.REGTYPE, 0o644, data=group.encode())
        for path, text in (extra or {}).items():
            _add(tar, path.lstrip("/"), tarfile.REGTYPE, 0o755, data=text.encode())
        # The ImageBuilder at /builder, owned by the build user (like --chown in
        # the official Dockerfile), its top directory stripped.
        _add(tar, "builder", tarfile.DIRTYPE, 0o755, uid=BUILD_UID)
        with tarfile.open(fileobj=io.BytesIO(ib)) as src:
            for member in src:
                rest = member.name.split("/", 1)[1] if "/" in member.name else ""
                if not rest:
                    continue
                member.name = f"builder/{rest}"
                member.uid = member.gid = BUILD_UID
                member.uname = member.gname = ""
                tar.addfile(member, src.extractfile(member) if member.isfile() else None)
    return dest


def import_image(
    svc: PodmanService, rootfs_tar: Path, tag: str, changes: tuple[str, ...] = ()
) -> str:
    """``podman import`` the root as ``tag`` with the official images' USER/WORKDIR
    (and ``changes``, Dockerfile instructions such as ``ENTRYPOINT [...]``)."""
    base = ("USER buildbot", "WORKDIR /builder/", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            'CMD ["/bin/sh"]')  # fmt: skip
    args = [arg for change in (*base, *changes) for arg in ("--change", change)]
    svc.podman("import", *args, str(rootfs_tar), tag)
    return tag
