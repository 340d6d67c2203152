"""The options common to every command, as the commands see them.

:func:`state` hands a command the :class:`State` that ``cli.py`` built from
the common options; the commands import this module, never ``cli.py`` (which
imports them).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer


@dataclass
class State:
    """Options common to every command."""

    site: Path
    site_display: str
    json: bool = False
    verbose: bool = False
    quiet: bool = False
    debug: bool = False

    def load_site(self) -> Any:
        """Load and validate the site file named by ``--site``."""
        from owrt_vpn.site.load import load_site

        return load_site(self.site, self.site_display)

    def emit(self, data: Any, human: str | None = None) -> None:
        """Print the command's result: JSON with ``--json``, else ``human``."""
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        elif human is not None and not self.quiet:
            sys.stdout.write(human if human.endswith("\n") else human + "\n")

    def info(self, message: str) -> None:
        """A progress/status line on stderr (hidden by --quiet and --json)."""
        if not self.quiet and not self.json:
            sys.stderr.write(message + "\n")

    def warn(self, message: str) -> None:
        """A warning on stderr (always shown: warnings matter in CI logs)."""
        sys.stderr.write(f"warning: {message}\n")


def state(ctx: typer.Context) -> State:
    """The common options of the running command."""
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj
