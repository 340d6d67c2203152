"""The bad-input corpus: one site file or command line per failure mode.

Every case runs the real CLI and asserts: the exit status (2 for bad input),
the exact ``<file>: <key.path>: `` prefix (plus a fragment of the problem),
one error line, no traceback, and no new or changed files in the working
folder. The CLI path itself (a subprocess) is covered by the first cases;
the rest run ``owrt_vpn.cli.main`` in-process to stay fast (see
:func:`run_inprocess`). docs/security.md reports the corpus size.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import sitefile
from conftest import CliRunner
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrtcli import OWRT_ENV
from pki_testlib import key_pem, self_signed_ca

NEXT_PKI = "next: `owrt-vpn pki init` (creates the CA and the certificates)\n"

# A valid site: alice (pubkey, iphone + windows laptop), bob (EAP, android).
BASE = """\
[site]
name = "home"
crypto = "compat"

[[routers]]
name = "gw"
server_id = "vpn.example.org"
release = "24.10.2"
target = "bcm53xx"
subtarget = "generic"
device = "phicomm_k3"
lan = ["192.168.1.0/24"]
pool = "10.10.10.0/24"
dns = ["192.168.1.1"]
tunnel = "full"

[routers.management]
address = "192.168.1.1"
port = 22

[[users]]
name = "alice"
auth = "pubkey"

[[users.devices]]
name = "phone"
platform = "ios"

[[users.devices]]
name = "laptop"
platform = "windows"

[[users]]
name = "bob"
auth = "eap-mschapv2"

