"""`pki ...` (the CA and certificates) and `user ...` (users, devices, passwords)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.cli import State, state

if TYPE_CHECKING:
    from owrt_vpn.pki import EnsureReport, Pki
    from owrt_vpn.site import Site

pki_app = typer.Typer(
    help="The CA, the routers' and devices' certificates, the CRL.", no_args_is_help=True
)
user_app = typer.Typer(
    help="VPN users: add, list, revoke, remove, set passwords.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the `pki` and `user` command groups."""
    app.add_typer(pki_app, name="pki")
    app.add_typer(user_app, name="user")


def _report(st: State, report: EnsureReport, show_passwords: bool = False) -> dict[str, Any]:
    """Print what an ensure did (stderr) and return it as JSON data."""
    for item in report.issued:
        st.info(f"issued {item}")
    for item in report.skipped:
        st.warn(item)
    for user in sorted(report.passwords):
        st.info(f"generated an EAP password for {user}")
    data: dict[str, Any] = {"issued": report.issued, "skipped": report.skipped}
    if show_passwords:
        data["passwords"] = dict(sorted(report.passwords.items()))
    return data


# ---------------------------------------------------------------------- pki


@pki_app.command("init")
def pki_init(
    ctx: typer.Context,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure-unencrypted-ca",
            help="Store the CA key unencrypted (throwaway setups and tests only).",
        ),
    ] = False,
) -> None:
    """Create the CA (unless it exists) and every certificate the site needs."""
    from owrt_vpn.pki import Pki

    st = state(ctx)
    site = st.load_site()
    pki = Pki.open(site)
    existed = pki.exists
    if existed and insecure and pki.ca_encrypted:
        st.warn("--insecure-unencrypted-ca ignored: the CA exists and its key stays encrypted")
    report = pki.init(site, encrypt=not (insecure and not existed))
    if not pki.ca_encrypted:
        st.warn("the CA key is stored UNENCRYPTED: use this PKI for tests only")
    data = _report(st, report)
    data.update(ok=True, pki_dir=str(pki.root), created_ca=not existed)
    where = pki.root
    human = f"{'created the CA in' if not existed else 'CA exists in'} {where}"
    human += f"; issued {len(report.issued)} item(s)" if report.issued else "; nothing to issue"
    if report.passwords:
        human += f"\nEAP passwords are in {where / 'eap'}"
    st.emit(data, human)


@pki_app.command("renew")
def pki_renew(
    ctx: typer.Context,
    routers: Annotated[
        list[str] | None,
        typer.Option("--router", metavar="NAME", help="Renew this router's certificate."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="Renew this user's devices.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", metavar="NAME", help="Only this device (--user).")
    ] = None,
    crl: Annotated[bool, typer.Option("--crl", help="Sign the CRL again (new dates).")] = False,
    ca: Annotated[
        bool, typer.Option("--ca", help="Renew the CA certificate (same key and subject).")
    ] = False,
) -> None:
    """Issue new certificates (new keys) before the old ones expire, or a fresh CRL."""
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki import Pki

    st = state(ctx)
    if device is not None and user is None:
        raise UsageError("pki renew: --device needs --user")
    if not (routers or user or crl or ca):
        raise UsageError(
            "pki renew: nothing to renew", hint="pass --router, --user [--device], --crl or --ca"
        )
    site = st.load_site()
    pki = Pki.open(site)
    done = pki.renew(site, routers=routers or (), user=user, device=device, crl=crl, ca=ca)
    for item in done:
        st.info(f"renewed {item}")
    if crl and "crl" not in done:
        st.info("nothing was ever revoked: there is no CRL to renew")
    st.emit(
        {"ok": True, "renewed": done},
        f"renewed {len(done)} item(s); rebuild the routers/bundles that carry them",
    )


