"""The tmux backend's primitives: the fleet as windows of a plain tmux server.

No supervisor but the pane's own (:mod:`fleetlib.pane`): the holder is a tmux server on
the fleet's private socket with one session; each agent is a window running its command
under the pane supervisor. Nothing here survives a reboot.

:class:`TmuxPrimitives` also holds what the systemd backend shares (every agent is a tmux
window on both): listing windows, capturing output, removing windows, signalling an
agent's marked processes. Every tmux call is bounded (:data:`TMUX_TIMEOUT_S`): a frozen
server is one error line, never a hang.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from fleetlib import hooks, procs, systemd, tmux, transcript, watcher
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.pane import ExecRecord, PaneSpec, agent_environment, base_environment, exec_record, install_script
from fleetlib.results import InstallResult
from fleetlib.roster import NAME_PATTERN
from fleetlib.rundir import ensure_private_dir
from fleetlib.runner import Result
from fleetlib.screen import screen_lines
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitState
from fleetlib.transcript import ensure_log_dir
from fleetlib.units import cgroup_mounts

TMUX_TIMEOUT_S: Final = 10.0
SERVER_DIED: Final = "the fleet's tmux server died"
MANAGER_UP: Final = ("running", "degraded")
COMMAND_BUDGET: Final = 12 * 1024  # bytes of argv per tmux client (tmux's limit is 16 KiB)
HOLDER: Final = "tmux:fleet"
_AT_REST: Final = ("inactive", "failed")  # a unit in these states runs nothing


@dataclass(kw_only=True)
class TmuxPrimitives(FleetContext):
    """Window-level primitives shared by both backends."""

    name: str = "tmux"
    fast_restart: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def unit_dir(self) -> Path | None:
        return None

    def _tmux(self, commands: list[str], *, env: Mapping[str, str] | None = None) -> Result:
        """One bounded tmux client on the fleet's socket (``-f /dev/null``: a server this
        client starts ignores the user's tmux.conf)."""
        argv = [*tmux.tmux_base(self.tmux_bin, self.paths.tmux_socket), "-f", "/dev/null", *commands]
        result = self.runner.run(argv, timeout=TMUX_TIMEOUT_S, env=env)
        _raise_if_frozen(result, self.paths.tmux_socket)
        return result

    def windows(self) -> dict[str, tmux.Window] | None:
        """The fleet session's windows, or None when the server or session is not there."""
        result = self.runner.run(tmux.list_windows_argv(self.tmux_bin, self.paths.tmux_socket), timeout=TMUX_TIMEOUT_S)
        _raise_if_frozen(result, self.paths.tmux_socket)
        return tmux.parse_windows(result.stdout) if result.ok else None

    def last_output(self, name: str, lines: int) -> str:
        result = self._tmux(["capture-pane", "-p", "-J", "-t", tmux.window_target(name), "-S", f"-{lines * 4}"])
        text = result.stdout.rstrip("\n") if result.ok else ""
        # tmux's own "Pane is dead (status N, <date>)" line says nothing the status does not.
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("Pane is dead (")]
        return screen_lines("\n".join(kept), lines)

    def screens(self, names: list[str]) -> dict[str, str]:
        """The visible screen of each named window, in as few tmux clients as fit (one for
        a fleet of 200); a window that is gone is left out."""
        token = f"fleet-screen-{secrets.token_hex(8)}"
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
            result = self._tmux(tmux.capture_screens_commands([tmux.window_target(n) for n in chunk], token))
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
            self._tmux(commands[:-1])

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
        for name in names:
            window = windows.get(name)
            if window is None or window.dead or window.pane_pid is None:
                continue
            record = exec_record(self.paths.run_dir, name)
            if record is not None and record.supervisor == window.pane_pid and _signalable(record.agent):
                found[name] = record
        return found

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
        return replace(spec, launcher=self.launcher(name), cgroup_mounts=cgroup_mounts(_mountinfo()))

    def launcher(self, name: str) -> tuple[str, ...]:
        """``systemd-run --user --scope`` with the agent's limits, in the fleet's slice."""
        units = systemd.UnitNames.for_home(self.paths.home)
        properties = [
            "MemoryAccounting=yes", "TasksAccounting=yes", "CPUAccounting=yes", "OOMPolicy=continue",
            *self.roster.get(name).resources.properties(),
        ]  # fmt: skip
        return (
            "systemd-run", "--user", "--scope", "--quiet", f"--unit={units.scope(name, secrets.token_hex(4))}",
            f"--slice={units.slice}", *(word for prop in properties for word in ("-p", prop)), "--",
        )  # fmt: skip

    def window_env(self, name: str) -> dict[str, str]:
        """The agent's whole environment when this command starts it (tmux backend: the
        base is this command's, see :func:`fleetlib.pane.base_environment`)."""
        agent = self.roster.get(name)
        base = base_environment(self.environ, self.environ.get("HOME") or str(Path.home()))
        env = hooks.wired_env(self.paths.run_dir, name, agent.runtime, agent.env)
        return agent_environment(base, procs.marker(name, str(self.paths.tmux_socket)), env)

    def agent_argv(self, name: str) -> list[str]:
        """What the agent's window runs: its roster argv with the fleet's hooks wired in."""
        agent = self.roster.get(name)
        return hooks.wired_argv(self.paths.run_dir, name, agent.runtime, agent.launch_argv(), agent.args)

    def journal(self, name: str, lines: int) -> str | None:
        return None

    def desired_unit_files(self) -> dict[str, str]:
        return {}


