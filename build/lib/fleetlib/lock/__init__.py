"""The cross-process fleet restart lock: a fenced lease.

A port of the reference ``mosaic fleet`` lock, wire-compatible with it (a Python restart
and a reference restart on the same home exclude each other), made into a *fenced lease*:
an owner checks with :meth:`RestartGuard.refresh` before every step that changes the fleet,
and a lost lease raises :class:`LeaseLost` instead of letting it carry on.

Files, all in ``<home>/fleet/run`` (created 0700, checked like ssh's ``StrictModes`` by
:func:`fleetlib.rundir.ensure_private_dir`):

``restart.lock``
    The lock: ``pid\\n<epoch ms>\\n<token>\\n<host>\\n<process start>\\n<note>\\n``.
``restart.lock.mutex``, ``restart.lock.mutex.reclaim``
    The registry mutex that serialises transitions, and the file that serialises its reaping.
``restart.lock.waiters/``
    One FIFO per waiting process, written to on release (a hint only).
``.restart.lock.<pid>-<start>.<random>.tmp|aside``
    Private files of a transition in flight.

One mechanism per module, each stating its guarantee at the top:

* :mod:`~fleetlib.lock._errors`: the three error classes;
* :mod:`~fleetlib.lock._record`: record and identity (parsing untrusted lock files);
* :mod:`~fleetlib.lock._liveness`: owner liveness (dead, stopped, running, unknown);
* :mod:`~fleetlib.lock._exchange`: compare-and-swap file operations;
* :mod:`~fleetlib.lock._asides`: aside-file bookkeeping (a lock moved aside is not free);
* :mod:`~fleetlib.lock._wake`: the FIFO/pidfd wake channel;
* :mod:`~fleetlib.lock._mutex`: the registry mutex and its reaping;
* :mod:`~fleetlib.lock._lease`: the lease policy (take, wait, break, release, refresh) and
  the guard an owner holds;
* :mod:`~fleetlib.lock._proof`: the proof of the lease a child process checks.

This package only re-exports.
"""

from __future__ import annotations

from fleetlib.lock._errors import LeaseLost, LockTimeout, RestartLockError
from fleetlib.lock._lease import (
    MAX_WAIT_S,
    POLL_INTERVAL_S,
    STALE_S,
    RestartGuard,
    RestartLock,
    WaitProgress,
    acquire_restart_lock,
    restart_lock,
    restart_lock_path,
)
from fleetlib.lock._liveness import process_alive, process_stopped
from fleetlib.lock._proof import FENCE_MARGIN_S, LeaseProof, boot_clock
from fleetlib.lock._record import READ_CAP, Identity, LockRecord, pid_max
from fleetlib.rundir import RunDirError, ensure_private_dir

__all__ = [
    "FENCE_MARGIN_S",
    "MAX_WAIT_S",
    "POLL_INTERVAL_S",
    "READ_CAP",
    "STALE_S",
    "Identity",
    "LeaseLost",
    "LeaseProof",
    "LockRecord",
    "LockTimeout",
    "RestartGuard",
    "RestartLock",
    "RestartLockError",
    "RunDirError",
    "WaitProgress",
    "acquire_restart_lock",
    "boot_clock",
    "ensure_private_dir",
    "pid_max",
    "process_alive",
    "process_stopped",
    "restart_lock",
    "restart_lock_path",
]
