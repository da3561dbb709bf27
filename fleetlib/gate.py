"""The gate an agent's supervisor waits at while its agent is restarted in place.

A restart in place (see :meth:`fleetlib.engine.Lifecycle.restart`) keeps an agent's
supervisor (its window, its unit, its transcript pipe) and replaces only the agent's run:
none of the per-start cost of a new unit, tmux client and window is paid, which at fleet
scale is most of a restart. The engine tells the supervisor first (``SIGUSR1``: "the next
end of your agent is mine"), then ends the run (TERM, KILL after the stop timeout). The
supervisor, its agent gone, waits at the agent's *gate*: a FIFO ``<run dir>/<agent>.gate``
whose ``open()`` blocks until the engine opens it for writing, which it does only once no
process of the old run is left. So the new run never starts beside the old one.

Guarantees:

* A supervisor told to wait finds its gate closed: :func:`close` makes it before the
  signal is sent, replacing whatever was at its path (never following a symlink).
* :func:`release` never blocks: a gate nobody waits at yet says so (False), and the engine
  tries again at its next poll. Releasing writes one line, the pane's size as ``stty size``
  prints it (or nothing), so the new run's header costs no ``stty`` process.
* A supervisor whose gate is missing or is not a FIFO goes on at once (its ``open`` fails,
  or reads a file): nothing the fleet leaves behind holds a supervisor for ever.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path
from typing import Final

from fleetlib.pane import GATE_SUFFIX

_SIZE: Final = re.compile(r"[0-9]{1,5} [0-9]{1,5}")


def gate_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{GATE_SUFFIX}"


def close(run_dir: Path, name: str) -> None:
    """Make agent ``name``'s gate, closed (a FIFO only its owner can open)."""
    path = gate_path(run_dir, name)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a FIFO left by an interrupted restart, or anything planted there
    os.mkfifo(path, 0o600)


def release(run_dir: Path, name: str, size: str = "") -> bool:
    """Let agent ``name``'s supervisor run its agent again; False while nobody waits at
    the gate yet (try again). ``size``: the pane's ``"<rows> <columns>"``, or "" (the
    supervisor then asks ``stty``). A missing gate counts as released."""
    path = gate_path(run_dir, name)
    size = size if _SIZE.fullmatch(size) else ""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError as error:
        if error.errno == errno.ENXIO:  # a FIFO with no reader: the supervisor is not there yet
            return False
        # Not the gate close() made (a symlink planted there): nobody waits at it.
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, f"{size}\n".encode())
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return True


def waiting(run_dir: Path, name: str, pid: int) -> bool:
    """Whether process ``pid`` (agent ``name``'s supervisor) waits at the agent's gate: the
    gate is a FIFO and the process sleeps in the kernel's FIFO open (``/proc/<pid>/wchan``)."""
    try:
        if not stat.S_ISFIFO(os.lstat(gate_path(run_dir, name)).st_mode):
            return False
        with open(f"/proc/{pid}/wchan", encoding="ascii", errors="replace") as handle:
            return handle.read() == "wait_for_partner"
    except OSError:
        return False
