"""Proof of the router overlay: real IKEv2 handshakes against the rendered files.

The router runs Debian's strongSwan in a network namespace with exactly the
files ``owrt_vpn.render.overlay.render`` puts into ``usr/share/owrt-vpn/files``
(swanctl style: charon-systemd + ``swanctl --load-all``; legacy style: the
``ipsec`` starter reading ipsec.conf/ipsec.secrets/ipsec.d) and only the
plugins our OpenWrt package list implies (mapped to Debian's by the table in
charon.py), plus the test-only kernel-libipsec. Each road warrior is a real
strongSwan client in its own namespace, configured by the test over VICI.

Every cell asserts the outcome: a virtual IP from the pool (seen on both
ends), the DNS attribute (written by the client's resolve plugin), a ping
to the LAN host through the tunnel; or, for the negative cells, a refusal
and the router's log line that says why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import sitefile

from .charon import (
    Charon,
    ClientProfile,
    StarterCharon,
    debian_load_list,
    load_client,
)
from .conftest import OWRT_ENV, OwrtRunner, TopologyFactory
from .netns import RoadWarrior, Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "itest"
POOL = ipaddress.IPv4Network("10.78.0.0/24")
DNS = "10.77.0.10"  # the LAN host: pushed as DNS server, and the ping target
SHARED_ID = "itestClients"
# Quotes, braces, '#', spaces, backslash: what a config file must escape.
NASTY_PASSWORD = "q\"uo'te {brace} #hash \\back\\slash  end"

ROUTERS = {"swanctl": ("gw", "vpn.itest.example"), "ipsec": ("oldgw", "old.itest.example")}

SHARED = {"shared_identity": True}
SITE_TOML = sitefile.site(
    SITE,
    organization="Owrt VPN Test",
    shared_identity=SHARED_ID,
    crl_days=30,
    # carol (pubkey+eap-mschapv2) shares the routers with password-only users
    allow_password_only_alongside_2fa=True,
    routers=[
        sitefile.router(
            "gw",
            server_id="vpn.itest.example",
            subtarget="generic",
            lan=["10.77.0.0/24"],
            pool=str(POOL),
            dns=[DNS],
            tunnel="full",
        ),
        # OpenWrt 21.02: the legacy ipsec.conf style
        sitefile.router(
            "oldgw",
            server_id="old.itest.example",
            release="21.02.7",
            subtarget="generic",
            lan=["10.77.0.0/24"],
            pool=str(POOL),
            dns=[DNS],
            tunnel="split",
        ),
    ],
    users=[
        sitefile.user("alice", [("laptop", "linux"), ("pc", "windows")], auth="pubkey"),
        sitefile.user("ivy", [("phone", "ios", SHARED)], auth="pubkey"),
        sitefile.user("iris", [("ipad", "ios", SHARED)], auth="eap-tls"),
        sitefile.user("erin", [("laptop", "linux")], auth="eap-tls"),
        sitefile.user("bob", [("phone", "android")], auth="eap-mschapv2"),
        sitefile.user("carol", [("tablet", "android-strongswan")], auth="pubkey+eap-mschapv2"),
        sitefile.user("quinn", [("pc", "windows")], auth="eap-mschapv2"),
        sitefile.user("mallory", [("laptop", "linux")], auth="pubkey"),
        sitefile.user("eve", [("phone", "ios")], auth="eap-mschapv2"),
    ],
)

# OpenWrt's /etc/swanctl/swanctl.conf (a conffile of strongswan-swanctl)
# includes conf.d; used when the overlay does not ship its own swanctl.conf.
OPENWRT_SWANCTL_CONF = "include conf.d/*.conf\n"


# --------------------------------------------------------------------------
# the site: file, PKI, revocations, the nasty password (once per module)


@dataclass
class Lab:
    """The test site and its PKI."""

    dir: Path
    site: object
    pki: object
    ca_pem: bytes

    def identity(self, user: str, device: str) -> str:
        """The device's IKE identity (SAN rfc822Name)."""
        from owrt_vpn.site.model import device_identity

        return device_identity(SITE, user, device)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, owrt: OwrtRunner) -> Lab:
    """Site file + PKI through the CLI: mallory and eve revoked, quinn's password full of syntax."""
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site.load import load_site

    d = tmp_path_factory.mktemp("site")
    (d / "owrt-vpn.toml").write_text(SITE_TOML)
    owrt("pki", "init", cwd=d)
    owrt("user", "passwd", "quinn", "--password-stdin", cwd=d, input=NASTY_PASSWORD + "\n")
    owrt("user", "revoke", "mallory", cwd=d)
    owrt("user", "revoke", "eve", cwd=d)
    site = load_site(d / "owrt-vpn.toml")
    pki = Pki.open(site)
    return Lab(d, site, pki, pki.ca_cert_pem())


