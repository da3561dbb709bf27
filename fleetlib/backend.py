"""Choosing and building how the fleet is run: under a systemd user manager, or in plain tmux.

``auto`` picks systemd when ``systemctl --user is-system-running`` answers ``running`` or
``degraded``, else tmux (macOS, containers, CI runners, WSL without systemd).
:func:`open_fleet` is the one place a command line gets its fleet from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleetlib.engine import WAIT_TIMEOUT_S, Lifecycle
from fleetlib.errors import FleetError
from fleetlib.paths import FleetPaths, default_unit_dir
from fleetlib.progress import ProgressHook, no_progress
from fleetlib.roster import Roster
from fleetlib.runner import DryRunRunner, Runner, SubprocessRunner, query
from fleetlib.systemd import no_user_manager_socket

if TYPE_CHECKING:
    from fleetlib.backend_systemd import SystemdBackend
    from fleetlib.backend_tmux import TmuxBackend

__all__ = ["BACKENDS", "MANAGER_UP", "WAIT_TIMEOUT_S", "Lifecycle", "open_fleet", "resolve_backend"]

BACKENDS: Final = ("auto", "systemd", "tmux")
MANAGER_UP: Final = ("running", "degraded")
PROBE_TIMEOUT_S: Final = 10.0


def resolve_backend(requested: str, probe: Runner, environ: Mapping[str, str] | None = None) -> str:
    """``systemd`` or ``tmux`` for a requested backend; ``auto`` asks the user manager.

    ``probe`` runs the query even in a dry run (choosing is not a change: a query). Given the
    ``environ`` systemctl would run in, ``auto`` picks tmux without asking when
    :func:`no_user_manager_socket` (a process less for every command without a manager).
    """
    if requested not in BACKENDS:
        raise FleetError(f"unknown backend {requested!r}; use one of: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    if environ is not None and no_user_manager_socket(environ):
        return "tmux"
    answer = query(probe, ["systemctl", "--user", "is-system-running"], timeout=PROBE_TIMEOUT_S).stdout.strip()
    return "systemd" if answer in MANAGER_UP else "tmux"


def open_fleet(
    paths: FleetPaths,
    roster: Roster,
    *,
    backend: str = "auto",
    unit_dir: Path | None = None,
    dry_run: bool = False,
    timeout: float = WAIT_TIMEOUT_S,
    lock_timeout: float | None = None,
    progress: ProgressHook = no_progress,
    echo: Callable[[str], None] = print,
) -> Lifecycle:
    """The fleet of ``roster`` on the chosen backend, ready to start, stop, restart.

    ``dry_run`` prints (through ``echo``) and records the commands instead of running
    them; ``timeout`` bounds each wait for agents to come up; ``lock_timeout`` bounds the
    wait for another operation's lock (None: wait, breaking a lock that makes no progress).
    """
    if any(agent.worktree is not None for agent in roster.agents):
        from fleetlib import worktree  # noqa: PLC0415 (a fleet without worktrees never loads the git code)

        roster = worktree.bind(roster, paths.home)  # default worktree paths are under this fleet's home
    runner: Runner = DryRunRunner(echo) if dry_run else SubprocessRunner()
    chosen = resolve_backend(backend, runner, os.environ)
    primitives: TmuxBackend | SystemdBackend
    # Each backend's module is imported only when chosen: a tmux fleet never loads the units code.
    if chosen == "tmux":
        from fleetlib.backend_tmux import TmuxBackend  # noqa: PLC0415

        primitives = TmuxBackend(paths=paths, roster=roster, runner=runner, environ=dict(os.environ))
    else:
        from fleetlib.backend_systemd import SystemdBackend  # noqa: PLC0415

        primitives = SystemdBackend(
            paths=paths, roster=roster, runner=runner, environ=dict(os.environ), units_at=unit_dir or default_unit_dir()
        )
    return Lifecycle(
        paths=paths,
        roster=roster,
        runner=runner,
        primitives=primitives,
        installation=primitives,
        timeout=timeout,
        lock_timeout=lock_timeout,
        progress=progress,
    )
