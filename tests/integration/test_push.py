"""`owrt-vpn push` against live routers: proven by real IKEv2 handshakes.

Each test router is a dropbear SSH server in its own namespaces (sshrouter.py)
whose ``swanctl`` is the real one, talking to a real charon running inside
the router with the files our installer put in place (liverouter.py). Road
warriors are real strongSwan clients on the router's WAN side. The CLI runs
in the management namespace, as an operator's machine would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import sitefile

from .conftest import new_router
from .liverouter import LiveLab, log_mark, router_log_since
from .livesite import LiveSite

pytestmark = pytest.mark.integration

USERS = [
    sitefile.user("alice", [("laptop", "linux")]),
    sitefile.user("bob", [("phone", "android")]),
]

IVY = [sitefile.user("ivy", [("phone", "ios", {"shared_identity": True})])]

ERIN = [sitefile.user("erin", [("phone", "android")], auth="eap-mschapv2")]


def site_for(
    live_lab: LiveLab, tmp_path: Path, routers: dict[str, Any], users: list[str]
) -> LiveSite:
    site = LiveSite(tmp_path / "site", live_lab, name="push")
    site.write(routers, users)
    site.owrt("pki", "init")
    return site


def wait_until(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def by_name(data: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in data["routers"]}


def test_revoke_push_terminates_and_refuses(live_lab: LiveLab, tmp_path: Path) -> None:
    """Revoke bob: a dry run changes nothing; the push ends his SA and refuses him; alice stays.

    ivy (revoked too) is on the shared iOS identity: her SA cannot be singled out, and the
    report says so instead of guessing; her next login is refused.
    """
    gw = new_router(live_lab, "gw")
    site = site_for(live_lab, tmp_path, {"gw": gw}, USERS + IVY)
    site.flash(gw, "gw")
    alice = gw.add_client(site.profile(gw, "gw", "alice", "laptop"))
    bob = gw.add_client(site.profile(gw, "gw", "bob", "phone"))
    ivy = gw.add_client(site.profile(gw, "gw", "ivy", "phone", local_id="pushClients"))
    for client in (alice, bob, ivy):
        assert client.connect(), client.last
    bob_vip = bob.vip()

    proc, data = site.cli("push", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert by_name(data)["gw"]["status"] == "unchanged", data

    site.owrt("user", "revoke", "bob")
    site.owrt("user", "revoke", "ivy")
    before = gw.file_hashes()
    proc, data = site.cli("push", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "would-push", rep
    assert [(c["change"], c["path"]) for c in rep["changes"]] == [
        ("added", "/etc/swanctl/x509crl/owrt-vpn.crl")
    ]
    assert [(t["peer"], t["done"]) for t in rep["terminated"]] == [("bob/phone", False)]
    assert gw.file_hashes() == before, "a dry run changed files on the router"
    assert bob.established(), "a dry run terminated an SA"

    mark = log_mark(gw)
    proc, data = site.cli("push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert rep["status"] == "pushed", rep
    assert [(t["peer"], t["virtual_ips"], t["done"]) for t in rep["terminated"]] == [
        ("bob/phone", [bob_vip], True)
    ]
    shared_notes = [n for n in rep["notes"] if "shared iOS identity" in n]
    assert len(shared_notes) == 1 and "ivy/phone" in shared_notes[0], rep["notes"]
    after = gw.file_hashes()
    assert after["/etc/swanctl/x509crl/owrt-vpn.crl"] == site_crl_sha(site)
    # bob's SA that was up before the push is gone, on both ends
    assert wait_until(lambda: not bob.established()), "bob's SA survived the push"
    sas = gw.ssh("swanctl --list-sas").stdout.decode()
    assert "bob+phone@push" not in sas and "alice+laptop@push" in sas
    # bob is refused now (the CRL lists him), alice still connects
    assert not bob.connect(), "revoked bob connected after the push"
    assert "certificate was revoked" in router_log_since(gw, mark)
    again = gw.add_client(site.profile(gw, "gw", "alice", "laptop"))
    assert again.connect(), again.last
    assert alice.established(), "alice's SA was terminated"
    # the documented limit: ivy's SA on the shared identity stays; a new login is refused
    assert ivy.established()
    ivy2 = gw.add_client(site.profile(gw, "gw", "ivy", "phone", local_id="pushClients"))
    assert not ivy2.connect(), "revoked ivy logged in again on the shared identity"

    text = site.text("push", "--dry-run")
    assert "cannot be singled out" in text.stdout


def site_crl_sha(site: LiveSite) -> str:
    from .liverouter import sha256

    return sha256((site.dir / "pki/crl.pem").read_bytes())


def test_push_adds_user_and_changes_password_without_showing_secrets(
    live_lab: LiveLab, tmp_path: Path
) -> None:
    """A new user connects after the push; secrets are 'changed' only, never printed."""
    gw = new_router(live_lab, "gw")
    site = site_for(live_lab, tmp_path, {"gw": gw}, USERS + ERIN)
    site.flash(gw, "gw")
    old_password = (site.dir / "pki/eap/erin.password").read_text().strip()
    erin_old = gw.add_client(site.profile(gw, "gw", "erin", None, "eap-mschapv2"))
    assert erin_old.connect(), erin_old.last

    site.owrt("user", "add", "dave", "--device", "tablet:android-strongswan")
    new_password = "n3w erin pa55 'quoted' #hash"
    site.owrt("user", "passwd", "erin", "--password-stdin", input=new_password + "\n")
    dave = gw.add_client(site.profile(gw, "gw", "dave", "tablet"))
    assert not dave.connect(), "dave connected before the push"

    proc = site.text("push")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "changed  /etc/swanctl/conf.d/owrt-vpn-secrets.conf (secret: content not shown)" in out
    assert "+    rw-pubkey-dave-tablet : owrt-vpn-rw {" in out, out  # the unified diff
    key = (site.dir / "pki/servers/gw.key").read_text().splitlines()[1]
    for secret in (new_password, old_password, key):
        assert secret not in out, "a secret was printed"

    assert dave.connect(), dave.last
    erin_new = gw.add_client(site.profile(gw, "gw", "erin", None, "eap-mschapv2"))
    assert erin_new.connect(), erin_new.last
    # a password change is not a revocation: erin's SA from before stays up
    assert erin_old.established()
    stale = gw.add_client(
        site.profile(gw, "gw", "erin", None, "eap-mschapv2", eap_secret=old_password)
    )
    assert not stale.connect(), "the old EAP password still works"

    # a second push has nothing to change
    proc, data = site.cli("push")
    assert proc.returncode == 0 and by_name(data)["gw"]["status"] == "unchanged", data


def test_refusals_and_batch_exit_codes(live_lab: LiveLab, tmp_path: Path) -> None:
    """Not our firmware, another site's firmware, new packages needed: refused; exit 0/4/1."""
    gw = new_router(live_lab, "gw")
    plain = new_router(live_lab, "plain")  # stock firmware: no baked build-info, no installer
    site = site_for(live_lab, tmp_path, {"gw": gw, "plain": plain}, USERS)
    site.flash(gw, "gw")
    plain_before = plain.file_hashes()

    proc, data = site.cli("push")
    reps = by_name(data)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert reps["gw"]["status"] == "unchanged"
    assert reps["plain"]["status"] == "refused"
    assert "not owrt-vpn firmware" in reps["plain"]["message"]
    assert plain.file_hashes() == plain_before, "something was written to a foreign router"
    left = plain.ssh("ls -d /etc/owrt-vpn /tmp/owrt-vpn* 2>/dev/null; true").stdout
    assert left == b"", f"push left files behind: {left!r}"

    # charon runs but `swanctl --list-sas` fails: reported (as status does), so a dry run
    # never says "nothing to terminate" on a listing it did not get
    shim = gw.wrap_swanctl("*--list-sas*) echo 'vici: read timed out' >&2; exit 7 ;;")
    try:
        proc, data = site.cli("push", "--dry-run", "--router", "gw")
    finally:
        shim.unlink()
    rep = by_name(data)["gw"]
    assert proc.returncode == 1 and rep["status"] == "failed", rep
    assert rep["message"] == (
        "`swanctl --list-sas --pretty` failed on the router (status 7): vici: read timed out"
    )

    # a user whose method needs plugins the firmware lacks: rebuild and flash
    site.owrt("user", "add", "erin", "--auth", "eap-tls", "--device", "laptop:linux")
    before = gw.file_hashes()
    proc, data = site.cli("push", "--router", "gw")
    rep = by_name(data)["gw"]
    assert proc.returncode == 1, proc.stdout
    assert rep["status"] == "refused"
    assert "strongswan-mod-eap-tls" in rep["message"]
    assert rep["hint"].startswith("rebuild and flash")
    assert gw.file_hashes() == before

    # the router answering at gw's address runs firmware built for another router
    other = LiveSite(tmp_path / "other", live_lab, name="push")
    other.write({"gw2": gw.router.address}, USERS)
    (other.dir / "pki").symlink_to(site.dir / "pki")
    proc, data = other.cli("push")
    rep = by_name(data)["gw2"]
    assert proc.returncode == 1 and rep["status"] == "refused", rep
    assert "built for router 'gw'" in rep["message"]


