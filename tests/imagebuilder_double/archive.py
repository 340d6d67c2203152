"""Generate ImageBuilder double archives named and laid out like the real ones.

``make_imagebuilder("24.10.2", "bcm53xx", "generic", dest)`` writes
``openwrt-imagebuilder-24.10.2-bcm53xx-generic.Linux-x86_64.tar.zst`` whose
top directory holds a Makefile with the real make interface, the shell
implementation under ``scripts/double/`` and the data it reads under
``.double/`` (package index, profiles, target facts). Same arguments give the
same bytes: sorted members, fixed mtimes, uid/gid 0.
"""

from __future__ import annotations

import atexit
import io
import lzma
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from . import catalog
from .catalog import Release, Target, Variant
from .package_data import Package, packages

STATIC = Path(__file__).resolve().parent / "ib"


def archive_basename(release: str, target: str, subtarget: str) -> str:
    """``openwrt-imagebuilder-<ver>-<target>-<subtarget>.Linux-x86_64`` (no extension).

    Snapshots have no version in the name.
    """
    ver = catalog.release(release).file_version
    return f"openwrt-imagebuilder-{ver}{target}-{subtarget}.Linux-x86_64"


def archive_name(release: str, target: str, subtarget: str) -> str:
    """The real archive file name: ``.tar.xz`` up to 23.05, ``.tar.zst`` from 24.10."""
    ext = catalog.release(release).archive_ext
    return f"{archive_basename(release, target, subtarget)}.{ext}"


def _lookup(release: str, target: str, subtarget: str) -> tuple[Release, Target]:
    try:
        rel = catalog.release(release)
    except KeyError:
        raise ValueError(f"the double knows no release {release!r}") from None
    try:
        tgt = catalog.TARGETS[f"{target}/{subtarget}"]
    except KeyError:
        raise ValueError(f"the double knows no target {target}/{subtarget}") from None
    return rel, tgt


def _index_text(rel: Release, tgt: Target, manager: str, variant: Variant) -> str:
    """The package index in opkg ``Packages`` stanza form (the apk variant reads it too)."""
    out = []
    for p in packages(variant.omit_packages, manager, rel.series):
        out.append(_stanza(p, rel, tgt))
    return "\n".join(out)


def _expand(text: str, rel: Release, tgt: Target) -> str:
    return (
        text.replace("%SW%", rel.strongswan)
        .replace("%KVER%", rel.kernel)
        .replace("%ARCH%", tgt.arch)
    )


def _stanza(p: Package, rel: Release, tgt: Target) -> str:
    upstream = rel.kernel if p.version == "kernel" else _expand(p.version, rel, tgt)
    version = rel.pkg_version(upstream)
    depends = ", ".join(d for d in p.depends)
    lines = [f"Package: {p.name}", f"Version: {version}"]
    if depends:
        lines.append(f"Depends: {depends}")
    if p.provides:
        lines.append(f"Provides: {', '.join(p.provides)}")
    if p.conflicts:
        lines.append(f"Conflicts: {', '.join(p.conflicts)}")
    if p.abi:
        lines.append(f"ABIVersion: {p.abi}")
    lines += [
        f"Architecture: {tgt.arch_packages}",
        f"Size: {p.size}",
        f"Installed-Size: {p.size * 2}",
        f"Filename: {p.name}_{version}_{tgt.arch_packages}.ipk",
        f"Description: {p.name} (OpenWrt ImageBuilder double stand-in)",
    ]
    if p.files:
        lines.append("X-Double-Files: " + " ".join(_expand(f, rel, tgt) for f in p.files))
    if p.init:
        lines.append("X-Double-Init: " + " ".join(f"{n}:{s:02d}:{k:02d}" for n, s, k in p.init))
    return "\n".join(lines) + "\n"


def _profiles_tsv(tgt: Target, variant: Variant) -> str:
    rows = []
    for pr in sorted(tgt.profiles, key=lambda x: x.id):
        images = " ".join(f"{t}:{suffix}" for t, suffix in pr.images)
        flash = variant.flash_kib.get(pr.id, pr.flash_kib)
        fields = [
            pr.id, pr.title, pr.vendor, pr.model, pr.variant, " ".join(pr.device_packages),
            " ".join(pr.supported_devices), images, str(flash), "1",
            str(variant.kernel_kib.get(pr.id, "")),
        ]  # fmt: skip
        rows.append("\t".join(fields))
    return "\n".join(rows) + "\n"


def _target_conf(rel: Release, tgt: Target, manager: str, variant: Variant) -> str:
    values = {
        "VERSION": rel.version,
        "FILE_VERSION": rel.file_version,  # "24.10.2-" in file names, "" for snapshots
        "DOWNLOAD_DIR": rel.download_dir,
        "REVISION": rel.revision,
        "BOARD": tgt.target,
        "SUBTARGET": tgt.subtarget,
        "ARCH": tgt.arch,
        "ARCH_PACKAGES": tgt.arch_packages,
        "PKG_MANAGER": manager,
        # fixed inside the ImageBuilder: the environment cannot override it
        "SOURCE_DATE_EPOCH": str(rel.source_date_epoch),
        "KERNEL_VERSION": rel.kernel,
        "KERNEL_SIZE": str(tgt.kernel_bytes),
        "DEFAULT_PACKAGES": " ".join(catalog.default_packages(tgt, manager)),
        # the build host's free space for the root fs (KiB, empty: plenty)
        "DISK_FREE_KIB": "" if variant.disk_free_kib is None else str(variant.disk_free_kib),
    }
    return "".join(f"{k}='{v}'\n" for k, v in values.items())


