"""The proof of the lease: how an owner's child process knows the lease still holds.

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

Guarantee: a proof never outlasts the lock's stamp (its expiry counts from before the
refresh that made it), and where the system has no boot clock it never expires rather
than expiring early or late on a wall clock that can jump.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
