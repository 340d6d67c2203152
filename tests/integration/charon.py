"""Real strongSwan daemons for integration tests, one per network namespace.

Two flavours, both hermetic (own strongswan.conf, sockets, log; nothing
under /etc or /run of the host is read or written):

- :class:`Charon`: Debian's ``charon-systemd`` (runs fine without systemd and
  writes no pid file) driven over VICI. Used for every road-warrior client and
  for the router in the swanctl config style, where the *rendered*
  ``etc/swanctl`` tree is loaded with the real ``swanctl --load-all``.
- :class:`StarterCharon`: Debian's ``ipsec`` starter (strongswan-starter)
  reading a rendered ``ipsec.conf``/``ipsec.secrets``/``ipsec.d``, the legacy
  style of OpenWrt 19.07-21.02. The starter and the ``stroke`` plugin have
  compiled-in paths (``/etc/ipsec.d/*``, ``/var/run/*.pid``), so the daemon
  runs in a private mount namespace (``ip netns exec`` already creates one)
  where the rendered files are bind-mounted over ``/etc/ipsec.*`` and a
  private directory over ``/run``. The stroke socket is moved into the work
  directory through strongswan.conf so the test can query it from outside.

The test's strongswan.conf is plumbing only: ``load_modular = no`` with the
plugins our OpenWrt package list implies (mapped to Debian's plugins by
:data:`DEBIAN_PLUGIN_MAP`), the test-only ``kernel-libipsec`` (these kernels
have no ESP; userspace ESP works), the sockets, the log file and the
client's ``resolve`` file.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vici

from .netns import Namespace

PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")

# --------------------------------------------------------------------------
# OpenWrt plugin package -> what provides that plugin in Debian's strongSwan.
#
# ``packages.charon_plugins(site, router)`` names the plugins our OpenWrt
# package list installs (``strongswan-mod-<name>``). On Debian (strongSwan
# 5.9.8) most exist under the same name (libstrongswan-<name>.so); this table
# lists ONLY the differences. A plugin that is neither here nor in
# /usr/lib/ipsec/plugins fails the test loudly instead of being dropped.
#
#   OpenWrt            Debian 12 replacement       why
#   md4                openssl + load_legacy=yes   Debian builds no md4 plugin; OpenSSL 3
#                                                  has MD4 only in its legacy provider
#                                                  (EAP-MSCHAPv2: NT password hash)
#   des                openssl + load_legacy=yes   no des plugin in Debian; DES (MSCHAPv2
#                                                  response) from OpenSSL's legacy provider
#   uci                (nothing)                   OpenWrt-only UCI config backend, unused
#   socket-dynamic     socket-default              not built by Debian; same role
#   kernel-pfkey       kernel-netlink              not built by Debian
#   wolfssl, mbedtls   openssl                     no such crypto backends in Debian
#   sha3               openssl                     no sha3 plugin in Debian 12
#   (core, < 5.9.6)    kdf                         strongSwan before 5.9.6 (OpenWrt 19.07-
#                                                  22.03) has prf+ in libstrongswan itself, so
#                                                  those releases ship no kdf plugin; 5.9.8
#                                                  needs the kdf plugin (its openssl plugin
#                                                  answers "KDF_PRF with PRF_HMAC_SHA2_256
#                                                  not supported")
# ``openssl_legacy`` marks entries that need ``openssl { load_legacy = yes }``
# (Debian's default, stated explicitly so the test does not rely on it).
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginMapping:
    """Replacement for one OpenWrt plugin (or core feature) on Debian."""

    debian: tuple[str, ...]
    openssl_legacy: bool = False
    why: str = ""
    # For core features: the strongSwan version that moved them into a plugin.
    core_before: str | None = None


CORE_PRF_PLUS = "(core prf+)"

DEBIAN_PLUGIN_MAP: Mapping[str, PluginMapping] = {
    "md4": PluginMapping(("openssl",), True, "MD4 from OpenSSL's legacy provider"),
    "des": PluginMapping(("openssl",), True, "DES from OpenSSL's legacy provider"),
    "uci": PluginMapping((), False, "OpenWrt-only UCI config backend, unused by our overlay"),
    "socket-dynamic": PluginMapping(("socket-default",), False, "not built by Debian"),
    "kernel-pfkey": PluginMapping(("kernel-netlink",), False, "not built by Debian"),
    "wolfssl": PluginMapping(("openssl",), False, "no wolfSSL backend in Debian"),
    "mbedtls": PluginMapping(("openssl",), False, "no mbedTLS backend in Debian"),
    "sha3": PluginMapping(("openssl",), False, "no sha3 plugin in Debian 12"),
    CORE_PRF_PLUS: PluginMapping(("kdf",), False, "prf+ left the core in 5.9.6", "5.9.6"),
}

# Test-only plugins: userspace ESP (no kernel ESP here), inserted before
# kernel-netlink so that it handles IPsec SAs and netlink handles the rest.
TEST_ONLY_PLUGINS = ("kernel-libipsec",)


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


class PluginMapError(AssertionError):
    """An OpenWrt plugin has no Debian counterpart and no entry in the table."""


@dataclass(frozen=True)
class LoadList:
    """What the test's strongswan.conf loads."""

    plugins: tuple[str, ...]
    openssl_legacy: bool


