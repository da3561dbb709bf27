"""Hooks at scale: 200 Claude-runtime agents whose hooks fire once a second each.

Targets (issue 20, Cost): a hook event is visible in ``fleet status`` within 200 ms; the
watcher stays under 2 % of one core and 60 MB with every agent's hook firing once a second.

Each agent is a shell loop started the way the fleet starts a ``claude`` agent (so with the
fleet's ``--settings <run dir>/<name>.claude.json`` appended); it runs its hook as Claude Code
does (``/bin/sh -c <command>`` with the JSON on stdin), alternating ``UserPromptSubmit`` and
``Stop`` once a second, and prints a line each time (a redraw: the watcher reads its screen
too). One more agent, ``probe``, fires nothing by itself: the benchmark fires its hook and
measures how long until the status shows the new state, through the library's status (what
``fleet status`` computes) and through the command line (``fleet status --agent probe
--json``, a new Python process each time). Watcher CPU is its own plus its children's (its
tmux clients), peak memory its VmHWM, as in ``activity_bench``.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from benchmarks.activity_bench import CPU_TARGET_PERCENT, MEMORY_TARGET_MB, _cpu_seconds, _peak_rss_mb
from benchmarks.tmux_fleet import TmuxFleet, tmux_fleet
from fleetlib.backend import open_fleet
from fleetlib.paths import FleetPaths
from fleetlib.roster import load_roster

AGENTS: Final = 200
MINUTE_S: Final = 60.0
LATENCY_TARGET_MS: Final = 200.0
PROBES: Final = 20
# $0 the agent's name, then the fleet's "--settings FILE": the run dir is the file's directory.
LOOP: Final = (
    "r=${2%/*}; i=0; while :; do i=$((i+1)); case $((i % 2)) in 0) e=UserPromptSubmit;; *) e=Stop;; esac; "
    'echo \'{"session_id":"s-\'"$0"\'","last_assistant_message":"turn \'"$i"\'"}\' '
    '| /bin/sh -c "/bin/sh $r/hook.sh $0 claude.$e"; echo "$e $i"; sleep 1; done'
)


def _roster() -> str:
    lines = ["version: 1", "agents:"]
    for index in range(AGENTS):
        name = f"agent{index}"
        lines += [f"  - name: {name}", "    runtime: claude", f"    command: [sh, -c, {json.dumps(LOOP)}, {name}]"]
    lines += ["  - name: probe", "    runtime: claude", "    command: [sh, -c, 'exec sleep 100000']"]
    return "\n".join(lines) + "\n"


def _fire(run_dir: Path, event: str) -> None:
    """The probe's hook, run as Claude Code runs one: ``/bin/sh -c COMMAND``, JSON on stdin."""
    settings = json.loads((run_dir / "probe.claude.json").read_text())["hooks"][event]
    command = settings[0]["hooks"][0]["command"]
    subprocess.run(["/bin/sh", "-c", command], input=b'{"session_id":"probe"}', check=True)


def run(quick: bool = False) -> None:
    seconds = 15.0 if quick else MINUTE_S
    with tmux_fleet("fleet-hooks-bench-") as fleet:
        fleet.roster.write_text(_roster())
        watcher = fleet.start_watched()
        time.sleep(5)  # settle: the first ticks read every screen once
        w0, t0 = _cpu_seconds(watcher, children=True), time.monotonic()
        time.sleep(seconds)
        w1, t1 = _cpu_seconds(watcher, children=True), time.monotonic()
        peak = _peak_rss_mb(watcher)
        library, cli = _latencies(fleet, PROBES // 4 if quick else PROBES)
    watcher_pct = 100 * (w1 - w0) / (t1 - t0)
    print(f"hooks, {AGENTS} claude agents each firing a hook once a second, over {seconds:.0f} s:")
    verdict = "within" if watcher_pct < CPU_TARGET_PERCENT else "OVER"
    target = f"{verdict} {CPU_TARGET_PERCENT:g} %"
    print(f"  watcher CPU (itself + its tmux clients)  {watcher_pct:5.2f} % of one core ({target})")
    verdict = "within" if peak < MEMORY_TARGET_MB else "OVER"
    print(f"  watcher peak memory (VmHWM)              {peak:5.1f} MB ({verdict} {MEMORY_TARGET_MB:g} MB)")
    for what, samples in (("status (library)", library), ("`fleet status` (a new process)", cli)):
        worst = max(samples)
        verdict = "within" if worst < LATENCY_TARGET_MS else "OVER"
        print(
            f"  hook event -> {what:32s} median {statistics.median(samples):6.1f} ms, "
            f"max {worst:6.1f} ms ({verdict} {LATENCY_TARGET_MS:g} ms; {len(samples)} events)"
        )


def _latencies(fleet: TmuxFleet, count: int) -> tuple[list[float], list[float]]:
    """Milliseconds from firing the probe's hook until the status shows it, per event."""
    paths = FleetPaths.resolve(home=fleet.root / "home")
    lifecycle = open_fleet(paths, load_roster(paths.roster), backend="tmux")
    status_argv = [*fleet.argv, "status", "--agent", "probe", "--json"]
    library: list[float] = []
    cli: list[float] = []
    for index in range(count):
        event, state = ("UserPromptSubmit", "working") if index % 2 == 0 else ("Stop", "idle")
        began = time.monotonic()
        _fire(fleet.run_dir, event)
        if index % 4 < 2:
            while lifecycle.status("probe").by_name()["probe"].shown_state != state:
                pass
            library.append(1000 * (time.monotonic() - began))
        else:
            while json.loads(_out(status_argv, fleet.env))[0]["state"] != state:
                pass
            cli.append(1000 * (time.monotonic() - began))
        time.sleep(0.3)
    return library, cli


def _out(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 3):
        raise SystemExit(f"{shlex.join(argv)} failed: {result.stderr}")
    return result.stdout


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
