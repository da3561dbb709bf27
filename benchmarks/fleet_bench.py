"""Fleet-control benchmark: whole-fleet restarts on both backends, each against its yardstick.

systemd backend, on a private ``systemd --user`` manager (booted here, torn down after),
N agents each, measured side by side in one run:

  reference   the reference's serial strategy: ``systemctl --user restart`` of the holder,
              then one ``systemctl --user restart`` per agent, one after the other (timed
              until the last call returns; the wait until every agent is up is not timed)
  fleet       ``Lifecycle.restart()`` through :func:`fleetlib.backend.open_fleet`: one
              holder restart (propagated by ``Requires=``/``After=``), one batched start,
              then the wait until every agent has a new pane that stayed up for its start
              grace (1 s by default, part of the figure: "started" means "stayed up")

tmux backend, N = 200 (the largest size), in the same run:

  floor       one tmux client creating N windows (``sleep``), and one killing them
  fleet       ``Lifecycle.restart()`` on the tmux backend: TERM/HUP to every agent, wait
              until no marked process is left, new server, N windows in one client, wait
              out the start grace

Every agent logs each start, so the benchmark reports how often each agent was started per
restart (the reference starts every agent twice, the fleet once). The engine's progress
hook splits the fleet's restart into phases: until the backend's requests returned and the
first poll ran, and until the last agent counted as up.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from benchmarks import record
from fleetlib.backend import open_fleet
from fleetlib.engine import Lifecycle
from fleetlib.paths import FleetPaths
from fleetlib.results import Progress
from fleetlib.roster import load_roster
from fleetlib.systemd import UnitNames
from tests.usermanager import UserManager, boot

REPO = Path(__file__).resolve().parent.parent
TARGET_SPEEDUP: Final = 3.5  # issue 22 (first 10): systemd restart at N = 200 against the serial strategy
UP_TIMEOUT_S: Final = 600.0
SETTLE_TIMEOUT_S: Final = 60.0  # untimed wait after a restart until every agent is up again


def _roster(names: list[str], log_dir: Path) -> str:
    body = "".join(
        f"  - name: {n}\n    runtime: custom\n"
        f"    command: [sh, -c, 'echo started >> {log_dir}/{n}; exec sleep 100000']\n"
        for n in names
    )
    return "version: 1\nagents:\n" + body


def _starts(log_dir: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in log_dir.iterdir()}


@dataclass
class Phases:
    """When the engine first reported waiting for starts, and when all agents were up."""

    began: float = 0.0
    first_poll: float | None = None
    all_up: float | None = None
    marks: list[tuple[str, float]] = field(default_factory=list)

    def hook(self, progress: Progress) -> None:
        now = time.monotonic() - self.began
        if progress.phase == "starting" and self.first_poll is None:
            self.first_poll = now
        if progress.phase == "starting" and progress.done == progress.total:
            self.all_up = now


def _fleet(home: Path, count: int, backend: str, manager: UserManager | None) -> tuple[Lifecycle, Path, Phases]:
    log_dir = home / "starts"
    log_dir.mkdir(parents=True)
    paths = FleetPaths.resolve(home)
    paths.roster.parent.mkdir(parents=True)
    paths.roster.write_text(_roster([f"agent{i}" for i in range(count)], log_dir))
    phases = Phases()
    fleet = open_fleet(
        paths,
        load_roster(paths.roster),
        backend=backend,
        unit_dir=manager.unit_dir if manager else None,
        timeout=UP_TIMEOUT_S,
        progress=phases.hook,
    )
    if backend == "systemd":
        fleet.install(enable=False)
    result = fleet.start()
    if not result.ok:
        raise RuntimeError(f"could not start {count} agents on {backend}: {result.failures[:3]}")
    return fleet, log_dir, phases


def _wait_all_up(fleet: Lifecycle, old: dict[str, int | None]) -> list[str]:
    """Poll until the holder is up and every agent runs a new agent process (in a new pane,
    or renewed in place by its supervisor; not timed); returns the agents still not up
    after :data:`SETTLE_TIMEOUT_S` (name and state)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        status = fleet.status()
        stuck = [
            f"{a.name} ({a.state}, {a.active_state}/{a.sub_state}, window {a.window})"
            for a in status.agents
            if not (a.up and a.agent_pid is not None and a.agent_pid != old.get(a.name))
        ]
        if (status.holder_up and not stuck) or time.monotonic() >= deadline:
            return stuck
        time.sleep(0.1)


