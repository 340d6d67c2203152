"""Our fw3 include (19.07/21.02) run for real: busybox ash, Debian's iptables, fw3's chains.

OpenWrt's firewall3 itself cannot run here (it links OpenWrt's patched
iptables libraries, which Debian lacks): the namespace gets the user chains
fw3 creates and hooks (``input_rule``, ``forwarding_rule``, ``output_rule``,
nat ``prerouting_rule``/``postrouting_rule``, jumped to first from the
built-in chains, before the zones' chains), and fw3's way of running an
include (``type script``: executed by the shell on every start and reload).
Proven: every rule is added, exactly once over repeated reloads, with the
ipsec policy match, and the nat exclusions sit before the zones' NAT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import sitefile
from openwrt.router import applet_path, busybox
from openwrt.userland import Userland
from owrt_vpn.pki.authority import Pki
from owrt_vpn.render import overlay
from owrt_vpn.site.load import load_site
from requires import require

from .netns import Namespace, run_prefix

pytestmark = pytest.mark.integration

# fw3's chain layout (what `fw3 start` creates before it runs includes)
FW3_CHAINS = """\
*filter
:input_rule - [0:0]
:forwarding_rule - [0:0]
:output_rule - [0:0]
:zone_wan_input - [0:0]
-A INPUT -j input_rule
-A INPUT -i eth1 -j zone_wan_input
-A FORWARD -j forwarding_rule
-A OUTPUT -j output_rule
COMMIT
*nat
:prerouting_rule - [0:0]
:postrouting_rule - [0:0]
:zone_wan_prerouting - [0:0]
:zone_wan_postrouting - [0:0]
-A PREROUTING -j prerouting_rule
-A PREROUTING -i eth1 -j zone_wan_prerouting
-A POSTROUTING -j postrouting_rule
-A POSTROUTING -o eth1 -j zone_wan_postrouting
-A zone_wan_prerouting -p tcp --dport 8080 -j DNAT --to-destination 192.168.1.100:80
-A zone_wan_postrouting -j MASQUERADE
COMMIT
"""


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require("ip", "iptables", "iptables-save", "iptables-restore", root="a network namespace")
    n = Namespace(f"{run_prefix()}-fw3")
    n.create()
    try:
        yield n
    finally:
        n.delete()


def run_include(
    ns: Namespace, openwrt: Userland, tmp_path: Path, times: int, **settings: object
) -> None:
    """Render site "f3" (router "old", 21.02: fw3) with ``settings`` in [site], and run
    its firewall include ``times`` times under busybox ash in ``ns`` (fw3's chains set up)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "owrt-vpn.toml").write_text(
        sitefile.site(
            "f3",
            routers=[sitefile.router("old", release="21.02.7", pool="10.10.20.0/24")],
            users=[sitefile.user("alice", (("phone", "ios"),))],
            **settings,
        )
    )
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    site = load_site(folder / "owrt-vpn.toml")
    pki = Pki.open(site)
    pki.init(site, encrypt=False)
    pki.ensure_router(site, site.router("old"))
    res = overlay.render(site, site.router("old"), pki, tmp_path / "ov")
    script = res.file_set / "usr/share/owrt-vpn/firewall3.sh"
    path, _ = applet_path(tmp_path / "bin", openwrt.uci)
    for tool in ("iptables", "ip6tables"):
        (path / tool).symlink_to(f"/usr/sbin/{tool}")
    ns.run("iptables-restore", "--noflush", input=FW3_CHAINS)
    for _ in range(times):  # fw3 runs the include on every start and reload
        run = subprocess.run(
            # the host's ip (the PATH below is the router's: busybox's ip there)
            [shutil.which("ip") or "ip", "netns", "exec", ns.name, busybox(), "ash", str(script)],
            env={"PATH": str(path)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr


def test_fw3_include_adds_each_rule_once_before_the_zones(
    ns: Namespace, openwrt: Userland, tmp_path: Path
) -> None:
    run_include(ns, openwrt, tmp_path, 3)
    saved = ns.run("iptables-save").stdout.splitlines()
    rules = [line for line in saved if "-m policy" in line]
    assert sorted(rules) == sorted(
        [
            "-A input_rule -m policy --dir in --pol ipsec --proto esp -j ACCEPT",
            "-A forwarding_rule -m policy --dir in --pol ipsec --proto esp -j ACCEPT",
            "-A forwarding_rule -m policy --dir out --pol ipsec --proto esp -j ACCEPT",
            "-A output_rule -m policy --dir out --pol ipsec --proto esp -j ACCEPT",
            "-A postrouting_rule -m policy --dir out --pol ipsec -j ACCEPT",
            "-A prerouting_rule -m policy --dir in --pol ipsec -j ACCEPT",
        ]
    )
    # the user chains come first: our ACCEPTs end the nat chains before the zones' NAT
    nat = saved[saved.index("*nat") :]
    pre = [line for line in nat if line.startswith("-A PREROUTING")]
    assert pre == [
        "-A PREROUTING -j prerouting_rule",
        "-A PREROUTING -i eth1 -j zone_wan_prerouting",
    ]
    post = [line for line in nat if line.startswith("-A POSTROUTING")]
    assert post[0] == "-A POSTROUTING -j postrouting_rule"


def test_fw3_dns_ping_router_access_in_order(
    ns: Namespace, openwrt: Userland, tmp_path: Path
) -> None:
    """`vpn_router_access = "dns-ping"` on fw3: DNS and ping from VPN clients, then drop."""
    run_include(ns, openwrt, tmp_path, 2, vpn_router_access="dns-ping")
    listed = ns.run("iptables", "-S", "input_rule").stdout.splitlines()[1:]
    policy = "-m policy --dir in --pol ipsec --proto esp"
    assert listed == [
        f"-A input_rule -p udp {policy} -m udp --dport 53 -j ACCEPT",
        f"-A input_rule -p tcp {policy} -m tcp --dport 53 -j ACCEPT",
        f"-A input_rule -p icmp {policy} -m icmp --icmp-type 8 -j ACCEPT",
        f"-A input_rule {policy} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A input_rule {policy} -j DROP",
    ]
