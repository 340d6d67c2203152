"""Reading a live router's VPN state: remote command sections, IKE SAs, plugins, certificates.

Shared by ``push`` (which SAs to terminate), ``status`` (who is connected)
and ``doctor --router``. Every parser takes tool output as text and is
defensive: a line it does not understand is skipped, never a crash.

- :func:`run_sections` runs several commands in one SSH round trip and
  splits their output (with each command's exit status);
- :func:`parse_vici_pretty` reads ``swanctl --list-sas --pretty`` (the VICI
  message dump: ``key = value``, ``name {``, ``key = [`` lists), and
  :func:`swanctl_sas` / :func:`statusall_sas` turn swanctl's or the legacy
  ``ipsec statusall`` output into :class:`IkeSa` records;
- :func:`who` maps a peer's identities to our users (``user+device@site``,
  the subject DN, the EAP user name, the shared iOS identity);
- :func:`cert_facts` / :func:`crl_facts` summarise the certificates and CRL
  found on the router (public files: never a key).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from owrt_vpn.errors import RouterError
from owrt_vpn.routers.ssh import SshClient

_MARK = "@@owrt-vpn-section@@"


@dataclass(frozen=True)
class Section:
    """One command's output (stdout and stderr as the command line redirects them)."""

    text: str
    status: int | None


def run_sections(ssh: SshClient, commands: Mapping[str, str], timeout: float) -> dict[str, Section]:
    """Run ``commands`` (name -> shell line) in one round trip; their outputs and statuses.

    A command that fails does not stop the others; its status is reported.
    """
    parts = []
    for name, command in commands.items():
        if not re.fullmatch(r"[a-z0-9_-]+", name):
            raise ValueError(f"bad section name {name!r}")
        # The newline before each marker ends a last line that had none.
        parts.append(
            f"printf '\\n{_MARK} begin {name}\\n'; {{ {command}\n}}; "
            f"printf '\\n{_MARK} end {name} %s\\n' $?"
        )
    res = ssh.run("\n".join([*parts, "true"]), timeout=timeout)
    out: dict[str, Section] = {}
    current: str | None = None
    lines: list[str] = []
    for line in res.text.split("\n"):
        if line.startswith(f"{_MARK} begin "):
            current, lines = line.split(" ", 2)[2], []
        elif line.startswith(f"{_MARK} end ") and current is not None:
            status = line.rsplit(" ", 1)[-1]
            text = "\n".join(lines)
            # drop the newline our printf added before the end marker
            out[current] = Section(text[:-1] if text.endswith("\n") else text, _int(status))
            current = None
        elif current is not None:
            lines.append(line)
    missing = [n for n in commands if n not in out]
    if missing:
        raise RouterError(
            f"the router's answer lacks {', '.join(missing)} (session cut short?)",
            hint="run the command again",
        )
    return out


def check_section(section: Section, command: str) -> None:
    """Raise RouterError when a state command (run with ``2>&1``) failed on the router.

    With charon running, a failed listing is a failure to report, never an
    empty list ("0 connected", nothing to terminate).
    """
    if section.status == 0:
        return
    shown = command.removesuffix(" 2>&1")
    last = section.text.strip().splitlines()[-1] if section.text.strip() else ""
    raise RouterError(
        f"`{shown}` failed on the router (status {section.status})" + (f": {last}" if last else ""),
        hint="strongSwan runs but does not answer: check `logread -e charon` on the router",
    )


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# IKE SAs


@dataclass(frozen=True)
class IkeSa:
    """One IKE SA as the router lists it."""

    conn: str
    unique_id: str
    state: str
    remote_host: str = ""
    remote_id: str = ""
    remote_eap_id: str | None = None
    vips: tuple[str, ...] = ()
    established: int | None = None  # seconds since it was established

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "connection": self.conn,
            "unique_id": self.unique_id,
            "state": self.state,
            "remote_host": self.remote_host,
            "remote_id": self.remote_id,
            "remote_eap_id": self.remote_eap_id,
            "virtual_ips": list(self.vips),
            "established_seconds": self.established,
        }