@dataclass(kw_only=True)
class TmuxBackend(TmuxPrimitives):
    """The tmux-only backend: windows of the fleet's own tmux server, nothing else."""

    def preflight(self, names: list[str]) -> None:
        """Nothing to install for tmux: every command works on the roster directly."""

    def observe(self, names: list[str]) -> FleetStatus:
        """The windows; with no server, whether it died: its socket is left (a stop removes
        it), and the holder is then ``failed (died)`` with a note saying what to do."""
        windows = self.windows()
        if windows is not None:
            execs = self.agent_execs(names, windows)
            agents = [
                AgentStatus.build(name, tmux.window_target(name), windows.get(name), None, execs.get(name))
                for name in names
            ]
            return FleetStatus(
                self.name, UnitState(HOLDER, "loaded", "active", "running"), agents, self.stray_rows(windows)
            )
        died = server_died(self.paths.tmux_socket)
        reason = SERVER_DIED if died else None
        agents = [
            replace(AgentStatus.build(name, tmux.window_target(name), None, None), reason=reason) for name in names
        ]
        if not died:
            return FleetStatus(self.name, UnitState(HOLDER, "loaded", "inactive", "dead"), agents)
        note = (
            f"{SERVER_DIED} without `fleet stop` (killed, or out of memory; its socket {self.paths.tmux_socket} "
            "is left): nothing supervises its agents now; `fleet start` starts the fleet again (first ending "
            "whatever of the old one still runs), `fleet stop` leaves it stopped"
        )
        return FleetStatus(self.name, UnitState(HOLDER, "loaded", "failed", "died"), agents, note=note)

    def launch(self, names: list[str], *, holder: bool) -> None:
        """Create (or replace) the windows of ``names`` in one tmux client, starting the
        server first when it is not running; the server gets only the base environment."""
        windows = None if self.runner.dry_run else self.windows()
        if windows is not None and not names:
            return
        if not self.runner.dry_run:
            ensure_private_dir(self.paths.run_dir, "fleet run directory")
            ensure_log_dir(self.paths)  # before any window: its pipe appends there
            install_script(self.paths.run_dir)
        first: list[str] = [*tmux.new_session_commands(), ";"] if windows is None else []
        first += [*tmux.keep_dead_panes_commands(), ";"]
        if windows is None or watcher.WINDOW not in windows:
            # The watcher lives in the holder session: gone with the server, back with it.
            argv = watcher.watcher_argv(self.paths.run_dir)
            first += [*tmux.watcher_window_commands(watcher.WINDOW, argv, env=watcher.watcher_environment()), ";"]
        scoped = self._limits(names)
        windows_commands = [
            tmux.agent_window_commands(
                self.pane_spec(name, scoped=scoped),
                self.agent_argv(name),
                env=self.window_env(name),
                run_dir=self.paths.run_dir,
            )
            for name in names
        ]
        env = base_environment(self.environ, str(Path.home()))
        for batch in _batches(first, windows_commands):
            result = self._tmux(batch, env=env)
            if not result.ok:
                raise FleetOperationError(
                    f"tmux could not start {', '.join(names) or 'the fleet'}: {result.error_line()}"
                )

    def _limits(self, names: list[str]) -> bool:
        """Whether the agents run in scopes with limits: when the roster sets any, which
        needs a user manager; without one, FleetError (exit 2) before anything starts. The
        fleet-wide ceiling is set on the slice first (runtime only: the roster is its truth)."""
        limited = [name for name in names if self.roster.get(name).resources]
        if not limited and not self.roster.fleet_resources:
            return False
        if self.runner.dry_run:
            return True
        answer = self.runner.run(systemd.systemctl_argv("is-system-running"), timeout=TMUX_TIMEOUT_S)
        if answer.stdout.strip() not in MANAGER_UP:
            own = f"agents[{self.roster.names().index(limited[0])}].resources" if limited else ""
            where = next((key for key in (own, "resources") if key in self.roster.lines), own or "fleet_resources")
            line = self.roster.lines.get(where)
            said = answer.stdout.strip() or answer.error_line()
            raise FleetError(
                f"{self.roster.source}{f':{line}' if line else ''}: {where}: the tmux backend enforces limits "
                f"through a systemd user manager, and none answers here (`systemctl --user is-system-running`: "
                f"{said!r}); remove the limits from the roster or run where `systemctl --user` works"
            )
        units = systemd.UnitNames.for_home(self.paths.home)
        ceiling = self.roster.fleet_resources.properties()
        if ceiling:
            result = self.runner.run(
                systemd.systemctl_argv("set-property", [units.slice, *ceiling], "--runtime"), timeout=TMUX_TIMEOUT_S
            )
            if not result.ok:
                raise FleetOperationError(f"cannot set fleet_resources on {units.slice}: {result.error_line()}")
        return True

    def terminate(self, names: list[str], *, holder: bool) -> dict[str, str]:
        """TERM, then HUP (as systemd's ``SendSIGHUP=yes`` does: interactive programs such
        as shells ignore TERM but end on a hang-up), to every process of the agents."""
        if not self.runner.dry_run:
            self.signal_marked(names, signal.SIGTERM, signal.SIGHUP)
        return {}

    def restart_all(self, names: list[str]) -> None:
        raise NotImplementedError("the tmux backend restarts through stop and start")

    def cleanup(self, names: list[str], *, holder: bool) -> None:
        """Remove the stopped agents' windows; for the whole fleet, the server and its socket."""
        if not holder:
            self.remove_windows(names)
        else:
            self._tmux(["kill-server"])
            if not self.runner.dry_run and not _server_answers(self):
                self.runner.run(["rm", "-f", "--", str(self.paths.tmux_socket)])  # a command: fenced
        if not self.runner.dry_run:
            transcript.wake_writers(self.paths)  # a stopped writer would outlive its window

    def install(self, *, enable: bool = True) -> InstallResult:
        return InstallResult(
            "install",
            self.name,
            self.runner.dry_run,
            notes=[
                "the tmux backend has nothing to install; start the fleet with `fleet start` "
                "(without a supervisor it will not come back after a reboot)"
            ],
        )

    def uninstall(self) -> InstallResult:
        return InstallResult(
            "uninstall", self.name, self.runner.dry_run, notes=["the tmux backend installs nothing; nothing to do"]
        )


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _batches(first: list[str], groups: list[list[str]]) -> list[list[str]]:
    """Command sequences for as few tmux clients as fit: tmux refuses a client command
    over 16 KiB, so window commands are packed in order into sequences under
    :data:`COMMAND_BUDGET` bytes (``first`` opens the first one)."""
    batches: list[list[str]] = []
    current, size = list(first), sum(len(word) + 1 for word in first)
    for group in groups:
        cost = sum(len(word) + 1 for word in group) + 2
        if len(current) > len(first) * (not batches) and size + cost > COMMAND_BUDGET:
            batches.append(current[:-1])
            current, size = [], 0
        current += [*group, ";"]
        size += cost
    if current:
        batches.append(current[:-1])
    return batches


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


def server_died(socket: Path) -> bool:
    """(tmux backend, its server not answering) Whether it died rather than stopped: a
    server leaves its socket when it dies or is killed; ``fleet stop`` removes it."""
    try:
        return stat.S_ISSOCK(os.lstat(socket).st_mode)
    except OSError:
        return False


def _server_answers(primitives: TmuxPrimitives) -> bool:
    return primitives.runner.run(
        [*tmux.tmux_base(primitives.tmux_bin, primitives.paths.tmux_socket), "has-session"], timeout=TMUX_TIMEOUT_S
    ).ok


def _raise_if_frozen(result: Result, socket: Path) -> None:
    if result.timed_out:
        raise FleetOperationError(
            f"the fleet's tmux server ({socket}) did not answer within {TMUX_TIMEOUT_S:g}s; "
            "it may be stopped or frozen: check it with `fleet doctor`, or kill it (agents lose their windows)"
        )
