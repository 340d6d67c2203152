"""Output paths named on the command line never replace what they should not.

`render --out DIR` replaces DIR as a whole, `render --tar FILE` and `bundle
--password-file FILE` replace FILE. A slip (`--tar pki/ca.key`, `--out .`,
`--password-file owrt-vpn.toml`) used to destroy the CA key, the PKI or the
whole site folder with exit 0. So, before anything is written:

- no output may be the site file or the PKI folder, lie inside the PKI
  folder, or be a folder holding either of them (this holds for the
  folders `build` and `bundle` replace or remove under `--out`, too:
  `<out>/<site>/clients/` and `routers/`, where a folder not named after a
  user is deleted);
- an existing output must be what the command wrote there before (a
  rendered overlay, a tar archive, a password file of ours) or, for a
  folder, empty: anything else would be lost.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from owrt_vpn.errors import UsageError
from owrt_vpn.site.model import Site


def _clash(site: Site, path: Path) -> str | None:
    """What of the site's own files writing ``path`` would replace, if anything."""
    target = path.resolve()
    site_file = site.path.resolve()
    pki = site.pki_path
    if target == site_file:
        return "the site file"
    if target == pki or pki in target.parents:
        return f"in the PKI folder ({pki})"
    if target in site_file.parents or target in pki.parents:
        return "a folder holding the site file or the PKI"
    return None


def refuse_site_files(site: Site, option: str, path: Path) -> None:
    """UsageError when writing ``path`` would replace the site file or (part of) the PKI."""
    what = _clash(site, path)
    if what is not None:
        raise UsageError(
            f"{option} {path}: {what}: writing there would replace it",
            hint="name a path outside the site's files and its PKI folder",
        )


def check_dist_root(site: Site, out: Path) -> None:
    """``--out`` of `build`/`bundle`: its site folders must not be (or hold) the site's files."""
    for sub in ("clients", "routers"):
        what = _clash(site, out / site.name / sub)
        if what is not None:
            raise UsageError(
                f"--out {out}: {out / site.name / sub} (where folders are replaced and "
                f"removed) is {what}",
                hint="name a dist root outside the site's files and its PKI folder",
            )


def check_out_dir(site: Site, option: str, path: Path, marker: str) -> None:
    """``path`` may be replaced as a whole: new, empty, or holding ``marker`` (ours)."""
    refuse_site_files(site, option, path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and (not any(path.iterdir()) or (path / marker).is_file()):
        return
    raise UsageError(
        f"{option} {path}: exists and is not an earlier output of this command: "
        "it would be replaced",
        hint="name a new or empty folder (it is replaced as a whole)",
    )


def check_out_file(site: Site, option: str, path: Path, *, header: bytes | None = None) -> None:
    """``path`` may be replaced: new, or ours (a tar archive, or a file starting ``header``)."""
    refuse_site_files(site, option, path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file():
        if header is not None:
            with path.open("rb") as fh:
                if fh.read(len(header)) == header:
                    return
        elif tarfile.is_tarfile(path):
            return
    raise UsageError(
        f"{option} {path}: exists and is not an earlier output of this command: "
        "it would be replaced",
        hint="name a new file, or remove that one first",
    )
