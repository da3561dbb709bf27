"""Ending what a dead tmux server leaves behind (tmux backend): no agent runs unwatched.

When the fleet's tmux server dies without ``fleet stop`` (``kill-server``, a SIGKILL, the
out-of-memory killer), every pane hangs up. Each pane supervisor dies of the hang-up and
the kernel then hangs up its agent's process group (see :mod:`fleetlib.pane`), so most
agents end with their window. An agent that ignores the hang-up, or a child that left its
process group (``setsid``), would run on: no supervisor, no window, nothing in
``fleet status``. The fleet's watcher outlives its server for this (its window's loop
ignores the hang-up) and ends them with :func:`end_generation`, as a stop does: TERM and
HUP, then KILL after the agent's ``stop_timeout``. Under systemd the agent units' own
cgroups do this, and the units come back with the holder.

Only the dead server's generation is ended, never one a ``fleet start`` began since: a
marked process counts as the old generation when it started before the server that now
answers on the fleet's socket, or (no server answering) before this moment. Start times
come from ``/proc`` in clock ticks since boot, so the comparison is exact to 10 ms; a
process started in the same tick as the bound is left to the next round (or to the
engine, whose ``start`` ends an old generation before it starts a new one).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Final

from fleetlib import procs

KILL_GRACE_S: Final = 5.0  # after SIGKILL, how long a process may take to disappear
POLL_S: Final = 0.1

Bound = Callable[[], int | None]  # the start-tick bound of the old generation, None: unknown


def now_ticks() -> int | None:
    """This moment in clock ticks since boot (the unit of ``/proc/<pid>/stat`` start
    times); None where ``/proc/uptime`` cannot be read."""
    try:
        with open("/proc/uptime", "rb") as handle:
            seconds = float(handle.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return int(seconds * os.sysconf("SC_CLK_TCK"))


NO_SERVER: Final = 0  # what a server_pid callable answers when no server runs on the socket


def generation_bound(server_pid: Callable[[], int | None], now: Callable[[], int | None] = now_ticks) -> int | None:
    """The bound (clock ticks) before which a process of the fleet is of the old generation:
    the start of the server that answers now (a `fleet start` may have begun a new one), or,
    when none runs (``server_pid()`` is :data:`NO_SERVER`), the moment *before* it was asked:
    no server answering then, none of the new generation had started; the moment after,
    a server started meanwhile could have started agents that would count as old and be
    ended. None (end nothing this round) when the answer is unknown."""
    before = now()
    pid = server_pid()
    if pid is None:
        return None
    if pid == NO_SERVER:
        return before
    ticks = procs.start_ticks(pid)
    return int(ticks) if ticks.isdigit() else None


def old_generation(fleet_id: str, bound: int) -> dict[int, str]:
    """pid -> agent name of the fleet's live marked processes that started before ``bound``."""
    found = {}
    for pid, name in procs.fleet_processes(fleet_id).items():
        ticks = procs.start_ticks(pid)
        if ticks.isdigit() and int(ticks) < bound:
            found[pid] = name
    return found


def end_generation(
    fleet_id: str,
    stop_timeouts: Mapping[str, float],
    bound: Bound,
    *,
    default_timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[int]:
    """End every process of the fleet ``fleet_id`` (its marker's socket) that started
    before ``bound()`` (asked again each round): TERM and HUP at once, KILL after its
    agent's stop timeout (``default_timeout`` for a name not in ``stop_timeouts``, an agent
    removed from the roster). Returns the pids still alive when it gave up,
    :data:`KILL_GRACE_S` after the last KILL was due (empty: all ended); a round whose
    bound is unknown ends nothing."""
    began = clock()
    signalled: set[int] = set()
    left: dict[int, str] = {}
    while True:
        limit = bound()
        left = old_generation(fleet_id, limit) if limit is not None else {}
        if not left:
            return []
        fresh = [pid for pid in left if pid not in signalled]
        procs.signal_all(fresh, signal.SIGTERM)
        procs.signal_all(fresh, signal.SIGHUP)
        signalled.update(fresh)
        elapsed = clock() - began
        due = [pid for pid, name in left.items() if elapsed >= stop_timeouts.get(name, default_timeout)]
        procs.signal_all(due, signal.SIGKILL)
        longest = max((stop_timeouts.get(name, default_timeout) for name in left.values()), default=0.0)
        if elapsed >= longest + KILL_GRACE_S:
            return sorted(left)
        sleep(POLL_S)
