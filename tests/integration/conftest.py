"""Fixtures for the namespace/daemon integration tests.

Everything created here is torn down in ``finally`` blocks, also when a test
fails; SIGTERM and SIGINT first remove every namespace (and the daemons in
them) and then interrupt the run; an ``atexit`` sweep catches what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from owrtcli import OWRT_ENV, CliRunner, run_owrt
from requires import require

from .netns import Topology, sweep_all

if TYPE_CHECKING:
    from openwrt.userland import Userland

    from .liverouter import LiveLab, LiveRouter

__all__ = ["OWRT_ENV", "OwrtRunner", "TopologyFactory", "new_router"]

# What the router/LAN/WAN topologies (netns.py) run.
NETNS_TOOLS = ("ip", "charon-systemd", "swanctl")
# What the SSH test routers (sshrouter.py) run, and the flasher's client.
SSH_LAB_TOOLS = (
    "ip", "unshare", "dropbear", "dropbearkey", "ssh", "ssh-keygen", "unsquashfs", "busybox",
)  # fmt: skip
# Live routers (liverouter.py): SSH routers running a real charon, road warriors, fw4 tables.
LIVE_LAB_TOOLS = (*SSH_LAB_TOOLS, "charon-systemd", "swanctl", "nft")
NAMESPACES = "network, mount and pid namespaces"


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
    require(*NETNS_TOOLS, root="network namespaces")
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


OwrtRunner = CliRunner


@pytest.fixture(scope="module")
def owrt() -> OwrtRunner:
    """Run the real ``owrt-vpn`` CLI in ``cwd`` (module scope); it must succeed unless
    ``check=False``. The same runner as tests/conftest.py's ``cli`` (owrtcli.py)."""

    def run(
        *args: str | os.PathLike[str],
        cwd: Path,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        return run_owrt(*args, cwd=cwd, input=input, check=check, timeout=timeout)

    return run


@pytest.fixture(scope="module")
def live_lab(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, openwrt: Userland
) -> Iterator[LiveLab]:
    """Live routers (liverouter.py) for one test module: SSH routers with WAN sides.

    Every test adds its own routers (:func:`new_router`), so state never
    leaks between tests; everything is removed at module end.
    """
    require(*LIVE_LAB_TOOLS, root=NAMESPACES)
    from .liverouter import LiveLab
    from .sshrouter import SshLab

    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    work = tmp_path_factory.mktemp(f"{module}-lab")
    ssh_lab = SshLab(work / "ssh")
    live = LiveLab(ssh_lab, work / "live", openwrt)
    try:
        ssh_lab.start()
        yield live
    finally:
        live.close()
        ssh_lab.close()


def new_router(lab: LiveLab, name: str) -> LiveRouter:
    """A fresh live router (own namespaces, own WAN, own state directory)."""
    from .sshrouter import RouterSpec

    spec = RouterSpec(f"{name}-{len(lab.routers)}")
    return lab.add_router(lab.ssh_lab.add_router(spec))