[[users.devices]]
name = "tablet"
platform = "android"
"""

SECOND_ROUTER = """
[[routers]]
name = "gw"
server_id = "vpn2.example.org"
release = "24.10.2"
target = "bcm53xx"
device = "phicomm_k3"
pool = "10.10.20.0/24"
"""


@dataclass(frozen=True)
class Case:
    """A site file made from BASE by text replacements, and what check must say."""

    id: str
    path: str
    fragment: str
    replace: tuple[tuple[str, str], ...] = ()
    append: str = ""
    text: str | None = None
    also: tuple[str, ...] = field(default=())

    def render(self) -> str:
        """The site file text (each replacement must apply: no silent no-op case)."""
        if self.text is not None:
            return self.text
        out = BASE
        for old, new in self.replace:
            assert out.count(old) >= 1, f"{self.id}: {old!r} not in the base site"
            out = out.replace(old, new, 1)
        return out + self.append


def _line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


_TOML_BAD_VALUE = BASE.replace("port = 22", "port = ")
_TOML_DUP_KEY = BASE.replace('crypto = "compat"', 'crypto = "compat"\ncrypto = "modern"')

CASES = [
    # --- malformed TOML: the line is reported
    Case(
        "toml-missing-value",
        f"line {_line_of(_TOML_BAD_VALUE, 'port = ')}",
        "malformed TOML",
        text=_TOML_BAD_VALUE,
    ),
    Case(
        "toml-duplicate-key",
        f"line {_line_of(_TOML_DUP_KEY, 'crypto = ' + chr(34) + 'modern' + chr(34))}",
        "malformed TOML",
        text=_TOML_DUP_KEY,
    ),
    Case(
        "toml-unterminated-string",
        f"line {BASE.count(chr(10)) + 1}",
        "malformed TOML",
        append='note = "never closed',
    ),
    # --- unknown keys at every level, with "did you mean"
    Case("unknown-top-key", "rooters", "did you mean 'routers'", append="[rooters]\nx = 1\n"),
    Case(
        "unknown-site-key",
        "site.crytpo",
        "did you mean 'crypto'",
        replace=(('crypto = "compat"', 'crytpo = "modern"'),),
    ),
    Case(
        "unknown-router-key",
        "routers[gw].tunel",
        "did you mean 'tunnel'",
        replace=(('tunnel = "full"', 'tunnel = "full"\ntunel = "split"'),),
    ),
    Case(
        "unknown-management-key",
        "routers[gw].management.adress",
        "did you mean 'address'",
        replace=(("port = 22", 'port = 22\nadress = "192.168.1.2"'),),
    ),
    Case(
        "unknown-user-key",
        "users[bob].auht",
        "did you mean 'auth'",
        replace=(('auth = "eap-mschapv2"', 'auth = "eap-mschapv2"\nauht = "pubkey"'),),
    ),
    Case(
        "unknown-device-key",
        "users[alice].devices[laptop].shared_identiy",
        "did you mean 'shared_identity'",
        replace=(('platform = "windows"', 'platform = "windows"\nshared_identiy = true'),),
    ),
    # --- structure
    Case(
        "missing-site-table",
        "site",
        "missing",
        replace=(('[site]\nname = "home"\ncrypto = "compat"\n', ""),),
    ),
    Case(
        "missing-site-name",
        "site.name",
        "required key is missing",
        replace=(('name = "home"\n', ""),),
    ),
    Case(
        "routers-not-array",
        "routers",
        "array of tables",
        text='[site]\nname = "home"\n\n[routers]\nname = "gw"\n',
    ),
    Case("no-routers", "routers", "at least one", text='[site]\nname = "home"\n'),
    Case(
        "management-not-table",
        "routers[gw].management",
        "must be a table",
        replace=(
            ('[routers.management]\naddress = "192.168.1.1"\nport = 22\n', ""),
            ('tunnel = "full"', 'tunnel = "full"\nmanagement = "192.168.1.1"'),
        ),
    ),
    Case(
        "user-without-devices",
        "users[bob].devices",
        "at least one",
        replace=(
            (
                'auth = "eap-mschapv2"\n\n[[users.devices]]\n'
                'name = "tablet"\nplatform = "android"\n',
                'auth = "eap-mschapv2"\ndevices = []\n',
            ),
        ),
    ),
    Case(
        "wrong-type",
        "routers[gw].management.port",
        "must be an integer",
        replace=(("port = 22", 'port = "22"'),),
    ),
    Case(
        "port-out-of-range",
        "routers[gw].management.port",
        "<= 65535",
        replace=(("port = 22", "port = 70000"),),
    ),
    Case(
        "lifetime-zero",
        "site.client_days",
        ">= 1",
        replace=(('crypto = "compat"', 'crypto = "compat"\nclient_days = 0'),),
    ),
    # --- names
    Case("site-name-uppercase", "site.name", "not a valid name", replace=(('"home"', '"Home"'),)),
    Case("router-name-space", "routers[0].name", "not a valid name", replace=(('"gw"', '"gw 1"'),)),
    Case("user-name-dash", "users[0].name", "not a valid name", replace=(('"alice"', '"-alice"'),)),
    Case(
        "device-name-symbol",
        "users[alice].devices[0].name",
        "not a valid name",
        replace=(('"phone"', '"phone!"'),),
    ),
    Case(
        "name-too-long", "users[1].name", "at most 63", replace=(('"bob"', '"' + "b" * 64 + '"'),)
    ),
    Case("duplicate-router", "routers[1].name", "duplicate name 'gw'", append=SECOND_ROUTER),
    Case(
        "duplicate-user", "users[1].name", "duplicate name 'alice'", replace=(('"bob"', '"alice"'),)
    ),
    Case(
        "duplicate-device",
        "users[alice].devices[1].name",
        "duplicate name 'phone'",
        replace=(('"laptop"', '"phone"'),),
    ),
    # --- server identity, firmware coordinates
    Case(
        "server-id-garbage",
        "routers[gw].server_id",
        "not a DNS name or IP address",
        replace=(('"vpn.example.org"', '"vpn_example!org"'),),
    ),
    Case(
        "server-id-short-ip",
        "routers[gw].server_id",
        "not a DNS name or IP address",
        replace=(('"vpn.example.org"', '"192.168.1"'),),
    ),
    Case(
        "server-id-unspecified",
        "routers[gw].server_id",
        "not a unicast address",
        replace=(('"vpn.example.org"', '"0.0.0.0"'),),
    ),
    Case(
        "release-syntax",
        "routers[gw].release",
        "not an OpenWrt release",
        replace=(('"24.10.2"', '"24.10"'),),
    ),
    Case(
        "release-unknown-series",
        "routers[gw].release",
        "unknown OpenWrt release series '18.06'",
        replace=(('"24.10.2"', '"18.06.9"'),),
    ),
    Case(
        "target-syntax",
        "routers[gw].target",
        "not an OpenWrt target",
        replace=(('"bcm53xx"', '"BCM 53xx"'),),
    ),
    Case(
        "subtarget-syntax",
        "routers[gw].subtarget",
        "not an OpenWrt target",
        replace=(('"generic"', '"generic/x"'),),
    ),
    Case(
        "device-syntax",
        "routers[gw].device",
        "not an ImageBuilder profile name",
        replace=(('"phicomm_k3"', '"Phicomm K3"'),),
    ),
    # --- networks
    Case(
        "lan-bad-prefix",
        "routers[gw].lan[0]",
        "not a valid CIDR",
        replace=(('"192.168.1.0/24"]', '"192.168.1.0/33"]'),),
    ),
    Case(
        "lan-host-bits",
        "routers[gw].lan[1]",
        "not a valid CIDR",
        replace=(('"192.168.1.0/24"]', '"192.168.1.0/24", "192.168.2.1/24"]'),),
    ),
    Case(
        "pool-not-ipv4",
        "routers[gw].pool",
        "not an IPv4 network",
        replace=(('"10.10.10.0/24"', '"fd00:10::/64"'),),
    ),
    Case(
        "pool6-not-ipv6",
        "routers[gw].pool6",
        "not an IPv6 network",
        replace=(('pool = "10.10.10.0/24"', 'pool = "10.10.10.0/24"\npool6 = "10.20.0.0/16"'),),
    ),
    Case(
        "pool-overlaps-lan",
        "routers[gw].pool",
        "overlaps the LAN 192.168.1.0/24",
        replace=(('"10.10.10.0/24"', '"192.168.1.128/25"'),),
    ),
    Case(
        "pool6-overlaps-lan",
        "routers[gw].pool6",
        "overlaps the LAN fd00:1::/64",
        replace=(
            ('lan = ["192.168.1.0/24"]', 'lan = ["192.168.1.0/24", "fd00:1::/64"]'),
            ('pool = "10.10.10.0/24"', 'pool = "10.10.10.0/24"\npool6 = "fd00:1::/96"'),
        ),
    ),
    Case(
        "pool-too-small",
        "routers[gw].pool",
        "2 usable addresses but 3 devices",
        replace=(('"10.10.10.0/24"', '"10.10.10.0/30"'),),
    ),
    Case(
        "dns-not-address",
        "routers[gw].dns[0]",
        "not a valid IP address",
        replace=(('dns = ["192.168.1.1"]', 'dns = ["dns.example"]'),),
    ),
    Case(
        "lan-address-outside-lan",
        "routers[gw].management.lan_address",
        "not inside the router's LAN",
        replace=(("port = 22", 'port = 22\nlan_address = "192.168.7.1/24"'),),
    ),
    Case(
        "tunnel-typo",
        "routers[gw].tunnel",
        "did you mean 'split'",
        replace=(('tunnel = "full"', 'tunnel = "splt"'),),
    ),
    # --- vocabulary
    Case(
        "unknown-auth",
        "users[bob].auth",
        "did you mean 'eap-mschapv2'",
        replace=(('"eap-mschapv2"', '"eap-mschap"'),),
    ),
    Case(
        "unknown-platform",
        "users[alice].devices[phone].platform",
        "'iphone' is not one of",
        replace=(('platform = "ios"', 'platform = "iphone"'),),
    ),
    Case(
        "unknown-crypto-profile",
        "site.crypto",
        "'strong' is not one of",
        replace=(('crypto = "compat"', 'crypto = "strong"'),),
    ),
    Case(
        "eap-tls-on-android-builtin",
        "users[bob].devices[tablet].platform",
        "'android' cannot use auth 'eap-tls'",
        replace=(('"eap-mschapv2"', '"eap-tls"'),),
    ),
    Case(
        "eap-tls-on-windows",
        "users[alice].devices[laptop].platform",
        "'windows' cannot use auth 'eap-tls'",
        replace=(('auth = "pubkey"', 'auth = "eap-tls"'),),
    ),
    Case(
        "second-round-on-ios",
        "users[alice].devices[phone].platform",
        "'ios' cannot use auth 'pubkey+eap-mschapv2'",
        replace=(
            ('auth = "pubkey"', 'auth = "pubkey+eap-mschapv2"'),
            ('crypto = "compat"', 'crypto = "compat"\nallow_password_only_alongside_2fa = true'),
        ),
        also=("users[alice].devices[laptop].platform",),
    ),
    Case(
        "legacy-without-allow-weak",
        "site.crypto",
        "needs allow_weak = true",
        replace=(('crypto = "compat"', 'crypto = "legacy"'),),
    ),
    Case(
        "user-unknown-router",
        "users[alice].routers[0]",
        "no router named 'gw2' (did you mean 'gw'?)",
        replace=(('auth = "pubkey"', 'auth = "pubkey"\nrouters = ["gw2"]'),),
    ),
    Case(
        "user-empty-routers",
        "users[alice].routers",
        "leave the key out",
        replace=(('auth = "pubkey"', 'auth = "pubkey"\nrouters = []'),),
    ),
    Case(
        "shared-identity-without-site-san",
        "users[alice].devices[phone].shared_identity",
        "needs site.shared_identity",
        replace=(('platform = "ios"', 'platform = "ios"\nshared_identity = true'),),
    ),
    Case(
        "shared-identity-on-second-round",
        "users[bob].devices[tablet].shared_identity",
        "cannot use the shared identity",
        replace=(
            ('name = "home"', 'name = "home"\nshared_identity = "homeClients"'),
            ('auth = "eap-mschapv2"', 'auth = "pubkey+eap-mschapv2"'),
            ('platform = "android"', 'platform = "android-strongswan"\nshared_identity = true'),
        ),
    ),
    # --- IPv6 zone IDs: free text in an address, refused everywhere (issue 14)
    Case(
        "lan-zone-id-powershell",
        "routers[gw].lan",
        "non-ASCII character (U+2019",
        replace=(
            (
                'lan = ["192.168.1.0/24"]',
                'lan = ["192.168.1.0/24", '
                '"fd00:1::%x\u2019;Start-Process${IFS}calc.exe;\u2018/64"]',
            ),
            ('tunnel = "full"', 'tunnel = "split"'),
        ),
    ),
    Case(
        "lan-zone-id",
        "routers[gw].lan[1]",
        "zone IDs",
        replace=(('lan = ["192.168.1.0/24"]', 'lan = ["192.168.1.0/24", "fd00:1::%eth0/64"]'),),
    ),
    Case(
        "lan-zone-id-newline",
        "routers[gw].lan",
        "control character (U+000A",
        replace=(('lan = ["192.168.1.0/24"]', 'lan = ["192.168.1.0/24", "fd00:1::%a\\nb/64"]'),),
    ),
    Case(
        "pool6-zone-id",
        "routers[gw].pool6",
        "zone IDs",
        replace=(('pool = "10.10.10.0/24"', 'pool = "10.10.10.0/24"\npool6 = "fd00:9::%eth0/64"'),),
    ),
    Case(
        "dns-zone-id",
        "routers[gw].dns[0]",
        "zone IDs",
        replace=(('dns = ["192.168.1.1"]', 'dns = ["fe80::1%br-lan"]'),),
    ),
    Case(
        "nbns-zone-id",
        "routers[gw].nbns[0]",
        "zone IDs",
        replace=(('dns = ["192.168.1.1"]', 'dns = ["192.168.1.1"]\nnbns = ["fe80::1%1"]'),),
    ),
    Case(
        "server-id-zone-id",
        "routers[gw].server_id",
        "zone IDs",
        replace=(('"vpn.example.org"', '"fe80::1%eth0"'),),
    ),
    Case(
        "management-address-zone-id",
        "routers[gw].management.address",
        "not a host name or IP address",
        replace=(('address = "192.168.1.1"', 'address = "fe80::1%eth0"'),),
    ),
    Case(
        "lan-address-zone-id",
        "routers[gw].management.lan_address",
        "zone IDs",
        replace=(("port = 22", 'port = 22\nlan_address = "fe80::1%eth0/64"'),),
    ),
    # --- injection through names and keys (allow-list first)
    Case(
        "router-name-trailing-newline",
        "routers[0].name",
        "control character (U+000A",
        replace=(('name = "gw"', 'name = "gw\\n"'),),
    ),
    Case(
        "user-name-trailing-newline",
        "users[0].name",
        "control character (U+000A",
        replace=(('"alice"', '"alice\\n"'),),
    ),
    Case(
        "authorized-key-second-line",
        "routers[gw].management.authorized_keys",
        "control character (U+000A",
        replace=(
            (
                "port = 22",
                'port = 22\nauthorized_keys = ["ssh-ed25519 AAAAC3Nz x\\nssh-rsa AAAA evil"]',
            ),
        ),
    ),
    Case(
        "root-password-hash-newline",
        "routers[gw].management.root_password_hash",
        "control character (U+000A",
        replace=(("port = 22", 'port = 22\nroot_password_hash = "$6$salt$abc\\n"'),),
    ),
    Case(
        "organization-newline",
        "site.organization",
        "control character (U+000A",
        replace=(('crypto = "compat"', 'crypto = "compat"\norganization = "Home\\nVPN"'),),
    ),
    Case(
        "organization-bidi-override",
        "site.organization",
        "control character (U+202E",
        replace=(('crypto = "compat"', 'crypto = "compat"\norganization = "Home\\u202eNPV"'),),
    ),
    Case(
        "ssid-nul",
        "users[alice].devices[phone].trusted_ssids",
        "control character (U+0000",
        replace=(('platform = "ios"', 'platform = "ios"\ntrusted_ssids = ["Home\\u0000"]'),),
    ),
    Case(
        "shared-identity-newline",
        "site.shared_identity",
        "control character (U+000A",
        replace=(('crypto = "compat"', 'crypto = "compat"\nshared_identity = "ios\\n"'),),
    ),
    # --- authentication policy
    Case(
        "password-only-beside-2fa",
        "users[alice].auth",
        "router 'gw' has pubkey+eap-mschapv2 users (alice) and eap-mschapv2 users (bob)",
        replace=(
            ('auth = "pubkey"', 'auth = "pubkey+eap-mschapv2"'),
            ('platform = "ios"', 'platform = "linux"'),
            ('platform = "windows"', 'platform = "android-strongswan"'),
        ),
    ),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_refused(proc_stderr: str, rc: int) -> None:
    assert rc == 2, proc_stderr
    assert "Traceback" not in proc_stderr
    assert proc_stderr.startswith("error: "), proc_stderr


def test_corpus_is_big_enough() -> None:
    """docs/security.md reports this figure (issue 14: at least 150 cases)."""
    assert len(CASES) + len(COMMAND_LINES) + len(WALK) + len(MIRROR_CASES) + len(PKI_IMPORTS) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c[0] for c in COMMAND_LINES}) == len(COMMAND_LINES)


def test_base_site_is_valid(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(BASE)
    proc = cli("check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "owrt-vpn.toml: ok (1 router(s), 2 user(s))\n" + NEXT_PKI


@dataclass(frozen=True)
class Ran:
    """What an in-process CLI run printed and returned."""

    returncode: int
    stdout: str
    stderr: str


def run_inprocess(
    monkeypatch: pytest.MonkeyPatch,
    cwd: Path,
    *argv: str,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> Ran:
    """``owrt-vpn ARGV`` in this process: ``cli.main`` with its exit status and streams.

    The same code path as the console script after the interpreter starts
    (argument parsing, error printing, exit codes); the subprocess runs of
    this module and every other test module cover the start itself.
    """
    from owrt_vpn.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("OWRT_VPN_SITE", raising=False)
    for k, v in {**OWRT_ENV, **(env or {})}.items():
        monkeypatch.setenv(k, v)
    for k in unset:
        monkeypatch.delenv(k, raising=False)
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return Ran(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_site_file(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(case.render())
    before = _snapshot(tmp_path)
    proc = run_inprocess(monkeypatch, tmp_path, "check")
    _assert_refused(proc.stderr, proc.returncode)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    wanted = f"error: owrt-vpn.toml: {case.path}: "
    hits = [ln for ln in lines if ln.startswith(wanted)]
    assert hits, f"no line starting {wanted!r} in:\n{proc.stderr}"
    assert any(case.fragment in ln for ln in hits), proc.stderr
    for extra in case.also:
        assert f"error: owrt-vpn.toml: {extra}: " in proc.stderr
    # One mistake, one message: a single broken key must not cascade.
    assert len(lines) == 1 + len(case.also), proc.stderr
    assert _snapshot(tmp_path) == before


def test_password_only_beside_2fa_advice_and_both_ways_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The refusal says what to do, and each way out passes `check` (issue 14, item 13)."""
    text = next(c for c in CASES if c.id == "password-only-beside-2fa").render()
    site = tmp_path / "owrt-vpn.toml"
    site.write_text(text)
    proc = run_inprocess(monkeypatch, tmp_path, "check")
    assert proc.returncode == 2, proc.stderr
    assert (
        "move one group to another router (users.routers) or set "
        "allow_password_only_alongside_2fa = true in [site]"
    ) in proc.stderr
    opted_in = text.replace(
        'crypto = "compat"', 'crypto = "compat"\nallow_password_only_alongside_2fa = true', 1
    )
    moved = text.replace('auth = "eap-mschapv2"', 'auth = "eap-mschapv2"\nrouters = ["gw2"]', 1)
    moved = moved.replace(
        'auth = "pubkey+eap-mschapv2"', 'auth = "pubkey+eap-mschapv2"\nrouters = ["gw"]', 1
    )
    moved += SECOND_ROUTER.replace('name = "gw"', 'name = "gw2"')
    for fixed in (opted_in, moved):
        assert fixed != text
        site.write_text(fixed)
        proc = run_inprocess(monkeypatch, tmp_path, "check")
        assert proc.returncode == 0, proc.stderr


