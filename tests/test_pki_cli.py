"""`owrt-vpn pki ...` through the real CLI: init, idempotency, renew, import of a guide-made CA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CliRunner
from pki_testlib import (
    CLIENT_DEVICES,
    SITE,
    crl_serials,
    snapshot,
    tool,
    verify,
    write_site,
    x509_text,
)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_init_twice_is_byte_identical(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    first = json.loads(_ok(cli("pki", "init", "--json")).stdout)
    assert first["created_ca"] is True
    assert first["issued"][:3] == ["ca", "server gw", "server gw2"]
    pki = tmp_path / "pki"
    before = snapshot(pki)
    second = json.loads(_ok(cli("pki", "init", "--json")).stdout)
    assert second == {
        "created_ca": False,
        "issued": [],
        "ok": True,
        "pki_dir": str(pki),
        "skipped": [],
    }
    _ok(cli("user", "list"))
    _ok(cli("pki", "list"))
    _ok(cli("check"))
    # revoke twice, renew --crl with nothing revoked: still byte-identical
    assert snapshot(pki) == before
    _ok(cli("user", "revoke", "alice", "--device", "laptop"))
    after_revoke = snapshot(pki)
    _ok(cli("user", "revoke", "alice", "--device", "laptop"))
    _ok(cli("pki", "init"))
    assert snapshot(pki) == after_revoke


def test_unencrypted_ca_is_recorded_and_warned(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    proc = _ok(cli("pki", "init", "--insecure-unencrypted-ca", env={"OWRT_VPN_CA_PASSPHRASE": ""}))
    assert "warning: the CA key is stored UNENCRYPTED: use this PKI for tests only" in proc.stderr
    index = json.loads((tmp_path / "pki" / "index.json").read_text())
    assert index["ca_encrypted"] is False
    check = _ok(cli("check"))
    assert "warning: pki: the CA key is stored unencrypted" in check.stderr


def test_short_passphrase_override_for_throwaway_sites(cli: CliRunner, tmp_path: Path) -> None:
    """OWRT_VPN_ALLOW_SHORT_PASSPHRASE=1 lifts the 12-character minimum; the key stays
    encrypted (docs/security.md)."""
    from cryptography.hazmat.primitives import serialization

    write_site(tmp_path)
    short = {"OWRT_VPN_CA_PASSPHRASE": "short", "OWRT_VPN_ALLOW_SHORT_PASSPHRASE": "1"}
    _ok(cli("pki", "init", env=short))
    key = (tmp_path / "pki" / "ca.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key
    serialization.load_pem_private_key(key, b"short")
    assert json.loads((tmp_path / "pki" / "index.json").read_text())["ca_encrypted"] is True
    # Only a new CA's passphrase has a minimum: the short one keeps working.
    _ok(cli("user", "add", "eve", "--device", "p:ios", env={"OWRT_VPN_CA_PASSPHRASE": "short"}))
    # "1" only: any other value is no override
    other = tmp_path / "b"
    other.mkdir()
    write_site(other)
    proc = cli("pki", "init", cwd=other, env={**short, "OWRT_VPN_ALLOW_SHORT_PASSPHRASE": "yes"})
    assert proc.returncode == 2, proc.stderr
    assert "at least 12 characters" in proc.stderr
    assert not (other / "pki").exists()


def test_show_and_list_json(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    init = _ok(cli("pki", "init"))
    # The secrets it made stay in their files: `bundle` shows new ones (once, on a
    # terminal) or writes them to --password-file; `pki init` only says where they are.
    secrets = [p.read_text().strip() for p in (tmp_path / "pki").rglob("*.password")]
    assert any(p.parent.name == "eap" for p in (tmp_path / "pki").rglob("*.password"))
    assert secrets and not any(s in init.stdout + init.stderr for s in secrets)
    assert f"EAP passwords are in {tmp_path / 'pki' / 'eap'}" in init.stdout
    show = json.loads(_ok(cli("pki", "show", "--json")).stdout)
    assert show["ca"]["subject"] == "CN=home VPN CA,O=Home VPN"
    assert show["ca_encrypted"] is True
    assert show["crl"] is None
    listed = json.loads(_ok(cli("pki", "list", "--json")).stdout)["certificates"]
    owners = [(c["kind"], c.get("router") or c.get("user"), c.get("device")) for c in listed]
    assert owners == [
        ("ca", None, None),
        ("server", "gw", None),
        ("server", "gw2", None),
        ("client", "alice", "laptop"),
        ("client", "alice", "phone"),
        ("client", "carol", "pc"),
        ("client", "dave", "phone"),
    ]
    for cert in listed:
        assert cert["status"] == "valid"
        assert int(cert["serial"], 16) > 0


def test_renew(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    _ok(cli("pki", "init"))
    pki = tmp_path / "pki"
    old = (pki / "servers" / "gw.crt").read_bytes()
    old_p12 = (pki / "clients" / "alice" / "phone.p12").read_bytes()
    old_laptop = (pki / "clients" / "alice" / "laptop.crt").read_bytes()
    proc = _ok(
        cli("pki", "renew", "--router", "gw", "--user", "alice", "--device", "phone", "--json")
    )
    assert json.loads(proc.stdout)["renewed"] == ["server gw", "client alice/phone"]
    assert (pki / "servers" / "gw.crt").read_bytes() != old
    assert (pki / "clients" / "alice" / "phone.p12").read_bytes() != old_p12
    assert (pki / "clients" / "alice" / "laptop.crt").read_bytes() == old_laptop
    verify(pki / "ca.crt", pki / "servers" / "gw.crt")
    verify(pki / "ca.crt", pki / "clients" / "alice" / "phone.crt")
    # the CRL gets new dates and a new number
    _ok(cli("user", "revoke", "dave"))
    first = tool("openssl", "crl", "-in", pki / "crl.pem", "-noout", "-text")
    _ok(cli("pki", "renew", "--crl"))
    second = tool("openssl", "crl", "-in", pki / "crl.pem", "-noout", "-text")
    assert "CRL Number: \n                1" in first
    assert "CRL Number: \n                2" in second


def test_expiry_warnings(cli: CliRunner, tmp_path: Path) -> None:
    text = write_site(tmp_path).read_text()
    text = text.replace('shared_identity = "myVpnClients"', 'shared_identity = "myVpnClients"\n'
                        "client_days = 20\ncrl_days = 10")  # fmt: skip
    write_site(tmp_path, text)
    _ok(cli("pki", "init"))
    proc = _ok(cli("check", "--json"))
    warnings = json.loads(proc.stdout)["warnings"]
    for user, device in CLIENT_DEVICES:
        assert any(
            w.startswith(f"pki: the certificate of {user}/{device} expires on ")
            and f"run `owrt-vpn pki renew --user {user} --device {device}`" in w
            for w in warnings
        ), warnings
    assert not any("server certificate" in w for w in warnings)
    _ok(cli("user", "revoke", "alice", "--device", "phone"))
    warnings = json.loads(_ok(cli("check", "--json")).stdout)["warnings"]
    assert any(w.startswith("pki: the CRL expires on ") for w in warnings), warnings
    assert any(w.startswith("pki: the certificate of alice/phone is revoked") for w in warnings)


# ---------------------------------------------------------------------- guide CA import

GUIDE_P12_PASSWORD = "guide-ca-p12-pass"


def _guide_ca(folder: Path) -> None:
    """Make caKey.pem, caCert.pem and ca.p12 the way the guide's "Making Keys" script does."""
    folder.mkdir()
    # stdout only: strongSwan's plugin loader chats on stderr
    key = subprocess.run(["pki", "--gen", "--outform", "pem"], capture_output=True, check=True)
    (folder / "caKey.pem").write_bytes(key.stdout)
    proc = subprocess.run(
        ["pki", "--self", "--lifetime", "3652", "--in", folder / "caKey.pem",
         "--dn", "C=US, O=yyy, CN=xxxxca", "--ca", "--outform", "pem"],
        capture_output=True, check=True,
    )  # fmt: skip
    (folder / "caCert.pem").write_bytes(proc.stdout)
    tool(
        "openssl", "pkcs12", "-export", "-inkey", folder / "caKey.pem", "-in",
        folder / "caCert.pem", "-name", "xxxxca", "-certfile", folder / "caCert.pem",
        "-caname", "xxxxca", "-out", folder / "ca.p12", "-passout", f"pass:{GUIDE_P12_PASSWORD}",
    )  # fmt: skip


