"""What we emit, parsed by the real tools: the most hostile values the allow-list lets through.

The allow-list (site/allowlist.py) keeps control characters out of every
key, and everything beyond ASCII out of keys that reach scripts. What is
left for the escaping of each language is the printable ASCII a
site may legitimately hold (quotes, backslashes, ``$``, backticks, ``;``,
``#``, braces, ``<&>``) and, in an organization or a Wi-Fi name, any
printable Unicode (PowerShell's ’ ‘ included). This site holds all of them,
and each file is read back by the parser that will read it in the field:
plistlib (.mobileconfig), json (.sswan), GLib's keyfile parser
(.nmconnection, through Debian's python3-gi), busybox sh (the installer,
uci-defaults and firewall3 scripts), our UCI reader, ``nft -c`` (the fw4
snippets, in a namespace), strongSwan's own swanctl (both swanctl.conf
files, loaded into a charon) and its starter (ipsec.conf). There is no
PowerShell here: for the .ps1 the allow-list is the proof, with one test
per refused character class.
"""

from __future__ import annotations

import json
import plistlib
import re
import subprocess
from pathlib import Path

import pytest

import sitefile
from bundlekit import Dev, Usr, make_pki, make_site
from openwrt.userland import Userland
from owrt_vpn.bundles import writer
from owrt_vpn.bundles.windows import ps_quote
from owrt_vpn.pki.authority import Pki
from owrt_vpn.render import overlay, packages, uci
from requires import require

