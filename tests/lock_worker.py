"""A separate process that contends for the restart lock (used by the process tests and benchmarks).

Modes:
  cycles HOME WITNESS COUNTER N   acquire/release N times; inside, a non-blocking filelock
                                  acquire on WITNESS must succeed (independent exclusion check)
                                  and COUNTER is incremented read-modify-write (lost updates
                                  would also reveal overlap). Exit 3 on a violation.
  hold HOME                       acquire, print "held", then sleep until killed.
  mutex HOME                      take the registry mutex, print "held", sleep until killed.
  once HOME WITNESS               acquire, hold WITNESS (non-blocking: exit 3 if someone else is
                                  inside), print "entered", release; print "released True|False".
  hold-witness HOME WITNESS       acquire, hold WITNESS, print "held <token>", then refresh the
                                  lease every 0.1 s (a live owner making progress) until a line
                                  arrives on stdin; release; print "released".
  refresh HOME                    acquire, print "held <token>", wait for a line on stdin, then
                                  refresh once: print "refreshed", or "lost: <message>" and exit 1.

Environment (tests only):
  FLEET_LOCK_STALE, FLEET_LOCK_MAX_WAIT   stale_after / max_wait in seconds.
  FLEET_LOCK_PAUSE_AT                     a checkpoint name of fleetlib.lock ("release:checked",
                                          "refresh:checked", "break:judged"): on reaching it the
                                          worker prints "paused" and stops itself with SIGSTOP,
                                          the way a debugger or a swapped-out VM would stop it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from fleetlib.lock import LeaseLost, RestartGuard, RestartLock, acquire_restart_lock, ensure_private_dir


def options() -> dict[str, Any]:
    found: dict[str, Any] = {"log": lambda _: None}
    if "FLEET_LOCK_STALE" in os.environ:
        found["stale_after"] = float(os.environ["FLEET_LOCK_STALE"])
    if "FLEET_LOCK_MAX_WAIT" in os.environ:
        found["max_wait"] = float(os.environ["FLEET_LOCK_MAX_WAIT"])
    if os.environ.get("FLEET_LOCK_PAUSE_AT"):
        found["checkpoint"] = pause_at(os.environ["FLEET_LOCK_PAUSE_AT"])
    return found


def pause_at(where: str) -> Callable[[str], None]:
    """The lock's checkpoint that stops this process at the checkpoint named ``where``."""

    def pause(name: str) -> None:
        if name == where:
            print("paused", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    return pause


def witnessed_increment(witness: FileLock, counter: Path) -> bool:
    """The critical section: the witness must be free (else two processes are inside) and
    the counter is bumped read-modify-write (a lost update would also reveal overlap)."""
    if not take(witness):
        return False
    try:
        counter.write_text(str(int(counter.read_text() or "0") + 1))
    finally:
        witness.release()
    return True


def take(witness: FileLock) -> bool:
    try:
        witness.acquire(blocking=False)
    except Timeout:
        sys.stderr.write("VIOLATION: witness lock held by another process inside the critical section\n")
        return False
    return True


def cycles(home: str, witness: str, counter: str, count: int) -> int:
    witness_lock = FileLock(witness)
    for _ in range(count):
        guard = acquire_restart_lock(home, **options())
        try:
            if not witnessed_increment(witness_lock, Path(counter)):
                return 3
        finally:
            guard.release()
    return 0


def release_reporting(guard: RestartGuard) -> None:
    guard.released = True
    print(f"released {guard.lock.release(guard.token)}", flush=True)


def once(home: str, witness: str) -> int:
    witness_lock = FileLock(witness)
    guard = acquire_restart_lock(home, **options())
    if not take(witness_lock):
        return 3
    print("entered", flush=True)
    witness_lock.release()
    release_reporting(guard)
    return 0


def hold_witness(home: str, witness: str) -> int:
    witness_lock = FileLock(witness)
    guard = acquire_restart_lock(home, **options())
    if not take(witness_lock):
        return 3
    print(f"held {guard.token}", flush=True)
    while not select.select([sys.stdin], [], [], 0.1)[0]:
        guard.refresh()
    witness_lock.release()
    release_reporting(guard)
    return 0


def refresh(home: str) -> int:
    guard = acquire_restart_lock(home, **options())
    print(f"held {guard.token}", flush=True)
    sys.stdin.readline()
    try:
        guard.refresh()
    except LeaseLost as exc:
        print(f"lost: {exc}", flush=True)
        return 1
    print("refreshed", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, home = argv[0], argv[1]
    if mode == "cycles":
        return cycles(home, argv[2], argv[3], int(argv[4]))
    if mode == "once":
        return once(home, argv[2])
    if mode == "hold-witness":
        return hold_witness(home, argv[2])
    if mode == "refresh":
        return refresh(home)
    if mode == "hold":
        acquire_restart_lock(home, **options())
    elif mode == "mutex":
        lock = RestartLock(Path(home))
        ensure_private_dir(lock.path.parent, "fleet run directory")
        # Keep the context manager referenced: once collected, its generator's finally
        # would drop the mutex right away.
        holding = lock._mutex()
        holding.__enter__()
    print("held", flush=True)
    time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
