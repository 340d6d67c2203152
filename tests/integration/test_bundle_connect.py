"""Proof of the client bundles: real strongSwan clients connect with what a bundle holds.

The router is the rendered overlay running in a namespace (started by the
router harness of test_router_vpn.py, reused as is). Each road warrior is a
real charon in its own namespace, configured in one of two ways:

- the Linux bundle's ``<device>-swanctl.conf`` *as generated*, with the
  credentials placed where the bundle's README says; the test adds only
  plumbing in files of its own: forced UDP encapsulation (these kernels have
  no ESP, userspace ESP needs it), and the secrets that by design are not in
  the bundle (the key password, the EAP password), as the README tells the
  user to add them;
- a swanctl config that this test derives from the Android ``.sswan`` file by
  its own mapping of the documented format (docs.strongswan.org, "VPN
  Profile Import for the Android VPN Client"), not by the project's
  generator code. It proves the Android profile's values: server address
  and identity, CA, client identity, PKCS#12, proposals;
- the same for the iOS ``.mobileconfig`` and the Windows script: a strongSwan
  client stands in for the Apple/Windows client with the profile's values
  (mapped by the test's own tables from the vendors' documentation, and
  the identities those clients present), so the router provably accepts
  the proposals, identities and certificates those files configure.

Each cell checks a virtual IP from the pool on both ends, the DNS attribute
and a ping to the LAN host through the tunnel.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import plistlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

import sitefile
from bundlekit import apple_esp, apple_ike, ps_commands, ps_params, windows_proposals

from .charon import Charon, debian_load_list
from .conftest import OWRT_ENV, TopologyFactory
from .netns import ROUTER_WAN, RoadWarrior
from .test_router_vpn import CLIENT_PLUGINS, ROUTERS, Lab, Router, start_router

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUTER = ROUTERS["swanctl"][0]  # the harness starts the router of this name
POOL = ipaddress.IPv4Network("10.79.0.0/24")
DNS = "10.77.0.10"  # the harness' LAN host
SITE = "bundles"
AUTHS = ("pubkey", "eap-tls", "eap-mschapv2", "pubkey+eap-mschapv2")
USERS = {
    "pubkey": "alice",
    "eap-tls": "erin",
    "eap-mschapv2": "bob",
    "pubkey+eap-mschapv2": "carol",
}


def _devices(auth: str) -> list[tuple[str, str]]:
    devices = [("laptop", "linux"), ("phone", "android-strongswan")]
    if auth != "pubkey+eap-mschapv2":
        devices.append(("iphone", "ios"))
    # Windows: machine certificate or EAP-MSCHAPv2 (the site model refuses its EAP-TLS).
    if auth in ("pubkey", "eap-mschapv2"):
        devices.append(("pc", "windows"))
    return devices


# The router is dialled by IP (192.0.2.1 in the harness topology): no DNS in
# the namespaces, and it covers the IP-address server identity.
SITE_TOML = sitefile.site(
    SITE,
    allow_password_only_alongside_2fa=True,  # every auth method on one router
    routers=[
        sitefile.router(
            ROUTER,
            server_id=ROUTER_WAN,
            subtarget="generic",
            lan=["10.77.0.0/24"],
            pool=str(POOL),
            dns=[DNS],
            tunnel="full",
        )
    ],
    users=[sitefile.user(user, _devices(auth), auth=auth) for auth, user in USERS.items()],
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The site, its PKI and its bundles (written by the real CLI)."""
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site.load import load_site

    d = tmp_path_factory.mktemp("bundle-site")
    (d / "owrt-vpn.toml").write_text(SITE_TOML)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in OWRT_ENV.items():
            mp.setenv(k, v)
        site = load_site(d / "owrt-vpn.toml")
        pki = Pki.open(site)
        pki.init(site)
        from owrt_vpn.bundles import writer as bundles

        bundles.build(site, pki, d / "dist")
        yield Lab(d, site, pki, pki.ca_cert_pem())


