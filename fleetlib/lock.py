"""The cross-process fleet restart lock.

A fleet restart tears down the tmux holder and every agent inside it. A second restart
entering meanwhile would relaunch agents against a half-torn-down holder, so restarts
must exclude each other across processes. This module is a port of the reference
``mosaic fleet`` lock, wire-compatible with it (a Python restart and a reference restart
on the same home exclude each other), plus three improvements.

Files, all in ``<home>/fleet/run`` (created 0700):

``restart.lock``
    The lock. Content ``pid\\n<epoch ms>\\n<token>\\n<host>\\n<process start>\\n``; the
    reference reads only the first three lines. The token is a fresh UUID per acquire.
``restart.lock.mutex``
    The registry mutex. **Every** transition of the lock (take a free lock, take over a
    stale or timed-out one, release, refresh) runs while holding it, so "read the lock,
    then change it" is atomic and no interleaving can give two restarts the lock at once.
    It is held for a few file operations only, never across a restart. It is created
    exclusively and with its content in place (a hard link of a private temp file: the
    ``O_CREAT|O_EXCL`` guarantee without the reference's window where a crash leaves it
    empty). It is judged abandoned by its mtime (the reference rule) or, at once, when its
    holder is dead on this host; an abandoned mutex is reaped under
    ``restart.lock.mutex.reclaim``.
``restart.lock.waiters/``
    One FIFO per waiting process; a release writes a byte to each so waiters wake at once
    instead of after the next poll. A hint only: correctness never depends on it.

Guarantees and rules:

* Release is token-gated: an owner whose lock was broken and taken over never removes
  the new owner's lock.
* A lock older than ``stale_after`` (or unreadable) is broken at once. A fresh lock is
  waited on, and broken once its owner has made no progress for ``max_wait``. Each break
  prints one line on stderr saying why.
* Better than the reference: (1) a lock whose owner process is dead on this host
  (including an unreaped zombie) is broken at once, and a waiter wakes the moment the
  owner dies; (2) an owner refreshes the lock's timestamp with ``RestartGuard.refresh()``
  as it makes progress, so a long restart is never broken by a concurrent one, while an
  owner that stops making progress still is; (3) no file here is opened through a
  symlink: a symlink planted at the run dir, lock, mutex or reclaim path is refused with
  ``RestartLockError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import stat
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetlib import procs
from fleetlib.errors import FleetError

POLL_INTERVAL_S: Final = 0.25
MAX_WAIT_S: Final = 30.0
STALE_S: Final = 60.0
MUTEX_RETRY_S: Final = 0.020
# The mutex is held for microseconds; start retrying fast and back off to the reference's 20 ms.
_MUTEX_FIRST_RETRY_S: Final = 0.0005

_OPEN_FLAGS: Final = os.O_CLOEXEC | os.O_NOFOLLOW

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Log = Callable[[str], None]


class RestartLockError(FleetError):
    """The lock's files cannot be used safely (a planted symlink, an unusable run dir)."""


def restart_lock_path(home: str | os.PathLike[str]) -> Path:
    """``<home>/fleet/run/restart.lock``, the same path the reference tool uses."""
    return Path(home) / "fleet" / "run" / "restart.lock"


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class Identity:
    """Who holds a lock file: written into it, compared when judging liveness."""

    pid: int
    host: str
    start: str

    @classmethod
    def current(cls) -> Identity:
        pid = os.getpid()
        return cls(pid=pid, host=socket.gethostname(), start=procs.start_ticks(pid))


@dataclass(frozen=True)
class LockRecord:
    """Parsed lock (or mutex) file content; fields are None where missing or malformed."""

    pid: int | None
    stamp_ms: int | None
    token: str | None
    host: str | None = None
    start: str | None = None

    @classmethod
    def parse(cls, raw: str) -> LockRecord:
        lines = [line.strip() for line in raw.split("\n")]
        lines += [""] * (5 - len(lines))

        def number(text: str) -> int | None:
            return int(text) if text.isdigit() else None

        return cls(
            pid=number(lines[0]),
            stamp_ms=number(lines[1]),
            token=lines[2] or None,
            host=lines[3] or None,
            start=lines[4] or None,
        )

    @staticmethod
    def format(identity: Identity, stamp_ms: int, token: str) -> str:
        return f"{identity.pid}\n{stamp_ms}\n{token}\n{identity.host}\n{identity.start}\n"


