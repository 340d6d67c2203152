"""SSH test routers: real dropbear servers, each in its own network, mount and pid namespace.

A :class:`SshLab` builds a management network (a bridge in the "mgmt"
namespace, 198.51.100.1/24) and plugs test routers into it
(198.51.100.10+i). Each router runs this file as its "init" (pid 1 of its own
pid namespace, inside ``ip netns exec`` + ``unshare --mount``), which

- gives the router private views of /etc, /usr/share (overlays on the host's),
  /tmp, /run, root's home, /proc/meminfo and the boot id, so routers share no files
  with each other or the host; the router's "flash" is its state directory,
  bind-mounted at /srv;
- puts the stand-ins from ``router_shims/`` (ubus, sysupgrade, swanctl, scp,
  logger) first on dropbear's PATH (/usr/local/sbin); root's keys are in
  /etc/dropbear/authorized_keys, as on OpenWrt;
- starts Debian's dropbear (no sftp, like OpenWrt) and, when the sysupgrade
  stand-in asks for it, "reboots": kills every process of the router (the SSH
  sessions drop), waits ``reboot_delay``, applies the uploaded image (a
  squashfs: its /etc/openwrt_release, /usr/share/owrt-vpn, its uci-defaults
  scripts, which run at boot like on OpenWrt and install the VPN files) and
  starts dropbear again with a new boot id; "charon" loads the connections
  found in /etc/swanctl at each boot.

Faults are files in the state directory (``fault-<name>``), so a test can set
them before or while it runs: ``corrupt-upload`` (the scp end damages the
received file), ``never-return`` (stays down after the upgrade),
``boot-old-firmware`` (reboots into the old firmware, as after a failed write),
``no-reboot`` (drops every session and answers again a moment later, from the
same boot: it never rebooted), ``new-host-key`` (comes back from the upgrade
with a new SSH host key although settings were kept), ``rekey-after-ubus``
(one-shot: right after answering ``ubus call system board`` the router's
host key changes). The ``rekey`` command on a router makes init switch to a
new host key: the listener restarts, sessions already open go on, and the
command returns once the new key is served. Every upload, sysupgrade call,
upgrade, boot and host key change is recorded with its time in
``events.jsonl``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIMS = Path(__file__).resolve().parent / "router_shims"
MGMT_GATEWAY = "198.51.100.1"
STORE = Path("/srv")  # where a router sees its own state directory

OLD_RELEASE = "23.05.5"
OLD_REVISION = "r24106-10cc5fcd00"


def sh(*argv: str | os.PathLike[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a harness command and fail loudly with its output."""
    args = [os.fspath(a) for a in argv]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def make_client_key(path: Path) -> None:
    """An SSH key pair for the flasher (``path`` and ``path.pub``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flasher@test", "-f", path)


def openwrt_release(version: str, revision: str, target: str = "bcm53xx/generic") -> str:
    """The text of /etc/openwrt_release for a release."""
    return (
        "DISTRIB_ID='OpenWrt'\n"
        f"DISTRIB_RELEASE='{version}'\n"
        f"DISTRIB_REVISION='{revision}'\n"
        f"DISTRIB_TARGET='{target}'\n"
        "DISTRIB_ARCH='arm_cortex-a9'\n"
        f"DISTRIB_DESCRIPTION='OpenWrt {version} {revision}'\n"
        "DISTRIB_TAINTS=''\n"
    )


@dataclass(frozen=True)
class RouterSpec:
    """What a test router is before the flash."""

    name: str
    board_name: str = "phicomm,k3"
    model: str = "Phicomm K3"
    release: str = OLD_RELEASE
    revision: str = OLD_REVISION
    target: str = "bcm53xx/generic"
    mem_available_kb: int = 200_000
    reboot_delay: float = 1.0
    faults: frozenset[str] = field(default_factory=frozenset)


@dataclass
class TestRouter:
    """A running test router, as the test sees it from the host."""

    __test__ = False  # not a pytest test class

    spec: RouterSpec
    address: str
    netns: str
    state: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts_line(self) -> str:
        """The router's line for an OpenSSH known_hosts file."""
        return f"{self.address} {self.host_key}\n"

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The recorded events (optionally only those of one kind), oldest first."""
        path = self.state / "events.jsonl"
        if not path.exists():
            return []
        out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in out if kind is None or e["event"] == kind]

    def etc_file(self, rel: str) -> Path:
        """Where the file the router wrote at /etc/<rel> lives on the host."""
        return self.state / "etc-upper" / rel

    def set_fault(self, name: str) -> None:
        """Switch a fault on while the router runs."""
        (self.state / f"fault-{name}").touch()

    def reread_host_key(self) -> str:
        """The router's host key now (after ``rekey`` or a reset), also kept in ``host_key``."""
        self.host_key = _public_host_key(self.state)
        return self.host_key


