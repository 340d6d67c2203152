"""Resolve a release/target/device against a mirror of downloads.openwrt.org.

The mirror's own indexes decide what exists: ``.versions.json`` (releases),
``releases/<ver>/.targets.json`` (targets/subtargets), then the target
directory's signed ``sha256sums`` and ``profiles.json`` (devices). Unknown
names get a ConfigError listing the closest real ones.

The signature over ``sha256sums`` is checked here (see :mod:`owrt_vpn.imagebuilder.keys`);
``profiles.json`` is checked against its line in the signed list, and the
ImageBuilder archive's name and sha256 are taken from that list only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from owrt_vpn.errors import ConfigError, DownloadError, IntegrityError, NotFoundError, closest
from owrt_vpn.imagebuilder.cache import Transport, is_local
from owrt_vpn.imagebuilder.keys import Keyring
from owrt_vpn.profiles import DEFAULT_MIRROR

HOST_SUFFIX = "Linux-x86_64"
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(.+)$")
_TARGET_PAIR = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}/[a-z0-9][a-z0-9_-]{0,31}")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-rc(\d+))?$")


@dataclass(frozen=True)
class SignatureCheck:
    """What happened to the signature over ``sha256sums``."""

    verified: bool
    skipped: bool
    key_id: str | None = None
    key_comment: str | None = None


@dataclass(frozen=True)
class Resolved:
    """A release/target/device that exists on the mirror, with its verified ImageBuilder."""

    mirror: str
    requested_release: str
    release: str
    target: str
    subtarget: str
    device: str
    dir_url: str
    archive_name: str
    archive_sha256: str
    profile: dict[str, Any]
    profiles_meta: dict[str, Any]
    signature: SignatureCheck
    sums: dict[str, str] = field(repr=False, default_factory=dict)
    # Every profile id of this target's profiles.json (for `check`'s did-you-mean).
    profile_ids: tuple[str, ...] = field(repr=False, default=())

    @property
    def archive_url(self) -> str:
        """The ImageBuilder archive's URL (or path, for a directory mirror)."""
        return f"{self.dir_url}/{self.archive_name}"

    @property
    def version_code(self) -> str:
        """The revision, e.g. ``r28427-6df0e3d02a`` (from profiles.json)."""
        return str(self.profiles_meta.get("version_code", ""))

    @property
    def source_date_epoch(self) -> int | None:
        """The release's SOURCE_DATE_EPOCH (from profiles.json), if given."""
        value = self.profiles_meta.get("source_date_epoch")
        return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def join(base: str, *parts: str) -> str:
    """``base`` + ``/part``... for URLs and directory paths alike."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _json(transport: Transport, url: str, what: str) -> Any:
    data = transport.get_bytes(url, what)
    try:
        return json.loads(data)
    except ValueError:
        raise DownloadError(f"{what}: not valid JSON ({url})") from None


def version_key(version: str) -> tuple[int, int, int, int]:
    """Sort key: 24.10.2 > 24.10.2-rc1 > 24.10.1."""
    m = _VERSION.fullmatch(version)
    if not m:
        return (-1, -1, -1, -1)
    rc = int(m.group(4)) if m.group(4) else 1_000_000
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), rc)


def resolve_release(transport: Transport, mirror: str, requested: str) -> str:
    """The concrete release for ``requested`` (``24.10.2``, ``24.10.x``, ``snapshot``)."""
    if requested.lower() == "snapshot":
        return "snapshot"
    if requested.endswith("-SNAPSHOT"):  # a release branch: releases/<x>-SNAPSHOT/, unlisted
        return requested
    url = join(mirror, ".versions.json")
    try:
        index = _json(transport, url, ".versions.json")
    except DownloadError:
        if requested.endswith(".x"):
            raise
        return requested  # no index on this mirror: the target dir decides
    versions = [str(v) for v in index.get("versions_list", [])]
    for key in ("stable_version", "oldstable_version", "upcoming_version"):
        # (the real .versions.json has an empty upcoming_version between releases)
        if isinstance(index.get(key), str) and index[key] and index[key] not in versions:
            versions.append(index[key])
    # The index is unsigned: a name that is not a release number (`24.10./../x`,
    # a newline, an escape sequence) would reach URLs, paths and the terminal.
    versions = [v for v in versions if _VERSION.fullmatch(v)]
    if requested.endswith(".x"):
        series = requested[:-1]
        matching = sorted((v for v in versions if v.startswith(series)), key=version_key)
        final = [v for v in matching if "-rc" not in v]
        if final or matching:
            return (final or matching)[-1]
    elif requested in versions:
        return requested
    newest = sorted(versions, key=version_key, reverse=True)[:8]
    raise ConfigError(
        f"release {requested!r} is not on the mirror {mirror}",
        hint=f"releases there: {', '.join(newest)}; or a series like 24.10.x, or snapshot",
    )


def release_dir(mirror: str, release: str, target: str, subtarget: str) -> str:
    """The target directory URL of a release (or snapshots)."""
    if release == "snapshot":
        return join(mirror, "snapshots", "targets", target, subtarget)
    return join(mirror, "releases", release, "targets", target, subtarget)


def check_target(
    transport: Transport, mirror: str, release: str, target: str, subtarget: str
) -> None:
    """ConfigError with the closest names when the mirror has no ``target/subtarget``."""
    base = join(mirror, "snapshots") if release == "snapshot" else join(mirror, "releases", release)
    try:
        index = _json(transport, join(base, ".targets.json"), ".targets.json")
    except DownloadError:
        return  # not every mirror has the index: the sha256sums download decides
    # Unsigned too: only names that can be a target/subtarget reach the hints.
    names = sorted(str(k) for k in index if _TARGET_PAIR.fullmatch(str(k)))
    if f"{target}/{subtarget}" in names:
        return
    subs = [n.split("/", 1)[1] for n in names if n.startswith(f"{target}/")]
    if subs:
        raise ConfigError(
            f"target {target!r} has no subtarget {subtarget!r} in {release}",
            hint=f"subtargets of {target}: {', '.join(subs)}",
        )
    near = closest(target, sorted({n.split("/")[0] for n in names}))
    raise ConfigError(
        f"target {target!r} does not exist in {release}",
        hint=f"closest targets: {', '.join(near) or 'none'} (see {base}/.targets.json)",
    )


def parse_sums(text: str) -> dict[str, str]:
    """``sha256sums`` lines (``<hex> *<name>``) as {name: hex}."""
    out = {}
    for line in text.splitlines():
        m = _SUMS_LINE.match(line.strip())
        if m:
            out[m.group(2)] = m.group(1).lower()
    return out


def find_archive(sums: dict[str, str], release: str, target: str, subtarget: str) -> str:
    """The ImageBuilder archive's name in the signed list."""
    stem = "openwrt-imagebuilder"
    if release != "snapshot":
        stem += f"-{release}"
    stem += f"-{target}-{subtarget}.{HOST_SUFFIX}.tar."
    for ext in ("zst", "xz"):
        if stem + ext in sums:
            return stem + ext
    found = sorted(n for n in sums if n.startswith("openwrt-imagebuilder") and ".tar." in n)
    if len(found) == 1 and HOST_SUFFIX in found[0]:
        return found[0]
    raise DownloadError(
        f"no ImageBuilder for {target}/{subtarget} {release} in the signed sha256sums",
        hint="this target may not publish an ImageBuilder for x86_64 hosts",
    )