def process_alive(record: LockRecord, here: Identity) -> bool | None:
    """Whether the process that wrote ``record`` still runs: True, False, or None (unknown).

    Only judged for a record written on this host (a reference lock has no host line and
    stays unknown). A missing pid, a zombie, or a pid now used by a process that started
    at another time all count as dead.
    """
    if record.host != here.host or record.pid is None:
        return None
    if not procs.exists(record.pid):
        return False
    if record.start and here.start:  # /proc available: detect a recycled pid
        return procs.start_ticks(record.pid) == record.start
    return True


Liveness = Callable[[LockRecord, Identity], "bool | None"]


# --------------------------------------------------------------------------- file primitives


def _refuse_symlink(path: Path, what: str) -> None:
    raise RestartLockError(f"refusing to use {what} {path}: it is a symlink (possible tampering); remove it and retry")


def _read(path: Path, what: str) -> str | None:
    """Read ``path`` without following a symlink; None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse_symlink(path, what)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def _write_temp(path: Path, content: str) -> Path:
    """Write ``content`` to a new private temp file beside ``path`` and return its path.

    The name carries our pid (``.<name>.<pid>.<random>.tmp``) so a sweep can tell a temp
    file of a crashed process from one in use. On failure nothing is left behind.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        os.write(fd, content.encode())
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _create_exclusive(path: Path, content: str, what: str) -> bool:
    """Create ``path`` holding ``content`` iff it does not exist; False when it does.

    Exclusive like ``O_CREAT|O_EXCL`` but with the content already in place: the file is
    written privately, then hard-linked into place (``link(2)`` fails if the name exists).
    So, unlike the reference's open-then-write, a crash can never leave an empty mutex,
    and a failed write leaves nothing behind at ``path``.
    """
    tmp = _write_temp(path, content)
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        if stat.S_ISLNK(_lstat_mode(path)):
            _refuse_symlink(path, what)
        return False
    finally:
        _unlink(tmp)
    return True


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except FileNotFoundError:
        return 0


