"""``fleet top``: what every agent costs, live (Rich ``Live``), or one sample as JSON.

Rich is imported only here, and only when the live view runs, so no other command pays
for it at start-up; psutil only where an agent has no cgroup of its own (see
:mod:`fleetlib.usage`). One row per agent of this machine (the agents of other hosts
are not shown yet): state, CPU % (of one core), memory now and at its peak against its
limit, tasks, restarts, uptime, last output.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from invoke.context import Context
from invoke.tasks import task

from fleetctl.fleet_tasks import open_lifecycle
from fleetctl.options import FLEET_HELP, JSON_HELP, fleet_paths, seconds, user_errors
from fleetctl.render import print_json
from fleetlib.errors import FleetError
from fleetlib.hosts import LOCAL

if TYPE_CHECKING:
    from rich.table import Table

    from fleetlib.backend import Lifecycle
    from fleetlib.status import AgentStatus
    from fleetlib.usage import Sampler, Usage

# Sort keys: the row value each sorts by, and whether the largest comes first.
SORT_KEYS: Final[dict[str, tuple[str, bool]]] = {
    "name": ("name", False),
    "state": ("state", False),
    "cpu": ("cpu_percent", True),
    "memory": ("memory_bytes", True),
    "tasks": ("tasks", True),
    "restarts": ("restarts", True),
    "uptime": ("uptime_s", True),
}
# A key pressed in the live view picks the sort key; `s` cycles through them.
SORT_PRESSES: Final = {
    "n": "name",
    "S": "state",
    "c": "cpu",
    "m": "memory",
    "t": "tasks",
    "r": "restarts",
    "u": "uptime",
}
DEFAULT_SORT: Final = "cpu"
ONCE_GAP_S: Final = 0.5  # --once: two readings this far apart, so CPU % is a current figure


def top_rows(agents: Sequence[AgentStatus], usage: dict[str, Usage], now: float) -> list[dict[str, Any]]:
    """One JSON object per agent: its state, restarts, uptime, last output and figures."""
    from fleetlib.usage import age_s, usage_json  # noqa: PLC0415  # start-up: fleetlib loads when used

    rows = []
    for agent in agents:
        data = agent.to_json()
        rows.append(
            {
                "name": agent.name,
                "state": data["state"],
                "process_state": agent.state,
                "reason": agent.reason,
                "pid": agent.pid,
                "restarts": agent.restarts,
                "uptime_s": round(age, 1) if agent.pid and (age := age_s(agent.pid)) is not None else None,
                "last_output_at": data["last_output_at"],
                "last_output_s": round(now - agent.last_output, 1) if agent.last_output is not None else None,
                **usage_json(usage.get(agent.name)),
            }
        )
    return rows


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``rows`` by ``key`` (see :data:`SORT_KEYS`); unknown figures last, then by name."""
    field, largest_first = SORT_KEYS[key]
    known = [row for row in rows if row[field] is not None]
    unknown = [row for row in rows if row[field] is None]
    known.sort(key=lambda row: row["name"])
    known.sort(key=lambda row: row[field], reverse=largest_first)
    return known + sorted(unknown, key=lambda row: row["name"])


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for suffix, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value}B"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    whole = int(value)
    if whole >= 86400:
        return f"{whole // 86400}d{whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole}s"


def row_cells(row: dict[str, Any]) -> list[str]:
    """The text of one row: name, state, CPU %, memory (now / peak / limit), tasks, restarts, uptime, output."""
    from fleetlib.resources import human_size  # noqa: PLC0415  # start-up: fleetlib loads when used

    limit = human_size(row["memory_max"]) if row["memory_max"] is not None else "-"
    tasks = "-" if row["tasks"] is None else f"{row['tasks']}" + (f"/{row['tasks_max']}" if row["tasks_max"] else "")
    state = row["state"] + (f" ({row['reason']})" if row["reason"] else "")
    cpu = "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}"
    return [
        row["name"],
        state,
        cpu,
        f"{_size(row['memory_bytes'])} / {_size(row['memory_peak'])} / {limit}",
        tasks,
        "-" if row["restarts"] is None else str(row["restarts"]),
        _duration(row["uptime_s"]),
        "-" if row["last_output_s"] is None else f"{_duration(row['last_output_s'])} ago",
    ]


