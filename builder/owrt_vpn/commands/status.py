"""`status`: each router's firmware, VPN connections, users and certificate expiry."""

from __future__ import annotations

import typer

from owrt_vpn.ui import batch_view
from owrt_vpn.ui.batch_view import (
    AcceptOpt,
    ConnectTimeoutOpt,
    InventoryOpt,
    OutOpt,
    RoutersOpt,
)
from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `status`."""
    app.command("status")(status)


def status(
    ctx: typer.Context,
    routers: RoutersOpt = None,
    inventory: InventoryOpt = None,
    jobs: int = typer.Option(
        8, "--jobs", "-j", metavar="N", min=1, max=64, help="Routers queried at once."
    ),
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    out: OutOpt = None,
) -> None:
    """Show each router's firmware, VPN connections, connected users and certificate expiry."""
    from owrt_vpn.routers import status as status_mod

    st = state(ctx)
    site = st.load_site()
    targets = batch_view.targets(site, routers, inventory, out)
    options = status_mod.StatusOptions(
        jobs=jobs, accept_new_host_keys=accept_new_host_keys, connect_timeout=connect_timeout
    )
    reports = status_mod.status_batch(site, targets, options)
    code = status_mod.batch_exit_code(reports)
    data = {"ok": code == 0, "exit_code": code, "routers": [r.to_json() for r in reports]}
    st.emit(data, status_mod.human(reports))
    raise typer.Exit(code)
