"""Reading an existing CA for ``owrt-vpn pki import`` (e.g. one made with the guide's script).

Accepted forms: ``caCert.pem`` + ``caKey.pem`` (PEM or DER; the key may be
encrypted) or ``ca.p12``. The password of an encrypted key or PKCS#12 comes
from ``$OWRT_VPN_IMPORT_PASSWORD``, else a prompt when stdin is a terminal.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import ConfigError, Problem, UsageError
from owrt_vpn.pki import certs as pc

if TYPE_CHECKING:
    from cryptography import x509

PASSWORD_ENV = "OWRT_VPN_IMPORT_PASSWORD"  # noqa: S105 - a variable name


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc.strerror}")]) from None


def _password(path: Path) -> bytes:
    value = os.environ.get(PASSWORD_ENV)
    if value is not None:
        return value.encode()
    if sys.stdin.isatty():
        return getpass.getpass(f"password of {path}: ").encode()
    raise UsageError(
        f"{path}: the file is password-protected: set {PASSWORD_ENV}",
        hint="or run the command in a terminal to be asked for it",
    )


def _check_subject(cert: x509.Certificate, path: Path) -> None:
    """The CA's subject reaches READMEs, scripts and configs: the allow-list applies."""
    from owrt_vpn.site.allowlist import refuse_unsafe_text

    for attr in cert.subject:
        try:
            refuse_unsafe_text(str(attr.value), ascii_only=False)
        except ValueError as exc:
            raise ConfigError([Problem(str(path), "subject", f"{attr.oid._name}: {exc}")]) from None


def read_ca_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, pc.PrivateKey]:
    """The CA certificate and key from two files (ConfigError when unreadable)."""
    cert_data = _read(cert_path)
    key_data = _read(key_path)
    try:
        cert = pc.load_cert(cert_data)
    except ValueError:
        raise ConfigError([Problem(str(cert_path), "", "not a PEM or DER certificate")]) from None
    _check_subject(cert, cert_path)
    try:
        key = pc.load_key(key_data)
    except TypeError:  # encrypted: needs the password
        try:
            key = pc.load_key(key_data, _password(key_path))
        except (ValueError, TypeError):
            raise ConfigError(
                [Problem(str(key_path), "", "cannot decrypt the key (wrong password?)")]
            ) from None
    except ValueError as exc:
        raise ConfigError([Problem(str(key_path), "", f"not a private key ({exc})")]) from None
    return cert, key


def read_ca_p12(path: Path) -> tuple[x509.Certificate, pc.PrivateKey]:
    """The CA certificate and key from a PKCS#12 (``openssl pkcs12 -export`` output)."""
    data = _read(path)
    try:
        key, cert = pc.load_p12(data, None)
    except ValueError as exc:
        if "deserialize" in str(exc):
            raise ConfigError([Problem(str(path), "", "not a PKCS#12 file")]) from None
        if "password" not in str(exc).lower():
            raise ConfigError([Problem(str(path), "", str(exc))]) from None
        try:
            key, cert = pc.load_p12(data, _password(path))
        except ValueError as exc2:
            msg = str(exc2)
            if "password" in msg.lower():
                msg = "cannot open the PKCS#12 (wrong password?)"
            raise ConfigError([Problem(str(path), "", msg)]) from None
    _check_subject(cert, path)
    return cert, key
