"""The PKI folder checked as a whole: every file parsed and chain-checked, modes.

`check` runs :func:`audit` (see docs/security.md): a file that does not
parse, a certificate or CRL not signed by ``ca.crt``, a key that does not
belong to its certificate, a CRL that misses a revoked serial: each is an
:class:`~owrt_vpn.errors.IntegrityError` (exit 3) naming the file. Loose
modes on files that hold key material or passwords, and on the folders
holding them, are warnings, and repaired (0600/0700) on files we own.

The readers that feed a build (:meth:`PkiReader.crl_pem`,
:meth:`PkiReader.server_cert_pem`) run the same per-file checks, so nothing
unverified is baked into firmware even without `check`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import IntegrityError, PkiError
from owrt_vpn.fsutil import tighten
from owrt_vpn.pki import certs as pc

if TYPE_CHECKING:
    from cryptography import x509

    from owrt_vpn.pki.store import Index

SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700
RESTORE_HINT = "restore the PKI folder from your backup (or re-issue with `owrt-vpn pki renew`)"


def is_secret_file(path: Path) -> bool:
    """True for files holding key material or a password (``*.key``, ``*.p12``, ``*.password``)."""
    return path.suffix in (".key", ".p12", ".password")


def _bad(path: Path, problem: str) -> IntegrityError:
    return IntegrityError(f"{path}: {problem}", hint=RESTORE_HINT)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    except OSError as exc:
        raise _bad(path, f"cannot read: {exc.strerror}") from None


def load_ca(path: Path) -> x509.Certificate:
    """``ca.crt`` parsed: a self-signed CA certificate (IntegrityError naming the file)."""
    try:
        cert = pc.load_cert(_read(path))
    except ValueError:
        raise _bad(path, "not a PEM certificate (damaged or truncated)") from None
    if not pc.is_ca(cert):
        raise _bad(path, "not a CA certificate (basicConstraints CA:TRUE missing)")
    try:
        cert.verify_directly_issued_by(cert)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError: no common base
        raise _bad(path, f"not a valid self-signed CA certificate ({type(exc).__name__})") from None
    return cert


def verify_cert(path: Path, ca: x509.Certificate, data: bytes | None = None) -> x509.Certificate:
    """A certificate file parsed and checked to be signed by ``ca``."""
    try:
        cert = pc.load_cert(_read(path) if data is None else data)
    except ValueError:
        raise _bad(path, "not a PEM certificate (damaged or truncated)") from None
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # ValueError (issuer name), InvalidSignature, TypeError (key type)
        raise _bad(path, "not signed by ca.crt (from another CA?)") from None
    return cert


def verify_key(path: Path, cert: x509.Certificate, data: bytes | None = None) -> None:
    """An unencrypted private key file parsed and checked to belong to ``cert``."""
    from cryptography.hazmat.primitives import serialization

    raw = _read(path) if data is None else data
    try:
        # cryptography's RSA check (primality of p and q) costs 0.1 s per
        # RSA-3072 key; pc.key_consistent checks the rest in microseconds.
        key = serialization.load_pem_private_key(raw, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        raise _bad(path, "not an unencrypted private key (damaged or truncated)") from None
    if not isinstance(key, pc.PrivateKey):
        raise _bad(path, f"not an RSA or ECDSA key ({type(key).__name__})")
    if not pc.same_public_key(key, cert):
        raise _bad(path, f"does not belong to {path.with_suffix('.crt').name}")
    if not pc.key_consistent(key):
        raise _bad(path, "damaged: its private numbers do not agree with each other")


def verify_crl(path: Path, ca: x509.Certificate, revoked: Iterable[int], data: bytes) -> None:
    """A CRL parsed, issued and signed by ``ca``, listing every serial in ``revoked``."""
    from cryptography import x509 as _x509

    try:
        crl = _x509.load_pem_x509_crl(data)
    except ValueError:
        raise _bad(path, "not a PEM CRL (damaged or truncated)") from None
    if crl.issuer != ca.subject:
        raise _bad(path, f"issued by {crl.issuer.rfc4514_string()}, not by ca.crt")
    try:
        valid = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except TypeError:
        valid = False
    if not valid:
        raise _bad(path, "not signed by ca.crt's key")
    listed = {r.serial_number for r in crl}
    missing = sorted(s for s in revoked if s not in listed)
    if missing:
        serials = ", ".join(f"{s:x}" for s in missing[:5])
        raise _bad(path, f"does not list revoked serial(s) {serials}: re-sign it with "
                   "`owrt-vpn pki renew --crl`")  # fmt: skip


def _ca_key(path: Path, ca: x509.Certificate, encrypted: bool) -> None:
    data = _read(path)
    if encrypted:
        # Checking the key itself needs the passphrase, which `check` never
        # asks for: an encrypted PKCS#8 block that does not parse is caught.
        try:
            pc.load_key(data)
        except TypeError:
            return  # well-formed and encrypted
        except ValueError:
            raise _bad(path, "not an encrypted private key (damaged or truncated)") from None
        raise _bad(path, "stored unencrypted, but index.json says it is encrypted")
    verify_key(path, ca, data)


def verify_p12(
    path: Path, data: bytes, password: str, cert: x509.Certificate, ca: x509.Certificate
) -> None:
    """The PKCS#12 opened with ``password``: it holds ``cert``, the key of ``cert``, our CA.

    A pair of files swapped with another device's (the .p12 with its
    .p12.password) passes the MAC check; it is caught here, before a bundle
    hands the wrong identity to a phone.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    from owrt_vpn.pki import p12

    crt = path.name.removesuffix(".p12") + ".crt"
    try:
        key, certs = _open_p12(
            data, password, rsa=not isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        )
    except p12.WrongPassword:
        raise _bad(path, "does not open with its .p12.password (damaged or replaced?)") from None
    except ValueError:
        raise _bad(path, "not a PKCS#12 file with a MAC (damaged or truncated)") from None
    if cert not in certs:
        others = ", ".join(_cn(c) for c in certs if not pc.is_ca(c))
        raise _bad(path, f"holds the certificate of {others or 'nobody'}, not {crt}")
    if key is None or not pc.same_public_key(key, cert):
        raise _bad(path, f"holds a private key that does not belong to {crt}")
    if not pc.key_consistent(key):
        raise _bad(path, "holds a damaged private key (its numbers do not agree)")
    for other in certs:
        if other != cert and not (other.subject == ca.subject and _same_key(other, ca)):
            raise _bad(path, f"holds a certificate that is neither {crt} nor ca.crt ({_cn(other)})")