HEADER: Final = ("NAME", "STATE", "CPU%", "MEM NOW / PEAK / MAX", "TASKS", "RESTARTS", "UPTIME", "OUTPUT")


def render(rows: list[dict[str, Any]], key: str, note: str) -> Table:
    from rich.table import Table  # noqa: PLC0415  (only `fleet top` pays for Rich)

    table = Table(title=f"fleet top - sorted by {key} (keys: c m t r u n S, s next, q quit)", caption=note or None)
    for column in HEADER:
        table.add_column(column, no_wrap=True, justify="right" if column in ("CPU%", "TASKS", "RESTARTS") else "left")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


class Top:
    """One fleet's samples: status (one tmux and one systemctl call) plus cgroup figures."""

    def __init__(self, lifecycle: Lifecycle, sampler: Sampler, clock: Callable[[], float] = time.time) -> None:
        self.lifecycle = lifecycle
        self.sampler = sampler
        self.clock = clock

    def sample(self) -> list[dict[str, Any]]:
        status = self.lifecycle.status()
        agents = [*status.agents, *status.strays]
        return top_rows(agents, self.sampler.sample(agents), self.clock())


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """Single key presses from the terminal (cbreak mode, restored on exit): yields a
    function waiting up to its timeout for one key ("" when none came)."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        return os.read(fd, 1).decode(errors="replace") if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def live(top: Top, key: str, interval: float, note: str) -> None:
    """Refresh every ``interval`` seconds until ``q``; a sort key press re-sorts at once."""
    from rich.live import Live  # noqa: PLC0415

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise FleetError("fleet top needs a terminal for its live view; use --once (with --json for data)")
    rows = top.sample()
    with _keys() as read, Live(render(sort_rows(rows, key), key, note), auto_refresh=False, screen=False) as view:
        deadline = time.monotonic() + interval
        while True:
            pressed = read(deadline - time.monotonic())
            if pressed in ("q", "Q"):
                return
            if pressed == "s":
                names = list(SORT_KEYS)
                key = names[(names.index(key) + 1) % len(names)]
            elif pressed in SORT_PRESSES:
                key = SORT_PRESSES[pressed]
            if time.monotonic() >= deadline:
                rows = top.sample()
                deadline = time.monotonic() + interval
            view.update(render(sort_rows(rows, key), key, note), refresh=True)


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "once": "Print one sample and exit (with --json: as data for scripts and monitoring).",
        "json": JSON_HELP,
        "sort": f"Sort rows by one of: {', '.join(SORT_KEYS)} (default {DEFAULT_SORT}); a key press changes it live.",
        "interval": "Seconds between refreshes of the live view (default 1).",
    },
)
@user_errors
def fleet_top(
    c: Context,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    once: bool = False,
    json: bool = False,
    sort: str = DEFAULT_SORT,
    interval: str = "",
) -> None:
    """Live view of what each agent costs (CPU, memory against its limit, tasks); q quits."""
    if sort not in SORT_KEYS:
        raise FleetError(f"--sort: unknown key {sort!r}; use one of: {', '.join(SORT_KEYS)}")
    if json and not once:
        raise FleetError("--json needs --once (one sample as data); the live view is for a terminal")
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: fleetlib loads when used
    from fleetlib.usage import fleet_sampler  # noqa: PLC0415

    every = seconds("--interval", interval) or 1.0
    loaded = load_roster(fleet_paths(c, home, roster).roster)
    note = ""
    if loaded.hosts:
        loaded, note = loaded.for_host(LOCAL), "this machine's agents only: fleet top does not reach other hosts yet"
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    top = Top(lifecycle, fleet_sampler(lifecycle.paths))
    if not once:
        live(top, sort, every, note)
        return
    top.sample()  # a first reading, so the second's CPU % is over the gap, not a lifetime
    time.sleep(ONCE_GAP_S)
    rows = sort_rows(top.sample(), sort)
    if json:
        print_json(rows)
        return
    from rich.console import Console  # noqa: PLC0415

    Console().print(render(rows, sort, note))
