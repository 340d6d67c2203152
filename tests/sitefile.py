"""The test site file, built: the common site with only what a test changes spelt out.

``site()`` is the site most tests start from: site "home", router "gw" (a
Phicomm K3 on 24.10.2, server id vpn.example.org) and alice with an iPhone::

    site()                                        # the common site
    site("lab", crypto="compat", routers=[router(), router("gw2", pool="10.10.20.0/24")])
    site(users=[user("bob", [("phone", "android")], auth="eap-mschapv2")])
    site(routers=[router(management={"address": "198.51.100.2"})])

Every function returns TOML text; keyword options become ``key = value``
lines in the order given (strings, numbers, booleans, lists and tables are
written as TOML; paths and IP addresses/networks as strings). Deliberately
odd or broken site files (the bad-input corpus in test_bad_input.py,
test_site.py's odd values) are written by hand where they are tested.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence

IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)
# A device: (name, platform) or (name, platform, {option: value}).
DeviceSpec = tuple[str, str] | tuple[str, str, Mapping[str, object]]


def value(v: object) -> str:
    """``v`` as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes are TOML basic-string escapes; characters beyond ASCII
        # stay literal (JSON would write astral ones as surrogate pairs, which
        # TOML refuses), DEL is escaped (TOML refuses it literally).
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, os.PathLike):
        return value(os.fspath(v))
    if isinstance(v, IP_TYPES):
        return value(str(v))
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, Sequence):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def _lines(options: Mapping[str, object]) -> str:
    return "".join(f"{k} = {value(v)}\n" for k, v in options.items() if v is not None)


def router(
    name: str = "gw",
    *,
    server_id: str = "vpn.example.org",
    release: str = "24.10.2",
    target: str = "bcm53xx",
    subtarget: str | None = None,
    device: str = "phicomm_k3",
    management: Mapping[str, object] | None = None,
    **options: object,
) -> str:
    """One ``[[routers]]`` table (``None`` options are left out), and its management table."""
    text = "\n[[routers]]\n" + _lines(
        {"name": name, "server_id": server_id, "release": release, "target": target,
         "subtarget": subtarget, "device": device, **options}
    )  # fmt: skip
    if management is not None:
        text += "\n[routers.management]\n" + _lines(management)
    return text


def user(
    name: str = "alice",
    devices: Iterable[DeviceSpec] = (("phone", "ios"),),
    *,
    auth: str | None = None,
    **options: object,
) -> str:
    """One ``[[users]]`` table with its ``[[users.devices]]``."""
    text = "\n[[users]]\n" + _lines({"name": name, "auth": auth, **options})
    for dev in devices:
        extra: Mapping[str, object] = dev[2] if len(dev) == 3 else {}  # type: ignore[misc]
        text += "[[users.devices]]\n" + _lines({"name": dev[0], "platform": dev[1], **extra})
    return text


def site(
    name: str = "home",
    *,
    routers: Iterable[str] | None = None,
    users: Iterable[str] | None = None,
    **settings: object,
) -> str:
    """A whole site file: ``[site]`` (name, then ``settings``), routers, users.

    ``routers`` defaults to ``[router()]``, ``users`` to ``[user()]``
    (alice's iPhone); ``users=[]`` gives a site without users.
    """
    routers = [router()] if routers is None else list(routers)
    users = [user()] if users is None else list(users)
    return "[site]\n" + _lines({"name": name, **settings}) + "".join(routers) + "".join(users)


# The second router of the two-router build tests (another target and LAN).
SECOND_ROUTER = router(
    "gw2",
    server_id="vpn2.example.org",
    target="ath79",
    subtarget="generic",
    device="tplink_archer-c7-v5",
    lan=["192.168.2.0/24"],
    pool="10.10.20.0/24",
)