def _replace(path: Path, content: str) -> None:
    """Atomically replace ``path``; readers see the old or the new content, never a mix.

    ``rename(2)`` replaces a symlink at ``path`` rather than following it.
    """
    tmp = _write_temp(path, content)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def _sweep_temps(directory: Path) -> None:
    """Remove temp files left by processes that died between writing and renaming them."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(directory):
            parts = name.split(".")
            if not (name.startswith(".restart.lock") and name.endswith(".tmp") and len(parts) >= 4):
                continue
            pid = parts[-3]
            if pid.isdigit() and not procs.exists(int(pid)):
                _unlink(directory / name)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _mtime(path: Path) -> float | None:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return None


def ensure_private_dir(directory: Path, what: str) -> None:
    """Create ``directory`` 0700 (parents as needed); refuse a symlink or a non-directory."""
    mode = _lstat_mode(directory)
    if not mode:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
        mode = _lstat_mode(directory)
    if stat.S_ISLNK(mode):
        _refuse_symlink(directory, what)
    if not stat.S_ISDIR(mode):
        raise RestartLockError(f"{what} {directory} is not a directory; remove it and retry")


def _stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- waking waiters


class _WakeChannel:
    """A FIFO in ``restart.lock.waiters/`` that a releaser writes to when the lock frees."""

    def __init__(self, directory: Path, token: str) -> None:
        self.path = directory / token
        ensure_private_dir(directory, "restart lock waiters directory")
        # Open the FIFO under a hidden name first: a releaser that found it before we had
        # it open for reading would take it for a dead waiter's and remove it.
        hidden = directory / f".{token}"
        os.mkfifo(hidden, 0o600)
        try:
            self._read_fd = os.open(hidden, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS)
            # Keep a writer open ourselves: a FIFO whose last writer closed reads as EOF
            # forever, which would turn select() into a busy loop.
            self._keepalive_fd = os.open(hidden, os.O_WRONLY | os.O_NONBLOCK | _OPEN_FLAGS)
            os.rename(hidden, self.path)
        except BaseException:
            _unlink(hidden)
            raise

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
        _unlink(self.path)
        os.close(self._read_fd)
        os.close(self._keepalive_fd)


def _open_pidfd(pid: int | None) -> int | None:
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _wake_waiters(directory: Path) -> None:
    """Write one byte to every waiter's FIFO; remove FIFOs whose waiter is gone."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith("."):  # a waiter still setting up; it re-evaluates before waiting
            continue
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: the waiter died without cleaning up
                _unlink(path)
            continue
        try:
            # A full FIFO is already woken; a broken pipe means the waiter just left.
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(fd, b"!")
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- the lock


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
    polling, no liveness check), for comparisons.
    """

    home: Path
    sleep: Sleep = time.sleep
    clock: Clock = time.time
    poll_interval: float = POLL_INTERVAL_S
    max_wait: float = MAX_WAIT_S
    stale_after: float = STALE_S
    mutex_retry: float = MUTEX_RETRY_S
    liveness: Liveness | None = process_alive
    wake: bool = True
    log: Log = _stderr_line
    identity: Identity = field(default_factory=Identity.current)

    @property
    def path(self) -> Path:
        return restart_lock_path(self.home)

    @property
    def mutex_path(self) -> Path:
        return self.path.with_name(self.path.name + ".mutex")

    @property
    def reclaim_path(self) -> Path:
        return self.path.with_name(self.path.name + ".mutex.reclaim")

    @property
    def waiters_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".waiters")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _record(self, token: str) -> str:
        return LockRecord.format(self.identity, self._now_ms(), token)

    def _dead(self, record: LockRecord) -> bool:
        return self.liveness is not None and self.liveness(record, self.identity) is False

    # ----------------------------------------------------------------- registry mutex

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        """Hold the registry mutex for the block; blocks (with short back-offs) until held."""
        token = uuid.uuid4().hex
        retry = min(_MUTEX_FIRST_RETRY_S, self.mutex_retry)
        while not _create_exclusive(self.mutex_path, self._record(token), "restart lock mutex"):
            if self._mutex_abandoned():
                self._reclaim_mutex()
                continue
            # Real sleep, not the injected one: the injected sleep stands for waiting on a
            # restart, and the mutex is only ever held for microseconds.
            time.sleep(retry)
            retry = min(retry * 2, self.mutex_retry)
        try:
            yield
        finally:
            raw = _read(self.mutex_path, "restart lock mutex")
            if raw is not None and LockRecord.parse(raw).token == token:
                _unlink(self.mutex_path)

    def _mutex_abandoned(self) -> bool:
        """A mutex is abandoned when its mtime is older than ``stale_after`` (the reference
        rule: it is never held that long) or, sooner, when its holder is dead on this host."""
        mtime = _mtime(self.mutex_path)
        if mtime is None:
            return False
        # mtimes are wall-clock times: compare with the real clock, not the injected one
        # (a test's fake clock must never make a live mutex look abandoned).
        if time.time() - mtime >= self.stale_after:
            return True
        raw = _read(self.mutex_path, "restart lock mutex")
        return raw is not None and self._dead(LockRecord.parse(raw))

    def _reclaim_mutex(self) -> None:
        """Reap an abandoned mutex, serialised under the reclaim lock.

        While we hold the reclaim lock the abandoned mutex cannot change (its holder is
        gone, no other reclaimer runs, and nobody can create a mutex while it exists), so
        re-checking it here and removing it only if still abandoned is a true compare.
        """
        if not _create_exclusive(self.reclaim_path, self._record(uuid.uuid4().hex), "restart lock reclaim file"):
            # Someone else is reclaiming. If their reclaim lock is itself abandoned, the
            # reclaimer crashed mid-reap: clear it so a later pass can retry.
            mtime = _mtime(self.reclaim_path)
            raw = _read(self.reclaim_path, "restart lock reclaim file")
            if (mtime is not None and time.time() - mtime >= self.stale_after) or (
                raw is not None and self._dead(LockRecord.parse(raw))
            ):
                _unlink(self.reclaim_path)
            else:
                time.sleep(_MUTEX_FIRST_RETRY_S)
            return
        try:
            if self._mutex_abandoned():
                _unlink(self.mutex_path)
                _sweep_temps(self.path.parent)
        finally:
            _unlink(self.reclaim_path)

    # ----------------------------------------------------------------- transitions

    def try_acquire(self, token: str, progress: WaitProgress | None = None) -> tuple[bool, LockRecord | None]:
        """One evaluation under the mutex: take the lock if free, stale, dead or timed out.

        Returns ``(True, None)`` once ``token`` owns the lock, else ``(False, record)`` with
        the current owner's record (the caller waits and evaluates again). ``progress``
        carries what this waiter saw last time, for the no-progress timeout.
        """
        progress = progress if progress is not None else WaitProgress()
        with self._mutex():
            raw = _read(self.path, "restart lock")
            now = self.clock()
            if raw is None:
                _replace(self.path, self._record(token))
                return True, None
            record = LockRecord.parse(raw)
            reason = self._break_reason(record, now, progress)
            if reason is None:
                return False, record
            self.log(f"{reason}; breaking the fleet restart lock")
            _replace(self.path, self._record(token))
            _sweep_temps(self.path.parent)
            return True, None

    def _break_reason(self, record: LockRecord, now: float, progress: WaitProgress) -> str | None:
        """Why the lock held by ``record`` may be broken now, or None to keep waiting."""
        owner = f"pid {record.pid}" + (f" on {record.host}" if record.host else "")
        # A missing token is fine (the reference's first version wrote none); a missing
        # timestamp means a corrupt or half-written lock.
        if record.stamp_ms is None:
            return "restart lock is unreadable or corrupt"
        age = now - record.stamp_ms / 1000
        if age >= self.stale_after:
            return f"restart lock is stale (owner {owner} last made progress {age:.1f}s ago)"
        if self._dead(record):
            return f"restart lock owner {owner} is no longer running"
        observed = (record.token, record.stamp_ms)
        if progress.seen != observed:
            progress.seen, progress.since = observed, now
            return None
        if now - progress.since >= self.max_wait:
            return (
                f"timed out after {self.max_wait:g}s waiting for the in-flight fleet restart "
                f"(owner {owner} made no progress)"
            )
        return None

    def release(self, token: str) -> bool:
        """Remove the lock iff ``token`` still owns it; wake waiters. Returns whether it did."""
        with self._mutex():
            raw = _read(self.path, "restart lock")
            owned = raw is not None and LockRecord.parse(raw).token == token
            if owned:
                _unlink(self.path)
        if owned and self.wake:
            _wake_waiters(self.waiters_dir)
        return owned

    def refresh(self, token: str) -> bool:
        """Rewrite the lock's timestamp iff ``token`` still owns it. Returns whether it does."""
        with self._mutex():
            raw = _read(self.path, "restart lock")
            if raw is None or LockRecord.parse(raw).token != token:
                return False
            _replace(self.path, self._record(token))
            return True

    def owner(self) -> LockRecord | None:
        """The current lock record (read without the mutex; for display only)."""
        raw = _read(self.path, "restart lock")
        return LockRecord.parse(raw) if raw is not None else None

    # ----------------------------------------------------------------- blocking acquire

    def acquire(self) -> RestartGuard:
        """Block until this process owns the lock; see the module docstring for the rules."""
        ensure_private_dir(self.path.parent, "fleet run directory")
        token = str(uuid.uuid4())
        progress = WaitProgress()
        channel: _WakeChannel | None = None
        # Event-driven waits only with the real sleep: an injected sleep means the caller
        # (a test) controls time and must see every wait as a sleep() call.
        event_driven = self.wake and self.sleep is time.sleep
        try:
            while True:
                owned, record = self.try_acquire(token, progress)
                if owned:
                    return RestartGuard(self, token)
                if event_driven and channel is None:
                    # Register before the next evaluation so a release between that
                    # evaluation and our wait still wakes us.
                    channel = _WakeChannel(self.waiters_dir, token)
                    continue
                if channel is not None:
                    same_host = record is not None and record.host == self.identity.host
                    channel.wait(self.poll_interval, record.pid if record and same_host else None)
                else:
                    self.sleep(self.poll_interval)
        finally:
            if channel is not None:
                channel.close()


