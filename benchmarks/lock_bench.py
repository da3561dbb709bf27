"""Restart-lock benchmark: handoff latency, crash recovery, uncontended rate.

Three locks measured side by side in one run:
  fleet      fleetlib.lock as shipped (wake-ups on release, owner-death detection)
  reference  fleetlib.lock configured as the reference (pure 250 ms polling, no liveness)
  filelock   filelock.FileLock (a kernel flock; no stale/takeover semantics)
Times come from time.monotonic(), which is system-wide, so they compare across processes.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path

from filelock import FileLock

from benchmarks import record
from fleetlib.lock import acquire_restart_lock

KINDS = ("fleet", "reference", "filelock")
Release = Callable[[], None]


def make_acquire(kind: str, home: str) -> Callable[[], Release]:
    if kind == "filelock":
        flock = FileLock(os.path.join(home, "filelock.lock"))

        def acquire_flock() -> Release:
            flock.acquire()
            return flock.release

        return acquire_flock
    options = {"liveness": None, "wake": False} if kind == "reference" else {}

    def acquire_restart() -> Release:
        return acquire_restart_lock(home, log=lambda _: None, **options).release  # type: ignore[arg-type]

    return acquire_restart


def _contender(kind: str, home: str, cycles: int, start: Event, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    acquire = make_acquire(kind, home)
    events: list[tuple[float, str, int]] = []
    start.wait()
    for _ in range(cycles):
        release = acquire()
        events.append((time.monotonic(), "acquired", os.getpid()))
        time.sleep(0.001)  # the ~1 ms critical section
        events.append((time.monotonic(), "releasing", os.getpid()))
        release()
    queue.put(events)


def handoff(kind: str, processes: int = 4, cycles: int = 50) -> list[float]:
    """Seconds from one owner starting its release to the next acquire by another process."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as home:
        start, queue = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_contender, args=(kind, home, cycles, start, queue)) for _ in range(processes)]
        for proc in procs:
            proc.start()
        time.sleep(1.0)  # let every interpreter finish starting
        start.set()
        events = sorted(e for _ in procs for e in queue.get(timeout=600))
        for proc in procs:
            proc.join()
    gaps: list[float] = []
    for (t0, what0, pid0), (t1, what1, pid1) in itertools.pairwise(events):
        if what0 == "releasing" and what1 == "acquired" and pid0 != pid1:
            gaps.append(t1 - t0)
    return gaps


def _owner(kind: str, home: str, ready: Event) -> None:
    release = make_acquire(kind, home)()  # keep it referenced: FileLock releases when collected
    ready.set()
    time.sleep(3600)
    release()


def _waiter(kind: str, home: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    release = make_acquire(kind, home)()
    queue.put(time.monotonic())
    release()


def crash_recovery(kind: str, samples: int) -> list[float]:
    """Seconds from SIGKILL of the owner to the acquire by a process already waiting."""
    ctx = mp.get_context("spawn")
    results: list[float] = []
    for _ in range(samples):
        with tempfile.TemporaryDirectory() as home:
            ready, queue = ctx.Event(), ctx.Queue()
            owner = ctx.Process(target=_owner, args=(kind, home, ready))
            owner.start()
            ready.wait(60)
            waiter = ctx.Process(target=_waiter, args=(kind, home, queue))
            waiter.start()
            time.sleep(0.5)  # the waiter is blocked by now
            killed_at = time.monotonic()
            os.kill(owner.pid or 0, signal.SIGKILL)
            results.append(queue.get(timeout=120) - killed_at)
            waiter.join()
            owner.join()
    return results


def uncontended_rate(kind: str, seconds: float = 1.0) -> float:
    """Acquire+release pairs per second with no contention."""
    with tempfile.TemporaryDirectory() as home:
        acquire = make_acquire(kind, home)
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            acquire()()
            count += 1
    return count / seconds


def refresh_rate(kind: str, seconds: float = 1.0) -> float | None:
    """Lease refreshes per second by an uncontended owner (None: filelock has no lease).

    Owners refresh before every step that changes the fleet and on every poll, so this is
    the fence's cost; each refresh is a compare-and-swap (rename aside, check, link).
    """
    if kind == "filelock":
        return None
    with tempfile.TemporaryDirectory() as home:
        options = {"liveness": None, "wake": False} if kind == "reference" else {}
        guard = acquire_restart_lock(home, log=lambda _: None, **options)  # type: ignore[arg-type]
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            guard.refresh()
            count += 1
        guard.release()
    return count / seconds


def waiter_cpu(kind: str, seconds: float = 2.0) -> float:
    """CPU seconds a waiter burns per wall second while the owner holds the lock."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as home:
        ready = ctx.Event()
        owner = ctx.Process(target=_owner, args=(kind, home, ready))
        owner.start()
        ready.wait(60)
        queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        waiter = ctx.Process(target=_waiter, args=(kind, home, queue))
        waiter.start()
        time.sleep(0.5)
        before = _cpu_seconds(waiter.pid or 0)
        time.sleep(seconds)
        used = _cpu_seconds(waiter.pid or 0) - before
        owner.kill()
        owner.join()
        if kind == "reference":  # would wait 30 s for max_wait; not what we measure here
            waiter.kill()
        waiter.join()
    return used / seconds


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f}"


def run(quick: bool = False) -> None:
    cycles = 25 if quick else 100
    print(f"restart lock benchmark: 4 processes x {cycles} cycles, 1 ms critical section")
    columns = ("handoff p50 ms", "handoff p95 ms", "crash p50 ms", "acq+rel /s", "refresh /s", "waiter CPU")
    print(f"{'lock':<10} " + " ".join(f"{c:>15}" for c in columns))
    for kind in KINDS:
        gaps = handoff(kind, cycles=cycles)
        samples = 1 if kind == "reference" else (3 if quick else 10)
        crash = [] if (quick and kind == "reference") else crash_recovery(kind, samples)
        rate = uncontended_rate(kind)
        refreshes = refresh_rate(kind)
        cpu = waiter_cpu(kind)
        record.figure(f"lock {kind}: handoff", "ms", (gap * 1000 for gap in gaps))
        record.figure(f"lock {kind}: crash recovery", "ms", (each * 1000 for each in crash))
        crash_p50 = f"{statistics.median(crash) * 1000:.1f}" if crash else "skipped"
        refresh_cell = "-" if refreshes is None else f"{refreshes:.0f}"
        cells = (_ms(gaps, 0.5), _ms(gaps, 0.95), crash_p50, f"{rate:.0f}", refresh_cell, f"{cpu * 100:.2f}%")
        print(f"{kind:<10} " + " ".join(f"{c:>15}" for c in cells), flush=True)
