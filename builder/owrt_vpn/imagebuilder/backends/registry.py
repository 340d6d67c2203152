"""The build backends by name: where ``make image`` runs."""

from __future__ import annotations

from typing import Any

from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.base import Backend

NAMES = ("local", "docker")


def get_backend(name: str, **options: Any) -> Backend:
    """The backend called ``name`` (``local``, ``docker``); ``options`` go to a
    non-local backend's factory (e.g. ``container_image``)."""
    if name == "local":
        from owrt_vpn.imagebuilder.backends.local import LocalBackend

        return LocalBackend()
    if name == "docker":
        try:
            from owrt_vpn.imagebuilder.backends import docker
        except ImportError:
            pass
        else:
            backend: Backend = docker.backend(**options)
            return backend
    raise BuildError(
        f"build backend {name!r} is not available",
        hint='use backend = "local" in the site file',
    )
