"""Which routers a command works on and how to reach them: the site's routers, or an inventory file.

A large fleet runs the same build on many routers; the site file names the
build (a ``[[routers]]`` entry), an inventory file lists the physical routers:

.. code-block:: toml

    [defaults]                  # optional: applies to every entry
    user = "root"
    identity_file = "~/.ssh/fleet_ed25519"
    known_hosts = "fleet_known_hosts"

    [[routers]]
    name = "shop-001"           # this router's name in reports
    router = "branch"           # the site router whose build it gets
    address = "198.51.100.20"
    # port = 22

Entries take the connection keys of the site's ``routers[].management``
block (address, port, user, identity_file, known_hosts). The baked keys
(authorized_keys, root_password_hash, lan_address) belong to the build, so
they stay in the site file. Relative paths are relative to the file that
names them; ``~`` is expanded.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from owrt_vpn.errors import ConfigError, Problem, did_you_mean
from owrt_vpn.routers.ssh import SshTarget
from owrt_vpn.site.keys import labels, router_key
from owrt_vpn.site.model import Management, Router, Site

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
CONNECTION_KEYS = ("address", "port", "user", "identity_file", "known_hosts")
BAKED_KEYS = ("authorized_keys", "root_password_hash", "lan_address")


@dataclass(frozen=True)
class RouterTarget:
    """One live router: how to reach it over SSH, and its build in dist/.

    The target of every command that touches a router (flash, push, status,
    doctor --router).
    """

    name: str
    router: Router
    ssh: SshTarget
    build_dir: Path

    @property
    def bakes_access(self) -> bool:
        """True when the build bakes management access (so a reset flash is safe)."""
        return self.router.management.bakes_access


def build_dir(dist: Path, site: Site, router: Router) -> Path:
    """Where ``owrt-vpn build`` puts a router's images: ``<dist>/<site>/routers/<router>/``."""
    return dist / site.name / "routers" / router.name


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def site_targets(site: Site, dist: Path, names: Sequence[str] = ()) -> list[RouterTarget]:
    """The site's routers (those in ``names``, or all) as flash targets.

    ConfigError for an unknown name or a chosen router without a management address.
    """
    chosen = select_names([r.name for r in site.routers], names, site.path.name)
    problems = []
    targets = []
    for r in site.routers:
        if r.name not in chosen:
            continue
        m = r.management
        if m.address is None:
            problems.append(
                Problem(
                    site.path.name,
                    f"{router_key(r)}.management.address",
                    "required to flash this router",
                )
            )
            continue
        ssh = SshTarget(
            host=m.address,
            port=m.port,
            user=m.user,
            identity_file=_path(m.identity_file, site.base_dir),
            known_hosts=_path(m.known_hosts, site.base_dir),
        )
        targets.append(RouterTarget(r.name, r, ssh, build_dir(dist, site, r)))
    if problems:
        raise ConfigError(
            problems, hint="set the address, or pick other routers with --router NAME"
        )
    return sorted(targets, key=lambda t: chosen.index(t.name))


