"""`push`: the site's VPN state (users, revocations) onto running routers, without a flash."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from owrt_vpn.ui import batch_view
from owrt_vpn.ui.batch_view import (
    AcceptOpt,
    ConnectTimeoutOpt,
    InventoryOpt,
    OutOpt,
    RoutersOpt,
)
from owrt_vpn.ui.pki_view import open_for_routers
from owrt_vpn.ui.state import state

if TYPE_CHECKING:
    from owrt_vpn.routers.push import PushReport


def register(app: typer.Typer) -> None:
    """Add `push`."""
    app.command("push")(push)


def push(
    ctx: typer.Context,
    routers: RoutersOpt = None,
    inventory: InventoryOpt = None,
    jobs: int = typer.Option(
        4, "--jobs", "-j", metavar="N", min=1, max=64, help="Routers updated at once."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change; change nothing on the routers."
    ),
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    out: OutOpt = None,
) -> None:
    """Update running routers to the site's VPN state (users, revocations) without a flash."""
    from owrt_vpn.routers.push import PushOptions, batch_exit_code, push_batch
    from owrt_vpn.ui.batch_view import ProgressView, document, table

    st = state(ctx)
    site = st.load_site()
    targets = batch_view.targets(site, routers, inventory, out)
    pki = open_for_routers(site, targets, dry_run, st)
    options = PushOptions(
        jobs=jobs,
        dry_run=dry_run,
        accept_new_host_keys=accept_new_host_keys,
        connect_timeout=connect_timeout,
    )
    with ProgressView(enabled=not (st.json or st.quiet)) as view:
        reports = push_batch(site, pki, targets, options, view.update)
    code = batch_exit_code(reports)
    data = document(reports, code, dry_run=dry_run)
    st.emit(data, _details(reports) + table(reports, data["counts"]))
    raise typer.Exit(code)


def _details(reports: list[PushReport]) -> str:
    """Per router: the file changes (diffs of non-secret files), terminated SAs, notes."""
    lines: list[str] = []
    for r in reports:
        if not (r.changes or r.terminated or r.notes):
            continue
        lines.append(f"== {r.name}")
        for c in r.changes:
            secret = " (secret: content not shown)" if c.secret else ""
            lines.append(f"  {c.change:<8} {c.path}{secret}")
            lines += [f"           {n}" for n in c.notes]
            if c.diff:
                lines += ["    " + ln for ln in c.diff.rstrip("\n").splitlines()]
        for t in r.terminated:
            verb = "terminated" if t["done"] else "would terminate"
            vips = ", ".join(t["virtual_ips"]) or "no virtual IP"
            lines.append(f"  {verb} the SA of {t['peer']} [{t['remote_id']}] ({vips})")
        lines += [f"  note: {n}" for n in r.notes]
        lines += [f"  installer: {ln}" for ln in r.installer]
    return "\n".join(lines) + ("\n" if lines else "")
