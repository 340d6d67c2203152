"""fsutil.held_lock: exclusive between processes and threads, re-entrant within a thread."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from owrt_vpn.fsutil import held_lock
from owrtcli import run_owrt


def test_reentrant_in_one_thread_exclusive_for_others(tmp_path: Path) -> None:
    waited: list[str] = []
    entered = threading.Event()

    def other() -> None:
        with held_lock(tmp_path, lambda: waited.append("thread")):
            entered.set()

    with held_lock(tmp_path):
        with held_lock(tmp_path):  # the site folder is also the PKI folder: no self-deadlock
            pass
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        assert not entered.is_set() and waited == ["thread"]  # the inner exit kept the lock
        code = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        code += "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError: sys.exit(7)"
        assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 7
    t.join(timeout=10)
    assert entered.is_set()


def test_a_command_that_read_the_site_before_a_user_remove_issues_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bundle`/`build` read the site file, a `user remove alice` finishes, then they
    complete the PKI: alice's certificates used to be issued again (valid, recorded
    nowhere); now the site file on disk decides (issue 14: nothing issued unrecorded)."""
    from owrt_vpn.errors import PkiError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site.load import load_site
    from pki_testlib import PASSPHRASE, write_site

    monkeypatch.setenv("OWRT_VPN_CA_PASSPHRASE", PASSPHRASE)
    site_file = write_site(tmp_path)
    run_owrt("pki", "init", cwd=tmp_path, check=True)
    site = load_site(site_file)  # what the slow command read
    pki = Pki.open(site)
    assert pki.ensure(site).issued == []  # the site on disk: nothing missing
    run_owrt("user", "remove", "alice", cwd=tmp_path, check=True)
    with pytest.raises(PkiError, match=r"owrt-vpn.toml: changed while this command ran"):
        pki.ensure(site)
    assert not (tmp_path / "pki" / "clients" / "alice").exists()
    records = Pki.open(load_site(site_file)).records(all_records=True)
    assert not any(r.user == "alice" and r.status == "valid" for r in records)
    # A build's overrides (another release, backend) are not a change of the site.
    changed = load_site(site_file)
    router = changed.routers[0].model_copy(update={"release": "23.05.5"})
    assert (
        Pki.open(changed)
        .ensure_router(dataclasses.replace(changed, routers=(router, *changed.routers[1:])), router)
        .issued
        == []
    )