# --------------------------------------------------------------------------
# the router under test


@dataclass
class Router:
    """A rendered router running in its own topology."""

    style: str
    name: str
    server_id: str
    topo: Topology
    daemon: Charon
    files: Path  # the rendered usr/share/owrt-vpn/files

    def log_mark(self) -> int:
        """Position in the router's log."""
        return self.daemon.log_mark()


def render_files(lab: Lab, router: str, out: Path) -> Path:
    """Render the router's overlay; return its usr/share/owrt-vpn/files."""
    from owrt_vpn.render import overlay

    overlay.render(lab.site, lab.site.router(router), lab.pki, out)  # type: ignore[attr-defined]
    files = out / "usr/share/owrt-vpn/files"
    assert files.is_dir(), f"the overlay has no {files}"
    return files


def router_plugins(lab: Lab, router: str) -> list[str]:
    """The strongSwan plugins our package list installs on ``router``."""
    from owrt_vpn.render import packages

    return list(packages.charon_plugins(lab.site, lab.site.router(router)))  # type: ignore[attr-defined]


def crl_files(files: Path, style: str) -> list[Path]:
    """The CRL files in the rendered tree."""
    d = files / ("etc/swanctl/x509crl" if style == "swanctl" else "etc/ipsec.d/crls")
    return sorted(p for p in d.glob("*") if p.is_file()) if d.is_dir() else []


def start_router(
    lab: Lab,
    topo: Topology,
    style: str,
    workdir: Path,
    *,
    tweak: Callable[[Path], None] | None = None,
) -> Router:
    """Render ``style``'s router, place the files, start its charon (stopped by topo.close)."""
    name, server_id = ROUTERS[style]
    files = render_files(lab, name, workdir / "overlay")
    if tweak is not None:
        tweak(files)
    etc = files / "etc"
    from owrt_vpn import profiles

    release = lab.site.router(name).release  # type: ignore[attr-defined]
    load = debian_load_list(
        router_plugins(lab, name), strongswan=profiles.release_info(release).strongswan
    )
    sd = etc / "strongswan.d"
    includes = sorted(sd.glob("*.conf")) if sd.is_dir() else []
    plugin_includes = sorted((sd / "charon").glob("*.conf")) if (sd / "charon").is_dir() else []
    daemon: Charon
    if style == "swanctl":
        assert (etc / "swanctl").is_dir(), "swanctl style renders no etc/swanctl"
        daemon = Charon(topo.router, workdir / "router", load, "router", includes, plugin_includes)
        daemon.prepare()
        shutil.copytree(etc / "swanctl", daemon.swanctl_dir, dirs_exist_ok=True)
        if not (daemon.swanctl_dir / "swanctl.conf").exists():
            (daemon.swanctl_dir / "swanctl.conf").write_text(OPENWRT_SWANCTL_CONF)
        daemon.start()
        daemon.load_all()
    else:
        for f in ("ipsec.conf", "ipsec.secrets", "ipsec.d"):
            assert (etc / f).exists(), f"legacy style renders no etc/{f}"
        daemon = StarterCharon(
            topo.router, workdir / "router", load, "router", includes, plugin_includes, etc=etc
        )
        daemon.prepare()
        daemon.start()
    return Router(style, name, server_id, topo, daemon, files)


@pytest.fixture(scope="module", params=["swanctl", "ipsec"])
def router(
    request: pytest.FixtureRequest,
    lab: Lab,
    topologies: TopologyFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Router]:
    """The router of one config style, started once and shared by the module's cells."""
    style = request.param
    topo = topologies()
    r = start_router(lab, topo, style, tmp_path_factory.mktemp(f"router-{style}"))
    try:
        yield r
    finally:
        r.daemon.stop()


# --------------------------------------------------------------------------
# road warriors


