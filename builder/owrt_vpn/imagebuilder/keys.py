"""usign/signify keys: the keyring and Ed25519 signature verification.

OpenWrt signs each release directory's ``sha256sums`` with usign, which uses
OpenBSD signify's formats:

- public key file: ``untrusted comment: ...`` then base64 of
  ``b"Ed" + keynum (8 bytes) + Ed25519 public key (32 bytes)``;
- signature file: ``untrusted comment: ...`` then base64 of
  ``b"Ed" + keynum (8 bytes) + Ed25519 signature (64 bytes)`` over the exact
  bytes of the signed file.

A signature is checked only against the key whose keynum it names: a
signature by a key we do not hold is refused with the key number, never
"tried against every key".

The keyring is the OpenWrt keys shipped in ``profiles/keys/usign/`` (each
with its source in ``profiles/keys/keys.toml``), plus the user's own keys
(``owrt-vpn keys add``) in ``$OWRT_VPN_KEYS_DIR`` or the platform config
dir, plus keys passed for one build (``--trust-key FILE``).
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from owrt_vpn.errors import ConfigError, IntegrityError, Problem
from owrt_vpn.resources import profiles_dir

PKALG = b"Ed"
SIGNATURES_PAGE = "https://openwrt.org/docs/guide-user/security/signatures"
COMMENT_PREFIX = "untrusted comment: "


@dataclass(frozen=True)
class PublicKey:
    """One usign/signify Ed25519 public key."""

    keynum: bytes
    key: bytes
    comment: str
    origin: str = ""  # "openwrt", "user", "--trust-key", with the file path
    source: str = ""  # provenance of a shipped key (from keys.toml)

    @property
    def key_id(self) -> str:
        """The key number as usign prints it (16 hex digits); also its file name."""
        return self.keynum.hex()

    def text(self) -> str:
        """The key in signify/usign file format."""
        data = base64.b64encode(PKALG + self.keynum + self.key).decode()
        return f"{COMMENT_PREFIX}{self.comment}\n{data}\n"


@dataclass(frozen=True)
class Signature:
    """One usign/signify signature."""

    keynum: bytes
    sig: bytes
    comment: str

    @property
    def key_id(self) -> str:
        """The key number of the signing key (16 hex digits)."""
        return self.keynum.hex()


def _decode(text: str | bytes, size: int, what: str) -> tuple[str, bytes]:
    """Split a signify file into (comment, payload) and check the payload size."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is not text") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].startswith(COMMENT_PREFIX):
        raise ValueError(f"{what} must have an 'untrusted comment:' line and a base64 line")
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: second line is not base64") from None
    if len(raw) != size or raw[:2] != PKALG:
        raise ValueError(f"{what} is not an Ed25519 usign/signify {what} ({len(raw)} bytes)")
    return lines[0][len(COMMENT_PREFIX) :].strip(), raw


def parse_public_key(text: str | bytes, origin: str = "", source: str = "") -> PublicKey:
    """Parse a usign/signify public key; ValueError when it is not one."""
    comment, raw = _decode(text, 2 + 8 + 32, "public key")
    return PublicKey(keynum=raw[2:10], key=raw[10:], comment=comment, origin=origin, source=source)


def parse_signature(text: str | bytes) -> Signature:
    """Parse a usign/signify signature; ValueError when it is not one."""
    comment, raw = _decode(text, 2 + 8 + 64, "signature")
    return Signature(keynum=raw[2:10], sig=raw[10:], comment=comment)


def read_key_file(path: Path, origin: str) -> PublicKey:
    """Read the public key in ``path``; ConfigError naming the file otherwise."""
    try:
        return parse_public_key(path.read_bytes(), origin=f"{origin} {path}")
    except OSError as exc:
        raise ConfigError(
            [Problem(str(path), "", f"cannot read key file: {exc.strerror}")],
            hint="check the path and its permissions (a usign/signify public key file, "
            "e.g. from keyring.git usign/<keyid>)",
        ) from None
    except ValueError as exc:
        raise ConfigError(
            [Problem(str(path), "", str(exc))],
            hint="a usign/signify public key has two lines: 'untrusted comment: ...' and base64",
        ) from None


def shipped_keys_dir() -> Path:
    """``profiles/keys``: OpenWrt's keys and their provenance."""
    return profiles_dir() / "keys"


