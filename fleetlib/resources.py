"""Per-agent resource limits (what an agent costs is :mod:`fleetlib.usage`).

The roster's ``resources: {memory_high, memory_max, cpu_quota, tasks_max}`` (per agent,
and at the top level as every agent's default) and ``fleet_resources:`` (one ceiling for
all agents together) become cgroup limits: ``MemoryHigh=``, ``MemoryMax=``, ``CPUQuota=``
and ``TasksMax=`` on each agent's unit (systemd backend) or transient scope (tmux backend
under a user manager), and the same on the slice every agent of the fleet runs in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
