"""Facts about processes on this host, read from ``/proc`` (empty answers elsewhere).

Used to judge whether a lock owner is alive (a zombie or a recycled pid counts as dead)
and to tell when an agent's process started.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Final


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


# --------------------------------------------------------------------------- agent processes

MARKER_ENV: Final = "FLEET_AGENT"
_ENVIRON_CAP: Final = 1 << 20


def marker(name: str, fleet_id: str) -> str:
    """The value of :data:`MARKER_ENV` every process of agent ``name`` inherits.

    ``fleet_id`` (the fleet's tmux socket path) keeps two fleets on one host apart."""
    return f"{name}@{fleet_id}"


def marked(markers: Iterable[str]) -> dict[str, list[int]]:
    """Live processes whose environment carries ``FLEET_AGENT=<marker>``, per marker.

    One pass over ``/proc`` for all markers. It finds what an agent started, including
    background, ``setsid`` and double-forked children, since they inherit the environment.
    It cannot see a process that replaced its environment with one lacking the marker
    (``env -i``, ``clearenv``), nor processes of other users when not root.
    """
    wanted = {f"{MARKER_ENV}={value}".encode(): value for value in markers}
    found: dict[str, list[int]] = {value: [] for value in wanted.values()}
    if wanted:
        for pid, variable in _marker_variables():
            owner = wanted.get(variable)
            if owner is not None:
                found[owner].append(pid)
    return found


def fleet_processes(fleet_id: str) -> dict[int, str]:
    """pid -> agent name of every live process marked as one of fleet ``fleet_id``'s agents
    (any name: agents since removed from the roster too); the same pass as :func:`marked`."""
    prefix, suffix = f"{MARKER_ENV}=".encode(), f"@{fleet_id}".encode()
    return {
        pid: variable[len(prefix) : -len(suffix)].decode(errors="replace")
        for pid, variable in _marker_variables()
        if variable.endswith(suffix) and len(variable) > len(prefix) + len(suffix)
    }


def _marker_variables() -> Iterator[tuple[int, bytes]]:
    """(pid, its ``FLEET_AGENT=...`` variable) of every live process that carries one."""
    me = os.getpid()
    prefix = f"{MARKER_ENV}=".encode()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read(_ENVIRON_CAP)
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix):
                if state(int(entry)) not in ("Z", "X", ""):
                    yield int(entry), variable
                break


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to every pid; processes that are already gone are skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
