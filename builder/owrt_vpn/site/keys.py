"""How errors name a site file's entries: ``users[alice].devices[phone].platform``.

An entry of ``[[routers]]``, ``[[users]]`` or ``[[users.devices]]`` is named
by its ``name``; only an entry whose name is missing, not a valid name, or
given to another entry of the same list too is named by its position,
counted from 0 (``users[2]``). A name made only of digits is quoted
(``users["2"]``), so that it never reads as a position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from owrt_vpn.site.model import NAME_RE, Device, Router, User


def label(name: str) -> str:
    """What goes between the brackets for an entry called ``name``."""
    return f'"{name}"' if name.isdigit() else name


def labels(entries: Sequence[Any]) -> list[str]:
    """The bracket text of each item of a raw (parsed TOML) list, in order.

    A table with a valid name used once in the list gets its name; any
    other item (a duplicate, a table without a valid name, a plain value)
    gets its position.
    """
    names = [_valid_name(e) for e in entries]
    count = Counter(n for n in names if n is not None)
    return [label(n) if n is not None and count[n] == 1 else str(i) for i, n in enumerate(names)]


def router_key(router: Router | str) -> str:
    """``routers[<name>]`` for a router of a loaded site."""
    name = router.name if isinstance(router, Router) else router
    return f"routers[{label(name)}]"


def user_key(user: User | str) -> str:
    """``users[<name>]`` for a user of a loaded site."""
    name = user.name if isinstance(user, User) else user
    return f"users[{label(name)}]"


def device_key(user: User | str, device: Device | str) -> str:
    """``users[<user>].devices[<device>]`` for a device of a loaded site."""
    name = device.name if isinstance(device, Device) else device
    return f"{user_key(user)}.devices[{label(name)}]"


def _valid_name(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    return name if isinstance(name, str) and NAME_RE.fullmatch(name) else None
