"""Windows 10/11: a PowerShell script that sets up the built-in IKEv2 client.

``<device>-windows.ps1`` embeds the CA and (certificate users) the device's
PKCS#12 as base64 and, when run as administrator:

- imports the CA into ``Cert:\\LocalMachine\\Root`` (Windows checks the
  server certificate against the machine store);
- imports the PKCS#12 into ``Cert:\\LocalMachine\\My`` for machine-certificate
  auth (``pubkey``), or ``Cert:\\CurrentUser\\My`` for EAP-TLS (Windows does
  EAP only with user certificates); the password is asked for (or passed as
  ``-P12Password``), never stored in the script;
- replaces the VPN connection of each router (remove, then add: re-running is
  safe), with ``Set-VpnConnectionIPsecConfiguration`` set to a proposal the
  router accepts (Windows' defaults use MODP1024 and fail with "policy match
  error" 13868), split tunnelling off for full-tunnel sites, and the routes
  Windows does not add by itself (IPv6, split-tunnel subnets).
"""

from __future__ import annotations

import base64
from typing import Any

from owrt_vpn.bundles.common import BundleFile, DeviceContext, RouterProfile, render
from owrt_vpn.render.proposals import parse

# strongSwan names -> Set-VpnConnectionIPsecConfiguration values.
IKE_ENCRYPTION = {
    "3des": "DES3",
    "aes128": "AES128",
    "aes192": "AES192",
    "aes256": "AES256",
    "aes128gcm16": "GCMAES128",
    "aes256gcm16": "GCMAES256",
}
IKE_INTEGRITY = {
    "md5": "MD5",
    "sha1": "SHA1",
    "sha256": "SHA256",
    "sha384": "SHA384",
    # AEAD IKE SAs: IntegrityCheckMethod is the PRF.
    "prfsha1": "SHA1",
    "prfsha256": "SHA256",
    "prfsha384": "SHA384",
}
DH_GROUP = {
    "modp768": "Group1",
    "modp1024": "Group2",
    "modp2048": "Group14",
    "ecp256": "ECP256",
    "ecp384": "ECP384",
    "modp2048s256": "Group24",
}
ESP_CIPHER = {
    "3des": "DES3",
    "aes128": "AES128",
    "aes192": "AES192",
    "aes256": "AES256",
    "aes128gcm16": "GCMAES128",
    "aes192gcm16": "GCMAES192",
    "aes256gcm16": "GCMAES256",
}
ESP_AUTH = {
    "md5": "MD596",
    "sha1": "SHA196",
    "sha256": "SHA256128",
    "aes128gcm16": "GCMAES128",
    "aes192gcm16": "GCMAES192",
    "aes256gcm16": "GCMAES256",
}
PFS_GROUP = {
    "": "None",
    "modp768": "PFS1",
    "modp1024": "PFS2",
    "modp2048": "PFS2048",
    "ecp256": "ECP256",
    "ecp384": "ECP384",
    "modp2048s256": "PFS24",
}


def ipsec_parameters(ike: str, esp: str) -> dict[str, str]:
    """``Set-VpnConnectionIPsecConfiguration`` arguments for a one-algorithm-per-type suite."""
    ike_p, esp_p = parse(ike, "ike"), parse(esp, "esp")
    esp_auth = esp_p.encr[0] if esp_p.aead else esp_p.integ[0]
    return {
        "EncryptionMethod": IKE_ENCRYPTION[ike_p.encr[0]],
        "IntegrityCheckMethod": IKE_INTEGRITY[(ike_p.prf if ike_p.aead else ike_p.integ)[0]],
        "DHGroup": DH_GROUP[ike_p.dh[0]],
        "CipherTransformConstants": ESP_CIPHER[esp_p.encr[0]],
        "AuthenticationTransformConstants": ESP_AUTH[esp_auth],
        "PfsGroup": PFS_GROUP[esp_p.dh[0] if esp_p.dh else ""],
    }


# PowerShell ends a single-quoted string at any of these, not only at "'";
# doubling one inside the string makes it a literal quote.
PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal.

    Values are allow-listed long before (site/allowlist.py: ASCII, no control
    characters); this is the second line: control characters are refused
    (ValueError) and every one of PowerShell's single quotes is doubled.
    """
    if any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in value):
        raise ValueError(f"a PowerShell string cannot hold control characters: {value!r}")
    return "'" + "".join(c + c if c in PS_SINGLE_QUOTES else c for c in value) + "'"


def _routes(prof: RouterProfile) -> list[str]:
    """Prefixes Windows must be told to route into the tunnel."""
    if prof.full_tunnel:
        # Full tunnel routes IPv4 through the VPN; IPv6 only with a route.
        # Without an IPv6 pool the route still keeps global IPv6 from going
        # around the tunnel: the router has no IPv6 traffic selector, so
        # those packets are dropped instead of leaking.
        return ["2000::/3"]
    return list(prof.remote_ts)


def _connection(ctx: DeviceContext, prof: RouterProfile) -> dict[str, Any]:
    return {
        "name": ps_quote(prof.display),
        "server": ps_quote(prof.server),
        "ipsec": ipsec_parameters(prof.proposal.ike, prof.proposal.esp),
        "split": "$false" if prof.full_tunnel else "$true",
        "routes": [ps_quote(r) for r in _routes(prof)],
        "profile": prof,
    }


def script(ctx: DeviceContext) -> bytes:
    """The ``-windows.ps1`` script (CRLF, UTF-8 with BOM for Windows PowerShell 5.1)."""
    store = "CurrentUser" if ctx.auth == "eap-tls" else "LocalMachine"
    values = ctx.template_values() | {
        "ca_b64": ctx.ca.b64,
        "p12_b64": base64.b64encode(ctx.creds.p12).decode() if ctx.creds else "",
        "cert_store": store,
        "all_users": ctx.auth == "pubkey",
        "auth_method": "MachineCertificate" if ctx.auth == "pubkey" else "Eap",
        "eap_tls": ctx.auth == "eap-tls",
        "connections": [_connection(ctx, p) for p in ctx.profiles],
        "q": ps_quote,
    }
    text = render("windows.ps1.j2", values).decode()
    return b"\xef\xbb\xbf" + text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def render_device(ctx: DeviceContext) -> list[BundleFile]:
    """Files of a Windows device: the script and the README."""
    name = f"{ctx.stem}-windows.ps1"
    values = ctx.template_values() | {
        "script": name,
        "connections": [_connection(ctx, p) for p in ctx.profiles],
        "cert_store": "CurrentUser" if ctx.auth == "eap-tls" else "LocalMachine",
    }
    return [
        BundleFile(name, script(ctx), secret=ctx.creds is not None),
        BundleFile("README.md", render("windows.md.j2", values)),
    ]
