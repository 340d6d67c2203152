"""Network namespaces for integration tests: a router, its LAN and road warriors.

Layout built by :class:`Topology` (every namespace name carries a random
per-run prefix, so parallel runs and stale leftovers never collide)::

    rw-1 (192.0.2.11) ─┐
    rw-2 (192.0.2.12) ─┼─ wan (bridge) ─ router (192.0.2.1 | 10.77.0.1) ─ lan-host (10.77.0.10)
    ...               ─┘

The WAN "switch" is a bridge in its own namespace so that the router has one
WAN port like a real one and any number of road warriors can join. Only
documentation addresses (192.0.2.0/24, 198.51.100.0/24) are used on the WAN
side and 10.x only inside the namespaces.

Cleanup is guaranteed by :meth:`Topology.close` (call it from a fixture's
``finally``): it kills the processes still running *inside our namespaces*
(only those: every one of them was started by this harness) and deletes
the namespaces. Every live topology is also registered for
:func:`sweep_all`, run at exit and by the test run's signal handlers.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WAN_NET = ipaddress.IPv4Network("192.0.2.0/24")
WAN_ALT_NET = ipaddress.IPv4Network("198.51.100.0/24")
ROUTER_WAN = ipaddress.IPv4Address("192.0.2.1")
LAN_NET = ipaddress.IPv4Network("10.77.0.0/24")
ROUTER_LAN = ipaddress.IPv4Address("10.77.0.1")
LAN_HOST = ipaddress.IPv4Address("10.77.0.10")

_LIVE: set[Topology] = set()
_STOPPED = False  # set by sweep_all(): no new topology after an interrupt


class NetnsError(RuntimeError):
    """A namespace command failed (carries argv, status and output)."""


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float = 30,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=dict(env) if env is not None else None,
        check=False,
    )
    if check and proc.returncode != 0:
        raise NetnsError(
            f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc


def run_prefix() -> str:
    """A short random prefix for this run's namespace and link names."""
    return "ov" + secrets.token_hex(3)