@pytest.mark.parametrize("form", ["pem", "p12"])
def test_import_guide_ca(cli: CliRunner, tmp_path: Path, form: str) -> None:
    write_site(tmp_path)
    guide = tmp_path / "guide"
    _guide_ca(guide)
    if form == "pem":
        args = ["--ca-cert", guide / "caCert.pem", "--ca-key", guide / "caKey.pem"]
        env = None
    else:
        args = ["--ca-p12", guide / "ca.p12"]
        env = {"OWRT_VPN_IMPORT_PASSWORD": GUIDE_P12_PASSWORD}
    proc = _ok(cli("pki", "import", *args, env=env))
    assert proc.stdout.startswith("imported the CA CN=xxxxca,O=yyy,C=US in ")
    pki = tmp_path / "pki"
    # our copy of the CA is the guide's certificate, its key stored encrypted
    assert (pki / "ca.crt").read_bytes() == (guide / "caCert.pem").read_bytes()
    assert (pki / "ca.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # new certificates chain to the imported CA
    verify(guide / "caCert.pem", pki / "servers" / "gw.crt")
    for user, device in CLIENT_DEVICES:
        crt = pki / "clients" / user / f"{device}.crt"
        verify(guide / "caCert.pem", crt)
        assert "Issuer: C = US, O = yyy, CN = xxxxca" in x509_text(crt)
    # importing the same CA again changes nothing; another CA needs --force
    before = snapshot(pki)
    _ok(cli("pki", "import", *args, env=env))
    assert snapshot(pki) == before
    # revocation works with the imported CA
    _ok(cli("user", "revoke", "alice", "--device", "phone"))
    index = json.loads((pki / "index.json").read_text())
    serial = next(
        int(c["serial"], 16)
        for c in index["certs"]
        if c.get("user") == "alice" and c.get("device") == "phone"
    )
    assert crl_serials(pki / "crl.pem", guide / "caCert.pem") == {serial}


def test_import_replaces_ca_with_force(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path)
    _ok(cli("pki", "init"))
    guide = tmp_path / "guide"
    _guide_ca(guide)
    pki = tmp_path / "pki"
    args = ("pki", "import", "--ca-cert", guide / "caCert.pem", "--ca-key", guide / "caKey.pem")
    before = snapshot(tmp_path)
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"error: {pki}: a CA exists already"
    assert snapshot(tmp_path) == before
    proc = _ok(cli(*args, "--force", "--json"))
    issued = json.loads(proc.stdout)["issued"]
    # everything the old CA issued is issued again by the imported one
    assert issued == [
        "ca (imported)",
        "server gw",
        "server gw2",
        "client alice/phone",
        "client alice/laptop",
        "client carol/pc",
        "client dave/phone",
    ]
    verify(guide / "caCert.pem", pki / "servers" / "gw2.crt")
    verify(guide / "caCert.pem", pki / "clients" / "dave" / "phone.crt")


def test_import_needs_the_p12_password(tmp_path: Path) -> None:
    """Without $OWRT_VPN_IMPORT_PASSWORD and no terminal, a clear error (exit 2)."""
    write_site(tmp_path)
    guide = tmp_path / "guide"
    _guide_ca(guide)
    env = {k: v for k, v in os.environ.items() if k != "OWRT_VPN_IMPORT_PASSWORD"}
    env["OWRT_VPN_CA_PASSPHRASE"] = "x" * 12
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "owrt_vpn", "pki", "import", "--ca-p12", guide / "ca.p12"],
        cwd=tmp_path, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"error: {guide / 'ca.p12'}: the file is password-protected: set OWRT_VPN_IMPORT_PASSWORD"
    )
    assert snapshot(tmp_path) == before


