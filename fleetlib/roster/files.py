"""The roster file on disk: reading it safely, and checking its paths on this machine.

:func:`read_text` opens without blocking and reads only a regular file of sane size, so a
FIFO, a device or ``/dev/zero`` at the roster's path is a one-line error, never a hang; a
symlinked roster is followed. Every failure is a :class:`FleetError` (a
:class:`RosterError` for text that is not UTF-8).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from fleetlib.errors import FleetError, RosterError
from fleetlib.roster.model import Roster
from fleetlib.roster.validate import parse_roster
from fleetlib.rundir import kind_of

# Far beyond any real roster; a bigger file is a mistake (or /dev/zero) and is not read.
MAX_ROSTER_BYTES: Final = 16 * 1024 * 1024


def _not_found(path: Path) -> FleetError:
    return FleetError(f"roster not found: {path}; create one with `inv roster.init` or pass --roster")


def _not_regular(path: Path, mode: int) -> FleetError:
    return FleetError(f"roster {path} is not a regular file ({kind_of(mode)})")


def require_regular(path: Path, *, missing_ok: bool = False) -> None:
    """FleetError unless ``path`` (a symlink followed) is a regular file, or is absent and
    ``missing_ok``. Edits call it before taking their lock, so a refused edit leaves nothing
    beside the path (no ``.lock`` next to a device), and ``init --force`` never replaces a
    FIFO or a device (``/dev/null``) with a roster. Only looks: nothing is opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise _not_found(path) from None
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode)


def read_text(path: Path) -> str:
    """The roster's text. Follows a symlinked roster; a FIFO, device or directory there is a
    one-line error, never a hang (opened without blocking and checked to be a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _not_found(path) from None
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, info.st_mode)
        if info.st_size > MAX_ROSTER_BYTES:
            raise FleetError(f"roster {path} is too large ({info.st_size} bytes; the limit is {MAX_ROSTER_BYTES})")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ROSTER_BYTES:
                raise FleetError(f"roster {path} is too large (over {MAX_ROSTER_BYTES} bytes)")
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RosterError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_roster(path: Path) -> Roster:
    """Read and validate the roster at ``path``."""
    return parse_roster(read_text(path), str(path))


def missing_cwd_warnings(roster: Roster, user_home: Path | None = None) -> list[str]:
    """One warning line per agent whose ``cwd`` is not an existing directory on this machine.

    Not an error: a roster may be written for another machine. ``start`` fails for such an
    agent, naming it and the path. ``user_home`` defaults to this user's home directory.
    """
    home = Path.home() if user_home is None else user_home
    warnings: list[str] = []
    for index, agent in enumerate(roster.agents):
        if agent.cwd is None or agent.worktree is not None:  # start makes the worktree
            continue
        path = roster.cwd_of(agent, home)
        where = f"agents[{index}].cwd"
        line = roster.lines.get(where)
        prefix = f"warning: {roster.source}:{line}: {where}: " if line else f"warning: {roster.source}: {where}: "
        try:
            info = os.stat(path)
        except FileNotFoundError:
            warnings.append(f"{prefix}{path} does not exist on this machine; start will fail until it does")
            continue
        except OSError as exc:
            warnings.append(f"{prefix}{path} cannot be checked ({exc.strerror}); start may fail")
            continue
        if not stat.S_ISDIR(info.st_mode):
            warnings.append(f"{prefix}{path} is not a directory; start will fail until it is")
    return warnings