@dataclass
class RestartGuard:
    """Ownership of the restart lock. Use as a context manager or call :meth:`release`."""

    lock: RestartLock
    token: str
    released: bool = False

    def refresh(self) -> bool:
        """Record progress (fresh timestamp). False if the lock was broken and taken over."""
        return not self.released and self.lock.refresh(self.token)

    def release(self) -> None:
        """Drop the lock if still ours; a no-op if it was taken over or already released."""
        if not self.released:
            self.released = True
            self.lock.release(self.token)

    def __enter__(self) -> RestartGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_restart_lock(
    home: str | os.PathLike[str],
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
    poll_interval: float = POLL_INTERVAL_S,
    max_wait: float = MAX_WAIT_S,
    stale_after: float = STALE_S,
    mutex_retry: float = MUTEX_RETRY_S,
    liveness: Liveness | None = process_alive,
    wake: bool = True,
    log: Log = _stderr_line,
) -> RestartGuard:
    """Block until this process owns ``<home>``'s restart lock and return the guard.

    ``sleep`` and ``clock`` are injectable; with the real ``time.sleep`` a waiter also wakes
    the moment the lock is released or its owner dies. ``liveness=None, wake=False`` is
    the reference's behaviour (pure polling); ``log`` receives the one-line break notices.
    Raises :class:`RestartLockError` on a planted symlink or unusable run dir.
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
        wake=wake,
        log=log,
    )
    return lock.acquire()


@contextlib.contextmanager
def restart_lock(home: str | os.PathLike[str], **options: Any) -> Iterator[RestartGuard]:
    """Hold the restart lock for the ``with`` block (same options as acquire_restart_lock)."""
    guard = acquire_restart_lock(home, **options)
    try:
        yield guard
    finally:
        guard.release()
