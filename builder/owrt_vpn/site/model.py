"""The site file (`owrt-vpn.toml`): a frozen, typed, validated model.

The whole file is checked and *every* problem is reported at once, each as
``<file>: <key.path>: <problem>``. Sections are validated one by one (the
``[site]`` table, each router, each user) so that a bad user does not hide a
bad router, then the cross-section rules in :mod:`owrt_vpn.site.rules` run
over what parsed.

Vocabulary fixed here and used by every later stage:

- auth methods: ``pubkey``, ``eap-tls``, ``eap-mschapv2``,
  ``pubkey+eap-mschapv2`` (certificate, then an EAP-MSCHAPv2 second round);
- platforms: ``ios``, ``macos``, ``android`` (built-in client),
  ``android-strongswan``, ``windows``, ``linux``;
- crypto profiles: ``compat`` (default), ``modern``, ``legacy`` (needs
  ``allow_weak = true``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from owrt_vpn.errors import ConfigError, Problem, did_you_mean
from owrt_vpn.site.allowlist import NON_ASCII_KEYS, refuse_unsafe, refuse_unsafe_text, refuse_zone

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# 24.10.2, 24.10.x, 24.10.0-rc2, snapshot, and release branches (24.10-SNAPSHOT).
RELEASE_RE = re.compile(
    r"^(\d{2}\.\d{2}\.(\d+|x)(-rc\d+)?|\d{2}\.\d{2}-SNAPSHOT|snapshot|SNAPSHOT)$"
)
TARGET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9_.,-]{0,79}$")
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
LOGIN_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# A crypt(3) hash as /etc/shadow holds it ($1$, $5$, $6$, yescrypt $y$ ...).
PASSWORD_HASH_RE = re.compile(r"^\$[0-9a-z]+\$[./A-Za-z0-9$=,]+$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/=]+( [^\n\r]*)?$"
)
SHARED_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")

AUTH_METHODS = ("pubkey", "eap-tls", "eap-mschapv2", "pubkey+eap-mschapv2")
PLATFORMS = ("ios", "macos", "android", "android-strongswan", "windows", "linux")
CRYPTO_PROFILES = ("compat", "modern", "legacy")

AuthMethod = Literal["pubkey", "eap-tls", "eap-mschapv2", "pubkey+eap-mschapv2"]
Platform = Literal["ios", "macos", "android", "android-strongswan", "windows", "linux"]
CryptoProfile = Literal["compat", "modern", "legacy"]
KeyType = Literal["rsa3072", "rsa4096", "ecdsa-p256", "ecdsa-p384"]

# Which auth methods each platform's client can do (see the guide and
# reference/clients.md): Android's built-in client has no EAP-TLS and no
# second round; Windows' EAP-TLS presents no usable IKE identity (see below);
# only the strongSwan app and Linux (charon) do the second round.
PLATFORM_AUTH: Mapping[str, frozenset[str]] = {
    "ios": frozenset({"pubkey", "eap-tls", "eap-mschapv2"}),
    "macos": frozenset({"pubkey", "eap-tls", "eap-mschapv2"}),
    "android": frozenset({"pubkey", "eap-mschapv2"}),
    "android-strongswan": frozenset(AUTH_METHODS),
    # Windows sends its IP address as IKE identity with EAP, so it cannot reach
    # the router's per-device EAP-TLS connections: machine certificates instead.
    "windows": frozenset({"pubkey", "eap-mschapv2"}),
    "linux": frozenset(AUTH_METHODS),
}

CERT_AUTH = frozenset({"pubkey", "eap-tls", "pubkey+eap-mschapv2"})
EAP_PASSWORD_AUTH = frozenset({"eap-mschapv2", "pubkey+eap-mschapv2"})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --------------------------------------------------------------------------
# value checks (each raises ValueError with the message the user sees)


def check_name(value: str) -> str:
    """A site/router/user/device name (ValueError says why not), full match only."""
    refuse_unsafe_text(value)
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name (lowercase letters, digits, '.', '_', '-'; "
            "starts with a letter or digit; at most 63 characters)"
        )
    return value


def _network(value: str, version: int | None = None) -> IPNetwork:
    refuse_zone(value)
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR network ({exc})") from None
    if version and net.version != version:
        raise ValueError(f"{value!r} is not an IPv{version} network")
    return net


def _cidr(value: str) -> str:
    _network(value)
    return value


def _cidr4(value: str) -> str:
    _network(value, 4)
    return value


def _cidr6(value: str) -> str:
    _network(value, 6)
    return value


def _address(value: str) -> str:
    refuse_zone(value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None
    return value


def _ssid(value: str) -> str:
    if not 0 < len(value.encode()) <= 32 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} is not a valid Wi-Fi SSID (1-32 bytes, printable)")
    return value


def _ssh_key(value: str) -> str:
    if not SSH_KEY_RE.fullmatch(value):
        raise ValueError(f"not an OpenSSH public key line: {value[:40]!r}")
    return value


def _is_host(value: str) -> bool:
    """True for an IP address (without a zone ID) or a syntactically valid DNS name."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    if not HOSTNAME_RE.fullmatch(value):
        return False
    # A name whose last label is all digits is a mistyped IPv4 address
    # ("192.168.1", "10.0.0.256"), never a DNS name (RFC 3696, section 2).
    return not value.rstrip(".").rsplit(".", 1)[-1].isdigit()


