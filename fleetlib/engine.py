"""The lifecycle engine: start, stop and restart written once for every backend.

Like Invoke's ``Runner`` (the algorithm) over ``Local`` (the primitives), the engine
holds the policy and a :class:`~fleetlib.backend.Backend` supplies primitives: observe
the agents, launch them, ask them to stop, clean up. A fix here lands on every backend.

Guarantees (each a test in tests/test_engine_*.py):

* **One operation at a time.** ``start``, ``stop`` and ``restart`` run under the fleet's
  restart lock, so concurrent calls serialise instead of interleaving; the lock wait is
  bounded by ``lock_timeout`` when one is given.
* **Fenced lease.** Before every step that changes the fleet, and on every poll while it
  waits, the engine checks (and refreshes) that it still owns the lock. A lost lock
  aborts at once with :class:`~fleetlib.lock.LeaseLost` (exit 1, naming the new owner)
  and nothing after that changes the fleet, wherever the engine was paused: every command
  and signal under the lease checks it again in its own process, after the fork
  (:mod:`fleetlib.runner`). The engine never blocks in a call that may take long
  (``systemctl --no-block``, bounded tmux calls), so it refreshes the lease
  exactly as long as its own deadline runs (the operation's timeout plus the agents'
  stop timeouts): a live restart is never broken, a stuck one still is.
* **Stop means gone.** Stop (and the stop half of a restart) returns only when no process
  carrying the agent's marker is left (background, ``setsid`` and signal-ignoring
  children included): TERM first, KILL after the agent's ``stop_timeout``.
* **Start means up.** An agent counts as started once it has stayed alive for its
  ``start_grace``, counted from the moment its supervisor exec'd it (not from the
  supervisor's own start); one that exits before fails the operation naming it, its
  command, its exit status and its last output lines, as soon as it exits.
* A restart starts the new generation only after the old one is gone.
* **A dry run is this algorithm.** With a dry runner (:mod:`fleetlib.runner`) every step
  runs on the fleet as it is, its changes recorded instead of made, without the lock; no
  wait polls for what a recorded change would bring about (it counts as done), and each
  outcome reads "would ...". So it shows what the operation would change now.
* **Nothing unlisted runs on.** Agents of the fleet the roster no longer lists (a window,
  a unit or processes carrying the fleet's marker under their name) are ended like any
  agent by a whole-fleet ``stop`` or ``restart`` (never started again) and by ``install``;
  a whole-fleet ``stop`` also ends what is left of the watcher's notification commands.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fleetlib import defaults, procs, runtimes, sessions
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.observed import fresh
from fleetlib.primitives import HOLDER_KEY, Backend, Installation
from fleetlib.progress import Progress, ProgressHook, no_progress
from fleetlib.roster import DEFAULT_STOP_TIMEOUT
from fleetlib.rundir import ensure_private_dir
from fleetlib.runner import apply_change, leased
from fleetlib.status import AgentStatus, FleetStatus

if TYPE_CHECKING:
    # The lock module is big: imported where a lock is taken (status takes none); the
    # result types are made by the operations only, which import them (status makes none);
    # likewise worktrees (made by install and start) and screen reading (status reads a
    # screen only when no watcher record is fresh), hook records (only hooked agents have
    # them) and the watcher's configuration (written by install and start).
    from fleetlib.hooks import HookEvent
    from fleetlib.lock import RestartGuard
    from fleetlib.results import Action, AgentOutcome, InstallResult, OperationResult

# The backend's protocols live below the engine (:mod:`fleetlib.primitives`); re-exported.
__all__ = [
    "CRASH_LOOP_RESTARTS",
    "GLANCE_SHARE",
    "HOLDER_KEY",
    "KILL_GRACE_S",
    "OUTPUT_LINES",
    "POLL_S",
    "STALL_S",
    "WAIT_TIMEOUT_S",
    "Backend",
    "Fence",
    "Installation",
    "Lifecycle",
]

WAIT_TIMEOUT_S: Final = defaults.WAIT_TIMEOUT_S
POLL_S: Final = 0.05
STALL_S: Final = 1.0  # a start's wait asks the manager after this long without news from the windows
RECORD_SLACK_S: Final = 0.1
# A start's wait glances at most every this many times a glance's cost: a glance at 200
# agents' records costs ~4 ms of CPU, which every 50 ms was 0.6 s of CPU per fleet restart
# beside the starting agents, more than the full looks it replaced.
GLANCE_SHARE: Final = 25
KILL_GRACE_S: Final = 5.0  # after SIGKILL, how long a process may take to disappear
CRASH_LOOP_RESTARTS: Final = 3
OUTPUT_LINES: Final = 8

Fence = Callable[[], None]
_T = TypeVar("_T")


@dataclass
class _Tracker:
    """Per-agent bookkeeping while the engine waits for one operation."""

    name: str
    old_pid: int | None
    old_pane: int | None = None  # the window process before the operation (alive or dead)
    outcome: AgentOutcome | None = None
    seen_pid: int | None = None
    seen_at: float = 0.0
    auto_restarts: int = 0
    last_sub: str = ""
    fresh: bool = False  # the new generation has shown itself: a new window, or its unit starting
    in_place: bool = False  # renewed in place (fleetlib.gate): the supervisor stays, its agent's run is new
    old_agent: int | None = None  # in place: the agent process of the run before the operation
    old_failures: int = 0  # in place: the exits its window counted before the operation

    def renew(self, row: AgentStatus) -> None:
        """Track a renewal in place: the window is the agent's already; its next run is new."""
        self.in_place = self.fresh = True
        self.old_agent, self.old_failures = row.agent_pid, row.failures

    def pids(self, row: AgentStatus) -> tuple[int | None, int | None]:
        """The old and new pid an outcome reports: the pane's process (the supervisor), or
        in place, where the supervisor stays, the agent's own."""
        return (self.old_agent, row.agent_pid) if self.in_place else (self.old_pid, row.pid)


