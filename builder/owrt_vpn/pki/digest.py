"""The one digest of PKI material: what a router's image holds, what a user's bundles hold.

A router's image holds the CA certificate, the CRL, its own server
certificate and key, and the EAP passwords (and their index status) of the
EAP users allowed on it; a user's bundles hold the CA certificate, the
user's certificates, keys and PKCS#12 files, EAP password and index
records. Renewing another router's certificate or changing another user's
password changes neither. Cheap to import and to run: a no-op build or
bundle check computes these without cryptography, reading the CA
certificate and ``index.json`` once (:class:`PkiDigests`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from owrt_vpn.repro import digest


def _sha256(path: str) -> str | None:
    # PKI files are a few KiB: one read, no Path objects (4,000 of them per no-op).
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class PkiDigests:
    """Digests of one PKI directory's material; shared files are read once."""

    def __init__(self, pki_dir: Path) -> None:
        self.root = str(pki_dir)
        self._ca = _sha256(os.path.join(self.root, "ca.crt"))
        try:
            with open(os.path.join(self.root, "index.json"), "rb") as fh:
                index: Any = json.loads(fh.read())
        except (OSError, ValueError):
            index = {}
        index = index if isinstance(index, dict) else {}
        eap = index.get("eap")
        self._eap: dict[str, Any] = eap if isinstance(eap, dict) else {}
        self._certs: dict[Any, list[Any]] = {}
        certs = index.get("certs")
        for c in certs if isinstance(certs, list) else []:
            if isinstance(c, dict):
                self._certs.setdefault(c.get("user"), []).append(c)

    def _files(self, rels: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rel in rels:
            sha = self._ca if rel == "ca.crt" else _sha256(os.path.join(self.root, rel))
            if sha is not None:
                out[rel] = sha
        return out

    def _listing(self, sub: str) -> list[str]:
        try:
            entries = list(os.scandir(os.path.join(self.root, sub)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [f"{sub}/{e.name}" for e in entries if e.is_file() and not e.name.startswith(".")]

    def router(self, router: str | None = None, eap_users: Iterable[str] | None = None) -> str:
        """What a router's image holds: CA cert, CRL, the router's server cert and key,
        and the EAP passwords (with their status) of ``eap_users``.

        ``router=None``: every server's files; ``eap_users=None``: every password.
        """
        rels = ["ca.crt", "crl.pem"]
        servers = self._listing("servers")
        if router is not None:
            servers = [s for s in servers if s.rsplit("/", 1)[1].rsplit(".", 1)[0] == router]
        rels += servers
        if eap_users is None:
            rels += [e for e in self._listing("eap") if e.endswith(".password")]
            files = self._files(rels)
        else:
            users = sorted(set(eap_users))
            rels += [f"eap/{u}.password" for u in users]
            files = self._files(rels)
            files["eap_status"] = {u: self._eap.get(u) for u in users}
        return digest(files)

    def user(self, user: str) -> str:
        """What ``user``'s bundles hold: the CA certificate, the user's certificates,
        keys and PKCS#12 files, the EAP password, and the user's index records."""
        files = self._files(["ca.crt", f"eap/{user}.password", *self._listing(f"clients/{user}")])
        files["index"] = self._certs.get(user, [])
        return digest(files)


def pki_digest(
    pki_dir: Path, router: str | None = None, eap_users: Iterable[str] | None = None
) -> str:
    """:meth:`PkiDigests.router` of ``pki_dir`` (one router, or all with ``None``)."""
    return PkiDigests(pki_dir).router(router, eap_users)


def user_pki_digest(pki_dir: Path, user: str) -> str:
    """:meth:`PkiDigests.user` of ``pki_dir``."""
    return PkiDigests(pki_dir).user(user)