@dataclass(eq=False)
class Namespace:
    """One network namespace (created with ``ip netns add``)."""

    name: str

    def create(self) -> None:
        """Create the namespace and bring its loopback up."""
        _run(["ip", "netns", "add", self.name])
        self.ip("link", "set", "lo", "up")

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``argv`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *(os.fspath(a) for a in argv)]

    def run(
        self,
        *argv: str | os.PathLike[str],
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return _run(self.argv(argv), check=check, timeout=timeout, input=input, env=env)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n NAME ARGS``."""
        return _run(["ip", "-n", self.name, *args], check=check)

    def set_sysctls(self, pairs: Mapping[str, str]) -> None:
        """Set sysctls given by their dotted names."""
        self.run("sysctl", "-qw", *(f"{k}={v}" for k, v in pairs.items()))

    def addresses(self, dev: str) -> list[str]:
        """The IPv4 addresses (without prefix) configured on ``dev``."""
        out = self.ip("-4", "-o", "addr", "show", "dev", dev).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]

    def ping(self, dest: str, *, source: str | None = None, count: int = 2) -> bool:
        """True when ``dest`` answers ``count`` pings (source address optional)."""
        argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2"]
        if source:
            argv += ["-I", source]
        return self.run(*argv, dest, check=False, timeout=20).returncode == 0

    def pids(self) -> list[int]:
        """PIDs of every process whose network namespace is this one."""
        out = _run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def kill_all(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL, every process left inside this namespace.

        Every such process was started by this harness (the namespace name is
        unique to this run), so this never touches anything else.
        """
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def delete(self) -> None:
        """Kill what runs inside and remove the namespace (idempotent)."""
        if not Path("/run/netns", self.name).exists():
            return
        self.kill_all()
        _run(["ip", "netns", "del", self.name], check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass(eq=False)
class RoadWarrior:
    """A client namespace on the WAN side."""

    ns: Namespace
    dev: str
    address: str
    label: str = ""

    def move_wan_address(self, new: str, prefix: int = 24) -> None:
        """Replace the client's WAN address (what a phone does moving Wi-Fi -> LTE).

        The new address is added before the old one is removed so that
        charon sees a usable address at every moment and reacts with a
        MOBIKE update rather than a teardown.
        """
        self.ns.ip("addr", "add", f"{new}/{prefix}", "dev", self.dev)
        self.ns.ip("addr", "del", f"{self.address}/{prefix}", "dev", self.dev)
        self.address = new


@dataclass(eq=False)
class Topology:
    """Router + LAN host + WAN bridge, with road warriors added on demand."""

    prefix: str = field(default_factory=run_prefix)
    router_wan: str = str(ROUTER_WAN)
    router_lan: str = str(ROUTER_LAN)
    lan_host_addr: str = str(LAN_HOST)
    lan_net: str = str(LAN_NET)
    namespaces: list[Namespace] = field(default_factory=list)
    roadwarriors: list[RoadWarrior] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wan = Namespace(f"{self.prefix}-wan")
        self.router = Namespace(f"{self.prefix}-router")
        self.lan_host = Namespace(f"{self.prefix}-lanhost")
        self._next_host = 11

    def up(self) -> Topology:
        """Create the namespaces and links; returns self. Cleans up on failure."""
        if _STOPPED:
            raise KeyboardInterrupt("the run was interrupted: no new namespaces")
        _LIVE.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _ns(self, ns: Namespace) -> Namespace:
        self.namespaces.append(ns)
        ns.create()
        return ns

    def _build(self) -> None:
        p = self.prefix
        wan, router, lan = self._ns(self.wan), self._ns(self.router), self._ns(self.lan_host)
        wan.ip("link", "add", "br0", "type", "bridge")
        wan.ip("link", "set", "br0", "up")
        # Router WAN port: veth router:wan0 <-> wan:rtr (bridge port).
        _veth(router, "wan0", wan, f"{p}r"[:15])
        wan.ip("link", "set", f"{p}r"[:15], "master", "br0", "up")
        router.ip("addr", "add", f"{self.router_wan}/24", "dev", "wan0")
        router.ip("link", "set", "wan0", "up")
        # Router LAN port: veth router:lan0 <-> lan-host:eth0.
        _veth(router, "lan0", lan, "eth0")
        prefixlen = ipaddress.IPv4Network(self.lan_net).prefixlen
        router.ip("addr", "add", f"{self.router_lan}/{prefixlen}", "dev", "lan0")
        router.ip("link", "set", "lan0", "up")
        lan.ip("addr", "add", f"{self.lan_host_addr}/{prefixlen}", "dev", "eth0")
        lan.ip("link", "set", "eth0", "up")
        # The LAN host knows only its router, like any host behind OpenWrt.
        lan.ip("route", "add", "default", "via", self.router_lan)
        router.set_sysctls(
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
            }
        )

    def add_roadwarrior(self, label: str) -> RoadWarrior:
        """A new client namespace with one WAN address in 192.0.2.0/24."""
        n = self._next_host
        self._next_host += 1
        ns = self._ns(Namespace(f"{self.prefix}-rw{n}"))
        port = f"{self.prefix}c{n}"[:15]
        _veth(ns, "wan0", self.wan, port)
        self.wan.ip("link", "set", port, "master", "br0", "up")
        address = str(WAN_NET.network_address + n)
        ns.ip("addr", "add", f"{address}/24", "dev", "wan0")
        ns.ip("link", "set", "wan0", "up")
        ns.set_sysctls(
            {
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
                # Removing the primary address must not take the new
                # (secondary) one with it when a client moves (MOBIKE test).
                "net.ipv4.conf.wan0.promote_secondaries": "1",
            }
        )
        rw = RoadWarrior(ns=ns, dev="wan0", address=address, label=label)
        self.roadwarriors.append(rw)
        return rw

    def next_wan_address(self) -> str:
        """A free WAN address (for moving a client)."""
        n = self._next_host + 100
        self._next_host += 1
        return str(WAN_NET.network_address + n)

    def close(self) -> None:
        """Remove every namespace of this topology and what runs inside (idempotent)."""
        # Clients and router first so their daemons stop before the links vanish.
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces.clear()
        _LIVE.discard(self)


def _veth(a: Namespace, a_name: str, b: Namespace, b_name: str) -> None:
    _run(
        [
            "ip", "link", "add", a_name, "netns", a.name,
            "type", "veth", "peer", "name", b_name, "netns", b.name,
        ]
    )  # fmt: skip


@atexit.register
def sweep_all() -> None:
    """Close every live topology (daemons inside included); for exit and signal paths."""
    global _STOPPED
    _STOPPED = True
    for topo in list(_LIVE):
        with contextlib.suppress(Exception):
            topo.close()