def validate_server_id(value: str) -> str:
    """Check a server identity (DNS name or IP address); ValueError says why not.

    The identity goes into the server certificate's SAN and every client's
    profile, so it must be a plain host name (no trailing dot) or a unicast
    IP address without a zone index.
    """
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if ip is not None:
        if "%" in value:
            raise ValueError(f"{value!r}: IPv6 zone IDs ('%...') are not allowed")
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"{value!r} cannot be dialled by clients (not a unicast address)")
        return value
    if not _is_host(value) or value.endswith("."):
        raise ValueError(
            f"{value!r} is not a DNS name or IP address (e.g. vpn.example.org, 203.0.113.5)"
        )
    return value


# An OpenWrt package name to add, or "-name" to remove a default package.
PACKAGE_RE = re.compile(r"^-?[a-z0-9][a-z0-9._+-]{0,99}$")
RouterAccess = Literal["lan", "dns-ping"]


def _package_specs(value: tuple[str, ...]) -> tuple[str, ...]:
    bad = [v for v in value if not PACKAGE_RE.fullmatch(v)]
    if bad:
        raise ValueError(
            f'{bad[0]!r} is not an OpenWrt package name (e.g. luci-ssl; "-ppp" removes ppp)'
        )
    seen: set[str] = set()
    for v in value:
        name = v.lstrip("-")
        if name in seen:
            raise ValueError(f"{name!r} is listed twice (added and removed, or repeated)")
        seen.add(name)
    return value


