"""Atomic file replacement and a blocking advisory lock for read-modify-write edits.

``atomic_write_text`` guarantees a reader sees either the old file or the new one, never a
mix: the text goes to a temp file in the same directory, is fsynced, then renamed over the
target, and the directory is fsynced so the rename survives a crash. On any failure the
temp file is removed and the target is untouched.

``edit_lock`` serialises edits of one file across processes with ``flock`` on a sidecar
``<file>.lock``. The sidecar is never unlinked: a waiter blocked on the old inode would
otherwise end up locking a different file than the next editor. It is opened without
following a link and without blocking, and must be a regular file: a symlink, directory,
FIFO or device planted there, or any failing system call, is a one-line ``FleetError``
naming the path, never a hang and never a write somewhere else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fleetlib.errors import FleetError
from fleetlib.rundir import open_regular


def atomic_write_text(path: Path, text: str, *, mode: int | None = None, secret: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, rename, fsync dir).

    The new file keeps the old file's permission bits, or gets ``mode`` (default 0644
    filtered by the umask) when it is new; ``secret``: 0600 whatever the old file's bits
    were, and no other user can read the text at any moment (the temporary file is 0600
    from its creation). Raises ``OSError`` on failure with the old file left exactly as it was.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        keep_mode = mode if mode is not None else 0o666 & ~_umask()
    if secret:
        keep_mode = 0o600
    import tempfile  # noqa: PLC0415  # ~5 ms (random, shutil) that commands which only read never pay

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), keep_mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def edit_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` for the duration of the block.

    Blocks until every other editor of the same file has left its block. The lock is
    released by the kernel if the process dies, so a crashed editor never wedges others.
    A lock path that is not a regular file, or cannot be created, is a one-line
    ``FleetError``.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FleetError(f"cannot create directory {lock_path.parent}: {exc.strerror}") from None
    try:
        fd = open_regular(lock_path, os.O_RDWR | os.O_CREAT, what="lock file")
    except FileNotFoundError:  # the directory went away under us
        raise FleetError(f"cannot create lock file {lock_path}: its directory does not exist") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise FleetError(f"cannot lock {lock_path}: {exc.strerror}") from None
        yield
    finally:
        os.close(fd)  # closing drops the flock