def debian_load_list(
    openwrt_plugins: Iterable[str],
    *,
    strongswan: str | None = None,
    extra: Sequence[str] = (),
) -> LoadList:
    """Map OpenWrt plugin names to Debian's and add the test-only userspace ESP.

    ``strongswan`` is the router's strongSwan version (core features of older
    versions are mapped to the Debian plugins that provide them now).
    ``extra`` adds client-side plugins (``resolve`` ...) for the road warriors.
    Order is kept (first occurrence wins); ``kernel-libipsec`` goes right
    before ``kernel-netlink``.
    """
    out: list[str] = []
    legacy = False
    core = [
        name
        for name, m in DEBIAN_PLUGIN_MAP.items()
        if m.core_before and strongswan and _version(strongswan) < _version(m.core_before)
    ]
    for name in [*openwrt_plugins, *core, *extra]:
        mapped = DEBIAN_PLUGIN_MAP.get(name)
        if mapped is not None:
            legacy = legacy or mapped.openssl_legacy
            targets: Sequence[str] = mapped.debian
        elif (PLUGIN_DIR / f"libstrongswan-{name}.so").exists():
            targets = (name,)
        else:
            raise PluginMapError(
                f"OpenWrt plugin {name!r} has no Debian plugin and no entry in "
                "DEBIAN_PLUGIN_MAP (tests/integration/charon.py)"
            )
        for t in targets:
            if t not in out:
                out.append(t)
    if "kernel-netlink" not in out:
        raise PluginMapError("no kernel-netlink in the plugin list: charon could not manage routes")
    at = out.index("kernel-netlink")
    for t in TEST_ONLY_PLUGINS:
        if t not in out:
            out.insert(at, t)
            at += 1
    return LoadList(tuple(out), legacy)


# --------------------------------------------------------------------------
# strongswan.conf


