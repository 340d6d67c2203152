"""The README and the docs/ pages as a reader meets them: the README's first two commands,
links that lead somewhere, every reference page reachable from the README (issue 16).

The Quick start itself is run as written by tests/integration/test_quickstart.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

PAGES = sorted(
    [REPO / "README.md", REPO / "HACKING.md", *(REPO / "docs").rglob("*.md")],
    key=lambda p: str(p),
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (brackets there are not links)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", _prose(path), flags=re.M)}


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    text = (REPO / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)```", text, flags=re.S)
    assert first and text.index(first.group(0)) < text.index("<!-- section: quickstart -->")
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_relative_links_lead_somewhere(page: Path) -> None:
    """Every relative link names a file of the repository, and a heading when it has '#'."""
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


def test_readme_links_every_reference_page() -> None:
    """The reference moved out of the README into docs/: each page is one click away."""
    linked = {
        (REPO / t.partition("#")[0]).resolve()
        for t in LINK.findall(_prose(REPO / "README.md"))
        if not re.match(r"[a-z]+:", t)
    }
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")} | {REPO / "docs/json/README.md"}
    assert sorted(str(p.relative_to(REPO)) for p in pages - linked) == []


def test_readme_installs_from_the_repository_at_a_pinned_commit() -> None:
    """owrt-vpn is not on PyPI (anybody could register the name): the README says to
    install from the git repository at a commit, like examples/github-actions.yml
    (checked in test_fleet.py)."""
    text = (REPO / "README.md").read_text()
    assert '`pip install "owrt-vpn @ git+<repository URL>@<commit>"`' in text
    assert "owrt-vpn==" not in text and "pip install owrt-vpn" not in text
