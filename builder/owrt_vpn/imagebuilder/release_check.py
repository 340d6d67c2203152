"""Is what the mirror serves the release that was asked for? (downgrade checks)

A signature over ``sha256sums`` proves the files are OpenWrt's, not that
they are the *release* the URL names: a mirror can serve 24.10.1's genuinely
signed directory under ``releases/24.10.2/``. So, besides the signature:

- the ImageBuilder archive's name carries the release
  (``openwrt-imagebuilder-<release>-...``);
- ``profiles.json`` ``version_number`` is the release (for a ``-SNAPSHOT``
  branch: the branch);
- its ``version_code`` is the ImageBuilder's own ``make info`` "Current
  Revision", and under ``--locked`` the lock's revision;
- snapshots (``snapshot``, and branches like ``24.10-SNAPSHOT``) change
  every day: they need only agree with themselves (profiles.json and
  ``make info``), not with the lock's revision;
- a series (``24.10.x``) is resolved from the *unsigned* ``.versions.json``:
  it may never resolve older than the release the lock recorded for that
  router in the same series.

Every refusal is an :class:`IntegrityError` (exit 3).
"""

from __future__ import annotations

from owrt_vpn.errors import IntegrityError
from owrt_vpn.imagebuilder.mirror import HOST_SUFFIX, Resolved, join, version_key

_HINT = "the mirror serves another release's files under this name; use another --mirror"


def is_snapshot(release: str) -> bool:
    """True for the daily snapshots (``snapshot``), which carry no version."""
    return release.lower() == "snapshot"


def moves_daily(release: str) -> bool:
    """Snapshots and release-branch snapshots (``24.10-SNAPSHOT``): rebuilt every day,
    so a lock cannot pin their revision."""
    return is_snapshot(release) or release.upper().endswith("-SNAPSHOT")


def check_release(res: Resolved) -> None:
    """IntegrityError unless the archive name and profiles.json name ``res.release``."""
    where = f"{res.target}/{res.subtarget} {res.release}"
    number = str(res.profiles_meta.get("version_number", ""))
    if is_snapshot(res.release):
        if number.upper() != "SNAPSHOT" and not number.upper().endswith("-SNAPSHOT"):
            raise IntegrityError(
                f"{where}: profiles.json says version_number {number!r}, not a snapshot",
                hint=_HINT,
            )
        return
    # The whole name, not a prefix: "24.10.2-" also starts "24.10.2-rc1-...".
    stem = f"openwrt-imagebuilder-{res.release}-{res.target}-{res.subtarget}.{HOST_SUFFIX}.tar."
    if res.archive_name not in (stem + "zst", stem + "xz"):
        raise IntegrityError(
            f"{where}: the signed ImageBuilder is {res.archive_name}, not one of {res.release}",
            hint=_HINT,
        )
    if number != res.release:
        raise IntegrityError(
            f"{where}: profiles.json says version_number {number!r}, not {res.release!r}",
            hint=_HINT,
        )


def check_revision(res: Resolved, make_revision: str, locked_revision: str | None) -> None:
    """IntegrityError unless profiles.json's version_code is the ImageBuilder's revision
    (``make info``) and, when given, the lock's."""
    where = f"{res.target}/{res.subtarget} {res.release}"
    code = res.version_code
    if make_revision and code != make_revision:
        raise IntegrityError(
            f"{where}: profiles.json says revision {code!r}, the ImageBuilder's `make info` "
            f"says {make_revision!r}",
            hint=_HINT,
        )
    if locked_revision and not moves_daily(res.release) and code != locked_revision:
        raise IntegrityError(
            f"{where}: --locked: revision {code!r}, the lock pins {locked_revision!r}",
            hint="build without --locked to accept it and update the lock",
        )


def series_source(requested: str, resolved: str, mirror: str) -> str | None:
    """For a series request, the sentence naming the index that decided; else None."""
    if not requested.endswith(".x"):
        return None
    return f"{requested} is {resolved} by {join(mirror, '.versions.json')} (unsigned index)"


def check_not_older(
    router: str, requested: str, resolved: str, locked_release: str | None, mirror: str
) -> None:
    """IntegrityError when a series resolved older than the lock's release of that series."""
    if not requested.endswith(".x") or not locked_release:
        return
    if not locked_release.startswith(requested[:-1]):
        return  # the site moved to another series on purpose
    if version_key(resolved) < version_key(locked_release):
        raise IntegrityError(
            f"{router}: {requested} resolved to {resolved} by "
            f"{join(mirror, '.versions.json')} (unsigned), older than {locked_release} "
            "in the lock",
            hint="the mirror's index is stale or rolled back: use another --mirror, or "
            "name the older release explicitly to go back on purpose",
        )
