"""Our files on strongSwan as OpenWrt packages it: charon loads them itself, clients connect.

The router's tree is a fresh OpenWrt root (tests/openwrt/router.py) with
the strongSwan packages' files laid out as the 24.10 packages install them
(openwrt_swan.py), our image overlay applied by the first boot (busybox ash,
real uci). Debian's charon then runs on that tree at the router's paths;
the test loads nothing into it: the ``start-scripts`` entry of
``/var/ipsec/strongswan.conf`` (written as ``/etc/init.d/swanctl`` writes it)
must run ``swanctl --load-all`` over our files. Road warriors then connect
with a certificate and with EAP-MSCHAPv2 and ping through the tunnel.
The same for 21.02's legacy layout: the starter (as ``/etc/init.d/ipsec``
starts it) reads our ipsec.conf/ipsec.secrets over the package's.
A push's reload (``/etc/init.d/swanctl reload`` = ``swanctl --load-all
--noprompt``) then picks up a new user's connection.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sitefile
from openwrt.router import RouterRoot
from openwrt.userland import Userland
from owrt_vpn import profiles
from owrt_vpn.pki.authority import Pki
from owrt_vpn.render import overlay, packages
from owrt_vpn.site.load import load_site
from owrt_vpn.site.model import Site, device_identity

from .charon import Charon, ClientProfile, debian_load_list, load_client
from .conftest import TopologyFactory
from .netns import Topology
from .openwrt_swan import OpenWrtCharon, OpenWrtStarter, ipsec_tree, swanctl_tree

pytestmark = pytest.mark.integration

POOL = ipaddress.IPv4Network("10.88.0.0/24")
SERVER_ID = "vpn.owrt.example"
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
    "md4",
]


# release series -> (router, its server id): two series, as the CI budget allows
SERIES = {"24.10": ("gw", SERVER_ID), "21.02": ("old", "old.owrt.example")}


def site_text(users: list[str]) -> str:
    routers = [
        sitefile.router(
            name,
            server_id=server_id,
            release=f"{series}.{'2' if series == '24.10' else '7'}",
            lan=["10.77.0.0/24"],
            pool=str(POOL),
            dns=["10.77.0.1"],
        )
        for series, (name, server_id) in SERIES.items()
    ]
    return sitefile.site("ow", routers=routers, users=users)


ALICE = sitefile.user("alice", [("laptop", "linux")], auth="pubkey")
BOB = sitefile.user("bob", [("phone", "android")], auth="eap-mschapv2")
CAROL = sitefile.user("carol", [("pc", "linux")], auth="pubkey")


class Lab:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.write([ALICE, BOB])
        self.pki = Pki.open(self.site)
        self.pki.init(self.site, encrypt=False)
        self.ensure()

    def write(self, users: list[str]) -> None:
        (self.folder / "owrt-vpn.toml").write_text(site_text(users))
        self.site: Site = load_site(self.folder / "owrt-vpn.toml")

    def ensure(self) -> None:
        self.pki = Pki.open(self.site)
        for r in self.site.routers:
            self.pki.ensure_router(self.site, r)
        self.pki.ensure(self.site)

    def render(self, router: str, out: Path) -> overlay.RenderResult:
        return overlay.render(self.site, self.site.router(router), self.pki, out)


class Router:
    def __init__(
        self, lab: Lab, series: str, openwrt: Userland, topo: Topology, work: Path
    ) -> None:
        self.name, self.server_id = SERIES[series]
        gw = lab.site.router(self.name)
        release = profiles.release_info(gw.release)
        self.style = release.config_style
        self.load = debian_load_list(
            packages.charon_plugins(lab.site, gw), strongswan=release.strongswan
        )
        self.fs = RouterRoot(work / "fs", openwrt, openwrt.firewall4("HEAD"))
        (swanctl_tree if self.style == "swanctl" else ipsec_tree)(self.fs.root, self.load)
        self.fs.flash(lab.render(self.name, work / "overlay").root)
        boot = self.fs.first_boot()
        assert boot.returncode == 0, boot.stderr
        self.charon: OpenWrtCharon | OpenWrtStarter
        if self.style == "swanctl":
            self.charon = OpenWrtCharon(
                topo.router, work / "charon", self.load, "router", root=self.fs.root
            )
        else:
            self.charon = OpenWrtStarter(
                topo.router, work / "charon", self.load, "router", root=self.fs.root
            )


@pytest.fixture(scope="module", params=list(SERIES))
def setup(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    openwrt: Userland,
    topologies: TopologyFactory,
) -> Iterator[tuple[Lab, Router, Topology]]:
    import os

    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    lab = Lab(tmp_path_factory.mktemp("site"))
    topo = topologies()
    router = Router(lab, request.param, openwrt, topo, tmp_path_factory.mktemp("router"))
    router.charon.start()
    try:
        yield lab, router, topo
    finally:
        router.charon.stop()


def connect(
    lab: Lab, router: Router, topo: Topology, work: Path, user: str, device: str | None
) -> Charon:
    u = lab.site.user(user)
    if u.auth == "pubkey":
        assert device is not None
        d = lab.folder / "pki/clients" / user / device
        prof = ClientProfile(
            name=f"{user}-c",
            auth="pubkey",
            local_id=device_identity(lab.site, user, device),
            remote_addr=topo.router_wan,
            remote_id=router.server_id,
            ca_pem=lab.pki.ca_cert_pem(),
            cert_pem=d.with_suffix(".crt").read_bytes(),
            key_pem=d.with_suffix(".key").read_bytes(),
        )
    else:
        prof = ClientProfile(
            name=f"{user}-c",
            auth="eap-mschapv2",
            local_id=user,
            remote_addr=topo.router_wan,
            remote_id=router.server_id,
            ca_pem=lab.pki.ca_cert_pem(),
            eap_id=user,
            eap_secret=lab.pki.eap_password(user),
        )
    rw = topo.add_roadwarrior(prof.name)
    client = Charon(rw.ns, work / prof.name, debian_load_list(CLIENT_PLUGINS), prof.name)
    client.start()
    load_client(client, prof)
    res = client.initiate(prof.name, prof.name)
    assert res.ok, f"{user}: {res.error}\n{client.log_text()[-3000:]}"
    sa = next(s for s in client.sas() if s["name"] == prof.name)
    vip = str(sa["local-vips"][0])
    assert ipaddress.IPv4Address(vip) in POOL
    assert rw.ns.ping(topo.lan_host_addr, source=vip), "no ping through the tunnel"
    client.terminate(prof.name, timeout=3)
    client.stop()
    return client


def test_charon_loads_our_files_through_openwrts_start_scripts(
    setup: tuple[Lab, Router, Topology],
) -> None:
    _, router, _ = setup
    if isinstance(router.charon, OpenWrtStarter):
        # the starter loaded our ipsec.conf (over the package's) by itself
        status = router.charon.stroke("statusall").stdout
        rendered = (router.fs.root / "etc/ipsec.conf").read_text()
        names = re.findall(r"^conn (\S+)", rendered, re.M)
        assert [n for n in names if n != "%default"]
        for name in names:
            if name != "%default" and "auto=ignore" not in rendered.split(f"conn {name}")[1]:
                assert f"{name}:" in status, status
    else:
        conns = router.charon.loaded_connections()
        rendered = (router.fs.root / "etc/swanctl/conf.d/owrt-vpn.conf").read_text()
        assert conns, router.charon.diagnostics()
        assert set(conns) == set(re.findall(r"^    (\S+) : owrt-vpn-rw \{", rendered, re.M))
        # our pools arrived beside the init script's empty sections
        assert list(router.charon.session().get_pools())
    [loaded] = re.findall(r"loaded plugins: (.*)", router.charon.log_text())
    control = "vici" if router.style == "swanctl" else "stroke"
    for plugin in ("kernel-libipsec", control, "eap-mschapv2", "openssl"):
        assert plugin in loaded.split(), loaded


@pytest.mark.parametrize(("user", "device"), [("alice", "laptop"), ("bob", None)])
def test_clients_connect(
    setup: tuple[Lab, Router, Topology], tmp_path: Path, user: str, device: str | None
) -> None:
    lab, router, topo = setup
    connect(lab, router, topo, tmp_path, user, device)


def test_a_push_reload_loads_a_new_user(
    setup: tuple[Lab, Router, Topology], tmp_path: Path
) -> None:
    lab, router, topo = setup
    lab.write([ALICE, BOB, CAROL])
    lab.ensure()
    new = lab.render(router.name, tmp_path / "overlay")
    push = router.fs.ash('"$1" "$2"', str(new.root / overlay.INSTALLER), str(new.file_set))
    # no init scripts in this root: the installer says so, the files are in place
    assert push.returncode == 0, push.stderr
    if isinstance(router.charon, OpenWrtStarter):
        # /etc/init.d/ipsec reload on a running service: `ipsec rereadall` (secrets,
        # certificates, CRLs) and `ipsec reload` (SIGUSR1 to the starter: it re-reads ipsec.conf)
        assert "carol" in (router.fs.root / "etc/ipsec.conf").read_text()
        assert router.charon.proc is not None
        # Plumbing: the daemon sees the tree through bind mounts of single files,
        # which keep the inode the installer has just replaced (mv); on a router
        # the path is the file. Mount the new ones at the same paths.
        for f in ("ipsec.conf", "ipsec.secrets"):
            subprocess.run(
                ["nsenter", "-t", str(router.charon.proc.pid), "-m", "sh", "-c",
                 'umount "$2" && mount --bind "$1" "$2"', "rebind",
                 str(router.fs.root / "etc" / f), f"/etc/{f}"],
                check=True,
            )  # fmt: skip
        router.charon.stroke("rereadall")
        router.charon.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "carol" not in router.charon.stroke("statusall").stdout:
            assert time.monotonic() < deadline, "the starter did not load carol's connection"
            time.sleep(0.2)
    else:
        assert "carol" in (router.fs.root / "etc/swanctl/conf.d/owrt-vpn.conf").read_text()
        # /etc/init.d/swanctl reload on a running service: prepare_env, then this
        reload = router.charon.ns.run(
            "unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$1/etc/swanctl" /etc/swanctl && '
            'mount --bind "$1/etc/strongswan.conf" /etc/strongswan.conf && '
            'mount --bind "$1/etc/strongswan.d" /etc/strongswan.d && '
            'exec swanctl --load-all --noprompt --uri "unix://$2"',
            "reload", str(router.fs.root), str(router.charon.vici_path),
            check=False,
        )  # fmt: skip
        assert reload.returncode == 0, reload.stdout + reload.stderr
    connect(lab, router, topo, tmp_path, "carol", "pc")
