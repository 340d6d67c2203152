"""Each platform's files, checked against the documented formats and the rendered router.

Mappings from the formats' values back to strongSwan proposals are written
here from the vendors' documentation, not taken from the generators, so a
wrong table in the generator fails these tests.
"""

from __future__ import annotations

import base64
import configparser
import json
import plistlib
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from bundlekit import (
    ROUTER_GW,
    ROUTER_OFFICE,
    Dev,
    Usr,
    all_combinations,
    apple_esp,
    apple_ike,
    make_pki,
    make_site,
    ps_commands,
    ps_params,
    rendered_router_proposals,
    router_accepts,
    windows_proposals,
)
from owrt_vpn.bundles import writer as bundles
from owrt_vpn.pki.authority import Pki
from owrt_vpn.site.model import Site

CERT_AUTH = {"pubkey", "eap-tls", "pubkey+eap-mschapv2"}


class World:
    """A site with every platform x auth method, two routers, its PKI and bundles."""

    def __init__(self, root: Path) -> None:
        users = all_combinations()
        users.append(
            Usr(
                "ondemand", "pubkey", (Dev("phone", "ios", {"trusted_ssids": ["home", "work 5G"]}),)
            )
        )
        users.append(Usr("shared", "pubkey", (Dev("phone", "ios", {"shared_identity": True}),)))
        self.site: Site = make_site(
            root / "site",
            users,
            routers=(ROUTER_GW, ROUTER_OFFICE),
            settings={"shared_identity": "homeClients"},
        )
        self.pki: Pki = make_pki(self.site)
        self.report = bundles.build(self.site, self.pki, root / "dist")
        self.root = root
        self._router: dict[str, tuple[list[str], list[str]]] = {}

    def devices(self, platform: str) -> list[bundles.DeviceBundle]:
        return [d for d in self.report.devices if d.platform == platform]

    def router(self, name: str) -> tuple[list[str], list[str]]:
        """IKE and ESP proposals of the rendered router ``name``."""
        if name not in self._router:
            self._router[name] = rendered_router_proposals(
                self.site, self.pki, name, self.root / f"overlay-{name}"
            )
        return self._router[name]

    def assert_accepted(self, offers: list[tuple[str, str, str]]) -> None:
        """Each (router, IKE proposal, ESP proposal) is accepted by that rendered router.

        Called last in a test, after every other assertion ran.
        """
        assert offers
        for router, ike, esp in offers:
            srv_ike, srv_esp = self.router(router)
            assert router_accepts(srv_ike, ike, "ike"), (router, ike, srv_ike)
            assert router_accepts(srv_esp, esp, "esp"), (router, esp, srv_esp)

    def ca_der(self) -> bytes:
        return self.pki.ca_cert_der()

    def own_cert(self, d: bundles.DeviceBundle) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pki.client_cert_pem(d.user, d.device))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("formats"))


def _p12_cert(data: bytes, password: str | None) -> x509.Certificate:
    assert password
    _key, cert, _extra = pkcs12.load_key_and_certificates(data, password.encode())
    assert cert is not None
    return cert


# ---------------------------------------------------------------- Apple

PAYLOAD_KEYS = {"PayloadType", "PayloadVersion", "PayloadIdentifier", "PayloadUUID"}
SA_KEYS = {"EncryptionAlgorithm", "IntegrityAlgorithm", "DiffieHellmanGroup", "LifeTimeInMinutes"}


def _mobileconfig(d: bundles.DeviceBundle) -> dict[str, Any]:
    path = d.beside[0] if d.beside else d.folder / f"{d.device}.mobileconfig"
    return plistlib.loads(path.read_bytes())


