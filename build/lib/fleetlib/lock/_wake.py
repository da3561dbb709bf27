"""The wake channel: waiters sleep on a FIFO (and the owner's pidfd) instead of polling.

Each waiting process owns one FIFO in ``restart.lock.waiters/``; a release writes a byte
to each, so waiters wake at once, and a waiter on this host also wakes the moment the
owner exits (``pidfd_open``). Guarantee: this is a hint only and never a reason to fail.
If the channel cannot be used (no directory, a regular file where the directory or a FIFO
should be) a waiter polls; a release skips anything odd silently; a wait never spins and
never outlasts its timeout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
from pathlib import Path

from fleetlib.errors import FleetError
from fleetlib.lock._exchange import unlink
from fleetlib.rundir import ensure_private_dir


class WakeChannel:
    """A FIFO in ``restart.lock.waiters/`` that a releaser writes to when the lock frees."""

    def __init__(self, directory: Path, token: str) -> None:
        self.path = directory / token
        ensure_private_dir(directory, "restart lock waiters directory")
        # Open the FIFO under a hidden name first: a releaser that found it before we had
        # it open for reading would take it for a dead waiter's and remove it.
        hidden = directory / f".{token}"
        os.mkfifo(hidden, 0o600)
        try:
            self._read_fd = os.open(hidden, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            # Keep a writer open ourselves: a FIFO whose last writer closed reads as EOF
            # forever, which would turn select() into a busy loop.
            self._keepalive_fd = os.open(hidden, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            os.rename(hidden, self.path)
        except BaseException:
            unlink(hidden)
            raise

    @classmethod
    def open(cls, directory: Path, token: str) -> WakeChannel | None:
        """A channel, or None when the waiters directory cannot be used (then we poll)."""
        try:
            return cls(directory, token)
        except (OSError, FleetError):
            return None

    def wait(self, timeout: float, owner_pid: int | None) -> None:
        """Block until woken by a release, the owner's exit, or ``timeout``; never spins."""
        fds = [self._read_fd]
        pidfd = _open_pidfd(owner_pid)
        if pidfd is not None:
            fds.append(pidfd)
        try:
            readable, _, _ = select.select(fds, [], [], max(timeout, 0.0))
            if self._read_fd in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._read_fd, 4096)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def close(self) -> None:
        unlink(self.path)
        os.close(self._read_fd)
        os.close(self._keepalive_fd)


def _open_pidfd(pid: int | None) -> int | None:
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def wake_waiters(directory: Path) -> None:
    """Write one byte to every waiter's FIFO; remove FIFOs whose waiter is gone.

    A hint: anything odd (no directory, a regular file where the directory or a FIFO
    should be) is skipped silently, since waiters also poll.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith("."):  # a waiter still setting up; it re-evaluates before waiting
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: the waiter died without cleaning up
                unlink(path)
            continue
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                # A full FIFO is already woken; a broken pipe means the waiter just left.
                with contextlib.suppress(BlockingIOError, BrokenPipeError):
                    os.write(fd, b"!")
        except OSError:
            pass
        finally:
            os.close(fd)
