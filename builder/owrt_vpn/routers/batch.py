"""One job per router concurrently, the batch exit code, report times (flash, push, status).

A batch runs ``work(i)`` for every router, up to ``jobs`` at a time, in
threads; one router failing never stops the others (each job catches its
own errors and records them in its report). Ctrl-C sets the shared
``cancel`` event, lets the routers in flight stop at their next step and
returns; the caller marks the unfinished routers as failed, so the report
still says what was done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime

from owrt_vpn.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL


def run_concurrently(
    count: int,
    work: Callable[[int], None],
    jobs: int,
    cancel: threading.Event,
    *,
    name: str = "batch",
) -> bool:
    """Run ``work(0..count-1)`` on up to ``jobs`` threads; True when interrupted by Ctrl-C."""
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix=name)
    futures = [pool.submit(work, i) for i in range(count)]
    try:
        for f in futures:
            while True:
                try:
                    f.result(timeout=0.5)  # a timed wait lets Ctrl-C through
                    break
                except FutureTimeout:
                    continue
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        return True
    pool.shutdown()
    return False


def exit_code(oks: Sequence[bool]) -> int:
    """0 when every router is fine, 1 when all failed, else 4 (partial)."""
    bad = sum(1 for ok in oks if not ok)
    if bad == 0:
        return EXIT_OK
    return EXIT_FAILURE if bad == len(oks) else EXIT_PARTIAL


def iso_time(ts: float) -> str | None:
    """A report's time stamp (UTC, seconds) as ISO 8601; None for 0 (not reached)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None
