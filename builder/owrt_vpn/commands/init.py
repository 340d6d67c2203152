"""`init`: write a commented site file that works as is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn.profiles import DEFAULT_MIRROR
from owrt_vpn.ui.state import state

SITE_FILE = "owrt-vpn.toml"


def register(app: typer.Typer) -> None:
    """Add `init`."""
    app.command("init")(init)


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where to write owrt-vpn.toml.")
    ] = Path("."),
    server_id: Annotated[
        str,
        typer.Option("--server-id", metavar="HOST", help="DNS name or IP address clients dial."),
    ] = "vpn.example.org",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    mirror: Annotated[
        str,
        typer.Option(
            metavar="URL|DIR",
            envvar="OWRT_VPN_MIRROR",
            help="Where to look up the newest stable release (a short timeout).",
        ),
    ] = DEFAULT_MIRROR,
    offline: Annotated[
        bool, typer.Option("--offline", help="Write the pinned default release; ask no mirror.")
    ] = False,
) -> None:
    """Write a commented owrt-vpn.toml that works as is."""
    from string import Template

    from owrt_vpn import profiles
    from owrt_vpn.errors import ConfigError, Problem
    from owrt_vpn.fsutil import write_atomic
    from owrt_vpn.resources import profiles_dir
    from owrt_vpn.site.load import parse_site
    from owrt_vpn.site.model import validate_server_id
    from owrt_vpn.ui.gitignore import gitignore_text

    st = state(ctx)
    # Check the identity before it goes into the TOML text: a quote or a
    # newline in it would otherwise surface as a confusing TOML error.
    try:
        validate_server_id(server_id)
    except ValueError as exc:
        raise ConfigError(
            [Problem("--server-id", "", str(exc))],
            hint="pass a DNS name such as vpn.example.org or an IP address",
        ) from None
    dest = directory / SITE_FILE
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory", hint="pass the folder to write into")
    if dest.exists() and not force:
        raise ConfigError(f"{dest}: already exists", hint="use --force to overwrite it")

    from owrt_vpn.imagebuilder.announce import Choice, default_release

    if offline:
        choice = Choice(profiles.default_release(), "the pinned default (--offline)")
    else:
        choice = default_release(mirror)
    target = profiles.default_target()
    tinfo = profiles.target_info(target)
    text = Template((profiles_dir() / "site-template.toml").read_text()).substitute(
        server_id=server_id,
        release=choice.release,
        target=target,
        subtarget=tinfo["default_subtarget"],
        device=tinfo["default_device"],
    )
    # The template must produce a file `check` accepts; validate before
    # writing so that nothing broken ever lands on disk.
    parse_site(text, dest, str(dest))
    ignore = directory / ".gitignore"
    try:
        existing = ignore.read_text(encoding="utf-8") if ignore.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ignore}: cannot read: {exc}") from None
    ignore_text = gitignore_text(existing)
    write_atomic(dest, text, 0o644)
    done = f"wrote {dest}"
    if ignore_text is not None:
        # The PKI folder and dist/ hold plain keys: never into git by accident.
        write_atomic(ignore, ignore_text, 0o644)
        done += f"\nwrote {ignore} (keeps pki/ and dist/ out of git)"
    st.info(f"release {choice.release}: {choice.source}")
    st.emit(
        {
            "ok": True,
            "site_file": str(dest),
            "server_id": server_id,
            "release": choice.release,
            "release_source": choice.source,
        },
        f"{done}\nnext: edit it, then run `owrt-vpn check`",
    )
