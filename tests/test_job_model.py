"""The one batch job model (routers/job.py): the same rules for flash, push and status.

In-process: the classification of how a router's job ended is pure logic;
the live-router tests (test_flash, test_push, test_status) drive it end to end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from owrt_vpn.routers import doctor, flash, push, status
from owrt_vpn.routers import job as job_module
from owrt_vpn.routers.job import Job, JobOptions, JobReport, Stop, release_text, run_batch
from owrt_vpn.routers.ssh import HostKeyError, RemoteCommandError, SshError, SshTarget
from owrt_vpn.routers.state import Section

KINDS: list[tuple[type[JobReport], Any]] = [
    (flash.RouterReport, flash.Stage.UPLOADING),
    (push.PushReport, push.Stage.INSTALLING),
    (status.RouterStatus, status.Stage.QUERYING),
]


def _run(kind: type[JobReport], body: Callable[[Job], None], cancel: bool = False) -> JobReport:
    report = kind("r1", "gw", "root@192.0.2.1:22")
    event = threading.Event()
    if cancel:
        event.set()
    job = Job(report, lambda r: None, event)
    job.run(lambda: body(job))
    return report


@pytest.mark.parametrize(("kind", "stage"), KINDS)
def test_host_key_mismatch_is_refused_before_a_change_failed_after(kind: Any, stage: Any) -> None:
    def before(job: Job) -> None:
        job.stage(stage)
        raise HostKeyError("host key of 192.0.2.1 changed")

    def after(job: Job) -> None:
        job.stage(stage)
        job.report.changed = True
        raise HostKeyError("host key of 192.0.2.1 changed")

    assert str(_run(kind, before).status) == "refused"
    r = _run(kind, after)
    assert str(r.status) == "failed" and r.message == "host key of 192.0.2.1 changed"


@pytest.mark.parametrize(("kind", "stage"), KINDS)
def test_an_ssh_client_killed_by_ctrl_c_is_an_interruption_at_the_real_stage(
    kind: Any, stage: Any
) -> None:
    def body(job: Job) -> None:
        job.stage(stage)
        raise RemoteCommandError("sha256sum /tmp/x", -2, "")

    r = _run(kind, body)
    assert str(r.status) == "failed"
    assert r.message == f"interrupted while {stage}"
    assert r.hint == kind.AGAIN
    assert str(r.stage) == str(stage)

    def openssh(job: Job) -> None:  # OpenSSH catches the signal and says so
        job.stage(stage)
        raise SshError("cannot reach root@192.0.2.1:22: Killed by signal 2.")

    assert _run(kind, openssh).message == f"interrupted while {stage}"


@pytest.mark.parametrize(("kind", "stage"), KINDS)
def test_a_broken_session_then_ctrl_c_is_an_interruption(
    kind: Any, stage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal's SIGINT ends ssh (exit 255, no message) a moment before owrt-vpn's
    handler runs: still an interruption; without a Ctrl-C, the SSH error stands."""
    monkeypatch.setattr(job_module, "SIGNAL_GRACE", 0.4)

    def body(job: Job) -> None:
        job.stage(stage)
        threading.Timer(0.1, job.cancel.set).start()  # the main thread's handler, late
        raise SshError("cannot reach root@192.0.2.1: ssh failed")

    r = _run(kind, body)
    assert (str(r.status), r.message) == ("failed", f"interrupted while {stage}")

    def unreachable(job: Job) -> None:
        job.stage(stage)
        raise SshError("cannot reach root@192.0.2.1: ssh failed")

    r = _run(kind, unreachable)
    assert (str(r.status), r.message) == ("failed", "cannot reach root@192.0.2.1: ssh failed")


@pytest.mark.parametrize(("kind", "stage"), KINDS)
def test_cancel_between_stages_names_the_stage_that_finished(kind: Any, stage: Any) -> None:
    first = next(iter(type(stage)))  # "queued"
    second = list(type(stage))[1]

    def body(job: Job) -> None:
        job.stage(second)
        job.cancel.set()
        job.stage(stage)

    r = _run(kind, body)
    assert r.message == f"interrupted after {second}" and str(r.stage) == str(second)
    assert str(first) == "queued"


@pytest.mark.parametrize(("kind", "stage"), KINDS)
def test_stop_bug_and_unstarted(kind: Any, stage: Any) -> None:
    refused = kind.STATUS("refused")
    r = _run(kind, lambda job: (_ for _ in ()).throw(Stop(refused, "board differs")))
    assert r.status == refused and r.message == "board differs"
    r = _run(kind, lambda job: (_ for _ in ()).throw(KeyError("x")))
    assert str(r.status) == "failed" and r.message.startswith("internal error: KeyError")
    assert r.finished >= r.started > 0

    reports = [kind(f"r{i}", "gw", "a") for i in range(3)]

    def work(i: int, job: Job) -> Callable[[], None]:
        def steps() -> None:
            if i == 0:
                raise KeyboardInterrupt  # Ctrl-C while the batch runs

        return steps

    run_batch(reports, work, 1, None, "t")  # the batch catches Ctrl-C and reports
    for r in reports[1:]:
        assert str(r.status) == "failed" and r.message == "interrupted before it started"


def test_one_release_fallback() -> None:
    assert release_text({"version": "24.10.2", "revision": "r1"}) == "24.10.2 r1"
    assert (
        release_text({})
        == release_text({"version": "", "revision": None})
        == ("an unknown release")
    )


def test_status_and_doctor_name_releases_with_the_one_fallback() -> None:
    """status's "last build in dist" line and doctor's firmware check: the same release
    text as every other message."""
    r = status.RouterStatus("gw", "gw", "root@192.0.2.1", status=status.Status.OK)
    r.facts = {
        "last_build": {
            "found": True,
            "release": {"version": None, "revision": None},
            "matches": None,
        },
        "marker": None,
        "pushed": None,
        "strongswan": {"style": "swanctl", "running": False, "connections": []},
        "users": [],
        "certificates": {"server": None, "ca": None, "crl": None},
    }
    assert "  last build in dist: an unknown release, running it: unknown" in status.human([r])
    r.facts["last_build"]["release"] = {"version": "24.10.2", "revision": "r1"}
    assert "  last build in dist: 24.10.2 r1, running it: unknown" in status.human([r])

    baked = {"router": "gw", "site": {"name": "s"}}  # no release recorded
    router: Any = SimpleNamespace(name="gw")
    check = doctor._firmware(baked, {"installer": Section("yes", 0)}, router)
    assert (check.status, check.detail) == ("ok", "owrt-vpn build of gw (an unknown release)")


@pytest.mark.parametrize("options", [flash.FlashOptions, push.PushOptions, status.StatusOptions])
def test_one_options_base_makes_the_ssh_client(options: type[JobOptions]) -> None:
    """Host keys and connect timeout reach every command's SSH client the same way."""
    o = options(accept_new_host_keys=True, connect_timeout=3.0)
    assert isinstance(o, JobOptions)
    client = o.client(SshTarget("192.0.2.1"))
    assert (client.accept_new, client.connect_timeout) == (True, 3.0)
    assert not options().client(SshTarget("192.0.2.1")).accept_new
