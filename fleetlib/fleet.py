"""Fleet control on a ``systemd --user`` manager: install, start, stop, restart, status.

Policy lives here (what to run, in which order, what counts as failure); every command is
an argv list handed to the injected :class:`~fleetlib.runner.Runner`. Every operation
waits until the fleet has really reached the requested state (``systemctl`` only waits
for its own jobs) and reports what it did.

Speed at fleet scale comes from letting systemd do the fan-out: a whole-fleet restart is
one ``restart`` of the holder (the agents' ``Requires=``/``After=`` propagate it, each
agent once, after the new tmux server is up) followed by one ``start`` of every agent
(a no-op for agents already restarted; starts those that were down). Status is one
``tmux`` call plus one ``systemctl list-units``, run concurrently.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetlib import systemd, tmux
from fleetlib.atomic import atomic_write_text
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.lock import RestartGuard, acquire_restart_lock, ensure_private_dir
from fleetlib.paths import FleetPaths
from fleetlib.runner import Result
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.units import DROPIN_NAME, unit_files

WAIT_TIMEOUT_S: Final = 120.0
POLL_S: Final = 0.05
CRASH_LOOP_RESTARTS: Final = 3
_NO_MANAGER_HINTS: Final = ("Failed to connect to bus", "Failed to connect to user scope bus", "No medium found")


@dataclass(kw_only=True)
class Fleet(FleetContext):
    """A fleet run by a systemd user manager: units in ``unit_dir``, agents in tmux windows."""

    unit_dir: Path
    timeout: float = WAIT_TIMEOUT_S
    lock_options: dict[str, Any] = field(default_factory=dict)
    backend: str = "systemd"

    # ----------------------------------------------------------------- helpers

    def _units(self, names: Iterable[str]) -> list[str]:
        return [systemd.agent_unit(name) for name in names]

    def _systemctl(self, action: str, units: Sequence[str] = (), *options: str) -> Result:
        result = self.runner.run(systemd.systemctl_argv(action, units, *options))
        _raise_if_no_manager(result)
        return result

    def _check(self, result: Result, doing: str) -> None:
        if not result.ok:
            raise FleetOperationError(f"{doing} failed: {result.error_line()}")

    def ensure_installed(self, names: Sequence[str]) -> None:
        """FleetError (exit 2) naming what is missing when the units are not installed."""
        missing = [
            path for path in (systemd.HOLDER_UNIT, systemd.AGENT_TEMPLATE) if not (self.unit_dir / path).is_file()
        ]
        if missing:
            raise FleetError(f"fleet units are not installed in {self.unit_dir}; run `inv fleet.install`")
        stale = [n for n in names if not self._dropin(n).is_file()]
        if stale:
            raise FleetError(
                f"units for agent(s) {', '.join(stale)} are not installed (roster changed?); run `inv fleet.install`"
            )

    def _reset_failed(self, units: Sequence[str]) -> None:
        # The start limit counts manual restarts too; a failed unit also refuses jobs until
        # reset. Failures here (e.g. units not loaded yet) are harmless, so not checked.
        self._systemctl("reset-failed", units)

    # ----------------------------------------------------------------- install

    def desired_files(self) -> dict[str, str]:
        return unit_files(
            self.roster,
            tmux_bin=self.tmux_bin,
            socket=self.paths.tmux_socket,
            path_env=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            user_home=Path.home(),
        )

    def _dropin(self, name: str) -> Path:
        """The per-agent drop-in install writes (its existence means "installed")."""
        return self.unit_dir / f"{systemd.agent_unit(name)}.d" / DROPIN_NAME

    def _remove_dropin(self, name: str) -> None:
        dropin = self._dropin(name)
        dropin.unlink(missing_ok=True)
        if dropin.parent.is_dir() and not any(dropin.parent.iterdir()):
            dropin.parent.rmdir()

    def _installed_agent_names(self) -> list[str]:
        names = []
        for dropin in sorted(self.unit_dir.glob(f"mosaic-agent@*.service.d/{DROPIN_NAME}")):
            name = systemd.agent_name(dropin.parent.name[: -len(".d")])
            if name:
                names.append(name)
        return names

    def install(self, *, enable: bool = True) -> list[str]:
        """Write the units, daemon-reload, enable them; idempotent. Returns change lines.

        Agents removed from the roster since the last install are stopped, disabled and
        their drop-ins removed.
        """
        dry = self.runner.dry_run
        changes: list[str] = []
        if not dry:
            ensure_private_dir(self.paths.run_dir, "fleet run directory")
        for relative, text in self.desired_files().items():
            path = self.unit_dir / relative
            try:
                current = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                current = None
            if current == text:
                continue
            changes.append(f"{'would write' if dry else 'wrote'} {path}")
            if not dry:
                atomic_write_text(path, text, mode=0o644)
        removed = sorted(set(self._installed_agent_names()) - set(self.roster.names()))
        if removed:
            units = self._units(removed)
            self._systemctl("disable", units, "--now")
            for name in removed:
                changes.append(f"{'would remove' if dry else 'removed'} agent {name} ({self._dropin(name)})")
                if not dry:
                    self._remove_dropin(name)
        if changes:
            self._check(self._systemctl("daemon-reload"), "systemctl --user daemon-reload")
            changes.append("reloaded the user manager")
        if enable:
            wants = self.unit_dir / "default.target.wants"
            to_enable = [
                unit for unit in [systemd.HOLDER_UNIT, *self._units(self.roster.names())] if not (wants / unit).exists()
            ]
            if to_enable:
                self._check(self._systemctl("enable", to_enable), "systemctl --user enable")
                changes.append(f"enabled {len(to_enable)} unit(s): {' '.join(to_enable)}")
        return changes

    def uninstall(self) -> list[str]:
        """Stop and disable every fleet unit and remove the files install wrote."""
        dry = self.runner.dry_run
        names = sorted(set(self._installed_agent_names()) | set(self.roster.names()))
        units = [*self._units(names), systemd.HOLDER_UNIT]
        self._systemctl("disable", units, "--now")
        changes = [f"{'would stop' if dry else 'stopped'} and disabled {len(units)} unit(s)"]
        paths = [self.unit_dir / systemd.HOLDER_UNIT, self.unit_dir / systemd.AGENT_TEMPLATE]
        for path in [*paths, *(self._dropin(n) for n in names)]:
            if path.exists():
                changes.append(f"{'would remove' if dry else 'removed'} {path}")
                if not dry:
                    path.unlink()
        if not dry:
            for name in names:
                self._remove_dropin(name)
        self._check(self._systemctl("daemon-reload"), "systemctl --user daemon-reload")
        return changes

    # ----------------------------------------------------------------- status

    def status(self, agent: str | None = None) -> FleetStatus:
        """Read every agent's state with two concurrent commands, whatever the fleet size:
        one ``tmux`` call (windows, pane pids, start counters) and one ``systemctl
        list-units`` (states; units the manager has not loaded count as inactive).

        ``since`` is when the agent's pane process started; ``restarts`` is how often its
        window was created again since the holder's tmux server started.
        """
        names = self.names(agent)
        windows_result, units_result = self.runner.run_all(
            [tmux.list_windows_argv(self.tmux_bin, self.paths.tmux_socket), systemd.list_units_argv()]
        )
        _raise_if_no_manager(units_result)
        states = systemd.parse_list_units(units_result.stdout)
        windows = tmux.parse_windows(windows_result.stdout) if windows_result.ok else {}

        def state_of(unit: str) -> systemd.UnitState:
            return states.get(unit) or systemd.UnitState(unit, load_state="not-loaded")

        agents = [
            AgentStatus.from_window(name, unit, state_of(unit), windows.get(name))
            for name, unit in ((n, systemd.agent_unit(n)) for n in names)
        ]
        holder = state_of(systemd.HOLDER_UNIT)
        return FleetStatus(self.backend, holder, agents)

    def _wait(self, names: list[str], *, up: bool, holder_up: bool | None, progress: Callable[[], object]) -> None:
        """Poll until every named agent is up (active with a live window) or down.

        Fails fast when an agent keeps exiting right after it starts (a missing or broken
        command) instead of waiting out the timeout.
        """
        if self.runner.dry_run:
            return
        deadline = self.clock() + self.timeout
        crash_loops: dict[str, int] = {}
        previous: dict[str, str] = {}
        while True:
            current = self.status()
            wanted = [a for a in current.agents if a.name in names]
            for a in wanted:
                if a.sub_state == "auto-restart" and previous.get(a.name) != "auto-restart":
                    crash_loops[a.name] = crash_loops.get(a.name, 0) + 1
                previous[a.name] = a.sub_state
            looping = sorted(name for name, count in crash_loops.items() if count >= CRASH_LOOP_RESTARTS)
            if up and looping:
                commands = "; ".join(f"{n}: `{shlex.join(self.roster.get(n).argv())}`" for n in looping)
                raise FleetOperationError(
                    f"agent(s) keep exiting right after they start ({CRASH_LOOP_RESTARTS} restarts while waiting); "
                    f"check their commands ({commands}) and `journalctl --user -u mosaic-agent@NAME`"
                )
            pending = [a for a in wanted if not (a.up if up else a.down)]
            holder_ok = holder_up is None or (current.holder.active_state == "active") == holder_up
            if not pending and holder_ok:
                return
            if self.clock() >= deadline:
                details = ", ".join(f"{a.name} ({a.active_state}/{a.sub_state}, window: {a.window})" for a in pending)
                if not holder_ok:
                    details = f"holder ({current.holder.active_state}) " + details
                raise FleetOperationError(
                    f"timed out after {self.timeout:g}s waiting for agents to be {'up' if up else 'down'}: {details}"
                )
            progress()
            self.sleep(POLL_S)

    # ----------------------------------------------------------------- start / stop / restart

    def start(self, agent: str | None = None) -> str:
        names = self.names(agent)
        self.ensure_installed(names)
        units = self._units(names) if agent else [systemd.HOLDER_UNIT, *self._units(names)]
        started = self.clock()
        self._reset_failed(units)
        self._check(self._systemctl("start", units), "systemctl --user start")
        self._wait(names, up=True, holder_up=True, progress=lambda: None)
        return f"started {_describe(agent, names)} in {self.clock() - started:.2f}s: all up"

    def stop(self, agent: str | None = None) -> str:
        """Stop one agent, or every agent then the holder. Every unit is attempted even when
        some fail; then FleetOperationError names every failure."""
        names = self.names(agent)
        self.ensure_installed(names)
        started = self.clock()
        failures: dict[str, str] = {}  # agent name (or the holder) -> why it did not stop
        result = self._systemctl("stop", self._units(names))
        if not result.ok:
            # The batch reports failures only as text; stop one by one to name each.
            for name in names:
                single = self._systemctl("stop", [systemd.agent_unit(name)])
                if not single.ok:
                    failures[name] = single.error_line()
        if agent is None:
            holder = self._systemctl("stop", [systemd.HOLDER_UNIT])
            if not holder.ok:
                failures["the holder unit"] = holder.error_line()  # no agent name has a space
        stopped = [n for n in names if n not in failures]
        self._wait(stopped, up=False, holder_up=None if agent or failures else False, progress=lambda: None)
        if failures:
            named = "; ".join(f"{who}: {why}" for who, why in failures.items())
            raise FleetOperationError(f"stop failed for {len(failures)} unit(s): {named}")
        return f"stopped {_describe(agent, names)} in {self.clock() - started:.2f}s"

    def restart(self, agent: str | None = None) -> str:
        """Restart the fleet (or one agent) while holding the restart lock for the whole
        operation, including the wait until everything is back up."""
        names = self.names(agent)
        self.ensure_installed(names)
        return run_locked(
            self.paths, self.runner.dry_run, self.lock_options, lambda guard: self._restart_locked(agent, names, guard)
        )

    def _restart_locked(self, agent: str | None, names: list[str], guard: RestartGuard | None) -> str:
        def progress() -> None:
            if guard is not None:
                guard.refresh()

        started = self.clock()
        units = self._units(names)
        if agent is not None:
            self._reset_failed(units)
            self._check(self._systemctl("restart", units), "systemctl --user restart")
            self._wait(names, up=True, holder_up=True, progress=progress)
            return f"restarted agent {agent} in {self.clock() - started:.2f}s: up"
        self._reset_failed([systemd.HOLDER_UNIT, *units])
        # One restart of the holder; Requires=+After= restart each running agent once,
        # after the new tmux server is up.
        self._check(self._systemctl("restart", [systemd.HOLDER_UNIT]), "systemctl --user restart")
        progress()
        # Agents that were not running are not restarted by propagation: start them. For
        # agents already restarted (or mid-restart) this merges into their job: no second restart.
        if units:
            self._check(self._systemctl("start", units), "systemctl --user start")
        progress()
        self._wait(names, up=True, holder_up=True, progress=progress)
        return f"restarted the holder and {len(names)} agent(s) in {self.clock() - started:.2f}s: all up"


def run_locked(
    paths: FleetPaths, dry_run: bool, lock_options: dict[str, Any], action: Callable[[RestartGuard | None], str]
) -> str:
    """Run ``action`` holding the fleet's restart lock (not taken for a dry run)."""
    if dry_run:
        return action(None)
    guard = acquire_restart_lock(paths.home, **lock_options)
    try:
        return action(guard)
    finally:
        guard.release()


def _describe(agent: str | None, names: list[str]) -> str:
    return f"agent {agent}" if agent else f"the holder and {len(names)} agent(s)"


def _raise_if_no_manager(result: Result) -> None:
    if not result.ok and any(hint in result.stderr for hint in _NO_MANAGER_HINTS):
        raise FleetError(
            f"no systemd user manager reachable ({result.error_line()}); "
            "run inside a user session (XDG_RUNTIME_DIR set, `systemctl --user` working)"
        )
