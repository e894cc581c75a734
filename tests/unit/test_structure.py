"""The package's import graph: no cycles (counting imports inside functions, which only hide one), and an import
of an rvq module inside a function says why on its line (the CLI's say it once: `rvq --help` without torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).parents[2] / "rvq"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _imported(node: ast.AST) -> list[str]:
    """The rvq modules an import statement loads (a name imported from a package may be a module of it)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [f"{node.module}.{alias.name}" for alias in node.names]
        names = [n if n in MODULES else node.module for n in names]
    else:
        return []
    return [n for n in names if n in MODULES]


def _imports() -> tuple[nx.DiGraph, list[tuple[str, int, str]]]:
    graph, inside = nx.DiGraph(), []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        lines = path.read_text().splitlines()
        graph.add_node(module)
        for node in ast.walk(tree):
            for target in _imported(node):
                if target != module and not module.startswith(target + "."):  # a package's own init: no edge
                    graph.add_edge(module, target)
                    if id(node) not in top:
                        inside.append((module, node.lineno, lines[node.end_lineno - 1]))
    return graph, inside


def test_the_package_has_no_import_cycles() -> None:
    graph, _ = _imports()
    assert graph.number_of_edges() > 100  # the graph was read (an empty one has no cycles either)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


def test_an_import_inside_a_function_says_why() -> None:
    _, inside = _imports()
    unexplained = [f"{module}:{line}" for module, line, text in inside if module != "rvq.cli" and "#" not in text]
    assert unexplained == []
    assert any(module == "rvq.cli" for module, _, _ in inside)  # the CLI's lazy imports were seen


def test_every_module_imports_first() -> None:
    """Each module loads first, with no other rvq module loaded before it (an order-dependent cycle fails here);
    one interpreter, rvq's modules dropped between imports (third-party ones stay: they cost the time)."""
    script = ("import importlib, sys\n"
              f"for name in {sorted(MODULES)!r}:\n"
              "    for loaded in [m for m in sys.modules if m == 'rvq' or m.startswith('rvq.')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as exc:\n"
              "        print(name, type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr[-2000:]