@dataclass(kw_only=True)
class Lifecycle(FleetContext):
    """One fleet's lifecycle on one backend (see the module docstring)."""

    primitives: Backend
    # What the backend installs; None: the primitives themselves, when they implement it.
    installation: Installation | None = None
    timeout: float = WAIT_TIMEOUT_S
    lock_timeout: float | None = None
    lock_options: dict[str, Any] = field(default_factory=dict)
    progress: ProgressHook = no_progress

    @property
    def backend(self) -> str:
        return self.primitives.name

    @property
    def unit_dir(self) -> Path | None:
        return self._installed().unit_dir

    def _installed(self) -> Installation:
        if self.installation is not None:
            return self.installation
        if isinstance(self.primitives, Installation):
            return self.primitives
        raise FleetError(f"the {self.backend} backend installs nothing and keeps no journal")

    # ----------------------------------------------------------------- queries

    def status(self, agent: str | None = None) -> FleetStatus:
        """Every agent's state (or one agent's), with what each running agent is doing;
        changes nothing and takes no lock.

        The activity is the watcher's record on the window; an agent the watcher has not
        looked at yet (or a fleet without a watcher) is read from its screen here, without
        debounce and without a ``since`` (see :mod:`fleetlib.activity`). An agent whose
        hooks reported an event the watcher's record has not taken in yet is decided here
        from that event (and its screen, see :func:`fleetlib.hooks.decide`): a hook is seen
        at once, not at the watcher's next tick."""
        status = self._with_sessions(self.primitives.observe(self.names(agent)))
        if agent is not None:
            status = replace(status, strays=[])
        now = self.wall_clock()
        running = [row for row in status.agents if row.state == "running"]
        events = self._hook_events([r.name for r in running if runtimes.hooked(self.roster.get(r.name).runtime)])
        # A record is trusted only while the watcher that would correct it is alive: a
        # stopped, frozen or killed watcher leaves every record as it was, however wrong.
        unread = [
            row.name
            for row in running
            if row.activity is None
            or not fresh(row.watcher_tick, now)
            or (row.name in events and _unread(events[row.name], row.hooks_read))
        ]
        if not unread:
            return status
        from fleetlib import activity, hooks  # noqa: PLC0415 (see the imports above)

        rules = {name: activity.rules_for(self.roster.get(name).runtime) for name in unread}
        screens = self.primitives.screens([name for name in unread if rules[name].reads_screen])

        def read(row: AgentStatus) -> AgentStatus:
            rule = rules.get(row.name)
            if rule is None or (rule.reads_screen and row.name not in screens):
                return row  # recorded already, or its window went meanwhile
            age = None if row.last_output is None else max(0.0, now - row.last_output)
            reading = hooks.Reading(*activity.read(screens.get(row.name, ""), rule, output_age=age))
            event = events.get(row.name)
            decided = hooks.decide(self.roster.get(row.name).runtime, event, reading, now) or reading
            since = event.at if event is not None and decided.source == "hook" else None
            return row.with_activity(decided.state, since, decided.source)

        return replace(status, agents=[read(row) for row in status.agents])

    def _hook_events(self, names: list[str]) -> dict[str, HookEvent]:
        """The newest event the hooks of each of ``names`` (running agents of a hooked
        runtime) recorded, where there is one."""
        if not names:
            return {}
        from fleetlib import hooks  # noqa: PLC0415 (a fleet without hooked agents reads no hook record)

        offset = hooks.boot_offset()
        run_dir = self.paths.run_dir
        return {name: event for name in names if (event := hooks.current(run_dir, name, offset=offset)) is not None}

    def _with_sessions(self, status: FleetStatus) -> FleetStatus:
        """Each resuming agent's row with its recorded session id and the note of its last
        failed resume (see :mod:`fleetlib.sessions`)."""
        run_dir = self.paths.run_dir
        resuming = {agent.name for agent in self.roster.agents if agent.resumes}

        def add(row: AgentStatus) -> AgentStatus:
            if row.name not in resuming:
                return row
            return replace(
                row,
                session_id=sessions.read_session(run_dir, row.name),
                session_note=sessions.read_note(run_dir, row.name),
            )

        return replace(status, agents=[add(row) for row in status.agents])

    def _learn_sessions(self, names: list[str]) -> None:
        """Before Codex agents among ``names`` are stopped: record the thread each one has
        open, so its next start resumes it even without hooks."""
        listed = {agent.name: agent for agent in self.roster.agents}
        codex = [n for n in names if (a := listed.get(n)) is not None and a.resumes and a.runtime == "codex"]
        if codex:
            alive = procs.marked(self._marker(n) for n in codex)
            found = {n: alive[self._marker(n)] for n in codex}
            apply_change(self.runner, lambda: sessions.learn_codex_sessions(self.paths.run_dir, found))

    def _forget_sessions(self, names: list[str]) -> None:
        """``--fresh``: the named agents start new conversations."""
        for name in names:
            apply_change(self.runner, functools.partial(sessions.forget_session, self.paths.run_dir, name))

    def ensure_installed(self, names: list[str]) -> None:
        self.primitives.preflight(names)

    def journal(self, agent: str, lines: int) -> str | None:
        return self._installed().journal(self.roster.get(agent).name, lines)

    def desired_unit_files(self) -> dict[str, str]:
        return self._installed().desired_unit_files()

    def install(self, *, enable: bool = True) -> InstallResult:
        """Install the roster's agents (see the backend); agents of this fleet the roster no
        longer lists are stopped first (``stopped``), and FleetOperationError names any of
        them that would not stop, before anything is written."""
        from fleetlib import worktree  # noqa: PLC0415 (see the imports above)

        stopped = self._retire_strays()
        broken = worktree.ensure(self.runner, self.roster, self.roster.names(), Path.home(), setup=False)
        if broken:  # setup waits for the first start
            raise FleetOperationError("; ".join(f"agent {o.name}: {o.error}" for o in broken.values()))
        result = self._installed().install(enable=enable)
        self._configure_watcher()
        return replace(result, stopped=stopped) if stopped else result

    def _retire_strays(self) -> list[str]:
        """Stop every agent of this fleet the roster no longer lists (under the lock; the
        lock is taken only when there is one); returns their names."""
        if not self._strays(self.primitives.observe([])):
            return []
        with self._lease() as fence:
            began = self.clock()
            strays = self._strays(self.primitives.observe([]))
            rows = self.primitives.observe(strays).by_name()
            trackers = {n: _Tracker(n, rows[n].pid, rows[n].pane_pid) for n in strays}
            self._stop_agents(
                self._running(strays, rows), strays, rows, trackers, holder=False, fence=fence, began=began
            )
        outcomes = [outcome for n in strays if (outcome := trackers[n].outcome) is not None]
        stuck = [f"{outcome.name}: {outcome.error}" for outcome in outcomes if not outcome.ok]
        if stuck:
            raise FleetOperationError(
                f"install wrote nothing: agent(s) no longer in the roster did not stop: {'; '.join(stuck)}"
            )
        return [outcome.name for outcome in outcomes]

    def _configure_watcher(self) -> None:
        """Tell the fleet's watcher which agents to watch (it rereads the file when it changes)."""

        def configure() -> None:
            from fleetlib import watcher_config  # noqa: PLC0415 (see the imports above)

            ensure_private_dir(self.paths.run_dir, "fleet run directory")
            watcher_config.write_config(self.paths, self.roster, self.tmux_bin)

        apply_change(self.runner, configure)

    def uninstall(self) -> InstallResult:
        return self._installed().uninstall()

    # ----------------------------------------------------------------- the lease

    def _lease(self) -> contextlib.AbstractContextManager[Fence]:
        """Hold the fleet lock for the block (the runner takes it: a dry run takes none);
        yields the fence to call before every change."""
        return leased(self.runner, self._take_lock)

    def _take_lock(self) -> RestartGuard:
        from fleetlib.lock import acquire_restart_lock  # noqa: PLC0415  # status and wait never lock

        return acquire_restart_lock(self.paths.home, timeout=self.lock_timeout, **self.lock_options)

    @property
    def _recorded(self) -> bool:
        """Whether this fleet's changes are recorded, not made (a dry run, see
        :mod:`fleetlib.runner`): nothing they would bring about is ever observed, so no
        wait polls for it (each counts as done), and the result says "would ..."."""
        return self.runner.dry_run

    # ----------------------------------------------------------------- operations

    def start(self, agent: str | None = None, *, fresh: bool = False) -> OperationResult:
        """Start what is not running (the holder too for the whole fleet) and wait until
        every started agent has stayed up for its grace period. ``fresh``: the agents it
        starts begin new conversations instead of resuming theirs."""
        return self._operate("start", agent, fresh=fresh)

    def stop(self, agent: str | None = None) -> OperationResult:
        """Stop one agent, or every agent then the holder; returns when nothing of them runs."""
        return self._operate("stop", agent)

    def restart(self, agent: str | None = None, *, fresh: bool = False) -> OperationResult:
        """Stop then start (the whole fleet through the backend's fast path when it has
        one); the new generation starts only after the old one is gone, resuming each
        agent's conversation, or (``fresh``) with a new one."""
        return self._operate("restart", agent, fresh=fresh)

    def _operate(self, operation: str, agent: str | None, *, fresh: bool = False) -> OperationResult:
        from fleetlib import worktree  # noqa: PLC0415 (see the imports above)
        from fleetlib.results import AgentOutcome, OperationResult  # noqa: PLC0415

        names = self.names(agent)
        whole = agent is None
        self.primitives.preflight(names)
        broken = worktree.ensure(self.runner, self.roster, names, Path.home()) if operation != "stop" else {}
        names = [n for n in names if n not in broken]  # their worktree could not be made: not started
        self._check_cwds(names) if operation != "stop" else None
        began = self.clock()
        with self._lease() as fence:
            if operation != "stop":
                self._configure_watcher()
            # Agents the roster no longer lists are ended by a whole-fleet stop or restart
            # (never started again): a supervisor nobody sees would otherwise run for ever.
            # Their processes are looked for in /proc while the backend looks at the fleet
            # (the scan reads every process's environment: tens of milliseconds at scale).
            with _beside(procs.fleet_agents, self._fleet_id(), when=whole and operation != "start") as scan:
                before = self.primitives.observe(names)
            strays = self._strays(before, scan()) if whole and operation != "start" else []
            rows = before.by_name() | (self.primitives.observe(strays).by_name() if strays else {})
            trackers = {n: _Tracker(n, rows[n].pid, rows[n].pane_pid) for n in names + strays}
            holder: Action | None = None
            if operation == "start":
                todo = [n for n in names if rows[n].state != "running"]
                # A restart killed between ending a run and opening its gate left a supervisor
                # waiting there, with no agent: `running`, yet nothing runs. Started in place.
                stranded = [n for n in names if n not in todo and self._stranded(rows[n])]
                for name in set(names) - set(todo) - set(stranded):
                    trackers[name].outcome = AgentOutcome(name, "unchanged", rows[name].pid, rows[name].pid)
                if stranded:
                    self._renew(stranded, rows, trackers, began, fence, fresh=fresh, told=True)
                    self._wait_up(
                        trackers, [n for n in stranded if trackers[n].outcome is None], "started", began, fence
                    )
                if todo or (whole and not before.holder_up):
                    # Processes of an agent that is not running (its tmux server died under
                    # it, say) are an old generation: gone first, so only one ever runs.
                    alive = procs.marked(self._marker(n) for n in todo)
                    orphans = [n for n in todo if alive[self._marker(n)]]
                    if orphans:
                        fence()
                        self.primitives.terminate(orphans, holder=False)
                        self._wait_gone(trackers, orphans, None, began, fence)
                    fence()
                    if fresh:
                        self._forget_sessions(todo)
                    self.primitives.launch(todo, holder=whole)
                    holder = None if not whole else "unchanged" if before.holder_up else "started"
                    self._wait_up(trackers, todo, "started", began, fence)
                else:
                    holder = "unchanged" if whole else None
            elif operation == "stop":
                running = self._running(names + strays, rows)
                for name in set(names) - set(running):
                    trackers[name].outcome = AgentOutcome(name, "unchanged", None, None)
                if running or (whole and before.holder_up):
                    self._learn_sessions(running)
                    refused = self._stop_agents(
                        running, names + strays, rows, trackers, holder=whole, fence=fence, began=began
                    )
                    if HOLDER_KEY in refused:
                        holder = "failed"
                    elif whole:
                        holder = self._wait_holder_down(names, began, fence) if before.holder_up else "unchanged"
                    else:
                        holder = None
                else:
                    holder = "unchanged" if whole else None
                    if whole and before.holder.active_state == "failed":
                        # A holder that died leaves its remains (tmux: the server's socket,
                        # which says it died); stopping the fleet clears them.
                        fence()
                        self.primitives.cleanup([], holder=True)
                if whole and holder != "failed":
                    self._end_notifications()
            else:
                if strays:
                    self._stop_agents(
                        self._running(strays, rows), strays, rows, trackers, holder=False, fence=fence, began=began
                    )
                fence()
                if not fresh:
                    self._learn_sessions(names)
                # Agents whose supervisor runs what a start would run now are renewed in place
                # (fleetlib.gate): no new unit, tmux client, window or transcript pipe, most
                # of a start's cost at fleet scale. The whole fleet only when every agent is,
                # since only then may its holder stay.
                renew = self.primitives.current({n: rows[n] for n in names})
                if whole and not (before.holder_up and set(renew) == set(names)):
                    renew = []
                # A fresh start forgets the sessions once the old generation is gone (its
                # hooks may still report one as it ends), so never the one-call fast path.
                if renew:
                    self._renew(renew, rows, trackers, began, fence, fresh=fresh)
                elif whole and self.primitives.fast_restart and not fresh:
                    self.primitives.restart_all(names)
                else:
                    refused = self.primitives.terminate(names, holder=whole)
                    if refused:
                        why = "; ".join(f"{who}: {reason}" for who, reason in refused.items())
                        raise FleetOperationError(f"restart aborted before any start: could not stop {why}")
                    self._wait_gone(trackers, names, None, began, fence)
                    fence()
                    self.primitives.cleanup(names, holder=whole)
                    fence()
                    if fresh:
                        self._forget_sessions(names)
                    self.primitives.launch(names, holder=whole)
                self._wait_up(trackers, [n for n in names if trackers[n].outcome is None], "restarted", began, fence)
                holder = None if not whole else "unchanged" if renew else "restarted"
        outcomes = [trackers[n].outcome or AgentOutcome(n, "failed", error="no outcome") for n in names]
        outcomes += [outcome for n in strays if (outcome := trackers[n].outcome) is not None]
        outcomes += broken.values()
        result = OperationResult(operation, self.backend, outcomes, self.clock() - began, holder=holder)
        return result.as_dry_run(list(getattr(self.runner, "commands", []))) if self._recorded else result

    def _running(self, names: list[str], rows: dict[str, AgentStatus]) -> list[str]:
        """Those of ``names`` with anything alive: a running window or unit, or a process
        carrying the agent's marker (an old generation whose tmux server died under it)."""
        alive = procs.marked(self._marker(n) for n in names)
        return [n for n in names if not rows[n].down or alive[self._marker(n)]]

    def _renew(
        self,
        names: list[str],
        rows: dict[str, AgentStatus],
        trackers: dict[str, _Tracker],
        began: float,
        fence: Fence,
        *,
        fresh: bool,
        told: bool = False,
    ) -> None:
        """Renew running agents in place (see :mod:`fleetlib.gate`): each supervisor is told
        first (USR1; ``told``: it already was, and waits at its gate) and its agent's run is
        ended like any stop (TERM and HUP, KILL after the stop timeout, until nothing of it
        is left: no process carrying its marker but the supervisor, none the backend counts
        in the run); then its gate opens (``fresh``: its conversation forgotten first) and
        it runs the agent anew."""
        from fleetlib import gate  # noqa: PLC0415 (restart only)

        for name in names:
            trackers[name].renew(rows[name])
        renewal = _Renewal(
            {name: rows[name] for name in names},
            self.paths.run_dir,
            self._marker,
            self.primitives.run_members,
            self._forget_sessions if fresh else None,
        )
        fence()
        if not told:
            for name in names:
                apply_change(self.runner, functools.partial(gate.close, self.paths.run_dir, name))
            self.runner.signal(sorted(renewal.supervisors), signal.SIGUSR1)
        run = renewal.processes(names)
        self.runner.signal(sorted({pid for pids in run.values() for pid in pids}), signal.SIGTERM, signal.SIGHUP)
        self._wait_gone(trackers, names, None, began, fence, renewal=renewal)

    def _stranded(self, row: AgentStatus) -> bool:
        """Whether a running agent's supervisor waits at its gate with no agent to run."""
        from fleetlib import gate  # noqa: PLC0415 (rarely true: only the cheap tests first)

        return row.agent_pid is None and row.pid is not None and gate.waiting(self.paths.run_dir, row.name, row.pid)

    def _stop_agents(
        self,
        running: list[str],
        names: list[str],
        rows: dict[str, AgentStatus],
        trackers: dict[str, _Tracker],
        *,
        holder: bool,
        fence: Fence,
        began: float,
    ) -> dict[str, str]:
        """Stop the ``running`` agents (and the holder): TERM, KILL after each one's stop
        timeout, until nothing of them is left; then remove the windows of ``names``. Each
        gets a ``stopped`` or ``failed`` outcome; returns who refused (see ``terminate``)."""
        from fleetlib.results import AgentOutcome  # noqa: PLC0415 (see the imports above)

        fence()
        refused = self.primitives.terminate(running, holder=holder)
        for name, why in refused.items():
            if name in trackers:
                trackers[name].outcome = AgentOutcome(name, "failed", rows[name].pid, error=why)
        self._wait_gone(trackers, [n for n in running if n not in refused], "stopped", began, fence)
        fence()
        self.primitives.cleanup([n for n in names if n not in refused], holder=holder)
        return refused

    def _strays(self, seen: FleetStatus, marked: dict[str, list[int]] | None = None) -> list[str]:
        """Agents of this fleet the roster no longer lists that left something behind: a
        window or unit the backend sees, or processes carrying the fleet's marker
        (``marked``: :func:`fleetlib.procs.fleet_agents` of this fleet, when already read)."""
        found = {row.name for row in seen.strays}
        marked = procs.fleet_agents(self._fleet_id()) if marked is None else marked
        found |= set(marked) - set(self.roster.names())
        return sorted(found)

    def _end_notifications(self) -> None:
        """Once the fleet is stopped: kill what is left of its notification commands. The
        watcher ends them when it ends; this catches those of a watcher killed outright
        (or still ending), so nothing of a stopped fleet runs on, ``setsid`` or not."""
        from fleetlib import watcher_config  # noqa: PLC0415 (see the imports above)

        left = watcher_config.notification_processes(self.paths.run_dir)
        self.runner.signal([pid for pids in left.values() for pid in pids], signal.SIGKILL)

    def _stop_timeout(self, name: str) -> float:
        """The agent's ``stop_timeout``; the default for one the roster no longer lists."""
        return self.roster.get(name).stop_timeout if name in self.roster.names() else DEFAULT_STOP_TIMEOUT

    def _check_cwds(self, names: list[str]) -> None:
        """Refuse to start an agent whose working directory does not exist here."""
        home = Path.home()
        for name in names:
            agent = self.roster.get(name)
            if agent.worktree is not None:
                continue  # fleetlib.worktree.ensure made it (a dry run: would make it), or refused the agent
            cwd = self.roster.cwd_of(agent, home) or str(home)
            if not Path(cwd).is_dir():
                raise FleetError(
                    f"agent {name}: working directory {cwd} does not exist (or is not a directory); "
                    "create it or fix `cwd` in the roster"
                )

    # ----------------------------------------------------------------- waits

    def _report(self, operation: str, done: int, total: int, began: float) -> None:
        self.progress(Progress(operation, operation, done, total, self.clock() - began))

    def _wait_gone(
        self,
        trackers: dict[str, _Tracker],
        names: list[str],
        action: Action | None,
        began: float,
        fence: Fence,
        *,
        renewal: _Renewal | None = None,
    ) -> None:
        """Wait until every named agent is down with no marked process left: TERM was sent
        by ``terminate`` right before; KILL what is left after each agent's ``stop_timeout``,
        counted from here (an operation may have waited long for the lock first). In a
        ``renewal`` (its supervisors stay up), an agent is done once nothing of its run is
        left and its next run was let begin; one whose run will not end fails alone."""
        from fleetlib.results import AgentOutcome  # noqa: PLC0415 (see the imports above)

        if self._recorded:
            for name in names:
                if action is not None:
                    trackers[name].outcome = AgentOutcome(name, action, trackers[name].old_pid)
            return
        markers = {n: self._marker(n) for n in names}
        killed: set[str] = set()
        give_up = max((self._stop_timeout(n) for n in names), default=0.0) + KILL_GRACE_S
        pending = list(names)
        signalled = self.clock()
        while True:
            fence()
            rows = self.primitives.observe(names).by_name() if renewal is None else {}
            if renewal is None:
                marked = procs.marked(markers.values())
                alive = {n: marked[markers[n]] for n in names}
                still = [n for n in pending if not rows[n].down or alive[n]]
            else:
                alive = renewal.processes(pending)
                still = [n for n in pending if alive[n] or not renewal.release(n)]
            now = self.clock() - began
            waited = self.clock() - signalled
            for name in [n for n in pending if n not in still]:
                if action is not None:
                    trackers[name].outcome = AgentOutcome(name, action, trackers[name].old_pid, None, now)
            pending = still
            self._report("stopping", len(names) - len(pending), len(names), began)
            if not pending:
                return
            overdue = [n for n in pending if n not in killed and waited >= self._stop_timeout(n)]
            if overdue:
                killed.update(overdue)
                self.runner.signal([pid for name in overdue for pid in alive[name]], signal.SIGKILL)
            if waited >= give_up:
                for name in pending:
                    row = rows.get(name)
                    left = " ".join(f"pid {pid}" for pid in alive[name]) or (
                        f"state {row.state} ({row.active_state}/{row.sub_state}, window: {row.window})"
                        if row is not None
                        else "its supervisor never came to run it anew"
                    )
                    trackers[name].outcome = AgentOutcome(
                        name,
                        "failed",
                        trackers[name].old_pid,
                        None,
                        now,
                        error=f"still running {waited:.1f}s after the stop began, even after SIGKILL: {left}",
                    )
                if action is None and renewal is None:  # never start a new generation beside the old one
                    stuck = ", ".join(pending)
                    raise FleetOperationError(
                        f"nothing started: the old processes of agent(s) {stuck} did not stop (see `fleet status`)"
                    )
                return
            self.sleep(POLL_S)

    def _wait_holder_down(self, names: list[str], began: float, fence: Fence) -> Action:
        """After a whole-fleet stop: wait until the holder itself is down (its stop may
        still run after the agents are gone); ``stopped``, or ``failed`` past its stop timeout."""
        if self._recorded:
            return "stopped"
        limit = self.clock() + max((self.roster.get(n).stop_timeout for n in names), default=0.0) + 2 * KILL_GRACE_S
        while self.primitives.observe([]).holder.active_state not in ("inactive", "failed"):
            if self.clock() >= limit:
                return "failed"
            fence()
            self.sleep(POLL_S)
        return "stopped"

    def _wait_up(
        self, trackers: dict[str, _Tracker], names: list[str], action: Action, began: float, fence: Fence
    ) -> None:
        """Wait until each named agent has run for its grace period (in a new window, counted
        from its supervisor's exec of it), or failed.

        Only a full look (``observe``) judges an agent. Under systemd a full look asks the
        manager, busy starting the very units waited for (at 200 agents one look took
        1-2 s and made the manager slower still), so between full looks the engine only
        glances at the agents' exec records (``glance``: no process, neither the manager nor
        the tmux server asked) and takes
        the next full look once a glance shows every pending agent's grace over, or a run
        that ended, or when the glances have shown nothing new for :data:`STALL_S` (a unit
        that fails before its window opens shows none), and at the deadline. Full looks are
        spaced by at least as long as the last one took, so looking never takes more than
        half the manager's time."""
        from fleetlib.results import AgentOutcome  # noqa: PLC0415 (see the imports above)

        if self._recorded:
            for name in names:
                trackers[name].outcome = AgentOutcome(name, action, trackers[name].old_pid)
            return
        pending = list(names)
        deadline = self.timeout + max((self.roster.get(n).stop_timeout for n in names), default=0.0)
        full_at = news_at = 0.0  # the earliest next full look; when the glances last changed
        over: float | None = None  # when every pending grace is over, as the last glance showed
        seen: dict[str, tuple[object, ...]] = {}
        rows: dict[str, AgentStatus] = {}
        glanced_in = 0.0  # how long the last glance took
        while pending:
            fence()
            now, wall = self.clock() - began, self.wall_clock()
            # The glance that showed every grace running already said when to look: at that
            # moment the full look comes at once, without another glance first.
            due = now >= deadline or (over is not None and now >= max(over, full_at))
            if not due:
                glanced = self.primitives.glance(pending)
                glanced_in = self.clock() - began - now
                news = {n: _news(glanced[n]) for n in pending}
                if any(seen.get(n) != news[n] for n in pending):
                    news_at, seen = now, news
                over = self._graces_over(trackers, glanced, now, wall)
                due = now >= full_at and (
                    now - news_at >= STALL_S
                    or (over is not None and now >= over)
                    or any(_ended(trackers[n], glanced[n], wall - now) for n in pending)
                )
            if due:
                rows = self.primitives.observe(pending).by_name()
                for name in list(pending):
                    outcome = self._judge(trackers[name], rows[name], now, wall, action)
                    if outcome is not None:
                        trackers[name].outcome = outcome
                        pending.remove(name)
                ended = self.clock() - began
                full_at = news_at = ended + self._next_poll(now, ended)
                over = None
            self._report("starting", len(names) - len(pending), len(names), began)
            if not pending:
                return
            if due and now >= deadline:
                for name in pending:
                    row = rows[name]
                    unexeced = row.up and row.agent_pid is None
                    waiting = "; its supervisor has not started the agent yet" if unexeced else ""
                    trackers[name].outcome = AgentOutcome(
                        name,
                        "failed",
                        trackers[name].old_pid,
                        row.pid,
                        now,
                        error=f"not up after {deadline:g}s (state {row.state}, {row.active_state}/{row.sub_state})"
                        + waiting,
                    )
                return
            # Glances every POLL_S, or less often when one takes long (a glance costs at
            # most 4 % of the time: 200 agents' records are many files); a run that
            # ends during its grace is seen within one. A wake-up right when the graces are
            # over (the records' times say when, however late a glance saw them).
            every = max(POLL_S, GLANCE_SHARE * glanced_in)
            wake = every if over is None else max(over, full_at) - (self.clock() - began)
            self.sleep(min(every, max(0.0, wake)))

    @staticmethod
    def _next_poll(began: float, ended: float) -> float:
        """How long to wait before the next full look, for one that began and ended at these
        times: never less than the look itself took, so looking costs at most half the time
        (under systemd each look asks the manager, busy starting the very units we wait
        for), and a failure is still seen within a look or two of happening."""
        return max(POLL_S, ended - began)

    def _graces_over(
        self, trackers: dict[str, _Tracker], glanced: dict[str, AgentStatus], now: float, wall: float
    ) -> float | None:
        """When (operation time) every glanced agent will have run for its grace in its new
        run, as the glance shows them; None while one has none or has not been exec'd yet
        (what a full look then confirms)."""
        over = now
        for name, row in glanced.items():
            if not (_fresh(trackers[name], row, wall - now) and row.window) or row.agent_pid is None:
                return None
            over = max(over, now + self.roster.get(name).start_grace - _ran(row, now, wall))
        return over

    def _judge(
        self, tracker: _Tracker, row: AgentStatus, now: float, wall: float, action: Action
    ) -> AgentOutcome | None:
        """One poll's verdict on one starting agent: started, failed, or None (wait). ``now``
        and ``wall`` are the engine's and the wall clock's time when the poll began."""
        from fleetlib.results import AgentOutcome  # noqa: PLC0415 (see the imports above)

        agent = self.roster.get(tracker.name)
        if not tracker.in_place and row.pane_pid is not None and row.pane_pid == tracker.old_pane:
            return None  # still the old generation's window: the new one is not there yet
        if row.sub_state == "auto-restart" and tracker.last_sub != "auto-restart":
            tracker.auto_restarts += 1
        tracker.last_sub = row.sub_state
        # Between generations (the old window gone, no new one yet) a row still tells how the
        # OLD generation ended: under systemd a unit whose stop needed the final SIGKILL is
        # `failed` (Result=timeout) until its next start job runs, which a whole-fleet
        # restart queues behind the new holder. That is not the new generation dying, so
        # nothing is judged until the new generation shows itself.
        tracker.fresh = tracker.fresh or row.pane_pid is not None or row.active_state in ("activating", "active")
        if not tracker.fresh:
            return None
        died = row.failures > tracker.old_failures or row.state in ("failed", "exited", "restarting")
        if died or tracker.auto_restarts >= CRASH_LOOP_RESTARTS:
            output = self.primitives.last_output(tracker.name, OUTPUT_LINES).rstrip()
            status = f"exit status {row.exit_status}" if row.exit_status is not None else f"state {row.state}"
            last = " | ".join(line.strip() for line in output.splitlines() if line.strip())[-400:]
            return AgentOutcome(
                tracker.name,
                "failed",
                tracker.old_pid,
                None,
                now,
                error=f"exited right after starting ({status}); command `{shlex.join(agent.argv())}`"
                + (f"; last output: {last}" if last else ""),
                exit_status=row.exit_status,
                output=output or None,
            )
        # The grace counts from the agent's own exec, never from its supervisor's start: the
        # supervisor's work before it (joining a cgroup, the header's `stty`) may take
        # longer than the grace on a loaded machine, and an agent that then dies at once
        # would be reported up.
        old = tracker.old_agent if tracker.in_place else tracker.old_pid
        if row.state != "running" or row.pid is None or row.agent_pid is None or tracker.pids(row)[1] == old:
            tracker.seen_pid = None
            return None
        if tracker.seen_pid != row.agent_pid:
            # The exec record's time says how long the agent had run when this poll began (the
            # poll that first sees it may come well after its exec on a busy machine); never
            # longer than this operation has run, so a wall clock stepped forward cannot
            # shorten the grace.
            tracker.seen_pid, tracker.seen_at = row.agent_pid, now - _ran(row, now, wall)
        if now - tracker.seen_at >= agent.start_grace:
            return AgentOutcome(tracker.name, action, *tracker.pids(row), now)
        return None

    def _marker(self, name: str) -> str:
        return procs.marker(name, self._fleet_id())

    def _fleet_id(self) -> str:
        return str(self.paths.tmux_socket)


