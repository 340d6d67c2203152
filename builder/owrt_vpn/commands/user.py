"""`user add|list|revoke|remove|passwd`: users, their devices, their EAP passwords."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owrt_vpn.ui.help import WorkflowGroup
from owrt_vpn.ui.pki_view import ensure_report
from owrt_vpn.ui.secrets import show_new_eap_password
from owrt_vpn.ui.state import State, state

if TYPE_CHECKING:
    from owrt_vpn.errors import ConfigError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.site.model import Site


user_app = typer.Typer(
    cls=WorkflowGroup,
    help="VPN users: add, list, revoke, remove, set passwords.",
    no_args_is_help=True,
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


def _shown(arg: str) -> str:
    """``arg`` as typed, or its ``repr`` when it holds a character that is not printable.

    An error names the argument it refuses: a newline or an escape sequence
    in it must not split the one error line or reach the terminal raw.
    """
    return arg if arg.isprintable() else repr(arg)


def _parse_devices(specs: list[str]) -> list[tuple[str, str]]:
    """``NAME:PLATFORM`` arguments, checked here: one error per bad ``--device``, naming it."""
    from owrt_vpn.errors import ConfigError, Problem, did_you_mean
    from owrt_vpn.site.model import NAME_RE, PLATFORMS

    out = []
    problems = []
    seen: set[str] = set()
    for spec in specs:
        name, sep, platform = spec.partition(":")
        where = f"--device {_shown(spec)}"
        if not sep or not name or not platform or ":" in platform:
            problems.append(Problem(where, "", "not NAME:PLATFORM (e.g. phone:ios)"))
        elif not NAME_RE.fullmatch(name):
            problems.append(
                Problem(where, "", f"device name {name!r}: lowercase letters, digits, . _ - only")
            )
        elif platform not in PLATFORMS:
            problems.append(
                Problem(
                    where,
                    "",
                    f"platform {platform!r} is not one of: {', '.join(PLATFORMS)}"
                    + did_you_mean(platform, PLATFORMS),
                )
            )
        elif name in seen:
            problems.append(Problem(where, "", f"device {name!r} is given twice"))
        else:
            seen.add(name)
            out.append((name, platform))
    if problems:
        raise ConfigError(problems, hint="see `owrt-vpn user add --help`")
    return out


def _check_user_args(name: str, auth: str) -> None:
    """The user's name and auth method, checked before the site file is touched."""
    from owrt_vpn.errors import ConfigError, Problem, did_you_mean
    from owrt_vpn.site.model import AUTH_METHODS, NAME_RE

    problems = []
    if not NAME_RE.fullmatch(name):
        problems.append(
            Problem("NAME", "", f"{name!r}: lowercase letters, digits, . _ - only (at most 63)")
        )
    if auth not in AUTH_METHODS:
        problems.append(
            Problem(
                f"--auth {_shown(auth)}",
                "",
                f"not one of: {', '.join(AUTH_METHODS)}" + did_you_mean(auth, AUTH_METHODS),
            )
        )
    if problems:
        raise ConfigError(problems, hint="see `owrt-vpn user add --help`")


def _unchanged(exc: ConfigError, site_file: str) -> ConfigError:
    """``exc`` (the new user's problems, named ``users[<name>]``) saying nothing was written."""
    from owrt_vpn.errors import ConfigError

    return ConfigError(
        list(exc.problems) or exc.message,
        hint=f"the user was not added: {site_file} is unchanged",
    )


