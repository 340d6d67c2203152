"""What a test needs from this machine (root, tools), and the skip reason when it is missing.

Every reason names the missing privilege or tool, so that ``-ra`` tells a
developer what to install, and under ``OWRT_VPN_CI=1`` (ci_skips.py) the
skip fails CI with that same text. .ci/run installs every tool named here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

# Daemons and admin tools live in sbin, which a non-root PATH may lack.
_EXTRA_DIRS = ("/usr/sbin", "/sbin")


def have_tool(tool: str, extra_dirs: Iterable[str] = ()) -> bool:
    """Whether ``tool`` is on PATH (or in sbin / ``extra_dirs``)."""
    if shutil.which(tool) is not None:
        return True
    return any(Path(d, tool).exists() for d in (*_EXTRA_DIRS, *extra_dirs))


def why_not(*tools: str, root: str | None = None, extra_dirs: Iterable[str] = ()) -> str | None:
    """The skip reason when this machine cannot run the test (None when it can).

    ``root`` says what root is needed for ("network namespaces"); each tool
    missing is named: "nft is not installed (see .ci/run)".
    """
    if root is not None and os.geteuid() != 0:
        return f"needs root ({root})"
    for tool in tools:
        if not have_tool(tool, extra_dirs):
            return f"{tool} is not installed (see .ci/run)"
    return None


def require(*tools: str, root: str | None = None, extra_dirs: Iterable[str] = ()) -> None:
    """Skip the running test (or fixture) unless root and ``tools`` are there."""
    reason = why_not(*tools, root=root, extra_dirs=extra_dirs)
    if reason is not None:
        pytest.skip(reason)


def requires(
    *tools: str, root: str | None = None, extra_dirs: Iterable[str] = ()
) -> pytest.MarkDecorator:
    """The same as a ``skipif`` mark (for ``pytestmark`` or a test)."""
    reason = why_not(*tools, root=root, extra_dirs=extra_dirs)
    return pytest.mark.skipif(reason is not None, reason=reason or "")
