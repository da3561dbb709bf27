"""The lease policy: when a waiter takes, waits for, or breaks the fleet restart lock.

A fleet restart tears down the tmux holder and every agent inside it. A second restart
entering meanwhile would relaunch agents against a half-torn-down holder, so restarts
must exclude each other across processes. :class:`RestartLock` decides, in one
evaluation under the registry mutex (:mod:`fleetlib.lock._mutex`), whether this process
takes the lock; :meth:`RestartLock.acquire` repeats evaluations, sleeping on the wake
channel (:mod:`fleetlib.lock._wake`) in between.

Lease rules:

* A free lock is taken (unless a live process has it moved aside: :mod:`fleetlib.lock._asides`).
* A lock older than ``stale_after`` (stamp age), or corrupt (no timestamp; a pid line that
  is not a pid of this machine: 0, negative, above ``pid_max``, thousands of digits) is
  broken at once. A fresh lock is waited on, and broken once its owner has made no
  progress for ``max_wait``. Each break prints one line on stderr saying why. A stopped
  *lock* owner gets no special treatment: its lock ages like any other.
* A lock whose owner is dead on this host is broken at once, and a waiter wakes the moment
  the owner dies (pidfd).
* ``acquire(timeout=...)`` bounds the wait and raises :class:`LockTimeout` naming the
  owner; ``timeout=None`` waits as long as the rules above say.
* The owner holds a :class:`RestartGuard` and calls :meth:`RestartGuard.refresh` before
  every step that changes the fleet: it proves the lease is still ours or raises
  :class:`LeaseLost` (one line naming the current owner), after which the caller must
  change nothing more; :meth:`RestartGuard.proof` hands a child process the same check
  (:mod:`fleetlib.lock._proof`).

Guarantee: at most one process owns the lock at a time. Every transition (take, break,
refresh, release) is a compare-and-swap (:mod:`fleetlib.lock._exchange`), so no process
ever deletes or overwrites a lock that is not its own, even one whose mutex was reaped
while it was stopped.

``checkpoint`` is where a test pauses an evaluation between its check and its change
(``tests/lock_worker.py`` stops its own process there): it is called with
``"break:judged"``, ``"release:checked"`` and ``"refresh:checked"``. Production passes
nothing (a no-op).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetlib.errors import FleetError
from fleetlib.lock._asides import aside_in_flight, sweep
from fleetlib.lock._errors import LeaseLost, LockTimeout, RestartLockError
from fleetlib.lock._exchange import create_exclusive, lock_error, read, swap, unlink, write_temp
from fleetlib.lock._liveness import Liveness, Stopped, process_alive, process_stopped
from fleetlib.lock._mutex import RegistryMutex
from fleetlib.lock._proof import FENCE_MARGIN_S, LeaseProof, boot_clock
from fleetlib.lock._record import Identity, LockRecord
from fleetlib.lock._wake import WakeChannel, wake_waiters
from fleetlib.rundir import ensure_private_dir

POLL_INTERVAL_S: Final = 0.25
MAX_WAIT_S: Final = 30.0
STALE_S: Final = 60.0
MUTEX_RETRY_S: Final = 0.020

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Log = Callable[[str], None]
Checkpoint = Callable[[str], None]


def restart_lock_path(home: str | os.PathLike[str]) -> Path:
    """``<home>/fleet/run/restart.lock``, the same path the reference tool uses."""
    return Path(home) / "fleet" / "run" / "restart.lock"


def no_checkpoint(name: str) -> None:
    """The production checkpoint: nothing pauses."""


def _stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
        raise RestartLockError(f"invalid lock timeout {timeout!r}: give a finite number of seconds >= 0")


@dataclass
class WaitProgress:
    """What a waiter last saw of the owner, and when it last saw it change."""

    seen: tuple[str | None, int | None] | None = None
    since: float = 0.0


@dataclass
class RestartLock:
    """The restart lock of one fleet home, with its policy knobs.

    Most callers want :func:`acquire_restart_lock` or :func:`restart_lock`. The class is
    public so tests can drive single evaluations (:meth:`try_acquire`) deterministically.
    ``liveness=None`` and ``wake=False`` configure it exactly as the reference (pure
    polling, no liveness check), for comparisons. ``checkpoint`` is the test seam named in
    the module docstring.
    """

    home: Path
    sleep: Sleep = time.sleep
    clock: Clock = time.time
    poll_interval: float = POLL_INTERVAL_S
    max_wait: float = MAX_WAIT_S
    stale_after: float = STALE_S
    mutex_retry: float = MUTEX_RETRY_S
    liveness: Liveness | None = process_alive
    stopped: Stopped = process_stopped
    wake: bool = True
    log: Log = _stderr_line
    identity: Identity = field(default_factory=Identity.current)
    checkpoint: Checkpoint = no_checkpoint

    # Cached: building paths was a third of an uncontended acquire+release.
    @functools.cached_property
    def path(self) -> Path:
        return restart_lock_path(self.home)

    @functools.cached_property
    def mutex_path(self) -> Path:
        return self.path.with_name(self.path.name + ".mutex")

    @functools.cached_property
    def reclaim_path(self) -> Path:
        return self.path.with_name(self.path.name + ".mutex.reclaim")

    @functools.cached_property
    def waiters_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".waiters")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _record(self, token: str, note: str = "") -> str:
        return LockRecord.format(self.identity, self._now_ms(), token, note)

    def _alive(self, record: LockRecord) -> bool | None:
        return None if self.liveness is None else self.liveness(record, self.identity)

    def _timer(self) -> Clock:
        """The clock deadlines are measured on: monotonic unless a test injected a clock."""
        return time.monotonic if self.clock is time.time else self.clock

    def _stopped(self, record: LockRecord) -> bool:
        return self.stopped(record, self.identity)

    def _mutex(self, deadline: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Hold the registry mutex for the block (see :mod:`fleetlib.lock._mutex`).

        Raises :class:`LockTimeout` if ``deadline`` (on :meth:`_timer`) passes first.
        """
        registry = RegistryMutex(
            path=self.mutex_path,
            reclaim_path=self.reclaim_path,
            lock_path=self.path,
            content=self._record,
            alive=self._alive,
            stopped=self._stopped,
            describe=self.describe_owner,
            stale_after=self.stale_after,
            retry=self.mutex_retry,
            timer=self._timer(),
        )
        return registry.hold(deadline)

    # ----------------------------------------------------------------- transitions

    def try_acquire(
        self, token: str, progress: WaitProgress | None = None, *, deadline: float | None = None
    ) -> tuple[bool, LockRecord | None]:
        """One evaluation under the mutex: take the lock if free, stale, dead or timed out.

        Returns ``(True, None)`` once ``token`` owns the lock, else ``(False, record)`` with
        the current owner's record (None while another process has it moved aside); the
        caller waits and evaluates again. ``progress`` carries what this waiter saw last
        time, for the no-progress timeout.
        """
        progress = progress if progress is not None else WaitProgress()
        with self._mutex(deadline):
            record: LockRecord | None = None
            # A few rounds: a transition of a mutex-less (reaped, resumed) process can
            # change the lock under us; each round re-reads and judges afresh.
            for _ in range(4):
                seen = read(self.path, "restart lock")
                now = self.clock()
                if seen is None:
                    record = None
                    if aside_in_flight(self.path, self.stale_after):
                        return False, None
                    if create_exclusive(self.path, self._record(token), "restart lock"):
                        return True, None
                    continue
                record = seen.record
                verdict = self._break_reason(record, now, progress)
                if verdict is None:
                    return False, record
                reason, note = verdict
                replacement = write_temp(self.path, self._record(token, note))
                try:
                    self.checkpoint("break:judged")
                    taken = swap(self.path, "restart lock", seen.same, replacement)
                finally:
                    unlink(replacement)
                if taken:
                    self.log(f"{reason}; breaking the fleet restart lock")
                    sweep(self.path)
                    return True, None
            return False, record

    def _break_reason(self, record: LockRecord, now: float, progress: WaitProgress) -> tuple[str, str] | None:
        """Why the lock held by ``record`` may be broken now (message, note for the new
        record), or None to keep waiting."""
        owner = record.who()
        # A missing token is fine (the reference's first version wrote none); a missing
        # timestamp or an impossible pid means a corrupt, half-written or forged lock.
        if record.problem is not None or record.stamp_ms is None:
            return f"restart lock is unreadable or corrupt ({record.problem})", "taken over from a corrupt lock"
        age = now - record.stamp_ms / 1000
        if age >= self.stale_after:
            return (
                f"restart lock is stale (owner {owner} last made progress {age:.1f}s ago)",
                f"taken over from a stale lock, {age:.0f}s old",
            )
        if self._alive(record) is False:
            return f"restart lock owner {owner} is no longer running", "taken over from an owner that died"
        observed = (record.token, record.stamp_ms)
        if progress.seen != observed:
            progress.seen, progress.since = observed, now
            return None
        if now - progress.since >= self.max_wait:
            return (
                f"timed out after {self.max_wait:g}s waiting for the in-flight fleet restart "
                f"(owner {owner} made no progress)",
                f"taken over after no progress for {self.max_wait:g}s",
            )
        return None

    def release(self, token: str) -> bool:
        """Remove the lock iff ``token`` still owns it; wake waiters. Returns whether it did.

        Compare-and-swap even without the mutex: a releaser that was paused after its
        ownership check and lost the lock meanwhile puts the new owner's lock back.
        """
        with self._mutex():
            seen = read(self.path, "restart lock")
            owned = seen is not None and seen.record.token == token
            if owned:
                self.checkpoint("release:checked")
                owned = swap(self.path, "restart lock", lambda now: now.record.token == token, None)
        if owned and self.wake:
            wake_waiters(self.waiters_dir)
        return owned

    def refresh(self, token: str) -> bool:
        """Rewrite the lock's timestamp iff ``token`` still owns it. Returns whether it does.

        Compare-and-swap even without the mutex (see :meth:`release`).
        """
        held = self.renew(token)
        if held is None:
            return False
        os.close(held)
        return True

    def renew(self, token: str) -> int | None:
        """:meth:`refresh`, returning a file descriptor (close-on-exec) open on the very
        file now at the lock's path; None when ``token`` does not own the lock."""
        with self._mutex():
            seen = read(self.path, "restart lock")
            if seen is None or seen.record.token != token:
                return None
            note = seen.record.note or ""
            replacement = write_temp(self.path, self._record(token, note))
            try:
                try:
                    held = os.open(replacement, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError as exc:
                    raise lock_error("open", replacement, exc) from exc
                try:
                    self.checkpoint("refresh:checked")
                    installed = swap(self.path, "restart lock", lambda now: now.record.token == token, replacement)
                except BaseException:
                    os.close(held)
                    raise
            finally:
                unlink(replacement)
        if installed:
            return held
        os.close(held)
        return None

    def owner(self) -> LockRecord | None:
        """The current lock record (read without the mutex; for display only)."""
        seen = read(self.path, "restart lock")
        return seen.record if seen is not None else None

    def describe_owner(self, record: LockRecord | None = None) -> str:
        """One phrase for messages: ``pid 123 on host (running, last progress 2.0s ago)``."""
        if record is None:
            try:
                record = self.owner()
            except FleetError as exc:
                return f"unknown ({exc})"
        if record is None:
            return "nobody holds it"
        details = []
        alive = self._alive(record)
        if alive is False:
            details.append("no longer running")
        elif alive is True:
            details.append("stopped" if self.stopped(record, self.identity) else "running")
        if record.stamp_ms is not None:
            details.append(f"last progress {self.clock() - record.stamp_ms / 1000:.1f}s ago")
        if record.note:
            details.append(record.note)
        return record.who() + (f" ({', '.join(details)})" if details else "")

    def lost_message(self, *, released: bool = False) -> str:
        """The one line :class:`LeaseLost` carries."""
        record = None
        with contextlib.suppress(FleetError):
            record = self.owner()
        if released:
            where = "this restart already released it"
            now = f"it now belongs to {self.describe_owner(record)}" if record else "nobody holds it"
            return f"lost the fleet restart lock: {where}; {now}; stopping without further changes"
        stop = "stopping without further changes"
        if record is None:
            return f"lost the fleet restart lock: nobody holds it (it was taken over and released); {stop}"
        return f"lost the fleet restart lock: it now belongs to {self.describe_owner(record)}; {stop}"

    def _timeout_message(self, timeout: float, record: LockRecord | None) -> str:
        holder = self.describe_owner(record) if record is not None else "another process (a change in progress)"
        advice = "wait for that restart to finish and retry, or retry with a longer --lock-timeout"
        if record is not None and record.pid is not None and record.host == self.identity.host:
            advice += f"; if pid {record.pid} is stuck, stop it (kill {record.pid}) and the lock is freed at once"
        return (
            f"timed out after {timeout:g}s waiting for the fleet restart lock {self.path}, held by {holder}; {advice}"
        )

    # ----------------------------------------------------------------- blocking acquire

    def acquire(self, timeout: float | None = None) -> RestartGuard:
        """Wait until this process owns the lock; see the module docstring for the rules.

        ``timeout`` (seconds, >= 0) bounds the wait: :class:`LockTimeout` then names the
        owner. None waits as long as the break rules say: a stuck owner is broken after
        ``max_wait``, a dead one at once; only a mutex holder that stays alive and running
        without ever finishing its few file operations (hung inside this module) can make
        it wait longer, since a live running holder is never reaped.
        """
        _check_timeout(timeout)
        ensure_private_dir(self.path.parent, "fleet run directory")
        timer = self._timer()
        deadline = None if timeout is None else timer() + timeout
        token = str(uuid.uuid4())
        progress = WaitProgress()
        channel: WakeChannel | None = None
        # Event-driven waits only with the real sleep: an injected sleep means the caller
        # (a test) controls time and must see every wait as a sleep() call.
        event_driven = self.wake and self.sleep is time.sleep
        tried_channel = False
        try:
            while True:
                owned, record = self.try_acquire(token, progress, deadline=deadline)
                if owned:
                    return RestartGuard(self, token)
                wait = self.poll_interval
                if timeout is not None and deadline is not None:
                    left = deadline - timer()
                    if left <= 0:
                        raise LockTimeout(self._timeout_message(timeout, record))
                    wait = min(wait, left)
                if event_driven and not tried_channel:
                    # Register before the next evaluation so a release between that
                    # evaluation and our wait still wakes us.
                    tried_channel = True
                    channel = WakeChannel.open(self.waiters_dir, token)
                    if channel is not None:
                        continue
                if channel is not None:
                    same_host = record is not None and record.host == self.identity.host
                    channel.wait(wait, record.pid if record and same_host else None)
                else:
                    self.sleep(wait)
        finally:
            if channel is not None:
                channel.close()


@dataclass
class RestartGuard:
    """Ownership of the restart lock: a lease. Use as a context manager or call :meth:`release`.

    Call :meth:`refresh` before every step that changes the fleet and on every poll while
    waiting: it proves the lease is still ours (and keeps it fresh), or raises
    :class:`LeaseLost`, after which the caller must change nothing more. :meth:`proof`
    lets a child process make the same check after its fork (:mod:`fleetlib.runner`).
    """

    lock: RestartLock
    token: str
    released: bool = False
    _proof: LeaseProof | None = field(default=None, repr=False)

    def refresh(self) -> None:
        """Record progress (a fresh timestamp) iff the lock is still ours.

        Raises :class:`LeaseLost` (one line naming the current owner) if it was broken and
        taken over, or if this guard was already released. A file-system failure raises
        :class:`RestartLockError` (one line); the lease may then still be ours, but the
        caller should stop all the same: it can no longer prove it.
        """
        self._renew()

    def proof(self) -> LeaseProof:
        """A proof of the lease with at least half of :data:`FENCE_MARGIN_S` left (time
        for a child to start and check it), refreshing first when the last one has less.

        Raises what :meth:`refresh` raises."""
        proof, now = self._proof, boot_clock()
        if proof is None or (
            proof.expires is not None and now is not None and proof.expires - now < FENCE_MARGIN_S / 2
        ):
            return self._renew()
        return proof

    def _renew(self) -> LeaseProof:
        if self.released:
            raise LeaseLost(self.lock.lost_message(released=True))
        began = boot_clock()  # taken before the refresh: the proof never outlasts the lock's stamp
        held = self.lock.renew(self.token)
        self._forget_proof()
        if held is None:
            raise LeaseLost(self.lock.lost_message())
        self._proof = LeaseProof(self.lock.path, held, None if began is None else began + FENCE_MARGIN_S)
        return self._proof

    def owner_line(self) -> str:
        """Who holds the lock now, for messages: ``pid 123 on host (running, ...)``."""
        return self.lock.describe_owner()

    def release(self) -> None:
        """Drop the lock if still ours; a no-op if it was taken over or already released."""
        if not self.released:
            self.released = True
            self._forget_proof()
            self.lock.release(self.token)

    def _forget_proof(self) -> None:
        if self._proof is not None:
            os.close(self._proof.fd)
            self._proof = None

    def __enter__(self) -> RestartGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_restart_lock(
    home: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
    poll_interval: float = POLL_INTERVAL_S,
    max_wait: float = MAX_WAIT_S,
    stale_after: float = STALE_S,
    mutex_retry: float = MUTEX_RETRY_S,
    liveness: Liveness | None = process_alive,
    stopped: Stopped = process_stopped,
    wake: bool = True,
    log: Log = _stderr_line,
    checkpoint: Checkpoint = no_checkpoint,
) -> RestartGuard:
    """Wait until this process owns ``<home>``'s restart lock and return the guard.

    ``timeout`` bounds the wait (:class:`LockTimeout`); None keeps the unbounded wait.
    ``sleep`` and ``clock`` are injectable; with the real ``time.sleep`` a waiter also wakes
    the moment the lock is released or its owner dies. ``liveness=None, wake=False`` is
    the reference's behaviour (pure polling); ``log`` receives the one-line break notices.
    Raises :class:`RestartLockError` for unusable lock files and
    :class:`~fleetlib.rundir.RunDirError` for an unsafe run dir.
    """
    lock = RestartLock(
        Path(home),
        sleep=sleep,
        clock=clock,
        poll_interval=poll_interval,
        max_wait=max_wait,
        stale_after=stale_after,
        mutex_retry=mutex_retry,
        liveness=liveness,
        stopped=stopped,
        wake=wake,
        log=log,
        checkpoint=checkpoint,
    )
    return lock.acquire(timeout=timeout)


@contextlib.contextmanager
def restart_lock(home: str | os.PathLike[str], **options: Any) -> Iterator[RestartGuard]:
    """Hold the restart lock for the ``with`` block (same options as acquire_restart_lock)."""
    guard = acquire_restart_lock(home, **options)
    try:
        yield guard
    finally:
        guard.release()
