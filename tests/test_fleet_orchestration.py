"""Orchestration order on the systemd backend with a fake runner: the reference's fleet
scenarios, ported to the lifecycle engine.

These check *which commands run in which order*; the behaviour of the real manager and
tmux is covered by test_fleet_systemd.py, the engine's waits by test_engine_unit.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fleetlib import pane
from fleetlib.backend_systemd import SystemdBackend
from fleetlib.backend_tmux import TmuxBackend
from fleetlib.engine import Lifecycle
from fleetlib.errors import FleetError
from fleetlib.lock import STALE_S, restart_lock_path
from fleetlib.paths import FleetPaths
from fleetlib.roster import parse_roster
from fleetlib.runner import DryRunRunner, Runner
from fleetlib.systemd import UnitNames
from tests.fakes import FakeClock, FakeRunner

ROSTER = "version: 1\nagents:\n  - name: coder0\n    runtime: codex\n"
TWO = ROSTER + "  - name: coder1\n    runtime: claude\n  - name: coder2\n    runtime: gemini\n"


def units_of(home: Path) -> tuple[str, list[str]]:
    """The holder and the three coders' units of the fleet at ``home`` (named for the home)."""
    names = UnitNames.for_home(home)
    return names.holder, [names.agent(f"coder{index}") for index in range(3)]


def make_fleet(home: Path, runner: Runner, text: str = ROSTER, **lock_options: object) -> Lifecycle:
    """A Lifecycle on the systemd backend with ``runner``, its units "installed"."""
    paths = FleetPaths.resolve(home)
    paths.roster.parent.mkdir(parents=True, exist_ok=True)
    paths.roster.write_text(text)
    roster = parse_roster(text, str(paths.roster))
    clock = FakeClock()
    backend = SystemdBackend(
        paths=paths,
        roster=roster,
        runner=runner,
        tmux_bin="/usr/bin/tmux",
        units_at=home / "units",
        environ={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    for relative, content in backend.desired_unit_files().items():
        (home / "units" / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / "units" / relative).write_text(content)
    if isinstance(runner, FakeRunner):
        runner.run_dir = paths.run_dir
    options: dict[str, object] = {"log": lambda _: None, **lock_options}
    return Lifecycle(
        paths=paths,
        roster=roster,
        runner=runner,
        primitives=backend,
        sleep=clock.sleep,
        clock=clock,
        lock_options=options,
        timeout=30,
    )


def hold_fresh_lock(home: Path, content: str | None = None) -> Path:
    """Another restart's lock (no host line: its owner's liveness is unknown, so it is waited for)."""
    path = restart_lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(content or f"4242\n{int(time.time() * 1000)}\n")
    return path


def test_reentry_guard_waits_for_in_flight_restart_before_any_systemctl_call(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner()
    lock = hold_fresh_lock(tmp_path)

    def sleep(_: float) -> None:
        runner.events.append("sleep")
        lock.unlink(missing_ok=True)  # the in-flight restart finishes

    result = make_fleet(tmp_path, runner, sleep=sleep).restart()
    assert result.ok
    assert runner.events[0] == "sleep"
    assert runner.events.index("sleep") < runner.events.index(f"run:restart {holder}")
    assert f"run:start {agents[0]}" in runner.events
    assert not lock.exists()


def test_breaks_a_stale_restart_lock_and_restarts_without_waiting(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner()
    lock = hold_fresh_lock(tmp_path, f"4242\n{int((time.time() - STALE_S - 1) * 1000)}\n")
    sleeps: list[float] = []
    logged: list[str] = []
    result = make_fleet(tmp_path, runner, sleep=sleeps.append, log=logged.append).restart()
    assert result.ok
    assert sleeps == []
    assert any("stale" in line for line in logged)
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "restart", holder],
        ["systemctl", "--user", "start", agents[0]],
    ]
    assert not lock.exists()


def test_sequential_restarts_both_run_fully_without_waiting(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner()
    sleeps: list[float] = []
    fleet = make_fleet(tmp_path, runner, sleep=sleeps.append)
    first, second = fleet.restart(), fleet.restart()
    assert first.ok
    assert second.ok
    assert sleeps == []
    assert runner.systemctl_calls() == 2 * [
        ["systemctl", "--user", "restart", holder],
        ["systemctl", "--user", "start", agents[0]],
    ]


def test_single_agent_restart_is_guarded_by_the_restart_lock(tmp_path: Path) -> None:
    agents = units_of(tmp_path)[1]
    runner = FakeRunner()
    fleet = make_fleet(tmp_path, runner)
    assert fleet.start().ok
    runner.calls.clear()
    lock = hold_fresh_lock(tmp_path)

    def sleep(_: float) -> None:
        runner.events.append("sleep")
        lock.unlink(missing_ok=True)

    fleet.lock_options["sleep"] = sleep
    runner.events.clear()
    result = fleet.restart("coder0")
    assert result.ok, result.failures
    assert [a.action for a in result.agents] == ["restarted"]
    assert result.holder is None
    assert runner.events[0] == "sleep"
    # stop, wait until gone, then a fresh start: the holder is never touched
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "stop", agents[0]],
        ["systemctl", "--user", "restart", agents[0]],
    ]


def test_whole_fleet_restart_restarts_each_agent_once_via_the_holder(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner()
    fleet = make_fleet(tmp_path, runner, TWO)
    assert fleet.start().ok
    before = dict(runner.starts)
    runner.calls.clear()
    result = fleet.restart()
    assert result.ok
    assert result.holder == "restarted"
    assert [a.action for a in result.agents] == ["restarted"] * 3
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "restart", holder],
        ["systemctl", "--user", "start", *agents],  # merged into the restart jobs (starts those that were down)
    ]
    assert {name: runner.starts[name] - before[name] for name in before} == {"coder0": 1, "coder1": 1, "coder2": 1}
    resets = [c for c in runner.calls if "reset-failed" in c]
    assert resets == [["systemctl", "--user", "reset-failed", holder, *agents]]


