"""What each agent costs right now: memory, CPU, tasks, for ``status --json`` and ``fleet top``.

An agent with a cgroup of its own (its unit on the systemd backend, its transient scope on
the tmux backend) is measured by that cgroup (:func:`read_figures`). One without (plain
tmux) is measured by its process tree: every live process carrying the agent's marker
(:func:`fleetlib.procs.fleet_agents`, one pass over ``/proc`` for the whole fleet), summed
with psutil (imported only then). CPU % is the CPU time used
between two samples over the time between them (100 % = one core); a first sample
has no earlier one and gives the average since the agent's pane process started.

A cgroup's figures (:func:`read_figures`) come from the cgroup its supervisor runs in,
as ``/proc/<pid>/cgroup`` names it: cgroup2 files (``memory.current``, ``memory.peak``,
``memory.max``, ``pids.current``, ``cpu.stat`` ``usage_usec``) where the controller is
there, the v1 controller files (``memory.usage_in_bytes`` ...) on hybrid machines. Every
file is untrusted input: read capped, parsed strictly, anything odd is "unknown" (None).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from fleetlib import procs
from fleetlib.paths import FleetPaths
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitNames

_TICKS: Final = os.sysconf("SC_CLK_TCK")
# cgroup v1 says "no limit" with a page-aligned number near 2**63.
_UNLIMITED_FROM: Final = 1 << 62
_READ_CAP: Final = 4096


# --------------------------------------------------------------------------- one cgroup


@dataclass(frozen=True)
class Figures:
    """One sample of one cgroup; None where the machine does not tell."""

    memory_bytes: int | None = None
    memory_peak: int | None = None
    memory_max: int | None = None  # None: no limit
    tasks: int | None = None
    tasks_max: int | None = None
    cpu_usec: int | None = None  # CPU time used since the cgroup was made
    oom_kills: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, _READ_CAP).decode("ascii", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _number(text: str | None) -> int | None:
    """A counter or limit file: a number, or None (``max``, unreadable, odd)."""
    word = (text or "").strip()
    if not word.isdigit() or len(word) > 20:
        return None
    value = int(word)
    return None if value >= _UNLIMITED_FROM else value


def _keyed(text: str | None, key: str) -> int | None:
    """The number after ``key`` in a ``key value`` per line file (``cpu.stat``, ``memory.events``)."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _number(value)
    return None


@functools.cache
def cgroup_mounts() -> Mapping[str, str]:
    """Where each hierarchy is mounted: ``""`` for cgroup2, the controller name for v1."""
    mounts: dict[str, str] = {}
    text = _read_all("/proc/self/mountinfo")
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or len(tail) < 3 or parts[3] != "/":
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("", parts[4])
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids", "cpuacct", "cpu"):
                    mounts.setdefault(option, parts[4])
    return mounts


def _read_all(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(1 << 20)
    except OSError:
        return ""


def cgroup_dirs(pid: int) -> dict[str, str]:
    """The directories of ``pid``'s cgroups: ``""`` (cgroup2) and each v1 controller's."""
    mounts = cgroup_mounts()
    dirs: dict[str, str] = {}
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        rest = line.partition(":")[2]
        controllers, _, path = rest.partition(":")
        if not path.startswith("/") or ".." in path.split("/"):
            continue
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts:
                dirs[controller] = mounts[controller] + path.rstrip("/")
    return dirs


def read_figures(pid: int) -> Figures | None:
    """What the cgroup ``pid`` runs in uses now; None when ``pid`` is gone."""
    dirs = cgroup_dirs(pid)
    if not dirs:
        return None
    v2 = dirs.get("")
    memory, pids, cpu = dirs.get("memory"), dirs.get("pids"), dirs.get("cpuacct")
    figures: dict[str, int | None] = {}
    if v2 and os.path.exists(f"{v2}/memory.current"):
        figures |= {
            "memory_bytes": _number(_read(f"{v2}/memory.current")),
            "memory_peak": _number(_read(f"{v2}/memory.peak")),
            "memory_max": _number(_read(f"{v2}/memory.max")),
            "oom_kills": _keyed(_read(f"{v2}/memory.events"), "oom_kill"),
        }
    elif memory:
        figures |= {
            "memory_bytes": _number(_read(f"{memory}/memory.usage_in_bytes")),
            "memory_peak": _number(_read(f"{memory}/memory.max_usage_in_bytes")),
            "memory_max": _number(_read(f"{memory}/memory.limit_in_bytes")),
            "oom_kills": _keyed(_read(f"{memory}/memory.oom_control"), "oom_kill"),
        }
    tasks_dir = v2 if v2 and os.path.exists(f"{v2}/pids.current") else pids
    if tasks_dir:
        figures |= {
            "tasks": _number(_read(f"{tasks_dir}/pids.current")),
            "tasks_max": _number(_read(f"{tasks_dir}/pids.max")),
        }
    usage = _keyed(_read(f"{v2}/cpu.stat"), "usage_usec") if v2 else None
    if usage is None and cpu:
        nanoseconds = _number(_read(f"{cpu}/cpuacct.usage"))
        usage = nanoseconds // 1000 if nanoseconds is not None else None
    figures["cpu_usec"] = usage
    return Figures(**figures)


# --------------------------------------------------------------------------- each agent


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