def _cn(cert: x509.Certificate) -> str:
    """The common name (our identities), else the whole subject."""
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    return pc.key_id(a.public_key()) == pc.key_id(b.public_key())


def _open_p12(
    data: bytes, password: str, *, rsa: bool
) -> tuple[pc.PrivateKey | None, tuple[x509.Certificate, ...]]:
    """Key and certificates: our opener for RSA (no slow key validation), else cryptography's."""
    from owrt_vpn.pki import p12

    if rsa:
        try:
            got = p12.open_legacy(data, password)
            return got.key, got.certs
        except p12.Unsupported:
            pass
    return _load_p12(data, password)


def _load_p12(
    data: bytes, password: str
) -> tuple[pc.PrivateKey | None, tuple[x509.Certificate, ...]]:
    """cryptography's loader; on failure, the MAC check says which failure it was."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    from owrt_vpn.pki import p12

    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password.encode())
    except ValueError:
        p12.verify_mac(data, password)  # WrongPassword or ValueError (malformed)
        raise
    if key is not None and not isinstance(key, pc.PrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key, (*([cert] if cert is not None else []), *extra)


def _client_files(root: Path, ca: x509.Certificate, index: Index) -> None:
    for rec in index.certs:
        if rec.kind != "client" or not rec.current or rec.status != "valid":
            continue
        base = root / "clients" / (rec.user or "") / (rec.device or "")
        crt = base.with_name(base.name + ".crt")
        cert = verify_cert(crt, ca)
        verify_key(base.with_name(base.name + ".key"), cert)
        p12 = base.with_name(base.name + ".p12")
        password = base.with_name(base.name + ".p12.password")
        if p12.exists() or password.exists():
            secret = _read(password).decode(errors="replace").strip()
            verify_p12(p12, _read(p12), secret, cert, ca)


def audit(root: Path, index: Index) -> None:
    """Parse and chain-check every file of the PKI folder (IntegrityError naming the file)."""
    if index.current("ca") is None and not (root / "ca.crt").exists():
        return  # no CA yet: nothing to check
    ca = load_ca(root / "ca.crt")
    _ca_key(root / "ca.key", ca, index.ca_encrypted)
    for rec in index.certs:
        if rec.kind == "server" and rec.current:
            crt = root / "servers" / f"{rec.router}.crt"
            verify_key(crt.with_suffix(".key"), verify_cert(crt, ca))
    _client_files(root, ca, index)
    kid = pc.key_id(ca.public_key())
    revoked = [
        r.serial
        for r in index.certs
        if r.kind == "client" and r.status == "revoked" and r.ca == kid
    ]
    crl = root / "crl.pem"
    if crl.exists() or revoked:
        verify_crl(crl, ca, revoked, _read(crl))
    eap = root / "eap"
    for user, status in sorted(index.eap.items()):
        path = eap / f"{user}.password"
        if status == "active" and path.exists():
            try:
                if not _read(path).decode().strip():
                    raise _bad(path, "empty")
            except UnicodeDecodeError:
                raise _bad(path, "not UTF-8 text") from None


def loose_modes(root: Path, *, repair: bool) -> list[str]:
    """Warnings for secret files not 0600 and PKI folders not 0700; repaired if ours.

    Only files we own are repaired (``chmod`` of another user's file would
    fail, and the warning tells its owner what to do).
    """
    if not root.is_dir():
        return []
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    # Links are followed (a ca.key or clients/ moved to another disk and linked
    # back is read through the link, so the mode of what it points to counts);
    # each folder once, so a link back up the tree does not loop.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        try:
            here_st = here.stat()
        except OSError:
            dirnames[:] = []
            continue
        if (here_st.st_dev, here_st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((here_st.st_dev, here_st.st_ino))
        dirnames.sort()
        entries = [(here, SECRET_DIR_MODE, True)]
        entries += [(here / f, SECRET_FILE_MODE, False) for f in sorted(filenames)]
        for path, wanted, is_dir in entries:
            if not is_dir and not is_secret_file(path):
                continue
            secret = "PKI secrets" if is_dir else "a secret"
            if warning := tighten(path, wanted, secret, repair=repair):
                out.append(warning)
    return out


def check_pki(root: Path, index: Index | None = None, *, repair: bool = True) -> list[str]:
    """:func:`audit` plus :func:`loose_modes`: the warnings (errors are raised)."""
    from owrt_vpn.pki.store import Index

    warnings = loose_modes(root, repair=repair)
    path = root / "index.json"
    try:
        data = path.read_bytes() if index is None and path.exists() else b""
        idx = index if index is not None else Index.from_bytes(data, str(path)) if data else Index()
    except OSError as exc:
        raise _bad(path, f"cannot read: {exc.strerror}") from None
    except PkiError as exc:
        raise IntegrityError(str(exc), hint=exc.hint) from None
    audit(root, idx)
    return warnings