def _reference_restart(fleet: Lifecycle) -> None:
    run = fleet.runner.run
    units = UnitNames.for_home(fleet.paths.home)
    for unit in [units.holder, *(units.agent(n) for n in fleet.roster.names())]:
        result = run(["systemctl", "--user", "restart", unit], timeout=120)
        if not result.ok:
            raise RuntimeError(result.stderr)
    run(["systemctl", "--user", "reset-failed"], timeout=120)


def _fleet_restart(fleet: Lifecycle) -> None:
    result = fleet.restart()
    if not result.ok:
        raise RuntimeError(f"restart failed: {[(a.name, a.error) for a in result.failures[:3]]}")


@dataclass
class Sample:
    seconds: float
    starts_per_agent: float
    first_poll: float | None = None
    all_up: float | None = None
    stuck: int = 0  # agents not up again SETTLE_TIMEOUT_S after the restart


def _timed(action: Callable[[Lifecycle], None], fleet: Lifecycle, log_dir: Path, phases: Phases) -> Sample:
    """One restart: seconds, mean starts per agent, and the engine's phase marks."""
    before = _starts(log_dir)
    old = {a.name: a.agent_pid for a in fleet.status().agents}
    phases.first_poll = phases.all_up = None
    phases.began = started = time.monotonic()
    action(fleet)
    elapsed = time.monotonic() - started
    stuck = _wait_all_up(fleet, old)
    if stuck:
        print(f"  !! {len(stuck)} agent(s) not up {SETTLE_TIMEOUT_S:g}s after the restart: {', '.join(stuck[:5])}")
    time.sleep(0.2)  # let any second start (the reference's) reach its log line
    after = _starts(log_dir)
    per_agent = statistics.mean(after[n] - before.get(n, 0) for n in after)
    if stuck:  # bring the fleet back (untimed) so the next sample starts from a running fleet
        _fleet_restart(fleet)
    return Sample(elapsed, per_agent, phases.first_poll, phases.all_up, len(stuck))


def _median(samples: list[Sample], key: Callable[[Sample], float | None]) -> float | None:
    values = [v for v in (key(s) for s in samples) if v is not None]
    return statistics.median(values) if values else None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _tmux_floor(count: int, runs: int) -> tuple[float, float]:
    """One tmux client creating ``count`` windows on a fresh server, and one killing them."""
    create, kill = [], []
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-floor-"))
    socket = str(root / "tmux.sock")
    tmux = ["tmux", "-S", socket, "-f", "/dev/null"]
    try:
        for _ in range(runs):
            holder = ["new-session", "-d", "-s", "fleet", "-n", "_holder", "sleep", "infinity"]
            subprocess.run([*tmux, *holder], check=True)
            commands: list[str] = []
            for i in range(count):
                commands += ["new-window", "-d", "-t", "=fleet:", "-n", f"w{i}", "--", "sleep", "100000", ";"]
            started = time.monotonic()
            subprocess.run([*tmux, *commands[:-1]], check=True)
            create.append(time.monotonic() - started)
            kills: list[str] = []
            for i in range(count):
                kills += ["kill-window", "-t", f"=fleet:=w{i}", ";"]
            started = time.monotonic()
            subprocess.run([*tmux, *kills[:-1]], check=True)
            kill.append(time.monotonic() - started)
            _kill_server(tmux)
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    return statistics.median(create), statistics.median(kill)


def _kill_server(tmux: list[str]) -> None:
    """Kill the server and return once its process is gone: ``kill-server`` returns before
    the server exits, and a client started meanwhile on the same socket reaches the dying
    server ("server exited unexpectedly": the run that crashed before measuring tmux)."""
    pid = subprocess.run([*tmux, "display-message", "-p", "#{pid}"], capture_output=True, text=True, check=False)
    subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
    if not pid.stdout.strip().isdigit():
        return
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while _running(int(pid.stdout)) and time.monotonic() < deadline:
        time.sleep(0.01)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has: its socket is closed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _use_manager(manager: UserManager) -> None:
    """Point this process (and so open_fleet's runner) at the private manager only."""
    os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
    os.environ.update(manager.env)


