"""The load generator (tests/load.py) leaves nothing running behind it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, eventually
from tests.load import load


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_load_ends_its_workers_when_the_block_ends() -> None:
    with load(cpu_workers=1, spawners=1) as workers:
        assert len(workers) == 2
        assert all(running(worker.pid) for worker in workers)
    assert all(worker.returncode is not None for worker in workers)


def test_load_workers_die_with_a_killed_generator() -> None:
    generator = subprocess.Popen(
        [sys.executable, "-m", "tests.load", "--cpu-workers", "1"], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    assert generator.stderr is not None
    line = generator.stderr.readline()  # "load: 2 workers (PID PID)"
    pids = [int(pid) for pid in line.partition("(")[2].rstrip(")\n").split()]
    assert len(pids) == 2, line
    generator.send_signal(signal.SIGKILL)  # no clean-up of its own: the kernel must end them
    generator.wait()
    generator.stderr.close()
    eventually(lambda: not any(running(pid) for pid in pids), f"the load workers {pids} end with their generator")
