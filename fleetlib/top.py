"""What every agent costs, as rows: the data behind ``fleet top``.

A :class:`Top` samples one machine's fleet (its status: one tmux and one systemctl call,
plus cgroup or process-tree figures, see :mod:`fleetlib.usage`); each call's CPU % is
over the time since the previous call. Rows are plain JSON objects (``fleet top --once
--json``), one per agent; across hosts, :meth:`fleetlib.group.HostsFleet.top` adds the
``host`` of each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from fleetlib.engine import Lifecycle
from fleetlib.status import AgentStatus
from fleetlib.usage import Sampler, Usage, age_s, usage_json

# Sort keys: the row value each sorts by, and whether the largest comes first.
SORT_KEYS: Final[dict[str, tuple[str, bool]]] = {
    "name": ("name", False),
    "state": ("state", False),
    "cpu": ("cpu_percent", True),
    "memory": ("memory_bytes", True),
    "tasks": ("tasks", True),
    "restarts": ("restarts", True),
    "uptime": ("uptime_s", True),
}


def top_rows(agents: Sequence[AgentStatus], usage: dict[str, Usage], now: float) -> list[dict[str, Any]]:
    """One JSON object per agent: its state, restarts, uptime, last output and figures."""
    rows = []
    for agent in agents:
        data = agent.to_json()
        rows.append(
            {
                "name": agent.name,
                "state": data["state"],
                "process_state": agent.state,
                "reason": agent.reason,
                "pid": agent.pid,
                "restarts": agent.restarts,
                "uptime_s": round(age, 1) if agent.pid and (age := age_s(agent.pid)) is not None else None,
                "last_output_at": data["last_output_at"],
                "last_output_s": round(now - agent.last_output, 1) if agent.last_output is not None else None,
                **usage_json(usage.get(agent.name)),
            }
        )
    return rows


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` by ``key`` (see :data:`SORT_KEYS`); unknown figures last, then by name (and host)."""
    field, largest_first = SORT_KEYS[key]

    def named(row: dict[str, Any]) -> tuple[str, str]:
        return (row["name"], row.get("host") or "")

    known = [row for row in rows if row.get(field) is not None]
    unknown = [row for row in rows if row.get(field) is None]
    known.sort(key=named)
    known.sort(key=lambda row: row[field], reverse=largest_first)
    return known + sorted(unknown, key=named)


class Top:
    """One fleet's samples: status (one tmux and one systemctl call) plus cgroup figures."""

    def __init__(self, lifecycle: Lifecycle, sampler: Sampler, clock: Callable[[], float] = time.time) -> None:
        self.lifecycle = lifecycle
        self.sampler = sampler
        self.clock = clock

    def prime(self) -> None:
        """A first reading, so the next sample's CPU % is over the gap, not a lifetime."""
        self.sample()

    def sample(self) -> list[dict[str, Any]]:
        status = self.lifecycle.status()
        agents = [*status.agents, *status.strays]
        return top_rows(agents, self.sampler.sample(agents), self.clock())
