"""`user add|list|revoke|remove|passwd`: users, their devices, their EAP passwords."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.ui.pki_view import ensure_report
from owrt_vpn.ui.state import state

if TYPE_CHECKING:
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site.model import Site


user_app = typer.Typer(
    help="VPN users: add, list, revoke, remove, set passwords.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the `user` command group."""
    app.add_typer(user_app, name="user")


def _read_password(flag: str) -> str:
    """A password from stdin: one line (its newline dropped), validated."""
    from owrt_vpn.pki.policy import check_password

    data = sys.stdin.read()
    if data.endswith("\n"):
        data = data[:-1]
        if data.endswith("\r"):
            data = data[:-1]
    return check_password(data, flag)


def _parse_devices(specs: list[str]) -> list[tuple[str, str]]:
    from owrt_vpn.errors import ConfigError, Problem
    from owrt_vpn.site.model import check_name

    out = []
    problems = []
    for spec in specs:
        name, sep, platform = spec.partition(":")
        if not sep or not name or not platform or ":" in platform:
            problems.append(
                Problem("--device", "", f"{spec!r} is not NAME:PLATFORM (e.g. phone:ios)")
            )
            continue
        try:
            check_name(name)
        except ValueError as exc:
            problems.append(Problem("--device", "", str(exc)))
            continue
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
    from owrt_vpn.errors import ConfigError, Problem, UsageError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site import edit as siteedit
    from owrt_vpn.site.load import parse_site
    from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH, check_name

    st = state(ctx)
    site = st.load_site()
    try:
        check_name(name)  # before anything else: names become PKI folder names
    except ValueError as exc:
        raise ConfigError([Problem("user add", "NAME", str(exc))]) from None
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
    data = ensure_report(st, report, show_passwords=True)
    data.update(ok=True, user=name, site_file=st.site_display)
    human = f"added {name} to {st.site_display}"
    if name in report.passwords:
        human += (
            f"\nEAP password for {name}: {report.passwords[name]}"
            f"\n(stored in {pki.root / 'eap' / (name + '.password')})"
        )
    st.emit(data, human)


def _device_rows(pki: Pki, site: Site) -> list[dict[str, Any]]:
    from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH

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
    from owrt_vpn.pki.authority import Pki

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
    from owrt_vpn.pki.authority import Pki

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
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site import edit as siteedit
    from owrt_vpn.site.load import parse_site

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
    from owrt_vpn.pki.authority import Pki

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
