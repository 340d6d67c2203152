"""Build backends: where ``make image`` runs (a local ImageBuilder copy, or a container).

A backend gets a :class:`BuildRequest` (everything ``make`` needs, nothing
about VPNs) and opens a :class:`BuildSession` in a fresh ImageBuilder: the
session first predicts the installed packages (``make manifest``), then
builds the images (``make image``). Both steps use the same make variables,
so a container backend only changes where the commands run; its
:attr:`BackendResult.identity` then records an image digest instead of the
archive sha256.

ImageBuilder output is turned into specific :class:`BuildError` s here,
shared by every backend: unknown profile, unknown packages (opkg and apk
wording), unsatisfiable dependencies (opkg), conflicts, image or kernel too
big, out of disk space (apk).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from owrt_vpn.errors import BuildError, closest


@dataclass(frozen=True)
class Prerequisite:
    """A host tool a backend needs, with the packages that provide it."""

    command: str
    apt: str
    dnf: str
    found: bool


@dataclass(frozen=True)
class BuildRequest:
    """One ``make image`` run, backend-neutral."""

    imagebuilder: Path  # pristine extracted tree (local) / unused by container backends
    imagebuilder_sha256: str
    profile: str
    packages: tuple[str, ...]
    disabled_services: tuple[str, ...]
    extra_image_name: str
    expected_images: tuple[str, ...]  # file names make must leave in BIN_DIR
    work_dir: Path  # scratch space owned by this build
    log_path: Path
    echo: Callable[[str], None] | None = None
    target: str = ""  # "t/s", for messages
    # For container backends (issue 9): the image tag names the release; a
    # pull reports a stage and byte progress like a download.
    release: str = ""
    stage: Callable[[str], None] | None = None
    progress: Callable[[str], Callable[[int, int | None], None] | None] | None = None
    # What to say when the image is too big for the flash (the caller knows
    # which of the requested packages the image can do without).
    too_big_hint: str = ""


@dataclass(frozen=True)
class BackendResult:
    """What ``make image`` produced."""

    bin_dir: Path
    images: tuple[Path, ...]
    manifest: Path | None
    installed: dict[str, str]
    package_manager: str
    identity: dict[str, Any] = field(default_factory=dict)
    # Seconds per make step ("make_manifest", "make_image"): --json and
    # benchmarks only, never build-info (it must stay reproducible).
    timings: dict[str, float] = field(default_factory=dict)


class BuildSession(Protocol):
    """A fresh ImageBuilder for one build (a copy of the tree, or a container)."""

    package_manager: str

    @property
    def identity(self) -> dict[str, Any] | None:
        """The container image this session runs (``name``, ``sha256``...), which
        the lock pins instead of an archive; None for a downloaded tree."""
        ...

    def info(self) -> MakeInfo:
        """``make info`` of this ImageBuilder (its revision, profiles...)."""
        ...

    def manifest(self) -> dict[str, str]:
        """The packages (name -> version) ``make image`` would install."""
        ...

    def image(self, files_dir: Path) -> BackendResult:
        """Build the images with ``files_dir`` as FILES."""
        ...

    def package_index(self) -> dict[str, int] | None:
        """Every package the release's feeds offer (name -> size in bytes, 0 when
        unknown), from ``make package_list``; None when this ImageBuilder has no
        such target (older releases)."""
        ...

    def close(self) -> None:
        """Remove the ImageBuilder copy / container."""
        ...


class Backend(Protocol):
    """A place to run the ImageBuilder."""

    name: str
    # False when the backend brings its own ImageBuilder (a container image):
    # then nothing is downloaded and the lock pins the image, not an archive.
    uses_archive: bool

    def prerequisites(self) -> list[Prerequisite]:
        """The host tools this backend needs, found or not."""
        ...

    def open(self, request: BuildRequest) -> BuildSession:
        """A fresh ImageBuilder for ``request``."""
        ...


def make_args(request: BuildRequest, bin_dir: str, files_dir: str | None = None) -> list[str]:
    """The make variables of an image build (the same for every backend)."""
    args = [
        f"PROFILE={request.profile}",
        f"PACKAGES={' '.join(request.packages)}",
    ]
    if files_dir is not None:
        args += [
            f"FILES={files_dir}",
            f"BIN_DIR={bin_dir}",
            f"EXTRA_IMAGE_NAME={request.extra_image_name}",
            f"DISABLED_SERVICES={' '.join(request.disabled_services)}",
        ]
    return args


# ---------------------------------------------------------------- ImageBuilder output

_MANIFEST_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*) - (\S+)$")
_APK_MANIFEST_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*) (\d\S*)$")


def parse_manifest(text: str) -> dict[str, str]:
    """``<pkg> - <version>`` lines (opkg; apk ``<pkg> <version>`` too) as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _MANIFEST_LINE.match(line) or _APK_MANIFEST_LINE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


