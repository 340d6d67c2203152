"""iOS / iPadOS / macOS: a ``.mobileconfig`` configuration profile.

One profile per device with: the CA as a ``com.apple.security.root``
payload, the device's PKCS#12 as ``com.apple.security.pkcs12`` (with its
``Password``: without it the import fails) for certificate users, and one
``com.apple.vpn.managed`` IKEv2 payload per router. UUIDs are uuid5 of site,
user, device and payload, so re-importing replaces the profile.

Certificate variants embed the PKCS#12 password, so their ``.mobileconfig``
is a secret of its own: it is written beside the device folder, never into
it or its zip. The EAP-MSCHAPv2 variant has no secret (no ``AuthPassword``:
the device asks once and keeps it in its keychain) and goes into the folder.
"""

from __future__ import annotations

import plistlib
from typing import Any

from owrt_vpn.bundles.common import BundleFile, DeviceContext, RouterProfile, render
from owrt_vpn.render.proposals import parse

# strongSwan names -> the profile's IKESecurityAssociationParameters values.
ENCRYPTION = {
    "3des": "3DES",
    "aes128": "AES-128",
    "aes256": "AES-256",
    "aes128gcm16": "AES-128-GCM",
    "aes256gcm16": "AES-256-GCM",
    "chacha20poly1305": "ChaCha20Poly1305",
}
INTEGRITY = {
    "sha1": "SHA1-96",
    "sha256": "SHA2-256",
    "sha384": "SHA2-384",
    "sha512": "SHA2-512",
    # AEAD IKE SAs: Apple uses IntegrityAlgorithm as the PRF.
    "prfsha1": "SHA1-160",
    "prfsha256": "SHA2-256",
    "prfsha384": "SHA2-384",
    "prfsha512": "SHA2-512",
}
DH_GROUP = {
    "modp1024": 2,
    "modp1536": 5,
    "modp2048": 14,
    "modp3072": 15,
    "modp4096": 16,
    "ecp256": 19,
    "ecp384": 20,
    "ecp521": 21,
    "curve25519": 31,
}
CERT_TYPE = {"ecdsa-p256": "ECDSA256", "ecdsa-p384": "ECDSA384", "rsa3072": "RSA", "rsa4096": "RSA"}
# macOS 14 reconnects every 24-48 min with bad rekey proposals unless the
# lifetime is below a day (reference/clients.md).
LIFETIME_MINUTES = 1410


