"""usign/signify keys: interop with OpenBSD signify, key numbers, the shipped keyring."""

from __future__ import annotations

import base64
import subprocess
import tomllib
from pathlib import Path

import pytest

from owrt_vpn.errors import EXIT_INTEGRITY, ConfigError, IntegrityError
from owrt_vpn.imagebuilder import keys

SIGNIFY = "signify-openbsd"


def make_key(tmp: Path, name: str) -> tuple[Path, Path]:
    """A signify key pair without passphrase: (public, secret)."""
    pub, sec = tmp / f"{name}.pub", tmp / f"{name}.sec"
    subprocess.run(
        [SIGNIFY, "-G", "-n", "-c", f"test key {name}", "-p", pub, "-s", sec],
        check=True,
        capture_output=True,
    )
    return pub, sec


def sign(sec: Path, msg: Path) -> bytes:
    sig = msg.with_name(msg.name + ".sig")
    subprocess.run(
        [SIGNIFY, "-S", "-s", sec, "-m", msg, "-x", sig], check=True, capture_output=True
    )
    return sig.read_bytes()


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, bytes, bytes]:
    """(pub, sec, message, signature) made by signify-openbsd."""
    pub, sec = make_key(tmp_path, "a")
    msg = tmp_path / "sha256sums"
    msg.write_bytes(b"0" * 64 + b" *openwrt-imagebuilder-x.tar.zst\n")
    return pub, sec, msg.read_bytes(), sign(sec, msg)


@pytest.fixture(autouse=True)
def _user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWRT_VPN_KEYS_DIR", str(tmp_path / "userkeys"))


def test_signify_signature_verifies_and_names_key(signed: tuple[Path, Path, bytes, bytes]) -> None:
    pub, _, data, sig = signed
    ring = keys.Keyring.load(trust_files=[pub])
    key = ring.verify(data, sig, "sha256sums")
    assert key.key_id == keys.parse_public_key(pub.read_bytes()).key_id
    assert key.comment == "test key a public key"  # signify appends " public key"
    assert "--trust-key" in key.origin


def test_tampered_data_is_refused(signed: tuple[Path, Path, bytes, bytes]) -> None:
    pub, _, data, sig = signed
    ring = keys.Keyring.load(trust_files=[pub])
    with pytest.raises(IntegrityError, match="BAD signature") as exc:
        ring.verify(data.replace(b"0", b"1", 1), sig, "sha256sums")
    assert exc.value.exit_code == EXIT_INTEGRITY


def test_signature_by_unknown_key_names_the_key_number(
    tmp_path: Path, signed: tuple[Path, Path, bytes, bytes]
) -> None:
    pub_a, _, data, _ = signed
    pub_b, sec_b = make_key(tmp_path, "b")
    msg = tmp_path / "other"
    msg.write_bytes(data)
    sig_b = sign(sec_b, msg)
    keynum_b = keys.parse_public_key(pub_b.read_bytes()).key_id
    ring = keys.Keyring.load(trust_files=[pub_a])
    with pytest.raises(IntegrityError) as exc:
        ring.verify(data, sig_b, "releases/24.10.2/targets/bcm53xx/generic/sha256sums")
    assert exc.value.exit_code == EXIT_INTEGRITY
    assert f"signed by key {keynum_b}, which is not in the keyring" in exc.value.message
    assert exc.value.hint is not None
    assert "owrt-vpn keys add" in exc.value.hint
    assert keys.SIGNATURES_PAGE in exc.value.hint


