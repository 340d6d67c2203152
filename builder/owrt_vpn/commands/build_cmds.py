"""`build` (firmware per router), `keys add|list|remove` (signing keys), `doctor` (host tools)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.cli import State, state

if TYPE_CHECKING:
    from owrt_vpn.build import RouterResult
    from owrt_vpn.bundle_step import BundleStep

DEFAULT_MIRROR = "https://downloads.openwrt.org"

keys_app = typer.Typer(
    help="The usign keys that verify OpenWrt downloads (shipped + your own).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `build`, `keys` and `doctor`."""
    app.command("build")(build)
    app.add_typer(keys_app, name="keys")
    app.command("doctor")(doctor)


# ---------------------------------------------------------------------- build


class _CliReporter:
    """Stages with elapsed time on stderr, a rich progress bar for downloads."""

    def __init__(self, st: State) -> None:
        self.st = st
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._progress: Any = None

    def stage(self, router: str, message: str) -> None:
        with self._lock:
            self.st.info(f"[{time.monotonic() - self.t0:6.1f}s] {router}: {message}")

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        if self.st.quiet or self.st.json or not sys.stderr.isatty():
            return None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    transient=True,
                )
                self._progress.start()
            task = self._progress.add_task(f"{router}: {name[:48]}", total=None)

        def update(done: int, total: int | None) -> None:
            self._progress.update(task, completed=done, total=total)

        return update

    def output(self, router: str, line: str) -> None:
        if self.st.verbose and not self.st.json:
            with self._lock:
                sys.stderr.write(f"{router} | {line}\n")

    def warn(self, message: str) -> None:
        with self._lock:
            self.st.warn(message)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def build(
    ctx: typer.Context,
    router: Annotated[
        list[str] | None,
        typer.Option("--router", "-r", metavar="NAME", help="Build only this router (repeatable)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(metavar="TARGET", help="Override the target (one-router builds): bcm53xx..."),
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
    from owrt_vpn.build import BuildOptions
    from owrt_vpn.build import build as run_build
    from owrt_vpn.errors import ConfigError
    from owrt_vpn.mirror import normalize_mirror

    st = state(ctx)
    site = st.load_site() if all_sites is None else None  # --all: the sites under DIR
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
    if all_sites is not None:  # fleet builds (issue 7): commands/verify_cmds.py, fleet.py
        from owrt_vpn.commands.verify_cmds import build_all

        try:
            build_all(st, all_sites, options, reporter)
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
        from owrt_vpn.bundle_step import refresh

        step = refresh(site, out)
        for item in step.issued:
            st.info(f"issued {item}")
        if step.status == "skipped":
            st.warn(f"client bundles not written: {step.reason}")
    _finish(st, results, step)


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
            sys.stderr.write(f"error: {r.router}: {line}\n")
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


# ---------------------------------------------------------------------- keys


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List the trusted keys: OpenWrt's (with their source) and yours."""
    from owrt_vpn import keys

    st = state(ctx)
    items = [(k, "openwrt") for k in keys.shipped_keys()] + [(k, "user") for k in keys.user_keys()]
    data = [
        {
            "key_id": k.key_id,
            "kind": kind,
            "comment": k.comment,
            "source": k.source or k.origin.removeprefix(f"{kind} "),
        }
        for k, kind in items
    ]
    human = "\n".join(f"{d['key_id']}  {d['kind']:<7}  {d['comment']}" for d in data)
    human += f"\nuser keys live in {keys.user_keys_dir()}"
    st.emit({"ok": True, "keys": data}, human)


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A usign/signify public key file.")],
) -> None:
    """Trust a usign public key for future builds (check it on OpenWrt's signatures page first)."""
    from owrt_vpn import keys

    st = state(ctx)
    key = keys.add_user_key(file)
    st.emit(
        {"ok": True, "key_id": key.key_id, "comment": key.comment},
        f"added key {key.key_id} ({key.comment})\n"
        f"make sure it is listed on {keys.SIGNATURES_PAGE} (or is your own mirror's key)",
    )


@keys_app.command("remove")
def keys_remove(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="16 hex digits, see `keys list`.")
    ],
) -> None:
    """Stop trusting a key you added."""
    from owrt_vpn import keys

    st = state(ctx)
    path = keys.remove_user_key(key_id)
    st.emit({"ok": True, "key_id": key_id.lower(), "removed": str(path)}, f"removed {path}")


# ---------------------------------------------------------------------- doctor


def doctor(
    ctx: typer.Context,
    router: Annotated[
        str | None,
        typer.Option(
            "--router",
            metavar="NAME",
            help="Check this live router over SSH instead (firewall, ports, plugins, "
            "modules, certificate, CRL).",
        ),
    ] = None,
) -> None:
    """Check the host tools the ImageBuilder needs, and where the cache and keys are."""
    if router is not None:
        from owrt_vpn.commands.push_cmds import doctor_router

        doctor_router(ctx, router)  # raises typer.Exit with the checks' status
        return
    from owrt_vpn import keys
    from owrt_vpn.backends.local import LocalBackend, install_hint
    from owrt_vpn.cache import cache_root
    from owrt_vpn.errors import EXIT_FAILURE, BuildError

    st = state(ctx)
    prereqs = LocalBackend().prerequisites()
    missing = [p for p in prereqs if not p.found]
    lines = [f"{'ok' if p.found else 'MISSING':<8} {p.command}" for p in prereqs]
    lines.append(f"cache    {cache_root()}  (set OWRT_VPN_CACHE to move it)")
    lines.append(
        f"keys     {len(keys.shipped_keys())} OpenWrt, {len(keys.user_keys())} yours "
        f"({keys.user_keys_dir()})"
    )
    # The docker backend's engine (DOCKER_HOST): informative, never a failure here.
    from owrt_vpn.backends.engine import describe, engine_status

    engine = engine_status()
    lines.append(f"engine   {describe(engine)}")
    hint = install_hint(missing) if missing else None
    data = {
        "ok": not missing,
        "tools": {p.command: p.found for p in prereqs},
        "missing": [p.command for p in missing],
        "hint": hint,
        "cache": str(cache_root()),
        "container_engine": engine,
    }
    if missing and st.json:
        st.emit(data)
        raise typer.Exit(EXIT_FAILURE)
    st.emit(data, "\n".join(lines))
    if missing:
        raise BuildError(
            "missing host tools for the ImageBuilder: " + ", ".join(p.command for p in missing),
            hint=hint,
        )
