"""Command modules; each exposes ``register(app)``.

Keep imports at the top of these modules light (typer, pathlib): heavy
libraries are imported inside the command functions.
"""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    """Register every command group on ``app``."""
    from owrt_vpn.commands import site_cmds

    for module in (site_cmds,):
        module.register(app)
