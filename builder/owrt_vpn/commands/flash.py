"""`flash`: upgrade routers over SSH with the images `build` made, verified, concurrently."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn.ui.batch_view import AcceptOpt, ConnectTimeoutOpt, targets
from owrt_vpn.ui.state import state


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
    jobs: int = typer.Option(
        4, "--jobs", "-j", metavar="N", min=1, max=64, help="Routers flashed at once."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Connect and check, then say what would happen."
    ),
    reset_settings: bool = typer.Option(
        False,
        "--reset-settings",
        help="sysupgrade -n: erase settings (needs management access baked into the build).",
    ),
    accept_new_host_keys: AcceptOpt = False,
    timeout: float = typer.Option(
        300.0,
        "--timeout",
        min=1,
        metavar="SECONDS",
        help="Wait this long for a router to come back.",
    ),
    connect_timeout: ConnectTimeoutOpt = 10.0,
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
    from owrt_vpn.routers.flash import FlashOptions, batch_exit_code, flash_batch
    from owrt_vpn.ui.batch_view import ProgressView, document, table

    st = state(ctx)
    site = st.load_site()
    chosen = targets(site, routers, inventory, out)
    options = FlashOptions(
        jobs=jobs,
        dry_run=dry_run,
        reset_settings=reset_settings,
        accept_new_host_keys=accept_new_host_keys,
        connect_timeout=connect_timeout,
        reboot_timeout=timeout,
        poll_interval=min(2.0, max(0.2, timeout / 20)),
    )
    with ProgressView(enabled=not (st.json or st.quiet)) as view:
        reports = flash_batch(chosen, options, view.update)
    code = batch_exit_code(reports)
    for r in reports:
        if r.new_host_key:
            st.warn(f"{r.name}: new host key after the reset; update known_hosts: {r.new_host_key}")
    data = document(reports, code, dry_run=dry_run)
    st.emit(data, table(reports, data["counts"]))
    raise typer.Exit(code)
