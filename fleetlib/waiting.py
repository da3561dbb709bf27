"""Waiting until agents reach a state (``fleet wait``): the way a script sends its next
message only when the agent is ready.

The states are the ones ``fleet status`` shows (:attr:`fleetlib.status.AgentStatus.shown_state`):
the activities ``working``, ``waiting`` and ``idle`` (as the fleet's watcher recorded them,
debounced; read from the screen when no record exists yet), the process states
``exited``, ``failed``, ``stopped``, ``restarting``, and ``running`` for "up, whatever it
is doing". :func:`wait_for` polls the status until every agent asked about is in the
state at the same time, or the timeout passes, or one of them is down (``exited``,
``failed``, ``stopped``: none of these ends by itself) and that is not the state asked
for: then it ends at once, not ok; it never changes anything and takes no lock. The clock
and the sleep are injected; the real monotonic clock bounds the wait too, so it ends even
when an injected clock stands still.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from fleetlib.defaults import WAIT_DEFAULT_S, WAITABLE
from fleetlib.errors import FleetError
from fleetlib.results import WaitReport, WaitRow
from fleetlib.status import DOWN_STATES, AgentStatus, FleetStatus

DEFAULT_TIMEOUT_S: Final = WAIT_DEFAULT_S  # the name callers import
POLL_S: Final = 0.2


def check_state(wanted: str) -> str:
    """``wanted`` if it is a state one can wait for; a one-line FleetError otherwise."""
    if wanted in WAITABLE:
        return wanted
    if not wanted:
        raise FleetError(f"--for is required: one of {', '.join(WAITABLE)}")
    raise FleetError(f"--for {wanted!r} is not a state; use one of {', '.join(WAITABLE)}")


def reached(row: AgentStatus, wanted: str) -> bool:
    """Whether ``row`` is in ``wanted`` (``running``: up, whatever its activity)."""
    return row.state == "running" if wanted == "running" else row.shown_state == wanted


@dataclass(frozen=True)
class WaitResult:
    """Where the agents were when the wait ended, and whether all of them got there."""

    wanted: str
    ok: bool
    seconds: float
    agents: list[AgentStatus]

    @property
    def pending(self) -> list[AgentStatus]:
        return [row for row in self.agents if not reached(row, self.wanted)]

    @property
    def down(self) -> list[AgentStatus]:
        """The agents that are down in another state than the one waited for: the wait
        ended because of them, not on the timeout."""
        return [row for row in self.pending if row.state in DOWN_STATES]

    def error(self) -> str:
        """The one line that says why a wait that is not ok ended."""
        if self.down:
            named = ", ".join(f"{row.name} is {row.state}" for row in self.down)
            one = len(self.down) == 1
            they, themselves, them = ("it", "itself", "it") if one else ("they", "themselves", "them")
            return (
                f"error: {named}, so {they} will not become {self.wanted} by {themselves}; "
                f"start {them} with `inv fleet.start` (--agent NAME)"
            )
        still = ", ".join(f"{row.name} is {row.shown_state}" for row in self.pending)
        return f"error: timed out after {self.seconds:.1f} s waiting for {self.wanted}: {still}"

    def report(self) -> WaitReport:
        """The result as data (what a host answers, what ``--json`` prints)."""
        rows = [WaitRow(row.name, row.shown_state, reached(row, self.wanted)) for row in self.agents]
        return WaitReport(self.wanted, self.ok, self.seconds, rows)

    def to_json(self) -> dict[str, Any]:
        return self.report().to_json()


def wait_for(
    observe: Callable[[], FleetStatus],
    wanted: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll ``observe`` until every agent is in ``wanted`` (ok), or ``timeout`` seconds
    pass, or an agent is down in another state (not ok, at once: see :attr:`WaitResult.down`);
    ``timeout`` must be finite and > 0."""
    check_state(wanted)
    if not (math.isfinite(timeout) and timeout > 0):
        raise FleetError(f"--timeout must be a finite number of seconds > 0, got {timeout!r}")
    began = clock()
    hard_deadline = time.monotonic() + timeout
    while True:
        rows = observe().agents
        now = clock()
        if all(reached(row, wanted) for row in rows):
            return WaitResult(wanted, True, now - began, rows)
        if any(row.state in DOWN_STATES and not reached(row, wanted) for row in rows):
            return WaitResult(wanted, False, now - began, rows)
        if now - began >= timeout or time.monotonic() >= hard_deadline:
            return WaitResult(wanted, False, now - began, rows)
        sleep(min(POLL_S, timeout - (now - began)))  # the last look comes at the limit, not a poll past it
