"""Build backends: where ``make image`` runs (a local ImageBuilder copy, or a container).

A backend gets a :class:`BuildRequest` (everything ``make`` needs, nothing
about VPNs) and opens a :class:`BuildSession` in a fresh ImageBuilder: the
session first predicts the installed packages (``make manifest``), then
builds the images (``make image``). Both steps use the same make variables,
so a container backend only changes where the commands run; its
:attr:`BackendResult.identity` then records an image digest instead of the
archive sha256.

Every backend checks make's results here (``manifest_result``,
``image_result``), with the ImageBuilder's own wording read by
:mod:`owrt_vpn.imagebuilder.backends.output`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.output import (
    MakeInfo,
    apk_explanation_missing,
    diagnose,
    parse_manifest,
)


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
        unknown), from ``make package_list`` (apk: ``apk list`` when that
        fails); None when this ImageBuilder cannot list its feeds."""
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


# ``make package_list`` runs ``apk list --size``, and apk-tools' ``list`` has no
# --size in the sources read (see output.parse_package_list): then the same
# list without it, through the ImageBuilder's own $(APK) and package_reload
# (GNU make >= 4.0 for --eval).
APK_LIST_ARGS = (
    "--eval",
    "owrt-vpn-package-list: ; @$(MAKE) -s package_reload; $(APK) list 2>/dev/null",
    "owrt-vpn-package-list",
)


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


def missing_images(request: BuildRequest, bin_dir: Path, output: str) -> BuildError | None:
    """An error when an expected image is absent (make may exit 0 after deleting it)."""
    missing = [n for n in request.expected_images if not (bin_dir / n).is_file()]
    if not missing:
        return None
    if "is too big" in output:  # an image or the kernel ("WARNING: Image file ... is too big")
        return diagnose(output, request, 0, "image")
    return BuildError(
        f"{request.target} {request.profile}: the ImageBuilder exited successfully but "
        f"did not produce {', '.join(missing)}",
        hint=f"see {request.log_path}",
    )


def manifest_result(
    request: BuildRequest,
    status: int,
    output: str,
    *,
    info: Callable[[], MakeInfo] | None,
    explain: Callable[[], str] | None = None,
) -> dict[str, str]:
    """Check a ``make manifest`` run; the packages and versions ``make image`` will install.

    The one place both backends turn make's exit status and output into the
    package list or a clear :class:`BuildError`. ``explain`` runs ``make
    image`` with the same packages when apk's explanation of a failure is
    missing (``make manifest`` discards it) and returns its output.
    """
    if status != 0:
        if explain is not None and apk_explanation_missing(output):
            output += "\n" + explain()
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
