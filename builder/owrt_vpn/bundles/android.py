"""Android: the strongSwan app's ``.sswan`` profile, and the built-in client's field values.

The strongSwan VPN Client imports a JSON profile (documented at
docs.strongswan.org, "VPN Profile Import for the Android VPN Client"): the
CA as base64 DER in ``remote.cert``, the device's PKCS#12 as base64 in
``local.p12`` (the app asks for its password on import), our proposals, and
``split-tunneling.block-ipv6`` for full-tunnel sites without an IPv6 pool.
The same ``uuid`` on import replaces the profile, so it is derived from
site, user, device and router.

Android's built-in client (12+) has no import file: its README lists the
exact values for the system VPN dialog.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from owrt_vpn.bundles.common import BundleFile, DeviceContext, RouterProfile, render

SSWAN_TYPE = {
    "pubkey": "ikev2-cert",
    "eap-tls": "ikev2-eap-tls",
    "eap-mschapv2": "ikev2-eap",
    "pubkey+eap-mschapv2": "ikev2-cert-eap",
}
# The built-in client's "Type" field.
BUILTIN_TYPE = {"pubkey": "IKEv2/IPsec RSA", "eap-mschapv2": "IKEv2/IPsec MSCHAPv2"}


def sswan(ctx: DeviceContext, prof: RouterProfile) -> dict[str, Any]:
    """The ``.sswan`` profile of one router, as a dict."""
    local: dict[str, Any] = {}
    if ctx.creds is not None:
        # No local.id for ikev2-cert-eap: the app would present it in the EAP
        # round too, where the router wants the user name (the app's default
        # there); the certificate round then presents the subject DN, which
        # the router's per-device connections accept.
        if ctx.auth != "pubkey+eap-mschapv2":
            local["id"] = ctx.identity
        local["p12"] = base64.b64encode(ctx.creds.p12).decode()
    if ctx.uses_eap_password:
        # eap_id is the user name the app asks the password for.
        local["eap_id"] = ctx.eap_id
        if ctx.creds is None:
            local["id"] = ctx.identity
    profile: dict[str, Any] = {
        "uuid": ctx.uuid("sswan", prof.router.name).lower(),
        "name": prof.display,
        "type": SSWAN_TYPE[ctx.auth],
        "remote": {
            "addr": prof.server,
            "id": prof.remote_id,
            "cert": ctx.ca.b64,
        },
        "local": local,
        "ike-proposal": prof.proposal.ike,
        "esp-proposal": prof.proposal.esp,
    }
    if prof.block_ipv6:
        profile["split-tunneling"] = {"block-ipv6": True}
    return profile


def sswan_bytes(ctx: DeviceContext, prof: RouterProfile) -> bytes:
    """The ``.sswan`` file: UTF-8 JSON, keys sorted (stable bytes)."""
    text = json.dumps(sswan(ctx, prof), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


def render_strongswan_app(ctx: DeviceContext) -> list[BundleFile]:
    """Files of an ``android-strongswan`` device: one ``.sswan`` per router + README."""
    files = []
    names = []
    for prof in ctx.profiles:
        name = ctx.profile_file(prof, ".sswan")
        names.append((prof, name))
        # It embeds the (encrypted) PKCS#12: as private as the .p12 itself.
        files.append(BundleFile(name, sswan_bytes(ctx, prof), secret=ctx.creds is not None))
    what = "strongSwan app profile" + (
        " (embeds the password-protected certificate; secret)" if ctx.creds else ""
    )
    values = ctx.template_values() | {
        "sswan_files": names,
        "sswan_type": SSWAN_TYPE[ctx.auth],
        "extra_files": [(name, f"{what}, router {p.router.name}") for p, name in names],
    }
    files.append(BundleFile("README.md", render("android-strongswan.md.j2", values)))
    return files


def render_builtin(ctx: DeviceContext) -> list[BundleFile]:
    """Files of an ``android`` (built-in client) device: the README with the dialog values."""
    values = ctx.template_values() | {"vpn_type": BUILTIN_TYPE[ctx.auth]}
    return [BundleFile("README.md", render("android.md.j2", values))]
