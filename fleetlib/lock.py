"""The cross-process fleet restart lock: a fenced lease.

A fleet restart tears down the tmux holder and every agent inside it. A second restart
entering meanwhile would relaunch agents against a half-torn-down holder, so restarts
must exclude each other across processes. This module is a port of the reference
``mosaic fleet`` lock, wire-compatible with it (a Python restart and a reference restart
on the same home exclude each other), made into a *fenced lease*: an owner checks with
:meth:`RestartGuard.refresh` before every step that changes the fleet, and a lost lease
raises :class:`LeaseLost` instead of letting it carry on.

Files, all in ``<home>/fleet/run`` (created 0700, checked like ssh's ``StrictModes`` by
:func:`fleetlib.rundir.ensure_private_dir`):

``restart.lock``
    The lock. Content ``pid\\n<epoch ms>\\n<token>\\n<host>\\n<process start>\\n<note>\\n``;
    the reference reads only the first three lines. The token is a fresh UUID per
    acquire; the note says how the owner got the lock ("taken over after no progress").
``restart.lock.mutex``
    The registry mutex. Every transition of the lock (take a free lock, take over a
    stale or timed-out one, release, refresh) runs while holding it, which serialises
    transitions and keeps the reference's protocol. It is created exclusively with its
    content in place (a hard link of a private temp file).
``restart.lock.mutex.reclaim``
    Serialises the reaping of an abandoned mutex.
``restart.lock.waiters/``
    One FIFO per waiting process; a release writes a byte to each so waiters wake at
    once. A hint only: if it cannot be used (say a regular file sits at that path) waiters
    poll, and nothing fails.

When a mutex counts as abandoned (the reference reaps any mutex older than 60 s):

* its holder is dead on this host (exited, a zombie, or its pid recycled): at once;
* its holder is alive and running on this host: **never**, whatever its age. A live
  holder is between two file operations; reaping it would let two processes transition
  the lock at once. A waiter that cannot wait for ever passes ``timeout=``.
* its holder is *stopped* on this host (SIGSTOP, a debugger: ``/proc`` state ``T`` or
  ``t``): once the mutex is older than ``stale_after``. A stopped process can stay
  stopped for ever, and the fleet must not block on it. It may resume later, after its
  mutex was reaped, and finish the transition it was in: that is safe (below).
* its holder is unknown (a reference process: no host line, or an empty mutex it is
  still writing; another host): once older than ``stale_after``, the reference rule.

Because a reaped-but-resumed holder runs without the mutex, **every transition of the
lock is compare-and-swap safe on its own**, so no process ever deletes or overwrites a
lock that is not its own:

* A free lock is taken with ``link(2)``, which fails if the name exists.
* Release, refresh and take-over first move the lock to a private name
  (``.restart.lock.<pid>-<start>.<random>.aside``) with ``rename(2)``, read what they
  moved, and only if it is the record they expect (their own token; for a take-over the
  very record they judged, same bytes and inode) complete: release unlinks it, refresh
  and take-over ``link(2)`` their record into place (which fails if anyone created one
  meanwhile). Otherwise they put it back with ``link(2)``, never overwriting, and report
  the lock lost.
* While a lock is moved aside its name is briefly absent. A process that finds the lock
  absent therefore first looks for an aside of a live process and, if there is one,
  waits instead of taking the lock; an aside whose process is dead (or stopped for longer
  than ``stale_after``) is put back first.

Residual risk, documented rather than hidden: reference processes know nothing of asides,
so a reference restart that evaluates the lock in the microseconds a *reaped, resumed*
Python process has it aside can take it. Python processes never can.

Lease rules:

* A lock older than ``stale_after`` (stamp age), or corrupt (no timestamp; a pid line that
  is not a pid of this machine: 0, negative, above ``pid_max``, thousands of digits) is
  broken at once. A fresh lock is waited on, and broken once its owner has made no
  progress for ``max_wait``. Each break prints one line on stderr saying why. A stopped
  *lock* owner gets no special treatment: its lock ages like any other.
* A lock whose owner is dead on this host is broken at once, and a waiter wakes the moment
  the owner dies (pidfd).
* ``acquire(timeout=...)`` bounds the wait and raises :class:`LockTimeout` naming the
  owner; ``timeout=None`` waits as long as the rules above say.

Proof of the lease, for a check made in another process: every refresh installs a new
file (a new inode) at the lock's path, so "the lock's path is still the very file my last
refresh installed" is true exactly while nobody broke, took over or released the lock
since. :meth:`RestartGuard.proof` hands out a :class:`LeaseProof`: a file descriptor open
on that file and an expiry :data:`FENCE_MARGIN_S` after the refresh began, on the boot
clock (``CLOCK_BOOTTIME``, which ``/proc/uptime`` shows). A waiter breaks a live owner's
lock no sooner than ``max_wait`` after its last refresh, so a check that finds the file
in place before the expiry leaves ``max_wait - FENCE_MARGIN_S`` (29 s by default) for the
change it admits to take effect. :mod:`fleetlib.runner` makes that check in each command's
own process, after the fork (see there).
* Everything read from disk is untrusted: reads are capped at 4 KiB, files are opened
  with ``O_NOFOLLOW | O_NONBLOCK`` and must be regular files (a symlink, FIFO, socket,
  device or directory is a one-line :class:`RestartLockError`), and every ``OSError`` is a
  one-line error naming the path. A failed write leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
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
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.rundir import (
    RunDirError,
    RunFileError,
    describe_os_error,
    ensure_private_dir,
    open_regular,
    read_fd_capped,
)

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

POLL_INTERVAL_S: Final = 0.25
MAX_WAIT_S: Final = 30.0
STALE_S: Final = 60.0
MUTEX_RETRY_S: Final = 0.020
# How long a proof of the lease counts after the refresh that made it; well below any
# max_wait a waiter uses (30 s by default, 2 s in the fault tests).
FENCE_MARGIN_S: Final = 1.0
# The mutex is held for microseconds; start retrying fast and back off to the reference's 20 ms.
_MUTEX_FIRST_RETRY_S: Final = 0.0005
READ_CAP: Final = 4096
PID_MAX_FALLBACK: Final = 4_194_304  # the kernel's PID_MAX_LIMIT on 64-bit
_STAMP_DIGITS: Final = 16  # epoch milliseconds have 13 digits until the year 2286
_FIELD_CHARS: Final = 255

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Log = Callable[[str], None]


class RestartLockError(FleetError):
    """The lock's files cannot be used safely (a planted symlink, a FIFO, a full disk)."""


