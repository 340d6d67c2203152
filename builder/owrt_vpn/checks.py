"""Warnings `owrt-vpn check` prints (exit 0): things that work today but will not for long.

- certificates (CA, servers, devices) and the CRL expiring within 30 days;
- a CA key stored unencrypted; devices whose certificate is revoked;
- the proposal warnings of :mod:`owrt_vpn.proposals`.

Reading the PKI never needs the CA passphrase.
"""

from __future__ import annotations

import datetime as dt

from owrt_vpn.site import CERT_AUTH, Site

WARN_DAYS = 30


def _when(not_after: str, now: dt.datetime) -> str | None:
    """A phrase for an expiry within WARN_DAYS (None when it is further away)."""
    from owrt_vpn.pki_certs import parse_isoz

    end = parse_isoz(not_after)
    if end <= now:
        return f"expired on {end:%Y-%m-%d}"
    if end - now <= dt.timedelta(days=WARN_DAYS):
        days = (end - now).days
        return f"expires on {end:%Y-%m-%d} (in {days} day{'s' if days != 1 else ''})"
    return None


def pki_warnings(site: Site, now: dt.datetime | None = None) -> list[str]:
    """Expiry, revocation and storage warnings about the site's PKI directory."""
    from owrt_vpn.pki import Pki

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
    from owrt_vpn import proposals

    return pki_warnings(site) + list(proposals.site_warnings(site))
