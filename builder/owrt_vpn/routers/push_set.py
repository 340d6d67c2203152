"""The VPN file set `push` uploads, and what it changes on a router.

The set is rendered by :func:`owrt_vpn.render.overlay.render`, the function a
build uses, for the release and config style the router's firmware was
built with (read from its baked build-info), so a push and a flash of the
same site state install the same files. It is held in memory
(:class:`VpnSet`), compared with the router's files by sha256
(:func:`compare`), shown as a diff (:func:`add_diffs`: never the content of
a secret: keys and the EAP secrets are "changed" only) and uploaded as a tar
with its own ``sha256sums`` (:meth:`VpnSet.tarball`).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from typing import Any

from owrt_vpn.errors import RouterError
from owrt_vpn.render import overlay, packages
from owrt_vpn.routers.state import cert_facts, crl_facts, pem_blocks
from owrt_vpn.site.model import Router, Site

META = overlay.META
MAX_DIFF_LINES = 200


@dataclass(frozen=True)
class VpnSet:
    """A router's rendered VPN file set (``usr/share/owrt-vpn/files``), in memory."""

    router: str
    release: str
    style: str
    files: dict[str, tuple[bytes, int]]  # every file of the set (incl. _meta/) -> (data, mode)
    manifest: dict[str, int]  # target path -> mode: what the installer puts in place
    conns: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def sha256(self, rel: str) -> str:
        """The digest of one file of the set."""
        return hashlib.sha256(self.files[rel][0]).hexdigest()

    def tarball(self) -> bytes:
        """``files/<set>`` plus ``sha256sums`` (checked on the router before installing).

        ustar format (busybox tar reads it), sorted, uid/gid 0, fixed mtime.
        """
        sums = "".join(f"{self.sha256(rel)}  {rel}\n" for rel in sorted(self.files))
        entries = [(f"files/{rel}", data, mode) for rel, (data, mode) in sorted(self.files.items())]
        entries.append(("sha256sums", sums.encode(), 0o644))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data, mode in entries:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    @property
    def digest(self) -> str:
        """sha256 over the whole set (names, modes, contents)."""
        h = hashlib.sha256()
        for rel, (data, mode) in sorted(self.files.items()):
            h.update(f"{rel}\0{mode:o}\0{len(data)}\0".encode())
            h.update(data)
        return h.hexdigest()


def firmware_release(baked: dict[str, Any]) -> str | None:
    """The release version recorded in a baked build-info (either shape)."""
    rel = baked.get("release")
    version = rel.get("version") if isinstance(rel, dict) else rel
    return str(version) if version else None


def firmware_router(site: Site, router: Router, baked: dict[str, Any]) -> tuple[Router, str]:
    """``router`` as its firmware was built (release), and the firmware's config style.

    The files must suit the strongSwan and firewall the router runs, even
    when the site file has moved on to a newer release.
    """
    release = firmware_release(baked) or router.release
    eff = router.model_copy(update={"release": release})
    style = baked.get("config_style")
    if style not in ("swanctl", "ipsec"):
        style = packages.config_style(eff)
    return eff, str(style)


def missing_packages(site: Site, router: Router, style: str, baked: dict[str, Any]) -> list[str]:
    """Packages the site's VPN now needs that the firmware does not have.

    Compared with what the baked build-info recorded (requested packages and
    the installed manifest, which includes dependencies). RouterError when
    the build-info records no packages at all.
    """
    pk = baked.get("packages")
    have: set[str] = set()
    if isinstance(pk, dict):
        have |= {str(p) for p in pk.get("requested") or [] if isinstance(p, str)}
        inst = pk.get("installed")
        if isinstance(inst, dict):
            have |= {str(k) for k in inst}
    if not have:
        raise RouterError(
            "the firmware's build-info records no package list: cannot tell whether "
            "this change needs new packages",
            hint="rebuild and flash this router once (owrt-vpn build, owrt-vpn flash)",
        )
    need = packages.package_list(site, router, style)
    return [p for p in need if not p.startswith("-") and p not in have]


def render_set(site: Site, router: Router, pki: overlay.PkiSource, style: str) -> VpnSet:
    """Render ``router``'s overlay (as a build does, in memory) and keep its VPN file set.

    The connection names come with the render (its metadata), not from the text.
    """
    res = overlay.render_files(site, router, pki, config_style=style)
    return VpnSet(
        router=router.name,
        release=router.release,
        style=style,
        files=dict(sorted(res.file_set.items())),
        manifest=dict(sorted(res.manifest.items())),
        conns=res.connection_names,
        warnings=res.warnings,
    )


