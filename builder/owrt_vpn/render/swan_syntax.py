"""strongSwan configuration syntax: quoting values so strongSwan reads exactly them.

Three parsers read what the overlay writes, each with its own rules (checked
against strongSwan's sources, 5.9):

- ``swanctl.conf`` / ``strongswan.conf`` (libstrongswan settings lexer): a
  value in double quotes may hold anything; ``\\"`` is a quote, ``\\\\`` a
  backslash, ``\\n`` ``\\r`` ``\\t`` control characters, any other ``\\x`` is
  ``x``; a raw CR is dropped. Unquoted values end at ``#``, ``}`` or a
  newline. There is no ``;`` separator. A *secret* (``secrets.eap*.secret``)
  is further decoded by swanctl: a value starting with ``0x``/``0s`` is hex or
  base64, so such passwords are written hex encoded.
- ``ipsec.secrets`` (stroke plugin): a secret in ``"..."`` or ``'...'`` is
  taken verbatim up to the next identical quote (no escapes at all); an
  unquoted ``0x...`` is hex. So: double quotes when the secret has none, else
  single quotes, else hex.
- ``ipsec.conf`` (starter): ``key="value"`` with no escapes; our values never
  hold a double quote (identities and DNs are validated).

EAP-MSCHAPv2 hashes the password as ASCII (each byte padded to UTF-16), so a
non-ASCII password would never match what clients compute; swanctl style
stores the proper NT hash (``ntlm`` secret, MD4 of UTF-16LE) for those.
"""

from __future__ import annotations

import re
import struct

_LIST_ITEM = re.compile(r"^[A-Za-z0-9.:/%@_+*=-]+$")


def swan_str(value: str) -> str:
    """``value`` as a double-quoted swanctl.conf/strongswan.conf string."""
    if "\0" in value:
        raise ValueError("strongSwan values cannot contain NUL")
    out = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{out}"'


def list_value(items: list[str]) -> str:
    """A comma-separated list of plain tokens (addresses, names, proposals), validated."""
    for item in items:
        if not _LIST_ITEM.fullmatch(item):
            raise ValueError(f"not a plain strongSwan list item: {item!r}")
    return ", ".join(items)


def legacy_quote(value: str) -> str:
    """``value`` in double quotes for ipsec.conf (which has no escapes)."""
    if '"' in value or "\n" in value or "\r" in value:
        raise ValueError(f"ipsec.conf cannot hold this value: {value!r}")
    return f'"{value}"'


def swan_secret(password: str) -> tuple[str, str]:
    """``(section prefix, value)`` of an EAP password for swanctl.conf's ``secrets``."""
    if not password.isascii():
        return "ntlm", "0x" + nt_hash(password).hex()
    if password[:2].lower() in ("0x", "0s"):
        return "eap", swan_str("0x" + password.encode().hex())
    return "eap", swan_str(password)


def legacy_secret(password: str) -> str:
    """An EAP password as ipsec.secrets writes it (quoted verbatim, or hex)."""
    if any(ord(c) < 32 for c in password) or not password:
        return "0x" + password.encode().hex()
    if '"' not in password:
        return f'"{password}"'
    if "'" not in password:
        return f"'{password}'"
    return "0x" + password.encode().hex()


# --------------------------------------------------------------------------
# MD4 (RFC 1320) for the NT hash: OpenSSL 3 hides MD4 in its legacy provider,
# so hashlib may not have it.


def _md4(data: bytes) -> bytes:
    def rol(x: int, n: int) -> int:
        x &= 0xFFFFFFFF
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    msg = data + b"\x80" + b"\0" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        aa, bb, cc, dd = a, b, c, d
        for i in range(16):
            k, s = i, (3, 7, 11, 19)[i % 4]
            f = (b & c) | (~b & d)
            a, b, c, d = d, rol(a + f + x[k], s), b, c
        for i in range(16):
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            g = (b & c) | (b & d) | (c & d)
            a, b, c, d = d, rol(a + g + x[k] + 0x5A827999, s), b, c
        for i in range(16):
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            h = b ^ c ^ d
            a, b, c, d = d, rol(a + h + x[k] + 0x6ED9EBA1, s), b, c
        a, b, c, d = (
            (a + aa) & 0xFFFFFFFF,
            (b + bb) & 0xFFFFFFFF,
            (c + cc) & 0xFFFFFFFF,
            (d + dd) & 0xFFFFFFFF,
        )
    return struct.pack("<4I", a, b, c, d)


def nt_hash(password: str) -> bytes:
    """MD4(UTF-16LE(password)): the NT hash EAP-MSCHAPv2 is computed from."""
    return _md4(password.encode("utf-16-le"))