ORG = 'O\'Brien "VPN" $(id) `x` ; # {a} \\n \u2019\u2018\u201a\u201b <&> caf\u00e9'
SSID = 'Caf\u00e9 "H" <&>$(x)\'\u2018\u2019\\#\U0001f4f6'
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi (GLib's keyfile parser)

OFFICE = sitefile.router(
    "office.v6_x",
    server_id="203.0.113.7",
    lan=["10.88.0.0/24", "fd00:88::/64"],
    pool="10.20.20.0/24",
    pool6="fd00:20:20::/64",
    dns=["10.88.0.1", "fd00:88::1"],
    nbns=["10.88.0.2"],
    tunnel="split",
)
USERS = [
    Usr("a.l-i_ce", "pubkey", (Dev("ip.hone", "ios", {"on_demand": True,
        "trusted_ssids": [SSID, "plain"]}), Dev("lap_top", "linux"), Dev("pc", "windows"))),
    Usr("bob", "eap-mschapv2", (Dev("tab", "android-strongswan"), Dev("mac", "macos"),
        Dev("nm", "linux"))),
]  # fmt: skip


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hostile site rendered: bundles of every platform and the router's overlay."""
    folder = tmp_path_factory.mktemp("hostile")
    site = make_site(folder, USERS, routers=[OFFICE], settings={"organization": ORG})
    pki = make_pki(site)
    out = folder / "dist"
    writer.build(site, pki, out)
    root = folder / "overlay"
    overlay.render(site, site.routers[0], pki, root)
    plugins = folder / "plugins.json"  # what the router's charon loads
    plugins.write_text(json.dumps(list(packages.charon_plugins(site, site.routers[0]))))
    return {
        "clients": out / site.name / "clients",
        "overlay": root,
        "plugins": plugins,
        "site_file": folder / "owrt-vpn.toml",
    }


def hostile_pki(site: object) -> Pki:
    """The PKI the fixture made (read again from the site folder)."""
    return Pki.open(site)  # type: ignore[arg-type]


def _files(root: Path, pattern: str) -> list[Path]:
    found = sorted(root.rglob(pattern))
    assert found, f"no {pattern} under {root}"
    return found


def test_mobileconfig_round_trips_through_plistlib(hostile: dict[str, Path]) -> None:
    def strings(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    found: list[str] = []
    for path in _files(hostile["clients"], "*.mobileconfig"):
        found += strings(plistlib.loads(path.read_bytes()))
    assert SSID in found  # the Wi-Fi name exactly, quotes and emoji included


def test_sswan_is_json(hostile: dict[str, Path]) -> None:
    for path in _files(hostile["clients"], "*.sswan"):
        doc = json.loads(path.read_bytes())
        assert doc["remote"]["addr"] == "203.0.113.7"


def test_nmconnection_through_glib_keyfile(hostile: dict[str, Path]) -> None:
    require(SYSTEM_PYTHON)
    code = (
        "import json, sys\n"
        "import gi\n"
        "gi.require_version('GLib', '2.0')\n"
        "from gi.repository import GLib\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    kf = GLib.KeyFile()\n"
        "    kf.load_from_file(path, GLib.KeyFileFlags.NONE)\n"
        "    out[path] = {g: {k: kf.get_string(g, k) for k in kf.get_keys(g)[0]}\n"
        "                 for g in kf.get_groups()[0]}\n"
        "print(json.dumps(out))\n"
    )
    paths = [str(p) for p in _files(hostile["clients"], "*.nmconnection")]
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", code, *paths], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    parsed = json.loads(proc.stdout)
    for groups in parsed.values():
        assert groups["vpn"]["address"] == "203.0.113.7"
        assert groups["connection"]["type"] == "vpn"


def test_router_scripts_parse_in_busybox_sh(hostile: dict[str, Path]) -> None:
    require("busybox")
    scripts = [p for p in hostile["overlay"].rglob("*") if p.is_file()
               and p.read_bytes()[:2] == b"#!"]  # fmt: skip
    assert len(scripts) >= 2, scripts
    for path in scripts:
        proc = subprocess.run(["busybox", "sh", "-n", str(path)], capture_output=True, check=False)
        assert proc.returncode == 0, (path, proc.stderr)


def test_uci_batches_read_back(hostile: dict[str, Path]) -> None:
    batches = _files(hostile["overlay"], "*.batch")
    for path in batches:
        text = path.read_text()
        assert "\r" not in text
        for line in text.splitlines():
            uci._tokens(line)  # every line tokenises like libuci's parser


def test_readmes_hold_the_organization_on_one_line(hostile: dict[str, Path]) -> None:
    for path in _files(hostile["clients"], "README.md"):
        text = path.read_text()
        assert "\r" not in text and "\x1b" not in text


def test_ps1_quotes_every_powershell_quote(hostile: dict[str, Path]) -> None:
    for path in _files(hostile["clients"], "*.ps1"):
        text = path.read_bytes().decode("utf-8-sig")
        # Everything in the script is ASCII: no value can hold a quote PowerShell
        # would read as the end of a string (the organization goes into the
        # certificates, not the script).
        assert text.isascii(), path


# --- the .ps1: the allow-list is the proof, one test per refused class


@pytest.mark.parametrize(
    "char",
    ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"],
    ids=["lf", "cr", "nul", "esc", "del", "nel", "line-sep", "para-sep"],
)
def test_ps_quote_refuses_control_characters(char: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        ps_quote(f"a{char}b")


@pytest.mark.parametrize("quote", ["'", "\u2018", "\u2019", "\u201a", "\u201b"])
def test_ps_quote_doubles_every_single_quote(quote: str) -> None:
    assert ps_quote(f"a{quote}b") == f"'a{quote}{quote}b'"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("fd00:1::%x\u2019;calc;\u2018/64", "non-ASCII"),
        ("fd00:1::%eth0/64", "zone IDs"),
        ("192.168.1.0/24\n", "control character"),
        ("192.168.1.0/24\u202e", "control character"),
    ],
    ids=["curly-quote", "zone-id", "newline", "bidi"],
)
def test_values_that_reach_the_ps1_are_refused(value: str, fragment: str, tmp_path: Path) -> None:
    from owrt_vpn.errors import ConfigError
    from owrt_vpn.site.load import parse_site

    text = sitefile.site(
        routers=[sitefile.router(lan=["192.168.1.0/24", value], tunnel="split")],
        users=[sitefile.user(devices=[("pc", "windows")])],
    )
    with pytest.raises(ConfigError) as info:
        parse_site(text, tmp_path / "owrt-vpn.toml")
    assert fragment in str(info.value)


# --- the router's firewall and strongSwan configuration, read by nft and swanctl


@pytest.mark.integration
def test_fw4_snippets_pass_nft_check(
    hostile: dict[str, Path], tmp_path: Path, openwrt: Userland
) -> None:
    """The hostile site's snippets in the ruleset the real fw4 renders, checked by `nft -c`."""
    require("nft", "ip", "unshare", root="a network namespace for nft -c")
    from integration.test_fw4 import REVISIONS, boot_and_render

    fw = boot_and_render(openwrt, REVISIONS["24.10"], hostile["overlay"], tmp_path / "fw4")
    snippets = fw.root.root / "usr/share/nftables.d"
    assert "fd00:20:20::/64" in (snippets / "chain-pre/srcnat/owrt-vpn.nft").read_text()
    name = f"owrtvpn-hv-{__import__('secrets').token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        script = (
            "set -e; mkdir -p /usr/share/nftables.d; "
            f"mount --bind {snippets} /usr/share/nftables.d; nft -c -f {fw.ruleset}"
        )
        argv = ["ip", "netns", "exec", name, "unshare", "-m", "--propagation", "private"]
        proc = subprocess.run(
            [*argv, "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.integration
def test_swanctl_loads_router_and_linux_configs(hostile: dict[str, Path], tmp_path: Path) -> None:
    require("swanctl", "ip", "/usr/sbin/charon-systemd", root="a namespace for charon")
    import shutil

    from integration.charon import Charon, debian_load_list
    from integration.liverouter import CLIENT_PLUGINS
    from integration.netns import Namespace, run_prefix

    ns = Namespace(f"{run_prefix()}hv")
    ns.create()
    try:
        # The router's file set as the installer lays it out, in one charon.
        etc = next(hostile["overlay"].rglob("files/etc/swanctl"))
        plugins = json.loads(hostile["plugins"].read_text())
        charon = Charon(ns, tmp_path / "router", debian_load_list(plugins))
        charon.prepare()
        shutil.copytree(etc, charon.swanctl_dir, dirs_exist_ok=True)
        (charon.swanctl_dir / "swanctl.conf").write_text("include conf.d/*.conf\n")
        charon.start()
        try:
            out = charon.load_all()
            assert "loaded connection" in out and "failed" not in out, out
            conns = charon.swanctl("--list-conns").stdout
            assert "10.88.0.0/24 fd00:88::/64" in conns, conns
            pools = charon.swanctl("--list-pools").stdout
            assert "fd00:20:20::" in pools, pools
        finally:
            charon.stop()
        # Each Linux bundle's swanctl.conf, as its README installs it.
        for conf in _files(hostile["clients"], "*-swanctl.conf"):
            load = debian_load_list(CLIENT_PLUGINS, extra=["pkcs8"])
            client = Charon(ns, tmp_path / conf.stem, load,
                            name=conf.stem)  # fmt: skip
            client.prepare()
            # Exactly the README's `sudo install ... /etc/swanctl/...` lines.
            readme = (conf.parent / "README.md").read_text()
            steps = re.findall(r"^sudo install -m \d+ (\S+) /etc/swanctl/(\S+)$", readme, re.M)
            assert len(steps) >= 2, readme
            for src, dest in steps:
                shutil.copy(conf.parent / src, client.swanctl_dir / dest)
            (client.swanctl_dir / "swanctl.conf").write_text("include conf.d/*.conf\n")
            client.start()
            try:
                out = client.load_all()
                assert "loaded connection" in out and "failed" not in out, (conf, out)
            finally:
                client.stop()
    finally:
        ns.kill_all()
        ns.delete()


@pytest.mark.integration
def test_legacy_ipsec_conf_loads_into_the_starter(
    hostile: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ipsec.conf/ipsec.secrets style (OpenWrt 21.02) of the same site, read by starter."""
    require("ip", "/usr/lib/ipsec/starter", "/usr/lib/ipsec/stroke", root="a namespace")
    from integration.charon import StarterCharon, debian_load_list
    from integration.netns import Namespace, run_prefix
    from owrt_vpn.site.load import load_site

    site = load_site(hostile["site_file"])
    router = site.routers[0]
    res = overlay.render(site, router, hostile_pki(site), tmp_path / "ov", config_style="ipsec")
    etc = res.file_set / "etc"
    assert (etc / "ipsec.conf").is_file()
    plugins = list(packages.charon_plugins(site, router, "ipsec"))
    sd = etc / "strongswan.d"
    ns = Namespace(f"{run_prefix()}hs")
    ns.create()
    try:
        daemon = StarterCharon(
            ns, tmp_path / "starter", debian_load_list(plugins), "starter",
            sorted(sd.glob("*.conf")) if sd.is_dir() else [],
            sorted((sd / "charon").glob("*.conf")) if (sd / "charon").is_dir() else [],
            etc=etc,
        )  # fmt: skip
        daemon.prepare()
        daemon.start()
        try:
            status = daemon.status()
        finally:
            daemon.stop()
    finally:
        ns.kill_all()
        ns.delete()
    conns = re.findall(r"^(\S+):\s+%any\.\.\.%any", status, re.M)
    assert len(conns) >= 2, status
    assert "10.88.0.0/24" in status and "fd00:88::/64" in status, status
