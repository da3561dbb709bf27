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


def calls(path: Path) -> set[str]:
    """``module.function`` for every call of an attribute of a plain name in ``path``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            found.add(f"{node.func.value.id}.{node.func.attr}")
    return found


STARTS_A_PROCESS = {
    *(f"subprocess.{name}" for name in ("Popen", "run", "call", "check_call", "check_output")),
    *(f"os.{name}" for name in ("system", "fork", "posix_spawn", "posix_spawnp", "execv", "execve", "execvp")),
    *(f"os.{name}" for name in ("execvpe", "execl", "execlp", "spawnv", "spawnvp")),
}


def test_only_the_runner_starts_processes() -> None:
    """fleetlib.runner is the process boundary: run, run-all, spawn detached, exec."""
    starting = {
        str(path.relative_to(REPO)): sorted(calls(path) & STARTS_A_PROCESS)
        for path in sorted(LIBRARY.rglob("*.py"))
        if calls(path) & STARTS_A_PROCESS
    }
    assert set(starting) <= {"fleetlib/runner.py"}, starting


def test_only_the_tmux_client_runs_tmux() -> None:
    """Every tmux client fleet runs goes through fleetlib.tmux_client (one timeout, one message);
    fleetlib.tmux builds argv lists (also for unit files) and runs nothing."""
    users = {str(path.relative_to(REPO)) for path in sorted(LIBRARY.rglob("*.py")) if "tmux.tmux_base" in calls(path)}
    assert users <= {"fleetlib/tmux_client.py"}, users


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # the status model reads backend-neutral observations (fleetlib.observed)
        ("fleetlib.status", "fleetlib.systemd"),
        ("fleetlib.status", "fleetlib.tmux"),
        # the backends are siblings below the engine
        ("fleetlib.backend_systemd", "fleetlib.backend_tmux"),
        ("fleetlib.backend_systemd", "fleetlib.engine"),
        ("fleetlib.backend_tmux", "fleetlib.engine"),
        # the engine and the backends use the watcher's configuration, not the watcher
        ("fleetlib.engine", "fleetlib.watcher"),
        ("fleetlib.backend_systemd", "fleetlib.watcher"),
        ("fleetlib.backend_tmux", "fleetlib.watcher"),
    ],
)
def test_a_lower_module_does_not_import_a_higher_one(module: str, forbidden: str) -> None:
    assert forbidden not in import_graph()[module]
