"""Typed access to the data in `profiles/` (releases, targets, proposals, packages, keys)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from typing import Any

from owrt_vpn.errors import ConfigError
from owrt_vpn.resources import profiles_dir

# OpenWrt's download site: the mirror a build uses unless told otherwise.
DEFAULT_MIRROR = "https://downloads.openwrt.org"


@cache
def load(name: str) -> dict[str, Any]:
    """Parse ``profiles/<name>.toml`` (cached)."""
    with (profiles_dir() / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


@dataclass(frozen=True)
class ReleaseInfo:
    """What we need to know about an OpenWrt release series."""

    version: str
    series: str
    config_style: str
    firewall: str
    package_manager: str
    strongswan: str


def release_series(version: str) -> str:
    """``24.10.2`` and ``24.10-SNAPSHOT`` -> ``24.10``; ``snapshot`` -> ``snapshot``."""
    if version.lower() == "snapshot":
        return "snapshot"
    # A release branch's nightly build (24.10-SNAPSHOT) belongs to its series.
    return ".".join(version.removesuffix("-SNAPSHOT").split(".")[:2])


def release_info(version: str) -> ReleaseInfo:
    """Facts about ``version``'s series; ConfigError for an unknown series."""
    series = release_series(version)
    data = load("releases")["series"]
    if series not in data:
        known = ", ".join(sorted(data))
        raise ConfigError(f"unknown OpenWrt release series {series!r} (known: {known})")
    d = data[series]
    return ReleaseInfo(
        version=version,
        series=series,
        config_style=d["config_style"],
        firewall=d["firewall"],
        package_manager=d["package_manager"],
        strongswan=d["strongswan"],
    )


def default_release() -> str:
    """The pinned default release."""
    return str(load("releases")["default_release"])


def default_target() -> str:
    """The default target for `init`."""
    return str(load("targets")["default_target"])


def target_info(target: str) -> dict[str, Any]:
    """The `profiles/targets.toml` entry of ``target`` (empty dict if unknown)."""
    return dict(load("targets")["targets"].get(target, {}))
