"""Fixtures for the namespace/daemon integration tests.

Everything created here is torn down in ``finally`` blocks, also when a test
fails; SIGTERM and SIGINT first remove every namespace (and the daemons in
them) and then interrupt the run; an ``atexit`` sweep catches what is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from .netns import Topology, sweep_all

OWRT_ENV = {
    "OWRT_VPN_CA_PASSPHRASE": "test-ca-passphrase",
    "SOURCE_DATE_EPOCH": "1700000000",
}


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "charon-systemd", "swanctl"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed (see .ci/run)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _signals_clean_up() -> Iterator[None]:
    """SIGTERM/SIGINT remove our namespaces and daemons at once, then interrupt the run.

    Cleaning up in the handler itself matters: a KeyboardInterrupt raised
    inside a library call can be replaced by that library's own error on the
    way out (the vici client does this), and the run would go on.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        sweep_all()
        raise KeyboardInterrupt(f"signal {signum}")

    saved = {}
    for sig, default in (
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGINT, signal.default_int_handler),
    ):
        if signal.getsignal(sig) is default:
            saved[sig] = default
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, default in saved.items():
            signal.signal(sig, default)


TopologyFactory = Callable[[], Topology]


@pytest.fixture(scope="module")
def topologies() -> Iterator[TopologyFactory]:
    """Make fresh router/LAN/WAN topologies; all are removed at module end."""
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    made: list[Topology] = []

    def make() -> Topology:
        topo = Topology()
        made.append(topo)
        return topo.up()

    try:
        yield make
    finally:
        for topo in made:
            topo.close()


OwrtRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def owrt() -> OwrtRunner:
    """Run the real ``owrt-vpn`` CLI (module scope; same env as tests/conftest.py's ``cli``)."""

    def run(
        *args: str | os.PathLike[str], cwd: Path, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("OWRT_VPN_SITE", None)
        env.update(OWRT_ENV)
        proc = subprocess.run(
            [sys.executable, "-m", "owrt_vpn", *(os.fspath(a) for a in args)],
            cwd=cwd,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"owrt-vpn {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return run
