"""Live test routers for `push`, `status` and `doctor`: SSH routers running a REAL charon.

Builds on :mod:`sshrouter` (dropbear in its own network, mount and pid
namespaces). A :class:`LiveLab` turns such a router into one that runs our
firmware's VPN for real:

- the ``swanctl`` stand-in is removed from the router's shim directory, so
  the router's ``swanctl`` is Debian's real one; ``/etc/init.d/swanctl``
  starts Debian's ``charon`` (the process is called ``charon``, as on
  OpenWrt, so the installer's ``pidof charon`` sees it) inside the router's
  namespaces, and ``reload`` runs ``swanctl --load-all --noprompt`` like
  OpenWrt's init script (with the one-shot fault ``rekey-after-reload`` the
  router's SSH host key changes right after: see sshrouter.py);
- the router's ``/etc/strongswan.conf`` is test plumbing only (plugin list
  from our package list mapped to Debian's, userspace ESP, log file); the VPN
  settings come from the files our installer put in place (the rendered
  ``/etc/strongswan.d/owrt-vpn.conf`` and ``/etc/swanctl/conf.d``);
- ``uci`` is OpenWrt's real one (built from the pinned sources,
  tests/openwrt/userland.py), copied into the shim directory; the router
  starts from OpenWrt's default /etc/config/firewall (from the firewall4
  checkout) and dhcp;
- "flashing" copies the image's ``usr/share/owrt-vpn`` (installer, VPN file
  set, build-info) into the router and runs the image's uci-defaults script
  over SSH the way base-files does at the first boot (sourced by busybox
  ash in a subshell, deleted on success, then ``uci commit``);
- the router's network namespace gets a WAN port (192.0.2.1/24) on a bridge
  in its own namespace, where road-warrior clients (real strongSwan, as in
  the handshake tests) join.

:meth:`LiveLab.close` stops every client and removes the WAN and client
namespaces; the routers themselves (and their charons: they live in the
routers' pid namespaces) go with :meth:`SshLab.close`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openwrt.router import FRESH_DHCP
from openwrt.userland import Userland

from .charon import Charon, ClientProfile, InitiateResult, LoadList, debian_load_list, load_client
from .charon import strongswan_conf as plumbing_conf
from .netns import Namespace
from .sshrouter import SshLab, TestRouter, openwrt_release

ROUTER_WAN = "192.0.2.1"
BUILDER = Path(__file__).resolve().parents[2] / "builder"

# What the test's road warriors load: full strongSwan clients (stand-ins for
# phones and laptops, not subject to our package list).
CLIENT_PLUGINS = [
    "random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "revocation",
    "constraints", "pubkey", "curve25519", "kdf", "attr", "kernel-netlink",
    "socket-default", "vici", "eap-identity", "eap-mschapv2", "eap-tls", "md4",
]  # fmt: skip

# OpenWrt's /etc/init.d/swanctl, reduced to what the installer uses; charon
# is Debian's classic daemon, started detached inside the router.
INIT_SWANCTL = """#!/bin/sh
# Test router: /etc/init.d/swanctl (start, stop, reload = swanctl --load-all).
case "$1" in
start)
	pidof charon >/dev/null && exit 0
	rm -f /var/run/charon.vici /var/run/charon.pid
	setsid /usr/lib/ipsec/charon >/srv/charon.out 2>&1 </dev/null &
	i=0
	until swanctl --stats >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -gt 200 ] && { echo "charon did not start" >&2; exit 1; }
		sleep 0.05
	done
	swanctl --load-all --noprompt
	;;
stop)
	pid=$(pidof charon) && kill $pid
	i=0
	while pidof charon >/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
	;;
reload)
	swanctl --load-all --noprompt || exit
	# one-shot fault (sshrouter.py): the router's host key changes right after
	if [ -e /srv/fault-rekey-after-reload ]; then
		rm -f /srv/fault-rekey-after-reload
		/usr/local/sbin/rekey
	fi
	;;
*)
	echo "usage: $0 start|stop|reload" >&2
	exit 1
	;;
esac
"""

# base-files' uci_apply_defaults for one script (see tests/openwrt/router.py)
FIRST_BOOT = (
    "cd /etc/uci-defaults && busybox ash -c '( . ./90-owrt-vpn ) && rm -f 90-owrt-vpn; uci commit'"
)


def sha256(data: bytes) -> str:
    """Hex digest."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Client:
    """A road warrior dialling one live router."""

    ns: Namespace
    charon: Charon
    profile: ClientProfile
    last: InitiateResult | None = None

    def connect(self) -> bool:
        """Initiate the profile's connection; True when established."""
        self.last = self.charon.initiate(self.profile.name, self.profile.name, timeout=10)
        return self.last.ok

    def established(self) -> list[dict[str, Any]]:
        """The client's established IKE SAs for its profile."""
        return [
            s
            for s in self.charon.sas()
            if s["name"] == self.profile.name and s.get("state") == "ESTABLISHED"
        ]

    def vip(self) -> str:
        """The virtual IP of the established SA."""
        sas = self.established()
        assert sas, f"{self.profile.name}: no established SA"
        vips = sas[0].get("local-vips") or []
        assert vips, f"{self.profile.name}: no virtual IP"
        return str(vips[0])


