"""Safe extraction of ImageBuilder archives (``.tar.zst``, ``.tar.xz``, ``.tar.gz``).

tarfile's ``data`` filter only exists from Python 3.11.4, and 3.11 cannot
read zstd, so the checks are done here, the same on every 3.11.x:

- member names are relative, without ``..``, and stay inside the destination;
- symbolic links must point inside the tree (relative, no escape); links to
  absolute paths are not created but skipped and reported: real
  ImageBuilders carry some in ``staging_dir/host/bin`` (host tools such as
  ``python3 -> /usr/bin/python3`` from the build machine), which the
  ImageBuilder's own prerequisite check re-creates for this host;
- hard links only to regular files already extracted from the same archive;
- device files, FIFOs and other special members are refused;
- nothing is written through a symbolic link (``O_NOFOLLOW``, and each
  parent directory must resolve inside the destination);
- nothing is created outside the destination, not even an empty
  directory: a parent is checked (resolved through every link) before it is
  made, and a link's target is resolved through the links it passes;
- the total size and the number of members are capped (:data:`MAX_MEMBERS`,
  :func:`size_cap`), checked from each member's header before its data is
  written, so a small archive cannot fill the disk;
- setuid/setgid/sticky bits and group/other write bits are dropped, owners
  are never taken from the archive; modification times are kept (make
  compares them).

The archive is read as a stream (one pass, no random access), so a
multi-hundred-megabyte ImageBuilder never sits in memory.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from owrt_vpn.errors import IntegrityError


class UnsafeArchiveError(IntegrityError):
    """The archive holds a member that would escape or harm the destination."""


# Real ImageBuilders: about 10,000-40,000 members, 0.3-1.5 GB extracted, at
# most about 8x their compressed size. The caps leave room for growth and
# stop a bomb (a 53 KB .tar.zst holding 1 GiB of zeros) early.
MAX_MEMBERS = 250_000
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 64
MIN_CAP_BYTES = 256 << 20


def size_cap(archive_size: int) -> int:
    """The most bytes an archive of ``archive_size`` compressed bytes may extract to."""
    return min(MAX_TOTAL_BYTES, max(MIN_CAP_BYTES, archive_size * MAX_RATIO))


@contextlib.contextmanager
def open_tar_stream(archive: Path) -> Iterator[tarfile.TarFile]:
    """A streaming TarFile for ``archive``, by its name: .tar.zst, .tar.xz, .tar.gz, .tar."""
    name = archive.name
    if name.endswith((".tar.zst", ".tzst")):
        import zstandard

        with archive.open("rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            with reader, tarfile.open(fileobj=reader, mode="r|") as tf:
                yield tf
        return
    modes = {".tar.xz": "r|xz", ".txz": "r|xz", ".tar.gz": "r|gz", ".tgz": "r|gz", ".tar": "r|"}
    for suffix, mode in modes.items():
        if name.endswith(suffix):
            with tarfile.open(archive, mode=mode) as tf:  # type: ignore[call-overload]
                yield tf
            return
    raise IntegrityError(f"{name}: not a supported archive type (.tar.zst, .tar.xz, .tar.gz)")


def _member_path(name: str, what: str) -> str:
    """The normalised relative path of a member name; UnsafeArchiveError if it escapes."""
    if "\x00" in name or name.startswith("/") or name.startswith("\\"):
        raise UnsafeArchiveError(f"{what}: absolute member path {name!r}")
    norm = posixpath.normpath(name)
    parts = norm.split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"{what}: member path escapes the tree: {name!r}")
    return "" if norm == "." else norm


def _inside(root_real: str, path: str) -> bool:
    return path == root_real or path.startswith(root_real + os.sep)


@dataclass
class ExtractResult:
    """What :func:`safe_extract` did."""

    members: int = 0
    skipped_links: dict[str, str] = field(default_factory=dict)  # path -> absolute target


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
) -> ExtractResult:
    """Extract ``archive`` into the existing, empty dir ``dest``.

    Raises :class:`UnsafeArchiveError` (an IntegrityError) on the first
    unsafe member, or when the archive holds more than ``max_members``
    members or more than ``max_bytes`` bytes (default :func:`size_cap` of
    its size); the caller removes the partial tree.
    """
    what = archive.name
    cap = size_cap(archive.stat().st_size) if max_bytes is None else max_bytes
    total = 0
    root_real = os.path.realpath(dest)
    regular: set[str] = set()
    links: list[str] = []
    dirs: list[tuple[str, int, float]] = []
    result = ExtractResult()
    try:
        with open_tar_stream(archive) as tf:
            for member in tf:
                result.members += 1
                if result.members > max_members:
                    raise UnsafeArchiveError(
                        f"{what}: more than {max_members} members: not an ImageBuilder "
                        "(refusing to extract)"
                    )
                if member.isreg():
                    total += member.size
                    if total > cap:
                        raise UnsafeArchiveError(
                            f"{what}: extracts to more than {cap >> 20} MiB "
                            f"({member.name!r} alone is {member.size >> 20} MiB): "
                            "not an ImageBuilder (refusing to extract)"
                        )
                if member.issym() and member.linkname.startswith("/"):
                    rel = _member_path(member.name, what)
                    full = _safe_parent(dest, rel, root_real, what)
                    _clear(full, rel, what)  # what an earlier member left there
                    result.skipped_links[rel] = member.linkname
                    regular.discard(rel)
                    continue
                _extract_member(tf, member, dest, root_real, regular, links, dirs, what)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, UnsafeArchiveError):
            raise
        raise IntegrityError(f"{what}: cannot extract: {exc}") from exc
    # A link checked when it was made can be redirected by a later member
    # (a link it passes through); check every link again in the final tree.
    for rel in links:
        real = os.path.realpath(os.path.join(dest, rel))
        if not _inside(root_real, real):
            raise UnsafeArchiveError(f"{what}: {rel!r} links out of the tree")
    # Directory modes and times last: writing files into them changes both.
    for rel, mode, mtime in sorted(dirs, reverse=True):
        path = os.path.join(dest, rel) if rel else str(dest)
        os.chmod(path, mode)
        os.utime(path, (mtime, mtime))
    return result


def _safe_parent(dest: Path, rel: str, root_real: str, what: str) -> str:
    """Check, then create, the parent dir of ``rel``; return the full path of ``rel``.

    The check comes first: ``realpath`` resolves every existing link on the
    way, so the directories made afterwards (below the resolved, existing
    prefix) are inside the tree. Creating first would follow a link out of
    the tree and leave empty directories there even though the build stops.
    """
    full = os.path.join(dest, rel)
    parent_real = os.path.realpath(os.path.dirname(full))
    if not _inside(root_real, parent_real):
        raise UnsafeArchiveError(f"{what}: {rel!r} would be written through a link out of the tree")
    os.makedirs(parent_real, mode=0o755, exist_ok=True)
    return full


def _clear(full: str, rel: str, what: str) -> None:
    """Remove an earlier member at ``full`` (a later member replaces it, as tar does)."""
    if os.path.lexists(full):
        if os.path.isdir(full) and not os.path.islink(full):
            raise UnsafeArchiveError(f"{what}: {rel!r} replaces a directory")
        os.unlink(full)


def _extract_member(
    tf: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    root_real: str,
    regular: set[str],
    links: list[str],
    dirs: list[tuple[str, int, float]],
    what: str,
) -> None:
    rel = _member_path(member.name, what)
    mtime = float(member.mtime)
    if member.isdir():
        if not rel:
            dirs.append(("", (member.mode & 0o755) | 0o700, mtime))
            return
        full = _safe_parent(dest, rel, root_real, what)
        if os.path.islink(full):
            raise UnsafeArchiveError(f"{what}: directory {rel!r} replaces a link")
        if not os.path.isdir(full):
            _clear(full, rel, what)
            os.mkdir(full, 0o700)
        dirs.append((rel, (member.mode & 0o755) | 0o700, mtime))
        return
    if not rel:
        raise UnsafeArchiveError(f"{what}: a non-directory member named {member.name!r}")
    if member.issym():
        target = member.linkname
        if target.startswith("/") or "\x00" in target:
            raise UnsafeArchiveError(f"{what}: {rel!r} links to the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"{what}: {rel!r} links out of the tree ({target!r})")
        full = _safe_parent(dest, rel, root_real, what)
        # Resolved through the links the target passes ("a/b/../.." where a/b
        # is a link to "." is the tree's parent, not the tree).
        real = os.path.realpath(os.path.join(os.path.realpath(os.path.dirname(full)), target))
        if not _inside(root_real, real):
            raise UnsafeArchiveError(f"{what}: {rel!r} links out of the tree ({target!r})")
        _clear(full, rel, what)
        os.symlink(target, full)
        links.append(rel)
        os.utime(full, (mtime, mtime), follow_symlinks=False)
        regular.discard(rel)
        return
    if member.islnk():
        source = _member_path(member.linkname, what)
        if source not in regular:
            raise UnsafeArchiveError(
                f"{what}: hard link {rel!r} to {member.linkname!r}, not a file extracted before"
            )
        full = _safe_parent(dest, rel, root_real, what)
        src_full = os.path.join(dest, source)
        if not _inside(root_real, os.path.realpath(src_full)):
            raise UnsafeArchiveError(f"{what}: hard link {rel!r} points out of the tree")
        _clear(full, rel, what)
        os.link(src_full, full, follow_symlinks=False)
        regular.add(rel)
        return
    if not member.isreg():
        kind = "device file" if (member.ischr() or member.isblk()) else "special file"
        raise UnsafeArchiveError(f"{what}: refusing {kind} {rel!r}")
    full = _safe_parent(dest, rel, root_real, what)
    _clear(full, rel, what)
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - isreg() members always have data
        raise UnsafeArchiveError(f"{what}: no data for {rel!r}")
    mode = (member.mode & 0o755) | 0o600
    fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        _copy(src, out)
        os.fchmod(out.fileno(), mode)
    os.utime(full, (mtime, mtime), follow_symlinks=False)
    regular.add(rel)


def _copy(src: IO[bytes], out: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)
