"""The PKI directory on disk: the index of issued certificates, file modes, locking.

Layout (see HACKING.md)::

    <pki_dir>/ca.crt  ca.key  index.json  crl.pem
    <pki_dir>/servers/<router>.crt .key
    <pki_dir>/clients/<user>/<device>.crt .key .p12 .p12.password
    <pki_dir>/eap/<user>.password

``index.json`` is deterministic (sorted keys, records in a fixed order) and
only rewritten when its content changes, so that running a command twice
leaves the directory byte-identical.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owrt_vpn.errors import EXIT_USAGE, PkiError, UsageError
from owrt_vpn.fsutil import held_lock, write_atomic

if TYPE_CHECKING:
    pass

INDEX_VERSION = 1
# The minimum length of a new CA passphrase (docs/security.md), and the
# explicit override for throwaway sites.
MIN_PASSPHRASE = 12
SHORT_OK_ENV = "OWRT_VPN_ALLOW_SHORT_PASSPHRASE"
PASSPHRASE_ENV = "OWRT_VPN_CA_PASSPHRASE"  # noqa: S105 - a variable name
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700
_KIND_ORDER = {"ca": 0, "server": 1, "client": 2}


@dataclass
class CertRecord:
    """One issued certificate as the index records it."""

    serial: int
    kind: str  # ca | server | client
    subject: str
    not_before: str
    not_after: str
    ca: str  # key id (SKI hex) of the CA key that signed it
    key_type: str
    status: str = "valid"  # valid | revoked
    current: bool = True  # False once renewed, re-issued or its user removed
    revoked_at: str | None = None
    router: str | None = None
    server_id: str | None = None
    user: str | None = None
    device: str | None = None
    identity: str | None = None
    shared_identity: str | None = None

    @property
    def serial_hex(self) -> str:
        """The serial as lowercase hex (what index.json stores)."""
        return f"{self.serial:x}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form (None values left out, serial as hex)."""
        # Field by field, not dataclasses.asdict (a deep copy): every value is
        # a plain str/int/bool, and index.json is written for 1,000s of records.
        data = {k: v for k in _RECORD_FIELDS if (v := getattr(self, k)) is not None}
        data["serial"] = self.serial_hex
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CertRecord:
        """Parse one index record (KeyError/ValueError/TypeError when malformed)."""
        values = dict(data)
        values["serial"] = int(str(values["serial"]), 16)
        return cls(**values)

    def sort_key(self) -> tuple[int, str, str, str, str, int]:
        """A total order for index.json: kind, owner, issue date, serial."""
        return (
            _KIND_ORDER.get(self.kind, 9),
            self.router or self.user or "",
            self.device or "",
            self.not_before,
            self.status,
            self.serial,
        )


_RECORD_FIELDS = tuple(f.name for f in fields(CertRecord))


