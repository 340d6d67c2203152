"""Fault tests: owrt-vpn killed during a build (SIGTERM, SIGKILL) with the local backend.

``make`` is a wrapper first on PATH that, while a flag file exists, records
its process group and sleeps in a child (``sleep 300``) before running the
real make: the build stops in ``make manifest`` with the rendered overlay
(the router's private key) in its work tree. Checked: no process of make's
group survives owrt-vpn (SIGTERM) or the next build (SIGKILL), no secret is
readable by others at any moment we look, the work tree goes, and the next
build succeeds. The docker backend's counterparts are in
``test_docker_backend.py`` (interrupts, time limit, kill -9).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

import sitefile
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrtcli import CliRunner, cli_env, owrt_argv

pytestmark = pytest.mark.integration

WRAPPER = """#!/bin/sh
if [ -e {flag} ]; then
    # Say it before the group id is published: once the test kills owrt-vpn, a
    # write to its closed pipe would end this shell (SIGPIPE) and the group with it.
    echo "slow make: waiting"
    cut -d' ' -f5 /proc/$$/stat >> {pidfile}
    sleep 300
fi
exec {make} "$@"
"""


SECOND_ROUTER = sitefile.router(
    "gw2", server_id="vpn2.example.org", subtarget="generic", device="tenda_ac9",
    lan=["192.168.2.0/24"], pool="10.10.20.0/24",
)  # fmt: skip


class Lab:
    def __init__(self, tmp: Path, cli: CliRunner, mirror: ServedMirror) -> None:
        self.tmp, self.cli, self.mirror = tmp, cli, mirror
        self.site = tmp / "site"
        self.site.mkdir()
        self.cache = tmp / "cache"
        self.flag, self.pidfile = tmp / "slow-make", tmp / "make.pgid"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        real_make = subprocess.run(["sh", "-c", "command -v make"], capture_output=True,
                                   text=True, check=True).stdout.strip()  # fmt: skip
        wrapper = bin_dir / "make"
        wrapper.write_text(WRAPPER.format(flag=self.flag, pidfile=self.pidfile, make=real_make))
        wrapper.chmod(0o755)
        self.env = {
            "OWRT_VPN_CACHE": str(self.cache),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        }
        cli("init", "--server-id", "vpn.example.org", cwd=self.site, env=self.env, check=True)
        cli("pki", "init", cwd=self.site, env=self.env, check=True)

    def argv(self) -> list[str]:
        return owrt_argv("build", "--mirror", self.mirror.url, "--trust-key",
                         str(self.mirror.key.public), "--no-bundles")  # fmt: skip

    def start_slow(self, jobs: int = 1) -> tuple[subprocess.Popen[bytes], list[int]]:
        """A build stopped in make manifest of ``jobs`` routers at once;
        (the owrt-vpn process, make's group ids)."""
        self.flag.touch()
        argv = [*self.argv(), "--jobs", str(jobs)]
        proc = subprocess.Popen(argv, cwd=self.site, env=cli_env(self.env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 120
        while not self.pidfile.exists() or len(self.pidfile.read_text().split()) < jobs:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        self.flag.unlink()
        pgids = [int(x) for x in self.pidfile.read_text().split()]
        if os.getpgrp() in pgids:  # make did not get its own group: never signal ours
            proc.kill()
            pytest.fail("make runs in the caller's process group (no setsid)")
        return proc, pgids

    def work_trees(self) -> list[Path]:
        work = self.cache / "work"
        return [p for p in work.iterdir() if p.is_dir()] if work.is_dir() else []

    def build(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(), cwd=self.site, env=cli_env(self.env),
                              capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path, cli: CliRunner, served_mirror: ServedMirror) -> Lab:  # noqa: F811
    return Lab(tmp_path, cli, served_mirror)


def group_alive(pgid: int, settle: float = 0.0) -> bool:
    """A process of group ``pgid`` still runs (zombies do not: they run nothing and wait
    for their new parent, init, to reap them). ``settle``: seconds a signal sent just
    before may take to land."""
    deadline = time.monotonic() + settle
    while True:
        running = False
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                running = True
                break
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.1)


def readable_secrets(*roots: Path) -> list[str]:
    """Files holding key material that someone else could read (file or a parent dir)."""
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                try:
                    data = path.read_bytes()[: 1 << 16]
                except OSError:
                    continue
                if b"PRIVATE KEY" not in data:
                    continue
                if stat.S_IMODE(path.stat().st_mode) & 0o077 == 0:
                    continue
                # group/other readable: fine only inside a 0700 directory
                parents = [p for p in path.parents if root in p.parents or p == root]
                if not any(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in parents):
                    found.append(str(path))
    return found


@pytest.mark.parametrize(
    ("signum", "jobs"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)]
)
def test_signal_during_make_ends_its_group_and_removes_the_work_tree(
    lab: Lab, signum: int, jobs: int
) -> None:
    if jobs == 2:  # two routers built at once: make runs in worker threads
        site_file = lab.site / "owrt-vpn.toml"
        head, users = site_file.read_text().split("[[users]]", 1)
        site_file.write_text(head + SECOND_ROUTER + "\n[[users]]" + users)
    proc, pgids = lab.start_slow(jobs)
    try:
        trees = lab.work_trees()
        assert len(trees) == jobs
        assert all(stat.S_IMODE(t.stat().st_mode) == 0o700 for t in trees)
        assert readable_secrets(lab.cache, lab.site) == []
        t0 = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30  # make's sleep 300 did not hold it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"error: interrupted" in err
    assert not any(group_alive(g, settle=5) for g in pgids)  # no orphan writing into the cache
    assert lab.work_trees() == []
    assert readable_secrets(lab.cache, lab.site) == []
    r = lab.build()
    assert r.returncode == 0, r.stderr


def test_kill_9_during_make_next_build_ends_the_group_and_removes_the_work_tree(
    lab: Lab,
) -> None:
    proc, (pgid,) = lab.start_slow()
    proc.kill()
    proc.wait()
    try:
        # make runs on in its own session; its work tree (with the router's key) stays 0700.
        assert group_alive(pgid)
        trees = lab.work_trees()
        assert len(trees) == 1 and stat.S_IMODE(trees[0].stat().st_mode) == 0o700
        assert readable_secrets(lab.cache, lab.site) == []
        r = lab.build()
        assert r.returncode == 0, r.stderr
        assert not group_alive(pgid, settle=5)
        assert lab.work_trees() == []
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_sigterm_during_the_download_then_the_next_build_succeeds(lab: Lab) -> None:
    """The stage before make: owrt-vpn's own process downloads (no group to end)."""
    path = lab.mirror.archive_path("24.10.2", "bcm53xx", "generic")
    lab.mirror.server.slow(path, delay=5.0)
    proc = subprocess.Popen(lab.argv(), cwd=lab.site, env=cli_env(lab.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while lab.mirror.server.count(path) == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # into the body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"error: interrupted" in err
    assert lab.work_trees() == []
    assert not list((lab.cache / "archives").glob("*/*"))  # nothing unverified kept as done
    assert readable_secrets(lab.cache, lab.site) == []
    lab.mirror.server.clear_faults()
    r = lab.build()
    assert r.returncode == 0, r.stderr
