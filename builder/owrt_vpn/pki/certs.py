"""Certificate, key, CRL and PKCS#12 primitives (``cryptography`` only).

Pure functions: nothing here touches the disk or knows about the site file
beyond the values passed in. :mod:`owrt_vpn.pki.authority` decides *what* to issue and
keeps the state; this module knows *how* a CA, a server certificate, a client
certificate, a CRL and a legacy PKCS#12 are built.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyType = Literal["rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"]

# iKEIntermediate (RFC 4945 / Windows): Windows and older macOS want it on the
# server certificate.
IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
CA_KEY_TYPE: KeyType = "rsa3072"
# Phones and laptops with a clock a little behind must not see a brand new
# certificate as "not yet valid".
BACKDATE = dt.timedelta(hours=1)
# Characters a person can read off a screen and type without confusion
# (no 0/O, 1/l/I).
PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"  # noqa: S105
PASSWORD_LENGTH = 20
# Iterations for the PKCS#12 key derivation: what `openssl pkcs12 -export`
# uses, which every client importer accepts.
P12_KDF_ROUNDS = 2048


def now() -> dt.datetime:
    """The current time (UTC, whole seconds): certificate dates use the real clock."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def isoz(when: dt.datetime) -> str:
    """``when`` as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_isoz(text: str) -> dt.datetime:
    """Parse :func:`isoz` output back to an aware datetime."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def random_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password from an unambiguous alphabet (~5.8 bits per character)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def generate_key(key_type: str) -> PrivateKey:
    """A new private key of ``key_type``: rsa3072, rsa4096, ecdsa-p256 or ecdsa-p384."""
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}")


def key_type_of(key: object) -> str:
    """The key type name of a private or public key (e.g. ``rsa3072``)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {
            "secp256r1": "ecdsa-p256",
            "secp384r1": "ecdsa-p384",
            "secp521r1": "ecdsa-p521",
        }.get(key.curve.name, f"ecdsa-{key.curve.name}")
    return type(key).__name__


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """``key`` as PKCS#8 PEM, encrypted with ``passphrase`` when given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def load_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM or DER private key; raises ValueError/TypeError like ``cryptography``."""
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    key = loader(data, passphrase)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__} (RSA or ECDSA only)")
    return key


def load_cert(data: bytes) -> x509.Certificate:
    """Load a PEM or DER certificate (ValueError if it is neither)."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def cert_pem(cert: x509.Certificate) -> bytes:
    """``cert`` as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_id(public_key: object) -> str:
    """Hex SubjectKeyIdentifier of a public key: names "this CA key" across CA renewals."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)  # type: ignore[arg-type]
    return ski.digest.hex()


def name(common_name: str, organization: str, country: str | None = None) -> x509.Name:
    """``CN=<common_name>, O=<organization>`` (RDNs in DER order: C, O, CN)."""
    rdns = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)] if country else []
    rdns += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    return x509.Name(rdns)


def _sig_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _key_usage(*, digital_signature: bool, key_encipherment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(key: PrivateKey, subject: x509.Name, days: int) -> x509.Certificate:
    """A self-signed CA: CA:TRUE pathlen 0, keyCertSign + cRLSign, both critical."""
    start = now()
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=False, key_encipherment=False, ca=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, _sig_hash(key))
    )


def renew_ca(key: PrivateKey, old: x509.Certificate, days: int) -> x509.Certificate:
    """A new self-signed CA certificate with the same key and subject as ``old``.

    Certificates issued under ``old`` keep verifying: issuer name and key match.
    """
    return make_ca(key, old.subject, days)


@dataclass(frozen=True)
class Issuer:
    """What signing needs: the CA certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey


def _leaf(
    issuer: Issuer,
    public_key: object,
    subject: x509.Name,
    days: int,
    sans: Sequence[x509.GeneralName],
    ekus: Sequence[ObjectIdentifier],
) -> x509.Certificate:
    start = now()
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    not_after = start + dt.timedelta(days=days)
    # A leaf must not outlive its CA: clients reject such chains.
    not_after = min(not_after, issuer.cert.not_valid_after_utc)
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=is_rsa, ca=False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(aki, critical=False)
    )
    return builder.sign(issuer.key, _sig_hash(issuer.key))