def test_same_keynum_with_other_key_material_is_a_bad_signature(
    tmp_path: Path, signed: tuple[Path, Path, bytes, bytes]
) -> None:
    # A key file claiming signify's key number but holding another key must
    # not verify: the number only selects, the key material decides.
    pub_a, _, data, sig = signed
    pub_b, _ = make_key(tmp_path, "b")
    a = keys.parse_public_key(pub_a.read_bytes())
    b = keys.parse_public_key(pub_b.read_bytes())
    forged = tmp_path / "forged.pub"
    forged.write_text(keys.PublicKey(a.keynum, b.key, "forged").text())
    ring = keys.Keyring.load(trust_files=[forged])
    with pytest.raises(IntegrityError, match="BAD signature"):
        ring.verify(data, sig, "sha256sums")


def test_malformed_signature(signed: tuple[Path, Path, bytes, bytes]) -> None:
    pub, _, data, sig = signed
    ring = keys.Keyring.load(trust_files=[pub])
    for bad in (b"", b"garbage", sig.splitlines()[0] + b"\nAAAA\n", sig[:-20] + b"!!\n"):
        with pytest.raises(IntegrityError, match="malformed signature") as exc:
            ring.verify(data, bad, "sha256sums")
        assert "empty or damaged signature file" in (exc.value.hint or "")  # an empty .sig too


def test_bad_key_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("untrusted comment: x\nnot base64 at all\n")
    with pytest.raises(ConfigError, match=r"bad\.pub: public key: second line is not base64"):
        keys.Keyring.load(trust_files=[bad])
    sec = tmp_path / "x.sec"
    _, sec = make_key(tmp_path, "x")
    with pytest.raises(ConfigError, match="not an Ed25519"):
        keys.read_key_file(sec, "user")
    # An unreadable --trust-key gets a hint too.
    with pytest.raises(ConfigError, match="cannot read key file") as exc:
        keys.Keyring.load(trust_files=[tmp_path / "missing.pub"])
    assert "check the path" in (exc.value.hint or "")


def test_written_key_is_accepted_by_signify(
    tmp_path: Path, signed: tuple[Path, Path, bytes, bytes]
) -> None:
    # add_user_key rewrites the key file; signify must still verify with it.
    pub, _, data, sig = signed
    added = keys.add_user_key(pub)
    stored = keys.user_keys_dir() / added.key_id
    assert stored.is_file()
    msg = tmp_path / "m"
    msg.write_bytes(data)
    (tmp_path / "m.sig").write_bytes(sig)
    subprocess.run(
        [SIGNIFY, "-V", "-q", "-p", stored, "-x", tmp_path / "m.sig", "-m", msg], check=True
    )
    assert [k.key_id for k in keys.user_keys()] == [added.key_id]
    ring = keys.Keyring.load()
    assert ring.verify(data, sig, "sha256sums").key_id == added.key_id
    keys.remove_user_key(added.key_id.upper())
    assert keys.user_keys() == []
    with pytest.raises(ConfigError, match="no user key"):
        keys.remove_user_key(added.key_id)


def test_shipped_keys_cannot_be_removed() -> None:
    with pytest.raises(ConfigError) as exc:
        keys.remove_user_key("d310c6f2833e97f7")
    assert exc.value.hint is not None and "cannot be removed" in exc.value.hint


def test_shipped_keys_parse_and_have_provenance() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    base = keys.shipped_keys_dir()
    meta = tomllib.loads((base / "keys.toml").read_text())["keys"]
    files = sorted(p.name for p in (base / "usign").iterdir())
    assert files == sorted(meta), "every key file needs a keys.toml entry and vice versa"
    shipped = keys.shipped_keys()
    assert {k.key_id for k in shipped} == set(files)
    for k in shipped:
        path = base / "usign" / k.key_id
        # The file name is the key number embedded in the key itself.
        raw = base64.b64decode(path.read_text().splitlines()[1])
        assert raw[2:10].hex() == k.key_id
        assert k.comment == meta[k.key_id]["title"]
        assert k.source.startswith("https://openwrt.org/docs/guide-user/security/signatures")
        Ed25519PublicKey.from_public_bytes(k.key)  # a valid curve point
    # The release key of the default release series is shipped.
    assert "d310c6f2833e97f7" in files