@dataclass
class Index:
    """The parsed ``index.json``."""

    certs: list[CertRecord] = field(default_factory=list)
    ca_encrypted: bool = True
    crl: dict[str, Any] | None = None  # number, this_update, next_update, ca
    eap: dict[str, str] = field(default_factory=dict)  # user -> active | revoked
    _current: dict[tuple[str, ...], CertRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._current = {}
        for rec in self.certs:
            if rec.current:
                self._current[self.key_of(rec)] = rec

    @staticmethod
    def key_of(rec: CertRecord) -> tuple[str, ...]:
        """The lookup key of a record: ("ca",), ("server", router) or ("client", user, device)."""
        if rec.kind == "server":
            return ("server", rec.router or "")
        if rec.kind == "client":
            return ("client", rec.user or "", rec.device or "")
        return ("ca",)

    def current(self, *key: str) -> CertRecord | None:
        """The current record for ``key`` (see :meth:`key_of`), or None."""
        return self._current.get(tuple(key))

    def add(self, rec: CertRecord) -> None:
        """Record a newly issued certificate; the one it replaces stops being current."""
        old = self._current.get(self.key_of(rec))
        if old is not None:
            old.current = False
        rec.current = True
        self.certs.append(rec)
        self._current[self.key_of(rec)] = rec

    def retire(self, rec: CertRecord) -> None:
        """Mark ``rec`` as no longer current (its owner was removed)."""
        rec.current = False
        key = self.key_of(rec)
        if self._current.get(key) is rec:
            del self._current[key]

    def to_bytes(self) -> bytes:
        """Deterministic JSON bytes."""
        data = {
            "version": INDEX_VERSION,
            "ca_encrypted": self.ca_encrypted,
            "certs": [r.to_json() for r in sorted(self.certs, key=CertRecord.sort_key)],
            "crl": self.crl,
            "eap": dict(sorted(self.eap.items())),
        }
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Index:
        """Parse ``index.json`` (PkiError naming ``where`` when it is damaged)."""
        try:
            raw = json.loads(data)
            if raw.get("version") != INDEX_VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            certs = [CertRecord.from_json(r) for r in raw["certs"]]
            crl = raw.get("crl")
            eap = {str(k): str(v) for k, v in raw.get("eap", {}).items()}
            return cls(certs=certs, ca_encrypted=bool(raw["ca_encrypted"]), crl=crl, eap=eap)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PkiError(
                f"{where}: damaged PKI index: {exc}",
                hint="restore the PKI directory from a backup",
            ) from None


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700; fix the mode if it differs."""
    if not path.is_dir():
        if not path.parent.is_dir():
            ensure_dir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)


def put(path: Path, data: bytes, mode: int, *, sync: bool = False) -> bool:
    """Write ``data`` atomically unless the file already holds it with ``mode``.

    Returns True when the file was (re)written. Skipping identical writes is
    what keeps a second run byte- and mtime-identical. Files are not synced
    one by one (thousands of devices); :func:`sync` runs once before the
    index that records them is written with ``sync=True``.
    """
    try:
        st = path.stat()
        if st.st_mode & 0o777 == mode and st.st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    if path.parent not in _known_dirs:
        ensure_dir(path.parent)
        _known_dirs.add(path.parent)
    if sync:
        # The index (the one synced write): a symlinked index.json is written
        # *through* the link to its target, as the site file is (site/edit.py).
        write_atomic(Path(os.path.realpath(path)), data, mode)
        return True
    # Like fsutil.write_atomic without its per-call mkdir/mkstemp/fsync,
    # which dominate when thousands of device files are written.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:  # the directory went away since it was cached
        ensure_dir(path.parent)
        fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not change it
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


# Directories already created and given mode 0700 in this process.
_known_dirs: set[Path] = set()


def sync() -> None:
    """Flush everything written so far to disk (one call per batch, not per file)."""
    os.sync()


def read(path: Path, hint: str) -> bytes:
    """The bytes of a PKI file, or PkiError naming it with ``hint``."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{path}: missing", hint=hint) from None
    except OSError as exc:
        raise PkiError(f"{path}: cannot read: {exc.strerror}", hint=hint) from None


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the PKI directory (one writer at a time).

    The lock is taken on the directory itself, so that no lock file appears in
    it; a directory that does not exist yet has nothing to protect.
    """
    if not root.is_dir():
        yield
        return
    # fsutil's lock: re-entrant in one thread, so `user add` (which holds the
    # site folder's lock) works when pki_dir is the site folder itself.
    with held_lock(root):
        yield


def check_new_passphrase(value: str) -> str:
    """Refuse a passphrase for a new CA key shorter than :data:`MIN_PASSPHRASE` characters.

    ``$OWRT_VPN_ALLOW_SHORT_PASSPHRASE=1`` lifts the minimum for throwaway
    sites (the key is still encrypted).
    """
    if len(value) < MIN_PASSPHRASE and os.environ.get(SHORT_OK_ENV) != "1":
        raise UsageError(
            f"the CA passphrase must have at least {MIN_PASSPHRASE} characters "
            f"(it has {len(value)})",
            hint=f"choose a longer one; for a throwaway site set {SHORT_OK_ENV}=1",
        )
    return value


def passphrase(*, new: bool = False) -> bytes:
    """The CA passphrase: ``$OWRT_VPN_CA_PASSPHRASE``, else a prompt when stdin is a terminal.

    ``new`` (encrypting a CA key) asks twice and enforces the minimum length
    (:func:`check_new_passphrase`). Raises PkiError when neither is available.
    """
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise PkiError(f"{PASSPHRASE_ENV} is set but empty", hint="set it to the CA passphrase")
        if new:
            check_new_passphrase(value)
        return value.encode()
    if sys.stdin.isatty():
        first = getpass.getpass("CA passphrase: ")
        if new:
            check_new_passphrase(first)
            if getpass.getpass("CA passphrase (again): ") != first:
                raise PkiError("the two passphrases differ")
        if not first:
            raise PkiError("no CA passphrase given")
        return first.encode()
    if new:
        raise MissingPassphrase(
            f"no CA passphrase: set {PASSPHRASE_ENV}",
            hint="the new CA key is stored encrypted with it; or run the command in a "
            "terminal to be asked for it",
        )
    raise MissingPassphrase(
        f"the CA key is encrypted: set {PASSPHRASE_ENV}",
        hint="or run the command in a terminal to be asked for it",
    )


def check_passphrase_source(*, new: bool = False) -> None:
    """Raise what :func:`passphrase` would when it cannot get one, without asking.

    Lets a command refuse before slower work (a download) instead of after it.
    """
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None or sys.stdin.isatty():
        if value is not None and value and new:
            check_new_passphrase(value)
        return
    passphrase(new=new)  # raises MissingPassphrase: no variable, no terminal


class MissingPassphrase(PkiError):
    """No CA passphrase in the environment and no terminal to ask: a usage problem (exit 2)."""

    exit_code = EXIT_USAGE


INIT_HINT = "run `owrt-vpn pki init` first"
