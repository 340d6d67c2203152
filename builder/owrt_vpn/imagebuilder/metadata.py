"""Release metadata remembered from earlier downloads, for `check` before any download.

A build verifies a release's signed ``sha256sums`` and the ``profiles.json``
it covers, and asks the ImageBuilder for its package index (``make
package_list``). What `check` needs of them is kept under the cache root::

    metadata/<release>/<target>/<subtarget>.json
        {"profiles": [ids], "default_packages": [...], "packages": [names] | null}

Only verified data is written here (a build with ``--insecure-skip-signature``
writes nothing). Small JSON files, rewritten atomically; reading never needs
the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from owrt_vpn.fsutil import read_json, write_atomic

META_DIR = "metadata"


def _path(root: Path, release: str, target: str, subtarget: str) -> Path:
    return root / META_DIR / release / target / f"{subtarget}.json"


def remember(
    root: Path,
    release: str,
    target: str,
    subtarget: str,
    *,
    profiles: list[str] | None = None,
    default_packages: list[str] | None = None,
    packages: list[str] | None = None,
) -> None:
    """Merge what is given into the remembered metadata of release/target/subtarget."""
    path = _path(root, release, target, subtarget)
    data: dict[str, Any] = read_json(path) or {}
    for key, value in (
        ("profiles", profiles),
        ("default_packages", default_packages),
        ("packages", packages),
    ):
        if value is not None:
            data[key] = sorted(set(value))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, sort_keys=True) + "\n", 0o644, sync=False)


def recall(root: Path, release: str, target: str, subtarget: str) -> dict[str, Any] | None:
    """The remembered metadata of release/target/subtarget, or None."""
    data = read_json(_path(root, release, target, subtarget))
    return data if isinstance(data, dict) else None


def known_targets(root: Path, release: str) -> dict[str, list[str]]:
    """target -> subtargets remembered for ``release``."""
    out: dict[str, list[str]] = {}
    base = root / META_DIR / release
    if base.is_dir():
        for t in sorted(p for p in base.iterdir() if p.is_dir()):
            out[t.name] = sorted(f.stem for f in t.glob("*.json"))
    return out


def known_releases(root: Path) -> list[str]:
    """Releases with remembered metadata."""
    base = root / META_DIR
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
