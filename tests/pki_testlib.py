"""Helpers for the PKI tests: a site file with every kind of user, openssl/pki checks."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

PASSPHRASE = "test-ca-passphrase"

# gw dials by name, gw2 by IP; alice: pubkey (iPhone with the shared SAN,
# Windows laptop), bob: EAP-MSCHAPv2 (Android built-in), carol: certificate +
# EAP second round (Linux), dave: pubkey on Android's built-in client (RSA).
SITE = """\
# owrt-vpn site file used by the PKI tests
[site]
name = "home"
organization = "Home VPN"
# carol (pubkey+eap-mschapv2) shares the routers with password-only users
allow_password_only_alongside_2fa = true
shared_identity = "myVpnClients"   # iOS manual setup

[[routers]]
name = "gw"
server_id = "vpn.example.org"
release = "24.10.2"
target = "bcm53xx"
subtarget = "generic"
device = "phicomm_k3"
pool = "10.10.10.0/24"

[[routers]]
name = "gw2"
server_id = "203.0.113.7"
release = "24.10.2"
target = "bcm53xx"
subtarget = "generic"
device = "phicomm_k3"
pool = "10.10.20.0/24"

# the family
[[users]]
name = "alice"
auth = "pubkey"

[[users.devices]]
name = "phone"
platform = "ios"
shared_identity = true

[[users.devices]]
name = "laptop"
platform = "windows"

[[users]]
name = "bob"
auth = "eap-mschapv2"   # password lives in the PKI directory

[[users.devices]]
name = "tablet"
platform = "android"

[[users]]
name = "carol"
auth = "pubkey+eap-mschapv2"
routers = ["gw"]

[[users.devices]]
name = "pc"
platform = "linux"

[[users]]
name = "dave"
auth = "pubkey"

[[users.devices]]
name = "phone"
platform = "android"
"""

CLIENT_DEVICES = [("alice", "phone"), ("alice", "laptop"), ("carol", "pc"), ("dave", "phone")]


def write_site(folder: Path, text: str = SITE) -> Path:
    """Write ``owrt-vpn.toml`` into ``folder`` and return its path."""
    path = folder / "owrt-vpn.toml"
    path.write_text(text)
    return path


def tool(*argv: str | os.PathLike[str], input: bytes | None = None) -> str:
    """Run a checking tool (openssl, pki); fail the test with its output on error."""
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        capture_output=True,
        input=input,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
        timeout=60,
    )
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{out}"
    return out


def x509_text(cert: Path) -> str:
    """``openssl x509 -text`` of a certificate."""
    return tool("openssl", "x509", "-in", cert, "-noout", "-text")


def verify(ca: Path, cert: Path) -> None:
    """Assert that ``cert`` chains to ``ca`` according to openssl."""
    out = tool("openssl", "verify", "-CAfile", ca, cert)
    assert out.strip() == f"{cert}: OK"


def strongswan_print(cert: Path) -> str:
    """strongSwan's own parser: ``pki --print``."""
    return tool("pki", "--print", "--in", cert)


def crl_serials(crl: Path, ca: Path) -> set[int]:
    """Verify the CRL against the CA with openssl and return the serials it lists."""
    out = tool("openssl", "crl", "-in", crl, "-CAfile", ca, "-verify", "-noout", "-text")
    assert "verify OK" in out, out
    serials = re.findall(r"Serial Number: ([0-9A-Fa-f]+)", out)
    if "No Revoked Certificates" in out:
        assert not serials
    return {int(s, 16) for s in serials}


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None, int]]:
    """Every path under ``root`` with its mode, bytes (files) and mtime."""
    out: dict[str, tuple[int, bytes | None, int]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else None
        out[path.relative_to(root).as_posix()] = (st.st_mode, data, st.st_mtime_ns)
    return out


def self_signed_ca(key: Any, common_name: str) -> Any:
    """A minimal self-signed CA certificate for ``key`` (as a guide-made CA looks)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def key_pem(key: Any) -> bytes:
    """An unencrypted PKCS#8 PEM of ``key``."""
    from cryptography.hazmat.primitives import serialization

    fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())  # type: ignore[no-any-return]
