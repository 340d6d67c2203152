"""One firmware build per router: inputs, ImageBuilder, dist layout, build-info, lock.

For each router: plan (site values, CLI overrides, defaults from
``profiles/``) -> input key (cheap file digests; "up to date" when it and the
images are unchanged) -> PKI material -> resolve + verify on the mirror ->
cached ImageBuilder -> overlay -> ``make manifest`` (the packages, known
before the image so the image can carry its own build-info) -> ``make
image`` -> ``dist/<site>/routers/<router>/`` via a temp dir renamed into
place. The lock (``owrt-vpn.lock``) is updated at the end, or checked with
``--locked``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from owrt_vpn import build_state, profiles
from owrt_vpn.build_output import build_info, expected_images, normalise_tree, why_text, write_dist
from owrt_vpn.build_state import BUILD_INFO, Lock, read_json
from owrt_vpn.errors import BuildError, ConfigError, OwrtVpnError, Problem, UsageError
from owrt_vpn.fsutil import sha256_file
from owrt_vpn.repro import canonical_json, source_date_epoch
from owrt_vpn.site import DEVICE_RE, RELEASE_RE, TARGET_RE, Router, Site

if TYPE_CHECKING:
    from owrt_vpn.backends import Backend
    from owrt_vpn.keys import Keyring
    from owrt_vpn.mirror import Resolved

DEFAULT_MIRROR = "https://downloads.openwrt.org"


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
    if not regex.match(value):
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
        _check(options.release, RELEASE_RE, "--release", "24.10.2, 24.10.x or snapshot")
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
            )
        )
    return plans


def replace_router(site: Site, router: Router) -> Site:
    """``site`` with ``router`` in place of the router of the same name."""
    routers = tuple(router if r.name == router.name else r for r in site.routers)
    return dataclasses.replace(site, routers=routers)


def inputs(p: RouterPlan, options: BuildOptions) -> dict[str, Any]:
    """Every input of a router build, as digests (the input key is their digest)."""
    return {
        "tool": build_state.tool_digest(),
        "site": sha256_file(p.site.path),
        "pki": build_state.pki_state_digest(p.site.pki_path, p.name),
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


# ------------------------------------------------------------------ the build


@dataclass
class _Context:
    options: BuildOptions
    reporter: Reporter
    backend: Backend
    keyring: Keyring | None
    pki: Any
    lock: Lock
    cache: Any


def build(
    site: Site, options: BuildOptions, reporter: Reporter | None = None
) -> list[RouterResult]:
    """Build the chosen routers; one result per router, in site order."""
    rep = reporter or NullReporter()
    if options.backend:
        settings = site.settings.model_copy(update={"backend": options.backend})
        site = dataclasses.replace(site, settings=settings)
    plans = plan(site, options)
    lock = Lock.load(site.path)
    results: dict[str, RouterResult] = {}
    todo: list[tuple[RouterPlan, dict[str, Any], str]] = []
    for p in plans:
        inp = inputs(p, options)
        current, why = build_state.up_to_date(p.out_dir, inp)
        if options.force:
            current, why = False, "--force"
        if not current:
            todo.append((p, inp, why))
            continue
        info = read_json(p.out_dir / BUILD_INFO) or {}
        res = RouterResult(p.name, "up-to-date", p.out_dir, "nothing changed")
        res.images = [str(i["name"]) for i in info.get("images", [])]
        res.lock_entry = Lock.entry(info)
        if options.locked:
            try:
                ib = res.lock_entry["imagebuilder"]
                lock.check_imagebuilder(p.name, str(ib["sha256"]), str(ib["name"]))
                lock.check_packages(p.name, res.lock_entry["packages"])
            except OwrtVpnError as exc:
                res.status, res.error, res.lock_entry = "failed", exc, None
        results[p.name] = res
    if todo:
        _build_all(site, todo, options, rep, lock, results)
    if not options.locked:
        changed = [lock.update(name, r.lock_entry) for name, r in results.items() if r.lock_entry]
        if any(changed):
            lock.save()
    return [results[p.name] for p in plans]


def _build_all(
    site: Site,
    todo: list[tuple[RouterPlan, dict[str, Any], str]],
    options: BuildOptions,
    rep: Reporter,
    lock: Lock,
    results: dict[str, RouterResult],
) -> None:
    from owrt_vpn.backends import get_backend
    from owrt_vpn.cache import Cache
    from owrt_vpn.keys import Keyring
    from owrt_vpn.pki import Pki

    backend = get_backend(
        site.settings.backend,
        container_image=options.container_image,
        container_network=options.container_network,
    )
    missing = [pr for pr in backend.prerequisites() if not pr.found]
    if missing:
        from owrt_vpn.backends.local import install_hint

        raise BuildError(
            "missing host tools for the ImageBuilder: " + ", ".join(m.command for m in missing),
            hint=install_hint(missing),
        )
    if options.insecure_skip_signature:
        keyring = None
        rep.warn(
            "--insecure-skip-signature: the ImageBuilder's signed checksums are NOT verified; "
            "anyone between you and the mirror could change the firmware (recorded in build-info)"
        )
    else:
        keyring = Keyring.load(options.trust_keys)
    pki = Pki.open(site)
    if not pki.exists:
        # Like `owrt-vpn bundle`: a first build creates the CA (asks for its
        # passphrase unless OWRT_VPN_CA_PASSPHRASE is set).
        created = pki.init(site)
        rep.stage(site.name, f"created the CA in {pki.root} (keep it private, back it up)")
        if created.passwords:
            rep.stage(site.name, f"generated EAP passwords in {pki.root / 'eap'}")
    ctx = _Context(options, rep, backend, keyring, pki, lock, Cache())
    ready: list[tuple[RouterPlan, str]] = []
    for p, _, why in todo:
        # PKI writes are serialised here, before any parallel work.
        try:
            report = pki.ensure_router(p.site, p.router)
            if report.issued:
                rep.stage(p.name, "issued " + ", ".join(report.issued))
            ready.append((p, why))
        except OwrtVpnError as exc:
            results[p.name] = RouterResult(p.name, "failed", p.out_dir, error=exc)

    def one(item: tuple[RouterPlan, str]) -> RouterResult:
        p, why = item
        t0 = time.monotonic()
        try:
            res = _build_router(ctx, p, why)
        except OwrtVpnError as exc:
            res = RouterResult(p.name, "failed", p.out_dir, error=exc)
        res.seconds = time.monotonic() - t0
        return res

    jobs = max(1, min(options.jobs, len(ready)))
    if jobs == 1:
        done = [one(item) for item in ready]
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="build") as pool:
            done = list(pool.map(one, ready))
    for res in done:
        results[res.router] = res


def _build_router(ctx: _Context, p: RouterPlan, why: str) -> RouterResult:
    from owrt_vpn import mirror
    from owrt_vpn.cache import Transport

    rep, opts = ctx.reporter, ctx.options
    rep.stage(p.name, f"building ({why})")
    transport = Transport()
    rep.stage(p.name, f"resolving {p.release} {p.target}/{p.subtarget} {p.device} on {opts.mirror}")
    res = mirror.resolve(
        opts.mirror, p.release, p.target, p.subtarget, p.device, ctx.keyring, transport
    )
    if res.signature.verified:
        rep.stage(
            p.name, f"sha256sums signed by key {res.signature.key_id} ({res.signature.key_comment})"
        )
    # A container backend runs an image that carries the ImageBuilder (issue 9).
    uses_archive = getattr(ctx.backend, "uses_archive", True)
    if opts.locked and uses_archive:
        ctx.lock.check_imagebuilder(p.name, res.archive_sha256, res.archive_name)
    if not DEVICE_RE.match(res.device):
        raise BuildError(f"profiles.json names an unusable profile id {res.device!r}")
    router = p.router.model_copy(update={"release": res.release, "device": res.device})
    site = replace_router(p.site, router)
    cache = ctx.cache
    if not uses_archive:
        tree = Path()
    elif cache.has_tree(res.archive_sha256):
        tree = cache.tree(
            cache.archive_path(res.archive_sha256, res.archive_name), res.archive_sha256
        )
    else:
        rep.stage(p.name, f"downloading {res.archive_name}")
        archive, _ = cache.fetch(
            res.archive_url,
            res.archive_sha256,
            res.archive_name,
            transport,
            rep.progress(p.name, res.archive_name),
        )
        rep.stage(p.name, "extracting the ImageBuilder")
        tree = cache.tree(archive, res.archive_sha256)
    p.log_path.parent.mkdir(parents=True, exist_ok=True)
    p.log_path.write_bytes(b"")
    with cache.work_dir() as work:
        return _make_and_collect(ctx, p, site, router, res, tree, work)


def _make_and_collect(
    ctx: _Context, p: RouterPlan, site: Site, router: Router, res: Resolved, tree: Path, work: Path
) -> RouterResult:
    from owrt_vpn import overlay, packages
    from owrt_vpn.backends import BuildRequest
    from owrt_vpn.manifest_cache import ManifestCache, manifest_key

    rep, opts = ctx.reporter, ctx.options
    rep.stage(p.name, "rendering the overlay")
    rendered = overlay.render(
        site, router, ctx.pki, work / "overlay", config_style=opts.config_style
    )
    epoch = source_date_epoch()
    for warning in rendered.warnings:
        rep.warn(f"{p.name}: {warning}")
    overlay_tar = work / "overlay.tar"
    overlay_sha = overlay.write_tarball(rendered.root, overlay_tar, epoch)
    style = rendered.config_style
    wanted = tuple(packages.package_list(site, router, style))
    disabled = tuple(packages.disabled_services(site, router, style))
    # The ImageBuilder sanitises EXTRA_IMAGE_NAME (lowercase, "_" and " " to
    # "-") before putting it in file names; do the same to know the names.
    extra = f"vpn-{router.name}".lower().replace("_", "-").replace(" ", "-")
    request = BuildRequest(
        imagebuilder=tree,
        imagebuilder_sha256=res.archive_sha256,
        profile=res.device,
        packages=wanted,
        disabled_services=disabled,
        extra_image_name=extra,
        expected_images=tuple(i["name"] for i in expected_images(res, extra)),
        work_dir=work / "ib",
        log_path=p.log_path.resolve(),
        echo=(lambda line: rep.output(p.name, line)),
        target=f"{res.target}/{res.subtarget}",
        release=res.release,
        stage=(lambda message: rep.stage(p.name, message)),
        progress=(lambda name: rep.progress(p.name, name)),
    )
    request.work_dir.mkdir()
    rep.stage(p.name, f"preparing the ImageBuilder ({ctx.backend.name} backend)")
    manifests = ManifestCache(ctx.cache.root)
    session = ctx.backend.open(request)
    try:
        # Container backends name the image they run (digest), pinned by the lock.
        identity: dict[str, Any] | None = getattr(session, "identity", None)
        if identity and opts.locked:
            ctx.lock.check_imagebuilder(p.name, identity["sha256"], identity["name"])
        key = manifest_key(ctx.backend.name, identity or res.archive_sha256, res.device, wanted)
        remembered = manifests.get(key)
        while True:
            if remembered is None:
                rep.stage(p.name, "resolving packages (make manifest)")
                predicted = session.manifest()
            else:
                rep.stage(p.name, "packages as confirmed by the last build (make manifest skipped)")
                predicted = remembered
            absent = [w for w in wanted if not w.startswith("-") and not _installed(w, predicted)]
            if absent:
                raise BuildError(
                    f"{p.name}: requested packages would not be installed: {', '.join(absent)}",
                    hint=f"see {p.log_path}",
                )
            if opts.locked:
                ctx.lock.check_packages(p.name, predicted)
            inp = inputs(p, opts)  # after the PKI was completed for this router
            info = build_info(
                p, inp, res, rendered.config_style, overlay_sha, wanted, disabled, predicted
            )
            info["imagebuilder"]["package_manager"] = session.package_manager
            if identity:  # the image's digest instead of the archive's sha256
                info["imagebuilder"] = dict(identity, package_manager=session.package_manager)
            rendered.add_file(overlay.BUILD_INFO, canonical_json(info) + b"\n", 0o644)
            normalise_tree(rendered.root, epoch)
            rep.stage(p.name, f"make image PROFILE={res.device} (log: {p.log_path})")
            result = session.image(rendered.root)
            if remembered is None or not result.installed or result.installed == predicted:
                break
            # The feeds moved on since that build: ask make manifest again, build again.
            manifests.forget(key)
            remembered = None
            rep.stage(p.name, "package versions changed since the last build: building again")
    finally:
        session.close()
    if result.installed and result.installed != predicted:
        raise BuildError(
            f"{p.name}: the image's package manifest differs from `make manifest`",
            hint=f"see {p.log_path}",
        )
    if result.installed and remembered is None:
        manifests.put(key, predicted)
    images: list[dict[str, Any]] = []
    for want, path in zip(expected_images(res, extra), result.images, strict=True):
        images.append(dict(want, sha256=sha256_file(path), size=path.stat().st_size))
    full = dict(info, images=images)
    write_dist(p, res, full, result.images, result.manifest, overlay_tar)
    rep.stage(p.name, f"done: {p.out_dir}")
    return RouterResult(
        p.name,
        "built",
        p.out_dir,
        reason=why_text(full),
        images=[str(i["name"]) for i in images],
        lock_entry=Lock.entry(full),
        timings=dict(result.timings),
    )


def _installed(name: str, installed: dict[str, str]) -> bool:
    # Libraries carry an ABI suffix in opkg manifests (libubox20240329).
    return name in installed or any(
        k.startswith(name) and k[len(name) :].isdigit() for k in installed
    )