class SshLab:
    """A management network with test routers; close() removes every namespace and daemon."""

    def __init__(self, workdir: Path, client_key: Path | None = None) -> None:
        self.workdir = workdir
        self.prefix = "owt" + secrets.token_hex(3)
        self.mgmt = f"{self.prefix}m"
        self.routers: list[TestRouter] = []
        self._netns: list[str] = []
        # The flasher's key: made here unless given (e.g. baked into a shared build).
        self.client_key = client_key or workdir / "client_key"

    def __enter__(self) -> SshLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the management namespace, its bridge and the client's SSH key."""
        atexit.register(self.close)  # an interrupted run still removes what it made
        self.workdir.mkdir(parents=True, exist_ok=True)
        sh("ip", "netns", "add", self.mgmt)
        self._netns.append(self.mgmt)
        sh("ip", "-n", self.mgmt, "link", "set", "lo", "up")
        sh("ip", "-n", self.mgmt, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.mgmt, "addr", "add", f"{MGMT_GATEWAY}/24", "dev", "br0")
        sh("ip", "-n", self.mgmt, "link", "set", "br0", "up")
        if not self.client_key.exists():
            make_client_key(self.client_key)

    def client_pubkey(self) -> str:
        """The flasher's public key line."""
        return self.client_key.with_suffix(".pub").read_text().strip()

    def add_router(self, spec: RouterSpec) -> TestRouter:
        """Create, boot and return a router (it answers SSH when this returns)."""
        i = len(self.routers)
        address = f"198.51.100.{10 + i}"
        netns = f"{self.prefix}r{i}"
        sh("ip", "netns", "add", netns)
        self._netns.append(netns)
        # veth created straight into the namespaces: no name clash in the host's.
        sh("ip", "-n", self.mgmt, "link", "add", f"v{i}", "type", "veth",
           "peer", "name", "eth0", "netns", netns)  # fmt: skip
        sh("ip", "-n", self.mgmt, "link", "set", f"v{i}", "master", "br0", "up")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", netns, "link", "set", "eth0", "up")

        state = self.workdir / "routers" / spec.name
        host_key = _prepare_state(state, spec, self.client_pubkey())
        router = TestRouter(spec=spec, address=address, netns=netns, state=state, host_key=host_key)
        self.routers.append(router)
        log = (state / "init.log").open("ab")
        router.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", netns,
                "unshare", "--mount", "--propagation", "private",
                "--pid", "--fork", "--kill-child", "--mount-proc",
                sys.executable, __file__, "init", os.fspath(state),
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while not router.events("boot"):
            if router.proc.poll() is not None or time.monotonic() > deadline:
                log_text = (state / "init.log").read_text()
                raise RuntimeError(f"test router {spec.name} did not boot:\n{log_text}")
            time.sleep(0.05)
        return router

    def known_hosts(self, routers: list[TestRouter] | None = None) -> str:
        """known_hosts text for ``routers`` (default: all)."""
        return "".join(r.known_hosts_line for r in (self.routers if routers is None else routers))

    def run_in_mgmt(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the management namespace (no os.setns in 3.11: ip netns exec)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.mgmt, *argv],
            capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False,
        )  # fmt: skip

    def ctrl_c_in_mgmt(
        self,
        argv: list[str],
        *,
        when: Callable[[], bool],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the management namespace and press Ctrl-C once ``when()``
        holds: SIGINT to its whole process group (ssh clients included), as a terminal does."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.mgmt, *argv], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while not when():
                if proc.poll() is not None:
                    out, err = proc.communicate()
                    raise AssertionError(f"exit {proc.returncode} before Ctrl-C:\n{out}{err}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no moment for Ctrl-C within {timeout:g} s")
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def ssh(self, router: TestRouter, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``router`` as root (test plumbing, e.g. to damage its state)."""
        known = self.workdir / "lab_known_hosts"
        known.write_text(self.known_hosts())
        return self.run_in_mgmt(
            ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}",
             "-i", str(self.client_key), f"root@{router.address}", command],
            timeout=30,
        )  # fmt: skip

    def close(self) -> None:
        """Kill every router (its whole pid namespace dies with it) and delete the namespaces."""
        for r in self.routers:
            if r.proc is not None and r.proc.poll() is None:
                # unshare --kill-child: SIGKILL to its child, the pid-1 "init",
                # takes every process of the router's pid namespace with it.
                r.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    r.proc.wait(timeout=10)
        for ns in reversed(self._netns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._netns.clear()


def _die_with_parent() -> None:
    """Even a SIGKILLed test run takes its routers along (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _prepare_state(state: Path, spec: RouterSpec, client_pubkey: str) -> str:
    """Lay out a router's state directory; returns its host public key line."""
    dirs = (
        "etc-upper",
        "etc-work",
        "share-upper",
        "share-work",
        "tmp",
        "home",
        "etc-upper/dropbear",
        "shims",
        "run",
    )
    for d in dirs:
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "home").chmod(0o700)
    # Like OpenWrt's dropbear, root's keys live in /etc/dropbear/authorized_keys
    # (a setting: gone after sysupgrade -n unless the image bakes keys).
    (state / "home/.ssh").symlink_to("/etc/dropbear")
    (state / "etc-upper/dropbear").chmod(0o700)
    (state / "etc-upper/dropbear/authorized_keys").write_text(client_pubkey + "\n")
    (state / "etc-upper/dropbear/authorized_keys").chmod(0o600)
    (state / "tmp").chmod(0o1777)
    release = openwrt_release(spec.release, spec.revision, spec.target)
    (state / "etc-upper/openwrt_release").write_text(release)
    # root's home is the router's own (the host's /root holds the Python we run).
    passwd = Path("/etc/passwd").read_text()
    home = re.sub(r"(?m)^(root:[^:]*:0:0:[^:]*:)[^:]*:", rf"\1{STORE}/home:", passwd)
    (state / "etc-upper/passwd").write_text(home)
    for shim in SHIMS.iterdir():
        shutil.copy2(shim, state / "shims" / shim.name)
        (state / "shims" / shim.name).chmod(0o755)
    (state / "meminfo").write_text(
        f"MemTotal:         {max(spec.mem_available_kb * 2, 65536)} kB\n"
        f"MemFree:          {spec.mem_available_kb} kB\n"
        f"MemAvailable:     {spec.mem_available_kb} kB\n"
        "Buffers:             0 kB\nCached:           1024 kB\n"
    )
    (state / "boot_id").write_text(str(uuid.uuid4()) + "\n")
    config = {"board_name": spec.board_name, "model": spec.model, "reboot_delay": spec.reboot_delay}
    (state / "config.json").write_text(json.dumps(config))
    for fault in spec.faults:
        (state / f"fault-{fault}").touch()
    _new_host_key(state)
    return _public_host_key(state)


def _public_host_key(state: Path) -> str:
    pub = sh("dropbearkey", "-y", "-f", state / "hostkey").stdout
    line = next(x for x in pub.splitlines() if x.startswith("ssh-"))
    return " ".join(line.split()[:2])


def _new_host_key(state: Path) -> None:
    (state / "hostkey").unlink(missing_ok=True)
    sh("dropbearkey", "-t", "ed25519", "-f", state / "hostkey")


# --------------------------------------------------------------------------
# the router's "init": runs as pid 1 inside the router's namespaces


class _Init:
    def __init__(self) -> None:
        self.config = json.loads((STORE / "config.json").read_text())
        self.dropbear: int | None = None

    def event(self, kind: str, **data: Any) -> None:
        with (STORE / "events.jsonl").open("a") as fh:
            fh.write(json.dumps({"t": time.time(), "event": kind, **data}) + "\n")

    def mount(self) -> None:
        s = os.fspath(STORE)
        overlay = ["mount", "-t", "overlay", "overlay", "-o"]
        for argv in (
            [*overlay, f"lowerdir=/etc,upperdir={s}/etc-upper,workdir={s}/etc-work", "/etc"],
            [*overlay, f"lowerdir=/usr/share,upperdir={s}/share-upper,workdir={s}/share-work",
             "/usr/share"],
            ["mount", "--bind", f"{s}/run", "/run"],
            ["mount", "--bind", f"{s}/shims", "/usr/local/sbin"],
            ["mount", "--bind", f"{s}/meminfo", "/proc/meminfo"],
            ["mount", "--bind", f"{s}/boot_id", "/proc/sys/kernel/random/boot_id"],
            ["mount", "--bind", f"{s}/tmp", "/tmp"],
        ):  # fmt: skip
            sh(*argv)

    def boot(self) -> None:
        (STORE / "boot_id").write_text(str(uuid.uuid4()) + "\n")  # same inode: it is bind-mounted
        Path("/tmp/sysinfo").mkdir(exist_ok=True)
        Path("/tmp/sysinfo/board_name").write_text(self.config["board_name"] + "\n")
        Path("/tmp/sysinfo/model").write_text(self.config["model"] + "\n")
        self.uci_defaults()
        conns = _swanctl_conns(Path("/etc/swanctl"))
        if conns:
            Path("/tmp/.charon").mkdir(exist_ok=True)
            Path("/tmp/.charon/conns").write_text("".join(c + "\n" for c in conns))
        self.start_dropbear()
        release = _read_release(Path("/etc/openwrt_release"))
        self.event(
            "boot", release=release.get("DISTRIB_RELEASE"), revision=release.get("DISTRIB_REVISION")
        )

    def start_dropbear(self) -> None:
        """Start the SSH server with the current host key; return once it accepts."""
        log = os.open(STORE / "dropbear.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        # -s: keys only; -j -k: no forwarding; -P: its pid file in the router's /run.
        self.dropbear = subprocess.Popen(
            ["dropbear", "-F", "-E", "-s", "-j", "-k", "-p", "22",
             "-r", f"{STORE}/hostkey", "-P", "/run/dropbear.pid"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
        ).pid  # fmt: skip
        os.close(log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", 22), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def rekey(self, request: Path) -> None:
        """A new host key from now on: only the listener restarts (as when its key
        file is replaced and the service restarted); open sessions go on."""
        _new_host_key(STORE)
        if self.dropbear is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.dropbear, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.dropbear, 0)
        self.start_dropbear()
        self.event("rekeyed")
        request.unlink()

    def kill_all(self) -> None:
        """Kill every process of the router but init, as a reboot does."""
        me = os.getpid()
        for _ in range(100):
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
            alive = [p for p in pids if not _is_zombie(p)]
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
            self.reap()
        self.reap()
        self.dropbear = None

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def upgrade(self, request: Path) -> None:
        lines = request.read_text().splitlines()
        image, keep = Path(lines[0]), lines[1] == "1"
        staged = STORE / "incoming.img"
        shutil.copyfile(image, staged)
        self.event("upgrade-start", image=image.name, keep=keep)
        self.kill_all()
        if (STORE / "fault-no-reboot").exists():
            # The sessions dropped, but the system never rebooted (same boot id).
            time.sleep(float(self.config["reboot_delay"]))
            staged.unlink()
            request.unlink(missing_ok=True)
            self.start_dropbear()
            self.event("back-same-boot")
            return
        for entry in Path("/tmp").iterdir():  # /tmp is RAM: gone after a reboot
            _remove(entry)
        if (STORE / "fault-never-return").exists():
            self.event("down-forever")
            while True:
                time.sleep(1)
        time.sleep(float(self.config["reboot_delay"]))
        if not (STORE / "fault-boot-old-firmware").exists():
            self.apply(staged, keep)
        if (STORE / "fault-new-host-key").exists():
            _new_host_key(STORE)
        staged.unlink()
        self.boot()

    def apply(self, image: Path, keep: bool) -> None:
        root = STORE / "newroot"
        shutil.rmtree(root, ignore_errors=True)
        sh("unsquashfs", "-q", "-n", "-d", root, image)
        if not keep:
            # sysupgrade -n: every setting goes (authorized keys too), and dropbear
            # makes a new host key; login then needs keys baked into the image.
            for entry in list((STORE / "etc-upper").iterdir()):
                if entry.name == "passwd":  # harness plumbing (root's home), not a setting
                    continue
                _remove(Path("/etc") / entry.name)
            _new_host_key(STORE)
        # What of the new root file system matters here: the release, what runs at
        # first boot (uci-defaults), baked dropbear files, and our /usr/share part.
        shutil.copyfile(root / "etc/openwrt_release", "/etc/openwrt_release")
        for sub in ("etc/uci-defaults", "etc/dropbear"):
            if (root / sub).is_dir():
                shutil.copytree(root / sub, Path("/") / sub, symlinks=True, dirs_exist_ok=True)
        ours = Path("/usr/share/owrt-vpn")
        if ours.exists():
            shutil.rmtree(ours)
        if (root / "usr/share/owrt-vpn").exists():
            shutil.copytree(root / "usr/share/owrt-vpn", ours, symlinks=True)
        shutil.rmtree(root)
        self.event("applied", keep=keep)

    def uci_defaults(self) -> None:
        """Run /etc/uci-defaults/* like OpenWrt's base-files (uci_apply_defaults).

        Each script is *sourced* by busybox ash in a subshell from its folder
        and deleted when that subshell exits 0; then ``uci commit`` (when the
        router has a uci).
        """
        d = Path("/etc/uci-defaults")
        for script in sorted(d.iterdir()) if d.is_dir() else []:
            proc = subprocess.run(
                ["busybox", "ash", "-c", '( . "./$1" )', "ash", script.name],
                cwd=d, capture_output=True, text=True, check=False,
            )  # fmt: skip
            self.event("uci-defaults", script=script.name, status=proc.returncode,
                       output=(proc.stdout + proc.stderr)[-2000:])  # fmt: skip
            if proc.returncode == 0:
                script.unlink()
        if shutil.which("uci"):
            subprocess.run(["uci", "commit"], capture_output=True, check=False)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.mount()
        self.boot()
        request = Path("/tmp/.sysupgrade-request")
        rekey = STORE / "rekey-request"
        while True:
            self.reap()
            if request.exists():
                self.upgrade(request)
            if rekey.exists():
                self.rekey(rekey)
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _read_release(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _swanctl_conns(etc_swanctl: Path) -> list[str]:
    """Names of the connections in swanctl.conf and conf.d/*.conf (what charon loads at boot)."""
    files = [etc_swanctl / "swanctl.conf", *sorted((etc_swanctl / "conf.d").glob("*.conf"))]
    names: list[str] = []
    for f in files:
        if not f.is_file():
            continue
        stack: list[str] = []
        for raw in f.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            while line:
                if line.startswith("}"):
                    stack.pop()
                    line = line[1:].strip()
                elif "{" in line and "=" not in line.split("{", 1)[0]:
                    name, line = (part.strip() for part in line.split("{", 1))
                    name = name.split(":", 1)[0].strip()  # "name : template {"
                    if stack == ["connections"]:
                        names.append(name)
                    stack.append(name)
                else:  # key = value, up to the end of the line or a closing brace
                    line = line[line.index("}") :] if "}" in line else ""
    return names


if __name__ == "__main__":
    if sys.argv[1:2] == ["init"]:
        os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        sh("mount", "--bind", sys.argv[2], os.fspath(STORE))
        _Init().run()
