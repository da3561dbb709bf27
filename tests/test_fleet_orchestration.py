"""Orchestration order with a fake runner: the reference's fleet scenarios, ported.

These check *which commands run in which order*; the behaviour of the real manager and
tmux is covered by test_fleet_systemd.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.fleet import Fleet
from fleetlib.lock import STALE_S, restart_lock_path
from fleetlib.paths import FleetPaths
from fleetlib.roster import parse_roster
from fleetlib.runner import DryRunRunner
from tests.fakes import FakeRunner

ROSTER = "version: 1\ntransport: tmux\nagents:\n  - name: coder0\n    runtime: codex\n"
TWO = ROSTER + "  - name: coder1\n    runtime: claude\n  - name: coder2\n    runtime: gemini\n"


def make_fleet(home: Path, runner: object, text: str = ROSTER, **lock_options: object) -> Fleet:
    paths = FleetPaths.resolve(home)
    paths.roster.parent.mkdir(parents=True, exist_ok=True)
    paths.roster.write_text(text)
    fleet = Fleet(
        paths=paths,
        roster=parse_roster(text, str(paths.roster)),
        runner=runner,  # type: ignore[arg-type]
        unit_dir=home / "units",
        tmux_bin="/usr/bin/tmux",
        sleep=lambda _: None,
        lock_options=dict(lock_options),
    )
    for relative, content in fleet.desired_files().items():  # "installed"
        (fleet.unit_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (fleet.unit_dir / relative).write_text(content)
    return fleet


def hold_fresh_lock(home: Path, content: str | None = None) -> Path:
    path = restart_lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content or f"4242\n{int(time.time() * 1000)}\n")
    return path


def test_reentry_guard_waits_for_in_flight_restart_before_any_systemctl_call(tmp_path: Path) -> None:
    runner = FakeRunner()
    lock = hold_fresh_lock(tmp_path)

    def sleep(_: float) -> None:
        runner.events.append("sleep")
        lock.unlink(missing_ok=True)  # the in-flight restart finishes

    make_fleet(tmp_path, runner, sleep=sleep).restart()
    assert runner.events[0] == "sleep"
    assert "run:restart mosaic-tmux-holder.service" in runner.events
    assert "run:start mosaic-agent@coder0.service" in runner.events
    assert not lock.exists()


def test_breaks_a_stale_restart_lock_and_restarts_without_waiting(tmp_path: Path) -> None:
    runner = FakeRunner()
    lock = hold_fresh_lock(tmp_path, f"4242\n{int((time.time() - STALE_S - 1) * 1000)}\n")
    sleeps: list[float] = []
    make_fleet(tmp_path, runner, sleep=sleeps.append, log=lambda _: None).restart()
    assert sleeps == []
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "restart", "mosaic-tmux-holder.service"],
        ["systemctl", "--user", "start", "mosaic-agent@coder0.service"],
    ]
    assert not lock.exists()


def test_sequential_restarts_both_run_fully_without_waiting(tmp_path: Path) -> None:
    runner = FakeRunner()
    sleeps: list[float] = []
    fleet = make_fleet(tmp_path, runner, sleep=sleeps.append)
    fleet.restart()
    fleet.restart()
    assert sleeps == []
    assert runner.systemctl_calls() == 2 * [
        ["systemctl", "--user", "restart", "mosaic-tmux-holder.service"],
        ["systemctl", "--user", "start", "mosaic-agent@coder0.service"],
    ]


def test_single_agent_restart_is_guarded_by_the_restart_lock(tmp_path: Path) -> None:
    runner = FakeRunner()
    lock = hold_fresh_lock(tmp_path)

    def sleep(_: float) -> None:
        runner.events.append("sleep")
        lock.unlink(missing_ok=True)

    make_fleet(tmp_path, runner, sleep=sleep).restart("coder0")
    assert runner.events[0] == "sleep"
    assert runner.systemctl_calls() == [["systemctl", "--user", "restart", "mosaic-agent@coder0.service"]]


def test_whole_fleet_restart_restarts_each_agent_once_via_the_holder(tmp_path: Path) -> None:
    runner = FakeRunner()
    make_fleet(tmp_path, runner, TWO).restart()
    agents = ["mosaic-agent@coder0.service", "mosaic-agent@coder1.service", "mosaic-agent@coder2.service"]
    assert runner.systemctl_calls() == [
        ["systemctl", "--user", "restart", "mosaic-tmux-holder.service"],
        ["systemctl", "--user", "start", *agents],  # a no-op for agents the holder already restarted
    ]
    resets = [c for c in runner.calls if "reset-failed" in c]
    assert resets == [["systemctl", "--user", "reset-failed", "mosaic-tmux-holder.service", *agents]]


def test_fleet_stop_attempts_every_agent_and_the_holder_even_when_an_agent_stop_fails(tmp_path: Path) -> None:
    runner = FakeRunner(fail=lambda argv: argv[2] == "stop" and "mosaic-agent@coder1.service" in argv)
    fleet = make_fleet(tmp_path, runner, TWO)
    fleet.start()
    with pytest.raises(FleetOperationError, match="stop failed for 1 unit") as caught:
        fleet.stop()
    assert "coder1" in str(caught.value)
    stops = [c[3:] for c in runner.systemctl_calls() if c[2] == "stop"]
    attempted = {unit for units in stops for unit in units}
    assert attempted == {
        "mosaic-agent@coder0.service",
        "mosaic-agent@coder1.service",
        "mosaic-agent@coder2.service",
        "mosaic-tmux-holder.service",
    }
    assert stops[-1] == ["mosaic-tmux-holder.service"]


def test_unknown_agent_and_missing_units_are_user_errors(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, FakeRunner())
    with pytest.raises(FleetError, match="unknown agent 'ghost'"):
        fleet.restart("ghost")
    (fleet.unit_dir / "mosaic-tmux-holder.service").unlink()
    with pytest.raises(FleetError, match=r"run `inv fleet\.install`") as caught:
        fleet.start()
    assert caught.value.exit_code == 2


def test_dry_run_prints_commands_and_runs_none(tmp_path: Path) -> None:
    printed: list[str] = []
    fleet = make_fleet(tmp_path, DryRunRunner(echo=printed.append), TWO)
    fleet.restart()
    fleet.stop()
    assert printed[0].startswith("would run: systemctl --user reset-failed")
    assert "would run: systemctl --user restart mosaic-tmux-holder.service" in printed
    assert not restart_lock_path(tmp_path).exists()
    (fleet.unit_dir / "mosaic-agent@.service").unlink()
    lines = fleet.install()
    assert any(line.startswith("would write") for line in lines)
    assert not (fleet.unit_dir / "mosaic-agent@.service").exists()
