"""`status`: what a live router runs and who is connected, for people and for monitoring.

Per router, in two SSH round trips: the board and firmware release
(``ubus call system board``), our flash marker, the firmware's baked
build-info (is it ours, and is it the last build in ``dist``?), the last
push, strongSwan (running, loaded connections, IKE SAs with the users'
virtual IPs: ``swanctl --list-sas`` or ``ipsec statusall`` on legacy-style
routers) and the expiry of the server certificate, the CA and the CRL found
on the router. Routers are queried concurrently; an unreachable one is
reported as failed and the others still answer (batch exit codes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from owrt_vpn.routers import batch
from owrt_vpn.routers import probe as remote
from owrt_vpn.routers.dist import DIGEST_KEYS
from owrt_vpn.routers.inventory import RouterTarget
from owrt_vpn.routers.job import Job, JobOptions, JobReport, release_text, run_batch
from owrt_vpn.routers.state import (
    IkeSa,
    cert_facts,
    check_section,
    crl_facts,
    run_sections,
    statusall_sas,
    swanctl_sas,
    who,
)
from owrt_vpn.site.model import Site

CERT_WARN_DAYS = 30
CRL_WARN_DAYS = 7


@dataclass(frozen=True)
class StatusOptions(JobOptions):
    """How to query (the CLI's options)."""

    jobs: int = 8
    command_timeout: float = 60.0


class Stage(StrEnum):
    """Where a router's query is."""

    QUEUED = "queued"
    CONNECTING = "connecting"
    QUERYING = "querying"
    DONE = "done"


class Status(StrEnum):
    """How a router's query ended."""

    OK = "ok"
    REFUSED = "refused"  # its host key does not match (nothing was asked)
    FAILED = "failed"  # unreachable, not an OpenWrt router, a state command failed


@dataclass
class RouterStatus(JobReport):
    """One router's state (JSON-ready through :meth:`to_json`)."""

    stage: Stage | str = Stage.QUEUED
    facts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    STATUS: ClassVar[type[StrEnum]] = Status
    OK: ClassVar[frozenset[str]] = frozenset({Status.OK})
    AGAIN: ClassVar[str] = "run status again"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "name": self.name,
            "router": self.router,
            "address": self.address,
            "status": str(self.status),
            "ok": self.ok,
            "message": self.message,
            "hint": self.hint,
            **self.facts,
            "warnings": self.warnings,
        }


Progress = Callable[[RouterStatus], None]


def status_batch(
    site: Site,
    targets: Sequence[RouterTarget],
    options: StatusOptions,
    progress: Progress | None = None,
) -> list[RouterStatus]:
    """Query ``targets`` concurrently; one :class:`RouterStatus` per target, in order."""
    reports = [RouterStatus(t.name, t.router.name, str(t.ssh)) for t in targets]

    def work(i: int, job: Job) -> Callable[[], None]:
        def steps() -> None:
            query(site, targets[i], options, reports[i], job)
            reports[i].status, reports[i].stage = Status.OK, Stage.DONE

        return steps

    run_batch(reports, work, options.jobs, progress, "status")
    return reports


def batch_exit_code(reports: Sequence[RouterStatus]) -> int:
    """0 when every router answered, 1 when none did, else 4."""
    return batch.exit_code([r.ok for r in reports])


