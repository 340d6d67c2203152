"""The dist layout of a router build and its build-info.json.

``dist/<site>/routers/<router>/`` holds the images, ``sha256sums``, the
``.manifest``, ``profile.json`` (the device's profiles.json entry with the
built images), ``overlay.tar`` and ``build-info.json``. It is written to a
temp dir that is renamed into place: dist never holds a partial build.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owrt_vpn import __version__
from owrt_vpn.build.state import BUILD_INFO
from owrt_vpn.errors import BuildError
from owrt_vpn.fsutil import sha256_file
from owrt_vpn.repro import canonical_json, digest, source_date_epoch

if TYPE_CHECKING:
    from owrt_vpn.build.plan import RouterPlan
    from owrt_vpn.imagebuilder.mirror import Resolved


def why_text(info: dict[str, Any]) -> str:
    """One line on what was built."""
    where = f"{info['target']}/{info['subtarget']}"
    return f"{info['release']['version']} {where} {info['device']['profile']}"


def expected_images(res: Resolved, extra: str) -> list[dict[str, str]]:
    """The images ``make image`` must produce for the device, named with EXTRA_IMAGE_NAME.

    From the release's profiles.json entry (what the release build made for
    this device); initramfs kernels are left out (the ImageBuilder cannot
    make them).
    """
    marker = f"-{res.target}-{res.subtarget}-"
    out = []
    for img in res.profile.get("images", []):
        name = str(img.get("name", ""))
        if (
            img.get("filesystem") == "initramfs"
            or img.get("type") == "kernel"
            or marker not in name
        ):
            continue
        i = name.index(marker)
        out.append(
            {
                "name": f"{name[:i]}-{extra}{name[i:]}",
                "type": str(img.get("type", "")),
                "filesystem": str(img.get("filesystem", "")),
            }
        )
    if not out:
        raise BuildError(
            f"profiles.json lists no buildable image for {res.device} in {res.release}",
            hint="this device may not be supported by this release",
        )
    return out


def build_info(
    p: RouterPlan,
    inp: dict[str, Any],
    res: Resolved,
    config_style: str,
    overlay_sha: str,
    wanted: tuple[str, ...],
    disabled: tuple[str, ...],
    installed: dict[str, str],
) -> dict[str, Any]:
    """build-info.json without the image digests (that part is baked into the image)."""
    return {
        "format": 1,
        "tool": {"name": "owrt-vpn", "version": __version__},
        "input_key": digest(inp),
        "inputs": inp,
        # The per-router site digest (what this router carries, see site/digest.py)
        # replaced the whole site file's sha256: an unrelated edit keeps the image.
        "site": {
            "name": p.site.name,
            "file": p.site.path.name,
            "router_digest": digest(inp["site"]),
        },
        "pki": {"sha256": inp["pki"]},
        "router": p.name,
        "release": {
            "version": res.release,
            "requested": res.requested_release,
            "revision": res.version_code,
        },
        "target": res.target,
        "subtarget": res.subtarget,
        "device": {
            "profile": res.device,
            "supported_devices": list(res.profile.get("supported_devices", [])),
            "titles": list(res.profile.get("titles", [])),
        },
        "imagebuilder": {
            "url": res.archive_url,
            "name": res.archive_name,
            "sha256": res.archive_sha256,
            "backend": p.site.settings.backend,
        },
        "signature": dataclasses.asdict(res.signature),
        "packages": {
            "requested": list(wanted),
            "disabled_services": list(disabled),
            "installed": dict(sorted(installed.items())),
        },
        "overlay": {"sha256": overlay_sha},
        "config_style": config_style,
        "source_date_epoch": {
            "overlay": source_date_epoch(),
            "imagebuilder": res.source_date_epoch,
        },
    }


def normalise_tree(root: Path, epoch: int) -> None:
    """Fixed mtimes (and root ownership when we can) for the FILES tree."""
    as_root = os.geteuid() == 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            path = os.path.join(dirpath, n)
            if as_root:
                os.lchown(path, 0, 0)
            os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def write_dist(
    p: RouterPlan,
    res: Resolved,
    info: dict[str, Any],
    images: tuple[Path, ...],
    manifest: Path | None,
    overlay_tar: Path,
    extra: str = "",
) -> None:
    from owrt_vpn.fsutil import atomic_dir

    with atomic_dir(p.out_dir) as tmp:
        # The images and the overlay hold the router's private key: owner only.
        for src in images:
            shutil.move(src, tmp / src.name)
            os.chmod(tmp / src.name, 0o600)
        shutil.move(overlay_tar, tmp / "overlay.tar")
        os.chmod(tmp / "overlay.tar", 0o600)
        if manifest is not None:
            shutil.copyfile(manifest, tmp / manifest.name)
        profile = dict(res.profile)
        # The mirror's image_prefix names the release's own images; ours carry
        # EXTRA_IMAGE_NAME after the version, as their names in `images` do.
        prefix = str(profile.get("image_prefix", ""))
        marker = f"-{res.target}-{res.subtarget}-"
        if extra and marker in prefix + "-":
            i = (prefix + "-").index(marker)
            profile["image_prefix"] = f"{prefix[:i]}-{extra}{prefix[i:]}"
        profile.update(
            {
                "id": res.device,
                "target": f"{res.target}/{res.subtarget}",
                "version_number": res.release,
                "version_code": res.version_code,
                "images": info["images"],
            }
        )
        (tmp / "profile.json").write_bytes(canonical_json(profile) + b"\n")
        (tmp / BUILD_INFO).write_bytes(canonical_json(info) + b"\n")
        sums = "".join(
            f"{sha256_file(f)} *{f.name}\n" for f in sorted(tmp.iterdir()) if f.is_file()
        )
        (tmp / "sha256sums").write_text(sums)
