"""Fleets: many site files under one folder, built together or spread over CI jobs.

The rule for ``--all DIR``: every file named ``owrt-vpn.toml`` in DIR or any
folder below it is a site file (one site per folder, e.g.
``sites/paris/owrt-vpn.toml``); folders whose name starts with ``.`` are
skipped, and symbolic links to folders are not followed. Two site files with
the same ``[site] name`` are refused: they would share ``dist/<name>/``.

``build_fleet`` builds every router of every site through
:func:`owrt_vpn.build.runner.build` (one call per site, so each site's lock file is
written by one thread), with ``jobs`` router builds at most at a time
across sites. Concurrent builds share the content-addressed cache, whose
per-archive file locks make one verified download and one extraction per
ImageBuilder archive; every build still runs in its own copy of the tree.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owrt_vpn.errors import ConfigError, OwrtVpnError, Problem, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from owrt_vpn.build.plan import BuildOptions, Reporter, RouterResult
    from owrt_vpn.site.model import Site

SITE_FILE = "owrt-vpn.toml"


def discover_sites(root: Path) -> list[Path]:
    """The site files under ``root`` (see the module docstring), sorted by path."""
    if not root.is_dir():
        raise UsageError(f"--all {root}: not a directory")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if SITE_FILE in filenames:
            found.append(Path(dirpath) / SITE_FILE)
    if not found:
        raise UsageError(
            f"--all {root}: no {SITE_FILE} in it or in any folder below it",
            hint=f"put each site in its own folder: {root}/<site>/{SITE_FILE}",
        )
    return sorted(found)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (CI checkouts)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass
class SiteEntry:
    """One site file of the fleet: the loaded site, or why it could not be loaded."""

    file: Path
    site: Site | None = None
    error: OwrtVpnError | None = None

    @property
    def label(self) -> str:
        """The site's name, or its file when it did not load."""
        return self.site.name if self.site is not None else display_path(self.file)


def load_fleet(root: Path, *, strict: bool) -> list[SiteEntry]:
    """Load every site file under ``root``.

    ``strict``: raise one ConfigError listing every problem of every file (for
    ``matrix``: a CI matrix must be complete). Otherwise a file that does not
    load is kept as an entry with its error (``build --all`` goes on with the
    others and reports it).
    """
    from owrt_vpn.site.load import load_site

    entries: list[SiteEntry] = []
    for path in discover_sites(root):
        try:
            entries.append(SiteEntry(path, site=load_site(path, display_path(path))))
        except OwrtVpnError as exc:
            entries.append(SiteEntry(path, error=exc))
    problems: list[Problem] = []
    hints: list[str] = []
    if strict:
        for e in entries:
            if e.error is not None and e.error.hint:
                hints.append(e.error.hint)
        for e in entries:
            if isinstance(e.error, ConfigError) and e.error.problems:
                problems += e.error.problems
            elif e.error is not None:
                problems.append(Problem(display_path(e.file), "", e.error.message))
    by_name: dict[str, list[SiteEntry]] = {}
    for e in entries:
        if e.site is not None:
            by_name.setdefault(e.site.name, []).append(e)
    for name, same in sorted(by_name.items()):
        if len(same) > 1:
            hints.append("each site needs its own [site] name (dist/<name>/)")
            files = ", ".join(display_path(e.file) for e in same)
            problems.append(
                Problem(
                    display_path(same[1].file), "site.name", f"{name!r} is also used by {files}"
                )
            )
    if problems:
        # The hint of what went wrong (a file's own, or the duplicate-name rule),
        # never the duplicate-name hint for a file that did not even parse.
        raise ConfigError(problems, hint="; ".join(dict.fromkeys(hints)) or None)
    return entries


def matrix(entries: list[SiteEntry]) -> list[dict[str, str]]:
    """One CI job per site x router: the site file and the effective build values."""
    from owrt_vpn.build.plan import BuildOptions, plan

    out = []
    for e in entries:
        assert e.site is not None  # load_fleet(strict=True) raised otherwise
        for p in plan(e.site, BuildOptions()):
            out.append(
                {
                    "name": f"{e.site.name}/{p.name}",
                    "site_file": display_path(e.file),
                    "site": e.site.name,
                    "router": p.name,
                    "release": p.release,
                    "target": p.target,
                    "subtarget": p.subtarget,
                    "device": p.device,
                }
            )
    return out


