"""Record and identity: who holds a lock file, and what its content says.

Guarantee: :meth:`LockRecord.parse` accepts any bytes and never raises. What it reads is
untrusted: at most :data:`READ_CAP` characters, numbers of bounded length, a pid range-
checked against this machine's ``pid_max`` (the kernel's absolute limit for a record of
another host), every text field shortened and made printable for one-line messages. A
record that has no timestamp or no usable pid carries a ``problem`` saying so.

Record format (wire-compatible with the reference ``mosaic fleet`` lock, which reads only
the first three lines)::

    pid
    epoch milliseconds
    token
    host
    process start (clock ticks since boot, from /proc/<pid>/stat)
    note (how the owner got the lock)
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from typing import Final

from fleetlib import procs

READ_CAP: Final = 4096
PID_MAX_FALLBACK: Final = 4_194_304  # the kernel's PID_MAX_LIMIT on 64-bit
_STAMP_DIGITS: Final = 16  # epoch milliseconds have 13 digits until the year 2286
_FIELD_CHARS: Final = 255


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


def parse_pid(text: str, limit: int | None = None) -> int | None:
    """A pid in 1..limit (default: this machine's pid_max), else None; never raises."""
    value = _number(text, len(str(PID_MAX_FALLBACK)))
    return value if value is not None and 1 <= value <= (limit or pid_max()) else None


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def shown(text: str, limit: int = 24) -> str:
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
            return shown(value, _FIELD_CHARS) if value else None

        # A record of another host is held to the kernel's absolute limit, not ours.
        remote = bool(lines[3]) and lines[3] != _hostname()
        limit = PID_MAX_FALLBACK if remote else pid_max()
        pid = parse_pid(lines[0], limit)
        stamp = _number(lines[1], _STAMP_DIGITS)
        problem = None
        if stamp is None:
            problem = f"timestamp line {shown(lines[1])!r} is not a time"
        elif pid is None:
            problem = f"pid line {shown(lines[0])!r} is not a process id (1..{limit})"
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
