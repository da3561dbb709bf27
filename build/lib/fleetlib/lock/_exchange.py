"""Compare-and-swap file operations: every change to a lock file is safe without any mutex.

Guarantee: no operation here ever deletes or overwrites a file that is not the one the
caller expects, even if the caller was paused (SIGSTOP) for any time between its check and
its change:

* a file is created with ``link(2)`` of a fully written private temp file, which fails if
  the name exists; so a crash never leaves an empty or half-written file at the name
  (unlike the reference's open-then-write);
* :func:`swap` (release, refresh, take-over) first moves the file to a private name
  (``.<name>.<pid>-<start>.<random>.aside``) with ``rename(2)``, reads what it moved, and
  completes only if that is the expected file: unlink it, or ``link(2)`` the replacement
  into place (which fails if anyone created one meanwhile). Otherwise it puts the file
  back with ``link(2)``, never overwriting.

While a file is moved aside its name is briefly absent; :mod:`fleetlib.lock._asides` is
how other processes tell that from a free lock.

Everything read is untrusted: reads are capped at :data:`~fleetlib.lock._record.READ_CAP`,
files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and must be regular files (a symlink,
FIFO, socket, device or directory is a one-line :class:`RestartLockError`), and every
``OSError`` is a one-line error naming the path. A failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetlib import procs
from fleetlib.lock._errors import RestartLockError
from fleetlib.lock._record import READ_CAP, LockRecord
from fleetlib.rundir import RunFileError, describe_os_error, open_regular, read_fd_capped


@dataclass(frozen=True)
class Seen:
    """One read of a file: its (capped) bytes and which inode they came from."""

    raw: bytes
    dev: int
    ino: int
    mtime_ns: int

    def same(self, other: Seen | None) -> bool:
        return other is not None and (self.raw, self.dev, self.ino, self.mtime_ns) == (
            other.raw,
            other.dev,
            other.ino,
            other.mtime_ns,
        )

    @property
    def record(self) -> LockRecord:
        return LockRecord.parse(self.raw.decode("utf-8", errors="replace"))


@contextlib.contextmanager
def _as_lock_error() -> Iterator[None]:
    """Run-dir file errors surface as the lock's own error class (same one-line message)."""
    try:
        yield
    except RunFileError as exc:
        raise RestartLockError(str(exc)) from exc


def lock_error(verb: str, path: Path, exc: OSError) -> RestartLockError:
    """``cannot <verb> <path>: <reason>``, the one line every file failure becomes."""
    return RestartLockError(f"cannot {verb} {path}: {describe_os_error(exc)}")


def read(path: Path, what: str) -> Seen | None:
    """Read at most READ_CAP bytes of the regular file ``path``; None when it does not exist."""
    with _as_lock_error():
        try:
            fd = open_regular(path, os.O_RDONLY, what=what)
        except FileNotFoundError:
            return None
        try:
            info = os.fstat(fd)
            raw = read_fd_capped(fd, READ_CAP, path)
        except OSError as exc:
            raise lock_error("read", path, exc) from exc
        finally:
            os.close(fd)
    return Seen(raw, info.st_dev, info.st_ino, info.st_mtime_ns)


@functools.cache
def _tag_for(pid: int) -> str:
    return f"{pid}-{procs.start_ticks(pid)}"


def _process_tag() -> str:
    """``<pid>-<start ticks>``: names our temp and aside files so others can judge them."""
    return _tag_for(os.getpid())


def _private_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{_process_tag()}.{uuid.uuid4().hex}.{kind}")


def unlink(path: Path) -> None:
    """Best-effort removal of a file we own (a temp, an aside); absence is fine."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_temp(path: Path, content: str) -> Path:
    """Write ``content`` to a new private temp file beside ``path`` and return its path.

    On failure nothing is left behind and the error names ``path`` (the file we were
    writing), e.g. ``cannot write .../restart.lock: No space left on device``.
    """
    tmp = _private_name(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise lock_error("write", path, exc) from exc
    try:
        data = content.encode()
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        os.close(fd)
        unlink(tmp)
        raise lock_error("write", path, exc) from exc
    except BaseException:
        os.close(fd)
        unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _link(source: Path, path: Path) -> bool:
    """``link(2)`` ``source`` at ``path``: the exclusive install. False when ``path`` exists."""
    try:
        os.link(source, path, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        raise lock_error("create", path, exc) from exc
    return True


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def create_exclusive(path: Path, content: str, what: str) -> bool:
    """Create ``path`` holding ``content`` iff it does not exist; False when it does.

    Exclusive like ``O_CREAT|O_EXCL`` but with the content already in place: the file is
    written privately, then hard-linked into place. So, unlike the reference's
    open-then-write, a crash never leaves an empty file, and a failed write leaves
    nothing behind at ``path``.
    """
    tmp = write_temp(path, content)
    try:
        created = _link(tmp, path)
    finally:
        unlink(tmp)
    if not created and stat.S_ISLNK(_lstat_mode(path)):
        raise RestartLockError(
            f"refusing to use {what} {path}: it is a symlink (possible tampering); remove it (rm {path}) and retry"
        )
    return created


def put_back(aside: Path, path: Path) -> bool:
    """Return a moved-aside file to ``path`` unless something is there now; drop ``aside``.

    ``link(2)`` never overwrites, so a file created at ``path`` meanwhile wins. Returns
    whether ``path`` now holds the moved file.
    """
    # On any other failure the aside stays where it is: it names our pid, so once we are
    # gone the next process to find the lock free puts it back (see _asides.aside_in_flight).
    restored = _link(aside, path)
    if not restored:  # perhaps a process that judged our aside abandoned restored it
        with contextlib.suppress(OSError):
            restored = os.path.samefile(aside, path)
    unlink(aside)
    return restored


def swap(path: Path, what: str, expect: Callable[[Seen], bool], replacement: Path | None) -> bool:
    """Compare-and-swap on a name, safe without any mutex.

    Move ``path`` aside to a private name, read it, and if ``expect`` accepts it, complete:
    unlink it (``replacement`` None) or ``link(2)`` ``replacement`` into place (False if
    someone created ``path`` meanwhile). If it is not the expected file, put it back
    without overwriting and return False. ``path`` never ends up holding a file nobody
    put there, and a file that is not ours is never removed.
    """
    aside = _private_name(path, "aside")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise lock_error("move", path, exc) from exc
    try:
        seen = read(aside, what)
    except BaseException:
        put_back(aside, path)
        raise
    if seen is None:  # a process that judged our aside abandoned restored it
        return False
    if not expect(seen):
        put_back(aside, path)
        return False
    if replacement is None:
        unlink(aside)
        return True
    try:
        installed = _link(replacement, path)
    except BaseException:
        put_back(aside, path)
        raise
    unlink(aside)
    return installed
