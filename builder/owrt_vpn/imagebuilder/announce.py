"""The newest stable release a mirror announces (for `init`'s default).

The mirror's ``.versions.json`` (``stable_version``) is not signed, so it may
only move the default *forward*: a release older than the pinned default
(``profiles/releases.toml`` ``default_release``) is ignored, and so is a
series owrt-vpn has no data for. One short attempt: `init` must not hang
without network.
"""

from __future__ import annotations

from dataclasses import dataclass

from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError, NotFoundError, OwrtVpnError

TIMEOUT = 3.0


@dataclass(frozen=True)
class Choice:
    """The release `init` writes and which index decided it."""

    release: str
    source: str  # e.g. "https://downloads.openwrt.org/.versions.json (stable_version)"


def default_release(mirror: str, timeout: float = TIMEOUT) -> Choice:
    """The mirror's ``stable_version`` when it is newer than the pinned default and known."""
    from owrt_vpn.imagebuilder.cache import RetryPolicy, Transport
    from owrt_vpn.imagebuilder.mirror import join, version_key

    pinned = profiles.default_release()
    fallback = "the pinned default (profiles/releases.toml)"
    url = join(mirror, ".versions.json")
    try:
        transport = Transport(RetryPolicy(attempts=1), timeout=timeout)
        import json

        data = json.loads(transport.get_bytes(url, ".versions.json"))
        stable = str(data.get("stable_version") or "") if isinstance(data, dict) else ""
    except NotFoundError:
        return Choice(pinned, f"{fallback}: {url} not found (HTTP 404: wrong --mirror?)")
    except ValueError:
        return Choice(pinned, f"{fallback}: {url} is not valid JSON (wrong --mirror?)")
    except OwrtVpnError:
        return Choice(pinned, f"{fallback}: {url} not reachable within {timeout:g} s")
    if not stable or version_key(stable) <= version_key(pinned):
        return Choice(pinned, f"{fallback}: {url} announces {stable or 'nothing'} (not newer)")
    try:
        profiles.release_info(stable)
    except ConfigError:
        return Choice(
            pinned, f"{fallback}: {url} announces {stable}, a series owrt-vpn does not know"
        )
    return Choice(stable, f"{url} (stable_version)")
