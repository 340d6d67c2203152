"""How `--help` lists commands: in the order they were registered, described in full.

Click cuts a command's description at ~45 columns with "..." and typer lists
command groups after the plain commands; both hide the workflow. Every
typer app of the CLI uses :class:`WorkflowGroup` (``typer.Typer(cls=...)``).
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperArgument, TyperGroup


class WorkflowGroup(TyperGroup):
    """A command group listing its commands in :attr:`order`, each with its whole first line."""

    #: Command names in the order `--help` lists them; unknown names follow, as registered.
    order: tuple[str, ...] = ()

    def list_commands(self, ctx: Any) -> list[str]:
        """Registered commands, those named in :attr:`order` first and in that order."""
        names = list(self.commands)
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command, its arguments shown as plain placeholders (see :class:`PlainArgument`)."""
        cmd = super().get_command(ctx, cmd_name)
        for param in getattr(cmd, "params", ()):
            if type(param) is TyperArgument:
                param.__class__ = PlainArgument
        return cmd

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """One row per command with its complete one-line description (never cut with "...")."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, _first_paragraph(cmd)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _first_paragraph(cmd: Any) -> str:
    """The command's description as one line: its short help, else its docstring's first
    paragraph whole (click's own short help ends at the first ". ", e.g. inside "e.g.")."""
    if cmd.short_help:
        return str(cmd.short_help)
    text = inspect.cleandoc(cmd.help or "")
    return " ".join(text.split("\n\n")[0].split())


def workflow_group(order: tuple[str, ...]) -> type[WorkflowGroup]:
    """A :class:`WorkflowGroup` subclass listing its commands in ``order``."""
    return type("OrderedWorkflowGroup", (WorkflowGroup,), {"order": tuple(order)})


class PlainArgument(TyperArgument):
    """An argument shown as ``NAME`` / ``[USER]...``, as click does it.

    Typer shows a required argument as ``{name}`` and appends a type such as
    ``<str>`` or ``<list[str]>``: neither is a placeholder a reader can type.
    """

    @property
    def display_name_raw(self) -> str:
        """The metavar, else the upper-case parameter name (``NAME``, not ``name``)."""
        return self.metavar or (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str:
        """No type column: the metavar and the help say what to give."""
        return ""
