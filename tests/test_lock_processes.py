"""The restart lock across real processes: exclusion witnessed independently, crashes survived."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleetlib.lock import RestartLock
from tests.conftest import REPO

WORKER = str(REPO / "tests" / "lock_worker.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def start_workers(home: Path, processes: int, cycles: int) -> tuple[list[subprocess.Popen[str]], Path]:
    counter = home / "counter"
    counter.write_text("0")
    witness = home / "witness.lock"
    workers = [
        subprocess.Popen(
            [sys.executable, WORKER, "cycles", str(home), str(witness), str(counter), str(cycles)],
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return workers, counter


def finish(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        _, stderr = worker.communicate(timeout=150)
        assert worker.returncode == 0, stderr
        assert "VIOLATION" not in stderr


def test_four_processes_two_hundred_cycles_each_never_overlap(tmp_path: Path) -> None:
    workers, counter = start_workers(tmp_path, processes=4, cycles=200)
    finish(workers)
    assert counter.read_text() == "800"
    lock = RestartLock(tmp_path)
    assert not lock.path.exists()
    assert not lock.mutex_path.exists()
    assert sorted(os.listdir(lock.path.parent)) in ([], ["restart.lock.waiters"])


def test_python_and_reference_protocol_restarts_exclude_each_other(tmp_path: Path) -> None:
    """Two processes on fleetlib.lock and two speaking the reference protocol, one home."""
    workers, counter = start_workers(tmp_path, processes=2, cycles=150)
    reference = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "reference_contender.py"),
                str(tmp_path),
                str(tmp_path / "witness.lock"),
                str(counter),
                "150",
            ],
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    finish([*workers, *reference])
    assert counter.read_text() == "600"
    assert not RestartLock(tmp_path).path.exists()


def spawn_victim(home: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, mode, str(home)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def test_sigkilled_owners_and_mutex_holders_never_deadlock_or_break_exclusion(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    workers, counter = start_workers(tmp_path, processes=4, cycles=100)
    victims: list[subprocess.Popen[str]] = []
    kills = {"hold": 0, "mutex": 0, "random": 0}
    try:
        for round_ in range(24):
            mode = ("hold", "mutex", "random")[round_ % 3]
            victim = spawn_victim(tmp_path, "hold" if mode == "random" else mode)
            victims.append(victim)
            if mode == "random":
                # Kill at a random point: while waiting, inside the mutex, or while owning.
                time.sleep(rng.uniform(0.0, 0.15))
            else:
                assert victim.stdout is not None
                assert victim.stdout.readline() == "held\n"  # it owns the lock / holds the mutex
                time.sleep(rng.uniform(0.0, 0.02))
            os.kill(victim.pid, signal.SIGKILL)
            kills[mode] += 1
            if rng.random() < 0.5:
                victim.wait()  # reap half of them; the rest stay zombies for a while
        finish(workers)
    finally:
        for victim in victims:
            victim.kill()
            victim.wait()
            if victim.stdout is not None:
                victim.stdout.close()
    assert kills == {"hold": 8, "mutex": 8, "random": 8}
    assert counter.read_text() == "400"
    lock = RestartLock(tmp_path)
    # A victim killed while owning may have been the last to touch the lock; nothing else is left.
    leftovers = set(os.listdir(lock.path.parent)) - {"restart.lock", "restart.lock.waiters", "restart.lock.mutex"}
    assert {name for name in leftovers if not name.endswith(".tmp")} == set()
    # And the lock is usable right away.
    with_lock = subprocess.run(
        [sys.executable, "-c", f"from fleetlib.lock import restart_lock\nwith restart_lock({str(tmp_path)!r}): pass"],
        env=ENV,
        timeout=30,
        check=False,
    )
    assert with_lock.returncode == 0