@pytest.mark.parametrize("platform", ["ios", "macos"])
def test_mobileconfig_payloads(world: World, platform: str) -> None:
    ca_cn = (
        x509.load_der_x509_certificate(world.ca_der())
        .subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
        .value
    )
    devices = world.devices(platform)
    assert {d.auth for d in devices} == {"pubkey", "eap-tls", "eap-mschapv2"}
    for d in devices:
        prof = _mobileconfig(d)
        assert prof["PayloadType"] == "Configuration" and prof.keys() >= PAYLOAD_KEYS
        assert {"PayloadDisplayName", "PayloadContent"} <= prof.keys()
        payloads = prof["PayloadContent"]
        uuids = [prof["PayloadUUID"], *(p["PayloadUUID"] for p in payloads)]
        assert len(set(uuids)) == len(uuids) and all(uuid.UUID(u) for u in uuids)
        by_type: dict[str, list[dict[str, Any]]] = {}
        for p in payloads:
            assert p.keys() >= PAYLOAD_KEYS, p["PayloadType"]
            by_type.setdefault(p["PayloadType"], []).append(p)
        (root,) = by_type["com.apple.security.root"]
        assert root["PayloadContent"] == world.ca_der()
        vpns = by_type["com.apple.vpn.managed"]
        assert len(vpns) == 2  # one per router
        if d.auth in CERT_AUTH:
            (p12,) = by_type["com.apple.security.pkcs12"]
            # Opens with the password embedded next to it, and is the device's own.
            cert = _p12_cert(p12["PayloadContent"], p12["Password"])
            assert cert == world.own_cert(d)
            assert p12["Password"] == d.p12_password
        else:
            assert "com.apple.security.pkcs12" not in by_type
        for vpn in vpns:
            assert vpn["VPNType"] == "IKEv2" and vpn["UserDefinedName"]
            ike = vpn["IKEv2"]
            for key in ("RemoteAddress", "RemoteIdentifier", "LocalIdentifier",
                        "AuthenticationMethod", "ExtendedAuthEnabled",
                        "IKESecurityAssociationParameters",
                        "ChildSecurityAssociationParameters"):  # fmt: skip
                assert key in ike, key
            assert ike["ServerCertificateIssuerCommonName"] == ca_cn
            assert ike["IKESecurityAssociationParameters"].keys() >= SA_KEYS
            assert ike["ChildSecurityAssociationParameters"].keys() >= SA_KEYS
            assert ike["RemoteIdentifier"] in ("vpn.example.org", "203.0.113.7")
            assert ike["RemoteAddress"] == ike["RemoteIdentifier"]
            if d.auth == "pubkey":
                assert ike["AuthenticationMethod"] == "Certificate"
                assert ike["ExtendedAuthEnabled"] == 0
                assert ike["PayloadCertificateUUID"] == p12["PayloadUUID"]
                assert ike["CertificateType"] == "ECDSA256"
                local = "homeClients" if d.user == "shared" else f"{d.user}+{d.device}@home"
                assert ike["LocalIdentifier"] == local
            elif d.auth == "eap-tls":
                assert ike["AuthenticationMethod"] == "None" and ike["ExtendedAuthEnabled"] == 1
                assert ike["PayloadCertificateUUID"] == p12["PayloadUUID"]
            else:
                assert ike["AuthenticationMethod"] == "None" and ike["ExtendedAuthEnabled"] == 1
                assert ike["AuthName"] == d.user and "AuthPassword" not in ike
            router = "gw" if ike["RemoteAddress"] == "vpn.example.org" else "office"
            # gw: full tunnel without IPv6 pool -> IPv6 must not leak.
            assert ike.get("IncludeAllNetworks", 0) == (1 if router == "gw" else 0)


@pytest.mark.parametrize("platform", ["ios", "macos"])
def test_mobileconfig_proposals_are_accepted_by_the_router(world: World, platform: str) -> None:
    offers = []
    for d in world.devices(platform):
        for vpn in _mobileconfig(d)["PayloadContent"]:
            if vpn["PayloadType"] != "com.apple.vpn.managed":
                continue
            ike = vpn["IKEv2"]
            router = "gw" if ike["RemoteAddress"] == "vpn.example.org" else "office"
            ike_prop = apple_ike(ike["IKESecurityAssociationParameters"])
            esp_prop = apple_esp(ike["ChildSecurityAssociationParameters"], ike["EnablePFS"] == 1)
            offers.append((router, ike_prop, esp_prop))
    world.assert_accepted(offers)


def test_mobileconfig_on_demand_and_shared_identity(world: World) -> None:
    (d,) = [x for x in world.report.devices if x.user == "ondemand"]
    ike = next(p for p in _mobileconfig(d)["PayloadContent"] if "IKEv2" in p)["IKEv2"]
    assert ike["OnDemandEnabled"] == 1
    assert ike["OnDemandRules"] == [
        {"Action": "Disconnect", "InterfaceTypeMatch": "WiFi", "SSIDMatch": ["home", "work 5G"]},
        {"Action": "Connect"},
    ]
    (s,) = [x for x in world.report.devices if x.user == "shared"]
    ike = next(p for p in _mobileconfig(s)["PayloadContent"] if "IKEv2" in p)["IKEv2"]
    assert ike["LocalIdentifier"] == "homeClients"
    sans = world.own_cert(s).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "homeClients" in sans.get_values_for_type(x509.DNSName)


# ---------------------------------------------------------------- strongSwan app