def test_every_problem_reported_at_once(cli: CliRunner, tmp_path: Path) -> None:
    text = (
        BASE.replace('"home"', '"Home"', 1)
        .replace('"24.10.2"', '"24.10"')
        .replace('"10.10.10.0/24"', '"192.168.1.0/25"')
        .replace('platform = "ios"', 'platform = "iphone"')
        .replace('"bob"', '"alice"')
    )
    (tmp_path / "owrt-vpn.toml").write_text(text)
    proc = cli("check", "--json")
    _assert_refused(proc.stderr, proc.returncode)
    paths = [ln.split(": ")[2] for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert paths == [
        "site.name",
        "routers[gw].release",
        "routers[gw].pool",
        # Two users called alice: each is named by its position.
        "users[0].devices[phone].platform",
        "users[1].name",
    ]


def test_not_utf8(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "owrt-vpn.toml").write_bytes(BASE.encode().replace(b"home", b"h\xff"))
    before = _snapshot(tmp_path)
    proc = cli("check")
    _assert_refused(proc.stderr, proc.returncode)
    assert "error: owrt-vpn.toml: not UTF-8 text" in proc.stderr
    assert _snapshot(tmp_path) == before


# --- command lines: (id, argv, files to create first, expected stderr fragment)
INV = "[[routers]]\n"  # an inventory file's one entry (the case adds its keys)
# `build`'s cases get a mirror that exists (an empty folder): OWRT_ENV points
# OWRT_VPN_MIRROR at a missing one, which `build` would refuse first. The
# options' own checks must still come before any look-up on it or any write.
BUILD_SITE = {"owrt-vpn.toml": BASE, "mirror/.keep": "", "env:OWRT_VPN_MIRROR": "mirror"}
USER_ADD_HINT = "\nhint: see `owrt-vpn user add --help`\n"
COMMAND_LINES = [
    ("missing-site-file", ["check"], {}, "error: owrt-vpn.toml: site file not found"),
    (
        "site-option-missing-file",
        ["check", "--site", "nope.toml"],
        {},
        "nope.toml: site file not found",
    ),
    ("site-is-directory", ["--site", "sub", "check"], {"sub/x": ""}, "error: sub: cannot read"),
    (
        "env-site-missing",
        ["check"],
        {"env:OWRT_VPN_SITE": "other.toml"},
        "other.toml: site file not found",
    ),
    ("unknown-command", ["chekc"], {}, "No such command 'chekc'"),
    ("unknown-option", ["check", "--jsno"], {}, "No such option: --jsno"),
    ("extra-argument", ["check", "extra"], {}, "unexpected extra argument"),
    ("site-without-value", ["check", "--site"], {}, "'--site' requires an argument"),
    ("init-bad-server-id", ["init", "--server-id", "vpn example"], {}, "error: --server-id: "),
    ("init-quote-server-id", ["init", "--server-id", 'a"b'], {}, "error: --server-id: "),
    ("init-server-id-dot", ["init", "--server-id", "vpn.example.org."], {}, "error: --server-id: "),
    ("init-exists", ["init"], {"owrt-vpn.toml": "# mine\n"}, "owrt-vpn.toml: already exists"),
    ("init-dir-is-file", ["init", "afile"], {"afile": "x"}, "afile: not a directory"),
    ("init-server-id-zone", ["init", "--server-id", "fe80::1%eth0"], {}, "zone IDs"),
    ("init-server-id-newline", ["init", "--server-id", "vpn.example.org\n"], {},
     "error: --server-id: "),
    # names on the command line: full match, before any write; `user add` checks
    # its arguments itself (issue 16), naming the argument as typed (or its repr
    # when it holds a control character: the error stays one line)
    ("user-add-newline", ["user", "add", "eve\n", "--device", "p:ios"], {"owrt-vpn.toml": BASE},
     "error: NAME: 'eve\\n': lowercase letters, digits, . _ - only (at most 63)" + USER_ADD_HINT),
    ("user-add-curly-quote", ["user", "add", "ev\u2019e", "--device", "p:ios"],
     {"owrt-vpn.toml": BASE},
     "error: NAME: 'ev\u2019e': lowercase letters, digits, . _ - only (at most 63)"
     + USER_ADD_HINT),
    ("user-add-bidi-override", ["user", "add", "\u202eeve", "--device", "p:ios"],
     {"owrt-vpn.toml": BASE},
     "error: NAME: '\\u202eeve': lowercase letters, digits, . _ - only (at most 63)"),
    ("user-add-uppercase", ["user", "add", "Eve", "--device", "p:ios"], {"owrt-vpn.toml": BASE},
     "error: NAME: 'Eve': lowercase letters, digits, . _ - only (at most 63)"),
    ("user-add-device-newline", ["user", "add", "eve", "--device", "p\n:ios"],
     {"owrt-vpn.toml": BASE},
     "error: --device 'p\\n:ios': device name 'p\\n': lowercase letters, digits, . _ - only"
     + USER_ADD_HINT),
    ("user-add-device-escape", ["user", "add", "eve", "--device", "p:ios\x1b[2J"],
     {"owrt-vpn.toml": BASE}, "error: --device 'p:ios\\x1b[2J': platform 'ios\\x1b[2J' is not one"),
    ("user-add-device-no-platform", ["user", "add", "eve", "--device", "p"],
     {"owrt-vpn.toml": BASE}, "error: --device p: not NAME:PLATFORM (e.g. phone:ios)"),
    ("user-add-unknown-platform", ["user", "add", "eve", "--device", "p:iphone"],
     {"owrt-vpn.toml": BASE}, "error: --device p:iphone: platform 'iphone' is not one of: ios, "),
    ("user-add-auth-newline", ["user", "add", "eve", "--auth", "pubkey\n", "--device", "p:ios"],
     {"owrt-vpn.toml": BASE}, "error: --auth 'pubkey\\n': not one of: pubkey, "),
    ("user-add-existing", ["user", "add", "bob", "--device", "p:ios"], {"owrt-vpn.toml": BASE},
     "error: owrt-vpn.toml: users[bob].name: user 'bob' exists"),
    ("user-revoke-newline", ["user", "revoke", "alice\n"], {"owrt-vpn.toml": BASE},
     "no user named 'alice\\n' (did you mean 'alice'?)"),
    ("user-remove-unknown", ["user", "remove", "nobody"], {"owrt-vpn.toml": BASE},
     "error: owrt-vpn.toml: users: no user named 'nobody'"),
    ("user-passwd-unknown", ["user", "passwd", "nobody"], {"owrt-vpn.toml": BASE},
     "error: owrt-vpn.toml: users: no user named 'nobody'"),
    ("pki-renew-unknown-device", ["pki", "renew", "--user", "alice", "--device", "ph\n"],
     {"owrt-vpn.toml": BASE}, "user 'alice' has no device 'ph\\n'"),
    ("pki-init-short-passphrase", ["pki", "init"],
     {"owrt-vpn.toml": BASE, "env:OWRT_VPN_CA_PASSPHRASE": "short"},
     "error: the CA passphrase must have at least 12 characters (it has 5)"),
    ("build-release-newline", ["build", "--release", "24.10.2\n"], BUILD_SITE,
     "error: --release: '24.10.2\\n' is not valid"),
    ("build-target-newline", ["build", "--target", "bcm53xx\n"], BUILD_SITE,
     "error: --target: 'bcm53xx\\n' is not valid"),
    ("build-subtarget-newline", ["build", "--subtarget", "generic\n"], BUILD_SITE,
     "error: --subtarget: 'generic\\n' is not valid"),
    ("build-device-newline", ["build", "--device", "phicomm_k3\n"], BUILD_SITE,
     "error: --device: 'phicomm_k3\\n' is not valid"),
    ("build-unknown-router", ["build", "--router", "nope"], BUILD_SITE,
     "error: owrt-vpn.toml: routers: no router named 'nope'"),
    ("build-missing-mirror", ["build"], {"owrt-vpn.toml": BASE},
     "error: --mirror: /nonexistent/owrt-vpn-test-mirror: no such directory"),
    ("build-jobs-zero", ["build", "--jobs", "0"], {"owrt-vpn.toml": BASE}, "'--jobs'"),
    ("render-router-newline", ["render", "--router", "gw\n", "--out", "x"],
     {"owrt-vpn.toml": BASE}, "no router named 'gw\\n' (did you mean 'gw'?)"),
    ("flash-unknown-router", ["flash", "--router", "nope"], {"owrt-vpn.toml": BASE},
     "error: --router: no router named 'nope'"),
    ("push-unknown-router", ["push", "--router", "nope"], {"owrt-vpn.toml": BASE},
     "error: --router: no router named 'nope'"),
    ("status-unknown-router", ["status", "--router", "nope"], {"owrt-vpn.toml": BASE},
     "error: --router: no router named 'nope'"),
    # bundle of a new site: what is wrong is found before the CA is created
    ("bundle-unknown-user", ["bundle", "nobody"], {"owrt-vpn.toml": BASE},
     "error: USER: no user named 'nobody' in owrt-vpn.toml"),
    ("bundle-password-file-no-folder", ["bundle", "--password-file", "no/such/p.txt"],
     {"owrt-vpn.toml": BASE}, "error: --password-file no/such/p.txt: its folder does not exist"),
    # a link that points back to itself ("link:NAME": its target) is a broken
    # folder, said as such (was: "internal error: RuntimeError: Symlink loop")
    ("pki-dir-symlink-loop", ["check"], {"owrt-vpn.toml": BASE, "link:pki": "pki"},
     "/pki: a symlink loop (a link that points back to itself)\nhint: remove or fix that link"),
    ("pki-dir-symlink-loop-bundle", ["bundle"], {"owrt-vpn.toml": BASE, "link:pki": "pki"},
     "/pki: a symlink loop (a link that points back to itself)"),
    ("dist-symlink-loop-bundle", ["bundle"], {"owrt-vpn.toml": BASE, "link:dist": "dist"},
     "/dist/home/clients: a symlink loop (a link that points back to itself)"),
    ("dist-symlink-loop-status", ["status"], {"owrt-vpn.toml": BASE, "link:dist": "dist"},
     "/dist: a symlink loop (a link that points back to itself)"),
    # outputs named on the command line never replace the site's own files or
    # anything but an earlier output (they used to: exit 0, the CA key gone)
    *[
        (f"{cid}", argv, {"owrt-vpn.toml": BASE, "pki/ca.key": "k", "notes/a.txt": "x",
                          "sub/owrt-vpn.toml": BASE}, fragment)
        for cid, argv, fragment in [
            ("render-tar-site-file", ["render", "--tar", "owrt-vpn.toml"],
             "error: --tar owrt-vpn.toml: the site file: writing there would replace it"),
            ("render-tar-ca-key", ["render", "--tar", "pki/ca.key"],
             "error: --tar pki/ca.key: in the PKI folder ("),
            ("render-tar-other-file", ["render", "--tar", "notes/a.txt"],
             "error: --tar notes/a.txt: exists and is not an earlier output of this command"),
            ("render-out-pki", ["render", "--out", "pki"], "error: --out pki: in the PKI folder"),
            ("render-out-site-folder", ["render", "--out", "."],
             "error: --out .: a folder holding the site file or the PKI: writing there"),
            ("render-out-site-folder-by-name", ["--site", "sub/owrt-vpn.toml", "render", "--out",
             "sub"], "error: --out sub: a folder holding the site file or the PKI"),
            ("render-out-other-folder", ["render", "--out", "notes"],
             "error: --out notes: exists and is not an earlier output of this command"),
            ("bundle-password-file-site-file", ["bundle", "--password-file", "owrt-vpn.toml"],
             "error: --password-file owrt-vpn.toml: the site file: writing there would"),
            ("bundle-password-file-ca-key", ["bundle", "--password-file", "pki/ca.key"],
             "error: --password-file pki/ca.key: in the PKI folder ("),
            ("bundle-password-file-other-file", ["bundle", "--password-file", "notes/a.txt"],
             "error: --password-file notes/a.txt: exists and is not an earlier output"),
        ]
    ],
    # the dist root's clients/ is the PKI folder: `bundle` used to write there and
    # delete its servers/ and clients/ (not users' names), exit 0
    *[
        (f"{cmd}-out-onto-the-pki", [cmd, "--out", "."],
         {"owrt-vpn.toml": BASE.replace('crypto = "compat"', 'crypto = "compat"\n'
          'pki_dir = "home/clients"'), "home/clients/servers/gw.key": "k",
          "mirror/.keep": "", "env:OWRT_VPN_MIRROR": "mirror"},
         "error: --out .: home/clients (where folders are replaced and removed) is in the PKI")
        for cmd in ("bundle", "build")
    ],
    # inventories: the same allow-list and full match as the site file
    *[
        (f"inventory-{cid}", [cmd, "--inventory", "inv.toml"],
         {"owrt-vpn.toml": BASE, "inv.toml": INV + extra}, f"error: inv.toml: {fragment}")
        for cmd in ("flash",)
        for cid, extra, fragment in [
            ("name-newline", 'name = "shop\\n"\nrouter = "gw"\naddress = "198.51.100.20"\n',
             "routers[0].name: 'shop\\n' is not a valid name"),
            ("address-zone", 'name = "shop"\nrouter = "gw"\naddress = "fe80::1%eth0"\n',
             "routers[shop].address: "),
            ("user-newline", 'name = "shop"\nrouter = "gw"\naddress = "198.51.100.20"\n'
             'user = "root\\n"\n', "routers[shop].user: contains a control character"),
            ("identity-newline", 'name = "shop"\nrouter = "gw"\naddress = "198.51.100.20"\n'
             'identity_file = "id\\nx"\n', "routers[shop].identity_file: contains a control"),
            ("unknown-router", 'name = "shop"\nrouter = "gx"\naddress = "198.51.100.20"\n',
             "routers[shop].router: no router named 'gx'"),
            ("baked-key", 'name = "shop"\nrouter = "gw"\naddress = "198.51.100.20"\n'
             'root_password_hash = "$6$x$y"\n', "routers[shop].root_password_hash: is baked"),
        ]
    ],
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "files", "fragment"), [c[1:] for c in COMMAND_LINES], ids=[c[0] for c in COMMAND_LINES]
)
def test_bad_command_line(
    argv: list[str],
    files: dict[str, str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = {k[4:]: v for k, v in files.items() if k.startswith("env:")}
    for name, content in files.items():
        if name.startswith("link:"):
            (tmp_path / name[5:]).symlink_to(content)
        elif not name.startswith("env:"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(content)
    before = _snapshot(tmp_path)
    dirs_before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = run_inprocess(monkeypatch, tmp_path, *argv, env=env)
    _assert_refused(proc.stderr, proc.returncode)
    assert fragment in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]) == 1
    # What the admin typed is echoed escaped: no control character reaches the
    # terminal, and no newline in an argument splits the error line.
    assert all(ch == "\n" or ch.isprintable() for ch in proc.stderr), proc.stderr
    assert all(ln.startswith(("error: ", "hint: ")) for ln in proc.stderr.splitlines()), proc.stderr
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == dirs_before


@pytest.mark.parametrize("argv", [["pki", "init"], ["bundle"]], ids=["pki-init", "bundle"])
@pytest.mark.parametrize("source", ["env", "prompt"])
def test_short_passphrase_refused_before_any_key_is_made(
    argv: list[str], source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A too-short CA passphrase fails at once: no key generated (0.1-1 s for the
    RSA CA key), nothing written; from the variable and from the prompt alike."""
    import getpass
    import sys

    from owrt_vpn.pki import certs

    def no_key(key_type: str) -> object:
        raise AssertionError(f"a {key_type} key was generated before the passphrase check")

    monkeypatch.setattr(certs, "generate_key", no_key)
    env = {"OWRT_VPN_CA_PASSPHRASE": "short"}
    if source == "prompt":
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        monkeypatch.setattr(getpass, "getpass", lambda prompt="": "short")
    (tmp_path / "owrt-vpn.toml").write_text(BASE)
    before = _snapshot(tmp_path)
    if source == "env":
        proc = run_inprocess(monkeypatch, tmp_path, *argv, env=env)
    else:
        proc = run_inprocess(monkeypatch, tmp_path, *argv, unset=("OWRT_VPN_CA_PASSPHRASE",))
    _assert_refused(proc.stderr, proc.returncode)
    assert proc.stderr.startswith(
        "error: the CA passphrase must have at least 12 characters (it has 5)\n"
    ), proc.stderr
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owrt-vpn.toml"]


# --- `pki import` of an RSA CA (like the guide's) with a key that is not its own

PKI_IMPORTS = [
    ("rsa-key-of-another-rsa-ca", "other", "error: the private key does not belong to the CA "
     "certificate"),
    ("rsa-key-damaged", "damaged", "error: ca.key: not a private key"),
]  # fmt: skip


@pytest.fixture(scope="module")
def rsa_ca() -> dict[str, str]:
    """An RSA CA certificate (PEM), its key, another RSA key and a damaged copy of its key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key, other = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "ab")
    cert = self_signed_ca(key, "strongSwan Root CA")
    n = key.private_numbers()
    damaged = rsa.RSAPrivateNumbers(
        n.p, n.q, n.d, n.dmp1, n.dmq1, n.iqmp + 1, n.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    return {
        "ca.pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "other": key_pem(other).decode(),
        "damaged": key_pem(damaged).decode(),
    }


@pytest.mark.parametrize(
    ("key", "first"), [c[1:] for c in PKI_IMPORTS], ids=[c[0] for c in PKI_IMPORTS]
)
def test_pki_import_refuses_a_key_that_is_not_the_cas(
    key: str,
    first: str,
    rsa_ca: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(BASE)
    (tmp_path / "ca.pem").write_text(rsa_ca["ca.pem"])
    (tmp_path / "ca.key").write_text(rsa_ca[key])
    before = _snapshot(tmp_path)
    proc = run_inprocess(monkeypatch, tmp_path, "pki", "import", "--ca-cert", "ca.pem",
                         "--ca-key", "ca.key")  # fmt: skip
    _assert_refused(proc.stderr, proc.returncode)
    assert proc.stderr.startswith(first), proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]) == 1
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "pki").exists()


