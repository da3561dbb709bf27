"""The restart lock against the real file system: the reference's scenarios and the improvements.

Each reference scenario (``../shared/seed``) is its own test, named after it. Time is
injected (``sleep``/``clock``) where a scenario needs a deterministic interleaving;
concurrency scenarios use real threads here and real processes in test_lock_processes.py.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.lock import (
    MAX_WAIT_S,
    POLL_INTERVAL_S,
    STALE_S,
    Identity,
    LeaseLost,
    LockRecord,
    LockTimeout,
    RestartGuard,
    RestartLock,
    RestartLockError,
    acquire_restart_lock,
    pid_max,
    restart_lock,
    restart_lock_path,
)
from fleetlib.rundir import RunDirError, RunFileError, ensure_private_dir, open_regular, read_capped


class CountingSleep:
    """An injected sleep that records every wait and runs a hook (e.g. the owner finishing)."""

    def __init__(self, hook: object = None) -> None:
        self.calls: list[float] = []
        self.hook = hook

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if callable(self.hook):
            self.hook()


def write_lock(home: Path, content: str) -> Path:
    path = restart_lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def token_of(path: Path) -> str:
    """The token the reference reads: line 3."""
    return path.read_text().split("\n")[2].strip()


def now_ms(offset_s: float = 0.0) -> int:
    return int((time.time() + offset_s) * 1000)


def test_defaults_match_the_reference() -> None:
    assert (POLL_INTERVAL_S, MAX_WAIT_S, STALE_S) == (0.25, 30.0, 60.0)
    assert restart_lock_path("/h") == Path("/h/fleet/run/restart.lock")


# --------------------------------------------------------------------------- reference scenarios


def test_reentry_guard_waits_for_in_flight_restart_before_proceeding(tmp_path: Path) -> None:
    # Another restart mid-teardown holds a fresh lock (reference-format: pid and timestamp only).
    path = write_lock(tmp_path, f"4242\n{now_ms()}\n")
    events: list[str] = []
    sleep = CountingSleep(lambda: (events.append("sleep"), path.unlink(missing_ok=True)))
    guard = acquire_restart_lock(tmp_path, sleep=sleep)
    events.append("acquired")
    assert events == ["sleep", "acquired"]
    guard.release()
    assert not path.exists()


def test_breaks_a_stale_restart_lock_without_waiting(tmp_path: Path) -> None:
    path = write_lock(tmp_path, f"4242\n{now_ms(-STALE_S - 1)}\n")
    sleep, logged = CountingSleep(), []
    with restart_lock(tmp_path, sleep=sleep, log=logged.append) as guard:
        assert token_of(path) == guard.token
    assert sleep.calls == []
    assert len(logged) == 1
    assert "stale" in logged[0]
    assert not path.exists()


def test_releases_the_lock_so_a_subsequent_restart_is_not_blocked(tmp_path: Path) -> None:
    sleep = CountingSleep()
    for _ in range(2):
        with restart_lock(tmp_path, sleep=sleep):
            assert restart_lock_path(tmp_path).exists()
    assert sleep.calls == []
    assert not restart_lock_path(tmp_path).exists()


def test_timed_out_owner_does_not_drop_a_lock_another_restart_broke_and_reowned(tmp_path: Path) -> None:
    sleep = CountingSleep()
    r1 = acquire_restart_lock(tmp_path, sleep=sleep)
    path = restart_lock_path(tmp_path)
    token_r1 = token_of(path)
    assert token_r1 == r1.token
    # R1 hangs: its lock ages past the stale window, token preserved (the on-disk state a stuck owner leaves).
    write_lock(tmp_path, f"4242\n{now_ms(-STALE_S - 1)}\n{token_r1}\n")
    r2 = acquire_restart_lock(tmp_path, sleep=sleep, log=lambda _: None)
    token_r2 = token_of(path)
    assert token_r2 != token_r1
    assert sleep.calls == []
    r1.release()  # must NOT delete R2's lock
    assert token_of(path) == token_r2
    r2.release()
    assert not path.exists()


def _contend(home: Path, restarts: int, sleep: CountingSleep, hold: threading.Event | None = None) -> dict[str, object]:
    """Run ``restarts`` threads that each acquire, check exclusion, and release."""
    state: dict[str, object] = {"active": 0, "max_active": 0, "tokens": [], "errors": []}
    mutex = threading.Lock()
    first = [True]

    def restart_once() -> None:
        try:
            guard = acquire_restart_lock(home, sleep=sleep, log=lambda _: None)
            with mutex:
                state["active"] = int(state["active"]) + 1  # type: ignore[call-overload]
                state["max_active"] = max(int(state["max_active"]), int(state["active"]))  # type: ignore[call-overload]
                state["tokens"].append(token_of(restart_lock_path(home)))  # type: ignore[attr-defined]
                is_first, first[0] = first[0], False
            if hold is not None and is_first:
                assert hold.wait(30), "the other breaker never waited"
            time.sleep(0.002)
            with mutex:
                state["active"] = int(state["active"]) - 1  # type: ignore[call-overload]
            guard.release()
        except BaseException as exc:  # surfaced by the assertion below
            state["errors"].append(exc)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=restart_once) for _ in range(restarts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert state["errors"] == []
    return state


def test_only_one_of_three_concurrent_breakers_proceeds_past_a_stale_lock(tmp_path: Path) -> None:
    path = write_lock(tmp_path, f"4242\n{now_ms(-STALE_S - 1)}\nstale-owner-token\n")
    state = _contend(tmp_path, 3, CountingSleep(lambda: time.sleep(0.001)))
    assert state["max_active"] == 1
    assert len(set(state["tokens"])) == 3  # type: ignore[arg-type]
    assert "stale-owner-token" not in state["tokens"]  # type: ignore[operator]
    assert not path.exists()


def test_exactly_one_of_two_breakers_takes_over_while_the_other_waits(tmp_path: Path) -> None:
    path = write_lock(tmp_path, f"4242\n{now_ms(-STALE_S - 1)}\nstale-owner-token\n")
    loser_waited = threading.Event()
    sleep = CountingSleep(lambda: (loser_waited.set(), time.sleep(0.001)))
    state = _contend(tmp_path, 2, sleep, hold=loser_waited)
    assert state["max_active"] == 1
    assert len(set(state["tokens"])) == 2  # type: ignore[arg-type]
    assert len(sleep.calls) >= 1  # the loser saw a fresh owner and waited instead of taking over
    assert not path.exists()


# --------------------------------------------------------------------------- protocol details


def test_lock_file_is_wire_compatible_with_the_reference(tmp_path: Path) -> None:
    with restart_lock(tmp_path) as guard:
        lines = restart_lock_path(tmp_path).read_text().split("\n")
    assert lines[0] == str(os.getpid())
    assert abs(int(lines[1]) - now_ms()) < 60_000
    assert lines[2] == guard.token
    assert len(guard.token) == 36  # a UUID
    assert lines[3] == Identity.current().host


def test_a_fresh_lock_is_broken_after_max_wait_without_progress(tmp_path: Path) -> None:
    write_lock(tmp_path, f"4242\n{now_ms()}\nfresh-owner\n")
    clock = [time.time()]
    logged: list[str] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    guard = acquire_restart_lock(tmp_path, sleep=sleep, clock=lambda: clock[0], log=logged.append)
    assert token_of(restart_lock_path(tmp_path)) == guard.token
    assert logged == [logged[0]]
    assert "timed out after 30s" in logged[0]


def test_corrupt_lock_is_broken_at_once(tmp_path: Path) -> None:
    write_lock(tmp_path, "garbage")
    sleep, logged = CountingSleep(), []
    with restart_lock(tmp_path, sleep=sleep, log=logged.append):
        pass
    assert sleep.calls == []
    assert "corrupt" in logged[0]


def test_mutex_write_failure_removes_the_half_created_mutex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        if ".mutex." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(RestartLockError, match=r"^cannot write \S+/restart\.lock\.mutex: No space left on device$"):
        acquire_restart_lock(tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in restart_lock_path(tmp_path).parent.iterdir()) == []
    with restart_lock(tmp_path):  # nothing leaked: the next acquire is not blocked
        pass


def test_mutex_left_by_reference_crash_is_reaped_once_stale_by_mtime(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    write_lock(tmp_path, "")
    restart_lock_path(tmp_path).unlink()
    lock.mutex_path.write_text("")  # created by open('wx'), holder died before writing
    old = time.time() - STALE_S - 1
    os.utime(lock.mutex_path, (old, old))
    with restart_lock(tmp_path):
        pass
    assert not lock.mutex_path.exists()


def test_fresh_mutex_of_unknown_holder_is_waited_on_not_reaped(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.mutex_path.write_text("")  # a reference process between open('wx') and its write
    acquired = threading.Event()
    thread = threading.Thread(target=lambda: (acquire_restart_lock(tmp_path).release(), acquired.set()))
    thread.start()
    assert not acquired.wait(0.3)  # still blocked on the live mutex
    assert lock.mutex_path.exists()
    lock.mutex_path.unlink()  # the holder finishes
    thread.join(10)
    assert acquired.is_set()


def test_mutex_of_a_dead_holder_is_reaped_at_once(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    me = Identity.current()
    lock.mutex_path.write_text(LockRecord.format(Identity(int(dead.stdout), me.host, ""), now_ms(), "x"))
    started = time.monotonic()
    with restart_lock(tmp_path):
        pass
    assert not lock.mutex_path.exists()
    assert not lock.reclaim_path.exists()
    assert time.monotonic() - started < STALE_S  # not the reference's 60 s mtime rule


def test_mutex_reclaim_left_by_a_crashed_reclaimer_is_cleared(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    old = time.time() - STALE_S - 1
    for path in (lock.mutex_path, lock.reclaim_path):
        path.write_text("")
        os.utime(path, (old, old))
    with restart_lock(tmp_path):
        pass
    assert not lock.mutex_path.exists()
    assert not lock.reclaim_path.exists()


# --------------------------------------------------------------------------- improvement 1: dead owners


def test_lock_of_a_dead_owner_on_this_host_is_broken_at_once(tmp_path: Path) -> None:
    code = "import sys; from fleetlib.lock import acquire_restart_lock; acquire_restart_lock(sys.argv[1]); print('held', flush=True)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    assert restart_lock_path(tmp_path).exists()  # the owner exited without releasing
    sleep, logged = CountingSleep(), []
    with restart_lock(tmp_path, sleep=sleep, log=logged.append):
        pass
    assert sleep.calls == []
    assert "no longer running" in logged[0]


def test_unreaped_zombie_owner_counts_as_dead(tmp_path: Path) -> None:
    code = (
        "import sys, time; from fleetlib.lock import acquire_restart_lock; "
        "acquire_restart_lock(sys.argv[1]); print('held', flush=True); time.sleep(600)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline() == "held\n"
        os.kill(owner.pid, signal.SIGKILL)
        # Do not reap it: wait until it is a zombie, then acquire.
        while Path(f"/proc/{owner.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.001)
        sleep, logged = CountingSleep(), []
        with restart_lock(tmp_path, sleep=sleep, log=logged.append):
            pass
        assert sleep.calls == []
        assert "no longer running" in logged[0]
    finally:
        owner.kill()
        owner.communicate()


def test_recycled_pid_is_not_mistaken_for_the_owner(tmp_path: Path) -> None:
    me = Identity.current()
    # Our own pid is alive, but this record says it started at another time: a recycled pid.
    write_lock(tmp_path, LockRecord.format(Identity(me.pid, me.host, "1"), now_ms(), "old-owner"))
    logged: list[str] = []
    with restart_lock(tmp_path, sleep=CountingSleep(), log=logged.append):
        pass
    assert "no longer running" in logged[0]


def test_owner_on_another_host_is_not_judged_dead(tmp_path: Path) -> None:
    # A pid above this machine's pid_max is still a valid pid of another host (up to the kernel limit).
    write_lock(tmp_path, LockRecord.format(Identity(4_000_000, "other-host", ""), now_ms(), "remote"))
    path = restart_lock_path(tmp_path)
    sleep = CountingSleep(path.unlink)
    with restart_lock(tmp_path, sleep=sleep):
        pass
    assert len(sleep.calls) == 1


def test_waiter_wakes_when_the_owner_releases_across_processes(tmp_path: Path) -> None:
    code = (
        "import sys; from fleetlib.lock import acquire_restart_lock; g = acquire_restart_lock(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.readline(); g.release(); print('released', flush=True); sys.stdin.readline()"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdin is not None
    assert owner.stdout is not None
    try:
        assert owner.stdout.readline() == "held\n"
        order: list[str] = []
        waiter = threading.Thread(target=lambda: (acquire_restart_lock(tmp_path).release(), order.append("acquired")))
        waiter.start()
        waiter.join(0.5)
        assert order == []  # blocked while the owner holds it
        owner.stdin.write("\n")
        owner.stdin.flush()
        assert owner.stdout.readline() == "released\n"
        waiter.join(10)
        assert order == ["acquired"]
    finally:
        owner.kill()
        owner.communicate()
    assert not RestartLock(tmp_path).waiters_dir.exists() or list(RestartLock(tmp_path).waiters_dir.iterdir()) == []


# --------------------------------------------------------------------------- improvement 2: progress


def test_refreshing_owner_is_never_broken_and_a_stuck_one_is(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    owner = acquire_restart_lock(tmp_path, clock=lambda: clock[0])
    refreshed: list[None] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] < 1_000_000.0 + 3 * STALE_S:  # a long restart, making progress
            refreshed.append(owner.refresh())  # raises LeaseLost if it were lost

    logged: list[str] = []
    waiter = acquire_restart_lock(tmp_path, sleep=sleep, clock=lambda: clock[0], log=logged.append)
    elapsed = clock[0] - 1_000_000.0
    # Held well beyond both the stale window and max_wait while progressing...
    assert len(refreshed) * POLL_INTERVAL_S >= 3 * STALE_S - POLL_INTERVAL_S
    # ...and broken max_wait after the last progress, for lack of progress (not staleness).
    assert 3 * STALE_S + MAX_WAIT_S - 1 <= elapsed <= 3 * STALE_S + MAX_WAIT_S + 1
    assert "made no progress" in logged[0]
    with pytest.raises(LeaseLost, match=f"^lost the fleet restart lock: it now belongs to pid {os.getpid()} on "):
        owner.refresh()  # the stuck owner learns it lost the lock, and who has it
    owner.release()
    assert token_of(restart_lock_path(tmp_path)) == waiter.token
    waiter.release()


# --------------------------------------------------------------------------- improvement 3: symlinks


@pytest.mark.parametrize("suffix", ["", ".mutex"])
def test_symlink_planted_at_lock_or_mutex_is_refused(tmp_path: Path, suffix: str) -> None:
    lock_path = restart_lock_path(tmp_path)
    lock_path.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (lock_path.parent / f"restart.lock{suffix}").symlink_to(victim)
    with pytest.raises(RestartLockError, match="symlink"):
        acquire_restart_lock(tmp_path)
    assert victim.read_text() == "precious"


def test_symlink_planted_at_reclaim_path_is_refused(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.mutex_path.write_text("")
    old = time.time() - STALE_S - 1
    os.utime(lock.mutex_path, (old, old))
    lock.reclaim_path.symlink_to(tmp_path / "victim")
    with pytest.raises(RestartLockError, match="symlink"):
        acquire_restart_lock(tmp_path)
    assert not (tmp_path / "victim").exists()


def test_symlinked_run_dir_is_refused_and_a_new_one_is_private(tmp_path: Path) -> None:
    with restart_lock(tmp_path / "a"):
        assert (restart_lock_path(tmp_path / "a").parent.stat().st_mode & 0o777) == 0o700
    (tmp_path / "b" / "fleet").mkdir(parents=True)
    (tmp_path / "b" / "fleet" / "run").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunDirError, match="symlink"):
        acquire_restart_lock(tmp_path / "b")


# --------------------------------------------------------------------------- the fenced lease (issue 10)


def test_lease_lost_and_lock_timeout_are_one_line_operation_errors() -> None:
    assert issubclass(LeaseLost, FleetOperationError)
    assert issubclass(LockTimeout, FleetOperationError)
    assert LeaseLost("x").exit_code == LockTimeout("x").exit_code == 1


def test_refresh_raises_lease_lost_naming_the_new_owner_and_why(tmp_path: Path) -> None:
    clock = [time.time()]
    owner = acquire_restart_lock(tmp_path, clock=lambda: clock[0])
    clock[0] += STALE_S + 1  # the owner stopped refreshing; a second restart takes over
    successor = acquire_restart_lock(tmp_path, clock=lambda: clock[0], log=lambda _: None)
    with pytest.raises(LeaseLost) as caught:
        owner.refresh()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"lost the fleet restart lock: it now belongs to pid {os.getpid()} on ")
    assert "taken over from a stale lock" in message
    assert message.endswith("; stopping without further changes")
    assert token_of(restart_lock_path(tmp_path)) == successor.token  # the loser changed nothing
    owner.release()
    assert token_of(restart_lock_path(tmp_path)) == successor.token
    successor.release()


def test_refresh_after_release_or_on_a_vanished_lock_raises(tmp_path: Path) -> None:
    guard = acquire_restart_lock(tmp_path)
    guard.refresh()  # ours: no exception, fresh timestamp
    guard.release()
    with pytest.raises(LeaseLost, match="already released it; nobody holds it"):
        guard.refresh()
    other = acquire_restart_lock(tmp_path)
    restart_lock_path(tmp_path).unlink()  # someone removed the lock by hand
    with pytest.raises(LeaseLost, match=r"^lost the fleet restart lock: nobody holds it"):
        other.refresh()


def test_owner_line_names_pid_host_state_and_progress(tmp_path: Path) -> None:
    with restart_lock(tmp_path) as guard:
        line = guard.owner_line()
    assert line.startswith(f"pid {os.getpid()} on {Identity.current().host} (running, last progress ")
    assert guard.owner_line() == "nobody holds it"


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_an_invalid_timeout_is_refused_in_one_line(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(RestartLockError, match=r"^invalid lock timeout .*finite number of seconds >= 0$"):
        acquire_restart_lock(tmp_path, timeout=timeout)
    assert not restart_lock_path(tmp_path).exists()


def test_timeout_is_measured_on_the_injected_clock(tmp_path: Path) -> None:
    write_lock(tmp_path, f"4242\n{now_ms()}\nbusy\n")
    clock = [time.time()]
    sleep = CountingSleep(lambda: clock.__setitem__(0, clock[0] + POLL_INTERVAL_S))
    with pytest.raises(LockTimeout, match=r"^timed out after 2s .* held by pid 4242 \(last progress"):
        acquire_restart_lock(tmp_path, timeout=2, sleep=sleep, clock=lambda: clock[0])
    assert len(sleep.calls) == 2 / POLL_INTERVAL_S
    assert token_of(restart_lock_path(tmp_path)) == "busy"


def test_release_and_refresh_never_touch_a_lock_replaced_after_their_check(tmp_path: Path) -> None:
    """Without the mutex (as for an owner whose mutex was reaped while it was stopped), the
    lock is replaced between the token check and the change: both leave it untouched."""
    for checkpoint, action in (("release:checked", "release"), ("refresh:checked", "refresh")):
        home = tmp_path / action
        intruder = LockRecord.format(Identity(4242, "elsewhere", ""), now_ms(), "intruder")

        def replace(name: str, checkpoint: str = checkpoint, home: Path = home, intruder: str = intruder) -> None:
            if name == checkpoint:
                staged = home / "staged"
                staged.write_text(intruder)
                os.replace(staged, restart_lock_path(home))  # a new inode, as a takeover makes

        guard = acquire_restart_lock(home, checkpoint=replace)
        if action == "release":
            assert guard.lock.release(guard.token) is False
        else:
            with pytest.raises(LeaseLost, match="belongs to pid 4242 on elsewhere"):
                guard.refresh()
        assert restart_lock_path(home).read_text() == intruder
        assert [p.name for p in restart_lock_path(home).parent.iterdir() if p.name.startswith(".")] == []


def test_a_takeover_verifies_it_replaces_the_very_record_it_judged(tmp_path: Path) -> None:
    write_lock(tmp_path, f"4242\n{now_ms(-STALE_S - 1)}\nstale\n")
    fresh = LockRecord.format(Identity(4242, "elsewhere", ""), now_ms(), "refreshed-meanwhile")

    def refresh_meanwhile(name: str) -> None:
        if name == "break:judged":
            staged = tmp_path / "staged"
            staged.write_text(fresh)
            os.replace(staged, restart_lock_path(tmp_path))

    logged: list[str] = []
    owned, record = RestartLock(tmp_path, log=logged.append, checkpoint=refresh_meanwhile).try_acquire("me")
    assert not owned
    assert record is not None
    assert record.token == "refreshed-meanwhile"  # noqa: S105
    assert restart_lock_path(tmp_path).read_text() == fresh
    assert logged == []


def aside_name(lock: RestartLock, pid: int, start: str) -> Path:
    return lock.path.with_name(f".restart.lock.{pid}-{start}.{'0' * 32}.aside")


def test_a_free_lock_is_not_taken_while_a_live_process_has_it_moved_aside(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    me = Identity.current()
    aside = aside_name(lock, me.pid, me.start)  # "we" are mid-transition in another thread
    aside.write_text(LockRecord.format(me, now_ms(), "moved-aside"))
    assert lock.try_acquire("me") == (False, None)
    assert not lock.path.exists()
    aside.unlink()
    assert lock.try_acquire("me") == (True, None)


def test_an_aside_left_by_a_dead_process_is_put_back_and_judged(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path, log=lambda _: None)
    lock.path.parent.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    aside = aside_name(lock, int(dead.stdout), "1")
    aside.write_text(f"4242\n{now_ms()}\nput-back\nelsewhere\n")  # a live remote owner's lock
    owned, record = lock.try_acquire("me")
    assert not owned
    assert record is not None
    assert record.token == "put-back"  # noqa: S105
    assert not aside.exists()


# --------------------------------------------------------------------------- untrusted records (issue 10/11)


@pytest.mark.parametrize(
    "pid_line", ["9" * 5000, "0", "-5", "+7", str(pid_max() + 1), "12abc", "", " ", "\u0663", "1e3", "4242" + "\0"]
)
def test_a_lock_with_an_impossible_pid_is_broken_as_corrupt_in_one_line(tmp_path: Path, pid_line: str) -> None:
    write_lock(tmp_path, f"{pid_line}\n{now_ms()}\nforged\n{Identity.current().host}\n")
    sleep, logged = CountingSleep(), []
    with restart_lock(tmp_path, sleep=sleep, log=logged.append) as guard:
        assert token_of(restart_lock_path(tmp_path)) == guard.token
    assert sleep.calls == []
    assert len(logged) == 1
    assert "corrupt" in logged[0]
    assert "\n" not in logged[0]
    assert len(logged[0]) < 300


@pytest.mark.parametrize("stamp_line", ["9" * 5000, "", "-1", "1.5e12", "now"])
def test_a_lock_with_an_impossible_timestamp_is_broken_as_corrupt(tmp_path: Path, stamp_line: str) -> None:
    write_lock(tmp_path, f"4242\n{stamp_line}\nforged\n")
    logged: list[str] = []
    with restart_lock(tmp_path, sleep=CountingSleep(), log=logged.append):
        pass
    assert len(logged) == 1
    assert "corrupt" in logged[0]
    assert len(logged[0]) < 300


def test_a_mutex_with_a_huge_pid_is_judged_by_age_never_raises(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.mutex_path.write_text(f"{'9' * 5000}\n{now_ms()}\nm\n{Identity.current().host}\n")
    with pytest.raises(LockTimeout):  # fresh and of an unknown holder: waited on
        acquire_restart_lock(tmp_path, timeout=0.2)
    age = time.time() - STALE_S - 1
    os.utime(lock.mutex_path, (age, age))
    with restart_lock(tmp_path):  # old: reaped by the reference's age rule
        pass


def test_a_huge_lock_file_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    path = write_lock(tmp_path, f"4242\n{now_ms()}\nbig\nelsewhere\n\n\n" + "x" * 10_000_000)
    record = RestartLock(tmp_path).owner()
    assert record is not None
    assert (record.pid, record.token, record.problem) == (4242, "big", None)
    assert read_capped(path, 10) == b"4242\n" + str(now_ms())[:5].encode()


# --------------------------------------------------------------------------- odd files (issue 11)


def make_odd(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "dangling symlink":
        path.symlink_to(path.with_name("nowhere"))


ODD_KINDS = {"fifo": "a FIFO", "directory": "a directory", "socket": "a socket"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("suffix", ["", ".mutex", ".mutex.reclaim"])
@pytest.mark.parametrize("kind", sorted(ODD_KINDS))
def test_an_odd_file_at_a_lock_path_is_one_line_never_a_hang(tmp_path: Path, suffix: str, kind: str) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    if suffix == ".mutex.reclaim":  # only looked at while reaping an abandoned mutex
        lock.mutex_path.write_text("")
        age = time.time() - STALE_S - 1
        os.utime(lock.mutex_path, (age, age))
    odd = lock.path.with_name(lock.path.name + suffix)
    make_odd(odd, kind)
    with pytest.raises(RestartLockError) as caught:
        acquire_restart_lock(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{odd} is {ODD_KINDS[kind]}, not a regular file; remove it (rm -r {odd}) and retry" in message
    assert odd.exists()  # reported, not deleted behind the user's back


def test_a_regular_file_at_the_waiters_path_only_costs_the_wake_up_hint(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.path.parent.mkdir(parents=True)
    lock.waiters_dir.write_text("not a directory")
    owner = acquire_restart_lock(tmp_path)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(acquire_restart_lock(tmp_path).token))
    waiter.start()
    time.sleep(0.3)  # let it find the lock taken and fall back to polling
    owner.release()  # waking waiters must not fail either
    waiter.join(60)
    assert len(got) == 1
    RestartGuard(lock, got[0]).release()
    assert lock.waiters_dir.read_text() == "not a directory"


def test_odd_entries_inside_the_waiters_directory_are_never_written(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    lock.waiters_dir.mkdir(parents=True)
    (lock.waiters_dir / "regular").write_text("")
    (lock.waiters_dir / "dir").mkdir()
    with restart_lock(tmp_path):
        pass
    assert (lock.waiters_dir / "regular").read_text() == ""


@pytest.mark.parametrize(
    ("function", "err", "expected"),
    [
        ("link", errno.EROFS, "cannot create {run}/restart.lock.mutex: Read-only file system"),
        ("open", errno.EACCES, "cannot write {run}/restart.lock.mutex: Permission denied"),
        ("write", errno.ENOSPC, "cannot write {run}/restart.lock.mutex: No space left on device"),
        ("mkdir", errno.ENOSPC, "cannot create {run}: No space left on device"),
    ],
)
def test_an_os_error_is_one_line_naming_the_path_and_nothing_is_left_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str, err: int, expected: str
) -> None:
    real = getattr(os, function)

    def failing(*args: object, **kwargs: object) -> object:
        raise OSError(err, os.strerror(err))

    if function != "mkdir":
        restart_lock_path(tmp_path).parent.mkdir(parents=True, mode=0o700)
    monkeypatch.setattr(os, function, failing)
    with pytest.raises(FleetError) as caught:
        acquire_restart_lock(tmp_path)
    monkeypatch.setattr(os, function, real)
    assert str(caught.value) == expected.format(run=restart_lock_path(tmp_path).parent)
    run = restart_lock_path(tmp_path).parent
    assert not run.exists() or os.listdir(run) == []
    with restart_lock(tmp_path):  # and the next attempt works
        pass


def test_a_failed_release_leaves_the_lock_in_place_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = acquire_restart_lock(tmp_path)

    def failing_rename(source: object, target: object) -> None:
        if str(source).endswith("restart.lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        os.replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(RestartLockError, match=r"^cannot move \S+/restart\.lock: Read-only file system$"):
        guard.release()
    monkeypatch.undo()
    assert token_of(restart_lock_path(tmp_path)) == guard.token
    guard.lock.release(guard.token)


# --------------------------------------------------------------------------- the run dir (fleetlib.rundir)


def test_run_dir_errors_are_fleet_errors_of_their_own() -> None:
    assert issubclass(RunDirError, FleetError)
    assert issubclass(RunFileError, FleetError)
    assert not issubclass(RunDirError, RestartLockError)
    assert not issubclass(RunFileError, RestartLockError)
    assert RunDirError("x").exit_code == RunFileError("x").exit_code == 2


def test_ensure_private_dir_creates_0700_with_parents_and_accepts_a_safe_existing_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "run"
    ensure_private_dir(target, "fleet run directory")
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    target.chmod(0o755)  # not writable by others: fine, as for ssh
    ensure_private_dir(target, "fleet run directory")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o1777])
def test_a_group_or_world_writable_run_dir_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "run"
    target.mkdir()
    target.chmod(mode)
    with pytest.raises(RunDirError, match=f"writable by group or others .*; run: chmod 700 {target}$"):
        ensure_private_dir(target, "fleet run directory")


def test_a_run_dir_owned_by_someone_else_is_refused_with_the_fix(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    target = tmp_path / "run"
    target.mkdir(mode=0o700)
    os.chown(target, 65534, -1)
    with pytest.raises(
        RunDirError, match=f"owned by uid 65534, not by you \\(uid 0\\); remove it or run: chown 0 {target}$"
    ):
        ensure_private_dir(target, "fleet run directory")


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_run_dir_that_is_not_a_directory_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "run"
    if kind == "file":
        target.write_text("")
    else:
        (tmp_path / "real").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "real")
    with pytest.raises(RunDirError, match="symlink" if kind == "symlink" else "is a regular file, not a directory"):
        ensure_private_dir(target, "fleet run directory")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", [*sorted(ODD_KINDS), "dangling symlink"])
def test_open_regular_and_read_capped_refuse_odd_files_without_blocking(tmp_path: Path, kind: str) -> None:
    odd = tmp_path / "odd"
    make_odd(odd, kind)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_RDWR):
        with pytest.raises(RunFileError, match=f"send lock {odd}( is |: it is a symlink)"):
            open_regular(odd, flags, what="send lock")
    with pytest.raises(RunFileError):
        read_capped(odd, 10, what="send lock")


def test_open_regular_opens_and_creates_regular_files(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"hello")
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_capped(path, 3) == b"hel"
    assert read_capped(tmp_path / "missing", 3) is None
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing", os.O_RDONLY)
