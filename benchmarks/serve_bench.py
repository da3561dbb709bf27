"""`fleet serve` benchmark (issue 24): with N agents (200; 50 with --quick) and a page open
(one event stream), the server's CPU while nothing changes (target: under 2 % of one core),
and how long after a change the page's stream carries it (target: under 1 s).

The fleet is plain tmux, N agents running ``sleep``; the server is the real command
(``python -m fleetctl serve --json``). CPU is the server's own and its children's (the tmux
clients it runs), read from /proc over 30 s (one period of the memory figures). A change
is ``fleet stop --agent`` through the library: the time runs from the moment the stop
returned to the event that shows it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from benchmarks import record
from benchmarks.top_bench import _cleanup, _fleet, _roster
from fleetlib.engine import Lifecycle

CPU_TARGET_PERCENT: Final = 2.0
LATENCY_TARGET_S: Final = 1.0
IDLE_S: Final = 30.0  # a whole period of the memory figures (fleetweb.fleet.USAGE_EVERY_S)
CHANGES: Final = 3
REPO: Final = Path(__file__).resolve().parent.parent


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _listen(base: str, token: str, events: queue.Queue[tuple[float, list[dict[str, Any]]]]) -> None:
    asked = urllib.request.Request(base + "/api/events", headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(asked, timeout=600) as stream:  # noqa: S310 (the server's own http:// address)
        for raw in stream:
            line = raw.decode()
            if line.startswith("data: "):
                events.put((time.monotonic(), json.loads(line[len("data: ") :])))


def _measure(fleet: Lifecycle, count: int) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "fleetctl", "serve", "--json", "--bind", "127.0.0.1:0"],
        cwd=REPO,
        env={**os.environ, "MOSAIC_HOME": str(fleet.paths.home)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        said = json.loads(server.stdout.readline())
        base, _, token = said["url"].partition("/?token=")
        events: queue.Queue[tuple[float, list[dict[str, Any]]]] = queue.Queue()
        threading.Thread(target=_listen, args=(base, token, events), daemon=True).start()
        events.get(timeout=120)
        time.sleep(6)  # past the first memory figures
        began, cpu = time.monotonic(), _cpu_s(server.pid)
        time.sleep(IDLE_S)
        percent = 100 * (_cpu_s(server.pid) - cpu) / (time.monotonic() - began)
        record.figure(f"serve: CPU idle with a page open, {count} agents, tmux", "%", [percent])
        met = "met" if percent < CPU_TARGET_PERCENT else "NOT met"
        print(f"  idle     {percent:6.2f} % of one core ({met}; target under {CPU_TARGET_PERCENT:g} %)", flush=True)
        latencies = []
        for index in range(CHANGES):
            name = f"a{index}"
            fleet.stop(name)
            stopped = time.monotonic()
            while True:
                at, cards = events.get(timeout=60)
                if any(card["name"] == name and card["state"] == "stopped" for card in cards):
                    latencies.append(max(at - stopped, 0.0))
                    break
        record.figure(f"serve: a change reaches the page, {count} agents, tmux", "s", latencies)
        worst = max(latencies)
        met = "met" if worst < LATENCY_TARGET_S else "NOT met"
        print(f"  change   {worst:6.2f} s at most over {CHANGES} ({met}; target under {LATENCY_TARGET_S:g} s)")
    finally:
        server.terminate()
        server.communicate(timeout=30)


def run(quick: bool = False) -> None:
    count = 50 if quick else 200
    print(f"fleet serve: N = {count} agents on tmux, one page open")
    saved = dict(os.environ)
    os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
    runtime = Path(tempfile.mkdtemp(prefix="fleet-serve-bench-run-"))
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    home, fleet = Path(tempfile.mkdtemp(prefix="fleet-serve-bench-")), None
    try:
        fleet = _fleet(home, _roster(count, ""), "tmux", None)
        _measure(fleet, count)
    finally:
        _cleanup(fleet, home)
        shutil.rmtree(runtime, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)
