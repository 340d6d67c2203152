"""What a build depends on, whether its output is current, and the lock file.

Everything here is cheap and imports nothing heavy: a rebuild with nothing
changed must answer "up to date" in a fraction of a second, without
``requests``, ``cryptography`` or ``jinja2``. The input key is the sha256 of
the canonical JSON of every input (file digests, not file names or times),
and a miss says which input changed.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from owrt_vpn import __version__
from owrt_vpn.codegraph import code_digest
from owrt_vpn.errors import ConfigError, IntegrityError
from owrt_vpn.fsutil import read_json, sha256_file, write_atomic
from owrt_vpn.repro import digest, tree_digest

LOCK_NAME = "owrt-vpn.lock"
LOCK_FORMAT = 1
BUILD_INFO = "build-info.json"
# The modules that make an image from a site file: the code key is their
# import closure (the site loader and its rules, PKI, render, ImageBuilder,
# backends, build itself), so no module that shapes an image is left out.
IMAGE_ENTRIES = ("owrt_vpn.site.load", "owrt_vpn.build.runner")


@cache
def tool_digest() -> dict[str, str]:
    """owrt-vpn's version, and digests of its code and shipped data.

    The code digest makes a development checkout rebuild after a change to
    a template or to the overlay code, not only after a version bump.
    """
    from owrt_vpn.resources import data_dir

    out = {"version": __version__, "code": code_digest(*IMAGE_ENTRIES)}
    for name in ("profiles", "files-overlay"):
        try:
            out[name] = tree_digest(data_dir(name))
        except FileNotFoundError:
            out[name] = ""
    return out


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the inputs that differ (``tool.code``, ``site``, ``pki``...)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in changed_inputs(a, b)]
        elif a != b:
            out.append(key)
    return out


def up_to_date(out_dir: Path, inputs: dict[str, Any]) -> tuple[bool, str]:
    """(current?, why not): same input key and every recorded image intact."""
    info = read_json(out_dir / BUILD_INFO)
    if info is None:
        return False, "no previous build"
    if info.get("input_key") != digest(inputs):
        old = info.get("inputs")
        changed = changed_inputs(old, inputs) if isinstance(old, dict) else []
        return False, "changed: " + (", ".join(changed) or "inputs")
    images = info.get("images")
    if not isinstance(images, list) or not images:
        return False, "previous build lists no images"
    for image in images:
        name = str(image.get("name", "")) if isinstance(image, dict) else ""
        path = out_dir / name
        if "/" in name or not name or not path.is_file():
            return False, f"image {name or '?'} is missing"
        if sha256_file(path) != image.get("sha256"):
            return False, f"image {name} was modified"
    return True, ""


class Lock:
    """``owrt-vpn.lock`` next to the site file: per router, the ImageBuilder
    sha256 and the installed package versions of the last build.

    A one-off build with ``--target/--subtarget/--device/--release`` never
    touches the router's entry: it is recorded under ``overrides`` instead,
    so the next ``build --locked`` of the site still checks what the site pins.
    """

    def __init__(
        self,
        path: Path,
        routers: dict[str, dict[str, Any]],
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self.routers = routers
        self.overrides = overrides if overrides is not None else {}

    @classmethod
    def load(cls, site_path: Path) -> Lock:
        """The lock beside ``site_path`` (empty when there is none)."""
        path = site_path.resolve().parent / LOCK_NAME
        if not path.exists():
            return cls(path, {})
        data = read_json(path)
        if (
            data is None
            or not isinstance(data.get("routers"), dict)
            or not isinstance(data.get("overrides", {}), dict)
        ):
            raise ConfigError(
                f"{path}: not a valid owrt-vpn lock file",
                hint="delete it and build again without --locked to write a new one",
            )

        def table(key: str) -> dict[str, dict[str, Any]]:
            return {str(k): v for k, v in data.get(key, {}).items() if isinstance(v, dict)}

        return cls(path, table("routers"), table("overrides"))

    @staticmethod
    def entry(info: dict[str, Any]) -> dict[str, Any]:
        """The lock entry of a build (from its build-info)."""
        ib = info.get("imagebuilder", {})
        return {
            "release": info.get("release", {}).get("version"),
            "revision": info.get("release", {}).get("revision"),
            "target": f"{info.get('target')}/{info.get('subtarget')}",
            "device": info.get("device", {}).get("profile"),
            "imagebuilder": {"name": ib.get("name"), "sha256": ib.get("sha256")},
            "packages": dict(sorted(info.get("packages", {}).get("installed", {}).items())),
        }

    def check_build(
        self, router: str, release: str, target: str, device: str, override: bool = False
    ) -> None:
        """IntegrityError when the lock pins another release/target/device for ``router``.

        Checked before the ImageBuilder's sha256, so that ``--locked`` names the
        real cause (another release or device) instead of a checksum mismatch.
        """
        want = self._pinned(router, override)
        got = {"release": release, "target": target, "device": device}
        diff = [f"{k} {want.get(k)} -> {v}" for k, v in got.items() if want.get(k) not in (None, v)]
        if diff:
            where = "overrides." + router if override else "routers." + router
            raise IntegrityError(
                f"{router}: --locked: {self.path.name} ({where}) pins another build: "
                + "; ".join(diff),
                hint=f"build without --locked to accept it and update {self.path.name}"
                # Only an override build can drop its overrides to build what the site pins.
                + (", or drop the --target/--device/--release overrides" if override else ""),
            )

    def check_imagebuilder(
        self,
        router: str,
        sha256: str,
        name: str,
        override: bool = False,
        revision: str | None = None,
    ) -> None:
        """IntegrityError unless the lock pins this ImageBuilder for ``router``.

        ``revision``: the mirror's build (profiles.json ``version_code``); when it
        differs from the pinned one, that is the cause named (a snapshot or a
        ``-SNAPSHOT`` branch moves daily), not the checksum it implies.
        """
        pinned = self._pinned(router, override)
        want = pinned["imagebuilder"].get("sha256")
        was = pinned.get("revision")
        if want != sha256 and revision and was and revision != was:
            raise IntegrityError(
                f"{router}: --locked: the mirror now has another build of "
                f"{pinned.get('release')} (revision {revision}); {self.path.name} pins "
                f"revision {was}",
                hint="snapshots and -SNAPSHOT branches are rebuilt daily: build without "
                f"--locked to accept the new build and update {self.path.name}",
            )
        if want != sha256:
            raise IntegrityError(
                f"{router}: --locked: the ImageBuilder {name} has sha256 {sha256}, "
                f"{self.path.name} pins {want}",
                hint=f"build without --locked to accept it and update {self.path.name}",
            )

    def check_packages(
        self, router: str, installed: dict[str, str], override: bool = False
    ) -> None:
        """IntegrityError unless the lock pins exactly these package versions."""
        want = self._pinned(router, override).get("packages", {})
        if want != installed:
            diff = sorted(
                f"{p} {want.get(p, '-')} -> {installed.get(p, '-')}"
                for p in set(want) | set(installed)
                if want.get(p) != installed.get(p)
            )
            shown = "; ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
            raise IntegrityError(
                f"{router}: --locked: installed packages differ from {self.path.name}: {shown}",
                hint=f"build without --locked to accept them and update {self.path.name}",
            )

    def _pinned(self, router: str, override: bool = False) -> dict[str, Any]:
        entry = (self.overrides if override else self.routers).get(router)
        if entry is None or not isinstance(entry.get("imagebuilder"), dict):
            what = "no override entry" if override else "no entry"
            raise IntegrityError(
                f"{router}: --locked, but {self.path.name} has {what} for this router",
                hint="build once without --locked to write the lock",
            )
        return entry

    def update(self, router: str, entry: dict[str, Any], override: bool = False) -> bool:
        """Set ``router``'s entry (or its override entry); True when it changed."""
        table = self.overrides if override else self.routers
        if table.get(router) == entry:
            return False
        table[router] = entry
        return True

    def save(self) -> None:
        """Write the lock atomically (stable JSON, one router per key)."""
        data: dict[str, Any] = {
            "format": LOCK_FORMAT,
            "routers": dict(sorted(self.routers.items())),
        }
        if self.overrides:
            data["overrides"] = dict(sorted(self.overrides.items()))
        # A symlinked lock is written *through* the link, as the site file is.
        real = Path(os.path.realpath(self.path))
        write_atomic(real, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o644)
