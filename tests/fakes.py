"""Fakes for unit tests of the lifecycle engine (integration tests use the real thing).

* :class:`FakeClock` - the engine's injected clock and sleep: time moves only when the
  engine sleeps, and a test can act at a given moment (``at``).
* :class:`FakeRunner` - a runner that models just enough of a user manager and of the
  fleet's tmux server for :class:`~fleetlib.backend_systemd.SystemdBackend`: units become
  active on start/restart (a holder restart restarts every active agent once, as
  ``Requires=``/``After=`` do), inactive on stop, and an active agent has a live window
  with a new pane pid per generation.
* :class:`FakeBackend` - an in-memory :class:`~fleetlib.engine.Backend` whose agents a test
  scripts (dies at start, never comes up, refuses to stop), recording every primitive call
  with the fake time it happened at.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetlib import tmux
from fleetlib.pane import exec_record_path
from fleetlib.results import InstallResult
from fleetlib.runner import Result
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitState

_PIDS = itertools.count(10_000)
# A fake manager holds the units of any home (default names, or a home's hashed prefix).
_HOLDER = re.compile(r"mosaic-(?:[0-9a-f]{8}-)?tmux-holder\.service")
_AGENT = re.compile(r"mosaic-(?:[0-9a-f]{8}-)?agent@(.+)\.service")


def _is_holder(unit: str) -> bool:
    return _HOLDER.fullmatch(unit) is not None


def agent_name(unit: str) -> str | None:
    match = _AGENT.fullmatch(unit)
    return match.group(1) if match else None


class FakeClock:
    """Monotonic fake time; ``sleep`` advances it and runs the actions that fall due."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Time passing while the engine works (not sleeping): a slow call."""
        self.now += seconds
        due = [action for when, action in self._due if when <= self.now]
        self._due = [(when, action) for when, action in self._due if when > self.now]
        for action in due:
            action()

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at the first sleep that reaches ``when`` (absolute fake time)."""
        self._due.append((when, action))

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        self.at(self.now + seconds, action)


# --------------------------------------------------------------------------- a fake runner


def _split_systemctl(args: list[str]) -> tuple[str, list[str]]:
    words = [word for word in args[2:] if not word.startswith("--")]
    return words[0], words[1:]


class FakeRunner:
    """Records every command; answers systemctl and tmux as a tiny healthy fleet would."""

    dry_run = False

    def __init__(self, fail: Callable[[list[str]], bool] = lambda argv: False) -> None:
        self.calls: list[list[str]] = []
        self.events: list[str] = []
        self.active: set[str] = set()
        self.panes: dict[str, int] = {}  # agent -> its live window's pane pid
        self.starts: dict[str, int] = {}  # agent -> how often its window was created
        self.fail = fail
        # Where each new window's supervisor "execs" its agent at once: the record it writes
        # names the window's pane and a live process (this one) as the agent.
        self.run_dir: Path | None = None

    # queries used by tests
    def systemctl_calls(self) -> list[list[str]]:
        """Mutating systemctl calls (queries and reset-failed left out), options dropped."""
        calls = []
        for call in self.calls:
            if call[0] != "systemctl":
                continue
            action, units = _split_systemctl(call)
            if action not in ("list-units", "reset-failed", "is-system-running"):
                calls.append(["systemctl", "--user", action, *units])
        return calls

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        env: Any = None,
    ) -> Result:
        args = list(argv)
        if "list-units" in args or "list-windows" in args:
            return self._query(args)
        self.calls.append(args)
        if args[0] != "systemctl":
            self.events.append("tmux:" + " ".join(args[3:]))
            return Result(tuple(args), 0)
        action, units = _split_systemctl(args)
        if action == "is-system-running":
            return Result(tuple(args), 0, "running\n")
        self.events.append(f"run:{action} {' '.join(units)}")
        if self.fail(args):
            return Result(tuple(args), 1, "", f"Failed to {action} {units[-1]}: Operation refused")
        for unit in units:
            self._apply(action, unit)
        return Result(tuple(args), 0)

    def _apply(self, action: str, unit: str) -> None:
        name = agent_name(unit)
        if action in ("start", "restart"):
            if _is_holder(unit):
                if action == "restart":  # Requires= propagates the restart to every active agent
                    for agent in [agent_name(u) for u in self.active if agent_name(u)]:
                        self._new_generation(agent or "")
                self.active.add(unit)
            elif action == "restart" or unit not in self.active:
                self.active.update({unit, *self._holders_of(unit)})  # Requires= pulls the holder in
                self._new_generation(name or "")
        elif action == "stop":
            self.active.discard(unit)
            if name:
                self.panes.pop(name, None)
            if _is_holder(unit):  # Requires= stops agents with it
                self.active = {u for u in self.active if agent_name(u) is None}
                self.panes.clear()

    @staticmethod
    def _holders_of(agent_unit: str) -> list[str]:
        return [agent_unit.split("agent@", 1)[0] + "tmux-holder.service"]

    def _new_generation(self, name: str) -> None:
        self.panes[name] = next(_PIDS)
        self.starts[name] = self.starts.get(name, 0) + 1
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            exec_record_path(self.run_dir, name).write_text(f"{self.panes[name]} {os.getpid()}\n")

    def run_all(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]:
        return [self.run(argv) for argv in argvs]

    def interactive(self, argv: Sequence[str]) -> int:
        return self.run(argv).returncode

    def signal(self, pids: Sequence[int], *signums: int) -> None:
        if pids:
            self.events.append(f"signal:{','.join(map(str, signums))} {' '.join(map(str, pids))}")

    def fenced(self, lease: object) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def _query(self, args: list[str]) -> Result:
        if "list-windows" in args:
            rows = "".join(_window_row(name, pid) for name, pid in sorted(self.panes.items()))
            counters = "".join(f"@fleet-starts-{name} {count}\n" for name, count in sorted(self.starts.items()))
            up = any(_is_holder(unit) for unit in self.active)
            return Result(tuple(args), 0 if up else 1, rows + counters if up else "", "" if up else "no server")
        rows_json = [{"unit": u, "load": "loaded", "active": "active", "sub": "running"} for u in sorted(self.active)]
        return Result(tuple(args), 0, json.dumps(rows_json))


# --------------------------------------------------------------------------- a fake backend


@dataclass
class FakeAgent:
    """One agent as the fake backend shows it; the ``on_*`` fields script its behaviour."""

    name: str
    state: str = "stopped"
    pid: int | None = None
    pane_pid: int | None = None
    exit_status: int | None = None
    failures: int = 0
    sub_state: str = "dead"
    output: str = ""
    # behaviour
    on_launch: str = "runs"  # "runs", "dies" (exits at once), "never" (stays starting)
    dies_after: float | None = None  # with "runs": exits this many fake seconds after launch
    exec_after: float = 0.0  # with "runs": its supervisor execs it this many fake seconds after launch
    execed: bool = False
    execed_at: float | None = None  # fake time of the exec (the exec record's time)
    exit_code: int = 1
    stops: bool = True  # False: its window stays up after terminate

    def row(self) -> AgentStatus:
        window = self.state in ("running", "restarting")
        active = {"running": "active", "starting": "activating", "stopping": "deactivating"}.get(self.state, "inactive")
        return AgentStatus(
            name=self.name,
            state=self.state,
            unit=f"fake@{self.name}",
            load_state="loaded",
            active_state="failed" if self.state == "failed" else active,
            sub_state=self.sub_state,
            pid=self.pid if window else None,
            restarts=None,
            window=window,
            exit_status=self.exit_status,
            failures=self.failures,
            pane_pid=self.pane_pid,
            agent_pid=self.pid if self.state == "running" and self.execed else None,
            agent_since=self.execed_at if self.state == "running" and self.execed else None,
        )


@dataclass
class FakeBackend:
    """An in-memory backend; ``calls`` holds ``(fake time, primitive, names)`` per call."""

    clock: FakeClock
    agents: dict[str, FakeAgent]
    name: str = "fake"
    fast_restart: bool = False
    holder_up: bool = False
    refuse: dict[str, str] = field(default_factory=dict)  # terminate() refusals
    calls: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    observe_cost: float = 0.0  # fake seconds each observe takes; what it sees is its end's state
    glance_cost: float = 0.0  # the same for each glance

    @property
    def unit_dir(self) -> Path | None:
        return None

    def _record(self, primitive: str, names: Sequence[str] = ()) -> None:
        self.calls.append((self.clock.now, primitive, tuple(names)))

    def primitives_called(self) -> list[str]:
        return [primitive for _, primitive, _ in self.calls]

    def changes(self) -> list[tuple[str, tuple[str, ...]]]:
        """The calls that change the fleet, in order."""
        return [(p, names) for _, p, names in self.calls if p in ("launch", "terminate", "restart_all", "cleanup")]

    def preflight(self, names: list[str]) -> None:
        self._record("preflight", names)

    def observe(self, names: list[str]) -> FleetStatus:
        self._record("observe", names)
        self.clock.advance(self.observe_cost)
        holder = UnitState("fake-holder", "loaded", "active" if self.holder_up else "inactive")
        return FleetStatus(self.name, holder, [self.agents[name].row() for name in names])

    def glance(self, names: list[str]) -> dict[str, AgentStatus]:
        """The rows as they are, at no cost (the windows alone, no busy manager)."""
        self._record("glance", names)
        self.clock.advance(self.glance_cost)
        return {name: self.agents[name].row() for name in names}

    def launch(self, names: list[str], *, holder: bool) -> None:
        self._record("launch", names)
        if holder:
            self.holder_up = True
        for name in names:
            self._start(self.agents[name])

    def _start(self, agent: FakeAgent) -> None:
        agent.pane_pid = next(_PIDS)
        agent.failures, agent.exit_status = 0, None
        if agent.on_launch == "dies":
            agent.state, agent.pid, agent.failures, agent.exit_status = "failed", None, 1, agent.exit_code
        elif agent.on_launch == "never":
            agent.state, agent.pid = "starting", None
        else:
            agent.state, agent.pid, agent.sub_state = "running", agent.pane_pid, "running"
            pane = agent.pane_pid
            agent.execed = agent.exec_after <= 0
            agent.execed_at = self.clock.now if agent.execed else None

            due = self.clock.now + agent.exec_after

            def execed() -> None:
                if agent.pane_pid == pane:
                    agent.execed, agent.execed_at = True, due

            if not agent.execed:
                self.clock.after(agent.exec_after, execed)
            if agent.dies_after is not None:

                def die() -> None:
                    if agent.pane_pid == pane and agent.state == "running":
                        agent.state, agent.pid, agent.failures = "failed", None, 1
                        agent.exit_status = agent.exit_code

                self.clock.after(agent.dies_after, die)

    def terminate(self, names: list[str], *, holder: bool) -> dict[str, str]:
        self._record("terminate", names)
        refused = {name: why for name, why in self.refuse.items() if name in names}
        for name in names:
            agent = self.agents[name]
            if name not in refused and agent.stops:
                agent.state, agent.pid = "stopped", None
        if holder and "(holder)" not in self.refuse:
            self.holder_up = False
        return refused

    def restart_all(self, names: list[str]) -> None:
        self._record("restart_all", names)
        self.holder_up = True
        for name in names:
            self._start(self.agents[name])

    def current(self, rows: dict[str, AgentStatus]) -> list[str]:
        self._record("current", list(rows))
        return []

    def run_members(self, rows: dict[str, AgentStatus]) -> dict[str, list[int]]:
        return {}

    def cleanup(self, names: list[str], *, holder: bool) -> None:
        self._record("cleanup", names)

    def last_output(self, name: str, lines: int) -> str:
        self._record("last_output", [name])
        return self.agents[name].output

    def screens(self, names: list[str]) -> dict[str, str]:
        self._record("screens", names)
        return {name: self.agents[name].output for name in names if name in self.agents}

    def install(self, *, enable: bool) -> InstallResult:
        return InstallResult("install", self.name)

    def uninstall(self) -> InstallResult:
        return InstallResult("uninstall", self.name)

    def journal(self, name: str, lines: int) -> str | None:
        return None

    def desired_unit_files(self) -> dict[str, str]:
        return {}


def _window_row(name: str, pid: int) -> str:
    """A running agent's line of ``tmux list-windows`` in the fleet's format (the fields
    after the first seven, activity and transcript, left empty)."""
    fields = [name, str(pid), "0", "", "", "running", "0"]
    return "\t".join(fields + [""] * (len(tmux.WINDOW_FIELDS) - len(fields))) + "\n"