@pytest.fixture(scope="module")
def router(
    lab: Lab, topologies: TopologyFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Router]:
    """The rendered router (swanctl style), shared by every cell."""
    r = start_router(lab, topologies(), "swanctl", tmp_path_factory.mktemp("bundle-router"))
    try:
        yield r
    finally:
        r.daemon.stop()


class Client:
    """A road warrior with a charon whose swanctl dir the test fills."""

    def __init__(self, router: Router, workdir: Path, label: str) -> None:
        self.router = router
        self.rw: RoadWarrior = router.topo.add_roadwarrior(label)
        self.charon = Charon(
            self.rw.ns, workdir, debian_load_list(CLIENT_PLUGINS, extra=["resolve"]), label
        )
        self.charon.prepare()
        (self.charon.swanctl_dir / "swanctl.conf").write_text("include conf.d/*.conf\n")

    def put(self, sub: str, name: str, data: bytes | str) -> None:
        path = self.charon.swanctl_dir / sub / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    def connect(self, conn: str) -> str:
        """Load everything, initiate ``conn``; return the router's log of the attempt."""
        self.charon.start()
        self.charon.load_all()
        mark = self.router.daemon.log_mark()
        res = self.charon.initiate(conn, conn)
        time.sleep(0.1)
        log = self.router.daemon.log_since(mark)
        assert res.ok, (
            f"{conn}: refused: {res.error}\nrouter log:\n{log[-4000:]}\n"
            f"client log:\n{self.charon.log_text()[-4000:]}"
        )
        return log

    def assert_tunnel(self, conn: str) -> None:
        sas = [s for s in self.charon.sas() if s["name"] == conn]
        assert sas and sas[0]["state"] == "ESTABLISHED"
        vips = sas[0].get("local-vips") or []
        assert vips and ipaddress.IPv4Address(vips[0]) in POOL, vips
        assert vips[0] in self.router.daemon.remote_vips()
        resolv = self.charon.resolv_path
        assert resolv.exists() and f"nameserver {DNS}" in resolv.read_text()
        assert self.rw.ns.ping(DNS, source=vips[0]), f"no ping {vips[0]} -> {DNS}"

    def close(self, conn: str) -> None:
        try:
            if self.charon.proc is not None:
                self.charon.terminate(conn, timeout=3)
        finally:
            self.charon.stop()
            self.rw.ns.delete()


@pytest.fixture
def client_factory(router: Router, tmp_path: Path) -> Iterator[list[tuple[Client, str]]]:
    made: list[tuple[Client, str]] = []
    try:
        yield made
    finally:
        for c, conn in made:
            c.close(conn)