def parse_manifest(text: str) -> dict[str, int]:
    """``<mode> <path>`` lines (the installer's manifest) -> {path: mode}; odd lines skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not all(c in "01234567" for c in parts[0]):
            continue
        rel = parts[1]
        if rel.startswith("/") or ".." in rel.split("/") or rel.startswith(f"{META}/"):
            continue
        out[rel] = int(parts[0], 8)
    return out


def parse_sums(text: str) -> dict[str, str]:
    """``sha256sum /path`` output -> {path without the leading /: digest}."""
    out = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        if len(digest) == 64 and path.startswith("/"):
            out[path[1:]] = digest.lower()
    return out


def is_secret(rel: str, mode: int | None) -> bool:
    """Keys and the EAP secrets: shown as changed only, never their content."""
    name = rel.rsplit("/", 1)[-1]
    return (
        (mode is not None and mode & 0o077 == 0)
        or "/private/" in f"/{rel}"
        or "secrets" in name
        or name.endswith(".key")
    )


@dataclass
class FileChange:
    """One file the push adds, removes or changes on the router."""

    path: str  # the target path, e.g. /etc/swanctl/conf.d/owrt-vpn.conf
    change: str  # added | removed | changed
    secret: bool = False
    diff: str | None = None  # unified diff (non-secret text files)
    notes: list[str] = field(default_factory=list)  # e.g. what a PEM file holds now

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "path": self.path,
            "change": self.change,
            "secret": self.secret,
            "diff": self.diff,
            "notes": self.notes,
        }


def compare(
    vset: VpnSet, remote_manifest: dict[str, int], remote_sums: dict[str, str]
) -> list[FileChange]:
    """What installing ``vset`` changes: by content (sha256) and by the previous manifest."""
    changes = []
    for rel, mode in sorted(vset.manifest.items()):
        secret = is_secret(rel, mode)
        have = remote_sums.get(rel)
        if have is None:
            changes.append(FileChange(f"/{rel}", "added", secret))
        elif have != vset.sha256(rel):
            changes.append(FileChange(f"/{rel}", "changed", secret))
    for rel, mode in sorted(remote_manifest.items()):
        if rel not in vset.manifest and rel in remote_sums:
            changes.append(FileChange(f"/{rel}", "removed", is_secret(rel, mode)))
    return changes


def paths_to_fetch(changes: list[FileChange]) -> list[str]:
    """The changed non-secret files whose old text the diff needs."""
    return [c.path for c in changes if c.change == "changed" and not c.secret]


def add_diffs(changes: list[FileChange], vset: VpnSet, old: dict[str, bytes]) -> None:
    """Fill in unified diffs (or PEM summaries) for non-secret files; secrets stay opaque."""
    for c in changes:
        if c.secret:
            continue
        rel = c.path.lstrip("/")
        new = vset.files[rel][0] if rel in vset.files else None
        before = old.get(c.path)
        if new is not None and pem_blocks(new):
            c.notes = describe_pem(new)
            continue
        if c.change != "changed" or new is None or before is None:
            continue
        a, b = _text(before), _text(new)
        if a is None or b is None:
            c.notes = ["binary file"]
            continue
        lines = list(
            difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                fromfile=f"router:{c.path}",
                tofile=f"site:{c.path}",
            )
        )
        if len(lines) > MAX_DIFF_LINES:
            lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines\n"]
        c.diff = "".join(x if x.endswith("\n") else x + "\n" for x in lines)


def _text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def describe_pem(data: bytes) -> list[str]:
    """One line per certificate/CRL in a PEM file (a base64 diff would say nothing)."""
    out = []
    for block in pem_blocks(data):
        if b"X509 CRL" in block:
            crl = crl_facts(block)
            if crl:
                out.append(
                    f"CRL number {crl.number}: {crl.revoked} revoked, next update {crl.next_update}"
                )
        elif b"CERTIFICATE" in block:
            cert = cert_facts(block)
            if cert:
                out.append(
                    f"certificate {cert.subject} serial {cert.serial}, until {cert.not_after}"
                )
    return out


def old_texts(tar_bytes: bytes) -> dict[str, bytes]:
    """The files of a ``tar -cf - -C / ...`` stream from the router, by absolute path."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            for m in tar.getmembers():
                fh = tar.extractfile(m) if m.isfile() else None
                if fh is not None:
                    out["/" + m.name.removeprefix("./").lstrip("/")] = fh.read()
    except tarfile.TarError:
        return {}
    return out
