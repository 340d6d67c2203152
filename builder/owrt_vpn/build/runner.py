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
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owrt_vpn.build import state as build_state
from owrt_vpn.build.output import build_info, expected_images, normalise_tree, why_text, write_dist
from owrt_vpn.build.packages import beyond_text, too_big_hint
from owrt_vpn.build.plan import (
    BuildOptions,
    NullReporter,
    Reporter,
    RouterPlan,
    RouterResult,
    inputs,
    plan,
    replace_router,
)
from owrt_vpn.build.state import BUILD_INFO, Lock
from owrt_vpn.errors import BuildError, ConfigError, OwrtVpnError, Problem, did_you_mean
from owrt_vpn.fsutil import held_lock, read_json, sha256_file
from owrt_vpn.repro import canonical_json, source_date_epoch
from owrt_vpn.site.keys import router_key
from owrt_vpn.site.model import DEVICE_RE, Router, Site

if TYPE_CHECKING:
    from owrt_vpn.imagebuilder.backends.base import Backend
    from owrt_vpn.imagebuilder.keys import Keyring
    from owrt_vpn.imagebuilder.mirror import Resolved


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
    dist = options.out / site.name
    # One build of a dist root at a time (PKI, dist/ and the lock file are
    # shared): a second build waits and says so, then finds the first's work.
    with held_lock(
        dist_lock_path(dist), lambda: rep.stage(site.name, f"waiting for another build of {dist}")
    ):
        return _build_locked(site, plans, options, rep)


def dist_lock_path(dist: Path) -> Path:
    """The lock file (in the cache, never in the site folder) of one dist root."""
    from owrt_vpn.imagebuilder.cache import cache_root

    key = hashlib.sha256(os.path.realpath(dist).encode()).hexdigest()[:32]
    return cache_root() / "locks" / f"dist-{key}.lock"


def _build_locked(
    site: Site, plans: list[RouterPlan], options: BuildOptions, rep: Reporter
) -> list[RouterResult]:
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
                e, ib = res.lock_entry, res.lock_entry["imagebuilder"]
                lock.check_build(p.name, e["release"], e["target"], e["device"], p.override)
                lock.check_imagebuilder(p.name, str(ib["sha256"]), str(ib["name"]), p.override)
                lock.check_packages(p.name, res.lock_entry["packages"], p.override)
            except OwrtVpnError as exc:
                res.status, res.error, res.lock_entry = "failed", exc, None
        results[p.name] = res
    if todo:
        _build_all(site, todo, options, rep, lock, results)
    if not options.locked:
        overridden = {p.name for p in plans if p.override}
        changed = [
            lock.update(name, r.lock_entry, name in overridden)
            for name, r in results.items()
            if r.lock_entry
        ]
        for name in sorted(overridden & {n for n, r in results.items() if r.lock_entry}):
            rep.warn(
                f"{name}: a one-off build with overrides: recorded under overrides.{name} in "
                f"{lock.path.name}; the site's pinned build of {name} is unchanged"
            )
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
    from owrt_vpn.imagebuilder.backends.registry import get_backend
    from owrt_vpn.imagebuilder.cache import Cache
    from owrt_vpn.imagebuilder.keys import Keyring
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.pki.policy import refuse_new_ca
    from owrt_vpn.pki.store import check_passphrase_source

    backend = get_backend(
        site.settings.backend,
        container_image=options.container_image,
        container_network=options.container_network,
    )
    missing = [pr for pr in backend.prerequisites() if not pr.found]
    if missing:
        from owrt_vpn.imagebuilder.backends.local import install_hint

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
        # Refuse a new CA (or one without a passphrase) before any download.
        refuse_new_ca(pki.root, lock.path, options.out / site.name)
        check_passphrase_source(new=True)

    # Resolve every router on the mirror first (signed indexes, nothing
    # written): a release or device the mirror lacks must fail before the
    # first write, so that exit 2/3 leaves no CA or certificates behind.
    def resolve(item: tuple[RouterPlan, dict[str, Any], str]) -> Resolved | RouterResult:
        p, _, why = item
        try:
            return _resolve(options, rep, keyring, lock, p, why)
        except OwrtVpnError as exc:
            return RouterResult(p.name, "failed", p.out_dir, error=exc)

    with ThreadPoolExecutor(max_workers=max(1, min(options.jobs, len(todo)))) as pool:
        outcomes = list(pool.map(resolve, todo))
    resolved: dict[str, Resolved] = {}
    for (p, _, _why), out in zip(todo, outcomes, strict=True):
        if isinstance(out, RouterResult):
            results[p.name] = out
        else:
            resolved[p.name] = out
    if not resolved:
        return
    if not pki.exists:
        # Like `owrt-vpn bundle`: a first build creates the CA (asks for its
        # passphrase unless OWRT_VPN_CA_PASSPHRASE is set). Only for a site
        # never built: a new CA would silently invalidate every device.
        created = pki.init(site)
        rep.stage(site.name, f"created the CA in {pki.root} (keep it private, back it up)")
        if created.passwords:
            rep.stage(site.name, f"generated EAP passwords in {pki.root / 'eap'}")
    ctx = _Context(options, rep, backend, keyring, pki, lock, Cache())
    ready: list[tuple[RouterPlan, Resolved]] = []
    for p, _, _why in todo:
        if p.name not in resolved:
            continue
        # PKI writes are serialised here, before any parallel work.
        try:
            report = pki.ensure_router(p.site, p.router)
            if report.issued:
                rep.stage(p.name, "issued " + ", ".join(report.issued))
            ready.append((p, resolved[p.name]))
        except OwrtVpnError as exc:
            results[p.name] = RouterResult(p.name, "failed", p.out_dir, error=exc)

    def one(item: tuple[RouterPlan, Resolved]) -> RouterResult:
        p, resolution = item
        t0 = time.monotonic()
        try:
            res = _build_router(ctx, p, resolution)
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