class SiteReporter:
    """A build reporter that names each router as ``<site>/<router>``."""

    def __init__(self, inner: Reporter, site: str) -> None:
        self.inner = inner
        self.site = site

    def stage(self, router: str, message: str) -> None:
        """Forwarded with the site's name."""
        self.inner.stage(self._name(router), message)

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        """Forwarded with the site's name."""
        return self.inner.progress(self._name(router), name)

    def output(self, router: str, line: str) -> None:
        """Forwarded with the site's name."""
        self.inner.output(self._name(router), line)

    def warn(self, message: str) -> None:
        """Forwarded with the site's name."""
        self.inner.warn(f"{self.site}: {message}")

    def _name(self, router: str) -> str:
        return router if router == self.site else f"{self.site}/{router}"


@dataclass
class SiteOutcome:
    """How one site of the fleet went."""

    entry: SiteEntry
    results: list[RouterResult] = field(default_factory=list)
    error: OwrtVpnError | None = None  # the site failed as a whole (file, PKI, lock...)
    bundles: Any = None  # the site's bundle step (build/bundle_step.py), as `build` does

    @property
    def failed(self) -> int:
        """Failed units: routers, or 1 for a site that failed as a whole."""
        if self.error is not None or self.entry.error is not None:
            return max(1, len(self.results))
        return sum(1 for r in self.results if r.status == "failed")

    @property
    def units(self) -> int:
        """Routers of the site (1 for a site that could not be planned)."""
        return max(1, len(self.results))


def split_jobs(jobs: int, sites: int) -> tuple[int, int]:
    """(sites built at once, router builds per site) with their product <= ``jobs``."""
    jobs = max(1, jobs)
    at_once = max(1, min(jobs, sites))
    return at_once, max(1, jobs // at_once)


def build_fleet(
    entries: list[SiteEntry], options: BuildOptions, reporter: Reporter, bundles: bool = True
) -> list[SiteOutcome]:
    """Build every router of every site; one outcome per site, in file order.

    Like ``build`` of one site, each site's client bundles are written beside
    its firmware (``bundles=False``: ``--no-bundles``).
    """
    from owrt_vpn.build.bundle_step import refresh
    from owrt_vpn.build.runner import build

    if options.routers or options.target or options.subtarget or options.device or options.release:
        raise UsageError(
            "--all builds every router of every site as its site file says",
            hint="drop --router/--target/--subtarget/--device/--release, or build one site",
        )
    at_once, per_site = split_jobs(options.jobs, len(entries))
    site_options = dataclasses.replace(options, jobs=per_site)

    def one(entry: SiteEntry) -> SiteOutcome:
        outcome = SiteOutcome(entry)
        if entry.site is None:
            outcome.error = entry.error
            return outcome
        try:
            outcome.results = build(entry.site, site_options, SiteReporter(reporter, entry.label))
            if bundles and any(r.status != "failed" for r in outcome.results):
                outcome.bundles = refresh(entry.site, options.out)
        except OwrtVpnError as exc:
            outcome.error = exc
        return outcome

    if at_once == 1:
        return [one(e) for e in entries]
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="site") as pool:
        return list(pool.map(one, entries))


def fleet_json(outcomes: list[SiteOutcome]) -> dict[str, Any]:
    """The ``build --all --json`` document (see docs/json/build.schema.json)."""
    failed = sum(o.failed for o in outcomes)
    units = sum(o.units for o in outcomes)
    sites = []
    for o in outcomes:
        error = o.error or o.entry.error
        sites.append(
            {
                "site": o.entry.site.name if o.entry.site is not None else None,
                "site_file": display_path(o.entry.file),
                "ok": o.failed == 0,
                "error": error.message if error else None,
                "routers": [_router_json(r) for r in o.results],
            }
        )
        if o.bundles is not None:
            sites[-1]["bundles"] = o.bundles.to_json()
    return {"ok": failed == 0, "exit_code": batch_exit_code(failed, units), "sites": sites}


def _router_json(r: RouterResult) -> dict[str, Any]:
    """A router's entry, as in ``build --json`` of one site."""
    data: dict[str, Any] = {
        "router": r.router,
        "status": r.status,
        "dir": str(r.out_dir),
        "images": r.images,
        "seconds": round(r.seconds, 3),
        "error": r.error.message if r.error else None,
        "exit_code": r.error.exit_code if r.error else 0,
    }
    timings = getattr(r, "timings", None)  # make steps, when the build records them
    if isinstance(timings, dict):
        data["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return data


def batch_exit_code(failed: int, units: int) -> int:
    """As for flash: 0 all ok, 4 some failed, 1 all failed."""
    from owrt_vpn.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL

    if failed == 0:
        return EXIT_OK
    return EXIT_FAILURE if failed >= units else EXIT_PARTIAL