def _dot_config(rel: Release, tgt: Target, manager: str) -> str:
    t, s = tgt.target, tgt.subtarget
    lines = [
        f"CONFIG_TARGET_{t}=y",
        f"CONFIG_TARGET_{t}_{s}=y",
        f'CONFIG_TARGET_BOARD="{t}"',
        f'CONFIG_TARGET_SUBTARGET="{s}"',
        f'CONFIG_TARGET_ARCH_PACKAGES="{tgt.arch_packages}"',
        f'CONFIG_VERSION_NUMBER="{rel.version}"',
        f'CONFIG_VERSION_CODE="{rel.revision}"',
        "CONFIG_SIGNATURE_CHECK=y",
        "CONFIG_JSON_OVERVIEW_IMAGE_INFO=y",
        "CONFIG_TARGET_ROOTFS_SQUASHFS=y",
    ]
    if manager == "apk":
        lines.append("CONFIG_USE_APK=y")
    else:
        lines.append("# CONFIG_USE_APK is not set")
    return "\n".join(lines) + "\n"


def _repositories(rel: Release, tgt: Target, manager: str) -> tuple[str, str]:
    base = f"https://downloads.openwrt.org/{rel.download_dir}"
    core = f"{base}/targets/{tgt.target}/{tgt.subtarget}/packages"
    feeds = [f"{base}/packages/{tgt.arch_packages}/{f}" for f in ("base", "luci", "packages")]
    feeds += [f"{base}/packages/{tgt.arch_packages}/{f}" for f in ("routing", "telephony")]
    if manager == "apk":
        text = "".join(f"{u}/packages.adb\n" for u in [core, *feeds])
        return "repositories", text + "packages/packages.adb\n"
    names = ["core", "base", "luci", "packages", "routing", "telephony"]
    text = "".join(f"src/gz openwrt_{n} {u}\n" for n, u in zip(names, [core, *feeds], strict=True))
    text += "## This is the local package repository, do not remove!\n"
    text += "src imagebuilder file:packages\noption check_signature\n"
    return "repositories.conf", text


def _members(rel: Release, tgt: Target, variant: Variant) -> dict[str, tuple[bytes | None, int]]:
    """Archive members relative to the top dir: path -> (content or None for a dir, mode)."""
    manager = variant.package_manager or rel.package_manager
    files: dict[str, tuple[bytes | None, int]] = {}
    for src in sorted(STATIC.rglob("*")):
        rel_path = src.relative_to(STATIC).as_posix()
        if src.is_dir():
            files[rel_path] = (None, 0o755)
        else:
            mode = 0o755 if src.suffix == ".sh" else 0o644
            files[rel_path] = (src.read_bytes(), mode)
    repo_name, repo_text = _repositories(rel, tgt, manager)
    generated = {
        ".double/target.conf": _target_conf(rel, tgt, manager, variant),
        ".double/index": _index_text(rel, tgt, manager, variant),
        ".double/profiles.tsv": _profiles_tsv(tgt, variant),
        ".config": _dot_config(rel, tgt, manager),
        repo_name: repo_text,
    }
    for name, text in generated.items():
        files[name] = (text.encode(), 0o644)
    files["packages"] = (None, 0o755)
    if manager == "apk":
        files["keys"] = (None, 0o755)
    return files


def _tar_bytes(top: str, members: dict[str, tuple[bytes | None, int]], mtime: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        names = {top: (None, 0o755)} | {f"{top}/{k}": v for k, v in members.items()}
        # parents before children: sorting full paths does that
        for name in sorted(names):
            data, mode = names[name]
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _compress(raw: bytes, ext: str) -> bytes:
    if ext == "tar.xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ, preset=6)
    try:
        import zstandard
    except ImportError:  # the system tool gives the same kind of frame
        return subprocess.run(
            ["zstd", "-q", "-c", "-10"], input=raw, capture_output=True, check=True
        ).stdout
    return bytes(zstandard.ZstdCompressor(level=10).compress(raw))


def make_imagebuilder(
    release: str,
    target: str,
    subtarget: str,
    dest_dir: Path,
    variant: Variant | None = None,
) -> Path:
    """Write the ImageBuilder double archive into ``dest_dir`` and return its path."""
    variant = variant or Variant()
    rel, tgt = _lookup(release, target, subtarget)
    top = archive_basename(release, target, subtarget)
    raw = _tar_bytes(top, _members(rel, tgt, variant), rel.source_date_epoch)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / archive_name(release, target, subtarget)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(_compress(raw, rel.archive_ext))
    tmp.replace(path)
    return path


_CACHE: dict[tuple[object, ...], Path] = {}
_CACHE_DIR: list[Path] = []


def cached_imagebuilder(
    release: str, target: str, subtarget: str, variant: Variant | None = None
) -> Path:
    """Like :func:`make_imagebuilder`, generated once per process (read-only use)."""
    variant = variant or Variant()
    key = (release, target, subtarget, variant.key())
    if key not in _CACHE:
        if not _CACHE_DIR:
            d = Path(tempfile.mkdtemp(prefix="ibdouble-"))
            atexit.register(shutil.rmtree, d, True)
            _CACHE_DIR.append(d)
        sub = _CACHE_DIR[0] / str(len(_CACHE))
        _CACHE[key] = make_imagebuilder(release, target, subtarget, sub, variant)
    return _CACHE[key]


def extract_imagebuilder(archive: Path, dest_dir: Path) -> Path:
    """Unpack an archive made here into ``dest_dir``; returns the ImageBuilder top dir.

    For tests of the double itself; the driver under test has its own safe extractor.
    """
    data = archive.read_bytes()
    if archive.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    else:
        data = lzma.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest_dir, filter="data")
        top = tar.getnames()[0].split("/")[0]
    return dest_dir / top
