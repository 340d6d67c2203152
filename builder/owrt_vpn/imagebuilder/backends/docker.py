"""The container backend: ``make`` inside the official ImageBuilder image, via the Docker API.

Talks to whatever engine ``DOCKER_HOST`` names (Docker, a remote engine,
podman's compatible socket) with the ``docker`` SDK, imported lazily (the
``owrt-vpn[docker]`` extra). Each ImageBuilder step runs in its own fresh
container of the image ``ghcr.io/openwrt/imagebuilder:<t>-<s>-v<release>``
(pulled with progress when missing), as the image's unprivileged user
(``buildbot``), with every capability dropped, ``no-new-privileges`` and a
time limit.

No host directory is mounted, so a remote engine works the same way: the
overlay is copied into the created container as a tar whose members belong
to the build user (the router key stays 0600, readable by that user only;
the image's squashfs is all-root anyway), and BIN_DIR is copied out with
``get_archive`` after ``make`` exits. Containers carry the label
:data:`LABEL` and are removed in every case: success, failure, time limit,
Ctrl-C/SIGTERM (a watchdog kills running containers on a signal, so
parallel builds stop too).

Settings (CLI options or environment): the image (``--container-image`` /
``OWRT_VPN_CONTAINER_IMAGE``), the network (``--container-network`` /
``OWRT_VPN_CONTAINER_NETWORK``; the engine's default network unless set, as
the release images download packages from the OpenWrt feeds during ``make
image``) and the time limit per step (``OWRT_VPN_CONTAINER_TIMEOUT``, seconds).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.base import (
    APK_LIST_ARGS,
    BackendResult,
    BuildRequest,
    Prerequisite,
    image_result,
    make_args,
    manifest_result,
)
from owrt_vpn.imagebuilder.backends.engine import (
    BUILD_DIR,
    BUILD_USER,
    IN_CONTAINER,
    LABEL,
    NETWORK_ENV,
    PULL_HINT,
    TIMEOUT_ENV,
    Watchdog,
    connect,
    image_identity,
    image_ref,
    install_signal_handlers,
    layer_progress,
    overlay_tar,
    read_file,
    sdk,
    short,
    signal_state,
    step_timeout,
)
from owrt_vpn.imagebuilder.backends.output import MakeInfo, parse_info, parse_package_list

# ----------------------------------------------------------------- the backend

OWNER_LABEL = "owrt-vpn.owner"  # "<host>:<pid>:<start time>" of the owrt-vpn that made it


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks after boot), "" when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def owner() -> str:
    """This process, as the :data:`OWNER_LABEL` of the containers it creates."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def owner_dead(label: str) -> bool:
    """True when ``label`` names a process of this host that no longer runs
    (a reused pid has another start time); False for other hosts and unknowns."""
    host, _, rest = label.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or not started:
        return False
    return _start_time(int(pid)) != started


class DockerBackend:
    """Runs the ImageBuilder in containers of the official images."""

    name = "docker"
    uses_archive = False  # build.py: no ImageBuilder download, the image carries it

    def __init__(self, image: str | None = None, network: str | None = None) -> None:
        self.image = image
        self.network = network or os.environ.get(NETWORK_ENV) or None
        sdk()  # a clear error now rather than per router
        install_signal_handlers()

    def prerequisites(self) -> list[Prerequisite]:
        """No host tools: make, perl... are in the image."""
        return []

    def open(self, request: BuildRequest) -> DockerSession:
        """Find (or pull) the image for ``request``."""
        return DockerSession(self, request)


def backend(container_image: str | None = None, container_network: str | None = None) -> Any:
    """The factory ``owrt_vpn.imagebuilder.backends.registry.get_backend("docker")`` calls."""
    return DockerBackend(container_image, container_network)


