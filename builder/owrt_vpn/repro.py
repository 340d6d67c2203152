"""Reproducibility helpers: the one timestamp we write into archives, canonical JSON."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

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
