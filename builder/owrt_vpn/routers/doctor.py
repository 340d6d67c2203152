"""`doctor --router NAME`: the usual road-warrior failures, checked on a live router.

One SSH round trip collects what the checks need (see :data:`COMMANDS`);
each check says ok / warn / fail, what it found and, when not ok, what to
do. The failures come from ``reference/clients.md`` ("Typical failures"):

- firmware: ours (baked build-info and installer), the VPN files current
  with the site (else ``push``);
- strongSwan running, our connections loaded, UDP 500/4500 open (MOBIKE
  floats to 4500), the plugins our package list implies loaded;
- firewall: the UCI rules for IKE, NAT-T and ESP on wan, and (firewall4)
  the running ruleset holding them and our IPsec-origin snippets;
- kernel modules for the ESP proposals (a missing kmod-crypto-gcm gives
  "unable to add SAD entry");
- the server certificate: SAN = the server identity (dNSName, also for an
  IP: Windows 13801), EKU serverAuth + iKEIntermediate (Apple), expiry,
  issued by the site's CA;
- the CRL: present when the site revoked something, as new as the site's,
  next update not passed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from owrt_vpn import profiles
from owrt_vpn.errors import EXIT_FAILURE, EXIT_OK
from owrt_vpn.render import packages
from owrt_vpn.routers import probe as remote
from owrt_vpn.routers import push_set
from owrt_vpn.routers.inventory import RouterTarget
from owrt_vpn.routers.job import release_text
from owrt_vpn.routers.ssh import SshClient, quote
from owrt_vpn.routers.state import (
    Section,
    cert_facts,
    crl_facts,
    loaded_plugins,
    run_sections,
)
from owrt_vpn.site.model import Router, Site

CERT_WARN_DAYS = 30
CRL_WARN_DAYS = 7
IPSEC_KMODS = ("kmod-ipsec", "kmod-ipsec4")

PLUGIN_WHY = {
    "revocation": "revoked certificates would be accepted",
    "eap-mschapv2": "EAP-MSCHAPv2 users cannot log in",
    "md4": "EAP-MSCHAPv2 needs MD4 (NT password hash)",
    "des": "EAP-MSCHAPv2 needs DES (challenge response)",
    "eap-identity": "EAP clients cannot say who they are",
    "eap-tls": "EAP-TLS users cannot log in",
    "kdf": "IKE key derivation (prf+) fails",
    "vici": "swanctl cannot load or list anything",
    "openssl": "most IKE algorithms are missing (NO_PROPOSAL_CHOSEN)",
    "x509": "certificates cannot be parsed",
    "kernel-netlink": "SAs cannot be installed in the kernel",
}


@dataclass(frozen=True)
class DoctorOptions:
    """How to reach the router."""

    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 60.0


@dataclass(frozen=True)
class Check:
    """One finding."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    """Every check of one router."""

    name: str
    address: str
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a check failed, else 0 (warnings do not fail)."""
        return EXIT_FAILURE if any(c.status == "fail" for c in self.checks) else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "ok": self.exit_code == EXIT_OK,
            "exit_code": self.exit_code,
            "router": self.name,
            "address": self.address,
            "checks": [c.to_json() for c in self.checks],
        }


