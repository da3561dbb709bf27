"""The registry mutex and its reaping: every transition of the lock runs while holding it.

``restart.lock.mutex`` serialises the transitions of the lock (take a free lock, take over
a stale or timed-out one, release, refresh), which keeps the reference's protocol. It is
created exclusively with its content in place (:func:`fleetlib.lock._exchange.create_exclusive`)
and held for microseconds. ``restart.lock.mutex.reclaim`` serialises the reaping of an
abandoned mutex.

When a mutex counts as abandoned (the reference reaps any mutex older than 60 s):

* its holder is dead on this host (exited, a zombie, or its pid recycled): at once;
* its holder is alive and running on this host: **never**, whatever its age. A live
  holder is between two file operations; reaping it would let two processes transition
  the lock at once. A waiter that cannot wait for ever passes ``timeout=``.
* its holder is *stopped* on this host (SIGSTOP, a debugger: ``/proc`` state ``T`` or
  ``t``): once the mutex is older than ``stale_after``. A stopped process can stay
  stopped for ever, and the fleet must not block on it. It may resume later, after its
  mutex was reaped, and finish the transition it was in: that is safe, because every
  transition is compare-and-swap safe on its own (:mod:`fleetlib.lock._exchange`).
* its holder is unknown (a reference process: no host line, or an empty mutex it is
  still writing; another host): once older than ``stale_after``, the reference rule.

Guarantee: a mutex (or reclaim file) is only ever removed by a compare-and-swap on the
very file judged abandoned (same bytes, inode and mtime) or by its own holder, so a
reclaimer stopped between judging and reaping cannot remove a mutex created since.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetlib.errors import FleetError
from fleetlib.lock._asides import sweep
from fleetlib.lock._errors import LockTimeout
from fleetlib.lock._exchange import Seen, create_exclusive, read, swap
from fleetlib.lock._record import LockRecord

# The mutex is held for microseconds; start retrying fast and back off to the reference's 20 ms.
FIRST_RETRY_S: Final = 0.0005
_MUTEX: Final = "restart lock mutex"
_RECLAIM: Final = "restart lock reclaim file"


@dataclass(frozen=True)
class RegistryMutex:
    """The mutex of one lock, judged with its owner's liveness and staleness policy."""

    path: Path
    reclaim_path: Path
    lock_path: Path  # whose private files are swept after a reap
    content: Callable[[str], str]  # the record that claims a file for a token
    alive: Callable[[LockRecord], bool | None]
    stopped: Callable[[LockRecord], bool]
    describe: Callable[[LockRecord], str]  # the holder, for the timeout message
    stale_after: float
    retry: float
    timer: Callable[[], float]

    @contextlib.contextmanager
    def hold(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the registry mutex for the block; waits (short back-offs) until held.

        Raises :class:`LockTimeout` if ``deadline`` (on ``timer``) passes first.
        """
        token = uuid.uuid4().hex
        retry = min(FIRST_RETRY_S, self.retry)
        while not create_exclusive(self.path, self.content(token), _MUTEX):
            judged = self._abandoned(self.path, _MUTEX)
            if judged is not None:
                self._reclaim()
                continue
            if deadline is not None and self.timer() >= deadline:
                raise LockTimeout(self._timeout_message())
            # Real sleep, not the injected one: the injected sleep stands for waiting on a
            # restart, and the mutex is only ever held for microseconds.
            time.sleep(retry)
            retry = min(retry * 2, self.retry)
        try:
            yield
        finally:
            self._drop(self.path, _MUTEX, token)

    def _drop(self, path: Path, what: str, token: str) -> None:
        """Remove our mutex (or reclaim file) iff it is still ours, compare-and-swap."""
        seen = read(path, what)
        if seen is not None and seen.record.token == token:
            swap(path, what, lambda now: now.record.token == token, None)

    def _abandoned(self, path: Path, what: str) -> Seen | None:
        """The content of ``path`` if it is an abandoned mutex (or reclaim file), else None.

        See the module docstring: dead holder at once; live running holder never; stopped
        holder or unknown holder once older than ``stale_after``.
        """
        seen = read(path, what)
        if seen is None:
            return None
        # mtimes are wall-clock times: compare with the real clock, not the injected one
        # (a test's fake clock must never make a live mutex look abandoned).
        old = time.time() - seen.mtime_ns / 1e9 >= self.stale_after
        record = seen.record
        alive = self.alive(record)
        if alive is False:
            return seen
        if alive is True:
            return seen if old and self.stopped(record) else None
        return seen if old else None

    def _reclaim(self) -> None:
        """Reap an abandoned mutex, serialised under the reclaim file.

        The reap itself is a compare-and-swap on the very mutex we judged (same bytes,
        inode and mtime), so even a reclaimer that was stopped between judging and reaping
        cannot remove a mutex that someone created since.
        """
        token = uuid.uuid4().hex
        if not create_exclusive(self.reclaim_path, self.content(token), _RECLAIM):
            # Someone else is reclaiming. If their reclaim file is itself abandoned, the
            # reclaimer crashed mid-reap: clear it so a later pass can retry.
            judged = self._abandoned(self.reclaim_path, _RECLAIM)
            if judged is not None:
                swap(self.reclaim_path, _RECLAIM, judged.same, None)
            else:
                time.sleep(FIRST_RETRY_S)
            return
        try:
            judged = self._abandoned(self.path, _MUTEX)
            if judged is not None and swap(self.path, _MUTEX, judged.same, None):
                sweep(self.lock_path)
        finally:
            self._drop(self.reclaim_path, _RECLAIM, token)

    def _timeout_message(self) -> str:
        holder = "another process"
        with contextlib.suppress(FleetError):
            seen = read(self.path, _MUTEX)
            if seen is not None:
                holder = self.describe(seen.record)
        return (
            f"timed out waiting for the fleet restart lock's mutex {self.path}, held by {holder}; "
            f"if that process is stuck, stop it; if no fleet command is running, remove the file"
        )
