"""Validation of a site file's text: TOML, each section, then cross-section rules.

Kept apart from the model (:mod:`owrt_vpn.site.model`) so that each reads in one
sitting. Every problem is collected and raised together as one
:class:`~owrt_vpn.errors.ConfigError`, each naming ``file: key.path``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from owrt_vpn.errors import ConfigError, Problem, did_you_mean
from owrt_vpn.site.keys import labels
from owrt_vpn.site.model import (
    AUTH_METHODS,
    CERT_AUTH,
    PLATFORM_AUTH,
    Router,
    SiteSettings,
    User,
)

T = TypeVar("T", bound=BaseModel)

TOP_KEYS = ("site", "routers", "users")

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
}


# Valid stand-ins for required keys whose value is broken (see _validate).
_STAND_INS: Mapping[str, Any] = {
    "name": "invalid",
    "server_id": "invalid.invalid",
    "release": "snapshot",
    "target": "invalid",
    "device": "invalid",
    "devices": ({"name": "invalid", "platform": "linux"},),
}


@dataclass(frozen=True)
class _Parsed(Generic[T]):
    """One section that validated (possibly after dropping its bad keys)."""

    index: int
    # How problems name the section: ``site``, ``routers[gw]``, ``users[2]``
    # (see owrt_vpn.site.keys), and the table as written.
    at: str
    raw: dict[str, Any]
    model: T
    # Top-level keys of the section that had problems: the model holds the
    # defaults there, so cross-section rules must not trust those fields.
    broken: frozenset[str]


def validate_document(
    text: str, file: str
) -> tuple[SiteSettings, tuple[Router, ...], tuple[User, ...]]:
    """Parse and validate a whole site file; ConfigError lists every problem."""
    data = _load_toml(text, file)
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(file, key, f"unknown key{did_you_mean(key, TOP_KEYS)}"))

    settings: _Parsed[SiteSettings] | None = None
    if "site" not in data:
        problems.append(Problem(file, "site", "the [site] table is missing"))
    else:
        settings = _validate(SiteSettings, data["site"], -1, "site", file, problems)

    raw_routers = _array(data, "routers", file, problems, required=True)
    # Where each entry sits in the file, by the prefix its problems carry.
    order: dict[str, tuple[int, int]] = {}
    routers: list[_Parsed[Router]] = []
    for i, at in enumerate(labels(raw_routers)):
        order[f"routers[{at}]"] = (2, i)
        router = _validate(Router, raw_routers[i], i, f"routers[{at}]", file, problems)
        if router is not None:
            routers.append(router)
    raw_users = _array(data, "users", file, problems, required=False)
    users: list[_Parsed[User]] = []
    for i, at in enumerate(labels(raw_users)):
        order[f"users[{at}]"] = (3, i)
        user = _validate(User, raw_users[i], i, f"users[{at}]", file, problems)
        if user is not None:
            users.append(user)

    problems += _cross_checks(file, settings, routers, users, raw_routers, raw_users)
    if problems:
        problems.sort(key=lambda p: _document_order(p, order))
        raise ConfigError(problems, hint="fix the site file and run `owrt-vpn check` again")
    assert settings is not None
    return settings.model, tuple(r.model for r in routers), tuple(u.model for u in users)


def _document_order(problem: Problem, order: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """Sort key: problems grouped by section (site, each router, each user), stable.

    ``order`` maps an entry's prefix (``users[alice]``) to its section and
    position: entries are named, and their names do not sort as the file does.
    """
    m = re.match(r"^(\w+)(\[[^\]]*\])?", problem.path)
    if m is None:
        return 0, 0
    section = m.group(1)
    rank = {"site": 1, "routers": 2, "users": 3}.get(section, 0)
    return order.get(m.group(0), (rank, -1))


def _load_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        detail = re.sub(r" \(at (line \d+, column \d+|end of document)\)$", "", msg)
        line = getattr(exc, "lineno", None)  # Python >= 3.14 carries it
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        if m:
            line = int(m.group(1))
        if line is None:
            # tomllib says "at end of document" for unterminated constructs.
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
            detail += " at end of file"
        raise ConfigError(
            [Problem(file, f"line {line}", f"malformed TOML: {detail}")],
            hint="see https://toml.io for the syntax",
        ) from None


def _array(
    data: Mapping[str, Any], key: str, file: str, problems: list[Problem], *, required: bool
) -> list[Any]:
    raw = data.get(key)
    if raw is None:
        if required:
            problems.append(Problem(file, key, f"at least one [[{key}]] table is needed"))
        return []
    if not isinstance(raw, list):
        what = "table" if isinstance(raw, dict) else type(raw).__name__
        problems.append(Problem(file, key, f"must be an array of tables ([[{key}]]), not a {what}"))
        return []
    if required and not raw:
        problems.append(Problem(file, key, f"at least one [[{key}]] table is needed"))
    return raw


def _validate(
    model: type[T], data: Any, index: int, prefix: str, file: str, problems: list[Problem]
) -> _Parsed[T] | None:
    if not isinstance(data, dict):
        problems.append(Problem(file, prefix, f"must be a table, not {type(data).__name__}"))
        return None
    try:
        # TOML arrays arrive as lists; the model stores tuples (frozen).
        return _Parsed(index, prefix, data, model.model_validate(_tuples(data)), frozenset())
    except ValidationError as exc:
        errors = exc.errors()
    # pydantic also reports a list as too short when its only item failed:
    # one mistake, one message.
    inner = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    inner |= {tuple(e["loc"][:i]) for e in errors for i in range(1, len(e["loc"]))}
    errors = [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in inner)]
    for err in errors:
        problems.append(Problem(file, _loc_path(prefix, err["loc"], data), _message(err, model)))
    # Try again without the offending keys (stand-ins for required ones), so
    # that the cross-section checks still see this section and the user gets
    # every problem in one run. The problems are already recorded above, and
    # the cross-section checks skip every key listed in `broken`.
    broken = frozenset(str(e["loc"][0]) for e in errors if e["loc"])
    rest = {k: v for k, v in data.items() if k not in broken}
    rest |= {k: v for k, v in _STAND_INS.items() if k in broken}
    try:
        return _Parsed(index, prefix, data, model.model_validate(_tuples(rest)), broken)
    except ValidationError:
        return None


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _loc_path(prefix: str, loc: Sequence[int | str], data: Any) -> str:
    """The key path of pydantic's ``loc`` in ``data``: tables in a list by their name."""
    out, node = prefix, data
    for part in loc:
        if isinstance(part, int):
            named = isinstance(node, list) and 0 <= part < len(node)
            out += f"[{labels(node)[part] if named else part}]"
            node = node[part] if named else None
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names valid at ``loc`` inside ``model`` (for "did you mean")."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(current.model_fields) if current is not None else []


