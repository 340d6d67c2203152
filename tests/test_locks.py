"""fsutil.held_lock: exclusive between processes and threads, re-entrant within a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from owrt_vpn.fsutil import held_lock


def test_reentrant_in_one_thread_exclusive_for_others(tmp_path: Path) -> None:
    waited: list[str] = []
    entered = threading.Event()

    def other() -> None:
        with held_lock(tmp_path, lambda: waited.append("thread")):
            entered.set()

    with held_lock(tmp_path):
        with held_lock(tmp_path):  # the site folder is also the PKI folder: no self-deadlock
            pass
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        assert not entered.is_set() and waited == ["thread"]  # the inner exit kept the lock
        code = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        code += "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError: sys.exit(7)"
        assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 7
    t.join(timeout=10)
    assert entered.is_set()
