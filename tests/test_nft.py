"""The fw4 snippets, checked by the kernel: ``nft -c`` inside a table laid out like firewall4's.

The rule semantics (``meta ipsec exists`` = arrived through an IPsec SA)
cannot be proven with traffic here: userspace ESP (kernel-libipsec) leaves no
IPsec metadata on packets (reference/openwrt.md). So the snippets go through
``nft -c`` (parsed, then checked by the kernel, nothing applied) in a fresh
network namespace, included at firewall4's include points, and the unit
tests in test_overlay.py assert what they match.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from owrt_vpn.render import overlay
from requires import requires
from test_overlay import EPOCH, SITE_TOML, Lab, make_lab

pytestmark = [
    pytest.mark.integration,
    requires("nft", "ip", root="a network namespace for nft -c"),
]

CHAINS = ("input", "forward", "srcnat")


def fw4_ruleset(snippets: Path) -> str:
    """A ruleset shaped like firewall4's (same table, chains, hooks and include points)."""

    def inc(chain: str) -> str:
        files = sorted((snippets / chain).glob("*.nft"))
        return "".join(f'\t\tinclude "{f}"\n' for f in files)

    return f"""\
table inet fw4
flush table inet fw4

table inet fw4 {{
\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
\t\tiifname "lo" accept comment "!fw4: Accept traffic from loopback"
{inc("input")}\t\tct state established,related accept
\t\tiifname "br-lan" jump input_lan
\t\tiifname "wan" jump input_wan
\t}}

\tchain forward {{
\t\ttype filter hook forward priority filter; policy drop;
{inc("forward")}\t\tct state established,related accept
\t\tiifname "br-lan" jump forward_lan
\t\tiifname "wan" jump forward_wan
\t}}

\tchain output {{
\t\ttype filter hook output priority filter; policy accept;
\t\toifname "lo" accept
\t\tct state established,related accept
\t}}

\tchain input_lan {{
\t\tjump accept_from_lan
\t}}

\tchain input_wan {{
\t\tmeta nfproto ipv4 udp dport 68 accept comment "!fw4: Allow-DHCP-Renew"
\t\tjump reject_from_wan
\t}}

\tchain forward_lan {{
\t\tjump accept_to_wan
\t}}

\tchain forward_wan {{
\t\tjump drop_to_wan
\t}}

\tchain accept_from_lan {{
\t\tiifname "br-lan" counter accept
\t}}

\tchain accept_to_wan {{
\t\tmeta nfproto ipv4 oifname "wan" ct state invalid counter drop
\t\toifname "wan" counter accept
\t}}

\tchain reject_from_wan {{
\t\tiifname "wan" counter reject
\t}}

\tchain drop_to_wan {{
\t\toifname "wan" counter drop
\t}}

\tchain dstnat {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t}}

\tchain srcnat {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
{inc("srcnat")}\t\toifname "wan" jump srcnat_wan
\t}}

\tchain srcnat_wan {{
\t\tmeta nfproto ipv4 masquerade
\t}}
}}
"""


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh, empty network namespace (removed afterwards, also on failure)."""
    name = f"owrtvpn-nft-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft_check(ns: str, ruleset: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-c", "-f", str(ruleset)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("site"))


def snippets_of(lab: Lab, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    res = overlay.render(lab.site, lab.site.router("gw"), lab.pki, tmp / "ov")
    return res.file_set / "usr/share/nftables.d/chain-pre"


def test_snippets_load_into_a_fw4_table(
    lab: Lab, netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snippets = snippets_of(lab, tmp_path, monkeypatch)
    assert sorted(p.name for p in snippets.iterdir()) == sorted(CHAINS)
    ruleset = tmp_path / "fw4.nft"
    ruleset.write_text(fw4_ruleset(snippets))
    for chain in CHAINS:
        assert f"chain-pre/{chain}/owrt-vpn.nft" in ruleset.read_text()
    proc = nft_check(netns, ruleset)
    assert proc.returncode == 0, proc.stderr
    # nothing was applied: -c only checks
    listed = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "fw4" not in listed.stdout


def test_ipv4_only_site_loads_too(
    tmp_path: Path, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make_lab(tmp_path / "site", SITE_TOML.replace('pool6 = "fd00:10:10::/64"\n', ""))
    snippets = snippets_of(lab, tmp_path, monkeypatch)
    assert "ip6" not in (snippets / "srcnat/owrt-vpn.nft").read_text()
    ruleset = tmp_path / "fw4.nft"
    ruleset.write_text(fw4_ruleset(snippets))
    proc = nft_check(netns, ruleset)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "broken",
    ["meta ipsec existz accept", "ip daddr 10.10.10.0/33 accept", "ip saddr accept"],
)
def test_the_check_rejects_a_broken_snippet(
    lab: Lab, netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    snippets = snippets_of(lab, tmp_path, monkeypatch)
    (snippets / "forward/owrt-vpn.nft").write_text(broken + "\n")
    ruleset = tmp_path / "fw4.nft"
    ruleset.write_text(fw4_ruleset(snippets))
    proc = nft_check(netns, ruleset)
    assert proc.returncode != 0
    assert "owrt-vpn.nft" in proc.stderr


def dns_ping_lab(tmp_path: Path) -> Lab:
    """The test site with vpn_router_access = "dns-ping" for every router."""
    text = SITE_TOML.replace(
        'server_key = "ecdsa-p256"\n',
        'server_key = "ecdsa-p256"\nvpn_router_access = "dns-ping"\n',
        1,
    )
    assert 'vpn_router_access = "dns-ping"' in text
    return make_lab(tmp_path / "site", text)


def test_dns_ping_access_loads_into_a_fw4_table(
    tmp_path: Path, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = dns_ping_lab(tmp_path)
    snippets = snippets_of(lab, tmp_path, monkeypatch)
    rules = [
        line
        for line in (snippets / "input/owrt-vpn.nft").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [r.split(" comment ")[0] for r in rules] == [
        "meta ipsec exists udp dport 53 accept",
        "meta ipsec exists tcp dport 53 accept",
        "meta ipsec exists icmp type echo-request accept",
        "meta ipsec exists icmpv6 type echo-request accept",
        "meta ipsec exists ct state established,related accept",
        "meta ipsec exists drop",
    ]
    ruleset = tmp_path / "fw4.nft"
    ruleset.write_text(fw4_ruleset(snippets))
    proc = nft_check(netns, ruleset)
    assert proc.returncode == 0, proc.stderr


@requires("iptables", "ip6tables", root="a network namespace for iptables")
def test_dns_ping_access_fw3_rules_load_in_order(
    tmp_path: Path, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fw3 include, run for real against fw3's user chains in a fresh namespace.
    lab = dns_ping_lab(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    res = overlay.render(lab.site, lab.site.router("old"), lab.pki, tmp_path / "ov")
    script = res.file_set / "usr/share/owrt-vpn/firewall3.sh"

    def ns(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
        )

    for chain in ("input_rule", "forwarding_rule", "output_rule"):
        assert ns("iptables", "-N", chain).returncode == 0
    assert ns("iptables", "-t", "nat", "-N", "postrouting_rule").returncode == 0
    for _ in range(2):  # fw3 runs includes on every reload: no duplicates
        proc = ns("sh", str(script))
        assert proc.returncode == 0, proc.stderr
    listed = ns("iptables", "-S", "input_rule").stdout.splitlines()[1:]
    policy = "-m policy --dir in --pol ipsec --proto esp"
    assert listed == [
        f"-A input_rule -p udp {policy} -m udp --dport 53 -j ACCEPT",
        f"-A input_rule -p tcp {policy} -m tcp --dport 53 -j ACCEPT",
        f"-A input_rule -p icmp {policy} -m icmp --icmp-type 8 -j ACCEPT",
        f"-A input_rule {policy} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A input_rule {policy} -j DROP",
    ]