def find_profile(profiles: dict[str, Any], device: str, where: str) -> str:
    """The profile id for ``device`` (an id or a supported_devices board name)."""
    if device in profiles:
        return device
    for pid, entry in profiles.items():
        if device in entry.get("supported_devices", []):
            return str(pid)
    ids = sorted(profiles)
    near = closest(device, ids)
    if near:
        hint = f"closest profile names: {', '.join(near)} (all: profiles.json)"
    else:  # nothing close (e.g. a device of another target): what this target has
        shown = ", ".join(ids[:12]) + (f" ... ({len(ids)} in all)" if len(ids) > 12 else "")
        hint = f"profiles of {where}: {shown}"
    raise ConfigError(f"device {device!r} is not a profile of {where}", hint=hint)


def resolve(
    mirror: str,
    release: str,
    target: str,
    subtarget: str,
    device: str,
    keyring: Keyring | None,
    transport: Transport,
) -> Resolved:
    """Everything needed to fetch and run the right ImageBuilder, verified.

    ``keyring=None`` skips the signature check (the explicit insecure flag);
    the caller must warn and record it.
    """
    concrete = resolve_release(transport, mirror, release)
    check_target(transport, mirror, concrete, target, subtarget)
    dir_url = release_dir(mirror, concrete, target, subtarget)
    where = f"{target}/{subtarget} {concrete}"
    try:
        sums_bytes = transport.get_bytes(join(dir_url, "sha256sums"), f"{where} sha256sums")
    except NotFoundError as exc:
        # No signed index for this release/target: what was asked for is not
        # there (bad input, exit 2: nothing was written), most often because
        # the mirror is not an OpenWrt mirror at all.
        rel = dir_url[len(mirror.rstrip("/")) :].strip("/")
        raise ConfigError(
            exc.message,
            hint=f"wrong --mirror? it has no {rel}/ (the official mirror is "
            f"{DEFAULT_MIRROR}); or check the release, target and subtarget",
        ) from None
    if keyring is None:
        sig = SignatureCheck(verified=False, skipped=True)
    else:
        try:
            sig_text = transport.get_bytes(join(dir_url, "sha256sums.sig"), "sha256sums.sig")
        except DownloadError as exc:
            raise IntegrityError(
                f"{where}: sha256sums has no usign signature ({exc.message})",
                hint="use a mirror that carries sha256sums.sig",
            ) from None
        key = keyring.verify(sums_bytes, sig_text, f"{dir_url}/sha256sums")
        sig = SignatureCheck(
            verified=True, skipped=False, key_id=key.key_id, key_comment=key.comment
        )
    sums = parse_sums(sums_bytes.decode("utf-8", errors="replace"))
    archive = find_archive(sums, concrete, target, subtarget)

    profiles_bytes = transport.get_bytes(join(dir_url, "profiles.json"), f"{where} profiles.json")
    want = sums.get("profiles.json")
    got = hashlib.sha256(profiles_bytes).hexdigest()
    if want is None and keyring is not None:
        raise IntegrityError(f"{where}: profiles.json is not listed in the signed sha256sums")
    if want is not None and want != got:
        raise IntegrityError(
            f"{where}: profiles.json sha256 mismatch (signed {want}, got {got})",
            hint="the mirror serves an altered or stale profiles.json; try another mirror",
        )
    try:
        pj = json.loads(profiles_bytes)
        profiles = pj["profiles"]
    except (ValueError, KeyError, TypeError):
        raise DownloadError(f"{where}: profiles.json has no profiles") from None
    pid = find_profile(profiles, device, where)
    meta = {k: v for k, v in pj.items() if k != "profiles"}
    return Resolved(
        mirror=mirror,
        requested_release=release,
        release=concrete,
        target=target,
        subtarget=subtarget,
        device=pid,
        dir_url=dir_url,
        archive_name=archive,
        archive_sha256=sums[archive],
        profile=dict(profiles[pid]),
        profiles_meta=meta,
        signature=sig,
        sums=sums,
        profile_ids=tuple(sorted(str(k) for k in profiles)),
    )


def normalize_mirror(value: str) -> str:
    """A mirror URL or directory, without a trailing slash; directories made absolute."""
    if is_local(value) and not value.startswith("file://"):
        from pathlib import Path

        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"--mirror: {value}: no such directory")
        return str(path)
    if not value.startswith(("http://", "https://", "file://")):
        raise ConfigError(f"--mirror: {value!r} is not an http(s) URL or a directory")
    return value.rstrip("/")
