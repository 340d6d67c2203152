"""Safe extraction: malicious archives are refused on every Python 3.11.x, good ones kept intact."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from owrt_vpn.errors import EXIT_INTEGRITY, IntegrityError
from owrt_vpn.imagebuilder.cache import Cache, sha256_file
from owrt_vpn.imagebuilder.extract import UnsafeArchiveError, safe_extract

Member = tuple[str, str, object]  # (kind, name, data-or-link-target)


def make_tar(path: Path, members: list[tuple[str, str, object]], mode: int = 0o644) -> Path:
    """Write a tar with members: ("file", name, bytes), ("dir", name, None),
    ("sym", name, target), ("hard", name, target), ("chr"/"fifo", name, None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = mode
            if kind == "file":
                assert isinstance(data, bytes)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti)
    raw = buf.getvalue()
    if path.name.endswith(".zst"):
        raw = zstandard.ZstdCompressor().compress(raw)
        path.write_bytes(raw)
    elif path.name.endswith(".xz"):
        import lzma

        path.write_bytes(lzma.compress(raw))
    else:
        path.write_bytes(raw)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "root" / "dest"
    d.mkdir(parents=True)
    return d


def outside_files(tmp_path: Path, dest: Path) -> list[str]:
    """Every path under tmp_path that is not inside dest or an input archive."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if p == dest or dest in p.parents or p.suffix in (".zst", ".xz", ".tar"):
                continue
            if p == dest.parent:
                continue
            out.append(str(p.relative_to(tmp_path)))
    return out


GOOD = [
    ("dir", "ib", None),
    ("dir", "ib/bin", None),
    ("file", "ib/Makefile", b"all:\n"),
    ("file", "ib/bin/tool", b"#!/bin/sh\n"),
    ("sym", "ib/bin/tool2", "tool"),
    ("sym", "ib/lib", "bin"),
    ("sym", "ib/bin/up", "../Makefile"),
    ("hard", "ib/bin/tool-hard", "ib/bin/tool"),
    ("file", "./ib/./bin/../bin/dotted", b"x"),
]


@pytest.mark.parametrize("suffix", [".tar.zst", ".tar.xz", ".tar"])
def test_good_archive_extracts_with_links_and_times(
    tmp_path: Path, dest: Path, suffix: str
) -> None:
    archive = make_tar(tmp_path / f"ib{suffix}", GOOD, mode=0o6777)
    result = safe_extract(archive, dest)
    assert result.members == len(GOOD) and result.skipped_links == {}
    ib = dest / "ib"
    assert (ib / "Makefile").read_bytes() == b"all:\n"
    assert os.readlink(ib / "bin/tool2") == "tool"
    assert (ib / "lib/tool").read_bytes() == b"#!/bin/sh\n"
    assert (ib / "bin/up").read_bytes() == b"all:\n"
    assert os.stat(ib / "bin/tool-hard").st_ino == os.stat(ib / "bin/tool").st_ino
    assert (ib / "bin/dotted").read_bytes() == b"x"
    mode = stat.S_IMODE(os.stat(ib / "bin/tool").st_mode)
    # setuid/setgid/sticky and group/other write are dropped.
    assert mode == 0o755
    assert os.stat(ib / "Makefile").st_mtime == 1700000000
    assert os.stat(ib / "bin").st_mtime == 1700000000
    assert os.lstat(ib / "bin/tool2").st_mtime == 1700000000


BAD: dict[str, list[tuple[str, str, object]]] = {
    "absolute path": [("file", "/tmp/owrt-vpn-evil", b"x")],
    "dotdot": [("file", "../evil", b"x")],
    "nested dotdot": [("dir", "a", None), ("file", "a/../../evil", b"x")],
    "symlink out": [("sym", "up", "../..")],
    "symlink out from subdir": [("dir", "a", None), ("sym", "a/up", "../../evil")],
    "write through symlink": [("sym", "l", "sub/../.."), ("file", "l/evil", b"x")],
    "link via root alias": [("sym", "d", "."), ("sym", "d/l", "../evil")],
    "hard link absolute": [("hard", "h", "/etc/passwd")],
    "hard link dotdot": [("hard", "h", "../evil")],
    "hard link to unknown": [("hard", "h", "never-extracted")],
    "char device": [("chr", "null", None)],
    "fifo": [("fifo", "pipe", None)],
    "file replaces dir": [("dir", "a", None), ("file", "a", b"x")],
    # a/b -> "." makes "a/b/../.." the tree's parent, though the text says ".";
    # writing below e/ once made empty directories there before the check.
    "relative link chain": [
        ("dir", "a", None),
        ("sym", "a/b", "."),
        ("sym", "e", "a/b/../.."),
        ("file", "e/made-outside/f", b"x"),
    ],
    "dir through link chain": [
        ("dir", "a", None),
        ("sym", "a/b", "."),
        ("sym", "a/c", "b/../.."),
        ("dir", "a/c/made-outside", None),
    ],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malicious_archive_is_refused(tmp_path: Path, dest: Path, case: str) -> None:
    archive = make_tar(tmp_path / "evil.tar.zst", BAD[case])
    with pytest.raises(UnsafeArchiveError) as exc:
        safe_extract(archive, dest)
    assert exc.value.exit_code == EXIT_INTEGRITY
    assert outside_files(tmp_path, dest) == []
    assert not Path("/tmp/owrt-vpn-evil").exists()


class _Zeros(io.RawIOBase):
    """``n`` zero bytes, read as a stream (the bomb is never in memory)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


