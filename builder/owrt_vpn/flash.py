"""Batch flashing over SSH: the per-router upgrade state machine, concurrency, report.

For each router (up to ``jobs`` at a time; one failing router never stops
the others):

1. connect with host key checking (:mod:`owrt_vpn.ssh`);
2. read ``ubus call system board``, ``/proc/meminfo`` and our marker in one
   round trip; refuse a board not in the image's ``supported_devices`` (most
   bcm53xx images carry no metadata, so ``sysupgrade -T`` alone would take
   the wrong device's image) and an image that does not fit in RAM;
3. skip when the marker of our last flash names this image's sha256 *and*
   the router runs the build's release and revision;
4. upload the image to /tmp, check its sha256 there, ``sysupgrade -T``, then
   ``sysupgrade`` (keeping settings, or ``-n`` when asked and the build
   bakes management access; never ``-F``);
5. expect the session to drop; wait for a *new* boot (the kernel's boot id
   changes) within the timeout; verify release, revision, the image's baked
   build-info and that our VPN connections are loaded; then write the marker.

``dry_run`` stops after step 3 and says what would happen.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from owrt_vpn import __version__
from owrt_vpn.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, FlashError, OwrtVpnError
from owrt_vpn.flash_build import Build, load_build
from owrt_vpn.inventory import FlashTarget
from owrt_vpn.ssh import HostKeyError, SshClient, SshError, SshTimeout, quote

MARKER = "/etc/owrt-vpn/flashed.json"
BAKED_BUILD_INFO = "/usr/share/owrt-vpn/build-info.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
# RAM the router needs beyond the image while sysupgrade runs (it copies
# itself and a few tools to a ramdisk before writing flash).
HEADROOM = 4 * 1024 * 1024
_SECTION = "@@owrt-vpn@@"


class Stage(StrEnum):
    """Where a router is in its flash."""

    QUEUED = "queued"
    CONNECTING = "connecting"
    CHECKING = "checking"
    UPLOADING = "uploading"
    VERIFYING_UPLOAD = "verifying upload"
    TESTING = "testing image"
    UPGRADING = "upgrading"
    REBOOTING = "waiting for reboot"
    VERIFYING = "verifying"
    MARKING = "writing marker"
    DONE = "done"


class Status(StrEnum):
    """How a router's flash ended."""

    FLASHED = "flashed"
    SKIPPED = "skipped"
    WOULD_FLASH = "would-flash"
    REFUSED = "refused"
    FAILED = "failed"


OK_STATUSES = frozenset({Status.FLASHED, Status.SKIPPED, Status.WOULD_FLASH})


@dataclass(frozen=True)
class FlashOptions:
    """How to flash (the CLI's options)."""

    jobs: int = 4
    dry_run: bool = False
    reset_settings: bool = False
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    reboot_timeout: float = 300.0  # sysupgrade start -> verified, VPN loaded
    command_timeout: float = 120.0
    upload_timeout: float = 600.0
    poll_interval: float = 2.0


