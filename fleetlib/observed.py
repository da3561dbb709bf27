"""What fleet observes of an agent and of what supervises it, in backend-neutral types.

:class:`AgentPane` is an agent's pane (every agent runs in a tmux window, on either
backend) as listed, with what its supervisor and the watcher recorded on it;
:class:`SupervisorState` is what a supervisor says about the holder or an agent's unit.
The backends build them (:func:`fleetlib.tmux.parse_windows`,
:func:`fleetlib.systemd.parse_list_units`, or by hand for the tmux holder); the status
model (:mod:`fleetlib.status`) reads them without knowing either backend. Pure data, and
:func:`fresh`: whether the watcher's records on a pane can still be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

STALE_AFTER_S: Final = 5.0  # a watcher that has not ticked for this long no longer vouches for its records


@dataclass(frozen=True)
class SupervisorState:
    """What a supervisor says about one thing it runs (the holder, or an agent's unit under
    systemd), in systemd's words: ``load_state``, ``active_state``, ``sub_state``."""

    unit: str
    load_state: str = "not-found"
    active_state: str = "inactive"
    sub_state: str = "dead"


@dataclass(frozen=True)
class AgentPane:
    """One agent's pane as observed (a tmux window on either backend), with what its pane
    supervisor and the fleet's watcher recorded on it."""

    name: str
    pane_pid: int | None
    dead: bool
    dead_status: int | None = None
    starts: int | None = None
    state: str = ""  # the supervisor's @fleet-state: "", restarting, running or failed
    deaths: int = 0  # how often the agent exited in this window
    last_exit: int | None = None  # the status of its last exit
    last_output: int | None = None  # epoch seconds of the window's last output
    activity: str = ""  # the watcher's record: working, waiting, idle ("" before it looked)
    activity_since: float | None = None
    pane_id: str = ""  # tmux's %N: a short, exact target for this window's pane
    piped: bool = False  # its output goes to the transcript's writer
    watcher_tick: float | None = None  # when the fleet's watcher last looked (a server option)
    reason: str = ""  # the supervisor's @fleet-reason: why the last run ended ("" unknown)
    activity_source: str = ""  # hook, screen or output: what the watcher read the activity from
    hooks_read: float | None = None  # when the watcher last read the hook records (a server option)
    sent_at: float | None = None  # when `fleet send` last delivered to it (epoch seconds)
    size: str = ""  # the pane's "<rows> <columns>" ("" unknown)

    @property
    def live_pid(self) -> int | None:
        """The pane's process while it runs; None once it has exited."""
        return None if self.dead else self.pane_pid


def fresh(tick: float | None, now: float) -> bool:
    """Whether a watcher that last ticked at ``tick`` (:attr:`AgentPane.watcher_tick`, the
    server option :data:`fleetlib.tmux.WATCHER_TICK_OPTION`) still counts as watching at
    ``now``; its records on the windows are trusted only then (readers read the screens
    otherwise)."""
    return tick is not None and -STALE_AFTER_S <= now - tick <= STALE_AFTER_S
