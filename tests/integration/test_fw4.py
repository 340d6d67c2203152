"""The real fw4 ruleset of a router holding our files, loaded and crossed by real packets.

For every firewall4 revision a release series runs (tests/openwrt/fw4.py:
series -> commit -> provenance), a fresh OpenWrt root gets our image
overlay through the first boot (busybox ash, the real uci), plus a WAN port
forward (a UCI ``redirect``); OpenWrt's own fw4 (ucode) renders the ruleset
from it, and ``nft -f`` loads it in a router namespace whose devices are
the ones fw4 was told about (br-lan, eth1). Then packets:

- udp 500 and 4500 from WAN reach the router; other WAN traffic to the
  router is refused as in stock OpenWrt (the LAN reaches the same service);
- LAN to WAN is forwarded and masqueraded;
- traffic routed *to* the VPN pool leaves srcnat unmasqueraded;
- the WAN port forward still works for outside hosts.

``meta ipsec exists`` cannot match without kernel ESP (userspace ESP leaves
no IPsec metadata), so where fw4 put those rules is asserted instead, in
the loaded ruleset: before the ``ct state`` handling in input/forward, before
the zones' NAT jumps in srcnat/dstnat.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sitefile
from openwrt.fw4 import FW4_REVISIONS, LAN_DEV, WAN_DEV, Fw4Revision, render_ruleset
from openwrt.router import RouterRoot
from openwrt.userland import Userland
from owrt_vpn.pki.authority import Pki
from owrt_vpn.render import overlay
from owrt_vpn.site.load import load_site
from requires import require

from .netns import Namespace, run_prefix

pytestmark = pytest.mark.integration

POOL = "10.10.10.0/24"
POOL_HOST = "10.10.10.5"  # stands for a VPN client: reached through the WAN device
ROUTER_LAN, ROUTER_WAN = "192.168.1.1", "203.0.113.1"
LAN_HOST, WAN_HOST = "192.168.1.100", "203.0.113.10"
OUR_SNIPPETS = ("input", "forward", "srcnat", "dstnat")
PORT_FORWARD = """\
set firewall.web_fwd=redirect
set firewall.web_fwd.name='web server'
set firewall.web_fwd.src='wan'
set firewall.web_fwd.proto='tcp'
set firewall.web_fwd.src_dport='8080'
set firewall.web_fwd.dest='lan'
set firewall.web_fwd.dest_ip='192.168.1.100'
set firewall.web_fwd.dest_port='80'
set firewall.web_fwd.target='DNAT'
commit firewall
"""

# A TCP/UDP server that answers every client with the address it saw, and a
# client that prints that answer (or why there was none).
SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(100)
        s.sendto(("peer=" + peer[0]).encode(), peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(8)
while True:
    c, peer = s.accept()
    c.sendall(("peer=" + peer[0]).encode())
    c.close()
"""
CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(1.5)
try:
    if proto == "udp":
        s.sendto(b"hi", (host, port))
        print(s.recvfrom(100)[0].decode())
    else:
        s.connect((host, port))
        print(s.recv(100).decode())
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("no answer: " + type(e).__name__)
"""


def render_site(folder: Path, **settings: object) -> overlay.RenderResult:
    """Site "fw" (router gw, its LAN, POOL, the router as DNS) with ``settings``
    in [site], its PKI, and gw's rendered overlay in ``folder``."""
    (folder / "owrt-vpn.toml").write_text(
        sitefile.site(
            "fw",
            routers=[
                sitefile.router("gw", lan=["192.168.1.0/24"], pool=POOL, dns=[ROUTER_LAN]),
            ],
            users=[sitefile.user("alice", (("phone", "ios"),))],
            **settings,
        )
    )
    site = load_site(folder / "owrt-vpn.toml")
    pki = Pki.open(site)
    pki.init(site, encrypt=False)
    pki.ensure_router(site, site.router("gw"))
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    return overlay.render(site, site.router("gw"), pki, folder / "overlay")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, overlay.RenderResult]:
    folder = tmp_path_factory.mktemp("site")
    return folder, render_site(folder)


@dataclass
class Fw4Router:
    """A router root after its first boot, and the ruleset fw4 rendered for it."""

    root: RouterRoot
    ruleset: Path
    messages: str


def boot_and_render(userland: Userland, rev: Fw4Revision, tree: Path, work: Path) -> Fw4Router:
    fw4 = userland.firewall4(rev.commit)
    r = RouterRoot(work, userland, fw4)
    r.flash(tree)
    boot = r.first_boot()
    assert boot.returncode == 0, boot.stderr
    r.uci_batch(PORT_FORWARD)
    out = render_ruleset(userland, fw4, r.root, f"{ROUTER_LAN}/24", f"{ROUTER_WAN}/24")
    assert out.returncode == 0, out.stderr
    (work / "ruleset.nft").write_text(out.stdout)
    return Fw4Router(r, work / "ruleset.nft", out.stderr)