@pki_app.command("import")
def pki_import(
    ctx: typer.Context,
    ca_cert: Annotated[
        Path | None, typer.Option("--ca-cert", metavar="FILE", help="caCert.pem (PEM or DER).")
    ] = None,
    ca_key: Annotated[
        Path | None, typer.Option("--ca-key", metavar="FILE", help="caKey.pem (PEM or DER).")
    ] = None,
    ca_p12: Annotated[
        Path | None, typer.Option("--ca-p12", metavar="FILE", help="ca.p12 (key and certificate).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA.")] = False,
) -> None:
    """Adopt an existing CA (e.g. from the guide's script), then issue what the site needs."""
    from owrt_vpn import pki_import as imp
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki import Pki

    st = state(ctx)
    if ca_p12 is not None and (ca_cert is not None or ca_key is not None):
        raise UsageError("pki import: pass either --ca-p12 or --ca-cert with --ca-key, not both")
    if ca_p12 is None and (ca_cert is None or ca_key is None):
        raise UsageError(
            "pki import: pass --ca-cert FILE --ca-key FILE, or --ca-p12 FILE",
            hint="the guide's script makes caCert.pem, caKey.pem and ca.p12",
        )
    site = st.load_site()
    if ca_p12 is not None:
        cert, key = imp.read_ca_p12(ca_p12)
    else:
        assert ca_cert is not None and ca_key is not None
        cert, key = imp.read_ca_pair(ca_cert, ca_key)
    pki = Pki.open(site)
    report = pki.import_ca(site, cert, key, force=force)
    data = _report(st, report)
    data.update(ok=True, subject=cert.subject.rfc4514_string(), pki_dir=str(pki.root))
    verb = "imported" if "ca (imported)" in report.issued else "already using"
    st.emit(data, f"{verb} the CA {cert.subject.rfc4514_string()} in {pki.root}")


def _record_json(r: Any) -> dict[str, Any]:
    return dict(r.to_json())


@pki_app.command("list")
def pki_list(
    ctx: typer.Context,
    all_records: Annotated[
        bool, typer.Option("--all", help="Also renewed and removed certificates.")
    ] = False,
) -> None:
    """List the issued certificates (serial, subject, status, expiry)."""
    from owrt_vpn.pki import Pki

    st = state(ctx)
    pki = Pki.open(st.load_site())
    records = pki.records(all_records=all_records)
    lines = [f"{'kind':<7} {'owner':<24} {'status':<8} {'expires':<11} serial"]
    for r in records:
        owner = r.router or (f"{r.user}/{r.device}" if r.user else "-")
        current = "" if r.current else " (old)"
        line = f"{r.kind:<7} {owner:<24} {r.status:<8} {r.not_after[:10]:<11} {r.serial_hex}"
        lines.append(line + current)
    st.emit({"certificates": [_record_json(r) for r in records]}, "\n".join(lines))


@pki_app.command("show")
def pki_show(ctx: typer.Context) -> None:
    """Show the CA, the CRL and the state digest."""
    from owrt_vpn.errors import PkiError
    from owrt_vpn.pki import INIT_HINT, Pki

    st = state(ctx)
    pki = Pki.open(st.load_site())
    ca = pki.ca_record()
    if ca is None or not pki.exists:
        raise PkiError(f"{pki.root}: no CA", hint=INIT_HINT)
    crl = pki.crl_info()
    data = {
        "pki_dir": str(pki.root),
        "ca": _record_json(ca),
        "ca_encrypted": pki.ca_encrypted,
        "crl": crl,
        "revoked": len(pki.revoked()),
        "certificates": len(pki.records()),
        "digest": pki.digest(),
    }
    human = [
        f"PKI directory: {pki.root}",
        f"CA:            {ca.subject} ({ca.key_type}, expires {ca.not_after[:10]})",
        f"CA key:        {'encrypted' if pki.ca_encrypted else 'UNENCRYPTED'}",
        f"certificates:  {len(pki.records())} current, {len(pki.revoked())} revoked",
        "CRL:           "
        + (f"#{crl['number']}, next update {str(crl['next_update'])[:10]}" if crl else "none"),
    ]
    st.emit(data, "\n".join(human))


