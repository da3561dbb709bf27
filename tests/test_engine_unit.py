"""The lifecycle engine's policy against an in-memory backend, on a fake clock.

Every wait, grace period and timeout runs on :class:`~tests.fakes.FakeClock`, so these
tests take milliseconds. The lock is the real one (a private home per test); the marked
process sweep (``fleetlib.procs.marked``/``signal_all``) is replaced per test with a model
of processes that outlive their window.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from fleetlib import procs
from fleetlib.engine import GLANCE_SHARE, KILL_GRACE_S, POLL_S, Lifecycle
from fleetlib.errors import FleetOperationError
from fleetlib.lock import LeaseLost, LockTimeout, restart_lock_path
from fleetlib.paths import FleetPaths
from fleetlib.roster import parse_roster
from tests.fakes import FakeAgent, FakeBackend, FakeClock

GRACE = 1.0
STOP_TIMEOUT = 3.0


def roster_text(names: Iterable[str], **fields: object) -> str:
    extra = "".join(f"    {key}: {value}\n" for key, value in fields.items())
    body = "".join(
        f"  - name: {name}\n    runtime: custom\n    command: [nope, --flag]\n"
        f"    stop_timeout: {STOP_TIMEOUT:g}\n    start_grace: {GRACE:g}\n{extra}"
        for name in names
    )
    return "version: 1\nagents:\n" + body


class Fleet:
    """A Lifecycle over a FakeBackend, with the pieces a test pokes at."""

    def __init__(self, home: Path, names: list[str], *, fast_restart: bool = False, timeout: float = 10.0) -> None:
        self.home = home
        self.clock = FakeClock()
        paths = FleetPaths.resolve(home)
        paths.roster.parent.mkdir(parents=True, exist_ok=True)
        text = roster_text(names)
        paths.roster.write_text(text)
        self.backend = FakeBackend(self.clock, {name: FakeAgent(name) for name in names}, fast_restart=fast_restart)
        self.lifecycle = Lifecycle(
            paths=paths,
            roster=parse_roster(text, str(paths.roster)),
            runner=_NoRunner(),  # type: ignore[arg-type]
            primitives=self.backend,
            sleep=self.clock.sleep,
            clock=self.clock,
            wall_clock=self.clock,  # the exec records' times are fake times too
            timeout=timeout,
        )

    def agent(self, name: str) -> FakeAgent:
        return self.backend.agents[name]

    def elapsed(self, since: float) -> float:
        return self.clock.now - since


class _NoRunner:
    """The engine itself never runs a command; any call is a test failure."""

    dry_run = False

    def run(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the engine ran a command itself")

    run_all = interactive = run

    def signal(self, pids: list[int], *signums: int) -> None:
        for signum in signums:
            procs.signal_all(pids, signum)  # the model's, when a test replaced it

    def fenced(self, lease: object) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class Processes:
    """A model of the host's marked processes: ``alive[marker]`` pids; SIGKILL removes them
    unless the marker is ``unkillable``; every signal is recorded with the fake time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.alive: dict[str, list[int]] = {}
        self.unkillable: set[str] = set()
        self.signals: list[tuple[float, int, int]] = []

    def marked(self, markers: Iterable[str]) -> dict[str, list[int]]:
        return {marker: list(self.alive.get(marker, [])) for marker in markers}

    def signal_all(self, pids: Iterable[int], signum: int) -> None:
        for pid in pids:
            self.signals.append((self.clock.now, pid, signum))
            if signum == signal.SIGKILL:
                for marker, alive in self.alive.items():
                    if pid in alive and marker not in self.unkillable:
                        alive.remove(pid)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path, ["a1", "a2"])


