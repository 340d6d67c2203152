"""release_check: the rules on their own (the served-mirror cases are in
tests/integration/test_release_downgrade.py)."""

from __future__ import annotations

from typing import Any

import pytest

from owrt_vpn.errors import IntegrityError
from owrt_vpn.imagebuilder.mirror import Resolved, SignatureCheck
from owrt_vpn.imagebuilder.release_check import (
    check_not_older,
    check_release,
    check_revision,
    series_source,
)


def resolved(release: str, archive: str, **meta: Any) -> Resolved:
    return Resolved(
        mirror="http://127.0.0.1:1", requested_release=release, release=release,
        target="bcm53xx", subtarget="generic", device="phicomm_k3", dir_url="x",
        archive_name=archive, archive_sha256="0" * 64, profile={}, profiles_meta=meta,
        signature=SignatureCheck(verified=True, skipped=False),
    )  # fmt: skip


IB = "openwrt-imagebuilder-{}-bcm53xx-generic.Linux-x86_64.tar.zst"


def test_release_branch_and_snapshot_names() -> None:
    check_release(resolved("24.10.2", IB.format("24.10.2"), version_number="24.10.2"))
    with pytest.raises(IntegrityError, match=r"not one of 24\.10\.2"):
        check_release(resolved("24.10.2", IB.format("24.10.1"), version_number="24.10.2"))
    # "24.10.2" must not pass for "24.10.20"'s files, nor an rc for the final release
    with pytest.raises(IntegrityError):
        check_release(resolved("24.10.2", IB.format("24.10.20"), version_number="24.10.2"))
    with pytest.raises(IntegrityError):
        check_release(resolved("24.10.2", IB.format("24.10.2-rc1"), version_number="24.10.2"))
    branch = "24.10-SNAPSHOT"
    check_release(resolved(branch, IB.format(branch), version_number=branch))
    with pytest.raises(IntegrityError, match=r"version_number '24\.10\.2'"):
        check_release(resolved(branch, IB.format(branch), version_number="24.10.2"))
    daily = "openwrt-imagebuilder-bcm53xx-generic.Linux-x86_64.tar.zst"
    check_release(resolved("snapshot", daily, version_number="SNAPSHOT"))
    with pytest.raises(IntegrityError, match="not a snapshot"):
        check_release(resolved("snapshot", daily, version_number="24.10.2"))


def test_revisions() -> None:
    res = resolved("24.10.2", IB.format("24.10.2"), version_code="r2-b")
    check_revision(res, "r2-b", "r2-b")
    with pytest.raises(IntegrityError, match="`make info` says 'r1-a'"):
        check_revision(res, "r1-a", None)
    with pytest.raises(IntegrityError, match="the lock pins 'r1-a'"):
        check_revision(res, "r2-b", "r1-a")
    for moving in ("snapshot", "24.10-SNAPSHOT"):  # agree with themselves only
        snap = resolved(moving, "x", version_code="r9-z")
        check_revision(snap, "r9-z", "r1-a")
        with pytest.raises(IntegrityError):
            check_revision(snap, "r8-y", None)


def test_series_resolution() -> None:
    m = "http://127.0.0.1:1"
    assert series_source("24.10.x", "24.10.2", m) == (
        f"24.10.x is 24.10.2 by {m}/.versions.json (unsigned index)"
    )
    assert series_source("24.10.2", "24.10.2", m) is None
    check_not_older("gw", "24.10.x", "24.10.2", "24.10.2", m)
    check_not_older("gw", "24.10.x", "24.10.3", "24.10.2", m)
    check_not_older("gw", "23.05.x", "23.05.5", "24.10.2", m)  # another series on purpose
    check_not_older("gw", "24.10.1", "24.10.1", "24.10.2", m)  # named explicitly
    with pytest.raises(IntegrityError, match=r"older than 24\.10\.2"):
        check_not_older("gw", "24.10.x", "24.10.1", "24.10.2", m)
    with pytest.raises(IntegrityError):
        check_not_older("gw", "24.10.x", "24.10.2-rc1", "24.10.2", m)