def strongswan_conf(
    workdir: Path,
    load: LoadList,
    *,
    log_name: str,
    includes: Sequence[Path] = (),
    plugin_includes: Sequence[Path] = (),
) -> str:
    """The test's strongswan.conf: plumbing around the rendered includes.

    ``includes`` are top-level files of the rendered ``etc/strongswan.d``,
    ``plugin_includes`` those of ``etc/strongswan.d/charon`` (included inside
    ``charon.plugins`` as OpenWrt's strongswan.conf does). They come first so
    the plumbing below (plugin list, sockets, log) wins on a clash. One key
    per line: this syntax has no ``;`` separator.
    """
    lines: list[str] = ["# test plumbing; the VPN settings come from the rendered files"]
    lines += [f"include {p}" for p in includes]
    lines += ["charon {"]
    if plugin_includes:
        lines += ["  plugins {"] + [f"    include {p}" for p in plugin_includes] + ["  }"]
    lines += [
        "  load_modular = no",
        f"  load = {' '.join(load.plugins)}",
        "  retransmit_tries = 2",
        "  retransmit_timeout = 1.0",
        "  plugins {",
        "    vici {",
        f"      socket = unix://{workdir}/charon.vici",
        "    }",
        "    stroke {",
        f"      socket = unix://{workdir}/charon.ctl",
        "    }",
        "    kernel-netlink {",
        "      fwmark = !0x42",
        "    }",
        "    socket-default {",
        "      fwmark = 0x42",
        "    }",
        "    kernel-libipsec {",
        "      allow_peer_ts = yes",
        "    }",
        "    resolve {",
        f"      file = {workdir}/resolv.conf",
        "    }",
    ]
    if load.openssl_legacy:
        lines += ["    openssl {", "      load_legacy = yes", "    }"]
    lines += [
        "  }",
        "  filelog {",
        f"    {log_name} {{",
        f"      path = {workdir}/charon.log",
        "      time_format = %H:%M:%S",
        "      ike_name = yes",
        "      append = no",
        "      flush_line = yes",
        "      default = 1",
        "      ike = 2",
        "      cfg = 2",
        "      tls = 2",
        "    }",
        "  }",
        "  syslog {",
        "    daemon {",
        "      default = -1",
        "    }",
        "  }",
        "}",
        "charon-systemd {",
        "  journal {",
        "    default = -1",
        "  }",
        "}",
        "starter {",
        "  load_warning = no",
        "}",
        "swanctl {",
        "  load = pem pkcs1 pkcs8 pkcs12 x509 openssl random",
        "}",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# daemons


class DaemonError(AssertionError):
    """A daemon did not start, or a control command failed unexpectedly."""


def _text(value: Any) -> Any:
    """VICI answers hold bytes; turn them into str recursively."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


@dataclass
class InitiateResult:
    """Outcome of an ``initiate`` and the daemon's log lines for it."""

    ok: bool
    log: list[str]
    error: str = ""


@dataclass(eq=False)
class Charon:
    """One ``charon-systemd`` in a namespace, with its own config, sockets and log."""

    ns: Namespace
    workdir: Path
    load: LoadList
    name: str = "charon"
    includes: Sequence[Path] = ()
    plugin_includes: Sequence[Path] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def conf_path(self) -> Path:
        """This daemon's strongswan.conf."""
        return self.workdir / "strongswan.conf"

    @property
    def swanctl_dir(self) -> Path:
        """SWANCTL_DIR of this daemon."""
        return self.workdir / "swanctl"

    @property
    def vici_path(self) -> Path:
        """VICI socket path."""
        return self.workdir / "charon.vici"

    @property
    def log_path(self) -> Path:
        """charon's file log."""
        return self.workdir / "charon.log"

    @property
    def resolv_path(self) -> Path:
        """Where the ``resolve`` plugin writes DNS servers it received."""
        return self.workdir / "resolv.conf"

    def env(self) -> dict[str, str]:
        """Environment for the daemon and its control tools."""
        env = dict(os.environ)
        env["STRONGSWAN_CONF"] = str(self.conf_path)
        env["SWANCTL_DIR"] = str(self.swanctl_dir)
        return env

    def prepare(self) -> None:
        """Write strongswan.conf and the swanctl directory skeleton."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("x509", "x509ca", "x509crl", "private", "pubkey", "rsa", "ecdsa",
                    "pkcs8", "pkcs12", "conf.d"):  # fmt: skip
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            strongswan_conf(
                self.workdir,
                self.load,
                log_name=self.name,
                includes=self.includes,
                plugin_includes=self.plugin_includes,
            )
        )

    def _daemon_argv(self) -> list[str]:
        return ["/usr/sbin/charon-systemd"]

    def start(self, timeout: float = 10.0) -> Charon:
        """Start the daemon and wait until its control socket answers."""
        if not self.conf_path.exists():
            self.prepare()
        for stale in (self.vici_path, self.workdir / "charon.ctl"):
            stale.unlink(missing_ok=True)
        out = (self.workdir / "daemon.out").open("wb")
        # New session: a Ctrl-C on pytest's terminal must not kill the daemon
        # before the fixture's teardown has stopped it in order.
        self.proc = subprocess.Popen(
            self.ns.argv(self._daemon_argv()),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise DaemonError(f"{self.name} did not come up:\n{self.diagnostics()}")

    def _ready(self) -> bool:
        if not self.vici_path.exists():
            return False
        try:
            self.session().stats()
        except (OSError, vici.exception.SessionException):
            return False
        return True

    def stop(self, grace: float = 5.0) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def diagnostics(self) -> str:
        """The daemon's stdout and log tail, for failure messages."""
        parts = []
        for p in (self.workdir / "daemon.out", self.log_path):
            if p.exists():
                parts.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    # -- control --------------------------------------------------------

    def session(self) -> vici.Session:
        """A fresh VICI session (cheap; one per operation keeps state simple)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(self.vici_path))
        return vici.Session(sock)

    def swanctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``swanctl ARGS --uri <our socket>`` (the command comes first)."""
        argv = ["swanctl", *args, "--uri", f"unix://{self.vici_path}"]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), timeout=60, check=False
        )
        if check and proc.returncode != 0:
            raise DaemonError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def load_all(self) -> str:
        """``swanctl --load-all`` from our SWANCTL_DIR; returns swanctl's output."""
        conf = self.swanctl_dir / "swanctl.conf"
        return self.swanctl("--load-all", "--noprompt", "--file", str(conf)).stdout

    def initiate(self, ike: str, child: str | None = None, timeout: float = 15) -> InitiateResult:
        """Initiate ``child`` of connection ``ike``; never raises on refusal."""
        req: dict[str, Any] = {"ike": ike, "timeout": str(int(timeout * 1000))}
        if child:
            req["child"] = child
        lines: list[str] = []
        try:
            for event in self.session().initiate(req):
                lines.append(_text(event).get("msg", ""))
        except vici.exception.CommandException as exc:
            return InitiateResult(False, lines, str(exc))
        return InitiateResult(True, lines)

    def terminate(self, ike: str, timeout: float = 10) -> None:
        """Terminate IKE SAs of connection ``ike`` (no error if none is up)."""
        with contextlib.suppress(vici.exception.CommandException):
            for _ in self.session().terminate({"ike": ike, "timeout": str(int(timeout * 1000))}):
                pass

    def sas(self) -> list[dict[str, Any]]:
        """The IKE SAs as VICI reports them, each with its name under ``name``."""
        out = []
        for entry in self.session().list_sas():
            for name, sa in _text(entry).items():
                out.append({"name": name, **sa})
        return out

    def remote_vips(self) -> set[str]:
        """Virtual IPs this daemon handed out to peers of established SAs."""
        return {
            vip
            for sa in self.sas()
            if sa.get("state") == "ESTABLISHED"
            for vip in sa.get("remote-vips", [])
        }

    # -- logs -----------------------------------------------------------

    def log_text(self) -> str:
        """Everything charon logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_mark(self) -> int:
        """A position in the log; pass it to :meth:`log_since`."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        """Log text written after ``mark``."""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def wait_log(self, pattern: str, mark: int = 0, timeout: float = 5.0) -> re.Match[str]:
        """Wait until a log line after ``mark`` matches ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(mark) if self.log_path.exists() else ""
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} log has no line matching {pattern!r}; "
                    f"log since mark:\n{text[-4000:]}"
                )
            time.sleep(0.05)


