"""`check` before any download: what it validates offline (cached metadata of an earlier
download, else the data we ship), what it says it could not check, and release warnings."""

from __future__ import annotations

from pathlib import Path

import sitefile
from owrtcli import CliRunner


def write(tmp_path: Path, text: str) -> None:
    (tmp_path / "owrt-vpn.toml").write_text(text)


def test_snapshot_eap_mschapv2_users_are_warned(cli: CliRunner, tmp_path: Path) -> None:
    users = [sitefile.user("bob", [("phone", "android")], auth="eap-mschapv2")]
    write(tmp_path, sitefile.site(routers=[sitefile.router(release="snapshot")], users=users))
    proc = cli("check")
    assert proc.returncode == 0, proc.stderr
    assert (
        "router gw runs a snapshot: master's strongSwan builds eap-mschapv2/md4 only with "
        "STRONGSWAN_INCLUDE_INSECURE"
    ) in proc.stderr
    assert "EAP-MSCHAPv2 users bob" in proc.stderr
    write(tmp_path, sitefile.site(routers=[sitefile.router(release="25.12.0")], users=users))
    assert "STRONGSWAN_INCLUDE_INSECURE" not in cli("check").stderr
