"""What `owrt-vpn share USER/DEVICE` serves: one device's profile, without its password.

The served variant is derived from the bundle `bundle`/`build` recorded in
dist/ (never regenerated, never recorded as a bundle itself):

- ``ios``/``macos``: the ``.mobileconfig`` *without* the PKCS#12 password (the
  OS asks for it on import; the admin reads it out separately);
- ``android-strongswan``: the ``.sswan`` (the app asks for the password);
- other platforms: the device's zip.

What travels over plain HTTP can be copied and attacked offline, so a device
whose PKCS#12 password is shorter than :data:`MIN_P12_PASSWORD` is refused.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owrt_vpn.errors import ConfigError, IntegrityError, Problem, UsageError, did_you_mean
from owrt_vpn.site.keys import user_key

if TYPE_CHECKING:
    from owrt_vpn.pki.reader import PkiReader
    from owrt_vpn.site.model import Site

#: The shortest PKCS#12 password `share` serves a profile for (characters).
MIN_P12_PASSWORD = 16

CONTENT_TYPES = {
    ".mobileconfig": "application/x-apple-aspen-config",
    ".sswan": "application/vnd.strongswan.profile",
    ".zip": "application/zip",
}


@dataclass(frozen=True)
class SharedProfile:
    """One file to serve, and what the person importing it will be asked for."""

    user: str
    device: str
    platform: str
    filename: str
    content_type: str
    data: bytes
    asks_p12_password: bool
    asks_eap_password: bool


def parse_target(spec: str) -> tuple[str, str]:
    """``USER/DEVICE`` -> ``(user, device)``; UsageError naming the argument otherwise."""
    user, sep, device = spec.partition("/")
    if not sep or not user or not device or "/" in device:
        raise UsageError(
            f"share: {spec!r} is not USER/DEVICE", hint="e.g. `owrt-vpn share alice/phone`"
        )
    return user, device


def shared_profile(
    site: Site, pki: PkiReader, clients: Path, user_name: str, device_name: str, router: str | None
) -> SharedProfile:
    """The file `share` serves for ``user_name/device_name`` from the bundles in ``clients``.

    ConfigError for an unknown user or device, UsageError when the bundle is
    missing or the PKCS#12 password is too short, IntegrityError when the
    served bytes would still hold a password.
    """
    from owrt_vpn.site.model import CERT_AUTH, EAP_PASSWORD_AUTH

    user = site.user(user_name)
    names = [d.name for d in user.devices]
    if device_name not in names:
        hint = did_you_mean(device_name, names)
        raise ConfigError(
            [
                Problem(
                    site.path.name,
                    f"{user_key(user)}.devices",
                    f"user {user_name!r} has no device {device_name!r}{hint}",
                )
            ]
        )
    device = next(d for d in user.devices if d.name == device_name)
    secrets: list[str] = []
    cert = user.auth in CERT_AUTH
    if cert:
        status = pki.client_status(user_name, device_name)
        if status != "valid":
            raise UsageError(
                f"share: {user_name}/{device_name}: certificate {status}",
                hint="run `owrt-vpn bundle` (a revoked device gets no profile)",
            )
        password = pki.p12_password(user_name, device_name)
        if len(password) < MIN_P12_PASSWORD:
            raise UsageError(
                f"share: {user_name}/{device_name}: the PKCS#12 password has {len(password)} "
                f"characters, fewer than {MIN_P12_PASSWORD}: what share serves over plain HTTP "
                "can be attacked offline",
                hint=f"renew the device (`owrt-vpn pki renew --user {user_name} --device "
                f"{device_name}`) for a longer one, or hand its bundle over another way",
            )
        secrets.append(password)
    if user.auth in EAP_PASSWORD_AUTH and pki.eap_status(user_name) == "active":
        secrets.append(pki.eap_password(user_name))
    folder = clients / user_name / device_name
    if not folder.is_dir():
        raise UsageError(
            f"share: no bundle for {user_name}/{device_name} in {clients}",
            hint="run `owrt-vpn bundle` (or `owrt-vpn build`) first; --out names another dist",
        )
    if device.platform in ("ios", "macos"):
        # Certificate variants sit beside the folder (they embed the password).
        path = (clients / user_name if cert else folder) / f"{device_name}.mobileconfig"
        data = _without_p12_password(_read(path))
    elif device.platform == "android-strongswan":
        path = _pick_sswan(folder, device_name, router)
        data = _read(path)
    else:
        path = clients / user_name / f"{user_name}-{device_name}.zip"
        data = _read(path)
    for secret in secrets:
        if secret.encode() in data:
            raise IntegrityError(f"share: {path}: holds a password; refusing to serve it")
    return SharedProfile(
        user=user_name,
        device=device_name,
        platform=device.platform,
        filename=path.name,
        content_type=CONTENT_TYPES[path.suffix],
        data=data,
        asks_p12_password=cert,
        asks_eap_password=user.auth in EAP_PASSWORD_AUTH,
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"share: {path}: missing from the bundle", hint="run `owrt-vpn bundle` again"
        ) from None


def _pick_sswan(folder: Path, device: str, router: str | None) -> Path:
    found = sorted(folder.glob("*.sswan"))
    if router is not None:
        wanted = [p for p in found if p.name in (f"{device}-{router}.sswan",)]
        if len(found) == 1 and not wanted:
            wanted = found
        if not wanted:
            raise UsageError(f"share: {folder}: no profile for router {router!r}")
        return wanted[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"share: {folder}: no .sswan profile", hint="run `owrt-vpn bundle`")
    names = ", ".join(p.name for p in found)
    raise UsageError(
        f"share: {folder}: one profile per router ({names})", hint="pick one with --router NAME"
    )


def _without_p12_password(data: bytes) -> bytes:
    """The ``.mobileconfig`` with the PKCS#12 payload's ``Password`` removed (iOS and
    macOS then ask for it on import)."""
    profile: dict[str, Any] = plistlib.loads(data)
    for payload in profile.get("PayloadContent", []):
        if payload.get("PayloadType") == "com.apple.security.pkcs12":
            payload.pop("Password", None)
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