def diagnose(site: Site, pki: Any, target: RouterTarget, opts: DoctorOptions) -> DoctorReport:
    """Run every check against ``target`` (SSH errors propagate: nothing to check then)."""
    ssh = SshClient(
        target.ssh, accept_new_host_keys=opts.accept_new_host_keys,
        connect_timeout=opts.connect_timeout,
    )  # fmt: skip
    report = DoctorReport(target.name, str(target.ssh))
    facts = remote.probe(ssh, opts.command_timeout)
    baked = facts.baked_build_info
    router, style = push_set.firmware_router(site, target.router, baked or {})
    vset = push_set.render_set(site, router, pki, style)
    paths = remote.installed_pki_paths(style, router.name)
    fw4 = profiles.release_info(router.release).firewall == "fw4"
    commands = {
        "installer": f"[ -x {remote.INSTALLER} ] && echo yes",
        "running": "pidof charon >/dev/null && echo yes",
        "loaded": ("ipsec statusall 2>&1" if style == "ipsec" else "swanctl --list-conns 2>&1"),
        "stats": ("ipsec statusall 2>&1" if style == "ipsec" else "swanctl --stats 2>&1"),
        "udp": "cat /proc/net/udp /proc/net/udp6 2>/dev/null",
        "uci": "uci -q show firewall 2>/dev/null",
        "ruleset": ("nft list ruleset 2>/dev/null" if fw4 else "iptables-save 2>/dev/null"),
        # lsmod (ubox on OpenWrt) reads /proc/modules; fall back to the file itself
        "modules": "lsmod 2>/dev/null || cat /proc/modules 2>/dev/null",
        "builtin": 'cat "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null',
        "cert": f"cat {paths['cert']} 2>/dev/null",
        "ca": f"cat {paths['ca']} 2>/dev/null",
        "crl": f"cat {paths['crl']} 2>/dev/null",
        "sums": (
            f"for f in {quote(['/' + p for p in sorted(vset.manifest)])}; do "
            '[ -f "$f" ] && sha256sum "$f"; done'
        ),
        "manifest": f"cat {remote.MARKER_DIR}/manifest 2>/dev/null",
    }
    s = run_sections(ssh, commands, opts.command_timeout)
    add = report.checks.append
    add(_firmware(baked, s, target.router))
    add(_current(vset, s))
    running = s["running"].text.strip() == "yes"
    add(
        Check("strongSwan running", "ok", "charon runs")
        if running
        else Check(
            "strongSwan running",
            "fail",
            "charon is not running",
            f"start it: /etc/init.d/{'ipsec' if style == 'ipsec' else 'swanctl'} start; "
            "then logread -e charon",
        )
    )
    if running:
        add(_connections(vset, style, s))
        add(_plugins(site, router, style, s))
    add(_ports(s))
    add(_uci_rules(vset, s))
    add(_ruleset(vset, s, fw4))
    add(_kmods(site, router, s))
    add(_server_cert(router, pki, s))
    add(_crl(pki, s))
    return report


# --------------------------------------------------------------------------
# the checks


def _firmware(baked: dict[str, Any] | None, s: dict[str, Section], router: Router) -> Check:
    if baked is None:
        return Check(
            "firmware", "fail", f"not owrt-vpn firmware ({remote.BAKED_BUILD_INFO} missing)",
            "flash a build of this site: owrt-vpn build, owrt-vpn flash",
        )  # fmt: skip
    if s["installer"].text.strip() != "yes":
        return Check(
            "firmware", "fail", f"{remote.INSTALLER} is missing", "flash a build of this site again"
        )
    if baked.get("router") != router.name:
        return Check(
            "firmware", "fail", f"built for router {baked.get('router')!r}, not {router.name!r}",
            "check the router's address in the site file",
        )  # fmt: skip
    release = release_text({"version": push_set.firmware_release(baked)})
    return Check("firmware", "ok", f"owrt-vpn build of {router.name} ({release})")


def _current(vset: push_set.VpnSet, s: dict[str, Section]) -> Check:
    changes = push_set.compare(
        vset,
        push_set.parse_manifest(s["manifest"].text),
        push_set.parse_sums(s["sums"].text),
    )
    if not changes:
        return Check("VPN files", "ok", "as the site renders them now")
    shown = ", ".join(f"{c.path} ({c.change})" for c in changes[:4])
    more = f" and {len(changes) - 4} more" if len(changes) > 4 else ""
    return Check(
        "VPN files",
        "warn",
        f"{len(changes)} file(s) differ from the site's current state: {shown}{more}",
        "owrt-vpn push --dry-run shows the changes; owrt-vpn push applies them",
    )


def _connections(vset: push_set.VpnSet, style: str, s: dict[str, Section]) -> Check:
    # What the router should have loaded: the render's own metadata (the
    # "VPN files" check says when the installed files differ from it).
    want = list(vset.conns)
    loaded = remote.listed_conns(s["loaded"].text, style)
    missing = [c for c in want if c not in loaded]
    if not want:
        return Check(
            "connections", "fail", "no owrt-vpn connections in the installed configuration",
            "owrt-vpn push installs them",
        )  # fmt: skip
    if missing:
        return Check(
            "connections", "fail",
            f"{len(missing)} of {len(want)} not loaded: {', '.join(missing[:5])}",
            "reload: swanctl --load-all (its output names the broken section); "
            "logread -e charon",
        )  # fmt: skip
    return Check("connections", "ok", f"{len(want)} loaded")


