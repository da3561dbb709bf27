"""Aside-file bookkeeping: telling a lock moved aside from a free one, and cleaning up.

Guarantee: a lock whose name is absent because a *live* process has it moved aside
(:func:`fleetlib.lock._exchange.swap` in flight) is never taken as free; an aside of a
dead process, or of one stopped for longer than ``stale_after``, is put back at the
lock's path (never overwriting) and then judged like any other lock; temp and aside files
of dead processes are removed. Private files are recognised by name only
(``.<target>.<pid>-<start>.<random>.tmp|aside``), and their owner is judged by
:func:`fleetlib.lock._liveness.process_state`, so a recycled pid counts as dead.

Residual risk, documented rather than hidden: reference processes know nothing of asides,
so a reference restart that evaluates the lock in the microseconds a *reaped, resumed*
Python process has it aside can take it. Python processes never can.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from fleetlib.lock._exchange import put_back, unlink
from fleetlib.lock._liveness import ProcessState, process_state
from fleetlib.lock._record import parse_pid


@dataclass(frozen=True)
class PrivateFile:
    """A temp or aside file of ours or another process, parsed from its name."""

    path: Path
    kind: str  # "tmp" | "aside"
    target: str  # the file it belongs to: "restart.lock", "restart.lock.mutex" ...
    pid: int | None
    start: str

    @classmethod
    def parse(cls, directory: Path, name: str) -> PrivateFile | None:
        parts = name.split(".")
        if not name.startswith(".restart.lock") or len(parts) < 6 or parts[-1] not in ("tmp", "aside"):
            return None
        pid_text, _, start = parts[-3].partition("-")
        return cls(directory / name, parts[-1], ".".join(parts[1:-3]), parse_pid(pid_text), start)

    def state(self) -> ProcessState:
        """``running``, ``stopped`` or ``dead``: of the process that made this file."""
        return process_state(self.pid, self.start)

    def age(self) -> float:
        # rename(2) and link(2) update ctime, not mtime: ctime says when it was moved aside.
        try:
            return time.time() - os.lstat(self.path).st_ctime
        except OSError:
            return 0.0


def private_files(directory: Path) -> list[PrivateFile]:
    """The temp and aside files in ``directory`` (none when it cannot be listed)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [p for p in (PrivateFile.parse(directory, n) for n in names) if p is not None]


def sweep(lock_path: Path) -> None:
    """Remove temp and aside files of dead processes (a dead releaser's lock aside is
    put back if the lock is free, then judged like any other lock)."""
    for private in private_files(lock_path.parent):
        if private.state() != "dead":
            continue
        if private.kind == "aside" and private.target == lock_path.name:
            put_back(private.path, lock_path)
        else:
            unlink(private.path)


def aside_in_flight(lock_path: Path, stale_after: float) -> bool:
    """With the lock absent: True if a live process has it moved aside (wait for it).

    An aside left by a dead process, or by one stopped for longer than ``stale_after``,
    is put back at the lock's path first (then judged normally).
    """
    busy = False
    for private in private_files(lock_path.parent):
        if private.kind != "aside" or private.target != lock_path.name:
            continue
        state = private.state()
        if state == "running" or (state == "stopped" and private.age() < stale_after):
            busy = True
        else:
            put_back(private.path, lock_path)
    return busy