# The documented keys of a .sswan file (docs.strongswan.org, "VPN Profile
# Import for the Android VPN Client"): name -> (type, required).
SSWAN_KEYS: dict[str, tuple[type, bool]] = {
    "uuid": (str, True),
    "name": (str, True),
    "type": (str, True),
    "remote.addr": (str, True),
    "remote.port": (int, False),
    "remote.id": (str, False),
    "remote.cert": (str, False),
    "remote.certreq": (bool, False),
    "remote.revocation.crl": (bool, False),
    "remote.revocation.ocsp": (bool, False),
    "remote.revocation.strict": (bool, False),
    "local.id": (str, False),
    "local.eap_id": (str, False),
    "local.p12": (str, False),
    "local.rsa-pss": (bool, False),
    "ike-proposal": (str, False),
    "esp-proposal": (str, False),
    "mtu": (int, False),
    "dns-servers": (str, False),
    "nat-keepalive": (int, False),
    "proxy.host": (str, False),
    "proxy.port": (int, False),
    "proxy.exclusions": (str, False),
    "split-tunneling.subnets": (str, False),
    "split-tunneling.excluded": (str, False),
    "split-tunneling.block-ipv4": (bool, False),
    "split-tunneling.block-ipv6": (bool, False),
    "apps": (list, False),
    "selected-apps": (str, False),
}
SSWAN_TYPES = {"ikev2-eap", "ikev2-cert", "ikev2-cert-eap", "ikev2-eap-tls", "ikev2-byod-eap"}


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_sswan_files_follow_the_documented_format(world: World) -> None:
    devices = world.devices("android-strongswan")
    expected_type = {
        "pubkey": "ikev2-cert",
        "eap-tls": "ikev2-eap-tls",
        "eap-mschapv2": "ikev2-eap",
        "pubkey+eap-mschapv2": "ikev2-cert-eap",
    }
    assert {d.auth for d in devices} == set(expected_type)
    offers = []
    for d in devices:
        for router in ("gw", "office"):
            raw = (d.folder / f"{d.device}-{router}.sswan").read_bytes()
            flat = _flatten(json.loads(raw.decode("utf-8")))
            for key, value in flat.items():
                assert key in SSWAN_KEYS, f"undocumented key {key}"
                assert isinstance(value, SSWAN_KEYS[key][0]), key
            for key, (_t, required) in SSWAN_KEYS.items():
                assert not required or key in flat, key
            uuid.UUID(flat["uuid"])
            assert flat["type"] in SSWAN_TYPES and flat["type"] == expected_type[d.auth]
            assert base64.b64decode(flat["remote.cert"]) == world.ca_der()
            assert flat["remote.id"] == flat["remote.addr"]
            if d.auth in CERT_AUTH:
                cert = _p12_cert(base64.b64decode(flat["local.p12"]), d.p12_password)
                assert cert == world.own_cert(d)
                if d.auth == "pubkey+eap-mschapv2":
                    # The app would present local.id in the EAP round too;
                    # without it: subject DN, then the user name.
                    assert "local.id" not in flat
                else:
                    assert flat["local.id"] == f"{d.user}+{d.device}@home"
            else:
                assert "local.p12" not in flat
            if "mschapv2" in d.auth:
                assert flat["local.eap_id"] == d.user
            offers.append((router, flat["ike-proposal"], flat["esp-proposal"]))
            # gw: full tunnel, no IPv6 pool -> block IPv6; office: split tunnel.
            assert flat.get("split-tunneling.block-ipv6", False) is (router == "gw")
    world.assert_accepted(offers)


# ---------------------------------------------------------------- Windows


