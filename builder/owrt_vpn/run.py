"""The one subprocess runner: argv lists only, clean env, typed failures."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from owrt_vpn.errors import CommandError, OwrtVpnError

log = logging.getLogger("owrt_vpn.run")

# Environment variables a child may inherit; everything else is dropped so a
# user's shell settings cannot change what make, tar or ssh do.
_KEEP_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TERM", "SSH_AUTH_SOCK", "DOCKER_HOST")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment with ``LC_ALL=C`` plus ``extra``."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    stdout_path: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` and return the completed process.

    ``stdout_path`` sends stdout and stderr to a file (build logs) instead of
    capturing them. With ``check`` a non-zero exit raises :class:`CommandError`
    carrying argv, status and the stderr tail.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", " ".join(args))
    try:
        if stdout_path is not None:
            with stdout_path.open("ab") as out:
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    env=clean_env(env),
                    input=input,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            proc = subprocess.CompletedProcess(args, proc.returncode, b"", b"")
        else:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=clean_env(env),
                input=input,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError as exc:
        raise OwrtVpnError(
            f"{args[0]}: command not found",
            hint="run `owrt-vpn doctor` to see which host tools are missing",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise OwrtVpnError(f"{args[0]} timed out after {timeout:g} s") from exc
    if check and proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace")[-2000:] if proc.stderr else ""
        if not tail and stdout_path is not None and stdout_path.exists():
            tail = stdout_path.read_bytes()[-2000:].decode(errors="replace")
        raise CommandError(args, proc.returncode, tail)
    return proc


# Process groups of long-running children (make) started by run_logged: each
# runs in its own session (setsid), so a terminal's Ctrl-C no longer reaches
# it and neither does a SIGTERM to owrt-vpn alone. The signal handler below
# ends every group, in whichever thread it was started.
_groups: set[int] = set()
_groups_lock = threading.Lock()
GRACE = 3.0  # seconds between SIGTERM and SIGKILL to a group


def end_group(
    pgid: int, grace: float = GRACE, child: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group ``pgid``, SIGKILL what is left after ``grace`` s.

    ``child``: our own child leading the group, reaped while waiting (a
    zombie leader would keep the group "alive" for the whole grace time).
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def end_all_groups() -> None:
    """End every process group :func:`run_logged` started and that still runs."""
    with _groups_lock:
        groups = sorted(_groups)
    for pgid in groups:
        end_group(pgid)


_signalled: list[int] = []


def signalled() -> int | None:
    """The first SIGINT/SIGTERM this process received (None: none)."""
    return _signalled[0] if _signalled else None


def install_signal_handlers() -> None:
    """SIGINT/SIGTERM: end the children's process groups, then raise KeyboardInterrupt
    in the main thread (so ``finally`` blocks remove work trees and containers).

    Only the main thread may set handlers; the CLI calls this once at start.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    owner = os.getpid()

    def handler(num: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A forked worker (the PKI's pool) inherits the handler: there the
            # signal keeps its default meaning (a pool ends its workers with
            # SIGTERM; they must exit quietly, not raise in the child).
            signal.signal(num, signal.SIG_DFL)
            os.kill(os.getpid(), num)
            return
        _signalled.append(num)
        # End the groups from a thread: the handler must return quickly, and a
        # worker thread blocked on make's output then sees it end.
        threading.Thread(target=end_all_groups, name="end-groups", daemon=True).start()
        raise KeyboardInterrupt(f"signal {num}")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def run_logged(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    timeout: float | None = None,
    group_file: Path | None = None,
) -> tuple[int, str]:
    """Run ``argv`` with stdout+stderr appended to ``log_path`` (and each line
    to ``echo``, e.g. the terminal under --verbose); return (status, output).

    The child runs in its own process group (a new session); on a timeout,
    an exception here (KeyboardInterrupt) or a signal to owrt-vpn the whole
    group is ended, not only the first process. ``group_file`` gets the
    group's id appended, so that a later run can end the group of an
    owrt-vpn that was killed with SIGKILL (see ``Cache.work_dir``).

    Unlike :func:`run` it never raises on a failure status: the caller
    (a build backend) turns the output into a specific error.
    """
    args = [os.fspath(a) for a in argv]
    if _signalled:
        # Another thread of an interrupted run: start nothing new.
        raise OwrtVpnError(f"{args[0]}: not started: interrupted")
    log.debug("+ %s", " ".join(args))
    lines: list[str] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise OwrtVpnError(
            f"{args[0]}: command not found",
            hint="run `owrt-vpn doctor` to see which host tools are missing",
        ) from exc
    with _groups_lock:
        _groups.add(proc.pid)
    try:
        if group_file is not None:
            with group_file.open("a") as fh:
                fh.write(f"{proc.pid}\n")
        return _follow(proc, args, log_path, cwd, echo, lines, deadline, timeout)
    finally:
        # Whatever happened (done, timeout, interrupt): nothing of the group
        # may outlive this call.
        end_group(proc.pid, grace=GRACE, child=proc)
        with _groups_lock:
            _groups.discard(proc.pid)


def _follow(
    proc: subprocess.Popen[bytes],
    args: list[str],
    log_path: Path,
    cwd: Path | None,
    echo: Callable[[str], None] | None,
    lines: list[str],
    deadline: float | None,
    timeout: float | None,
) -> tuple[int, str]:
    assert proc.stdout is not None
    with log_path.open("ab") as out, proc:
        where = f"(in {cwd}) " if cwd is not None else ""
        out.write(f"+ {where}{' '.join(args)}\n".encode())
        for raw in proc.stdout:
            out.write(raw)
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if echo is not None:
                echo(line)
            if deadline is not None and time.monotonic() > deadline:
                end_group(proc.pid, child=proc)
                raise OwrtVpnError(f"{args[0]} timed out after {timeout:g} s")
        status = proc.wait()
    return status, "\n".join(lines)
