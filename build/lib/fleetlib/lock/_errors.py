"""The restart lock's errors: every failure is one of three classes, each a one-line message.

:class:`RestartLockError` (exit 2) means the lock's files cannot be used safely;
:class:`LockTimeout` and :class:`LeaseLost` (exit 1) are outcomes of the lock protocol.
"""

from __future__ import annotations

from fleetlib.errors import FleetError, FleetOperationError


class RestartLockError(FleetError):
    """The lock's files cannot be used safely (a planted symlink, a FIFO, a full disk)."""


class LockTimeout(FleetOperationError):
    """``acquire(timeout=...)`` gave up; the message names the owner and what to do. Exit 1."""


class LeaseLost(FleetOperationError):
    """This process no longer owns the restart lock; it must change nothing more. Exit 1."""
