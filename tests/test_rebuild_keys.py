"""The rebuild keys cover every module that shapes an image or a bundle.

The image key (``build-info.json`` ``inputs.tool.code``) and the bundle key
(``bundle-info.json`` ``tool.code``) digest the import closure of the build
and bundle entry points: changing any module they reach changes the key,
with no hand-kept list of file names to forget one in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from owrt_vpn import codegraph
from owrt_vpn.build.state import IMAGE_ENTRIES
from owrt_vpn.bundles.provenance import BUNDLE_ENTRIES

PKG = codegraph.ROOT


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A scratch copy of the package to edit."""
    copy = tmp_path / "owrt_vpn"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(path: Path, text: str) -> None:
    path.write_text(text)
    codegraph.clear_cache()


def _names(entries: tuple[str, ...]) -> set[str]:
    return {codegraph.module_name(p) for p in codegraph.closure(*entries)}


def test_image_key_covers_render_imagebuilder_and_build() -> None:
    reached = _names(IMAGE_ENTRIES)
    every = {
        codegraph.module_name(p)
        for stage in ("render", "imagebuilder", "build", "site")
        for p in (PKG / stage).rglob("*.py")
        if p.name != "__init__.py"
    }
    # verify/fleet/bundle_step/diff are build's callers, not what an image is made of.
    callers = {f"owrt_vpn.build.{m}" for m in ("verify", "fleet", "bundle_step", "diff")}
    # checks.py and preflight.py are `check`'s, announce.py `init`'s; the site's
    # editor only writes site files; dist_modes only tightens modes of what is built.
    not_image = callers | {
        "owrt_vpn.build.dist_modes",
        "owrt_vpn.render.checks",
        "owrt_vpn.site.edit",
        "owrt_vpn.build.preflight",
        "owrt_vpn.imagebuilder.announce",
    }
    assert every - not_image <= reached, sorted(every - not_image - reached)
    # What never shapes an image stays out (a change there rebuilds nothing).
    assert not any(n.startswith(("owrt_vpn.routers", "owrt_vpn.commands")) for n in reached)
    assert "owrt_vpn.render.connections" in reached and "owrt_vpn.render.swan_syntax" in reached


def test_bundle_key_covers_the_bundle_modules() -> None:
    reached = _names(BUNDLE_ENTRIES)
    bundles = {codegraph.module_name(p) for p in (PKG / "bundles").glob("*.py")}
    # `share` serves a recorded bundle, it makes none: a change there rebuilds nothing.
    serving = {"owrt_vpn.bundles.share", "owrt_vpn.bundles.serve_once"}
    assert bundles - {"owrt_vpn.bundles"} - serving <= reached
    assert not serving & reached
    assert {"owrt_vpn.render.proposals", "owrt_vpn.site.model"} <= reached


@pytest.mark.parametrize("entries", [IMAGE_ENTRIES, BUNDLE_ENTRIES], ids=["image", "bundle"])
def test_changing_any_reached_module_changes_the_key(
    entries: tuple[str, ...], package: Path
) -> None:
    before = codegraph.code_digest(*entries, root=package)
    files = codegraph.closure(*entries, root=package)
    assert len(files) > 10
    seen = {before}
    for path in files:
        original = path.read_text()
        _edit(path, original + "\n# changed\n")
        after = codegraph.code_digest(*entries, root=package)
        assert after not in seen, f"{path.relative_to(package)} does not change the key"
        seen.add(after)
        _edit(path, original)
    assert codegraph.code_digest(*entries, root=package) == before


def test_a_module_imported_only_inside_a_function_is_reached(package: Path) -> None:
    """A new module reached only by a function-level import joins the key."""
    (package / "render" / "newpart.py").write_text('"""A new rendering module."""\n')
    connections = package / "render" / "connections.py"
    connections.write_text(
        connections.read_text()
        + "\n\ndef _later() -> None:\n    from owrt_vpn.render import newpart\n"
    )
    reached = {
        p.relative_to(package).as_posix() for p in codegraph.closure(*IMAGE_ENTRIES, root=package)
    }
    assert "render/newpart.py" in reached