_OPKG_LIST_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*) - (\S+)(?: - (\d+))?(?: - .*)?$")
_APK_LIST_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*?)-(\d[^\s-]*(?:-r\d+)?) (.*)$")


def parse_package_list(text: str) -> dict[str, int]:
    """``make package_list`` output as name -> size (bytes; 0 when not shown).

    opkg (``opkg list --size``): ``<name> - <version> - <size> - <description>``;
    apk (``apk list --size``): ``<name>-<version> <arch> {<origin>} (<license>) [<size>]``.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        if m := _OPKG_LIST_LINE.match(line):
            out[m.group(1)] = int(m.group(3) or 0)
        elif m := _APK_LIST_LINE.match(line):
            size = re.search(r"\[(\d+)\]\s*$", m.group(3))
            out[m.group(1)] = int(size.group(1)) if size else 0
    return out


@dataclass(frozen=True)
class MakeInfo:
    """What ``make info`` says about an ImageBuilder."""

    target: str
    revision: str
    default_packages: tuple[str, ...]
    profiles: dict[str, tuple[str, ...]]  # id -> SupportedDevices


def parse_info(text: str) -> MakeInfo:
    """Parse ``make info`` output (tolerant: missing fields stay empty)."""
    target = revision = ""
    defaults: tuple[str, ...] = ()
    profiles: dict[str, tuple[str, ...]] = {}
    current: str | None = None
    in_profiles = False
    for line in text.splitlines():
        if m := re.match(r'^Current Target: "([^"]*)"', line):
            target = m.group(1)
        elif m := re.match(r'^Current Revision: "([^"]*)"', line):
            revision = m.group(1)
        elif line.startswith("Default Packages:"):
            defaults = tuple(line.split(":", 1)[1].split())
        elif line.startswith("Available Profiles:"):
            in_profiles = True
        elif in_profiles and (m := re.match(r"^([A-Za-z0-9][^\s:]*):\s*$", line)):
            current = m.group(1)
            profiles[current] = ()
        elif current and (m := re.match(r"^\s+SupportedDevices:(.*)$", line)):
            profiles[current] = tuple(m.group(1).split())
    return MakeInfo(target, revision, defaults, profiles)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def diagnose(
    output: str,
    request: BuildRequest,
    status: int,
    step: str,
    info: Callable[[], MakeInfo] | None = None,
) -> BuildError:
    """The clearest error for a failed ImageBuilder step, from its output."""
    where = f"{request.target} {request.profile}".strip()
    log_hint = f"full output: {request.log_path}"
    if m := re.search(r'Profile "([^"]+)" does not exist', output):
        names: list[str] = []
        if info is not None:
            try:
                names = sorted(info().profiles)
            except BuildError:
                names = []
        near = closest(m.group(1), names, same_prefix=False)
        listing = ", ".join(near or names[:20]) or "see `make info`"
        return BuildError(
            f"the ImageBuilder ({request.target}) has no profile {m.group(1)!r}",
            hint=f"profiles there: {listing}",
        )
    unsatisfied = _unsatisfied(output)
    if unsatisfied:
        return BuildError(
            f"{where}: cannot satisfy the dependencies of {unsatisfied}",
            hint="the release's feeds lack a package these need (often a kernel module "
            "built for another kernel): leave the package out; " + log_hint,
        )
    if re.search(r"^ERROR: .*No space left on device", output, re.M):
        return BuildError(
            f"{where}: the build ran out of disk space while apk installed the packages",
            hint=f"free disk space where the build runs ({request.work_dir}; the cache is "
            "$OWRT_VPN_CACHE), then build again; " + log_hint,
        )
    unknown = _unknown_packages(output)
    if unknown:
        insecure = {f"strongswan-mod-{p}" for p in ("eap-mschapv2", "md4", "ccm")} & set(unknown)
        why = (
            "strongSwan 6 on master (snapshots) builds "
            + ", ".join(sorted(insecure))
            + " only with STRONGSWAN_INCLUDE_INSECURE, which the snapshot builds do not set: "
            "use a release (25.12 builds them) or certificate auth; "
            if insecure
            else "check the package names for this release (opkg/apk feeds); "
        )
        return BuildError(
            f"{where}: unknown package(s) for this release/target: {', '.join(unknown)}",
            hint=why + log_hint,
        )
    conflicts = _conflicts(output)
    if conflicts:
        return BuildError(
            f"{where}: package conflict: {conflicts}",
            hint="remove one of the conflicting packages (e.g. another strongSwan variant); "
            + log_hint,
        )
    kernel = re.search(r"WARNING: Kernel for (\S+) is too big", output)
    if kernel:
        return BuildError(
            f"{where}: this release's kernel is too big for the kernel partition of "
            f"{kernel.group(1)} (no image was made)",
            hint="packages do not change the kernel's size: use a release whose kernel "
            "still fits this device (see the device's page in the OpenWrt table of "
            "hardware); " + log_hint,
        )
    too_big = re.findall(r"WARNING: Image file (\S+) is too big", output)
    if too_big:
        big = ", ".join(Path(f).name for f in too_big)
        return BuildError(
            f"{where}: the image is too big for the device's flash ({big})",
            hint=(request.too_big_hint or "drop packages from the request") + "; " + log_hint,
        )
    return BuildError(
        f"{where}: ImageBuilder `make {step}` failed (status {status})",
        hint=f"last lines:\n{_tail(output)}\n{log_hint}",
    )


def _unknown_packages(output: str) -> list[str]:
    names: list[str] = []
    names += re.findall(r"Unknown package '([^']+)'", output)
    # (not "Cannot install package X": opkg says that for conflicts too)
    if "unable to select packages" in output:
        names += re.findall(r"^\s+(\S+?)(?:-[0-9][^\s(]*)? \(no such package\)", output, re.M)
    return sorted(dict.fromkeys(names))


def _unsatisfied(output: str) -> str:
    """opkg's "Cannot satisfy the following dependencies for P:" and the ``*\tD`` lines."""
    found = []
    for m in re.finditer(
        r"Cannot satisfy the following dependencies for (\S+?):\n((?: \*\s+\t\S.*\n?)*)",
        output,
    ):
        deps = re.findall(r"^ \*\s+\t(\S+)", m.group(2), re.M)
        found.append(f"{m.group(1)} (missing: {', '.join(deps) or '?'})")
    return "; ".join(dict.fromkeys(found))