def last_build(build_dir: Path) -> dict[str, Any] | None:
    """The build-info of the router's last build in dist (None when there is none)."""
    try:
        data = json.loads((build_dir / "build-info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def same_build(baked: dict[str, Any] | None, built: dict[str, Any] | None) -> bool | None:
    """True when the firmware's baked build-info is the dist build's (None: cannot tell)."""
    if baked is None or built is None:
        return None
    return _strip(baked) == _strip(built)


def _strip(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in DIGEST_KEYS}


def query(site: Site, target: RouterTarget, opts: StatusOptions, r: RouterStatus, job: Job) -> None:
    """Fill ``r`` with the router's state (raises OwrtVpnError when it cannot be asked,
    or when a state command fails while strongSwan runs)."""
    ssh = opts.client(target.ssh)
    job.stage(Stage.CONNECTING)
    facts = remote.first_probe(ssh, opts.command_timeout, job.lock)
    job.stage(Stage.QUERYING)
    baked = facts.baked_build_info
    built = last_build(target.build_dir)
    style = str((baked or {}).get("config_style") or "swanctl")
    if style not in ("swanctl", "ipsec"):
        style = "swanctl"
    paths = remote.installed_pki_paths(style, target.router.name)
    commands = {
        "running": "pidof charon >/dev/null && echo yes",
        "pushed": f"cat {remote.PUSH_MARKER} 2>/dev/null",
        "cert": f"cat {paths['cert']} 2>/dev/null",
        "ca": f"cat {paths['ca']} 2>/dev/null",
        "crl": f"cat {paths['crl']} 2>/dev/null",
    }
    if style == "ipsec":
        commands["statusall"] = "ipsec statusall 2>&1"
    else:
        commands["conns"] = "swanctl --list-conns 2>&1"
        commands["sas"] = "swanctl --list-sas --pretty 2>&1"
    sec = run_sections(ssh, commands, opts.command_timeout)
    running = sec["running"].text.strip() == "yes"
    if running:
        # With charon running, a failed listing is a failure to report, not
        # "0 connected" (push treats the same failure as fatal).
        for name in ("statusall",) if style == "ipsec" else ("conns", "sas"):
            check_section(sec[name], commands[name])
    if style == "ipsec":
        text = sec["statusall"].text
        conns, sas = sorted(remote.listed_conns(text, "ipsec")), statusall_sas(text)
    else:
        conns = sorted(remote.listed_conns(sec["conns"].text, "swanctl"))
        sas = swanctl_sas(sec["sas"].text)
    r.facts = {
        "board_name": facts.board_name,
        "firmware": facts.release,
        "ours": baked is not None,
        "last_build": _build_summary(target.build_dir, built, baked),
        "marker": facts.marker,
        "pushed": _json_or_none(sec["pushed"].text),
        "strongswan": {"style": style, "running": running, "connections": conns},
        "users": [_user(sa, site) for sa in sas],
        "certificates": {
            "server": _facts(cert_facts, sec["cert"].text),
            "ca": _facts(cert_facts, sec["ca"].text),
            "crl": _facts(crl_facts, sec["crl"].text),
        },
    }
    r.warnings = _warnings(r.facts, running, conns)
    n_users = sum(1 for u in r.facts["users"] if u["state"] == "ESTABLISHED")
    release = release_text(facts.release)
    r.message = f"{release}, {len(conns)} connection(s) loaded, {n_users} connected"


def _facts(fn: Callable[[bytes], Any], text: str) -> dict[str, Any] | None:
    if "-----BEGIN" not in text:
        return None
    facts = fn(text.encode())
    return facts.to_json() if facts is not None else None


def _json_or_none(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _build_summary(
    build_dir: Path, built: dict[str, Any] | None, baked: dict[str, Any] | None
) -> dict[str, Any] | None:
    if built is None:
        return {"dir": str(build_dir), "found": False, "matches": None}
    rel = built.get("release")
    version = rel.get("version") if isinstance(rel, dict) else rel
    revision = rel.get("revision") if isinstance(rel, dict) else built.get("revision")
    return {
        "dir": str(build_dir),
        "found": True,
        "release": {"version": version, "revision": revision},
        "matches": same_build(baked, built),
    }


def _user(sa: IkeSa, site: Site) -> dict[str, Any]:
    peer = who(sa, site.name, site.settings.shared_identity)
    return {
        "peer": peer.label(),
        "user": peer.user,
        "device": peer.device,
        "kind": peer.kind,
        **sa.to_json(),
    }


def _warnings(f: dict[str, Any], running: bool, conns: list[str]) -> list[str]:
    out = []
    if not f["ours"]:
        out.append(f"not owrt-vpn firmware ({remote.BAKED_BUILD_INFO} missing)")
    lb = f["last_build"]
    if lb and lb["found"] and lb["matches"] is False:
        out.append("the firmware is not the last build in dist: owrt-vpn flash updates it")
    if not running:
        out.append("strongSwan (charon) is not running")
    elif not conns:
        out.append("no VPN connections are loaded")
    certs = f["certificates"]
    for key, label in (("server", "server certificate"), ("ca", "CA certificate")):
        c = certs[key]
        if c is not None and c["days_left"] < CERT_WARN_DAYS:
            state = "expired" if c["days_left"] < 0 else f"expires in {c['days_left']} days"
            out.append(f"the {label} {state} ({c['not_after']})")
    crl = certs["crl"]
    if crl is not None and crl["days_left"] is not None and crl["days_left"] < CRL_WARN_DAYS:
        out.append(
            f"the CRL's next update is {crl['next_update']}: sign it again "
            "(owrt-vpn pki renew --crl) and push"
        )
    return out


def human(reports: Sequence[RouterStatus]) -> str:
    """The status of every router as text."""
    lines: list[str] = []
    for r in reports:
        lines.append(f"{r.name} ({r.address}): {r.status}: {r.message}")
        if not r.ok:
            if r.hint:
                lines.append(f"  hint: {r.hint}")
            continue
        f = r.facts
        lb = f["last_build"]
        if lb and lb["found"]:
            match = {True: "yes", False: "NO", None: "unknown"}[lb["matches"]]
            lines.append(
                f"  last build in dist: {release_text(lb['release'])}, running it: {match}"
            )
        else:
            lines.append("  last build in dist: none")
        if f["marker"]:
            m = f["marker"]
            lines.append(f"  flashed: {m.get('image')} at {m.get('flashed_at')}")
        if f["pushed"]:
            lines.append(f"  pushed: {f['pushed'].get('pushed_at')}")
        ss = f["strongswan"]
        state = "running" if ss["running"] else "NOT running"
        lines.append(f"  strongSwan ({ss['style']}): {state}, {len(ss['connections'])} loaded")
        for u in f["users"]:
            vips = ", ".join(u["virtual_ips"]) or "no virtual IP"
            lines.append(
                f"  connected: {u['peer']} [{u['remote_id']}] {vips} from {u['remote_host']} "
                f"({u['state']}, {_ago(u['established_seconds'])})"
            )
        for key, label in (("server", "server cert"), ("ca", "CA"), ("crl", "CRL")):
            c = f["certificates"][key]
            if c is None:
                continue
            if key == "crl":
                lines.append(
                    f"  {label}: {c['revoked']} revoked, next update {c['next_update']} "
                    f"({c['days_left']} days)"
                )
            else:
                lines.append(f"  {label}: until {c['not_after']} ({c['days_left']} days)")
        lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