@dataclass(frozen=True)
class ClientProfile:
    """A road-warrior connection the test configures on a client charon.

    ``auth`` is one of our vocabulary's methods; ``pubkey+eap-mschapv2`` is a
    certificate round followed by an EAP-MSCHAPv2 round. Loaded over VICI as
    raw values, so passwords need no escaping on the client side.
    """

    name: str
    auth: str
    local_id: str
    remote_addr: str
    remote_id: str
    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    eap_id: str | None = None
    eap_secret: str | None = None
    remote_ts: tuple[str, ...] = ("0.0.0.0/0",)

    def vici_conn(self) -> dict[str, Any]:
        """The ``load-conn`` message for this profile."""
        rounds: list[dict[str, Any]] = []
        if self.auth in ("pubkey", "pubkey+eap-mschapv2"):
            rounds.append({"auth": "pubkey", "id": self.local_id, "certs": [self.cert_pem]})
        if self.auth == "eap-tls":
            rounds.append({"auth": "eap-tls", "id": self.local_id, "certs": [self.cert_pem]})
        if self.auth == "eap-mschapv2":
            rnd = {"auth": "eap-mschapv2", "eap_id": self.eap_id}
            if self.local_id:  # else charon presents its IP address, as Windows does
                rnd["id"] = self.local_id
            rounds.append(rnd)
        if self.auth == "pubkey+eap-mschapv2":
            # The router pins this round to the user and sends no EAP-Identity
            # request: the client answers MSCHAPv2 with its round-2 IKE
            # identity, so that is the user name (as our bundles configure).
            rounds.append({"auth": "eap-mschapv2", "id": self.eap_id, "eap_id": self.eap_id})
        if not rounds:
            raise ValueError(f"unknown auth {self.auth!r}")
        conn: dict[str, Any] = {
            "version": "2",
            "remote_addrs": [self.remote_addr],
            "vips": ["0.0.0.0"],
            # Fake NAT detection: both sides then use UDP-encapsulated ESP,
            # which kernel-libipsec handles in userspace.
            "encap": "yes",
            "mobike": "yes",
            "remote": {"auth": "pubkey", "id": self.remote_id, "cacerts": [self.ca_pem]},
            "children": {self.name: {"remote_ts": list(self.remote_ts)}},
        }
        for i, r in enumerate(rounds, 1):
            conn[f"local-{i}"] = r
        return {self.name: conn}


