"""Command modules; each exposes ``register(app)`` and is found automatically.

Keep imports at the top of these modules light (typer, pathlib): heavy
libraries are imported inside the command functions, so that ``--help`` and
no-op runs stay fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    """Register every ``owrt_vpn.commands.*`` module's commands on ``app``, in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)
