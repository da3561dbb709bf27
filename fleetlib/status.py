"""What a fleet looks like right now: the shared status model of both backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetlib import procs
from fleetlib.systemd import UnitState
from fleetlib.tmux import Window


@dataclass(frozen=True)
class AgentStatus:
    """One agent as the manager and tmux see it. ``pid`` is the agent's pane process."""

    name: str
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    pid: int | None
    restarts: int | None
    window: bool
    exit_status: int | None = None

    @classmethod
    def from_window(
        cls, name: str, unit: str, state: UnitState | tuple[str, str, str], window: Window | None
    ) -> AgentStatus:
        """The row for one agent: its state (load, active, sub) plus what its tmux window
        shows (pane pid while alive, restarts from the start counter, exit status)."""
        load, active, sub = (
            (state.load_state, state.active_state, state.sub_state) if isinstance(state, UnitState) else state
        )
        return cls(
            name=name,
            unit=unit,
            load_state=load,
            active_state=active,
            sub_state=sub,
            pid=window.live_pid if window is not None else None,
            restarts=max(window.starts - 1, 0) if window is not None and window.starts is not None else None,
            window=window is not None and not window.dead,
            exit_status=window.dead_status if window is not None else None,
        )

    @property
    def since(self) -> str | None:
        """When the agent's pane process started; read only when shown, not in wait loops."""
        return procs.started_at(self.pid) if self.pid else None

    @property
    def up(self) -> bool:
        return self.active_state == "active" and self.window

    @property
    def down(self) -> bool:
        return self.active_state in ("inactive", "failed") and not self.window

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "load_state": self.load_state,
            "active_state": self.active_state,
            "sub_state": self.sub_state,
            "pid": self.pid,
            "since": self.since,
            "restarts": self.restarts,
            "window": self.window,
            "exit_status": self.exit_status,
        }


@dataclass(frozen=True)
class FleetStatus:
    """The whole fleet: which backend runs it, the holder, one row per agent."""

    backend: str
    holder: UnitState
    agents: list[AgentStatus]

    @property
    def all_up(self) -> bool:
        return self.holder.active_state == "active" and all(agent.up for agent in self.agents)
