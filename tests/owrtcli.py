"""The one way the tests run the real CLI: ``python -m owrt_vpn ARGS`` in a subprocess.

tests/conftest.py's ``cli`` fixture (per test, cwd defaults to tmp_path) and
tests/integration/conftest.py's ``owrt`` fixture (per module, must succeed)
are both :func:`run_owrt`; code that starts the CLI itself (``Popen``, another
namespace) takes its environment from :func:`cli_env` and its argv from
:func:`owrt_argv`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Every CLI run gets these (a test's own ``env`` may still override them).
OWRT_ENV = {
    "OWRT_VPN_CA_PASSPHRASE": "test-ca-passphrase",
    "SOURCE_DATE_EPOCH": "1700000000",
    # `init` looks up the newest stable release on the mirror: tests never reach
    # the internet (a missing local mirror answers at once; a test that wants
    # the lookup serves a loopback mirror).
    "OWRT_VPN_MIRROR": "/nonexistent/owrt-vpn-test-mirror",
}

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``OWRT_VPN_SITE``, plus :data:`OWRT_ENV` and ``extra``."""
    env = dict(os.environ)
    env.pop("OWRT_VPN_SITE", None)
    env.update(OWRT_ENV)
    if extra:
        env.update(extra)
    return env


def owrt_argv(*args: str | os.PathLike[str]) -> list[str]:
    """``[python, -m, owrt_vpn, *args]``."""
    return [sys.executable, "-m", "owrt_vpn", *map(os.fspath, args)]


def run_owrt(
    *args: str | os.PathLike[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = False,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``owrt-vpn ARGS`` in ``cwd`` with :func:`cli_env` (``env`` on top).

    With ``check`` a non-zero exit raises an AssertionError showing both streams.
    """
    proc = subprocess.run(
        owrt_argv(*args),
        cwd=cwd,
        env=cli_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"owrt-vpn {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def run_on_terminal(
    *args: str | os.PathLike[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, str]:
    """Run ``owrt-vpn ARGS`` with stdin, stdout and stderr on a pseudo-terminal, as an admin
    at a shell does: ``(exit status, everything it printed)`` (CRLF turned into LF)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        owrt_argv(*args),
        cwd=cwd,
        env=cli_env({"COLUMNS": "200", **(env or {})}),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, out.decode(errors="replace").replace("\r\n", "\n")
