"""What the import contracts (``.importlinter``, run by tests/test_architecture.py) cannot
say: only the runner starts processes, only the tmux client runs tmux, and the modules
every command imports never load the terminal emulator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "fleetlib"


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


def type_only_names_used_at_run_time(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, name) of each name imported under ``if TYPE_CHECKING:`` that code (not an
    annotation) uses where no run-time import of it is in scope: a NameError waiting for
    the one path that reaches it (start-up work moved many imports into functions)."""
    checking: set[str] = set()
    at_run_time: set[str] = set()
    for node in tree.body:
        names = {
            alias.asname or alias.name.split(".")[0]
            for n in ast.walk(node)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for alias in n.names
        }
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking |= names
        else:
            at_run_time |= names | {getattr(node, "name", "")}
    annotations: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
            parts = [a.annotation for a in every if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        annotations |= {id(n) for part in parts if part is not None for n in ast.walk(part)}
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, local: frozenset[str]) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            imports = (n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
            local = local | {alias.asname or alias.name.split(".")[0] for n in imports for alias in n.names}
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and id(node) not in annotations
            and node.id in checking - at_run_time - local
        ):
            found.append((node.lineno, node.id))
        for child in ast.iter_child_nodes(node):
            visit(child, local)

    visit(tree, frozenset())
    return found


def test_a_name_imported_for_type_checking_only_is_not_used_at_run_time() -> None:
    used = {
        str(path.relative_to(REPO)): found
        for package in ("fleetlib", "fleetctl", "fleetweb")
        for path in sorted((REPO / package).rglob("*.py"))
        if (found := type_only_names_used_at_run_time(ast.parse(path.read_text())))
    }
    assert used == {}


def test_the_type_only_check_finds_a_use() -> None:
    code = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x import S\ndef f(a: S) -> S:\n    return S(a)\n"
    )
    assert type_only_names_used_at_run_time(ast.parse(code)) == [(5, "S")]
