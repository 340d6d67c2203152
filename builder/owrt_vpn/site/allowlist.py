"""The allow-list every string of the site file passes first (see docs/security.md).

It runs before the syntax checks of each key: control and format characters
nowhere, non-ASCII only where a key can need it, no IPv6 zone IDs. Escaping
for each target language comes second, at render time.
"""

from __future__ import annotations

import unicodedata

# Keys whose values may need characters beyond ASCII: a certificate's
# organization, Wi-Fi names, local paths and SSH key comments. Every other
# string reaches a script or config file (PowerShell, sh, swanctl, ipsec.conf,
# UCI, nft, .nmconnection, plist, JSON, README) where only ASCII is needed.
NON_ASCII_KEYS = frozenset(
    {"organization", "trusted_ssids", "pki_dir", "identity_file", "known_hosts", "authorized_keys"}
)


def refuse_unsafe_text(value: str, *, ascii_only: bool = True) -> str:
    """The allow-list every site string passes before any other check.

    Control characters (C0, DEL, C1), format characters (bidi overrides,
    zero-width, BOM) and line/paragraph separators are refused everywhere:
    each ends a line, a comment or a quoted string in one of the languages we
    write, or hides what a reviewer reads. ``ascii_only`` also refuses
    anything beyond ASCII (PowerShell, for one, ends single-quoted strings at
    U+2018..U+201B).
    """
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            raise ValueError(f"contains a control character (U+{ord(ch):04X} at position {i + 1})")
        if ascii_only and not ch.isascii():
            raise ValueError(
                f"contains a non-ASCII character (U+{ord(ch):04X} at position {i + 1})"
            )
    return value


def refuse_unsafe(value: object, ascii_only: bool) -> None:
    """:func:`refuse_unsafe_text` on a string or on each string of a list."""
    if isinstance(value, str):
        refuse_unsafe_text(value, ascii_only=ascii_only)
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            if isinstance(item, str):
                try:
                    refuse_unsafe_text(item, ascii_only=ascii_only)
                except ValueError as exc:
                    raise ValueError(f"item {n + 1}: {exc}") from None


def refuse_zone(value: str) -> None:
    """Refuse an IPv6 zone ID (ValueError)."""
    # Python's ipaddress accepts an IPv6 zone ID ("fe80::1%eth0"), which is
    # free text: no key of ours needs one, and each target chokes on it.
    if "%" in value:
        raise ValueError(f"{value!r}: IPv6 zone IDs ('%...') are not allowed")
