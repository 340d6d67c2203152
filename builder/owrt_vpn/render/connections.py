"""What a router's VPN configuration holds, independent of the config syntax.

- :func:`connections`: who may connect and how. Every certificate device
  gets connections pinned to its own identities (its e-mail style identity
  and its subject DN, as Windows presents it), so only users of this router
  match, and a ``pubkey+eap-mschapv2`` device cannot fall back to a
  certificate-only connection (strongSwan switches to another candidate
  connection when the rounds of the first one are not all done); its EAP
  round is pinned to the user's name. Devices
  that opted into the shared iOS identity share one connection per method.
  EAP-MSCHAPv2 users share one connection that accepts any IKE identity
  (Windows and iOS send their IP address) and asks for the EAP identity.
- :func:`uci_batches`: the firewall rules, dnsmasq and LAN settings as
  ``uci batch`` commands with named sections, so re-runs are idempotent.

Both the swanctl and the legacy ipsec.conf templates render from these.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from owrt_vpn.errors import ConfigError, Problem
from owrt_vpn.render import uci
from owrt_vpn.render.swan_syntax import legacy_quote, swan_str
from owrt_vpn.site.keys import device_key
from owrt_vpn.site.model import CERT_AUTH, Device, Router, Site, User, device_identity

ANY = "%any"


@dataclass(frozen=True)
class Round:
    """One remote authentication round: method, IKE identity, EAP identity (raw values).

    ``id``/``eap_id`` of ``%any`` accept any identity (for ``eap_id``: ask the
    client with EAP-Identity). The ``swan_*``/``legacy_*`` properties give the
    values quoted for swanctl.conf and ipsec.conf.
    """

    auth: str
    id: str
    eap_id: str | None = None
    cacerts: bool = False

    @property
    def swan_id(self) -> str:
        """``id`` for swanctl.conf."""
        return self.id if self.id == ANY else swan_str(self.id)

    @property
    def swan_eap_id(self) -> str | None:
        """``eap_id`` for swanctl.conf."""
        if self.eap_id is None:
            return None
        return self.eap_id if self.eap_id == ANY else swan_str(self.eap_id)

    @property
    def legacy_id(self) -> str:
        """``rightid`` for ipsec.conf."""
        return self.id if self.id == ANY else legacy_quote(self.id)

    @property
    def legacy_eap_id(self) -> str | None:
        """``eap_identity`` for ipsec.conf (``%identity`` asks the client)."""
        if self.eap_id is None:
            return None
        return "%identity" if self.eap_id == ANY else legacy_quote(self.eap_id)


@dataclass(frozen=True)
class Conn:
    """One connection: an accepted remote identity and its authentication rounds."""

    name: str
    comment: str
    rounds: tuple[Round, ...]
    send_certreq: bool = True


_METHOD_SHORT = {
    "pubkey": "pubkey",
    "eap-tls": "eaptls",
    "pubkey+eap-mschapv2": "pubkey-eap",
}


def _dn(site: Site, identity: str) -> str | None:
    """The subject DN the PKI writes for ``identity``, in strongSwan's syntax (DER order).

    None when the organization holds characters strongSwan's DN parser
    cannot take in a configuration value (``,`` ``"`` ``=`` ``+`` ``/``).
    """
    org = site.settings.organization or site.name
    if any(c in org for c in ',"=+/\\#'):
        return None
    return f"O={org}, CN={identity}"


def conn_name(taken: set[str], *parts: str) -> str:
    """A section name from ``parts`` (no "."), unique within ``taken`` (which it joins)."""
    # Section names cannot contain '.', names can: map it, then keep it unique.
    base = "-".join(p.replace(".", "_") for p in parts)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def connections(site: Site, router: Router, warnings: list[str]) -> list[Conn]:
    """The router's connections, most specific first (see the module docstring)."""
    users = site.router_users(router)
    taken: set[str] = set()
    conns: list[Conn] = []
    shared: dict[str, list[str]] = {}
    for u in users:
        if u.auth not in CERT_AUTH:
            continue
        for d in u.devices:
            ident = device_identity(site, u, d)
            ids = [(ident, "identity")]
            dn = _dn(site, ident)
            if dn is not None:
                ids.append((dn, "subject DN"))
            elif u.auth == "pubkey+eap-mschapv2" and d.platform == "android-strongswan":
                _refuse_app_without_dn(site, u, d)
            for value, what in ids:
                suffix = ("dn",) if what == "subject DN" else ()
                name = conn_name(taken, "rw", _METHOD_SHORT[u.auth], u.name, d.name, *suffix)
                conns.append(Conn(name, f"{u.name}/{d.name} ({u.auth}), {what}", _rounds(u, value)))
            if d.shared_identity:
                if u.auth == "pubkey+eap-mschapv2":
                    raise ConfigError(
                        [
                            Problem(
                                site.path.name,
                                f"{device_key(u, d)}.shared_identity",
                                "a pubkey+eap-mschapv2 device cannot use the shared identity: any "
                                "certificate carrying it would be accepted without the EAP round",
                            )
                        ]
                    )
                shared.setdefault(u.auth, []).append(f"{u.name}/{d.name}")
    sid = site.settings.shared_identity
    for method, members in sorted(shared.items()):
        assert sid is not None
        name = conn_name(taken, "rw", _METHOD_SHORT[method], "ios")
        eap_id = ANY if method == "eap-tls" else None
        rnd = Round(method, sid, eap_id, cacerts=True)
        comment = f"{method} with the shared identity (iOS manual setup): {', '.join(members)}"
        conns.append(Conn(name, comment, (rnd,)))
    if any(u.auth == "eap-mschapv2" for u in users):
        conns.append(
            Conn(
                conn_name(taken, "rw", "eap"),
                "EAP-MSCHAPv2 (user name and password; any IKE identity)",
                (Round("eap-mschapv2", ANY, ANY),),
                send_certreq=False,
            )
        )
        two = sorted(u.name for u in users if u.auth == "pubkey+eap-mschapv2")
        if two:
            warnings.append(
                f"router {router.name}: users with pubkey+eap-mschapv2 ({', '.join(two)}) "
                "could also log in with their password alone through the EAP-MSCHAPv2 "
                "connection of this router's eap-mschapv2 users; strongSwan cannot tell "
                "the two apart"
            )
    return conns


def _refuse_app_without_dn(site: Site, u: User, d: Device) -> None:
    # The app's ikev2-cert-eap profile has no local.id (else its EAP round
    # would present it instead of the user name), so its certificate round
    # presents the subject DN, which this organization keeps out of the config.
    raise ConfigError(
        [
            Problem(
                site.path.name,
                f"{device_key(u, d)}.platform",
                "android-strongswan with pubkey+eap-mschapv2 presents the certificate's "
                "subject DN, which the router cannot match when site.organization holds "
                'one of , " = + / \\ # (change the organization or the auth)',
            )
        ]
    )


def _rounds(u: User, ike_id: str) -> tuple[Round, ...]:
    if u.auth == "pubkey":
        return (Round("pubkey", ike_id, cacerts=True),)
    if u.auth == "eap-tls":
        # eap_id pinned to the same identity: the TLS certificate must be this device's.
        return (Round("eap-tls", ike_id, ike_id, cacerts=True),)
    # Certificate, then EAP-MSCHAPv2 pinned to the user's name, so that the
    # certificate of one user plus the password of another fails. With a
    # pinned eap_id strongSwan sends no EAP-Identity request: clients run
    # MSCHAPv2 with their round-2 IKE identity, which must be the user name
    # (our swanctl bundles set it; the Android app uses its username when
    # the profile has no local.id).
    return (Round("pubkey", ike_id, cacerts=True), Round("eap-mschapv2", ANY, u.name))


# --------------------------------------------------------------------------
# addresses


def local_ts(router: Router) -> list[str]:
    """The traffic selectors clients get: everything (full tunnel) or the LAN (split)."""
    if router.tunnel == "split":
        return [str(n) for n in router.lan_networks]
    return ["0.0.0.0/0"] + (["::/0"] if router.pool6 else [])


def _router_serves_dns(router: Router) -> bool:
    """True when a pushed DNS server is (probably) the router's own dnsmasq."""
    mine: set[Any] = set()
    if router.management.lan_address:
        mine.add(ipaddress.ip_interface(router.management.lan_address).ip)
    for dns in router.dns:
        ip = ipaddress.ip_address(dns)
        if ip in mine or any(ip in net for net in router.lan_networks):
            return True
    return False


# --------------------------------------------------------------------------
# UCI settings


def uci_batches(site: Site, router: Router, firewall: str) -> dict[str, list[uci.Command]]:
    """``uci batch`` commands per package: firewall rules, dnsmasq, LAN address.

    A router without VPN users gets deletions of every section we add and
    dnsmasq's ``localservice`` back at OpenWrt's default, so a push or flash
    takes back what an earlier set opened.
    """
    if not site.router_users(router):
        return _without_vpn(router)
    fw: list[uci.Command] = []
    for name, label, opts in (
        ("owrt_vpn_ike", "IKE", {"proto": "udp", "dest_port": "500"}),
        ("owrt_vpn_nat_t", "IKE NAT-T and ESP in UDP", {"proto": "udp", "dest_port": "4500"}),
        ("owrt_vpn_esp", "ESP", {"proto": "esp"}),
    ):
        fw += uci.set_section(
            "firewall",
            name,
            "rule",
            {"name": f"owrt-vpn {label}", "src": "wan", **opts, "target": "ACCEPT"},
        )
    if router.allow_ipsec_to_wan:
        fw += uci.set_section(
            "firewall",
            "owrt_vpn_ipsec2wan",
            "rule",
            {
                "name": "owrt-vpn AllowIPsec2WAN",
                "src": "wan",
                "dest": "wan",
                "proto": "all",
                "target": "ACCEPT",
            },
        )
    else:
        fw.append(uci.Command("delete", "firewall.owrt_vpn_ipsec2wan"))
    if firewall == "fw3":
        fw += uci.set_section(
            "firewall",
            "owrt_vpn_include",
            "include",
            {"path": "/usr/share/owrt-vpn/firewall3.sh", "type": "script", "reload": "1"},
        )
    else:
        fw.append(uci.Command("delete", "firewall.owrt_vpn_include"))
    out: dict[str, list[uci.Command]] = {"firewall": fw}
    if _router_serves_dns(router):
        # OpenWrt's dnsmasq answers only directly connected subnets
        # (localservice); the pool is not one. WAN stays closed by the firewall.
        out["dhcp"] = [uci.Command("set", "dhcp.@dnsmasq[0].localservice", "0")]
    out.update(_lan_address(router))
    return out


OUR_FIREWALL_SECTIONS = (
    "owrt_vpn_ike",
    "owrt_vpn_nat_t",
    "owrt_vpn_esp",
    "owrt_vpn_ipsec2wan",
    "owrt_vpn_include",
)


def _without_vpn(router: Router) -> dict[str, list[uci.Command]]:
    out: dict[str, list[uci.Command]] = {
        "firewall": [uci.Command("delete", f"firewall.{n}") for n in OUR_FIREWALL_SECTIONS],
        # OpenWrt's default (dnsmasq's /etc/config/dhcp): answer local subnets only
        "dhcp": [uci.Command("set", "dhcp.@dnsmasq[0].localservice", "1")],
    }
    out.update(_lan_address(router))
    return out


def _lan_address(router: Router) -> dict[str, list[uci.Command]]:
    if not router.management.lan_address:
        return {}
    iface = ipaddress.ip_interface(router.management.lan_address)
    return {
        "network": [
            uci.Command("set", "network.lan.ipaddr", str(iface.ip)),
            uci.Command("set", "network.lan.netmask", str(iface.netmask)),
        ]
    }


_DN_KEYWORDS = {"2.5.4.6": "C", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN"}


def ca_dn(ca_cert_pem: bytes) -> str | None:
    """The CA's subject in strongSwan's DN syntax (DER order), for ipsec.conf ``rightca``.

    None when an attribute or value does not fit that syntax (strongSwan's
    parser has no quoting for ``,`` and friends); the CA constraint is then
    left to the trust anchors in ``ipsec.d/cacerts``.
    """
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(ca_cert_pem)
    parts = []
    for rdn in cert.subject.rdns:
        for attr in rdn:
            key = _DN_KEYWORDS.get(attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else None
            if key is None or value is None or any(c in value for c in ',"=+/\\#\n'):
                return None
            parts.append(f"{key}={value}")
    return ", ".join(parts) if parts else None
