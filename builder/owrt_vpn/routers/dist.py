"""Reading what `build` left in dist/: a router's image, its digests, what to verify after.

Reads ``dist/<site>/routers/<router>/`` as ``owrt-vpn build`` leaves it:
``profile.json`` (the device's profiles.json entry: ``supported_devices``,
``images[{type, name, sha256}]``), ``build-info.json`` (release, revision,
image digests), ``sha256sums``, ``overlay.tar`` (our files in the image). The
image is hashed here and must match every digest the build recorded: a file
is never trusted because it exists.
"""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owrt_vpn.errors import FlashError, IntegrityError
from owrt_vpn.fsutil import sha256_file
from owrt_vpn.render.overlay import CONNECTIONS, FILES, META, parse_connections_json

IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$")
# Where our VPN files sit in the overlay (see HACKING.md "Image layout").
_META_PREFIX = f"{FILES}/{META}/"
# Keys of build-info.json that the image cannot carry about itself.
DIGEST_KEYS = ("images",)


@dataclass(frozen=True)
class Image:
    """The image file to flash."""

    name: str
    type: str
    sha256: str
    path: Path
    size: int


@dataclass(frozen=True)
class Build:
    """What one router build gives the flasher."""

    dir: Path
    info: dict[str, Any]
    image: Image
    release: str
    revision: str
    supported_devices: tuple[str, ...]
    expected_conns: tuple[str, ...]
    conn_style: str  # "swanctl" or "ipsec"

    def baked_info_matches(self, baked: dict[str, Any] | None) -> bool:
        """True when ``baked`` (the image's own build-info) is this build's, minus image digests."""
        if not baked:
            return False
        want = {k: v for k, v in self.info.items() if k not in DIGEST_KEYS}
        got = {k: v for k, v in baked.items() if k not in DIGEST_KEYS}
        return want == got


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlashError(
            f"{path}: not found",
            hint="build the firmware first: owrt-vpn build (or pass --out DIR)",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlashError(f"{path}: unreadable: {exc}") from None


def pick_image(images: list[dict[str, Any]]) -> dict[str, Any]:
    """The image to flash: the ``sysupgrade`` one where there is one, else the only image."""
    sysupgrade = [i for i in images if i.get("type") == "sysupgrade"]
    if len(sysupgrade) == 1:
        return sysupgrade[0]
    if len(images) == 1:
        return images[0]
    names = ", ".join(f"{i.get('name')} ({i.get('type')})" for i in images) or "none"
    raise FlashError(f"cannot tell which image to flash: no single sysupgrade image among: {names}")


def load_build(build_dir: Path) -> Build:
    """Read and check a router's build.

    FlashError when something is missing, IntegrityError when the image does
    not match a digest the build recorded.
    """
    if not build_dir.is_dir():
        raise FlashError(
            f"{build_dir}: no build for this router",
            hint="build the firmware first: owrt-vpn build (or pass --out DIR)",
        )
    profile = _read_json(build_dir / "profile.json")
    info = _read_json(build_dir / "build-info.json")
    if not isinstance(profile, dict) or not isinstance(info, dict):
        raise FlashError(f"{build_dir}: profile.json and build-info.json must hold JSON objects")
    chosen = pick_image(list(profile.get("images") or []))
    name, sha = str(chosen.get("name", "")), str(chosen.get("sha256", "")).lower()
    if not IMAGE_NAME_RE.fullmatch(name) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise FlashError(f"{build_dir}/profile.json: bad image entry {chosen!r}")
    path = build_dir / name
    if not path.is_file():
        raise FlashError(f"{path}: image missing", hint="rebuild: owrt-vpn build")
    actual = sha256_file(path)
    recorded = {"profile.json": sha}
    for entry in info.get("images") or []:
        if isinstance(entry, dict) and entry.get("name") == name and entry.get("sha256"):
            recorded["build-info.json"] = str(entry["sha256"]).lower()
    sums = _sha256sums(build_dir / "sha256sums").get(name)
    if sums:
        recorded["sha256sums"] = sums
    wrong = [src for src, digest in recorded.items() if digest != actual]
    if wrong:
        raise IntegrityError(
            f"{path}: sha256 {actual} does not match {', '.join(wrong)}",
            hint="the image was changed after the build: rebuild it with owrt-vpn build",
        )
    release, revision = _release(info)
    devices = tuple(str(d) for d in profile.get("supported_devices") or [])
    if not devices:
        raise FlashError(f"{build_dir}/profile.json: no supported_devices: cannot check the board")
    conns, style = _expected_conns(build_dir / "overlay.tar")
    return Build(
        dir=build_dir,
        info=info,
        image=Image(name, str(chosen.get("type", "")), actual, path, path.stat().st_size),
        release=release,
        revision=revision,
        supported_devices=devices,
        expected_conns=conns,
        conn_style=str(info.get("config_style") or style),
    )


def _release(info: dict[str, Any]) -> tuple[str, str]:
    rel = info.get("release")
    if isinstance(rel, dict):
        version, revision = rel.get("version"), rel.get("revision")
    else:
        version, revision = rel, info.get("revision")
    if not version or not revision:
        raise FlashError(
            "build-info.json: release version and revision are needed to verify the flash"
        )
    return str(version), str(revision)


def _sha256sums(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def _expected_conns(overlay: Path) -> tuple[tuple[str, ...], str]:
    """The connection names the build's render recorded (``_meta/connections.json`` of
    the file set in overlay.tar), and the style (``_meta/style``).

    Metadata, never the generated config re-parsed; a build from before the
    metadata existed has none (the image's rebuild key changed with it).
    """
    conns: tuple[str, ...] = ()
    style = "swanctl"
    if not overlay.exists():
        return conns, style
    with tarfile.open(overlay) as tar:
        for m in tar.getmembers():
            name = m.name.removeprefix("./")
            if not m.isfile() or not name.startswith(_META_PREFIX):
                continue
            fh = tar.extractfile(m)
            text = fh.read().decode(errors="replace") if fh else ""
            if name == _META_PREFIX + CONNECTIONS:
                conns = parse_connections_json(text)
            elif name == _META_PREFIX + "style" and text.strip() in ("swanctl", "ipsec"):
                style = text.strip()
    return conns, style
