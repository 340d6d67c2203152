"""`flash`: upgrade routers over SSH with the images `build` made, verified, concurrently."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.cli import state

if TYPE_CHECKING:
    from owrt_vpn.flash import RouterReport


def register(app: typer.Typer) -> None:
    """Add `flash`."""
    app.command("flash")(flash)


def flash(
    ctx: typer.Context,
    routers: Annotated[
        list[str] | None,
        typer.Option(
            "--router", metavar="NAME", help="Flash only this router (repeatable; default: all)."
        ),
    ] = None,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory", metavar="FILE", help="Routers to flash from an inventory file."
        ),
    ] = None,
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=64, help="Routers flashed at once."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Connect and check, then say what would happen."
    ),
    reset_settings: bool = typer.Option(
        False,
        "--reset-settings",
        help="sysupgrade -n: erase settings (needs management access baked into the build).",
    ),
    accept_new_host_keys: bool = typer.Option(
        False, "--accept-new-host-keys", help="Trust host keys seen for the first time."
    ),
    timeout: float = typer.Option(
        300.0,
        "--timeout",
        min=1,
        metavar="SECONDS",
        help="Wait this long for a router to come back.",
    ),
    connect_timeout: float = typer.Option(
        10.0, "--connect-timeout", min=1, metavar="SECONDS", help="SSH connect timeout."
    ),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="The dist root `build` wrote to (default: ./dist, as for build).",
        ),
    ] = None,
) -> None:
    """Flash routers over SSH with their built images; safe to re-run."""
    from owrt_vpn.flash import FlashOptions, batch_exit_code, flash_batch
    from owrt_vpn.inventory import load_inventory, select, site_targets

    st = state(ctx)
    site = st.load_site()
    dist = (out if out is not None else Path("dist")).resolve()  # build's default too
    if inventory is not None:
        targets = select(load_inventory(inventory, site, dist), routers or [], str(inventory))
    else:
        targets = site_targets(site, dist, routers or [])
    options = FlashOptions(
        jobs=jobs,
        dry_run=dry_run,
        reset_settings=reset_settings,
        accept_new_host_keys=accept_new_host_keys,
        connect_timeout=connect_timeout,
        reboot_timeout=timeout,
        poll_interval=min(2.0, max(0.2, timeout / 20)),
    )
    view = _ProgressView(enabled=not (st.json or st.quiet))
    with view:
        reports = flash_batch(targets, options, view.update)
    code = batch_exit_code(reports)
    for r in reports:
        if r.new_host_key:
            st.warn(f"{r.name}: new host key after the reset; update known_hosts: {r.new_host_key}")
    counts: dict[str, int] = {}
    for r in reports:
        counts[str(r.status)] = counts.get(str(r.status), 0) + 1
    data = {
        "ok": code == 0,
        "exit_code": code,
        "dry_run": dry_run,
        "counts": counts,
        "routers": [r.to_json() for r in reports],
    }
    st.emit(data, _table(reports, counts))
    raise typer.Exit(code)


def _table(reports: list[RouterReport], counts: dict[str, int]) -> str:
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
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)


class _ProgressView:
    """One live line per router on stderr (rich on a terminal, plain lines otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.live: Any = None
        self.rows: dict[str, tuple[str, str]] = {}

    def __enter__(self) -> _ProgressView:
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

    def update(self, report: RouterReport) -> None:
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