@dataclass
class Client:
    """A road warrior: its namespace, its charon and the profile it dials."""

    rw: RoadWarrior
    charon: Charon
    profile: ClientProfile
    router: Router
    result: object = None

    def sa(self) -> dict[str, object]:
        """The client's IKE SA for its profile (AssertionError if none)."""
        sas = [s for s in self.charon.sas() if s["name"] == self.profile.name]
        assert sas, f"no IKE SA on the client:\n{self.charon.log_text()[-3000:]}"
        return sas[0]

    def vip(self) -> str:
        """The virtual IP the client got."""
        vips = self.sa().get("local-vips") or []
        assert isinstance(vips, list) and vips, "the client got no virtual IP"
        return str(vips[0])


# What the test's road warriors load: a full strongSwan client (these are
# stand-ins for phones and laptops, not subject to our package list).
CLIENT_PLUGINS = [
    "random",
    "nonce",
    "openssl",
    "pem",
    "pkcs1",
    "pkcs8",
    "x509",
    "revocation",
    "constraints",
    "pubkey",
    "curve25519",
    "kdf",
    "attr",
    "kernel-netlink",
    "socket-default",
    "vici",
    "eap-identity",
    "eap-mschapv2",
    "eap-tls",
    "md4",
]


@dataclass
class Clients:
    """Makes clients for one test and removes them afterwards."""

    workdir: Path
    made: list[Client] = field(default_factory=list)

    def connect(self, router: Router, profile: ClientProfile) -> tuple[Client, bool, str]:
        """Start a client for ``profile`` and initiate; returns (client, ok, router log)."""
        rw = router.topo.add_roadwarrior(profile.name)
        load = debian_load_list(CLIENT_PLUGINS, extra=["resolve"])
        charon = Charon(rw.ns, self.workdir / profile.name, load, profile.name)
        client = Client(rw, charon, profile, router)
        self.made.append(client)
        charon.start()
        load_client(charon, profile)
        mark = router.log_mark()
        res = charon.initiate(profile.name, profile.name)
        client.result = res
        # The router logs the outcome a moment after the client sees it.
        time.sleep(0.1)
        return client, res.ok, router.daemon.log_since(mark)

    def close(self) -> None:
        """Say goodbye (IKE DELETE) and remove each client's namespace."""
        for c in self.made:
            try:
                if c.charon.proc is not None:
                    c.charon.terminate(c.profile.name, timeout=3)
            finally:
                c.charon.stop()
                c.rw.ns.delete()
        self.made.clear()


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    """Client factory for one test; every client is removed even when the test fails."""
    cs = Clients(tmp_path)
    try:
        yield cs
    finally:
        cs.close()


def profile(
    lab: Lab,
    router: Router,
    user: str,
    device: str | None,
    auth: str,
    *,
    local_id: str | None = None,
    eap_secret: str | None = None,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    remote_ts: tuple[str, ...] = ("0.0.0.0/0",),
) -> ClientProfile:
    """The client side of ``user``/``device`` dialling ``router`` with ``auth``."""
    pki = lab.pki
    if auth in ("pubkey", "eap-tls", "pubkey+eap-mschapv2") and cert_pem is None:
        assert device is not None
        # Read from the PKI directory (layout in HACKING.md): the API refuses
        # to hand out a revoked certificate, which the revoked cell needs.
        cert_pem = (lab.dir / "pki/clients" / user / f"{device}.crt").read_bytes()
        key_pem = (lab.dir / "pki/clients" / user / f"{device}.key").read_bytes()
    eap_id = None
    if auth in ("eap-mschapv2", "pubkey+eap-mschapv2"):
        eap_id = user
        if eap_secret is None:
            eap_secret = pki.eap_password(user)  # type: ignore[attr-defined]
    if local_id is None:
        local_id = lab.identity(user, device) if device and auth != "eap-mschapv2" else user
    return ClientProfile(
        name=f"{user}-{device or 'eap'}-{router.style}"[:40],
        auth=auth,
        local_id=local_id,
        remote_addr=router.topo.router_wan,
        remote_id=router.server_id,
        ca_pem=lab.ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        eap_id=eap_id,
        eap_secret=eap_secret,
        remote_ts=remote_ts,
    )


