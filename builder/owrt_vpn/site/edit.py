"""Edits of the site file that keep its comments and layout (tomlkit).

These functions only transform text; the caller validates the result with
:func:`owrt_vpn.site.model.parse_site` before writing it (atomically), so a bad
edit never reaches the disk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT

from owrt_vpn.errors import ConfigError, Problem
from owrt_vpn.fsutil import held_lock, write_atomic


def real_site_path(path: Path) -> Path:
    """The file a (possibly symlinked) site file really is: edits go there."""
    return Path(os.path.realpath(path))


@contextlib.contextmanager
def editing(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold the site file's edit lock; yield the real file to read and write.

    The lock is an flock on the folder holding the real site file (no lock
    file appears there). Commands that change the site file and the PKI
    together (``user add``, ``user remove``) read the file, check, write it
    and issue certificates inside it, so concurrent edits are serialised
    and none is lost, and nothing is issued without being recorded.
    """
    real = real_site_path(path)
    with held_lock(real.parent, on_wait):
        yield real


def write_site(path: Path, text: str) -> None:
    """Write site file text atomically *through* a symlink, keeping the file's mode."""
    real = real_site_path(path)
    mode = real.stat().st_mode & 0o777 if real.exists() else 0o644
    write_atomic(real, text, mode)


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
