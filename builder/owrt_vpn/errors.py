"""The exception hierarchy. The library raises these; only the CLI exits.

Each error carries a one-line message, an optional hint (what to do about it)
and the process exit status the CLI maps it to:

- 0 ok, 1 failure, 2 bad input or usage, 3 integrity/verification failure of
  a single-artifact command, 4 partial failure of a batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_PARTIAL = 4


class OwrtVpnError(Exception):
    """Base of every error owrt-vpn raises on purpose."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The error as the lines the CLI prints after ``error:``."""
        return [self.message]


@dataclass(frozen=True)
class Problem:
    """One problem in an input file, located by file and dotted key path."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.file}: {self.path}: {self.message}"
        return f"{self.file}: {self.message}"


class ConfigError(OwrtVpnError):
    """Bad input: one or more problems in a site file, inventory or argument."""

    exit_code = EXIT_USAGE

    def __init__(
        self,
        problems: Sequence[Problem] | str,
        hint: str | None = None,
    ) -> None:
        if isinstance(problems, str):
            self.problems: tuple[Problem, ...] = ()
            super().__init__(problems, hint)
        else:
            self.problems = tuple(problems)
            super().__init__("; ".join(str(p) for p in self.problems), hint)

    def lines(self) -> list[str]:
        """One line per problem (or the single message)."""
        if self.problems:
            return [str(p) for p in self.problems]
        return [self.message]


class UsageError(OwrtVpnError):
    """A command line that cannot work (conflicting or missing options)."""

    exit_code = EXIT_USAGE


class PkiError(OwrtVpnError):
    """The PKI state cannot serve the request (missing passphrase, corrupt index)."""


class IntegrityError(OwrtVpnError):
    """A signature, checksum or reproducibility check failed."""

    exit_code = EXIT_INTEGRITY


class DownloadError(OwrtVpnError):
    """A download failed after retries (HTTP status, network)."""


class NotFoundError(DownloadError):
    """The mirror has no such file (HTTP 404, or missing from a directory mirror).

    Still a download failure (exit 1) for a file the signed index lists;
    the resolver turns a missing index into bad input (exit 2).
    """


class BuildError(OwrtVpnError):
    """The ImageBuilder failed or produced no usable image."""


class FlashError(OwrtVpnError):
    """A router could not be flashed or verified."""


class RouterError(OwrtVpnError):
    """A live router operation (push, status, doctor) failed."""


class CommandError(OwrtVpnError):
    """A subprocess exited with a failure status."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stderr_tail: str,
        hint: str | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        msg = f"{argv[0]} exited with status {returncode}"
        if stderr_tail:
            msg += f": {stderr_tail.strip().splitlines()[-1]}"
        super().__init__(msg, hint)


# ------------------------------------------------------------------ "did you mean"


def closest(
    word: str, choices: Iterable[str], n: int = 5, cutoff: float = 0.5, same_prefix: bool = True
) -> list[str]:
    """The names in ``choices`` closest to ``word``, best first (for hints).

    With ``same_prefix``, when nothing is close, the names sharing the
    vendor-style prefix of ``word`` (``tplink_...``, ``netgear-...``).
    """
    import difflib  # only on the error path: keep it out of every start-up

    names = list(choices)
    found = difflib.get_close_matches(word, names, n=n, cutoff=cutoff)
    if not found and same_prefix:
        prefix = re.split(r"[_,-]", word)[0]
        found = [c for c in names if c.startswith(prefix)][:n]
    return found


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``word``, else ``''``."""
    close = closest(word, choices, n=1, cutoff=0.6, same_prefix=False)
    return f" (did you mean {close[0]!r}?)" if close else ""
