"""The site file (`owrt-vpn.toml`): a frozen, typed, validated model.

The whole file is checked and *every* problem is reported at once, each as
``<file>: <key.path>: <problem>``. Sections are validated one by one (the
``[site]`` table, each router, each user) so that a bad user does not hide a
bad router, then cross-section rules run over what parsed.

Vocabulary fixed here and used by every later stage:

- auth methods: ``pubkey``, ``eap-tls``, ``eap-mschapv2``,
  ``pubkey+eap-mschapv2`` (certificate, then an EAP-MSCHAPv2 second round);
- platforms: ``ios``, ``macos``, ``android`` (built-in client),
  ``android-strongswan``, ``windows``, ``linux``;
- crypto profiles: ``compat`` (default), ``modern``, ``legacy`` (needs
  ``allow_weak = true``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from owrt_vpn.errors import ConfigError, Problem

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
RELEASE_RE = re.compile(r"^(\d{2}\.\d{2}\.(\d+|x)(-rc\d+)?|snapshot|SNAPSHOT)$")
TARGET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.,-]{0,79}$")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# A crypt(3) hash as /etc/shadow holds it ($1$, $5$, $6$, yescrypt $y$ ...).
PASSWORD_HASH_RE = re.compile(r"^\$[0-9a-z]+\$[./A-Za-z0-9$=,]+$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/=]+( [^\n\r]*)?$"
)

AUTH_METHODS = ("pubkey", "eap-tls", "eap-mschapv2", "pubkey+eap-mschapv2")
PLATFORMS = ("ios", "macos", "android", "android-strongswan", "windows", "linux")
CRYPTO_PROFILES = ("compat", "modern", "legacy")

AuthMethod = Literal["pubkey", "eap-tls", "eap-mschapv2", "pubkey+eap-mschapv2"]
Platform = Literal["ios", "macos", "android", "android-strongswan", "windows", "linux"]
CryptoProfile = Literal["compat", "modern", "legacy"]
KeyType = Literal["rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"]

# Which auth methods each platform's client can do (see the guide and
# reference/clients.md): Android's built-in client has no EAP-TLS and no
# second round; only the strongSwan app and Linux (charon) do the second round.
PLATFORM_AUTH: Mapping[str, frozenset[str]] = {
    "ios": frozenset({"pubkey", "eap-tls", "eap-mschapv2"}),
    "macos": frozenset({"pubkey", "eap-tls", "eap-mschapv2"}),
    "android": frozenset({"pubkey", "eap-mschapv2"}),
    "android-strongswan": frozenset(AUTH_METHODS),
    "windows": frozenset({"pubkey", "eap-tls", "eap-mschapv2"}),
    "linux": frozenset(AUTH_METHODS),
}

CERT_AUTH = frozenset({"pubkey", "eap-tls", "pubkey+eap-mschapv2"})
EAP_PASSWORD_AUTH = frozenset({"eap-mschapv2", "pubkey+eap-mschapv2"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

T = TypeVar("T", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lowercase letters, digits, '.', '_', '-'; "
            "starts with a letter or digit; at most 63 characters)"
        )
    return value


Name = Annotated[str, Field(description="a lowercase name")]


def _network(value: str, version: int | None = None) -> IPNetwork:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR network ({exc})") from None
    if version and net.version != version:
        raise ValueError(f"{value!r} is not an IPv{version} network")
    return net


def _address(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None


class Device(_Model):
    """One device of a user: it gets its own certificate (when the auth method uses one)."""

    name: str
    platform: Platform
    shared_identity: bool = False
    on_demand: bool = False
    trusted_ssids: tuple[str, ...] = ()

    _name = field_validator("name")(_check_name)

    @field_validator("trusted_ssids")
    @classmethod
    def _ssids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for ssid in v:
            if not 0 < len(ssid.encode()) <= 32 or any(ord(c) < 32 for c in ssid):
                raise ValueError(f"{ssid!r} is not a valid Wi-Fi SSID (1-32 bytes, printable)")
        return v


class User(_Model):
    """A VPN user: one auth method, one or more devices, the routers they may use."""

    name: str
    auth: AuthMethod = "pubkey"
    devices: tuple[Device, ...] = Field(min_length=1)
    routers: tuple[str, ...] | None = None

    _name = field_validator("name")(_check_name)


class Management(_Model):
    """How to reach the router for flashing, and what to bake for management access."""

    address: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    identity_file: str | None = None
    known_hosts: str | None = None
    authorized_keys: tuple[str, ...] = ()
    root_password_hash: str | None = None
    lan_address: str | None = None

    @field_validator("address")
    @classmethod
    def _addr(cls, v: str | None) -> str | None:
        if v is not None and not _is_host(v):
            raise ValueError(f"{v!r} is not a host name or IP address")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", v):
            raise ValueError(f"{v!r} is not a valid login name")
        return v

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for key in v:
            if not SSH_KEY_RE.match(key):
                raise ValueError(f"not an OpenSSH public key line: {key[:40]!r}")
        return v

    @field_validator("root_password_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is not None and not PASSWORD_HASH_RE.match(v):
            raise ValueError("not a crypt(3) password hash (e.g. from `mkpasswd -m sha-512`)")
        return v

    @field_validator("lan_address")
    @classmethod
    def _lan(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            iface = ipaddress.ip_interface(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an address with prefix, e.g. 192.168.1.1/24") from None
        if iface.version != 4 or "/" not in v:
            raise ValueError(f"{v!r} must be an IPv4 address with prefix, e.g. 192.168.1.1/24")
        return v

    @property
    def bakes_access(self) -> bool:
        """True when the image bakes enough to reach the router after a reset flash."""
        return bool(self.authorized_keys) and self.lan_address is not None


class Router(_Model):
    """One router of the site and the VPN it serves."""

    name: str
    server_id: str
    release: str
    target: str
    subtarget: str | None = None
    device: str
    lan: tuple[str, ...] = ("192.168.1.0/24",)
    pool: str = "10.10.10.0/24"
    pool6: str | None = None
    dns: tuple[str, ...] = ()
    nbns: tuple[str, ...] = ()
    tunnel: Literal["full", "split"] = "full"
    config_style: Literal["auto", "swanctl", "ipsec"] = "auto"
    allow_ipsec_to_wan: bool = False
    management: Management = Management()

    _name = field_validator("name")(_check_name)

    @field_validator("server_id")
    @classmethod
    def _server_id(cls, v: str) -> str:
        if not _is_host(v) or v.endswith("."):
            raise ValueError(f"{v!r} is not a DNS name or IP address")
        return v

    @field_validator("release")
    @classmethod
    def _release(cls, v: str) -> str:
        if not RELEASE_RE.match(v):
            raise ValueError(f"{v!r} is not an OpenWrt release (e.g. 24.10.2, 23.05.5, snapshot)")
        return v

    @field_validator("target", "subtarget")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and not TARGET_RE.match(v):
            raise ValueError(f"{v!r} is not an OpenWrt target name (e.g. bcm53xx, ath79)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE_RE.match(v):
            raise ValueError(f"{v!r} is not an ImageBuilder profile name (e.g. phicomm_k3)")
        return v

    @field_validator("lan")
    @classmethod
    def _lan(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one LAN network is needed")
        for item in v:
            _network(item)
        return v

    @field_validator("pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        _network(v, 4)
        return v

    @field_validator("pool6")
    @classmethod
    def _pool6(cls, v: str | None) -> str | None:
        if v is not None:
            _network(v, 6)
        return v

    @field_validator("dns", "nbns")
    @classmethod
    def _addrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            _address(item)
        return v

    @property
    def lan_networks(self) -> tuple[IPNetwork, ...]:
        """The LAN subnets as network objects."""
        return tuple(ipaddress.ip_network(n) for n in self.lan)

    @property
    def pool_network(self) -> ipaddress.IPv4Network:
        """The IPv4 pool as a network."""
        return ipaddress.IPv4Network(self.pool)

    @property
    def pool6_network(self) -> ipaddress.IPv6Network | None:
        """The optional IPv6 pool."""
        return ipaddress.IPv6Network(self.pool6) if self.pool6 else None

    @property
    def server_id_is_ip(self) -> bool:
        """True when the server identity is an IP address rather than a DNS name."""
        try:
            ipaddress.ip_address(self.server_id)
        except ValueError:
            return False
        return True


class SiteSettings(_Model):
    """The ``[site]`` table: one CA, one user base."""

    name: str
    pki_dir: str = "pki"
    crypto: CryptoProfile = "compat"
    allow_weak: bool = False
    organization: str | None = None
    server_key: KeyType = "rsa3072"
    ca_days: int = Field(default=3650, ge=1, le=36500)
    server_days: int = Field(default=825, ge=1, le=36500)
    client_days: int = Field(default=825, ge=1, le=36500)
    crl_days: int = Field(default=365, ge=1, le=36500)
    shared_identity: str | None = None
    packages: Literal["minimal", "full"] = "minimal"
    backend: Literal["local", "docker"] = "local"

    _name = field_validator("name")(_check_name)

    @field_validator("organization")
    @classmethod
    def _org(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(ord(c) < 32 for c in v) or len(v) > 64):
            raise ValueError("must be 1-64 printable characters")
        return v

    @field_validator("shared_identity")
    @classmethod
    def _shared(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", v):
            raise ValueError(f"{v!r} is not a valid identity (letters, digits, '.', '-')")
        return v


@dataclass(frozen=True)
class Site:
    """A loaded, validated site file."""

    path: Path
    settings: SiteSettings
    routers: tuple[Router, ...]
    users: tuple[User, ...]

    @property
    def name(self) -> str:
        """The site name (used in output paths)."""
        return self.settings.name

    @property
    def base_dir(self) -> Path:
        """The folder holding the site file; relative paths in it are resolved here."""
        return self.path.resolve().parent

    @property
    def pki_path(self) -> Path:
        """The PKI state directory."""
        return (self.base_dir / self.settings.pki_dir).resolve()

    def router(self, name: str) -> Router:
        """The router called ``name`` (ConfigError naming the file if unknown)."""
        for r in self.routers:
            if r.name == name:
                return r
        raise ConfigError(
            [Problem(self.path.name, "routers", f"no router named {name!r}{_did_you_mean(name, [r.name for r in self.routers])}")]
        )

    def user(self, name: str) -> User:
        """The user called ``name``."""
        for u in self.users:
            if u.name == name:
                return u
        raise ConfigError(
            [Problem(self.path.name, "users", f"no user named {name!r}{_did_you_mean(name, [u.name for u in self.users])}")]
        )

    def user_routers(self, user: User) -> tuple[Router, ...]:
        """The routers ``user`` may use (all of them unless the user names some)."""
        if user.routers is None:
            return self.routers
        return tuple(r for r in self.routers if r.name in user.routers)

    def router_users(self, router: Router) -> tuple[User, ...]:
        """The users allowed on ``router``."""
        return tuple(u for u in self.users if router in self.user_routers(u))


# --------------------------------------------------------------------------
# identities (see README "Identities")


def device_identity(site: Site | str, user: User | str, device: Device | str) -> str:
    """The IKE identity (and SAN, rfc822Name) of a user's device.

    ``<user>+<device>@<site>``: names cannot contain ``+`` or ``@``, so the
    identity is unambiguous; it is an email-style identity, which Apple
    (LocalIdentifier), Android (IPsec identifier), the strongSwan app,
    Windows EAP and Linux can all present.
    """
    s = site.name if isinstance(site, Site) else site
    u = user.name if isinstance(user, User) else user
    d = device.name if isinstance(device, Device) else device
    return f"{u}+{d}@{s}"


def eap_identity(user: User | str) -> str:
    """The EAP-MSCHAPv2 user name: the user's name."""
    return user.name if isinstance(user, User) else user


