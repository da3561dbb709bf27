"""The fleet's watcher as the rest of fleet sees it: its configuration file
(``<run dir>/watcher.json``), how it is started and how its processes are found (whether
its records are fresh is :func:`fleetlib.observed.fresh`). Small and free of the watcher's
own machinery, so the engine and the backends use it without importing :mod:`fleetlib.watcher`, which re-exports it.

:func:`write_config` writes what :func:`read_config` accepts, nothing else: the file is
untrusted input to the long-lived watcher, refused as a whole when it is not that shape.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleetlib import hooks, procs
from fleetlib.atomic import atomic_write_text
from fleetlib.capture import SUFFIX, logs_in
from fleetlib.paths import FleetPaths
from fleetlib.rundir import RunFileError, not_regular, os_errors, read_capped

if TYPE_CHECKING:  # the watcher itself never parses a roster (no YAML in a long-lived process)
    from fleetlib.roster import Roster

CONFIG_NAME: Final = "watcher.json"
CONFIG_VERSION: Final = 1
CONFIG_CAP: Final = 8 * 1024 * 1024
NOTIFY_ENV: Final = "FLEET_NOTIFY"  # <token>@<run dir>: marks a notification and all it starts
MIN_LOG_MAX_BYTES: Final = 4096  # the roster's lower bound for log_max_bytes
WINDOW: Final = "_watcher"  # tmux backend: cannot collide, agent names start with [a-z0-9]
FALLBACK_STOP_TIMEOUT_S: Final = 10.0  # the roster's default stop_timeout (its module imports YAML)


@dataclass(frozen=True)
class WatchedAgent:
    """What the watcher needs to know about one agent."""

    name: str
    runtime: str
    on_state_change: tuple[str, ...] = ()
    log: str = ""
    log_max_bytes: int = 0
    log_keep: int = 0
    stop_timeout: float = FALLBACK_STOP_TIMEOUT_S
    notify: tuple[str, ...] = ()  # Apprise URLs (secrets: this file is 0600, and never printed)


@dataclass(frozen=True)
class WatcherConfig:
    tmux: str
    socket: str
    home: str
    agents: dict[str, WatchedAgent] = field(default_factory=dict)


def config_path(run_dir: Path) -> Path:
    return run_dir / CONFIG_NAME


def config_for(paths: FleetPaths, roster: Roster, tmux_bin: str) -> WatcherConfig:
    """The watcher's view of a roster (pure)."""
    agents = {
        agent.name: WatchedAgent(
            name=agent.name,
            runtime=agent.runtime,
            on_state_change=agent.on_state_change,
            log=str(logs_in(paths.fleet_dir) / f"{agent.name}{SUFFIX}"),
            log_max_bytes=agent.log_max_bytes,
            log_keep=agent.log_keep,
            stop_timeout=agent.stop_timeout,
            notify=agent.notify,
        )
        for agent in roster.agents
    }
    return WatcherConfig(tmux=tmux_bin, socket=str(paths.tmux_socket), home=str(paths.home), agents=agents)


def write_config(paths: FleetPaths, roster: Roster, tmux_bin: str) -> bool:
    """Write ``watcher.json`` into the (private, existing) run dir unless it already says
    the same; atomic, so the watcher reads the old or the new file. Returns whether it wrote."""
    config = config_for(paths, roster, tmux_bin)
    with os_errors("write", hooks.script_path(paths.run_dir)):
        hooks.install(paths.run_dir, [(agent.name, agent.runtime) for agent in roster.agents])
    text = json.dumps(
        {
            "version": CONFIG_VERSION,
            "tmux": config.tmux,
            "socket": config.socket,
            "home": config.home,
            "agents": [
                vars(agent) | {"on_state_change": list(agent.on_state_change), "notify": list(agent.notify)}
                for agent in config.agents.values()
            ],
        },
        indent=1,
    )
    path = config_path(paths.run_dir)
    with os_errors("inspect", path), contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):  # a rename cannot replace it: say so, naming it, not a temp file
            raise not_regular(path, "watcher configuration", mode)
        if not stat.S_ISREG(mode):  # a symlink, FIFO ...: never read through it, never inherit its mode
            os.unlink(path)
        elif read_capped(path, CONFIG_CAP, what="watcher configuration") == text.encode():
            return False
    with os_errors("write", path):
        atomic_write_text(path, text, mode=0o600)
        os.chmod(path, 0o600)  # atomic_write_text keeps an old file's mode; this file stays private
    return True


