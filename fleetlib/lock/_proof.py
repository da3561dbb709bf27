"""The guard and the proof of the lease: how an owner (or its child) knows it still owns it.

Every refresh installs a new file (a new inode) at the lock's path, so "the lock's path is
still the very file my last refresh installed" is true exactly while nobody broke, took
over or released the lock since. :meth:`RestartGuard.proof` hands out a
:class:`LeaseProof`: a file descriptor open on that file and an expiry
:data:`FENCE_MARGIN_S` after the refresh began, on the boot clock (``CLOCK_BOOTTIME``,
which ``/proc/uptime`` shows). A waiter breaks a live owner's lock no sooner than
``max_wait`` after its last refresh, so a check that finds the file in place before the
expiry leaves ``max_wait - FENCE_MARGIN_S`` (29 s by default) for the change it admits to
take effect. :mod:`fleetlib.runner` makes that check in each command's own process, after
the fork (see there).

Guarantee: :meth:`RestartGuard.refresh` either proves the lease is still ours or raises
:class:`LeaseLost` (one line naming the current owner), after which the caller must change
nothing more.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleetlib.lock._errors import LeaseLost

if TYPE_CHECKING:
    from fleetlib.lock._lease import RestartLock

# How long a proof of the lease counts after the refresh that made it; well below any
# max_wait a waiter uses (30 s by default, 2 s in the fault tests).
FENCE_MARGIN_S: Final = 1.0


def boot_clock() -> float | None:
    """Seconds since boot, counting suspend (``CLOCK_BOOTTIME``, what ``/proc/uptime``
    shows); None where the system has no such clock (then proofs do not expire)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return None if boottime is None else time.clock_gettime(boottime)


@dataclass(frozen=True)
class LeaseProof:
    """What a process checks to know the lease still holds (see the module docstring).

    ``fd`` is open on the file the last refresh installed at ``path``; the proof holds
    while ``path`` is that very file and :func:`boot_clock` is below ``expires`` (None:
    no expiry). The fd belongs to the :class:`RestartGuard`: never close it.
    """

    path: Path
    fd: int
    expires: float | None


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
