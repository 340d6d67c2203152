"""verify without an ImageBuilder: tree comparison and "where", exit codes, bundle inputs,
the adopted SOURCE_DATE_EPOCH (rebuilds through the CLI: integration/test_repro.py)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

import sitefile
from owrt_vpn.build import diff as verify_diff
from owrt_vpn.build import verify
from owrt_vpn.build.diff import Difference, builtin_where, compare_trees
from owrt_vpn.build.verify import ItemResult, VerifyReport
from owrt_vpn.bundles import provenance
from owrt_vpn.errors import OwrtVpnError
from owrt_vpn.pki.digest import user_pki_digest
from owrt_vpn.site.load import parse_site
from requires import requires

SITE = sitefile.site(
    users=[sitefile.user(), sitefile.user("bob", [("phone", "android")], auth="eap-mschapv2")]
)


def tar_bytes(members: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, (data, mtime) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], date: tuple[int, ...] = (2024, 1, 1, 0, 0, 0)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=date), data)  # type: ignore[arg-type]
    return buf.getvalue()


def test_compare_trees_names_missing_extra_and_changed_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "sub").mkdir(parents=True)
        (root / "same.bin").write_bytes(b"\x00" * 100)
        (root / ".x.old").write_bytes(root.name.encode())  # hidden: not an artifact
    (a / "only-built").write_text("x")
    (b / "sub" / "only-rebuilt").write_text("y")
    (a / "sub" / "c.bin").write_bytes(b"\x01\x02\x03\x04")
    (b / "sub" / "c.bin").write_bytes(b"\x01\x02\x09\x04")
    count, diffs = compare_trees(a, b, "home/routers/gw", diffoscope=False)
    assert count == 4
    assert diffs == [
        Difference(
            "home/routers/gw/only-built", "missing", "in the dist root, not made by the rebuild"
        ),
        Difference(
            "home/routers/gw/sub/c.bin",
            "content",
            "first difference at byte 2 (sizes 4 and 4)",
        ),
        Difference(
            "home/routers/gw/sub/only-rebuilt", "extra", "made by the rebuild, not in the dist root"
        ),
    ]
    assert compare_trees(a / "sub", a / "sub", "x") == (1, [])


def test_where_inside_tar_zip_json_and_sizes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    a.write_bytes(tar_bytes({"etc/x": (b"1", 1700000000), "etc/y": (b"2", 1700000000)}))
    b.write_bytes(tar_bytes({"etc/x": (b"1", 1800000000), "etc/z": (b"2", 1700000000)}))
    text = builtin_where(a, b)
    assert "tar member etc/x: built " in text and "mtime=1700000000" in text
    assert "rebuilt " in text and "mtime=1800000000" in text
    assert "tar member etc/y: only in the built file" in text
    assert "tar member etc/z: only in the rebuilt file" in text

    za, zb = tmp_path / "a.zip", tmp_path / "b.zip"
    za.write_bytes(zip_bytes({"d/README.md": b"hello"}))
    zb.write_bytes(zip_bytes({"d/README.md": b"hello"}, (2025, 1, 1, 0, 0, 0)))
    text = builtin_where(za, zb)
    assert text.startswith("zip member d/README.md: built date=(2024, 1, 1, 0, 0, 0)")
    # Same members, other framing (here: a trailing comment) still says so.
    zc = tmp_path / "c.zip"
    zc.write_bytes(za.read_bytes()[:-2] + b"\x02\x00ab")
    assert "archive framing differs" in builtin_where(za, zc)

    ja, jb = tmp_path / "a.json", tmp_path / "b.json"
    ja.write_text(json.dumps({"images": [{"sha256": "aa"}], "router": "gw"}) + "\n")
    jb.write_text(json.dumps({"images": [{"sha256": "bb"}], "router": "gw"}) + "\n")
    assert builtin_where(ja, jb).splitlines()[2:] == [
        "@@ -3,3 +3,3 @@",
        "   {",
        '-   "sha256": "aa"',
        '+   "sha256": "bb"',
        "   }",
    ]
    ba, bb = tmp_path / "a.bin", tmp_path / "b.bin"
    ba.write_bytes(b"\xff" * 70000)
    bb.write_bytes(b"\xff" * 70000 + b"\x00")
    assert builtin_where(ba, bb) == "first difference at byte 70000 (sizes 70000 and 70001)"


def test_long_reports_are_cut(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(f"line {i}\n" for i in range(200)))
    b.write_text("".join(f"LINE {i}\n" for i in range(200)))
    lines = builtin_where(a, b).splitlines()
    assert len(lines) == verify_diff.MAX_DETAIL_LINES + 1
    assert lines[-1].startswith("... (") and lines[-1].endswith(" more lines)")


@requires("diffoscope")
def test_diffoscope_report_when_installed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("alpha\nbeta\n")
    b.write_text("alpha\ngamma\n")
    text = verify_diff.where(a, b, diffoscope=True, timeout=60)
    assert text.startswith("diffoscope:") and "-beta" in text and "+gamma" in text
    # Without it (or asked not to): the built-in look.
    assert verify_diff.where(a, b, diffoscope=False).startswith("--- built")


def item(status: str) -> ItemResult:
    return ItemResult("router", "gw", status)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (["identical"], 0),
        (["identical", "identical"], 0),
        (["identical", "differs"], 3),
        (["inputs-changed", "differs"], 3),
        (["identical", "inputs-changed"], 1),
        (["failed"], 1),
        ([], 1),
    ],
)
def test_exit_codes(statuses: list[str], code: int) -> None:
    report = VerifyReport("home", Path("dist/home"), [item(s) for s in statuses])
    assert report.exit_code == code


def test_item_json_shape() -> None:
    res = ItemResult(
        "bundles",
        "alice",
        "failed",
        error=OwrtVpnError("boom", hint="do this"),
        differences=[Difference("home/clients/alice/a.zip", "content", "x")],
    )
    assert res.to_json() == {
        "kind": "bundles",
        "name": "alice",
        "status": "failed",
        "changed_inputs": [],
        "differences": [{"path": "home/clients/alice/a.zip", "kind": "content", "detail": "x"}],
        "files": 0,
        "error": "boom",
        "hint": "do this",
    }


def test_input_labels() -> None:
    # A router built before per-router digests recorded the whole file's digest.
    assert verify._labels(["pki", "site", "tool.code", "tool.profiles", "lock", "pki"]) == [
        "PKI",
        verify.OLDER_SITE,
        "owrt-vpn itself (tool.code)",
        "owrt-vpn itself (tool.profiles)",
        "lock",
    ]
    assert verify._labels(["site.users", "site.settings"]) == [
        "site file (the users and devices on this router)",
        "site file ([site] settings)",
    ]
    # An older bundle-info (site.sha256) vs today's groups: one label, not four.
    assert verify._labels(["site.routers", "site.sha256", "site.user"]) == [verify.OLDER_SITE]
    assert verify._labels(["site.sha256", "source_date_epoch"]) == [
        verify.OLDER_SITE,
        "SOURCE_DATE_EPOCH",
    ]


def test_build_epoch_is_adopted_only_when_unset_and_unambiguous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    with verify._build_epoch({1712345678}):
        assert os.environ["SOURCE_DATE_EPOCH"] == "1712345678"
    assert "SOURCE_DATE_EPOCH" not in os.environ
    with verify._build_epoch({1, 2}):
        assert "SOURCE_DATE_EPOCH" not in os.environ
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "")
    with verify._build_epoch({5}):
        assert os.environ["SOURCE_DATE_EPOCH"] == "5"
    assert os.environ["SOURCE_DATE_EPOCH"] == ""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")
    with verify._build_epoch({5}):
        assert os.environ["SOURCE_DATE_EPOCH"] == "42"


def test_scratch_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with (
        pytest.raises(OwrtVpnError, match="not an empty directory"),
        verify._scratch(tmp_path / "full"),
    ):
        pass
    with verify._scratch(tmp_path / "new") as kept:
        assert kept == tmp_path / "new"
    assert kept.is_dir()
    with verify._scratch(None) as temp:
        (temp / "f").write_text("")
    assert not temp.exists()


def make_pki(site_dir: Path) -> Path:
    """The PKI files the digests read (contents only matter, not validity)."""
    pki = site_dir / "pki"
    (pki / "clients" / "alice").mkdir(parents=True)
    (pki / "eap").mkdir()
    (pki / "ca.crt").write_text("CA\n")
    (pki / "clients" / "alice" / "phone.p12").write_bytes(b"p12")
    (pki / "eap" / "bob.password").write_text("secret\n")
    index = {
        "certs": [
            {"kind": "client", "user": "alice", "device": "phone", "status": "valid"},
            {"kind": "server", "router": "gw", "status": "valid"},
        ]
    }
    (pki / "index.json").write_text(json.dumps(index))
    return pki


def test_user_pki_digest_covers_the_users_own_material_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    alice, bob = user_pki_digest(pki, "alice"), user_pki_digest(pki, "bob")
    (pki / "eap" / "bob.password").write_text("new\n")
    assert user_pki_digest(pki, "alice") == alice
    assert user_pki_digest(pki, "bob") != bob
    index = json.loads((pki / "index.json").read_text())
    index["certs"][0]["status"] = "revoked"  # alice's phone revoked
    (pki / "index.json").write_text(json.dumps(index))
    assert user_pki_digest(pki, "alice") != alice
    alice2 = user_pki_digest(pki, "alice")
    (pki / "ca.crt").write_text("another CA\n")
    assert user_pki_digest(pki, "alice") != alice2


def test_bundle_inputs_are_deterministic_and_per_user(tmp_path: Path) -> None:
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(SITE)
    site = parse_site(SITE, path)
    make_pki(tmp_path)
    clients = tmp_path / "dist" / "home" / "clients"
    (clients / "alice").mkdir(parents=True)
    inputs = provenance.BundleInputs(site)
    inputs.write(clients / "alice", "alice")
    info = clients / "alice" / provenance.BUNDLE_INFO
    first = info.read_bytes()
    data = json.loads(first)
    assert data == provenance.bundle_inputs(site, "alice")
    assert set(data) == {"format", "user", "tool", "site", "pki", "source_date_epoch"}
    assert data["site"]["file"] == "owrt-vpn.toml" and data["user"] == "alice"
    assert set(data["site"]) == {"name", "file", "settings", "user", "routers"}
    provenance.BundleInputs(site).write(clients / "alice", "alice")
    assert info.read_bytes() == first


def test_rebuild_uses_the_recorded_backend_and_image(tmp_path: Path) -> None:
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(SITE)
    site = parse_site(SITE, path)
    assert verify._backend_options(site, {"inputs": {"backend": "local"}}) == {}
    digest = "ghcr.io/openwrt/imagebuilder@sha256:" + "ab" * 32
    info = {
        "inputs": {"backend": "docker"},
        "imagebuilder": {
            "backend": "docker",
            "name": "ghcr.io/openwrt/imagebuilder:bcm53xx-generic-v24.10.2",
            "digest": digest,
        },
    }
    assert verify._backend_options(site, info) == {"backend": "docker", "container_image": digest}
    info["imagebuilder"]["digest"] = "sha256:" + "cd" * 32  # a local image ID: use the name
    assert verify._backend_options(site, info)["container_image"].endswith(
        ":bcm53xx-generic-v24.10.2"
    )
