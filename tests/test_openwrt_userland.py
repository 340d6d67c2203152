"""The OpenWrt userland harness: without the pinned sources it fails, saying how to get them."""

from __future__ import annotations

from pathlib import Path

import pytest

from openwrt import userland


def test_missing_sources_fail_with_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(userland.SRC_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv(userland.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(userland.UserlandError) as exc:
        userland.userland()
    msg = str(exc.value)
    assert userland.SRC_ENV in msg
    for pinned in ("openwrt/uci 66127cd76c5d", "jow-/ucode 81205a25437a", "firewall4.bundle"):
        assert pinned in msg
    assert not (tmp_path / "cache").exists()  # nothing half-built


def test_the_build_is_cached_by_source_digest(openwrt: userland.Userland) -> None:
    again = userland.userland(build=False)  # found, not rebuilt
    assert again.prefix == openwrt.prefix
    assert openwrt.uci.is_file() and openwrt.utpl.is_file()
    assert openwrt.firewall4_commit("HEAD").startswith("b6e5157")
