"""The plan of a build: which routers, on which release/target/device, and the inputs.

:func:`plan` turns the site values, the command line's overrides and the
defaults from ``profiles/`` into one :class:`RouterPlan` per router;
:func:`inputs` lists everything a router build depends on, as digests (the
input key that makes a no-op build a no-op). Nothing here imports anything
heavy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from owrt_vpn import profiles
from owrt_vpn.build import state as build_state
from owrt_vpn.errors import ConfigError, OwrtVpnError, Problem, UsageError, did_you_mean
from owrt_vpn.pki.digest import pki_digest
from owrt_vpn.profiles import DEFAULT_MIRROR
from owrt_vpn.repro import source_date_epoch
from owrt_vpn.site.digest import router_inputs
from owrt_vpn.site.model import (
    DEVICE_RE,
    EAP_PASSWORD_AUTH,
    RELEASE_RE,
    TARGET_RE,
    Router,
    Site,
)

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class BuildOptions:
    """The ``owrt-vpn build`` options."""

    routers: tuple[str, ...] = ()
    target: str | None = None
    subtarget: str | None = None
    device: str | None = None
    release: str | None = None
    mirror: str = DEFAULT_MIRROR
    out: Path = Path("dist")
    jobs: int = 1
    trust_keys: tuple[Path, ...] = ()
    insecure_skip_signature: bool = False
    locked: bool = False
    config_style: str | None = None
    force: bool = False
    backend: str | None = None  # overrides the site's [site] backend
    container_image: str | None = None  # docker backend: repository, template or reference
    container_network: str | None = None  # docker backend: network mode (default: engine's)


@dataclass(frozen=True)
class RouterPlan:
    """What to build for one router (site values with overrides and defaults applied)."""

    site: Site
    router: Router
    release: str
    target: str
    subtarget: str
    device: str
    out_dir: Path
    log_path: Path
    # Built with --target/--subtarget/--device/--release values other than the
    # site's: a one-off build, recorded in the lock's "overrides", never its routers.
    override: bool = False

    @property
    def name(self) -> str:
        """The router's name."""
        return self.router.name


@dataclass
class RouterResult:
    """How one router's build went."""

    router: str
    status: str  # "built", "up-to-date", "failed"
    out_dir: Path
    reason: str = ""
    images: list[str] = field(default_factory=list)
    error: OwrtVpnError | None = None
    seconds: float = 0.0
    lock_entry: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)  # make steps (--json only)


class Reporter(Protocol):
    """Where a build tells what it is doing (the CLI prints; tests may record)."""

    def stage(self, router: str, message: str) -> None:
        """A step started (resolving, downloading, make image...)."""

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        """A download progress callback for ``name`` (or None)."""

    def output(self, router: str, line: str) -> None:
        """One line of ImageBuilder output (shown under --verbose)."""

    def warn(self, message: str) -> None:
        """Something the user must know (e.g. skipped signature check)."""


class NullReporter:
    """A reporter that says nothing."""

    def stage(self, router: str, message: str) -> None:
        """Ignored."""

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        """No progress display."""
        return None

    def output(self, router: str, line: str) -> None:
        """Ignored."""

    def warn(self, message: str) -> None:
        """Ignored."""


# ------------------------------------------------------------------ planning


def _check(value: str, regex: Any, flag: str, example: str) -> str:
    if not regex.fullmatch(value):
        raise ConfigError([Problem(flag, "", f"{value!r} is not valid (e.g. {example})")])
    return value


