"""Client bundles: for each user device a folder and a zip with everything to connect.

Layout (``<out>`` is the dist root, default ``dist/``)::

    <out>/<site>/clients/<user>/<device>/        README.md, ca.crt, ca.pem, <device>.p12,
                                                 the platform's files (one profile per router)
    <out>/<site>/clients/<user>/<user>-<device>.zip   the same folder, deterministic
    <out>/<site>/clients/<user>/<device>.mobileconfig  Apple certificate users only: it
                                                 embeds the p12 password, so never in the zip

One module per platform (:mod:`.apple`, :mod:`.android`, :mod:`.windows`,
:mod:`.linux`) renders a :class:`~.common.DeviceContext` into files; this
module gathers the inputs once per site, writes each user's tree atomically
(a failing run leaves the previous bundles in place) and reports the
passwords the caller must hand over separately: they are never written
into a bundle.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.bundles import android, apple, linux, windows
from owrt_vpn.bundles.common import (
    BundleFile,
    Credentials,
    DeviceContext,
    SiteContext,
    local_identity,
    write_files,
    zip_bytes,
)
from owrt_vpn.bundles.provenance import BundleInputs
from owrt_vpn.errors import ConfigError, PkiError, Problem, UsageError
from owrt_vpn.repro import source_date_epoch
from owrt_vpn.site.allowlist import refuse_unsafe_text
from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH, Device, Site, User, eap_identity

if TYPE_CHECKING:
    from owrt_vpn.pki.reader import PkiReader

__all__ = [
    "BundleReport",
    "DeviceBundle",
    "build",
    "clients_dir",
    "password_file_text",
    "select_users",
]

RENDERERS: dict[str, Callable[[DeviceContext], list[BundleFile]]] = {
    "ios": apple.render_device,
    "macos": apple.render_device,
    "android": android.render_builtin,
    "android-strongswan": android.render_strongswan_app,
    "windows": windows.render_device,
    "linux": linux.render_device,
}


@dataclass
class DeviceBundle:
    """What was written for one device, and the secrets to hand over separately."""

    user: str
    device: str
    platform: str
    auth: str
    folder: Path
    zip: Path
    beside: list[Path] = field(default_factory=list)
    p12_password: str | None = None
    eap_password: str | None = None

    def to_json(self) -> dict[str, object]:
        """The ``--json`` form."""
        return {
            "user": self.user,
            "device": self.device,
            "platform": self.platform,
            "auth": self.auth,
            "folder": str(self.folder),
            "zip": str(self.zip),
            "secret_files": [str(p) for p in self.beside],
            "p12_password": self.p12_password,
            "eap_password": self.eap_password,
        }


@dataclass
class BundleReport:
    """The result of :func:`build`."""

    site: str
    clients: Path
    devices: list[DeviceBundle] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def clients_dir(site: Site, out_root: Path) -> Path:
    """``<out>/<site>/clients``."""
    return out_root / site.name / "clients"


def select_users(site: Site, names: Sequence[str] | None) -> list[User]:
    """The users named (all of them for none); ConfigError naming every unknown one."""
    if not names:
        return list(site.users)
    known = {u.name: u for u in site.users}
    problems = [
        Problem("USER", "", f"no user named {n!r} in {site.path.name}")
        for n in names
        if n not in known
    ]
    if problems:
        raise ConfigError(problems, hint="list the users with `owrt-vpn user list`")
    return [known[n] for n in dict.fromkeys(names)]


def _ca_common_name(pki: PkiReader) -> str:
    from cryptography.x509.oid import NameOID

    attrs = pki.ca_certificate().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(attrs[0].value) if attrs else ""
    try:
        # An imported CA's name reaches READMEs and a PowerShell comment.
        return refuse_unsafe_text(name, ascii_only=False)
    except ValueError as exc:
        raise PkiError(f"{pki.root / 'ca.crt'}: the CA's common name {exc}") from None


def build(
    site: Site,
    pki: PkiReader,
    out_root: Path,
    users: Sequence[str] | None = None,
) -> BundleReport:
    """Write the bundles of ``users`` (default: everyone) under ``out_root``.

    The PKI must already hold every certificate and password the site needs
    (``Pki.ensure``). Each user's folder gets its ``bundle-info.json``
    (:mod:`owrt_vpn.bundles.provenance`) with the bundles. Revoked devices
    and platforms without a common proposal with the router are skipped and
    listed in the report.
    """
    selected = select_users(site, users)
    sctx = SiteContext.create(site, pki.ca_cert_pem(), pki.ca_cert_der(), _ca_common_name(pki))
    epoch = source_date_epoch()
    report = BundleReport(site=site.name, clients=clients_dir(site, out_root))
    _refuse_links(report.clients, [u.name for u in selected], stale=not users)
    # Provenance is written with the bundles, inside the same atomic folder.
    inputs = BundleInputs(site)
    for user in selected:
        _build_user(sctx, pki, user, report, epoch, inputs)
    if not users and report.clients.is_dir():
        current = {u.name for u in site.users}
        for old in sorted(report.clients.iterdir()):
            # Bundles of users no longer in the site hold keys that must not linger.
            if old.is_dir() and not old.name.startswith(".") and old.name not in current:
                shutil.rmtree(old)
                report.removed.append(old.name)
    return report


def _refuse_links(clients: Path, names: list[str], *, stale: bool) -> None:
    """Refuse, before writing anything, a user folder (or, with ``stale``, any) that is a link.

    Replacing or removing it would write through the link into another folder
    (or fail half-way and leave a ``.NAME.old`` link behind).
    """
    if stale and clients.is_dir():
        names = [*names, *(p.name for p in clients.iterdir() if not p.name.startswith("."))]
    for name in names:
        if (clients / name).is_symlink():
            raise UsageError(
                f"{clients / name}: is a symbolic link; owrt-vpn writes only real folders "
                "under dist/",
                hint="remove the link (the bundles are made again in a real folder)",
            )


def _device_context(sctx: SiteContext, pki: PkiReader, user: User, device: Device) -> DeviceContext:
    site = sctx.site
    creds = None
    if user.auth in CERT_AUTH:
        creds = Credentials(
            cert_pem=pki.client_cert_pem(user.name, device.name),
            key_pem=pki.client_key_pem(user.name, device.name),
            key_type=pki.client_key_type(user.name, device.name),
            p12=pki.p12(user.name, device.name),
            p12_password=pki.p12_password(user.name, device.name),
        )
    return DeviceContext(
        site=site,
        user=user,
        device=device,
        identity=local_identity(site, user, device),
        eap_id=eap_identity(user) if user.auth in EAP_PASSWORD_AUTH else None,
        creds=creds,
        ca=sctx.ca,
        profiles=sctx.profiles_for(user, device),
    )


def _build_user(
    sctx: SiteContext,
    pki: PkiReader,
    user: User,
    report: BundleReport,
    epoch: int,
    inputs: BundleInputs,
) -> None:
    from owrt_vpn.fsutil import atomic_dir

    eap_password = None
    if user.auth in EAP_PASSWORD_AUTH:
        if pki.eap_status(user.name) != "active":
            report.skipped.append(f"{user.name}: EAP password {pki.eap_status(user.name)}")
            return
        eap_password = pki.eap_password(user.name)
    final = report.clients / user.name
    with atomic_dir(final) as tmp:
        for device in user.devices:
            label = f"{user.name}/{device.name}"
            if user.auth in CERT_AUTH and pki.client_status(user.name, device.name) != "valid":
                status = pki.client_status(user.name, device.name)
                report.skipped.append(f"{label}: certificate {status}")
                continue
            ctx = _device_context(sctx, pki, user, device)
            missing = sctx.routers_without_proposal(user, device)
            if missing:
                report.skipped.append(
                    f"{label}: {device.platform} has no proposal in common with router(s) "
                    f"{', '.join(missing)} (crypto {sctx.site.settings.crypto!r}; see "
                    "`owrt-vpn check`)" + ("" if ctx.profiles else "; no bundle")
                )
            if not ctx.profiles:
                continue
            files = _common_files(ctx) + RENDERERS[device.platform](ctx)
            inside = [f for f in files if not f.beside]
            write_files(tmp / device.name, inside, epoch)
            zip_name = f"{user.name}-{device.name}.zip"
            zip_file = BundleFile(
                zip_name, zip_bytes(f"{user.name}-{device.name}", inside, epoch), secret=True
            )
            beside = [f for f in files if f.beside]
            write_files(tmp, [zip_file, *beside], epoch)
            report.devices.append(
                DeviceBundle(
                    user=user.name,
                    device=device.name,
                    platform=device.platform,
                    auth=user.auth,
                    folder=final / device.name,
                    zip=final / zip_name,
                    beside=[final / f.name for f in beside],
                    p12_password=ctx.creds.p12_password if ctx.creds else None,
                    eap_password=eap_password,
                )
            )
        inputs.write(tmp, user.name)


def _common_files(ctx: DeviceContext) -> list[BundleFile]:
    files = [BundleFile("ca.crt", ctx.ca.der), BundleFile("ca.pem", ctx.ca.pem)]
    if ctx.creds is not None:
        files.append(BundleFile(f"{ctx.stem}.p12", ctx.creds.p12, secret=True))
    return files


# The first line of a --password-file: `bundle` overwrites only files starting so.
PASSWORD_FILE_HEADER = b"# owrt-vpn: passwords for the bundles of site "


def password_file_text(report: BundleReport) -> str:
    """The secrets of a run, one per line, for ``--password-file`` (keep it 0600)."""
    lines = [
        f"{PASSWORD_FILE_HEADER.decode()}{report.site}.",
        "# Hand each one over by another channel than its bundle; then delete this file.",
        "# <user>/<device>  p12  <password of <device>.p12 and of the Linux .key>",
        "# <user>           eap  <EAP-MSCHAPv2 password>",
    ]
    seen_eap: set[str] = set()
    for d in report.devices:
        if d.p12_password:
            lines.append(f"{d.user}/{d.device}\tp12\t{d.p12_password}")
        if d.eap_password and d.user not in seen_eap:
            seen_eap.add(d.user)
            lines.append(f"{d.user}\teap\t{d.eap_password}")
    return "\n".join(lines) + "\n"