def _plugins(site: Site, router: Router, style: str, s: dict[str, Section]) -> Check:
    loaded = loaded_plugins(s["stats"].text)
    if loaded is None:
        return Check("plugins", "warn", "could not read the loaded plugins")
    missing = [p for p in packages.charon_plugins(site, router, style) if p not in loaded]
    if not missing:
        return Check("plugins", "ok", f"{len(loaded)} loaded, none missing")
    why = "; ".join(f"{p}: {PLUGIN_WHY[p]}" if p in PLUGIN_WHY else p for p in missing)
    return Check(
        "plugins",
        "fail",
        f"not loaded: {why}",
        "install strongswan-mod-<name> (rebuild and flash), and check "
        "/etc/strongswan.d/charon/<name>.conf has load = yes",
    )


def udp_ports(text: str) -> set[int]:
    """Local UDP ports bound, from /proc/net/udp and udp6."""
    ports = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and ":" in parts[1] and parts[0].rstrip(":").isdigit():
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _ports(s: dict[str, Section]) -> Check:
    missing = [p for p in (500, 4500) if p not in udp_ports(s["udp"].text)]
    if missing:
        return Check(
            "ports", "fail",
            f"nothing listens on UDP {', '.join(map(str, missing))}",
            "charon must bind UDP 500 and 4500 (MOBIKE and NAT-T float to 4500): is it "
            "running, or is charon.port/port_nat_t changed in /etc/strongswan.d?",
        )  # fmt: skip
    return Check("ports", "ok", "UDP 500 and 4500 bound")


def _wanted_rules(vset: push_set.VpnSet) -> dict[str, str]:
    """UCI rule section -> name, from the set's firewall batch (rules we add)."""
    batch = vset.files.get(f"{push_set.META}/uci/firewall.batch", (b"", 0))[0].decode()
    rules: dict[str, str] = {}
    for m in re.finditer(r"^set firewall\.(\w+)\.name='([^']*)'$", batch, re.M):
        rules[m.group(1)] = m.group(2)
    return rules


def _uci_rules(vset: push_set.VpnSet, s: dict[str, Section]) -> Check:
    shown = s["uci"].text
    wanted = _wanted_rules(vset)
    bad = []
    for section in wanted:
        if f"firewall.{section}=" not in shown:
            bad.append(f"{section} missing")
        elif re.search(rf"^firewall\.{section}\.enabled='0'$", shown, re.M):
            bad.append(f"{section} disabled")
    if bad:
        return Check(
            "firewall rules", "fail", "UCI: " + ", ".join(bad) + " (IKE/NAT-T/ESP from wan)",
            "owrt-vpn push (the installer sets them), or add them in LuCI; "
            "then /etc/init.d/firewall reload",
        )  # fmt: skip
    return Check("firewall rules", "ok", f"UCI: {', '.join(wanted)} present")


def _ruleset(vset: push_set.VpnSet, s: dict[str, Section], fw4: bool) -> Check:
    text = s["ruleset"].text
    gen = "fw4" if fw4 else "fw3"
    if fw4 and "table inet fw4" not in text:
        return Check(
            "firewall loaded", "fail", "firewall4 is not running (no table inet fw4)",
            "/etc/init.d/firewall restart; logread -e firewall",
        )  # fmt: skip
    if not fw4 and not text.strip():
        return Check("firewall loaded", "warn", "iptables-save printed nothing")
    want = [f"!{gen}: {name}" for name in _wanted_rules(vset).values()]
    if fw4:
        for rel, (data, _) in vset.files.items():
            if rel.startswith("usr/share/nftables.d/"):
                want += re.findall(r'comment "([^"]*)"', data.decode(errors="replace"))
    missing = [w for w in want if w not in text]
    if missing:
        return Check(
            "firewall loaded", "fail",
            f"the running firewall lacks: {'; '.join(missing)}",
            "/etc/init.d/firewall reload (our rules and snippets are included at load)",
        )  # fmt: skip
    return Check("firewall loaded", "ok", f"{len(want)} owrt-vpn rules in the running {gen}")


def loaded_modules(modules: str, builtin: str) -> set[str]:
    """Module names from lsmod or /proc/modules, and modules.builtin ("-" as "_")."""
    names = {
        line.split()[0]
        for line in modules.splitlines()
        if line.split() and line.split()[0] != "Module"  # lsmod's header
    }
    for line in builtin.splitlines():
        base = line.strip().rsplit("/", 1)[-1]
        names.add(re.sub(r"\.ko(\.\w+)?$", "", base))
    return {n.replace("-", "_") for n in names}


