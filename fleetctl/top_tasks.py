"""``fleet top``: what every agent costs, live (Rich ``Live``), or one sample as JSON.

Rich is imported only here, and only when the live view runs, so no other command pays
for it at start-up; psutil only where an agent has no cgroup of its own (see
:mod:`fleetlib.usage`). One row per agent of every host of the roster (a HOST column, and
a ``host`` key in JSON, when the roster names hosts): state, CPU % (of one core), memory
now and at its peak against its limit, tasks, restarts, uptime, last output. The rows
come from the library (:mod:`fleetlib.top`, :meth:`fleetlib.group.HostsFleet.top`).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from invoke.context import Context
from invoke.tasks import task

from fleetctl.fleet_tasks import across_hosts, open_any
from fleetctl.options import FLEET_HELP, JSON_HELP, seconds, user_errors
from fleetctl.render import print_json
from fleetlib.errors import FleetError, FleetOperationError

if TYPE_CHECKING:
    from rich.table import Table

    from fleetlib.group import HostsTop
    from fleetlib.results import HostsResult, TopRows
    from fleetlib.top import Top

# The sort keys (fleetlib.top.SORT_KEYS), named here so the help needs no library import.
SORT_NAMES: Final = ("name", "state", "cpu", "memory", "tasks", "restarts", "uptime")
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


def rows_and_note(sample: list[dict[str, Any]] | HostsResult[TopRows]) -> tuple[list[dict[str, Any]], str]:
    """A sample's rows (every host's, each with its ``host``), and a note naming the
    hosts that did not answer."""
    if across_hosts(sample):
        failed = "; ".join(f"{host.host}: {host.error}" for host in sample.failed)
        return sample.agent_rows(), f"not shown: {failed}" if failed else ""
    return sample, ""


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
    """The text of one row: (host), name, state, CPU %, memory (now / peak / limit), tasks,
    restarts, uptime, output."""
    from fleetlib.resources import human_size  # noqa: PLC0415  (the library only when top runs)

    limit = human_size(row["memory_max"]) if row["memory_max"] is not None else "-"
    tasks = "-" if row["tasks"] is None else f"{row['tasks']}" + (f"/{row['tasks_max']}" if row["tasks_max"] else "")
    state = row["state"] + (f" ({row['reason']})" if row["reason"] else "")
    cpu = "-" if row["cpu_percent"] is None else f"{row['cpu_percent']:.1f}"
    return [
        *([row["host"]] if "host" in row else []),
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
    hosts = any("host" in row for row in rows)
    for column in ("HOST", *HEADER) if hosts else HEADER:
        table.add_column(column, no_wrap=True, justify="right" if column in ("CPU%", "TASKS", "RESTARTS") else "left")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


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


def live(top: Top | HostsTop, key: str, interval: float) -> None:
    """Refresh every ``interval`` seconds until ``q``; a sort key press re-sorts at once."""
    from rich.live import Live  # noqa: PLC0415

    from fleetlib.top import SORT_KEYS, sort_rows  # noqa: PLC0415

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise FleetError("fleet top needs a terminal for its live view; use --once (with --json for data)")
    rows, note = rows_and_note(top.sample())
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
                rows, note = rows_and_note(top.sample())
                deadline = time.monotonic() + interval
            view.update(render(sort_rows(rows, key), key, note), refresh=True)


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "once": "Print one sample and exit (with --json: as data for scripts and monitoring).",
        "json": JSON_HELP,
        "sort": f"Sort rows by one of: {', '.join(SORT_NAMES)} (default {DEFAULT_SORT}); a key press changes it live.",
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
    if sort not in SORT_NAMES:
        raise FleetError(f"--sort: unknown key {sort!r}; use one of: {', '.join(SORT_NAMES)}")
    if json and not once:
        raise FleetError("--json needs --once (one sample as data); the live view is for a terminal")
    every = seconds("--interval", interval) or 1.0
    top = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend).top()
    if not once:
        live(top, sort, every)
        return
    from fleetlib.top import sort_rows  # noqa: PLC0415

    top.prime()  # a first reading, so the second's CPU % is over the gap, not a lifetime
    time.sleep(ONCE_GAP_S)
    rows, note = rows_and_note(top.sample())
    rows = sort_rows(rows, sort)
    if json:
        print_json(rows)
    else:
        from rich.console import Console  # noqa: PLC0415

        Console().print(render(rows, sort, note))
    if note:  # a host did not answer: the rows of the others are shown, and the run fails
        raise FleetOperationError(note.replace("not shown: ", "top failed on ", 1))
