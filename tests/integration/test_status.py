"""`owrt-vpn status` and `owrt-vpn doctor --router` against live routers.

Same live routers as test_push.py (liverouter.py): a real charon inside each
SSH test router, real road warriors on its WAN side. For doctor, the router's
kernel and firewall state are stand-ins the test controls (as sshrouter.py
does for /proc/meminfo): /proc/modules lists the modules an OpenWrt image
with our kmods loads, and a firewall4-shaped nftables table is loaded in the
router's network namespace from the router's own UCI rules and our snippets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sitefile
from owrt_vpn import profiles
from owrt_vpn.render import uci

from .conftest import new_router
from .liverouter import LiveLab, LiveRouter
from .livesite import FIRMWARE_REVISION, LiveSite

pytestmark = pytest.mark.integration

USERS = [
    sitefile.user("alice", [("laptop", "linux")]),
    sitefile.user("bob", [("phone", "android")]),
]


def by_name(data: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in data["routers"]}


def test_status_reports_firmware_build_and_connected_user(
    live_lab: LiveLab, tmp_path: Path
) -> None:
    """status --json: release vs the last build, marker, connections, alice with her VIP."""
    gw = new_router(live_lab, "gw")
    site = LiveSite(tmp_path / "site", live_lab, name="stat")
    # "gone" is in the site but nothing answers at its address
    site.write({"gw": gw, "gone": "198.51.100.250"}, USERS)
    site.owrt("pki", "init")
    site.flash(gw, "gw")
    marker = {"image": "gw.trx", "image_sha256": "0" * 64, "flashed_at": "2026-01-01T00:00:00Z"}
    gw.put_file("/etc/owrt-vpn/flashed.json", json.dumps(marker))
    alice = gw.add_client(site.profile(gw, "gw", "alice", "laptop"))
    assert alice.connect(), alice.last

    proc, data = site.cli("status", "--connect-timeout", "2")
    assert proc.returncode == 4, proc.stdout + proc.stderr  # one of two answered
    reps = by_name(data)
    assert reps["gone"]["status"] == "failed" and "198.51.100.250" in reps["gone"]["message"]
    r = reps["gw"]
    assert r["status"] == "ok", r
    assert r["firmware"] == {"version": "24.10.2", "revision": FIRMWARE_REVISION}
    assert r["ours"] is True
    assert r["last_build"]["found"] and r["last_build"]["matches"] is True
    assert r["marker"]["image"] == "gw.trx"
    ss = r["strongswan"]
    assert ss["running"] and ss["style"] == "swanctl"
    assert "rw-pubkey-alice-laptop" in ss["connections"]
    assert "rw-pubkey-bob-phone" in ss["connections"]
    users = [(u["user"], u["device"], u["virtual_ips"], u["state"]) for u in r["users"]]
    assert users == [("alice", "laptop", [alice.vip()], "ESTABLISHED")]
    server = r["certificates"]["server"]
    assert server["dns_names"] == ["gw.vpn.example"]
    assert {"serverAuth", "iKEIntermediate"} <= set(server["eku"])
    assert 800 < server["days_left"] <= 825
    assert r["certificates"]["crl"] is None
    assert r["warnings"] == []

    # a newer build lands in dist: status says the router does not run it
    info_path = site.dir / "dist/stat/routers/gw/build-info.json"
    info = json.loads(info_path.read_text())
    info["release"]["revision"] = "r28800-0123456789"
    info_path.write_text(json.dumps(info))
    proc, data = site.cli("status", "--router", "gw")
    assert proc.returncode == 0
    r = by_name(data)["gw"]
    assert r["last_build"]["matches"] is False
    assert any("not the last build" in w for w in r["warnings"])
    text = site.text("status", "--router", "gw")
    assert text.returncode == 0
    assert "connected: alice/laptop [alice+laptop@stat]" in text.stdout
    assert "running it: NO" in text.stdout

    # charon runs but `swanctl --list-sas` fails: reported, not "0 connected"
    shim = gw.wrap_swanctl("*--list-sas*) echo 'vici: read timed out' >&2; exit 7 ;;")
    try:
        proc, data = site.cli("status", "--router", "gw")
    finally:
        shim.unlink()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = by_name(data)["gw"]
    assert r["status"] == "failed"
    assert r["message"] == (
        "`swanctl --list-sas --pretty` failed on the router (status 7): vici: read timed out"
    )


def test_status_refuses_a_router_whose_host_key_differs(live_lab: LiveLab, tmp_path: Path) -> None:
    """A router whose host key is not the one in known_hosts: refused, asked nothing
    (no login, so no command ran on it); the other router answers: exit 4, as documented."""
    good, other = new_router(live_lab, "good"), new_router(live_lab, "other")
    site = LiveSite(tmp_path / "site", live_lab, name="stat")
    site.write({"good": good, "other": other}, USERS)
    known = site.dir / "known_hosts"
    # other's address with good's key: what an impostor (or a replaced router) looks like
    known.write_text(
        f"{good.router.known_hosts_line}{other.router.address} {good.router.host_key}\n"
    )
    log = other.state / "dropbear.log"
    mark = log.stat().st_size

    proc, data = site.cli("status", "--connect-timeout", "2")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    reps = by_name(data)
    assert reps["good"]["status"] == "ok", reps["good"]
    r = reps["other"]
    assert r["status"] == "refused" and r["ok"] is False, r
    assert (
        r["message"] == f"root@{other.router.address}: the host key differs from the one in {known}"
    )
    assert "known_hosts" in r["hint"]
    assert "firmware" not in r and "users" not in r  # nothing was asked
    with log.open("rb") as fh:
        fh.seek(mark)
        seen = fh.read().decode(errors="replace")
    # it was reached, and the client left at the key exchange: no login, no command
    assert "Child connection from" in seen and "Exit before auth" in seen, seen
    assert "auth succeeded" not in seen, f"status logged in to the router:\n{seen}"

    # --accept-new-host-keys trusts unknown keys, never a changed one
    before = known.read_text()
    text = site.text("status", "--connect-timeout", "2", "--accept-new-host-keys")
    assert text.returncode == 4, text.stdout + text.stderr
    assert f"other (root@{other.router.address}): refused: root@" in text.stdout
    assert known.read_text() == before  # known_hosts left alone


def test_ctrl_c_while_querying_is_interrupted_at_that_stage(
    live_lab: LiveLab, tmp_path: Path
) -> None:
    """Ctrl-C while the router answers the state query: "interrupted while querying",
    not a failed state command; exit 1 (no router answered)."""
    gw = new_router(live_lab, "gw")
    site = LiveSite(tmp_path / "site", live_lab, name="stat")
    site.write({"gw": gw}, USERS)
    gw.wrap_swanctl("*--list-sas*) touch /srv/slow-sas; sleep 60 ;;")
    proc, data = site.cli_ctrl_c("status", when=(gw.state / "slow-sas").exists)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = by_name(data)["gw"]
    assert (r["status"], r["message"]) == ("failed", "interrupted while querying"), r
    assert r["hint"] == "run status again"


# --------------------------------------------------------------------------
# doctor


def fake_kernel(gw: LiveRouter, site: LiveSite, router: str, drop: tuple[str, ...] = ()) -> None:
    """``lsmod`` as on an OpenWrt image with our kmods (minus ``drop``), in the shim dir.

    The test machines' kernels differ (some have no loadable modules at all),
    so the router's module list is a stand-in, like its /proc/meminfo.
    """
    from owrt_vpn.render import packages

    s, _ = site.load()
    table = profiles.load("kernel-modules")["modules"]
    pkgs = ["kmod-ipsec", "kmod-ipsec4", *packages.kernel_modules(s, s.router(router))]
    mods = sorted({m for p in pkgs for m in table[p]} - set(drop))
    listing = "Module                  Size  Used by    Tainted: G\n"
    listing += "".join(f"{m:<22} 16384  0 \n" for m in mods)
    shim = gw.state / "shims/lsmod"
    shim.write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}EOF\n")
    shim.chmod(0o755)


def fw4_load(gw: LiveRouter) -> None:
    """A firewall4-shaped table from the router's UCI rules and its nftables.d snippets."""
    sections = uci.parse_config(gw.read("/etc/config/firewall").decode())
    rules = ""
    for s in sections:
        if s.type != "rule" or s.options.get("src") != "wan" or "name" not in s.options:
            continue
        proto, port = s.options.get("proto", "all"), s.options.get("dest_port")
        match = f"{proto} dport {port}" if port else f"meta l4proto {proto}"
        rules += f'    {match} counter accept comment "!fw4: {s.options["name"]}"\n'
    snippets = "/usr/share/nftables.d/chain-pre"
    ruleset = (
        "table inet fw4\ndelete table inet fw4\n"
        "table inet fw4 {\n"
        "  chain input {\n    type filter hook input priority filter; policy accept;\n"
        f'    include "{snippets}/input/*.nft"\n{rules}  }}\n'
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        f'    include "{snippets}/forward/*.nft"\n  }}\n'
        "  chain srcnat {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    include "{snippets}/srcnat/*.nft"\n  }}\n'
        "  chain dstnat {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f'    include "{snippets}/dstnat/*.nft"\n  }}\n'
        "}\n"
    )
    gw.put_file("/tmp/fw4.nft", ruleset)
    gw.ssh("nft -f /tmp/fw4.nft")


def checks(data: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data["checks"]}


def test_doctor_router_healthy_then_each_failure_named(live_lab: LiveLab, tmp_path: Path) -> None:
    """A healthy router passes; a missing rule, module and CRL are each named with a fix."""
    gw = new_router(live_lab, "gw")
    site = LiveSite(tmp_path / "site", live_lab, name="doc")
    site.write({"gw": gw}, USERS)
    site.owrt("pki", "init")
    site.flash(gw, "gw")
    fake_kernel(gw, site, "gw")
    fw4_load(gw)

    proc, data = site.cli("doctor", "--router", "gw")
    assert proc.returncode == 0, json.dumps(data, indent=1)
    found = checks(data)
    assert {c["status"] for c in found.values()} == {"ok"}, json.dumps(data, indent=1)
    assert set(found) == {
        "firmware", "VPN files", "strongSwan running", "connections", "plugins", "ports",
        "firewall rules", "firewall loaded", "kernel modules", "server certificate", "CRL",
    }  # fmt: skip

    # break three things the reference lists: an input rule, a kmod, an unpushed revocation
    gw.ssh(
        "echo 'delete firewall.owrt_vpn_nat_t' | uci batch && uci commit firewall",
    )
    fw4_load(gw)
    fake_kernel(gw, site, "gw", drop=("gcm",))
    site.owrt("user", "revoke", "bob")

    proc, data = site.cli("doctor", "--router", "gw")
    assert proc.returncode == 1, json.dumps(data, indent=1)
    found = checks(data)
    bad = {n: c["status"] for n, c in found.items() if c["status"] != "ok"}
    assert bad == {
        "firewall rules": "fail",
        "firewall loaded": "fail",
        "kernel modules": "fail",
        "CRL": "fail",
        "VPN files": "warn",
    }, json.dumps(data, indent=1)
    assert "owrt_vpn_nat_t missing" in found["firewall rules"]["detail"]
    assert "!fw4: owrt-vpn IKE NAT-T and ESP in UDP" in found["firewall loaded"]["detail"]
    assert "kmod-crypto-gcm (gcm)" in found["kernel modules"]["detail"]
    assert "unable to add SAD entry" in found["kernel modules"]["detail"]
    assert "no CRL" in found["CRL"]["detail"] and found["CRL"]["fix"] == "owrt-vpn push"
    assert "/etc/swanctl/x509crl/owrt-vpn.crl (added)" in found["VPN files"]["detail"]

    text = site.text("doctor", "--router", "gw")
    assert text.returncode == 1
    assert "FAIL  kernel modules" in text.stdout and "fix: install the kmod" in text.stdout

    # the fixes the doctor names work: push restores the rule and the CRL
    proc, data = site.cli("push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fw4_load(gw)
    fake_kernel(gw, site, "gw")
    proc, data = site.cli("doctor", "--router", "gw")
    assert proc.returncode == 0, json.dumps(data, indent=1)


def test_doctor_router_not_ours_and_stopped(live_lab: LiveLab, tmp_path: Path) -> None:
    """Stock firmware, strongSwan stopped: firmware and daemon checks fail with fixes."""
    plain = new_router(live_lab, "plain")
    site = LiveSite(tmp_path / "site", live_lab, name="doc")
    site.write({"plain": plain}, USERS)
    site.owrt("pki", "init")
    proc, data = site.cli("doctor", "--router", "plain")
    assert proc.returncode == 1
    found = checks(data)
    assert found["firmware"]["status"] == "fail"
    assert "not owrt-vpn firmware" in found["firmware"]["detail"]
    assert found["strongSwan running"]["status"] == "fail"
    assert found["ports"]["status"] == "fail"
    assert found["server certificate"]["status"] == "fail"