def run(quick: bool = False) -> None:
    booted = boot()
    if isinstance(booted, str):
        print(f"fleet benchmark skipped: {booted}")
        return
    manager = booted
    saved = dict(os.environ)
    _use_manager(manager)
    sizes = [1, 10, 50] if quick else [1, 10, 50, 200]
    runs = 1 if quick else 3
    try:
        print(f"fleet restart benchmark (median of {runs}; private user manager, tmux {_tmux_version()})")
        print("systemd backend: reference = serial `systemctl restart` (holder, then each agent); fleet = restart()")
        print(
            f"{'N':>4} {'reference ms':>13} {'starts/agent':>13} {'fleet ms':>9} {'starts/agent':>13} "
            f"{'speed-up':>9} {'requests+1st poll':>18} {'all up':>7}"
        )
        for count in sizes:
            home = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
            try:
                fleet, log_dir, phases = _fleet(home, count, "systemd", manager)
                ref = [_timed(_reference_restart, fleet, log_dir, phases) for _ in range(runs)]
                ours = [_timed(_fleet_restart, fleet, log_dir, phases) for _ in range(runs)]
                ref_s = _median(ref, lambda s: s.seconds) or 0.0
                our_s = _median(ours, lambda s: s.seconds) or 0.0
                record.figure(f"systemd restart N={count}: reference", "ms", (s.seconds * 1000 for s in ref))
                record.figure(f"systemd restart N={count}: fleet", "ms", (s.seconds * 1000 for s in ours))
                print(
                    f"{count:>4} {ref_s * 1000:>13.0f} {ref[-1].starts_per_agent:>13.2f} {our_s * 1000:>9.0f} "
                    f"{ours[-1].starts_per_agent:>13.2f} {ref_s / our_s:>8.1f}x "
                    f"{_ms(_median(ours, lambda s: s.first_poll)):>18} {_ms(_median(ours, lambda s: s.all_up)):>7}",
                    flush=True,
                )
                if count == sizes[-1]:
                    verdict = "meets" if ref_s / our_s >= TARGET_SPEEDUP else "MISSES"
                    print(f"  N={count}: {ref_s / our_s:.2f}x {verdict} the {TARGET_SPEEDUP}x target of issue 22")
                    _status_bench(fleet)
                fleet.uninstall()
            finally:
                subprocess.run(
                    ["tmux", "-S", str(home / "fleet" / "run" / "tmux.sock"), "kill-server"],
                    capture_output=True,
                    check=False,
                )
                shutil.rmtree(home, ignore_errors=True)
        _tmux_bench(sizes[-1], runs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        manager.stop()


def _tmux_bench(count: int, runs: int) -> None:
    """The tmux backend's whole-fleet restart at ``count`` against its floor."""
    print(f"tmux backend, N={count} (median of {runs})")
    create, kill = _tmux_floor(count, runs)
    home = Path(tempfile.mkdtemp(prefix="fleet-bench-tmux-"))
    try:
        fleet, log_dir, phases = _fleet(home, count, "tmux", None)
        ours = [_timed(_fleet_restart, fleet, log_dir, phases) for _ in range(runs)]
        our_s = _median(ours, lambda s: s.seconds) or 0.0
        record.figure(f"tmux restart N={count}: floor (create windows)", "ms", [create * 1000])
        record.figure(f"tmux restart N={count}: fleet", "ms", (s.seconds * 1000 for s in ours))
        print(f"  floor: one tmux client creating {count} windows         {create * 1000:>6.0f} ms")
        print(f"  floor: one tmux client killing them                     {kill * 1000:>6.0f} ms")
        print(
            f"  Lifecycle.restart() (tmux backend)                      {our_s * 1000:>6.0f} ms  "
            f"({our_s / create:.1f}x the create floor; stop+requests until 1st start poll "
            f"{_ms(_median(ours, lambda s: s.first_poll))} ms, all up {_ms(_median(ours, lambda s: s.all_up))} ms; "
            f"starts/agent {ours[-1].starts_per_agent:.2f})",
            flush=True,
        )
        fleet.stop()
    finally:
        subprocess.run(
            ["tmux", "-S", str(home / "fleet" / "run" / "tmux.sock"), "kill-server"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)


def _status_bench(fleet: Lifecycle) -> None:
    count = len(fleet.roster.agents)
    print(f"status of {count} agents (median of 10)")
    samples = []
    for _ in range(10):
        started = time.monotonic()
        fleet.status()
        samples.append(time.monotonic() - started)
    record.figure(f"systemd status N={count}", "ms", (s * 1000 for s in samples))
    print(f"  Lifecycle.status() (one tmux call + one list-units)  {statistics.median(samples) * 1000:>6.0f} ms")
    serial = []
    for _ in range(3):
        started = time.monotonic()
        units = UnitNames.for_home(fleet.paths.home)
        for name in fleet.roster.names():
            fleet.runner.run(["systemctl", "--user", "is-active", units.agent(name)])
        serial.append(time.monotonic() - started)
    print(f"  {count} x systemctl is-active (serial)                 {statistics.median(serial) * 1000:>6.0f} ms")


def _tmux_version() -> str:
    return subprocess.run(["tmux", "-V"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    run(quick="--quick" in sys.argv)