def _waiting(st: State) -> Callable[[], None]:
    return lambda: st.info(f"waiting for another edit of {st.site_display}")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="The user's name (lowercase letters, digits, . _ -).",
            show_default=False,
        ),
    ],
    auth: Annotated[
        str,
        typer.Option(
            "--auth",
            metavar="[pubkey|eap-tls|eap-mschapv2|pubkey+eap-mschapv2]",
            help="How the user authenticates.",
        ),
    ] = "pubkey",
    devices: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            metavar="NAME:PLATFORM",
            help="A device (repeatable); PLATFORM: ios, macos, android, android-strongswan, "
            "windows or linux. Example: --device phone:ios",
        ),
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
    from owrt_vpn.site.keys import user_key
    from owrt_vpn.site.load import parse_site
    from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH

    st = state(ctx)
    _check_user_args(name, auth)
    if not devices:
        raise UsageError(
            "user add: at least one --device NAME:PLATFORM is needed",
            hint="e.g. `owrt-vpn user add alice --device phone:ios`",
        )
    specs = _parse_devices(devices)
    if password_stdin and auth not in EAP_PASSWORD_AUTH:
        raise UsageError(f"user add: --password-stdin needs an EAP auth method, not {auth!r}")
    password = _read_password("--password-stdin") if password_stdin else None
    # Read, check, write and issue under the site file's edit lock: parallel
    # `user add`s are serialised, none is lost, nothing is issued unrecorded.
    with siteedit.editing(st.site, _waiting(st)):
        site = st.load_site()
        if any(u.name == name for u in site.users):
            raise ConfigError(
                [Problem(site.path.name, f"{user_key(name)}.name", f"user {name!r} exists")]
            )
        text = site.path.read_text(encoding="utf-8")
        new_text = siteedit.add_user(text, name=name, auth=auth, devices=specs, routers=routers)
        try:
            new_site = parse_site(new_text, st.site, st.site_display)
        except ConfigError as exc:
            raise _unchanged(exc, st.site_display) from None
        pki = Pki.open(new_site)
        if auth in CERT_AUTH:
            pki.unlock()  # no passphrase, no CA: fail before the site file changes
        siteedit.write_site(st.site, new_text)
        if password is not None:
            pki.set_eap_password(new_site, name, password)
        report = pki.ensure_user(new_site, name)
    data = ensure_report(st, report)  # never a password in --json
    data.update(ok=True, user=name, site_file=st.site_display)
    human = f"added {name} to {st.site_display}"
    if name in report.passwords:
        human += "\n" + show_new_eap_password(st.json, pki.root, name, report.passwords[name])
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
    with siteedit.editing(st.site, _waiting(st)):
        site = st.load_site()
        site.user(name)
        text = site.path.read_text(encoding="utf-8")
        new_text = siteedit.remove_user(text, st.site_display, name)
        parse_site(new_text, st.site, st.site_display)
        pki = Pki.open(site)
        if any(r.user == name and r.status == "valid" for r in pki.records(all_records=True)):
            pki.unlock()  # revoking signs a CRL: fail before the site file changes
        siteedit.write_site(st.site, new_text)
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
    generate: Annotated[
        bool,
        typer.Option(
            "--generate",
            help="Generate the new password (needed outside a terminal, where it is not shown).",
        ),
    ] = False,
) -> None:
    """Set a new EAP password for a user (generated unless --password-stdin)."""
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    site = st.load_site()
    user = site.user(name)
    if password_stdin and generate:
        raise UsageError("user passwd: --password-stdin and --generate exclude each other")
    from owrt_vpn.site.model import EAP_PASSWORD_AUTH

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if user.auth in EAP_PASSWORD_AUTH and not (password_stdin or generate or interactive):
        # A script or a pipe: replacing a working password must be asked for.
        raise UsageError(
            "user passwd: not a terminal: say how the new password is made",
            hint="pass --password-stdin (read it) or --generate (it is then not shown: "
            "`owrt-vpn bundle --show-passwords` shows it)",
        )
    password = _read_password("--password-stdin") if password_stdin else None
    pki = Pki.open(site)
    new = pki.set_eap_password(site, name, password)
    data: dict[str, Any] = {"ok": True, "user": name}  # never a password in --json
    human = f"set a new EAP password for {name}; rebuild or push the routers to apply it"
    if password is None:
        human += "\n" + show_new_eap_password(st.json, pki.root, name, new)
    st.emit(data, human)
