"""The restart lock across real processes: exclusion witnessed independently, crashes survived."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetlib.lock import LockTimeout, RestartLock, acquire_restart_lock, restart_lock
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


# --------------------------------------------------------------------------- paused owners (issue 10, item 3)


class Worker:
    """A lock_worker.py process with line-based stdout, killed in any case by ``reap``."""

    def __init__(self, home: Path, mode: str, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, mode, str(home), *args],
            env={**ENV, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=120)  # a bound that only detects a hang
        return self.proc.returncode, out, err

    def reap(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.communicate()


def wait_until(predicate: object, what: str, bound: float = 60.0) -> None:
    """Poll ``predicate`` until true; the bound only turns a hang into a failure."""
    deadline = time.monotonic() + bound
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"hang: {what}"
        time.sleep(0.01)


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def waiting_on_the_lock(home: Path) -> bool:
    waiters = RestartLock(home).waiters_dir
    return waiters.is_dir() and any(not name.startswith(".") for name in os.listdir(waiters))


def lock_token(home: Path) -> str:
    return RestartLock(home).path.read_text().split("\n")[2]


# Small windows so the test runs in seconds; max_wait is large so only staleness (an owner
# that stopped refreshing) can break a lock, and the live owner refreshing every 0.1 s is
# never broken even on a loaded machine.
PAUSE_ENV = {"FLEET_LOCK_STALE": "2", "FLEET_LOCK_MAX_WAIT": "600"}


@contextlib.contextmanager
def workers_in(home: Path) -> Iterator[Callable[..., Worker]]:
    """A function that starts a Worker in ``home``; every worker it started is reaped on exit."""
    started: list[Worker] = []

    def spawn(mode: str, *args: str, **env: str) -> Worker:
        worker = Worker(home, mode, *args, **env)
        started.append(worker)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            worker.reap()


def paused_then_witness_holder(a: Worker, spawn: Callable[..., Worker], witness: str) -> tuple[Worker, str]:
    """Once A has stopped at its pause point, start B holding the lock and the witness:
    (B, the token of B's lock)."""
    wait_until(lambda: proc_state(a.proc.pid) == "T", "A never stopped")
    b = spawn("hold-witness", witness, **PAUSE_ENV)
    held = b.line()
    assert held.startswith("held "), b.finish()
    return b, held.split()[1]


def finish_clean(*workers: Worker) -> None:
    """Each worker exits 0 and its witness saw no overlap."""
    for worker in workers:
        code, _, err = worker.finish()
        assert code == 0, err
        assert "VIOLATION" not in err


def test_owner_paused_inside_release_cannot_remove_its_successors_lock(tmp_path: Path) -> None:
    """Issue 10 item 3: A stops inside release() after its token check, holding the mutex,
    for longer than stale_after; B reaps A's mutex, breaks A's stale lock and holds it; C
    waits. When A resumes, B's lock must survive and C must not enter while B holds it."""
    witness = str(tmp_path / "witness.lock")
    with workers_in(tmp_path) as spawn:
        a = spawn("once", witness, FLEET_LOCK_PAUSE_AT="release:checked", **PAUSE_ENV)
        assert a.line() == "entered"
        assert a.line() == "paused"
        b, b_token = paused_then_witness_holder(a, spawn, witness)
        c = spawn("once", witness, **PAUSE_ENV)
        wait_until(lambda: waiting_on_the_lock(tmp_path), "C never started waiting")
        os.kill(a.proc.pid, signal.SIGCONT)
        code, out, err = a.finish()
        assert (code, out.split("\n")[-2]) == (0, "released False"), err
        assert lock_token(tmp_path) == b_token  # A put B's lock back untouched
        assert c.proc.poll() is None  # C still waits: B holds the lock
        b.send()
        finish_clean(b, c)
        assert not RestartLock(tmp_path).path.exists()


def test_owner_paused_inside_refresh_learns_it_lost_and_leaves_the_new_lock(tmp_path: Path) -> None:
    """A stops inside refresh() after its token check; B takes over; A resumes: refresh
    raises LeaseLost naming B, and B's lock is untouched."""
    witness = str(tmp_path / "witness.lock")
    with workers_in(tmp_path) as spawn:
        a = spawn("refresh", FLEET_LOCK_PAUSE_AT="refresh:checked", **PAUSE_ENV)
        assert a.line().startswith("held ")
        a.send()
        assert a.line() == "paused"
        b, b_token = paused_then_witness_holder(a, spawn, witness)
        os.kill(a.proc.pid, signal.SIGCONT)
        code, out, _ = a.finish()
        lost = out.strip().split("\n")[-1]
        assert code == 1
        assert lost.startswith(f"lost: lost the fleet restart lock: it now belongs to pid {b.proc.pid} on ")
        assert "taken over from a stale lock" in lost
        assert lost.endswith("; stopping without further changes")
        assert lock_token(tmp_path) == b_token
        b.send()
        code, _, err = b.finish()
        assert code == 0, err


def test_breaker_paused_after_judging_does_not_replace_a_newer_lock(tmp_path: Path) -> None:
    """A judges a stale lock and stops before taking it over; B takes it over meanwhile;
    when A resumes it must not replace B's lock (it verifies the very record it judged)."""
    RestartLock(tmp_path).path.parent.mkdir(parents=True)
    stale = f"4242\n{int((time.time() - 3600) * 1000)}\nstale-owner\n"
    RestartLock(tmp_path).path.write_text(stale)
    witness = str(tmp_path / "witness.lock")
    with workers_in(tmp_path) as spawn:
        a = spawn("once", witness, FLEET_LOCK_PAUSE_AT="break:judged", **PAUSE_ENV)
        assert a.line() == "paused"
        b, b_token = paused_then_witness_holder(a, spawn, witness)
        os.kill(a.proc.pid, signal.SIGCONT)
        wait_until(lambda: waiting_on_the_lock(tmp_path), "A never went back to waiting")
        assert lock_token(tmp_path) == b_token
        b.send()
        finish_clean(b, a)


# --------------------------------------------------------------------------- the mutex and live holders


def stop(worker: Worker) -> None:
    """SIGSTOP ``worker`` and wait until /proc shows it stopped."""
    os.kill(worker.proc.pid, signal.SIGSTOP)
    wait_until(lambda: proc_state(worker.proc.pid) == "T", "holder never stopped")


def age_file(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_live_running_mutex_holder_is_never_reaped_by_age_but_a_stopped_one_is(tmp_path: Path) -> None:
    with workers_in(tmp_path) as spawn:
        holder = spawn("mutex")
        assert holder.line() == "held"
        lock = RestartLock(tmp_path)
        content = lock.mutex_path.read_bytes()
        age_file(lock.mutex_path, 3600)  # far older than any stale_after
        with pytest.raises(LockTimeout) as caught:
            acquire_restart_lock(tmp_path, timeout=0.5, stale_after=0.1, log=lambda _: None)
        message = str(caught.value)
        assert "\n" not in message
        assert f"mutex {lock.mutex_path}, held by pid {holder.proc.pid} on " in message
        assert "(running" in message
        assert lock.mutex_path.read_bytes() == content  # not reaped
        stop(holder)
        logged: list[str] = []
        with restart_lock(tmp_path, timeout=60, stale_after=0.1, log=logged.append):
            assert lock.path.exists()
        assert not lock.mutex_path.exists()


def test_a_stopped_mutex_holder_is_waited_on_until_stale_after(tmp_path: Path) -> None:
    with workers_in(tmp_path) as spawn:
        holder = spawn("mutex")
        assert holder.line() == "held"
        stop(holder)
        with pytest.raises(LockTimeout):
            acquire_restart_lock(tmp_path, timeout=0.3, stale_after=3600)  # fresh: not reaped yet
        assert RestartLock(tmp_path).mutex_path.exists()


def test_timeout_names_the_live_owner_and_how_to_proceed(tmp_path: Path) -> None:
    with workers_in(tmp_path) as spawn:
        owner = spawn("hold")
        assert owner.line() == "held"
        for timeout in (0, 0.3):
            with pytest.raises(LockTimeout) as caught:
                acquire_restart_lock(tmp_path, timeout=timeout)
            message = str(caught.value)
            assert caught.value.exit_code == 1
            assert "\n" not in message
            assert message.startswith(f"timed out after {timeout:g}s waiting for the fleet restart lock ")
            assert f"held by pid {owner.proc.pid} on " in message
            assert "(running, last progress " in message
            assert f"kill {owner.proc.pid}" in message
            assert "retry with a longer --lock-timeout" in message  # the flag that bounds this wait
        assert RestartLock(tmp_path).owner() is not None
