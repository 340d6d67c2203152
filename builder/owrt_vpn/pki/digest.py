"""The digest of the PKI files a router build uses (one definition, cheap to import)."""

from __future__ import annotations

from pathlib import Path

from owrt_vpn.fsutil import sha256_file
from owrt_vpn.repro import digest


def pki_digest(pki_dir: Path, router: str | None = None) -> str:
    """The PKI files a router build uses (CA cert, CRL, the router's server cert and
    key, EAP passwords).

    With ``router``, only that router's server files count, so renewing
    another router's certificate does not change this router's digest.
    Imports nothing heavy: a no-op build computes it without cryptography.
    """
    files: dict[str, str] = {}
    candidates = [pki_dir / "ca.crt", pki_dir / "crl.pem"]
    servers = f"{router}.*" if router is not None else "*"
    for sub, pattern in (("servers", servers), ("eap", "*.password")):
        if (pki_dir / sub).is_dir():
            candidates += sorted((pki_dir / sub).glob(pattern))
    for path in candidates:
        if path.is_file() and not path.name.startswith("."):
            files[path.relative_to(pki_dir).as_posix()] = sha256_file(path)
    return digest(files)
