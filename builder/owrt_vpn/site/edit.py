"""Edits of the site file that keep its comments and layout (tomlkit).

These functions only transform text; the caller validates the result with
:func:`owrt_vpn.site.model.parse_site` before writing it (atomically), so a bad
edit never reaches the disk.
"""

from __future__ import annotations

from collections.abc import Sequence

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT

from owrt_vpn.errors import ConfigError, Problem


def add_user(
    text: str,
    *,
    name: str,
    auth: str,
    devices: Sequence[tuple[str, str]],
    routers: Sequence[str] | None = None,
) -> str:
    """``text`` with a new ``[[users]]`` table (and its ``[[users.devices]]``) at the end.

    Appending text leaves every existing byte, comment and blank line as it was.
    """
    user = tomlkit.table()
    user.add("name", name)
    user.add("auth", auth)
    if routers:
        user.add("routers", list(routers))
    devs = tomlkit.aot()
    for dev_name, platform in devices:
        dev = tomlkit.table()
        dev.add("name", dev_name)
        dev.add("platform", platform)
        devs.append(dev)
    user.add("devices", devs)
    block = tomlkit.dumps({"users": [user]})
    return text.rstrip("\n") + "\n\n" + block.strip("\n") + "\n"


def _users(doc: tomlkit.TOMLDocument, file: str) -> AoT:
    users = doc.get("users")
    if not isinstance(users, AoT):
        raise ConfigError(
            [Problem(file, "users", "is not written as [[users]] tables; edit the file by hand")]
        )
    return users


def remove_user(text: str, file: str, name: str) -> str:
    """``text`` without the ``[[users]]`` table named ``name``; other comments stay."""
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError([Problem(file, "", f"malformed TOML: {exc}")]) from None
    users = _users(doc, file)
    for i, table in enumerate(users):
        if table.get("name") == name:
            del users[i]
            break
    else:
        raise ConfigError([Problem(file, "users", f"no user named {name!r}")])
    if not len(users):
        del doc["users"]
    return tomlkit.dumps(doc)
