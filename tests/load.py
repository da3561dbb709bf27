"""CPU and process-spawn pressure, to show the tests hold on a loaded machine.

``python -m tests.load --seconds N`` (0, the default: until SIGTERM or Ctrl-C), or in Python::

    with load():
        ...

Either way the load is a busy loop per core and a loop spawning short-lived ``/bin/true``
processes (so pids churn and fork/exec/exit compete with the tests' own), each a child
process that ends with the generator: they are ended when it stops, and each one also dies on
its own (SIGKILL from the kernel) if the process that started it dies first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Final

# Each worker asks the kernel to SIGKILL it when its parent dies, then checks that the parent
# is still the one that started it (it may have died before prctl took effect).
_ORPHAN_GUARD: Final = (
    "import ctypes, os, signal\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != {parent}:\n"
    "    os._exit(0)\n"
)
CPU_LOOP: Final = "while True:\n    pass\n"
SPAWN_LOOP: Final = "while True:\n    os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n"


def _worker(loop: str, ready: int) -> subprocess.Popen[bytes]:
    code = _ORPHAN_GUARD.format(parent=os.getpid()) + f"os.close({ready})\n" + loop
    # No inherited output: a worker must never keep a caller's pipe open (nor die writing to it).
    devnull = subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=devnull, stdout=devnull, stderr=devnull, pass_fds=(ready,)
    )


@contextlib.contextmanager
def load(cpu_workers: int | None = None, spawners: int = 1) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``cpu_workers`` busy loops (default: one per core) and ``spawners`` spawn loops
    for the duration of the block, which is entered once every worker is in its loop; every
    worker is killed and reaped when the block ends, however it ends."""
    workers: list[subprocess.Popen[bytes]] = []
    busy = (os.cpu_count() or 1) if cpu_workers is None else cpu_workers
    read_end, write_end = os.pipe()
    try:
        try:
            for loop in [CPU_LOOP] * busy + [SPAWN_LOOP] * spawners:
                workers.append(_worker(loop, write_end))
        finally:
            os.close(write_end)
        # End of file once every worker has closed its copy: each is past its orphan guard.
        os.read(read_end, 1)
        yield workers
    finally:
        os.close(read_end)
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.wait()


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.0, help="how long (0: until SIGTERM or Ctrl-C)")
    parser.add_argument("--cpu-workers", type=int, default=None, help="busy loops (default: one per core)")
    parser.add_argument("--spawners", type=int, default=1, help="loops spawning /bin/true (default: 1)")
    args = parser.parse_args(argv)
    if args.seconds < 0 or (args.cpu_workers is not None and args.cpu_workers < 0) or args.spawners < 0:
        parser.error("--seconds, --cpu-workers and --spawners must not be negative")
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt), load(args.cpu_workers, args.spawners) as workers:
        print(f"load: {len(workers)} workers ({' '.join(str(w.pid) for w in workers)})", file=sys.stderr, flush=True)
        if args.seconds:
            time.sleep(args.seconds)
        else:
            while True:
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