def server_sans(server_id: str) -> list[x509.GeneralName]:
    """SANs for a server identity: dNSName; for an IP also iPAddress (+ the IP as dNSName)."""
    try:
        ip = ipaddress.ip_address(server_id)
    except ValueError:
        return [x509.DNSName(server_id)]
    # Windows matches the dialled address against a dNSName, others want iPAddress.
    return [x509.IPAddress(ip), x509.DNSName(server_id)]


def make_server(
    issuer: Issuer, key: PrivateKey, server_id: str, organization: str, days: int
) -> x509.Certificate:
    """The router's certificate: SAN = server_id, EKU serverAuth + iKEIntermediate."""
    return _leaf(
        issuer,
        key.public_key(),
        name(server_id, organization),
        days,
        server_sans(server_id),
        [ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE],
    )


def make_client(
    issuer: Issuer,
    key: PrivateKey,
    identity: str,
    organization: str,
    days: int,
    shared_identity: str | None = None,
) -> x509.Certificate:
    """A device certificate: SAN rfc822Name identity (+ dNSName shared_identity), clientAuth."""
    sans: list[x509.GeneralName] = [x509.RFC822Name(identity)]
    if shared_identity:
        sans.append(x509.DNSName(shared_identity))
    return _leaf(
        issuer,
        key.public_key(),
        name(identity, organization),
        days,
        sans,
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )


@dataclass(frozen=True)
class RevokedEntry:
    """One CRL entry."""

    serial: int
    revoked_at: dt.datetime


def make_crl(
    issuer: Issuer, entries: Sequence[RevokedEntry], number: int, days: int
) -> x509.CertificateRevocationList:
    """A CRL listing exactly ``entries``; thisUpdate now, nextUpdate now + ``days``."""
    start = now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    except x509.ExtensionNotFound:
        pass
    for entry in sorted(entries, key=lambda e: e.serial):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    return builder.sign(issuer.key, _sig_hash(issuer.key))


def make_p12(
    friendly_name: str,
    key: PrivateKey,
    cert: x509.Certificate,
    ca: x509.Certificate,
    password: str,
) -> bytes:
    """A PKCS#12 in the legacy form every client imports: PBE-SHA1-3DES, SHA-1 MAC, CA included."""
    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(P12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy MAC iOS/Android/Windows import
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(friendly_name.encode(), key, cert, [ca], enc)


def load_p12(data: bytes, password: bytes | None) -> tuple[PrivateKey, x509.Certificate]:
    """The key and certificate of a PKCS#12 (ValueError when wrong password or incomplete)."""
    key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
    if key is None or cert is None:
        raise ValueError("the PKCS#12 file holds no key and certificate pair")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__} (RSA or ECDSA only)")
    return key, cert


def same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private half of ``cert``'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, fmt) == cert.public_key().public_bytes(der, fmt)


def key_consistent(key: PrivateKey) -> bool:
    """True when the private key's numbers agree with each other and with its public half.

    RSA: p*q = n, d*e = 1 mod lcm(p-1, q-1) and the CRT values (a damaged
    key whose public half still matches signs garbage on the router); what
    OpenSSL's full check adds, primality of p and q, costs 0.1 s per
    RSA-3072 key. ECDSA: the public point is the private scalar's.
    """
    import math

    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        derived = ec.derive_private_key(scalar, key.curve).public_key()
        return derived.public_numbers() == key.public_key().public_numbers()
    n = key.private_numbers()
    p, q, d, e = n.p, n.q, n.d, n.public_numbers.e
    return (
        p > 1
        and q > 1
        and p * q == n.public_numbers.n
        and (d * e) % math.lcm(p - 1, q - 1) == 1
        and n.dmp1 == d % (p - 1)
        and n.dmq1 == d % (q - 1)
        and (n.iqmp * q) % p == 1
    )


def is_ca(cert: x509.Certificate) -> bool:
    """True when ``cert`` has basicConstraints CA:TRUE."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def subject_str(cert: x509.Certificate) -> str:
    """The subject as RFC 4514 text (``CN=...,O=...``)."""
    return cert.subject.rfc4514_string()