class LockTimeout(FleetOperationError):
    """``acquire(timeout=...)`` gave up; the message names the owner and what to do. Exit 1."""


class LeaseLost(FleetOperationError):
    """This process no longer owns the restart lock; it must change nothing more. Exit 1."""


def restart_lock_path(home: str | os.PathLike[str]) -> Path:
    """``<home>/fleet/run/restart.lock``, the same path the reference tool uses."""
    return Path(home) / "fleet" / "run" / "restart.lock"


# A test seam: called with a checkpoint name at points where a pause matters (see
# tests/lock_worker.py, which stops its own process there). None in production.
_checkpoint_hook: Callable[[str], None] | None = None


def _checkpoint(name: str) -> None:
    if _checkpoint_hook is not None:
        _checkpoint_hook(name)


# --------------------------------------------------------------------------- identity


@functools.cache
def pid_max() -> int:
    """The largest pid this kernel hands out (``/proc/sys/kernel/pid_max``)."""
    try:
        with open("/proc/sys/kernel/pid_max", "rb") as handle:
            return int(handle.read(32).strip())
    except (OSError, ValueError):
        return PID_MAX_FALLBACK


def _number(text: str, digits: int) -> int | None:
    """A non-negative decimal of at most ``digits`` ASCII digits, else None (never raises)."""
    if not text or len(text) > digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def _pid(text: str, limit: int | None = None) -> int | None:
    """A pid in 1..limit (default: this machine's pid_max), else None; never raises."""
    value = _number(text, len(str(PID_MAX_FALLBACK)))
    return value if value is not None and 1 <= value <= (limit or pid_max()) else None


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _shown(text: str, limit: int = 24) -> str:
    """Untrusted text made safe for a one-line message."""
    if len(text) <= limit and text.isprintable():
        return text
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + (f"... ({len(text)} chars)" if len(text) > limit else "")


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
    """Parsed lock (or mutex) file content, from untrusted bytes; never raises.

    Fields are None where missing or malformed; ``problem`` says why a record is corrupt
    (no timestamp, or a pid line that is not a pid of this machine), None when it is fine.
    """

    pid: int | None
    stamp_ms: int | None
    token: str | None
    host: str | None = None
    start: str | None = None
    note: str | None = None
    problem: str | None = None

    @classmethod
    def parse(cls, raw: str) -> LockRecord:
        lines = [line.strip() for line in raw[:READ_CAP].split("\n", 6)[:6]]
        lines += [""] * (6 - len(lines))

        def text(value: str) -> str | None:
            return _shown(value, _FIELD_CHARS) if value else None

        # A record of another host is held to the kernel's absolute limit, not ours.
        remote = bool(lines[3]) and lines[3] != _hostname()
        limit = PID_MAX_FALLBACK if remote else pid_max()
        pid = _pid(lines[0], limit)
        stamp = _number(lines[1], _STAMP_DIGITS)
        problem = None
        if stamp is None:
            problem = f"timestamp line {_shown(lines[1])!r} is not a time"
        elif pid is None:
            problem = f"pid line {_shown(lines[0])!r} is not a process id (1..{limit})"
        return cls(
            pid=pid,
            stamp_ms=stamp,
            token=text(lines[2]),
            host=text(lines[3]),
            start=text(lines[4]),
            note=text(lines[5]),
            problem=problem,
        )

    @staticmethod
    def format(identity: Identity, stamp_ms: int, token: str, note: str = "") -> str:
        return f"{identity.pid}\n{stamp_ms}\n{token}\n{identity.host}\n{identity.start}\n{note}\n"

    def who(self) -> str:
        """``pid 123 on host`` (or ``an unknown process`` when the pid is unusable)."""
        who = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        return who + (f" on {self.host}" if self.host else "")


