"""IKE/ESP proposals: the server's accepted set per crypto profile (from `profiles/`).

One source of truth: the router config, the client bundles and `check` all
ask this module.
"""

from __future__ import annotations

from owrt_vpn.profiles import load


def server_ike(crypto: str) -> tuple[str, ...]:
    """The IKE proposals the router accepts under crypto profile ``crypto``."""
    return tuple(load("proposals")["server"][crypto]["ike"])


def server_esp(crypto: str) -> tuple[str, ...]:
    """The ESP proposals the router accepts under crypto profile ``crypto``."""
    return tuple(load("proposals")["server"][crypto]["esp"])