# ---------------------------------------------------------------------- user


def _read_password(flag: str) -> str:
    """A password from stdin: one line (its newline dropped), validated."""
    from owrt_vpn.pki import check_password

    data = sys.stdin.read()
    if data.endswith("\n"):
        data = data[:-1]
        if data.endswith("\r"):
            data = data[:-1]
    return check_password(data, flag)


def _parse_devices(specs: list[str]) -> list[tuple[str, str]]:
    from owrt_vpn.errors import ConfigError, Problem

    out = []
    problems = []
    for spec in specs:
        name, sep, platform = spec.partition(":")
        if not sep or not name or not platform or ":" in platform:
            problems.append(
                Problem("--device", "", f"{spec!r} is not NAME:PLATFORM (e.g. phone:ios)")
            )
        else:
            out.append((name, platform))
    if problems:
        raise ConfigError(problems)
    return out


def _write_site(site_path: Path, text: str) -> None:
    from owrt_vpn.fsutil import write_atomic

    mode = site_path.stat().st_mode & 0o777 if site_path.exists() else 0o644
    write_atomic(site_path, text, mode)


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user's name.")],
    auth: Annotated[
        str,
        typer.Option("--auth", help="pubkey | eap-tls | eap-mschapv2 | pubkey+eap-mschapv2"),
    ] = "pubkey",
    devices: Annotated[
        list[str] | None,
        typer.Option("--device", metavar="NAME:PLATFORM", help="A device (repeatable)."),
    ] = None,
    routers: Annotated[
        list[str] | None,
        typer.Option("--router", metavar="NAME", help="A router the user may use (default all)."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the EAP password from stdin.")
    ] = False,
) -> None:
    """Add a user to the site file (comments kept) and issue their certificates/password."""
    from owrt_vpn import siteedit
    from owrt_vpn.errors import ConfigError, Problem, UsageError
    from owrt_vpn.pki import Pki
    from owrt_vpn.site import CERT_AUTH, EAP_PASSWORD_AUTH, parse_site

    st = state(ctx)
    site = st.load_site()
    if not devices:
        raise UsageError("user add: at least one --device NAME:PLATFORM is needed")
    specs = _parse_devices(devices)
    if any(u.name == name for u in site.users):
        i = [u.name for u in site.users].index(name)
        raise ConfigError([Problem(site.path.name, f"users[{i}].name", f"user {name!r} exists")])
    if password_stdin and auth not in EAP_PASSWORD_AUTH:
        raise UsageError(f"user add: --password-stdin needs an EAP auth method, not {auth!r}")
    text = site.path.read_text(encoding="utf-8")
    new_text = siteedit.add_user(text, name=name, auth=auth, devices=specs, routers=routers)
    new_site = parse_site(new_text, st.site, st.site_display)
    password = _read_password("--password-stdin") if password_stdin else None
    pki = Pki.open(new_site)
    if auth in CERT_AUTH:
        pki.unlock()  # no passphrase, no CA: fail before the site file changes
    _write_site(st.site, new_text)
    if password is not None:
        pki.set_eap_password(new_site, name, password)
    report = pki.ensure_user(new_site, name)
    data = _report(st, report, show_passwords=True)
    data.update(ok=True, user=name, site_file=st.site_display)
    human = f"added {name} to {st.site_display}"
    if name in report.passwords:
        human += (
            f"\nEAP password for {name}: {report.passwords[name]}"
            f"\n(stored in {pki.root / 'eap' / (name + '.password')})"
        )
    st.emit(data, human)


