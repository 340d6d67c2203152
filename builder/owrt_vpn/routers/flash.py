"""Batch flashing over SSH: the per-router upgrade state machine, concurrency, report.

For each router (up to ``jobs`` at a time; one failing router never stops
the others):

1. connect with host key checking (:mod:`owrt_vpn.routers.ssh`);
2. read ``ubus call system board``, ``/proc/meminfo`` and our marker in one
   round trip; refuse a board not in the image's ``supported_devices`` (most
   bcm53xx images carry no metadata, so ``sysupgrade -T`` alone would take
   the wrong device's image) and an image that does not fit in RAM;
3. skip when the marker of our last flash names this image's sha256 *and*
   the router runs the build's release and revision (a router that runs the
   build but lacks the marker, after an interrupted run, gets its VPN checked
   and the marker written);
4. upload the image to /tmp, check its sha256 there, ``sysupgrade -T``, then
   ``sysupgrade`` (keeping settings, or ``-n`` when asked and the build
   bakes management access; never ``-F``);
5. expect the session to drop; wait for a *new* boot (the kernel's boot id
   changes) within the timeout; verify release, revision, the image's baked
   build-info and that our VPN connections are loaded; then write the marker.

``dry_run`` stops after step 3 and says what would happen.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from owrt_vpn import __version__
from owrt_vpn.errors import FlashError, OwrtVpnError
from owrt_vpn.routers import batch
from owrt_vpn.routers import probe as remote
from owrt_vpn.routers.dist import Build, load_build
from owrt_vpn.routers.inventory import RouterTarget
from owrt_vpn.routers.job import Job, JobOptions, JobReport, Stop, release_text, run_batch
from owrt_vpn.routers.ssh import SshClient, SshError, quote

# RAM the router needs beyond the image while sysupgrade runs (it copies
# itself and a few tools to a ramdisk before writing flash).
HEADROOM = 4 * 1024 * 1024


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
class FlashOptions(JobOptions):
    """How to flash (the CLI's options)."""

    dry_run: bool = False
    reset_settings: bool = False
    reboot_timeout: float = 300.0  # sysupgrade start -> verified, VPN loaded
    upload_timeout: float = 600.0
    poll_interval: float = 2.0


@dataclass
class RouterReport(JobReport):
    """The outcome for one router (JSON-ready through :meth:`to_json`)."""

    stage: Stage | str = Stage.QUEUED
    board_name: str | None = None
    image: str | None = None
    image_sha256: str | None = None
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    new_host_key: str | None = None

    STATUS: ClassVar[type[StrEnum]] = Status
    OK: ClassVar[frozenset[str]] = frozenset(OK_STATUSES)
    AGAIN: ClassVar[str] = "run flash again: finished routers are skipped"

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            **self.base_json(),
            "board_name": self.board_name,
            "image": self.image,
            "image_sha256": self.image_sha256,
            "before": self.before,
            "after": self.after,
            "new_host_key": self.new_host_key,
            "stages": [{"stage": s, "at": round(t - self.started, 3)} for s, t in self.stages],
        }


Progress = Callable[[RouterReport], None]


def flash_batch(
    targets: Sequence[RouterTarget], options: FlashOptions, progress: Progress | None = None
) -> list[RouterReport]:
    """Flash ``targets`` concurrently (up to ``options.jobs``); one report per target, in order.

    On Ctrl-C the routers in flight stop at their next step (a router in the
    middle of sysupgrade is left to finish on its own; an uploaded image not
    yet flashed is removed from the router's RAM) and every router reports
    the stage it really reached (:mod:`owrt_vpn.routers.job`).
    """
    reports = [RouterReport(t.name, t.router.name, str(t.ssh)) for t in targets]
    builds: dict[Path, Build | OwrtVpnError] = {}
    for t in targets:  # load (and hash) each build once, before any router is touched
        if t.build_dir not in builds:
            try:
                builds[t.build_dir] = load_build(t.build_dir)
            except OwrtVpnError as exc:
                builds[t.build_dir] = exc

    def work(i: int, job: Job) -> Callable[[], None]:
        t = targets[i]
        return lambda: _flash_one(t, builds[t.build_dir], options, reports[i], job)

    run_batch(reports, work, options.jobs, progress, "flash")
    return reports


def batch_exit_code(reports: Sequence[RouterReport]) -> int:
    """0 when every router is fine (flashed, skipped, would-flash), 1 when all failed, else 4."""
    return batch.exit_code([r.ok for r in reports])