def read_config(run_dir: Path) -> WatcherConfig | None:
    """The configuration, or None when it is missing or unreadable (the watcher then waits).

    The file is untrusted input: anything but the exact shape :func:`write_config` writes
    (strings, argv lists of strings, whole numbers within the roster's bounds) is refused
    as a whole, never half-used (a missing ``log_max_bytes`` read as 0 would rotate a
    transcript every few seconds, pushing out the rotated files)."""
    try:
        raw = read_capped(config_path(run_dir), CONFIG_CAP, what="watcher configuration")
        data = json.loads(raw) if raw else None
    except (RunFileError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("version") != CONFIG_VERSION:
        return None
    items = data.get("agents")
    heads = [data.get(key) for key in ("tmux", "socket", "home")]
    if not isinstance(items, list) or not all(isinstance(head, str) and head for head in heads):
        return None
    agents: dict[str, WatchedAgent] = {}
    for item in items:
        agent = _watched_agent(item)
        if agent is None:
            return None
        agents[agent.name] = agent
    return WatcherConfig(str(heads[0]), str(heads[1]), str(heads[2]), agents)


def _watched_agent(item: object) -> WatchedAgent | None:
    if not isinstance(item, dict):
        return None
    name, runtime, log = item.get("name"), item.get("runtime"), item.get("log", "")
    command = item.get("on_state_change") or []
    if not (isinstance(name, str) and name and isinstance(runtime, str) and isinstance(log, str)):
        return None
    if not (isinstance(command, list) and all(isinstance(word, str) and "\0" not in word for word in command)):
        return None
    urls = item.get("notify") or []  # absent from a file of an older fleet
    if not (isinstance(urls, list) and all(isinstance(url, str) and url and _one_line(url) for url in urls)):
        return None
    stop_timeout = item.get("stop_timeout", FALLBACK_STOP_TIMEOUT_S)  # absent from a file of an older fleet
    if not _seconds(stop_timeout):
        return None
    if not log:
        return WatchedAgent(name, runtime, tuple(command), stop_timeout=float(stop_timeout), notify=tuple(urls))
    max_bytes, keep = _whole(item.get("log_max_bytes"), MIN_LOG_MAX_BYTES), _whole(item.get("log_keep"), 1)
    if max_bytes is None or keep is None:
        return None
    return WatchedAgent(name, runtime, tuple(command), log, max_bytes, keep, float(stop_timeout), tuple(urls))


def _one_line(text: str) -> bool:
    """Whether ``text`` can be one line of :data:`fleetlib.notify.URLS_ENV`."""
    return not any(char in text for char in "\0\n\r")


def _seconds(value: object) -> bool:
    """Whether ``value`` is a positive, finite number of seconds (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _whole(value: object, least: int) -> int | None:
    """``value`` when it is a whole number >= ``least`` (not a bool, not a float)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= least else None


def watcher_argv(run_dir: Path, python: str = sys.executable) -> list[str]:
    """How the watcher is started: this Python, this package (see :func:`watcher_environment`)."""
    return [python, "-m", "fleetlib.watcher", str(run_dir)]


def running(run_dir: Path) -> list[int]:
    """Pids of the live watchers of the fleet whose run dir is ``run_dir`` (one, normally),
    found in /proc by their exact command line."""
    wanted = ["-m", "fleetlib.watcher", str(run_dir)]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read(64 * 1024).decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        if len(argv) == len(wanted) + 1 and argv[1:] == wanted:
            found.append(int(entry))
    return found


def notification_processes(run_dir: Path) -> dict[str, list[int]]:
    """Live processes of the notification commands of the fleet whose run dir is
    ``run_dir``, per notification (its :data:`NOTIFY_ENV` value): everything a command
    started, in its process group or not (``setsid``, double forks), since all of it
    inherits the variable. Only a process that clears its environment escapes."""
    return procs.carrying(NOTIFY_ENV, f"@{run_dir}")


def watcher_environment() -> dict[str, str]:
    """What the watcher needs beyond the base environment: this package on the import path,
    wherever it was imported from (an installed copy or a clone)."""
    return {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
