"""`check` parses and chain-checks every PKI file, warns about (and repairs) loose modes.

Two PKIs are made once per module (ours with a revocation, and a foreign one
from another site); each test copies ours and damages one file the way an
attacker or a careless user would, then runs the real CLI.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import CliRunner
from owrtcli import run_owrt
from pki_testlib import PASSPHRASE, SITE, key_pem, self_signed_ca, snapshot, write_site

# The one warning of the intact site (alice's laptop is revoked).
REVOKED_WARNING = (
    "warning: pki: the certificate of alice/laptop is revoked; the device cannot connect "
    "(new one: `owrt-vpn pki renew --user alice --device laptop`)\n"
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Our site with its PKI (alice's laptop revoked) and a foreign site's PKI."""
    ours = tmp_path_factory.mktemp("ours")
    write_site(ours)
    run_owrt("pki", "init", cwd=ours, check=True)
    run_owrt("user", "revoke", "alice", "--device", "laptop", cwd=ours, check=True)
    theirs = tmp_path_factory.mktemp("theirs")
    write_site(theirs, SITE.replace('name = "home"', 'name = "other"', 1))
    run_owrt("pki", "init", cwd=theirs, check=True)
    run_owrt("user", "revoke", "alice", "--device", "laptop", cwd=theirs, check=True)
    return {"ours": ours, "theirs": theirs}