def _conflicts(output: str) -> str:
    # opkg: " * check_conflicts_for: The following packages conflict with P:"
    #       " * check_conflicts_for: \tQ * "
    m = re.search(r"check_conflicts_for: The following packages conflict with (\S+?):", output)
    if m:
        others = re.findall(r"check_conflicts_for:\s+(?!The following)(\S+)", output[m.end() :])
        return f"{m.group(1)} conflicts with {', '.join(dict.fromkeys(others)) or 'other packages'}"
    # apk: "  P-1.0:" / "    conflicts: Q-2.0[Q]"
    m = re.search(r"^\s+(\S+?):?\n\s+conflicts: (\S+)", output, re.M)
    if m and "unable to select packages" in output:
        return f"{m.group(1)} conflicts with {m.group(2)}"
    return ""


def missing_images(request: BuildRequest, bin_dir: Path, output: str) -> BuildError | None:
    """An error when an expected image is absent (make may exit 0 after deleting it)."""
    missing = [n for n in request.expected_images if not (bin_dir / n).is_file()]
    if not missing:
        return None
    if "is too big" in output:  # the image ("Image file ...") or the kernel ("Kernel for ...")
        return diagnose(output, request, 0, "image")
    return BuildError(
        f"{request.target} {request.profile}: the ImageBuilder exited successfully but "
        f"did not produce {', '.join(missing)}",
        hint=f"see {request.log_path}",
    )


def manifest_result(
    request: BuildRequest, status: int, output: str, *, info: Callable[[], MakeInfo] | None
) -> dict[str, str]:
    """Check a ``make manifest`` run; the packages and versions ``make image`` will install.

    The one place both backends turn make's exit status and output into the
    package list or a clear :class:`BuildError`.
    """
    if status != 0:
        raise diagnose(output, request, status, "manifest", info)
    packages = parse_manifest(output)
    if not packages:
        raise BuildError(
            f"{request.profile}: `make manifest` listed no packages",
            hint=f"see {request.log_path}",
        )
    return packages


def image_result(
    request: BuildRequest,
    bin_dir: Path,
    status: int,
    output: str,
    *,
    info: Callable[[], MakeInfo] | None,
    package_manager: str,
    identity: dict[str, Any],
    timings: dict[str, float] | None = None,
) -> BackendResult:
    """Check a ``make image`` run (status, every expected image) and describe its output.

    The one place both backends turn make's exit status, output and BIN_DIR
    into a result or a clear :class:`BuildError`.
    """
    if status != 0:
        raise diagnose(output, request, status, "image", info)
    problem = missing_images(request, bin_dir, output)
    if problem is not None:
        raise problem
    manifests = sorted(bin_dir.glob("*.manifest"))
    installed = parse_manifest(manifests[0].read_text()) if manifests else {}
    return BackendResult(
        bin_dir=bin_dir,
        images=tuple(bin_dir / n for n in request.expected_images),
        manifest=manifests[0] if manifests else None,
        installed=installed,
        package_manager=package_manager,
        identity=identity,
        timings=dict(timings or {}),
    )