def load_client(client: Charon, profile: ClientProfile) -> None:
    """Load ``profile``'s key, EAP secret and connection into a client charon."""
    s = client.session()
    if profile.key_pem is not None:
        s.load_key({"type": "any", "data": profile.key_pem})
    if profile.eap_secret is not None and profile.eap_id is not None:
        s.load_shared(
            {
                "id": f"eap-{profile.name}",
                "type": "EAP",
                "data": profile.eap_secret.encode(),
                "owners": [profile.eap_id],
            }
        )
    s.load_conn(profile.vici_conn())


@dataclass(eq=False)
class StarterCharon(Charon):
    """The legacy flavour: ``ipsec`` starter + charon + stroke, reading rendered ipsec.* files.

    ``etc`` is the rendered tree's ``etc`` directory holding ``ipsec.conf``,
    ``ipsec.secrets`` and ``ipsec.d/``; they are bind-mounted over the
    compiled-in paths inside the daemon's private mount namespace.
    """

    etc: Path = Path()

    def _daemon_argv(self) -> list[str]:
        run_dir = self.workdir / "run"
        run_dir.mkdir(exist_ok=True)
        # Arguments are passed as "$@", never interpolated into the script.
        script = (
            'set -e; run="$1"; etc="$2"; shift 2; '
            'mount --bind "$run" /run; '
            'mount --bind "$etc/ipsec.conf" /etc/ipsec.conf; '
            'mount --bind "$etc/ipsec.secrets" /etc/ipsec.secrets; '
            'mount --bind "$etc/ipsec.d" /etc/ipsec.d; '
            'exec "$@"'
        )
        return [
            "sh", "-c", script, "starter-wrapper", str(run_dir), str(self.etc),
            "/usr/lib/ipsec/starter", "--nofork", "--conf", "/etc/ipsec.conf",
        ]  # fmt: skip

    def _ready(self) -> bool:
        if not (self.workdir / "charon.ctl").exists():
            return False
        proc = self.stroke("statusall", check=False)
        # The starter loads the connections after charon is up.
        return proc.returncode == 0 and "Connections:" in proc.stdout

    def stroke(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the stroke client against our socket (taken from our strongswan.conf)."""
        argv = ["/usr/lib/ipsec/stroke", *args]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), timeout=30, check=False
        )
        if check and proc.returncode != 0:
            raise DaemonError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def session(self) -> vici.Session:
        """The legacy flavour has no VICI (stroke only)."""
        raise DaemonError("the starter flavour is controlled over stroke, not VICI")

    def load_all(self) -> str:
        """The starter loads everything itself at start."""
        return ""

    def remote_vips(self) -> set[str]:
        """Virtual IPs of established CHILD_SAs, parsed from ``statusall``."""
        out = self.stroke("statusall").stdout
        # "rw{3}:   0.0.0.0/0 === 10.78.0.1/32"
        return set(re.findall(r"\{\d+\}:\s+\S+(?: \S+)* === (\d+\.\d+\.\d+\.\d+)/32", out))

    def status(self) -> str:
        """``statusall`` output."""
        return self.stroke("statusall").stdout


@contextlib.contextmanager
def running(daemon: Charon) -> Iterator[Charon]:
    """Start ``daemon`` and always stop it afterwards."""
    try:
        yield daemon.start()
    finally:
        daemon.stop()
