"""Parsers and decisions behind push/status/doctor, on real tool output (no router needed).

The samples are verbatim output of Debian's strongSwan 5.9.8 (the same major
version OpenWrt 21.02-24.10 ship): ``ipsec statusall`` of the legacy-style
test router and ``swanctl --list-sas --pretty`` of a live test router.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from owrt_vpn.routers import probe as flash_remote
from owrt_vpn.routers.doctor import loaded_modules, udp_ports
from owrt_vpn.routers.push_set import VpnSet, compare, is_secret, parse_manifest, parse_sums
from owrt_vpn.routers.sa_policy import SaPolicy
from owrt_vpn.routers.state import (
    IkeSa,
    identity_owner,
    loaded_plugins,
    parse_vici_pretty,
    statusall_sas,
    swanctl_sas,
    who,
)

STATUSALL = """\
Status of IKE charon daemon (strongSwan 5.9.8, Linux 6.18.44-fc-v669, x86_64):
  uptime: 1 second, since Nov 27 08:18:07 2026
  loaded plugins: charon attr constraints openssl eap-identity eap-mschapv2 kernel-netlink stroke
Virtual IP pools (size/online/offline):
  10.78.0.0/24: 254/2/0
Connections:
rw-pubkey-alice-laptop:  %any...%any  IKEv2, dpddelay=60s
rw-pubkey-alice-laptop:   local:  [vpn.push.example] uses public key authentication
rw-pubkey-alice-laptop:   remote: [alice+laptop@push] uses public key authentication
rw-pubkey-alice-laptop:   child:  10.77.0.0/24 === dynamic TUNNEL, dpdaction=none
      rw-eap:  %any...%any  IKEv2, dpddelay=60s
      rw-eap:   remote: uses EAP_MSCHAPV2 authentication with EAP identity '%any'
      rw-eap:   child:  10.77.0.0/24 === dynamic TUNNEL, dpdaction=none
Security Associations (2 up, 0 connecting):
      rw-eap[2]: ESTABLISHED 1 second ago, 192.0.2.1[vpn.push.example]...192.0.2.12[192.0.2.12]
      rw-eap[2]: Remote EAP identity: erin
      rw-eap[2]: IKEv2 SPIs: 8a559d363691ef3c_i 7d13e6b7b0f73a75_r*, public key reauthentication in 23 hours
      rw-eap{2}:  INSTALLED, TUNNEL, reqid 2, ESP in UDP SPIs: 9d89be5b_i 298f81b3_o
      rw-eap{2}:  AES_GCM_16_256, 0 bytes_i, 0 bytes_o, rekeying in 23 hours
      rw-eap{2}:   10.77.0.0/24 === 10.78.0.2/32
