"""The client-bundle step of `owrt-vpn build`: bundles beside the firmware, in the same dist root.

`owrt-vpn build` writes `<out>/<site>/clients/` like `owrt-vpn bundle`, but:

- it is a no-op when every user's recorded inputs (`bundle-info.json`, see
  :mod:`owrt_vpn.bundles.provenance`) still match: the no-op path reads digests only and
  imports neither cryptography nor jinja2;
- it never prints passwords (build logs end up in CI logs): `owrt-vpn bundle`
  shows them, or writes them to a file;
- a PKI that cannot issue missing client certificates (a CI copy without the
  CA key, no passphrase) skips the bundles with a reason instead of failing
  the firmware build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from owrt_vpn.errors import PkiError
from owrt_vpn.site.model import Site


@dataclass
class BundleStep:
    """What the bundle step of a build did."""

    status: str  # "written" | "up-to-date" | "skipped"
    clients: Path
    devices: int = 0
    reason: str | None = None
    issued: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The ``bundles`` entry of ``build --json``."""
        return {
            "status": self.status,
            "clients": str(self.clients),
            "devices": self.devices,
            "reason": self.reason,
        }


def _current(site: Site, clients: Path) -> bool:
    """True when every user's bundles exist and were made from today's inputs."""
    from owrt_vpn.bundles.provenance import BUNDLE_INFO, BundleInputs

    if not clients.is_dir():
        return False
    names = {u.name for u in site.users}
    present = {p.name for p in clients.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if present != names:
        return False  # a user was added or removed
    inputs = BundleInputs(site)
    for name in sorted(names):
        info = clients / name / BUNDLE_INFO
        try:
            recorded = json.loads(info.read_text())
        except (OSError, ValueError):
            return False
        if recorded != inputs.of(name):
            return False
    return True


def refresh(site: Site, out_root: Path) -> BundleStep:
    """Bring ``<out>/<site>/clients/`` up to date with the site and PKI."""
    clients = out_root / site.name / "clients"
    if _current(site, clients):
        return BundleStep("up-to-date", clients)

    from owrt_vpn.bundles import writer as bundles
    from owrt_vpn.pki.authority import Pki

    pki = Pki.open(site)
    try:
        ensured = pki.ensure(site) if pki.exists else pki.init(site)
    except PkiError as exc:
        return BundleStep("skipped", clients, reason=exc.message)
    report = bundles.build(site, pki, out_root)  # writes each bundle-info.json too
    return BundleStep(
        "written", report.clients, devices=len(report.devices), issued=list(ensured.issued)
    )
