"""Per-agent resource limits and what an agent costs, read from its cgroup.

The roster's ``resources: {memory_high, memory_max, cpu_quota, tasks_max}`` (per agent,
and at the top level as every agent's default) and ``fleet_resources:`` (one ceiling for
all agents together) become cgroup limits: ``MemoryHigh=``, ``MemoryMax=``, ``CPUQuota=``
and ``TasksMax=`` on each agent's unit (systemd backend) or transient scope (tmux backend
under a user manager), and the same on the slice every agent of the fleet runs in.

What an agent costs (:func:`read_figures`) comes from the cgroup its supervisor runs in,
as ``/proc/<pid>/cgroup`` names it: cgroup2 files (``memory.current``, ``memory.peak``,
``memory.max``, ``pids.current``, ``cpu.stat`` ``usage_usec``) where the controller is
there, the v1 controller files (``memory.usage_in_bytes`` ...) on hybrid machines. Every
file is untrusted input: read capped, parsed strictly, anything odd is "unknown" (None).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

RESOURCE_KEYS: Final = ("memory_high", "memory_max", "cpu_quota", "tasks_max")
# systemd's property for each roster key, in that order.
PROPERTIES: Final = {
    "memory_high": "MemoryHigh",
    "memory_max": "MemoryMax",
    "cpu_quota": "CPUQuota",
    "tasks_max": "TasksMax",
}
SIZE_RE: Final = re.compile(r"([1-9][0-9]{0,15})([KMGT]?)")
PERCENT_RE: Final = re.compile(r"([1-9][0-9]{0,5})%")
_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# cgroup v1 says "no limit" with a page-aligned number near 2**63.
_UNLIMITED_FROM: Final = 1 << 62
_READ_CAP: Final = 4096


@dataclass(frozen=True)
class Resources:
    """Limits as the roster wrote them (``"4G"``, ``"150%"``, ``"64"``); None: no limit."""

    memory_high: str | None = None
    memory_max: str | None = None
    cpu_quota: str | None = None
    tasks_max: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, key) is not None for key in RESOURCE_KEYS)

    def over(self, defaults: Resources) -> Resources:
        """These limits, each missing one taken from ``defaults``."""
        return Resources(**{key: getattr(self, key) or getattr(defaults, key) for key in RESOURCE_KEYS})

    def to_dict(self) -> dict[str, str]:
        return {key: value for key in RESOURCE_KEYS if (value := getattr(self, key)) is not None}

    def properties(self) -> list[str]:
        """``Property=value`` for every limit set (unit files, ``systemd-run -p``)."""
        return [f"{PROPERTIES[key]}={value}" for key, value in self.to_dict().items()]

    def unit_lines(self) -> str:
        """The limits as unit-file lines (empty without limits)."""
        return "".join(f"{line}\n" for line in self.properties())

    def memory_max_bytes(self) -> int | None:
        return size_bytes(self.memory_max) if self.memory_max else None


NO_LIMITS: Final = Resources()


def check_value(key: str, text: str) -> str | None:
    """The problem with ``text`` as the value of resource ``key``; None when it is valid."""
    if key == "cpu_quota":
        return None if PERCENT_RE.fullmatch(text) else "must be a percentage of one core, like 50% or 150%"
    if key == "tasks_max":
        return None if text.isdigit() and 0 < int(text) < 1 << 22 else "must be a whole number of tasks >= 1"
    return None if SIZE_RE.fullmatch(text) else "must be a size like 512M or 4G (a whole number with K, M, G or T)"


def size_bytes(text: str) -> int:
    """Bytes of a size :func:`check_value` accepted."""
    match = SIZE_RE.fullmatch(text)
    assert match is not None
    return int(match.group(1)) * _UNITS[match.group(2)]


def human_size(value: int) -> str:
    """``4G``, ``512M``, ``3K`` or bytes: the largest unit that divides ``value``."""
    for suffix in ("T", "G", "M", "K"):
        if value >= _UNITS[suffix] and value % _UNITS[suffix] == 0:
            return f"{value // _UNITS[suffix]}{suffix}"
    return str(value)


def oom_reason(limit: str | None) -> str:
    """What status, notifications and the transcript say of an agent killed for memory."""
    return f"out of memory (memory_max {limit})" if limit else "out of memory"


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figures:
    """One sample of one cgroup; None where the machine does not tell."""

    memory_bytes: int | None = None
    memory_peak: int | None = None
    memory_max: int | None = None  # None: no limit
    tasks: int | None = None
    tasks_max: int | None = None
    cpu_usec: int | None = None  # CPU time used since the cgroup was made
    oom_kills: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return os.read(fd, _READ_CAP).decode("ascii", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _number(text: str | None) -> int | None:
    """A counter or limit file: a number, or None (``max``, unreadable, odd)."""
    word = (text or "").strip()
    if not word.isdigit() or len(word) > 20:
        return None
    value = int(word)
    return None if value >= _UNLIMITED_FROM else value


def _keyed(text: str | None, key: str) -> int | None:
    """The number after ``key`` in a ``key value`` per line file (``cpu.stat``, ``memory.events``)."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _number(value)
    return None