class DockerSession:
    """One build: each make step in a fresh container of one image (by id)."""

    def __init__(self, backend: DockerBackend, request: BuildRequest) -> None:
        self.request = request
        self.network = backend.network
        self.timeout = step_timeout()
        target, _, subtarget = request.target.partition("/")
        self.ref = image_ref(target, subtarget, request.release, backend.image)
        self.session_id = uuid.uuid4().hex[:12]
        self.bin_dir = request.work_dir / "bin"
        self.client = connect()
        try:
            self._sweep_orphans()
            image = self._image()
            self.image_id: str = image.id
            config = image.attrs.get("Config") or {}
            self.workdir = str(config.get("WorkingDir") or BUILD_DIR).rstrip("/") or "/"
            user = str(config.get("User") or "")
            # Never root: a custom image without USER still runs as the build user.
            self.user = user if user and user.split(":")[0] not in ("root", "0") else BUILD_USER
            self.identity = image_identity(self.ref, image)
            self.package_manager = self._package_manager()
        except BaseException:
            self.client.close()
            raise
        self._info: MakeInfo | None = None

    # ------------------------------------------------------------ image

    def _stage(self, message: str) -> None:
        if self.request.stage is not None:
            self.request.stage(message)

    def _image(self) -> Any:
        docker = sdk()
        try:
            return self.client.images.get(self.ref)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise BuildError(f"container engine: cannot inspect {self.ref}: {short(exc)}") from None
        self._stage(f"pulling {self.ref}")
        self._pull()
        try:
            return self.client.images.get(self.ref)
        except docker.errors.DockerException as exc:
            raise self._pull_error(exc) from None

    def _pull(self) -> None:
        docker = sdk()
        repo, tag = docker.utils.parse_repository_tag(self.ref)
        progress = self.request.progress(self.ref) if self.request.progress else None
        layers: dict[str, tuple[int, int]] = {}
        try:
            # The ImageBuilder's host tools are x86_64 binaries: other hosts emulate.
            events = self.client.api.pull(
                repo, tag=tag, stream=True, decode=True, platform="linux/amd64"
            )
            for event in events:
                if "error" in event:
                    raise BuildError(self._pull_message(str(event["error"])), hint=PULL_HINT)
                layer_progress(event, layers)
                if progress is not None and layers:
                    totals = [t for _, t in layers.values()]
                    total = sum(totals) if all(totals) else None
                    progress(sum(c for c, _ in layers.values()), total)
        except docker.errors.DockerException as exc:
            raise self._pull_error(exc) from None

    def _pull_message(self, detail: str) -> str:
        return f"cannot pull the container image {self.ref}: {' '.join(detail.split())[:300]}"

    def _pull_error(self, exc: BaseException) -> BuildError:
        return BuildError(self._pull_message(short(exc)), hint=PULL_HINT)

    def _package_manager(self) -> str:
        """``opkg`` or ``apk``, from the ImageBuilder's files in the image."""
        container = self._create(["true"], "probe")
        try:
            if self._exists(container, f"{self.workdir}/repositories.conf"):
                return "opkg"
            if self._exists(container, f"{self.workdir}/repositories"):
                return "apk"
            if not self._exists(container, f"{self.workdir}/Makefile"):
                raise BuildError(
                    f"the container image {self.ref} holds no ImageBuilder in {self.workdir}",
                    hint="use an openwrt/imagebuilder release image (see --container-image)",
                )
            return "opkg"
        finally:
            self._remove(container)

    def _exists(self, container: Any, path: str) -> bool:
        docker = sdk()
        try:
            stream, _ = container.get_archive(path)
            for _chunk in stream:
                pass
            return True
        except docker.errors.NotFound:
            return False

    # ------------------------------------------------------------ containers

    def _create(self, argv: list[str], step: str) -> Any:
        docker = sdk()
        try:
            return self.client.containers.create(
                self.image_id,
                command=argv,
                entrypoint=[""],  # [""] resets an image ENTRYPOINT (Docker and podman)
                user=self.user,
                working_dir=self.workdir,
                environment={"LC_ALL": "C", "LANG": "C"},
                labels={LABEL: self.session_id, "owrt-vpn.step": step, OWNER_LABEL: owner()},
                network_mode=self.network,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                detach=True,
                stdin_open=False,
                tty=False,
            )
        except docker.errors.DockerException as exc:
            raise BuildError(
                f"container engine: cannot create a container of {self.ref}: {short(exc)}"
            ) from None

    def _sweep_orphans(self) -> None:
        """Remove containers of builds whose owrt-vpn died (kill -9): no watchdog
        and no ``finally`` ran for them, so they may still be running make."""
        try:
            found = self.client.api.containers(all=True, filters={"label": LABEL})
        except Exception:  # best effort: the build itself reports engine errors
            return
        for entry in found:
            labels = entry.get("Labels") or {}
            if owner_dead(str(labels.get(OWNER_LABEL, ""))):
                self._remove(self.client.containers.prepare_model(entry))

    def _remove(self, container: Any) -> None:
        docker = sdk()
        for _ in range(3):
            try:
                container.remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                time.sleep(0.5)  # e.g. "removal already in progress"

    def _make(self, args: list[str], step: str, files: Path | None = None) -> tuple[int, str]:
        """Run ``make ARGS`` in a fresh container; (status, output). BIN_DIR lands in bin_dir."""
        docker = sdk()
        if signal_state["count"]:
            raise KeyboardInterrupt  # an interrupted run starts no new container
        argv = ["make", "--no-print-directory", *args]
        container = self._create(argv, step)
        try:
            if files is not None:
                uid, gid = self._user_ids(container)
                if not container.put_archive("/", overlay_tar(files, uid, gid)):
                    raise BuildError(f"container engine: cannot copy the overlay into {self.ref}")
            with self.request.log_path.open("ab") as log:
                head = f"+ [{self.ref} {self.identity['digest']} as {self.user}] {' '.join(argv)}"
                log.write((head + "\n").encode())
                watchdog = Watchdog(container, self.timeout)
                try:
                    self._start(container)
                    watchdog.start()
                    lines = self._stream(container, log)
                    status = int(container.wait().get("StatusCode", -1))
                finally:
                    watchdog.stop()
            if watchdog.reason == "interrupted":
                raise KeyboardInterrupt
            if watchdog.reason == "timeout":
                raise BuildError(
                    f"{self.request.target} {self.request.profile}: `make {step}` in the "
                    f"container timed out after {self.timeout:g} s",
                    hint=f"raise {TIMEOUT_ENV} (seconds); see {self.request.log_path}",
                )
            if files is not None and status == 0:
                self._collect(container)
            return status, "\n".join(lines)
        except docker.errors.DockerException as exc:
            raise BuildError(
                f"container engine: `make {step}` in {self.ref} failed: {short(exc)}",
                hint=f"see {self.request.log_path}",
            ) from None
        finally:
            self._remove(container)

    @staticmethod
    def _start(container: Any) -> None:
        """Start the container; an engine error after the process really started is not fatal.

        podman can answer a start with "read /proc/<pid>/cgroup: no such process" when
        the command (``make info`` takes milliseconds) exits before podman has looked
        at its cgroup: the container ran and its logs and exit status are there.
        """
        docker = sdk()
        try:
            container.start()
        except docker.errors.APIError as exc:
            if "no such process" not in str(exc):
                raise
            container.reload()
            state = container.attrs.get("State") or {}
            started = str(state.get("StartedAt") or "0001")  # the zero time: never started
            if state.get("Status") not in ("running", "exited") or started.startswith("0001"):
                raise

    def _stream(self, container: Any, log: Any) -> list[str]:
        """Copy the container's output to the log (and echo), line by line."""
        lines: list[str] = []
        pending = b""
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.write(chunk)
            pending += chunk
            *done, pending = pending.split(b"\n")
            for raw in done:
                self._line(raw, lines)
        if pending:
            self._line(pending, lines)
        log.flush()
        return lines

    def _line(self, raw: bytes, lines: list[str]) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        lines.append(line)
        if self.request.echo is not None:
            self.request.echo(line)

    def _user_ids(self, container: Any) -> tuple[int, int]:
        """The build user's uid/gid, from the image's /etc/passwd."""
        name, _, group = self.user.partition(":")
        if name.isdigit():
            return int(name), int(group) if group.isdigit() else int(name)
        passwd = read_file(container, "/etc/passwd")
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == name and fields[2].isdigit():
                return int(fields[2]), int(fields[3]) if fields[3].isdigit() else 0
        raise BuildError(
            f"the container image {self.ref} has no user {name!r}",
            hint="use an openwrt/imagebuilder release image (their build user is buildbot)",
        )

    def _collect(self, container: Any) -> None:
        """Copy BIN_DIR out of the stopped container into bin_dir (safely extracted)."""
        from owrt_vpn.imagebuilder.extract import safe_extract

        if self.bin_dir.exists():
            shutil.rmtree(self.bin_dir)
        staging = self.request.work_dir / "bin-collect"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        archive = self.request.work_dir / "bin.tar"
        stream, _ = container.get_archive(f"{IN_CONTAINER}/bin")
        with archive.open("wb") as out:
            for chunk in stream:
                out.write(chunk)
        try:
            safe_extract(archive, staging)
        finally:
            archive.unlink()
        if not (staging / "bin").is_dir():
            raise BuildError(f"container engine: BIN_DIR missing from {self.ref}'s container")
        (staging / "bin").rename(self.bin_dir)
        staging.rmdir()

    # ------------------------------------------------------------ BuildSession

    def info(self) -> MakeInfo:
        """``make info`` in the image (profile names for error messages)."""
        if self._info is None:
            status, out = self._make(["info"], "info")
            if status != 0:
                raise BuildError(f"`make info` failed in {self.ref} (status {status})")
            self._info = parse_info(out)
        return self._info

    def manifest(self) -> dict[str, str]:
        """Packages and versions ``make image`` will install (``make manifest``)."""
        status, out = self._make(["manifest", *make_args(self.request, "")], "manifest")
        return manifest_result(self.request, status, out, info=self.info, explain=self._explain)

    def _explain(self) -> str:
        """``make image`` without FILES: shows apk's explanation (see manifest_result)."""
        return self._make(["image", *make_args(self.request, "")], "image")[1]

    def image(self, files_dir: Path) -> BackendResult:
        """``make image`` with the overlay copied in as FILES; BIN_DIR copied out."""
        files, bin_dir = f"{IN_CONTAINER}/files", f"{IN_CONTAINER}/bin"
        args = make_args(self.request, bin_dir, files)
        status, out = self._make(["image", *args], "image", files=files_dir)
        return image_result(
            self.request,
            self.bin_dir,
            status,
            out,
            info=self.info,
            package_manager=self.package_manager,
            identity=dict(self.identity),
        )

    def package_index(self) -> dict[str, int] | None:
        """``make package_list`` in the image (apk: ``apk list`` when that fails);
        None when the ImageBuilder cannot list its feeds."""
        status, out = self._make(["package_list"], "package_list")
        if status != 0 and self.package_manager == "apk":
            status, out = self._make(list(APK_LIST_ARGS), "package_list")
        return parse_package_list(out) if status == 0 else None

    def close(self) -> None:
        """Remove this session's containers (normally gone already) and disconnect."""
        try:
            # The plain listing: the SDK's list() inspects each container and
            # fails when one disappears meanwhile.
            found = self.client.api.containers(
                all=True, filters={"label": f"{LABEL}={self.session_id}"}
            )
            for entry in found:
                self._remove(self.client.containers.prepare_model(entry))
        except Exception:  # noqa: S110 - best effort; each step removed its own
            pass
        finally:
            self.client.close()
