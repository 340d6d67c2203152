"""Atomic writes (a failing command never leaves a half-written file), file digests."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def tighten(path: Path, wanted: int, secret: str, *, repair: bool) -> str | None:
    """A warning when others may read ``path`` (through a link: what it points to).

    ``secret`` says what they could read ("a secret"). The mode becomes
    ``wanted`` when ``repair`` and the file is ours (``chmod`` of another
    user's file would fail: the warning then says what to run).
    """
    try:
        st = path.stat()
    except OSError:
        return None  # gone or dangling: whoever reads it names what is missing
    mode = st.st_mode & 0o7777
    if not mode & 0o077:
        return None
    what = f"{path}: mode {mode:04o} lets other users read {secret}"
    if repair and st.st_uid == os.geteuid():
        os.chmod(path, wanted)
        return f"{what}: set to {wanted:04o}"
    return f"{what}: run `chmod {wanted:o} {path}`"


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same dir, then rename.

    The temp file is created with ``mode`` already applied, so a secret is
    never readable by others, not even for a moment. ``sync=False`` skips the
    fsync (still all or nothing, but maybe lost in a crash) for files written
    by the thousand that can be made again.
    """
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``final``; on success it replaces ``final``.

    On any exception the temp dir is removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (images are large)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# Locks this process holds, per thread: (device, inode, thread id) -> depth.
# A thread that already holds a lock gets it again at once (the site folder
# and the PKI directory can be one folder: `pki_dir = "."`), where a second
# flock on a new descriptor would wait for itself forever.
_held: dict[tuple[int, int, int], int] = {}


@contextlib.contextmanager
def held_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (a directory, or a lock file made if missing).

    When another process (or thread) holds it, ``on_wait()`` is called once
    (to say so) before waiting. The lock goes with the process: a killed
    holder never leaves a stale lock behind. Re-entrant within one thread.
    """
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, threading.get_ident())
    try:
        if key in _held:
            _held[key] += 1
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            _held[key] = 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
    finally:
        os.close(fd)  # the outermost close releases the lock