# --- every string field of the site model, walked: the allow-list and full-match
# semantics hold for each (a new string key must be added to VALID to pass).

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host"
VALID: dict[str, dict[str, object]] = {
    "site": {
        "name": "home", "pki_dir": "pki", "crypto": "compat", "organization": "Home",
        "server_key": "rsa3072", "shared_identity": "homeClients", "packages": "minimal",
        "backend": "local", "extra_packages": ["tcpdump"], "vpn_router_access": "dns-ping",
    },
    "router": {
        "name": "gw", "server_id": "vpn.example.org", "release": "24.10.2", "target": "bcm53xx",
        "subtarget": "generic", "device": "phicomm_k3", "lan": ["192.168.1.0/24"],
        "pool": "10.10.10.0/24", "pool6": "fd00:10::/64", "dns": ["192.168.1.1"],
        "nbns": ["192.168.1.1"], "tunnel": "full", "config_style": "auto",
        "extra_packages": ["tcpdump"], "vpn_router_access": "dns-ping",
    },
    "management": {
        "address": "192.168.1.1", "user": "root", "identity_file": "id_ed25519",
        "known_hosts": "known_hosts", "authorized_keys": [KEY],
        "root_password_hash": "$6$salt$abcdefghijklmnop", "lan_address": "192.168.1.1/24",
    },
    "user": {"name": "alice", "auth": "pubkey", "routers": ["gw"]},
    "device": {"name": "phone", "platform": "ios", "trusted_ssids": ["Home"]},
}  # fmt: skip
PATHS = {
    "site": "site",
    "router": "routers[gw]",
    "management": "routers[gw].management",
    "user": "users[alice]",
    "device": "users[alice].devices[phone]",
}
# An entry whose own name is bad is named by its position (site/keys.py).
BAD_NAME_PATHS = {"router": "routers[0]", "user": "users[0]", "device": "users[alice].devices[0]"}
# Keys where more than ASCII is legitimate (site/allowlist.py NON_ASCII_KEYS).
NON_ASCII_OK = {"organization", "trusted_ssids", "pki_dir", "identity_file", "known_hosts",
                "authorized_keys"}  # fmt: skip


