"""Bundle provenance: what a user's bundles were made from (``bundle-info.json``).

``<clients>/<user>/bundle-info.json`` holds digests only (the site file, the
user's PKI files and index records, owrt-vpn's code and data,
SOURCE_DATE_EPOCH): ``build`` compares it to skip bundles that are current,
``verify`` to tell changed inputs from a reproducibility failure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from owrt_vpn import __version__
from owrt_vpn.codegraph import code_digest
from owrt_vpn.fsutil import read_json, sha256_file
from owrt_vpn.repro import digest, source_date_epoch, tree_digest
from owrt_vpn.site.model import Site

BUNDLE_INFO = "bundle-info.json"
BUNDLE_INFO_FORMAT = 1
# The modules that make bundles from a site file: the code key is their
# import closure (the site loader and its rules, the writer, every platform).
BUNDLE_ENTRIES = ("owrt_vpn.site.load", "owrt_vpn.bundles.writer", "owrt_vpn.bundles.provenance")


@cache
def bundle_tool_digest() -> dict[str, str]:
    """owrt-vpn's version and digests of the code and data that shape a bundle.

    The code is every module the bundle writer can reach (its import closure),
    so no module that shapes a bundle can be left out of the key.
    """
    from owrt_vpn.resources import data_dir

    try:
        data = tree_digest(data_dir("profiles"))
    except FileNotFoundError:
        data = ""
    code = code_digest(*BUNDLE_ENTRIES)
    return {"version": __version__, "code": code, "profiles": data}


def user_pki_digest(pki_dir: Path, user: str, index: dict[str, Any] | None = None) -> str:
    """The PKI files one user's bundles are made from: the CA certificate, the user's
    certificates, keys and PKCS#12 files, EAP password, and their index records.

    ``index``: ``index.json`` as read once for many users (see :class:`BundleInputs`).
    """
    files: dict[str, Any] = {}
    candidates = [pki_dir / "ca.crt", pki_dir / "eap" / f"{user}.password"]
    if (pki_dir / "clients" / user).is_dir():
        candidates += sorted((pki_dir / "clients" / user).iterdir())
    for path in candidates:
        if path.is_file() and not path.name.startswith("."):
            files[path.relative_to(pki_dir).as_posix()] = sha256_file(path)
    if index is None:
        index = read_json(pki_dir / "index.json") or {}
    certs = index.get("certs")
    files["index"] = [
        c
        for c in (certs if isinstance(certs, list) else [])
        if isinstance(c, dict) and c.get("user") == user
    ]
    return digest(files)


def bundle_inputs(site: Site, user: str) -> dict[str, Any]:
    """What one user's bundles are made from (written as ``bundle-info.json``)."""
    return BundleInputs(site).of(user)


class BundleInputs:
    """:func:`bundle_inputs` for many users of one site: the site file, the CA
    certificate and ``index.json`` read once, not once per user (the no-op
    bundle check of a 1,000-user build reads them all)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.pki = site.pki_path  # resolved once (a property that resolves each time)
        self.site_sha256 = sha256_file(site.path)
        ca = self.pki / "ca.crt"
        self.ca_sha256 = sha256_file(ca) if ca.is_file() else None
        index = read_json(self.pki / "index.json") or {}
        certs = index.get("certs")
        self.certs: dict[Any, list[Any]] = {}
        for c in certs if isinstance(certs, list) else []:
            if isinstance(c, dict):
                self.certs.setdefault(c.get("user"), []).append(c)

    def pki_digest(self, user: str) -> str:
        """:func:`user_pki_digest` (the same value) with the shared parts read once."""
        files: dict[str, Any] = {}
        if self.ca_sha256 is not None:
            files["ca.crt"] = self.ca_sha256
        eap = os.path.join(self.pki, "eap", f"{user}.password")
        if os.path.isfile(eap):
            files[f"eap/{user}.password"] = _small_sha256(eap)
        try:
            entries = list(os.scandir(os.path.join(self.pki, "clients", user)))
        except (FileNotFoundError, NotADirectoryError):
            entries = []
        for e in entries:  # (digest() sorts the keys: the listing order does not matter)
            if e.is_file() and not e.name.startswith("."):
                files[f"clients/{user}/{e.name}"] = _small_sha256(e.path)
        files["index"] = self.certs.get(user, [])
        return digest(files)

    def of(self, user: str) -> dict[str, Any]:
        """The inputs of ``user``'s bundles."""
        site = self.site
        return {
            "format": BUNDLE_INFO_FORMAT,
            "user": user,
            "tool": bundle_tool_digest(),
            "site": {"name": site.name, "file": site.path.name, "sha256": self.site_sha256},
            "pki": self.pki_digest(user),
            "source_date_epoch": source_date_epoch(),
        }


def _small_sha256(path: str) -> str:
    # PKI files are a few KiB: one read, no Path objects (4,000 of them per no-op).
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def record_bundle_inputs(site: Site, clients: Path, users: Sequence[str] | None = None) -> None:
    """Write ``<clients>/<user>/bundle-info.json`` for the users whose bundles were just made.

    Called after :func:`owrt_vpn.bundles.writer.build` (by ``owrt-vpn bundle`` and by
    ``verify``'s rebuild), so that ``verify`` can tell changed inputs from a
    reproducibility failure. Deterministic: digests only, no time.
    """
    import json

    from owrt_vpn.fsutil import write_atomic

    names = list(users) if users else [u.name for u in site.users]
    inputs = BundleInputs(site)
    for name in names:
        folder = clients / name
        if folder.is_dir():
            data = json.dumps(inputs.of(name), indent=2, sort_keys=True) + "\n"
            # As durable as the bundle files beside it (not synced one by one).
            write_atomic(folder / BUNDLE_INFO, data, 0o644, sync=False)