@dataclass
class _Renewal:
    """What a renewal in place knows of the agents it renews (see :meth:`Lifecycle._renew`)."""

    rows: dict[str, AgentStatus]
    run_dir: Path
    marker: Callable[[str], str]
    members: Callable[[dict[str, AgentStatus]], dict[str, list[int]]]  # the backend's run_members
    forget: Callable[[list[str]], None] | None  # a fresh restart: forget the conversations

    @property
    def supervisors(self) -> set[int]:
        """The supervisors, which stay (they carry their agent's marker too)."""
        return {row.pid for row in self.rows.values() if row.pid is not None}

    def processes(self, names: list[str]) -> dict[str, list[int]]:
        """What is left of each named agent's run: its marked processes and those the backend
        counts in it (under systemd its unit's cgroup), less its supervisor."""
        marked = procs.marked(self.marker(n) for n in names)
        members = self.members({n: self.rows[n] for n in names})
        keep = self.supervisors
        return {n: sorted((set(marked[self.marker(n)]) | set(members.get(n, ()))) - keep) for n in names}

    def release(self, name: str) -> bool:
        """Let the agent's next run begin; False while its supervisor is not at its gate yet.
        A supervisor that is gone waits nowhere: the wait for the start judges its agent."""
        from fleetlib import gate  # noqa: PLC0415 (restart only)

        if self.forget is not None:
            self.forget([name])
        row = self.rows[name]
        if row.pid is None or not procs.exists(row.pid):
            return True
        return gate.release(self.run_dir, name, row.size)