@pytest.fixture
def site(made: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh copy of our site folder (modes kept)."""
    dest = tmp_path / "site"
    shutil.copytree(made["ours"], dest)
    return dest


def _refused(cli: CliRunner, site: Path, path: Path, fragment: str) -> None:
    before = snapshot(site)
    proc = cli("check", cwd=site)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: {path}: "), proc.stderr
    assert fragment in first, proc.stderr
    assert snapshot(site) == before


def test_intact_pki_passes(cli: CliRunner, site: Path) -> None:
    proc = cli("check", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert _warnings(proc.stderr) == REVOKED_WARNING


def test_crl_from_another_ca(cli: CliRunner, site: Path, made: dict[str, Path]) -> None:
    crl = site / "pki" / "crl.pem"
    crl.write_bytes((made["theirs"] / "pki" / "crl.pem").read_bytes())
    _refused(cli, site, crl, "not by ca.crt")
    # build's reader refuses it too: nothing unverified is baked
    proc = cli("render", "--router", "gw", "--out", site / "r", cwd=site)
    assert proc.returncode == 3, proc.stderr
    assert str(crl) in proc.stderr
    assert not (site / "r").exists()


def test_crl_missing_a_revocation(cli: CliRunner, site: Path) -> None:
    # Right issuer, valid signature by our CA key, but the revoked laptop is
    # not listed: the router would keep accepting it.
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    pki = site / "pki"
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), PASSPHRASE.encode())
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
    builder = builder.last_update(now).next_update(now + dt.timedelta(days=30))
    crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    (pki / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    _refused(cli, site, pki / "crl.pem", "does not list revoked serial")


def test_truncated_server_certificate(cli: CliRunner, site: Path) -> None:
    crt = site / "pki" / "servers" / "gw.crt"
    crt.write_bytes(crt.read_bytes()[:300])
    _refused(cli, site, crt, "not a PEM certificate")


def test_server_certificate_of_another_ca(
    cli: CliRunner, site: Path, made: dict[str, Path]
) -> None:
    crt = site / "pki" / "servers" / "gw.crt"
    crt.write_bytes((made["theirs"] / "pki" / "servers" / "gw.crt").read_bytes())
    _refused(cli, site, crt, "not signed by ca.crt")


def test_server_key_of_another_certificate(cli: CliRunner, site: Path) -> None:
    key = site / "pki" / "servers" / "gw.key"
    key.write_bytes((site / "pki" / "servers" / "gw2.key").read_bytes())
    _refused(cli, site, key, "does not belong to gw.crt")


def test_rsa_key_of_another_rsa_certificate(cli: CliRunner, site: Path) -> None:
    """dave's Android device has an RSA-3072 key: another RSA-3072 key in its place."""
    from owrt_vpn.pki import certs as pc

    key = site / "pki" / "clients" / "dave" / "phone.key"
    key.write_bytes(key_pem(pc.generate_key("rsa3072")))
    _refused(cli, site, key, "does not belong to phone.crt")


def test_damaged_rsa_key_whose_public_half_matches(cli: CliRunner, site: Path) -> None:
    """The modulus and exponent still match the certificate; a CRT value does not."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = site / "pki" / "clients" / "dave" / "phone.key"
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    n = key.private_numbers()
    bad = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1, n.dmq1, n.iqmp + 1, n.public_numbers)
    path.write_bytes(key_pem(bad.private_key(unsafe_skip_rsa_key_validation=True)))
    _refused(cli, site, path, "damaged: its private numbers do not agree")


def test_unencrypted_rsa_ca_key_of_another_rsa_certificate(cli: CliRunner, site: Path) -> None:
    """An unencrypted CA (RSA-3072, like ours) whose key is another RSA-3072 key."""
    pki = site / "pki"
    index = pki / "index.json"
    index.write_text(index.read_text().replace('"ca_encrypted": true', '"ca_encrypted": false'))
    (pki / "ca.key").write_bytes((pki / "clients" / "dave" / "phone.key").read_bytes())
    _refused(cli, site, pki / "ca.key", "does not belong to ca.crt")


def test_import_refuses_an_rsa_ca_with_another_rsa_key(
    cli: CliRunner, site: Path, tmp_path: Path
) -> None:
    """`pki import` of our RSA CA certificate with an RSA key that is not its own."""
    folder = tmp_path / "new"
    folder.mkdir()
    write_site(folder)
    before = snapshot(folder)
    proc = cli("pki", "import", "--ca-cert", site / "pki" / "ca.crt",
               "--ca-key", site / "pki" / "clients" / "dave" / "phone.key", cwd=folder)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "error: the private key does not belong to the CA certificate\n"
    ), proc.stderr
    assert snapshot(folder) == before


def test_corrupt_ca_certificate(cli: CliRunner, site: Path) -> None:
    ca = site / "pki" / "ca.crt"
    ca.write_bytes(ca.read_bytes().replace(b"M", b"N", 3))
    _refused(cli, site, ca, "ca.crt")


def test_corrupt_ca_key(cli: CliRunner, site: Path) -> None:
    key = site / "pki" / "ca.key"
    key.write_bytes(key.read_bytes()[:200])
    _refused(cli, site, key, "damaged or truncated")


def test_client_certificate_of_another_ca(
    cli: CliRunner, site: Path, made: dict[str, Path]
) -> None:
    crt = site / "pki" / "clients" / "alice" / "phone.crt"
    crt.write_bytes((made["theirs"] / "pki" / "clients" / "alice" / "phone.crt").read_bytes())
    _refused(cli, site, crt, "not signed by ca.crt")


def test_p12_of_another_device(cli: CliRunner, site: Path) -> None:
    p12 = site / "pki" / "clients" / "dave" / "phone.p12"
    shutil.copy(site / "pki" / "clients" / "alice" / "phone.p12", p12)
    _refused(cli, site, p12, "does not open with its .p12.password")


def _pair(site: Path, user: str, device: str) -> tuple[Path, Path]:
    base = site / "pki" / "clients" / user
    return base / f"{device}.p12", base / f"{device}.p12.password"


def test_p12_pair_of_another_device(cli: CliRunner, site: Path) -> None:
    """alice's .p12 with its own .p12.password in dave's place: the MAC verifies, the
    certificate inside is alice's (dave's is RSA: our own PKCS#12 opener)."""
    for src, dst in zip(_pair(site, "alice", "phone"), _pair(site, "dave", "phone"), strict=True):
        shutil.copy(src, dst)
    _refused(
        cli, site, _pair(site, "dave", "phone")[0], "holds the certificate of alice+phone@home"
    )


def test_p12_pairs_swapped_between_users(
    cli: CliRunner, site: Path, made: dict[str, Path], tmp_path: Path
) -> None:
    """Two users' pairs swapped: alice's (ECDSA: cryptography's loader) is named first."""
    alice, dave = _pair(site, "alice", "phone"), _pair(site, "dave", "phone")
    for a, d in zip(alice, dave, strict=True):
        shutil.move(a, tmp_path / "a")
        shutil.move(d, a)
        shutil.move(tmp_path / "a", d)
    _refused(cli, site, alice[0], "holds the certificate of dave+phone@home")
    # and dave's (RSA) is caught on its own too
    for a in alice:
        shutil.copy(made["ours"] / a.relative_to(site), a)
    _refused(cli, site, dave[0], "holds the certificate of alice+phone@home")


def _legacy_p12(key: object, cert: object, cas: list[object], password: str) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    enc = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the form make_p12 writes
        .build(password.encode())
    )
    return pkcs12.serialize_key_and_certificates(b"x", key, cert, cas, enc)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["alice/phone", "dave/phone"])  # ECDSA, RSA
def test_p12_holding_another_key(cli: CliRunner, site: Path, device: str) -> None:
    """The right certificate beside a key that is not its own, with the right password."""
    from cryptography import x509

    from owrt_vpn.pki import certs as pc

    user, name = device.split("/")
    p12, password = _pair(site, user, name)
    cert = x509.load_pem_x509_certificate(p12.with_suffix(".crt").read_bytes())
    ca = x509.load_pem_x509_certificate((site / "pki" / "ca.crt").read_bytes())
    other = pc.generate_key("ecdsa-p256")
    p12.write_bytes(_legacy_p12(other, None, [cert, ca], password.read_text().strip()))
    _refused(cli, site, p12, f"holds a private key that does not belong to {name}.crt")


