"""Shared fixtures: run the real CLI as a subprocess, scratch site dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OWRT_VPN_SITE", None)
    env["OWRT_VPN_CA_PASSPHRASE"] = env.get("OWRT_VPN_CA_PASSPHRASE", "test-ca-passphrase")
    env["SOURCE_DATE_EPOCH"] = env.get("SOURCE_DATE_EPOCH", "1700000000")
    if extra:
        env.update(extra)
    return env


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run ``owrt-vpn ARGS`` in ``cwd`` (default tmp_path) and return the result."""

    def run(
        *args: str | os.PathLike[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = [sys.executable, "-m", "owrt_vpn", *map(os.fspath, args)]
        proc = subprocess.run(
            argv,
            cwd=cwd or tmp_path,
            env=_cli_env(env),
            input=input,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"owrt-vpn {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    return run