@contextlib.contextmanager
def _beside(work: Callable[[str], _T], argument: str, *, when: bool) -> Iterator[Callable[[], _T | None]]:
    """Run ``work(argument)`` in a thread while the block runs (``when``); yields what gives
    its result (re-raising its error), None when not run. The block's own work waits on
    other processes, so the two overlap."""
    if not when:
        yield lambda: None
        return
    results: list[_T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work(argument))
        except BaseException as error:  # handed to the caller's thread
            errors.append(error)

    thread = threading.Thread(target=run, name="fleet-scan", daemon=True)
    thread.start()

    def result() -> _T | None:
        thread.join()
        if errors:
            raise errors[0]
        return results[0]

    try:
        yield result
    finally:
        thread.join()


def _ran(row: AgentStatus, now: float, wall: float) -> float:
    """How long the agent of ``row`` had run when a look began (``wall`` on the wall clock,
    ``now`` into the operation), from its exec record; never longer than the operation has
    run, so a wall clock stepped forward cannot shorten a grace."""
    return 0.0 if row.agent_since is None else min(max(0.0, wall - row.agent_since), now)


def _news(row: AgentStatus) -> tuple[object, ...]:
    """What of a glanced row tells that something happened to the agent's run."""
    return (row.pane_pid, row.window, row.agent_pid, row.failures, row.state)


