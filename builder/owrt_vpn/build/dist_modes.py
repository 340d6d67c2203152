"""Modes under ``dist/<site>/``: what holds a secret stays owner-only.

A build writes each router's folder 0700 with its images and ``overlay.tar``
0600 (they hold the router's private key), and each user's bundle folder
0700 with the zips, PKCS#12 files, keys and scripts that embed them 0600.
Folders a later build skips as up to date keep whatever mode someone set
since (``chmod -R a+r dist``, an archive unpacked with another umask), so
``check``, ``build`` and ``bundle`` warn about looser modes and repair the
ones this user owns, as they do for the PKI folder (:mod:`owrt_vpn.pki.audit`).

Which files are secret is what the writers decided: under ``routers/<r>/``
every file but the public metadata; in a device's bundle folder the files
its zip records as 0600 (the zip is written from the same list), and
``*.p12``/``*.key`` whatever the zip says; beside the folders, the zips and
``.mobileconfig`` files (only secret ones are written beside the folder).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from owrt_vpn.fsutil import tighten

SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700
# What a router's dist folder holds that is no secret (build/output.py).
PUBLIC_ROUTER_FILES = frozenset({"build-info.json", "profile.json", "sha256sums"})
# Beside a user's device folders: always secret (bundles/writer.py).
SECRET_BESIDE = (".zip", ".mobileconfig")
ALWAYS_SECRET = (".p12", ".key")


def _zip_secrets(zip_path: Path) -> set[str]:
    """Names (inside the device folder) the zip records with an owner-only mode."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile):
        return set()  # no zip to go by: the suffixes still decide
    out = set()
    for info in infos:
        mode = (info.external_attr >> 16) & 0o777
        if "/" in info.filename and mode and not mode & 0o077:
            out.add(info.filename.split("/", 1)[1])
    return out


def _entries(site_dist: Path) -> Iterator[tuple[Path, int]]:
    """(path, wanted mode) for every secret file and folder under ``site_dist``."""
    routers = site_dist / "routers"
    if routers.is_dir():
        for folder in sorted(routers.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            yield folder, SECRET_DIR_MODE
            for f in sorted(folder.iterdir()):
                public = f.name in PUBLIC_ROUTER_FILES or f.name.endswith(".manifest")
                if f.is_file() and not public:
                    yield f, SECRET_FILE_MODE
    clients = site_dist / "clients"
    if not clients.is_dir():
        return
    for user in sorted(clients.iterdir()):
        if not user.is_dir() or user.name.startswith("."):
            continue
        yield user, SECRET_DIR_MODE
        for f in sorted(user.iterdir()):
            if f.is_file() and f.suffix in SECRET_BESIDE:
                yield f, SECRET_FILE_MODE
            elif f.is_dir():
                secrets = _zip_secrets(user / f"{user.name}-{f.name}.zip")
                files = [g for g in sorted(f.iterdir()) if g.is_file()]
                secret = [g for g in files if g.name in secrets or g.suffix in ALWAYS_SECRET]
                if secret:
                    yield f, SECRET_DIR_MODE
                yield from ((g, SECRET_FILE_MODE) for g in secret)


def secret_files(site_dist: Path) -> set[Path]:
    """The files under ``site_dist`` that hold secrets (the rule the mode repair uses)."""
    return {path for path, wanted in _entries(site_dist) if wanted == SECRET_FILE_MODE}


def loose_modes(site_dist: Path, *, repair: bool) -> list[str]:
    """Warnings for secrets under ``site_dist`` readable by others; repaired if ours."""
    out = []
    for path, wanted in _entries(site_dist):
        secret = "secrets" if wanted == SECRET_DIR_MODE else "a secret"
        if warning := tighten(path, wanted, secret, repair=repair):
            out.append(warning)
    return out
