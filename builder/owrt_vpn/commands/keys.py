"""`keys add|list|remove`: the usign keys that verify OpenWrt downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn.ui.help import WorkflowGroup
from owrt_vpn.ui.state import state

keys_app = typer.Typer(
    cls=WorkflowGroup,
    help="The usign keys that verify OpenWrt downloads (shipped + your own).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the `keys` command group."""
    app.add_typer(keys_app, name="keys")


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List the trusted keys: OpenWrt's (with their source) and yours."""
    from owrt_vpn.imagebuilder import keys

    st = state(ctx)
    items = [(k, "openwrt") for k in keys.shipped_keys()] + [(k, "user") for k in keys.user_keys()]
    data = [
        {
            "key_id": k.key_id,
            "kind": kind,
            "comment": k.comment,
            "source": k.source or k.origin.removeprefix(f"{kind} "),
        }
        for k, kind in items
    ]
    human = "\n".join(f"{d['key_id']}  {d['kind']:<7}  {d['comment']}" for d in data)
    human += f"\nuser keys live in {keys.user_keys_dir()}"
    st.emit({"ok": True, "keys": data}, human)


@keys_app.command("add")
def keys_add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A usign/signify public key file.")],
) -> None:
    """Trust a usign public key for future builds (check it on OpenWrt's signatures page first)."""
    from owrt_vpn.imagebuilder import keys

    st = state(ctx)
    key = keys.add_user_key(file)
    st.emit(
        {"ok": True, "key_id": key.key_id, "comment": key.comment},
        f"added key {key.key_id} ({key.comment})\n"
        f"make sure it is listed on {keys.SIGNATURES_PAGE} (or is your own mirror's key)",
    )


@keys_app.command("remove")
def keys_remove(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="16 hex digits, see `keys list`.")
    ],
) -> None:
    """Stop trusting a key you added."""
    from owrt_vpn.imagebuilder import keys

    st = state(ctx)
    path = keys.remove_user_key(key_id)
    st.emit({"ok": True, "key_id": key_id.lower(), "removed": str(path)}, f"removed {path}")
