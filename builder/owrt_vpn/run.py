"""The one subprocess runner: argv lists only, clean env, typed failures."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

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


def run_logged(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> tuple[int, str]:
    """Run ``argv`` with stdout+stderr appended to ``log_path`` (and each line
    to ``echo``, e.g. the terminal under --verbose); return (status, output).

    Unlike :func:`run` it never raises on a failure status: the caller
    (a build backend) turns the output into a specific error.
    """
    import time

    args = [os.fspath(a) for a in argv]
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
        )
    except FileNotFoundError as exc:
        raise OwrtVpnError(
            f"{args[0]}: command not found",
            hint="run `owrt-vpn doctor` to see which host tools are missing",
        ) from exc
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
                proc.kill()
                raise OwrtVpnError(f"{args[0]} timed out after {timeout:g} s")
        status = proc.wait()
    return status, "\n".join(lines)