class Net:
    """Router, LAN host and WAN host namespaces; the router's links named as fw4 knows them."""

    def __init__(self) -> None:
        p = run_prefix()
        self.router, self.lan, self.wan = (Namespace(f"{p}-{n}") for n in ("rt", "lan", "wan"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def up(self) -> Net:
        for ns in (self.router, self.lan, self.wan):
            ns.create()
        for peer, dev, peer_dev in ((self.lan, LAN_DEV, "l0"), (self.wan, WAN_DEV, "w0")):
            subprocess.run(
                ["ip", "link", "add", dev, "netns", self.router.name, "type", "veth",
                 "peer", "name", peer_dev, "netns", peer.name],
                check=True,
            )  # fmt: skip
        self.router.ip("addr", "add", f"{ROUTER_LAN}/24", "dev", LAN_DEV)
        self.router.ip("addr", "add", f"{ROUTER_WAN}/24", "dev", WAN_DEV)
        for dev in (LAN_DEV, WAN_DEV):
            self.router.ip("link", "set", dev, "up")
        self.router.set_sysctls({"net.ipv4.ip_forward": "1"})
        # the pool lies behind the WAN device, as it does behind IPsec policies
        self.router.ip("route", "add", POOL, "via", WAN_HOST)
        self.lan.ip("addr", "add", f"{LAN_HOST}/24", "dev", "l0")
        self.lan.ip("link", "set", "l0", "up")
        self.lan.ip("route", "add", "default", "via", ROUTER_LAN)
        self.wan.ip("addr", "add", f"{WAN_HOST}/24", "dev", "w0")
        self.wan.ip("addr", "add", f"{POOL_HOST}/32", "dev", "lo")
        self.wan.ip("link", "set", "w0", "up")
        # replies to unmasqueraded LAN sources (towards the pool) go back to the router
        self.wan.ip("route", "add", "192.168.1.0/24", "via", ROUTER_WAN)
        return self

    def serve(self, ns: Namespace, proto: str, port: int) -> None:
        self.procs.append(
            subprocess.Popen(ns.argv([sys.executable, "-c", SERVER, proto, str(port)]))
        )

    def ask(self, ns: Namespace, proto: str, host: str, port: int) -> str:
        return ns.run(sys.executable, "-c", CLIENT, proto, host, str(port)).stdout.strip()

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for ns in (self.router, self.lan, self.wan):
            ns.delete()


@pytest.fixture
def net() -> Iterator[Net]:
    require("ip", "nft", "unshare", root="network and mount namespaces")
    n = Net()
    try:
        yield n.up()
    finally:
        n.close()


def load(net: Net, fw: Fw4Router) -> subprocess.CompletedProcess[str]:
    """``nft -f`` the ruleset in the router namespace, the root's nftables.d at its path."""
    snippets = fw.root.root / "usr/share/nftables.d"
    script = (
        "set -e; mkdir -p /usr/share/nftables.d; "
        f"mount --bind {snippets} /usr/share/nftables.d; nft -f {fw.ruleset}"
    )
    return net.router.run(
        "unshare", "-m", "--propagation", "private", "sh", "-c", script, check=False
    )


def chain(net: Net, name: str) -> list[str]:
    out = net.router.run("nft", "list", "chain", "inet", "fw4", name).stdout
    return [line.strip() for line in out.splitlines()]


def index(lines: list[str], needle: str) -> int:
    found = [i for i, line in enumerate(lines) if needle in line]
    assert found, f"{needle!r} not in:\n" + "\n".join(lines)
    return found[0]


REVISIONS = {rev.series: rev for rev in FW4_REVISIONS}


@pytest.mark.parametrize("series", list(REVISIONS))
def test_fw4_includes_our_rules_where_they_must_be(
    series: str,
    lab: tuple[Path, overlay.RenderResult],
    openwrt: Userland,
    net: Net,
    tmp_path: Path,
) -> None:
    rev = REVISIONS[series]
    fw = boot_and_render(openwrt, rev, lab[1].root, tmp_path)
    for snippet in OUR_SNIPPETS:
        path = f"/usr/share/nftables.d/chain-pre/{snippet}/owrt-vpn.nft"
        assert f"Automatically including '{path}'" in fw.messages
        assert fw.ruleset.read_text().count(f'include "{path}"') == 1
    loaded = load(net, fw)
    assert loaded.returncode == 0, loaded.stderr
    inp = chain(net, "input")
    ours = index(inp, "owrt-vpn: from VPN clients to the router")
    assert index(inp, "Accept traffic from loopback") < ours < index(inp, "ct state")
    fwd = chain(net, "forward")
    assert index(fwd, "owrt-vpn: forward traffic of VPN clients") < index(fwd, "ct state")
    snat = chain(net, "srcnat")
    assert index(snat, "owrt-vpn: no NAT towards VPN clients") < index(snat, "jump srcnat_wan")
    dnat = chain(net, "dstnat")
    ours = index(dnat, "owrt-vpn: port forwards are not for VPN clients")
    assert ours < index(dnat, "jump dstnat_wan")
    assert "meta ipsec exists accept" in dnat[ours]
    # the port forward is in the zone's chain, behind our rule
    assert any("dport 8080" in line and "dnat" in line for line in chain(net, "dstnat_wan"))
    # our UCI rules became fw4 rules of the wan zone's input
    wan_in = "\n".join(chain(net, "input_wan"))
    for name in ("owrt-vpn IKE", "owrt-vpn IKE NAT-T and ESP in UDP", "owrt-vpn ESP"):
        assert f'comment "!fw4: {name}"' in wan_in


# One packet run per distinct firewall4 commit (several series share one).
COMMITS: dict[str, list[str]] = {}
for _rev in FW4_REVISIONS:
    COMMITS.setdefault(_rev.commit, []).append(_rev.series)


@pytest.mark.parametrize(
    "commit", list(COMMITS), ids=["+".join(series) for series in COMMITS.values()]
)
def test_packets_through_the_real_fw4_ruleset(
    commit: str,
    lab: tuple[Path, overlay.RenderResult],
    openwrt: Userland,
    net: Net,
    tmp_path: Path,
) -> None:
    rev = REVISIONS[COMMITS[commit][0]]
    fw = boot_and_render(openwrt, rev, lab[1].root, tmp_path)
    loaded = load(net, fw)
    assert loaded.returncode == 0, loaded.stderr
    for port in (500, 4500):
        net.serve(net.router, "udp", port)
    net.serve(net.router, "tcp", 22)
    net.serve(net.wan, "tcp", 8000)
    net.serve(net.lan, "tcp", 80)
    time.sleep(0.5)
    # IKE and NAT-T from the internet reach the router
    assert net.ask(net.wan, "udp", ROUTER_WAN, 500) == f"peer={WAN_HOST}"
    assert net.ask(net.wan, "udp", ROUTER_WAN, 4500) == f"peer={WAN_HOST}"
    # anything else from WAN is refused, as stock OpenWrt does; the LAN gets in
    assert net.ask(net.wan, "tcp", ROUTER_WAN, 22) in ("refused", "no answer: TimeoutError")
    assert net.ask(net.lan, "tcp", ROUTER_LAN, 22) == f"peer={LAN_HOST}"
    # LAN to WAN: forwarded and masqueraded
    assert net.ask(net.lan, "tcp", WAN_HOST, 8000) == f"peer={ROUTER_WAN}"
    # towards the VPN pool: forwarded with the LAN source kept (no masquerade)
    assert net.ask(net.lan, "tcp", POOL_HOST, 8000) == f"peer={LAN_HOST}"
    # the WAN port forward still works for outside hosts
    assert net.ask(net.wan, "tcp", ROUTER_WAN, 8080) == f"peer={WAN_HOST}"


def test_fw4_refuses_a_broken_snippet(
    lab: tuple[Path, overlay.RenderResult], openwrt: Userland, net: Net, tmp_path: Path
) -> None:
    """The load is a real check: a snippet nft cannot parse fails it, naming the file."""
    fw = boot_and_render(openwrt, REVISIONS["master"], lab[1].root, tmp_path)
    snippet = fw.root.root / "usr/share/nftables.d/chain-pre/forward/owrt-vpn.nft"
    snippet.write_text("meta ipsec existz accept\n")
    loaded = load(net, fw)
    assert loaded.returncode != 0
    assert "owrt-vpn.nft" in loaded.stderr


def test_dns_ping_router_access_in_the_real_fw4_ruleset(
    openwrt: Userland, net: Net, tmp_path: Path
) -> None:
    """`vpn_router_access = "dns-ping"`: VPN clients get the router's DNS and ping, nothing else."""
    folder = tmp_path / "site"
    folder.mkdir()
    rendered = render_site(folder, vpn_router_access="dns-ping")
    fw = boot_and_render(openwrt, REVISIONS["24.10"], rendered.root, tmp_path / "work")
    loaded = load(net, fw)
    assert loaded.returncode == 0, loaded.stderr
    inp = chain(net, "input")
    ours = [
        line.split(" comment ")[0]
        for line in inp
        if line.startswith("meta ipsec exists") or line.startswith("meta secpath exists")
    ]
    assert [r.replace("meta secpath exists", "meta ipsec exists") for r in ours] == [
        "meta ipsec exists udp dport 53 accept",
        "meta ipsec exists tcp dport 53 accept",
        "meta ipsec exists icmp type echo-request accept",
        "meta ipsec exists icmpv6 type echo-request accept",
        "meta ipsec exists ct state established,related accept",
        "meta ipsec exists drop",
    ]
    assert index(inp, "udp dport 53") < index(inp, "jump input_wan")