def _string_fields() -> dict[str, list[str]]:
    """The model's fields that hold strings (or lists of them), per table."""
    import typing

    from owrt_vpn.site.model import Device, Management, Router, SiteSettings, User

    def holds_str(ann: object) -> bool:
        if ann is str:
            return True
        origin = typing.get_origin(ann)
        if origin is typing.Literal:
            return all(isinstance(a, str) for a in typing.get_args(ann))
        return any(holds_str(a) for a in typing.get_args(ann) if a is not Ellipsis)

    models = {"site": SiteSettings, "router": Router, "management": Management, "user": User,
              "device": Device}  # fmt: skip
    return {
        table: [k for k, f in model.model_fields.items() if holds_str(f.annotation)]
        for table, model in models.items()
    }


def _site_with(table: str, key: str, value: object) -> str:
    """The minimal valid site with ``table.key = value`` (only that optional key set)."""
    site_opts: dict[str, object] = {}
    router_opts: dict[str, object] = {}
    mgmt: dict[str, object] = {}
    user_opts: dict[str, object] = {}
    dev_opts: dict[str, object] = {}
    target = {"site": site_opts, "router": router_opts, "management": mgmt, "user": user_opts,
              "device": dev_opts}[table]  # fmt: skip
    target[key] = value
    if table == "device" and key == "trusted_ssids":
        dev_opts["on_demand"] = True
    names = {"site": "home", "router": "gw", "user": "alice", "device": "phone"}
    name = site_opts.pop("name", names["site"])
    r_kw = {k: router_opts.pop(k) for k in list(router_opts) if k in
            ("name", "server_id", "release", "target", "device")}  # fmt: skip
    u_name = user_opts.pop("name", "alice")
    auth = user_opts.pop("auth", None)
    d_name = dev_opts.pop("name", "phone")
    platform = dev_opts.pop("platform", "ios")
    return sitefile.site(
        str(name),
        **site_opts,
        routers=[sitefile.router(**r_kw, **router_opts, management=mgmt or None)],  # type: ignore[arg-type]
        users=[sitefile.user(str(u_name), [(str(d_name), str(platform), dev_opts)],
                             auth=auth, **user_opts)],  # type: ignore[arg-type]
    )  # fmt: skip


