"""Reproducibility helpers: the one timestamp we write into archives, canonical JSON."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from owrt_vpn.fsutil import sha256_file

# 2024-01-01T00:00:00Z: used for archive mtimes when SOURCE_DATE_EPOCH is unset,
# so that two builds of the same inputs give the same bytes.
DEFAULT_EPOCH = 1704067200


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` from the environment, else :data:`DEFAULT_EPOCH`."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value.isdigit():
        return int(value)
    return DEFAULT_EPOCH


def canonical_json(data: Any) -> bytes:
    """Stable JSON bytes (sorted keys, no whitespace variance) for digests and files."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: Any) -> str:
    """sha256 hex of the canonical JSON of ``data`` (cache keys, input keys)."""
    return hashlib.sha256(canonical_json(data)).hexdigest()


def tree_digest(root: Path, suffixes: tuple[str, ...] = ()) -> str:
    """Digest of the files under ``root`` (relative path -> content sha256)."""
    files: dict[str, str] = {}
    if root.is_dir():
        for p in sorted(root.rglob("*")):
            if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
                continue
            if "__pycache__" in p.parts or (suffixes and p.suffix not in suffixes):
                continue
            files[p.relative_to(root).as_posix()] = sha256_file(p)
    return digest(files)
