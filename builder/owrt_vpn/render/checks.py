"""Warnings `owrt-vpn check` prints (exit 0): things that work today but will not for long.

- certificates (CA, servers, devices) and the CRL expiring within 30 days;
- a CA key stored unencrypted; devices whose certificate is revoked;
- declared platforms without a common proposal with a router.

Reading the PKI never needs the CA passphrase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from owrt_vpn import profiles
from owrt_vpn.render import packages, proposals
from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH, Site

WARN_DAYS = 30


def _when(not_after: str, now: dt.datetime) -> str | None:
    """A phrase for an expiry within WARN_DAYS (None when it is further away)."""
    from owrt_vpn.pki.certs import parse_isoz

    end = parse_isoz(not_after)
    if end <= now:
        return f"expired on {end:%Y-%m-%d}"
    if end - now <= dt.timedelta(days=WARN_DAYS):
        days = (end - now).days
        return f"expires on {end:%Y-%m-%d} (in {days} day{'s' if days != 1 else ''})"
    return None


def pki_warnings(site: Site, now: dt.datetime | None = None) -> list[str]:
    """Expiry, revocation and storage warnings about the site's PKI directory."""
    from owrt_vpn.pki.authority import Pki

    if not (site.pki_path / "index.json").is_file():
        return []
    pki = Pki.open(site)
    now = now or dt.datetime.now(dt.UTC)
    out: list[str] = []
    if not pki.ca_encrypted:
        out.append(
            "pki: the CA key is stored unencrypted (--insecure-unencrypted-ca); "
            "use this PKI for tests only"
        )
    ca = pki.ca_record()
    if ca is not None and (when := _when(ca.not_after, now)):
        out.append(f"pki: the CA certificate {when}: run `owrt-vpn pki renew --ca`")
    for r in site.routers:
        rec = pki.server_record(r.name)
        if rec is not None and (when := _when(rec.not_after, now)):
            out.append(
                f"pki: the server certificate of router {r.name} {when}: "
                f"run `owrt-vpn pki renew --router {r.name}`"
            )
    for u in site.users:
        if u.auth not in CERT_AUTH:
            continue
        for d in u.devices:
            rec = pki.client_record(u.name, d.name)
            if rec is None:
                continue
            if rec.status == "revoked":
                out.append(
                    f"pki: the certificate of {u.name}/{d.name} is revoked; the device "
                    f"cannot connect (new one: `owrt-vpn pki renew --user {u.name} "
                    f"--device {d.name}`)"
                )
            elif when := _when(rec.not_after, now):
                out.append(
                    f"pki: the certificate of {u.name}/{d.name} {when}: "
                    f"run `owrt-vpn pki renew --user {u.name} --device {d.name}`"
                )
    crl = pki.crl_info()
    if crl is not None and (when := _when(str(crl["next_update"]), now)):
        out.append(
            f"pki: the CRL {when}; routers baked with it may refuse clients: "
            "run `owrt-vpn pki renew --crl` and rebuild"
        )
    return out


def site_warnings(site: Site) -> list[str]:
    """Every warning `owrt-vpn check` shows for ``site``."""
    return pki_warnings(site) + proposal_warnings(site) + snapshot_warnings(site)


def snapshot_warnings(site: Site) -> list[str]:
    """`check` warnings: EAP-MSCHAPv2 users on routers built from master (snapshots).

    strongSwan 6 on master (openwrt/packages a05eeb5574, 2026-05-24) builds
    eap-mschapv2, md4 and ccm only with CONFIG_STRONGSWAN_INCLUDE_INSECURE
    (default ``!PACKAGE_libopenssl``): those packages can be missing from the
    snapshot feeds. 25.12 builds them (profiles/packages.toml).
    """
    warnings = []
    for router in site.routers:
        if profiles.release_info(router.release).series != "snapshot":
            continue
        users = [u.name for u in site.router_users(router) if u.auth in EAP_PASSWORD_AUTH]
        if users:
            warnings.append(
                f"router {router.name} runs a snapshot: master's strongSwan builds "
                "eap-mschapv2/md4 only with STRONGSWAN_INCLUDE_INSECURE, so the build may "
                f"fail for the EAP-MSCHAPv2 users {', '.join(users)} (unknown package "
                "strongswan-mod-eap-mschapv2); use a release (25.12) or certificate auth"
            )
    return warnings


def proposal_warnings(site: Site) -> list[str]:
    """`check` warnings: declared platforms without a common proposal with a router.

    ``site`` is an :class:`owrt_vpn.site.model.Site`. Each router is checked with
    the lists its overlay renders (the crypto profile's IKE proposals, its
    release's ESP proposals); one warning per platform and router, naming the
    devices and what to do.
    """
    crypto = site.settings.crypto
    warnings = []
    for router in site.routers:
        ike = proposals.server_ike(crypto)
        esp = packages.esp_proposals(site, router)
        devices: dict[str, list[str]] = {}
        for user in site.router_users(router):
            for dev in user.devices:
                devices.setdefault(dev.platform, []).append(f"{user.name}/{dev.name}")
        for name in sorted(devices):
            if proposals.for_platform(name, crypto, ike, esp) is not None:
                continue
            info = proposals.platform(name)
            if info.configurable:
                fix = f"none of the proposals settable via {info.how} is accepted"
            else:
                fix = (
                    "it cannot be configured and offers only "
                    f"{_summary(info.offers_ike, 'ike')} for IKE, "
                    f"{_summary(info.offers_esp, 'esp')} for ESP"
                )
            warnings.append(
                f"{info.label} ({', '.join(devices[name])}): no common IKE/ESP proposal with "
                f"router {router.name} (crypto profile {crypto!r}): {fix}; these devices will "
                "fail with NO_PROPOSAL_CHOSEN (Windows: policy match error 13868). "
                f"{_advice(name, crypto)}"
            )
    return warnings


def _advice(name: str, crypto: str) -> str:
    alternatives = []
    if crypto != "compat" and proposals.for_platform(name, "compat") is not None:
        alternatives.append('set site.crypto = "compat"')
    if name == "android":
        alternatives.append("use the strongSwan app (platform android-strongswan)")
    if not alternatives:
        return "The router's proposals (profiles/proposals.toml) need a common one."
    return "Fix: " + " or ".join(alternatives) + "."


def _summary(offers: Sequence[str], kind: proposals.Kind) -> str:
    parsed = [proposals.parse(p, kind) for p in offers]
    ciphers = proposals.uniq(c for p in parsed for c in p.encr)
    groups = proposals.uniq(g for p in parsed for g in p.dh)
    text = "/".join(ciphers[:4]) + ("/..." if len(ciphers) > 4 else "")
    if groups:
        text += " with " + "/".join(groups)
    return text