def _bad(value: object, bad: str, where: str) -> object:
    """``value`` with ``bad`` put at the end (or the start) of it / of its first item."""
    if isinstance(value, list):
        return [_bad(value[0], bad, where), *value[1:]]
    assert isinstance(value, str)
    return value + bad if where == "end" else bad + value


# (id, the character(s), where, what the error says)
BAD_TEXT = [
    ("trailing-newline", "\n", "end", "control character (U+000A"),
    ("escape", "\x1b[2J", "start", "control character (U+001B"),
    ("line-separator", "\u2028", "end", "control character (U+2028"),
    ("bidi-override", "\u202e", "start", "control character (U+202E"),
]
WALK = [
    (f"{table}.{key}-{bid}", table, key, bad, where, msg)
    for table, keys in _string_fields().items()
    for key in keys
    for bid, bad, where, msg in BAD_TEXT
] + [
    (f"{table}.{key}-curly-quote", table, key, "\u2019", "end", "non-ASCII character (U+2019")
    for table, keys in _string_fields().items()
    for key in keys
    if key not in NON_ASCII_OK
]


def test_every_string_field_is_walked() -> None:
    """VALID holds a value for every string key of the model: a new key joins the walk."""
    fields = _string_fields()
    assert {t: sorted(ks) for t, ks in fields.items()} == {t: sorted(VALID[t]) for t in fields}
    assert len(WALK) >= 150


