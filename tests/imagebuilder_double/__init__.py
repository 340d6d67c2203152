"""The OpenWrt ImageBuilder test double and its signed download mirror.

Stands for someone else's software: it never imports ``owrt_vpn``. See
README.md here for what it mirrors from ``reference/imagebuilder.md`` and
what it simplifies.
"""

from .archive import (
    archive_basename,
    archive_name,
    cached_imagebuilder,
    extract_imagebuilder,
    make_imagebuilder,
)
from .catalog import RELEASES, TARGETS, Variant

__all__ = [
    "RELEASES",
    "TARGETS",
    "Variant",
    "archive_basename",
    "archive_name",
    "cached_imagebuilder",
    "extract_imagebuilder",
    "make_imagebuilder",
]
