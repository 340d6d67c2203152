"""What `check` can validate before a download, and what it says it could not.

For each router: the release, target, subtarget, device and the packages of
``extra_packages``, against the best data at hand:

1. the metadata remembered from an earlier verified download of that release
   (:mod:`owrt_vpn.imagebuilder.metadata`: the release's ``profiles.json``
   profile ids, the ImageBuilder's package index) - authoritative;
2. else the data we ship (``profiles/targets.toml``: targets, subtargets,
   some devices per target; ``profiles/releases.toml``: series) - partial, so
   a name it lacks is an error only when it is a typo of a known one or a
   device of another target, and otherwise "not checked offline".

``check --online`` resolves each router on the mirror (signed ``sha256sums``
and ``profiles.json``, like ``build``) and remembers what it verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError, Problem, did_you_mean
from owrt_vpn.imagebuilder import metadata
from owrt_vpn.render import packages
from owrt_vpn.site.keys import router_key
from owrt_vpn.site.model import Router, Site


@dataclass
class Preflight:
    """The problems found and what could not be checked offline."""

    problems: list[Problem] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def preflight(site: Site, cache_root: Path) -> Preflight:
    """Validate every router's release/target/subtarget/device/extra packages offline."""
    out = Preflight()
    for router in site.routers:
        _router(site, router, cache_root, out)
    return out


def _router(site: Site, r: Router, root: Path, out: Preflight) -> None:
    file, key = site.path.name, router_key(r)
    try:
        series = profiles.release_info(r.release).series
    except ConfigError as exc:
        out.problems.append(Problem(file, f"{key}.release", exc.message))
        return
    release = "snapshot" if series == "snapshot" else r.release
    cached_targets = metadata.known_targets(root, release)
    shipped: dict[str, Any] = profiles.load("targets")["targets"]
    if (
        release != "snapshot"
        and not r.release.endswith(".x")
        and release not in metadata.known_releases(root)
    ):
        out.unchecked.append(
            f"router {r.name}: whether the mirror has release {r.release} "
            "(no earlier download of it)"
        )
    every = profiles.load("targets").get("all_targets", [])
    targets = sorted(set(shipped) | set(cached_targets) | set(every))
    if r.target not in targets:
        out.problems.append(
            Problem(
                file,
                f"{key}.target",
                f"{r.target!r} is not an OpenWrt target" + did_you_mean(r.target, targets),
            )
        )
        return
    info: dict[str, Any] = shipped.get(r.target, {})
    subtargets = sorted(set(info.get("subtargets", [])) | set(cached_targets.get(r.target, [])))
    known_devices: dict[str, Any] = info.get("devices", {})
    subtarget = (
        r.subtarget
        or known_devices.get(r.device, {}).get("subtarget")
        or info.get("default_subtarget")
    )
    if r.subtarget and subtargets and r.subtarget not in subtargets:
        out.problems.append(
            Problem(
                file,
                f"{key}.subtarget",
                f"target {r.target} has no subtarget {r.subtarget!r} "
                f"(known: {', '.join(subtargets)})",
            )
        )
        return
    cached = metadata.recall(root, release, r.target, str(subtarget)) if subtarget else None
    if cached and cached.get("profiles"):
        ids = [str(x) for x in cached["profiles"]]
        if r.device not in ids:
            out.problems.append(
                Problem(
                    file,
                    f"{key}.device",
                    f"{r.target}/{subtarget} of {release} has no device {r.device!r}"
                    + (did_you_mean(r.device, ids) or f" (e.g. {', '.join(ids[:5])})"),
                )
            )
    else:
        _device_from_shipped(file, key, r, shipped, out)
    try:  # removals of what the VPN needs (the same check `build` makes)
        packages.image_packages(site, r)
    except ConfigError as exc:
        out.problems += exc.problems
    adds = [p for p in (*site.settings.extra_packages, *r.extra_packages) if p[:1] != "-"]
    names = cached.get("packages") if cached else None
    if adds and isinstance(names, list):
        index = [str(x) for x in names]
        for p in adds:
            if p not in index:
                where = "extra_packages" if p in r.extra_packages else None
                out.problems.append(
                    Problem(
                        file,
                        f"{key}.{where}" if where else "site.extra_packages",
                        f"{p!r} is not a package of OpenWrt {release} {r.target}/{subtarget}"
                        + did_you_mean(p, index),
                    )
                )
    elif adds:
        out.unchecked.append(
            f"router {r.name}: extra_packages {' '.join(adds)} (the package index comes "
            "with the first build of this release and target)"
        )


def _device_from_shipped(
    file: str, key: str, r: Router, shipped: dict[str, Any], out: Preflight
) -> None:
    devices: dict[str, Any] = shipped.get(r.target, {}).get("devices", {})
    if r.device in devices:
        return
    elsewhere = [t for t, v in shipped.items() if r.device in v.get("devices", {})]
    if elsewhere:
        out.problems.append(
            Problem(
                file,
                f"{key}.device",
                f"{r.device!r} is a device of target {elsewhere[0]}, not {r.target}",
            )
        )
        return
    same = [d for d in devices if _norm(d) == _norm(r.device)]
    if same:
        out.problems.append(
            Problem(
                file, f"{key}.device", f"unknown device {r.device!r} (did you mean {same[0]!r}?)"
            )
        )
        return
    out.unchecked.append(
        f"router {r.name}: device {r.device!r} (not in the shipped list of {r.target} devices"
        + did_you_mean(r.device, devices).replace(" (", "; ", 1).rstrip(")")
        + ")"
    )


def _norm(name: str) -> str:
    """A device name without case and separator differences (phicomm-k3 = phicomm_k3)."""
    return "".join(c for c in name.lower() if c.isalnum())
