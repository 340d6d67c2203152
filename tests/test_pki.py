"""The PKI core (owrt_vpn.pki): what it issues, checked with openssl and strongSwan's pki."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from owrt_vpn.errors import PkiError
from owrt_vpn.pki.authority import Pki
from owrt_vpn.site.load import load_site
from owrt_vpn.site.model import Site
from pki_testlib import (
    CLIENT_DEVICES,
    PASSPHRASE,
    crl_serials,
    snapshot,
    strongswan_print,
    tool,
    verify,
    write_site,
    x509_text,
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("OWRT_VPN_CA_PASSPHRASE", PASSPHRASE)
    return load_site(write_site(tmp_path))


def _init(site: Site) -> Pki:
    p = Pki.open(site)
    report = p.init(site)
    assert report.issued == [
        "ca",
        "server gw",
        "server gw2",
        "client alice/phone",
        "client alice/laptop",
        "client carol/pc",
        "client dave/phone",
    ]
    assert sorted(report.passwords) == ["bob", "carol"]
    return p


@pytest.fixture
def pki(site: Site) -> Pki:
    """A fresh PKI per test (for tests that change it)."""
    return _init(site)


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One PKI shared by the read-only tests (key generation is the slow part)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OWRT_VPN_CA_PASSPHRASE", PASSPHRASE)
        return _init(load_site(write_site(tmp_path_factory.mktemp("issued"))))


def test_ca(issued: Pki) -> None:
    pki = issued
    ca = pki.root / "ca.crt"
    text = x509_text(ca)
    assert "Subject: O = Home VPN, CN = home VPN CA" in text
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    out = strongswan_print(ca)
    assert "flags:     CA CRLSign self-signed" in out
    assert "pathlen:   0" in out
    key = (pki.root / "ca.key").read_text()
    assert key.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # The stored key opens with the passphrase, and only with it.
    tool("openssl", "pkey", "-in", pki.root / "ca.key", "-passin", f"pass:{PASSPHRASE}", "-noout")
    assert pki.ca_cert_pem() == ca.read_bytes()
    assert pki.ca_cert_der()[:1] == b"\x30"


@pytest.mark.parametrize(
    ("router", "sans"),
    [("gw", "DNS:vpn.example.org"), ("gw2", "IP Address:203.0.113.7, DNS:203.0.113.7")],
)
def test_server_certificates(issued: Pki, router: str, sans: str) -> None:
    pki = issued
    crt = pki.root / "servers" / f"{router}.crt"
    verify(pki.root / "ca.crt", crt)
    text = x509_text(crt)
    assert f"X509v3 Subject Alternative Name: \n                {sans}\n" in text
    assert "TLS Web Server Authentication, 1.3.6.1.5.5.8.2.2" in text
    assert "Public-Key: (3072 bit)" in text
    assert "Subject: O = Home VPN, CN = " in text
    out = strongswan_print(crt)
    assert "flags:     serverAuth ikeIntermediate" in out
    assert pki.server_cert_pem(router) == crt.read_bytes()
    key = pki.server_key_pem(router)
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8
    mod_key = tool("openssl", "pkey", "-in", pki.root / "servers" / f"{router}.key", "-pubout")
    mod_crt = tool("openssl", "x509", "-in", crt, "-noout", "-pubkey")
    assert mod_key == mod_crt


@pytest.mark.parametrize(("user", "device"), CLIENT_DEVICES)
def test_client_certificates(issued: Pki, user: str, device: str) -> None:
    pki = issued
    d = pki.root / "clients" / user
    crt = d / f"{device}.crt"
    identity = f"{user}+{device}@home"
    verify(pki.root / "ca.crt", crt)
    text = x509_text(crt)
    sans = f"email:{identity}"
    if (user, device) == ("alice", "phone"):
        sans += ", DNS:myVpnClients"
    assert f"X509v3 Subject Alternative Name: \n                {sans}\n" in text
    assert "X509v3 Extended Key Usage: \n                TLS Web Client Authentication\n" in text
    assert f'Subject: O = Home VPN, CN = "{identity}"' in text
    android = (user, device) == ("dave", "phone")
    assert ("Public-Key: (3072 bit)" if android else "ASN1 OID: prime256v1") in text
    assert pki.client_key_type(user, device) == ("rsa3072" if android else "ecdsa-p256")
    out = strongswan_print(crt)
    assert "flags:     clientAuth" in out
    assert f"altNames:  {identity}" in out

    password = (d / f"{device}.p12.password").read_text().strip()
    assert password == pki.p12_password(user, device)
    assert len(password) == 20
    info = tool(
        "openssl", "pkcs12", "-legacy", "-info", "-noout", "-in", d / f"{device}.p12",
        "-passin", f"pass:{password}",
    )  # fmt: skip
    assert "MAC: sha1, Iteration 2048" in info
    assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC" in info
    assert "Certificate bag" in info
    # Key, certificate and CA all in the p12; friendly name = identity.
    dump = tool(
        "openssl", "pkcs12", "-legacy", "-in", d / f"{device}.p12", "-passin",
        f"pass:{password}", "-nodes",
    )  # fmt: skip
    assert dump.count("-----BEGIN CERTIFICATE-----") == 2
    assert "-----BEGIN PRIVATE KEY-----" in dump
    assert f"friendlyName: {identity}" in dump
    assert "subject=O = Home VPN, CN = home VPN CA" in dump
    assert pki.p12(user, device) == (d / f"{device}.p12").read_bytes()
    assert pki.client_cert_pem(user, device) == crt.read_bytes()
    assert pki.client_key_pem(user, device).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_eap_passwords_and_modes(issued: Pki) -> None:
    pki = issued
    for user in ("bob", "carol"):
        pw = pki.eap_password(user)
        assert len(pw) == 20
        assert not set(pw) & set("0O1lI")
        assert (pki.root / "eap" / f"{user}.password").read_text() == pw + "\n"
    assert pki.eap_password("bob") != pki.eap_password("carol")
    with pytest.raises(PkiError, match=r"alice\.password: missing"):
        pki.eap_password("alice")
    for path in [pki.root, *pki.root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.suffix in (".crt", ".json") or path.name == "crl.pem":
            assert mode == 0o644, path
        else:  # keys, p12, passwords
            assert mode == 0o600, path


def test_idempotent(site: Site, pki: Pki) -> None:
    before = snapshot(pki.root)
    digest = pki.digest()
    again = Pki.open(site)
    assert not again.init(site).changed
    assert not again.ensure(site).changed
    assert not again.ensure_router(site, "gw").changed
    assert snapshot(pki.root) == before
    assert Pki.open(site).digest() == digest
    gw2 = pki.digest("gw2")
    pki.renew(site, routers=["gw"])
    assert pki.digest() != digest
    assert pki.digest("gw2") == gw2


def test_no_passphrase_needed_when_nothing_is_missing(
    site: Site, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OWRT_VPN_CA_PASSPHRASE")
    p = Pki.open(site)
    assert not p.ensure(site).changed
    # A missing certificate needs the CA key, hence the passphrase.
    (pki.root / "servers" / "gw.key").unlink()
    before = snapshot(pki.root)
    with pytest.raises(PkiError, match="the CA key is encrypted: set OWRT_VPN_CA_PASSPHRASE"):
        Pki.open(site).ensure(site)
    assert snapshot(pki.root) == before
    monkeypatch.setenv("OWRT_VPN_CA_PASSPHRASE", "wrong passphrase")
    with pytest.raises(PkiError, match=r"cannot decrypt the CA key \(wrong passphrase\?\)"):
        Pki.open(site).ensure(site)
    assert snapshot(pki.root) == before
    monkeypatch.setenv("OWRT_VPN_CA_PASSPHRASE", PASSPHRASE)
    assert Pki.open(site).ensure(site).issued == ["server gw"]
    verify(pki.root / "ca.crt", pki.root / "servers" / "gw.crt")


def test_lost_p12_is_rebuilt_without_the_ca_key(
    site: Site, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pki.root / "clients" / "alice" / "phone.p12").unlink()
    crt = (pki.root / "clients" / "alice" / "phone.crt").read_bytes()
    monkeypatch.delenv("OWRT_VPN_CA_PASSPHRASE")
    assert Pki.open(site).ensure(site).issued == ["p12 alice/phone"]
    assert (pki.root / "clients" / "alice" / "phone.crt").read_bytes() == crt
    password = pki.p12_password("alice", "phone")
    tool(
        "openssl", "pkcs12", "-legacy", "-info", "-noout", "-passin", f"pass:{password}",
        "-in", pki.root / "clients" / "alice" / "phone.p12",
    )  # fmt: skip


def test_ensure_without_ca(site: Site) -> None:
    with pytest.raises(PkiError, match="no CA") as exc:
        Pki.open(site).ensure(site)
    assert exc.value.hint == "run `owrt-vpn pki init` first"
    assert not site.pki_path.exists()


def test_ensure_router_only_issues_that_router(site: Site) -> None:
    p = Pki.open(site)
    p.init(site)
    for path in (p.root / "servers").iterdir():
        path.unlink()
    (p.root / "eap" / "bob.password").unlink()
    (p.root / "eap" / "carol.password").unlink()
    report = Pki.open(site).ensure_router(site, "gw2")
    # carol may only use gw: no password for her from gw2's point of view
    assert report.issued == ["server gw2"]
    assert list(report.passwords) == ["bob"]
    assert not (p.root / "servers" / "gw.crt").exists()


def test_revoke_crl_and_renew(site: Site, pki: Pki) -> None:
    assert pki.crl_pem() is None
    assert pki.revoked() == []
    laptop = pki.client_record("alice", "laptop")
    assert laptop is not None
    result = pki.revoke(site, "alice", "laptop")
    assert [r.serial for r in result.certs] == [laptop.serial]
    ca = pki.root / "ca.crt"
    assert crl_serials(pki.root / "crl.pem", ca) == {laptop.serial}
    assert pki.client_status("alice", "laptop") == "revoked"
    with pytest.raises(PkiError, match="the certificate of alice/laptop is revoked"):
        pki.p12("alice", "laptop")
    assert [r.identity for r in pki.revoked()] == ["alice+laptop@home"]
    # revoked devices are not re-issued by ensure
    report = Pki.open(site).ensure(site)
    assert not report.changed
    assert report.skipped[0].startswith("alice/laptop: certificate revoked")
    # revoking twice changes nothing
    before = snapshot(pki.root)
    assert not Pki.open(site).revoke(site, "alice", "laptop").changed
    assert snapshot(pki.root) == before
    # whole user with EAP: certificate and password
    carol = pki.client_record("carol", "pc")
    assert carol is not None
    result = Pki.open(site).revoke(site, "carol")
    assert result.eap
    assert not (pki.root / "eap" / "carol.password").exists()
    assert crl_serials(pki.root / "crl.pem", ca) == {laptop.serial, carol.serial}
    # renew gives the device a new, valid certificate; the CRL keeps the old serial
    p = Pki.open(site)
    assert p.renew(site, user="alice", device="laptop") == ["client alice/laptop"]
    new = p.client_record("alice", "laptop")
    assert new is not None and new.serial != laptop.serial and new.status == "valid"
    verify(ca, pki.root / "clients" / "alice" / "laptop.crt")
    assert crl_serials(pki.root / "crl.pem", ca) == {laptop.serial, carol.serial}
    crl_text = tool("openssl", "crl", "-in", pki.root / "crl.pem", "-noout", "-text")
    assert "X509v3 CRL Number: \n                2" in crl_text


def test_a_symlinked_index_is_written_through_the_link(
    site: Site, pki: Pki, tmp_path: Path
) -> None:
    link = pki.root / "index.json"
    target = tmp_path / "elsewhere" / "index.json"
    target.parent.mkdir()
    link.rename(target)
    link.symlink_to(target)
    pki.revoke(site, "alice", "laptop")
    assert link.is_symlink() and link.readlink() == target
    records = json.loads(target.read_text())["certs"]
    laptop = [r for r in records if r.get("user") == "alice" and r.get("device") == "laptop"]
    assert [r["status"] for r in laptop] == ["revoked"]
    assert not [p for p in pki.root.iterdir() if p.name.startswith(".index.json")]


def test_remove_user(site: Site, pki: Pki) -> None:
    serials = {pki.client_record("alice", d).serial for d in ("phone", "laptop")}  # type: ignore[union-attr]
    pki.remove_user(site, "alice")
    assert not (pki.root / "clients" / "alice").exists()
    assert crl_serials(pki.root / "crl.pem", pki.root / "ca.crt") == serials
    assert pki.client_status("alice", "phone") == "missing"


def test_renew_router_and_ca(site: Site, pki: Pki) -> None:
    old_server = pki.server_cert_pem("gw")
    old_ca = pki.ca_cert_pem()
    assert pki.renew(site, routers=["gw"], ca=True) == ["ca", "server gw"]
    assert pki.server_cert_pem("gw") != old_server
    assert pki.ca_cert_pem() != old_ca
    # same CA key and subject: certificates issued before still verify
    verify(pki.root / "ca.crt", pki.root / "clients" / "alice" / "phone.crt")
    verify(pki.root / "ca.crt", pki.root / "servers" / "gw.crt")
    assert not Pki.open(site).ensure(site).changed


def test_unencrypted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OWRT_VPN_CA_PASSPHRASE", raising=False)
    site = load_site(write_site(tmp_path))
    with pytest.raises(PkiError, match="no CA passphrase: set OWRT_VPN_CA_PASSPHRASE"):
        Pki.open(site).init(site)
    assert not site.pki_path.exists()
    p = Pki.open(site)
    p.init(site, encrypt=False)
    assert not p.ca_encrypted
    assert (p.root / "ca.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    (p.root / "servers" / "gw.crt").unlink()
    assert Pki.open(site).ensure(site).issued == ["server gw"]


def test_site_changes_reissue(tmp_path: Path, site: Site, pki: Pki) -> None:
    text = site.path.read_text().replace('"vpn.example.org"', '"vpn2.example.org"')
    text = text.replace('platform = "windows"', 'platform = "android"')
    site2 = load_site(write_site(tmp_path, text))
    report = Pki.open(site2).ensure(site2)
    assert report.issued == ["server gw", "client alice/laptop"]
    assert "DNS:vpn2.example.org" in x509_text(pki.root / "servers" / "gw.crt")
    assert Pki.open(site2).client_key_type("alice", "laptop") == "rsa3072"
