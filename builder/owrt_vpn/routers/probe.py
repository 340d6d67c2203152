"""Probing a live router over SSH: its state, its return after a reboot, our markers.

The shared layer under flash, push, status and ``doctor --router``; it also
names where our files live on a router (installer, markers, PKI files).

Every answer is parsed defensively (a missing section or bad JSON is "not
known", never a crash), and every wait is bounded by a deadline and can be
cancelled.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from owrt_vpn.errors import FlashError, OwrtVpnError
from owrt_vpn.render import overlay
from owrt_vpn.routers.ssh import HostKeyError, SshClient, SshError, quote

MARKER_DIR = "/etc/owrt-vpn"  # kept across keep-settings upgrades (lib/upgrade/keep.d/owrt-vpn)
MARKER = f"{MARKER_DIR}/flashed.json"
BAKED_BUILD_INFO = "/usr/share/owrt-vpn/build-info.json"
INSTALLER = "/usr/share/owrt-vpn/install"  # the persistent installer (push runs it)
PUSH_MARKER = f"{MARKER_DIR}/pushed.json"  # what push installed last
BOOT_ID = "/proc/sys/kernel/random/boot_id"
_SECTION = "@@owrt-vpn@@"


class Cancelled(FlashError):
    """The user interrupted the batch."""


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` once the batch was interrupted."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("interrupted", hint="run flash again: finished routers are skipped")


@dataclass(frozen=True)
class Facts:
    """What one probe of a router found."""

    board: dict[str, Any]
    mem_available: int | None
    marker: dict[str, Any] | None
    baked_build_info: dict[str, Any] | None
    boot_id: str

    @property
    def board_name(self) -> str:
        """``board_name`` as ``ubus call system board`` reports it."""
        return str(self.board.get("board_name", ""))

    @property
    def release(self) -> dict[str, str]:
        """The running release: ``{"version": ..., "revision": ...}``."""
        rel = self.board.get("release")
        rel = rel if isinstance(rel, dict) else {}
        return {"version": str(rel.get("version", "")), "revision": str(rel.get("revision", ""))}


def probe(ssh: SshClient, timeout: float) -> Facts:
    """Board, memory, marker, baked build-info and boot id, in one round trip."""
    parts = ["ubus call system board"]
    for name, command in (
        ("meminfo", "cat /proc/meminfo"),
        ("marker", f"cat {MARKER} 2>/dev/null"),
        ("build-info", f"cat {BAKED_BUILD_INFO} 2>/dev/null"),
        ("boot-id", f"cat {BOOT_ID} 2>/dev/null"),
    ):
        # The leading echo ends a last line without a newline (JSON files).
        parts += [f"echo; echo {_SECTION} {name}", command]
    res = ssh.run("; ".join([*parts, "true"]), timeout=timeout)
    sections: dict[str, list[str]] = {"board": []}
    current = "board"
    for line in res.text.splitlines():
        if line.startswith(_SECTION + " "):
            current = line.split(" ", 1)[1].strip()
            sections[current] = []
        else:
            sections[current].append(line)
    board = _json(sections["board"])
    if not isinstance(board, dict) or "board_name" not in board:
        err = res.stderr.strip().splitlines()
        raise FlashError(
            "`ubus call system board` gave no board description" + (f": {err[-1]}" if err else ""),
            hint="is this an OpenWrt router?",
        )
    marker = _json(sections.get("marker", []))
    baked = _json(sections.get("build-info", []))
    return Facts(
        board=board,
        mem_available=mem_available(sections.get("meminfo", [])),
        marker=marker if isinstance(marker, dict) else None,
        baked_build_info=baked if isinstance(baked, dict) else None,
        boot_id="".join(sections.get("boot-id", [])).strip(),
    )


def first_probe(ssh: SshClient, timeout: float, lock: threading.Lock) -> Facts:
    """:func:`probe` as a batch's first contact with a router.

    With ``accept_new_host_keys`` the ssh process appends the router's key to
    known_hosts, and concurrent appends to one file could mix lines: those
    first contacts take ``lock`` one at a time.
    """
    if not ssh.accept_new:
        return probe(ssh, timeout)
    with lock:
        return probe(ssh, timeout)


def _json(lines: list[str]) -> Any:
    text = "\n".join(lines)
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def mem_available(lines: list[str]) -> int | None:
    """MemAvailable in bytes (kernels since 3.14 have it; before, MemFree is the safe floor)."""
    values = {}
    for line in lines:
        m = re.match(r"^(\w+):\s+(\d+)\s*kB", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    return values.get("MemAvailable", values.get("MemFree"))


def wait_for_boot(
    ssh: SshClient,
    old_boot_id: str,
    deadline: float,
    *,
    poll: float,
    command_timeout: float,
    cancel: threading.Event | None = None,
    limit: float | None = None,
) -> None:
    """Wait until the router answers SSH from a *new* boot (its kernel boot id changed).

    Right after sysupgrade the old system may still answer for a moment; the
    boot id tells it from the new one. Without a boot id, down-then-up will do.
    """
    saw_down = False
    last = ""
    while time.monotonic() < deadline:
        check_cancel(cancel)
        try:
            res = ssh.run(f"cat {BOOT_ID} 2>/dev/null; true", timeout=command_timeout)
            boot_id = res.text.strip()
            if boot_id and old_boot_id and boot_id != old_boot_id:
                return
            if not old_boot_id and saw_down:
                return
            # It answered, from the old boot: any earlier error is stale now.
            last = "it answers, still from the same boot (boot id unchanged)"
        except HostKeyError:
            raise
        except SshError as exc:
            saw_down, last = True, exc.message
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    # The last attempt tells "still down" from "back, but refuses our key"
    # from "never went down".
    raise FlashError(
        "the router did not come back "
        + (f"within {limit:g} s " if limit is not None else "in time ")
        + "after sysupgrade"
        + (f" (last attempt: {last})" if last else ""),
        hint="it may still be writing flash or booting: check it, then run flash again "
        "(a router already running the image is skipped)",
    )


def listed_conns(text: str, style: str) -> set[str]:
    """Connection names in ``swanctl --list-conns`` or ``ipsec statusall`` output."""
    if style == "ipsec":
        # names are right-aligned to a width: long ones start at column 0
        return set(re.findall(r"^\s*(\S+?):\s+\S+\.\.\.\S+\s+IKEv", text, re.M))
    return set(re.findall(r"^(\S+): IKEv[12]", text, re.M))


def wait_for_conns(
    ssh: SshClient,
    expected: tuple[str, ...],
    style: str,
    deadline: float,
    *,
    poll: float,
    command_timeout: float,
    cancel: threading.Event | None = None,
) -> None:
    """Wait until strongSwan has loaded ``expected`` (at least one connection when empty)."""
    command = "ipsec statusall" if style == "ipsec" else "swanctl --list-conns"
    while True:
        check_cancel(cancel)
        res = ssh.run(command + " 2>&1", timeout=command_timeout, check=False)
        loaded = listed_conns(res.text, style)
        missing = [c for c in expected if c not in loaded]
        if loaded and not missing:
            return
        if time.monotonic() >= deadline:
            break
        # charon starts late in the boot: give it until the deadline
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    what = f"missing: {', '.join(missing)}" if loaded else "none loaded"
    raise FlashError(
        f"the VPN connections are not loaded after the flash (`{command}`: {what})",
        hint="check the strongSwan log on the router (logread -e charon)",
    )


def write_marker(ssh: SshClient, marker: dict[str, Any], timeout: float) -> None:
    """Write the marker atomically (temp file, then rename)."""
    tmp = f"{MARKER_DIR}/.flashed.json.new"
    ssh.run(
        f"umask 022 && mkdir -p {MARKER_DIR} && cat > {tmp} && mv -f {tmp} {MARKER}",
        input=json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n",
        timeout=timeout,
    )


def remove(ssh: SshClient, path: str, timeout: float) -> None:
    """Delete ``path`` on the router (best effort: frees RAM after a refused image)."""
    with contextlib.suppress(OwrtVpnError):
        ssh.run(quote(["rm", "-f", path]), timeout=timeout, check=False)


def installed_pki_paths(style: str, router: str) -> dict[str, str]:
    """Where the installer put the router's public PKI files."""
    if style == "ipsec":
        base = "/etc/ipsec.d"
        return {
            "cert": f"{base}/certs/{router}.crt",
            "ca": f"{base}/cacerts/{overlay.CA_FILE}",
            "crl": f"{base}/crls/{overlay.CRL_FILE}",
        }
    base = "/etc/swanctl"
    return {
        "cert": f"{base}/x509/{router}.crt",
        "ca": f"{base}/x509ca/{overlay.CA_FILE}",
        "crl": f"{base}/x509crl/{overlay.CRL_FILE}",
    }
