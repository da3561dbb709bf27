"""What a fleet looks like right now: one backend-neutral status model.

Every agent is in one of a small set of states, derived the same way on both backends
from its tmux window (and, under systemd, its unit); the backend's own words stay beside
it as details (``unit``, ``load_state``, ``active_state``, ``sub_state``):

``running``     the agent's supervisor runs it (a live window; under systemd an active unit)
``starting``    its unit is starting, the window is not there yet
``restarting``  the agent exited and its supervisor is waiting to start it again
``stopping``    its unit is stopping
``exited``      its window shows an agent that exited (kept for its output)
``failed``      it kept exiting (or could not start at all) and was given up on
``stopped``     nothing of it runs

While an agent runs, what it is doing is its *activity* (see :mod:`fleetlib.activity`):
``working``, ``waiting`` (it asks the user something) or ``idle``, as the fleet's watcher
recorded it on the window (or as ``fleet status`` reads the screen itself when no watcher
has looked yet). The state users see (:attr:`AgentStatus.shown_state`, JSON ``state``) is
the activity while the agent runs and the process state otherwise; ``process_state`` keeps
the process state alone.

A message ``fleet send`` delivered makes the agent ``working`` from that moment (the time
it recorded on the window, :data:`fleetlib.tmux.SENT_AT_OPTION`) until an observation made
after it says otherwise (:func:`after_send`): a record older than the send, however
settled, describes the agent before it got the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from fleetlib import procs
from fleetlib.observed import AgentPane, SupervisorState

if TYPE_CHECKING:
    from fleetlib.pane import ExecRecord

STATES: Final = ("running", "starting", "restarting", "stopping", "exited", "failed", "stopped")
DOWN_STATES: Final = ("exited", "failed", "stopped")  # nothing runs; none of them ends by itself


def after_send(activity: str, since: float | None, sent_at: float | None) -> tuple[str, float | None]:
    """The activity to show given the last message's delivery time (pure).

    ``(activity, since)`` is an observation (``since`` None: made just now); one made
    before ``sent_at`` (or at it) is superseded: the agent is ``working`` since ``sent_at``.
    This is the one place where "sent" meets "seen"; whatever reports the agent's state
    (the screen now, hooks later) only has to record when it saw it."""
    if sent_at is not None and activity in ("idle", "waiting") and since is not None and since <= sent_at:
        return "working", sent_at
    return activity, since


def derive_state(window: AgentPane | None, unit: SupervisorState | None) -> str:
    """The agent's state from its window and (systemd backend) its unit."""
    if unit is not None and unit.active_state == "deactivating":
        return "stopping"
    if window is not None and not window.dead:
        if window.state == "restarting":
            return "restarting"
        if unit is not None and unit.active_state not in ("active", "reloading"):
            return "starting" if unit.active_state == "activating" else "stopping"
        return "running"
    if window is not None and window.state == "failed":
        return "failed"
    if unit is not None and unit.active_state == "failed":
        return "failed"
    if unit is not None and unit.active_state in ("activating", "active"):
        return "starting"
    if window is not None:
        return "exited"
    return "stopped"