def test_whole_fleet_restart_starts_agents_that_were_down_once(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = make_fleet(tmp_path, runner, TWO).restart()
    assert result.ok
    assert runner.starts == {"coder0": 1, "coder1": 1, "coder2": 1}


def test_start_starts_only_what_is_down_and_waits_until_each_is_up(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner()
    fleet = make_fleet(tmp_path, runner, TWO)
    assert fleet.start("coder1").ok
    runner.calls.clear()
    result = fleet.start()
    assert result.ok
    assert {a.name: a.action for a in result.agents} == {
        "coder0": "started",
        "coder1": "unchanged",
        "coder2": "started",
    }
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "start", holder],
        ["systemctl", "--user", "restart", agents[0], agents[2]],
    ]
    assert all(a.seconds >= 1.0 for a in result.agents if a.action == "started")  # the start grace


def test_fleet_stop_attempts_every_agent_and_the_holder_even_when_an_agent_stop_fails(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    runner = FakeRunner(fail=lambda argv: "stop" in argv and agents[1] in argv)
    fleet = make_fleet(tmp_path, runner, TWO)
    assert fleet.start().ok
    result = fleet.stop()
    assert not result.ok
    outcomes = {a.name: a for a in result.agents}
    assert outcomes["coder1"].action == "failed"
    assert "Operation refused" in (outcomes["coder1"].error or "")
    assert outcomes["coder0"].action == outcomes["coder2"].action == "stopped"
    assert result.holder == "stopped"
    stops = [c[3:] for c in runner.systemctl_calls() if c[2] == "stop"]
    attempted = {unit for units in stops for unit in units}
    assert attempted == {*agents, holder}
    assert [holder] in stops  # asked on its own after the batch was refused


def test_unknown_agent_and_missing_units_are_user_errors(tmp_path: Path) -> None:
    holder = units_of(tmp_path)[0]
    runner = FakeRunner()
    fleet = make_fleet(tmp_path, runner)
    with pytest.raises(FleetError, match="unknown agent 'ghost'") as unknown:
        fleet.restart("ghost")
    assert unknown.value.exit_code == 2
    (tmp_path / "units" / holder).unlink()
    with pytest.raises(FleetError, match=r"run `fleet install`") as caught:
        fleet.start()
    assert caught.value.exit_code == 2
    assert runner.calls == []
    assert not restart_lock_path(tmp_path).exists()


def test_an_agent_added_to_the_roster_without_install_is_a_user_error(tmp_path: Path) -> None:
    agents = units_of(tmp_path)[1]
    fleet = make_fleet(tmp_path, FakeRunner())
    (tmp_path / "units" / f"{agents[0]}.d" / "50-fleet-roster.conf").unlink()
    with pytest.raises(FleetError, match=r"agent\(s\) coder0 are not installed") as caught:
        fleet.restart()
    assert caught.value.exit_code == 2


def test_dry_run_prints_commands_runs_none_and_says_would(tmp_path: Path) -> None:
    holder, agents = units_of(tmp_path)
    printed: list[str] = []
    # A dry run reads the fleet as it is (here: a fake manager where nothing runs).
    fleet = make_fleet(tmp_path, DryRunRunner(echo=printed.append, reader=FakeRunner()), TWO)
    restart = fleet.restart()
    assert restart.dry_run
    assert [a.action for a in restart.agents] == ["would restart"] * 3
    assert restart.holder == "would restart"
    assert printed[0] == f"would run: systemctl --user reset-failed {holder} {' '.join(agents)}"
    assert f"would run: systemctl --user --no-block restart {holder}" in printed
    assert restart.commands == [line.removeprefix("would run: ").split() for line in printed]
    stop = fleet.stop("coder1")
    assert [a.action for a in stop.agents] == ["unchanged"]  # it is not running: a stop would do nothing
    assert stop.holder is None
    start = fleet.start()
    assert [a.action for a in start.agents] == ["would start"] * 3
    assert not restart_lock_path(tmp_path).exists()
    assert not (tmp_path / "fleet" / "run" / "tmux.sock").exists()


@pytest.mark.parametrize("backend", ["systemd", "tmux"])
def test_a_glance_asks_neither_the_manager_nor_the_tmux_server(tmp_path: Path, backend: str) -> None:
    """While 200 agents start, the manager and the tmux server are both busy starting them
    (one window listing took seconds): what a start's wait glances at between its full looks
    is the supervisors' exec records alone, no command at all, on either backend."""
    runner = FakeRunner()
    fleet = make_fleet(tmp_path, runner, TWO)
    if backend == "tmux":
        fleet = replace(fleet, primitives=TmuxBackend(paths=fleet.paths, roster=fleet.roster, runner=runner))
    run_dir = fleet.paths.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    pane.exec_record_path(run_dir, "coder0").write_text(f"4242 {os.getpid()}\n")  # a live agent
    pane.exec_record_path(run_dir, "coder1").write_text(f"4343 {gone.pid}\n")  # its agent exited
    rows = fleet.primitives.glance(["coder0", "coder1", "coder2"])
    assert runner.calls == []
    assert (rows["coder0"].state, rows["coder0"].pane_pid, rows["coder0"].agent_pid) == ("running", 4242, os.getpid())
    assert rows["coder0"].agent_since is not None
    assert (rows["coder1"].state, rows["coder1"].pane_pid, rows["coder1"].agent_pid) == ("restarting", 4343, None)
    assert (rows["coder2"].state, rows["coder2"].window) == ("stopped", False)
