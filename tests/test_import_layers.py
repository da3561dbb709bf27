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
