"""Live updates of running routers: the site's current VPN state without a reflash.

For each router (up to ``jobs`` at a time; one failing router never stops
the others):

1. connect with host key checking and read the board, our marker and the
   firmware's baked build-info (:func:`owrt_vpn.routers.probe.probe`);
2. refuse a router whose firmware is not one of ours (no baked build-info or
   no installer, whoever flashed it), one built for another site/router,
   and a change that needs packages the firmware lacks ("rebuild and flash");
3. render the VPN file set for the firmware's release and style
   (:mod:`owrt_vpn.routers.push_set`, the same renderer a build uses) and compare
   it with the router's files by sha256: added / removed / changed, with a
   unified diff for non-secret text files;
4. stream the set (a tar with its own sha256sums) into a temporary
   directory on the router, check it there and run the image's persistent
   installer (``/usr/share/owrt-vpn/install DIR``), which puts the files in
   place, applies the UCI settings and reloads strongSwan;
5. check the connections are loaded, then terminate the established IKE SAs
   of peers the site no longer allows (revoked or removed devices, revoked
   EAP passwords). Devices on the opt-in shared iOS identity cannot be told
   apart by their SA: that is reported, not guessed;
6. record the push in ``/etc/owrt-vpn/pushed.json``.

``dry_run`` stops after step 3 (plus the SAs that would be terminated) and
changes nothing on the router.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from owrt_vpn import __version__
from owrt_vpn.errors import FlashError, OwrtVpnError, RouterError
from owrt_vpn.routers import batch, push_set
from owrt_vpn.routers import probe as remote
from owrt_vpn.routers.inventory import RouterTarget
from owrt_vpn.routers.job import Job, JobOptions, JobReport, Stop, release_text, run_batch
from owrt_vpn.routers.push_set import FileChange, VpnSet
from owrt_vpn.routers.sa_policy import SaPolicy
from owrt_vpn.routers.ssh import quote
from owrt_vpn.routers.state import (
    IkeSa,
    check_section,
    run_sections,
    statusall_sas,
    swanctl_sas,
    who,
)
from owrt_vpn.site.model import Router, Site

REBUILD_HINT = "rebuild and flash: owrt-vpn build, then owrt-vpn flash"


class Stage(StrEnum):
    """Where a router is in its push."""

    QUEUED = "queued"
    CONNECTING = "connecting"
    CHECKING = "checking"
    COMPARING = "comparing"
    INSTALLING = "installing"
    VERIFYING = "verifying"
    TERMINATING = "terminating revoked SAs"
    MARKING = "recording"
    DONE = "done"


class Status(StrEnum):
    """How a router's push ended."""

    PUSHED = "pushed"
    UNCHANGED = "unchanged"
    WOULD_PUSH = "would-push"
    REFUSED = "refused"
    FAILED = "failed"


OK_STATUSES = frozenset({Status.PUSHED, Status.UNCHANGED, Status.WOULD_PUSH})


@dataclass(frozen=True)
class PushOptions(JobOptions):
    """How to push (the CLI's options)."""

    dry_run: bool = False
    reload_timeout: float = 30.0  # installer done -> connections loaded
    poll_interval: float = 0.5


@dataclass
class PushReport(JobReport):
    """The outcome for one router (JSON-ready through :meth:`to_json`)."""

    stage: Stage | str = Stage.QUEUED
    changes: list[FileChange] = field(default_factory=list)
    terminated: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    installer: list[str] = field(default_factory=list)

    STATUS: ClassVar[type[StrEnum]] = Status
    OK: ClassVar[frozenset[str]] = frozenset(OK_STATUSES)
    AGAIN: ClassVar[str] = "run push again: it only changes what differs"

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            **self.base_json(),
            "changes": [c.to_json() for c in self.changes],
            "terminated": self.terminated,
            "notes": self.notes,
            "installer": self.installer,
        }


Progress = Callable[[PushReport], None]


# --------------------------------------------------------------------------
# the batch


@dataclass
class _Prepared:
    """Per site router and firmware: the rendered set (or why it cannot be pushed)."""

    vset: VpnSet | None = None
    error: OwrtVpnError | None = None