def _model_in(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    loc = err["loc"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        return f"unknown key{did_you_mean(str(loc[-1]), known)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        value = err["input"]
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"{value!r} is not one of: {', '.join(choices)}{hint}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "too_short" and loc and loc[-1] == "devices":
        return "at least one [[users.devices]] entry is needed"
    if kind in ("greater_than_equal", "less_than_equal"):
        op = ">=" if kind == "greater_than_equal" else "<="
        bound = ctx.get("ge", ctx.get("le"))
        return f"must be {op} {bound}, not {err['input']!r}"
    if kind in _TYPE_WORDS:
        value = err["input"]
        shown = "a table" if isinstance(value, dict) else f"{type(value).__name__} {value!r}"
        return f"must be {_TYPE_WORDS[kind]}, not {shown}"
    return str(err["msg"])


# --------------------------------------------------------------------------
# rules across sections


def _duplicates(file: str, prefix: str, items: Sequence[tuple[int, str]]) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, name in items:
        if name in seen:
            where = f"{prefix}[{seen[name]}]"
            out.append(
                Problem(file, f"{prefix}[{i}].name", f"duplicate name {name!r} (also {where})")
            )
        else:
            seen[name] = i
    return out


def _usable(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    # strongSwan's in-memory pool skips the network and broadcast address of
    # IPv4 subnets larger than /31 (and the all-zero address of IPv6 ones).
    if net.version == 6:
        return net.num_addresses - 1
    return net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses


def _devices_on(router: str, raw_users: Sequence[Any]) -> int:
    """How many devices may connect to ``router``, counted from the raw file.

    Counted from the raw data so that a user with an unrelated mistake (a
    misspelt platform) still counts towards the pool size.
    """
    total = 0
    for raw in raw_users:
        if not isinstance(raw, dict) or not isinstance(raw.get("devices"), list):
            continue
        allowed = raw.get("routers")
        if isinstance(allowed, list) and router not in allowed:
            continue
        total += len(raw["devices"])
    return total


def _release_problem(release: str) -> str | None:
    from owrt_vpn.profiles import load, release_series

    known = load("releases")["series"]
    series = release_series(release)
    if series in known:
        return None
    return f"unknown OpenWrt release series {series!r} (known: {', '.join(sorted(known))})"


def _router_checks(file: str, p: _Parsed[Router], raw_users: Sequence[Any]) -> list[Problem]:
    r, at, broken = p.model, p.at, p.broken
    problems: list[Problem] = []
    if "release" not in broken and (msg := _release_problem(r.release)):
        problems.append(Problem(file, f"{at}.release", msg))
    if not broken & {"lan", "pool"}:
        for j, lan in enumerate(r.lan_networks):
            if lan.version == 4 and r.pool_network.overlaps(lan):
                msg = f"{r.pool} overlaps the LAN {lan} (lan[{j}])"
                problems.append(Problem(file, f"{at}.pool", msg))
    pool6 = r.pool6_network
    if pool6 is not None and not broken & {"lan", "pool6"}:
        for j, lan in enumerate(r.lan_networks):
            if lan.version == 6 and pool6.overlaps(lan):
                msg = f"{r.pool6} overlaps the LAN {lan} (lan[{j}])"
                problems.append(Problem(file, f"{at}.pool6", msg))
    lan_address = r.management.lan_address
    if lan_address is not None and not broken & {"lan", "management"}:
        addr = ipaddress.ip_interface(lan_address)
        if not any(addr.ip in lan for lan in r.lan_networks):
            msg = f"{lan_address} is not inside the router's LAN ({', '.join(r.lan)})"
            problems.append(Problem(file, f"{at}.management.lan_address", msg))
    need = _devices_on(r.name, raw_users)
    for key, net in (("pool", r.pool_network), ("pool6", pool6)):
        if net is not None and key not in broken and need > _usable(net):
            msg = f"{net} has {_usable(net)} usable addresses but {need} devices may connect"
            problems.append(Problem(file, f"{at}.{key}", msg))
    return problems


def _user_checks(
    file: str,
    p: _Parsed[User],
    settings: _Parsed[SiteSettings] | None,
    router_names: Sequence[str],
) -> list[Problem]:
    u, at, broken = p.model, p.at, p.broken
    problems: list[Problem] = []
    if "devices" not in broken:
        problems += _duplicates(file, f"{at}.devices", list(enumerate(d.name for d in u.devices)))
    if u.routers is not None and "routers" not in broken:
        for j, name in enumerate(u.routers):
            if name not in router_names:
                msg = f"no router named {name!r}{did_you_mean(name, router_names)}"
                problems.append(Problem(file, f"{at}.routers[{j}]", msg))
    if "auth" in broken or "devices" in broken:
        return problems
    # Not broken: the model's devices are the file's, one for one.
    for d, label in zip(u.devices, labels(p.raw["devices"]), strict=True):
        if u.auth not in PLATFORM_AUTH[d.platform]:
            can = ", ".join(m for m in AUTH_METHODS if m in PLATFORM_AUTH[d.platform])
            msg = f"{d.platform!r} cannot use auth {u.auth!r} ({at}.auth); it can use: {can}"
            problems.append(Problem(file, f"{at}.devices[{label}].platform", msg))
        if d.shared_identity:
            where = f"{at}.devices[{label}].shared_identity"
            site_ok = settings is not None and "shared_identity" not in settings.broken
            if site_ok and settings is not None and settings.model.shared_identity is None:
                problems.append(Problem(file, where, "needs site.shared_identity to be set"))
            if u.auth not in CERT_AUTH:
                msg = f"only applies to certificate auth, not {u.auth!r}"
                problems.append(Problem(file, where, msg))
            elif u.auth == "pubkey+eap-mschapv2":
                # One connection serves every device on the shared identity, so
                # the router could not demand this user's EAP round.
                msg = (
                    "a pubkey+eap-mschapv2 device cannot use the shared identity: any "
                    "certificate carrying it would be accepted without the EAP round"
                )
                problems.append(Problem(file, where, msg))
    return problems


def _cross_checks(
    file: str,
    settings: _Parsed[SiteSettings] | None,
    routers: Sequence[_Parsed[Router]],
    users: Sequence[_Parsed[User]],
    raw_routers: Sequence[Any],
    raw_users: Sequence[Any],
) -> list[Problem]:
    problems: list[Problem] = []
    for prefix, parsed in (("routers", routers), ("users", users)):
        names = [(p.index, p.model.name) for p in parsed if "name" not in p.broken]
        problems += _duplicates(file, prefix, names)
    # Names as written, so that a router with an unrelated mistake does not
    # turn every reference to it into a second, misleading problem.
    router_names = [raw["name"] for raw in raw_routers if isinstance(raw, dict) and "name" in raw]
    if settings is not None and not settings.broken & {"crypto", "allow_weak"}:
        s = settings.model
        if s.crypto == "legacy" and not s.allow_weak:
            msg = "'legacy' adds modp1024/3DES/SHA-1 and needs allow_weak = true"
            problems.append(Problem(file, "site.crypto", msg))
    for r in routers:
        problems += _router_checks(file, r, raw_users)
    for u in users:
        problems += _user_checks(file, u, settings, router_names)
    opted_in = settings is not None and settings.model.allow_password_only_alongside_2fa
    if not opted_in:
        problems += _password_only_alongside_2fa(file, routers, users)
    return problems


def _password_only_alongside_2fa(
    file: str, routers: Sequence[_Parsed[Router]], users: Sequence[_Parsed[User]]
) -> list[Problem]:
    """pubkey+eap-mschapv2 and eap-mschapv2 users on one router (one problem per router).

    strongSwan's EAP secrets are global and the password-only connection
    cannot exclude a user, so the 2FA users' passwords alone would log in.
    """
    problems = []
    for r in routers:
        if "name" in r.broken:
            continue
        name = r.model.name
        on = [u for u in users if not u.broken & {"auth", "routers", "name"}]
        on = [u for u in on if u.model.routers is None or name in u.model.routers]
        two = [u for u in on if u.model.auth == "pubkey+eap-mschapv2"]
        pw = [u for u in on if u.model.auth == "eap-mschapv2"]
        if two and pw:
            first = two[0]
            msg = (
                f"router {name!r} has pubkey+eap-mschapv2 users "
                f"({', '.join(u.model.name for u in two)}) and eap-mschapv2 users "
                f"({', '.join(u.model.name for u in pw)}): the first group could log in with "
                "the password alone; move one group to another router (users.routers) "
                "or set allow_password_only_alongside_2fa = true in [site]"
            )
            problems.append(Problem(file, f"{first.at}.auth", msg))
    return problems