@pytest.mark.parametrize(
    ("table", "key"), [(t, k) for t, ks in _string_fields().items() for k in ks]
)
def test_walk_base_values_are_valid(
    table: str, key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(_site_with(table, key, VALID[table][key]))
    proc = run_inprocess(monkeypatch, tmp_path, "check")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("table", "key", "bad", "where", "msg"), [w[1:] for w in WALK],
                         ids=[w[0] for w in WALK])  # fmt: skip
def test_walk_refuses_unsafe_text(
    table: str,
    key: str,
    bad: str,
    where: str,
    msg: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    value = _bad(VALID[table][key], bad, where)
    (tmp_path / "owrt-vpn.toml").write_text(_site_with(table, key, value))
    before = _snapshot(tmp_path)
    proc = run_inprocess(monkeypatch, tmp_path, "check")
    _assert_refused(proc.stderr, proc.returncode)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    path = BAD_NAME_PATHS[table] if key == "name" and table in BAD_NAME_PATHS else PATHS[table]
    assert lines[0].startswith(f"error: owrt-vpn.toml: {path}.{key}: "), proc.stderr
    assert msg in lines[0], proc.stderr
    assert _snapshot(tmp_path) == before


# --- mirrors: what the mirror lacks fails before the first write (no CA, no certificates)

# (id, build options, error fragment): each exits 2 (what was asked for is not
# on the mirror, nothing written); a mirror answering 404 for everything too,
# naming the URL and asking "wrong --mirror?"
MIRROR_CASES = [
    ("release-missing", ["--release", "24.10.1"], "24.10.1"),
    (
        "target-missing",
        ["--target", "x86", "--subtarget", "64", "--device", "generic"],
        "target 'x86'",
    ),
    ("device-missing", ["--device", "phicomm_k4"], "phicomm_k4"),
    ("empty-mirror", ["--mirror-root", ""], "not found on the mirror"),
]


@pytest.mark.integration
def test_mirror_lacking_what_the_build_needs_writes_nothing(
    cli: CliRunner,
    tmp_path: Path,
    served_mirror: ServedMirror,  # noqa: F811
) -> None:
    from integration.mirror import MirrorServer

    empty = tmp_path / "bare-root"
    empty.mkdir()
    with MirrorServer(empty) as bare:
        for name, args, fragment in MIRROR_CASES:
            site = tmp_path / name
            site.mkdir()
            # The cache lives outside the site folder, as it does for an admin
            # (~/.cache): build's dist lock (an empty file) is made there.
            cache = tmp_path / f"cache-{name}"
            env = {"OWRT_VPN_CACHE": str(cache)}
            cli("init", cwd=site, env=env, check=True)  # the init && build of a new site
            before = _snapshot(site)
            url = bare.url if args[0] == "--mirror-root" else served_mirror.url
            extra = [] if args[0] == "--mirror-root" else args
            proc = cli("build", "--mirror", url, "--trust-key", str(served_mirror.key.public),
                       *extra, cwd=site, env=env)  # fmt: skip
            assert proc.returncode == 2, (name, proc.stderr)
            assert "Traceback" not in proc.stderr
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
            assert len(errors) == 1 and fragment in errors[0], (name, proc.stderr)
            if name == "empty-mirror":
                sums = f"{bare.url}/releases/24.10.2/targets/bcm53xx/generic/sha256sums"
                assert errors[0].endswith(f"(HTTP 404: {sums})"), proc.stderr
                assert "\nhint: wrong --mirror? it has no releases/24.10.2/" in proc.stderr
                online = cli("check", "--online", "--mirror", bare.url, cwd=site, env=env)
                assert online.returncode == 2, online.stderr
                # The same refusal, naming the file and the router that asked.
                named = errors[0].replace("error: ", "error: owrt-vpn.toml: routers[gw]: ", 1)
                assert online.stderr.startswith(named + "\n"), online.stderr
            assert _snapshot(site) == before, name
            assert sorted(p.name for p in site.iterdir()) == [".gitignore", "owrt-vpn.toml"], name
            # Nothing downloaded or unpacked either: the cache holds only locks.
            cached = {str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()}
            assert all(c.startswith("locks/") for c in cached), (name, cached)