def sa_parameters(ike: str, esp: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The IKE and Child SA parameter dicts for one-algorithm-per-type proposals."""
    ike_p, esp_p = parse(ike, "ike"), parse(esp, "esp")
    ike_group = DH_GROUP[ike_p.dh[0]]
    ike_dict = {
        "EncryptionAlgorithm": ENCRYPTION[ike_p.encr[0]],
        "IntegrityAlgorithm": INTEGRITY[(ike_p.prf if ike_p.aead else ike_p.integ)[0]],
        "DiffieHellmanGroup": ike_group,
        "LifeTimeInMinutes": LIFETIME_MINUTES,
    }
    child = {
        "EncryptionAlgorithm": ENCRYPTION[esp_p.encr[0]],
        # Ignored with an AEAD cipher, but the key must be there.
        "IntegrityAlgorithm": INTEGRITY[esp_p.integ[0]] if esp_p.integ else "SHA2-256",
        "DiffieHellmanGroup": DH_GROUP[esp_p.dh[0]] if esp_p.dh else ike_group,
        "LifeTimeInMinutes": LIFETIME_MINUTES,
    }
    return ike_dict, child


def _vpn_payload(ctx: DeviceContext, prof: RouterProfile, cert_uuid: str | None) -> dict[str, Any]:
    ike_params, child_params = sa_parameters(prof.proposal.ike, prof.proposal.esp)
    ikev2: dict[str, Any] = {
        "RemoteAddress": prof.server,
        "RemoteIdentifier": prof.remote_id,
        "LocalIdentifier": ctx.identity,
        "ServerCertificateIssuerCommonName": ctx.ca.common_name,
        "IKESecurityAssociationParameters": ike_params,
        "ChildSecurityAssociationParameters": child_params,
        "EnablePFS": 1 if parse(prof.proposal.esp, "esp").dh else 0,
        "DeadPeerDetectionRate": "Medium",
        "DisableMOBIKE": 0,
        "DisableRedirect": 1,
        "EnableCertificateRevocationCheck": 0,
        "UseConfigurationAttributeInternalIPSubnet": 0,
    }
    if ctx.auth == "pubkey":
        assert ctx.creds is not None and cert_uuid is not None
        ikev2["AuthenticationMethod"] = "Certificate"
        ikev2["ExtendedAuthEnabled"] = 0
        ikev2["PayloadCertificateUUID"] = cert_uuid
        ikev2["CertificateType"] = CERT_TYPE[ctx.creds.key_type]
    elif ctx.auth == "eap-tls":
        assert ctx.creds is not None and cert_uuid is not None
        # EAP-only: the IKE layer authenticates the server; the client's
        # certificate goes into the EAP-TLS exchange.
        ikev2["AuthenticationMethod"] = "None"
        ikev2["ExtendedAuthEnabled"] = 1
        ikev2["PayloadCertificateUUID"] = cert_uuid
    else:  # eap-mschapv2 (the platform checks in site.py allow nothing else)
        ikev2["AuthenticationMethod"] = "None"
        ikev2["ExtendedAuthEnabled"] = 1
        ikev2["AuthName"] = ctx.eap_id
    if prof.block_ipv6:
        # Without it, IPv6 goes around a full tunnel that has no IPv6 pool.
        ikev2["IncludeAllNetworks"] = 1
        ikev2["ExcludeLocalNetworks"] = 1
    if ctx.device.on_demand or ctx.device.trusted_ssids:
        rules: list[dict[str, Any]] = []
        if ctx.device.trusted_ssids:
            rules.append(
                {
                    "Action": "Disconnect",
                    "InterfaceTypeMatch": "WiFi",
                    "SSIDMatch": list(ctx.device.trusted_ssids),
                }
            )
        rules.append({"Action": "Connect"})
        ikev2["OnDemandEnabled"] = 1
        ikev2["OnDemandRules"] = rules
    payload: dict[str, Any] = {
        "PayloadType": "com.apple.vpn.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{_base_id(ctx)}.vpn.{prof.router.name}",
        "PayloadUUID": ctx.uuid("vpn", prof.router.name),
        "PayloadDisplayName": prof.display,
        "UserDefinedName": prof.display,
        "VPNType": "IKEv2",
        "IKEv2": ikev2,
    }
    if prof.full_tunnel:
        payload["IPv4"] = {"OverridePrimary": 1}
    return payload


def _base_id(ctx: DeviceContext) -> str:
    return f"org.owrt-vpn.{ctx.site.name}.{ctx.user.name}.{ctx.device.name}"


def mobileconfig(ctx: DeviceContext) -> bytes:
    """The configuration profile (XML plist, keys sorted: stable bytes)."""
    content: list[dict[str, Any]] = [
        {
            "PayloadType": "com.apple.security.root",
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{_base_id(ctx)}.ca",
            "PayloadUUID": ctx.uuid("ca"),
            "PayloadDisplayName": ctx.ca.common_name,
            "PayloadCertificateFileName": "ca.crt",
            "PayloadContent": ctx.ca.der,
        }
    ]
    cert_uuid = None
    if ctx.creds is not None:
        cert_uuid = ctx.uuid("pkcs12")
        content.append(
            {
                "PayloadType": "com.apple.security.pkcs12",
                "PayloadVersion": 1,
                "PayloadIdentifier": f"{_base_id(ctx)}.pkcs12",
                "PayloadUUID": cert_uuid,
                "PayloadDisplayName": ctx.identity,
                "PayloadCertificateFileName": f"{ctx.stem}.p12",
                "PayloadContent": ctx.creds.p12,
                "Password": ctx.creds.p12_password,
            }
        )
    content.extend(_vpn_payload(ctx, prof, cert_uuid) for prof in ctx.profiles)
    org = ctx.site.settings.organization or ctx.site.name
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": _base_id(ctx),
        "PayloadUUID": ctx.uuid("profile"),
        "PayloadDisplayName": f"{ctx.site.name} VPN ({ctx.user.name}/{ctx.device.name})",
        "PayloadDescription": f"IKEv2 VPN of {org} for {ctx.user.name} on {ctx.device.name}",
        "PayloadOrganization": org,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": content,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def render_device(ctx: DeviceContext) -> list[BundleFile]:
    """The platform files and README of an iOS/macOS device."""
    secret = ctx.creds is not None
    name = f"{ctx.stem}.mobileconfig"
    files = [BundleFile(name, mobileconfig(ctx), secret=secret, beside=secret)]
    values = ctx.template_values() | {
        "mobileconfig": name,
        "mobileconfig_beside": secret,
        "is_mac": ctx.platform == "macos",
        "os": "macOS" if ctx.platform == "macos" else "iOS / iPadOS",
        "extra_files": [
            (
                name,
                "the configuration profile; **secret** (embeds the key and its password), "
                "so it is next to this folder, not in it or the zip",
            )
            if secret
            else (name, "the configuration profile (no secrets)")
        ],
    }
    files.append(BundleFile("README.md", render("apple.md.j2", values)))
    return files
