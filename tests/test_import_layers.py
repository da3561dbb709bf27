"""The library's import graph: no circle between its modules (counting imports inside
functions), and the modules every command imports never load the terminal emulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "fleetlib"


def module_name(path: Path) -> str:
    """``fleetlib.x`` for ``fleetlib/x.py`` and for every file of a package ``fleetlib/x/``."""
    return "fleetlib." + path.relative_to(LIBRARY).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """The fleetlib modules (top level) that ``path`` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "fleetlib":
            found |= {f"fleetlib.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fleetlib."):
            found.add(".".join(node.module.split(".")[:2]))
        elif isinstance(node, ast.Import):
            found |= {".".join(a.name.split(".")[:2]) for a in node.names if a.name.startswith("fleetlib.")}
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == LIBRARY:
            continue
        name = module_name(path)
        graph.setdefault(name, set()).update(imported(path) - {name, "fleetlib.__init__"})
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` (its modules in order), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done or name not in graph:
            return None
        for other in sorted(graph[name]):
            found = visit(other, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_the_library_has_no_import_circle() -> None:
    assert circle(import_graph()) is None


def test_the_circle_finder_finds_one() -> None:
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize(
    "module",
    ["fleetlib.transcript", "fleetlib.engine", "fleetlib.messaging", "fleetlib.watcher", "fleetlib.backend"],
)
def test_importing_does_not_load_the_terminal_emulator(module: str) -> None:
    """pyte costs tens of milliseconds: only rendering a transcript may load it."""
    code = f"import sys, {module}; print('pyte' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
