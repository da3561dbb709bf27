"""Facts about processes on this host, read from ``/proc`` (empty answers elsewhere).

Used to judge whether a lock owner is alive (a zombie or a recycled pid counts as dead)
and to tell when an agent's process started.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Final

_STAT_CAP: Final = 4096  # a /proc/<pid>/stat line: 52 numbers and a 16-byte command name, well under 1 KiB


def _stat_fields(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name, or [] if unreadable."""
    # os.open/os.read, not open(): no buffered file object per read (`fleet status` reads
    # one per agent); a stat line is a few hundred bytes, read whole in one call.
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return []
    try:
        raw = os.read(fd, _STAT_CAP)
    except OSError:
        return []
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses; nothing after it does.
    return raw[raw.rfind(b")") + 2 :].decode().split()


def start_ticks(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot, as text; "" where unknown."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def name(pid: int) -> str:
    """The process name of ``pid`` (``/proc/<pid>/comm``); "" where unknown."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


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
        with open("/proc/stat", "rb") as handle:  # bytes: no text codec to load for one number
            for line in handle:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@functools.cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def started_at(pid: int) -> str | None:
    """When ``pid`` started, as an ISO 8601 UTC timestamp; None where unknown."""
    ticks, boot = start_ticks(pid), _boot_time()
    if not ticks or boot is None:
        return None
    seconds = boot + int(ticks) / _clock_ticks()
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@functools.cache
def _cgroup_mount() -> tuple[str, str] | None:
    """Where this host's process-tracking cgroup hierarchy is mounted, and the key of its
    line in ``/proc/<pid>/cgroup``: cgroup2 (``0::``), else v1's ``name=systemd``."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    named = None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or fields[3] != "/":  # only a hierarchy's root
            continue
        if tail[0] == "cgroup2":
            return fields[4], "0::"
        if tail[0] == "cgroup" and "name=systemd" in tail[2].split(","):
            named = (fields[4], "name=systemd")
    return named


def cgroup_of(pid: int) -> str | None:
    """The path of ``pid``'s cgroup in the tracking hierarchy (``/app.slice/x.service``)."""
    mount = _cgroup_mount()
    if mount is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    key = mount[1]
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (key == "0::" and number == "0" and controllers == "") or (key != "0::" and key in controllers.split(",")):
            return path
    return None


def cgroup_members(path: str) -> list[int]:
    """The live processes in the cgroup ``path`` of the tracking hierarchy (as
    :func:`cgroup_of` reads it); [] when unknown."""
    mount = _cgroup_mount()
    if mount is None:
        return []
    try:
        with open(f"{mount[0]}{path}/cgroup.procs", encoding="ascii") as handle:
            members = [int(word) for word in handle.read().split()]
    except (OSError, ValueError):
        return []
    return [member for member in members if _live(member)]


# --------------------------------------------------------------------------- agent processes

MARKER_ENV: Final = "FLEET_AGENT"
_ENVIRON_CAP: Final = 1 << 20


def marker(name: str, fleet_id: str) -> str:
    """The value of :data:`MARKER_ENV` every process of agent ``name`` inherits.

    ``fleet_id`` (the fleet's tmux socket path) keeps two fleets on one host apart."""
    return f"{name}@{fleet_id}"


def own_processes() -> Iterator[int]:
    """The pid of every process of our user (one that ends meanwhile may be among them)."""
    uid = os.geteuid()
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                yield int(entry)


_SCAN_ROUNDS: Final = 8  # listings per scan; each round reads only the pids new since the one before
_PF_EXITING: Final = 0x4  # /proc/<pid>/stat flags (field 9): the process is ending
_PF_KTHREAD: Final = 0x00200000  # ... a kernel thread: no environment, ever
_EXEC_WAIT_S: Final = 1.0  # how long a process may show no environment in the middle of an exec
_EXEC_POLL_S: Final = 0.001
_EMPTY_LOOKS: Final = 3


def _read_environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read(_ENVIRON_CAP)
    except OSError:
        return None


def _environment_shown(pid: int) -> str:
    """How far ``pid``'s environment is shown, from ``/proc/<pid>/stat``: ``"none"`` for a
    live user process in the middle of an exec (between its point of no return and its new
    stack, ``env_end`` is 0 and ``/proc/<pid>/environ`` reads empty), ``"empty"`` when the
    environment shown is empty (``env -i`` gives that, and so does, for an instant, an exec
    laying out its new stack), ``"shown"`` otherwise, and ``""`` when there is nothing to
    wait for (gone, a zombie, ending, a kernel thread, or a kernel that does not tell)."""
    fields = _stat_fields(pid)
    # Fields 50 and 51 of proc(5), env_start and env_end, at 47 and 48 after the command name.
    if len(fields) < 49 or fields[0] in ("Z", "X") or int(fields[6]) & (_PF_EXITING | _PF_KTHREAD):
        return ""
    env_start, env_end = int(fields[47]), int(fields[48])
    if env_end == 0:
        return "none"
    return "empty" if env_end == env_start else "shown"


def _environment_of(pid: int, sleep: Callable[[float], None], clock: Callable[[], float]) -> bytes | None:
    """``pid``'s raw environment; for a process in the middle of an exec, the one it shows
    once the exec is through. An empty read is taken again (a fresh open: the address space
    the process has now) while the process shows an environment or one to come, for up to
    :data:`_EXEC_WAIT_S`; an environment shown empty is looked at :data:`_EMPTY_LOOKS` times
    before it is believed."""
    raw = _read_environ(pid)
    deadline = clock() + _EXEC_WAIT_S
    looks = 0
    while raw == b"" and clock() < deadline:
        shown = _environment_shown(pid)
        if shown == "" or (shown == "empty" and looks >= _EMPTY_LOOKS):
            break
        if shown != "shown":
            looks += shown == "empty"
            sleep(_EXEC_POLL_S)
        raw = _read_environ(pid)
    return raw


def _environments(
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
) -> Iterator[tuple[int, bytes]]:
    """(pid, raw environment) of every process this user may read, but this one's.

    The guarantee: a process that is alive when the scan ends and carried its environment
    all along is in it, although processes fork, exec and end while it reads. One listing
    of ``/proc`` read through is not enough for that, and these two gaps were seen in
    practice (a notification command's ``setsid`` process missed about once in 500 scans
    on a loaded machine):

    - a process forked after the listing whose parent ended before being read (``sh -c
      'setsid cmd & exit 0'``) is in neither: ``/proc`` is listed again after the reads,
      and the pids new since are read too, until a listing brings none (at most
      :data:`_SCAN_ROUNDS` listings);
    - a process in the middle of an exec shows an empty environment: it is read again until
      the exec is through (:func:`_environment_of`).

    Each round follows one more generation of fork-and-end (a double-forking daemon takes
    three); a process that shows no environment for longer than :data:`_EXEC_WAIT_S` (an
    exec stuck on a frozen file system) is passed over.
    """
    me = os.getpid()
    done: set[int] = {me}
    for _ in range(_SCAN_ROUNDS):
        try:
            listed = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
        except OSError:
            return
        new = [pid for pid in listed if pid not in done]
        if not new:
            return
        for pid in new:
            done.add(pid)
            raw = _environment_of(pid, sleep, clock)
            if raw is not None:
                yield pid, raw


def environment(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` was started with (``/proc/<pid>/environ``, read capped,
    undecodable bytes replaced; for a process in the middle of an exec, the one it shows
    once through: :func:`_environment_of`), or None when it cannot be read (gone, another
    user's) or is empty."""
    raw = _environment_of(pid, time.sleep, time.monotonic)
    if raw is None:
        return None
    pairs = [item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if b"=" in item]
    return {key: value for key, _, value in pairs} or None


def _live(pid: int) -> bool:
    return state(pid) not in ("Z", "X", "")


def marked(markers: Iterable[str]) -> dict[str, list[int]]:
    """Live processes whose environment carries ``FLEET_AGENT=<marker>``, per marker.

    One pass over ``/proc`` for all markers. It finds what an agent started, including
    background, ``setsid`` and double-forked children, since they inherit the environment.
    It cannot see a process that replaced its environment with one lacking the marker
    (``env -i``, ``clearenv``), nor processes of other users when not root.
    """
    wanted = {f"{MARKER_ENV}={value}".encode(): value for value in markers}
    found: dict[str, list[int]] = {value: [] for value in wanted.values()}
    if not wanted:
        return found
    for pid, environ in _environments():
        for variable in environ.split(b"\0"):
            owner = wanted.get(variable)
            if owner is not None:
                if _live(pid):
                    found[owner].append(pid)
                break
    return found


def carrying(variable: str, suffix: str) -> dict[str, list[int]]:
    """Live processes whose environment sets ``variable`` to a value ending in ``suffix``
    with no ``@`` before it (``suffix`` starts with ``@``: the part before is a name or
    token), per value (one pass over ``/proc``; what it cannot see is as for :func:`marked`).

    With :data:`MARKER_ENV` and ``@<fleet id>`` it finds every agent process of one fleet,
    whatever the agent's name: also those of agents the roster no longer lists."""
    prefix, tail = f"{variable}=".encode(), suffix.encode()
    found: dict[str, list[int]] = {}
    for pid, environ in _environments():
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                if item.endswith(tail) and b"@" not in item[len(prefix) : -len(tail)] and _live(pid):
                    found.setdefault(item[len(prefix) :].decode(errors="replace"), []).append(pid)
                break
    return found


def fleet_agents(fleet_id: str) -> dict[str, list[int]]:
    """Every live agent process of the fleet ``fleet_id`` (see :func:`marker`), per agent
    name, listed in the roster or not."""
    suffix = f"@{fleet_id}"
    return {value[: -len(suffix)]: pids for value, pids in carrying(MARKER_ENV, suffix).items()}


def fleet_processes(fleet_id: str) -> dict[int, str]:
    """pid -> agent name of every live agent process of the fleet ``fleet_id`` (the same
    pass as :func:`fleet_agents`, keyed by process)."""
    return {pid: name for name, pids in fleet_agents(fleet_id).items() for pid in pids}


def signal_all(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to every pid; processes that are already gone are skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
