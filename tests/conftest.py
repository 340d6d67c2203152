"""Shared fixtures: run the real CLI as a subprocess, scratch site dirs.

Also loads ``ci_skips`` (under ``OWRT_VPN_CI=1`` every skip fails with its
reason) and pytester (tests/test_ci_skips.py runs scratch test suites).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from openwrt.userland import BUILD_TOOLS, Userland, UserlandError, userland
from owrtcli import CliRunner, run_owrt

pytest_plugins = ["pytester", "ci_skips"]

REPO = Path(__file__).resolve().parent.parent

__all__ = ["REPO", "CliRunner"]  # test modules import these from here


@pytest.fixture(scope="session")
def openwrt() -> Userland:
    """OpenWrt's real uci/ucode built from the pinned sources (tests/openwrt/userland.py).

    Built once per machine and cached; a missing source is a failure (never a
    skip) whose message says how to get the sources. Missing build tools are
    a skip locally, a failure in CI.
    """
    from requires import require

    require(*BUILD_TOOLS)
    try:
        return userland()
    except UserlandError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def cli(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    """Run ``owrt-vpn ARGS`` in ``cwd`` (default tmp_path) and return the result.

    The cache is the test's own (beside tmp_path, not in it) unless ``env``
    names one: what an earlier run on this machine left in the user's cache
    (remembered release metadata) must not change what a test sees.
    """
    cache = str(tmp_path_factory.mktemp("owrt-vpn-cache"))

    def run(
        *args: str | os.PathLike[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        env = {"OWRT_VPN_CACHE": cache, **(env or {})}
        return run_owrt(*args, cwd=cwd or tmp_path, env=env, input=input, check=check)

    return run
