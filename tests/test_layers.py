"""The package's shape, read from the source: no import cycle, dependencies point down as DESIGN.md draws them,
and no class in graphs/ over 300 lines."""

import ast
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"tests", "benchmarks", "examples", "docs", "site", "build", "dist"}
# what each package may import of Baobab besides itself, baobab.errors and baobab.aio (DESIGN.md, "Dependencies
# point downward only"); cli.py and the root __init__ are the top and may import anything
MAY_IMPORT = {
    "store": set(),
    "engine": set(),
    "tools": set(),
    "executors": {"store"},
    "memory": {"engine", "store"},
    "graphs": {"executors", "store"},
    "search": {"graphs", "engine", "executors", "store"},
    "agents": {"search", "graphs", "engine", "tools", "memory", "executors", "store"},
    "ui": {"search", "graphs", "store"},  # the trace viewer reads runs and search trees
    "train": {"search", "graphs", "engine", "executors", "store"},  # datasets from search trees and runs
    "serve": {"agents", "search", "graphs", "engine", "tools", "memory", "executors", "store"},  # the top layer
    "errors": set(),
    "aio": set(),
    "jsonl": set(),
}
SHARED = {"errors", "aio", "jsonl"}
MAX_CLASS_LINES = 300


def modules() -> dict[str, Path]:
    """Every shipped module of the package by its dotted name (a package by its __init__.py)."""
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if set(parts) & NOT_SHIPPED or any(part.startswith(".") for part in parts):
            continue
        found[".".join(("baobab", *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return found


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def statements(body: list[ast.stmt], *, functions: bool, type_checking: bool) -> Iterator[ast.stmt]:
    """The statements of `body` that run when the module is imported, and (`functions`) those in function bodies,
    and (`type_checking`) those under `if TYPE_CHECKING:`."""
    for statement in body:
        if isinstance(statement, ast.If) and is_type_checking(statement.test):
            inner = [*statement.body, *statement.orelse] if type_checking else statement.orelse
            yield from statements(inner, functions=functions, type_checking=type_checking)
        elif functions or not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield statement
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from statements(getattr(statement, field, []), functions=functions, type_checking=type_checking)


def imported(tree: ast.Module, module: str, known: dict[str, Path], **which: bool) -> Iterator[str]:
    """The Baobab modules that `tree`'s `statements(..., **which)` import."""
    for node in statements(tree.body, **which):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: a relative import (the package uses absolute imports only)"
            for alias in node.names:  # `from package import module` imports the module, else the package
                target = f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                if target in known:
                    yield str(target)


@functools.cache
def import_graph(*, functions: bool, type_checking: bool) -> "nx.DiGraph[str]":
    """Module -> the modules it imports (at import time, and inside functions / for type checking if asked)."""
    known, graph = modules(), nx.DiGraph()
    graph.add_nodes_from(known)
    for module, tree in parsed().items():
        graph.add_edges_from(
            (module, target) for target in imported(tree, module, known, functions=functions,
                                                    type_checking=type_checking) if target != module)
    return graph


@functools.cache
def parsed() -> dict[str, ast.Module]:
    return {module: ast.parse(path.read_text(), str(path)) for module, path in modules().items()}


def package(module: str) -> str:
    """`baobab.graphs.runtime` -> "graphs"; the root package -> "baobab"."""
    return module.split(".")[1] if "." in module else "baobab"


def test_no_import_cycle_among_modules() -> None:
    # an import deferred into a function still closes a cycle (graphs.executor <-> ray_executor did); imports
    # for type checking only do not run
    cycles = sorted(itertools.islice(nx.simple_cycles(import_graph(functions=True, type_checking=False)), 50),
                    key=len)[:3]
    assert cycles == [], "import cycles, e.g.:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_packages_import_only_the_layers_below() -> None:
    # every import is a dependency, in a function or for type checking too
    graph = import_graph(functions=True, type_checking=True)
    assert set(map(package, graph)) - {"baobab", "cli"} == set(MAY_IMPORT), "a package is missing from MAY_IMPORT"
    upward = sorted(f"{a} -> {b}" for a, b in graph.edges
                    if package(a) in MAY_IMPORT and package(b) not in MAY_IMPORT[package(a)] | SHARED | {package(a)})
    assert upward == [], "imports against DESIGN.md's dependency direction:\n" + "\n".join(upward)


def long_classes(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and (lines := (node.end_lineno or 0) - node.lineno + 1) > MAX_CLASS_LINES:
                found.append(f"{path.relative_to(ROOT)}: {node.name} has {lines} lines")
    return found


def test_no_class_in_graphs_over_300_lines() -> None:
    assert long_classes("graphs") == []