def _swanctl_secret(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# the Linux bundle's swanctl.conf, as generated


@pytest.mark.parametrize("auth", AUTHS)
def test_linux_swanctl_bundle_connects(
    lab: Lab, router: Router, client_factory: list[tuple[Client, str]], tmp_path: Path, auth: str
) -> None:
    user = USERS[auth]
    folder = lab.dir / "dist" / SITE / "clients" / user / "laptop"
    stem = f"{SITE}-{user}-laptop"
    conn = f"{SITE}-{ROUTER}"
    c = Client(router, tmp_path / "client", f"{user}-linux")
    client_factory.append((c, conn))
    # Files where README.md puts them.
    readme = (folder / "README.md").read_text()
    for sub, src, dst in (
        ("x509ca", "ca.pem", f"{stem}-ca.pem"),
        ("x509", "laptop.crt", f"{stem}.crt"),
        ("private", "laptop.key", f"{stem}.key"),
        ("conf.d", "laptop-swanctl.conf", f"{stem}.conf"),
    ):
        if (folder / src).exists():
            assert f"/etc/swanctl/{sub}/{dst}" in readme, f"README does not say where {src} goes"
            c.put(sub, dst, (folder / src).read_bytes())
    # Test plumbing, in a file of its own: forced UDP encapsulation (userspace
    # ESP), and the secrets the bundle deliberately leaves out (README: the
    # key password and the EAP password are added by the user).
    plumbing = ["connections {", f"   {conn} {{", "      encap = yes", "   }", "}", "secrets {"]
    if (folder / "laptop.key").exists():
        pw = lab.pki.p12_password(user, "laptop")  # type: ignore[attr-defined]
        plumbing += ["   private-test {", f"      file = {stem}.key",
                     f"      secret = {_swanctl_secret(pw)}", "   }"]  # fmt: skip
    if "mschapv2" in auth:
        eap = lab.pki.eap_password(user)  # type: ignore[attr-defined]
        plumbing += ["   eap-test {", f"      id = {user}",
                     f"      secret = {_swanctl_secret(eap)}", "   }"]  # fmt: skip
    plumbing.append("}")
    c.put("conf.d", "zz-test-plumbing.conf", "\n".join(plumbing) + "\n")
    c.connect(conn)
    c.assert_tunnel(conn)


# --------------------------------------------------------------------------
# a client derived from the .sswan file by the documented format

SSWAN_ROUNDS = {
    # .sswan "type" -> the client authentication rounds it stands for
    "ikev2-cert": ["pubkey"],
    "ikev2-eap": ["eap-mschapv2"],
    "ikev2-cert-eap": ["pubkey", "eap-mschapv2"],
    "ikev2-eap-tls": ["eap-tls"],
}


def sswan_to_swanctl(
    profile: dict[str, object], conn: str, p12_name: str | None, subject: str | None
) -> str:
    """A swanctl connection with the values of a .sswan profile (the app's behaviour).

    As the app (android_service.c): a certificate round presents ``local.id``,
    else the certificate's ``subject`` DN; an EAP round presents ``local.id``,
    else the user name, with the user name as EAP identity.
    """
    remote = profile["remote"]
    local = profile.get("local", {})
    assert isinstance(remote, dict) and isinstance(local, dict)
    lines = [
        "connections {",
        f"   {conn} {{",
        "      version = 2",
        f"      remote_addrs = {remote['addr']}",
        f"      proposals = {profile['ike-proposal']}",
        "      vips = 0.0.0.0",
        "      encap = yes",  # plumbing: userspace ESP
    ]
    for i, auth in enumerate(SSWAN_ROUNDS[str(profile["type"])], 1):
        lines += [f"      local-{i} {{", f"         auth = {auth}"]
        if auth in ("pubkey", "eap-tls"):
            assert p12_name is not None and subject is not None
            lines.append(f"         id = {local.get('id', subject)}")
        if auth == "eap-mschapv2":
            ident = local.get("id", local["eap_id"])
            lines += [f"         id = {ident}", f"         eap_id = {local['eap_id']}"]
        lines.append("      }")
    lines += [
        "      remote {",
        "         auth = pubkey",
        f"         id = {remote['id']}",
        "         cacerts = sswan-ca.der",
        "      }",
        "      children {",
        f"         {conn} {{",
        "            remote_ts = 0.0.0.0/0",
        f"            esp_proposals = {profile['esp-proposal']}",
        "         }",
        "      }",
        "   }",
        "}",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("auth", AUTHS)
def test_sswan_profile_connects(
    lab: Lab, router: Router, client_factory: list[tuple[Client, str]], tmp_path: Path, auth: str
) -> None:
    user = USERS[auth]
    folder = lab.dir / "dist" / SITE / "clients" / user / "phone"
    profile = json.loads((folder / "phone.sswan").read_text(encoding="utf-8"))
    conn = "sswan"
    c = Client(router, tmp_path / "client", f"{user}-sswan")
    client_factory.append((c, conn))
    remote, local = profile["remote"], profile.get("local", {})
    assert remote["addr"] == str(ROUTER_WAN)
    c.put("x509ca", "sswan-ca.der", base64.b64decode(remote["cert"]))
    secrets = ["secrets {"]
    p12_name = subject = None
    if "p12" in local:
        # The app imports local.p12 with the password the user types.
        p12_name = "sswan.p12"
        data = base64.b64decode(local["p12"])
        c.put("pkcs12", p12_name, data)
        pw = lab.pki.p12_password(user, "phone")  # type: ignore[attr-defined]
        _key, cert, _ = pkcs12.load_key_and_certificates(data, pw.encode())
        assert isinstance(cert, x509.Certificate)
        # The subject DN, binary as the app sends it (quoted: '#' starts a
        # comment in swanctl.conf).
        subject = '"asn1dn:#' + cert.subject.public_bytes().hex() + '"'
        secrets += ["   pkcs12-app {", f"      file = {p12_name}",
                    f"      secret = {_swanctl_secret(pw)}", "   }"]  # fmt: skip
    if "eap_id" in local:
        eap = lab.pki.eap_password(user)  # type: ignore[attr-defined]
        secrets += ["   eap-app {", f"      id = {local['eap_id']}",
                    f"      secret = {_swanctl_secret(eap)}", "   }"]  # fmt: skip
    secrets.append("}")
    c.put(
        "conf.d",
        "sswan.conf",
        sswan_to_swanctl(profile, conn, p12_name, subject) + "\n".join(secrets),
    )
    c.connect(conn)
    c.assert_tunnel(conn)


# --------------------------------------------------------------------------
# stand-ins for Apple and Windows clients, configured from their files


def _conn_lines(
    conn: str, addr: str, remote_id: str, ike: str, esp: str, rounds: list[dict[str, str]]
) -> list[str]:
    lines = ["connections {", f"   {conn} {{", "      version = 2",
             f"      remote_addrs = {addr}", f"      proposals = {ike}",
             "      vips = 0.0.0.0", "      encap = yes"]  # fmt: skip
    for i, r in enumerate(rounds, 1):
        lines += [f"      local-{i} {{", *(f"         {k} = {v}" for k, v in r.items()), "      }"]
    lines += ["      remote {", "         auth = pubkey", f"         id = {remote_id}",
              "         cacerts = stand-in-ca.der", "      }", "      children {",
              f"         {conn} {{", "            remote_ts = 0.0.0.0/0",
              f"            esp_proposals = {esp}", "         }", "      }",
              "   }", "}"]  # fmt: skip
    return lines


def _secrets(p12: tuple[str, str] | None, eap: tuple[str, str] | None) -> list[str]:
    lines = ["secrets {"]
    if p12:
        lines += ["   pkcs12-x {", f"      file = {p12[0]}",
                  f"      secret = {_swanctl_secret(p12[1])}", "   }"]  # fmt: skip
    if eap:
        lines += ["   eap-x {", f"      id = {eap[0]}",
                  f"      secret = {_swanctl_secret(eap[1])}", "   }"]  # fmt: skip
    return [*lines, "}"]


@pytest.mark.parametrize("auth", ["pubkey", "eap-tls", "eap-mschapv2"])
def test_mobileconfig_values_connect(
    lab: Lab, router: Router, client_factory: list[tuple[Client, str]], tmp_path: Path, auth: str
) -> None:
    user = USERS[auth]
    base = lab.dir / "dist" / SITE / "clients" / user
    path = base / "iphone.mobileconfig"
    if not path.exists():
        path = base / "iphone" / "iphone.mobileconfig"
    payloads = {p["PayloadType"]: p for p in plistlib.loads(path.read_bytes())["PayloadContent"]}
    ike = payloads["com.apple.vpn.managed"]["IKEv2"]
    conn = "apple"
    c = Client(router, tmp_path / "client", f"{user}-apple")
    client_factory.append((c, conn))
    c.put("x509ca", "stand-in-ca.der", payloads["com.apple.security.root"]["PayloadContent"])
    p12 = None
    if "com.apple.security.pkcs12" in payloads:
        pay = payloads["com.apple.security.pkcs12"]
        assert ike["PayloadCertificateUUID"] == pay["PayloadUUID"]
        c.put("pkcs12", "apple.p12", pay["PayloadContent"])
        p12 = ("apple.p12", pay["Password"])  # the profile carries it
    local = ike["LocalIdentifier"]
    eap = None
    if ike["AuthenticationMethod"] == "Certificate" and not ike["ExtendedAuthEnabled"]:
        rounds = [{"auth": "pubkey", "id": local}]
    elif "PayloadCertificateUUID" in ike:
        # EAP-TLS: Apple presents LocalIdentifier, also as EAP identity.
        rounds = [{"auth": "eap-tls", "id": local, "eap_id": local}]
    else:
        rounds = [{"auth": "eap-mschapv2", "id": local, "eap_id": ike["AuthName"]}]
        eap = (ike["AuthName"], lab.pki.eap_password(user))  # type: ignore[attr-defined]
    ike_prop = apple_ike(ike["IKESecurityAssociationParameters"])
    esp_prop = apple_esp(ike["ChildSecurityAssociationParameters"], ike["EnablePFS"] == 1)
    lines = _conn_lines(
        conn, ike["RemoteAddress"], ike["RemoteIdentifier"], ike_prop, esp_prop, rounds
    )
    c.put("conf.d", "apple.conf", "\n".join([*lines, *_secrets(p12, eap)]) + "\n")
    log = c.connect(conn)
    c.assert_tunnel(conn)
    # The router negotiated exactly what the profile asks for.
    assert "selected proposal: IKE:" in log


@pytest.mark.parametrize("auth", ["pubkey", "eap-mschapv2"])
def test_windows_script_values_connect(
    lab: Lab, router: Router, client_factory: list[tuple[Client, str]], tmp_path: Path, auth: str
) -> None:
    user = USERS[auth]
    text = (lab.dir / "dist" / SITE / "clients" / user / "pc" / "pc-windows.ps1").read_text(
        encoding="utf-8-sig"
    )
    conn = "windows"
    c = Client(router, tmp_path / "client", f"{user}-win")
    client_factory.append((c, conn))
    ca = re.search(r"^\$CaCertificate = '([^']+)'", text, re.M)
    assert ca
    c.put("x509ca", "stand-in-ca.der", base64.b64decode(ca.group(1)))
    splat = dict(re.findall(r"^\s+(\w+)\s+= '?([^'\r\n]*)'?\r?$", text, re.M))
    (ipsec,) = [
        ln for ln in ps_commands(text) if ln.startswith("Set-VpnConnectionIPsecConfiguration")
    ]
    ike_prop, esp_prop = windows_proposals(ps_params(ipsec))
    p12 = eap = None
    if splat["AuthenticationMethod"] == "MachineCertificate":
        blob = re.search(r"^\$Pkcs12 = '([^']+)'", text, re.M)
        assert blob
        data = base64.b64decode(blob.group(1))
        pw = lab.pki.p12_password(user, "pc")  # type: ignore[attr-defined]
        _key, cert, _ = pkcs12.load_key_and_certificates(data, pw.encode())
        assert isinstance(cert, x509.Certificate)
        c.put("pkcs12", "win.p12", data)
        p12 = ("win.p12", pw)
        # Windows presents its certificate's subject DN (binary) as identity.
        # (Quoted: '#' starts a comment in swanctl.conf.)
        dn = "asn1dn:#" + cert.subject.public_bytes().hex()
        rounds = [{"auth": "pubkey", "id": f'"{dn}"'}]
    else:
        assert "$eap = New-EapConfiguration\r" in text or "$eap = New-EapConfiguration\n" in text
        # EAP-MSCHAPv2: Windows presents its IP address; the user types the name.
        rounds = [{"auth": "eap-mschapv2", "id": c.rw.address, "eap_id": user}]
        eap = (user, lab.pki.eap_password(user))  # type: ignore[attr-defined]
    lines = _conn_lines(
        conn, splat["ServerAddress"], splat["ServerAddress"], ike_prop, esp_prop, rounds
    )
    c.put("conf.d", "windows.conf", "\n".join([*lines, *_secrets(p12, eap)]) + "\n")
    c.connect(conn)
    c.assert_tunnel(conn)
