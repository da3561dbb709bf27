"""The tmux-only backend: the fleet without a systemd user manager (macOS, containers, CI).

Same roster, same restart lock, same status schema as the systemd backend. The holder is
a tmux server on the fleet's private socket with one session; each agent is a window
running its command directly (cwd, env and args from the roster). A window stays after
its agent exits (``remain-on-exit``) so status can show it as failed with its exit status;
``fleet.restart --agent`` or ``fleet.start`` brings it back.

Nothing here survives a reboot: there is no supervisor to start the server again.
Starting creates every missing window in one tmux client (one command sequence), so the
cost is tmux's own, not a process per agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetlib import procs, tmux
from fleetlib.context import FleetContext
from fleetlib.errors import FleetOperationError
from fleetlib.fleet import WAIT_TIMEOUT_S, run_locked
from fleetlib.lock import RestartGuard, ensure_private_dir
from fleetlib.runner import Result
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitState

HOLDER: Final = "tmux:fleet"
POLL_S: Final = 0.02


@dataclass(kw_only=True)
class TmuxFleet(FleetContext):
    """A fleet run by a plain tmux server; the interface of :class:`fleetlib.fleet.Fleet`."""

    timeout: float = WAIT_TIMEOUT_S
    lock_options: dict[str, Any] = field(default_factory=dict)
    backend: str = "tmux"

    # ----------------------------------------------------------------- helpers

    def _tmux(self, commands: list[str]) -> Result:
        # -f /dev/null: a server started by this client ignores the user's tmux.conf.
        return self.runner.run([*tmux.tmux_base(self.tmux_bin, self.paths.tmux_socket), "-f", "/dev/null", *commands])

    def _windows(self) -> dict[str, tmux.Window] | None:
        """The fleet session's windows, or None when the server or session is not there."""
        result = self.runner.run(tmux.list_windows_argv(self.tmux_bin, self.paths.tmux_socket))
        return tmux.parse_windows(result.stdout) if result.ok else None

    def _wait_gone(self, pids: list[int]) -> None:
        """Wait until the given agent processes have exited (a teardown is only done then)."""
        if self.runner.dry_run:
            return
        deadline = self.clock() + self.timeout
        while any(procs.exists(pid) for pid in pids):
            if self.clock() >= deadline:
                alive = [str(pid) for pid in pids if procs.exists(pid)]
                raise FleetOperationError(
                    f"timed out after {self.timeout:g}s waiting for agent processes to exit: {' '.join(alive)}"
                )
            self.sleep(POLL_S)

    def ensure_installed(self, names: list[str]) -> None:
        """Nothing to install for tmux: every command works on the roster directly."""

    def install(self, *, enable: bool = True) -> list[str]:
        return [
            "tmux backend (no systemd user manager): there is nothing to install, and the fleet will not "
            "come back after a reboot; start it with `inv fleet.start`"
        ]

    def uninstall(self) -> list[str]:
        return ["tmux backend: nothing is installed; stop the fleet with `inv fleet.stop`"]

    # ----------------------------------------------------------------- status

    def status(self, agent: str | None = None) -> FleetStatus:
        """One tmux call: every window, its pane pid, whether it died and with what status."""
        windows = self._windows()
        agents = [self._agent_status(name, (windows or {}).get(name)) for name in self.names(agent)]
        running = windows is not None
        holder = UnitState(HOLDER, "loaded", "active" if running else "inactive", "running" if running else "dead")
        return FleetStatus(self.backend, holder, agents)

    def _agent_status(self, name: str, window: tmux.Window | None) -> AgentStatus:
        if window is None:
            state = ("loaded", "inactive", "dead")
        elif window.dead:
            state = ("loaded", "failed", "exited")
        else:
            state = ("loaded", "active", "running")
        return AgentStatus.from_window(name, tmux.window_target(name), state, window)

    # ----------------------------------------------------------------- start / stop / restart

    def _start_missing(self, names: list[str]) -> list[str]:
        """Create (or re-create, if dead) the windows of ``names`` in one tmux client."""
        windows = self._windows()
        todo = [n for n in names if windows is None or n not in windows or windows[n].dead]
        if not todo:
            return []
        if not self.runner.dry_run:
            ensure_private_dir(self.paths.run_dir, "fleet run directory")
        commands: list[str] = [*tmux.new_session_commands(), ";"] if windows is None else []
        commands += [*tmux.keep_dead_panes_commands(), ";"]
        for name in todo:
            agent = self.roster.get(name)
            cwd = self.roster.cwd_of(agent, Path.home())
            window = tmux.agent_window_commands(
                name,
                agent.argv(),
                cwd=cwd,
                env=agent.env,
                tmux=self.tmux_bin,
                socket=self.paths.tmux_socket,
                on_exit=tmux.record_exit(name),
            )
            commands += [*window, ";"]
        result = self._tmux(commands[:-1])
        if not result.ok:
            raise FleetOperationError(f"tmux could not start {', '.join(todo)}: {result.error_line()}")
        return todo

    def _verify_up(self, names: list[str]) -> None:
        if self.runner.dry_run:
            return
        rows = self.status().agents
        dead = [
            f"{a.name} (exit status {a.exit_status})" if a.exit_status is not None else f"{a.name} ({a.active_state})"
            for a in rows
            if a.name in names and not a.up
        ]
        if dead:
            raise FleetOperationError(f"agent(s) exited right after starting: {', '.join(dead)}; check their commands")

    def start(self, agent: str | None = None) -> str:
        names = self.names(agent)
        started = self._start_missing(names)
        self._verify_up(names)
        if not started:
            return f"{_describe(agent, names)} already running; nothing to start"
        return f"started {len(started)} agent(s) ({', '.join(started)}) on the tmux backend"

    def _stop(self, agent: str | None) -> list[str]:
        windows = self._windows()
        if windows is None:
            return []
        names = [n for n in self.names(agent) if n in windows]
        if agent is None:
            pids = [w.live_pid for w in windows.values() if w.live_pid]
            result = self.runner.run(tmux.kill_server_argv(self.tmux_bin, self.paths.tmux_socket))
        else:
            if not names:
                return []
            live = windows[names[0]].live_pid
            pids = [live] if live else []
            result = self.runner.run(tmux.kill_window_argv(self.tmux_bin, self.paths.tmux_socket, names[0]))
        if not result.ok:
            raise FleetOperationError(f"tmux could not stop {', '.join(names) or 'the fleet'}: {result.error_line()}")
        self._wait_gone(pids)
        return names

    def stop(self, agent: str | None = None) -> str:
        stopped = self._stop(agent)
        if not stopped and agent is None:
            return "the fleet is not running; nothing to stop"
        if not stopped:
            return f"agent {agent} is not running; nothing to stop"
        return f"stopped {_describe(agent, stopped)} on the tmux backend"

    def restart(self, agent: str | None = None) -> str:
        """Tear down and start again under the restart lock; the old agents have exited
        before the new ones start, so two generations never overlap."""
        names = self.names(agent)

        def restart_locked(guard: RestartGuard | None) -> str:
            self._stop(agent)
            if guard is not None:
                guard.refresh()
            self._start_missing(names)
            self._verify_up(names)
            return f"restarted {_describe(agent, names)} on the tmux backend"

        return run_locked(self.paths, self.runner.dry_run, self.lock_options, restart_locked)


def _describe(agent: str | None, names: list[str]) -> str:
    return f"agent {agent}" if agent else f"the fleet ({len(names)} agent(s))"
