"""What each agent costs right now: memory, CPU, tasks, for ``status --json`` and ``fleet top``.

An agent with a cgroup of its own (its unit on the systemd backend, its transient scope on
the tmux backend) is measured by that cgroup (:func:`fleetlib.resources.read_figures`).
One without (plain tmux) is measured by its process tree: every live process carrying the
agent's marker (:func:`fleetlib.procs.fleet_agents`, one pass over ``/proc`` for the
whole fleet), summed with psutil (imported only then). CPU % is the CPU time used
between two samples over the time between them (100 % = one core); a first sample
has no earlier one and gives the average since the agent's pane process started.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from fleetlib import procs
from fleetlib.paths import FleetPaths
from fleetlib.resources import Figures, cgroup_dirs, read_figures
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitNames

_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One agent's figures and its CPU % (None where unknown); ``source``: ``cgroup`` or
    ``processes`` (its marked process tree)."""

    figures: Figures
    cpu_percent: float | None
    source: str


def own_cgroup(pid: int, units: UnitNames, name: str) -> bool:
    """Whether ``pid`` runs in agent ``name``'s own cgroup (its unit, or a scope of it), so
    that cgroup's figures are the agent's alone."""
    for path in cgroup_dirs(pid).values():
        unit = path.rpartition("/")[2]
        if unit == units.agent(name) or units.is_scope_of(unit, name):
            return True
    return False


def _tree_figures(pids: Iterable[int]) -> Figures:
    import psutil  # noqa: PLC0415  (only plain-tmux agents pay its import)

    memory = tasks = 0
    cpu = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                memory += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
                tasks += process.num_threads()
        except psutil.Error:
            continue
    return Figures(memory_bytes=memory, tasks=tasks, cpu_usec=int(cpu * 1_000_000))


def _uptime_s() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def age_s(pid: int) -> float | None:
    """Seconds since ``pid`` started; None where unknown."""
    ticks, now = procs.start_ticks(pid), _uptime_s()
    if not ticks.isdigit() or now is None:
        return None
    return max(now - int(ticks) / _TICKS, 0.0)


class Sampler:
    """Samples a fleet's agents; keeps the previous CPU reading per agent for CPU %."""

    def __init__(self, units: UnitNames, fleet_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.units = units
        self.fleet_id = fleet_id
        self.clock = clock
        self._last: dict[str, tuple[float, int, int]] = {}  # name -> (time, pane pid, cpu usec)

    def sample(self, agents: Iterable[AgentStatus]) -> dict[str, Usage]:
        """Figures of every agent that runs (a live pane process); the others are absent."""
        now = self.clock()
        running = [agent for agent in agents if agent.pid]
        usage: dict[str, Usage] = {}
        trees: list[AgentStatus] = []
        for agent in running:
            assert agent.pid is not None
            if own_cgroup(agent.pid, self.units, agent.name):
                figures = read_figures(agent.pid)
                if figures is not None:
                    usage[agent.name] = Usage(figures, self._cpu(agent, figures, now), "cgroup")
                    continue
            trees.append(agent)
        if trees:
            marked = procs.fleet_agents(self.fleet_id)
            for agent in trees:
                figures = _tree_figures(marked.get(agent.name, []))
                usage[agent.name] = Usage(figures, self._cpu(agent, figures, now), "processes")
        return usage

    def _cpu(self, agent: AgentStatus, figures: Figures, now: float) -> float | None:
        assert agent.pid is not None
        if figures.cpu_usec is None:
            return None
        last = self._last.get(agent.name)
        self._last[agent.name] = (now, agent.pid, figures.cpu_usec)
        if last is not None and last[1] == agent.pid and now > last[0] and figures.cpu_usec >= last[2]:
            return round((figures.cpu_usec - last[2]) / 1e6 / (now - last[0]) * 100, 1)
        age = age_s(agent.pid)
        return round(figures.cpu_usec / 1e6 / age * 100, 1) if age else None


def fleet_sampler(paths: FleetPaths) -> Sampler:
    """A sampler of the fleet whose home and tmux socket ``paths`` name."""
    return Sampler(UnitNames.for_home(paths.home), str(paths.tmux_socket))


def with_usage(status: FleetStatus, usage: Mapping[str, Usage]) -> FleetStatus:
    """``status`` with each agent's ``memory_bytes`` and ``cpu_percent`` filled in."""

    def fill(agent: AgentStatus) -> AgentStatus:
        found = usage.get(agent.name)
        if found is None:
            return agent
        return replace(agent, memory_bytes=found.figures.memory_bytes, cpu_percent=found.cpu_percent)

    return replace(status, agents=[fill(agent) for agent in status.agents])


def usage_json(usage: Usage | None) -> dict[str, Any]:
    """The figures as ``fleet top --json`` gives them (every key present, None unknown)."""
    figures = usage.figures if usage is not None else Figures()
    return {
        **figures.to_json(),
        "cpu_percent": usage.cpu_percent if usage is not None else None,
        "source": usage.source if usage is not None else None,
    }