def _resolve(
    opts: BuildOptions, rep: Reporter, keyring: Keyring | None, lock: Lock, p: RouterPlan, why: str
) -> Resolved:
    from owrt_vpn.imagebuilder import mirror, release_check
    from owrt_vpn.imagebuilder.cache import Transport

    rep.stage(p.name, f"building ({why})")
    rep.stage(p.name, f"resolving {p.release} {p.target}/{p.subtarget} {p.device} on {opts.mirror}")
    res = mirror.resolve(
        opts.mirror, p.release, p.target, p.subtarget, p.device, keyring, Transport()
    )
    if res.signature.verified:
        rep.stage(
            p.name, f"sha256sums signed by key {res.signature.key_id} ({res.signature.key_comment})"
        )
    # A signature proves the files are OpenWrt's, not that they are this
    # release: refuse another release's files served under its name.
    source = release_check.series_source(p.release, res.release, opts.mirror)
    if source:
        rep.stage(p.name, source)
    # An override build (--release/--target/--device) is another build,
    # pinned by its own lock entry (under "overrides").
    pinned = (lock.overrides if p.override else lock.routers).get(p.name) or {}
    release_check.check_not_older(
        p.name, p.release, res.release, pinned.get("release"), opts.mirror
    )
    release_check.check_release(res)
    if opts.locked:
        target = f"{res.target}/{res.subtarget}"
        lock.check_build(p.name, res.release, target, res.device, p.override)
    return res


