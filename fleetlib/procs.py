"""Facts about processes on this host, read from ``/proc`` (empty answers elsewhere).

Used to judge whether a lock owner is alive (a zombie or a recycled pid counts as dead)
and to tell when an agent's process started.
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name, or [] if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    # The command name (field 2) may hold spaces and parentheses; nothing after it does.
    return raw[raw.rfind(b")") + 2 :].decode().split()


def start_ticks(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot, as text; "" where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def state(pid: int) -> str:
    """The one-letter process state (``R``, ``S``, ``Z`` ...); "" where unknown."""
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def exists(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie (exited, not yet reaped) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return state(pid) != "Z"


@functools.cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def started_at(pid: int) -> str | None:
    """When ``pid`` started, as an ISO 8601 UTC timestamp; None where unknown."""
    ticks, boot = start_ticks(pid), _boot_time()
    if not ticks or boot is None:
        return None
    seconds = boot + int(ticks) / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
