"""The one batch job model that flash, push and status specialise.

A job is one router's run of a batch command: options (:class:`JobOptions`:
concurrency, host keys, timeouts) and a report (:class:`JobReport`: name,
router, address, status, the stage reached, message, hint, times, stages)
that each command extends with its own fields and statuses, and
:meth:`Job.run`, the one exception ladder and cancel handling:

- a :class:`Stop` ends the job with the status it carries (refused, skipped,
  unchanged, would-flash ...);
- a host-key mismatch is *refused* while nothing on the router was changed
  (``report.changed`` is False), *failed* after a change;
- Ctrl-C (the batch's ``cancel`` event, a SIGINT/SIGTERM to owrt-vpn, or an
  SSH client killed by that signal, even when that shows before owrt-vpn's
  own handler ran) is *failed* with the message
  "interrupted while <stage>" or "interrupted after <stage>" naming the
  stage really reached, never a router-side error;
- any other owrt-vpn error is *failed* with its message; a bug is *failed*
  with "internal error" and never takes the other routers down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from owrt_vpn.errors import OwrtVpnError, RouterError
from owrt_vpn.routers import batch
from owrt_vpn.routers.ssh import HostKeyError, RemoteCommandError, SshClient, SshError, SshTarget
from owrt_vpn.run import signalled

UNKNOWN_RELEASE = "an unknown release"

# How long a job whose SSH session broke waits for a Ctrl-C to show: a
# terminal's SIGINT ends the ssh clients (OpenSSH exits 255 and, at our log
# level, says nothing) at the same moment it reaches owrt-vpn, whose handler
# runs in the main thread, up to one wait tick of the batch (0.5 s) later.
SIGNAL_GRACE = 1.0


def release_text(release: dict[str, Any]) -> str:
    """``"<version> <revision>"`` of a router's release (one fallback for every command)."""
    text = f"{release.get('version', '') or ''} {release.get('revision', '') or ''}".strip()
    return text or UNKNOWN_RELEASE


@dataclass(frozen=True)
class JobOptions:
    """The options every batch command has (its CLI's common options); commands add theirs."""

    jobs: int = 4
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 120.0

    def client(self, target: SshTarget) -> SshClient:
        """An SSH client for ``target`` with these host-key and connect settings."""
        return SshClient(
            target,
            accept_new_host_keys=self.accept_new_host_keys,
            connect_timeout=self.connect_timeout,
        )


