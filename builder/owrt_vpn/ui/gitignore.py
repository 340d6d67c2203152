"""Keeping a site folder's secrets out of git: `init`'s .gitignore, `check`'s warning.

The site folder holds plain private keys and passwords (the PKI folder) and
``dist/`` (images and overlay.tar carry the router's key, bundles the
devices' keys). ``init`` writes a ``.gitignore`` for them; ``check`` warns
when git already tracks one of them (ignoring a file does not untrack it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = "# owrt-vpn: keep the site's secrets out of git (docs/security.md)"
GITIGNORE = f"""{MARKER}
# the PKI: CA key, router and device keys, PKCS#12 files, EAP passwords
/pki/
# build output: images and overlay.tar hold the router's key, bundles the devices'
/dist/
*.key
*.p12
*.password
*.mobileconfig
"""

# Tracked files with these names hold key material or a password wherever they are.
SECRET_SUFFIXES = (".key", ".p12", ".password", ".mobileconfig")


def gitignore_text(existing: str | None) -> str | None:
    """The .gitignore to write (None: ``existing`` already has our block)."""
    if existing is None:
        return GITIGNORE
    if MARKER in existing:
        return None
    return existing.rstrip("\n") + ("\n\n" if existing.strip() else "") + GITIGNORE


def tracked_secrets(folder: Path) -> list[str]:
    """Files under ``folder`` that git tracks and that hold secrets (paths relative to it).

    Empty when git is missing or ``folder`` is not in a work tree.
    """
    from owrt_vpn.build.dist_modes import secret_files
    from owrt_vpn.run import run

    git = shutil.which("git")
    if git is None:
        return []
    try:
        proc = run([git, "-C", folder, "ls-files", "-z", "--full-name", "--", "."],
                   check=False, timeout=30)  # fmt: skip
        top = run([git, "-C", folder, "rev-parse", "--show-toplevel"], check=False, timeout=30)
    except Exception:  # a warning must never fail `check`
        return []
    if proc.returncode != 0 or top.returncode != 0:
        return []
    root = Path(top.stdout.decode().strip())
    dist = folder / "dist"
    # dist/: only what holds a secret (images, overlay.tar, zips, keys), by the
    # rule the dist/ mode repair uses; READMEs and ca.crt are public.
    in_dist = {
        p.resolve()
        for site_dist in (sorted(dist.iterdir()) if dist.is_dir() else [])
        if site_dist.is_dir()
        for p in secret_files(site_dist)
    }
    out = []
    for name in proc.stdout.decode(errors="replace").split("\0"):
        if not name:
            continue
        path = (root / name).resolve()
        if path in in_dist or path.name.endswith(SECRET_SUFFIXES):
            out.append(str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path))
    return sorted(out)


def tracked_warning(folder: Path) -> str | None:
    """``check``'s warning about tracked secrets (None when there are none)."""
    files = tracked_secrets(folder.resolve())
    if not files:
        return None
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (
        f"git tracks secrets of this site: {shown}; untrack them with `git rm --cached`, "
        "add them to .gitignore (`owrt-vpn init` writes one) and replace the keys and "
        "passwords the history holds"
    )
