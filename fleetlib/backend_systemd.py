"""The systemd backend's primitives: the fleet as units of a ``systemd --user`` manager.

A sibling of :class:`~fleetlib.backend_tmux.TmuxBackend` (as Fabric's ``Remote`` is of
Invoke's ``Local``): both hold one :class:`~fleetlib.agent_windows.AgentWindows`, since
every agent is a tmux window here too. The holder unit runs the tmux server, each agent is an instance of the agent
template (see :mod:`fleetlib.units`), and every change is a ``systemctl --no-block`` job,
so the engine never blocks in a call while it must keep its lease fresh.

Speed at fleet scale comes from letting systemd do the fan-out: a whole-fleet restart is
one ``restart`` of the holder (the agents' ``Requires=``/``After=`` propagate it, each
agent once, after the new tmux server is up; every old agent process is gone first,
since each agent's processes live in its unit's cgroup) plus one ``start`` of every agent
(merged into the restart jobs; starts those that were down).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetlib import procs, systemd, tmux
from fleetlib.agent_windows import AgentWindows
from fleetlib.atomic import atomic_write_text
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.pane import base_environment, install_script, runs, script_path
from fleetlib.primitives import HOLDER_KEY
from fleetlib.results import InstallResult
from fleetlib.rundir import ensure_private_dir
from fleetlib.runner import Result, apply_change, query, query_all
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.tmux_client import TMUX_TIMEOUT_S
from fleetlib.transcript import ensure_log_dir
from fleetlib.units import DROPIN_NAME, cgroup_mounts, dropin_command, unit_files
from fleetlib.watcher_config import watcher_argv, watcher_environment

SYSTEMCTL_TIMEOUT_S: Final = 30.0
NO_MANAGER_HINT: Final = (
    "run inside a user session (XDG_RUNTIME_DIR set, `systemctl --user` working), or use --backend tmux"
)
_NO_MANAGER_HINTS: Final = ("Failed to connect to bus", "Failed to connect to user scope bus", "No medium found")


@dataclass(kw_only=True)
class SystemdBackend(FleetContext):
    """Units in ``unit_dir`` on the user manager, named for the fleet's home (see
    :class:`~fleetlib.systemd.UnitNames`: nothing here names another home's units);
    agents in tmux windows of the holder."""

    units_at: Path
    name: str = "systemd"
    fast_restart: bool = True
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    windows: AgentWindows = field(init=False)

    def __post_init__(self) -> None:
        self.windows = AgentWindows(
            paths=self.paths, roster=self.roster, runner=self.runner, tmux_bin=self.tmux_bin, environ=self.environ
        )

    @property
    def unit_dir(self) -> Path | None:
        return self.units_at

    @functools.cached_property
    def units(self) -> systemd.UnitNames:
        return systemd.UnitNames.for_home(self.paths.home)

    # ----------------------------------------------------------------- helpers

    def _units(self, names: Iterable[str]) -> list[str]:
        return [self.units.agent(name) for name in names]

    def _systemctl(self, action: str, units: Sequence[str] = (), *options: str, read: bool = False) -> Result:
        """``systemctl --user`` (``read``: a query, which runs in a dry run too); one line
        when no manager answers or it answers too late."""
        argv = systemd.systemctl_argv(action, units, *options)
        result = (
            query(self.runner, argv, timeout=SYSTEMCTL_TIMEOUT_S)
            if read
            else self.runner.run(argv, timeout=SYSTEMCTL_TIMEOUT_S)
        )
        _raise_if_no_manager(result)
        if result.timed_out:
            raise FleetOperationError(f"the systemd user manager did not answer `systemctl --user {action}` in time")
        return result

    def _check(self, result: Result, doing: str) -> None:
        if not result.ok:
            raise FleetOperationError(f"{doing} failed: {result.error_line()}")

    def _require_manager(self) -> None:
        """FleetError (exit 2) before anything is written when no user manager answers."""
        answer = self._systemctl("is-system-running", read=True)
        state = answer.stdout.strip()
        if state not in ("running", "degraded", "starting", "initializing", "maintenance"):
            raise FleetError(
                f"no systemd user manager reachable (`systemctl --user is-system-running` says "
                f"{state or answer.error_line()!r}); run inside a user session, or use --backend tmux"
            )

    def _dropin(self, name: str) -> Path:
        """The per-agent drop-in install writes (its existence means "installed")."""
        return self.units_at / f"{self.units.agent(name)}.d" / DROPIN_NAME

    def _installed_agent_names(self) -> list[str]:
        names = []
        for dropin in sorted(self.units_at.glob(f"{self.units.agent_pattern}.d/{DROPIN_NAME}")):
            name = self.units.agent_name(dropin.parent.name[: -len(".d")])
            if name:
                names.append(name)
        return names

    def desired_unit_files(self) -> dict[str, str]:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            mountinfo = ""
        home = Path(self.environ.get("HOME") or Path.home())
        return unit_files(
            self.roster,
            units=self.units,
            tmux_bin=self.tmux_bin,
            socket=self.paths.tmux_socket,
            environment=base_environment(self.environ, str(home)),
            user_home=home,
            cgroup_mounts=cgroup_mounts(mountinfo),
            env_bin=shutil.which("env") or "/usr/bin/env",
            watcher=watcher_argv(self.paths.run_dir),
            watcher_env=watcher_environment(),
        )

    # ----------------------------------------------------------------- primitives

    def last_output(self, name: str, lines: int) -> str:
        return self.windows.last_output(name, lines)

    def screens(self, names: list[str]) -> dict[str, str]:
        return self.windows.screens(names)

    def preflight(self, names: list[str]) -> None:
        """FleetError (exit 2) naming what is missing when the units are not installed."""
        missing = [p for p in (self.units.holder, self.units.template) if not (self.units_at / p).is_file()]
        if missing:
            if systemd.no_user_manager_socket(self.environ):  # `fleet install` would refuse too: say why
                raise FleetError(
                    f"no systemd user manager reachable (nothing listens in $XDG_RUNTIME_DIR "
                    f"{self.environ.get('XDG_RUNTIME_DIR')}); {NO_MANAGER_HINT}"
                )
            raise FleetError(f"fleet units are not installed in {self.units_at}; run `fleet install`")
        stale = [n for n in names if not self._dropin(n).is_file()]
        if stale:
            raise FleetError(
                f"units for agent(s) {', '.join(stale)} are not installed (roster changed?); run `fleet install`"
            )

    def observe(self, names: list[str]) -> FleetStatus:
        """Two concurrent commands, whatever the fleet size: one ``tmux`` call (windows and
        what their supervisors recorded) and one ``systemctl list-units`` (states; units
        the manager has not loaded count as inactive)."""
        windows_result, units_result = query_all(
            self.runner,
            [self.windows.client.argv(tmux.list_windows_commands()), self.units.list_units_argv()],
            timeout=TMUX_TIMEOUT_S,
        )
        self.windows.client.check(windows_result)
        _raise_if_no_manager(units_result)
        if units_result.timed_out:
            raise FleetOperationError(f"the systemd user manager did not answer within {TMUX_TIMEOUT_S:g}s")
        states = systemd.parse_list_units(units_result.stdout)
        windows = tmux.parse_windows(windows_result.stdout) if windows_result.ok else {}

        def state_of(unit: str) -> systemd.UnitState:
            return states.get(unit) or systemd.UnitState(unit, load_state="not-loaded")

        execs = self.windows.agent_execs(names, windows)
        agents = [
            AgentStatus.build(
                name, self.units.agent(name), windows.get(name), state_of(self.units.agent(name)), execs.get(name)
            )
            for name in names
        ]
        units = {name: state for unit, state in states.items() if (name := self.units.agent_name(unit))}
        strays = self.windows.stray_rows(windows, units)
        return FleetStatus(self.name, state_of(self.units.holder), agents, strays)

    def glance(self, names: list[str]) -> dict[str, AgentStatus]:
        """The exec records alone: neither the manager nor the tmux server is asked, both
        busy starting the very agents waited for (see :meth:`AgentWindows.exec_rows`)."""
        return self.windows.exec_rows(names, self.units.agent)

    def launch(self, names: list[str], *, holder: bool) -> None:
        """(Re)start the agents' units, and the holder for the whole fleet; a unit whose
        supervisor is waiting to restart a crashed agent is restarted at once."""
        units = self._units(names)
        everything = [self.units.holder, *units] if holder else units
        if not everything:
            return
        self._prepare_windows()
        self._systemctl("reset-failed", everything)  # the start limit also counts manual starts
        if holder:
            self._check(self._systemctl("start", [self.units.holder], "--no-block"), "systemctl --user start")
        if units:
            self._check(self._systemctl("restart", units, "--no-block"), "systemctl --user restart")

    def _prepare_windows(self) -> None:
        """What a new window needs before it opens: the log dir (its pipe appends there) and
        this version's supervisor script (a unit runs whatever script the run dir holds)."""

        def prepare() -> None:
            ensure_log_dir(self.paths)
            ensure_private_dir(self.paths.run_dir, "fleet run directory")
            install_script(self.paths.run_dir)

        apply_change(self.runner, prepare)

    def terminate(self, names: list[str], *, holder: bool) -> dict[str, str]:
        """Stop jobs for the agents (and the holder): systemd sends TERM (and HUP) to each
        unit's cgroup and KILL after its ``TimeoutStopSec`` (the agent's ``stop_timeout``).
        When the manager refuses the batch, every unit is asked on its own, so one refusal
        names that unit and stops nothing less."""
        keys = {self.units.agent(name): name for name in names}
        if holder:
            keys[self.units.holder] = HOLDER_KEY
        if not keys or self._systemctl("stop", list(keys), "--no-block").ok:
            return {}
        refused = {}
        for unit, key in keys.items():
            single = self._systemctl("stop", [unit], "--no-block")
            if not single.ok:
                refused[key] = single.error_line()
        return refused

    def restart_all(self, names: list[str]) -> None:
        units = self._units(names)
        self._prepare_windows()
        self._systemctl("reset-failed", [self.units.holder, *units])
        self._check(self._systemctl("restart", [self.units.holder], "--no-block"), "systemctl --user restart")
        if units:
            self._check(self._systemctl("start", units, "--no-block"), "systemctl --user start")

    def current(self, rows: dict[str, AgentStatus]) -> list[str]:
        """Running agents whose supervisor runs the command of the drop-in installed now,
        with the run dir's script (an install or an upgrade since it started: not current)."""
        found = []
        for name, row in rows.items():
            if row.state != "running" or row.pid is None or row.agent_pid is None:
                continue
            try:
                command = dropin_command(self._dropin(name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
            if command is not None and runs(row.pid, command, self.paths.run_dir):
                found.append(name)
        return found

    def run_members(self, rows: dict[str, AgentStatus]) -> dict[str, list[int]]:
        """Each agent's processes in its unit's cgroup but its supervisor and the unit's own
        tmux client (its ``ExecStart``, started before the supervisor, maybe within the same
        clock tick; see :func:`_of_the_run`). None for a supervisor outside its unit's cgroup
        (where joining it was not permitted, it is in the holder's, with every other agent)."""
        found = {}
        for name, row in rows.items():
            path = procs.cgroup_of(row.pid) if row.pid is not None else None
            if row.pid is None or path is None or path.rsplit("/", 1)[-1] != self.units.agent(name):
                continue
            own = procs.start_ticks(row.pid)
            members = set(procs.cgroup_members(path)) - {row.pid} if own else set()
            found[name] = sorted(pid for pid in members if _of_the_run(pid, int(own)))
        return found

    def cleanup(self, names: list[str], *, holder: bool) -> None:
        """Remove the windows of stopped agents (the holder's stop already removed the
        server) and clear their units' ``failed`` state: a stop that needed the final
        SIGKILL (an agent ignoring TERM) ends its unit ``failed`` (Result=timeout), but the
        agent was stopped as asked, and ``status`` says so."""
        if not holder:
            self.windows.remove_windows(names)
        if names:
            self._systemctl("reset-failed", self._units(names))

    def journal(self, name: str, lines: int) -> str | None:
        result = query(
            self.runner,
            ["journalctl", "--user", "-u", self.units.agent(name), "-n", str(lines), "--no-pager", "-q"],
            timeout=SYSTEMCTL_TIMEOUT_S,
        )
        return result.stdout.rstrip() if result.ok and result.stdout.strip() else None

    # ----------------------------------------------------------------- install

    def install(self, *, enable: bool = True) -> InstallResult:
        """Write the units, daemon-reload, enable them; idempotent. Agents removed from the
        roster since the last install are stopped, disabled and their drop-ins removed.
        Checks the manager answers before writing anything."""
        self._require_manager()
        written: list[str] = []

        def prepare() -> None:
            ensure_private_dir(self.paths.run_dir, "fleet run directory")
            ensure_log_dir(self.paths)  # units start windows at boot too: the pipes append there
            if install_script(self.paths.run_dir):
                written.append(str(script_path(self.paths.run_dir)))

        apply_change(self.runner, prepare)
        for relative, text in self.desired_unit_files().items():
            path = self.units_at / relative
            try:
                current = path.read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError):
                current = None
            # The drop-ins carry the roster's `env` (API keys, tokens): no unit file is
            # readable by others (the user's own manager, which reads them, runs as the user).
            if current == text:
                if path.stat().st_mode & 0o077:  # written by an older version
                    apply_change(self.runner, functools.partial(path.chmod, 0o600))
                continue
            written.append(str(path))
            apply_change(self.runner, functools.partial(atomic_write_text, path, text, secret=True))
        removed_names = sorted(set(self._installed_agent_names()) - set(self.roster.names()))
        removed = [str(self._dropin(name)) for name in removed_names]
        disabled = self._units(removed_names)
        if removed_names:
            self._systemctl("disable", disabled, "--now")
            self.windows.remove_windows(removed_names)  # their dead windows, kept for output until now
            for name in removed_names:
                apply_change(self.runner, functools.partial(self._remove_dropin, name))
        reloaded = bool(written or removed)
        if reloaded:
            self._check(self._systemctl("daemon-reload"), "systemctl --user daemon-reload")
        enabled: list[str] = []
        if enable:
            wants = self.units_at / "default.target.wants"
            candidates = [self.units.holder, *self._units(self.roster.names())]
            enabled = [unit for unit in candidates if not (wants / unit).exists()]
            if enabled:
                self._check(self._systemctl("enable", enabled), "systemctl --user enable")
        return InstallResult(
            "install", self.name, self.runner.dry_run, written=written, removed=removed, enabled=enabled,
            disabled=disabled, reloaded=reloaded, notes=self._slice_notes(),
        )  # fmt: skip

    def _slice_notes(self) -> list[str]:
        """A note when the running holder is outside the home's slice (installed by a version
        before limits): a unit's slice changes only when it starts, and until then agents
        cannot join their units' cgroups, so their limits do not hold."""
        shown = self._systemctl("show", [self.units.holder], "-p", "ControlGroup", "--value", read=True).stdout.strip()
        if not shown or f"/{self.units.slice}/" in shown:
            return []
        return [f"the running fleet is outside {self.units.slice}: run `fleet restart` once so its limits apply"]

    def _remove_dropin(self, name: str) -> None:
        dropin = self._dropin(name)
        dropin.unlink(missing_ok=True)
        if dropin.parent.is_dir() and not any(dropin.parent.iterdir()):
            dropin.parent.rmdir()

    def uninstall(self) -> InstallResult:
        """Stop and disable every fleet unit and remove the files install wrote. Without a
        reachable manager the files are still removed (with a note), so what install wrote
        can always be removed."""
        dry = self.runner.dry_run  # (what the result says; the runner makes or records each change)
        names = sorted(set(self._installed_agent_names()) | set(self.roster.names()))
        fleet_units = (self.units.holder, self.units.template, self.units.watcher, self.units.slice)
        paths = [self.units_at / unit for unit in fleet_units]
        paths += [self._dropin(n) for n in names]
        present = [path for path in paths if path.exists()]
        wants = self.units_at / "default.target.wants"
        units = [*self._units(names), self.units.holder]
        enabled = [unit for unit in units if (wants / unit).is_symlink() or (wants / unit).exists()]
        notes: list[str] = []
        manager = True
        try:
            self._require_manager()
        except FleetError as exc:
            manager = False
            notes.append(f"{exc}; removed the files without stopping the units")
        if not present and not enabled:
            return InstallResult("uninstall", self.name, dry, notes=notes or ["nothing is installed; nothing to do"])
        if manager:
            self._systemctl("disable", units, "--now")
        else:
            for unit in enabled:
                apply_change(self.runner, functools.partial((wants / unit).unlink, missing_ok=True))
        for path in present:
            apply_change(self.runner, functools.partial(path.unlink, missing_ok=True))
        for name in names:
            apply_change(self.runner, functools.partial(self._remove_dropin, name))
        if manager:
            self._check(self._systemctl("daemon-reload"), "systemctl --user daemon-reload")
        return InstallResult(
            "uninstall", self.name, dry, removed=[str(p) for p in present], disabled=enabled, reloaded=manager,
            notes=notes,
        )  # fmt: skip


def _raise_if_no_manager(result: Result) -> None:
    if not result.ok and any(hint in result.stderr for hint in _NO_MANAGER_HINTS):
        raise FleetError(f"no systemd user manager reachable ({result.error_line()}); {NO_MANAGER_HINT}")


def _of_the_run(pid: int, supervisor_ticks: int) -> bool:
    """Whether ``pid``, in an agent unit's cgroup, belongs to its supervisor's runs: started
    after the supervisor's clock tick, or within it unless it is the unit's tmux client (by
    its process name: a wrapper script may have exec'd it)."""
    started = procs.start_ticks(pid)
    if not started or int(started) < supervisor_ticks:
        return False
    return int(started) > supervisor_ticks or not procs.name(pid).startswith("tmux")
