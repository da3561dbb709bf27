"""The fleet's watcher: what every agent is doing, told to whoever asked, transcripts kept small.

One long-lived process runs next to every fleet: under systemd the unit
``mosaic-fleet-watcher.service`` (bound to the holder, restarted by the manager if it
dies), on the tmux backend the window ``_watcher`` of the holder session (restarted by a
shell loop). It is started and stopped with the fleet; nothing polls from the
user's terminal. On the tmux backend it also outlives its server, for one last job: when
the server dies without ``fleet stop`` (killed, out of memory), it ends every agent
process the server left behind (:mod:`fleetlib.orphans`) and exits; when its own window
is closed, it exits. Each tick (:data:`TICK_S`) it:

1. lists every window with the listing ``fleet status`` uses (one tmux client);
2. reads the screens of the agents that wrote something since it last looked, and only
   those (one tmux client for all of them, whatever their number), and classifies each
   with its runtime's rules (:mod:`fleetlib.activity`), debounced so a redraw does not
   flicker the state; for claude, codex and gemini it reads the last event their hooks
   recorded and lets :func:`fleetlib.hooks.decide` combine the two (a hook's state is
   not debounced), recording a new session id an event carries (``<name>.session``);
   an agent ``fleet send`` delivered a message to since it last looked
   (:data:`fleetlib.tmux.SENT_AT_OPTION`) is working from that moment, and its screen is
   read again: only what is seen (or a hook tells) after the send can make it idle or
   waiting;
3. records each agent's activity on its window (``@fleet-activity``, since when in
   ``@fleet-activity-since``, what it was read from and the last hook event taken in in
   ``@fleet-activity-source``; one tmux client for every change), which is what
   ``fleet status`` and ``fleet wait`` read;
4. runs an agent's ``on_state_change`` command once per transition into ``waiting``,
   ``exited`` or ``failed`` (without a shell; with ``FLEET_AGENT_NAME``,
   ``FLEET_OLD_STATE``, ``FLEET_NEW_STATE``, ``FLEET_SCREEN``, ``FLEET_MESSAGE``,
   ``FLEET_HOME`` and ``FLEET_REASON`` (e.g. ``out of memory (memory_max 4G)``, empty when
   unknown) in its environment), and, for an agent with ``notify`` URLs, the
   sender ``python -m fleetlib.notify`` once per transition
   :func:`fleetlib.notify.event_of` names (Apprise is never imported here); it never
   waits for either, kills one still running after :data:`NOTIFY_TIMEOUT_S` (with
   everything it started, found by :data:`NOTIFY_ENV`), and runs at most
   :data:`MAX_NOTIFICATIONS` at once (a transition beyond that is said on stderr, not
   told);
5. every :data:`ROTATE_EVERY_S`, moves hook records past their size aside, rotates
   transcripts grown past their agent's
   ``log_max_bytes`` (:mod:`fleetlib.transcript`), and gives a running pane whose
   transcript writer died (a full disk) a new one.

What it watches comes from ``<run dir>/watcher.json``, written by the fleet whenever it
installs or starts agents (:func:`write_config`); the watcher rereads it when it changes.
Every tmux call is bounded (:data:`fleetlib.tmux_client.TMUX_TIMEOUT_S`); a server that is frozen (or, under
systemd, gone) only makes the watcher wait and try again. TERM, INT or HUP end it (exit
status 0); a gone home (tmux backend) with :data:`fleetlib.tmux.WATCHER_DONE`.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fleetlib import activity, hooks, notify, orphans, procs, sessions, tmux
from fleetlib.procs import MARKER_ENV
from fleetlib.rundir import RunDirError, RunFileError, ensure_private_dir
from fleetlib.runner import Result, Runner, SubprocessRunner
from fleetlib.runner import spawn_detached as _spawn_detached
from fleetlib.runtimes import ScreenRules, hooked
from fleetlib.screen import screen_lines
from fleetlib.status import derive_state
from fleetlib.tmux_client import TMUX_TIMEOUT_S, TmuxClient
from fleetlib.watcher_config import (
    CONFIG_VERSION,
    FALLBACK_STOP_TIMEOUT_S,
    NOTIFY_ENV,
    WINDOW,
    WatchedAgent,
    WatcherConfig,
    config_path,
    notification_processes,
    read_config,
    running,
    watcher_argv,
    watcher_environment,
    write_config,
)

# What the rest of fleet uses lives in :mod:`fleetlib.watcher_config`; re-exported here.
__all__ = [
    "CONFIG_VERSION",
    "END_GRACE_S",
    "HOOKED_SCREEN_EVERY_S",
    "MAX_NOTIFICATIONS",
    "NOTIFY_ENV",
    "NOTIFY_STATES",
    "NOTIFY_TIMEOUT_S",
    "ROTATE_EVERY_S",
    "SCREEN_LINES",
    "TICK_S",
    "WINDOW",
    "MessageOf",
    "Notice",
    "PaneHome",
    "Spawn",
    "WatchedAgent",
    "Watcher",
    "WatcherConfig",
    "config_path",
    "main",
    "notification_processes",
    "read_config",
    "running",
    "spawn_detached",
    "watcher_argv",
    "watcher_environment",
    "write_config",
]

TICK_S: Final = 1.0
ROTATE_EVERY_S: Final = 5.0
NOTIFY_TIMEOUT_S: Final = 60.0
MAX_NOTIFICATIONS: Final = 32  # notification commands running at once, at most (with what they started)
END_GRACE_S: Final = 2.0  # a watcher that ends: TERM to its notifications, KILL after this
HOOKED_SCREEN_EVERY_S: Final = 5.0  # how often a screen is read while a hook decides (see tick)
SCREEN_LINES: Final = 20  # the last lines of the screen a notification carries
NOTIFY_STATES: Final = ("waiting", "exited", "failed")


# --------------------------------------------------------------------------- the watcher


@dataclass(frozen=True)
class PaneHome:
    """Where a watcher on the tmux backend lives: a window (``pane``) of the fleet's own
    server; ``server_ticks`` is the server's start time (a reused pid is not the server).
    Under systemd a watcher has none."""

    socket: str
    server_pid: int
    server_ticks: str
    pane: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PaneHome | None:
        """From the ``TMUX`` (``<socket>,<server pid>,<session>``) and ``TMUX_PANE`` tmux
        gives every pane; None outside a tmux pane. A server already gone has no ticks."""
        parts = environ.get("TMUX", "").rsplit(",", 2)
        pane = environ.get("TMUX_PANE", "")
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not pane:
            return None
        pid = int(parts[1])
        return cls(parts[0], pid, procs.start_ticks(pid), pane)

    def server_alive(self) -> bool:
        """A zombie is dead: its reaper (pid 1) may take a second or more."""
        ticks = self.server_ticks
        return bool(ticks) and procs.start_ticks(self.server_pid) == ticks and procs.exists(self.server_pid)


@dataclass
class _Seen:
    """The watcher's memory of one agent's current window."""

    pane_id: str
    deaths: int
    debouncer: activity.Debouncer
    dead: bool = False
    screen: str = ""
    captured_at: float = 0.0  # wall clock of the last capture (0: never)
    recorded: tuple[str, float, str] | None = None  # what the window's options say (state, since, source)
    source: str = ""  # what the reported state was read from (hook, screen, output)
    hook_stamp: str = ""  # the last hook event taken in ("<event> <uptime>")
    session_id: str | None = None  # the session id last recorded for it
    hook_paths: tuple[str, str] | None = None  # its hook record and its run record
    hook_key: tuple[tuple[int, int, int] | None, tuple[int, int, int] | None] | None = None  # as last read
    hook_event: hooks.HookEvent | None = None  # what was read then
    pattern_reading: tuple[float, str, hooks.Reading] | None = None  # (captured at, screen, its reading)
    sent_at: float | None = None  # the last delivery of `fleet send` taken into account


@dataclass(frozen=True)
class Notice:
    """One transition worth telling (returned by :meth:`Watcher.tick` for tests and logs)."""

    name: str
    old: str | None
    new: str
    screen: str
    reason: str = ""  # why the agent exited, where its supervisor knew (``out of memory (memory_max 4G)``)


@dataclass
class _Notification:
    """A notification command: its :data:`NOTIFY_ENV` value (every process it started
    carries it), the command itself when this watcher started it (None: taken over from
    a watcher before this one), whether it leads a process group of its own (then the
    whole group is its: a pid is never reused while its group lives), and the read end of
    the pipe whose write end it was started holding (:func:`spawn_detached`).

    The pipe is the witness no race can fool: the kernel reports its hang-up only once
    every process that inherited the write end has ended (or closed it), whatever session
    it moved to and in the middle of an exec too, when ``/proc`` shows no environment. The
    marker finds those that close every descriptor (daemons), for killing as well."""

    started: float
    marker: str
    proc: subprocess.Popen[bytes] | None = None
    group: bool = False
    witness: int | None = None

    def alive(self, live: Mapping[str, list[int]]) -> bool:
        """Whether the command, or anything it started (``live``: see
        :func:`notification_processes`), still runs."""
        if self.proc is not None and self.proc.poll() is None:
            return True
        if live.get(self.marker) or self._held():
            return True
        if self.proc is None or not self.group:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _held(self) -> bool:
        """Whether some process still holds the write end of the witness pipe."""
        if self.witness is None:
            return False
        poller = select.poll()
        poller.register(self.witness, select.POLLIN)
        return not any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))

    def kill(self, signum: int, live: Mapping[str, list[int]]) -> None:
        """``signum`` to the command, its group and every process carrying its marker."""
        if self.proc is not None and self.group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)
        elif self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
        procs.signal_all(live.get(self.marker, ()), signum)
        if self.proc is not None and signum == signal.SIGKILL:  # reaped, not left a zombie
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1.0)

    def close(self) -> None:
        """Let go of the witness pipe (the notification is over, or no longer ours to watch)."""
        if self.witness is not None:
            os.close(self.witness)
            self.witness = None


def _leads_group(proc: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid  # not yet reaped: the pid is still its own
    except ProcessLookupError:
        return False


Spawn = Callable[[Sequence[str], Mapping[str, str], int], "subprocess.Popen[bytes] | None"]
MessageOf = Callable[[Path, str], "str | None"]


def _tells(agent: WatchedAgent, old: str | None, new: str) -> bool:
    """Whether a transition is told at all: ``on_state_change`` hears every one into
    :data:`NOTIFY_STATES`; the ``notify`` URLs also hear a turn end (working to idle)."""
    return new in NOTIFY_STATES or (bool(agent.notify) and notify.event_of(old, new) is not None)


def spawn_detached(argv: Sequence[str], env: Mapping[str, str], hold: int) -> subprocess.Popen[bytes] | None:
    """Start a notification command without a shell, stdin from /dev/null, output to the
    watcher's own (the journal or its window), holding the descriptor ``hold`` (the write
    end of its witness pipe); None when it cannot be started."""
    try:
        return _spawn_detached(argv, env, hold)
    except OSError as exc:
        print(f"fleet watcher: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return None


@dataclass
class Watcher:
    """The watcher's algorithm, one :meth:`tick` at a time; clock, runner and spawn are
    injected, so a test drives it tick by tick against a real tmux server."""

    run_dir: Path
    runner: Runner = field(default_factory=lambda: SubprocessRunner(timeout=TMUX_TIMEOUT_S))
    clock: Callable[[], float] = time.time
    spawn: Spawn = spawn_detached
    message_of: MessageOf = hooks.last_message  # FLEET_MESSAGE: what the agent's hooks last said
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config: WatcherConfig | None = None
    seen: dict[str, _Seen] = field(default_factory=dict)
    running: list[_Notification] = field(default_factory=list)
    notify_timeout: float = NOTIFY_TIMEOUT_S
    max_notifications: int = MAX_NOTIFICATIONS
    rotate_errors: dict[str, str] = field(default_factory=dict)  # what was said per agent
    rotate_notes: dict[str, str] = field(default_factory=dict)  # what its last rotation said about odd files
    config_stamp: tuple[int, int] | None = None
    took_over: bool = False  # the notifications a watcher before this one left are ours
    rotated_at: float = -math.inf
    token: str = field(default_factory=lambda: f"fleet-screen-{secrets.token_hex(8)}")
    home: PaneHome | None = None  # tmux backend: the window and server it lives in
    listed_panes: frozenset[str] | None = None  # every pane of the session, as last listed

    # ----------------------------------------------------------------- one tick

    def tick(self) -> list[Notice]:
        """Look once: classify, record, notify, rotate. Returns the notices it sent."""
        self._reload()
        self._reap()
        config = self.config
        if config is None:
            return []
        # The tick is recorded first, in the listing's own client: `status` trusts the
        # records only while it is recent (see fleetlib.observed.fresh).
        heartbeat = ["set-option", "-g", tmux.WATCHER_TICK_OPTION, f"{self.clock():.3f}", ";"]
        listing = self._tmux(config, [*heartbeat, *tmux.list_windows_commands()])
        if listing is None or not listing.ok:
            return []
        windows = tmux.parse_windows(listing.stdout)
        self.listed_panes = frozenset(window.pane_id for window in windows.values())
        now = self.clock()
        notices: list[Notice] = []
        for name in list(self.seen):
            if name not in windows or name not in config.agents:
                del self.seen[name]  # stopped (or removed from the roster): nothing to tell
        offset = hooks.boot_offset()
        to_capture: list[tuple[str, tmux.Window]] = []
        exits: list[tuple[str, str | None, str, str]] = []
        for name, window in windows.items():
            agent = config.agents.get(name)
            if agent is None or not window.pane_id:
                continue
            rules = activity.rules_for(agent.runtime)
            seen = self.seen.get(name)
            if seen is None or seen.pane_id != window.pane_id:
                seen = self.seen[name] = _Seen(
                    window.pane_id, window.deaths, activity.Debouncer(rules.debounce), window.dead
                )
            exit_event = self._exit_event(agent, seen, window)
            if exit_event is not None:
                exits.append((name, *exit_event, window.reason))
            sent = _new_send(seen, window)
            # A screen is read only when it can tell something: the runtime has patterns and
            # the pane wrote since it was last read, or an exit is told with its last lines.
            wrote = window.last_output is None or window.last_output >= math.floor(seen.captured_at)
            running = derive_state(window, None) == "running"
            # While a hook decides a state it also announces the end of, the screen can only
            # add a menu the hooks do not report: read every few seconds, not every tick.
            if seen.source == "hook" and seen.debouncer.state in hooks.EXACT.get(agent.runtime, ()):
                wrote = wrote and now - seen.captured_at >= HOOKED_SCREEN_EVERY_S
            stale = sent is not None and seen.captured_at <= sent  # read before the message arrived
            if exit_event is not None or (running and rules.reads_screen and (wrote or stale or not seen.screen)):
                to_capture.append((name, window))
        self._capture(config, to_capture, now)
        notices += [Notice(name, old, new, self.seen[name].screen, reason) for name, old, new, reason in exits]
        writes: list[str] = []
        for name, window in windows.items():
            seen = self.seen.get(name)
            agent = config.agents.get(name)
            if seen is None or agent is None or derive_state(window, None) != "running":
                continue
            rules = activity.rules_for(agent.runtime)
            age = None if window.last_output is None else max(0.0, now - window.last_output)
            reading = self._reading(seen, rules, age)
            event = self._hook_event(name, agent, seen, offset)
            if event is not None and seen.sent_at is not None and event.at <= seen.sent_at:
                event = None  # it tells of the turn before the message `fleet send` delivered
            screen_at = seen.captured_at if rules.reads_screen else now
            decided = hooks.decide(agent.runtime, event, reading, screen_at) or reading
            exact = decided.source == "hook" and event is not None
            change = seen.debouncer.observe(decided.state, event.at if exact and event else now, exact=exact)
            if change is not None and _tells(agent, change.old, change.new):
                notices.append(Notice(name, change.old, change.new, seen.screen))
            state, since = seen.debouncer.state, seen.debouncer.since
            if state == decided.state:
                seen.source = decided.source
            source = seen.source
            if state in activity.ACTIVITY_STATES and since is not None and seen.recorded != (state, since, source):
                if (window.activity, window.activity_since) != (state, since):
                    writes += _record_commands(window.pane_id, state, since)
                if window.activity_source != source:
                    writes += ["set-option", "-w", "-t", window.pane_id, tmux.ACTIVITY_SOURCE_OPTION, source, ";"]
                seen.recorded = (state, since, source)
        if any(hooked(agent.runtime) for agent in config.agents.values()):
            # After this tick's records: `status` decides itself from any hook event after `now`.
            writes += ["set-option", "-g", tmux.HOOKS_READ_OPTION, f"{now:.3f}", ";"]
        if writes:
            self._tmux(config, writes[:-1])
        for notice in notices:
            self._notify(config, notice)
        if now - self.rotated_at >= ROTATE_EVERY_S:
            self.rotated_at = now
            self._rotate(config, windows)
        return notices

    def _hook_event(self, name: str, agent: WatchedAgent, seen: _Seen, offset: float) -> hooks.HookEvent | None:
        """The last hook event of the agent's current run; a new one also has its session
        id recorded (``<run dir>/<name>.session``) when it carries another."""
        if not hooked(agent.runtime):
            return None
        # Read again only when the record or the run changed (one stat each otherwise).
        record = seen.hook_paths or (str(hooks.record_path(self.run_dir, name)), str(self.run_dir / f"{name}.exec"))
        seen.hook_paths = record
        key = (_file_key(record[0]), _file_key(record[1]))
        if key[0] is not None and key == seen.hook_key:
            return seen.hook_event
        started = key[1][2] / 1e9 if key[1] is not None else None
        event = hooks.current(self.run_dir, name, offset=offset, started=started)
        seen.hook_key, seen.hook_event = key, event
        stamp = event.stamp if event is not None else ""
        # The id is parsed out of the payload only when the payload does not hold the known one.
        if (
            event is not None
            and stamp != seen.hook_stamp
            and not (seen.session_id and seen.session_id in event.payload)
        ):
            session = event.session_id
            if session is not None and session != seen.session_id:
                try:
                    sessions.record_session(self.run_dir, name, session)
                    seen.session_id = session
                except OSError as exc:
                    print(f"fleet watcher: cannot record {name}'s session: {exc}", file=sys.stderr, flush=True)
        seen.hook_stamp = stamp
        return event

    @staticmethod
    def _reading(seen: _Seen, rules: ScreenRules, age: float | None) -> hooks.Reading:
        """The screen's reading; a screen's patterns are searched once per capture (a screen
        read every 5 s is classified every tick), the output age every time none matched."""
        cached = seen.pattern_reading
        if cached is None or cached[0] != seen.captured_at or cached[1] is not seen.screen:
            cached = (seen.captured_at, seen.screen, hooks.Reading(*activity.read(seen.screen, rules, output_age=None)))
            seen.pattern_reading = cached
        if cached[2].source == "screen":
            return cached[2]
        return hooks.Reading(*activity.by_age(rules, age))

    def _exit_event(self, agent: WatchedAgent, seen: _Seen, window: tmux.Window) -> tuple[str | None, str] | None:
        """(old state, ``exited`` or ``failed``) when the agent exited since the last tick (its
        supervisor counts exits) or was given up on; each exit is told once."""
        event = None
        if window.deaths > seen.deaths or (window.dead and not seen.dead):
            event = (seen.debouncer.state, "failed" if derive_state(window, None) == "failed" else "exited")
            seen.debouncer = activity.Debouncer(activity.rules_for(agent.runtime).debounce)  # a fresh start
            seen.recorded = None
            seen.screen = ""
            seen.source = ""
        seen.deaths, seen.dead = window.deaths, window.dead
        return event

    def _capture(self, config: WatcherConfig, panes: list[tuple[str, tmux.Window]], now: float) -> None:
        if not panes:
            return
        result = self._tmux(config, tmux.capture_screens_commands([w.pane_id for _, w in panes], self.token))
        if result is None:
            return
        screens = tmux.parse_screens(result.stdout, self.token, len(panes))
        for (name, _), screen in zip(panes, screens, strict=True):
            if screen is not None and name in self.seen:
                self.seen[name].screen = screen
                self.seen[name].captured_at = now

    def _notify(self, config: WatcherConfig, notice: Notice) -> None:
        """Tell ``notice`` to whoever the agent's roster entry names: its ``on_state_change``
        command and its ``notify`` URLs (through the sender, a child like the command, with
        the URLs in its environment only), each counted against :data:`MAX_NOTIFICATIONS`."""
        agent = config.agents.get(notice.name)
        if agent is None:
            return
        told: list[tuple[Sequence[str], dict[str, str], str]] = []
        if agent.on_state_change and notice.new in NOTIFY_STATES:
            told.append((agent.on_state_change, {}, repr(agent.on_state_change[0])))
        if agent.notify and notify.event_of(notice.old, notice.new) is not None:
            sender = [sys.executable, "-m", notify.MODULE]
            told.append((sender, {notify.URLS_ENV: "\n".join(agent.notify)}, "the notify URLs"))
        if not told:
            return
        base = {key: value for key, value in self.environ.items() if key not in (MARKER_ENV, notify.URLS_ENV)}
        base |= {
            "FLEET_AGENT_NAME": notice.name,
            "FLEET_OLD_STATE": notice.old or "",
            "FLEET_NEW_STATE": notice.new,
            "FLEET_SCREEN": screen_lines(notice.screen, SCREEN_LINES),
            "FLEET_MESSAGE": notify.truncate_message(self.message_of(self.run_dir, notice.name)),
            "FLEET_HOME": config.home,
            "FLEET_REASON": notice.reason,
        }
        for argv, extra, what in told:
            if len(self.running) >= self.max_notifications:
                # A command that hangs (a notifier waiting on a dead bus), run for every
                # question of every agent, would otherwise pile up a process per transition.
                print(
                    f"fleet watcher: {len(self.running)} notification commands still running; not telling that "
                    f"{notice.name} is {notice.new} (check {what}: it should end within seconds)",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            marker = f"{secrets.token_hex(8)}@{self.run_dir}"
            try:
                witness, held = os.pipe()
            except OSError as exc:  # out of descriptors: this one is not told, the watcher goes on
                print(f"fleet watcher: cannot run {what}: {exc.strerror or exc}", file=sys.stderr, flush=True)
                continue
            try:
                proc = self.spawn(argv, base | extra | {NOTIFY_ENV: marker}, held)
            finally:
                os.close(held)  # the command's processes hold it now, and only they
            if proc is None:
                os.close(witness)
                continue
            self.running.append(_Notification(time.monotonic(), marker, proc, _leads_group(proc), witness))

    def _reap(self) -> None:
        """Collect finished notification commands; kill those past their time.

        What is watched and killed is everything a command started: its process group
        (:func:`spawn_detached`) and every process carrying its :data:`NOTIFY_ENV` value,
        so a ``sh -c`` whose child still runs after the timeout, or a command that left a
        background or ``setsid`` process behind when it exited, counts against the cap
        until it is gone (its witness pipe tells: :class:`_Notification`) and never
        outlives the timeout. The first call also takes over
        what a watcher before this one left (killed outright, it could end nothing): those
        get a full timeout from now."""
        if not self.running and self.took_over:
            return
        live = notification_processes(self.run_dir)
        self._take_over(live)
        self._keep_alive(live)
        kept = []
        for notification in self.running:
            if time.monotonic() - notification.started > self.notify_timeout:
                notification.kill(signal.SIGKILL, live)
                notification.close()
                continue
            kept.append(notification)
        self.running = kept

    def _keep_alive(self, live: Mapping[str, list[int]]) -> None:
        """Drop (and let go of) the notifications that are over."""
        kept = []
        for notification in self.running:
            if notification.alive(live):
                kept.append(notification)
            else:
                notification.close()
        self.running = kept

    def _take_over(self, live: Mapping[str, list[int]]) -> None:
        """Once: count the notifications of the fleet that no command of ours started as
        ours (a watcher before this one, killed outright, left them), from now on."""
        if not self.took_over:
            self.took_over = True
            ours = {notification.marker for notification in self.running}
            self.running += [_Notification(time.monotonic(), marker) for marker in live if marker not in ours]

    def end_notifications(self, grace: float = END_GRACE_S) -> None:
        """End every notification command still running, with everything it started: TERM,
        then KILL what is left after ``grace`` seconds. Once the watcher ends, nobody would
        ever enforce their time limit."""
        deadline = time.monotonic() + grace
        for signum in (signal.SIGTERM, signal.SIGKILL):
            live = notification_processes(self.run_dir)
            self._take_over(live)
            self._keep_alive(live)
            for notification in self.running:
                notification.kill(signum, live)
            while self.running and time.monotonic() < deadline:
                time.sleep(0.05)
                self._keep_alive(notification_processes(self.run_dir))
        for notification in self.running:
            notification.close()
        self.running = []

    def _rotate(self, config: WatcherConfig, windows: dict[str, tmux.Window]) -> None:
        """Rotate transcripts grown past their size (a rename: the pane's writer opens the
        name again by itself, its pipe is left alone), and give a running pane whose writer
        died (a full disk, a killed writer, its logs dir removed: made again first) or
        stayed behind in the renamed file (a ``cat`` of an older fleet:
        :func:`~fleetlib.transcript.writer_left_behind`) a new pipe; all in one tmux client."""
        from fleetlib import transcript  # noqa: PLC0415 - only needed every few seconds

        commands: list[str] = []
        for name, agent in config.agents.items():
            if hooked(agent.runtime):
                hooks.rotate(self.run_dir, name)
            window = windows.get(name)
            if not agent.log or window is None or not window.pane_id or window.dead:
                continue
            path = Path(agent.log)
            try:
                if not window.piped:
                    # The writer never creates directories: a logs dir removed under it
                    # ended it, and would end every writer the pipe is renewed with.
                    ensure_private_dir(path.parent, "fleet transcripts directory")
                grown = transcript.needs_rotation(path, agent.log_max_bytes)
                # An odd file among the rotated names is removed or skipped: rotation goes on.
                notes = "\n".join(transcript.rotate(path, agent.log_keep)) if grown else None
            except (OSError, RunDirError, RunFileError) as exc:
                # Said once, not every few seconds: the journal (or window) would fill with
                # it while the user has not fixed it yet; said again when it changes.
                if self.rotate_errors.get(name) != str(exc):
                    print(f"fleet watcher: cannot rotate {path}: {exc}", file=sys.stderr, flush=True)
                self.rotate_errors[name] = str(exc)
                continue
            self.rotate_errors.pop(name, None)
            if notes is not None:  # like errors, what rotation did about odd files is said once
                if notes and self.rotate_notes.get(name) != notes:
                    for note in notes.splitlines():
                        print(f"fleet watcher: rotating {path}: {note}", file=sys.stderr, flush=True)
                self.rotate_notes[name] = notes
            if not window.piped or (not grown and transcript.writer_left_behind(path, agent.log_max_bytes)):
                commands += [*transcript.repipe_commands(name, path), ";"]
        if commands:
            self._tmux(config, commands[:-1])

    def _tmux(self, config: WatcherConfig, commands: list[str]) -> Result | None:
        """One bounded client of the fleet's server; None when it did not answer (the tick skips)."""
        result = TmuxClient(self.runner, Path(config.socket), config.tmux).attempt(commands)
        return None if result.timed_out else result

    def _reload(self) -> None:
        """Reread ``watcher.json`` when it changed. A file that cannot be used (missing,
        not a regular file, not what the fleet writes) is said once, on stderr, and the
        last good configuration is kept: a damaged file never makes the watcher forget."""
        try:
            st = os.stat(config_path(self.run_dir))
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self.config_stamp and self.config is not None:
            return
        changed, self.config_stamp = stamp != self.config_stamp, stamp
        config = read_config(self.run_dir)
        if config is not None:
            self.config = config
        elif changed and stamp is not None:
            kept = "keeping the previous one" if self.config else "watching nothing until it is"
            print(
                f"fleet watcher: cannot use {config_path(self.run_dir)} (not a regular file, or not what the fleet "
                f"writes); {kept}; fix: `fleet start` writes it again",
                file=sys.stderr,
                flush=True,
            )

    # ----------------------------------------------------------------- its home

    def gone(self) -> str | None:
        """(tmux backend) ``server`` once the server it lives in has died, ``window`` once
        its own window was closed (the server lives on); None while both are there, and
        always under systemd."""
        home = self.home
        if home is None:
            return None
        if not home.server_alive():
            return "server"
        if self.listed_panes is not None and home.pane not in self.listed_panes:
            return "window"
        return None

    def end_orphans(self) -> list[int]:
        """(tmux backend, after its server died) End every agent process the dead server
        left, as a stop would (see :mod:`fleetlib.orphans`); only processes of this
        watcher's own fleet (its home's socket is the fleet's). Returns what survived."""
        self._reload()  # a watcher (re)started after its server died has not read it yet
        config, home = self.config, self.home
        if config is None or home is None or home.socket != config.socket:
            return []
        socket = Path(config.socket)

        def server_pid() -> int | None:
            result = TmuxClient(self.runner, socket, config.tmux).attempt(["display-message", "-p", "#{pid}"])
            answer = result.stdout.strip()
            if result.ok and answer.isdigit():
                return int(answer)
            if result.timed_out or not any(hint in result.stderr for hint in _NO_SERVER):
                return None  # a frozen or odd server: end nothing this round
            return orphans.NO_SERVER

        def bound() -> int | None:
            return orphans.generation_bound(server_pid)

        stops = {name: agent.stop_timeout for name, agent in config.agents.items()}
        left = orphans.end_generation(config.socket, stops, bound, default_timeout=FALLBACK_STOP_TIMEOUT_S)
        if left:
            print(
                f"fleet watcher: the tmux server died; agent process(es) {' '.join(map(str, left))} "
                "survived SIGKILL; `fleet start` or `fleet stop` tries again",
                file=sys.stderr,
                flush=True,
            )
        return left

    # ----------------------------------------------------------------- the loop

    def run(self, should_stop: Callable[[], bool], sleep: Callable[[float], None] = time.sleep) -> str | None:
        """Tick until ``should_stop`` or its home is gone; returns :meth:`gone`'s answer
        then. An unexpected error in one tick is reported on stderr and the next tick tries
        again (a watcher that dies would tell nobody anything)."""
        while not should_stop() and self.gone() is None:
            began = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # keep watching: a watcher that dies tells nobody anything
                print(f"fleet watcher: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            sleep(max(0.05, TICK_S - (time.monotonic() - began)))
        return self.gone()


# What a tmux client says when no server listens on the socket (it is gone, not frozen).
_NO_SERVER: Final = ("no server running", "error connecting", "No such file or directory", "Connection refused")


def _file_key(path: str) -> tuple[int, int, int] | None:
    """What tells a changed file from the same one: inode, size, modification time."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _new_send(seen: _Seen, window: tmux.Window) -> float | None:
    """When ``fleet send`` delivered to the agent, if it did since the watcher last took a
    send into account; the agent is then working since that moment (its debouncer says so),
    unless something seen after the send is already its state. None: nothing new."""
    sent = window.sent_at
    if sent is None or (seen.sent_at is not None and sent <= seen.sent_at):
        return None
    seen.sent_at = sent
    newer = [t for t in (seen.debouncer.since, window.activity_since if window.activity else None) if t is not None]
    if not newer or max(newer) <= sent:
        seen.debouncer.assume("working", sent)
    return sent


def _record_commands(pane_id: str, state: str, since: float) -> list[str]:
    return [
        "set-option", "-w", "-t", pane_id, tmux.ACTIVITY_OPTION, state, ";",
        "set-option", "-w", "-t", pane_id, tmux.ACTIVITY_SINCE_OPTION, f"{since:.3f}", ";",
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fleetlib.watcher RUN_DIR``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m fleetlib.watcher RUN_DIR", file=sys.stderr)
        return 2
    stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: stop.append(number))
    home = PaneHome.from_environ(os.environ)
    watcher = Watcher(Path(args[0]), home=home)

    def ended() -> bool:  # checked every 0.1 s: a dead server's agents are ended within moments
        return bool(stop) or (home is not None and not home.server_alive())

    try:
        why = watcher.run(ended, sleep=lambda seconds: _sleep_unless(ended, seconds))
        if why == "server":
            watcher.end_orphans()
    finally:
        watcher.end_notifications()
    return 0 if why is None else tmux.WATCHER_DONE


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
