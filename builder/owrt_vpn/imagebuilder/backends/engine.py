"""Container engine plumbing for the docker backend (Docker API via the ``docker`` SDK).

Settings (image reference, network, time limit), connecting and the
``doctor`` status, SIGINT/SIGTERM accounting with a per-container watchdog,
the overlay tar that ``put_archive`` copies in (owned by the build user,
modes kept), pull progress and the image identity recorded in build-info.
The SDK is imported lazily: it is the optional ``owrt-vpn[docker]`` extra.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import tarfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from owrt_vpn.errors import BuildError

DEFAULT_IMAGE = "ghcr.io/openwrt/imagebuilder"
IMAGE_ENV = "OWRT_VPN_CONTAINER_IMAGE"
NETWORK_ENV = "OWRT_VPN_CONTAINER_NETWORK"
TIMEOUT_ENV = "OWRT_VPN_CONTAINER_TIMEOUT"
DEFAULT_TIMEOUT = 3600.0
LABEL = "owrt-vpn.build"  # value: one id per build session; tests look for leftovers by it
BUILD_USER = "buildbot"  # the official images' user (their Dockerfile: USER buildbot)
BUILD_DIR = "/builder"  # ... and WORKDIR, holding the extracted ImageBuilder
IN_CONTAINER = "/owrt-vpn"  # FILES and BIN_DIR live here inside the container
SDK_HINT = "install it with: pip install 'owrt-vpn[docker]' (or use --backend local)"
ENGINE_HINT = (
    "start Docker (or `podman system service`) or point DOCKER_HOST at a running engine; "
    "or build with --backend local"
)

# ----------------------------------------------------------------- settings


def image_ref(target: str, subtarget: str, release: str, image: str | None = None) -> str:
    """The image to run for a release/target.

    ``image`` (default: ``$OWRT_VPN_CONTAINER_IMAGE``, else the official
    repository) is either a repository (``docker.io/openwrt/imagebuilder``,
    ``mirror.lan:5000/openwrt/imagebuilder``: the official tag
    ``<target>-<subtarget>-v<release>`` is appended), a template with
    ``{target}``, ``{subtarget}`` and ``{release}`` placeholders, or a full
    reference with a tag or digest, used as it is.
    """
    if release.lower() == "snapshot":
        raise BuildError(
            "the container backend builds releases only (snapshot images download "
            "their ImageBuilder at run time)",
            hint="pick a release with --release, or build snapshots with --backend local",
        )
    spec = (image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE).strip()
    if "{" in spec:
        try:
            return spec.format(target=target, subtarget=subtarget, release=release)
        except (KeyError, IndexError, ValueError) as exc:
            raise BuildError(
                f"container image template {spec!r}: {exc}",
                hint="use the placeholders {target}, {subtarget} and {release}",
            ) from None
    if "@" in spec or ":" in spec.rsplit("/", 1)[-1]:
        return spec  # pinned by tag or digest
    return f"{spec}:{target}-{subtarget}-v{release}"


def step_timeout() -> float:
    """The time limit of one make step in a container (``$OWRT_VPN_CONTAINER_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BuildError(f"{TIMEOUT_ENV}={raw!r}: not a positive number of seconds")
    return value


def sdk() -> Any:
    try:
        import docker
    except ImportError:
        raise BuildError(
            "the docker backend needs the Python `docker` package", hint=SDK_HINT
        ) from None
    return docker


def engine_host() -> str:
    """Where the SDK connects: ``$DOCKER_HOST`` or Docker's default socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for ``$DOCKER_HOST``; BuildError when no engine answers."""
    docker = sdk()
    try:
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise BuildError(
            f"no container engine reachable at {engine_host()}: {_cause(exc)}", hint=ENGINE_HINT
        ) from None


def _cause(exc: BaseException) -> str:
    """The innermost useful words of a connection failure."""
    text = " ".join(str(exc).split()).removeprefix("Error while fetching server API version: ")
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)|Error\(-?\d+, '([^']+)'\)", text)
    return next((a or b for a, b in reversed(found)), text)[:300]


def engine_status(timeout: float = 5.0) -> dict[str, Any]:
    """For ``owrt-vpn doctor``: is an engine reachable, which one, which API version."""
    status: dict[str, Any] = {"host": engine_host(), "reachable": False}
    try:
        docker = sdk()
        client = docker.from_env(timeout=timeout)
    except BuildError as exc:
        status["error"] = exc.message
        return status
    except Exception as exc:  # any transport failure: not reachable
        status["error"] = _cause(exc)
        return status
    try:
        version = client.version()
        names = [c.get("Name", "") for c in version.get("Components") or []]
        status.update(
            reachable=True,
            engine=next((n for n in names if "Engine" in n), "") or "Docker-compatible engine",
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", client.api.api_version)),
        )
    except Exception as exc:
        status["error"] = short(exc)
    finally:
        client.close()
    return status


def short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return " ".join(text.split())[:300]


# ----------------------------------------------------------------- signals

signal_state = {"count": 0, "installed": False}


