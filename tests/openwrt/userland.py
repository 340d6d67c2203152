"""Build OpenWrt's real ``uci``, ``ucode``/``utpl`` and firewall4 checkouts for tests.

The sources are the pinned upstream ones (SOURCES.md in the source folder):
libubox, uci and ucode as tarballs, firewall4 as a git bundle with its full
history. They are found at ``$OWRT_VPN_OPENWRT_SRC`` (default
``<repo>/../shared/openwrt-src``, else ``/work/shared/openwrt-src``);
nothing is downloaded. The build goes
to a per-machine cache keyed by the digests of those sources and of this
file, so a test run builds once (``.ci/run`` builds before ``make test``) and
later runs reuse it:

    python3 tests/openwrt/userland.py            # build (or find) it, print the prefix

Tests use :func:`userland` (the ``openwrt`` fixture in tests/conftest.py).
Only tests use any of this: ``make demo`` and the package never do.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC_ENV = "OWRT_VPN_OPENWRT_SRC"
CACHE_ENV = "OWRT_VPN_TEST_CACHE"
# What the pinned sources are, by file (SOURCES.md says where each comes from).
TARBALLS = ("libubox", "uci", "ucode")
BUNDLE = "firewall4.bundle"
BUILD_TOOLS = ("cmake", "gcc", "make", "pkg-config", "git")

HOW_TO_GET = (
    "OpenWrt's pinned sources are missing: {src} (set {env} to their folder). "
    "They are unmodified upstream: openwrt/libubox 1aa36ee774c8, openwrt/uci 66127cd76c5d, "
    "jow-/ucode 81205a25437a (tarballs named <project>-<12 hex>.tar.gz), and openwrt/firewall4 "
    "(a full-history `git bundle` named firewall4.bundle with b6e5157 as HEAD), plus "
    "openwrt/packages net/strongswan per branch in strongswan-package/<branch>/; "
    "docs/router-side.md lists the exact commits."
)


class UserlandError(Exception):
    """The sources or the build are missing; the message says what to do."""


# Where a checkout finds them without the variable: beside the repository
# (../shared), else the workplace's shared folder (a clone elsewhere, e.g. a
# CI clone under /tmp). Only pinned, unmodified upstream sources live there.
DEFAULT_SOURCES = (REPO.parent / "shared" / "openwrt-src", Path("/work/shared/openwrt-src"))


def source_dir() -> Path:
    """Where the pinned OpenWrt sources are: ``$OWRT_VPN_OPENWRT_SRC``, else the first
    of :data:`DEFAULT_SOURCES` that exists (else the first, for the error message)."""
    if os.environ.get(SRC_ENV):
        return Path(os.environ[SRC_ENV])
    return next((d for d in DEFAULT_SOURCES if d.is_dir()), DEFAULT_SOURCES[0])


def _tarball(src: Path, name: str) -> Path:
    found = sorted(src.glob(f"{name}-*.tar.gz"))
    if len(found) != 1:
        raise UserlandError(HOW_TO_GET.format(src=src / f"{name}-*.tar.gz", env=SRC_ENV))
    return found[0]


def _sources(src: Path) -> list[Path]:
    files = [_tarball(src, name) for name in TARBALLS]
    bundle = src / BUNDLE
    if not bundle.is_file():
        raise UserlandError(HOW_TO_GET.format(src=bundle, env=SRC_ENV))
    return [*files, bundle]


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in [*files, Path(__file__)]:
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """The per-machine cache of test builds (``$OWRT_VPN_TEST_CACHE`` or ~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "owrt-vpn-tests"


@dataclass(frozen=True)
class Userland:
    """A built OpenWrt userland: ``bin/uci``, ``bin/ucode``, ``bin/utpl``, ucode modules."""

    prefix: Path
    sources: Path

    @property
    def uci(self) -> Path:
        return self.prefix / "bin" / "uci"

    @property
    def utpl(self) -> Path:
        return self.prefix / "bin" / "utpl"

    @property
    def lib(self) -> Path:
        return self.prefix / "lib"

    def env(self) -> dict[str, str]:
        """Environment additions that let the tools find their libraries."""
        return {"LD_LIBRARY_PATH": str(self.lib)}

    def firewall4(self, ref: str) -> Path:
        """A checkout of firewall4 at ``ref`` (from the bundle), cached beside the build."""
        commit = self.firewall4_commit(ref)
        dest = self.prefix / "firewall4" / commit
        if (dest / "root" / "usr" / "share" / "firewall4" / "main.uc").is_file():
            return dest
        with _locked(self.prefix / ".fw4.lock"):
            if dest.is_dir():
                return dest
            clone = self._clone()
            tmp = Path(tempfile.mkdtemp(dir=self.prefix, prefix=".fw4-"))
            archive = subprocess.run(
                ["git", "-C", str(clone), "archive", commit],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(dest)
        return dest

    def install_uci(self, dest: Path) -> Path:
        """Copy the real ``uci`` and its two libraries into ``dest`` with a ``uci`` wrapper.

        For test routers whose mount namespace hides this cache (private
        home, /tmp): only ``dest`` must be visible inside. Returns the wrapper.
        """
        lib = dest / "openwrt-uci"
        lib.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.uci, lib / "uci")
        for name in ("libuci.so", "libubox.so"):
            shutil.copy2(self.lib / name, lib / name)
        wrapper = dest / "uci"
        wrapper.write_text(
            "#!/bin/sh\n# OpenWrt's real uci (built from the pinned sources for tests)\n"
            'd=$(dirname "$0")/openwrt-uci\n'
            'LD_LIBRARY_PATH="$d" exec "$d/uci" "$@"\n'
        )
        wrapper.chmod(0o755)
        return wrapper

    def _clone(self) -> Path:
        clone = self.prefix / "firewall4.git"
        if not clone.is_dir():
            _run(["git", "clone", "-q", "--bare", str(self.sources / BUNDLE), str(clone)])
        return clone

    def firewall4_commit(self, ref: str) -> str:
        """The full commit id of ``ref`` in the bundle (fails when it is not there)."""
        with _locked(self.prefix / ".fw4.lock"):
            clone = self._clone()
        out = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--verify", ref + "^{commit}"],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()


class _locked:
    """An exclusive flock on ``path`` (other test runs on this machine wait)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = self.path.open("w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _run(argv: list[str], log: Path | None = None, cwd: Path | None = None) -> None:
    if log is None:
        subprocess.run(argv, check=True, cwd=cwd)
        return
    with log.open("a") as out:
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    if r.returncode != 0:
        raise UserlandError(f"building OpenWrt's userland failed: {' '.join(argv)} (see {log})")


def _build(sources: list[Path], prefix: Path) -> None:
    """libubox, then uci and ucode against it, installed into ``prefix``."""
    work = prefix / "src"
    work.mkdir(parents=True)
    for tarball in sources[: len(TARBALLS)]:
        _run(["tar", "-xzf", str(tarball), "-C", str(work)])
    # The tarballs unpack to one folder each, named after the project.
    dirs = {name: next(work.glob(f"{name}*")) for name in TARBALLS}
    common = [
        f"-DCMAKE_INSTALL_PREFIX={prefix}",
        f"-DCMAKE_PREFIX_PATH={prefix}",
        f"-DCMAKE_C_FLAGS=-I{prefix}/include",
        *(f"-DCMAKE_{kind}_LINKER_FLAGS=-L{prefix}/lib" for kind in ("EXE", "SHARED", "MODULE")),
    ]
    options = {
        "libubox": ["-DBUILD_LUA=OFF", "-DBUILD_EXAMPLES=OFF", "-DBUILD_TESTS=OFF"],
        "uci": ["-DBUILD_LUA=OFF", "-DBUILD_TESTS=OFF"],
        # fw4 needs ucode's fs and uci modules (and math/struct); ubus is the
        # test's stand-in module, the rest is not used off-router.
        "ucode": [
            *(f"-D{o}_SUPPORT=OFF" for o in ("UBUS", "ULOOP", "RTNL", "NL80211", "RESOLV")),
            *(f"-D{o}_SUPPORT=OFF" for o in ("SOCKET", "ZLIB", "DIGEST", "LOG")),
            *(f"-D{o}_SUPPORT=ON" for o in ("UCI", "FS", "MATH", "STRUCT")),
        ],
    }
    jobs = str(os.cpu_count() or 2)
    for name in TARBALLS:
        log = work / f"{name}.log"
        build = dirs[name] / "build"
        _run(["cmake", "-S", str(dirs[name]), "-B", str(build), *common, *options[name]], log)
        _run(["make", "-C", str(build), f"-j{jobs}", "install"], log)
    shutil.rmtree(work)


def userland(build: bool = True) -> Userland:
    """The built userland for the pinned sources, building it when not cached.

    Raises :class:`UserlandError` (with how to get them) when the sources are
    missing, or when the build fails.
    """
    src = source_dir()
    sources = _sources(src)
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    prefix = cache_root() / f"openwrt-userland-{_digest(sources)}"
    done = prefix / ".built"
    if done.exists():
        return Userland(prefix, src)
    if not build:
        raise UserlandError(f"OpenWrt's userland is not built: run python3 {Path(__file__)}")
    if missing:
        raise UserlandError(
            f"building OpenWrt's userland needs {', '.join(missing)} (see .ci/run's APT_PACKAGES)"
        )
    with _locked(prefix.with_name(prefix.name + ".lock")):
        if not done.exists():
            if prefix.exists():
                shutil.rmtree(prefix)
            # cmake installs into the prefix itself: build in place, and mark
            # it done only at the end (a half build is removed and redone).
            prefix.mkdir(parents=True)
            try:
                _build(sources, prefix)
            except BaseException:
                shutil.rmtree(prefix, ignore_errors=True)
                raise
            done.write_text(" ".join(s.name for s in sources) + "\n")
    return Userland(prefix, src)


def main() -> int:
    """Build (or find) the userland and print its prefix; exit 1 with the reason if not."""
    try:
        u = userland()
        u.firewall4("HEAD")
    except UserlandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(u.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
