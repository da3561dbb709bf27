"""What a fleet looks like right now: the shared status model of both backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetlib.systemd import UnitState


@dataclass(frozen=True)
class AgentStatus:
    """One agent as the manager and tmux see it. ``pid`` is the agent's pane process."""

    name: str
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    pid: int | None
    since: str | None
    restarts: int | None
    window: bool
    exit_status: int | None = None

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
