"""Which routers a command works on when it takes one optional ``--router NAME``.

Shared by `render` and `packages`; the batch commands (flash, push, status)
choose theirs with :func:`owrt_vpn.ui.batch_view.targets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from owrt_vpn.site.model import Router, Site


def routers(site: Site, name: str | None) -> list[Router]:
    """The router ``name`` (ConfigError if the site has none of that name), else every router."""
    if name is not None:
        return [site.router(name)]
    return list(site.routers)
