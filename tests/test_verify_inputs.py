"""The many-user bundle inputs (provenance.BundleInputs, used by `bundle`, `build` and `verify`)
digest each user's own PKI material (the one PKI digest, pki/digest.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import CliRunner
from owrt_vpn.bundles import provenance
from owrt_vpn.pki.digest import user_pki_digest
from owrt_vpn.site.load import load_site

USERS = """
[[users]]
name = "bob"
auth = "eap-mschapv2"

[[users.devices]]
name = "phone"
platform = "android"

[[users]]
name = "carol"
auth = "pubkey+eap-mschapv2"

[[users.devices]]
name = "laptop"
platform = "linux"
"""


def test_many_user_inputs_equal_the_reference(cli: CliRunner, tmp_path: Path) -> None:
    cli("init", "--server-id", "vpn.example.org", check=True)
    site_file = tmp_path / "owrt-vpn.toml"
    opt_in = "[site]\nallow_password_only_alongside_2fa = true\n"
    text = site_file.read_text().replace("[site]\n", opt_in, 1)
    site_file.write_text(text + USERS)
    cli("pki", "init", check=True)
    site = load_site(site_file)
    pki = site.pki_path
    (pki / "clients" / "alice" / ".stray").write_text("not a PKI file")  # left out by both
    names = ["alice", "bob", "carol"]
    inputs = provenance.BundleInputs(site)
    for name in names:
        assert inputs.of(name)["pki"] == user_pki_digest(pki, name), name
    digests = {inputs.of(n)["pki"] for n in names}
    assert len(digests) == len(names)  # each user's own material

    # A change to one user's files changes that user's digest only.
    before = {n: inputs.of(n)["pki"] for n in names}
    (pki / "eap" / "bob.password").write_text("another-password\n")
    after = provenance.BundleInputs(site)
    assert after.of("bob")["pki"] != before["bob"]
    assert after.of("bob")["pki"] == user_pki_digest(pki, "bob")
    assert {n: after.of(n)["pki"] for n in ("alice", "carol")} == {
        n: before[n] for n in ("alice", "carol")
    }
    # The bundle-info written by `bundle` is what bundle_inputs says.
    assert provenance.bundle_inputs(site, "carol") == after.of("carol")
    assert after.of("carol")["pki"] == user_pki_digest(pki, "carol")