Name = Annotated[str, AfterValidator(check_name)]
PackageSpecs = Annotated[tuple[str, ...], AfterValidator(_package_specs)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Cidr4 = Annotated[str, AfterValidator(_cidr4)]
Cidr6 = Annotated[str, AfterValidator(_cidr6)]
IPAddr = Annotated[str, AfterValidator(_address)]
Ssid = Annotated[str, AfterValidator(_ssid)]
SshKey = Annotated[str, AfterValidator(_ssh_key)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _allow_list(cls, v: object, info: ValidationInfo) -> object:
        # Runs before every field's own checks: the allow-list first, then
        # the syntax, then (at render) the escaping of each target language.
        refuse_unsafe(v, ascii_only=info.field_name not in NON_ASCII_KEYS)
        return v


# --------------------------------------------------------------------------
# the model


class Device(_Model):
    """One device of a user: it gets its own certificate (when the auth method uses one)."""

    name: Name
    platform: Platform
    shared_identity: bool = False
    on_demand: bool = False
    trusted_ssids: tuple[Ssid, ...] = ()


class User(_Model):
    """A VPN user: one auth method, one or more devices, the routers they may use."""

    name: Name
    auth: AuthMethod = "pubkey"
    devices: tuple[Device, ...] = Field(min_length=1)
    routers: tuple[Name, ...] | None = None

    @field_validator("routers")
    @classmethod
    def _routers(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and not v:
            raise ValueError("an empty list allows no router; leave the key out to allow all")
        return v


class Management(_Model):
    """How to reach the router for flashing, and what to bake for management access."""

    address: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    identity_file: str | None = None
    known_hosts: str | None = None
    authorized_keys: tuple[SshKey, ...] = ()
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
        if not LOGIN_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not a valid login name")
        return v

    @field_validator("root_password_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is not None and not PASSWORD_HASH_RE.fullmatch(v):
            raise ValueError("not a crypt(3) password hash (e.g. from `mkpasswd -m sha-512`)")
        return v

    @field_validator("lan_address")
    @classmethod
    def _lan(cls, v: str | None) -> str | None:
        if v is None:
            return v
        refuse_zone(v)
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

    name: Name
    server_id: str
    release: str
    target: str
    subtarget: str | None = None
    device: str
    lan: tuple[Cidr, ...] = ("192.168.1.0/24",)
    pool: Cidr4 = "10.10.10.0/24"
    pool6: Cidr6 | None = None
    dns: tuple[IPAddr, ...] = ()
    nbns: tuple[IPAddr, ...] = ()
    tunnel: Literal["full", "split"] = "full"
    config_style: Literal["auto", "swanctl", "ipsec"] = "auto"
    allow_ipsec_to_wan: bool = False
    # Image contents and router access (see docs/releases-and-packages.md);
    # None: the [site] value.
    extra_packages: PackageSpecs = ()
    release_packages: bool | None = None
    vpn_router_access: RouterAccess | None = None
    management: Management = Management()

    @field_validator("server_id")
    @classmethod
    def _server_id(cls, v: str) -> str:
        return validate_server_id(v)

    @field_validator("release")
    @classmethod
    def _release(cls, v: str) -> str:
        if not RELEASE_RE.fullmatch(v):
            raise ValueError(
                f"{v!r} is not an OpenWrt release (e.g. 24.10.2, 23.05.5, 24.10-SNAPSHOT, snapshot)"
            )
        return v

    @field_validator("target", "subtarget")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and not TARGET_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an OpenWrt target name (e.g. bcm53xx, generic)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an ImageBuilder profile name (e.g. phicomm_k3)")
        return v

    @field_validator("lan")
    @classmethod
    def _lan(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one LAN network is needed")
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

    name: Name
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
    allow_password_only_alongside_2fa: bool = False
    # What the images carry beyond the VPN (docs/releases-and-packages.md):
    # packages to add ("-name" removes a default one), whether to carry what
    # the release's own images carry (LuCI), and what VPN clients may reach
    # on the router itself ("lan": like the LAN; "dns-ping": DNS and ping).
    extra_packages: PackageSpecs = ()
    release_packages: bool = True
    vpn_router_access: RouterAccess = "lan"

    @field_validator("pki_dir")
    @classmethod
    def _pki_dir(cls, v: str) -> str:
        if not v or "\0" in v:
            raise ValueError("must be a directory path")
        return v

    @field_validator("organization")
    @classmethod
    def _org(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(ord(c) < 32 for c in v) or len(v) > 64):
            raise ValueError("must be 1-64 printable characters")
        return v

    @field_validator("shared_identity")
    @classmethod
    def _shared(cls, v: str | None) -> str | None:
        if v is not None and not SHARED_ID_RE.fullmatch(v):
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
        return (self.base_dir / Path(self.settings.pki_dir).expanduser()).resolve()

    def router(self, name: str) -> Router:
        """The router called ``name`` (ConfigError naming the file if unknown)."""
        for r in self.routers:
            if r.name == name:
                return r
        hint = did_you_mean(name, [r.name for r in self.routers])
        raise ConfigError([Problem(self.path.name, "routers", f"no router named {name!r}{hint}")])

    def user(self, name: str) -> User:
        """The user called ``name``."""
        for u in self.users:
            if u.name == name:
                return u
        hint = did_you_mean(name, [u.name for u in self.users])
        raise ConfigError([Problem(self.path.name, "users", f"no user named {name!r}{hint}")])

    def user_routers(self, user: User) -> tuple[Router, ...]:
        """The routers ``user`` may use (all of them unless the user names some)."""
        if user.routers is None:
            return self.routers
        return tuple(r for r in self.routers if r.name in user.routers)

    def router_users(self, router: Router) -> tuple[User, ...]:
        """The users allowed on ``router``."""
        return tuple(u for u in self.users if router in self.user_routers(u))


# --------------------------------------------------------------------------
# identities (see docs/identities-and-pki.md)


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
