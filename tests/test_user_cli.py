"""`owrt-vpn user ...` through the real CLI, and the bad-input corpus of the pki/user commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CliRunner
from owrtcli import run_on_terminal
from pki_testlib import PASSPHRASE, SITE, crl_serials, snapshot, tool, verify, write_site


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialized site folder per module (RSA key generation is the slow part)."""
    folder = tmp_path_factory.mktemp("template")
    write_site(folder)
    env = {**os.environ, "OWRT_VPN_CA_PASSPHRASE": PASSPHRASE}
    subprocess.run(
        [sys.executable, "-m", "owrt_vpn", "pki", "init"],
        cwd=folder, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return folder


@pytest.fixture
def initialized(_template: Path, tmp_path: Path) -> Path:
    """A copy of the initialized site folder (modes and mtimes kept)."""
    shutil.copytree(_template, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_user_add_keeps_comments_and_issues(cli: CliRunner, initialized: Path) -> None:
    site = initialized / "owrt-vpn.toml"
    proc = _ok(
        cli("user", "add", "erin", "--auth", "pubkey+eap-mschapv2", "--device", "pc:linux",
            "--device", "phone:android-strongswan", "--router", "gw", "--json")
    )  # fmt: skip
    data = json.loads(proc.stdout)
    assert data["issued"] == ["client erin/pc", "client erin/phone"]
    # The generated password is stored, never in --json (nor shown outside a terminal).
    password = (initialized / "pki/eap/erin.password").read_text().strip()
    assert len(password) == 20 and password not in proc.stdout + proc.stderr
    assert "passwords" not in data
    text = site.read_text()
    # the old text is untouched, byte for byte, comments included
    assert text.startswith(SITE)
    assert "# the family\n" in text
    assert 'auth = "eap-mschapv2"   # password lives in the PKI directory' in text
    assert text[len(SITE) :] == (
        '\n[[users]]\nname = "erin"\nauth = "pubkey+eap-mschapv2"\nrouters = ["gw"]\n\n'
        '[[users.devices]]\nname = "pc"\nplatform = "linux"\n\n'
        '[[users.devices]]\nname = "phone"\nplatform = "android-strongswan"\n'
    )
    pki = initialized / "pki"
    assert (pki / "eap" / "erin.password").read_text() == password + "\n"
    verify(pki / "ca.crt", pki / "clients" / "erin" / "pc.crt")
    assert "email:erin+phone@home" in tool(
        "openssl", "x509", "-noout", "-text", "-in", pki / "clients" / "erin" / "phone.crt"
    )
    # on a terminal, the human output shows the generated password once
    rc, out = run_on_terminal(
        "user", "add", "fay", "--auth", "eap-mschapv2", "--device", "mac:macos", cwd=initialized
    )
    fay = (pki / "eap" / "fay.password").read_text().strip()
    assert rc == 0 and f"EAP password for fay: {fay}" in out
    # ... and once only: `bundle` knows it was shown
    rc, out = run_on_terminal("bundle", "fay", cwd=initialized)
    assert rc == 0 and fay not in out and "1 password(s) shown before" in out
    _ok(cli("check"))


def test_user_add_password_stdin(cli: CliRunner, initialized: Path) -> None:
    _ok(
        cli("user", "add", "gus", "--auth", "eap-mschapv2", "--device", "pc:windows",
            "--password-stdin", input="correct horse battery\n")
    )  # fmt: skip
    assert (initialized / "pki" / "eap" / "gus.password").read_text() == "correct horse battery\n"
    _ok(cli("user", "passwd", "gus", "--password-stdin", input="another good one\r\n"))
    assert (initialized / "pki" / "eap" / "gus.password").read_text() == "another good one\n"
    # Outside a terminal, generating (and replacing a working password) must be asked for.
    refused = cli("user", "passwd", "gus", input="")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: user passwd: not a terminal: say how the new ")
    assert "another good one" in (initialized / "pki" / "eap" / "gus.password").read_text()
    proc = _ok(cli("user", "passwd", "gus", "--generate", "--json"))
    new = (initialized / "pki" / "eap" / "gus.password").read_text().strip()
    assert new != "another good one" and len(new) == 20
    assert new not in proc.stdout + proc.stderr and "password" not in json.loads(proc.stdout)
    proc = _ok(cli("user", "passwd", "gus", "--generate"))
    newer = (initialized / "pki" / "eap" / "gus.password").read_text().strip()
    assert newer not in proc.stdout and "not shown (not a terminal)" in proc.stdout


def test_check_names_the_next_step(cli: CliRunner, initialized: Path) -> None:
    """With the PKI made, `check` points at `build` (before it: `pki init`, test_cli.py)."""
    proc = _ok(cli("check"))
    assert proc.stdout.splitlines()[-1] == (
        "next: `owrt-vpn build` (firmware and client bundles into dist/)"
    )


def test_user_list(cli: CliRunner, initialized: Path) -> None:
    _ok(cli("user", "revoke", "alice", "--device", "laptop"))
    users = json.loads(_ok(cli("user", "list", "--json")).stdout)["users"]
    alice = users[0]
    assert alice["name"] == "alice" and alice["auth"] == "pubkey"
    assert alice["routers"] == ["gw", "gw2"]
    assert [(d["name"], d["certificate"]) for d in alice["devices"]] == [
        ("phone", "valid"),
        ("laptop", "revoked"),
    ]
    assert users[1]["eap_password"] == "active"
    assert "certificate" not in users[1]["devices"][0]
    assert users[2]["routers"] == ["gw"]
    human = _ok(cli("user", "list")).stdout
    assert "alice (pubkey; routers: gw, gw2)" in human
    assert "laptop" in human and "certificate revoked" in human


def test_revoke_and_remove(cli: CliRunner, initialized: Path) -> None:
    pki = initialized / "pki"
    index = json.loads((pki / "index.json").read_text())
    serial = {
        (c.get("user"), c.get("device")): int(c["serial"], 16)
        for c in index["certs"]
        if c["kind"] == "client"
    }
    _ok(cli("user", "revoke", "alice", "--device", "phone"))
    assert crl_serials(pki / "crl.pem", pki / "ca.crt") == {serial["alice", "phone"]}
    # the user stays in the site file
    assert 'name = "alice"' in (initialized / "owrt-vpn.toml").read_text()
    # revoking an EAP user disables the password
    _ok(cli("user", "revoke", "bob"))
    assert not (pki / "eap" / "bob.password").exists()
    assert "bob: EAP password revoked" in _ok(cli("pki", "init")).stderr
    _ok(cli("user", "passwd", "bob", "--generate"))
    assert (pki / "eap" / "bob.password").exists()
    # remove: every certificate revoked, secrets deleted, user gone from the file
    proc = _ok(cli("user", "remove", "carol"))
    assert "removed carol from owrt-vpn.toml" in proc.stdout
    assert crl_serials(pki / "crl.pem", pki / "ca.crt") == {
        serial["alice", "phone"],
        serial["carol", "pc"],
    }
    assert not (pki / "clients" / "carol").exists()
    assert not (pki / "eap" / "carol.password").exists()
    text = (initialized / "owrt-vpn.toml").read_text()
    assert 'name = "carol"' not in text
    assert "# the family" in text and "# iOS manual setup" in text
    _ok(cli("check"))
    # a second init changes nothing: removed users are not re-issued
    before = snapshot(pki)
    _ok(cli("pki", "init"))
    assert snapshot(pki) == before


def test_revoke_without_pki_says_so_and_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv in (("alice", "--device", "laptop"), ("alice",)):
        proc = cli("user", "revoke", *argv)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert lines[0].startswith("error: ") and "no CA yet" in lines[0], proc.stderr
        assert "already revoked" not in proc.stdout + proc.stderr
        assert lines[1:] == ["hint: run `owrt-vpn pki init` first"]
        assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------------- bad input

NO_PASSPHRASE = "error: the CA key is encrypted: set OWRT_VPN_CA_PASSPHRASE"

# (id, argv, stdin, exit status, first stderr line); run after `pki init`.
BAD = [
    ("add-no-device", ["user", "add", "zed"], None, 2,
     "error: user add: at least one --device NAME:PLATFORM is needed"),
    ("add-bad-device-spec", ["user", "add", "zed", "--device", "phone"], None, 2,
     "error: --device phone: not NAME:PLATFORM (e.g. phone:ios)"),
    ("add-device-spec-extra-colon", ["user", "add", "zed", "--device", "a:ios:x"], None, 2,
     "error: --device a:ios:x: not NAME:PLATFORM (e.g. phone:ios)"),
    ("add-unknown-platform", ["user", "add", "zed", "--device", "phone:symbian"], None, 2,
     "error: --device phone:symbian: platform 'symbian' is not one of: ios, macos, android, "
     "android-strongswan, windows, linux"),
    ("add-duplicate-user", ["user", "add", "alice", "--device", "x:ios"], None, 2,
     "error: owrt-vpn.toml: users[alice].name: user 'alice' exists"),
    ("add-duplicate-device", ["user", "add", "zed", "--device", "a:ios", "--device", "a:linux"],
     None, 2, "error: --device a:linux: device 'a' is given twice"),
    ("add-bad-name", ["user", "add", "Zed!", "--device", "a:ios"], None, 2,
     "error: NAME: 'Zed!': lowercase letters, digits, . _ - only (at most 63)"),
    ("add-unknown-auth", ["user", "add", "zed", "--auth", "psk", "--device", "a:ios"], None, 2,
     "error: --auth psk: not one of: pubkey, eap-tls, eap-mschapv2, pubkey+eap-mschapv2"),
    ("add-auth-platform", ["user", "add", "zed", "--auth", "eap-tls", "--device", "a:android"],
     None, 2, "error: owrt-vpn.toml: users[zed].devices[a].platform: "),
    ("add-unknown-router", ["user", "add", "zed", "--device", "a:ios", "--router", "gw9"], None,
     2, "error: owrt-vpn.toml: users[zed].routers[0]: "),
    ("add-password-newline", ["user", "add", "zed", "--auth", "eap-mschapv2", "--device",
     "a:ios", "--password-stdin"], "pass\nword-long\n", 2,
     "error: --password-stdin: the password contains a control character or newline"),
    ("add-password-short", ["user", "add", "zed", "--auth", "eap-mschapv2", "--device", "a:ios",
     "--password-stdin"], "short\n", 2,
     "error: --password-stdin: the password must have 8 to 128 characters"),
    ("add-password-not-eap", ["user", "add", "zed", "--device", "a:ios", "--password-stdin"],
     "long enough pw\n", 2,
     "error: user add: --password-stdin needs an EAP auth method, not 'pubkey'"),
    ("revoke-unknown-user", ["user", "revoke", "zed"], None, 2,
     "error: owrt-vpn.toml: users: no user named 'zed'"),
    ("revoke-unknown-device", ["user", "revoke", "alice", "--device", "tablet"], None, 2,
     "error: owrt-vpn.toml: users[alice].devices: user 'alice' has no device 'tablet'"),
    ("revoke-device-of-eap-user", ["user", "revoke", "bob", "--device", "tablet"], None, 2,
     "error: owrt-vpn.toml: users[bob].auth: user 'bob' uses 'eap-mschapv2': "
     "there are no device certificates"),
    ("remove-unknown-user", ["user", "remove", "alicia"], None, 2,
     "error: owrt-vpn.toml: users: no user named 'alicia' (did you mean 'alice'?)"),
    ("passwd-unknown-user", ["user", "passwd", "zed"], None, 2,
     "error: owrt-vpn.toml: users: no user named 'zed'"),
    ("passwd-pubkey-user", ["user", "passwd", "alice"], None, 2,
     "error: owrt-vpn.toml: users[alice].auth: user 'alice' uses 'pubkey', "
     "which has no EAP password"),
    ("passwd-newline", ["user", "passwd", "bob", "--password-stdin"], "abc\tdefghij\n", 2,
     "error: --password-stdin: the password contains a control character or newline"),
    ("renew-nothing", ["pki", "renew"], None, 2, "error: pki renew: nothing to renew"),
    ("renew-device-without-user", ["pki", "renew", "--device", "phone"], None, 2,
     "error: pki renew: --device needs --user"),
    ("renew-unknown-router", ["pki", "renew", "--router", "gw3"], None, 2,
     "error: owrt-vpn.toml: routers: no router named 'gw3' (did you mean 'gw'?)"),
    ("renew-eap-user", ["pki", "renew", "--user", "bob"], None, 2,
     "error: owrt-vpn.toml: users[bob].auth: user 'bob' uses 'eap-mschapv2': "
     "there are no device certificates"),
    ("import-nothing", ["pki", "import"], None, 2,
     "error: pki import: pass --ca-cert FILE --ca-key FILE, or --ca-p12 FILE"),
    ("import-both", ["pki", "import", "--ca-p12", "a.p12", "--ca-cert", "b.pem"], None, 2,
     "error: pki import: pass either --ca-p12 or --ca-cert with --ca-key, not both"),
    ("import-missing-file", ["pki", "import", "--ca-cert", "nope.pem", "--ca-key", "nope.key"],
     None, 2, "error: nope.pem: file not found"),
    ("import-not-a-cert", ["pki", "import", "--ca-cert", "owrt-vpn.toml", "--ca-key",
     "owrt-vpn.toml"], None, 2, "error: owrt-vpn.toml: not a PEM or DER certificate"),
    ("import-not-a-p12", ["pki", "import", "--ca-p12", "owrt-vpn.toml"], None, 2,
     "error: owrt-vpn.toml: not a PKCS#12 file"),
    ("import-leaf-cert", ["pki", "import", "--ca-cert", "pki/servers/gw.crt", "--ca-key",
     "pki/servers/gw.key"], None, 2,
     "error: the certificate is not a CA certificate (basicConstraints CA:TRUE)"),
    ("import-key-mismatch", ["pki", "import", "--ca-cert", "pki/ca.crt", "--ca-key",
     "pki/servers/gw.key"], None, 2,
     "error: the private key does not belong to the CA certificate"),
]  # fmt: skip


def test_corpus_size() -> None:
    assert len(BAD) + len(STATE) >= 30


@pytest.mark.parametrize(("argv", "stdin", "rc", "first"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])  # fmt: skip
def test_bad_input(
    cli: CliRunner,
    initialized: Path,
    argv: list[str],
    stdin: str | None,
    rc: int,
    first: str,
) -> None:
    before = snapshot(initialized)
    proc = cli(*argv, input=stdin if stdin is not None else "")
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(first), proc.stderr
    if not first.endswith(": "):  # exact message unless it comes from the site validator
        assert proc.stderr.splitlines()[0] == first
    assert snapshot(initialized) == before


def _run_without_passphrase(
    folder: Path, *argv: str, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OWRT_VPN_CA_PASSPHRASE"}
    if passphrase is not None:
        env["OWRT_VPN_CA_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "owrt_vpn", *argv],
        cwd=folder, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        check=False, timeout=120,
    )  # fmt: skip


# PKI state problems (exit 1; no passphrase at all: 2): (id, argv, passphrase, first stderr line)
STATE = [
    ("add-no-passphrase", ["user", "add", "zed", "--device", "a:ios"], None, NO_PASSPHRASE),
    ("remove-no-passphrase", ["user", "remove", "alice"], None, NO_PASSPHRASE),
    ("revoke-no-passphrase", ["user", "revoke", "alice"], None, NO_PASSPHRASE),
    ("renew-no-passphrase", ["pki", "renew", "--router", "gw"], None, NO_PASSPHRASE),
    ("renew-wrong-passphrase", ["pki", "renew", "--router", "gw"], "not the passphrase",
     "error: {pki}/ca.key: cannot decrypt the CA key (wrong passphrase?)"),
    ("empty-passphrase", ["user", "add", "zed", "--device", "a:ios"], "",
     "error: OWRT_VPN_CA_PASSPHRASE is set but empty"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "passphrase", "first"), [s[1:] for s in STATE],
                         ids=[s[0] for s in STATE])  # fmt: skip
def test_pki_state_problems(
    initialized: Path, argv: list[str], passphrase: str | None, first: str
) -> None:
    before = snapshot(initialized)
    proc = _run_without_passphrase(initialized, *argv, passphrase=passphrase)
    # A missing passphrase is a usage problem (2); a wrong or empty one a failure (1).
    assert proc.returncode == (2 if first == NO_PASSPHRASE else 1), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == first.format(pki=initialized / "pki")
    assert snapshot(initialized) == before


def test_no_ca_yet(tmp_path: Path) -> None:
    write_site(tmp_path)
    for argv in (["user", "add", "zed", "--device", "a:ios"], ["pki", "show"]):
        before = snapshot(tmp_path)
        proc = _run_without_passphrase(tmp_path, *argv, passphrase=PASSPHRASE)
        assert proc.returncode == 1
        assert proc.stderr.splitlines() == [
            f"error: {tmp_path / 'pki'}: no CA",
            "hint: run `owrt-vpn pki init` first",
        ]
        assert snapshot(tmp_path) == before
    proc = _run_without_passphrase(tmp_path, "pki", "init")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "error: no CA passphrase: set OWRT_VPN_CA_PASSPHRASE"
    # Only `pki init` has --insecure-unencrypted-ca: only its hint names it.
    assert "--insecure-unencrypted-ca" in proc.stderr.splitlines()[1]
    for argv in (["bundle"], ["build", "--no-bundles"]):
        proc = _run_without_passphrase(tmp_path, *argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [
            "error: no CA passphrase: set OWRT_VPN_CA_PASSPHRASE",
            "hint: the new CA key is stored encrypted with it; "
            "or run the command in a terminal to be asked for it",
        ]
        assert not (tmp_path / "pki").exists()
    assert not (tmp_path / "pki").exists()


# One mistake, one error (and its hint), nothing written: in the arguments, the error
# names the argument (no users[N] path: the file has no such user yet); against a rule
# of the site file, it names the new user and its device.
ONE_ERROR = [
    (["gina", "--device", "p:iphone"], [
        "error: --device p:iphone: platform 'iphone' is not one of: ios, macos, android, "
        "android-strongswan, windows, linux",
        "hint: see `owrt-vpn user add --help`",
    ]),
    (["zed", "--auth", "eap-tls", "--device", "tab:android"], [
        "error: owrt-vpn.toml: users[zed].devices[tab].platform: 'android' cannot use auth "
        "'eap-tls' (users[zed].auth); it can use: pubkey, eap-mschapv2",
        "hint: the user was not added: owrt-vpn.toml is unchanged",
    ]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "lines"), ONE_ERROR, ids=["argument", "site-rule"])
def test_user_add_mistake_is_one_error(
    cli: CliRunner, initialized: Path, argv: list[str], lines: list[str]
) -> None:
    before = snapshot(initialized)
    proc = cli("user", "add", *argv)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == lines
    assert snapshot(initialized) == before


def test_bundle_that_must_issue_without_a_passphrase_is_a_usage_error(initialized: Path) -> None:
    """A device added by hand needs its certificate: no passphrase is exit 2, with the
    passphrase hint only (`--insecure-unencrypted-ca` is `pki init`'s alone)."""
    site = initialized / "owrt-vpn.toml"
    site.write_text(site.read_text() + '\n[[users]]\nname = "zed"\n\n'
                    '[[users.devices]]\nname = "pc"\nplatform = "linux"\n')  # fmt: skip
    before = snapshot(initialized)
    proc = _run_without_passphrase(initialized, "bundle")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        NO_PASSPHRASE,
        "hint: or run the command in a terminal to be asked for it",
    ]
    assert snapshot(initialized) == before