def test_p12_holding_a_foreign_ca(cli: CliRunner, site: Path, made: dict[str, Path]) -> None:
    """The device's own key and certificate, but another CA to install on the phone."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    p12, password = _pair(site, "dave", "phone")
    cert = x509.load_pem_x509_certificate(p12.with_suffix(".crt").read_bytes())
    key = serialization.load_pem_private_key(p12.with_suffix(".key").read_bytes(), None)
    theirs = x509.load_pem_x509_certificate((made["theirs"] / "pki" / "ca.crt").read_bytes())
    p12.write_bytes(_legacy_p12(key, cert, [theirs], password.read_text().strip()))
    _refused(cli, site, p12, "holds a certificate that is neither phone.crt nor ca.crt")


def test_truncated_p12(cli: CliRunner, site: Path) -> None:
    p12 = site / "pki" / "clients" / "alice" / "phone.p12"
    p12.write_bytes(p12.read_bytes()[:700])
    _refused(cli, site, p12, "not a PKCS#12 file")


def test_damaged_index(cli: CliRunner, site: Path) -> None:
    index = site / "pki" / "index.json"
    index.write_text("{not json")
    before = snapshot(site)
    proc = cli("check", cwd=site)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith(f"error: {index}: damaged PKI index"), proc.stderr
    assert snapshot(site) == before


def _mode_warnings(stderr: str) -> set[str]:
    return {ln for ln in stderr.splitlines() if " mode " in ln}


def _loose(path: Path, mode: int) -> str:
    """The warning (and repair) of a PKI file or folder with ``mode``."""
    if path.is_dir():
        return f"warning: {path}: mode {mode:04o} lets other users read PKI secrets: set to 0700"
    return f"warning: {path}: mode {mode:04o} lets other users read a secret: set to 0600"


def test_loose_modes_are_warned_and_repaired(cli: CliRunner, site: Path) -> None:
    pki = site / "pki"
    os.chmod(pki / "ca.key", 0o644)
    os.chmod(pki / "clients", 0o777)  # noqa: S103 - the careless user under test
    os.chmod(pki / "eap" / "bob.password", 0o640)
    proc = cli("check", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert _mode_warnings(proc.stderr) == {
        _loose(pki / "ca.key", 0o644),
        _loose(pki / "clients", 0o777),
        _loose(pki / "eap" / "bob.password", 0o640),
    }, proc.stderr
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((pki / "clients").stat().st_mode) == 0o700
    again = cli("check", cwd=site)
    assert again.returncode == 0 and _warnings(again.stderr) == REVOKED_WARNING, again.stderr


def test_loose_modes_behind_links_are_warned_and_repaired(
    cli: CliRunner, site: Path, tmp_path: Path
) -> None:
    """A ca.key or a clients/ folder moved elsewhere and linked back is read through
    the link: what it points to must be private too (links were skipped)."""
    pki = site / "pki"
    away = tmp_path / "away"
    away.mkdir()
    shutil.move(pki / "ca.key", away / "ca.key")
    (pki / "ca.key").symlink_to(away / "ca.key")
    shutil.move(pki / "clients", away / "clients")
    (pki / "clients").symlink_to(away / "clients")
    (away / "clients" / "alice" / "back").symlink_to(pki)  # a link up the tree: no loop
    os.chmod(away / "ca.key", 0o644)
    os.chmod(away / "clients", 0o755)  # noqa: S103 - the careless user under test
    os.chmod(away / "clients" / "alice" / "phone.key", 0o644)
    proc = cli("check", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert _mode_warnings(proc.stderr) == {
        _loose(pki / "ca.key", 0o644),
        _loose(pki / "clients", 0o755),
        _loose(pki / "clients" / "alice" / "phone.key", 0o644),
    }, proc.stderr
    assert stat.S_IMODE((away / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((away / "clients").stat().st_mode) == 0o700
    assert stat.S_IMODE((away / "clients" / "alice" / "phone.key").stat().st_mode) == 0o600


LOOSE = {"ca.key": 0o644, "clients": 0o777, "clients/alice/phone.p12": 0o640, "clients/dave": 0o755}


@pytest.mark.parametrize(
    "argv",
    [
        ["pki", "init"],
        ["user", "add", "eve", "--device", "p:ios"],
        ["user", "passwd", "bob", "--generate"],
    ],
    ids=["pki-init", "user-add", "user-passwd"],
)
def test_commands_writing_the_pki_tighten_loose_modes(
    cli: CliRunner, site: Path, argv: list[str]
) -> None:
    """Not only `check`: every command that writes into the PKI folder repairs (and
    warns about) the modes of the secrets it owns there, the files it did not touch too."""
    pki = site / "pki"
    for rel, mode in LOOSE.items():
        os.chmod(pki / rel, mode)
    proc = cli(*argv, cwd=site)
    assert proc.returncode == 0, proc.stderr
    for rel, mode in LOOSE.items():
        wanted = 0o700 if (pki / rel).is_dir() else 0o600
        assert stat.S_IMODE((pki / rel).stat().st_mode) == wanted, rel
        assert f"warning: {pki / rel}: mode {mode:04o} lets other users read " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_new_ca_in_a_loose_folder(cli: CliRunner, tmp_path: Path) -> None:
    """A PKI folder made beforehand with the umask's 0755: the new CA makes it 0700."""
    write_site(tmp_path)
    (tmp_path / "pki").mkdir(mode=0o755)
    os.chmod(tmp_path / "pki", 0o755)  # noqa: S103 - the umask under test
    proc = cli("pki", "init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for path in [tmp_path / "pki", *(tmp_path / "pki").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.suffix in (".key", ".p12", ".password"):
            assert mode == 0o600, path


def test_import_refuses_a_ca_whose_name_holds_a_newline(cli: CliRunner, tmp_path: Path) -> None:
    """An imported CA's name reaches READMEs and a PowerShell comment: allow-listed too."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_ca(key, "evil\n#> Start-Process calc")
    folder = tmp_path / "site"
    folder.mkdir()
    write_site(folder)
    (tmp_path / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(key_pem(key))
    before = snapshot(folder)
    proc = cli("pki", "import", "--ca-cert", tmp_path / "ca.pem", "--ca-key", tmp_path / "ca.key",
               cwd=folder)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        f"error: {tmp_path / 'ca.pem'}: subject: commonName: contains a control character"
    ), proc.stderr
    assert snapshot(folder) == before


def _warnings(stderr: str) -> str:
    """`check`'s warning lines (its "not checked offline" notes left out)."""
    return "".join(ln + "\n" for ln in stderr.splitlines() if not ln.startswith("not checked"))


def test_loose_modes_under_dist_are_warned_and_repaired(cli: CliRunner, site: Path) -> None:
    """dist/ holds secrets too (bundles; images and overlay.tar hold the router key):
    `check` and `bundle` tighten what someone loosened, files they did not write too."""
    assert cli("bundle", cwd=site).returncode == 0
    router = site / "dist" / "home" / "routers" / "gw"  # as `build` leaves it
    router.mkdir(parents=True)
    os.chmod(router, 0o700)
    for name, mode in [
        ("overlay.tar", 0o600),
        ("x-sysupgrade.bin", 0o600),
        ("build-info.json", 0o644),
        ("sha256sums", 0o644),
        ("x.manifest", 0o644),
    ]:
        (router / name).write_text("x")
        os.chmod(router / name, mode)  # fmt: skip
    dist = site / "dist" / "home"
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in dist.rglob("*")}
    secret = {p for p, m in modes.items() if not m & 0o077}
    assert {router, router / "overlay.tar", dist / "clients" / "carol" / "pc" / "pc.key"} <= secret
    for argv in (["check"], ["bundle", "bob"]):  # bundle rewrites bob only
        subprocess.run(["chmod", "-R", "a+rX", str(dist)], check=True)  # the careless user
        proc = cli(*argv, cwd=site)
        assert proc.returncode == 0, proc.stderr
        assert {p: stat.S_IMODE(p.stat().st_mode) for p in dist.rglob("*")} == modes, argv
        warned = {ln.split(": mode ")[0][len("warning: ") :] for ln in proc.stderr.splitlines()
                  if " lets other users read " in ln}  # fmt: skip
        skip = () if argv == ["check"] else ("clients/bob",)  # rewritten: nothing to warn
        wanted = {p for p in secret if not str(p.relative_to(dist)).startswith(skip)}
        assert {(site / w).resolve() for w in warned} == {p.resolve() for p in wanted}, argv


def test_render_keeps_the_router_key_in_an_owner_only_folder(cli: CliRunner, site: Path) -> None:
    old = os.umask(0o022)  # the common umask: folders 0755 unless made otherwise
    try:
        proc = cli("render", "--router", "gw", cwd=site)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    router = site / "dist" / "home" / "routers" / "gw"
    assert stat.S_IMODE(router.stat().st_mode) == 0o700
    key = router / "overlay/usr/share/owrt-vpn/files/etc/swanctl/private/gw.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = cli("check", cwd=site)
    assert again.returncode == 0 and " mode " not in again.stderr, again.stderr