@functools.cache
def cgroup_mounts() -> Mapping[str, str]:
    """Where each hierarchy is mounted: ``""`` for cgroup2, the controller name for v1."""
    mounts: dict[str, str] = {}
    text = _read_all("/proc/self/mountinfo")
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or len(tail) < 3 or parts[3] != "/":
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("", parts[4])
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids", "cpuacct", "cpu"):
                    mounts.setdefault(option, parts[4])
    return mounts


def _read_all(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(1 << 20)
    except OSError:
        return ""


def cgroup_dirs(pid: int) -> dict[str, str]:
    """The directories of ``pid``'s cgroups: ``""`` (cgroup2) and each v1 controller's."""
    mounts = cgroup_mounts()
    dirs: dict[str, str] = {}
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        rest = line.partition(":")[2]
        controllers, _, path = rest.partition(":")
        if not path.startswith("/") or ".." in path.split("/"):
            continue
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts:
                dirs[controller] = mounts[controller] + path.rstrip("/")
    return dirs


def read_figures(pid: int) -> Figures | None:
    """What the cgroup ``pid`` runs in uses now; None when ``pid`` is gone."""
    dirs = cgroup_dirs(pid)
    if not dirs:
        return None
    v2 = dirs.get("")
    memory, pids, cpu = dirs.get("memory"), dirs.get("pids"), dirs.get("cpuacct")
    figures: dict[str, int | None] = {}
    if v2 and os.path.exists(f"{v2}/memory.current"):
        figures |= {
            "memory_bytes": _number(_read(f"{v2}/memory.current")),
            "memory_peak": _number(_read(f"{v2}/memory.peak")),
            "memory_max": _number(_read(f"{v2}/memory.max")),
            "oom_kills": _keyed(_read(f"{v2}/memory.events"), "oom_kill"),
        }
    elif memory:
        figures |= {
            "memory_bytes": _number(_read(f"{memory}/memory.usage_in_bytes")),
            "memory_peak": _number(_read(f"{memory}/memory.max_usage_in_bytes")),
            "memory_max": _number(_read(f"{memory}/memory.limit_in_bytes")),
            "oom_kills": _keyed(_read(f"{memory}/memory.oom_control"), "oom_kill"),
        }
    tasks_dir = v2 if v2 and os.path.exists(f"{v2}/pids.current") else pids
    if tasks_dir:
        figures |= {
            "tasks": _number(_read(f"{tasks_dir}/pids.current")),
            "tasks_max": _number(_read(f"{tasks_dir}/pids.max")),
        }
    usage = _keyed(_read(f"{v2}/cpu.stat"), "usage_usec") if v2 else None
    if usage is None and cpu:
        nanoseconds = _number(_read(f"{cpu}/cpuacct.usage"))
        usage = nanoseconds // 1000 if nanoseconds is not None else None
    figures["cpu_usec"] = usage
    return Figures(**figures)