# --------------------------------------------------------------------------
# loading


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOSTNAME_RE.match(value)) and not value.replace(".", "").isdigit()


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loc_path(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names valid at ``loc`` inside ``model`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return []
        ann = field.annotation
        current = _model_in(ann)
        if current is None:
            return []
    return list(current.model_fields) if isinstance(current, type) else []


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
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        return f"unknown key{_did_you_mean(str(loc[-1]), known)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{err['input']!r} is not one of {expected}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind in ("string_type", "int_type", "bool_type", "tuple_type", "model_type", "dict_type"):
        want = {
            "string_type": "a string",
            "int_type": "an integer",
            "bool_type": "true or false",
            "tuple_type": "a list",
            "model_type": "a table",
            "dict_type": "a table",
        }[kind]
        return f"must be {want}, not {type(err['input']).__name__} {err['input']!r}"
    return str(err["msg"])


def _validate(
    model: type[T], data: Any, prefix: str, file: str, problems: list[Problem]
) -> T | None:
    if not isinstance(data, dict):
        problems.append(Problem(file, prefix, f"must be a table, not {type(data).__name__}"))
        return None
    try:
        # TOML arrays arrive as lists; the model stores tuples (frozen).
        return model.model_validate(_tuples(data))
    except ValidationError as exc:
        errors = exc.errors()
        for err in errors:
            problems.append(Problem(file, _loc_path(prefix, err["loc"]), _message(err, model)))
    # Try again without the offending keys, so that the cross-section checks
    # (pool overlaps, duplicates...) still see this section and the user gets
    # every problem in one run. Problems are already recorded above.
    bad = {e["loc"][0] for e in errors if e["loc"]}
    rest = {k: v for k, v in data.items() if k not in bad}
    try:
        return model.model_validate(_tuples(rest))
    except ValidationError:
        return None


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


TOP_KEYS = ("site", "routers", "users")


def parse_site(text: str, path: Path, display: str | None = None) -> Site:
    """Validate site file ``text`` (read from ``path``); raise ConfigError with every problem."""
    file = display or path.name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"line {m.group(1)}" if m else ""
        detail = re.sub(r" \(at line.*", "", msg)
        raise ConfigError([Problem(file, where, f"malformed TOML: {detail}")]) from None
    problems: list[Problem] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(file, key, f"unknown key{_did_you_mean(key, TOP_KEYS)}"))

    settings = None
    if "site" not in data:
        problems.append(Problem(file, "site", "required table [site] is missing"))
    else:
        settings = _validate(SiteSettings, data["site"], "site", file, problems)

    routers: list[tuple[int, Router]] = []
    raw_routers = data.get("routers", [])
    if not isinstance(raw_routers, list) or not raw_routers:
        problems.append(Problem(file, "routers", "at least one [[routers]] table is needed"))
        raw_routers = raw_routers if isinstance(raw_routers, list) else []
    for i, raw in enumerate(raw_routers):
        r = _validate(Router, raw, f"routers[{i}]", file, problems)
        if r is not None:
            routers.append((i, r))

    users: list[tuple[int, User]] = []
    raw_users = data.get("users", [])
    if not isinstance(raw_users, list):
        problems.append(Problem(file, "users", "must be an array of [[users]] tables"))
        raw_users = []
    for i, raw in enumerate(raw_users):
        u = _validate(User, raw, f"users[{i}]", file, problems)
        if u is not None:
            users.append((i, u))

    problems.extend(_cross_checks(file, settings, routers, users, raw_routers))
    if problems:
        raise ConfigError(problems, hint="fix the site file and run `owrt-vpn check` again")
    assert settings is not None
    return Site(
        path=path,
        settings=settings,
        routers=tuple(r for _, r in routers),
        users=tuple(u for _, u in users),
    )


def _duplicates(file: str, prefix: str, items: Iterable[tuple[int, str]]) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, name in items:
        if name in seen:
            out.append(
                Problem(file, f"{prefix}[{i}].name", f"duplicate name {name!r} (also {prefix}[{seen[name]}])")
            )
        else:
            seen[name] = i
    return out


def _usable(net: ipaddress.IPv4Network) -> int:
    # strongSwan's in-memory pool skips the network and broadcast address of
    # subnets larger than /31.
    return net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses


def _cross_checks(
    file: str,
    settings: SiteSettings | None,
    routers: list[tuple[int, Router]],
    users: list[tuple[int, User]],
    raw_routers: list[Any],
) -> list[Problem]:
    problems: list[Problem] = []
    problems += _duplicates(file, "routers", ((i, r.name) for i, r in routers))
    problems += _duplicates(file, "users", ((i, u.name) for i, u in users))
    router_names = [r.name for _, r in routers]
    all_router_names = [
        raw.get("name") for raw in raw_routers if isinstance(raw, dict) and isinstance(raw.get("name"), str)
    ]

    if settings is not None and settings.crypto == "legacy" and not settings.allow_weak:
        problems.append(
            Problem(file, "site.crypto", "'legacy' adds modp1024/3DES and needs allow_weak = true")
        )

    for i, r in routers:
        pool = r.pool_network
        for j, lan in enumerate(r.lan_networks):
            if lan.version == 4 and pool.overlaps(lan):
                problems.append(
                    Problem(file, f"routers[{i}].pool", f"{r.pool} overlaps the LAN {lan} (lan[{j}])")
                )
            pool6 = r.pool6_network
            if pool6 is not None and lan.version == 6 and pool6.overlaps(lan):
                problems.append(
                    Problem(file, f"routers[{i}].pool6", f"{r.pool6} overlaps the LAN {lan} (lan[{j}])")
                )
        if r.management.lan_address is not None:
            addr = ipaddress.ip_interface(r.management.lan_address)
            if not any(addr.ip in lan for lan in r.lan_networks):
                problems.append(
                    Problem(
                        file,
                        f"routers[{i}].management.lan_address",
                        f"{r.management.lan_address} is not inside the router's LAN ({', '.join(r.lan)})",
                    )
                )
        need = sum(
            len(u.devices) for _, u in users if u.routers is None or r.name in u.routers
        )
        if need > _usable(pool):
            problems.append(
                Problem(
                    file,
                    f"routers[{i}].pool",
                    f"{r.pool} has {_usable(pool)} addresses but {need} devices may connect",
                )
            )

    for i, u in users:
        problems += _duplicates(file, f"users[{i}].devices", enumerate(d.name for d in u.devices))
        if u.routers is not None:
            for j, name in enumerate(u.routers):
                if name not in all_router_names:
                    problems.append(
                        Problem(
                            file,
                            f"users[{i}].routers[{j}]",
                            f"no router named {name!r}{_did_you_mean(name, router_names)}",
                        )
                    )
        for j, d in enumerate(u.devices):
            if u.auth not in PLATFORM_AUTH[d.platform]:
                can = ", ".join(m for m in AUTH_METHODS if m in PLATFORM_AUTH[d.platform])
                problems.append(
                    Problem(
                        file,
                        f"users[{i}].devices[{j}].platform",
                        f"{d.platform!r} cannot use auth {u.auth!r} (it can use: {can})",
                    )
                )
            if d.shared_identity:
                if settings is not None and settings.shared_identity is None:
                    problems.append(
                        Problem(
                            file,
                            f"users[{i}].devices[{j}].shared_identity",
                            "needs site.shared_identity to be set",
                        )
                    )
                if u.auth not in CERT_AUTH:
                    problems.append(
                        Problem(
                            file,
                            f"users[{i}].devices[{j}].shared_identity",
                            f"only applies to certificate auth, not {u.auth!r}",
                        )
                    )
    return problems


def load_site(path: Path, display: str | None = None) -> Site:
    """Read and validate the site file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{display or path}: site file not found",
            hint="create one with `owrt-vpn init`, or pass --site FILE",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display or path}: cannot read the site file: {exc}") from None
    return parse_site(text, path, display or str(path))
