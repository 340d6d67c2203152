"""What the PKI issues for a site, and the reports of what it did.

Key types per platform, the EAP password rules, which users have device
certificates, and :class:`EnsureReport` / :class:`RevokeResult`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from owrt_vpn.errors import ConfigError, IntegrityError, PkiError, Problem, did_you_mean
from owrt_vpn.pki.store import CertRecord
from owrt_vpn.site.keys import user_key
from owrt_vpn.site.model import CERT_AUTH, Device, Site, User

MAX_PASSWORD = 128


@dataclass
class EnsureReport:
    """What an ensure/init/import did."""

    issued: list[str] = field(default_factory=list)  # "server gw", "client alice/phone"
    skipped: list[str] = field(default_factory=list)  # revoked devices not re-issued
    passwords: dict[str, str] = field(default_factory=dict)  # newly generated EAP passwords

    @property
    def changed(self) -> bool:
        """True when anything was issued or generated."""
        return bool(self.issued or self.passwords)


@dataclass
class RevokeResult:
    """What a revoke/remove did."""

    certs: list[CertRecord] = field(default_factory=list)
    eap: bool = False  # the EAP password was disabled

    @property
    def changed(self) -> bool:
        """True when anything was revoked."""
        return bool(self.certs or self.eap)


def client_key_type_for(device: Device) -> str:
    """The key type a platform's client accepts: RSA-3072 for Android's built-in client."""
    return "rsa3072" if device.platform == "android" else "ecdsa-p256"


def check_password(password: str, where: str) -> str:
    """Validate an EAP password (ConfigError naming ``where``); returns it."""
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        problem = "the password contains a control character or newline"
    elif not 8 <= len(password) <= MAX_PASSWORD:
        problem = f"the password must have 8 to {MAX_PASSWORD} characters"
    else:
        return password
    raise ConfigError([Problem(where, "", problem)])


def find_device(site: Site, user: User, device: str) -> Device:
    """``user``'s device called ``device`` (ConfigError with a did-you-mean when none)."""
    for d in user.devices:
        if d.name == device:
            return d
    names = [d.name for d in user.devices]
    raise ConfigError(
        [
            Problem(
                site.path.name,
                f"{user_key(user)}.devices",
                f"user {user.name!r} has no device {device!r}{did_you_mean(device, names)}",
            )
        ]
    )


def needs_certs(site: Site, user: User) -> None:
    """ConfigError unless ``user`` authenticates with device certificates."""
    if user.auth not in CERT_AUTH:
        raise ConfigError(
            [
                Problem(
                    site.path.name,
                    f"{user_key(user)}.auth",
                    f"user {user.name!r} uses {user.auth!r}: there are no device certificates",
                )
            ]
        )


def refuse_new_ca(pki_root: Path, lock_file: Path, dist: Path) -> None:
    """IntegrityError when a site that was built or issued before has lost its CA.

    ``build`` and ``bundle`` create the CA of a site never built (the
    init-edit-build path); for a site with a lock, a dist/ or issued
    certificates a new CA would silently lock out every device.
    """
    history = ""
    if lock_file.exists():
        history = f"{lock_file.name} exists"
    elif any(dist.glob("routers/*/build-info.json")) or any(dist.glob("clients/*")):
        history = f"{dist} holds builds"
    elif (
        (pki_root / "index.json").is_file()
        or any(pki_root.glob("servers/*.crt"))
        or any(pki_root.glob("clients/*/*.crt"))
    ):
        history = f"{pki_root} holds issued certificates"
    if history:
        raise IntegrityError(
            f"{pki_root / 'ca.crt'}: the CA is missing: restore it from your backup, "
            "or `owrt-vpn pki init` to start over",
            hint=f"this site was built or issued before ({history}); a new CA would "
            "lock out every device",
        )


@contextlib.contextmanager
def site_unchanged(
    site: Site, mutating: Callable[[], contextlib.AbstractContextManager[None]]
) -> Iterator[None]:
    """Hold the site file's edit lock, check the file still holds ``site``, then ``mutating``.

    Issuing is only for the site file on disk: a command that read it before a
    `user remove` finished would otherwise issue the removed user's
    certificates again, valid and recorded nowhere (`user add`/`remove` hold
    the same lock; it is re-entrant, so they pass through).
    """
    from owrt_vpn.site.edit import editing
    from owrt_vpn.site.load import load_site

    if not site.path.is_file():  # a site made in memory: nothing to compare with
        with mutating():
            yield
        return

    def issued_for(s: Site) -> object:
        # What issuing follows (a build's --release/--backend overrides do not count).
        return s.users, [(r.name, r.server_id) for r in s.routers]

    with editing(site.path):
        if issued_for(load_site(site.path)) != issued_for(site):
            raise PkiError(
                f"{site.path}: changed while this command ran (a `user add` or "
                "`user remove`?): nothing issued",
                hint="run the command again",
            )
        with mutating():
            yield