def _build_router(ctx: _Context, p: RouterPlan, res: Resolved) -> RouterResult:
    from owrt_vpn.imagebuilder import metadata
    from owrt_vpn.imagebuilder.cache import Transport

    rep, opts = ctx.reporter, ctx.options
    transport = Transport()
    if res.signature.verified:
        # For `check` before the next download (verified data only).
        metadata.remember(
            ctx.cache.root,
            res.release,
            res.target,
            res.subtarget,
            profiles=list(res.profile_ids) or None,
            default_packages=[str(x) for x in res.profiles_meta.get("default_packages", [])],
        )
    uses_archive = ctx.backend.uses_archive
    if opts.locked and uses_archive:
        ctx.lock.check_imagebuilder(
            p.name, res.archive_sha256, res.archive_name, p.override, res.version_code
        )
    if not DEVICE_RE.fullmatch(res.device):
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
    from owrt_vpn.imagebuilder import metadata, release_check
    from owrt_vpn.imagebuilder.backends.base import BuildRequest
    from owrt_vpn.imagebuilder.manifests import ManifestCache, manifest_key
    from owrt_vpn.render import overlay, packages

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
    pk = packages.image_packages(site, router, style)
    wanted = pk.request
    disabled = tuple(packages.disabled_services(site, router, style))
    defaults = {str(x) for x in res.profiles_meta.get("default_packages", [])}
    defaults |= {str(x) for x in res.profile.get("device_packages", [])}
    _check_conflicts(p, site, pk, defaults)
    for name in packages.idle_removals(pk, defaults, router):
        rep.warn(
            f'{p.name}: {_package_key(site, router, "-" + name)}: "-{name}" removes nothing: '
            f"{name} is not a default package of {res.device}"
            + did_you_mean(name, sorted(defaults))
        )
    beyond = pk.beyond_profile()
    rep.stage(p.name, "beyond the device profile: " + beyond_text(beyond))
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
        too_big_hint=too_big_hint(site, router, pk),
    )
    request.work_dir.mkdir()
    rep.stage(p.name, f"preparing the ImageBuilder ({ctx.backend.name} backend)")
    manifests = ManifestCache(ctx.cache.root)
    session = ctx.backend.open(request)
    try:
        # Container backends name the image they run (digest), pinned by the lock.
        identity = session.identity
        if identity and opts.locked:
            ctx.lock.check_imagebuilder(p.name, identity["sha256"], identity["name"], p.override)
        if pk.added:
            index = session.package_index()
            if index is not None and res.signature.verified:
                metadata.remember(
                    ctx.cache.root, res.release, res.target, res.subtarget, packages=list(index)
                )
            _check_index(p, site, router, pk, index, res)
        key = manifest_key(ctx.backend.name, identity or res.archive_sha256, res.device, wanted)
        remembered = manifests.get(key)
        revision_checked = False
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
                ctx.lock.check_packages(p.name, predicted, p.override)
            if not revision_checked:
                # After make manifest (its errors come first), before make image.
                table = ctx.lock.overrides if p.override else ctx.lock.routers
                pinned = table.get(p.name) or {}
                release_check.check_revision(
                    res, session.info().revision, pinned.get("revision") if opts.locked else None
                )
                revision_checked = True
            inp = inputs(p, opts)  # after the PKI was completed for this router
            info = build_info(
                p, inp, res, rendered.config_style, overlay_sha, wanted, disabled, predicted
            )
            info["packages"]["beyond_profile"] = beyond
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
    write_dist(p, res, full, result.images, result.manifest, overlay_tar, extra)
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


def _check_conflicts(p: RouterPlan, site: Site, pk: Any, defaults: set[str]) -> None:
    from owrt_vpn.render import packages

    clashes = packages.conflicts(pk, defaults)
    if clashes:
        raise ConfigError(
            [
                Problem(
                    site.path.name,
                    _package_key(site, p.router, added),
                    f"{added} replaces {default}, a default package of {p.device}: "
                    f'add "-{default}" to remove it (they conflict)',
                )
                for added, default in clashes
            ]
        )


def _check_index(
    p: RouterPlan,
    site: Site,
    router: Router,
    pk: Any,
    index: dict[str, int] | None,
    res: Resolved,
) -> None:
    """ConfigError for extra_packages the release's package index does not have."""
    if index is None:
        return  # an ImageBuilder without `make package_list`: make image will say
    problems = [
        Problem(
            site.path.name,
            _package_key(site, router, name),
            f"{name!r} is not a package of OpenWrt {res.release} {res.target}/{res.subtarget}"
            + did_you_mean(name, list(index)),
        )
        for name in pk.added
        if name not in index
    ]
    if problems:
        raise ConfigError(problems, hint="`owrt-vpn packages` lists what the image gets")


def _package_key(site: Site, router: Router, name: str) -> str:
    """The site key that asked for ``name`` (the router's list wins)."""
    if name in router.extra_packages:
        return f"{router_key(router)}.extra_packages"
    return "site.extra_packages"


def _installed(name: str, installed: dict[str, str]) -> bool:
    # Libraries carry an ABI suffix in opkg manifests (libubox20240329).
    return name in installed or any(
        k.startswith(name) and k[len(name) :].isdigit() for k in installed
    )
