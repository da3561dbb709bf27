"""Fleet-control benchmark on a private systemd --user manager (booted here, torn down after).

Measured side by side in one run, N agents each:
  reference   the reference's serial strategy: `systemctl --user restart` of the holder,
              then one `systemctl --user restart` per agent, one after the other
  fleet       `Fleet.restart()`: one holder restart (propagated by Requires=/After=), one
              batched start, then the wait until every agent is up with a window
Each agent logs every start, so the benchmark also reports how often each agent was
started per fleet restart (the reference restarts every agent twice).
Status: Fleet.status() for all agents vs. N serial `systemctl is-active` calls, plus the
start-up of `inv fleet.status` against a bare `inv --list`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleetlib.fleet import Fleet
from fleetlib.paths import FleetPaths
from fleetlib.roster import load_roster
from fleetlib.runner import SubprocessRunner
from fleetlib.systemd import HOLDER_UNIT, agent_unit
from tests.usermanager import UserManager, boot

REPO = Path(__file__).resolve().parent.parent


def _roster(names: list[str], log_dir: Path) -> str:
    body = "".join(
        f"  - name: {n}\n    runtime: custom\n"
        f"    command: [sh, -c, 'echo started >> {log_dir}/{n}; exec sleep 100000']\n"
        for n in names
    )
    return "version: 1\ntransport: tmux\nagents:\n" + body


def _starts(log_dir: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in log_dir.iterdir()}


def _fleet(manager: UserManager, home: Path, count: int) -> tuple[Fleet, Path]:
    log_dir = home / "starts"
    log_dir.mkdir(parents=True)
    paths = FleetPaths.resolve(home)
    paths.roster.parent.mkdir(parents=True)
    paths.roster.write_text(_roster([f"agent{i}" for i in range(count)], log_dir))
    runner = SubprocessRunner(env=manager.env)
    fleet = Fleet(paths=paths, roster=load_roster(paths.roster), runner=runner, unit_dir=manager.unit_dir, timeout=600)
    fleet.install(enable=False)
    fleet.start()
    return fleet, log_dir


def _reference_restart(fleet: Fleet) -> None:
    run = fleet.runner.run
    for unit in [HOLDER_UNIT, *(agent_unit(n) for n in fleet.roster.names())]:
        result = run(["systemctl", "--user", "restart", unit])
        if not result.ok:
            raise RuntimeError(result.stderr)
    fleet.runner.run(["systemctl", "--user", "reset-failed"])


def _timed(action: object, fleet: Fleet, log_dir: Path) -> tuple[float, float]:
    """Seconds for one restart, and the mean number of starts per agent it caused."""
    before = _starts(log_dir)
    started = time.monotonic()
    action(fleet)  # type: ignore[operator]
    elapsed = time.monotonic() - started
    fleet._wait(fleet.roster.names(), up=True, holder_up=True, progress=lambda: None)
    after = _starts(log_dir)
    return elapsed, statistics.mean(after[n] - before.get(n, 0) for n in after)


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f}"


def _command_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.monotonic()
        subprocess.run(argv, cwd=REPO, env=env, capture_output=True, check=False)
        samples.append(time.monotonic() - started)
    return statistics.median(samples) * 1000


def run(quick: bool = False) -> None:
    booted = boot()
    if isinstance(booted, str):
        print(f"fleet benchmark skipped: {booted}")
        return
    manager = booted
    sizes = [1, 10, 50] if quick else [1, 10, 50, 200]
    runs = 1 if quick else 3
    try:
        print(f"fleet restart benchmark (median of {runs}; private user manager, tmux {_tmux_version()})")
        print(
            f"{'N':>4} {'reference ms':>13} {'starts/agent':>13} {'fleet ms':>9} {'starts/agent':>13} {'speed-up':>9}"
        )
        for count in sizes:
            home = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
            try:
                fleet, log_dir = _fleet(manager, home, count)
                ref = [_timed(_reference_restart, fleet, log_dir) for _ in range(runs)]
                ours = [_timed(Fleet.restart, fleet, log_dir) for _ in range(runs)]
                ref_ms, our_ms = statistics.median(r[0] for r in ref), statistics.median(o[0] for o in ours)
                print(
                    f"{count:>4} {ref_ms * 1000:>13.0f} {ref[-1][1]:>13.2f} {our_ms * 1000:>9.0f} {ours[-1][1]:>13.2f}"
                    f" {ref_ms / our_ms:>8.1f}x",
                    flush=True,
                )
                if count == sizes[-1]:
                    _status_bench(manager, fleet)
                fleet.uninstall()
            finally:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        manager.stop()


def _status_bench(manager: UserManager, fleet: Fleet) -> None:
    count = len(fleet.roster.agents)
    print(f"status of {count} agents (median of 10)")
    samples = []
    for _ in range(10):
        started = time.monotonic()
        fleet.status()
        samples.append(time.monotonic() - started)
    print(f"  Fleet.status() (one tmux call + one list-units)    {_median_ms(samples):>6} ms")
    serial = []
    for _ in range(3):
        started = time.monotonic()
        for name in fleet.roster.names():
            fleet.runner.run(["systemctl", "--user", "is-active", agent_unit(name)])
        serial.append(time.monotonic() - started)
    print(f"  {count} x systemctl is-active (serial)              {_median_ms(serial):>6} ms")
    env = {**manager.env, "MOSAIC_HOME": str(fleet.paths.home)}
    inv = [sys.executable, "-m", "invoke"]
    bare = _command_ms([*inv, "--list"], env, 10)
    status = _command_ms([*inv, "fleet.status"], env, 10)
    python = _command_ms([sys.executable, "-c", "pass"], env, 10)
    print(f"  python -c pass                                    {python:>6.0f} ms")
    print(f"  inv --list                                        {bare:>6.0f} ms")
    print(f"  inv fleet.status ({count} agents)                    {status:>6.0f} ms  (+{status - bare:.0f} ms)")


def _tmux_version() -> str:
    return subprocess.run(["tmux", "-V"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    run(quick="--quick" in sys.argv)
