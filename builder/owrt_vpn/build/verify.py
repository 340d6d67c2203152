"""Reproducible rebuilds: rebuild what a dist root holds and compare it byte for byte.

``owrt-vpn verify`` takes every router build under ``<out>/<site>/routers/``
and every user's bundles under ``<out>/<site>/clients/``, and:

1. checks their recorded inputs against today's (the router's
   ``build-info.json`` inputs and the lock entry; a user's
   ``bundle-info.json``): site file, PKI, lock, owrt-vpn itself,
   SOURCE_DATE_EPOCH. Changed inputs are reported as such, not as a
   reproducibility failure, and that item is not rebuilt;
2. rebuilds the rest in a scratch dir through the same code as ``build``
   (:func:`owrt_vpn.build.runner.build` with ``--locked``: the ImageBuilder comes
   from the cache when it is there, and must be the one the lock pins) and
   :func:`owrt_vpn.bundles.writer.build`;
3. compares every file (images, overlay tarball, manifest, profile.json,
   sha256sums, build-info, bundles, zips) and says which differ and where.

Exit status (``VerifyReport.exit_code``): 0 all identical; 3 some artifact
differs; 1 nothing could be compared for some item (inputs changed, the
rebuild failed, no build-info) and nothing differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owrt_vpn.build.diff import DIFFOSCOPE_TIMEOUT, Difference, compare_trees
from owrt_vpn.build.plan import BuildOptions, NullReporter, Reporter, RouterPlan, inputs, plan
from owrt_vpn.build.state import (
    BUILD_INFO,
    Lock,
    changed_inputs,
)
from owrt_vpn.bundles.provenance import BUNDLE_INFO, BundleInputs
from owrt_vpn.errors import (
    EXIT_FAILURE,
    EXIT_INTEGRITY,
    EXIT_OK,
    IntegrityError,
    OwrtVpnError,
    UsageError,
)
from owrt_vpn.fsutil import read_json
from owrt_vpn.site.model import Site

IDENTICAL = "identical"
DIFFERS = "differs"
CHANGED = "inputs-changed"
FAILED = "failed"

# How a changed input (a key of build-info "inputs") is named to the user.
INPUT_LABELS = {
    "site": "site file",
    "pki": "PKI",
    "lock": "lock",
    "tool": "owrt-vpn itself",
    "source_date_epoch": "SOURCE_DATE_EPOCH",
    "backend": "backend",
    "mirror": "mirror",
    "signature": "signature check",
}


@dataclass(frozen=True)
class VerifyOptions:
    """The ``owrt-vpn verify`` options."""

    routers: tuple[str, ...] = ()
    out: Path = Path("dist")
    scratch: Path | None = None  # keep the rebuild there (else a temp dir, removed)
    trust_keys: tuple[Path, ...] = ()
    bundles: bool = True  # also the bundles (when no --router is named)
    jobs: int = 1
    diffoscope: bool = True
    diffoscope_timeout: float = DIFFOSCOPE_TIMEOUT


@dataclass
class ItemResult:
    """The verdict for one router build or one user's bundles."""

    kind: str  # "router" or "bundles"
    name: str  # the router's or the user's name
    status: str  # identical | differs | inputs-changed | failed
    changed_inputs: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    files: int = 0
    error: OwrtVpnError | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "changed_inputs": self.changed_inputs,
            "differences": [d.to_json() for d in self.differences],
            "files": self.files,
            "error": self.error.message if self.error else None,
            "hint": self.error.hint if self.error else None,
        }


@dataclass
class VerifyReport:
    """Everything ``verify`` found."""

    site: str
    dist: Path
    items: list[ItemResult]
    not_built: list[str] = field(default_factory=list)
    scratch: Path | None = None

    @property
    def exit_code(self) -> int:
        """3 if anything differs, else 1 if anything could not be compared, else 0."""
        statuses = {i.status for i in self.items}
        if DIFFERS in statuses:
            return EXIT_INTEGRITY
        if statuses - {IDENTICAL} or not self.items:
            return EXIT_FAILURE
        return EXIT_OK


# ------------------------------------------------------------------ verify


OLDER_SITE = "site file (recorded by an older owrt-vpn, which digested the whole file)"
# What changed in the site file, by group of the per-router / per-user digest.
SITE_LABELS = {
    "site": OLDER_SITE,
    "site.sha256": OLDER_SITE,
    "site.settings": "site file ([site] settings)",
    "site.router": "site file (this router's table)",
    "site.users": "site file (the users and devices on this router)",
    "site.user": "site file (this user and devices)",
    "site.routers": "site file (the user's routers)",
}


def _label(key: str) -> str:
    if key in SITE_LABELS:
        return SITE_LABELS[key]
    head = key.split(".", 1)[0]
    label = INPUT_LABELS.get(head, head)
    return f"{label} ({key})" if head == "tool" else label


def _labels(keys: Sequence[str]) -> list[str]:
    if "site.sha256" in keys:  # an older record: its site groups are all "new"
        keys = [k for k in keys if not k.startswith("site.") or k == "site.sha256"]
    return list(dict.fromkeys(_label(k) for k in keys))


