"""Pytest fixtures: a signed mirror of ImageBuilder doubles served on loopback.

Import into a test module or conftest::

    from imagebuilder_double.fixtures import served_mirror  # noqa: F401

    def test_build(served_mirror, cli):
        cli("build", "--mirror", served_mirror.url, "--trust-key", served_mirror.key.public)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.mirror import MirrorServer, serve

from .archive import archive_name
from .mirror_tree import Mirror, SigningKey, make_mirror, make_signing_key

DEFAULT_BUILDS = [("24.10.2", "bcm53xx", "generic"), ("24.10.2", "ath79", "generic")]


@dataclass
class ServedMirror:
    """A mirror tree, the key that signed it and the server in front of it."""

    mirror: Mirror
    key: SigningKey
    server: MirrorServer

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return self.server.url

    def archive_path(self, release: str, target: str, subtarget: str) -> str:
        """URL path of an ImageBuilder archive (for faults and request counts)."""
        name = archive_name(release, target, subtarget)
        return self.mirror.url_path(release, target, subtarget, name)


def start_served_mirror(
    root: Path, builds: list[tuple[str, str, str]] | None = None
) -> tuple[ServedMirror, MirrorServer]:
    """Generate key + mirror under ``root`` and start a server (caller stops it)."""
    key = make_signing_key(root / "keys")
    mirror = make_mirror(root / "mirror", key, builds or DEFAULT_BUILDS)
    server = MirrorServer(mirror.base).start()
    return ServedMirror(mirror, key, server), server


@pytest.fixture
def served_mirror(tmp_path: Path) -> Iterator[ServedMirror]:
    """24.10.2 bcm53xx/generic + ath79/generic doubles, signed, on 127.0.0.1."""
    key = make_signing_key(tmp_path / "double-keys")
    mirror = make_mirror(tmp_path / "double-mirror", key, DEFAULT_BUILDS)
    with serve(mirror.base) as server:
        yield ServedMirror(mirror, key, server)