def process_alive(record: LockRecord, here: Identity) -> bool | None:
    """Whether the process that wrote ``record`` still runs: True, False, or None (unknown).

    Only judged for a record written on this host (a reference lock has no host line and
    stays unknown). A zombie, or a pid now used by a process that started at another
    time, counts as dead. An unusable pid is unknown (the record is corrupt anyway).
    """
    if record.host != here.host or record.pid is None:
        return None
    if not procs.exists(record.pid):
        return False
    if record.start and here.start:  # /proc available: detect a recycled pid
        return procs.start_ticks(record.pid) == record.start
    return True


def process_stopped(record: LockRecord, here: Identity) -> bool:
    """Whether the process that wrote ``record`` is stopped on this host (state T or t)."""
    if record.host != here.host or record.pid is None:
        return False
    return procs.state(record.pid) in ("T", "t")


Liveness = Callable[[LockRecord, Identity], "bool | None"]
Stopped = Callable[[LockRecord, Identity], bool]


# --------------------------------------------------------------------------- file primitives


@dataclass(frozen=True)
class _Seen:
    """One read of a file: its (capped) bytes and which inode they came from."""

    raw: bytes
    dev: int
    ino: int
    mtime_ns: int

    def same(self, other: _Seen | None) -> bool:
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


def _lock_error(verb: str, path: Path, exc: OSError) -> RestartLockError:
    return RestartLockError(f"cannot {verb} {path}: {describe_os_error(exc)}")


def _read(path: Path, what: str) -> _Seen | None:
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
            raise _lock_error("read", path, exc) from exc
        finally:
            os.close(fd)
    return _Seen(raw, info.st_dev, info.st_ino, info.st_mtime_ns)


@functools.cache
def _tag_for(pid: int) -> str:
    return f"{pid}-{procs.start_ticks(pid)}"