def plan(site: Site, options: BuildOptions) -> list[RouterPlan]:
    """The routers to build and their effective release/target/subtarget/device."""
    chosen = [site.router(n) for n in options.routers] if options.routers else list(site.routers)
    overrides = [
        flag
        for flag, value in (
            ("--target", options.target),
            ("--subtarget", options.subtarget),
            ("--device", options.device),
            ("--release", options.release),
        )
        if value
    ]
    if overrides and len(chosen) > 1:
        raise UsageError(
            f"{', '.join(overrides)} override one router, but {len(chosen)} would be built",
            hint="pick the router with --router NAME",
        )
    if options.target:
        _check(options.target, TARGET_RE, "--target", "bcm53xx")
    if options.subtarget:
        _check(options.subtarget, TARGET_RE, "--subtarget", "generic")
    if options.device:
        _check(options.device, DEVICE_RE, "--device", "phicomm_k3")
    if options.release:
        _check(
            options.release, RELEASE_RE, "--release", "24.10.2, 24.10.x, 24.10-SNAPSHOT or snapshot"
        )
    if options.target:
        known = set(profiles.load("targets")["targets"])
        known |= set(profiles.load("targets").get("all_targets", []))
        if options.target not in known:
            raise UsageError(
                f"--target: {options.target!r} is not an OpenWrt target"
                + did_you_mean(options.target, sorted(known)),
                hint=f"OpenWrt targets: {', '.join(sorted(known))}",
            )
    plans = []
    for r in chosen:
        target = options.target or r.target
        info = profiles.target_info(target)
        if target != r.target:
            # Another target: the site's device and subtarget belong to the old one.
            device = options.device or info.get("default_device")
            site_subtarget = None
        else:
            device = options.device or r.device
            site_subtarget = None if options.device else r.subtarget
        known = info.get("devices", {}).get(device, {})
        subtarget = (
            options.subtarget
            or site_subtarget
            or known.get("subtarget")
            or info.get("default_subtarget")
        )
        if not subtarget or not device:
            missing = "--subtarget" if not subtarget else "--device"
            raise UsageError(
                f"no default {missing[2:]} known for target {target!r}",
                hint=f"pass {missing} (known targets with defaults: "
                f"{', '.join(sorted(profiles.load('targets')['targets']))})",
            )
        release = options.release or r.release
        natural = (r.release, r.target, _site_subtarget(r), r.device)
        override = bool(overrides) and (release, target, subtarget, device) != natural
        new = r.model_copy(
            update={"target": target, "subtarget": subtarget, "device": device, "release": release}
        )
        dist = options.out / site.name
        plans.append(
            RouterPlan(
                site=replace_router(site, new),
                router=new,
                release=release,
                target=target,
                subtarget=str(subtarget),
                device=str(device),
                out_dir=dist / "routers" / r.name,
                log_path=dist / "logs" / f"{r.name}.log",
                override=override,
            )
        )
    return plans


def _site_subtarget(r: Router) -> str | None:
    """The subtarget a build of ``r`` without overrides uses."""
    info = profiles.target_info(r.target)
    known = info.get("devices", {}).get(r.device, {})
    return r.subtarget or known.get("subtarget") or info.get("default_subtarget")


def replace_router(site: Site, router: Router) -> Site:
    """``site`` with ``router`` in place of the router of the same name."""
    routers = tuple(router if r.name == router.name else r for r in site.routers)
    return dataclasses.replace(site, routers=routers)


def inputs(p: RouterPlan, options: BuildOptions) -> dict[str, Any]:
    """Every input of a router build, as digests (the input key is their digest).

    ``site`` and ``pki`` are what *this* router carries (:mod:`owrt_vpn.site.digest`,
    :mod:`owrt_vpn.pki.digest`), not the whole site file and PKI: an edit that
    does not reach this router leaves its build, and its image, as they are.
    """
    eap_users = [u.name for u in p.site.router_users(p.router) if u.auth in EAP_PASSWORD_AUTH]
    return {
        "tool": build_state.tool_digest(),
        "site": router_inputs(p.site, p.router),
        "pki": pki_digest(p.site.pki_path, p.name, eap_users),
        "router": p.name,
        "release": p.release,
        "target": p.target,
        "subtarget": p.subtarget,
        "device": p.device,
        "mirror": options.mirror,
        "config_style": options.config_style,
        "signature": "skipped" if options.insecure_skip_signature else "verified",
        "backend": p.site.settings.backend,
        "source_date_epoch": source_date_epoch(),
    }
