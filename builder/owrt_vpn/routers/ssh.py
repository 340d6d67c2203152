"""SSH access to routers through the OpenSSH client binaries.

Why the OpenSSH client and not paramiko: it is already on every machine that
manages routers, it honours the user's ``~/.ssh/config`` (jump hosts,
agents, hardware keys), and its host key checking is the one users know and
trust. OpenWrt runs dropbear, which has no sftp server, so uploads use the
legacy scp protocol (``scp -O``), which dropbear's scp end speaks.

Every call runs with ``BatchMode=yes`` (never a password prompt),
``StrictHostKeyChecking=yes`` (``accept-new`` only when the caller asked to
trust new keys; a *changed* key is refused either way) and a connect timeout,
through :func:`owrt_vpn.run.run`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from owrt_vpn.errors import OwrtVpnError, RouterError
from owrt_vpn.run import run

# ssh exits 255 for its own errors; a remote command's status is passed through.
SSH_ERROR = 255

_HOST_KEY_MARKERS = (
    "Host key verification failed",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
)


class SshError(RouterError):
    """The router could not be reached or the SSH session broke."""


class HostKeyError(SshError):
    """The router's host key is unknown or differs from known_hosts."""


class SshTimeout(SshError):
    """A command (or upload) did not finish in time."""


class RemoteCommandError(RouterError):
    """A command on the router exited with a failure status."""

    def __init__(self, command: str, returncode: int, output: str) -> None:
        self.command = command
        self.returncode = returncode
        self.output = output
        last = output.strip().splitlines()[-1] if output.strip() else ""
        super().__init__(
            f"`{command}` failed on the router (status {returncode})"
            + (f": {last}" if last else "")
        )


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in."""

    host: str
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None
    known_hosts: Path | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")


@dataclass(frozen=True)
class RemoteResult:
    """A finished remote command."""

    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        """stdout decoded (invalid bytes replaced)."""
        return self.stdout.decode(errors="replace")


def quote(argv: Sequence[str]) -> str:
    """A remote shell command line from ``argv`` (POSIX quoting, fine for ash and bash)."""
    return " ".join(shlex.quote(a) for a in argv)


class SshClient:
    """Runs commands on and uploads files to one router.

    ``accept_new_host_keys`` trusts (and records in known_hosts) the key of a
    host never seen before; a changed key is always refused.
    ``known_hosts`` overrides the target's file (used after a reset flash,
    when the router comes back with a new host key).
    """

    def __init__(
        self,
        target: SshTarget,
        *,
        accept_new_host_keys: bool = False,
        connect_timeout: float = 10.0,
        known_hosts: Path | None = None,
    ) -> None:
        self.target = target
        self.accept_new = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.known_hosts = known_hosts or target.known_hosts

    def _options(self) -> list[str]:
        opts = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "accept-new" if self.accept_new else "yes",
            "ConnectTimeout": str(max(1, round(self.connect_timeout))),
            # Notice a router that went away (reboot) instead of hanging on it.
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "3",
            "LogLevel": "ERROR",
        }
        if self.known_hosts is not None:
            opts["UserKnownHostsFile"] = str(self.known_hosts)
            opts["GlobalKnownHostsFile"] = "/dev/null"
        if self.target.identity_file is not None:
            opts["IdentitiesOnly"] = "yes"
        out: list[str] = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        if self.target.identity_file is not None:
            out += ["-i", str(self.target.identity_file)]
        return out

    def run(
        self,
        command: str,
        *,
        input: bytes | None = None,
        timeout: float | None = 120.0,
        check: bool = True,
    ) -> RemoteResult:
        """Run ``command`` (a remote shell line, see :func:`quote`) and return its result.

        Raises :class:`HostKeyError` or :class:`SshError` when SSH itself
        fails, :class:`SshTimeout` after ``timeout`` seconds, and with
        ``check`` :class:`RemoteCommandError` for a failing command.
        """
        argv = [
            "ssh", *self._options(), "-T", "-p", str(self.target.port),
            "-l", self.target.user, "--", self.target.host, command,
        ]  # fmt: skip
        try:
            # input=b"" rather than None: ssh must never read our terminal.
            proc = run(
                argv, input=input if input is not None else b"", timeout=timeout, check=False
            )
        except OwrtVpnError as exc:
            if isinstance(exc.__cause__, subprocess.TimeoutExpired):
                raise SshTimeout(
                    f"{self.target}: `{command}` did not finish within {timeout:g} s"
                ) from None
            raise
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode == SSH_ERROR:
            self._raise_ssh_error(stderr)
        result = RemoteResult(proc.returncode, proc.stdout, stderr)
        if check and proc.returncode != 0:
            raise RemoteCommandError(command, proc.returncode, stderr or result.text)
        return result

    def upload(self, local: Path, remote_path: str, *, timeout: float | None = 600.0) -> None:
        """Copy ``local`` to ``remote_path`` with the legacy scp protocol (dropbear has no sftp)."""
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        # No -q: it also silences ssh's own errors, and a changed host key would be
        # only "lost connection". Without a terminal scp shows no progress meter.
        argv = [
            "scp", "-O", *self._options(), "-P", str(self.target.port),
            "--", str(local), f"{self.target.user}@{host}:{remote_path}",
        ]  # fmt: skip
        try:
            proc = run(argv, input=b"", timeout=timeout, check=False)
        except OwrtVpnError as exc:
            if isinstance(exc.__cause__, subprocess.TimeoutExpired):
                raise SshTimeout(
                    f"{self.target}: upload of {local.name} did not finish within {timeout:g} s"
                ) from None
            raise
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 and "unknown option -- O" in stderr:
            # OpenSSH before 9.0 has no -O: its scp speaks the legacy protocol anyway.
            proc = run([a for a in argv if a != "-O"], input=b"", timeout=timeout, check=False)
            stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            if any(m in stderr for m in _HOST_KEY_MARKERS) or proc.returncode == SSH_ERROR:
                self._raise_ssh_error(stderr)
            raise SshError(f"{self.target}: upload of {local.name} failed: {_last_line(stderr)}")

    def _raise_ssh_error(self, stderr: str) -> None:
        if any(m in stderr for m in _HOST_KEY_MARKERS):
            changed = "CHANGED" in stderr
            where = self.known_hosts or "~/.ssh/known_hosts"
            if changed:
                raise HostKeyError(
                    f"{self.target}: the host key differs from the one in {where}",
                    hint="if the router was reset or replaced, check the new key out of band "
                    "and update known_hosts (ssh-keygen -R); never ignore this on a live network",
                )
            raise HostKeyError(
                f"{self.target}: host key not known (not in {where})",
                hint="add the router's key to known_hosts after checking its fingerprint, "
                "or pass --accept-new-host-keys to trust keys seen for the first time",
            )
        raise SshError(f"cannot reach {self.target}: {_last_line(stderr) or 'ssh failed'}")


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""
