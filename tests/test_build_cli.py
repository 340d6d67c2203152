"""`owrt-vpn keys ...` and `owrt-vpn doctor` through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from conftest import CliRunner


def test_keys_list_add_remove(cli: CliRunner, tmp_path: Path) -> None:
    env = {"OWRT_VPN_KEYS_DIR": str(tmp_path / "userkeys")}
    listed = json.loads(cli("keys", "list", "--json", env=env, check=True).stdout)
    shipped = {k["key_id"]: k for k in listed["keys"]}
    assert shipped["d310c6f2833e97f7"]["kind"] == "openwrt"
    assert (
        "openwrt.org/docs/guide-user/security/signatures" in shipped["d310c6f2833e97f7"]["source"]
    )

    pub, sec = tmp_path / "mine.pub", tmp_path / "mine.sec"
    subprocess.run(
        ["signify-openbsd", "-G", "-n", "-c", "my mirror", "-p", pub, "-s", sec],
        check=True,
        capture_output=True,
    )
    added = cli("keys", "add", str(pub), env=env, check=True)
    key_id = added.stdout.split()[2]
    assert len(key_id) == 16 and "signatures" in added.stdout
    assert (tmp_path / "userkeys" / key_id).is_file()
    listed = json.loads(cli("keys", "list", "--json", env=env, check=True).stdout)
    assert {"key_id": key_id, "kind": "user"}.items() <= next(
        k for k in listed["keys"] if k["key_id"] == key_id
    ).items()

    bad = cli("keys", "add", str(sec), env=env)
    assert bad.returncode == 2 and "not an Ed25519" in bad.stderr
    shipped_rm = cli("keys", "remove", "d310c6f2833e97f7", env=env)
    assert shipped_rm.returncode == 2 and "cannot be removed" in shipped_rm.stderr
    cli("keys", "remove", key_id, env=env, check=True)
    assert not (tmp_path / "userkeys" / key_id).exists()


def test_doctor_reports_missing_tools_with_install_commands(cli: CliRunner, tmp_path: Path) -> None:
    ok = cli("doctor", check=True)
    assert "ok       make" in ok.stdout
    # A PATH with python but without the ImageBuilder's tools.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "cp", "grep", "sed", "tar"):
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    proc = cli("doctor", env={"PATH": str(bin_dir)})
    assert proc.returncode == 1
    assert "MISSING  gawk" in proc.stdout and "MISSING  make" in proc.stdout
    assert "sudo apt-get install" in proc.stderr and "gawk" in proc.stderr
    assert "sudo dnf install" in proc.stderr
    as_json = cli("doctor", "--json", env={"PATH": str(bin_dir)})
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and not data["ok"] and "perl" in data["missing"]
