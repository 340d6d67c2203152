"""`matrix`: a CI job matrix (JSON), one entry per site x router."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `matrix`."""
    app.command("matrix")(matrix)


def matrix(
    ctx: typer.Context,
    all_sites: Annotated[
        Path | None,
        typer.Option(
            "--all",
            metavar="DIR",
            help="Every site file under DIR (<DIR>/**/owrt-vpn.toml) [default: --site].",
        ),
    ] = None,
) -> None:
    """Print a CI job matrix as JSON: one entry per site x router ({"include": [...]})."""
    from owrt_vpn.build.fleet import SiteEntry, load_fleet
    from owrt_vpn.build.fleet import matrix as fleet_matrix

    st = state(ctx)
    if all_sites is not None:
        entries = load_fleet(all_sites, strict=True)
    else:
        site = st.load_site()
        entries = [SiteEntry(site.path, site=site)]
    # Always JSON (with or without --json): it is made to be read by a CI system.
    sys.stdout.write(json.dumps({"include": fleet_matrix(entries)}, sort_keys=True) + "\n")
