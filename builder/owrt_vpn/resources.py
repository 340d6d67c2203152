"""Where the shipped data lives: `profiles/` and `files-overlay/`.

In a wheel they are packaged under ``owrt_vpn/_data/``; in a source checkout
(editable install, tests) they are the repository's top-level folders.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """Path of the shipped data folder ``name`` (``profiles`` or ``files-overlay``)."""
    packaged = _PKG / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PKG.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"owrt-vpn data folder {name!r} is missing from the installation")


def profiles_dir() -> Path:
    """The `profiles/` data folder."""
    return data_dir("profiles")


def templates_dir() -> Path:
    """The `files-overlay/` template folder."""
    return data_dir("files-overlay")