def user_keys_dir() -> Path:
    """Where ``owrt-vpn keys add`` stores keys (``$OWRT_VPN_KEYS_DIR`` overrides)."""
    env = os.environ.get("OWRT_VPN_KEYS_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("owrt-vpn")) / "keys"


def shipped_keys() -> list[PublicKey]:
    """OpenWrt's release keys shipped with owrt-vpn, with their source noted."""
    base = shipped_keys_dir()
    with (base / "keys.toml").open("rb") as fh:
        meta = tomllib.load(fh).get("keys", {})
    out = []
    for path in sorted((base / "usign").iterdir()):
        if path.name.startswith("."):
            continue
        key = read_key_file(path, "openwrt")
        info = meta.get(key.key_id, {})
        out.append(
            PublicKey(
                key.keynum,
                key.key,
                key.comment,
                origin="openwrt",
                source=str(info.get("source", "")),
            )
        )
    return out


def user_keys() -> list[PublicKey]:
    """Keys the user added with ``owrt-vpn keys add``."""
    base = user_keys_dir()
    if not base.is_dir():
        return []
    return [
        read_key_file(p, "user")
        for p in sorted(base.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]


@dataclass
class Keyring:
    """The keys a signature may be checked against, by key number."""

    keys: dict[bytes, PublicKey] = field(default_factory=dict)

    @classmethod
    def load(cls, trust_files: Sequence[Path] = (), include_user: bool = True) -> Keyring:
        """Shipped OpenWrt keys + the user's keys + ``trust_files`` (``--trust-key``)."""
        ring = cls()
        ring.add_all(shipped_keys())
        if include_user:
            ring.add_all(user_keys())
        ring.add_all(read_key_file(p, "--trust-key") for p in trust_files)
        return ring

    def add_all(self, keys: Iterable[PublicKey]) -> None:
        """Add keys (a later key with the same number replaces an earlier one)."""
        for k in keys:
            self.keys[k.keynum] = k

    def verify(self, data: bytes, signature: str | bytes, what: str) -> PublicKey:
        """Check ``signature`` over ``data``; return the key that made it.

        Raises IntegrityError when the signature is malformed, names a key
        number not in the keyring, or does not verify.
        """
        try:
            sig = parse_signature(signature)
        except ValueError as exc:
            raise IntegrityError(
                f"{what}: malformed signature: {exc}",
                hint="the mirror served an empty or damaged signature file (a sync in "
                "progress?); try again later or another mirror",
            ) from None
        key = self.keys.get(sig.keynum)
        if key is None:
            raise IntegrityError(
                f"{what}: signed by key {sig.key_id}, which is not in the keyring",
                hint=(
                    f"check key {sig.key_id} on OpenWrt's signatures page ({SIGNATURES_PAGE}); "
                    "if it is genuine, save it to a file and run `owrt-vpn keys add FILE` "
                    "(or pass --trust-key FILE for one build)"
                ),
            )
        if not verify_ed25519(key.key, sig.sig, data):
            raise IntegrityError(
                f"{what}: BAD signature by key {key.key_id} ({key.comment})",
                hint="the file changed after signing or the mirror is broken; try another mirror",
            )
        return key


def verify_ed25519(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data``."""
    # Imported here: cryptography is heavy and not needed on no-op runs.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except InvalidSignature:
        return False
    return True


def add_user_key(path: Path) -> PublicKey:
    """Copy the key in ``path`` into the user keyring under its key id."""
    from owrt_vpn.fsutil import write_atomic

    key = read_key_file(path, "user")
    dest = user_keys_dir() / key.key_id
    write_atomic(dest, key.text(), 0o644)
    return PublicKey(key.keynum, key.key, key.comment, origin=f"user {dest}")


def remove_user_key(key_id: str) -> Path:
    """Remove the user key ``key_id``; ConfigError if it is not a user key."""
    kid = key_id.strip().lower()
    path = user_keys_dir() / kid
    if len(kid) != 16 or any(c not in "0123456789abcdef" for c in kid) or not path.is_file():
        shipped = {k.key_id for k in shipped_keys()}
        hint = (
            "OpenWrt's shipped keys cannot be removed (they are data of owrt-vpn)"
            if kid in shipped
            else "see `owrt-vpn keys list` for the key ids"
        )
        raise ConfigError(f"no user key {key_id!r}", hint=hint)
    path.unlink()
    return path
