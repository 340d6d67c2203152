"""Deterministic password-encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC).

NetworkManager's strongSwan plugin cannot read PKCS#12, so Linux bundles
carry the device key as a separate PEM. It is encrypted with the device's
PKCS#12 password, so that nothing in the bundle opens without the password
that travels by another channel. Libraries encrypt with a random salt and IV,
which would change the bundle on every run; here both are derived from the
password and the key (HMAC), so the same key and password give the same
bytes, while different keys or passwords never share a salt or IV.

Readers: OpenSSL (``openssl pkey``), strongSwan's pkcs8/openssl plugins
(charon, charon-nm, swanctl), ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# The password is 20 random characters from the PKI (~116 bits), so the KDF
# need not slow down guessing; 2048 rounds is OpenSSL's own default for PKCS#8.
PBKDF2_ROUNDS = 2048

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_PBKDF2 = "1.2.840.113549.1.5.12"
_OID_HMAC_SHA256 = "1.2.840.113549.2.9"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, body)


def _int(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _tlv(0x02, raw)


def _octets(data: bytes) -> bytes:
    return _tlv(0x04, data)


def encrypt_pkcs8_pem(key_pem: bytes, password: str) -> bytes:
    """``key_pem`` (unencrypted PKCS#8 or any PEM key) as an ENCRYPTED PRIVATE KEY PEM."""
    from cryptography.hazmat.primitives import padding, serialization
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = serialization.load_pem_private_key(key_pem, password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    secret = password.encode()
    salt = hmac.new(secret, b"owrt-vpn pkcs8 salt\0" + der, hashlib.sha256).digest()[:16]
    iv = hmac.new(secret, b"owrt-vpn pkcs8 iv\0" + der, hashlib.sha256).digest()[:16]
    aes_key = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ROUNDS, dklen=32)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(der) + padder.finalize()
    enc = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    cipher_text = enc.update(plain) + enc.finalize()

    kdf = _seq(
        _oid(_OID_PBKDF2),
        _seq(_octets(salt), _int(PBKDF2_ROUNDS), _seq(_oid(_OID_HMAC_SHA256), b"\x05\x00")),
    )
    scheme = _seq(_oid(_OID_AES256_CBC), _octets(iv))
    info = _seq(_seq(_oid(_OID_PBES2), _seq(kdf, scheme)), _octets(cipher_text))
    b64 = base64.encodebytes(info).decode().replace("\n", "")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + "\n".join(lines)
        + "\n-----END ENCRYPTED PRIVATE KEY-----\n"
    ).encode()
