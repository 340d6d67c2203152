"""`init` and `check`: create and validate the site file."""

from __future__ import annotations

from pathlib import Path

import typer

from owrt_vpn.cli import state


def register(app: typer.Typer) -> None:
    """Add `init` and `check`."""
    app.command("init")(init)
    app.command("check")(check)


def init(
    ctx: typer.Context,
    directory: Path = typer.Argument(Path("."), metavar="[DIR]", help="Where to write owrt-vpn.toml."),
    server_id: str = typer.Option(
        "vpn.example.org", "--server-id", help="DNS name or IP address clients dial."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented owrt-vpn.toml that works as is."""
    from string import Template

    from owrt_vpn import profiles
    from owrt_vpn.errors import ConfigError, Problem
    from owrt_vpn.fsutil import write_atomic
    from owrt_vpn.resources import profiles_dir
    from owrt_vpn.site import parse_site

    st = state(ctx)
    target = profiles.default_target()
    tinfo = profiles.target_info(target)
    text = Template((profiles_dir() / "site-template.toml").read_text()).substitute(
        server_id=server_id,
        release=profiles.default_release(),
        target=target,
        subtarget=tinfo["default_subtarget"],
        device=tinfo["default_device"],
    )
    dest = directory / "owrt-vpn.toml"
    # Validate before writing: a bad --server-id must not leave a broken file.
    try:
        parse_site(text, dest, str(dest))
    except ConfigError as exc:
        bad = [p for p in exc.problems if p.path.endswith("server_id")]
        if bad:
            raise ConfigError(
                [Problem("--server-id", "", bad[0].message)],
                hint="pass a DNS name such as vpn.example.org or an IP address",
            ) from None
        raise
    if dest.exists() and not force:
        raise ConfigError(
            f"{dest}: already exists", hint="use --force to overwrite it"
        )
    write_atomic(dest, text, 0o644)
    st.emit({"ok": True, "site_file": str(dest)}, f"wrote {dest}\nnext: edit it, then run `owrt-vpn check`")


def check(ctx: typer.Context) -> None:
    """Validate the site file and report every problem at once."""
    st = state(ctx)
    site = st.load_site()
    warnings: list[str] = []
    try:
        from owrt_vpn import checks
    except ImportError:  # pragma: no cover - until the PKI checks exist
        checks = None  # type: ignore[assignment]
    if checks is not None:
        warnings = checks.site_warnings(site)
    for w in warnings:
        st.warn(w)
    st.emit(
        {
            "ok": True,
            "site": site.name,
            "routers": [r.name for r in site.routers],
            "users": [u.name for u in site.users],
            "warnings": warnings,
        },
        f"{st.site_display}: ok ({len(site.routers)} router(s), {len(site.users)} user(s))",
    )
