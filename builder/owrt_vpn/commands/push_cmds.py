"""`push` (the site's VPN state onto running routers), `status`, and `doctor --router NAME`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from owrt_vpn.cli import State, state
from owrt_vpn.commands import batch_view
from owrt_vpn.commands.batch_view import (
    AcceptOpt,
    ConnectTimeoutOpt,
    InventoryOpt,
    OutOpt,
    RoutersOpt,
)

if TYPE_CHECKING:
    from owrt_vpn.inventory import FlashTarget
    from owrt_vpn.push import PushReport
    from owrt_vpn.site import Site


def register(app: typer.Typer) -> None:
    """Add `push` and `status` (`doctor --router` lives with `doctor` in build_cmds)."""
    app.command("push")(push)
    app.command("status")(status)


def _open_pki(site: Site, targets: list[FlashTarget], dry_run: bool, st: State) -> Any:
    from owrt_vpn.errors import PkiError
    from owrt_vpn.pki import INIT_HINT, Pki

    pki = Pki.open(site)
    if not pki.exists:
        raise PkiError(f"{pki.root}: no PKI: the routers' files cannot be rendered", hint=INIT_HINT)
    if not dry_run:
        # Serialised before the routers are contacted, as `build` does.
        for name in dict.fromkeys(t.router.name for t in targets):
            report = pki.ensure_router(site, site.router(name))
            if report.issued:
                st.info(f"{name}: issued " + ", ".join(report.issued))
            for user in report.passwords:  # the password itself is never printed here
                st.warn(f"generated an EAP password for {user} (in {pki.root / 'eap'})")
    return pki


def push(
    ctx: typer.Context,
    routers: RoutersOpt = None,
    inventory: InventoryOpt = None,
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=64, help="Routers updated at once."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change; change nothing on the routers."
    ),
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    out: OutOpt = None,
) -> None:
    """Update running routers to the site's VPN state (users, revocations) without a flash."""
    from owrt_vpn.commands.batch_view import ProgressView, document, table
    from owrt_vpn.push import PushOptions, batch_exit_code, push_batch

    st = state(ctx)
    site = st.load_site()
    targets = batch_view.targets(site, routers, inventory, out)
    pki = _open_pki(site, targets, dry_run, st)
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


def status(
    ctx: typer.Context,
    routers: RoutersOpt = None,
    inventory: InventoryOpt = None,
    jobs: int = typer.Option(8, "--jobs", "-j", min=1, max=64, help="Routers queried at once."),
    accept_new_host_keys: AcceptOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    out: OutOpt = None,
) -> None:
    """Show each router's firmware, VPN connections, connected users and certificate expiry."""
    from owrt_vpn import status as status_mod

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


def doctor_router(
    ctx: typer.Context,
    name: str,
    *,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
) -> None:
    """`doctor --router NAME`: check a live router against the usual failures; exit 1 on any."""
    from owrt_vpn import router_doctor

    st = state(ctx)
    site = st.load_site()
    targets = batch_view.targets(site, [name], None, None)
    pki = _open_pki(site, targets, True, st)
    report = router_doctor.diagnose(
        site,
        pki,
        targets[0],
        router_doctor.DoctorOptions(
            accept_new_host_keys=accept_new_host_keys, connect_timeout=connect_timeout
        ),
    )
    st.emit(report.to_json(), router_doctor.human(report))
    raise typer.Exit(report.exit_code)
