"""The package's layout: imports point down the pipeline, never up, never in a circle.

Python's own parser reads every module; imports inside functions count,
imports under ``if TYPE_CHECKING:`` do not (they never run). The stages,
bottom to top, are :data:`LAYERS`; a module may import its own stage and
the stages below it, and nothing may import in a circle, within a stage
either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from owrt_vpn import codegraph

PKG = codegraph.ROOT

# Bottom to top: the pipeline site -> PKI -> render -> ImageBuilder -> build
# (which writes the bundles) -> routers, then the command line.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "owrt_vpn",
        "owrt_vpn.errors",
        "owrt_vpn.fsutil",
        "owrt_vpn.repro",
        "owrt_vpn.resources",
        "owrt_vpn.run",
        "owrt_vpn.profiles",
        "owrt_vpn.codegraph",
    ),
    ("owrt_vpn.site",),
    ("owrt_vpn.pki",),
    ("owrt_vpn.render",),
    ("owrt_vpn.imagebuilder",),
    ("owrt_vpn.bundles",),
    ("owrt_vpn.build",),
    ("owrt_vpn.routers",),
    ("owrt_vpn.ui",),
    ("owrt_vpn.commands",),
    ("owrt_vpn.cli", "owrt_vpn.__main__"),
)


def layer(module: str) -> int:
    """The rank of ``module``'s stage (the longest matching prefix in LAYERS)."""
    best: tuple[int, int] | None = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "owrt_vpn" and module.startswith(name + "."))
            if inside and (best is None or len(name) > best[1]):
                best = (rank, len(name))
    if best is None:
        raise AssertionError(f"{module} belongs to no stage: add it to LAYERS")
    return best[0]


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def ast_imports(path: Path) -> set[str]:
    """owrt-vpn modules imported by ``path`` at run time (anywhere, not TYPE_CHECKING)."""
    module = codegraph.module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            assert isinstance(node, ast.If)
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "owrt_vpn")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] == "owrt_vpn":
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if codegraph.module_path(sub) else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if codegraph.module_path(m) is not None}


def graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports."""
    return {
        codegraph.module_name(p): ast_imports(p) - {codegraph.module_name(p)}
        for p in sorted(PKG.rglob("*.py"))
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_imports_point_down_the_stack() -> None:
    upward = [
        f"{src} (stage {layer(src)}) imports {dst} (stage {layer(dst)})"
        for src, dsts in graph().items()
        for dst in sorted(dsts)
        if layer(dst) > layer(src)
    ]
    assert upward == []


def test_every_module_has_a_stage() -> None:
    for module in graph():
        layer(module)


def test_package_inits_hold_no_code() -> None:
    """A package's ``__init__`` is its docstring only: what you import is where its name says."""
    for init in PKG.rglob("__init__.py"):
        if init.parent == PKG:
            continue
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init


def test_regex_scan_finds_every_import() -> None:
    """The rebuild keys' fast scan (codegraph) misses no import that really runs."""
    for path in sorted(PKG.rglob("*.py")):
        assert ast_imports(path) <= codegraph.imported_modules(path), path


def test_detectors_catch_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("owrt_vpn.site.model") < layer("owrt_vpn.render.overlay")


def test_closure_follows_function_level_imports(tmp_path: Path) -> None:
    reached = {codegraph.module_name(p) for p in codegraph.closure("owrt_vpn.render.overlay")}
    assert {"owrt_vpn.render.connections", "owrt_vpn.render.swan_syntax"} <= reached
    assert "owrt_vpn.routers.flash" not in reached


@pytest.mark.parametrize("limit", [520])
def test_no_module_is_too_long(limit: int) -> None:
    long = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert long == {}