@dataclass
class LiveRouter:
    """One SSH test router with a WAN side and (after :meth:`flash`) our VPN running."""

    lab: LiveLab
    router: TestRouter
    index: int
    wan: Namespace
    clients: list[Client] = field(default_factory=list)

    @property
    def state(self) -> Path:
        """The router's state directory on the host."""
        return self.router.state

    @property
    def charon_log(self) -> Path:
        """charon's file log (the router's /run, seen from the host)."""
        return self.state / "run/charon.log"

    def ssh(self, command: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` on the router as root (test plumbing); fails loudly."""
        proc = self.lab.ssh_raw(self.router, command, input=input)
        if proc.returncode != 0:
            raise AssertionError(
                f"{self.router.spec.name}: `{command}` exited {proc.returncode}\n"
                f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def put_tree(self, tree: Path, dest: str = "/") -> None:
        """Copy ``tree`` (modes kept) into the router's file system at ``dest``."""
        stage = self.state / "tmp" / f"setup-{os.getpid()}-{time.monotonic_ns()}"
        shutil.copytree(tree, stage, symlinks=True)
        rel = f"/tmp/{stage.name}"
        self.ssh(f"mkdir -p {dest} && cp -a {rel}/. {dest} && rm -rf {rel}")

    def put_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write one file on the router."""
        raw = data.encode() if isinstance(data, str) else data
        self.ssh(
            f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode:o} '{path}'",
            input=raw,
        )

    def flash(self, overlay_root: Path, build_info: dict[str, Any], *, load: LoadList) -> None:
        """Install a rendered image tree as a flash would, then start strongSwan.

        ``overlay_root`` is a rendered overlay (``owrt_vpn.render.overlay.render``);
        ``build_info`` is baked as ``usr/share/owrt-vpn/build-info.json``.
        """
        release = build_info["release"]
        self.put_file(
            "/etc/openwrt_release", openwrt_release(release["version"], release["revision"])
        )
        self.put_tree(overlay_root / "usr/share/owrt-vpn", "/usr/share/owrt-vpn")
        self.put_file(
            "/usr/share/owrt-vpn/build-info.json",
            json.dumps(build_info, sort_keys=True, separators=(",", ":")) + "\n",
        )
        uci_defaults = (overlay_root / "etc/uci-defaults/90-owrt-vpn").read_bytes()
        self.put_file("/etc/uci-defaults/90-owrt-vpn", uci_defaults, 0o755)
        # The first boot after the flash: uci-defaults scripts, then the services.
        self.ssh(FIRST_BOOT)
        self.set_plugins(load)
        self.ssh("/etc/init.d/swanctl start")

    def set_plugins(self, load: LoadList) -> None:
        """Write the router's strongswan.conf (plumbing) for the plugin list ``load``."""
        conf = plumbing_conf(
            Path("/var/run"),
            load,
            log_name="router",
            includes=[Path("/etc/strongswan.d/owrt-vpn.conf")],
        )
        self.put_file("/etc/strongswan.conf", conf)

    def restart_charon(self) -> None:
        """Stop and start strongSwan (after :meth:`set_plugins`)."""
        self.ssh("/etc/init.d/swanctl stop; /etc/init.d/swanctl start")

    def wrap_swanctl(self, cases: str) -> Path:
        """Put a swanctl wrapper first on the router's PATH: ``cases`` are shell ``case``
        branches on its arguments (``*--list-sas*) exit 7 ;;``); anything else runs the
        real swanctl. Delete the returned file to undo."""
        shim = self.state / "shims/swanctl"
        shim.unlink(missing_ok=True)
        real = self.ssh("command -v swanctl").stdout.decode().strip()
        shim.write_text(f'#!/bin/sh\ncase "$*" in\n{cases}\nesac\nexec {real} "$@"\n')
        shim.chmod(0o755)
        return shim

    def file_hashes(self) -> dict[str, str]:
        """sha256 of every file the VPN touches on the router (by path)."""
        dirs = "/etc/swanctl /etc/strongswan.d /etc/owrt-vpn /etc/config /usr/share/nftables.d"
        out = self.ssh(
            f'find {dirs} -type f 2>/dev/null | sort | while read -r f; do sha256sum "$f"; done'
        ).stdout.decode()
        result = {}
        for line in out.splitlines():
            digest, _, path = line.partition("  ")
            result[path] = digest
        return result

    def read(self, path: str) -> bytes:
        """A file's bytes on the router."""
        return self.ssh(f"cat '{path}'").stdout

    def add_client(self, profile: ClientProfile) -> Client:
        """A new road-warrior namespace on this router's WAN running a client charon."""
        n = len(self.clients) + 11
        ns = Namespace(f"{self.lab.ssh_lab.prefix}w{self.index}c{n}")
        self.lab.namespaces.append(ns)
        ns.create()
        port = f"{self.lab.ssh_lab.prefix}{self.index}c{n}"[:15]
        _veth(ns.name, "wan0", self.wan.name, port)
        self.wan.ip("link", "set", port, "master", "br0", "up")
        ns.ip("addr", "add", f"192.0.2.{n}/24", "dev", "wan0")
        ns.ip("link", "set", "wan0", "up")
        load = debian_load_list(CLIENT_PLUGINS, extra=["resolve"])
        charon = Charon(ns, self.lab.workdir / "clients" / ns.name, load, profile.name)
        client = Client(ns, charon, profile)
        self.clients.append(client)
        charon.start()
        load_client(charon, profile)
        return client


class LiveLab:
    """Live routers on top of an :class:`SshLab`; close() removes WANs and clients."""

    def __init__(self, ssh_lab: SshLab, workdir: Path, openwrt: Userland) -> None:
        self.ssh_lab = ssh_lab
        self.workdir = workdir
        self.openwrt = openwrt
        self.routers: list[LiveRouter] = []
        self.namespaces: list[Namespace] = []
        atexit.register(self.close)  # an interrupted run still removes what it made

    def ssh_raw(
        self, router: TestRouter, command: str, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """``ssh root@router command`` from the management namespace."""
        known = self.workdir / "lab_known_hosts"
        known.write_text(self.ssh_lab.known_hosts())
        argv = [
            "ip", "netns", "exec", self.ssh_lab.mgmt, "ssh", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known}", "-i", str(self.ssh_lab.client_key),
            f"root@{router.address}", command,
        ]  # fmt: skip
        return subprocess.run(
            argv, input=input or b"", capture_output=True, timeout=60, check=False
        )

    def add_router(self, router: TestRouter) -> LiveRouter:
        """Make ``router`` (already booted) live: real swanctl and uci, WAN port, config."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        i = len(self.routers)
        shims = router.state / "shims"
        (shims / "swanctl").unlink(missing_ok=True)  # the real one from now on
        # The router sees its own /tmp and home: the userland cache may be
        # invisible inside it, the shim directory is not (/usr/local/sbin there).
        self.openwrt.install_uci(shims)
        wan = Namespace(f"{self.ssh_lab.prefix}w{i}")
        self.namespaces.append(wan)
        wan.create()
        wan.ip("link", "add", "br0", "type", "bridge")
        wan.ip("link", "set", "br0", "up")
        _veth(router.netns, "wan0", wan.name, "rtr")
        wan.ip("link", "set", "rtr", "master", "br0", "up")
        rns = Namespace(router.netns)
        rns.ip("addr", "add", f"{ROUTER_WAN}/24", "dev", "wan0")
        rns.ip("link", "set", "wan0", "up")
        live = LiveRouter(self, router, i, wan)
        self.routers.append(live)
        live.put_file("/etc/init.d/swanctl", INIT_SWANCTL, 0o755)
        fw4 = self.openwrt.firewall4("HEAD")
        live.put_file("/etc/config/firewall", (fw4 / "root/etc/config/firewall").read_text())
        live.put_file("/etc/config/dhcp", FRESH_DHCP)
        live.put_file("/etc/swanctl/swanctl.conf", "include conf.d/*.conf\n")
        # The host's Debian init scripts must not be run by the installer.
        live.ssh("rm -f /etc/init.d/ipsec /etc/init.d/firewall /etc/init.d/dnsmasq")
        return live

    def close(self) -> None:
        """Stop the clients and delete the WAN/client namespaces (idempotent)."""
        for r in self.routers:
            for c in r.clients:
                with contextlib.suppress(Exception):
                    c.charon.stop()
            r.clients.clear()
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces.clear()


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    subprocess.run(
        ["ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
         "peer", "name", name_b, "netns", ns_b],
        check=True, capture_output=True,
    )  # fmt: skip


def router_log_since(router: LiveRouter, mark: int) -> str:
    """The router's charon log after byte ``mark``."""
    path = router.charon_log
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(mark)
        return fh.read().decode(errors="replace")


def log_mark(router: LiveRouter) -> int:
    """The current size of the router's charon log."""
    return router.charon_log.stat().st_size if router.charon_log.exists() else 0


def openwrt_plugins(plugins: Sequence[str], strongswan: str) -> LoadList:
    """Debian's load list for the OpenWrt plugins our package list names."""
    return debian_load_list(plugins, strongswan=strongswan)