def _process_tag() -> str:
    """``<pid>-<start ticks>``: names our temp and aside files so others can judge them."""
    return _tag_for(os.getpid())


def _private_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{_process_tag()}.{uuid.uuid4().hex}.{kind}")


def _write_temp(path: Path, content: str) -> Path:
    """Write ``content`` to a new private temp file beside ``path`` and return its path.

    On failure nothing is left behind and the error names ``path`` (the file we were
    writing), e.g. ``cannot write .../restart.lock: No space left on device``.
    """
    tmp = _private_name(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _lock_error("write", path, exc) from exc
    try:
        data = content.encode()
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        os.close(fd)
        _unlink(tmp)
        raise _lock_error("write", path, exc) from exc
    except BaseException:
        os.close(fd)
        _unlink(tmp)
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
        raise _lock_error("create", path, exc) from exc
    return True


def _refuse_symlink(path: Path, what: str) -> None:
    raise RestartLockError(
        f"refusing to use {what} {path}: it is a symlink (possible tampering); remove it (rm {path}) and retry"
    )


def _create_exclusive(path: Path, content: str, what: str) -> bool:
    """Create ``path`` holding ``content`` iff it does not exist; False when it does.

    Exclusive like ``O_CREAT|O_EXCL`` but with the content already in place: the file is
    written privately, then hard-linked into place. So, unlike the reference's
    open-then-write, a crash never leaves an empty file, and a failed write leaves
    nothing behind at ``path``.
    """
    tmp = _write_temp(path, content)
    try:
        created = _link(tmp, path)
    finally:
        _unlink(tmp)
    if not created and stat.S_ISLNK(_lstat_mode(path)):
        _refuse_symlink(path, what)
    return created


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    """Best-effort removal of a file we own (a temp, an aside); absence is fine."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _put_back(aside: Path, path: Path) -> bool:
    """Return a moved-aside file to ``path`` unless something is there now; drop ``aside``.

    ``link(2)`` never overwrites, so a file created at ``path`` meanwhile wins. Returns
    whether ``path`` now holds the moved file.
    """
    # On any other failure the aside stays where it is: it names our pid, so once we are
    # gone the next process to find the lock free puts it back (see _aside_in_flight).
    restored = _link(aside, path)
    if not restored:  # perhaps a process that judged our aside abandoned restored it
        with contextlib.suppress(OSError):
            restored = os.path.samefile(aside, path)
    _unlink(aside)
    return restored


def _swap(path: Path, what: str, expect: Callable[[_Seen], bool], replacement: Path | None) -> bool:
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
        raise _lock_error("move", path, exc) from exc
    try:
        seen = _read(aside, what)
    except BaseException:
        _put_back(aside, path)
        raise
    if seen is None:  # a process that judged our aside abandoned restored it
        return False
    if not expect(seen):
        _put_back(aside, path)
        return False
    if replacement is None:
        _unlink(aside)
        return True
    try:
        installed = _link(replacement, path)
    except BaseException:
        _put_back(aside, path)
        raise
    _unlink(aside)
    return installed


@dataclass(frozen=True)
class _Private:
    """A temp or aside file of ours or another process, parsed from its name."""

    path: Path
    kind: str  # "tmp" | "aside"
    target: str  # the file it belongs to: "restart.lock", "restart.lock.mutex" ...
    pid: int | None
    start: str

    @classmethod
    def parse(cls, directory: Path, name: str) -> _Private | None:
        parts = name.split(".")
        if not name.startswith(".restart.lock") or len(parts) < 6 or parts[-1] not in ("tmp", "aside"):
            return None
        pid_text, _, start = parts[-3].partition("-")
        return cls(directory / name, parts[-1], ".".join(parts[1:-3]), _pid(pid_text), start)

    def state(self) -> str:
        """``running``, ``stopped`` or ``dead``: of the process that made this file."""
        if self.pid is None or not procs.exists(self.pid):
            return "dead"
        if self.start and procs.start_ticks(self.pid) != self.start:
            return "dead"
        return "stopped" if procs.state(self.pid) in ("T", "t") else "running"

    def age(self) -> float:
        # rename(2) and link(2) update ctime, not mtime: ctime says when it was moved aside.
        try:
            return time.time() - os.lstat(self.path).st_ctime
        except OSError:
            return 0.0


def _private_files(directory: Path) -> list[_Private]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [p for p in (_Private.parse(directory, n) for n in names) if p is not None]


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
            self._read_fd = os.open(hidden, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            # Keep a writer open ourselves: a FIFO whose last writer closed reads as EOF
            # forever, which would turn select() into a busy loop.
            self._keepalive_fd = os.open(hidden, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            os.rename(hidden, self.path)
        except BaseException:
            _unlink(hidden)
            raise

    @classmethod
    def open(cls, directory: Path, token: str) -> _WakeChannel | None:
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
                _unlink(path)
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


def _stderr_line(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout >= 0):
        raise RestartLockError(f"invalid lock timeout {timeout!r}: give a finite number of seconds >= 0")


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
    stopped: Stopped = process_stopped
    wake: bool = True
    log: Log = _stderr_line
    identity: Identity = field(default_factory=Identity.current)

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

    # ----------------------------------------------------------------- registry mutex

    @contextlib.contextmanager
    def _mutex(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the registry mutex for the block; waits (short back-offs) until held.

        Raises :class:`LockTimeout` if ``deadline`` (on :meth:`_timer`) passes first.
        """
        token = uuid.uuid4().hex
        retry = min(_MUTEX_FIRST_RETRY_S, self.mutex_retry)
        while not _create_exclusive(self.mutex_path, self._record(token), "restart lock mutex"):
            judged = self._abandoned(self.mutex_path, "restart lock mutex")
            if judged is not None:
                self._reclaim_mutex()
                continue
            if deadline is not None and self._timer()() >= deadline:
                raise LockTimeout(self._mutex_timeout_message())
            # Real sleep, not the injected one: the injected sleep stands for waiting on a
            # restart, and the mutex is only ever held for microseconds.
            time.sleep(retry)
            retry = min(retry * 2, self.mutex_retry)
        try:
            yield
        finally:
            self._drop(self.mutex_path, "restart lock mutex", token)

    def _drop(self, path: Path, what: str, token: str) -> None:
        """Remove our mutex (or reclaim file) iff it is still ours, compare-and-swap."""
        seen = _read(path, what)
        if seen is not None and seen.record.token == token:
            _swap(path, what, lambda now: now.record.token == token, None)

    def _abandoned(self, path: Path, what: str) -> _Seen | None:
        """The content of ``path`` if it is an abandoned mutex (or reclaim file), else None.

        See the module docstring: dead holder at once; live running holder never; stopped
        holder or unknown holder once older than ``stale_after``.
        """
        seen = _read(path, what)
        if seen is None:
            return None
        # mtimes are wall-clock times: compare with the real clock, not the injected one
        # (a test's fake clock must never make a live mutex look abandoned).
        old = time.time() - seen.mtime_ns / 1e9 >= self.stale_after
        record = seen.record
        alive = self._alive(record)
        if alive is False:
            return seen
        if alive is True:
            return seen if old and self.stopped(record, self.identity) else None
        return seen if old else None

    def _reclaim_mutex(self) -> None:
        """Reap an abandoned mutex, serialised under the reclaim file.

        The reap itself is a compare-and-swap on the very mutex we judged (same bytes,
        inode and mtime), so even a reclaimer that was stopped between judging and reaping
        cannot remove a mutex that someone created since.
        """
        token = uuid.uuid4().hex
        if not _create_exclusive(self.reclaim_path, self._record(token), "restart lock reclaim file"):
            # Someone else is reclaiming. If their reclaim file is itself abandoned, the
            # reclaimer crashed mid-reap: clear it so a later pass can retry.
            judged = self._abandoned(self.reclaim_path, "restart lock reclaim file")
            if judged is not None:
                _swap(self.reclaim_path, "restart lock reclaim file", judged.same, None)
            else:
                time.sleep(_MUTEX_FIRST_RETRY_S)
            return
        try:
            judged = self._abandoned(self.mutex_path, "restart lock mutex")
            if judged is not None and _swap(self.mutex_path, "restart lock mutex", judged.same, None):
                self._sweep()
        finally:
            self._drop(self.reclaim_path, "restart lock reclaim file", token)

    def _sweep(self) -> None:
        """Remove temp and aside files of dead processes (a dead releaser's lock aside is
        put back if the lock is free, then judged like any other lock)."""
        for private in _private_files(self.path.parent):
            if private.state() != "dead":
                continue
            if private.kind == "aside" and private.target == self.path.name:
                _put_back(private.path, self.path)
            else:
                _unlink(private.path)

    def _aside_in_flight(self) -> bool:
        """With the lock absent: True if a live process has it moved aside (wait for it).

        An aside left by a dead process, or by one stopped for longer than
        ``stale_after``, is put back at the lock's path first (then judged normally).
        """
        busy = False
        for private in _private_files(self.path.parent):
            if private.kind != "aside" or private.target != self.path.name:
                continue
            state = private.state()
            if state == "running" or (state == "stopped" and private.age() < self.stale_after):
                busy = True
            else:
                _put_back(private.path, self.path)
        return busy

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
                seen = _read(self.path, "restart lock")
                now = self.clock()
                if seen is None:
                    record = None
                    if self._aside_in_flight():
                        return False, None
                    if _create_exclusive(self.path, self._record(token), "restart lock"):
                        return True, None
                    continue
                record = seen.record
                verdict = self._break_reason(record, now, progress)
                if verdict is None:
                    return False, record
                reason, note = verdict
                replacement = _write_temp(self.path, self._record(token, note))
                try:
                    _checkpoint("break:judged")
                    taken = _swap(self.path, "restart lock", seen.same, replacement)
                finally:
                    _unlink(replacement)
                if taken:
                    self.log(f"{reason}; breaking the fleet restart lock")
                    self._sweep()
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
            seen = _read(self.path, "restart lock")
            owned = seen is not None and seen.record.token == token
            if owned:
                _checkpoint("release:checked")
                owned = _swap(self.path, "restart lock", lambda now: now.record.token == token, None)
        if owned and self.wake:
            _wake_waiters(self.waiters_dir)
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
            seen = _read(self.path, "restart lock")
            if seen is None or seen.record.token != token:
                return None
            note = seen.record.note or ""
            replacement = _write_temp(self.path, self._record(token, note))
            try:
                try:
                    held = os.open(replacement, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError as exc:
                    raise _lock_error("open", replacement, exc) from exc
                try:
                    _checkpoint("refresh:checked")
                    installed = _swap(self.path, "restart lock", lambda now: now.record.token == token, replacement)
                except BaseException:
                    os.close(held)
                    raise
            finally:
                _unlink(replacement)
        if installed:
            return held
        os.close(held)
        return None

    def owner(self) -> LockRecord | None:
        """The current lock record (read without the mutex; for display only)."""
        seen = _read(self.path, "restart lock")
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
        advice = "wait for that restart to finish and retry, or retry with a longer --timeout"
        if record is not None and record.pid is not None and record.host == self.identity.host:
            advice += f"; if pid {record.pid} is stuck, stop it (kill {record.pid}) and the lock is freed at once"
        return (
            f"timed out after {timeout:g}s waiting for the fleet restart lock {self.path}, held by {holder}; {advice}"
        )

    def _mutex_timeout_message(self) -> str:
        holder = "another process"
        with contextlib.suppress(FleetError):
            seen = _read(self.mutex_path, "restart lock mutex")
            if seen is not None:
                holder = self.describe_owner(seen.record)
        return (
            f"timed out waiting for the fleet restart lock's mutex {self.mutex_path}, held by {holder}; "
            f"if that process is stuck, stop it; if no fleet command is running, remove the file"
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
        channel: _WakeChannel | None = None
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
                    channel = _WakeChannel.open(self.waiters_dir, token)
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