def load_inventory(path: Path, site: Site, dist: Path) -> list[RouterTarget]:
    """Read an inventory file; every problem is reported at once as ConfigError."""
    file = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: inventory file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the inventory: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file, "", f"malformed TOML: {exc}")]) from None

    problems: list[Problem] = []
    for key in data:
        if key not in ("defaults", "routers"):
            problems.append(
                Problem(file, key, f"unknown key{did_you_mean(key, ['defaults', 'routers'])}")
            )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(Problem(file, "defaults", "must be a table"))
        defaults = {}
    for key in defaults:
        if key == "address":
            problems.append(Problem(file, "defaults.address", "each router has its own address"))
        elif key not in CONNECTION_KEYS:
            allowed = ("port", "user", "identity_file", "known_hosts")
            problems.append(Problem(file, f"defaults.{key}", _bad_key_message(key, allowed)))
    entries = data.get("routers")
    if not isinstance(entries, list) or not entries:
        problems.append(Problem(file, "routers", "at least one [[routers]] entry is needed"))
        entries = []

    base = path.resolve().parent
    router_names = [r.name for r in site.routers]
    seen: dict[str, int] = {}
    targets: list[RouterTarget] = []
    for i, (raw, at) in enumerate(zip(entries, labels(entries), strict=True)):
        where = f"routers[{at}]"
        if not isinstance(raw, dict):
            problems.append(Problem(file, where, "must be a table"))
            continue
        entry_problems = _entry_problems(file, where, raw, router_names)
        name = raw.get("name")
        if isinstance(name, str):
            if name in seen:
                entry_problems.append(
                    Problem(
                        file,
                        f"{where}.name",
                        f"duplicate name {name!r} (also routers[{seen[name]}])",
                    )
                )
            seen.setdefault(name, i)
        conn = {k: v for k, v in defaults.items() if k in CONNECTION_KEYS}
        conn.update({k: v for k, v in raw.items() if k in CONNECTION_KEYS})
        mgmt = _management(file, where, conn, entry_problems)
        problems += entry_problems
        if entry_problems or mgmt is None or mgmt.address is None:
            continue
        router = site.router(str(raw["router"]))
        ssh = SshTarget(
            host=mgmt.address,
            port=mgmt.port,
            user=mgmt.user,
            identity_file=_path(mgmt.identity_file, base),
            known_hosts=_path(mgmt.known_hosts, base),
        )
        targets.append(RouterTarget(str(name), router, ssh, build_dir(dist, site, router)))
    if problems:
        raise ConfigError(problems, hint="fix the inventory file and run the command again")
    return targets


def _bad_key_message(key: str, allowed: Sequence[str]) -> str:
    if key in BAKED_KEYS:
        return (
            "is baked into the image at build time: set it in the site file's routers[].management"
        )
    return f"unknown key{did_you_mean(key, allowed)}"


def _entry_problems(
    file: str, where: str, raw: dict[str, Any], router_names: list[str]
) -> list[Problem]:
    problems = []
    name = raw.get("name")
    if name is None:
        problems.append(Problem(file, f"{where}.name", "required key is missing"))
    elif not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append(
            Problem(
                file,
                f"{where}.name",
                f"{name!r} is not a valid name (lowercase letters, digits, '.', '_', '-')",
            )
        )
    router = raw.get("router")
    if router is None:
        problems.append(
            Problem(
                file,
                f"{where}.router",
                "required key is missing (the site router whose build it gets)",
            )
        )
    elif router not in router_names:
        problems.append(
            Problem(
                file,
                f"{where}.router",
                f"no router named {router!r} in the site file"
                + did_you_mean(str(router), router_names),
            )
        )
    if "address" not in raw:
        problems.append(Problem(file, f"{where}.address", "required key is missing"))
    for key in raw:
        if key not in ("name", "router", *CONNECTION_KEYS):
            problems.append(
                Problem(
                    file,
                    f"{where}.{key}",
                    _bad_key_message(key, ("name", "router", *CONNECTION_KEYS)),
                )
            )
    return problems


def _management(
    file: str, where: str, conn: dict[str, Any], problems: list[Problem]
) -> Management | None:
    """Validate the connection keys with the site file's own rules."""
    try:
        return Management.model_validate(conn)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] in ("string_type", "int_type"):
                want = "a string" if err["type"] == "string_type" else "an integer"
                msg = f"must be {want}, not {err['input']!r}"
            problems.append(Problem(file, f"{where}.{key}", msg))
    return None


def select_names(known: Sequence[str], names: Sequence[str], source: str) -> list[str]:
    """``names`` without duplicates (all of ``known`` when empty); ConfigError for unknown ones."""
    if not names:
        return list(known)
    problems = [
        Problem("--router", "", f"no router named {n!r} in {source}{did_you_mean(n, known)}")
        for n in names
        if n not in known
    ]
    if problems:
        raise ConfigError(problems)
    return list(dict.fromkeys(names))


def select(
    targets: Sequence[RouterTarget], names: Sequence[str], source: str
) -> list[RouterTarget]:
    """The targets named in ``names`` (all when empty), in the order given."""
    by_name = {t.name: t for t in targets}
    return [by_name[n] for n in select_names(list(by_name), names, source)]
