"""A separate process that contends for the restart lock (used by the process tests and benchmarks).

Modes:
  cycles HOME WITNESS COUNTER N   acquire/release N times; inside, a non-blocking filelock
                                  acquire on WITNESS must succeed (independent exclusion check)
                                  and COUNTER is incremented read-modify-write (lost updates
                                  would also reveal overlap). Exit 3 on a violation.
  hold HOME                       acquire, print "held", then sleep until killed.
  mutex HOME                      take the registry mutex, print "held", sleep until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from fleetlib.lock import RestartLock, acquire_restart_lock


def witnessed_increment(witness: FileLock, counter: Path) -> bool:
    """The critical section: the witness must be free (else two processes are inside) and
    the counter is bumped read-modify-write (a lost update would also reveal overlap)."""
    try:
        witness.acquire(blocking=False)
    except Timeout:
        sys.stderr.write("VIOLATION: witness lock held by another process inside the critical section\n")
        return False
    try:
        counter.write_text(str(int(counter.read_text() or "0") + 1))
    finally:
        witness.release()
    return True


def cycles(home: str, witness: str, counter: str, count: int) -> int:
    witness_lock = FileLock(witness)
    for _ in range(count):
        guard = acquire_restart_lock(home, log=lambda _: None)
        try:
            if not witnessed_increment(witness_lock, Path(counter)):
                return 3
        finally:
            guard.release()
    return 0


def main(argv: list[str]) -> int:
    mode, home = argv[0], argv[1]
    if mode == "cycles":
        return cycles(home, argv[2], argv[3], int(argv[4]))
    if mode == "hold":
        acquire_restart_lock(home)
    elif mode == "mutex":
        RestartLock(Path(home))._mutex().__enter__()
    print("held", flush=True)
    time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
