"""Remembered ``make manifest`` results: the package set an image build confirmed.

``make manifest`` costs a real ImageBuilder seconds (it reloads the package
feeds, then resolves dependencies), and a rebuild after a site change (a new
user, a renewed certificate) asks it the same question again: same
ImageBuilder, same profile, same package list. So a build keeps the answer
that its own ``make image`` confirmed, under ``<cache>/manifests/<key>.json``,
keyed by the canonical JSON of those inputs.

An entry is a prediction, never trusted blindly: the build still compares it
with the manifest the image really got. The release's package feeds can move
on (a rebuilt package), so on a difference the build drops the entry, asks
``make manifest`` afresh and builds again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from owrt_vpn.fsutil import write_atomic
from owrt_vpn.repro import canonical_json, digest

FORMAT = 1


def manifest_key(
    backend: str, imagebuilder: Any, profile: str, packages: Sequence[str]
) -> dict[str, Any]:
    """What ``make manifest`` depends on: where make runs (the ImageBuilder's
    archive sha256, or a container image's identity), PROFILE and PACKAGES."""
    return {
        "format": FORMAT,
        "backend": backend,
        "imagebuilder": imagebuilder,
        "profile": profile,
        "packages": list(packages),
    }


class ManifestCache:
    """Confirmed ``make manifest`` answers under ``<root>/manifests/``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "manifests"

    def _path(self, key: dict[str, Any]) -> Path:
        return self.dir / f"{digest(key)}.json"

    def get(self, key: dict[str, Any]) -> dict[str, str] | None:
        """The remembered package set for ``key``, or None (absent, unreadable, foreign)."""
        try:
            data = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        packages = data.get("packages")
        if not isinstance(packages, dict) or not packages:
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in packages.items()):
            return None
        return packages

    def put(self, key: dict[str, Any], packages: dict[str, str]) -> None:
        """Remember ``packages`` (confirmed by an image build) for ``key``."""
        if packages:
            data = {"key": key, "packages": packages}
            write_atomic(self._path(key), canonical_json(data) + b"\n", 0o644)

    def forget(self, key: dict[str, Any]) -> None:
        """Drop the entry for ``key`` (the image disagreed with it)."""
        self._path(key).unlink(missing_ok=True)