def assert_tunnel(client: Client, ok: bool, router_log: str) -> None:
    """Established, VIP from the pool on both ends, DNS attribute, ping through the tunnel."""
    assert ok, (
        f"{client.profile.name}: refused: {getattr(client.result, 'error', '')}\n"
        f"router log:\n{router_log[-4000:]}\nclient log:\n{client.charon.log_text()[-3000:]}"
    )
    sa = client.sa()
    assert sa["state"] == "ESTABLISHED"
    vip = client.vip()
    assert ipaddress.IPv4Address(vip) in POOL, f"virtual IP {vip} is not from the pool {POOL}"
    assert vip in client.router.daemon.remote_vips(), "the router does not list the client's VIP"
    resolv = client.charon.resolv_path
    assert resolv.exists() and f"nameserver {DNS}" in resolv.read_text(), (
        "no DNS attribute reached the client"
    )
    assert client.rw.ns.ping(DNS, source=vip), f"no ping {vip} -> {DNS} through the tunnel"


# --------------------------------------------------------------------------
# the positive matrix: every auth method x config style


AUTH_CELLS = {
    # cell: (user, device, auth, local identity override)
    "pubkey": ("alice", "laptop", "pubkey", None),
    "eap-tls": ("erin", "laptop", "eap-tls", None),
    "eap-mschapv2": ("bob", None, "eap-mschapv2", None),
    "pubkey+eap-mschapv2": ("carol", "tablet", "pubkey+eap-mschapv2", None),
    "ios-shared-identity": ("ivy", "phone", "pubkey", SHARED_ID),
    "ios-shared-identity-eap-tls": ("iris", "ipad", "eap-tls", SHARED_ID),
    # Windows' and Android's built-in clients send their IP address as IKE
    # identity and the user name only as EAP identity ("" = no id configured).
    "eap-mschapv2-ip-identity": ("bob", None, "eap-mschapv2", ""),
}


@pytest.mark.parametrize("cell", list(AUTH_CELLS))
def test_auth_method_connects(lab: Lab, router: Router, clients: Clients, cell: str) -> None:
    """Each auth method gets a VIP and the DNS attribute and reaches the LAN host."""
    user, device, auth, local_id = AUTH_CELLS[cell]
    c, ok, log = clients.connect(
        router, profile(lab, router, user, device, auth, local_id=local_id)
    )
    assert_tunnel(c, ok, log)


def test_windows_subject_dn_identity(lab: Lab, router: Router, clients: Clients) -> None:
    """Windows presents its certificate's subject DN as IKE identity (binary ASN.1 DN)."""
    cert = x509.load_pem_x509_certificate(lab.pki.client_cert_pem("alice", "pc"))  # type: ignore[attr-defined]
    dn = "asn1dn:#" + cert.subject.public_bytes().hex()
    c, ok, log = clients.connect(router, profile(lab, router, "alice", "pc", "pubkey", local_id=dn))
    assert_tunnel(c, ok, log)
    assert f"CN={lab.identity('alice', 'pc')}" in log, "the router did not see the DN identity"


def test_injection_password_logs_in(lab: Lab, router: Router, clients: Clients) -> None:
    """A password with quotes, braces, '#', spaces and backslashes works for real."""
    assert lab.pki.eap_password("quinn") == NASTY_PASSWORD  # type: ignore[attr-defined]
    c, ok, log = clients.connect(router, profile(lab, router, "quinn", None, "eap-mschapv2"))
    assert_tunnel(c, ok, log)


