"""Opening our PKCS#12 files for `check`: MAC, certificate bags and key bag.

``cryptography``'s :func:`pkcs12.load_key_and_certificates` validates an RSA
key on the way in (~0.1 s for RSA-3072: a 1,000-device PKI with Android
devices would make `check` take minutes). The legacy form we write
(:func:`owrt_vpn.pki.certs.make_p12`: PBE-SHA1-3DES bags, SHA-1 MAC) is
simple enough to open here: the MAC and the certificate bags with the
RFC 7292 key derivation and 3DES, the shrouded key bag with
``cryptography`` itself (without the RSA validation). Anything else falls
back to ``cryptography``'s loader.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from owrt_vpn.pki.certs import PrivateKey


class WrongPassword(ValueError):
    """The MAC does not verify with the password (another file's password, or altered)."""


class Unsupported(ValueError):
    """Well-formed, but not the legacy form this module opens (use cryptography's loader)."""


@dataclass(frozen=True)
class Contents:
    """What a PKCS#12 holds: its private key and every certificate."""

    key: PrivateKey | None
    certs: tuple[x509.Certificate, ...]


_MAC_HASHES = {"2b0e03021a": "sha1", "608648016503040201": "sha256"}
_DATA = "2a864886f70d010701"  # pkcs7-data
_ENCRYPTED_DATA = "2a864886f70d010706"  # pkcs7-encryptedData
_PBE_SHA1_3DES = "2a864886f70d010c0103"  # pbeWithSHAAnd3-KeyTripleDES-CBC
_KEY_BAG = "2a864886f70d010c0a0101"
_SHROUDED_KEY_BAG = "2a864886f70d010c0a0102"
_CERT_BAG = "2a864886f70d010c0a0103"
_X509_CERT = "2a864886f70d01091601"


def tlv(data: bytes, pos: int) -> tuple[int, int, int]:
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


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The DER elements between ``start`` and ``end``."""
    out = []
    while start < end:
        tag, vs, ve = tlv(data, start)
        out.append((tag, vs, ve))
        start = ve
    return out


def kdf(password: bytes, salt: bytes, iterations: int, name: str, purpose: int, n: int) -> bytes:
    """RFC 7292 appendix B.2 (``purpose``: 1 key, 2 IV, 3 MAC key); ``password`` as BMPString."""
    h = getattr(hashlib, name)
    u, v = h().digest_size, 64
    d = bytes([purpose]) * v

    def fill(b: bytes) -> bytes:  # b repeated to a multiple of v bytes
        size = v * -(-len(b) // v)
        return (b * (size // len(b) + 1))[:size] if b else b""

    i = bytearray(fill(salt) + fill(password))
    out = b""
    while len(out) < n:
        a = d + bytes(i)
        for _ in range(iterations):
            a = h(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j : j + v], "big") + b + 1) % (1 << (v * 8))
            i[j : j + v] = block.to_bytes(v, "big")
    return out[:n]


def _bmp(password: str) -> bytes:
    return (password + "\0").encode("utf-16-be")


def _oid(data: bytes, el: tuple[int, int, int]) -> str:
    if el[0] != 0x06:
        raise ValueError("an OID was expected")
    return data[el[1] : el[2]].hex()


def _pfx(data: bytes) -> tuple[bytes, tuple[int, int, int]]:
    """The authenticated bytes (the AuthenticatedSafe) and the MacData element."""
    _t, s, e = tlv(data, 0)
    parts = children(data, s, e)
    if len(parts) < 3:
        raise ValueError("no MAC")
    auth_safe, mac_data = parts[1], parts[2]
    oid, content = children(data, auth_safe[1], auth_safe[2])[:2]
    if _oid(data, oid) != _DATA:
        raise Unsupported("public-key integrity mode")
    _t, s, e = children(data, content[1], content[2])[0]  # [0] EXPLICIT OCTET STRING
    return data[s:e], mac_data


def verify_mac(data: bytes, password: str) -> bytes:
    """Check the integrity MAC with ``password``; return the AuthenticatedSafe it covers.

    ValueError when the file is malformed, :class:`WrongPassword` when the
    MAC does not verify (the MAC covers every bag of the file).
    """
    try:
        signed, mac_data = _pfx(data)
        digest_info, salt, iters = children(data, mac_data[1], mac_data[2])[:3]
        alg, digest = children(data, digest_info[1], digest_info[2])[:2]
        name = _MAC_HASHES[_oid(data, children(data, alg[1], alg[2])[0])]
        iterations = int.from_bytes(data[iters[1] : iters[2]], "big")
        expected = data[digest[1] : digest[2]]
        salt_b = data[salt[1] : salt[2]]
    except (IndexError, KeyError):
        raise ValueError("not a PKCS#12 file with a MAC") from None
    key = kdf(_bmp(password), salt_b, iterations, name, 3, hashlib.new(name).digest_size)
    if not hmac.compare_digest(hmac.new(key, signed, name).digest(), expected):
        raise WrongPassword("the MAC does not verify with this password")
    return signed


def _decrypt(data: bytes, info: tuple[int, int, int], password: str) -> bytes:
    """The plaintext of an EncryptedData (PBE-SHA1-3DES only)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    _version, enc_info = children(data, info[1], info[2])[:2]
    _ctype, alg, content = children(data, enc_info[1], enc_info[2])[:3]
    alg_oid, params = children(data, alg[1], alg[2])[:2]
    if _oid(data, alg_oid) != _PBE_SHA1_3DES or content[0] != 0x80:
        raise Unsupported("not PBE-SHA1-3DES")
    salt, iters = children(data, params[1], params[2])[:2]
    salt_b, rounds = data[salt[1] : salt[2]], int.from_bytes(data[iters[1] : iters[2]], "big")
    secret = _bmp(password)
    key = kdf(secret, salt_b, rounds, "sha1", 1, 24)
    iv = kdf(secret, salt_b, rounds, "sha1", 2, 8)
    dec = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(data[content[1] : content[2]]) + dec.finalize()
    unpadder = padding.PKCS7(64).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _bags(
    data: bytes, password: str, certs: list[x509.Certificate], keys: list[PrivateKey]
) -> None:
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    _t, s, e = tlv(data, 0)
    for bag in children(data, s, e):
        bag_id, value = children(data, bag[1], bag[2])[:2]
        kind = _oid(data, bag_id)
        inner = children(data, value[1], value[2])[0]
        if kind == _CERT_BAG:
            cert_id, cert_value = children(data, inner[1], inner[2])[:2]
            if _oid(data, cert_id) != _X509_CERT:
                raise Unsupported("a certificate bag that is not X.509")
            _t, cs, ce = children(data, cert_value[1], cert_value[2])[0]
            certs.append(_x509.load_der_x509_certificate(data[cs:ce]))
        elif kind in (_KEY_BAG, _SHROUDED_KEY_BAG):
            der = data[value[1] : value[2]]
            secret = password.encode() if kind == _SHROUDED_KEY_BAG else None
            # Whether the key is the certificate's is the caller's check; the
            # RSA validation is what makes cryptography's loader slow.
            key = serialization.load_der_private_key(
                der, secret, unsafe_skip_rsa_key_validation=True
            )
            if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise ValueError(f"unsupported key type {type(key).__name__}")
            keys.append(key)


def open_legacy(data: bytes, password: str) -> Contents:
    """The key and certificates of a PKCS#12 in the legacy form we write.

    Raises :class:`WrongPassword`, :class:`Unsupported` (another form: use
    ``cryptography``'s loader) or ValueError (malformed).
    """
    signed = verify_mac(data, password)
    certs: list[x509.Certificate] = []
    keys: list[PrivateKey] = []
    try:
        _t, s, e = tlv(signed, 0)
        for info in children(signed, s, e):
            ctype, content = children(signed, info[1], info[2])[:2]
            inner = children(signed, content[1], content[2])[0]
            kind = _oid(signed, ctype)
            if kind == _DATA:
                _bags(signed[inner[1] : inner[2]], password, certs, keys)
            elif kind == _ENCRYPTED_DATA:
                _bags(_decrypt(signed, inner, password), password, certs, keys)
            else:
                raise Unsupported("an enveloped bag")
    except IndexError:
        raise ValueError("damaged bags") from None
    if len(keys) > 1:
        raise ValueError("more than one private key")
    return Contents(keys[0] if keys else None, tuple(certs))
