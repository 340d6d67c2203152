"""Which IKE SAs may stay up after a push: the peers the site still allows on a router.

A revoked certificate only stops new logins; an SA that is up stays up. After
a push, :class:`SaPolicy` says for each SA the router lists whether its peer
is still allowed (``keep``), no longer allowed (``terminate``: a revoked or
removed device, by its identity ``user+device@site`` or subject DN, or a
user whose EAP password was revoked) or cannot be told apart from others
(``shared``: the opt-in shared iOS identity). Identities that are not ours
are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from owrt_vpn.routers.state import IkeSa, identity_owner
from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH, Router, Site


@dataclass(frozen=True)
class SaPolicy:
    """Which peers the site still allows on a router (for terminating SAs after a push)."""

    site_name: str
    shared_identity: str | None
    devices: frozenset[tuple[str, str]]  # (user, device) with a valid certificate
    eap_users: frozenset[str]  # users with an active EAP password
    shared_revoked: tuple[str, ...]  # revoked devices that used the shared identity

    @classmethod
    def for_router(cls, site: Site, router: Router, pki: Any) -> SaPolicy:
        """The policy of the site's current state (``pki``: :class:`owrt_vpn.pki.authority.Pki`)."""
        devices: set[tuple[str, str]] = set()
        eap: set[str] = set()
        for u in site.router_users(router):
            if u.auth in CERT_AUTH:
                devices |= {
                    (u.name, d.name)
                    for d in u.devices
                    if pki.client_status(u.name, d.name) == "valid"
                }
            if u.auth in EAP_PASSWORD_AUTH and pki.eap_status(u.name) == "active":
                eap.add(u.name)
        shared = {(u.name, d.name) for u in site.users for d in u.devices if d.shared_identity}
        revoked = {(r.user, r.device) for r in pki.revoked()}
        return cls(
            site.name,
            site.settings.shared_identity,
            frozenset(devices),
            frozenset(eap),
            tuple(f"{u}/{d}" for u, d in sorted(revoked & shared)),
        )

    def verdict(self, sa: IkeSa) -> str:
        """``keep``, ``terminate`` or ``shared`` (cannot be singled out)."""
        if self.shared_identity and sa.remote_id == self.shared_identity:
            return "shared"
        owner = identity_owner(sa.remote_id, self.site_name)
        eap = sa.remote_eap_id
        if owner is not None:
            ok = owner in self.devices
            if ok and eap and eap != sa.remote_id:
                ok = self._eap_ok(eap)
        elif eap:
            ok = self._eap_ok(eap)
        else:
            return "keep"  # not one of our identities: not ours to judge
        return "keep" if ok else "terminate"

    def _eap_ok(self, eap: str) -> bool:
        owner = identity_owner(eap, self.site_name)
        return owner in self.devices if owner is not None else eap in self.eap_users