def _kmods(site: Site, router: Router, s: dict[str, Section]) -> Check:
    table = profiles.load("kernel-modules")["modules"]
    have = loaded_modules(s["modules"].text, s["builtin"].text)
    missing = []
    for pkg in [*IPSEC_KMODS, *packages.kernel_modules(site, router)]:
        mods = table.get(pkg, [])
        absent = [m for m in mods if m.replace("-", "_") not in have]
        if absent:
            missing.append(f"{pkg} ({', '.join(absent)})")
    if missing:
        return Check(
            "kernel modules", "fail",
            f"not loaded: {', '.join(missing)}: installing ESP SAs fails "
            "('unable to add SAD entry', 'Function not implemented')",
            "install the kmod packages (rebuild and flash), or load them: modprobe <module>",
        )  # fmt: skip
    return Check("kernel modules", "ok", "every module the ESP proposals need is loaded")


def _server_cert(router: Router, pki: Any, s: dict[str, Section]) -> Check:
    text = s["cert"].text.encode()
    facts = cert_facts(text) if b"-----BEGIN" in text else None
    if facts is None:
        return Check(
            "server certificate", "fail", "not found on the router", "owrt-vpn push installs it"
        )
    problems = []
    sid = router.server_id
    if sid not in facts.dns_names:
        problems.append(f"SAN lacks dNSName {sid} (Windows: error 13801)")
    try:
        ip = ipaddress.ip_address(sid)
        if str(ip) not in facts.ip_addresses:
            problems.append(f"SAN lacks iPAddress {sid}")
    except ValueError:
        pass
    for eku, who in (("serverAuth", "Windows"), ("iKEIntermediate", "macOS/iOS")):
        if eku not in facts.eku:
            problems.append(f"EKU lacks {eku} ({who})")
    ca_pem = pki.ca_cert_pem()
    router_ca = s["ca"].text.encode()
    if _der(router_ca) != _der(ca_pem):
        problems.append("the CA on the router is not the site's CA")
    if facts.days_left < 0:
        problems.append(f"expired on {facts.not_after}")
    if problems:
        return Check(
            "server certificate", "fail", "; ".join(problems),
            f"renew it (owrt-vpn pki renew --router {router.name}) and push",
        )  # fmt: skip
    if facts.days_left < CERT_WARN_DAYS:
        return Check(
            "server certificate", "warn", f"expires in {facts.days_left} days",
            f"owrt-vpn pki renew --router {router.name}, then owrt-vpn push",
        )  # fmt: skip
    return Check(
        "server certificate", "ok",
        f"SAN {sid}, EKU serverAuth + iKEIntermediate, {facts.days_left} days left",
    )  # fmt: skip


def _der(pem: bytes) -> str | None:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _crl(pki: Any, s: dict[str, Section]) -> Check:
    site_pem = pki.crl_pem()
    text = s["crl"].text.encode()
    have = crl_facts(text) if b"-----BEGIN" in text else None
    if site_pem is None:
        return Check("CRL", "ok", "nothing revoked" + (" (a CRL is installed)" if have else ""))
    want = crl_facts(site_pem)
    if have is None:
        return Check(
            "CRL", "fail", "the site revoked certificates but the router has no CRL: "
            "revoked devices can still connect", "owrt-vpn push",
        )  # fmt: skip
    if want is not None and (have.number or 0) < (want.number or 0):
        return Check(
            "CRL", "fail",
            f"the router's CRL is number {have.number}, the site's {want.number}: "
            f"{want.revoked - have.revoked} newer revocation(s) not applied",
            "owrt-vpn push",
        )  # fmt: skip
    if have.days_left is not None and have.days_left < 0:
        return Check(
            "CRL", "warn",
            f"next update {have.next_update} has passed (revoked devices stay refused: "
            "relaxed checking), sign it again",
            "owrt-vpn pki renew --crl, then owrt-vpn push",
        )  # fmt: skip
    if have.days_left is not None and have.days_left < CRL_WARN_DAYS:
        return Check(
            "CRL", "warn", f"next update in {have.days_left} days",
            "owrt-vpn pki renew --crl, then owrt-vpn push",
        )  # fmt: skip
    return Check("CRL", "ok", f"{have.revoked} revoked, next update {have.next_update}")


def human(report: DoctorReport) -> str:
    """The checks as text, with what to fix."""
    lines = [f"doctor {report.name} ({report.address})"]
    for c in report.checks:
        lines.append(f"  {c.status.upper():<5} {c.name}: {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"        fix: {c.fix}")
    fails = sum(1 for c in report.checks if c.status == "fail")
    warns = sum(1 for c in report.checks if c.status == "warn")
    lines.append(f"{fails} failed, {warns} warning(s)")
    return "\n".join(lines)
