"""A change to the code that renders swanctl.conf rebuilds the image, and says why.

The real CLI runs from a scratch copy of the package (first on PYTHONPATH)
against the ImageBuilder double on loopback: build, build again (up to
date), then edit the copy's ``render/connections.py`` or
``render/swan_syntax.py``: the next build names ``tool.code`` as the change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, CliRunner
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("module", ["render/connections.py", "render/swan_syntax.py"])
def test_editing_a_rendering_module_rebuilds_and_names_the_change(
    module: str,
    tmp_path: Path,
    cli: CliRunner,
    served_mirror: ServedMirror,  # noqa: F811
) -> None:
    code = tmp_path / "code"
    shutil.copytree(
        REPO / "builder", code / "builder", ignore=shutil.ignore_patterns("__pycache__")
    )
    for data in ("profiles", "files-overlay"):  # where a checkout keeps its data
        (code / data).symlink_to(REPO / data)
    site = tmp_path / "site"
    site.mkdir()
    env = {
        "PYTHONPATH": str(code / "builder"),
        "OWRT_VPN_CACHE": str(tmp_path / "cache"),
        "OWRT_VPN_KEYS_DIR": str(tmp_path / "userkeys"),
    }
    build = (
        "build", "--no-bundles", "--mirror", served_mirror.url,
        "--trust-key", str(served_mirror.key.public),
    )  # fmt: skip
    cli("init", "--server-id", "vpn.example.org", cwd=site, env=env, check=True)
    cli("pki", "init", cwd=site, env=env, check=True)
    cli(*build, cwd=site, env=env, check=True)
    again = cli("--json", *build, cwd=site, env=env, check=True)
    assert [r["status"] for r in json.loads(again.stdout)["routers"]] == ["up-to-date"]

    path = code / "builder" / "owrt_vpn" / module
    path.write_text(path.read_text() + "\n# a change to the rendering code\n")
    changed = cli(*build, cwd=site, env=env, check=True)
    assert "building (changed: tool.code)" in changed.stderr, changed.stderr
    assert "up to date" not in changed.stdout + changed.stderr