def test_newline_password_is_rejected(lab: Lab, owrt: OwrtRunner) -> None:
    """A newline could start a new secrets entry: `user passwd` refuses it, nothing changes."""
    proc = owrt(
        "user", "passwd", "quinn", "--password-stdin",
        cwd=lab.dir, input="first-line\nbob : EAP stolen\n", check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "newline" in proc.stderr
    assert lab.pki.eap_password("quinn") == NASTY_PASSWORD  # type: ignore[attr-defined]


# --------------------------------------------------------------------------
# refusals: each is refused, and the router's log says why


def foreign_client(identity: str) -> tuple[bytes, bytes]:
    """A client certificate for ``identity`` issued by a CA the router has never seen."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Evil CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Owrt VPN Test"),
                    x509.NameAttribute(NameOID.COMMON_NAME, identity),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(identity)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def assert_refused(client: Client, ok: bool, router_log: str, *why: str) -> None:
    """Refused: no SA on the client, and every ``why`` pattern is in the router's log."""
    import re

    assert not ok, f"{client.profile.name} was admitted but must be refused"
    assert not [s for s in client.charon.sas() if s.get("state") == "ESTABLISHED"]
    for pattern in why:
        assert re.search(pattern, router_log), (
            f"router log does not say {pattern!r}:\n{router_log[-4000:]}"
        )


def test_revoked_certificate_refused(lab: Lab, router: Router, clients: Clients) -> None:
    """mallory's certificate is on the CRL (after `user revoke`)."""
    c, ok, log = clients.connect(router, profile(lab, router, "mallory", "laptop", "pubkey"))
    assert_refused(c, ok, log, r"certificate was revoked on", r"no trusted \w+ public key found")


def test_revoked_eap_user_refused(lab: Lab, router: Router, clients: Clients) -> None:
    """eve's EAP password is gone from the router after `user revoke`."""
    c, ok, log = clients.connect(
        router, profile(lab, router, "eve", None, "eap-mschapv2", eap_secret="eves-old-password")
    )
    assert_refused(c, ok, log, r"no EAP key found for .*'eve'")


def test_wrong_eap_password_refused(lab: Lab, router: Router, clients: Clients) -> None:
    """bob with a wrong password: MSCHAPv2 verification fails on the router."""
    c, ok, log = clients.connect(
        router, profile(lab, router, "bob", None, "eap-mschapv2", eap_secret="not-bobs-password")
    )
    assert_refused(c, ok, log, r"EAP-MS-CHAPv2 verification failed")


def test_unknown_eap_user_refused(lab: Lab, router: Router, clients: Clients) -> None:
    """A user the site does not know."""
    c, ok, log = clients.connect(
        router, profile(lab, router, "nosuchuser", None, "eap-mschapv2", eap_secret="whatever123")
    )
    assert_refused(c, ok, log, r"no EAP key found for .*'nosuchuser'")


def test_second_round_cannot_be_skipped(lab: Lab, router: Router, clients: Clients) -> None:
    """carol (pubkey+eap-mschapv2) presenting only her certificate is refused."""
    c, ok, log = clients.connect(router, profile(lab, router, "carol", "tablet", "pubkey"))
    assert_refused(c, ok, log, r"constraint check failed: EAP identity '%any' required")


def test_second_round_needs_own_password(lab: Lab, router: Router, clients: Clients) -> None:
    """carol's certificate with bob's name and password in the EAP round is refused.

    bob's password itself verifies (MSCHAPv2 names bob); the round is pinned
    to carol, so the constraint check after it refuses the connection.
    """
    p = profile(lab, router, "carol", "tablet", "pubkey+eap-mschapv2")
    p = dataclasses.replace(p, eap_id="bob", eap_secret=lab.pki.eap_password("bob"))  # type: ignore[attr-defined]
    c, ok, log = clients.connect(router, p)
    assert_refused(c, ok, log, r"constraint check failed: EAP identity 'carol' required")


def test_foreign_ca_refused(lab: Lab, router: Router, clients: Clients) -> None:
    """A certificate with a real user's identity, issued by another CA."""
    identity = lab.identity("alice", "laptop")
    cert, key = foreign_client(identity)
    p = profile(lab, router, "alice", "laptop", "pubkey", cert_pem=cert, key_pem=key)
    c, ok, log = clients.connect(router, p)
    assert_refused(c, ok, log, r'no issuer certificate found for "O=Owrt VPN Test, CN=')


# --------------------------------------------------------------------------
# MOBIKE


def test_mobike_address_change_keeps_sa(lab: Lab, router: Router, clients: Clients) -> None:
    """The client moves to another WAN address: same IKE SA, traffic flows again."""
    c, ok, log = clients.connect(router, profile(lab, router, "alice", "laptop", "pubkey"))
    assert_tunnel(c, ok, log)
    before = c.sa()
    old, new = c.rw.address, router.topo.next_wan_address()
    mark = c.charon.log_mark()
    c.rw.move_wan_address(new)
    c.charon.wait_log(r"sending address list update using MOBIKE|requesting address change", mark)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sa = c.sa()
        if sa["local-host"] == new and sa.get("child-sas"):
            break
        time.sleep(0.1)
    after = c.sa()
    assert after["uniqueid"] == before["uniqueid"], "the IKE SA was replaced, not moved"
    assert after["state"] == "ESTABLISHED" and after["local-host"] == new, after
    assert c.rw.ns.ping(DNS, source=c.vip()), "no traffic after the move"
    status = (
        str(router.daemon.sas()) if router.style == "swanctl" else router.daemon.status()  # type: ignore[attr-defined]
    )
    assert new in status and old not in status, f"router still points at {old}:\n{status}"


# --------------------------------------------------------------------------
# an aged CRL (past nextUpdate) still refuses the revoked and admits the valid


def age_crl(lab: Lab, crl_path: Path) -> None:
    """Replace the rendered CRL by the same list signed by the CA, expired 30 days ago."""
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    ca_key = serialization.load_pem_private_key(
        (lab.dir / "pki/ca.key").read_bytes(), OWRT_ENV["OWRT_VPN_CA_PASSPHRASE"].encode()
    )
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(crl.issuer)
        .last_update(now - dt.timedelta(days=60))
        .next_update(now - dt.timedelta(days=30))
        .add_extension(x509.CRLNumber(number + 1), critical=False)
    )
    # Keep the other extensions (authorityKeyIdentifier: strongSwan finds a
    # certificate's CRL by that key id).
    for ext in crl.extensions:
        if not isinstance(ext.value, x509.CRLNumber):
            builder = builder.add_extension(ext.value, ext.critical)
    for entry in crl:
        builder = builder.add_revoked_certificate(entry)
    aged = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    assert aged.next_update_utc is not None and aged.next_update_utc < now
    crl_path.write_bytes(aged.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module", params=["swanctl", "ipsec"])
def aged_router(
    request: pytest.FixtureRequest,
    lab: Lab,
    topologies: TopologyFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Router]:
    """A router whose baked CRL has aged past its nextUpdate."""
    style = request.param
    mallory = x509.load_pem_x509_certificate(
        (lab.dir / "pki/clients/mallory/laptop.crt").read_bytes()
    )

    def tweak(files: Path) -> None:
        crls = crl_files(files, style)
        assert len(crls) == 1, f"expected one CRL in the overlay, found {crls}"
        listed = x509.load_pem_x509_crl(crls[0].read_bytes())
        assert listed.get_revoked_certificate_by_serial_number(mallory.serial_number)
        age_crl(lab, crls[0])

    topo = topologies()
    r = start_router(lab, topo, style, tmp_path_factory.mktemp(f"aged-{style}"), tweak=tweak)
    try:
        yield r
    finally:
        r.daemon.stop()


def test_aged_crl_still_refuses_revoked(lab: Lab, aged_router: Router, clients: Clients) -> None:
    """Past nextUpdate the CRL is stale, but a listed certificate stays revoked."""
    r = aged_router
    c, ok, log = clients.connect(r, profile(lab, r, "mallory", "laptop", "pubkey"))
    assert_refused(c, ok, log, r"certificate was revoked on")


def test_aged_crl_still_admits_valid(lab: Lab, aged_router: Router, clients: Clients) -> None:
    """A stale CRL must not lock valid users out (relaxed, not strict, checking)."""
    r = aged_router
    c, ok, log = clients.connect(r, profile(lab, r, "alice", "laptop", "pubkey"))
    assert_tunnel(c, ok, log)
    assert "crl is stale" in log, f"the router did not use the stale CRL:\n{log[-3000:]}"


# --------------------------------------------------------------------------
# the harness itself: cleanup also after a failure


def test_harness_cleans_up_after_failure(topologies: TopologyFactory, tmp_path: Path) -> None:
    """A failing test body still leaves no namespace and no daemon behind."""
    topo = topologies()
    names = [ns.name for ns in topo.namespaces]
    daemon = Charon(topo.router, tmp_path / "d", debian_load_list(CLIENT_PLUGINS))
    with pytest.raises(RuntimeError, match="boom"):
        try:
            daemon.start()
            pid = daemon.proc.pid if daemon.proc else -1
            raise RuntimeError("boom")
        finally:
            topo.close()
    assert pid > 0
    alive = (
        Path(f"/proc/{pid}").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    )
    assert not alive, "the daemon survived the cleanup"
    existing = set(Path("/run/netns").iterdir()) if Path("/run/netns").is_dir() else set()
    assert not {p.name for p in existing} & set(names), "namespaces survived the cleanup"
