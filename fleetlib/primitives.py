"""What a backend supplies to the lifecycle engine (:mod:`fleetlib.engine`), as protocols.

:class:`Backend` holds the lifecycle primitives only: look, launch, terminate, restart,
clean up, read output. What a backend installs (unit files, the journal that comes with
them) is :class:`Installation`, apart: the engine's algorithm never needs it. The tmux
and systemd backends (siblings, each holding the fleet's
:class:`~fleetlib.agent_windows.AgentWindows`) implement both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from fleetlib.status import AgentStatus, FleetStatus

if TYPE_CHECKING:
    from fleetlib.results import InstallResult

HOLDER_KEY: Final = "(holder)"  # cannot be an agent name


class Backend(Protocol):
    """The primitives a backend supplies; the engine holds every policy.

    ``observe`` never changes anything. The changing primitives return once the change is
    requested, without waiting for it to take effect (the engine waits, fenced)."""

    name: str
    fast_restart: bool  # restart_all() restarts the whole fleet (old generation gone first)

    def preflight(self, names: list[str]) -> None:
        """FleetError (exit 2) naming what is missing when the agents cannot be run as they are."""

    def observe(self, names: list[str]) -> FleetStatus: ...

    def glance(self, names: list[str]) -> dict[str, AgentStatus]:
        """The named agents' rows from what their windows (and exec records) show alone:
        cheap whatever the fleet's size and however busy the manager (under systemd it is
        not asked, so the rows' unit details are not known). For deciding when to
        ``observe``, never for judging an agent."""

    def launch(self, names: list[str], *, holder: bool) -> None: ...

    def terminate(self, names: list[str], *, holder: bool) -> dict[str, str]:
        """Ask the agents (and the holder) to stop; returns who refused and why
        (:data:`HOLDER_KEY` for the holder), having still asked every other one."""

    def restart_all(self, names: list[str]) -> None: ...

    def current(self, rows: dict[str, AgentStatus]) -> list[str]:
        """The running agents among ``rows`` whose supervisor runs exactly what a start
        would run now: a restart may renew them in place, keeping the supervisor (see
        :mod:`fleetlib.gate`); [] for a backend that always starts anew."""

    def run_members(self, rows: dict[str, AgentStatus]) -> dict[str, list[int]]:
        """Processes of each agent's current run the backend knows of beside the marker
        (under systemd: its unit's cgroup, where ``env -i`` cannot leave), never its
        supervisor; {} where the marker is all there is."""

    def cleanup(self, names: list[str], *, holder: bool) -> None: ...

    def last_output(self, name: str, lines: int) -> str: ...

    def screens(self, names: list[str]) -> dict[str, str]:
        """The visible screens of the running agents among ``names`` (few clients for all)."""


@runtime_checkable
class Installation(Protocol):
    """What a backend installs and what comes with it: unit files, the journal."""

    def install(self, *, enable: bool) -> InstallResult: ...

    def uninstall(self) -> InstallResult: ...

    def journal(self, name: str, lines: int) -> str | None: ...

    def desired_unit_files(self) -> dict[str, str]: ...

    @property
    def unit_dir(self) -> Path | None: ...
