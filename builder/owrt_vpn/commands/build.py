"""`build`: the firmware of the site's routers (or of every site under a folder)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from owrt_vpn.profiles import DEFAULT_MIRROR
from owrt_vpn.ui.state import State, state

if TYPE_CHECKING:
    from owrt_vpn.build.bundle_step import BundleStep
    from owrt_vpn.build.plan import BuildOptions, Reporter, RouterResult


def register(app: typer.Typer) -> None:
    """Add `build`."""
    app.command("build")(build)


class _CliReporter:
    """Stages with elapsed time on stderr, one line each; a download's line counts its bytes.

    On a terminal the download line is redrawn in place (at most ten times a
    second, cut to the terminal's width) and ends when the download does, so
    nothing redraws during extraction or ``make image``; with several
    downloads at once, or not on a terminal (CI logs), only the stage lines.
    """

    def __init__(self, st: State) -> None:
        self.st = st
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._active = 0
        self._open: str | None = None  # the text of the download line being redrawn

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.t0:6.1f}s]"

    def _end_line(self) -> None:
        """Finish a download line in progress (called with the lock held)."""
        if self._open is not None:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = None

    def stage(self, router: str, message: str) -> None:
        with self._lock:
            self._end_line()
            self.st.info(f"{self._stamp()} {router}: {message}")

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        if self.st.quiet or self.st.json or not sys.stderr.isatty():
            return None
        import shutil

        width = max(20, shutil.get_terminal_size().columns - 1)
        started = time.monotonic()
        last = 0.0
        with self._lock:
            self._active += 1

        def update(done: int, total: int | None) -> None:
            nonlocal last
            now = time.monotonic()
            finished = total is not None and done >= total
            if not finished and now - last < 0.1:
                return
            last = now
            with self._lock:
                if self._active > 1:
                    # Several downloads at once: one line each is not possible.
                    self._active -= 1 if finished else 0
                    return
                size = f"{_size(done, total)}/{_size(total)}" if total else _size(done)
                pct = f" {100 * done // total:3d}%" if total else ""
                rate = _size(int(done / max(now - started, 1e-3)))
                # The name is on the stage line above ("downloading NAME").
                text = f"{self._stamp()} {router}: downloaded {size}{pct} ({rate}/s)"
                sys.stderr.write("\r" + text[:width] + "\x1b[K")
                sys.stderr.flush()
                self._open = text
                if finished:
                    self._end_line()
                    self._active -= 1

        return update

    def output(self, router: str, line: str) -> None:
        if self.st.verbose and not self.st.json:
            with self._lock:
                self._end_line()
                sys.stderr.write(f"{router} | {line}\n")

    def warn(self, message: str) -> None:
        with self._lock:
            self._end_line()
            self.st.warn(message)

    def close(self) -> None:
        with self._lock:
            self._end_line()


def _size(n: int, unit_of: int | None = None) -> str:
    """``n`` bytes in MiB or KiB (the unit ``unit_of`` would get, to read ``12.0/45.6 MiB``)."""
    if (unit_of if unit_of is not None else n) >= 1 << 20:
        return f"{n / (1 << 20):.1f}" + ("" if unit_of is not None else " MiB")
    return f"{n / 1024:.0f}" + ("" if unit_of is not None else " KiB")


def build(
    ctx: typer.Context,
    router: Annotated[
        list[str] | None,
        typer.Option("--router", "-r", metavar="NAME", help="Build only this router (repeatable)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="TARGET", help="Override the target (one-router builds), e.g. bcm53xx."
        ),
    ] = None,
    subtarget: Annotated[
        str | None,
        typer.Option(metavar="SUBTARGET", help="Override the subtarget [default: the target's]."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(metavar="PROFILE", help="Override the ImageBuilder profile, e.g. phicomm_k3."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(metavar="VERSION", help="Override the release: 24.10.2, 24.10.x, snapshot."),
    ] = None,
    mirror: Annotated[
        str,
        typer.Option(
            metavar="URL|DIR",
            envvar="OWRT_VPN_MIRROR",
            help="Download site or a local copy of it.",
        ),
    ] = DEFAULT_MIRROR,
    out: Annotated[Path, typer.Option(metavar="DIR", help="The dist root.")] = Path("dist"),
    jobs: Annotated[
        int, typer.Option(metavar="N", min=1, max=64, help="Routers built in parallel.")
    ] = 1,
    trust_key: Annotated[
        list[Path] | None,
        typer.Option(metavar="FILE", help="Also trust this usign public key (this build only)."),
    ] = None,
    insecure_skip_signature: Annotated[
        bool,
        typer.Option(
            "--insecure-skip-signature",
            help="Do NOT verify the signature of sha256sums (recorded in build-info).",
        ),
    ] = False,
    locked: Annotated[
        bool,
        typer.Option(
            help="Fail if the ImageBuilder or package versions differ from owrt-vpn.lock."
        ),
    ] = False,
    config_style: Annotated[
        str | None,
        typer.Option(metavar="auto|swanctl|ipsec", help="strongSwan config style on the router."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when nothing changed.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            metavar="local|docker",
            help="Where make runs (overrides the site's backend): this host or a container.",
        ),
    ] = None,
    container_image: Annotated[
        str | None,
        typer.Option(
            metavar="IMAGE",
            envvar="OWRT_VPN_CONTAINER_IMAGE",
            help="docker backend: image repository, template or reference "
            "[default: ghcr.io/openwrt/imagebuilder].",
        ),
    ] = None,
    container_network: Annotated[
        str | None,
        typer.Option(
            metavar="MODE",
            envvar="OWRT_VPN_CONTAINER_NETWORK",
            help="docker backend: container network, e.g. none [default: the engine's].",
        ),
    ] = None,
    no_bundles: Annotated[
        bool,
        typer.Option(
            "--no-bundles",
            help="Only firmware: do not write the client bundles into the dist root.",
        ),
    ] = False,
    all_sites: Annotated[
        Path | None,
        typer.Option(
            "--all",
            metavar="DIR",
            help="Build every site file under DIR (<DIR>/**/owrt-vpn.toml); --jobs spans sites.",
        ),
    ] = None,
) -> None:
    """Build the firmware of every router of the site (or the named ones) into dist/."""
    from owrt_vpn.build.plan import BuildOptions
    from owrt_vpn.build.runner import build as run_build
    from owrt_vpn.errors import ConfigError
    from owrt_vpn.imagebuilder.mirror import normalize_mirror
    from owrt_vpn.ui.outputs import check_dist_root

    st = state(ctx)
    site = st.load_site() if all_sites is None else None  # --all: the sites under DIR
    if site is not None:
        check_dist_root(site, out)  # folders under it are replaced: never the site's files
    if config_style not in (None, "auto", "swanctl", "ipsec"):
        raise ConfigError(f"--config-style: {config_style!r} is not auto, swanctl or ipsec")
    if backend not in (None, "local", "docker"):
        raise ConfigError(f"--backend: {backend!r} is not local or docker")
    options = BuildOptions(
        routers=tuple(router or ()),
        target=target,
        subtarget=subtarget,
        device=device,
        release=release,
        mirror=normalize_mirror(mirror),
        out=out,
        jobs=jobs,
        trust_keys=tuple(trust_key or ()),
        insecure_skip_signature=insecure_skip_signature,
        locked=locked,
        config_style=None if config_style in (None, "auto") else config_style,
        force=force,
        backend=backend,
        container_image=container_image,
        container_network=container_network,
    )
    reporter = _CliReporter(st)
    if all_sites is not None:  # fleet builds (issue 7): _build_all below, build/fleet.py
        try:
            _build_all(st, all_sites, options, reporter, bundles=not no_bundles)
        finally:
            reporter.close()
        return
    assert site is not None
    try:
        results = run_build(site, options, reporter)
    finally:
        reporter.close()
    step = None
    if not no_bundles and any(r.status != "failed" for r in results):
        from owrt_vpn.build.bundle_step import refresh

        step = refresh(site, out)
        for item in step.issued:
            st.info(f"issued {item}")
        if step.status == "skipped":
            st.warn(f"client bundles not written: {step.reason}")
    _tighten_dist(st, out / site.name)
    _finish(st, results, step)


def _tighten_dist(st: State, site_dist: Path, label: str = "") -> None:
    """Warn about (and repair) loose modes under dist/<site>: folders skipped as
    up to date keep a mode someone loosened since (build/dist_modes.py)."""
    from owrt_vpn.build.dist_modes import loose_modes

    for warning in loose_modes(site_dist, repair=True):
        st.warn(f"{label}{warning}")


def _finish(st: State, results: list[RouterResult], step: BundleStep | None = None) -> None:
    from owrt_vpn.errors import EXIT_FAILURE, EXIT_PARTIAL

    failed = [r for r in results if r.status == "failed"]
    if len(results) == 1 and failed and failed[0].error is not None:
        raise failed[0].error
    lines = []
    for r in results:
        if r.status == "up-to-date":
            lines.append(f"{r.router}: up to date ({r.out_dir})")
        elif r.status == "built":
            lines.append(f"{r.router}: built {r.reason} in {r.seconds:.1f} s -> {r.out_dir}")
            lines += [f"  {name}" for name in r.images]
        else:
            lines.append(f"{r.router}: FAILED")
    for r in failed:
        assert r.error is not None
        for line in r.error.lines():
            sys.stderr.write(f"error: {r.router}: {_unprefixed(r.router, line)}\n")
        if r.error.hint:
            sys.stderr.write(f"hint: {r.error.hint}\n")
    data = {
        "ok": not failed,
        "routers": [
            {
                "router": r.router,
                "status": r.status,
                "dir": str(r.out_dir),
                "images": r.images,
                "seconds": round(r.seconds, 3),
                "timings": {k: round(v, 3) for k, v in r.timings.items()},
                "error": r.error.message if r.error else None,
                "exit_code": r.error.exit_code if r.error else 0,
            }
            for r in results
        ],
    }
    if step is not None:
        data["bundles"] = step.to_json()
        if step.status == "written":
            lines.append(
                f"client bundles: {step.devices} device(s) in {step.clients} "
                "(their passwords: `owrt-vpn bundle --password-file FILE`)"
            )
        elif step.status == "up-to-date":
            lines.append(f"client bundles: up to date ({step.clients})")
    st.emit(data, "\n".join(lines))
    if failed:
        raise typer.Exit(EXIT_FAILURE if len(failed) == len(results) else EXIT_PARTIAL)


def _unprefixed(router: str, line: str) -> str:
    """``line`` without a leading ``<router>: `` (the caller prefixes the name once)."""
    return line[len(router) + 2 :] if line.startswith(f"{router}: ") else line


def _prefixed(label: str, line: str) -> str:
    """``<label>: line``, unless the line already starts with the site's path."""
    return line if line.startswith(label) else f"{label}: {line}"


def _build_all(
    st: State, root: Path, options: BuildOptions, reporter: Reporter, *, bundles: bool
) -> None:
    """`build --all DIR`: every router of every site file under DIR (and, as `build`
    does, each site's client bundles unless --no-bundles); exit as for flash."""
    from owrt_vpn.build.fleet import build_fleet, fleet_json, load_fleet
    from owrt_vpn.ui.outputs import check_dist_root

    entries = load_fleet(root, strict=False)
    for entry in entries:
        if entry.site is not None:
            check_dist_root(entry.site, options.out)
    outcomes = build_fleet(entries, options, reporter, bundles=bundles)
    data = fleet_json(outcomes)
    lines = []
    for o in outcomes:
        error = o.error or o.entry.error
        if error is not None:
            lines.append(f"{o.entry.label}: FAILED")
            for line in error.lines():
                sys.stderr.write(f"error: {_prefixed(o.entry.label, line)}\n")
            if error.hint:
                sys.stderr.write(f"hint: {error.hint}\n")
            continue
        for r in o.results:
            name = f"{o.entry.label}/{r.router}"
            if r.status == "up-to-date":
                lines.append(f"{name}: up to date ({r.out_dir})")
            elif r.status == "built":
                lines.append(f"{name}: built {r.reason} in {r.seconds:.1f} s -> {r.out_dir}")
            else:
                lines.append(f"{name}: FAILED")
                if r.error is not None:
                    message = _unprefixed(r.router, r.error.message)
                    sys.stderr.write(f"error: {name}: {message}\n")
                    if r.error.hint:
                        sys.stderr.write(f"hint: {r.error.hint}\n")
        if o.entry.site is not None:
            _tighten_dist(st, options.out / o.entry.site.name, f"{o.entry.label}: ")
        step = o.bundles
        if step is not None and step.status == "written":
            lines.append(
                f"{o.entry.label}: client bundles: {step.devices} device(s) in {step.clients}"
            )
        elif step is not None and step.status == "skipped":
            st.warn(f"{o.entry.label}: client bundles not written: {step.reason}")
    counts: dict[str, int] = {}
    for o in outcomes:
        for r in o.results:
            counts[r.status] = counts.get(r.status, 0) + 1
    failed_sites = sum(1 for o in outcomes if o.error is not None or o.entry.error is not None)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no router"
    if failed_sites:
        summary += f"; {failed_sites} site(s) failed as a whole"
    lines.append(f"{len(outcomes)} site(s): {summary}")
    st.emit(data, "\n".join(lines))
    if data["exit_code"]:
        raise typer.Exit(data["exit_code"])
