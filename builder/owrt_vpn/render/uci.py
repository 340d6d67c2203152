"""UCI text: writing it with libuci's own quoting, and reading it back.

Two forms appear on a router and both are produced here:

- config files (``/etc/config/<package>``)::

      config rule 'owrt_vpn_ike'
        option name 'owrt-vpn IKE'
        list proto 'udp'

- ``uci batch`` input, one command per line::

      set firewall.owrt_vpn_ike=rule
      set firewall.owrt_vpn_ike.name='owrt-vpn IKE'

Values are always single-quoted; a single quote inside a value is written
``'\\''`` (close the quote, an escaped quote, reopen), exactly as libuci's
exporter does. Inside single quotes libuci takes every other character
literally, so this one rule is the whole escaping story. Newlines cannot be
represented in ``uci batch`` (one command per line) and are rejected.

Names (packages, section names, section types, option names) are restricted
to what libuci accepts unquoted: ``[A-Za-z0-9_]``. The parser accepts the
quoting forms libuci's tokenizer knows (single quotes, double quotes with
backslash escapes, bare words with backslash escapes), so files written by a
real router read back too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


class UciError(ValueError):
    """UCI text that cannot be written or parsed."""


# --------------------------------------------------------------------------
# quoting


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if libuci accepts it unquoted (``[A-Za-z0-9_]+``), else raise."""
    if not NAME_RE.fullmatch(name):
        raise UciError(f"invalid UCI {what} {name!r} (letters, digits and '_' only)")
    return name


def quote(value: str) -> str:
    """``value`` in single quotes with libuci's ``'\\''`` escaping (``it's`` -> ``'it'\\''s'``)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise UciError(f"UCI values cannot contain newlines or NUL: {value[:40]!r}")
    return "'" + value.replace("'", "'\\''") + "'"


def _tokens(line: str) -> list[str]:
    """Split one line like libuci's tokenizer: quotes, backslash escapes, ``#`` comments."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            i += 1
            continue
        if c == "#":
            break
        buf: list[str] = []
        while i < n and line[i] not in " \t":
            c = line[i]
            if c == "'":
                end = line.find("'", i + 1)
                if end < 0:
                    raise UciError(f"unterminated single quote in: {line!r}")
                buf.append(line[i + 1 : end])
                i = end + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise UciError(f"unterminated double quote in: {line!r}")
                    if line[i] == '"':
                        i += 1
                        break
                    if line[i] == "\\" and i + 1 < n:
                        i += 1
                    buf.append(line[i])
                    i += 1
            elif c == "\\" and i + 1 < n:
                buf.append(line[i + 1])
                i += 2
            elif c == "#" and not buf:
                return out
            else:
                buf.append(c)
                i += 1
        out.append("".join(buf))
    return out


# --------------------------------------------------------------------------
# config files


