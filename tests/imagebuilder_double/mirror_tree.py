"""Lay out a download mirror like downloads.openwrt.org, signed with a test key.

::

    <base>/.versions.json
    <base>/releases/<ver>/.targets.json
    <base>/releases/<ver>/targets/<t>/<s>/sha256sums          "<hex> *<file>" lines
    (snapshots: <base>/snapshots/.targets.json, <base>/snapshots/targets/<t>/<s>/...)
                                         sha256sums.sig      usign/signify signature
                                         profiles.json  version.buildinfo  <archive>
                                         packages/  kmods/<kver>-1-<vermagic>/ (24.10+)

Keys are made with ``signify-openbsd -G -n`` (usign-compatible: the key number
is in both the public key and the signature). Key files go where the caller
says (a test's tmp dir), never into the repository. Helpers below produce the
faults a downloader must refuse: a corrupted signature, a signature by another
key, an archive that no longer matches its ``sha256sums`` line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog
from .archive import archive_name, make_imagebuilder
from .catalog import Variant


@dataclass(frozen=True)
class SigningKey:
    """A signify/usign key pair on disk."""

    public: Path
    secret: Path

    @property
    def keynum(self) -> bytes:
        """The 8-byte key number (bytes 2..10 of the decoded public key line)."""
        raw = base64.b64decode(self.public.read_text().splitlines()[1])
        return raw[2:10]

    @property
    def keynum_hex(self) -> str:
        """The key number as 16 lowercase hex digits (usign's key id)."""
        return self.keynum.hex()


def make_signing_key(key_dir: Path, name: str = "test-release") -> SigningKey:
    """Generate a passphrase-less signify key pair ``<name>.pub``/``<name>.sec``."""
    key_dir.mkdir(parents=True, exist_ok=True)
    pub, sec = key_dir / f"{name}.pub", key_dir / f"{name}.sec"
    for p in (pub, sec):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["signify-openbsd", "-G", "-n", "-p", str(pub), "-s", str(sec), "-c", f"{name} key"],
        check=True,
        capture_output=True,
    )
    return SigningKey(pub, sec)


def sign_file(key: SigningKey, path: Path) -> Path:
    """Write ``<path>.sig`` (signify/usign format) over the exact bytes of ``path``."""
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    subprocess.run(
        ["signify-openbsd", "-S", "-s", str(key.secret), "-m", str(path), "-x", str(sig)],
        check=True,
        capture_output=True,
    )
    return sig


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sha256sums(target_dir: Path) -> Path:
    """``sha256sums`` over every regular file of the target dir (but itself and .sig/.asc)."""
    skip = {"sha256sums", "sha256sums.sig", "sha256sums.asc"}
    lines = [
        f"{sha256_file(p)} *{p.name}\n"
        for p in sorted(target_dir.iterdir())
        if p.is_file() and p.name not in skip
    ]
    out = target_dir / "sha256sums"
    out.write_text("".join(lines))
    return out


def _site_profiles_json(release: str, target: str, subtarget: str) -> str:
    """The target-level ``profiles.json`` of the download site (every profile).

    Image sha256s stand in for images the mirror does not carry.
    """
    rel = catalog.release(release)
    tgt = catalog.TARGETS[f"{target}/{subtarget}"]
    manager = rel.package_manager
    prefix = f"openwrt-{rel.file_version}{target}-{subtarget}"
    profiles = {}
    for pr in tgt.profiles:
        title: dict[str, str] = {"vendor": pr.vendor, "model": pr.model}
        if pr.variant:
            title["variant"] = pr.variant
        images = []
        for typ, suffix in pr.images:
            name = f"{prefix}-{pr.id}-{suffix}"
            digest = hashlib.sha256(name.encode()).hexdigest()
            images.append(
                {
                    "filesystem": "squashfs",
                    "name": name,
                    "sha256": digest,
                    "sha256_unsigned": digest,
                    "type": typ,
                }
            )
        profiles[pr.id] = {
            "device_packages": list(pr.device_packages),
            "image_prefix": f"{prefix}-{pr.id}",
            "images": images,
            "supported_devices": list(pr.supported_devices),
            "titles": [title],
        }
    doc = {
        "arch_packages": tgt.arch_packages,
        "default_packages": catalog.default_packages(tgt, manager),
        "metadata_version": 1,
        "profiles": profiles,
        "source_date_epoch": rel.source_date_epoch,
        "target": tgt.id,
        "version_code": rel.revision,
        "version_number": rel.version,
    }
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


