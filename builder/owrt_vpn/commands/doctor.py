"""`doctor`: the host tools the ImageBuilder needs; `doctor --router NAME`: a live router."""

from __future__ import annotations

from typing import Annotated

import typer

from owrt_vpn.ui import batch_view
from owrt_vpn.ui.pki_view import open_for_routers
from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `doctor`."""
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    router: Annotated[
        str | None,
        typer.Option(
            "--router",
            metavar="NAME",
            help="Check this live router over SSH instead (firewall, ports, plugins, "
            "modules, certificate, CRL).",
        ),
    ] = None,
) -> None:
    """Check the host tools the ImageBuilder needs, and where the cache and keys are."""
    if router is not None:
        doctor_router(ctx, router)  # raises typer.Exit with the checks' status
        return
    from owrt_vpn.errors import EXIT_FAILURE, BuildError
    from owrt_vpn.imagebuilder import keys
    from owrt_vpn.imagebuilder.backends.local import LocalBackend, install_hint
    from owrt_vpn.imagebuilder.cache import cache_root

    st = state(ctx)
    prereqs = LocalBackend().prerequisites()
    missing = [p for p in prereqs if not p.found]
    lines = [f"{'ok' if p.found else 'MISSING':<8} {p.command}" for p in prereqs]
    lines.append(f"cache    {cache_root()}  (set OWRT_VPN_CACHE to move it)")
    lines.append(
        f"keys     {len(keys.shipped_keys())} OpenWrt, {len(keys.user_keys())} yours "
        f"({keys.user_keys_dir()})"
    )
    # The docker backend's engine (DOCKER_HOST): informative, never a failure here.
    from owrt_vpn.imagebuilder.backends.engine import describe, engine_status

    engine = engine_status()
    lines.append(f"engine   {describe(engine)}")
    hint = install_hint(missing) if missing else None
    data = {
        "ok": not missing,
        "tools": {p.command: p.found for p in prereqs},
        "missing": [p.command for p in missing],
        "hint": hint,
        "cache": str(cache_root()),
        "container_engine": engine,
    }
    if missing and st.json:
        st.emit(data)
        raise typer.Exit(EXIT_FAILURE)
    st.emit(data, "\n".join(lines))
    if missing:
        raise BuildError(
            "missing host tools for the ImageBuilder: " + ", ".join(p.command for p in missing),
            hint=hint,
        )


def doctor_router(
    ctx: typer.Context,
    name: str,
    *,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
) -> None:
    """`doctor --router NAME`: check a live router against the usual failures; exit 1 on any."""
    from owrt_vpn.routers import doctor as router_doctor

    st = state(ctx)
    site = st.load_site()
    targets = batch_view.targets(site, [name], None, None)
    pki = open_for_routers(site, targets, True, st)
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
