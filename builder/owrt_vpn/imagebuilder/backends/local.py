"""The local backend: ``make`` in a fresh copy of the extracted ImageBuilder.

The real ``make image`` writes into ``build_dir/``, ``staging_dir/`` and
``tmp/`` of the tree it runs in, so each build copies the pristine cached
tree (``cp -a --reflink=auto``: modes, links and mtimes kept; blocks shared
where the file system can) into its own work dir. Concurrent builds never
share a tree and the cached tree is never modified.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from owrt_vpn.errors import BuildError
from owrt_vpn.imagebuilder.backends.base import (
    APK_LIST_ARGS,
    BackendResult,
    BuildRequest,
    Prerequisite,
    image_result,
    make_args,
    manifest_result,
)
from owrt_vpn.imagebuilder.backends.output import MakeInfo, parse_info, parse_package_list
from owrt_vpn.imagebuilder.workdir import GROUPS_FILE
from owrt_vpn.run import run, run_logged

# (command, Debian/Ubuntu package, Fedora package). What the ImageBuilder's
# make/perl scripts, image tools and json_*_image_info.py need on the host.
HOST_TOOLS = (
    ("make", "make", "make"),
    ("perl", "perl", "perl"),
    ("gawk", "gawk", "gawk"),
    ("grep", "grep", "grep"),
    ("sed", "sed", "sed"),
    ("find", "findutils", "findutils"),
    ("file", "file", "file"),
    ("gzip", "gzip", "gzip"),
    ("bzip2", "bzip2", "bzip2"),
    ("tar", "tar", "tar"),
    ("unzip", "unzip", "unzip"),
    ("rsync", "rsync", "rsync"),
    ("python3", "python3", "python3"),
    ("cp", "coreutils", "coreutils"),
)


def detect_package_manager(tree: Path) -> str:
    """``opkg`` or ``apk``, from the ImageBuilder's files (not the version string)."""
    if (tree / "repositories.conf").is_file():
        return "opkg"
    if (tree / "repositories").is_file() or any(tree.glob("packages/*.adb")):
        return "apk"
    return "opkg"


class LocalSession:
    """One build's own copy of the ImageBuilder tree."""

    identity: dict[str, Any] | None = None  # a downloaded tree, not an image

    def __init__(self, request: BuildRequest) -> None:
        self.request = request
        self.tree = request.work_dir / "imagebuilder"
        self.bin_dir = request.work_dir / "bin"
        if self.tree.exists():
            raise BuildError(f"work dir {request.work_dir} is not fresh")
        run(["cp", "-a", "--reflink=auto", request.imagebuilder, self.tree])
        self.package_manager = detect_package_manager(self.tree)
        self._info: MakeInfo | None = None
        self.timings: dict[str, float] = {}

    def _make(self, args: list[str]) -> tuple[int, str]:
        t0 = time.monotonic()
        status, out = run_logged(
            ["make", "--no-print-directory", *args],
            cwd=self.tree,
            log_path=self.request.log_path,
            echo=self.request.echo,
            # make's process group, for the next build if this one is killed -9
            group_file=self.request.work_dir / GROUPS_FILE,
        )
        # How long make itself took: in the log, and (for `build --json` and
        # the benchmarks) in the result; never in build-info (reproducible).
        seconds = time.monotonic() - t0
        step = args[-1] if args[0].startswith("-") else args[0]  # --eval ... TARGET
        if step != "info":  # the build steps only (make info is a lookup)
            self.timings[f"make_{step}"] = seconds
        with self.request.log_path.open("a") as log:
            log.write(f"# owrt-vpn: make {step}: status {status} after {seconds:.3f} s\n")
        return status, out

    def info(self) -> MakeInfo:
        """``make info`` of this ImageBuilder (profile names for error messages)."""
        if self._info is None:
            status, out = self._make(["info"])
            if status != 0:
                raise BuildError(f"`make info` failed (status {status})")
            self._info = parse_info(out)
        return self._info

    def manifest(self) -> dict[str, str]:
        """Packages and versions ``make image`` will install (``make manifest``)."""
        # No STRIP_ABI: the names must match the image's .manifest (ABI suffixes included).
        status, out = self._make(["manifest", *make_args(self.request, "")])
        return manifest_result(self.request, status, out, info=self.info, explain=self._explain)

    def _explain(self) -> str:
        """``make image`` without FILES: shows apk's explanation (see manifest_result)."""
        return self._make(["image", *make_args(self.request, "")])[1]

    def image(self, files_dir: Path) -> BackendResult:
        """``make image`` with FILES=files_dir; checks every expected image exists."""
        if self.bin_dir.exists():
            shutil.rmtree(self.bin_dir)
        self.bin_dir.mkdir(parents=True)
        args = make_args(self.request, str(self.bin_dir), str(files_dir))
        status, out = self._make(["image", *args])
        return image_result(
            self.request,
            self.bin_dir,
            status,
            out,
            info=self.info,
            package_manager=self.package_manager,
            identity={"backend": "local", "imagebuilder_sha256": self.request.imagebuilder_sha256},
            timings=self.timings,
        )

    def package_index(self) -> dict[str, int] | None:
        """``make package_list`` (apk: ``apk list`` when that fails); None when the
        ImageBuilder cannot list its feeds."""
        status, out = self._make(["package_list"])
        if status != 0 and self.package_manager == "apk":
            status, out = self._make(list(APK_LIST_ARGS))
        return parse_package_list(out) if status == 0 else None

    def close(self) -> None:
        """Remove the copy (the work dir itself belongs to the caller)."""
        shutil.rmtree(self.tree, ignore_errors=True)


class LocalBackend:
    """Runs the ImageBuilder on this host."""

    name = "local"
    uses_archive = True

    def prerequisites(self) -> list[Prerequisite]:
        """Every host tool the ImageBuilder needs, and whether it is on PATH."""
        return [
            Prerequisite(cmd, apt, dnf, shutil.which(cmd) is not None)
            for cmd, apt, dnf in HOST_TOOLS
        ]

    def open(self, request: BuildRequest) -> LocalSession:
        """A fresh copy of the ImageBuilder for ``request``."""
        return LocalSession(request)


def install_hint(missing: list[Prerequisite]) -> str:
    """The apt/dnf command lines that install ``missing``."""
    apt = " ".join(sorted({p.apt for p in missing}))
    dnf = " ".join(sorted({p.dnf for p in missing}))
    return f"Debian/Ubuntu: sudo apt-get install {apt}\nFedora: sudo dnf install {dnf}"


def check_prerequisites(backend: LocalBackend) -> None:
    """BuildError naming the missing host tools and how to install them."""
    missing = [p for p in backend.prerequisites() if not p.found]
    if missing:
        raise BuildError(
            "missing host tools for the ImageBuilder: " + ", ".join(p.command for p in missing),
            hint=install_hint(missing),
        )