class _Shared:
    """State shared by the routers of one batch (renders, policies), behind a lock."""

    def __init__(self, site: Site, pki: Any) -> None:
        self.site, self.pki = site, pki
        self.lock = threading.Lock()
        self.sets: dict[tuple[str, str, str], _Prepared] = {}
        self.policies: dict[str, SaPolicy] = {}

    def vpn_set(self, router: Router, style: str) -> VpnSet:
        key = (router.name, router.release, style)
        with self.lock:  # one render per router build, however many routers share it
            prep = self.sets.get(key)
            if prep is None:
                try:
                    prep = _Prepared(push_set.render_set(self.site, router, self.pki, style))
                except OwrtVpnError as exc:
                    prep = _Prepared(error=exc)
                self.sets[key] = prep
        if prep.error is not None:
            raise prep.error
        assert prep.vset is not None
        return prep.vset

    def policy(self, router: Router) -> SaPolicy:
        with self.lock:
            if router.name not in self.policies:
                self.policies[router.name] = SaPolicy.for_router(self.site, router, self.pki)
            return self.policies[router.name]


def push_batch(
    site: Site,
    pki: Any,
    targets: Sequence[RouterTarget],
    options: PushOptions,
    progress: Progress | None = None,
) -> list[PushReport]:
    """Push the site's VPN state to ``targets``; one report per target, in order.

    ``pki`` is the site's :class:`owrt_vpn.pki.authority.Pki`; the caller completes it
    first (``ensure_router``) when the push is for real.
    """
    reports = [PushReport(t.name, t.router.name, str(t.ssh)) for t in targets]
    shared = _Shared(site, pki)

    def work(i: int, job: Job) -> Callable[[], None]:
        return lambda: _Push(targets[i], shared, options, reports[i], job).run()

    run_batch(reports, work, options.jobs, progress, "push")
    return reports


def batch_exit_code(reports: Sequence[PushReport]) -> int:
    """0 when every router is fine, 1 when all failed, else 4."""
    return batch.exit_code([r.ok for r in reports])