def install_signal_handlers() -> None:
    """Count SIGINT/SIGTERM so watchdogs in every thread kill their containers.

    The previous handlers still run (SIGINT stays a KeyboardInterrupt); a
    default SIGTERM becomes a KeyboardInterrupt so ``finally`` blocks run.
    Only the main thread may set handlers; elsewhere the caller's own
    handling applies.
    """
    if signal_state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    signal_state["installed"] = True
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)

        def handler(num: int, frame: FrameType | None, previous: Any = previous) -> None:
            signal_state["count"] += 1
            if callable(previous):
                previous(num, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt(f"signal {num}")

        signal.signal(signum, handler)


# ----------------------------------------------------------------- images and archives

PULL_HINT = (
    "older releases (and some targets) have no official ImageBuilder image: check the tags "
    "of ghcr.io/openwrt/imagebuilder, point --container-image at a registry or mirror that "
    "has it, or build with --backend local"
)


def image_identity(ref: str, image: Any) -> dict[str, Any]:
    """What build-info and the lock record: the image's registry digest, else its id."""
    docker = sdk()
    repo, _ = docker.utils.parse_repository_tag(ref)
    digests = [str(d) for d in image.attrs.get("RepoDigests") or []]
    mine = [d for d in digests if d.split("@", 1)[0] == repo]
    digest = (mine or digests or [str(image.id)])[0]
    hex_digest = digest.rsplit("sha256:", 1)[-1]
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise BuildError(f"container engine: unexpected digest {digest!r} for {ref}")
    return {
        "backend": "docker",
        "name": ref,
        "digest": digest,
        "sha256": hex_digest,
        "id": str(image.id),
    }


def layer_progress(event: dict[str, Any], layers: dict[str, tuple[int, int]]) -> None:
    """Fold one pull event into ``layers`` (layer id -> (bytes done, bytes total))."""
    layer = str(event.get("id") or "")
    detail = event.get("progressDetail") or {}
    status = str(event.get("status") or "")
    if not layer or len(layer) < 8:
        return
    current, total = layers.get(layer, (0, 0))
    if status.startswith("Downloading") and detail.get("total"):
        layers[layer] = (int(detail.get("current") or 0), int(detail["total"]))
    elif status in ("Download complete", "Pull complete", "Already exists") and total:
        layers[layer] = (total, total)
    elif layer not in layers and status.startswith(("Pulling fs layer", "Waiting")):
        layers[layer] = (current, total)


def read_file(container: Any, path: str) -> str:
    """The text of one file of a (created, not necessarily started) container."""
    stream, _ = container.get_archive(path)
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read().decode(errors="replace")
    return ""


def overlay_tar(files_dir: Path, uid: int, gid: int) -> bytes:
    """``owrt-vpn/{files,bin}`` for ``put_archive("/")``: the FILES tree with its
    modes and mtimes, every member owned by the build user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        top = IN_CONTAINER.strip("/")
        for name, mode in ((top, 0o700), (f"{top}/bin", 0o755)):
            tar.addfile(_info(name, tarfile.DIRTYPE, mode, uid, gid, 0))
        for path, rel in _walk(files_dir):
            st = path.lstat()
            name = f"{top}/files" + (f"/{rel}" if rel else "")
            mode = st.st_mode & 0o7777
            if path.is_symlink():
                info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, int(st.st_mtime))
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                tar.addfile(_info(name, tarfile.DIRTYPE, mode, uid, gid, int(st.st_mtime)))
            elif path.is_file():
                info = _info(name, tarfile.REGTYPE, mode, uid, gid, int(st.st_mtime))
                info.size = st.st_size
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                raise BuildError(f"overlay: {rel} is not a file, directory or symlink")
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.uname = info.gname = ""
    return info


def _walk(root: Path) -> Iterable[tuple[Path, str]]:
    yield root, ""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for n in sorted(dirnames + filenames):
            path = base / n
            yield path, path.relative_to(root).as_posix()


class Watchdog:
    """Kills a running container at its time limit or on SIGINT/SIGTERM."""

    def __init__(self, container: Any, timeout: float) -> None:
        self.container = container
        self.deadline = time.monotonic() + timeout
        self.signals = signal_state["count"]
        self.reason = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="container-watchdog", daemon=True)

    def start(self) -> None:
        """Start watching (after the container started)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (the container exited or is being removed)."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._done.wait(0.2):
            if signal_state["count"] != self.signals:
                self.reason = "interrupted"
            elif time.monotonic() > self.deadline:
                self.reason = "timeout"
            else:
                continue
            with contextlib.suppress(Exception):  # it may have exited meanwhile
                self.container.kill()
            return


def describe(status: dict[str, Any]) -> str:
    """One doctor line for :func:`engine_status`."""
    if status.get("reachable"):
        return (
            f"{status.get('engine')} {status.get('version')}, API {status.get('api_version')} "
            f"at {status['host']}"
        )
    return f"not reachable at {status['host']} ({status.get('error', 'no answer')})"