class Stop(RouterError):
    """Ends a job with a status other than failed (refused, skipped, would-...)."""

    def __init__(self, status: StrEnum, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class Interrupted(RouterError):
    """The batch was interrupted (Ctrl-C / SIGTERM) at a stage boundary."""


@dataclass
class JobReport:
    """One router's outcome; commands subclass it with their fields and statuses."""

    name: str
    router: str
    address: str
    status: StrEnum | None = None
    stage: StrEnum | str = "queued"
    message: str = ""
    hint: str | None = None
    started: float = 0.0
    finished: float = 0.0
    stages: list[tuple[str, float]] = field(default_factory=list)
    # Something on the router was changed: a later host-key mismatch is a failure.
    changed: bool = False
    # The stage that finished last (for "interrupted after ...").
    completed: str | None = None

    # Set by each command: its status enum (with "failed" and "refused"),
    # the good statuses, and the hint after an interruption.
    STATUS: ClassVar[type[StrEnum]]
    OK: ClassVar[frozenset[str]] = frozenset()
    AGAIN: ClassVar[str] = "run the command again"

    def fail(self, message: str, hint: str | None = None, status: str = "failed") -> None:
        """End the report as ``status`` (failed unless told) with ``message``."""
        self.status, self.message, self.hint = self.STATUS(status), message, hint

    @property
    def ok(self) -> bool:
        """True for the command's good statuses."""
        return self.status is not None and str(self.status) in self.OK

    def base_json(self) -> dict[str, Any]:
        """The fields every batch report carries."""
        return {
            "name": self.name,
            "router": self.router,
            "address": self.address,
            "status": str(self.status),
            "stage": str(self.stage),
            "message": self.message,
            "hint": self.hint,
            "started": batch.iso_time(self.started),
            "finished": batch.iso_time(self.finished),
            "seconds": round(self.finished - self.started, 3),
        }

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data (commands add their fields)."""
        return self.base_json()


def _killed_by_signal(exc: BaseException) -> bool:
    """An SSH client that died of the Ctrl-C/SIGTERM that reached its process group
    (killed outright: a negative status; or OpenSSH's own "Killed by signal N.")."""
    if isinstance(exc, RemoteCommandError) and exc.returncode < 0:
        return True
    return isinstance(exc, SshError) and "Killed by signal" in exc.message


class Job:
    """Stage tracking and cancel checks for one router (``stage(...)`` in the steps)."""

    def __init__(
        self,
        report: JobReport,
        notify: Callable[[Any], None],
        cancel: threading.Event,
    ) -> None:
        self.report, self.notify, self.cancel = report, notify, cancel
        # Serialises first contacts (known_hosts appends) across the batch.
        self.lock = threading.Lock()

    def interrupted(self) -> bool:
        """True once the batch was interrupted."""
        return self.cancel.is_set() or signalled() is not None

    def check(self) -> None:
        """Raise :class:`Interrupted` (between stages) once the batch was interrupted."""
        if self.interrupted():
            done = self.report.completed
            raise Interrupted(f"interrupted after {done}" if done else "interrupted")

    def stage(self, s: StrEnum) -> None:
        """Enter stage ``s``: the previous one finished; stop here when interrupted."""
        r = self.report
        if str(r.stage) != "queued":
            r.completed = str(r.stage)
        self.check()
        r.stage = s
        r.stages.append((str(s), time.time()))
        self.notify(r)

    def interrupted_soon(self) -> bool:
        """True when the batch is, or within :data:`SIGNAL_GRACE` becomes, interrupted."""
        deadline = time.monotonic() + SIGNAL_GRACE
        while not self.interrupted():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def check_result(self, returncode: int) -> None:
        """Raise :class:`Interrupted` when a router command's client died of our signal."""
        if returncode < 0 or (returncode and self.interrupted()):
            raise Interrupted(f"interrupted while {self.report.stage}")

    def run(self, body: Callable[[], None]) -> None:
        """Run ``body`` (the steps) and classify its end into the report; never raises."""
        r = self.report
        r.started = time.time()
        try:
            body()
        except Stop as exc:
            r.status = exc.status
            r.message, r.hint = exc.message, exc.hint
        except Interrupted as exc:
            r.fail(exc.message, r.AGAIN)
        except HostKeyError as exc:
            if self.interrupted():
                r.fail(f"interrupted while {r.stage}", r.AGAIN)
            else:
                # Nothing changed yet: refused. After a change (an upgrade, an
                # install) a key that no longer matches is a failure.
                r.fail(exc.message, exc.hint, "failed" if r.changed else "refused")
        except OwrtVpnError as exc:
            if (
                self.interrupted()
                or _killed_by_signal(exc)
                or (isinstance(exc, SshError) and self.interrupted_soon())
            ):
                r.fail(f"interrupted while {r.stage}", r.AGAIN)
            else:
                r.fail(exc.message, exc.hint)
        except Exception as exc:  # a bug must not take the other routers down
            r.fail(f"internal error: {exc!r}")
        r.finished = time.time()
        self.notify(r)


def run_batch(
    reports: Sequence[JobReport],
    work: Callable[[int, Job], Callable[[], None]],
    jobs: int,
    progress: Callable[[Any], None] | None,
    name: str,
) -> None:
    """Run one job per report (``work(i, job)`` returns its steps), up to ``jobs`` at once.

    After Ctrl-C, a report that never started is failed "interrupted before
    it started"; the ones in flight say where they stopped.
    """
    lock = threading.Lock()
    cancel = threading.Event()

    def notify(report: Any) -> None:
        if progress is not None:
            with lock:
                progress(report)

    def one(i: int) -> None:
        job = Job(reports[i], notify, cancel)
        job.lock = lock
        job.run(work(i, job))

    if batch.run_concurrently(len(reports), one, jobs, cancel, name=name):
        for r in reports:
            if r.status is None:
                r.fail("interrupted before it started", r.AGAIN)
