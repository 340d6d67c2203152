"""run_logged: the child runs in its own process group, and the whole group ends on a timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from owrt_vpn.errors import OwrtVpnError
from owrt_vpn.run import run_logged

# A "make" that leaves a grandchild behind and keeps talking.
SCRIPT = "sleep 300 & echo $! > {pid}; while :; do echo tick; sleep 0.1; done"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (already dead, not yet reaped by init) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    t0 = time.monotonic()
    with pytest.raises(OwrtVpnError, match="timed out after 1 s"):
        run_logged(["sh", "-c", SCRIPT.format(pid=pid_file)], log_path=tmp_path / "log",
                   timeout=1)  # fmt: skip
    assert time.monotonic() - t0 < 10
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_child_gets_its_own_process_group(tmp_path: Path) -> None:
    status, out = run_logged(["sh", "-c", "cut -d' ' -f5 /proc/$$/stat; echo $$"],
                             log_path=tmp_path / "log")  # fmt: skip
    pgid, pid = out.split()
    assert status == 0 and pgid == pid and int(pgid) != os.getpgrp()


def test_a_forked_worker_keeps_the_default_sigterm() -> None:
    """The CLI's SIGTERM handler acts only in its own process: a forked worker (the PKI's
    pool, which ends its workers with SIGTERM) dies quietly instead of raising."""
    import subprocess
    import sys

    code = (
        "import multiprocessing, os, signal, time\n"
        "from owrt_vpn.run import install_signal_handlers\n"
        "install_signal_handlers()\n"
        "ctx = multiprocessing.get_context('fork')\n"
        "p = ctx.Process(target=time.sleep, args=(30,))\n"
        "p.start(); time.sleep(0.3); p.terminate(); p.join(10)\n"
        "print(p.exitcode)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "-15"  # killed by the signal, not an exception
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
