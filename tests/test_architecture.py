"""The layout of docs/architecture.md holds: every import points down the floors, no import cycle.

Imports are read from the source with :mod:`ast` (top-level and inside functions alike: a lazy import is
still a dependency), so the test sees what a reader sees without importing anything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mmgeom"

#: Floors from the ground up; a folder imports only from its own folder and from lower floors.
FLOORS: list[set[str]] = [
    {"__init__", "version", "errors", "_io", "seeding", "_paths", "_registry", "_validation", "_deprecation"},
    {"functional", "retrieval"},
    {"data"},
    {"losses", "geometry", "models"},
    {"distributed"},
    {"evaluation"},
    {"train"},
    {"classify", "generation", "report", "monitor"},
    {"studies"},
    {"cli"},
]

#: Longest module allowed, in lines: a module past it holds two concepts.
MAX_MODULE_LINES = 400


def _floor(group: str) -> int:
    if group == "ground":
        return 0
    for level, names in enumerate(FLOORS):
        if group in names:
            return level
    raise AssertionError(f"src/mmgeom/{group}: not on any floor of tests/test_architecture.py (add it)")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _group(module: str) -> str:
    """The folder a module lives in; the ground-floor modules form one group, ``__main__`` is the CLI's."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "__init__"
    if name == "__main__":
        return "cli"
    return "ground" if name in FLOORS[0] else name


def import_graph() -> dict[str, set[str]]:
    """Module -> the mmgeom modules it imports (resolved to the longest existing module name)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                names = (f"{module}.{a.name}" for a in node.names)
                targets = [full if full in files else module for full in names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if not target.startswith("mmgeom"):
                    continue
                while target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_graph_reader_sees_relative_lazy_and_absolute_imports(tmp_path):
    # the reader itself must not miss an edge, or the two tests below could not fail
    graph = import_graph()
    assert "mmgeom.retrieval.search" in graph["mmgeom.retrieval.metrics"]  # relative, top level
    assert "mmgeom.retrieval.faiss_backend" in graph["mmgeom.retrieval.search"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_import_points_down_the_floors():
    upward = []
    for module, targets in import_graph().items():
        here = _group(module)
        for target in targets:
            there = _group(target)
            if there != here and _floor(there) >= _floor(here):
                upward.append(f"{module} -> {target}")
    assert upward == [], "imports that do not point down (see docs/architecture.md):\n" + "\n".join(upward)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_module_size(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(SRC)}: {lines} lines; split it by concept"
