"""The bench's workspace: the real CLI in subprocesses, a loopback mirror, site files.

Every figure comes from the real ``owrt-vpn`` command line (``python -m
owrt_vpn``) run in a scratch directory, timed from outside (wall clock) and
through the children's rusage (CPU). The ImageBuilder is the test double
(tests/imagebuilder_double), served signed on 127.0.0.1 from this process.

Bytecode: the children write and reuse ``.pyc`` files under the workspace
(``PYTHONPYCACHEPREFIX``) like an installed tool does, even when the caller's
environment sets ``PYTHONDONTWRITEBYTECODE``; one warm-up run fills them.

Where: the workspace goes to a RAM file system (``/dev/shm``) when there is
one, so that the figures measure owrt-vpn rather than the disk of the machine
(a VM disk may take 0.5 ms per file created); :meth:`Lab.on_disk` runs the
same commands in the system temp dir for the side-by-side disk figures.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:  # the ImageBuilder double and the loopback mirror
    sys.path.insert(0, str(TESTS))

CA_PASSPHRASE = "bench-only-passphrase"  # noqa: S105 - a throwaway CA in a scratch dir
EPOCH = "1700000000"
BUILD = ("24.10.2", "bcm53xx", "generic")


@dataclass
class Timed:
    """One timed command: wall and CPU seconds (user+sys of the child), its output."""

    argv: list[str]
    wall: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON (the command ran with --json)."""
        return json.loads(self.stdout)


def median(values: Sequence[float]) -> float:
    """The median, rounded to the millisecond."""
    return round(statistics.median(values), 3)


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(argv: Sequence[str], cwd: Path, env: dict[str, str], check: bool = True) -> Timed:
    """Run ``argv`` to completion; wall clock and the child's CPU time."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    proc = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
            f"stderr:\n{proc.stderr[-3000:]}"
        )
    return Timed(list(argv), wall, cpu, proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Lab:
    """A scratch workspace with its own cache, keys, bytecode and mirror."""

    root: Path
    env: dict[str, str]
    mirror_url: str = ""
    trust_key: str = ""
    server: Any = None  # integration.mirror.MirrorServer (request log: bytes sent)
    disk: Path | None = None  # a scratch dir on the system temp dir's file system

    def owrt(self, *args: str, cwd: Path, check: bool = True, python: Sequence[str] = ()) -> Timed:
        """``owrt-vpn ARGS`` in ``cwd``; ``python``: interpreter options (-X importtime)."""
        return timed([sys.executable, *python, "-m", "owrt_vpn", *args], cwd, self.env, check)

    def build(self, site: Path, *args: str) -> Timed:
        """``owrt-vpn --json build`` against the loopback mirror."""
        return self.owrt(
            "--json", "build", "--mirror", self.mirror_url, "--trust-key", self.trust_key, *args,
            cwd=site,
        )  # fmt: skip

    def site(self, name: str, text: str | None = None) -> Path:
        """A new site directory with ``owrt-vpn init``'s file, or ``text``."""
        path = self.root / "sites" / name
        path.mkdir(parents=True)
        if text is None:
            self.owrt("init", "--server-id", "vpn.example.org", cwd=path)
        else:
            (path / "owrt-vpn.toml").write_text(text)
        return path

    def on_disk(self) -> Lab | None:
        """The same lab with its files (sites, cache) in the system temp dir, or
        None when the workspace is there already."""
        if self.disk is None:
            return None
        env = child_env(self.disk)
        env["PYTHONPYCACHEPREFIX"] = self.env["PYTHONPYCACHEPREFIX"]
        return Lab(self.disk, env, self.mirror_url, self.trust_key, self.server)

    def mirror_bytes(self) -> tuple[int, int]:
        """(requests, body bytes) the mirror served since the last reset."""
        log = self.server.log
        return len(log), sum(r.bytes_sent for r in log)


def child_env(root: Path) -> dict[str, str]:
    """The children's environment: scratch cache/keys, fixed epoch, cached bytecode."""
    env = dict(os.environ)
    for name in ("OWRT_VPN_SITE", "OWRT_VPN_MIRROR", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    env.update(
        OWRT_VPN_CA_PASSPHRASE=CA_PASSPHRASE,
        SOURCE_DATE_EPOCH=EPOCH,
        OWRT_VPN_CACHE=str(root / "cache"),
        OWRT_VPN_KEYS_DIR=str(root / "userkeys"),
        PYTHONPYCACHEPREFIX=str(root / "pycache"),
    )
    return env


RAM_FS = Path("/dev/shm")  # noqa: S108 - a private mkdtemp dir is made inside


def default_workdir() -> Path | None:
    """``/dev/shm`` when it is a writable RAM file system with 2 GiB free, else None."""
    try:
        st = os.statvfs(RAM_FS)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 2 << 30 or not os.access(RAM_FS, os.W_OK):
        return None
    return RAM_FS


@contextmanager
def lab(workdir: Path | None = None, keep: bool = False) -> Iterator[Lab]:
    """A workspace serving a signed mirror of the double; removed afterwards unless ``keep``."""
    from imagebuilder_double.fixtures import start_served_mirror

    root = Path(tempfile.mkdtemp(prefix="owrt-bench-", dir=workdir or default_workdir()))
    disk = Path(tempfile.mkdtemp(prefix="owrt-bench-disk-"))
    if os.stat(disk).st_dev == os.stat(root).st_dev:
        shutil.rmtree(disk)
        disk = None
    served, server = start_served_mirror(root / "double", [BUILD])
    try:
        lb = Lab(root, child_env(root), served.url, str(served.key.public), server, disk)
        lb.owrt("--help", cwd=root)  # fills the bytecode cache of the CLI's own imports
        yield lb
    finally:
        server.stop()
        for path in (root, disk):
            if path is None:
                continue
            if keep:
                print(f"bench: workspace kept in {path}", file=sys.stderr)
            else:
                shutil.rmtree(path, ignore_errors=True)


def repeat(n: int, fn: Callable[[], Timed]) -> list[Timed]:
    """``fn`` run ``n`` times."""
    return [fn() for _ in range(n)]


# ------------------------------------------------------------------ site files

ROUTER = """
[[routers]]
name = "{name}"
server_id = "{name}.vpn.example.org"
release = "24.10.2"
target = "bcm53xx"
subtarget = "generic"
device = "phicomm_k3"
lan = ["192.168.{n}.0/24"]
pool = "{pool}"
dns = ["192.168.{n}.1"]
"""

USER = """
[[users]]
name = "{name}"
auth = "{auth}"
{devices}"""

DEVICE = """[[users.devices]]
name = "{name}"
platform = "{platform}"
"""


def site_text(
    routers: Sequence[str],
    users: Sequence[tuple[str, str, Sequence[tuple[str, str]]]],
    pool_prefix: int = 24,
) -> str:
    """A site file: ``routers`` (bcm53xx phicomm_k3 each) and ``users`` as
    (name, auth, [(device, platform)...])."""
    out = ['[site]\nname = "bench"\npki_dir = "pki"\n']
    for i, name in enumerate(routers, start=1):
        pool = f"10.{i}.0.0/{pool_prefix}"
        out.append(ROUTER.format(name=name, n=i, pool=pool))
    for name, auth, devices in users:
        devs = "".join(DEVICE.format(name=d, platform=p) for d, p in devices)
        out.append(USER.format(name=name, auth=auth, devices=devs))
    return "".join(out)
