"""The layout shows the architecture: small modules, one-way dependencies, plugins on public names.

Imports are read from the source with ``ast`` (every import statement, also inside functions,
except those under ``if TYPE_CHECKING:``), so a cycle hidden behind a deferred import counts.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = ROOT / "nas"
#: The public modules of the framework; everything else under nas/ is private.
PUBLIC = {"nas", "nas.space", "nas.zoo", "nas.layers", "nas.measure", "nas.scaling", "nas.search"}
#: Experiments that measure the framework's own internals, and why they may import them.
INSTRUMENTS_INTERNALS = {
    # times the framework's overhead per trial by wrapping its private functions
    "experiments/throughput/bench_throughput.py",
}
MAX_LINES = 500
#: The framework's layers, bottom first: a module imports only from its own layer or below.
#: Study data at the bottom (what every consumer reads), then models and spaces, measurement
#: (data, accuracy, latency), storage, reports and logging, the search, compound scaling, and
#: the public modules on top. The README's "Layout" section states the same order.
LAYERS = [
    ["nas._io", "nas._plugins", "nas._config"],
    ["nas._trials"],
    ["nas._models"],
    ["nas._spaces"],
    ["nas._data"],
    ["nas._accuracy"],
    ["nas._latency"],
    ["nas._storage"],
    ["nas._report"],
    ["nas._logging"],
    ["nas._export"],
    ["nas._train"],
    ["nas._search"],
    ["nas._scaling"],
    ["nas.space", "nas.zoo", "nas.layers", "nas.measure", "nas.scaling", "nas.search"],
    ["nas", "nas.__main__"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def framework_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(FRAMEWORK.rglob("*.py"))}


def graph() -> dict[str, set[str]]:
    modules = framework_modules()
    return {name: imports(path) & set(modules) - {name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of the longest prefix naming ``module`` (None: unplaced)."""
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    return None if best is None else best[0]


def upward_imports(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one, sorted."""
    return sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if (layer_of(b) or 0) > (layer_of(a) or 0)
    )


def import_levels(edges: dict[str, set[str]]) -> int:
    """Length of the longest import chain (1: a module importing nothing of the framework)."""
    depth: dict[str, int] = {}

    def visit(v: str) -> int:
        if v not in depth:
            depth[v] = 1 + max((visit(w) for w in edges.get(v, ())), default=0)
        return depth[v]

    return max(map(visit, edges), default=0)


def test_every_framework_module_has_a_layer() -> None:
    assert [m for m in framework_modules() if layer_of(m) is None] == []


def test_no_import_points_up_the_layers() -> None:
    assert upward_imports(graph()) == []
    assert import_levels(graph()) <= 12, "the import graph grew deeper: a tower, not floors"


def test_the_layer_check_finds_an_upward_import() -> None:
    edges = {"nas._trials.record": {"nas._latency.latency"}, "nas._search.run": {"nas._io"}}
    assert upward_imports(edges) == [("nas._trials.record", "nas._latency.latency")]
    assert import_levels({"a": {"b"}, "b": {"c"}, "c": set()}) == 3


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(framework_modules()))
def test_framework_modules_are_short(name: str) -> None:
    lines = framework_modules()[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"


def test_no_import_cycle_in_the_framework() -> None:
    assert cycles(graph()) == []


def test_private_packages_depend_on_each_other_one_way() -> None:
    # nas._search.run -> nas._storage.workers is an edge _search -> _storage.
    packages: dict[str, set[str]] = defaultdict(set)
    for source, targets in graph().items():
        a = source.split(".")[1] if source.count(".") else None
        for target in targets:
            b = target.split(".")[1] if target.count(".") else None
            if a and b and a != b and a.startswith("_") and b.startswith("_"):
                packages[a].add(b)
    assert cycles(dict(packages)) == [], dict(packages)


def test_the_framework_never_imports_a_plugin() -> None:
    for name, path in framework_modules().items():
        plugins = sorted(m for m in imports(path) if m.split(".")[0] == "search_spaces")
        assert not plugins, f"{name} imports {plugins}"


@pytest.mark.parametrize(
    "path",
    sorted(
        [*(ROOT / "search_spaces").glob("*.py"), *(ROOT / "experiments").rglob("*.py")],
        key=str,
    ),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_spaces_and_experiments_use_public_names_only(path: Path) -> None:
    if str(path.relative_to(ROOT)) in INSTRUMENTS_INTERNALS:
        pytest.skip("measures the framework's internals on purpose")
    private = sorted(
        m
        for m in imports(path)
        if m.split(".")[0] == "nas" and m.split(".")[1:2] != [] and m.split(".")[1].startswith("_")
    )
    assert not private, f"{path.relative_to(ROOT)} imports private {private}"


def string_literals(path: Path) -> set[str]:
    """String constants of a module's code (docstrings, and so doctests, left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }


def test_the_framework_names_no_plugin_and_finds_them_in_one_place() -> None:
    # Compound scaling once required the space "mbconv" by string: no import showed it.
    plugins = {p.stem for p in (ROOT / "search_spaces").glob("*.py")} - {"__init__"}
    for name, path in framework_modules().items():
        named = sorted(string_literals(path) & (plugins | {"search_spaces"}))
        if name == "nas._plugins":
            assert named == ["search_spaces"]
            continue
        assert not named, f"{name} names plugins {named}"
