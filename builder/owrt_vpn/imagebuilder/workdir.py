"""Scratch work trees of builds in the cache: 0700, locked, swept after a killed run.

A build's work tree holds the rendered overlay (the router's private key)
and the ImageBuilder copy make runs in. It is 0700 from its creation; its
lock file is locked before it appears under its name, so a sweep never
mistakes a starting build for a dead one; a later build sweeps the trees of
dead builds: it ends the process groups recorded there (make, which runs in
its own session and survives a ``kill -9`` of owrt-vpn), then removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def work_dir(base: Path) -> Iterator[Path]:
    """A fresh scratch dir for one build (0700 from its creation), removed afterwards.

    It lives in the cache so that copying a tree stays on one file
    system (``cp --reflink`` can share blocks there), and holds secrets
    (the rendered overlay with the router's key) while it exists.
    Work dirs left by a killed run are swept when their lock is free:
    the process groups recorded in them (:data:`GROUPS_FILE`, make's) are
    ended first, then the tree is removed.
    """
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(base, 0o700)
    _sweep(base)
    name = uuid.uuid4().hex[:12]
    path = base / name
    lock = base / f"{name}.lock"
    # Locked before it becomes visible under its name: a sweeper never
    # sees an unlocked lock of a live build (no age guess needed).
    pending = base / f".{name}.lock.new"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.rename(pending, lock)
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # whatever the umask
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def _sweep(base: Path) -> None:
    for lock in base.glob("*.lock"):
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a build is using it
        try:
            stale = base / lock.stem
            end_recorded_groups(stale)
            shutil.rmtree(stale, ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


# Written by the local backend into its work dir: one process group id a line.
GROUPS_FILE = ".process-groups"


def end_recorded_groups(work: Path) -> list[int]:
    """End the process groups recorded under ``work`` (a killed build's make); their ids.

    A group id is only signalled while its leader, if alive, still works
    inside ``work``: an id reused by an unrelated process is left alone.
    """
    from owrt_vpn.run import end_group

    ended = []
    for record in [work / GROUPS_FILE, *work.glob(f"*/{GROUPS_FILE}")]:
        try:
            ids = [int(x) for x in record.read_text().split() if x.isdigit()]
        except OSError:
            continue
        for pgid in ids:
            try:
                cwd = os.readlink(f"/proc/{pgid}/cwd")
            except FileNotFoundError:
                cwd = None  # leader gone; members (if any) still form the group
            except OSError:
                continue
            if cwd is not None and not (cwd + "/").startswith(str(work) + "/"):
                continue
            end_group(pgid, grace=1.0)
            ended.append(pgid)
    return ended
