"""Choosing how the fleet is run: under a systemd user manager, or in plain tmux.

``auto`` picks systemd when ``systemctl --user is-system-running`` answers ``running`` or
``degraded``, else tmux (macOS, containers, CI runners, WSL without systemd).
"""

from __future__ import annotations

from typing import Final, Protocol

from fleetlib.errors import FleetError
from fleetlib.roster import Roster
from fleetlib.runner import Runner
from fleetlib.status import FleetStatus

BACKENDS: Final = ("auto", "systemd", "tmux")
MANAGER_UP: Final = ("running", "degraded")


class FleetBackend(Protocol):
    """What every backend offers; each mutating method returns a one-line report."""

    backend: str
    roster: Roster

    def ensure_installed(self, names: list[str]) -> None: ...

    def install(self, *, enable: bool = True) -> list[str]: ...

    def uninstall(self) -> list[str]: ...

    def start(self, agent: str | None = None) -> str: ...

    def stop(self, agent: str | None = None) -> str: ...

    def restart(self, agent: str | None = None) -> str: ...

    def status(self, agent: str | None = None) -> FleetStatus: ...


def resolve_backend(requested: str, probe: Runner) -> str:
    """``systemd`` or ``tmux`` for a requested backend; ``auto`` asks the user manager.

    ``probe`` runs the query even in a dry run (choosing is not a change).
    """
    if requested not in BACKENDS:
        raise FleetError(f"unknown backend {requested!r}; use one of: {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    answer = probe.run(["systemctl", "--user", "is-system-running"]).stdout.strip()
    return "systemd" if answer in MANAGER_UP else "tmux"