@contextlib.contextmanager
def _scratch(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
            raise UsageError(
                f"--scratch {keep}: exists and is not an empty directory",
                hint="name a new directory: the rebuild is written (and kept) there",
            )
        keep.mkdir(parents=True, exist_ok=True)
        os.chmod(keep, 0o700)  # the rebuilt images and bundles hold keys, whatever the umask
        yield keep
        return
    tmp = Path(tempfile.mkdtemp(prefix="owrt-vpn-verify-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _build_epoch(epochs: set[int]) -> Iterator[None]:
    """Rebuild with the builds' SOURCE_DATE_EPOCH when the environment names none.

    A CI build may have set it (e.g. to the commit time); a later ``verify``
    on a workstation then reuses the recorded value instead of reporting a
    changed input. Set in the environment because every stage reads it there.
    """
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    if (previous or "").strip().isdigit() or len(epochs) != 1:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = str(next(iter(epochs)))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def _subdirs(path: Path) -> list[str]:
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def verify(site: Site, opts: VerifyOptions, reporter: Reporter | None = None) -> VerifyReport:
    """Rebuild the routers and bundles found in ``opts.out`` and compare them byte for byte."""
    rep = reporter or NullReporter()
    dist = opts.out / site.name
    built = _subdirs(dist / "routers")
    if opts.routers:
        for name in opts.routers:
            site.router(name)  # ConfigError with a "did you mean" for a typo
        missing = [n for n in opts.routers if n not in built]
        if missing:
            raise UsageError(
                f"no build of {', '.join(missing)} in {dist / 'routers'}",
                hint="build it first (owrt-vpn build), or pass the --out it was built into",
            )
        names = list(dict.fromkeys(opts.routers))
    else:
        names = built
    users = _subdirs(dist / "clients") if opts.bundles and not opts.routers else []
    if not names and not users:
        raise UsageError(
            f"{dist}: nothing to verify (no router build, no bundles)",
            hint="run `owrt-vpn build` / `owrt-vpn bundle` first, or pass --out DIR",
        )
    infos = {n: read_json(dist / "routers" / n / BUILD_INFO) for n in names}
    binfos = {u: read_json(dist / "clients" / u / BUNDLE_INFO) for u in users}
    epochs = {
        int(i["inputs"]["source_date_epoch"])
        for i in infos.values()
        if i
        and isinstance(i.get("inputs"), dict)
        and isinstance(i["inputs"].get("source_date_epoch"), int)
    } | {
        int(b["source_date_epoch"])
        for b in binfos.values()
        if b and isinstance(b.get("source_date_epoch"), int)
    }
    report = VerifyReport(site.name, dist, [], scratch=opts.scratch)
    if not opts.routers:
        report.not_built = [r.name for r in site.routers if r.name not in built]
    with _scratch(opts.scratch) as work, _build_epoch(epochs):
        report.items += _verify_routers(site, opts, names, infos, work, rep)
        report.items += _verify_bundles(site, opts, users, binfos, work, rep)
    return report


# ------------------------------------------------------------------ routers


def _backend_options(site: Site, info: dict[str, Any]) -> dict[str, Any]:
    """``--backend``/``--container-image`` that the recorded build used, when not the site's."""
    backend = info.get("inputs", {}).get("backend")
    if not backend or backend == site.settings.backend:
        return {}
    out: dict[str, Any] = {"backend": backend}
    ib = info.get("imagebuilder")
    if isinstance(ib, dict) and ib.get("backend") == "docker":
        # The image as recorded, pinned by digest when the build knew one.
        ref = ib.get("digest") if "@sha256:" in str(ib.get("digest", "")) else ib.get("name")
        if ref:
            out["container_image"] = str(ref)
    return out


def _rebuild_options(
    site: Site, name: str, info: dict[str, Any], opts: VerifyOptions, work: Path
) -> BuildOptions:
    """The build options that reproduce the recorded build of ``name``."""
    rec: dict[str, Any] = info["inputs"]
    base = BuildOptions(
        **_backend_options(site, info),
        routers=(name,),
        mirror=str(rec.get("mirror")),
        out=work,
        jobs=opts.jobs,
        trust_keys=opts.trust_keys,
        insecure_skip_signature=rec.get("signature") == "skipped",
        locked=True,  # the ImageBuilder and package versions the lock pins, and no lock write
        config_style=rec.get("config_style"),
        force=True,
    )
    p0 = plan(site, base)[0]
    recorded = (rec.get("release"), rec.get("target"), rec.get("subtarget"), rec.get("device"))
    if (p0.release, p0.target, p0.subtarget, p0.device) == recorded:
        return base
    # Built with --target/--device/--release overrides (a one-router site).
    return dataclasses.replace(
        base,
        release=rec.get("release"),
        target=rec.get("target"),
        subtarget=rec.get("subtarget"),
        device=rec.get("device"),
    )


def _router_inputs(
    site: Site, name: str, info: dict[str, Any] | None, lock: Lock, opts: VerifyOptions, work: Path
) -> tuple[ItemResult | None, BuildOptions | None]:
    """(a verdict without rebuilding, or the options to rebuild with)."""
    where = opts.out / site.name / "routers" / name / BUILD_INFO
    rec = info.get("inputs") if info else None
    if not info or not isinstance(rec, dict):
        error = IntegrityError(f"{where}: missing or unreadable", hint="build the router again")
        return ItemResult("router", name, FAILED, error=error), None
    if name not in {r.name for r in site.routers}:
        return ItemResult("router", name, CHANGED, ["site file (the router is gone)"]), None
    try:
        bopts = _rebuild_options(site, name, info, opts, work)
        # As build() does with --backend: the override is the site's backend for the inputs.
        effective = site
        if bopts.backend:
            settings = site.settings.model_copy(update={"backend": bopts.backend})
            effective = dataclasses.replace(site, settings=settings)
        p: RouterPlan = plan(effective, bopts)[0]
        now = inputs(p, bopts)
    except OwrtVpnError as exc:
        return ItemResult("router", name, FAILED, error=exc), None
    changed = changed_inputs(rec, now)
    entry = lock.overrides.get(name) if p.override else lock.routers.get(name)
    if entry != Lock.entry(info):
        changed.append("lock")
    if changed:
        return ItemResult("router", name, CHANGED, _labels(changed)), None
    return None, bopts


def _verify_routers(
    site: Site,
    opts: VerifyOptions,
    names: list[str],
    infos: dict[str, dict[str, Any] | None],
    work: Path,
    rep: Reporter,
) -> list[ItemResult]:
    from owrt_vpn.build.runner import build

    if not names:
        return []
    lock = Lock.load(site.path)
    results: dict[str, ItemResult] = {}
    groups: dict[BuildOptions, list[str]] = {}
    for name in names:
        verdict, bopts = _router_inputs(site, name, infos[name], lock, opts, work)
        if verdict is not None:
            results[name] = verdict
            if verdict.status == CHANGED:
                rep.stage(
                    name, "inputs changed since the build: " + ", ".join(verdict.changed_inputs)
                )
            continue
        assert bopts is not None
        groups.setdefault(dataclasses.replace(bopts, routers=()), []).append(name)
    for key, group in groups.items():
        rep.stage(site.name, f"rebuilding {', '.join(group)} in {work}")
        for res in build(site, dataclasses.replace(key, routers=tuple(group)), rep):
            if res.status == "failed":
                results[res.router] = ItemResult("router", res.router, FAILED, error=res.error)
                continue
            label = f"{site.name}/routers/{res.router}"
            results[res.router] = _compared("router", res.router, label, opts, work)
    return [results[n] for n in names]


def _compared(kind: str, name: str, label: str, opts: VerifyOptions, work: Path) -> ItemResult:
    """The verdict on ``label`` (a folder below the dist root) against its rebuild in ``work``."""
    count, diffs = compare_trees(
        opts.out / label,
        work / label,
        label,
        diffoscope=opts.diffoscope,
        timeout=opts.diffoscope_timeout,
    )
    return ItemResult(kind, name, DIFFERS if diffs else IDENTICAL, [], diffs, count)


# ------------------------------------------------------------------ bundles


def _verify_bundles(
    site: Site,
    opts: VerifyOptions,
    users: list[str],
    binfos: dict[str, dict[str, Any] | None],
    work: Path,
    rep: Reporter,
) -> list[ItemResult]:
    if not users:
        return []
    results: dict[str, ItemResult] = {}
    todo: list[str] = []
    known = {u.name for u in site.users}
    inputs = BundleInputs(site)
    for user in users:
        info = binfos[user]
        if user not in known:
            results[user] = ItemResult("bundles", user, CHANGED, ["site file (the user is gone)"])
        elif info is None:
            results[user] = ItemResult(
                "bundles",
                user,
                CHANGED,
                [f"unknown ({BUNDLE_INFO} missing: made by an older owrt-vpn?)"],
                error=OwrtVpnError(
                    f"{user}: no {BUNDLE_INFO}", hint=f"run `owrt-vpn bundle {user}` again"
                ),
            )
        else:
            changed = changed_inputs(info, inputs.of(user))
            if changed:
                results[user] = ItemResult("bundles", user, CHANGED, _labels(changed))
            else:
                todo.append(user)
    if todo:
        rep.stage(site.name, f"rebuilding the bundles of {', '.join(todo)} in {work}")
        try:
            _rebuild_bundles(site, todo, work)
        except OwrtVpnError as exc:
            for user in todo:
                results[user] = ItemResult("bundles", user, FAILED, error=exc)
            todo = []
    for user in todo:
        results[user] = _compared("bundles", user, f"{site.name}/clients/{user}", opts, work)
    return [results[u] for u in users]


def _rebuild_bundles(site: Site, users: list[str], work: Path) -> None:
    from owrt_vpn.bundles import writer as bundles
    from owrt_vpn.pki.authority import Pki

    pki = Pki.open(site)
    if not pki.exists:
        raise OwrtVpnError(f"{site.pki_path}: no PKI", hint="restore the PKI directory")
    # Read-only: no Pki.ensure here, the PKI must already hold what the bundles used.
    bundles.build(site, pki, work, users)  # with each user's bundle-info.json