def test_push_two_routers_concurrently(live_lab: LiveLab, tmp_path: Path) -> None:
    """Two routers in one run, --jobs 2: both pushed, each with its own report."""
    a, b = new_router(live_lab, "ra"), new_router(live_lab, "rb")
    site = site_for(live_lab, tmp_path, {"ra": a, "rb": b}, USERS)
    site.flash(a, "ra")
    site.flash(b, "rb")
    site.owrt("user", "revoke", "bob", "--device", "phone")
    proc, data = site.cli("push", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {n: r["status"] for n, r in by_name(data).items()} == {"ra": "pushed", "rb": "pushed"}
    crl = site_crl_sha(site)
    assert a.file_hashes()["/etc/swanctl/x509crl/owrt-vpn.crl"] == crl
    assert b.file_hashes()["/etc/swanctl/x509crl/owrt-vpn.crl"] == crl


def test_host_key_change_after_the_install_fails_before_any_change_refuses(
    live_lab: LiveLab, tmp_path: Path
) -> None:
    """The router's host key changes right after the installer reloaded strongSwan: the
    push changed the router, so it *failed* (at "verifying"); the next push meets the
    new key at first contact, before any change: *refused*, and nothing is touched."""
    gw = new_router(live_lab, "gw")
    site = site_for(live_lab, tmp_path, {"gw": gw}, USERS)
    site.flash(gw, "gw")
    site.owrt("user", "revoke", "bob")
    gw.router.set_fault("rekey-after-reload")

    proc, data = site.cli("push")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert (rep["status"], rep["stage"]) == ("failed", "verifying"), rep
    assert "the host key differs from the one in" in rep["message"], rep
    assert "known_hosts" in rep["hint"]
    assert len(gw.router.events("rekeyed")) == 1
    # the change really happened before the key changed: the CRL is on the router
    gw.router.reread_host_key()
    after = gw.file_hashes()
    assert after["/etc/swanctl/x509crl/owrt-vpn.crl"] == site_crl_sha(site)
    assert "/etc/owrt-vpn/pushed.json" not in after  # never recorded as pushed

    site.owrt("user", "revoke", "alice")
    proc, data = site.cli("push")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = by_name(data)["gw"]
    assert (rep["status"], rep["stage"]) == ("refused", "connecting"), rep
    assert "the host key differs from the one in" in rep["message"], rep
    assert gw.file_hashes() == after, "a push with a mismatching host key changed the router"


def test_ctrl_c_is_interrupted_at_the_stage_reached(live_lab: LiveLab, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the process group, ssh clients included) while push waits for
    the connections, then while the router's installer reloads strongSwan: "interrupted
    while <stage>" with push's hint (not "the installer failed (status -2)" or "cannot
    reach"), at once (not after the reload timeout); nothing recorded as pushed."""
    gw = new_router(live_lab, "gw")
    site = site_for(live_lab, tmp_path, {"gw": gw}, USERS)
    site.flash(gw, "gw")
    slow = gw.state / "slow"
    for stage, step, revoke in (
        ("verifying", "--list-conns", "bob"),
        ("installing", "--load-all", "alice"),
    ):
        site.owrt("user", "revoke", revoke)  # a change to push
        # the router's swanctl (the real one) hangs in the step the stage runs
        shim = gw.wrap_swanctl(f"*{step}*) touch /srv/slow; sleep 60 ;;")
        slow.unlink(missing_ok=True)
        proc, data = site.cli_ctrl_c("push", when=slow.exists)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        rep = by_name(data)["gw"]
        assert (rep["status"], rep["stage"]) == ("failed", stage), rep
        assert rep["message"] == f"interrupted while {stage}"
        assert rep["hint"] == "run push again: it only changes what differs"
        assert time.time() - slow.stat().st_mtime < 15  # not the 30 s reload wait
    shim.unlink()
    assert "/etc/owrt-vpn/pushed.json" not in gw.file_hashes()