def parse_vici_pretty(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The top-level messages of ``swanctl ... --pretty`` output, as (header, nested dict)."""
    messages: list[tuple[str, dict[str, Any]]] = []
    stack: list[dict[str, Any]] = []
    current_list: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if current_list is not None:
            if line == "]":
                current_list = None
            else:
                current_list.append(line)
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        if line.endswith("{") and " = " not in line:
            name = line[:-1].strip()
            section: dict[str, Any] = {}
            if stack:
                stack[-1][name] = section
            else:
                messages.append((name, section))
            stack.append(section)
            continue
        key, sep, value = line.partition(" = ")
        if not sep or not stack:
            continue
        if value == "[":
            current_list = []
            stack[-1][key] = current_list
        else:
            stack[-1][key] = value
    return messages


def swanctl_sas(text: str) -> list[IkeSa]:
    """The IKE SAs in ``swanctl --list-sas --pretty`` output."""
    out = []
    for header, body in parse_vici_pretty(text):
        if not header.startswith("list-sa event"):
            continue
        for conn, sa in body.items():
            if not isinstance(sa, dict):
                continue
            vips = sa.get("remote-vips")
            est = sa.get("established")
            out.append(
                IkeSa(
                    conn=conn,
                    unique_id=str(sa.get("uniqueid", "")),
                    state=str(sa.get("state", "")),
                    remote_host=str(sa.get("remote-host", "")),
                    remote_id=str(sa.get("remote-id", "")),
                    remote_eap_id=sa.get("remote-eap-id") or sa.get("remote-xauth-id"),
                    vips=tuple(vips) if isinstance(vips, list) else (),
                    established=int(est) if isinstance(est, str) and est.isdigit() else None,
                )
            )
    return out


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LEGACY_SA = re.compile(
    r"^\s*(?P<conn>[^\s\[]+)\[(?P<id>\d+)\]: (?P<state>[A-Z_]+)"
    r"(?: (?P<n>\d+) (?P<unit>second|minute|hour|day)s? ago)?"
    r", [^\[]*\[[^\]]*\]\.\.\.(?P<host>[^\[]*)\[(?P<rid>.*)\]\s*$"
)
_LEGACY_EAP = re.compile(
    r"^\s*(?P<conn>[^\s\[]+)\[(?P<id>\d+)\]: Remote (?:EAP|XAuth) identity: (?P<eap>.*)$"
)
_LEGACY_TS = re.compile(r"^\s*[^\s{]+\{\d+\}:\s+\S.* === (?P<remote>.+)$")


def statusall_sas(text: str) -> list[IkeSa]:
    """The IKE SAs in legacy ``ipsec statusall`` output (children follow their IKE SA)."""
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _LEGACY_SA.match(line)
        if m:
            est = int(m["n"]) * _UNITS[m["unit"]] if m["n"] else None
            found.append(
                {
                    "conn": m["conn"], "unique_id": m["id"], "state": m["state"],
                    "remote_host": m["host"], "remote_id": m["rid"], "remote_eap_id": None,
                    "vips": [], "established": est,
                }
            )  # fmt: skip
            continue
        m = _LEGACY_EAP.match(line)
        if m:
            for sa in found:
                if sa["conn"] == m["conn"] and sa["unique_id"] == m["id"]:
                    sa["remote_eap_id"] = m["eap"].strip()
            continue
        m = _LEGACY_TS.match(line)
        if m and found:
            # a road warrior's remote selector is its virtual IP (/32 or /128)
            for ts in m["remote"].split():
                ip, _, plen = ts.strip(",").partition("/")
                if plen in ("32", "128") and ip not in found[-1]["vips"]:
                    found[-1]["vips"].append(ip)
    return [IkeSa(**{**sa, "vips": tuple(sa["vips"])}) for sa in found]


def loaded_plugins(text: str) -> list[str] | None:
    """The ``loaded plugins:`` of ``swanctl --stats`` or ``ipsec statusall`` (None if absent)."""
    m = re.search(r"^\s*loaded plugins: (.*)$", text, re.M)
    return m.group(1).split() if m else None


# --------------------------------------------------------------------------
# who is it?

_IDENTITY_RE = re.compile(r"^(?P<user>[^+@\s]+)\+(?P<device>[^+@\s]+)@(?P<site>[^@\s]+)$")
_CN_RE = re.compile(r"(?:^|,\s*)CN=(?P<cn>[^,]+)")


@dataclass(frozen=True)
class Peer:
    """Which of our users a peer is (as far as its identities tell)."""

    user: str | None
    device: str | None
    kind: str  # "device" | "eap" | "shared" | "unknown"

    def label(self) -> str:
        """``user/device``, ``user (EAP)``, or what is known."""
        if self.kind == "device":
            return f"{self.user}/{self.device}"
        if self.kind == "eap":
            return f"{self.user} (EAP)"
        if self.kind == "shared":
            return "a device on the shared iOS identity"
        return "unknown"


def identity_owner(identity: str, site_name: str) -> tuple[str, str] | None:
    """(user, device) for ``user+device@site`` or a DN whose CN is one; else None."""
    m = _IDENTITY_RE.match(identity.strip())
    if m is None:
        cn = _CN_RE.search(identity)
        m = _IDENTITY_RE.match(cn["cn"].strip()) if cn else None
    if m is None or m["site"] != site_name:
        return None
    return m["user"], m["device"]


def who(sa: IkeSa, site_name: str, shared_identity: str | None) -> Peer:
    """Map an SA's peer identities to a user (device identity first, then the EAP name)."""
    if shared_identity and sa.remote_id == shared_identity:
        return Peer(None, None, "shared")
    for ident in (sa.remote_id, sa.remote_eap_id or ""):
        owner = identity_owner(ident, site_name)
        if owner:
            return Peer(owner[0], owner[1], "device")
    if sa.remote_eap_id:
        return Peer(sa.remote_eap_id, None, "eap")
    return Peer(None, None, "unknown")


# --------------------------------------------------------------------------
# certificates and CRL (public files only)


def _days_left(when: dt.datetime, now: dt.datetime) -> int:
    return int((when - now).total_seconds() // 86400)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CertFacts:
    """What matters about a certificate on the router."""

    subject: str
    issuer: str
    serial: str
    not_after: str
    days_left: int
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    eku: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return dict(self.__dict__)


EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.8.2.2": "iKEIntermediate",
    "1.3.6.1.5.5.7.3.17": "ipsecIKE",
}


def cert_facts(pem: bytes, now: dt.datetime | None = None) -> CertFacts | None:
    """Subject, expiry, SAN and EKU of a PEM certificate (None when it does not parse)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None
    facts = CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
        days_left=_days_left(cert.not_valid_after_utc, now or _now()),
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        facts.dns_names = list(san.get_values_for_type(x509.DNSName))
        facts.ip_addresses = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        facts.eku = [EKU_NAMES.get(o.dotted_string, o.dotted_string) for o in eku]
    except x509.ExtensionNotFound:
        pass
    return facts


@dataclass
class CrlFacts:
    """What matters about the CRL on the router."""

    issuer: str
    last_update: str
    next_update: str | None
    days_left: int | None
    revoked: int
    number: int | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return dict(self.__dict__)


def crl_facts(pem: bytes, now: dt.datetime | None = None) -> CrlFacts | None:
    """Dates, number and size of a PEM CRL (None when it does not parse)."""
    from cryptography import x509

    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError:
        return None
    nxt = crl.next_update_utc
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    return CrlFacts(
        issuer=crl.issuer.rfc4514_string(),
        last_update=crl.last_update_utc.isoformat(timespec="seconds"),
        next_update=nxt.isoformat(timespec="seconds") if nxt else None,
        days_left=_days_left(nxt, now or _now()) if nxt else None,
        revoked=len(list(crl)),
        number=number,
    )


def pem_blocks(text: bytes) -> list[bytes]:
    """The PEM blocks in ``text`` (a file may hold several)."""
    return re.findall(rb"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----\n?", text, re.S)