@dataclass
class Section:
    """One ``config <type> '<name>'`` block; ``options`` keep their order.

    A value is a ``str`` (``option``) or a ``list[str]`` (``list``).
    """

    type: str
    name: str | None = None
    options: dict[str, str | list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | list[str] | None:
        """The option's value, or None."""
        return self.options.get(key)


def render_config(sections: Iterable[Section]) -> str:
    """The text of a config file holding ``sections``, as libuci's exporter writes it."""
    out: list[str] = []
    for s in sections:
        head = f"config {check_name(s.type, 'section type')}"
        if s.name is not None:
            head += f" {quote(check_name(s.name, 'section name'))}"
        out.append(head)
        for key, value in s.options.items():
            check_name(key, "option name")
            if isinstance(value, list):
                out += [f"\tlist {key} {quote(v)}" for v in value]
            else:
                out.append(f"\toption {key} {quote(value)}")
        out.append("")
    return "\n".join(out)


def parse_config(text: str) -> list[Section]:
    """Parse a config file into sections (UciError on malformed input)."""
    sections: list[Section] = []
    current: Section | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            toks = _tokens(line)
        except UciError as exc:
            raise UciError(f"line {lineno}: {exc}") from None
        if not toks:
            continue
        kw = toks[0]
        if kw == "package":
            continue
        if kw == "config":
            if len(toks) not in (2, 3):
                raise UciError(f"line {lineno}: expected: config <type> ['<name>']")
            current = Section(toks[1], toks[2] if len(toks) == 3 else None)
            sections.append(current)
        elif kw in ("option", "list"):
            if current is None or len(toks) != 3:
                raise UciError(f"line {lineno}: expected: {kw} <name> '<value>' inside a section")
            key, value = toks[1], toks[2]
            if kw == "option":
                current.options[key] = value
            else:
                prev = current.options.get(key)
                current.options[key] = ([*prev] if isinstance(prev, list) else []) + [value]
        else:
            raise UciError(f"line {lineno}: unknown keyword {kw!r}")
    return sections


# --------------------------------------------------------------------------
# uci batch


@dataclass(frozen=True)
class Command:
    """One ``uci batch`` command.

    ``op`` is ``set``, ``add_list``, ``del_list``, ``delete`` or ``commit``;
    ``path`` is ``package[.section[.option]]`` (``@type[index]`` selectors
    allowed for anonymous sections); ``value`` is None for ``delete``/``commit``.
    """

    op: str
    path: str
    value: str | None = None

    def text(self) -> str:
        """The command as one batch line, value quoted."""
        _check_path(self.path)
        if self.value is None:
            return f"{self.op} {self.path}"
        sep = "=" if self.op in ("set", "add_list", "del_list") else " "
        return f"{self.op} {self.path}{sep}{quote(self.value)}"


_PATH_PART = re.compile(r"^([A-Za-z0-9_]+|@[A-Za-z0-9_]+\[-?\d+\])$")


def _check_path(path: str) -> None:
    parts = path.split(".")
    if not 1 <= len(parts) <= 3 or not NAME_RE.fullmatch(parts[0]):
        raise UciError(f"invalid UCI path {path!r}")
    for p in parts[1:]:
        if not _PATH_PART.fullmatch(p):
            raise UciError(f"invalid UCI path {path!r}")


def set_section(
    package: str, name: str, type_: str, options: dict[str, str | Sequence[str]]
) -> list[Command]:
    """Commands that (re)create the named section with exactly ``options``.

    Deleting first makes a re-run idempotent and drops options that a
    previous version set but this one does not.
    """
    base = f"{check_name(package, 'package')}.{check_name(name, 'section name')}"
    cmds = [Command("delete", base), Command("set", base, check_name(type_, "section type"))]
    for key, value in options.items():
        check_name(key, "option name")
        if isinstance(value, str):
            cmds.append(Command("set", f"{base}.{key}", value))
        else:
            cmds += [Command("add_list", f"{base}.{key}", v) for v in value]
    return cmds


def render_batch(commands: Iterable[Command]) -> str:
    """``uci batch`` input for ``commands`` (one per line, trailing newline)."""
    return "".join(c.text() + "\n" for c in commands)


def parse_batch(text: str) -> list[Command]:
    """Parse ``uci batch`` input back into commands."""
    return list(_iter_batch(text))


def _iter_batch(text: str) -> Iterator[Command]:
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            toks = _tokens(line)
        except UciError as exc:
            raise UciError(f"batch line {lineno}: {exc}") from None
        if not toks:
            continue
        op, args = toks[0], toks[1:]
        if op in ("delete", "commit", "revert") and len(args) == 1:
            yield Command(op, args[0])
        elif op in ("set", "add_list", "del_list") and len(args) == 1 and "=" in args[0]:
            # The tokenizer already removed the quotes: `a.b.c='x y'` -> `a.b.c=x y`.
            path, _, value = args[0].partition("=")
            yield Command(op, path, value)
        else:
            raise UciError(f"batch line {lineno}: cannot parse {line!r}")
