"""Client bundles: layout, secrets, determinism, the `bundle` command."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from bundlekit import (
    ROUTER_GW,
    ROUTER_OFFICE,
    Dev,
    Usr,
    all_combinations,
    make_pki,
    make_site,
    site_text,
    tree,
    zip_members,
)
from owrt_vpn.bundles import writer as bundles
from owrt_vpn.pki.authority import Pki
from owrt_vpn.repro import source_date_epoch
from owrt_vpn.site.model import Site

# What each platform's folder holds besides README.md, ca.crt, ca.pem (and
# <device>.p12 for certificate users); "{d}" is the device name.
PLATFORM_FILES = {
    "ios": set(),
    "macos": set(),
    "android": set(),
    "android-strongswan": {"{d}-gw.sswan", "{d}-office.sswan"},
    "windows": {"{d}-windows.ps1"},
    "linux": {"{d}-gw.nmconnection", "{d}-office.nmconnection", "{d}-swanctl.conf"},
}
CERT_AUTH = {"pubkey", "eap-tls", "pubkey+eap-mschapv2"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, Pki, bundles.BundleReport]:
    root = tmp_path_factory.mktemp("bundles")
    users = all_combinations()
    users[0] = Usr(
        users[0].name,
        users[0].auth,
        (
            *users[0].devices,
            Dev("ipad", "ios", {"on_demand": True, "trusted_ssids": ["home wifi"]}),
        ),
    )
    site = make_site(root / "site", users, routers=(ROUTER_GW, ROUTER_OFFICE))
    pki = make_pki(site)
    report = bundles.build(site, pki, root / "dist")
    return site, pki, report


def _all_files(report: bundles.BundleReport) -> dict[str, bytes]:
    return tree(report.clients)


def test_every_platform_and_auth_gets_its_files(
    built: tuple[Site, Pki, bundles.BundleReport],
) -> None:
    site, _pki, report = built
    assert report.skipped == [] and report.removed == []
    expected = {(u.name, d.name) for u in site.users for d in u.devices}
    assert {(d.user, d.device) for d in report.devices} == expected
    for d in report.devices:
        names = {p.name for p in d.folder.iterdir()}
        want = {"README.md", "ca.crt", "ca.pem"} | {
            n.format(d=d.device) for n in PLATFORM_FILES[d.platform]
        }
        if d.auth in CERT_AUTH:
            want.add(f"{d.device}.p12")
        if d.platform == "linux" and d.auth in CERT_AUTH:
            want |= {f"{d.device}.crt", f"{d.device}.key"}
        if d.platform == "linux" and d.auth == "pubkey+eap-mschapv2":
            # NetworkManager's plugin has no second authentication round.
            want -= {f"{d.device}-gw.nmconnection", f"{d.device}-office.nmconnection"}
        mobileconfig = f"{d.device}.mobileconfig"
        if d.platform in ("ios", "macos"):
            if d.auth in CERT_AUTH:
                assert d.beside == [d.folder.parent / mobileconfig]
            else:
                want.add(mobileconfig)
                assert d.beside == []
        assert names == want, (d.user, d.device)
        assert d.zip == d.folder.parent / f"{d.user}-{d.device}.zip"


def test_zip_is_the_folder_sorted_with_fixed_times_and_modes(
    built: tuple[Site, Pki, bundles.BundleReport],
) -> None:
    _site, _pki, report = built
    epoch = source_date_epoch()
    for d in report.devices:
        prefix = f"{d.user}-{d.device}/"
        members = zip_members(d.zip)
        assert {n.removeprefix(prefix) for n in members} == {p.name for p in d.folder.iterdir()}
        for name, data in members.items():
            assert data == (d.folder / name.removeprefix(prefix)).read_bytes()
        with zipfile.ZipFile(d.zip) as zf:
            infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        for info in infos:
            assert info.date_time == __import__("time").gmtime(epoch)[:6]
            mode = info.external_attr >> 16
            on_disk = stat.S_IMODE((d.folder / info.filename.removeprefix(prefix)).stat().st_mode)
            assert stat.S_IMODE(mode) == on_disk
        assert stat.S_IMODE(d.zip.stat().st_mode) == 0o600


def test_secret_files_are_0600_and_public_ones_0644(
    built: tuple[Site, Pki, bundles.BundleReport],
) -> None:
    _site, _pki, report = built
    secret_suffixes = (".p12", ".key", ".mobileconfig", ".sswan", ".ps1", ".zip")
    secrets = set()
    for path in report.clients.rglob("*"):
        if not path.is_file():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name.endswith(secret_suffixes) and _holds_key(path):
            secrets.add(path.suffix)
            assert mode == 0o600, path
        elif path.suffix in (".md", ".crt", ".pem", ".conf", ".nmconnection"):
            assert mode == 0o644, path
    assert {".p12", ".zip", ".sswan", ".ps1"} <= secrets  # the markers still find them


def _holds_key(path: Path) -> bool:
    # Structural markers only: "p12" alone turns up by chance in base64 text.
    data = path.read_bytes()
    return (
        path.suffix in (".p12", ".key", ".zip")
        or (path.suffix == ".sswan" and b'"p12":' in data)
        or (path.suffix == ".ps1" and b"$Pkcs12 = '" in data and b"$Pkcs12 = ''" not in data)
        or (path.suffix == ".mobileconfig" and b"com.apple.security.pkcs12" in data)
    )


def test_no_password_in_any_zip_or_folder(built: tuple[Site, Pki, bundles.BundleReport]) -> None:
    site, pki, report = built
    passwords = set()
    for u in site.users:
        if u.auth in CERT_AUTH:
            passwords |= {pki.p12_password(u.name, d.name) for d in u.devices}
        if "mschapv2" in u.auth:
            passwords.add(pki.eap_password(u.name))
    assert passwords and all(len(p) >= 16 for p in passwords)
    beside = {p for d in report.devices for p in d.beside}
    for path in report.clients.rglob("*"):
        if not path.is_file() or path in beside:
            continue
        blobs = list(zip_members(path).values()) if path.suffix == ".zip" else [path.read_bytes()]
        for blob in blobs:
            for pw in passwords:
                assert pw.encode() not in blob, path
    # The Apple certificate profiles do embed theirs: they are the files beside.
    for d in report.devices:
        if d.beside:
            assert d.p12_password is not None
            assert d.p12_password.encode() in d.beside[0].read_bytes()


def test_no_ca_key_and_only_own_key(built: tuple[Site, Pki, bundles.BundleReport]) -> None:
    site, pki, report = built
    ca_key = (pki.root / "ca.key").read_bytes()
    ca_key_body = b"".join(ca_key.splitlines()[1:-1])[:64]
    keys = {
        (u.name, d.name): pki.client_cert_pem(u.name, d.name)
        for u in site.users
        if u.auth in CERT_AUTH
        for d in u.devices
    }
    for d in report.devices:
        files = tree(d.folder) | {p.name: p.read_bytes() for p in d.beside}
        for name, data in files.items():
            assert ca_key_body not in data.replace(b"\n", b""), name
            assert b"BEGIN PRIVATE KEY" not in data and b"BEGIN EC PRIVATE KEY" not in data, name
        if d.auth not in CERT_AUTH:
            assert not any(n.endswith((".p12", ".key")) for n in files)
            continue
        assert d.p12_password is not None
        _key, cert, _ = pkcs12.load_key_and_certificates(
            files[f"{d.device}.p12"], d.p12_password.encode()
        )
        assert cert is not None
        own = x509.load_pem_x509_certificate(keys[(d.user, d.device)])
        assert cert.fingerprint(cert.signature_hash_algorithm) == own.fingerprint(  # type: ignore[arg-type]
            own.signature_hash_algorithm  # type: ignore[arg-type]
        )
        # No other device's certificate in this bundle.
        for other, pem in keys.items():
            if other != (d.user, d.device):
                der_b64 = b"".join(pem.splitlines()[1:-1])[20:80]
                assert all(der_b64 not in data for data in files.values()), other


def test_readme_has_the_real_values(built: tuple[Site, Pki, bundles.BundleReport]) -> None:
    site, _pki, report = built
    for d in report.devices:
        text = (d.folder / "README.md").read_text()
        assert "vpn.example.org" in text and "203.0.113.7" in text  # both routers
        if d.auth in CERT_AUTH:
            assert f"{d.user}+{d.device}@{site.name}" in text
        if "mschapv2" in d.auth:
            assert f"`{d.user}`" in text
        assert "{{" not in text and "None" not in text.replace("**None**", "").replace(
            "| Proxy | None |", ""
        ).replace("-PfsGroup None", ""), d.folder
    win = next(d for d in report.devices if d.platform == "windows" and d.auth == "pubkey")
    text = (win.folder / "README.md").read_text()
    assert "NegotiateDH2048_AES256" in text and "Local Machine" in text
    droid = next(d for d in report.devices if d.platform == "android" and d.auth == "pubkey")
    text = (droid.folder / "README.md").read_text()
    assert "**IKEv2/IPsec RSA**" in text and "| IPsec identifier | `pubkey+android@home` |" in text


def test_two_runs_are_byte_identical(tmp_path: Path) -> None:
    users = [
        Usr("alice", "pubkey", (Dev("phone", "ios"), Dev("pc", "windows"))),
        Usr("bob", "eap-tls", (Dev("box", "linux"), Dev("tab", "android-strongswan"))),
    ]
    site = make_site(tmp_path / "s", users)
    pki = make_pki(site)
    first = bundles.build(site, pki, tmp_path / "a")
    second = bundles.build(site, pki, tmp_path / "b")
    a, b = tree(first.clients), tree(second.clients)
    assert a == b and len(a) > 20
    third = bundles.build(site, pki, tmp_path / "a")  # in place: replaced, same bytes
    assert tree(third.clients) == a


def test_revoked_device_is_skipped_and_its_files_removed(tmp_path: Path) -> None:
    users = [Usr("alice", "pubkey", (Dev("phone", "ios"), Dev("pc", "windows")))]
    site = make_site(tmp_path / "s", users)
    pki = make_pki(site)
    bundles.build(site, pki, tmp_path / "d")
    pki.revoke(site, "alice", "pc")
    report = bundles.build(site, pki, tmp_path / "d")
    assert [d.device for d in report.devices] == ["phone"]
    assert report.skipped == ["alice/pc: certificate revoked"]
    assert not (report.clients / "alice" / "pc").exists()
    assert not (report.clients / "alice" / "alice-pc.zip").exists()


def test_users_no_longer_in_the_site_lose_their_bundles(tmp_path: Path) -> None:
    alice = Usr("alice", "pubkey", (Dev("phone", "ios"),))
    bob = Usr("bob", "eap-mschapv2", (Dev("phone", "android"),))
    site = make_site(tmp_path / "s", [alice, bob])
    pki = make_pki(site)
    bundles.build(site, pki, tmp_path / "d")
    site2 = make_site(tmp_path / "s", [alice])
    report = bundles.build(site2, pki, tmp_path / "d")
    assert report.removed == ["bob"]
    assert sorted(p.name for p in report.clients.iterdir()) == ["alice"]
    # Naming users builds only them and removes nothing.
    only = bundles.build(site, pki, tmp_path / "d", ["bob"])
    assert [d.user for d in only.devices] == ["bob"] and only.removed == []


@pytest.mark.parametrize("who", ["alice", "gone"])
def test_a_linked_user_folder_is_refused_before_anything_is_written(
    tmp_path: Path, who: str
) -> None:
    from owrt_vpn.errors import UsageError

    site = make_site(tmp_path / "s", [Usr("alice", "pubkey", (Dev("phone", "ios"),))])
    pki = make_pki(site)
    clients = bundles.clients_dir(site, tmp_path / "d")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keep").mkdir(parents=True)
    (elsewhere / "keep" / "file").write_text("mine")
    clients.mkdir(parents=True)
    (clients / who).symlink_to(elsewhere)
    with pytest.raises(UsageError) as exc:
        bundles.build(site, pki, tmp_path / "d")
    assert exc.value.exit_code == 2
    assert f"{clients / who}: is a symbolic link; owrt-vpn writes only real folders" in str(
        exc.value
    )
    # nothing written: the link, its target and the clients folder are as they were
    assert sorted(p.name for p in clients.iterdir()) == [who]
    assert (clients / who).readlink() == elsewhere
    assert sorted(str(p.relative_to(elsewhere)) for p in elsewhere.rglob("*")) == [
        "keep",
        "keep/file",
    ]


def test_user_routers_limit_the_profiles(tmp_path: Path) -> None:
    users = [Usr("alice", "pubkey", (Dev("box", "linux"),), routers=("office",))]
    site = make_site(tmp_path / "s", users, routers=(ROUTER_GW, ROUTER_OFFICE))
    report = bundles.build(site, make_pki(site), tmp_path / "d")
    names = sorted(p.name for p in report.devices[0].folder.iterdir())
    assert "box.nmconnection" in names and "box-office.nmconnection" not in names
    conf = (report.devices[0].folder / "box-swanctl.conf").read_text()
    assert "203.0.113.7" in conf and "vpn.example.org" not in conf


# ---------------------------------------------------------------- the command


def _cli_site(tmp_path: Path) -> Path:
    users = [
        Usr("alice", "pubkey", (Dev("phone", "ios"),)),
        Usr("bob", "eap-mschapv2", (Dev("phone", "android"),)),
    ]
    (tmp_path / "owrt-vpn.toml").write_text(site_text(users))
    return tmp_path


def _on_terminal(cwd: Path, *argv: str) -> str:
    """Run the CLI on a pseudo-terminal (as an admin does); what it printed."""
    from owrtcli import run_on_terminal

    rc, out = run_on_terminal(*argv, cwd=cwd)
    assert rc == 0, out
    return out


def test_bundle_shows_new_passwords_once_never_in_json(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """New passwords: once on a terminal; then only with --show-passwords; never in --json."""
    _cli_site(tmp_path)
    proc = cli("bundle", "--json", check=True)
    data = json.loads(proc.stdout)
    devs = {(d["user"], d["device"]): d for d in data["devices"]}
    pki_dir = tmp_path / "pki"
    p12_pw = (pki_dir / "clients/alice/phone.p12.password").read_text().strip()
    eap_pw = (pki_dir / "eap/bob.password").read_text().strip()
    assert p12_pw not in proc.stdout + proc.stderr and eap_pw not in proc.stdout + proc.stderr
    assert "p12_password" not in devs[("alice", "phone")]
    assert devs[("alice", "phone")]["secret_files"] == [
        str(Path("dist/home/clients/alice/phone.mobileconfig"))
    ]
    assert (tmp_path / "dist/home/clients/alice/alice-phone.zip").is_file()
    # Not a terminal (a log): new passwords are not printed, the way to get them is.
    piped = cli("bundle", check=True)
    assert p12_pw not in piped.stdout and eap_pw not in piped.stdout
    assert "2 new password(s) not shown (not a terminal)" in piped.stdout
    first = _on_terminal(tmp_path, "bundle")
    assert p12_pw in first and eap_pw in first and "new passwords (shown once" in first
    again = _on_terminal(tmp_path, "bundle")
    assert p12_pw not in again and eap_pw not in again
    assert "2 password(s) shown before: --show-passwords repeats them" in again
    ledger = (pki_dir / "shown.json").read_text()
    assert p12_pw not in ledger and eap_pw not in ledger
    assert stat.S_IMODE(os.stat(pki_dir / "shown.json").st_mode) == 0o600
    repeated = cli("bundle", "--show-passwords", check=True).stdout
    assert p12_pw in repeated and eap_pw in repeated


def test_bundle_command_password_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _cli_site(tmp_path)
    proc = cli("bundle", "bob", "--out", "out", "--password-file", "secrets.txt", check=True)
    text = (tmp_path / "secrets.txt").read_text()
    eap_pw = (tmp_path / "pki/eap/bob.password").read_text().strip()
    assert f"bob\teap\t{eap_pw}" in text and "alice" not in text
    assert stat.S_IMODE(os.stat(tmp_path / "secrets.txt").st_mode) == 0o600
    assert eap_pw not in proc.stdout and "secrets.txt" in proc.stdout
    assert not (tmp_path / "out/home/clients/alice").exists()
    inside = cli("bundle", "--out", "out", "--password-file", "out/home/clients/x.txt")
    assert inside.returncode == 2 and "inside the bundles" in inside.stderr
    unknown = cli("bundle", "nobody")
    assert unknown.returncode == 2 and "no user named 'nobody'" in unknown.stderr


def test_router_without_common_proposal_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from owrt_vpn.render import packages

    real = packages.esp_proposals
    # Pretend the office router's kernel could only do ChaCha20 for ESP:
    # Windows (AES only) cannot reach it, the strongSwan app can.
    monkeypatch.setattr(
        packages,
        "esp_proposals",
        lambda site, router: (
            ("chacha20poly1305",) if router.name == "office" else real(site, router)
        ),
    )
    users = [Usr("alice", "pubkey", (Dev("pc", "windows"), Dev("tab", "android-strongswan")))]
    site = make_site(tmp_path / "s", users, routers=(ROUTER_GW, ROUTER_OFFICE))
    report = bundles.build(site, make_pki(site), tmp_path / "d")
    assert report.skipped == [
        "alice/pc: windows has no proposal in common with router(s) office "
        "(crypto 'compat'; see `owrt-vpn check`)"
    ]
    pc = next(d for d in report.devices if d.device == "pc")
    script = (pc.folder / "pc-windows.ps1").read_text(encoding="utf-8-sig")
    assert "home VPN (gw)" in script and "home VPN (office)" not in script
    tab = next(d for d in report.devices if d.device == "tab")
    office = json.loads((tab.folder / "tab-office.sswan").read_text())
    assert "chacha20poly1305" in office["esp-proposal"]
