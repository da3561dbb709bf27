"""Owner liveness: whether the process behind a record (or a private file) still runs.

Guarantee: liveness is only ever judged for a process of this host, from ``/proc``. A
zombie, or a pid now used by a process that started at another time (a recycled pid),
counts as dead; a process in state ``T`` or ``t`` (SIGSTOP, a debugger) is stopped. A
record of another host, or of the reference tool (no host line), is *unknown*, never dead:
the lease rules then fall back to the record's age.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fleetlib import procs
from fleetlib.lock._record import Identity, LockRecord

Liveness = Callable[[LockRecord, Identity], "bool | None"]
Stopped = Callable[[LockRecord, Identity], bool]
ProcessState = Literal["running", "stopped", "dead"]


def _stopped(pid: int) -> bool:
    return procs.state(pid) in ("T", "t")


def process_alive(record: LockRecord, here: Identity) -> bool | None:
    """Whether the process that wrote ``record`` still runs: True, False, or None (unknown).

    Only judged for a record written on this host (a reference lock has no host line and
    stays unknown). A zombie, or a pid now used by a process that started at another
    time, counts as dead. An unusable pid is unknown (the record is corrupt anyway).
    """
    if record.host != here.host or record.pid is None:
        return None
    if not procs.exists(record.pid):
        return False
    if record.start and here.start:  # /proc available: detect a recycled pid
        return procs.start_ticks(record.pid) == record.start
    return True


def process_stopped(record: LockRecord, here: Identity) -> bool:
    """Whether the process that wrote ``record`` is stopped on this host (state T or t)."""
    if record.host != here.host or record.pid is None:
        return False
    return _stopped(record.pid)


def process_state(pid: int | None, start: str) -> ProcessState:
    """The state of this host's process ``pid`` that started at ``start`` (clock ticks;
    empty when unknown): ``dead`` also for an unusable pid or a recycled one."""
    if pid is None or not procs.exists(pid):
        return "dead"
    if start and procs.start_ticks(pid) != start:
        return "dead"
    return "stopped" if _stopped(pid) else "running"