def _device_rows(pki: Pki, site: Site) -> list[dict[str, Any]]:
    from owrt_vpn.site import CERT_AUTH, EAP_PASSWORD_AUTH

    rows = []
    for u in site.users:
        devs = []
        for d in u.devices:
            entry: dict[str, Any] = {"name": d.name, "platform": d.platform}
            if u.auth in CERT_AUTH:
                rec = pki.client_record(u.name, d.name)
                entry["certificate"] = rec.status if rec else "missing"
                entry["not_after"] = rec.not_after if rec else None
            devs.append(entry)
        row: dict[str, Any] = {
            "name": u.name,
            "auth": u.auth,
            "routers": list(u.routers) if u.routers is not None else [r.name for r in site.routers],
            "devices": devs,
        }
        if u.auth in EAP_PASSWORD_AUTH:
            row["eap_password"] = pki.eap_status(u.name)
        rows.append(row)
    return rows


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List users, their devices, auth method and certificate status."""
    from owrt_vpn.pki import Pki

    st = state(ctx)
    site = st.load_site()
    rows = _device_rows(Pki.open(site), site)
    lines = []
    for row in rows:
        extra = f", EAP password {row['eap_password']}" if "eap_password" in row else ""
        lines.append(f"{row['name']} ({row['auth']}; routers: {', '.join(row['routers'])}{extra})")
        for d in row["devices"]:
            cert = ""
            if "certificate" in d:
                cert = f"  certificate {d['certificate']}"
                if d["not_after"]:
                    cert += f", expires {d['not_after'][:10]}"
            lines.append(f"  {d['name']:<16} {d['platform']:<18}{cert}")
    st.emit({"users": rows}, "\n".join(lines) if lines else "no users")


@user_app.command("revoke")
def user_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
    device: Annotated[
        str | None, typer.Option("--device", metavar="NAME", help="Only this device.")
    ] = None,
) -> None:
    """Revoke a user's certificates (and EAP password); the user stays in the site file."""
    from owrt_vpn.pki import Pki

    st = state(ctx)
    site = st.load_site()
    pki = Pki.open(site)
    result = pki.revoke(site, name, device)
    what = [f"certificate {r.user}/{r.device} (serial {r.serial_hex})" for r in result.certs]
    if result.eap:
        what.append(f"EAP password of {name}")
    for item in what:
        st.info(f"revoked {item}")
    target = f"{name}/{device}" if device else name
    human = (
        f"revoked {len(what)} item(s) of {target}; rebuild or push the routers to apply the CRL"
        if what
        else f"nothing to revoke for {target}: already revoked"
    )
    st.emit({"ok": True, "revoked": what}, human)


@user_app.command("remove")
def user_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
) -> None:
    """Revoke everything of a user, delete their secrets and remove them from the site file."""
    from owrt_vpn import siteedit
    from owrt_vpn.pki import Pki
    from owrt_vpn.site import parse_site

    st = state(ctx)
    site = st.load_site()
    site.user(name)
    new_text = siteedit.remove_user(site.path.read_text(encoding="utf-8"), st.site_display, name)
    parse_site(new_text, st.site, st.site_display)
    pki = Pki.open(site)
    if any(r.user == name and r.status == "valid" for r in pki.records(all_records=True)):
        pki.unlock()  # revoking signs a CRL: fail before the site file changes
    _write_site(st.site, new_text)
    result = pki.remove_user(site, name)
    for r in result.certs:
        st.info(f"revoked certificate {r.user}/{r.device} (serial {r.serial_hex})")
    st.emit(
        {"ok": True, "removed": name, "revoked": [r.serial_hex for r in result.certs]},
        f"removed {name} from {st.site_display}; rebuild or push the routers to apply the CRL",
    )


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
) -> None:
    """Set a new EAP password for a user (generated unless --password-stdin)."""
    from owrt_vpn.pki import Pki

    st = state(ctx)
    site = st.load_site()
    site.user(name)
    password = _read_password("--password-stdin") if password_stdin else None
    pki = Pki.open(site)
    new = pki.set_eap_password(site, name, password)
    data: dict[str, Any] = {"ok": True, "user": name}
    human = f"set a new EAP password for {name}"
    if password is None:
        data["password"] = new
        human += f": {new}"
    st.emit(data, human + "; rebuild or push the routers to apply it")
