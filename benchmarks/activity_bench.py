"""The watcher's cost next to a fleet of 200 agents, half of them printing a line a second.

Targets (issue: activity state): under 2 % of one core on average and under 60 MB of memory,
measured over a minute. The watcher's CPU is its own plus its children's (the tmux clients it
runs), from /proc; what the tmux server spends answering it is measured too, as the server's
CPU with the watcher running minus the server's CPU over the same time with the watcher
stopped (the agents' own output costs the server the same in both). Memory is the watcher's
peak resident set (VmHWM).

The fleet runs on the tmux backend in a private home (no user manager answers, so `auto`
picks tmux); its watcher is the window ``_watcher`` of the holder session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from benchmarks import record
from benchmarks.tmux_fleet import tmux_fleet

AGENTS: Final = 200
MINUTE_S: Final = 60.0
CPU_TARGET_PERCENT: Final = 2.0
MEMORY_TARGET_MB: Final = 60.0
TICKS: Final = os.sysconf("SC_CLK_TCK")
CHATTER: Final = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 1; done"


def _roster(runtime: str) -> str:
    lines = ["version: 1", "agents:"]
    for index in range(AGENTS):
        command = f"[sh, -c, '{CHATTER}']" if index % 2 == 0 else "[sleep, '100000']"
        lines += [f"  - name: agent{index}", f"    runtime: {runtime}", f"    command: {command}"]
    return "\n".join(lines) + "\n"


def _cpu_seconds(pid: int, *, children: bool) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the command).
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / TICKS


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(quick: bool = False) -> None:
    """Both cases: runtime ``shell`` (screen patterns: every pane that wrote is read again
    each tick, the dearer case) and a custom runtime (output age alone: no screen is read)."""
    for runtime, what in (("shell", "screens read (runtime shell)"), ("custom", "output age only (custom runtime)")):
        measure(runtime, what, quick=quick)


def measure(runtime: str, what: str, *, quick: bool = False) -> tuple[float, float]:
    """Print the figures; return (watcher CPU % of one core, peak RSS MB)."""
    seconds = 15.0 if quick else MINUTE_S
    with tmux_fleet("fleet-activity-bench-") as fleet:
        fleet.roster.write_text(_roster(runtime))
        watcher = fleet.start_watched()
        tmux = ["tmux", "-S", str(fleet.socket)]
        server = int(subprocess.run([*tmux, "display", "-p", "#{pid}"], env=fleet.env,
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
        time.sleep(5)  # settle: the first ticks read every screen once
        w0, s0, t0 = _cpu_seconds(watcher, children=True), _cpu_seconds(server, children=False), time.monotonic()
        time.sleep(seconds)
        w1, s1, t1 = _cpu_seconds(watcher, children=True), _cpu_seconds(server, children=False), time.monotonic()
        peak = _peak_rss_mb(watcher)
        # The same span without the watcher: what the server spends on the agents alone.
        subprocess.run([*tmux, "kill-window", "-t", "=fleet:=_watcher"], check=True)
        s2, t2 = _cpu_seconds(server, children=False), time.monotonic()
        time.sleep(seconds)
        s3, t3 = _cpu_seconds(server, children=False), time.monotonic()
    watcher_pct = 100 * (w1 - w0) / (t1 - t0)
    server_pct = 100 * ((s1 - s0) / (t1 - t0) - (s3 - s2) / (t3 - t2))
    record.figure(f"watcher CPU, {AGENTS} agents, {what}", "%", [watcher_pct])
    record.figure(f"watcher peak memory, {AGENTS} agents, {what}", "MB", [peak])
    print(f"watcher cost, {AGENTS} agents ({AGENTS // 2} printing a line a second), {what}, over {seconds:.0f} s:")
    verdict = "within" if watcher_pct < CPU_TARGET_PERCENT else "OVER"
    target = f"{verdict} {CPU_TARGET_PERCENT:g} %"
    print(f"  watcher CPU (itself + its tmux clients)  {watcher_pct:5.2f} % of one core ({target})")
    print(f"  tmux server CPU spent on the watcher     {server_pct:5.2f} % of one core (with minus without)")
    verdict = "within" if peak < MEMORY_TARGET_MB else "OVER"
    print(f"  watcher peak memory (VmHWM)              {peak:5.1f} MB ({verdict} {MEMORY_TARGET_MB:g} MB)")
    return watcher_pct, peak


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