def _fresh(tracker: _Tracker, row: AgentStatus, since: float) -> bool:
    """Whether a glanced row is the new generation's: a pane other than the one before the
    operation (renewed in place: another agent process), and an exec record (if any)
    written since the operation began (``since``, wall clock; file times are a few
    milliseconds coarse)."""
    if tracker.in_place:
        new = row.agent_pid is not None and row.agent_pid != tracker.old_agent
    else:
        new = row.pane_pid is not None and row.pane_pid != tracker.old_pane
    return new and (row.agent_since is None or row.agent_since >= since - RECORD_SLACK_S)


def _ended(tracker: _Tracker, row: AgentStatus, since: float) -> bool:
    """Whether a glance shows the agent's new run ended (or its supervisor restarting it)."""
    ended = row.failures > tracker.old_failures or row.state in ("failed", "exited", "restarting")
    return ended and _fresh(tracker, row, since)


def _unread(event: HookEvent, hooks_read: float | None) -> bool:
    """Whether the watcher's record may not have taken ``event`` in yet: it came after the
    watcher last began reading the hook records (the stamps are a hundredth of a second
    coarse and compared across processes, hence the slack)."""
    from fleetlib.hooks import CLOCK_SLACK_S  # noqa: PLC0415 (loaded already: there is an event)

    return hooks_read is None or event.at > hooks_read - CLOCK_SLACK_S