@dataclass
class Mirror:
    """A generated mirror tree and the key that signed it."""

    base: Path
    key: SigningKey
    builds: list[tuple[str, str, str]] = field(default_factory=list)

    def target_dir(self, release: str, target: str, subtarget: str) -> Path:
        """``<base>/releases/<ver>/targets/<t>/<s>`` (``<base>/snapshots/targets/...``)."""
        rel = catalog.release(release).download_dir
        return self.base / rel / "targets" / target / subtarget

    def archive(self, release: str, target: str, subtarget: str) -> Path:
        """Path of the ImageBuilder archive inside the mirror."""
        return self.target_dir(release, target, subtarget) / archive_name(
            release, target, subtarget
        )

    def url_path(self, release: str, target: str, subtarget: str, name: str) -> str:
        """The URL path (``/releases/...``) of a file of a target dir."""
        rel = self.target_dir(release, target, subtarget).relative_to(self.base)
        return f"/{rel.as_posix()}/{name}"

    def resign(self, release: str, target: str, subtarget: str) -> None:
        """Recompute ``sha256sums`` and sign it again with the mirror's key."""
        tdir = self.target_dir(release, target, subtarget)
        sign_file(self.key, write_sha256sums(tdir))


def _write_indexes(base: Path, builds: list[tuple[str, str, str]]) -> None:
    dirs: dict[str, dict[str, str]] = {}
    for ver, t, s in builds:
        tgt = catalog.TARGETS[f"{t}/{s}"]
        dirs.setdefault(catalog.release(ver).download_dir, {})[tgt.id] = tgt.arch_packages
    for rel_dir, targets in dirs.items():
        out = base / rel_dir / ".targets.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(targets, sort_keys=True, indent=2) + "\n")
    versions = sorted(
        {catalog.release(b[0]).version for b in builds} - {"SNAPSHOT"}, key=_version_key
    )[::-1]
    if not versions:
        return
    stable = catalog.STABLE if catalog.STABLE in versions else versions[0]
    doc = {
        "oldstable_version": catalog.OLDSTABLE,
        "stable_version": stable,
        "upcoming_version": catalog.UPCOMING,
        "versions_list": versions,
    }
    (base / ".versions.json").write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else 0 for x in v.replace("-", ".").split("."))


def make_mirror(
    base: Path,
    key: SigningKey,
    builds: list[tuple[str, str, str]] | None = None,
    variant: Variant | None = None,
) -> Mirror:
    """Create a mirror under ``base`` with an ImageBuilder double per ``(ver, t, s)``.

    Defaults to ``[("24.10.2", "bcm53xx", "generic")]``.
    """
    builds = builds or [("24.10.2", "bcm53xx", "generic")]
    mirror = Mirror(base, key, list(builds))
    for ver, t, s in builds:
        tdir = mirror.target_dir(ver, t, s)
        (tdir / "packages").mkdir(parents=True, exist_ok=True)
        rel = catalog.release(ver)
        if rel.series >= "24.10":  # kmods/<kver>-<rel>-<vermagic>/ from 24.10 on
            vermagic = hashlib.sha256(f"{ver}{t}{s}".encode()).hexdigest()[:32]
            (tdir / "kmods" / f"{rel.kernel}-1-{vermagic}").mkdir(parents=True, exist_ok=True)
        make_imagebuilder(ver, t, s, tdir, variant)
        (tdir / "profiles.json").write_text(_site_profiles_json(ver, t, s))
        (tdir / "version.buildinfo").write_text(rel.revision + "\n")
        mirror.resign(ver, t, s)
    _write_indexes(base, builds)
    return mirror


# ----------------------------------------------------------------- faults to refuse


def corrupt_signature(sig: Path) -> None:
    """Flip one bit of the Ed25519 signature, keeping the key number (a bad signature)."""
    lines = sig.read_text().splitlines()
    raw = bytearray(base64.b64decode(lines[1]))
    raw[20] ^= 0x01
    lines[1] = base64.b64encode(bytes(raw)).decode()
    sig.write_text("\n".join(lines) + "\n")


def sign_with_other_key(mirror: Mirror, release: str, target: str, subtarget: str,
                        key_dir: Path) -> SigningKey:  # fmt: skip
    """Re-sign a target's ``sha256sums`` with a fresh key the client does not know."""
    other = make_signing_key(key_dir, "unknown-signer")
    sign_file(other, mirror.target_dir(release, target, subtarget) / "sha256sums")
    return other


def tamper_archive(mirror: Mirror, release: str, target: str, subtarget: str) -> None:
    """Change the archive's bytes after signing: its ``sha256sums`` line no longer matches."""
    path = mirror.archive(release, target, subtarget)
    with path.open("ab") as f:
        f.write(b"\0tampered")


def wrong_sha256_line(mirror: Mirror, release: str, target: str, subtarget: str) -> None:
    """Sign a ``sha256sums`` whose archive line is wrong (valid signature, bad digest)."""
    tdir = mirror.target_dir(release, target, subtarget)
    name = archive_name(release, target, subtarget)
    sums = tdir / "sha256sums"
    lines = []
    for line in sums.read_text().splitlines():
        if line.endswith(f"*{name}"):
            line = "0" * 64 + f" *{name}"
        lines.append(line + "\n")
    sums.write_text("".join(lines))
    sign_file(mirror.key, sums)