class _Push:
    """The steps of one router's push."""

    def __init__(
        self, target: RouterTarget, shared: _Shared, opts: PushOptions, report: PushReport,
        job: Job,
    ) -> None:  # fmt: skip
        self.t, self.shared, self.o, self.r, self.job = target, shared, opts, report, job
        self.stage, self.lock = job.stage, job.lock
        self.ssh = opts.client(target.ssh)
        self.style = "swanctl"

    def run(self) -> None:
        router, style, facts = self.check()
        vset = self.shared.vpn_set(router, style)
        self.style = vset.style
        self.r.notes += [f"render: {w}" for w in vset.warnings]
        sas, running = self.compare(vset)
        policy = self.shared.policy(router)
        if self.o.dry_run:
            self.judge(sas, policy, dry_run=True)
            n = len(self.r.changes)
            if n == 0:
                raise Stop(Status.UNCHANGED, "the router's VPN files are up to date")
            raise Stop(Status.WOULD_PUSH, f"would change {_files(n)}")
        updates = self.install(vset)
        if running:
            self.verify(vset)
        else:
            self.r.notes.append("strongSwan is not running: the new settings apply when it starts")
        sas = self.list_sas(vset.style) if running else []
        self.judge(sas, policy, dry_run=False)
        self.stage(Stage.MARKING)
        self.mark(vset, facts)
        n = len(self.r.changes)
        what = [_files(n)] if n else []
        what += updates
        if self.r.terminated:
            what.append(f"terminated {len(self.r.terminated)} SA(s)")
        if not n and not updates:
            self.r.status, self.r.message = (
                Status.UNCHANGED,
                "already up to date (installer re-run)",
            )
        else:
            self.r.status, self.r.message = Status.PUSHED, "changed " + ", ".join(what)
        self.r.stage = Stage.DONE

    def check(self) -> tuple[Router, str, remote.Facts]:
        """Steps 1-2: our firmware, for this site router, with the packages the site needs."""
        self.stage(Stage.CONNECTING)
        facts = remote.first_probe(self.ssh, self.o.command_timeout, self.lock)
        self.stage(Stage.CHECKING)
        baked = facts.baked_build_info
        site, router = self.shared.site, self.t.router
        if baked is None:
            raise Stop(
                Status.REFUSED,
                f"not owrt-vpn firmware: {remote.BAKED_BUILD_INFO} is missing "
                f"(the router runs {release_text(facts.release)})",
                hint="flash it with a build of this site first: owrt-vpn build, owrt-vpn flash",
            )
        built_site = (
            baked.get("site", {}).get("name") if isinstance(baked.get("site"), dict) else None
        )
        if baked.get("router") != router.name or built_site != site.name:
            raise Stop(
                Status.REFUSED,
                f"the firmware was built for router {baked.get('router')!r} of site "
                f"{built_site!r}, not {router.name!r} of {site.name!r}",
                hint="check the router's address (or the inventory entry's router)",
            )
        eff, style = push_set.firmware_router(site, router, baked)
        missing = push_set.missing_packages(site, eff, style, baked)
        if missing:
            raise Stop(
                Status.REFUSED,
                "the change needs packages the firmware does not have: " + ", ".join(missing),
                hint=REBUILD_HINT,
            )
        return eff, style, facts

    def compare(self, vset: VpnSet) -> tuple[list[IkeSa], bool]:
        """Step 3: the router's files against the set; the SAs; is strongSwan running."""
        self.stage(Stage.COMPARING)
        paths = sorted(vset.manifest)
        listing = "ipsec statusall" if vset.style == "ipsec" else "swanctl --list-sas --pretty"
        sec = run_sections(
            self.ssh,
            {
                "installer": f"[ -x {remote.INSTALLER} ] && echo yes",
                "manifest": f"cat {remote.MARKER_DIR}/manifest 2>/dev/null",
                "sums": (
                    f"{{ printf '%s\\n' {quote(paths)}; "
                    f"awk '{{print $2}}' {remote.MARKER_DIR}/manifest 2>/dev/null; }} | "
                    "sort -u | while read -r f; do case \"$f\" in ''|/*|*..*) continue ;; esac; "
                    '[ -f "/$f" ] && sha256sum "/$f"; done'
                ),
                "running": "pidof charon >/dev/null && echo yes",
                "sas": f"{listing} 2>&1",
            },
            self.o.command_timeout,
        )
        if sec["installer"].text.strip() != "yes":
            raise Stop(
                Status.REFUSED,
                f"not owrt-vpn firmware: {remote.INSTALLER} is missing",
                hint="flash it with a build of this site first: owrt-vpn build, owrt-vpn flash",
            )
        old_manifest = push_set.parse_manifest(sec["manifest"].text)
        changes = push_set.compare(vset, old_manifest, push_set.parse_sums(sec["sums"].text))
        fetch = push_set.paths_to_fetch(changes)
        old: dict[str, bytes] = {}
        if fetch:
            rels = [p.lstrip("/") for p in fetch]
            res = self.ssh.run(
                quote(["tar", "-cf", "-", "-C", "/", *rels]),
                timeout=self.o.command_timeout,
                check=False,
            )
            old = push_set.old_texts(res.stdout)
        push_set.add_diffs(changes, vset, old)
        self.r.changes = changes
        running = sec["running"].text.strip() == "yes"
        if running:  # as after the install: a failed listing is fatal, not "no SAs"
            check_section(sec["sas"], f"{listing} 2>&1")
        text = sec["sas"].text
        sas = statusall_sas(text) if vset.style == "ipsec" else swanctl_sas(text)
        return sas, running

    def install(self, vset: VpnSet) -> list[str]:
        """Step 4: upload the set, check it on the router, run the installer."""
        self.stage(Stage.INSTALLING)
        self.r.changed = True  # from here a host-key mismatch is a failure, not a refusal
        script = (
            "umask 077\n"
            "d=$(mktemp -d /tmp/owrt-vpn-push.XXXXXX) || exit 90\n"
            "trap 'rm -rf \"$d\"' EXIT\n"
            'tar -xf - -C "$d" || { echo "owrt-vpn: upload: cannot unpack" >&2; exit 91; }\n'
            '(cd "$d/files" && sha256sum -c ../sha256sums >/dev/null 2>&1) || '
            '{ echo "owrt-vpn: upload: damaged on the way (sha256 mismatch)" >&2; exit 92; }\n'
            f'{remote.INSTALLER} "$d/files"\n'
        )
        res = self.ssh.run(
            script, input=vset.tarball(), timeout=self.o.command_timeout, check=False
        )
        self.job.check_result(res.returncode)
        out = [ln.strip() for ln in (res.stderr + "\n" + res.text).splitlines() if ln.strip()]
        # The installer's own messages; the tools' chatter (swanctl) only when it fails.
        own = [ln.removeprefix("owrt-vpn: ") for ln in out if ln.startswith("owrt-vpn: ")]
        self.r.installer = own
        if res.returncode != 0:
            self.r.installer = [ln.removeprefix("owrt-vpn: ") for ln in out]
            raise RouterError(
                f"the installer failed (status {res.returncode})"
                + (f": {self.r.installer[-1]}" if out else ""),
                hint="see the installer's output in the report (--json); the router keeps "
                "what the installer had put in place before it stopped",
            )
        return [ln for ln in own if ln.startswith("updated ")]

    def verify(self, vset: VpnSet) -> None:
        """Step 5a: strongSwan has loaded the set's connections."""
        self.stage(Stage.VERIFYING)
        deadline = time.monotonic() + self.o.reload_timeout
        try:
            remote.wait_for_conns(
                self.ssh, vset.conns, vset.style, deadline, poll=self.o.poll_interval,
                command_timeout=self.o.command_timeout, cancel=self.job.cancel,
            )  # fmt: skip
        except FlashError as exc:
            raise RouterError(
                exc.message.replace("after the flash", "after the push"), hint=exc.hint
            ) from None

    def list_sas(self, style: str) -> list[IkeSa]:
        """The router's IKE SAs now."""
        if style == "ipsec":
            res = self.ssh.run("ipsec statusall 2>/dev/null", timeout=self.o.command_timeout)
            return statusall_sas(res.text)
        res = self.ssh.run("swanctl --list-sas --pretty", timeout=self.o.command_timeout)
        return swanctl_sas(res.text)

    def judge(self, sas: list[IkeSa], policy: SaPolicy, *, dry_run: bool) -> None:
        """Step 5b: terminate the SAs of peers the site no longer allows."""
        doomed = [sa for sa in sas if policy.verdict(sa) == "terminate"]
        on_shared = [sa for sa in sas if policy.verdict(sa) == "shared"]
        if on_shared and policy.shared_revoked:
            self.r.notes.append(
                f"{len(on_shared)} SA(s) on the shared iOS identity "
                f"{policy.shared_identity!r} cannot be singled out: the revoked "
                f"device(s) {', '.join(policy.shared_revoked)} may stay connected until they "
                "disconnect (the CRL refuses their next login)"
            )
        if doomed and not dry_run:
            self.stage(Stage.TERMINATING)
        for sa in doomed:
            peer = who(sa, policy.site_name, policy.shared_identity)
            entry = {
                "peer": peer.label(),
                "remote_id": sa.remote_id,
                "remote_eap_id": sa.remote_eap_id,
                "virtual_ips": list(sa.vips),
                "connection": sa.conn,
                "unique_id": sa.unique_id,
                "done": False,
            }
            if not dry_run:
                self.terminate(sa)
                entry["done"] = True
            self.r.terminated.append(entry)

    def terminate(self, sa: IkeSa) -> None:
        """End one IKE SA by its unique id (a peer that does not answer is dropped anyway)."""
        if self.style == "ipsec":
            argv = ["ipsec", "down", f"{sa.conn}[{sa.unique_id}]"]
        else:
            argv = ["swanctl", "--terminate", "--ike-id", sa.unique_id, "--force", "--timeout", "5"]
        res = self.ssh.run(quote(argv) + " 2>&1", timeout=self.o.command_timeout, check=False)
        self.job.check_result(res.returncode)
        if res.returncode != 0:
            raise RouterError(
                f"could not terminate the SA of {sa.remote_id} (#{sa.unique_id}): "
                f"{res.text.strip().splitlines()[-1] if res.text.strip() else res.returncode}"
            )

    def mark(self, vset: VpnSet, facts: remote.Facts) -> None:
        """Step 6: record the push (status shows it)."""
        marker = {
            "pushed_at": batch.iso_time(time.time()),
            "router": self.t.router.name,
            "site": self.shared.site.name,
            "files_sha256": vset.digest,
            "release": vset.release,
            "boot_id": facts.boot_id,
            "tool": f"owrt-vpn {__version__}",
        }
        tmp = f"{remote.MARKER_DIR}/.pushed.json.new"
        self.ssh.run(
            f"umask 022 && mkdir -p {remote.MARKER_DIR} && cat > {tmp} "
            f"&& mv -f {tmp} {remote.PUSH_MARKER}",
            input=json.dumps(marker, indent=2, sort_keys=True).encode() + b"\n",
            timeout=self.o.command_timeout,
        )


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"