@pytest.fixture
def processes(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Processes:
    model = Processes(fleet.clock)
    monkeypatch.setattr(procs, "marked", model.marked)
    monkeypatch.setattr(procs, "signal_all", model.signal_all)
    return model


def marker_of(fleet: Fleet, name: str) -> str:
    return procs.marker(name, str(fleet.lifecycle.paths.tmux_socket))


# --------------------------------------------------------------------------- start means up


def test_start_waits_out_the_grace_period_with_a_new_pid(fleet: Fleet, processes: Processes) -> None:
    began = fleet.clock.now
    result = fleet.lifecycle.start()
    assert result.ok
    assert result.holder == "started"
    for outcome in result.agents:
        assert outcome.action == "started"
        assert outcome.new_pid == fleet.agent(outcome.name).pid
        assert GRACE <= outcome.seconds < GRACE + 2 * POLL_S
    assert fleet.elapsed(began) < GRACE + 2 * POLL_S


def test_an_agent_that_dies_at_start_fails_at_once_naming_command_status_and_output(
    fleet: Fleet, processes: Processes
) -> None:
    agent = fleet.agent("a2")
    agent.on_launch, agent.exit_code = "dies", 127
    agent.output = "some banner\nfleet: nope: command not found\n"
    result = fleet.lifecycle.start()
    assert not result.ok
    outcomes = {a.name: a for a in result.agents}
    assert outcomes["a1"].action == "started"
    failed = outcomes["a2"]
    assert failed.action == "failed"
    assert failed.seconds < POLL_S  # judged at the first look, not after the grace or the timeout
    assert failed.exit_status == 127
    assert "exit status 127" in (failed.error or "")
    assert "command `nope --flag`" in (failed.error or "")
    assert "last output: some banner | fleet: nope: command not found" in (failed.error or "")
    assert failed.output == "some banner\nfleet: nope: command not found"


def test_an_agent_that_dies_during_its_grace_period_is_not_counted_started(fleet: Fleet, processes: Processes) -> None:
    agent = fleet.agent("a1")
    agent.dies_after, agent.exit_code, agent.output = 0.3, 1, "boom"
    result = fleet.lifecycle.start("a1")
    (outcome,) = result.agents
    assert outcome.action == "failed"
    assert 0.3 <= outcome.seconds < 0.3 + 2 * POLL_S
    assert "exited right after starting (exit status 1)" in (outcome.error or "")
    assert "last output: boom" in (outcome.error or "")


def test_the_grace_counts_from_the_agents_exec_not_from_its_supervisors_start(
    fleet: Fleet, processes: Processes
) -> None:
    agent = fleet.agent("a1")
    agent.exec_after = 2.5  # a slow supervisor: its window runs, its agent not yet
    (outcome,) = fleet.lifecycle.start("a1").agents
    assert outcome.action == "started"
    assert 2.5 + GRACE <= outcome.seconds < 2.5 + GRACE + 2 * POLL_S


def test_the_grace_counts_from_the_exec_record_not_from_the_poll_that_first_saw_it(
    fleet: Fleet, processes: Processes
) -> None:
    """Each look takes 0.4 s (a manager busy starting 200 units): the agent exec'd at 0.5 s
    is first seen by the look that began at 0.8 s. Counted from that look it was up at the
    look of 2.4 s; counted from its exec record, at the look of 1.6 s."""
    fleet.backend.observe_cost = 0.4
    fleet.agent("a1").exec_after = 0.5
    began = fleet.clock.now
    (outcome,) = fleet.lifecycle.start("a1").agents
    assert outcome.action == "started"
    (launched,) = [when for when, call, _ in fleet.backend.calls if call == "launch"]
    up_after_exec = began + outcome.seconds - (launched + 0.5)
    assert GRACE <= up_after_exec <= GRACE + 2 * 0.4 + 1e-9, fleet.backend.calls


def test_looking_takes_at_most_half_the_wait(fleet: Fleet, processes: Processes) -> None:
    """A slow full look is followed by no other for as long as it took, not 50 ms: each one
    asks the manager, which is busy starting the very agents being waited for."""
    fleet.backend.observe_cost = 0.4
    fleet.agent("a1").exec_after = 3.0
    assert fleet.lifecycle.start("a1").ok
    (launched,) = [when for when, call, _ in fleet.backend.calls if call == "launch"]
    looks = [when for when, call, _ in fleet.backend.calls if call == "observe" and when > launched]
    assert len(looks) >= 2, fleet.backend.calls
    assert all(later - earlier >= 2 * 0.4 - 1e-9 for earlier, later in itertools.pairwise(looks)), looks


@pytest.mark.parametrize("operation", ["start", "restart"])
def test_a_busy_manager_is_asked_once_the_windows_show_every_grace_over(tmp_path: Path, operation: str) -> None:
    """Each full look takes 1.5 s (a manager busy starting 200 units) and the agents exec
    0.3 s after the request: the engine glances at the windows meanwhile and asks the
    manager once, when their grace is over, instead of asking while they come up and
    seeing them up only a look later."""
    fleet = Fleet(tmp_path, ["a1", "a2"], fast_restart=True)
    if operation == "restart":
        assert fleet.lifecycle.start().ok
    fleet.backend.observe_cost = 1.5
    for name in ("a1", "a2"):
        fleet.agent(name).exec_after = 0.3
    fleet.backend.calls.clear()
    assert getattr(fleet.lifecycle, operation)().ok
    (requested,) = [when for when, call, _ in fleet.backend.calls if call in ("launch", "restart_all")]
    looks = [when for when, call, _ in fleet.backend.calls if call == "observe" and when > requested]
    assert len(looks) == 1, fleet.backend.calls
    assert fleet.clock.now - requested <= 0.3 + GRACE + POLL_S + 1.5 + 1e-9


def test_the_full_look_comes_right_when_the_glanced_graces_are_over(fleet: Fleet, processes: Processes) -> None:
    """A glance that shows the agent exec'd says when its grace ends: the engine looks then,
    not at the next 50 ms tick after it."""
    fleet.agent("a1").exec_after = 0.33
    began = fleet.clock.now
    (outcome,) = fleet.lifecycle.start("a1").agents
    assert outcome.action == "started"
    (launched,) = [when for when, call, _ in fleet.backend.calls if call == "launch"]
    assert began + outcome.seconds == pytest.approx(launched + 0.33 + GRACE, abs=1e-9)


def test_a_slow_glance_is_taken_less_often(fleet: Fleet, processes: Processes) -> None:
    """A glance at 200 agents' records takes a while: the wait glances at most every
    GLANCE_SHARE times its cost, not every 50 ms (the engine competes for the CPU the
    starting agents need)."""
    fleet.backend.glance_cost = 0.02
    fleet.agent("a1").exec_after = 2.0
    assert fleet.lifecycle.start("a1").ok
    glances = [when for when, call, _ in fleet.backend.calls if call == "glance"]
    assert len(glances) >= 3, fleet.backend.calls
    spacing = [later - earlier for earlier, later in itertools.pairwise(glances)]
    assert all(gap >= GLANCE_SHARE * 0.02 - 1e-9 for gap in spacing), spacing


def test_a_unit_that_shows_no_window_is_still_looked_at(tmp_path: Path) -> None:
    """A glance shows nothing of an agent whose unit never opens its window: the manager is
    asked anyway, every STALL_S without news, so the wait still ends at its deadline with
    the unit's state."""
    fleet = Fleet(tmp_path, ["a1"], timeout=3.0)
    fleet.agent("a1").on_launch = "never"
    (outcome,) = fleet.lifecycle.start().agents
    assert outcome.action == "failed"
    looks = [when for when, call, _ in fleet.backend.calls if call == "observe"]
    assert len(looks) >= 3, fleet.backend.calls  # before, at least one while waiting, at the deadline


def test_an_agent_that_dies_right_after_a_slow_exec_fails_start(fleet: Fleet, processes: Processes) -> None:
    agent = fleet.agent("a1")
    agent.exec_after, agent.dies_after, agent.output = 2.5, 2.6, "boom"
    (outcome,) = fleet.lifecycle.start("a1").agents
    assert outcome.action == "failed"
    assert "exited right after starting" in (outcome.error or "")


def test_an_agent_never_execed_is_not_up_and_the_timeout_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = Fleet(tmp_path, ["a1"], timeout=2.0)
    monkeypatch.setattr(procs, "marked", Processes(fleet.clock).marked)
    fleet.agent("a1").exec_after = 1e9
    (outcome,) = fleet.lifecycle.start().agents
    assert outcome.action == "failed"
    assert "its supervisor has not started the agent yet" in (outcome.error or "")


def test_start_of_running_agents_changes_nothing(fleet: Fleet, processes: Processes) -> None:
    assert fleet.lifecycle.start().ok
    fleet.backend.calls.clear()
    result = fleet.lifecycle.start()
    assert [a.action for a in result.agents] == ["unchanged", "unchanged"]
    assert result.holder == "unchanged"
    assert fleet.backend.changes() == []


def test_single_agent_start_does_not_report_on_the_holder(fleet: Fleet, processes: Processes) -> None:
    """Like single-agent stop and restart: the holder is None when the operation was about
    one agent (results.OperationResult: "None when the operation did not concern it")."""
    result = fleet.lifecycle.start("a1")
    assert result.ok
    assert result.holder is None
    assert fleet.lifecycle.stop("a1").holder is None
    assert fleet.lifecycle.restart("a1").holder is None


# --------------------------------------------------------------------------- stop means gone


def test_stop_sends_kill_only_after_the_stop_timeout_and_returns_when_nothing_is_left(
    fleet: Fleet, processes: Processes
) -> None:
    assert fleet.lifecycle.start().ok
    processes.alive[marker_of(fleet, "a1")] = [501, 502]  # a setsid child ignoring TERM, and its child
    began = fleet.clock.now
    result = fleet.lifecycle.stop()
    assert result.ok
    assert [a.action for a in result.agents] == ["stopped", "stopped"]
    kills = [(at - began, pid) for at, pid, signum in processes.signals if signum == signal.SIGKILL]
    assert sorted(pid for _, pid in kills) == [501, 502]
    assert all(STOP_TIMEOUT <= at < STOP_TIMEOUT + 2 * POLL_S for at, _ in kills)
    assert {signum for _, _, signum in processes.signals} == {signal.SIGKILL}  # TERM is the backend's
    outcomes = {a.name: a for a in result.agents}
    assert outcomes["a2"].seconds < 2 * POLL_S  # nothing of a2 was left
    assert STOP_TIMEOUT <= outcomes["a1"].seconds < STOP_TIMEOUT + 3 * POLL_S


def test_a_stop_that_waited_for_the_lock_still_gives_its_agents_their_stop_timeout(
    fleet: Fleet, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop timeout counts from the stop signals, never from when the operation began:
    a stop queued behind another operation for longer than the timeout once KILLed at once."""
    assert fleet.lifecycle.start().ok
    processes.alive[marker_of(fleet, "a1")] = [501]  # ignores TERM
    take = fleet.lifecycle._take_lock

    def slow_lock() -> object:
        fleet.clock.advance(3 * STOP_TIMEOUT)  # another operation held the lock meanwhile
        return take()

    monkeypatch.setattr(fleet.lifecycle, "_take_lock", slow_lock)
    began = fleet.clock.now
    result = fleet.lifecycle.stop()
    assert result.ok
    locked = began + 3 * STOP_TIMEOUT
    kills = [at - locked for at, pid, signum in processes.signals if signum == signal.SIGKILL]
    assert kills
    assert all(STOP_TIMEOUT <= at < STOP_TIMEOUT + 2 * POLL_S for at in kills)


def test_stop_gives_up_on_an_unkillable_process_after_the_kill_grace(fleet: Fleet, processes: Processes) -> None:
    assert fleet.lifecycle.start().ok
    marker = marker_of(fleet, "a1")
    processes.alive[marker] = [777]
    processes.unkillable.add(marker)
    began = fleet.clock.now
    result = fleet.lifecycle.stop()
    outcomes = {a.name: a for a in result.agents}
    assert outcomes["a1"].action == "failed"
    assert "even after SIGKILL: pid 777" in (outcomes["a1"].error or "")
    assert outcomes["a2"].action == "stopped"
    assert STOP_TIMEOUT + KILL_GRACE_S <= fleet.elapsed(began) < STOP_TIMEOUT + KILL_GRACE_S + 2 * POLL_S


def test_stop_of_stopped_agents_changes_nothing(fleet: Fleet, processes: Processes) -> None:
    result = fleet.lifecycle.stop()
    assert [a.action for a in result.agents] == ["unchanged", "unchanged"]
    assert fleet.backend.changes() == []


def test_restart_starts_the_new_generation_only_after_the_old_one_is_gone(fleet: Fleet, processes: Processes) -> None:
    assert fleet.lifecycle.start().ok
    processes.alive[marker_of(fleet, "a1")] = [601]
    fleet.backend.calls.clear()
    result = fleet.lifecycle.restart()
    assert result.ok
    kill_at = next(at for at, pid, signum in processes.signals if pid == 601 and signum == signal.SIGKILL)
    launch_at = next(at for at, primitive, _ in fleet.backend.calls if primitive == "launch")
    assert kill_at < launch_at
    assert [p for p, _ in fleet.backend.changes()] == ["terminate", "cleanup", "launch"]


def test_restart_aborts_before_any_start_when_the_old_generation_cannot_be_stopped(
    fleet: Fleet, processes: Processes
) -> None:
    assert fleet.lifecycle.start().ok
    marker = marker_of(fleet, "a2")
    processes.alive[marker] = [888]
    processes.unkillable.add(marker)
    fleet.backend.calls.clear()
    with pytest.raises(FleetOperationError, match=r"nothing started: the old processes of agent\(s\) a2 did not stop"):
        fleet.lifecycle.restart()
    assert "launch" not in fleet.backend.primitives_called()


def test_restart_aborts_before_any_start_when_a_stop_is_refused(fleet: Fleet, processes: Processes) -> None:
    assert fleet.lifecycle.start().ok
    fleet.backend.refuse = {"a1": "Operation refused"}
    fleet.backend.calls.clear()
    with pytest.raises(FleetOperationError, match="could not stop a1: Operation refused"):
        fleet.lifecycle.restart()
    assert [p for p, _ in fleet.backend.changes()] == ["terminate"]


# --------------------------------------------------------------------------- the fenced lease


def _steal_lock(home: Path) -> None:
    restart_lock_path(home).write_text(f"4242\n{int(time.time() * 1000)}\nthief-token\n\n\n")


@pytest.mark.parametrize(
    ("operation", "setup"),
    [
        ("start", "never"),  # lost while waiting for agents to come up
        ("restart", "stubborn"),  # lost while waiting for the old generation to go
        ("stop", "stubborn"),
    ],
)
def test_a_lease_lost_mid_wait_stops_every_further_primitive_call(
    fleet: Fleet, processes: Processes, operation: str, setup: str
) -> None:
    if operation != "start":
        assert fleet.lifecycle.start().ok
        processes.alive[marker_of(fleet, "a1")] = [901]
        processes.unkillable.add(marker_of(fleet, "a1"))
    else:
        fleet.agent("a1").on_launch = "never"
    stolen_at: list[int] = []

    def steal() -> None:
        _steal_lock(fleet.home)
        stolen_at.append(len(fleet.backend.calls))

    fleet.clock.after(0.5, steal)
    with pytest.raises(LeaseLost, match="pid 4242") as lost:
        getattr(fleet.lifecycle, operation)()
    assert lost.value.exit_code == 1
    assert stolen_at, "the lock was never stolen: the operation did not wait"
    assert fleet.backend.calls[stolen_at[0] :] == []  # not even an observe after the loss
    assert "thief-token" in restart_lock_path(fleet.home).read_text()  # the new owner's lock stays


def test_a_lease_lost_before_the_first_change_changes_nothing(fleet: Fleet, processes: Processes) -> None:
    original = fleet.backend.observe

    def observe_then_lose(names: list[str]) -> object:
        status = original(names)
        _steal_lock(fleet.home)  # lost between looking and changing
        return status

    fleet.backend.observe = observe_then_lose  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        fleet.lifecycle.start()
    assert fleet.backend.changes() == []


def test_the_lease_is_refreshed_on_every_poll(fleet: Fleet, processes: Processes) -> None:
    """While the engine waits, the lock's timestamp keeps moving, so no waiter breaks it."""
    fleet.agent("a1").on_launch = "never"
    stamps: list[str] = []
    fleet.clock.at(fleet.clock.now + 0.5, lambda: stamps.append(restart_lock_path(fleet.home).read_text()))
    fleet.clock.at(fleet.clock.now + 1.5, lambda: stamps.append(restart_lock_path(fleet.home).read_text()))
    fleet.lifecycle.timeout = 2.0
    fleet.lifecycle.start()
    assert len(stamps) == 2
    first, second = (text.split("\n")[1] for text in stamps)
    assert int(second) >= int(first)
    assert stamps[0].split("\n")[2] == stamps[1].split("\n")[2]  # the same owner throughout
    assert not restart_lock_path(fleet.home).exists()  # released at the end


def test_the_lock_wait_is_bounded_by_lock_timeout_and_nothing_runs(fleet: Fleet, processes: Processes) -> None:
    restart_lock_path(fleet.home).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    restart_lock_path(fleet.home).write_text(f"4242\n{int(time.time() * 1000)}\n")
    fleet.lifecycle.lock_timeout = 0.3
    began = time.monotonic()
    with pytest.raises(LockTimeout, match="pid 4242"):
        fleet.lifecycle.restart()
    assert time.monotonic() - began < 5
    assert fleet.backend.primitives_called() == ["preflight"]


# --------------------------------------------------------------------------- the deadline


def test_the_wait_deadline_bounds_an_agent_that_never_comes_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, ["a1", "a2"], timeout=4.0)
    monkeypatch.setattr(procs, "marked", Processes(fleet.clock).marked)
    fleet.agent("a2").on_launch = "never"
    began = fleet.clock.now
    result = fleet.lifecycle.start()
    deadline = 4.0 + STOP_TIMEOUT  # the operation's timeout plus the agents' stop timeouts
    outcomes = {a.name: a for a in result.agents}
    assert outcomes["a1"].action == "started"
    assert outcomes["a2"].action == "failed"
    assert f"not up after {deadline:g}s (state starting" in (outcomes["a2"].error or "")
    assert deadline <= fleet.elapsed(began) < deadline + 2 * POLL_S


def test_no_wait_sleeps_past_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sleep is one poll; the number of polls is bounded by the deadline."""
    fleet = Fleet(tmp_path, ["a1"], timeout=2.0)
    model = Processes(fleet.clock)
    monkeypatch.setattr(procs, "marked", model.marked)
    monkeypatch.setattr(procs, "signal_all", model.signal_all)
    fleet.agent("a1").on_launch = "never"
    fleet.lifecycle.restart()
    assert set(fleet.clock.sleeps) == {POLL_S}
    assert sum(fleet.clock.sleeps) <= 2.0 + STOP_TIMEOUT + POLL_S


def test_whole_fleet_restart_takes_the_backends_fast_path_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, ["a1", "a2"], fast_restart=True)
    model = Processes(fleet.clock)
    monkeypatch.setattr(procs, "marked", model.marked)
    assert fleet.lifecycle.start().ok
    fleet.backend.calls.clear()
    result = fleet.lifecycle.restart()
    assert result.ok
    assert result.holder == "restarted"
    assert fleet.backend.changes() == [("restart_all", ("a1", "a2"))]


def test_a_unit_failed_by_the_old_generations_stop_is_not_the_new_generation_dying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, defect 14: under systemd the old generation of an agent that ignores TERM
    is killed at its stop timeout, which leaves its unit `failed` (Result=timeout), with no
    window, until the new start job runs behind the new holder. The restart waits for the
    new generation instead of reporting that state as the new one dying."""
    fleet = Fleet(tmp_path, ["a1", "a2"], fast_restart=True)
    monkeypatch.setattr(procs, "marked", Processes(fleet.clock).marked)
    assert fleet.lifecycle.start().ok
    backend, stubborn = fleet.backend, fleet.agent("a1")

    def restart_all(names: list[str]) -> None:
        backend.calls.append((fleet.clock.now, "restart_all", tuple(names)))
        stubborn.state, stubborn.pid, stubborn.pane_pid = "failed", None, None  # killed; its window gone
        backend._start(fleet.agent("a2"))
        fleet.clock.after(1.0, lambda: backend._start(stubborn))  # the new holder is up a second later

    monkeypatch.setattr(backend, "restart_all", restart_all)
    result = fleet.lifecycle.restart()
    assert result.ok, result.failures
    assert {a.name: a.action for a in result.agents} == {"a1": "restarted", "a2": "restarted"}
    assert result.agents[0].new_pid == stubborn.pid