rw-pubkey-alice-laptop[1]: ESTABLISHED 3 minutes ago, 192.0.2.1[vpn.push.example]...192.0.2.11[alice+laptop@push]
rw-pubkey-alice-laptop[1]: IKE proposal: AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519
rw-pubkey-alice-laptop{1}:  INSTALLED, TUNNEL, reqid 1, ESP in UDP SPIs: eb7b282f_i 05ea6ec2_o
rw-pubkey-alice-laptop{1}:   10.77.0.0/24 === 10.78.0.1/32
"""  # noqa: E501

PRETTY = """\
list-sa event {
  rw-pubkey-alice-laptop {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 192.0.2.1
    remote-host = 192.0.2.11
    remote-id = alice+laptop@push
    established = 42
    remote-vips = [
      10.78.0.1
    ]
    child-sas {
      net-1 {
        name = net
        remote-ts = [
          10.78.0.1/32
        ]
      }
    }
  }
}
list-sa event {
  rw-eap {
    uniqueid = 7
    state = ESTABLISHED
    remote-host = 192.0.2.12
    remote-id = 192.0.2.12
    remote-eap-id = erin
    remote-vips = [
      10.78.0.2
    ]
  }
}
list-sas reply {
}
"""


def test_statusall_sas_long_and_short_names_eap_and_vips() -> None:
    sas = statusall_sas(STATUSALL)
    assert sas == [
        IkeSa("rw-eap", "2", "ESTABLISHED", "192.0.2.12", "192.0.2.12", "erin", ("10.78.0.2",), 1),
        IkeSa(
            "rw-pubkey-alice-laptop", "1", "ESTABLISHED", "192.0.2.11", "alice+laptop@push",
            None, ("10.78.0.1",), 180,
        ),
    ]  # fmt: skip
    assert loaded_plugins(STATUSALL) == [
        "charon", "attr", "constraints", "openssl", "eap-identity", "eap-mschapv2",
        "kernel-netlink", "stroke",
    ]  # fmt: skip


def test_listed_conns_legacy_long_names() -> None:
    """statusall right-aligns names to a width: long ones start at column 0."""
    assert flash_remote.listed_conns(STATUSALL, "ipsec") == {"rw-pubkey-alice-laptop", "rw-eap"}


def test_swanctl_pretty_sas() -> None:
    assert [h for h, _ in parse_vici_pretty(PRETTY)] == [
        "list-sa event", "list-sa event", "list-sas reply",
    ]  # fmt: skip
    sas = swanctl_sas(PRETTY)
    assert sas == [
        IkeSa(
            "rw-pubkey-alice-laptop", "1", "ESTABLISHED", "192.0.2.11", "alice+laptop@push",
            None, ("10.78.0.1",), 42,
        ),
        IkeSa("rw-eap", "7", "ESTABLISHED", "192.0.2.12", "192.0.2.12", "erin", ("10.78.0.2",)),
    ]  # fmt: skip
    assert swanctl_sas("Error: connecting to 'default' URI failed") == []


def test_identity_owner_and_who() -> None:
    assert identity_owner("alice+laptop@push", "push") == ("alice", "laptop")
    assert identity_owner("O=Push Test, CN=alice+pc@push", "push") == ("alice", "pc")
    assert identity_owner("CN=alice+pc@push, O=Push Test", "push") == ("alice", "pc")
    assert identity_owner("alice+laptop@other", "push") is None
    assert identity_owner("192.0.2.12", "push") is None
    eap = IkeSa("rw-eap", "7", "ESTABLISHED", remote_id="192.0.2.12", remote_eap_id="erin")
    assert who(eap, "push", "pushClients").label() == "erin (EAP)"
    shared = IkeSa("rw-pubkey-ios", "3", "ESTABLISHED", remote_id="pushClients")
    assert who(shared, "push", "pushClients").kind == "shared"


POLICY = SaPolicy(
    site_name="push",
    shared_identity="pushClients",
    devices=frozenset({("alice", "laptop"), ("carol", "tablet")}),
    eap_users=frozenset({"erin"}),
    shared_revoked=("ivy/phone",),
)


@pytest.mark.parametrize(
    ("remote_id", "eap_id", "verdict"),
    [
        ("alice+laptop@push", None, "keep"),
        ("O=Live, CN=alice+laptop@push", None, "keep"),  # Windows' subject DN
        ("bob+phone@push", None, "terminate"),  # revoked or removed device
        ("O=Live, CN=bob+phone@push", None, "terminate"),
        ("192.0.2.12", "erin", "keep"),  # EAP-MSCHAPv2 with an IP identity
        ("192.0.2.12", "mallory", "terminate"),  # EAP password revoked / user gone
        ("carol+tablet@push", "carol", "terminate"),  # cert ok, EAP password revoked
        ("carol+tablet@push", "erin", "keep"),
        ("dave+pc@push", "dave+pc@push", "terminate"),  # EAP-TLS, revoked
        ("alice+laptop@push", "alice+laptop@push", "keep"),  # EAP-TLS
        ("pushClients", None, "shared"),  # cannot be singled out
        ("someone@elsewhere", None, "keep"),  # not our identity: not ours to judge
    ],
)
def test_sa_policy(remote_id: str, eap_id: str | None, verdict: str) -> None:
    sa = IkeSa("c", "1", "ESTABLISHED", remote_id=remote_id, remote_eap_id=eap_id)
    assert POLICY.verdict(sa) == verdict


def _set(files: dict[str, tuple[bytes, int]]) -> VpnSet:
    manifest = "".join(f"{mode:04o} {rel}\n" for rel, (_, mode) in sorted(files.items()))
    all_files = dict(files)
    all_files["_meta/manifest"] = (manifest.encode(), 0o644)
    return VpnSet("gw", "24.10.2", "swanctl", all_files, parse_manifest(manifest), ())


CA = "etc/swanctl/x509ca/owrt-vpn-ca.crt"


def test_compare_added_changed_removed_and_secrets() -> None:
    vset = _set(
        {
            "etc/swanctl/conf.d/owrt-vpn.conf": (b"new conf\n", 0o644),
            "etc/swanctl/conf.d/owrt-vpn-secrets.conf": (b"secret 2\n", 0o600),
            "etc/swanctl/x509crl/owrt-vpn.crl": (b"crl\n", 0o644),
            "etc/swanctl/x509ca/owrt-vpn-ca.crt": (b"ca\n", 0o644),
        }
    )
    remote_manifest = parse_manifest(
        "0644 etc/swanctl/conf.d/owrt-vpn.conf\n0600 etc/swanctl/private/old.key\n"
        "0644 /etc/passwd\n0644 ../escape\nnot a line\n"
    )
    assert remote_manifest == {
        "etc/swanctl/conf.d/owrt-vpn.conf": 0o644,
        "etc/swanctl/private/old.key": 0o600,
    }
    sums = parse_sums(
        f"{'a' * 64}  /etc/swanctl/conf.d/owrt-vpn.conf\n"
        f"{'b' * 64}  /etc/swanctl/conf.d/owrt-vpn-secrets.conf\n"
        f"{vset.sha256(CA)}  /{CA}\n"
        f"{'c' * 64}  /etc/swanctl/private/old.key\n"
    )
    changes = [(c.change, c.path, c.secret) for c in compare(vset, remote_manifest, sums)]
    assert changes == [
        ("changed", "/etc/swanctl/conf.d/owrt-vpn-secrets.conf", True),
        ("changed", "/etc/swanctl/conf.d/owrt-vpn.conf", False),
        ("added", "/etc/swanctl/x509crl/owrt-vpn.crl", False),
        ("removed", "/etc/swanctl/private/old.key", True),
    ]


def test_is_secret() -> None:
    assert is_secret("etc/swanctl/private/gw.key", 0o600)
    assert is_secret("etc/ipsec.secrets", 0o600)
    assert is_secret("etc/swanctl/private/gw.key", None)
    assert not is_secret("etc/swanctl/x509/gw.crt", 0o644)


def test_tarball_carries_modes_and_checksums() -> None:
    vset = _set({"etc/swanctl/private/gw.key": (b"KEY", 0o600), "etc/a.conf": (b"A", 0o644)})
    data = vset.tarball()
    assert data == vset.tarball(), "not deterministic"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["files/etc/swanctl/private/gw.key"].mode == 0o600
        assert members["files/etc/swanctl/private/gw.key"].uid == 0
        sums = tar.extractfile(members["sha256sums"]).read().decode()  # type: ignore[union-attr]
    assert f"{vset.sha256('etc/a.conf')}  etc/a.conf\n" in sums
    assert "_meta/manifest" in sums


def test_doctor_parsers() -> None:
    udp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   1: 00000000:01F4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0\n"
        "   2: 00000000:1194 00000000:0000 07 00000000:00000000 00:00000000 00000000     0\n"
    )
    assert udp_ports(udp) == {500, 4500}
    lsmod = "Module                  Size  Used by    Tainted: G\ngcm 20480 1\nesp4 16384 0\n"
    builtin = "kernel/crypto/sha256_generic.ko\nkernel/crypto/aes-generic.ko.zst\n"
    assert loaded_modules(lsmod, builtin) == {"gcm", "esp4", "sha256_generic", "aes_generic"}


def test_documented_vocabularies_are_the_codes() -> None:
    """docs/json/push.schema.json and doctor-router.schema.json name what the code emits."""
    import json
    from pathlib import Path

    from owrt_vpn.routers.push import Stage, Status

    docs = Path(__file__).resolve().parent.parent / "docs" / "json"
    push = json.loads((docs / "push.schema.json").read_text())
    assert set(push["$defs"]["status"]["enum"]) == {s.value for s in Status}
    stages = push["properties"]["routers"]["items"]["properties"]["stage"]["enum"]
    assert stages == [s.value for s in Stage]