def test_big_batch_in_worker_processes(cli: CliRunner, tmp_path: Path) -> None:
    """Above MIN_BATCH devices, forked workers make them: same checks, distinct serials."""
    from owrt_vpn.pki import pool as pki_pool

    text = SITE.split("# the family")[0]
    count = pki_pool.MIN_BATCH + 5
    for i in range(count):
        text += f'\n[[users]]\nname = "u{i}"\n\n[[users.devices]]\nname = "d"\nplatform = "ios"\n'
    text = text.replace('"10.10.10.0/24"', '"10.10.0.0/16"')
    text = text.replace('"10.10.20.0/24"', '"10.20.0.0/16"')
    write_site(tmp_path, text)
    proc = _ok(cli("pki", "init", "--json", "--verbose"))
    if (os.cpu_count() or 1) > 1:
        assert f"making {count} device certificates in " in proc.stderr
    assert json.loads(proc.stdout)["issued"][3:] == [f"client u{i}/d" for i in range(count)]
    pki = tmp_path / "pki"
    crts = [pki / "clients" / f"u{i}" / "d.crt" for i in range(count)]
    out = tool("openssl", "verify", "-CAfile", pki / "ca.crt", *crts)
    assert out.count(": OK\n") == count
    index = json.loads((pki / "index.json").read_text())
    assert len({c["serial"] for c in index["certs"]}) == count + 3
    passwords = {(pki / "clients" / f"u{i}" / "d.p12.password").read_text() for i in range(count)}
    assert len(passwords) == count
    for i in (0, count - 1):
        password = (pki / "clients" / f"u{i}" / "d.p12.password").read_text().strip()
        info = tool(
            "openssl", "pkcs12", "-legacy", "-info", "-noout", "-passin", f"pass:{password}",
            "-in", pki / "clients" / f"u{i}" / "d.p12",
        )  # fmt: skip
        assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC" in info
        assert f"email:u{i}+d@home" in x509_text(crts[i])
    before = snapshot(pki)
    _ok(cli("pki", "init"))
    assert snapshot(pki) == before