def test_decompression_bomb_is_refused_before_its_data_is_written(
    tmp_path: Path, dest: Path
) -> None:
    # About 32 KB of .tar.zst holding a 1 GiB member: refused from the header.
    archive = tmp_path / "bomb.tar.zst"
    with archive.open("wb") as f:
        writer = zstandard.ZstdCompressor(level=1).stream_writer(f)
        with tarfile.open(fileobj=writer, mode="w|") as tf:
            ti = tarfile.TarInfo("ib/zeros")
            ti.size = 1 << 30
            tf.addfile(ti, _Zeros(1 << 30))
        writer.flush(zstandard.FLUSH_FRAME)
    assert archive.stat().st_size < 100_000
    with pytest.raises(UnsafeArchiveError, match=r"extracts to more than 256 MiB .*zeros"):
        safe_extract(archive, dest)
    assert not (dest / "ib" / "zeros").exists()


def test_member_count_and_total_size_caps(tmp_path: Path, dest: Path) -> None:
    many = [("file", f"f{i}", b"x" * 100) for i in range(50)]
    archive = make_tar(tmp_path / "many.tar.zst", many)
    with pytest.raises(UnsafeArchiveError, match="more than 20 members"):
        safe_extract(archive, dest, max_members=20)
    assert len(list(dest.iterdir())) <= 20
    with pytest.raises(UnsafeArchiveError, match="extracts to more than"):
        safe_extract(archive, tmp_path / "root", max_bytes=1000)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert safe_extract(archive, fresh, max_members=50, max_bytes=5000).members == 50


def test_links_to_absolute_paths_are_skipped_not_created(tmp_path: Path, dest: Path) -> None:
    # Real ImageBuilders hold host-tool links (staging_dir/host/bin/python3 ->
    # /usr/bin/python3); none may exist in our tree, and nothing is written
    # through them.
    archive = make_tar(
        tmp_path / "ib.tar.zst",
        [
            ("dir", "ib", None),
            ("sym", "ib/python3", "/usr/bin/python3"),
            ("sym", "ib/etc", "/etc"),
            ("file", "ib/etc/evil", b"x"),
            ("file", "ib/tool", b"t"),
            ("sym", "ib/tool", "/bin/sh"),
        ],
    )
    result = safe_extract(archive, dest)
    assert result.skipped_links == {
        "ib/python3": "/usr/bin/python3",
        "ib/etc": "/etc",
        "ib/tool": "/bin/sh",
    }
    assert not os.path.lexists(dest / "ib/python3")
    assert not os.path.lexists(dest / "ib/tool")  # the later member wins, as in tar
    assert (dest / "ib/etc").is_dir() and not (dest / "ib/etc").is_symlink()
    assert (dest / "ib/etc/evil").read_bytes() == b"x"
    assert not Path("/etc/evil").exists()
    links = [p for p in dest.rglob("*") if p.is_symlink()]
    assert links == []


def test_later_member_replaces_a_symlink_instead_of_writing_through_it(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_tar(
        tmp_path / "a.tar.zst",
        [
            ("dir", "sub", None),
            ("file", "sub/f", b"original"),
            ("sym", "l", "sub/f"),
            ("file", "l", b"replacement"),
        ],
    )
    safe_extract(archive, dest)
    assert (dest / "sub/f").read_bytes() == b"original"
    assert not (dest / "l").is_symlink()
    assert (dest / "l").read_bytes() == b"replacement"


def test_corrupt_stream_is_an_integrity_error(tmp_path: Path, dest: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.zst", GOOD)
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(IntegrityError, match="cannot extract"):
        safe_extract(archive, dest)


def test_cache_tree_is_made_once_and_never_half(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    good = make_tar(tmp_path / "ib.tar.zst", GOOD)
    sha = sha256_file(good)
    top = cache.tree(good, sha)
    assert top.name == "ib" and (top / "Makefile").is_file()
    assert cache.has_tree(sha)
    marker = json.loads((cache.root / "trees" / sha / ".owrt-vpn-tree.json").read_text())
    assert marker == {"sha256": sha, "top": "ib", "members": len(GOOD), "skipped_links": {}}
    (top / "marker-of-first-extraction").write_text("x")
    assert cache.tree(good, sha) == top
    assert (top / "marker-of-first-extraction").exists()

    evil = make_tar(tmp_path / "evil.tar.zst", [("dir", "ib", None), ("sym", "ib/x", "../..")])
    evil_sha = sha256_file(evil)
    with pytest.raises(UnsafeArchiveError):
        cache.tree(evil, evil_sha)
    assert not cache.has_tree(evil_sha)
    assert sorted(p.name for p in (cache.root / "trees").iterdir()) == [sha]