def test_windows_script_table(world: World) -> None:
    devices = {d.auth: d for d in world.devices("windows")}
    # Windows EAP-TLS is refused by the site model (README: site file).
    assert set(devices) == {"pubkey", "eap-mschapv2"}
    want = {  # auth: (AuthenticationMethod, certificate store, all users, EAP config)
        "pubkey": ("MachineCertificate", r"Cert:\LocalMachine\My", "$true", None),
        "eap-tls": (
            "Eap",
            r"Cert:\CurrentUser\My",
            "$false",
            "New-EapConfiguration -Tls -UserCertificate",
        ),
        "eap-mschapv2": ("Eap", None, "$false", "New-EapConfiguration"),
    }
    offers = []
    for auth, d in devices.items():
        raw = (d.folder / f"{d.device}-windows.ps1").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
        text = raw.decode("utf-8-sig").replace("\r\n", "\n")
        method, store, all_users, eap = want[auth]
        assert "#Requires -RunAsAdministrator" in text
        # Embedded certificates decode: the CA, and the device's own PKCS#12.
        ca = re.search(r"^\$CaCertificate = '([A-Za-z0-9+/=]+)'$", text, re.M)
        assert ca and base64.b64decode(ca.group(1)) == world.ca_der()
        assert (
            "Import-Certificate -FilePath $caFile -CertStoreLocation 'Cert:\\LocalMachine\\Root'"
            in text
        )
        p12 = re.search(r"^\$Pkcs12 = '([A-Za-z0-9+/=]+)'$", text, re.M)
        if store:
            assert p12 and _p12_cert(
                base64.b64decode(p12.group(1)), d.p12_password
            ) == world.own_cert(d)
            assert f"-CertStoreLocation '{store}'" in text and "-Password $P12Password" in text
            assert d.p12_password not in text  # type: ignore[operator]
        else:
            assert p12 is None and "Import-PfxCertificate" not in text
        if eap:
            assert re.search(rf"^\$eap = {re.escape(eap)}$", text, re.M)
            assert "$vpn.EapConfigXmlStream = $eap.EapConfigXmlStream" in text
        lines = ps_commands(text)
        # One connection per router: removed first (idempotent), then added and tuned.
        names = re.findall(r"^\$name = '([^']+)'$", text, re.M)
        assert names == ["home VPN (gw)", "home VPN (office)"]
        assert text.count("Remove-VpnConnection -Name $name") == len(names)  # re-run replaces
        blocks = text.split("# ---- ")[1:]
        assert len(blocks) == 2
        for block, router in zip(blocks, ("gw", "office"), strict=True):
            assert block.index("Remove-VpnConnection") < block.index("Add-VpnConnection @vpn")
            splat = dict(re.findall(r"^\s+(\w+)\s+= (.+)$", block, re.M))
            assert splat["TunnelType"] == "'Ikev2'" and splat["EncryptionLevel"] == "'Required'"
            assert splat["AuthenticationMethod"] == f"'{method}'"
            assert splat["AllUserConnection"] == all_users
            assert splat["ServerAddress"] == (
                "'vpn.example.org'" if router == "gw" else "'203.0.113.7'"
            )
            assert splat["SplitTunneling"] == ("$false" if router == "gw" else "$true")
            (ipsec,) = [
                ln
                for ln in ps_commands(block)
                if ln.startswith("Set-VpnConnectionIPsecConfiguration")
            ]
            offers.append((router, *windows_proposals(ps_params(ipsec))))
            routes = re.findall(r"-DestinationPrefix '([^']+)'", block)
            # gw: full tunnel -> IPv6 route; office: split -> its LAN subnets (v4 + v6).
            assert routes == (["2000::/3"] if router == "gw" else ["10.88.0.0/24", "fd00:88::/64"])
        assert all(
            "Set-VpnConnectionIPsecConfiguration" not in ln or "-Force" in ln for ln in lines
        )
    world.assert_accepted(offers)


# ---------------------------------------------------------------- Linux


def _openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)


def test_nmconnection_and_key(world: World, tmp_path: Path) -> None:
    methods = {"pubkey": "key", "eap-tls": "eap-tls", "eap-mschapv2": "eap"}
    devices = world.devices("linux")
    assert {d.auth for d in devices} == {*methods, "pubkey+eap-mschapv2"}
    offers = []
    for d in devices:
        files = {p.name for p in d.folder.iterdir()}
        if d.auth == "pubkey+eap-mschapv2":
            assert not any(n.endswith(".nmconnection") for n in files)
            continue
        for router in ("gw", "office"):
            cp = configparser.ConfigParser(interpolation=None)
            cp.optionxform = str  # type: ignore[assignment,method-assign]
            cp.read_string((d.folder / f"{d.device}-{router}.nmconnection").read_text())
            vpn = cp["vpn"]
            assert cp["connection"]["type"] == "vpn"
            uuid.UUID(cp["connection"]["uuid"])
            assert vpn["service-type"] == "org.freedesktop.NetworkManager.strongswan"
            assert vpn["method"] == methods[d.auth]
            assert vpn["address"] == vpn["remote-identity"]
            assert vpn["certificate"] == "/etc/owrt-vpn/home/ca.pem"
            assert vpn["virtual"] == "yes" and vpn["proposal"] == "yes"
            offers.append((router, vpn["ike"], vpn["esp"]))
            assert cp["ipv4"]["never-default"] == ("false" if router == "gw" else "true")
            if d.auth in CERT_AUTH:
                assert vpn["usercert"] == f"/etc/owrt-vpn/home/{d.device}.crt"
                assert vpn["userkey"] == f"/etc/owrt-vpn/home/{d.device}.key"
                assert vpn["local-identity"] == f"{d.user}+{d.device}@home"
            else:
                assert vpn["user"] == d.user
        if d.auth in CERT_AUTH:
            key = (d.folder / f"{d.device}.key").read_bytes()
            assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
            assert (
                _openssl("pkey", "-passin", "pass:wrong-password", "-noout", input=key).returncode
                != 0
            )
            ok = _openssl("pkey", "-passin", f"pass:{d.p12_password}", "-pubout", input=key)
            assert ok.returncode == 0, ok.stderr
            cert = x509.load_pem_x509_certificate((d.folder / f"{d.device}.crt").read_bytes())
            assert cert == world.own_cert(d)
            pub = cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            assert ok.stdout == pub
    world.assert_accepted(offers)


