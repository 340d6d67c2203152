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
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import IntegrityError, PkiError
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
        # The check that matters is that the key is the certificate's; the
        # RSA consistency check costs ~10 ms per key (a 1,000-device PKI).
        key = serialization.load_pem_private_key(raw, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        raise _bad(path, "not an unencrypted private key (damaged or truncated)") from None
    if not pc.same_public_key(key, cert):  # type: ignore[arg-type]
        raise _bad(path, f"does not belong to {path.with_suffix('.crt').name}")


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


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: (tag, start of its value, end of its value)."""
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 0 < n <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, vs, ve = _tlv(data, start)
        out.append((tag, vs, ve))
        start = ve
    return out


_MAC_HASHES = {"2b0e03021a": "sha1", "608648016503040201": "sha256"}


def _pkcs12_kdf(password: bytes, salt: bytes, iterations: int, name: str, n: int) -> bytes:
    """RFC 7292 appendix B.2, ID 3 (the MAC key)."""
    import hashlib

    u, v = hashlib.new(name).digest_size, 64
    d = bytes([3]) * v

    def fill(b: bytes) -> bytes:  # b repeated to a multiple of v bytes
        size = v * -(-len(b) // v)
        return (b * (size // len(b) + 1))[:size] if b else b""

    i = bytearray(fill(salt) + fill(password))
    out = b""
    while len(out) < n:
        a = d + bytes(i)
        for _ in range(iterations):
            a = hashlib.new(name, a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j : j + v], "big") + b + 1) % (1 << (v * 8))
            i[j : j + v] = block.to_bytes(v, "big")
    return out[:n]


def verify_p12_mac(path: Path, data: bytes, password: str) -> None:
    """The PKCS#12's integrity MAC checked with ``password`` (IntegrityError when not).

    Opening the whole file would cost ~0.1 s per RSA key (cryptography
    validates the key); the MAC covers every bag of the file.
    """
    import hashlib
    import hmac

    try:
        _t, s, e = _tlv(data, 0)
        version, auth_safe, mac_data = _children(data, s, e)[:3]
        _t, s, e = auth_safe
        _oid, content = _children(data, s, e)[:2]
        _t, s, e = _children(data, content[1], content[2])[0]  # [0] EXPLICIT OCTET STRING
        signed = data[s:e]
        digest_info, salt, iters = _children(data, mac_data[1], mac_data[2])[:3]
        alg, digest = _children(data, digest_info[1], digest_info[2])[:2]
        oid = _children(data, alg[1], alg[2])[0]
        name = _MAC_HASHES[data[oid[1] : oid[2]].hex()]
        iterations = int.from_bytes(data[iters[1] : iters[2]], "big")
        expected = data[digest[1] : digest[2]]
        salt_b = data[salt[1] : salt[2]]
    except (ValueError, IndexError, KeyError):
        raise _bad(path, "not a PKCS#12 file with a MAC (damaged or truncated)") from None
    del version
    secret = (password + "\0").encode("utf-16-be")
    key = _pkcs12_kdf(secret, salt_b, iterations, name, hashlib.new(name).digest_size)
    if not hmac.compare_digest(hmac.new(key, signed, name).digest(), expected):
        raise _bad(path, "does not open with its .p12.password (damaged or replaced?)")


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
            verify_p12_mac(p12, _read(p12), secret)


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
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        entries = [(here, SECRET_DIR_MODE, True)]
        entries += [(here / f, SECRET_FILE_MODE, False) for f in sorted(filenames)]
        for path, wanted, is_dir in entries:
            if not is_dir and not is_secret_file(path):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            if not mode & 0o077:
                continue
            what = f"{path}: mode {mode:04o} lets other users read "
            what += "PKI secrets" if is_dir else "a secret"
            if repair and st.st_uid == os.geteuid():
                os.chmod(path, wanted)
                out.append(f"{what}: set to {wanted:04o}")
            else:
                out.append(f"{what}: run `chmod {wanted:o} {path}`")
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