@dataclass
class RouterReport:
    """The outcome for one router (JSON-ready through :meth:`to_json`)."""

    name: str
    router: str
    address: str
    status: Status | None = None
    stage: Stage = Stage.QUEUED
    message: str = ""
    hint: str | None = None
    board_name: str | None = None
    image: str | None = None
    image_sha256: str | None = None
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    new_host_key: str | None = None
    started: float = 0.0
    finished: float = 0.0
    stages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True for flashed, skipped and (dry run) would-flash."""
        return self.status in OK_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            "name": self.name,
            "router": self.router,
            "address": self.address,
            "status": str(self.status),
            "stage": str(self.stage),
            "message": self.message,
            "hint": self.hint,
            "board_name": self.board_name,
            "image": self.image,
            "image_sha256": self.image_sha256,
            "before": self.before,
            "after": self.after,
            "new_host_key": self.new_host_key,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "seconds": round(self.finished - self.started, 3),
            "stages": [{"stage": s, "at": round(t - self.started, 3)} for s, t in self.stages],
        }


Progress = Callable[[RouterReport], None]


class _Stop(FlashError):
    """Ends a router's flash with a status (refused, skipped, would-flash)."""

    def __init__(self, status: Status, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


@dataclass(frozen=True)
class _Facts:
    """What one probe of a router found."""

    board: dict[str, Any]
    mem_available: int | None
    marker: dict[str, Any] | None
    baked_build_info: dict[str, Any] | None
    boot_id: str

    @property
    def board_name(self) -> str:
        return str(self.board.get("board_name", ""))

    @property
    def release(self) -> dict[str, str]:
        rel = self.board.get("release", {})
        return {"version": str(rel.get("version", "")), "revision": str(rel.get("revision", ""))}


def flash_batch(
    targets: Sequence[FlashTarget], options: FlashOptions, progress: Progress | None = None
) -> list[RouterReport]:
    """Flash ``targets`` concurrently (up to ``options.jobs``); one report per target, in order."""
    reports = [RouterReport(t.name, t.router.name, str(t.ssh)) for t in targets]
    builds: dict[Path, Build | OwrtVpnError] = {}
    for t in targets:  # load (and hash) each build once, before any router is touched
        if t.build_dir not in builds:
            try:
                builds[t.build_dir] = load_build(t.build_dir)
            except OwrtVpnError as exc:
                builds[t.build_dir] = exc
    lock = threading.Lock()  # serialises progress callbacks and known_hosts appends

    def notify(report: RouterReport) -> None:
        if progress is not None:
            with lock:
                progress(report)

    def work(i: int) -> None:
        _flash_one(targets[i], builds[targets[i].build_dir], options, reports[i], notify, lock)

    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        list(pool.map(work, range(len(targets))))
    return reports


def batch_exit_code(reports: Sequence[RouterReport]) -> int:
    """0 when every router is fine (flashed, skipped, would-flash), 1 when all failed, else 4."""
    bad = sum(1 for r in reports if not r.ok)
    if bad == 0:
        return EXIT_OK
    return EXIT_FAILURE if bad == len(reports) else EXIT_PARTIAL


def _flash_one(
    target: FlashTarget,
    build: Build | OwrtVpnError,
    opts: FlashOptions,
    report: RouterReport,
    notify: Progress,
    lock: threading.Lock,
) -> None:
    report.started = time.time()

    def stage(s: Stage) -> None:
        report.stage = s
        report.stages.append((str(s), time.time()))
        notify(report)

    try:
        if isinstance(build, OwrtVpnError):
            raise build
        report.image, report.image_sha256 = build.image.name, build.image.sha256
        _run_steps(target, build, opts, report, stage, lock)
        report.status = Status.FLASHED
        report.message = f"now runs {build.release} {build.revision}"
        stage(Stage.DONE)
    except _Stop as exc:
        report.status, report.message, report.hint = exc.status, exc.message, exc.hint
    except HostKeyError as exc:
        report.status, report.message, report.hint = Status.REFUSED, exc.message, exc.hint
    except OwrtVpnError as exc:
        report.status, report.message, report.hint = Status.FAILED, exc.message, exc.hint
    except Exception as exc:  # a bug must not take the other routers down
        report.status, report.message = Status.FAILED, f"internal error: {exc!r}"
    report.finished = time.time()
    notify(report)


def _run_steps(
    target: FlashTarget,
    build: Build,
    opts: FlashOptions,
    report: RouterReport,
    stage: Callable[[Stage], None],
    lock: threading.Lock,
) -> None:
    if opts.reset_settings and not target.bakes_access:
        raise _Stop(
            Status.REFUSED,
            "--reset-settings wipes SSH keys, passwords and network settings, and this build "
            "does not bake management access",
            hint="set routers.management.authorized_keys and lan_address for "
            f"{target.router.name!r} in the site file and rebuild, or flash keeping settings",
        )
    ssh = SshClient(
        target.ssh,
        accept_new_host_keys=opts.accept_new_host_keys,
        connect_timeout=opts.connect_timeout,
    )
    stage(Stage.CONNECTING)
    if opts.accept_new_host_keys:
        with lock:  # two ssh processes appending to one known_hosts file could mix lines
            facts = _probe(ssh, opts)
    else:
        facts = _probe(ssh, opts)
    report.board_name, report.before = facts.board_name, facts.release

    stage(Stage.CHECKING)
    if facts.board_name not in build.supported_devices:
        raise _Stop(
            Status.REFUSED,
            f"board {facts.board_name!r} is not one this image supports "
            f"({', '.join(build.supported_devices)})",
            hint=f"check routers.device of {target.router.name!r}, or the inventory entry's router",
        )
    if _up_to_date(facts, build):
        raise _Stop(Status.SKIPPED, f"already runs this image ({build.release} {build.revision})")
    need = build.image.size + HEADROOM
    if facts.mem_available is None or facts.mem_available < need:
        have = "unknown" if facts.mem_available is None else f"{facts.mem_available // 1024} KiB"
        raise _Stop(
            Status.REFUSED,
            f"not enough free memory for the image: {have} available, {need // 1024} KiB needed",
            hint="reboot the router (or stop services) to free RAM, then run flash again",
        )
    if opts.dry_run:
        mode = "erasing settings (-n)" if opts.reset_settings else "keeping settings"
        raise _Stop(
            Status.WOULD_FLASH,
            f"would flash {build.image.name} ({_release_text(facts.release)} -> "
            f"{build.release} {build.revision}), {mode}",
        )

    remote = f"/tmp/{build.image.name}"  # noqa: S108 - the router's RAM disk, as sysupgrade expects
    stage(Stage.UPLOADING)
    ssh.upload(build.image.path, remote, timeout=opts.upload_timeout)
    stage(Stage.VERIFYING_UPLOAD)
    out = ssh.run(quote(["sha256sum", remote]), timeout=opts.command_timeout).text.split()
    if not out or out[0].lower() != build.image.sha256:
        _remove(ssh, remote, opts)
        raise _Stop(
            Status.REFUSED,
            f"the uploaded image is damaged: sha256 {out[0] if out else '?'} on the router, "
            f"{build.image.sha256} expected; not flashed",
            hint="check the link to the router and run flash again",
        )
    stage(Stage.TESTING)
    test = ssh.run(quote(["sysupgrade", "-T", remote]), timeout=opts.command_timeout, check=False)
    if test.returncode != 0:
        _remove(ssh, remote, opts)
        detail = (test.stderr or test.text).strip().splitlines()
        raise _Stop(
            Status.REFUSED,
            f"sysupgrade -T rejected the image{': ' + detail[-1] if detail else ''}; not flashed",
        )

    stage(Stage.UPGRADING)
    deadline = time.monotonic() + opts.reboot_timeout
    argv = ["sysupgrade", *(["-n"] if opts.reset_settings else []), remote]
    try:
        res = ssh.run(quote(argv), timeout=opts.reboot_timeout, check=False)
    except (SshError, SshTimeout):
        res = None  # the session drops when the router goes down: expected
    if res is not None and res.returncode not in (0,):
        detail = (res.stderr or res.text).strip().splitlines()
        raise FlashError(
            f"sysupgrade failed (status {res.returncode}){': ' + detail[-1] if detail else ''}"
        )

    stage(Stage.REBOOTING)
    with tempfile.TemporaryDirectory(prefix="owrt-vpn-flash-") as tmp:
        if opts.reset_settings:
            # A reset router makes a new host key at first boot: it can only
            # be trusted on first use; the report shows it.
            ssh = SshClient(
                target.ssh, accept_new_host_keys=True, connect_timeout=opts.connect_timeout,
                known_hosts=Path(tmp) / "known_hosts",
            )  # fmt: skip
        _wait_for_boot(ssh, facts.boot_id, deadline, opts)
        if opts.reset_settings:
            report.new_host_key = (Path(tmp) / "known_hosts").read_text().strip() or None

    stage(Stage.VERIFYING)
    after = _probe(ssh, opts)
    report.after = after.release
    want = {"version": build.release, "revision": build.revision}
    if after.release != want:
        raise FlashError(
            f"the router came back running {after.release['version']} {after.release['revision']}, "
            f"not {build.release} {build.revision}",
            hint="the upgrade did not take: check the router's console or logs, then flash again",
        )
    if not build.baked_info_matches(after.baked_build_info):
        raise FlashError(f"{BAKED_BUILD_INFO} on the router is not the one of the image we flashed")
    _wait_for_conns(ssh, build, deadline, opts)

    stage(Stage.MARKING)
    marker = {
        "image": build.image.name,
        "image_sha256": build.image.sha256,
        "release": build.release,
        "revision": build.revision,
        "router": target.router.name,
        "flashed_at": _iso(time.time()),
        "tool": f"owrt-vpn {__version__}",
    }
    ssh.run(
        "umask 022 && mkdir -p /etc/owrt-vpn && cat > /etc/owrt-vpn/.flashed.json.new"
        " && mv -f /etc/owrt-vpn/.flashed.json.new " + MARKER,
        input=json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n",
        timeout=opts.command_timeout,
    )


def _probe(ssh: SshClient, opts: FlashOptions) -> _Facts:
    """Board, memory, marker, baked build-info and boot id in one round trip."""
    script = "; ".join(
        [
            "ubus call system board",
            f"echo; echo {_SECTION} meminfo",
            "cat /proc/meminfo",
            f"echo; echo {_SECTION} marker",
            f"cat {MARKER} 2>/dev/null",
            f"echo; echo {_SECTION} build-info",
            f"cat {BAKED_BUILD_INFO} 2>/dev/null",
            f"echo; echo {_SECTION} boot-id",
            f"cat {BOOT_ID} 2>/dev/null",
            "true",
        ]
    )
    res = ssh.run(script, timeout=opts.command_timeout)
    sections: dict[str, list[str]] = {"board": []}
    current = "board"
    for line in res.text.splitlines():
        if line.startswith(_SECTION + " "):
            current = line.split(" ", 1)[1].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    board = _json("\n".join(sections["board"]))
    if not isinstance(board, dict) or "board_name" not in board:
        err = res.stderr.strip().splitlines()
        raise FlashError(
            "`ubus call system board` gave no board description" + (f": {err[-1]}" if err else ""),
            hint="is this an OpenWrt router?",
        )
    marker = _json("\n".join(sections.get("marker", [])))
    baked = _json("\n".join(sections.get("build-info", [])))
    return _Facts(
        board=board,
        mem_available=_mem_available(sections.get("meminfo", [])),
        marker=marker if isinstance(marker, dict) else None,
        baked_build_info=baked if isinstance(baked, dict) else None,
        boot_id="".join(sections.get("boot-id", [])).strip(),
    )


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def _mem_available(lines: list[str]) -> int | None:
    """MemAvailable in bytes (kernels since 3.14 have it; before, MemFree is the safe floor)."""
    values = {}
    for line in lines:
        m = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    return values.get("MemAvailable", values.get("MemFree"))


def _up_to_date(facts: _Facts, build: Build) -> bool:
    """The marker names this image and the router really runs its release (a marker
    survives keep-settings upgrades, including someone else's)."""
    if not facts.marker or facts.marker.get("image_sha256") != build.image.sha256:
        return False
    return facts.release == {"version": build.release, "revision": build.revision}


def _remove(ssh: SshClient, remote: str, opts: FlashOptions) -> None:
    """Free the router's RAM after a refused image (best effort)."""
    with contextlib.suppress(OwrtVpnError):
        ssh.run(quote(["rm", "-f", remote]), timeout=opts.command_timeout, check=False)


def _wait_for_boot(ssh: SshClient, old_boot_id: str, deadline: float, opts: FlashOptions) -> None:
    """Wait until the router answers SSH from a new boot (its boot id changed)."""
    saw_down = False
    last_error = ""
    while time.monotonic() < deadline:
        try:
            res = ssh.run(f"cat {BOOT_ID} 2>/dev/null; true", timeout=opts.connect_timeout + 10)
            boot_id = res.text.strip()
            if boot_id and old_boot_id and boot_id != old_boot_id:
                return
            if not old_boot_id and saw_down:  # no boot id to compare: down-then-up will do
                return
        except HostKeyError:
            raise
        except (SshError, SshTimeout) as exc:
            saw_down, last_error = True, exc.message
        time.sleep(min(opts.poll_interval, max(0.0, deadline - time.monotonic())))
    # The last SSH error tells "still down" from "back, but refuses our key".
    raise FlashError(
        f"the router did not come back within {opts.reboot_timeout:g} s after sysupgrade"
        + (f" (last attempt: {last_error})" if last_error else ""),
        hint="it may still be writing flash or booting: check it, then run flash again "
        "(a router already running the image is skipped)",
    )


def _wait_for_conns(ssh: SshClient, build: Build, deadline: float, opts: FlashOptions) -> None:
    """Wait until strongSwan has loaded our connections (it starts late in the boot)."""
    command = "ipsec statusall" if build.conn_style == "ipsec" else "swanctl --list-conns"
    missing: list[str] = []
    while True:
        res = ssh.run(command + " 2>&1", timeout=opts.command_timeout, check=False)
        loaded = _listed_conns(res.text, build.conn_style)
        missing = [c for c in build.expected_conns if c not in loaded]
        if loaded and not missing:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(min(opts.poll_interval, max(0.0, deadline - time.monotonic())))
    what = f"missing: {', '.join(missing)}" if loaded else "none loaded"
    raise FlashError(
        f"the VPN connections are not loaded after the flash (`{command}`: {what})",
        hint="check the strongSwan log on the router (logread -e charon)",
    )


def _listed_conns(text: str, style: str) -> set[str]:
    """Connection names from ``swanctl --list-conns`` or ``ipsec statusall`` output."""
    if style == "ipsec":
        return set(re.findall(r"^\s+(\S+?):\s+\S+\.\.\.\S+\s+IKEv", text, re.M))
    return set(re.findall(r"^(\S+): IKEv[12]", text, re.M))


def _release_text(release: dict[str, str]) -> str:
    return f"{release['version']} {release['revision']}".strip() or "unknown release"


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None
