"""What the ImageBuilder prints, read: manifests, package lists, ``make info``, errors.

ImageBuilder output is turned into specific :class:`BuildError` s here,
shared by every backend: unknown profile, unknown packages (opkg and apk
wording), unsatisfiable dependencies (opkg and apk), conflicts, image or
kernel too big, out of disk space (apk).

The wording recognised is the real one, read in the sources:

- opkg (openwrt/opkg-lede libopkg, commit 04ac0b44): every ERROR is collected
  and printed after ``Collected errors:`` as `` * <message>``; messages of
  ``opkg_msg`` carry the function name. ``satisfy_dependencies_for: Cannot
  satisfy the following dependencies for P:`` is followed by one ``\t<dep>``
  message per dependency, each without a newline, so they share one line:
  `` * \tD1 * \tD2 * ``. ``pkg_hash_check_unresolved: cannot find dependency D
  for P`` (pkg_hash.c, commit 1bf042dd) is how newer opkg reports the same
  when it picks a candidate (P is then also an "Unknown package 'P'.").
  ``check_conflicts_for: The following packages conflict with P:`` then
  `` * check_conflicts_for: \tQ * ``; variants that install the same file
  fail ``check_data_file_clashes: Package P wants to install file F`` /
  ``\tBut that file is already provided by package  * Q`` (reported for
  dnsmasq-full: openwrt/openwrt#15103). "Unknown package 'P'." is a NOTICE,
  printed on stdout. ``opkg list --size`` (opkg_cmd.c print_pkg):
  ``<name> - <version> - <size>[ - <description>]``.
- apk (alpinelinux/apk-tools src/commit.c apk_solver_print_errors, commit
  0249068a): ``ERROR: unable to select packages:``, then per name
  ``  <name> (no such package):`` / ``    required by: world[<name>]`` (asked
  for) or ``<pkg>-<ver>[<name>]`` (a dependency of <pkg>), and per package
  ``  <pkg>-<ver>:`` / ``    conflicts: <q>-<ver>[<name>]``; a failed install
  is ``ERROR: <pkg>-<ver>: <strerror>`` ("No space left on device") and the
  summary ``1 error; N MiB in M packages``. ``apk list``
  (src/app_list.c print_package): ``<name>-<version> <arch> {<origin>}
  (<license>)[ [installed]]``. apk prints its ERROR lines on stderr, the
  solver's explanation (printf) and the summary on stdout.
- ``make manifest`` runs the install with stdout sent to /dev/null
  (target/imagebuilder/files/Makefile ``_call_manifest``; main 03eeeffb and a
  23.05.4-based tree, BeeconMini/openwrt_v23.05.4 1fb8d604): what the package
  managers print on stdout is seen with ``make image`` only.
- sizes (include/image-commands.mk Build/check-size, as in a 23.05.4-based
  tree, BeeconMini/openwrt_v23.05.4 2a59ac1b; the numbers appear in a 22.03.3
  report, openwrt/openwrt#11964; old LEDE trees print no numbers):
  ``    WARNING: Image file <path> is too big: <size> > <limit>``, on stderr,
  and the file is deleted while make goes on. The same check runs on a
  device's kernel (include/image.mk Device/Build/kernel, ``KERNEL_SIZE``;
  24.10-based tree OpenNuvoton/Nuvoton-OpenWrt-24.10 0f8a3a2e) with the kernel's path
  (``$(KDIR)/<device>-kernel.bin``, not under ``$(KDIR)/tmp/`` where images
  are made); OpenWrt has no separate "kernel too big" message
  (openwrt/openwrt#11964 shows one for a ``...-fit-uImage.itb`` kernel).
  In an ImageBuilder that kernel check is skipped (``ifndef IB``): a kernel
  too big shows there as the image being too big.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import BuildError, closest

if TYPE_CHECKING:
    from owrt_vpn.imagebuilder.backends.base import BuildRequest

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

    The ImageBuilder's ``package_list`` target runs ``opkg list --size`` or
    ``apk list --size`` (openwrt/openwrt target/imagebuilder/files/Makefile,
    commit 03eeeffb). opkg prints ``<name> - <version> - <size> - <description>``;
    apk prints ``<name>-<version> <arch> {<origin>} (<license>)`` and, in the
    apk-tools sources read (src/app_list.c, doc/apk-list.8.scd; OpenWrt's
    patches add ``--full`` only), has no ``--size`` option of ``list``: the
    backends then run ``apk list`` (base.APK_LIST_ARGS). A size in brackets
    is taken when present.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        if m := _OPKG_LIST_LINE.match(line):
            out[m.group(1)] = int(m.group(3) or 0)
        elif m := _APK_LIST_LINE.match(line):
            size = re.search(r"\[(\d+)\](?: \[installed\])?\s*$", m.group(3))
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


# From 23.05 the size warning goes through make's ERROR_MESSAGE, which may
# colour it on a terminal (not checked in the sources read: stripped anyway,
# a container backend may run make on one).
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# strongSwan 6 on master builds these only with STRONGSWAN_INCLUDE_INSECURE
# (openwrt/packages a05eeb5574, 2026-05-24); 25.12 builds them.
_INSECURE = {f"strongswan-mod-{p}" for p in ("eap-mschapv2", "md4", "ccm")}
_INSECURE_WHY = (
    "strongSwan 6 on master (snapshots) builds {names} only with "
    "STRONGSWAN_INCLUDE_INSECURE, and this feed was built without it: "
    "use a release (25.12 builds them) or certificate auth; "
)


def diagnose(
    output: str,
    request: BuildRequest,
    status: int,
    step: str,
    info: Callable[[], MakeInfo] | None = None,
) -> BuildError:
    """The clearest error for a failed ImageBuilder step, from its output."""
    output = _ANSI.sub("", output)
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
        missing = {d for deps in unsatisfied.values() for d in deps}
        insecure = _INSECURE & (missing | set(unsatisfied))
        text = "; ".join(
            f"{p} (missing: {', '.join(deps) or '?'})" for p, deps in unsatisfied.items()
        )
        return BuildError(
            f"{where}: cannot satisfy the dependencies of {text}",
            hint=(_INSECURE_WHY.format(names=", ".join(sorted(insecure))) if insecure else "")
            + "the release's feeds lack a package these need (often a kernel module "
            "built for another kernel): leave the package out; " + log_hint,
        )
    if m := re.search(r"^ERROR: (\S+): No space left on device", output, re.M):
        return BuildError(
            f"{where}: the build ran out of disk space while apk installed the packages "
            f"({m.group(1)})",
            hint=f"free disk space where the build runs ({request.work_dir}; the cache is "
            "$OWRT_VPN_CACHE), then build again; " + log_hint,
        )
    unknown = _unknown_packages(output)
    if unknown:
        insecure = _INSECURE & set(unknown)
        why = (
            _INSECURE_WHY.format(names=", ".join(sorted(insecure)))
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
    too_big = re.findall(r"WARNING: Image file (\S+) is too big(?::? (\d+) > (\d+))?", output)
    kernels = [t for t in too_big if _is_kernel(t[0], request)]
    if kernels:
        path, size, limit = kernels[0]
        numbers = f", {size} > {limit} bytes" if size else ""
        return BuildError(
            f"{where}: this release's kernel is too big for the kernel partition of "
            f"{request.profile} ({Path(path).name}{numbers}; no image was made)",
            hint="packages do not change the kernel's size: use a release whose kernel "
            "still fits this device (see the device's page in the OpenWrt table of "
            "hardware); " + log_hint,
        )
    if too_big:
        big = ", ".join(
            Path(p).name + (f" ({s} > {lim} bytes)" if s else "") for p, s, lim in too_big
        )
        return BuildError(
            f"{where}: the image is too big for the device's flash: {big}",
            hint=(request.too_big_hint or "drop packages from the request") + "; " + log_hint,
        )
    if _APK_SOLVER.search(output):
        return BuildError(
            f"{where}: apk cannot select these packages (an unknown package, a conflict, "
            "or a dependency no feed has)",
            hint="apk explains why on stdout, which `make manifest` discards: run `make image` "
            "with these packages in the ImageBuilder to read it; " + log_hint,
        )
    return BuildError(
        f"{where}: ImageBuilder `make {step}` failed (status {status})",
        hint=f"last lines:\n{_tail(output)}\n{log_hint}",
    )


def _is_kernel(path: str, request: BuildRequest) -> bool:
    """Whether a "too big" file is the device's kernel, not one of its images.

    Images are made in ``$(KDIR)/tmp/``; the kernel is ``$(KDIR)/<device>``
    + ``KERNEL_SUFFIX`` (``-kernel.bin`` by default; ``-fit-uImage.itb``...).
    """
    p = Path(path)
    if p.name in request.expected_images:
        return False
    return p.parent.name != "tmp" or "-kernel" in p.name or "uImage" in p.name


def _unknown_packages(output: str) -> list[str]:
    """Packages asked for that no feed has (not a missing dependency of one)."""
    names: list[str] = []
    # opkg_install_by_name: "Unknown package 'P'." (also when P exists but a
    # dependency of it does not: _unsatisfied comes first and names that). A
    # NOTICE, on stdout: `make manifest` discards it, and only the collected
    # " * opkg_install_cmd: Cannot install package P." remains, which opkg
    # also says after a conflict (check_conflicts_for names those).
    names += re.findall(r"Unknown package '([^']+)'", output)
    conflicting = set(re.findall(r"The following packages conflict with (\S+?):", output))
    conflicting |= {m[0] for m in re.findall(_FILE_CLASH, output)}
    for name in re.findall(r"opkg_install_cmd: Cannot install package (\S+?)\.$", output, re.M):
        if name not in conflicting:
            names.append(name)
    if _APK_SOLVER.search(output):
        for name, required_by in _apk_missing(output):
            if "world[" in required_by:
                names.append(name)
    return sorted(dict.fromkeys(names))


_FILE_CLASH = (
    r"check_data_file_clashes: Package (\S+) wants to install file (\S+)\s+"
    r"But that file is already provided by package\s+\*\s+(\S+)"
)
# apk's solver failure (stderr); "unsatisfiable constraints" in older apk-tools
_APK_SOLVER = re.compile(r"^ERROR: (?:unable to select packages|unsatisfiable constraints):", re.M)


def apk_explanation_missing(output: str) -> bool:
    """apk could not select the packages and its explanation is not in ``output``.

    apk prints "ERROR: unable to select packages:" on stderr and the why
    (``(no such package)``, ``conflicts:``) with printf on stdout
    (src/commit.c), and ``make manifest`` runs the install with stdout sent to
    /dev/null (target/imagebuilder/files/Makefile ``_call_manifest``): the
    backends then ask ``make image`` (which shows it; it stops at the same
    install, before building anything).
    """
    return bool(_APK_SOLVER.search(output)) and not re.search(
        r"^\s+\S+ \((?:no such package|missing|virtual)\):$|^\s+conflicts: ", output, re.M
    )


def _apk_missing(output: str) -> list[tuple[str, str]]:
    """apk's ``  <name> (no such package):`` blocks: (name, the required-by line)
    (``(missing)`` in older apk-tools)."""
    return re.findall(
        r"^\s+(\S+?) \((?:no such package|missing)\):\n\s+required by:(.*)$", output, re.M
    )


def _unsatisfied(output: str) -> dict[str, list[str]]:
    """Requested packages whose dependencies no feed has: package -> missing names."""
    found: dict[str, list[str]] = {}

    def add(pkg: str, dep: str) -> None:
        deps = found.setdefault(pkg, [])
        if dep and dep not in deps:
            deps.append(dep)

    # opkg: " * pkg_hash_check_unresolved: cannot find dependency D for P"
    for dep, pkg in re.findall(r"cannot find dependency (\S+) for (\S+)", output):
        add(pkg, dep)
    # opkg: " * satisfy_dependencies_for: Cannot satisfy the following dependencies
    # for P:" then " * \tD1 * \tD2 * " (one message per dependency, no newline)
    for m in re.finditer(
        r"Cannot satisfy the following dependencies for (\S+?):\n((?: \*[^\n]*\n?)*)", output
    ):
        for line in m.group(2).splitlines():
            if "\t" not in line:
                break
            for dep in re.findall(r"\t(\S+)", line):
                add(m.group(1), dep)
        found.setdefault(m.group(1), [])
    # apk: "  D (no such package):" / "    required by: P-1.0-r1[D]" (not world[D])
    if _APK_SOLVER.search(output):
        for name, required_by in _apk_missing(output):
            for pkg in re.findall(r"(\S+?)-\d[^\s\[]*\[", required_by):
                add(pkg, name)
    return found


def _conflicts(output: str) -> str:
    # opkg, variants installing the same file (dnsmasq-full vs dnsmasq; seen in
    # openwrt/openwrt#15103, openwrt/packages#9749, openwrt/asu#822):
    # " * check_data_file_clashes: Package P wants to install file F"
    # "\tBut that file is already provided by package  * Q"
    if m := re.search(_FILE_CLASH, output):
        # the path inside the image (opkg names it under build_dir/.../root-<board>)
        path = re.sub(r"^.*/root-[^/]+(?=/)", "", m.group(2))
        return f"{m.group(1)} conflicts with {m.group(3)} (both install {path})"
    # apk, the same at install time (apk-tools database.c)
    if m := re.search(r"(\S+): [Tt]rying to overwrite (\S+) owned by (\S+?)\.?$", output, re.M):
        return f"{m.group(1)} conflicts with {m.group(3)} (both install {m.group(2)})"
    # opkg: " * check_conflicts_for: The following packages conflict with P:"
    #       " * check_conflicts_for: \tQ * "
    m = re.search(r"check_conflicts_for: The following packages conflict with (\S+?):", output)
    if m:
        others = re.findall(r"check_conflicts_for:\s+(?!The following)(\S+)", output[m.end() :])
        return f"{m.group(1)} conflicts with {', '.join(dict.fromkeys(others)) or 'other packages'}"
    # apk: "  P-1.0:" / "    conflicts: Q-2.0[Q]"
    m = re.search(r"^\s+(\S+?):?\n\s+conflicts: (\S+)", output, re.M)
    if m and _APK_SOLVER.search(output):
        return f"{m.group(1)} conflicts with {m.group(2)}"
    return ""
