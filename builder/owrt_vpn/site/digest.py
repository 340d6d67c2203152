"""What one router's image and one user's bundles carry from the site file, as digests.

The rebuild rule: a router's build is keyed on what that router carries,
not on the whole site file. Its image holds the ``[site]`` settings that
shape a router (not the PKI lifetimes, the PKI folder or the backend: the
PKI digest and the build inputs cover those), its own ``[[routers]]`` table
(minus how ``flash`` reaches it: address, port, user, identity and
known_hosts files are never baked), and the users allowed on it with their
devices (minus what only a client uses: ``on_demand``, ``trusted_ssids``,
and the user's ``routers`` list, which decides *whether* the user is on
this router, not what the router holds). A user's bundles hold the
settings, the user and every router the user may use (minus its
``management`` table and what only its image holds: ``IMAGE_ONLY``; the
release stays, it decides the ESP proposals the bundles offer).

The digests are grouped (``settings``, ``router``, ``users`` /
``user``, ``routers``), so a changed input is named by its group:
``site.users`` changed, not just "site". Pure: no I/O, nothing heavy.
"""

from __future__ import annotations

from typing import Any

from owrt_vpn.repro import digest
from owrt_vpn.site.model import Router, Site, User

# [site] keys that never reach an image: PKI lifetimes and folder (the PKI
# digest covers the material itself), the backend (a build input of its own).
NOT_IN_IMAGE_SETTINGS = frozenset(
    {"pki_dir", "ca_days", "server_days", "client_days", "crl_days", "backend"}
)
# What never reaches a bundle: image contents and router-side access.
IMAGE_ONLY = frozenset({"packages", "extra_packages", "release_packages", "vpn_router_access"})
NOT_IN_BUNDLE_SETTINGS = frozenset({"pki_dir", "backend"}) | IMAGE_ONLY
NOT_IN_BUNDLE_ROUTER = frozenset({"management"}) | IMAGE_ONLY
# routers[].management keys only `flash`/`push` use (never baked).
FLASHER_ONLY = frozenset({"address", "port", "user", "identity_file", "known_hosts"})
# users[].devices[] keys only the client's profile uses.
CLIENT_ONLY_DEVICE = frozenset({"on_demand", "trusted_ssids"})


def _dump(model: Any, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = model.model_dump(mode="json", exclude=set(exclude))
    return out


def router_settings(site: Site) -> dict[str, Any]:
    """The ``[site]`` settings that shape a router's image."""
    return _dump(site.settings, NOT_IN_IMAGE_SETTINGS)


def router_table(router: Router) -> dict[str, Any]:
    """The router's table as its image carries it (without the flasher-only keys)."""
    out = _dump(router, frozenset({"management"}))
    out["management"] = _dump(router.management, FLASHER_ONLY)
    return out


def router_user(user: User) -> dict[str, Any]:
    """A user as a router carries it: name, auth, devices without client-only keys."""
    out = _dump(user, frozenset({"devices", "routers"}))
    out["devices"] = [_dump(d, CLIENT_ONLY_DEVICE) for d in user.devices]
    return out


def router_inputs(site: Site, router: Router) -> dict[str, str]:
    """The digests of what ``router``'s image carries from the site file.

    ``digest()`` of this dict is the per-router site digest baked in
    build-info (``site.router_digest``).
    """
    return {
        "settings": digest(router_settings(site)),
        "router": digest(router_table(router)),
        "users": digest([router_user(u) for u in site.router_users(router)]),
    }


class BundleSiteInputs:
    """The digests of what each user's bundles carry from the site file.

    The settings and the router tables are digested once per site (the
    no-op bundle check of a 1,000-user site computes this for every user).
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        self.settings = digest(_dump(site.settings, NOT_IN_BUNDLE_SETTINGS))
        self._routers = {r.name: _dump(r, NOT_IN_BUNDLE_ROUTER) for r in site.routers}
        self._by_set: dict[tuple[str, ...], str] = {}

    def of(self, user: User) -> dict[str, str]:
        """``{settings, user, routers}`` digests for ``user``'s bundles."""
        names = tuple(r.name for r in self.site.user_routers(user))
        routers = self._by_set.get(names)
        if routers is None:
            routers = self._by_set[names] = digest([self._routers[n] for n in names])
        return {
            "settings": self.settings,
            "user": digest(_dump(user)),
            "routers": routers,
        }