def _flash_one(
    target: RouterTarget, build: Build | OwrtVpnError, opts: FlashOptions, report: RouterReport,
    job: Job,
) -> None:  # fmt: skip
    if isinstance(build, OwrtVpnError):
        raise build
    report.image, report.image_sha256 = build.image.name, build.image.sha256
    _Flash(target, build, opts, report, job).run()
    report.status = Status.FLASHED
    report.message = f"now runs {build.release} {build.revision}"
    report.stage = Stage.DONE


class _Flash:
    """The steps of one router's flash; each method is one stage."""

    def __init__(
        self, target: RouterTarget, build: Build, opts: FlashOptions, report: RouterReport,
        job: Job,
    ) -> None:  # fmt: skip
        self.t, self.b, self.o, self.r, self.job = target, build, opts, report, job
        self.stage, self.lock, self.cancel = job.stage, job.lock, job.cancel
        self.ssh = opts.client(target.ssh)
        self.remote_image = f"/tmp/{build.image.name}"  # noqa: S108 - the router's RAM disk

    def run(self) -> None:
        if self.o.reset_settings and not self.t.bakes_access:
            raise Stop(
                Status.REFUSED,
                "--reset-settings wipes SSH keys, passwords and network settings, and this "
                "build does not bake management access",
                hint="set routers.management.authorized_keys and lan_address for "
                f"{self.t.router.name!r} in the site file and rebuild, or flash keeping settings",
            )
        facts = self.check()
        try:
            self.upload()
            deadline = self.upgrade()
        except BaseException:
            if not self.r.changed:
                # Interrupted or refused before sysupgrade started: the image
                # must not stay in the router's RAM (/tmp).
                remote.remove(self.ssh, self.remote_image, min(10.0, self.o.command_timeout))
            raise
        self.wait_for_boot(facts.boot_id, deadline)
        self.verify(deadline)
        self.stage(Stage.MARKING)
        self.write_marker()

    def check(self) -> remote.Facts:
        """Steps 1-3: connect, board and memory checks, skip when already done."""
        self.stage(Stage.CONNECTING)
        facts = remote.first_probe(self.ssh, self.o.command_timeout, self.lock)
        self.r.board_name, self.r.before = facts.board_name, facts.release
        self.stage(Stage.CHECKING)
        b = self.b
        if facts.board_name not in b.supported_devices:
            raise Stop(
                Status.REFUSED,
                f"board {facts.board_name!r} is not one this image supports "
                f"({', '.join(b.supported_devices)})",
                hint=f"check routers.device of {self.t.router.name!r}, "
                "or the inventory entry's router",
            )
        if facts.release == {"version": b.release, "revision": b.revision}:
            if facts.marker and facts.marker.get("image_sha256") == b.image.sha256:
                raise Stop(Status.SKIPPED, f"already runs this image ({b.release} {b.revision})")
            if b.baked_info_matches(facts.baked_build_info):
                # Flashed, but the marker never got written: an interrupted run, or
                # one whose verification failed, so check the VPN before marking.
                remote.wait_for_conns(
                    self.ssh, b.expected_conns, b.conn_style, time.monotonic(),
                    poll=0, command_timeout=self.o.command_timeout, cancel=self.cancel,
                )  # fmt: skip
                if not self.o.dry_run:
                    self.r.changed = True
                    self.write_marker()
                raise Stop(
                    Status.SKIPPED,
                    f"already runs this build ({b.release} {b.revision}); marker "
                    + ("missing" if self.o.dry_run else "written"),
                )
        need = b.image.size + HEADROOM
        have = facts.mem_available
        if have is None or have < need:
            shown = "unknown" if have is None else f"{have // 1024} KiB"
            raise Stop(
                Status.REFUSED,
                f"not enough free memory for the image: {shown} available, "
                f"{need // 1024} KiB needed",
                hint="reboot the router (or stop services) to free RAM, then run flash again",
            )
        if self.o.dry_run:
            mode = "erasing settings (-n)" if self.o.reset_settings else "keeping settings"
            raise Stop(
                Status.WOULD_FLASH,
                f"would flash {b.image.name} ({release_text(facts.release)} -> "
                f"{b.release} {b.revision}), {mode}",
            )
        return facts

    def upload(self) -> None:
        """Step 4a: upload, check the digest on the router, sysupgrade -T."""
        img, timeout = self.remote_image, self.o.command_timeout
        self.stage(Stage.UPLOADING)
        self.ssh.upload(self.b.image.path, img, timeout=self.o.upload_timeout)
        self.stage(Stage.VERIFYING_UPLOAD)
        res = self.ssh.run(quote(["sha256sum", img]), timeout=timeout, check=False)
        self.job.check_result(res.returncode)
        out = res.text.split() if res.returncode == 0 else []
        if not out or out[0].lower() != self.b.image.sha256:
            raise Stop(
                Status.REFUSED,
                f"the uploaded image is damaged: sha256 {out[0] if out else '?'} on the router, "
                f"{self.b.image.sha256} expected; not flashed",
                hint="check the link to the router and run flash again",
            )
        self.stage(Stage.TESTING)
        test = self.ssh.run(quote(["sysupgrade", "-T", img]), timeout=timeout, check=False)
        self.job.check_result(test.returncode)
        if test.returncode != 0:
            raise Stop(
                Status.REFUSED,
                f"sysupgrade -T rejected the image{_last(test.stderr or test.text)}; not flashed",
            )

    def upgrade(self) -> float:
        """Step 4b: sysupgrade; the session dropping is the expected outcome.

        Returns the deadline for the router to be back and verified.
        """
        self.stage(Stage.UPGRADING)
        # From here the router may change: a host-key mismatch is a failure,
        # and the image in /tmp belongs to sysupgrade.
        self.r.changed = True
        deadline = time.monotonic() + self.o.reboot_timeout
        argv = ["sysupgrade", *(["-n"] if self.o.reset_settings else []), self.remote_image]
        try:
            res = self.ssh.run(quote(argv), timeout=self.o.reboot_timeout, check=False)
        except SshError:
            return deadline  # connection closed by the rebooting router
        self.job.check_result(res.returncode)
        if res.returncode != 0:
            raise FlashError(
                f"sysupgrade failed (status {res.returncode}){_last(res.stderr or res.text)}"
            )
        return deadline

    def wait_for_boot(self, old_boot_id: str, deadline: float) -> None:
        """Step 5a: wait for the router to come back from a new boot."""
        self.stage(Stage.REBOOTING)
        o = self.o
        with tempfile.TemporaryDirectory(prefix="owrt-vpn-flash-") as tmp:
            if o.reset_settings:
                # A reset router makes a new host key at first boot: it can only be
                # trusted on first use (for this verification); the report shows it.
                known = Path(tmp) / "known_hosts"
                self.ssh = SshClient(
                    self.t.ssh, accept_new_host_keys=True, connect_timeout=o.connect_timeout,
                    known_hosts=known,
                )  # fmt: skip
            remote.wait_for_boot(
                self.ssh, old_boot_id, deadline, poll=o.poll_interval,
                command_timeout=o.connect_timeout + 10, cancel=self.cancel,
                limit=o.reboot_timeout,
            )  # fmt: skip
            if o.reset_settings:
                self.r.new_host_key = known.read_text().strip() or None

    def verify(self, deadline: float) -> None:
        """Step 5b: the running release, the baked build-info, the VPN connections."""
        self.stage(Stage.VERIFYING)
        b, o = self.b, self.o
        after = remote.probe(self.ssh, o.command_timeout)
        self.r.after = after.release
        if after.release != {"version": b.release, "revision": b.revision}:
            raise FlashError(
                f"the router came back running {release_text(after.release)}, "
                f"not {b.release} {b.revision}",
                hint="the upgrade did not take: check the router's console or logs, "
                "then flash again",
            )
        if not b.baked_info_matches(after.baked_build_info):
            raise FlashError(
                f"{remote.BAKED_BUILD_INFO} on the router is not the one of the image we flashed"
            )
        remote.wait_for_conns(
            self.ssh, b.expected_conns, b.conn_style, deadline, poll=o.poll_interval,
            command_timeout=o.command_timeout, cancel=self.cancel,
        )  # fmt: skip

    def write_marker(self) -> None:
        """Record the flashed image on the router (read back by the next run's step 3)."""
        b = self.b
        marker = {
            "image": b.image.name,
            "image_sha256": b.image.sha256,
            "release": b.release,
            "revision": b.revision,
            "router": self.t.router.name,
            "flashed_at": batch.iso_time(time.time()),
            "tool": f"owrt-vpn {__version__}",
        }
        remote.write_marker(self.ssh, marker, self.o.command_timeout)


def _last(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return f": {lines[-1]}" if lines else ""
