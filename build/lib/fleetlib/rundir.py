"""The fleet's run dir and the files in it, opened so that no planted file can hurt us.

The run dir (``<home>/fleet/run``) holds the restart lock, the send locks and the tmux
socket. Anything that can write into it can make a careless process follow a symlink,
block for ever in ``open()`` on a FIFO, read a gigabyte, or die with a traceback on a
directory where a file was expected. This module is the one place that knows the rules;
every file under the run dir goes through it:

* :func:`ensure_private_dir` creates the directory 0700 and then checks it the way ssh's
  ``StrictModes`` checks ``~/.ssh``: a real directory (not a symlink), owned by the
  current user, not group- or world-writable. Anything else is a :class:`RunDirError`
  saying exactly how to fix it (``chmod 700 PATH``, ``chown``, ``rm``).
* :func:`open_regular` opens with ``O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`` (so a symlink
  is refused and a FIFO or device never blocks) and then checks with ``fstat`` that it
  got a regular file.
* :func:`read_capped` reads at most ``cap`` bytes of such a file: what is on disk is
  untrusted input.

Every failure is one line naming the path and what went wrong (``cannot write
/x/fleet/run/restart.lock: No space left on device``), as a :class:`FleetError`
subclass, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from fleetlib.errors import FleetError

SAFE_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DEFAULT_READ_CAP: Final = 4096


class RunDirError(FleetError):
    """The run dir (or another private directory) is missing, unusable or unsafe. Exit 2."""


class RunFileError(FleetError):
    """A file under the run dir is not a regular file, or an operation on it failed. Exit 2."""


def kind_of(mode: int) -> str:
    """What a file is, in words, for messages ("a FIFO", "a directory" ...)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "an unknown kind of file"


def describe_os_error(exc: OSError) -> str:
    """``strerror`` of an OSError, falling back to the errno name."""
    if exc.strerror:
        return exc.strerror
    return errno.errorcode.get(exc.errno or 0, str(exc))


@contextlib.contextmanager
def os_errors(verb: str, path: str | os.PathLike[str], error: type[FleetError] = RunFileError) -> Iterator[None]:
    """Turn any ``OSError`` in the block into ``error("cannot <verb> <path>: <reason>")``."""
    try:
        yield
    except OSError as exc:
        raise error(f"cannot {verb} {os.fspath(path)}: {describe_os_error(exc)}") from exc


def not_regular(path: str | os.PathLike[str], what: str, mode: int) -> RunFileError:
    """The one-line error for a non-regular file where a regular one belongs."""
    where = os.fspath(path)
    return RunFileError(f"{what} {where} is {kind_of(mode)}, not a regular file; remove it (rm -r {where}) and retry")


def ensure_private_dir(path: str | os.PathLike[str], what: str) -> None:
    """Create ``path`` 0700 (parents as needed), then check it is safe to keep secrets in.

    Safe means (as ssh's ``StrictModes``): a directory, not a symlink, owned by the
    effective user, and not writable by group or others. Raises :class:`RunDirError`
    with one line saying how to fix it; never changes an existing directory's mode or
    owner itself (that is the user's decision).
    """
    directory = Path(path)
    with os_errors("create", directory, RunDirError):
        try:
            info = directory.lstat()
        except FileNotFoundError:
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
            info = directory.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise RunDirError(
            f"refusing to use {what} {directory}: it is a symlink (possible tampering); "
            f"remove it (rm {directory}) and retry"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise RunDirError(f"{what} {directory} is {kind_of(info.st_mode)}, not a directory; remove it and retry")
    euid = os.geteuid()
    if info.st_uid != euid:
        raise RunDirError(
            f"refusing to use {what} {directory}: it is owned by uid {info.st_uid}, not by you (uid {euid}); "
            f"remove it or run: chown {euid} {directory}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RunDirError(
            f"refusing to use {what} {directory}: it is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 700 {directory}"
        )


def open_regular(path: str | os.PathLike[str], flags: int, mode: int = 0o600, *, what: str = "file") -> int:
    """Open ``path`` without following a symlink or blocking; return the fd of a regular file.

    ``flags`` are ``os.open`` flags (``O_RDONLY``, ``O_WRONLY | O_CREAT`` ...); the safe
    flags are added. A missing file raises ``FileNotFoundError`` (callers decide what
    absence means) and, with ``O_EXCL``, an existing one ``FileExistsError``; anything
    that is not a regular file, and every other failure, is a :class:`RunFileError`.
    """
    # lstat first: opening a device, even non-blocking, can have side effects.
    with os_errors("inspect", path), contextlib.suppress(FileNotFoundError):
        mode_now = os.lstat(path).st_mode
        if not stat.S_ISREG(mode_now) and not (flags & os.O_EXCL):
            if stat.S_ISLNK(mode_now):
                raise RunFileError(
                    f"refusing to use {what} {os.fspath(path)}: it is a symlink (possible tampering); "
                    f"remove it (rm {os.fspath(path)}) and retry"
                )
            raise not_regular(path, what, mode_now)
    try:
        fd = os.open(path, flags | SAFE_OPEN_FLAGS, mode)
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunFileError(
                f"refusing to use {what} {os.fspath(path)}: it is a symlink (possible tampering); "
                f"remove it (rm {os.fspath(path)}) and retry"
            ) from exc
        if exc.errno in (errno.EISDIR, errno.ENXIO, errno.ENODEV):
            with os_errors("inspect", path):
                raise not_regular(path, what, os.lstat(path).st_mode) from exc
        verb = "create" if flags & os.O_CREAT else ("write" if flags & (os.O_WRONLY | os.O_RDWR) else "read")
        raise RunFileError(f"cannot {verb} {os.fspath(path)}: {describe_os_error(exc)}") from exc
    try:
        st_mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise RunFileError(f"cannot inspect {os.fspath(path)}: {describe_os_error(exc)}") from exc
    if not stat.S_ISREG(st_mode):
        os.close(fd)
        raise not_regular(path, what, st_mode)
    return fd


def read_fd_capped(fd: int, cap: int, path: str | os.PathLike[str]) -> bytes:
    """Read at most ``cap`` bytes from ``fd`` (from its current offset)."""
    chunks: list[bytes] = []
    left = cap
    with os_errors("read", path):
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    return b"".join(chunks)


def read_capped(path: str | os.PathLike[str], cap: int = DEFAULT_READ_CAP, *, what: str = "file") -> bytes | None:
    """The first ``cap`` bytes of the regular file ``path``; None when it does not exist.

    A longer file is truncated at ``cap`` (ask for ``cap + 1`` to tell). Refuses
    symlinks and non-regular files (:class:`RunFileError`) and never blocks.
    """
    try:
        fd = open_regular(path, os.O_RDONLY, what=what)
    except FileNotFoundError:
        return None
    try:
        return read_fd_capped(fd, cap, path)
    finally:
        os.close(fd)
