"""Byte-for-byte comparison of two dist trees, and where two files differ.

Used by ``owrt-vpn verify``: every regular file under one tree is compared
with the file of the same relative path under the other. For a file that
differs, the "where" comes from ``diffoscope`` when it is installed (run
with a time limit), else from a small built-in look inside the formats we
write ourselves (tar members, zip members, text lines).
"""

from __future__ import annotations

import difflib
import hashlib
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from owrt_vpn.fsutil import sha256_file

# Text diffs and diffoscope reports are cut to this many lines per file: the
# point is to say where, not to reprint a firmware image.
MAX_DETAIL_LINES = 40
DIFFOSCOPE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Difference:
    """One file that is not the same in the dist root and in the rebuild."""

    path: str  # relative to the dist root, e.g. "home/routers/gw/overlay.tar"
    kind: str  # "content", "missing" (not rebuilt) or "extra" (only in the rebuild)
    detail: str = ""  # where the bytes differ (may be empty)

    def to_json(self) -> dict[str, str]:
        """The ``--json`` form."""
        return {"path": self.path, "kind": self.kind, "detail": self.detail}


def tree_files(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the regular files under ``root``, sorted.

    Hidden names (``.x.old`` left by an interrupted atomic rename, editor
    files) are not artifacts and are skipped.
    """
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink():
            yield rel.as_posix()


def same_bytes(a: Path, b: Path) -> bool:
    """True when both files hold the same bytes (size first, then sha256)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256_file(a) == sha256_file(b)


def compare_trees(
    built: Path,
    rebuilt: Path,
    label: str,
    *,
    diffoscope: bool = True,
    timeout: float = DIFFOSCOPE_TIMEOUT,
) -> tuple[int, list[Difference]]:
    """(files compared, differences) between ``built`` and ``rebuilt``.

    ``label`` prefixes the reported paths (the tree's place in the dist root).
    """
    ours = set(tree_files(built))
    theirs = set(tree_files(rebuilt))
    diffs: list[Difference] = []
    for rel in sorted(ours | theirs):
        shown = f"{label}/{rel}"
        if rel not in theirs:
            diffs.append(Difference(shown, "missing", "in the dist root, not made by the rebuild"))
        elif rel not in ours:
            diffs.append(Difference(shown, "extra", "made by the rebuild, not in the dist root"))
        elif not same_bytes(built / rel, rebuilt / rel):
            detail = where(built / rel, rebuilt / rel, diffoscope=diffoscope, timeout=timeout)
            diffs.append(Difference(shown, "content", detail))
    return len(ours | theirs), diffs


def where(a: Path, b: Path, *, diffoscope: bool = True, timeout: float = DIFFOSCOPE_TIMEOUT) -> str:
    """A short description of where ``a`` (built) and ``b`` (rebuilt) differ."""
    if diffoscope and shutil.which("diffoscope"):
        report = run_diffoscope(a, b, timeout)
        if report:
            return report
    return builtin_where(a, b)


def run_diffoscope(a: Path, b: Path, timeout: float) -> str:
    """diffoscope's text report (cut to :data:`MAX_DETAIL_LINES`), or a note why there is none."""
    from owrt_vpn.errors import OwrtVpnError
    from owrt_vpn.run import run

    argv = ["diffoscope", "--no-progress", "--text", "-", str(a), str(b)]
    try:
        # Exit 1 means "differences found"; only its report matters here.
        proc = run(argv, check=False, timeout=timeout)
    except OwrtVpnError:
        return f"diffoscope gave no report within {timeout:g} s"
    text = proc.stdout.decode(errors="replace")
    if proc.returncode not in (0, 1) or not text.strip():
        return ""
    return "diffoscope:\n" + _cut(text.splitlines())


def builtin_where(a: Path, b: Path) -> str:
    """Where two files differ, for the formats we write (tar, zip, text); else the first byte."""
    if tarfile.is_tarfile(a) and tarfile.is_tarfile(b):
        return _members_where(_tar_members(a), _tar_members(b), "tar member")
    if zipfile.is_zipfile(a) and zipfile.is_zipfile(b):
        return _members_where(_zip_members(a), _zip_members(b), "zip member")
    small = a.stat().st_size < (1 << 20) and b.stat().st_size < (1 << 20)
    if small:
        try:
            ta, tb = a.read_text(encoding="utf-8"), b.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not (_is_text(ta) and _is_text(tb)):
                return _first_byte(a, b)
            ta, tb = _pretty_json(ta), _pretty_json(tb)
            lines = difflib.unified_diff(
                ta.splitlines(), tb.splitlines(), "built", "rebuilt", lineterm="", n=1
            )
            return _cut(list(lines))
    return _first_byte(a, b)


def _is_text(text: str) -> bool:
    # Control characters other than line ends and tabs: binary that happens to be UTF-8.
    return not any(ord(c) < 32 and c not in "\n\r\t" for c in text)


def _pretty_json(text: str) -> str:
    """Our JSON files are one canonical line: indent them so a diff shows the key."""
    import json

    try:
        return json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text


def _cut(lines: list[str]) -> str:
    if len(lines) > MAX_DETAIL_LINES:
        more = len(lines) - MAX_DETAIL_LINES
        lines = [*lines[:MAX_DETAIL_LINES], f"... ({more} more lines)"]
    return "\n".join(lines)


def _first_byte(a: Path, b: Path) -> str:
    offset = 0
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            ca, cb = fa.read(1 << 16), fb.read(1 << 16)
            if ca != cb:
                n = next(
                    (i for i, (x, y) in enumerate(zip(ca, cb, strict=False)) if x != y),
                    min(len(ca), len(cb)),
                )
                return (
                    f"first difference at byte {offset + n} "
                    f"(sizes {a.stat().st_size} and {b.stat().st_size})"
                )
            if not ca:
                return ""
            offset += len(ca)


def _tar_members(path: Path) -> dict[str, str]:
    out = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            digest = ""
            if m.isfile():
                fh = tar.extractfile(m)
                digest = hashlib.sha256(fh.read() if fh else b"").hexdigest()[:16]
            out[m.name] = (
                f"type={m.type.decode(errors='replace')} mode={m.mode:o} "
                f"uid={m.uid} gid={m.gid} mtime={m.mtime} size={m.size} "
                f"link={m.linkname!r} sha256={digest}"
            )
    return out


def _zip_members(path: Path) -> dict[str, str]:
    out = {}
    with zipfile.ZipFile(path) as zf:
        for i in zf.infolist():
            out[i.filename] = (
                f"date={i.date_time} attr={i.external_attr:o} method={i.compress_type} "
                f"size={i.file_size} crc={i.CRC:08x} extra={i.extra.hex()}"
            )
    return out


def _members_where(a: dict[str, str], b: dict[str, str], what: str) -> str:
    lines = []
    for name in sorted(set(a) | set(b)):
        if name not in b:
            lines.append(f"{what} {name}: only in the built file")
        elif name not in a:
            lines.append(f"{what} {name}: only in the rebuilt file")
        elif a[name] != b[name]:
            lines.append(f"{what} {name}: built {a[name]}")
            lines.append(f"{' ' * len(what)} {' ' * len(name)}  rebuilt {b[name]}")
    if not lines:
        if list(a) != list(b):
            return f"same {what}s in another order"
        return f"same {what}s (names, metadata, contents): the archive framing differs"
    return _cut(lines)
