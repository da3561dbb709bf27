"""Property tests: random interleavings of acquire, release, refresh, crashes and clock jumps.

Each simulated contender is a ``RestartLock`` with its own identity (pid), all on one real
directory, sharing a fake clock and a fake process table. Hypothesis chooses the order of
single evaluations (``try_acquire``), so it explores interleavings threads rarely hit.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fleetlib.lock import Identity, LeaseLost, LockRecord, RestartGuard, RestartLock, WaitProgress, pid_max

MAX_WAIT = 30.0
STALE = 60.0


@dataclass
class Contender:
    lock: RestartLock
    token: str
    status: str = "idle"  # idle | waiting | owner | dead
    progress: WaitProgress = field(default_factory=WaitProgress)
    first_seen: dict[tuple[str | None, int | None], float] = field(default_factory=dict)


class RestartLockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="fleet-lock-prop-"))
        self.now = 1_800_000_000.0
        self.alive: dict[int, bool] = {}
        self.next_pid = 1000
        self.next_token = 0
        self.contenders: list[Contender] = []
        self.dethroned: set[str] = set()
        self.logged: list[str] = []

    def teardown(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    # ---------------------------------------------------------------- helpers

    def _liveness(self, record: LockRecord, here: Identity) -> bool | None:
        return self.alive.get(record.pid) if record.pid is not None else None

    def _new_token(self) -> str:
        self.next_token += 1
        return f"token-{self.next_token}"

    def _spawn(self) -> Contender:
        pid = self.next_pid
        self.next_pid += 1
        self.alive[pid] = True
        here = Identity.current()
        lock = RestartLock(
            self.home,
            clock=lambda: self.now,
            liveness=self._liveness,
            wake=False,
            log=self.logged.append,
            max_wait=MAX_WAIT,
            stale_after=STALE,
            identity=Identity(pid, here.host, "start"),
        )
        lock.path.parent.mkdir(parents=True, exist_ok=True)
        return Contender(lock, self._new_token())

    def _disk(self) -> LockRecord | None:
        return RestartLock(self.home).owner()

    def _holder_of(self, token: str | None) -> Contender | None:
        return next((c for c in self.contenders if c.token == token and c.status == "owner"), None)

    # ---------------------------------------------------------------- rules

    @initialize()
    def start(self) -> None:
        self.contenders = [self._spawn() for _ in range(3)]

    @rule(index=st.integers(0, 2))
    def try_acquire(self, index: int) -> None:
        c = self.contenders[index]
        if c.status not in ("idle", "waiting"):
            return
        before = self._disk()
        prev_holder = self._holder_of(before.token) if before else None
        owned, seen = c.lock.try_acquire(c.token, c.progress)
        if before is None:
            assert owned, "a free lock must be taken"
        elif before.pid is not None and self.alive.get(before.pid) is False:
            assert owned, "a dead owner's lock must be broken at once"
        if owned:
            assert self._disk() is not None
            assert self._disk().token == c.token  # type: ignore[union-attr]
            if before is not None and prev_holder is not None:
                # Taking over from a live owner is only allowed when it is stale or made no
                # progress for max_wait as observed by this waiter.
                assert before.stamp_ms is not None
                observed = c.first_seen.get((before.token, before.stamp_ms))
                assert (
                    self.now - before.stamp_ms / 1000 >= STALE
                    or (observed is not None and self.now - observed >= MAX_WAIT)
                    or self.alive.get(before.pid or -1) is False
                ), "a live, progressing owner was broken"
                self.dethroned.add(prev_holder.token)
            c.status = "owner"
        else:
            assert seen is not None
            c.first_seen.setdefault((seen.token, seen.stamp_ms), self.now)
            c.status = "waiting"

    @rule(index=st.integers(0, 2))
    def release(self, index: int) -> None:
        c = self.contenders[index]
        if c.status != "owner":
            return
        before = self._disk()
        c.lock.release(c.token)
        if before is not None and before.token == c.token:
            assert self._disk() is None
        else:
            assert self._disk() == before, "a dethroned owner's release touched the new owner's lock"
        c.status, c.token = "idle", self._new_token()
        c.progress, c.first_seen = WaitProgress(), {}

    @rule(index=st.integers(0, 2))
    def refresh(self, index: int) -> None:
        c = self.contenders[index]
        if c.status != "owner":
            return
        before = self._disk()
        still_owner = c.lock.refresh(c.token)
        assert still_owner == (before is not None and before.token == c.token)

    @rule(index=st.integers(0, 2), through_guard=st.booleans())
    def release_or_refresh_without_the_mutex(self, index: int, through_guard: bool) -> None:
        """An owner whose mutex was reaped while it was stopped resumes and finishes its
        release or refresh without the mutex: it may only ever change its own lock."""
        c = self.contenders[index]
        if c.status != "owner":
            return
        before = self._disk()
        ours = before is not None and before.token == c.token
        with _without_mutex(c.lock):
            if through_guard:
                message = ""
                try:
                    RestartGuard(c.lock, c.token).refresh()
                except LeaseLost as exc:
                    message = str(exc)
                assert (message == "") == ours
                assert "\n" not in message
                after = self._disk()
                assert after == before if not ours else (after is not None and after.token == c.token)
                return
            released = c.lock.release(c.token)
        assert released == ours
        assert self._disk() == (None if ours else before), "a release without the mutex touched another lock"
        c.status, c.token = "idle", self._new_token()
        c.progress, c.first_seen = WaitProgress(), {}

    @rule(index=st.integers(0, 2), in_mutex=st.booleans())
    def crash(self, index: int, in_mutex: bool) -> None:
        c = self.contenders[index]
        if c.status == "dead":
            return
        if in_mutex and not c.lock.mutex_path.exists():
            # Died while holding the registry mutex.
            c.lock.mutex_path.write_text(LockRecord.format(c.lock.identity, int(self.now * 1000), "m"))
        self.alive[c.lock.identity.pid] = False
        c.status = "dead"

    @rule(index=st.integers(0, 2))
    def restart_process(self, index: int) -> None:
        if self.contenders[index].status == "dead":
            self.contenders[index] = self._spawn()

    @rule(
        seconds=st.one_of(
            st.sampled_from([0.001, 0.25, 3.0, 13.0, 29.999, 30.0, 45.0, 59.999, 60.0, -5.0]),
            st.floats(min_value=-5.0, max_value=130.0),
        )
    )
    def clock_jump(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: bool(self.contenders))
    @invariant()
    def at_most_one_undethroned_owner(self) -> None:
        owners = [c for c in self.contenders if c.status == "owner" and c.token not in self.dethroned]
        assert len(owners) <= 1
        disk = self._disk()
        for owner in owners:
            assert disk is not None
            assert disk.token == owner.token

    @precondition(lambda self: bool(self.contenders))
    @invariant()
    def every_break_was_announced_in_one_line(self) -> None:
        assert all("\n" not in line and "breaking the fleet restart lock" in line for line in self.logged)


@contextlib.contextmanager
def _without_mutex(lock: RestartLock) -> Iterator[None]:
    """Run ``lock``'s transitions as a process whose mutex was reaped: no mutex at all."""
    lock._mutex = lambda deadline=None: contextlib.nullcontext()  # type: ignore[method-assign]
    try:
        yield
    finally:
        del lock._mutex  # type: ignore[attr-defined]


RestartLockMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
TestRestartLockInterleavings = RestartLockMachine.TestCase


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")))
@settings(max_examples=500, deadline=None)
def test_any_lock_content_parses_without_raising_and_pids_are_in_range(raw: str) -> None:
    record = LockRecord.parse(raw)
    assert record.pid is None or 1 <= record.pid <= 4_194_304
    assert (record.problem is None) == (record.pid is not None and record.stamp_ms is not None)
    assert all("\n" not in (value or "") for value in (record.token, record.host, record.start, record.note))


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_a_pid_is_accepted_exactly_in_1_to_pid_max(pid: int) -> None:
    record = LockRecord.parse(f"{pid}\n1\n")
    assert record.pid == (pid if 1 <= pid <= pid_max() else None)