def test_swanctl_conf_proposals_and_rounds(world: World) -> None:
    offers = []
    for d in world.devices("linux"):
        text = (d.folder / f"{d.device}-swanctl.conf").read_text()
        assert "secret" not in text  # passwords travel separately
        conns = re.split(r"^   (?=home-)", text, flags=re.M)[1:]
        assert [c.split()[0] for c in conns] == ["home-gw", "home-office"]
        for conn, router in zip(conns, ("gw", "office"), strict=True):
            (ike,) = re.findall(r"^\s+proposals = (\S+)$", conn, re.M)
            (esp,) = re.findall(r"^\s+esp_proposals = (\S+)$", conn, re.M)
            offers.append((router, ike, esp))
            auths = re.findall(r"^\s+auth = (\S+)$", conn, re.M)
            want = {"pubkey": ["pubkey"], "eap-tls": ["eap-tls"], "eap-mschapv2": ["eap-mschapv2"],
                    "pubkey+eap-mschapv2": ["pubkey", "eap-mschapv2"]}[d.auth]  # fmt: skip
            assert auths == [*want, "pubkey"]  # the last one: the router's
            ts = re.findall(r"remote_ts = (\S+)", conn)
            assert ts == (["0.0.0.0/0"] if router == "gw" else ["10.88.0.0/24,fd00:88::/64"])
            vips = re.findall(r"vips = (\S+)", conn)
            assert vips == (["0.0.0.0"] if router == "gw" else ["0.0.0.0,::"])
    world.assert_accepted(offers)


def test_readmes_match_each_clients_dialogs(world: World) -> None:
    """Each README names only the fields its client has (reference: clients.md):
    Windows has no Local ID field (it sends its IP, or the certificate subject);
    Certificate Trust Settings is an iOS step, not a macOS one."""
    for d in world.devices("windows"):
        readme = (d.folder / "README.md").read_text()
        assert "Local ID" not in readme, d.auth
        sent = "its IP address" if d.auth == "eap-mschapv2" else "the certificate's subject"
        assert f"| Identity Windows sends | {sent}" in readme, d.auth
    for d in world.devices("macos"):
        readme = (d.folder / "README.md").read_text()
        assert "Certificate Trust Settings" not in readme and "iPhone" not in readme
        assert "Local ID" in readme  # macOS has the field
        # Profiles moved from Privacy & Security (13) to General (14 and later).
        assert "**General → Device Management**" in readme
    for d in world.devices("ios"):
        assert "Certificate Trust Settings" in (d.folder / "README.md").read_text()
    # Android's built-in client (11+): a certificate device picks the CA out of its
    # own PKCS#12; a password device the CA it installed by name.
    for d in world.devices("android"):
        readme = (d.folder / "README.md").read_text()
        assert "Android 11 and later" in readme
        ca_row = re.search(r"^\| IPsec CA certificate \| (.*) \|$", readme, re.M)
        assert ca_row, readme
        if d.auth == "eap-mschapv2":
            assert ca_row.group(1) == "`home VPN CA` (installed in step 1)", ca_row
        else:
            assert ca_row.group(1).endswith("it holds `home VPN CA`)"), ca_row
    # The strongSwan app: a profile without local.id sends the certificate's subject;
    # the steps are numbered without a gap.
    for d in world.devices("android-strongswan"):
        readme = (d.folder / "README.md").read_text()
        steps = [int(n) for n in re.findall(r"^(\d)\. ", readme.split("## Values")[0], re.M)]
        assert sorted(set(steps)) == list(range(1, max(steps) + 1)), (d.auth, steps)
        local_id = json.loads(next(d.folder.glob("*.sswan")).read_text())["local"].get("id")
        assert ("Local ID" in readme) == (local_id is not None), d.auth
    # Linux: one way (swanctl) where NetworkManager cannot do the auth method.
    for d in world.devices("linux"):
        readme = (d.folder / "README.md").read_text()
        assert ("Two ways:" in readme) == (d.auth != "pubkey+eap-mschapv2"), d.auth
