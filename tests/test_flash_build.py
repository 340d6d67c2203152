"""Unit tests of the flasher's pieces that need no router: build reading, parsers, exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from owrt_vpn.errors import FlashError, IntegrityError
from owrt_vpn.routers.dist import load_build, pick_image
from owrt_vpn.routers.flash import RouterReport, Status, batch_exit_code
from owrt_vpn.routers.probe import listed_conns, mem_available
from owrt_vpn.routers.ssh import SshClient, SshTarget, quote

IMAGE = "openwrt-24.10.2-vpn-gw-ath79-generic-tplink_archer-c7-v2-squashfs-sysupgrade.bin"


def _dist(tmp_path: Path, *, overlay: dict[str, str] | None = None) -> Path:
    d = tmp_path / "dist/home/routers/gw"
    d.mkdir(parents=True)
    (d / IMAGE).write_bytes(b"firmware" * 1000)
    (d / "factory.bin").write_bytes(b"factory")
    sha = hashlib.sha256((d / IMAGE).read_bytes()).hexdigest()
    images = [
        {
            "name": "factory.bin",
            "type": "factory",
            "sha256": hashlib.sha256(b"factory").hexdigest(),
        },
        {"name": IMAGE, "type": "sysupgrade", "sha256": sha},
    ]
    profile = {"supported_devices": ["tplink,archer-c7-v2"], "images": images}
    info = {
        "router": "gw",
        "release": {"version": "24.10.2", "requested": "24.10", "revision": "r28739-d9340319c6"},
        "config_style": "swanctl",
        "images": images,
    }
    (d / "profile.json").write_text(json.dumps(profile))
    (d / "build-info.json").write_text(json.dumps(info))
    (d / "sha256sums").write_text(f"{sha} *{IMAGE}\n")
    with tarfile.open(d / "overlay.tar", "w") as tar:
        for name, text in (overlay or {}).items():
            member = tarfile.TarInfo(name)
            member.size = len(text.encode())
            tar.addfile(member, io.BytesIO(text.encode()))
    return d


META = "./usr/share/owrt-vpn/files/_meta/"
# What the render recorded (its metadata): the connections in config order.
CONNECTIONS = json.dumps(
    [{"name": n, "comment": "x"} for n in ("rw-cert", "rw-eap", "rw-pubkey-alice-phone", "rw-dn")]
)


def test_load_build_picks_sysupgrade_and_reads_release(tmp_path: Path) -> None:
    # the config itself is not read for the names: a decoy proves it
    files = {
        META + "connections.json": CONNECTIONS,
        META + "style": "swanctl\n",
        "./usr/share/owrt-vpn/files/etc/swanctl/conf.d/owrt-vpn.conf": "connections { decoy {} }",
    }
    b = load_build(_dist(tmp_path, overlay=files))
    assert b.image.name == IMAGE and b.image.type == "sysupgrade"
    assert b.image.size == 8000
    assert (b.release, b.revision) == ("24.10.2", "r28739-d9340319c6")
    assert b.supported_devices == ("tplink,archer-c7-v2",)
    assert b.expected_conns == ("rw-cert", "rw-eap", "rw-pubkey-alice-phone", "rw-dn")
    assert b.conn_style == "swanctl"
    baked = {k: v for k, v in b.info.items() if k != "images"}
    assert b.baked_info_matches(baked)
    assert not b.baked_info_matches(dict(baked, router="other"))
    assert not b.baked_info_matches(None)


def test_load_build_refuses_a_changed_image(tmp_path: Path) -> None:
    d = _dist(tmp_path)
    (d / IMAGE).write_bytes(b"tampered")
    with pytest.raises(
        IntegrityError, match=r"does not match profile\.json, build-info\.json, sha256sums"
    ):
        load_build(d)


def test_load_build_missing(tmp_path: Path) -> None:
    with pytest.raises(FlashError, match="no build for this router") as exc:
        load_build(tmp_path / "nope")
    assert exc.value.hint and "owrt-vpn build" in exc.value.hint


def test_legacy_ipsec_conns(tmp_path: Path) -> None:
    files = {
        META + "connections.json": json.dumps([{"name": "rw-cert", "comment": "x"}]),
        META + "style": "ipsec\n",
    }
    b = load_build(_dist(tmp_path, overlay=files))
    assert b.expected_conns == ("rw-cert",)
    # build-info names the style; it wins over what the files suggest
    assert b.conn_style == "swanctl"


@pytest.mark.parametrize(
    ("images", "want"),
    [
        ([{"type": "trx", "name": "a.trx"}], "a.trx"),
        ([{"type": "factory", "name": "f"}, {"type": "sysupgrade", "name": "s"}], "s"),
    ],
)
def test_pick_image(images: list[dict[str, Any]], want: str) -> None:
    assert pick_image(images)["name"] == want


def test_pick_image_ambiguous() -> None:
    with pytest.raises(FlashError, match="cannot tell which image"):
        pick_image([{"type": "factory", "name": "f"}, {"type": "chk", "name": "c"}])


def test_a_build_without_connection_metadata_expects_none(tmp_path: Path) -> None:
    conf = "connections {\n  rw-cert {}\n}\n"
    files = {"usr/share/owrt-vpn/files/etc/swanctl/conf.d/owrt-vpn.conf": conf}
    assert load_build(_dist(tmp_path, overlay=files)).expected_conns == ()


def testlisted_conns() -> None:
    swanctl = (
        "rw-cert: IKEv2, no reauthentication, rekeying every 14400s\n"
        "  local:  %any\n"
        "  rw-cert: TUNNEL, rekeying every 3600s\n"
        "rw-eap: IKEv2, no reauthentication\n"
    )
    assert listed_conns(swanctl, "swanctl") == {"rw-cert", "rw-eap"}
    ipsec = (
        "Connections:\n"
        "     rw-cert:  %any...%any  IKEv2, dpddelay=30s\n"
        "     rw-cert:   local:  [vpn.example.org] uses public key authentication\n"
    )
    assert listed_conns(ipsec, "ipsec") == {"rw-cert"}
    assert listed_conns("", "swanctl") == set()


def testmem_available() -> None:
    assert mem_available(["MemTotal: 100 kB", "MemAvailable:    2048 kB"]) == 2048 * 1024
    assert mem_available(["MemFree: 10 kB"]) == 10 * 1024  # kernels before 3.14
    assert mem_available([]) is None


def test_batch_exit_code() -> None:
    def rep(status: Status) -> RouterReport:
        return RouterReport("r", "r", "root@x", status=status)

    assert batch_exit_code([rep(Status.FLASHED), rep(Status.SKIPPED), rep(Status.WOULD_FLASH)]) == 0
    assert batch_exit_code([rep(Status.FLASHED), rep(Status.REFUSED)]) == 4
    assert batch_exit_code([rep(Status.FAILED), rep(Status.REFUSED)]) == 1


def test_ssh_options_check_host_keys(tmp_path: Path) -> None:
    target = SshTarget("2001:db8::1", 2222, "admin", tmp_path / "id", tmp_path / "kh")
    strict = SshClient(target)._options()
    assert "StrictHostKeyChecking=yes" in strict and "BatchMode=yes" in strict
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in strict
    assert (
        "StrictHostKeyChecking=accept-new"
        in SshClient(target, accept_new_host_keys=True)._options()
    )
    assert str(target) == "admin@[2001:db8::1]:2222"
    assert quote(["sha256sum", "/tmp/a b;rm -rf /"]) == "sha256sum '/tmp/a b;rm -rf /'"
