"""Which of owrt-vpn's own modules a module imports, and the closure of that.

The rebuild keys (:mod:`owrt_vpn.build.state`, :mod:`owrt_vpn.bundles.provenance`)
digest the code that can shape an image or a bundle: the import closure of
their entry modules, so that no hand-kept list can miss a module. This runs
on every no-op build, so it scans the source with one regular expression
(a few milliseconds for the whole package) instead of parsing it; imports
inside functions and under ``TYPE_CHECKING`` count too, which can only make
the closure larger, never miss a module. ``tests/test_layout.py`` checks
the scan against Python's own parser.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from owrt_vpn.repro import digest

PACKAGE = "owrt_vpn"
ROOT = Path(__file__).resolve().parent

_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(?P<from>owrt_vpn(?:\.\w+)*)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|[^\n#]+)|import[ \t]+(?P<plain>owrt_vpn(?:\.\w+)*))",
    re.M,
)


@cache
def _modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``: dotted name -> source file."""
    found: dict[str, Path] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in rel:
            continue
        parts = [PACKAGE, *rel]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The source file of module ``name`` (``owrt_vpn.x.y``) in the package at ``root``,
    or None if it has none."""
    return _modules(root).get(name)


def module_name(path: Path) -> str:
    """The dotted name of the package's source file ``path``."""
    rel = path.resolve().relative_to(ROOT).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """owrt-vpn modules that the source file ``path`` imports, anywhere in it.

    ``from owrt_vpn.a import b`` counts ``owrt_vpn.a.b`` when that is a
    module, else ``owrt_vpn.a``.
    """
    return _scan(path.read_bytes(), root)


def _scan(source: bytes, root: Path) -> set[str]:
    modules = _modules(root)
    found: set[str] = set()
    for m in _IMPORT.finditer(source.decode("utf-8")):
        if m.group("plain"):
            found.add(m.group("plain"))
            continue
        base = m.group("from")
        names = re.sub(r"#[^\n]*", "", m.group("names")).strip("() \t\n")
        for item in names.split(","):
            name = item.split(" as ")[0].strip()
            if name:
                sub = f"{base}.{name}"
                found.add(sub if sub in modules else base)
    return found & modules.keys()


@cache
def _reach(entries: tuple[str, ...], root: Path) -> dict[str, str]:
    """Every module ``entries`` reach (themselves included) -> its source's sha256."""
    modules = _modules(root)
    digests: dict[str, str] = {}
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in digests or name not in modules:
            continue
        source = modules[name].read_bytes()
        digests[name] = hashlib.sha256(source).hexdigest()
        todo.extend(_scan(source, root) - digests.keys())
    return digests


def closure(*entries: str, root: Path = ROOT) -> tuple[Path, ...]:
    """Source files of ``entries`` and of every owrt-vpn module they reach, sorted
    (in the package at ``root``)."""
    modules = _modules(root)
    return tuple(sorted(modules[name] for name in _reach(entries, root)))


def code_digest(*entries: str, root: Path = ROOT) -> str:
    """Digest of the source of ``entries`` and every owrt-vpn module they reach.

    Computed once per process (a long-lived caller that edits the code is a
    test, and passes a scratch ``root``).
    """
    modules = _modules(root)
    reached = _reach(entries, root)
    return digest({modules[n].relative_to(root).as_posix(): h for n, h in reached.items()})


def clear_cache() -> None:
    """Forget what was scanned (for a caller that changes the code it scans)."""
    _modules.cache_clear()
    _reach.cache_clear()
