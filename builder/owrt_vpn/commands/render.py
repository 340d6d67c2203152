"""`render`: a router's files-overlay tree (what the image build bakes in)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.ui.selection import routers as chosen_routers
from owrt_vpn.ui.state import state

if TYPE_CHECKING:
    from owrt_vpn.site.model import Site


def register(app: typer.Typer) -> None:
    """Add `render`."""
    app.command("render")(render)


def render(
    ctx: typer.Context,
    router: str | None = typer.Option(
        None, "--router", metavar="NAME", help="Only this router [default: every router]."
    ),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Output folder [default: dist/<site>/routers/<router>/overlay]; "
            "with several routers, <DIR>/<router>.",
        ),
    ] = None,
    tar: Annotated[
        Path | None,
        typer.Option(
            "--tar", metavar="FILE", help="Also write a deterministic tarball (one router only)."
        ),
    ] = None,
    config_style: str | None = typer.Option(
        None,
        "--config-style",
        metavar="swanctl|ipsec",
        help="Override the strongSwan config style [default: by release].",
    ),
) -> None:
    """Render the files-overlay tree the image build bakes in (issues missing certificates)."""
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.render import overlay
    from owrt_vpn.ui.outputs import check_out_dir, check_out_file

    st = state(ctx)
    site: Site = st.load_site()
    routers = chosen_routers(site, router)
    if tar is not None and len(routers) != 1:
        raise UsageError("--tar needs a single router", hint="add --router NAME")
    # --out is replaced as a whole, --tar overwritten: neither may be the site's
    # own files, nor anything but an earlier render (checked before any write).
    dests = {r.name: _dest(site, r.name, out, len(routers)) for r in routers}
    for dest in dests.values():
        check_out_dir(site, "--out", dest, f"{overlay.FILES}/{overlay.META}/manifest")
    if tar is not None:
        check_out_file(site, "--tar", tar)
    pki = Pki.open(site)
    results: list[dict[str, Any]] = []
    for r in routers:
        report = pki.ensure_router(site, r)
        for item in report.issued:
            st.info(f"issued {item}")
        for item in report.skipped:
            st.warn(item)
        dest = dests[r.name]
        if out is None:
            # The overlay holds the router's private key: its folder is owner-only,
            # as `build` makes it (check warns otherwise), whatever the umask.
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.parent.stat().st_uid == os.geteuid():
                os.chmod(dest.parent, 0o700)
        res = overlay.render(site, r, pki, dest, config_style=config_style)
        for w in res.warnings:
            st.warn(w)
        entry: dict[str, Any] = {
            "router": r.name,
            "out": str(dest),
            "config_style": res.config_style,
            "firewall": res.firewall,
            "files": res.files,
            "warnings": res.warnings,
        }
        if tar is not None:
            entry["tar"] = str(tar)
            entry["tar_sha256"] = overlay.write_tarball(res.root, tar)
        results.append(entry)
    lines = []
    for e in results:
        lines.append(
            f"{e['router']}: {e['out']} "
            f"({e['config_style']}, {e['firewall']}, {len(e['files'])} files)"
        )
        if "tar" in e:
            lines.append(f"  tar: {e['tar']} sha256 {e['tar_sha256']}")
    st.emit({"ok": True, "routers": results}, "\n".join(lines))


def _dest(site: Site, router: str, out: Path | None, count: int) -> Path:
    """Where a router's overlay goes."""
    if out is None:
        return Path("dist") / site.name / "routers" / router / "overlay"
    return out if count == 1 else out / router
