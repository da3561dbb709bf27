"""The tmux backend's primitives: the fleet as windows of a plain tmux server.

No supervisor but the pane's own (:mod:`fleetlib.pane`): the holder is a tmux server on
the fleet's private socket with one session; each agent is a window running its command
under the pane supervisor. Nothing here survives a reboot.

What the systemd backend shares (every agent is a tmux window on both: listing windows,
capturing output, removing windows, signalling an agent's marked processes) is
:class:`~fleetlib.agent_windows.AgentWindows`, which both hold. Every tmux call goes
through its :class:`~fleetlib.tmux_client.TmuxClient`, bounded: a frozen server is one
error line, never a hang.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleetlib import systemd, tmux
from fleetlib.agent_windows import COMMAND_BUDGET, AgentWindows
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.pane import base_environment, install_script
from fleetlib.rundir import ensure_private_dir
from fleetlib.runner import apply_change, query
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitState
from fleetlib.tmux_client import TMUX_TIMEOUT_S

if TYPE_CHECKING:
    from fleetlib.results import InstallResult

SERVER_DIED: Final = "the fleet's tmux server died"
MANAGER_UP: Final = ("running", "degraded")
HOLDER: Final = "tmux:fleet"


@dataclass(kw_only=True)
class TmuxBackend(FleetContext):
    """The tmux-only backend: windows of the fleet's own tmux server, nothing else.

    A sibling of :class:`~fleetlib.backend_systemd.SystemdBackend`: both hold one
    :class:`~fleetlib.agent_windows.AgentWindows` (and through it the fleet's one tmux
    client) for what an agent's window needs on either."""

    name: str = "tmux"
    fast_restart: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    windows: AgentWindows = field(init=False)

    def __post_init__(self) -> None:
        self.windows = AgentWindows(
            paths=self.paths, roster=self.roster, runner=self.runner, tmux_bin=self.tmux_bin, environ=self.environ
        )

    @property
    def unit_dir(self) -> Path | None:
        return None

    def last_output(self, name: str, lines: int) -> str:
        return self.windows.last_output(name, lines)

    def screens(self, names: list[str]) -> dict[str, str]:
        return self.windows.screens(names)

    def journal(self, name: str, lines: int) -> str | None:
        return None

    def desired_unit_files(self) -> dict[str, str]:
        return {}

    def preflight(self, names: list[str]) -> None:
        """Nothing to install for tmux: every command works on the roster directly."""

    def observe(self, names: list[str]) -> FleetStatus:
        """The windows; with no server, whether it died: its socket is left (a stop removes
        it), and the holder is then ``failed (died)`` with a note saying what to do."""
        windows = self.windows.listing()
        if windows is not None:
            execs = self.windows.agent_execs(names, windows)
            agents = [
                AgentStatus.build(name, tmux.window_target(name), windows.get(name), None, execs.get(name))
                for name in names
            ]
            return FleetStatus(
                self.name, UnitState(HOLDER, "loaded", "active", "running"), agents, self.windows.stray_rows(windows)
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

    def glance(self, names: list[str]) -> dict[str, AgentStatus]:
        """The exec records alone, as under systemd: no tmux client while the server creates
        the very windows waited for (see :meth:`AgentWindows.exec_rows`)."""
        return self.windows.exec_rows(names, tmux.window_target)

    def launch(self, names: list[str], *, holder: bool) -> None:
        """Create (or replace) the windows of ``names`` in one tmux client, starting the
        server first when it is not running; the server gets only the base environment."""
        windows = self.windows.listing()
        if windows is not None and not names:
            return
        from fleetlib import watcher_config  # noqa: PLC0415 (a start's: `status` never loads it)

        apply_change(self.runner, self._prepare_run_dir)
        first: list[str] = [*tmux.new_session_commands(), ";"] if windows is None else []
        first += [*tmux.keep_dead_panes_commands(), ";"]
        if windows is None or watcher_config.WINDOW not in windows:
            # The watcher lives in the holder session: gone with the server, back with it.
            argv = watcher_config.watcher_argv(self.paths.run_dir)
            first += [
                *tmux.watcher_window_commands(watcher_config.WINDOW, argv, env=watcher_config.watcher_environment()),
                ";",
            ]
        scoped = self._limits(names)
        windows_commands = [
            tmux.agent_window_commands(
                self.windows.pane_spec(name, scoped=scoped),
                self.windows.agent_argv(name),
                env=self.windows.window_env(name),
                run_dir=self.paths.run_dir,
            )
            for name in names
        ]
        env = base_environment(self.environ, str(Path.home()))
        for batch in _batches(first, windows_commands):
            result = self.windows.client.run(batch, env=env, no_config=True)
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
        answer = query(self.runner, systemd.systemctl_argv("is-system-running"), timeout=TMUX_TIMEOUT_S)
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
        self.windows.signal_marked(names, signal.SIGTERM, signal.SIGHUP)
        return {}

    def current(self, rows: dict[str, AgentStatus]) -> list[str]:
        """None: a window's command carries the environment of the ``fleet`` command that
        made it, so every restart makes new windows from the caller's environment."""
        return []

    def run_members(self, rows: dict[str, AgentStatus]) -> dict[str, list[int]]:
        """None beside the marker (never asked: no agent is renewed in place here)."""
        return {}

    def restart_all(self, names: list[str]) -> None:
        raise NotImplementedError("the tmux backend restarts through stop and start")

    def cleanup(self, names: list[str], *, holder: bool) -> None:
        """Remove the stopped agents' windows; for the whole fleet, the server and its socket."""
        if not holder:
            self.windows.remove_windows(names)
        else:
            self.windows.client.run(["kill-server"], no_config=True)
            if not self.windows.client.answers():  # (a dry run: it still answers, nothing to remove)
                self.runner.run(["rm", "-f", "--", str(self.paths.tmux_socket)])  # a command: fenced
        apply_change(self.runner, self._wake_writers)  # a stopped writer would outlive its window

    def _wake_writers(self) -> None:
        from fleetlib import transcript  # noqa: PLC0415 (see _prepare_run_dir)

        transcript.wake_writers(self.paths)

    def _prepare_run_dir(self) -> None:
        """What a window needs before it opens: the run dir, the log dir (its pipe appends
        there) and this version's pane supervisor script."""
        # The transcript code only where windows start or stop: `status` never loads it.
        from fleetlib.transcript import ensure_log_dir  # noqa: PLC0415

        ensure_private_dir(self.paths.run_dir, "fleet run directory")
        ensure_log_dir(self.paths)
        install_script(self.paths.run_dir)

    def install(self, *, enable: bool = True) -> InstallResult:
        from fleetlib.results import InstallResult  # noqa: PLC0415 (`status` makes no result: not loaded for it)

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
        from fleetlib.results import InstallResult  # noqa: PLC0415

        return InstallResult(
            "uninstall", self.name, self.runner.dry_run, notes=["the tmux backend installs nothing; nothing to do"]
        )


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


def server_died(socket: Path) -> bool:
    """(tmux backend, its server not answering) Whether it died rather than stopped: a
    server leaves its socket when it dies or is killed; ``fleet stop`` removes it."""
    try:
        return stat.S_ISSOCK(os.lstat(socket).st_mode)
    except OSError:
        return False
