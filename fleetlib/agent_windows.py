"""An agent as a window of the fleet's tmux server: what both backends do with windows.

Every agent is a tmux window under the pane supervisor (:mod:`fleetlib.pane`), whether a
plain tmux server or a systemd unit holds it. :class:`AgentWindows` is that shared part:
the agent's pane parameters, environment and command; capturing its output and screen;
rows for windows the roster no longer lists; removing windows; signalling an agent's
marked processes. The tmux backend and the systemd backend are siblings that each hold
one (as Fabric's ``Remote`` and Invoke's ``Local`` are siblings over one ``Runner``
policy), and it holds the one :class:`~fleetlib.tmux_client.TmuxClient` they share:
every tmux call is bounded, a frozen server is one error line, never a hang.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from fleetlib import procs, systemd, tmux
from fleetlib.context import FleetContext
from fleetlib.observed import AgentPane
from fleetlib.pane import ExecRecord, PaneSpec, agent_environment, base_environment, exec_record
from fleetlib.roster import NAME_PATTERN
from fleetlib.screen import screen_lines
from fleetlib.status import AgentStatus
from fleetlib.systemd import UnitState
from fleetlib.tmux_client import TmuxClient

COMMAND_BUDGET: Final = 12 * 1024  # bytes of argv per tmux client (tmux's limit is 16 KiB)
_AT_REST: Final = ("inactive", "failed")  # a unit in these states runs nothing


@dataclass(kw_only=True)
class AgentWindows(FleetContext):
    """The window-level primitives of one fleet, over its one tmux client."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    client: TmuxClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = TmuxClient(self.runner, self.paths.tmux_socket, self.tmux_bin)

    def listing(self) -> dict[str, tmux.Window] | None:
        """The fleet session's windows, or None when the server or session is not there."""
        return self.client.windows()

    def last_output(self, name: str, lines: int) -> str:
        result = self.client.run(
            ["capture-pane", "-p", "-J", "-t", tmux.window_target(name), "-S", f"-{lines * 4}"],
            no_config=True,
            read=True,
        )
        text = result.stdout.rstrip("\n") if result.ok else ""
        # tmux's own "Pane is dead (status N, <date>)" line says nothing the status does not.
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("Pane is dead (")]
        return screen_lines("\n".join(kept), lines)

    def screens(self, names: list[str]) -> dict[str, str]:
        """The visible screen of each named window, in as few tmux clients as fit (one for
        a fleet of 200); a window that is gone is left out."""
        token = f"fleet-screen-{os.urandom(8).hex()}"  # secrets.token_hex without importing secrets
        found: dict[str, str] = {}
        chunks: list[list[str]] = [[]]
        size = 0
        for name in names:
            cost = len(tmux.window_target(name)) + len(token) + 48  # the two commands' other words
            if chunks[-1] and size + cost > COMMAND_BUDGET:
                chunks.append([])
                size = 0
            chunks[-1].append(name)
            size += cost
        for chunk in chunks:
            if not chunk:
                continue
            result = self.client.run(
                tmux.capture_screens_commands([tmux.window_target(n) for n in chunk], token), no_config=True, read=True
            )
            for name, screen in zip(chunk, tmux.parse_screens(result.stdout, token, len(chunk)), strict=True):
                if screen is not None:
                    found[name] = screen
        return found

    def stray_rows(
        self, windows: Mapping[str, tmux.Window], units: Mapping[str, UnitState] | None = None
    ) -> list[AgentStatus]:
        """Rows for the agents of this fleet the roster does not list (removed since they
        started): each with a window (alive or dead) on the fleet's server or, under
        systemd (``units``: agent name -> its unit's state), a unit that runs something."""
        names = {name for name in windows if NAME_PATTERN.fullmatch(name)}
        names |= {name for name, unit in (units or {}).items() if unit.active_state not in _AT_REST}
        rows = []
        for name in sorted(names - set(self.roster.names())):
            if units is None:
                row = AgentStatus.build(name, tmux.window_target(name), windows.get(name), None)
            else:
                unit = units.get(name) or UnitState(
                    systemd.UnitNames.for_home(self.paths.home).agent(name), load_state="not-loaded"
                )
                row = AgentStatus.build(name, unit.unit, windows.get(name), unit)
            # No activity: the watcher no longer looks at it, so what it recorded is stale.
            rows.append(replace(row, in_roster=False, activity=None, activity_since=None))
        return rows

    def remove_windows(self, names: list[str]) -> None:
        """Close the given windows (gone ones are fine) in one client."""
        commands: list[str] = []
        for name in names:
            commands += [
                "if-shell", "-F", "-t", tmux.session_target(), tmux.window_exists_format(name),
                f"kill-window -t {tmux.window_target(name)}", ";",
            ]  # fmt: skip
        if commands:
            self.client.run(commands[:-1], no_config=True)

    def signal_marked(self, names: list[str], *signums: int) -> None:
        """Send each of ``signums`` in turn to every live process carrying one of the
        agents' markers (one look at the processes, so each signal reaches the same ones)."""
        markers = [procs.marker(name, str(self.paths.tmux_socket)) for name in names]
        self.runner.signal([pid for pids in procs.marked(markers).values() for pid in pids], *signums)

    def agent_execs(self, names: list[str], windows: Mapping[str, tmux.Window]) -> dict[str, ExecRecord]:
        """The exec record of the live agent process of each named window's current run, for
        the windows whose supervisor has exec'd it (its record names this window's pane; see
        :func:`fleetlib.pane.exec_record`): a window without one is not up yet."""
        found: dict[str, ExecRecord] = {}
        run_dir = os.fspath(self.paths.run_dir)  # once: the property builds a new path each time
        for name in names:
            window = windows.get(name)
            if window is None or window.dead or window.pane_pid is None:
                continue
            record = exec_record(run_dir, name)
            if record is not None and record.supervisor == window.pane_pid and _signalable(record.agent):
                found[name] = record
        return found

    def exec_rows(self, names: list[str], unit_of: Callable[[str], str]) -> dict[str, AgentStatus]:
        """Each named agent's row as its exec record alone tells it, without a tmux client (at
        fleet scale the server is busy creating the very windows a start waits for; one
        listing took seconds): the recorded supervisor as a live pane, ``running`` while
        the recorded agent lives, ``restarting`` once it is gone; no record, no window.
        ``unit_of`` names an agent's unit. For deciding when to look, never for judging an
        agent: the window may be gone, and the unit is not asked."""
        rows = {}
        run_dir = os.fspath(self.paths.run_dir)  # once: the property builds a new path each time
        for name in names:
            record = exec_record(run_dir, name)
            alive = record is not None and _signalable(record.agent)
            pane = None
            if record is not None:
                pane = AgentPane(name, record.supervisor, dead=False, state="running" if alive else "restarting")
            rows[name] = AgentStatus.build(name, unit_of(name), pane, None, record if alive else None)
        return rows

    def pane_spec(self, name: str, *, scoped: bool = False) -> PaneSpec:
        """The supervisor's parameters; ``scoped``: run it in a transient scope of the user
        manager carrying the agent's limits, inside the fleet's slice (see :meth:`launcher`)."""
        agent = self.roster.get(name)
        home = Path(self.environ.get("HOME") or Path.home())
        spec = PaneSpec(
            name=name,
            target=tmux.window_target(name),
            tmux=self.tmux_bin,
            socket=str(self.paths.tmux_socket),
            cwd=self.roster.cwd_of(agent, home) or str(home),
            max_failures=agent.max_failures,
            failure_window=agent.failure_window,
        )
        if not scoped:
            return spec
        # The mounts let the supervisor read its scope's out-of-memory count (it joins nothing).
        from fleetlib.units import cgroup_mounts  # noqa: PLC0415 (starting only: `status` never loads it)

        return replace(spec, launcher=self.launcher(name), cgroup_mounts=cgroup_mounts(_mountinfo()))

    def launcher(self, name: str) -> tuple[str, ...]:
        """``systemd-run --user --scope`` with the agent's limits, in the fleet's slice."""
        units = systemd.UnitNames.for_home(self.paths.home)
        properties = [
            "MemoryAccounting=yes", "TasksAccounting=yes", "CPUAccounting=yes", "OOMPolicy=continue",
            *self.roster.get(name).resources.properties(),
        ]  # fmt: skip
        return (
            "systemd-run", "--user", "--scope", "--quiet", f"--unit={units.scope(name, os.urandom(4).hex())}",
            f"--slice={units.slice}", *(word for prop in properties for word in ("-p", prop)), "--",
        )  # fmt: skip

    def window_env(self, name: str) -> dict[str, str]:
        """The agent's whole environment when this command starts it (tmux backend: the
        base is this command's, see :func:`fleetlib.pane.base_environment`)."""
        agent = self.roster.get(name)
        from fleetlib import hooks  # noqa: PLC0415 (a start's: `status` never loads it)

        base = base_environment(self.environ, self.environ.get("HOME") or str(Path.home()))
        env = hooks.wired_env(self.paths.run_dir, name, agent.runtime, agent.env)
        return agent_environment(base, procs.marker(name, str(self.paths.tmux_socket)), env)

    def agent_argv(self, name: str) -> list[str]:
        """What the agent's window runs: its roster argv with the fleet's hooks wired in."""
        from fleetlib import hooks  # noqa: PLC0415 (a start's: `status` never loads it)

        agent = self.roster.get(name)
        return hooks.wired_argv(self.paths.run_dir, name, agent.runtime, agent.launch_argv(), agent.args)


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _signalable(pid: int) -> bool:
    """Whether ``pid`` exists (a zombie too: an agent's supervisor reaps it at once and
    records the exit, which is what the engine then sees); cheaper than /proc."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