@dataclass(frozen=True)
class AgentStatus:
    """One agent: its state, its process, and the backend's own view beside it.

    ``pid`` is the agent's pane process (its supervisor) while it runs; ``agent_pid`` the
    agent process itself, once its supervisor has exec'd it in the current run (None
    before that, and once it exited); ``restarts`` how often its window was created again
    since the server started; ``failures`` how often the agent exited in its current
    window; ``exit_status`` its last exit status."""

    name: str
    state: str
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    pid: int | None
    restarts: int | None
    window: bool
    exit_status: int | None = None
    failures: int = 0
    pane_pid: int | None = None  # the window's process, alive or dead: tells generations apart
    activity: str | None = None  # working / waiting / idle while running; None when unknown
    activity_since: float | None = None  # epoch seconds
    last_output: float | None = None  # epoch seconds of the window's last output
    watcher_tick: float | None = None  # when the watcher that recorded ``activity`` last looked
    in_roster: bool = True  # False: an agent of this fleet the roster no longer lists
    agent_pid: int | None = None
    agent_since: float | None = None  # epoch seconds: when its supervisor exec'd ``agent_pid``
    reason: str | None = None  # why a down agent is down, where the fleet knows (its server died, out of memory)
    memory_bytes: int | None = None  # what it uses now (see fleetlib.usage), where measured
    cpu_percent: float | None = None  # of one core
    activity_source: str | None = None  # what ``activity`` was read from: hook, screen or output
    hooks_read: float | None = None  # when the watcher last read the hook records (epoch seconds)
    sent_at: float | None = None  # when `fleet send` last delivered to it (epoch seconds)
    session_id: str | None = None  # the conversation its starts resume (fleetlib.sessions)
    session_note: str | None = None  # why its last resume failed and it started a new conversation
    size: str = ""  # its pane's "<rows> <columns>" ("" unknown)

    @classmethod
    def build(
        cls,
        name: str,
        unit_name: str,
        window: AgentPane | None,
        unit: SupervisorState | None,
        agent_exec: ExecRecord | None = None,
    ) -> AgentStatus:
        """The row for one agent from its window and (systemd) its unit; without a unit the
        backend details are the tmux backend's (loaded / active|failed|inactive / ...).
        ``agent_exec``: the exec record of the window's current run, if any (see
        :func:`fleetlib.pane.exec_record`)."""
        live = window is not None and not window.dead
        if unit is not None:
            details = (unit.load_state, unit.active_state, unit.sub_state)
        elif window is None:
            details = ("loaded", "inactive", "dead")
        elif window.dead:
            details = ("loaded", "failed", "exited")
        else:
            details = ("loaded", "active", "running")
        recorded = (window.activity, window.activity_since) if window is not None and window.activity else ("", None)
        shown, since = after_send(*recorded, window.sent_at if window is not None else None)
        return cls(
            name=name,
            state=derive_state(window, unit),
            unit=unit_name,
            load_state=details[0],
            active_state=details[1],
            sub_state=details[2],
            pid=window.live_pid if window is not None else None,
            restarts=max(window.starts - 1, 0) if window is not None and window.starts is not None else None,
            window=window is not None and not window.dead,
            exit_status=(window.dead_status if window.dead else window.last_exit) if window is not None else None,
            failures=window.deaths if window is not None else 0,
            pane_pid=window.pane_pid if window is not None else None,
            activity=shown or None,
            activity_since=since,
            last_output=window.last_output if window is not None else None,
            watcher_tick=window.watcher_tick if window is not None else None,
            agent_pid=agent_exec.agent if live and agent_exec is not None else None,
            agent_since=agent_exec.written_at if live and agent_exec is not None else None,
            reason=_reason(window),
            activity_source=(window.activity_source or None) if window is not None and window.activity else None,
            hooks_read=window.hooks_read if window is not None else None,
            sent_at=window.sent_at if window is not None else None,
            size=window.size if window is not None else "",
        )

    def with_activity(self, activity: str, since: float | None, source: str | None = None) -> AgentStatus:
        """This row with the activity ``status`` read itself (from the agent's hooks or its
        screen, without a fresh watcher record) and what it read it from."""
        return replace(self, activity=activity, activity_since=since, activity_source=source)

    @property
    def state_source(self) -> str | None:
        """What :attr:`shown_state` was read from while the agent runs: ``hook`` (its own
        hooks), ``screen`` (a screen pattern) or ``output`` (its output age); None for a
        process state."""
        return self.activity_source if self.state == "running" and self.activity else None

    @property
    def shown_state(self) -> str:
        """What users see: the activity while the agent runs, the process state otherwise."""
        return self.activity if self.state == "running" and self.activity else self.state

    @property
    def state_since(self) -> str | None:
        """Since when :attr:`shown_state` holds, where known (ISO 8601 UTC)."""
        return self.state_since_given(self.since if self.state == "running" else None)

    def state_since_given(self, since: str | None) -> str | None:
        """:attr:`state_since` given :attr:`since` as read already (it reads ``/proc``:
        whoever shows both reads it once)."""
        if self.state == "running" and self.activity and self.activity_since is not None:
            return _iso(self.activity_since)
        return since if self.state == "running" else None

    @property
    def last_output_at(self) -> str | None:
        """When the window last showed output (ISO 8601 UTC), where known."""
        return _iso(self.last_output) if self.last_output is not None else None

    @property
    def since(self) -> str | None:
        """When the agent's current run began (its supervisor's exec of it: a restart in
        place keeps the pane process), else when its pane process started; read only when
        shown, not in wait loops."""
        if self.agent_since is not None:
            return _iso(self.agent_since)
        return procs.started_at(self.pid) if self.pid else None

    @property
    def up(self) -> bool:
        return self.state == "running"

    @property
    def down(self) -> bool:
        """Nothing of the agent runs any more (its window may stay, dead, for its output)."""
        return self.state in ("stopped", "exited", "failed") and not self.window

    def to_json(self) -> dict[str, Any]:
        since = self.since
        return {
            "name": self.name,
            "state": self.shown_state,
            "process_state": self.state,
            "state_since": self.state_since_given(since),
            "state_source": self.state_source,
            "last_output_at": self.last_output_at,
            "unit": self.unit,
            "load_state": self.load_state,
            "active_state": self.active_state,
            "sub_state": self.sub_state,
            "pid": self.pid,
            "agent_pid": self.agent_pid,
            "since": since,
            "restarts": self.restarts,
            "failures": self.failures,
            "window": self.window,
            "exit_status": self.exit_status,
            "in_roster": self.in_roster,
            "reason": self.reason,
            "memory_bytes": self.memory_bytes,
            "cpu_percent": self.cpu_percent,
            "session_id": self.session_id,
            "session_note": self.session_note,
        }


def _reason(window: AgentPane | None) -> str | None:
    """Why the window's last run ended, where its supervisor knew (out of memory), while
    that run is the news: the agent is restarting, failed or exited, not running again."""
    if window is None or not window.reason:
        return None
    if window.dead or window.state in ("restarting", "failed"):
        return window.reason
    return None


def _iso(epoch: float) -> str | None:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class FleetStatus:
    """The whole fleet: which backend runs it, the holder, one row per agent; ``strays``
    are rows for agents the roster no longer lists that the backend still sees (a window,
    a unit that is not inactive): shown, never counted in :attr:`all_up`; and a ``note``
    on what happened to the fleet as a whole, when something did."""

    backend: str
    holder: SupervisorState
    agents: list[AgentStatus]
    strays: list[AgentStatus] = field(default_factory=list)
    note: str | None = None

    @property
    def holder_up(self) -> bool:
        return self.holder.active_state == "active"

    @property
    def all_up(self) -> bool:
        return self.holder_up and all(agent.up for agent in self.agents)

    def by_name(self) -> dict[str, AgentStatus]:
        return {agent.name: agent for agent in self.agents}

    def to_json(self) -> list[dict[str, Any]]:
        """One object per agent (every key always present), each with the backend; the
        strays last."""
        return [{**agent.to_json(), "backend": self.backend} for agent in [*self.agents, *self.strays]]
