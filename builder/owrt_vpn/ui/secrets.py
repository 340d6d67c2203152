"""Which secrets have been shown: a secret is displayed once, when it is new.

The rule (README, "Quick start"): a password is displayed only when newly
generated, once, on a terminal; or written to ``--password-file``; or on
explicit request (``--show-passwords``); never in ``--json`` or logs. What
has been shown is recorded as salted digests in ``<pki_dir>/shown.json``
(0600), so that a renewed certificate's new password counts as new again and
the file never holds a password.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from owrt_vpn.fsutil import write_atomic

LEDGER = "shown.json"


def _digest(salt: str, line: str) -> str:
    return hashlib.sha256(f"{salt}\0{line}".encode()).hexdigest()


class ShownSecrets:
    """The record of displayed secrets of one PKI directory."""

    def __init__(self, pki_root: Path) -> None:
        self.path = pki_root / LEDGER
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._salt = str(data["salt"])
            self._shown = set(map(str, data["shown"]))
        except (OSError, ValueError, KeyError, TypeError):
            import secrets

            self._salt = secrets.token_hex(16)
            self._shown = set()

    def is_new(self, line: str) -> bool:
        """True when ``line`` (``who<TAB>kind<TAB>secret``) has never been shown."""
        return _digest(self._salt, line) not in self._shown

    def mark(self, lines: Iterable[str]) -> None:
        """Record ``lines`` as shown (written at once, 0600)."""
        before = len(self._shown)
        self._shown.update(_digest(self._salt, line) for line in lines)
        if len(self._shown) != before and self.path.parent.is_dir():
            doc = {"salt": self._salt, "shown": sorted(self._shown)}
            write_atomic(self.path, json.dumps(doc, indent=1) + "\n", 0o600)


def eap_line(user: str, password: str) -> str:
    """The record line of a user's EAP password (as in ``bundle --password-file``)."""
    return f"{user}\teap\t{password}"


def show_new_eap_password(json_mode: bool, pki_root: Path, user: str, password: str) -> str:
    """The human lines about a newly generated EAP password: the password itself only on a
    terminal (and then recorded as shown), else where to get it."""
    import sys

    stored = pki_root / "eap" / f"{user}.password"
    if sys.stdout.isatty() and not json_mode:
        ShownSecrets(pki_root).mark([eap_line(user, password)])
        return f"EAP password for {user}: {password}\n(stored in {stored})"
    return (
        f"generated an EAP password for {user}, not shown (not a terminal): "
        f"`owrt-vpn bundle --show-passwords` shows it (stored in {stored})"
    )
