"""What the router batch commands (flash, push, status) share on the command line.

Their common options, which routers they work on (the site's or an inventory
file's), and what flash and push show: a live line per router, a final table,
the ``--json`` document.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

if TYPE_CHECKING:
    from owrt_vpn.routers.inventory import RouterTarget
    from owrt_vpn.site.model import Site


RoutersOpt = Annotated[
    list[str] | None,
    typer.Option("--router", metavar="NAME", help="Only this router (repeatable; default: all)."),
]
InventoryOpt = Annotated[
    Path | None,
    typer.Option("--inventory", metavar="FILE", help="Routers from an inventory file."),
]
AcceptOpt = Annotated[
    bool,
    typer.Option("--accept-new-host-keys", help="Trust host keys seen for the first time."),
]
ConnectTimeoutOpt = Annotated[
    float,
    typer.Option("--connect-timeout", min=1, metavar="SECONDS", help="SSH connect timeout."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", metavar="DIR", help="The dist root `build` wrote to (default: ./dist)."),
]


def targets(
    site: Site, routers: list[str] | None, inventory: Path | None, out: Path | None
) -> list[RouterTarget]:
    """The routers of ``--router``/``--inventory``, with their builds under ``--out``."""
    from owrt_vpn.routers.inventory import load_inventory, select, site_targets

    dist = (out if out is not None else Path("dist")).resolve()  # build's default too
    if inventory is not None:
        return select(load_inventory(inventory, site, dist), routers or [], str(inventory))
    return site_targets(site, dist, routers or [])


class BatchReport(Protocol):
    """What a per-router report of a batch offers (flash and push reports do)."""

    name: str
    address: str
    message: str
    hint: str | None

    @property
    def ok(self) -> bool: ...

    @property
    def status(self) -> Any: ...

    @property
    def stage(self) -> Any: ...

    def to_json(self) -> dict[str, Any]: ...


class ProgressView:
    """One live line per router on stderr (rich on a terminal, plain lines otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live: Any = None
        self.rows: dict[str, tuple[str, str]] = {}

    def __enter__(self) -> ProgressView:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._render(), console=Console(stderr=True), refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("router", "stage", "detail"):
            table.add_column(col)
        for name, (stage, detail) in self.rows.items():
            table.add_row(name, stage, detail)
        return table

    def update(self, report: BatchReport) -> None:
        """Called (under a lock) whenever a router changes stage or finishes."""
        if not self.enabled:
            return
        shown = str(report.status) if report.status is not None else str(report.stage)
        detail = report.message if report.status is not None else ""
        if self.rows.get(report.name) == (shown, detail):
            return
        self.rows[report.name] = (shown, detail)
        if self.live is not None:
            self.live.update(self._render())
        else:
            sys.stderr.write(f"{report.name}: {shown}{': ' + detail if detail else ''}\n")
            sys.stderr.flush()


def counts(reports: Sequence[BatchReport]) -> dict[str, int]:
    """How many routers ended in each status."""
    out: dict[str, int] = {}
    for r in reports:
        out[str(r.status)] = out.get(str(r.status), 0) + 1
    return out


def table(reports: Sequence[BatchReport], counted: dict[str, int]) -> str:
    """ROUTER ADDRESS STATUS DETAIL rows, the hints of failed routers, the counts."""
    rows = [("ROUTER", "ADDRESS", "STATUS", "DETAIL")]
    rows += [(r.name, r.address, str(r.status), r.message) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
    for r in reports:
        if r.hint and not r.ok:
            lines.append(f"hint: {r.name}: {r.hint}")
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counted.items())))
    return "\n".join(lines)


def document(reports: Sequence[BatchReport], code: int, *, dry_run: bool) -> dict[str, Any]:
    """The ``--json`` document of flash and push (``docs/json/{flash,push}.schema.json``)."""
    return {
        "ok": code == 0,
        "exit_code": code,
        "dry_run": dry_run,
        "counts": counts(reports),
        "routers": [r.to_json() for r in reports],
    }
