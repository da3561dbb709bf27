"""The lifecycle engine under faults (issue 10), on every backend each fault applies to.

Every test runs real processes: the engine in its own process (tests/fleet_driver.py, or
`inv`), real tmux on a private socket, and for the systemd backend the session's private
user manager. A witness independent of the code under test decides whether a guarantee
held: wrappers first on PATH log every tmux/systemctl call with the caller's pid, agents
log their own start and exit, and /proc is read by the test itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleetlib.backend_systemd import SystemdBackend
from fleetlib.backend_tmux import TmuxBackend
from fleetlib.engine import Backend, Lifecycle
from fleetlib.lock import LeaseLost
from fleetlib.paths import FleetPaths, default_unit_dir
from fleetlib.roster import load_roster
from fleetlib.runner import SubprocessRunner
from fleetlib.systemd import UnitNames
from tests.conftest import REPO, alive, booted_manager, eventually, run_inv
from tests.usermanager import UserManager

WRAPPED = ("tmux", "systemctl")
DATE = shutil.which("date") or "/bin/date"  # the witness's own clock, never a test's slow `date`
MUTATING_TMUX = ("new-session", "new-window", "kill-server", "kill-window")


@dataclass
class Fault:
    """One fleet home on one backend, with a witness log of every tmux/systemctl call."""

    root: Path
    backend: str
    manager: UserManager | None
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def witness(self) -> Path:
        return self.root / "witness.log"

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        if self.manager is not None:
            base.update(self.manager.env)
        else:
            base["XDG_RUNTIME_DIR"] = str(self.root / "runtime")
        base["PATH"] = f"{self.root / 'bin'}{os.pathsep}{base['PATH']}"
        base["MOSAIC_HOME"] = str(self.home)
        return base

    def setup(self) -> None:
        self.home.mkdir(parents=True)
        (self.root / "runtime").mkdir(mode=0o700)
        bindir = self.root / "bin"
        bindir.mkdir()
        for tool in WRAPPED:
            real = next(str(Path(d) / tool) for d in os.environ["PATH"].split(os.pathsep) if (Path(d) / tool).is_file())
            script = bindir / tool
            # A word written to `stop-at` stops the caller of the first call that has it as
            # an argument, before the call runs (see Fault.stop_caller_at).
            script.write_text(
                f'#!/bin/sh\nprintf "%s %s %s\\n" "$PPID" "$({DATE} +%s.%N)" "$*" >> {self.witness}\n'
                f"if [ -e {self.stop_at} ]; then\n"
                f'  word=$(cat {self.stop_at}); for arg in "$@"; do\n'
                f'    if [ "$arg" = "$word" ] && mv {self.stop_at} {self.stop_at}.taken 2>/dev/null; then kill -STOP $PPID; fi\n'
                f"  done\n"
                f"fi\n"
                f'exec {real} "$@"\n'
            )
            script.chmod(0o755)

    @property
    def stop_at(self) -> Path:
        return self.root / "stop-at"

    def stop_caller_at(self, word: str) -> None:
        """SIGSTOP the caller of the next tmux/systemctl call with ``word`` as an argument,
        just before that call runs (the call itself then runs while its caller is stopped)."""
        self.stop_at.write_text(word)

    def lifecycle(self, popen: Callable[..., subprocess.Popen[str]]) -> Lifecycle:
        """This fleet's engine in this very process (as open_fleet builds it for the driver),
        every command started through ``popen``."""
        env = self.env
        paths = FleetPaths.resolve(self.home)
        roster = load_roster(paths.roster)
        runner = SubprocessRunner(env=env, popen=popen)
        tmux_bin = str(self.root / "bin" / "tmux")  # the witness, as the driver finds it on PATH
        primitives: Backend
        if self.backend == "tmux":
            primitives = TmuxBackend(paths=paths, roster=roster, runner=runner, environ=env, tmux_bin=tmux_bin)
        else:
            units_at = default_unit_dir(env)
            primitives = SystemdBackend(
                paths=paths, roster=roster, runner=runner, environ=env, tmux_bin=tmux_bin, units_at=units_at
            )
        return Lifecycle(paths=paths, roster=roster, runner=runner, primitives=primitives, tmux_bin=tmux_bin)

    def roster(self, agents: str) -> None:
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("version: 1\nagents:\n" + agents)
        if self.backend == "systemd":
            self.ok("install")

    def drive(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tests.fleet_driver", *args, "--backend", self.backend],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_driver", *args, "--backend", self.backend],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def ok(self, *args: str) -> dict[str, object]:
        result = self.drive(*args)
        assert result.returncode == 0, f"{args}: {result.stderr} {result.stdout}"
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def inv(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_inv([*args, "--backend", self.backend], self.env, timeout=timeout)

    def status(self) -> dict[str, dict[str, object]]:
        return {row["name"]: row for row in json.loads(self.drive("status").stdout)}

    def calls(self, pid: int) -> list[tuple[float, str]]:
        """(time, argv) of every wrapped call made by process ``pid``."""
        found = []
        for line in self.witness.read_text().splitlines() if self.witness.exists() else []:
            caller, stamp, argv = line.split(" ", 2)
            if int(caller) == pid:
                found.append((float(stamp), argv))
        return found

    def cleanup(self) -> None:
        for proc in self.procs:
            with _suppress():
                os.kill(proc.pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        socket = self.home / "fleet" / "run" / "tmux.sock"
        server = subprocess.run(
            ["tmux", "-S", str(socket), "display", "-p", "#{pid}"], capture_output=True, text=True, check=False
        )
        if server.stdout.strip().isdigit():
            with _suppress():
                os.kill(int(server.stdout.strip()), signal.SIGCONT)
        if self.manager is not None:
            self.drive("uninstall", timeout=60)
            self.manager.systemctl("reset-failed")
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, check=False)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return isinstance(value, ProcessLookupError)


@pytest.fixture
def own_manager() -> Iterator[UserManager]:
    """A private user manager for this test alone: faults (paused owners, killed agents,
    frozen servers) must not leave anything behind for the next test."""
    yield from booted_manager()


@pytest.fixture(params=["tmux", pytest.param("systemd", marks=pytest.mark.systemd)])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    manager = request.getfixturevalue("own_manager") if request.param == "systemd" else None
    env = Fault(tmp_path, request.param, manager)
    env.setup()
    yield env
    env.cleanup()


@pytest.fixture
def tmux_fault(tmp_path: Path) -> Iterator[Fault]:
    env = Fault(tmp_path, "tmux", None)
    env.setup()
    yield env
    env.cleanup()


def agent(name: str, script: str, **keys: object) -> str:
    extra = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return f"  - name: {name}\n    runtime: custom\n    command: [sh, -c, {json.dumps(script)}]\n" + extra


# --------------------------------------------------------------------------- 1. a restart that lost the lock


def _resume_while_another_restart_holds_the_lock(fault: Fault, a: subprocess.Popen[str]) -> list[str]:
    """Start restart C (it owns the lock while A resumes), resume the stopped restart A, and
    check A ends with one "lost the fleet restart lock" line (exit 1) and C succeeds; returns
    the commands A issued after it was resumed."""
    c = fault.spawn("restart", "--max-wait", "30")
    eventually(lambda: bool(fault.calls(c.pid)), "C began")
    resumed_at = time.time()
    os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=60)
    assert a.returncode == 1, (out, err)
    assert "lost the fleet restart lock" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert c.wait(timeout=60) == 0, c.stderr.read() if c.stderr else ""
    return [argv for stamp, argv in fault.calls(a.pid) if stamp >= resumed_at]


def test_1_a_paused_restart_that_lost_the_lock_changes_nothing_when_it_resumes(fault: Fault) -> None:
    # Each agent takes 4 s to count as up, so a restart spends seconds inside its lease.
    fault.roster(agent("p1", "exec sleep 100000", start_grace=4))
    fault.ok("start")
    a = fault.spawn("restart", "--max-wait", "2")
    eventually(lambda: any("new-window" in c or "restart" in c for _, c in fault.calls(a.pid)), "A began")
    os.kill(a.pid, signal.SIGSTOP)
    paused_at = time.time()
    b = fault.drive("restart", "--max-wait", "2")  # breaks A's lock after 2 s without progress
    assert b.returncode == 0, b.stderr
    late = _resume_while_another_restart_holds_the_lock(fault, a)
    assert not [argv for argv in late if any(word in argv for word in (*MUTATING_TMUX, "--no-block"))], late
    assert paused_at < time.time()


@pytest.mark.systemd
def test_1_a_restart_stopped_inside_its_fast_path_issues_nothing_more_once_it_lost_the_lock(
    own_manager: UserManager, tmp_path: Path
) -> None:
    # The fast path of a whole-fleet restart is three commands: reset-failed, `restart` of the
    # holder, `start` of the agents. Stopped right at its `restart`, after its lease check,
    # the restart must not issue the `start` once resumed (the failure test 1 had under load).
    fault = Fault(tmp_path, "systemd", own_manager)
    fault.setup()
    try:
        fault.roster(agent("p1", "exec sleep 100000", start_grace=4))
        fault.ok("start")
        fault.roster(agent("p1", "exec sleep 100000", start_grace=4, env="{CHANGED: '1'}"))  # so, not in place
        fault.stop_caller_at("restart")
        a = fault.spawn("restart", "--max-wait", "2")
        eventually(lambda: Path(f"{fault.stop_at}.taken").exists() and _state(a.pid) == "T", "A stopped")
        assert fault.drive("restart", "--max-wait", "2").returncode == 0  # breaks A's lock
        assert _resume_while_another_restart_holds_the_lock(fault, a) == []
    finally:
        fault.cleanup()


CHANGES = [
    ("systemd", "reset-failed"),  # the first command after the engine's lease check
    ("systemd", "start"),  # the last command of the fast path
    ("systemd-in-place", "fleet-signal"),  # USR1 to the supervisor, the first change of a renewal
    ("tmux", "fleet-signal"),  # TERM to the agents' processes
    ("tmux", "kill-server"),
    ("tmux", "new-session"),  # after a list-windows within the same primitive
]


@pytest.mark.parametrize(
    ("backend", "word"),
    [pytest.param(b, w, marks=[pytest.mark.systemd] if b.startswith("systemd") else []) for b, w in CHANGES],
    ids=[f"{b}-{w}" for b, w in CHANGES],
)
def test_1_a_restart_paused_after_every_check_and_before_a_change_is_spawned_changes_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, word: str
) -> None:
    # The pause is the injected Popen itself: it runs after every check the restart makes in
    # its own process and before the fork of the command with ``word``. While it lasts, a
    # second restart breaks the lock (no progress for 2 s) and a third one takes it. Under
    # systemd the agent is renewed in place unless its unit changed since it started.
    in_place = backend == "systemd-in-place"
    backend = backend.removesuffix("-in-place")
    manager = request.getfixturevalue("own_manager") if backend == "systemd" else None
    fault = Fault(tmp_path, backend, manager)
    fault.setup()
    try:
        fault.roster(agent("p1", "exec sleep 100000", start_grace=2))
        fault.ok("start")
        if backend == "systemd" and not in_place:
            fault.roster(agent("p1", "exec sleep 100000", start_grace=2, env="{CHANGED: '1'}"))
        resumed: list[float] = []
        later: list[subprocess.Popen[str]] = []

        def paused_popen(argv: Sequence[str], **options: Any) -> subprocess.Popen[str]:
            if word in argv and not resumed:
                b = fault.drive("restart", "--max-wait", "2")
                assert b.returncode == 0, b.stderr
                later.append(fault.spawn("restart", "--max-wait", "30"))
                eventually(lambda: bool(fault.calls(later[0].pid)), "C began")
                resumed.append(time.time())
            return subprocess.Popen(argv, **options)

        with pytest.raises(LeaseLost, match="lost the fleet restart lock"):
            fault.lifecycle(paused_popen).restart()
        assert resumed, f"no command with {word!r} was started"
        assert [argv for stamp, argv in fault.calls(os.getpid()) if stamp >= resumed[0]] == []
        assert later[0].wait(timeout=60) == 0, later[0].stderr.read() if later[0].stderr else ""
        assert fault.status()["p1"]["process_state"] == "running"
    finally:
        fault.cleanup()


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    return stat[stat.rfind(b")") + 2 :].split()[0].decode()


# --------------------------------------------------------------------------- 2. a live restart is not broken


def test_2_a_restart_blocked_by_a_slow_stop_is_not_broken_by_a_second_one(fault: Fault) -> None:
    # The agent ignores TERM and HUP: its stop takes the whole stop_timeout (6 s), three
    # times the no-progress limit given to the waiter. Each run logs its start and every
    # signal it ignores (the witness of when each restart ended a run).
    log = fault.root / "events.log"
    script = (
        f"echo start $({DATE} +%s.%N) >> {log}; trap 'echo signal $({DATE} +%s.%N) >> {log}' TERM HUP; "
        "while :; do sleep 1; done"
    )
    fault.roster(agent("s1", script, stop_timeout=6))
    fault.ok("start")
    a = fault.spawn("restart", "--max-wait", "2")
    eventually(lambda: bool(fault.calls(a.pid)), "A began")
    time.sleep(0.5)
    b = fault.spawn("restart", "--max-wait", "2")
    _a_out, a_err = a.communicate(timeout=90)
    _b_out, b_err = b.communicate(timeout=90)
    assert a.returncode == 0, a_err
    assert b.returncode == 0, b_err
    assert "breaking" not in b_err, b_err  # B waited for a live owner instead of breaking its lock
    # A line cut short by the final SIGKILL (its `date` killed first) carries no time: left out.
    lines = [line.split() for line in log.read_text().splitlines()]
    events = [(words[0], float(words[1])) for words in lines if len(words) == 2]
    starts = [stamp for kind, stamp in events if kind == "start"]
    assert len(starts) == 3, events  # the first run, A's, B's
    # A returned only once its run had stayed up for its 1 s start grace: B, waiting for A,
    # signalled that run no sooner (a B that broke in would have signalled during A's stop).
    b_signals = [stamp for kind, stamp in events if kind == "signal" and stamp > starts[1]]
    assert b_signals, events
    assert min(b_signals) > starts[1] + 0.5, events
    assert starts[2] > max(b_signals), events


# --------------------------------------------------------------------------- 4. stop means gone


HARD = (
    "echo $$ >> {log}; sleep 100000 & echo $! >> {log}; "
    "setsid sh -c 'trap \"\" TERM HUP; echo $$ >> {log}; exec sleep 100000' & "
    "trap '' TERM HUP; while :; do sleep 1; done"
)


def test_4_stop_leaves_no_process_of_an_agent_that_ignores_signals_and_forks_away(fault: Fault) -> None:
    log = fault.root / "pids.log"
    fault.roster(agent("h1", HARD.format(log=log), stop_timeout=2) + agent("h2", "exec sleep 100000"))
    fault.ok("start")
    eventually(lambda: log.exists() and len(log.read_text().split()) == 3, "the agent and its children started")
    pids = [int(p) for p in log.read_text().split()]
    assert all(alive(pid) for pid in pids)
    result = fault.drive("stop")
    assert result.returncode == 0, result.stderr
    assert [pid for pid in pids if alive(pid)] == []
    # single-agent stop too, and the other agent is untouched
    log.write_text("")
    fault.ok("start")
    eventually(lambda: len(log.read_text().split()) == 3, "the agent started again")
    pids = [int(p) for p in log.read_text().split()]
    other = fault.status()["h2"]["pid"]
    assert fault.drive("stop", "--agent", "h1").returncode == 0
    assert [pid for pid in pids if alive(pid)] == []
    assert fault.status()["h2"]["pid"] == other


def test_4_a_restart_starts_the_new_generation_only_after_the_old_one_exited(fault: Fault) -> None:
    log = fault.root / "events.log"
    slow = f"echo start $(date +%s.%N) >> {log}; trap 'sleep 2.5; echo exit $(date +%s.%N) >> {log}; exit 0' TERM HUP; while :; do sleep 0.2; done"
    fault.roster(agent("w1", slow))
    fault.ok("start")
    fault.ok("restart")
    events = [line.split() for line in log.read_text().splitlines()]
    kinds = [kind for kind, _ in events]
    # The old generation logs "exit" once per signal trap it ran (systemd sends TERM and then
    # HUP, so it may run both); the new one starts once, after the old one's last exit.
    assert kinds[0] == "start", events
    assert kinds[-1] == "start", events
    assert set(kinds[1:-1]) == {"exit"}, events
    assert float(events[-1][1]) > max(float(stamp) for kind, stamp in events if kind == "exit")


# --------------------------------------------------------------------------- 5. a dead agent is never reported started


@pytest.mark.parametrize(
    ("command", "expect"),
    [("[definitely-not-installed-x]", "command not found"), ('[sh, -c, "echo bye-now; sleep 0.3; exit 1"]', "bye-now")],
    ids=["missing-binary", "exits-after-0.3s"],
)
def test_5_an_agent_that_dies_at_start_fails_start_and_restart_every_time(
    fault: Fault, command: str, expect: str
) -> None:
    fault.roster(
        f"  - name: ok1\n    runtime: custom\n    command: [sleep, '100000']\n  - name: d1\n    runtime: custom\n    command: {command}\n"
    )
    for operation in ("start", "restart", "restart"):
        began = time.monotonic()
        result = fault.inv(f"fleet.{operation}", timeout=60)
        took = time.monotonic() - began
        assert result.returncode == 1, (operation, result.stdout, result.stderr)
        assert "d1" in result.stderr
        assert expect in result.stderr, result.stderr
        assert "exit status" in result.stderr
        assert "Traceback" not in result.stderr
        assert took < 30, f"{operation} took {took:.1f}s: it must fail as the agent dies, not at the timeout"
        assert fault.status()["ok1"]["process_state"] == "running"


def test_5_the_grace_counts_from_the_agents_exec_not_from_its_slow_supervisor(fault: Fault) -> None:
    # The supervisor's header runs `date` before it execs the agent. A slow one (a loaded
    # machine) kept the supervisor alive past the 1 s grace before the agent even ran:
    # start said "all up" and an agent that then died at once was never caught.
    slow = fault.root / "bin" / "date"  # first on the PATH the agents get, on both backends
    slow.write_text(f'#!/bin/sh\nsleep 2\nexec {DATE} "$@"\n')
    slow.chmod(0o755)
    if fault.manager is not None:  # tmux gives a window the PATH of the client that opens it: the unit's
        fault.manager.systemctl("set-environment", f"PATH={fault.env['PATH']}")
    fault.roster(agent("dies", "echo dying-now; exit 3"))
    for operation in ("start", "restart"):
        result = fault.inv(f"fleet.{operation}", timeout=120)
        assert result.returncode == 1, (operation, result.stdout, result.stderr)
        assert "dies (exit status 3): exited right after starting (exit status 3)" in result.stderr, result.stderr
        assert "dying-now" in result.stderr
        assert "all up" not in result.stdout


# --------------------------------------------------------------------------- 6. concurrent starts


def test_6_concurrent_starts_of_a_stopped_fleet_all_succeed(fault: Fault) -> None:
    fault.roster("".join(agent(f"c{i}", "exec sleep 100000") for i in range(3)))
    procs = [fault.spawn("start") for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    rows = fault.status()
    assert {row["process_state"] for row in rows.values()} == {"running"}
    assert all(row["restarts"] == 0 for row in rows.values()), rows  # started exactly once


# --------------------------------------------------------------------------- 7. a frozen tmux server


def test_7_a_frozen_tmux_server_is_one_error_line_not_a_hang(fault: Fault) -> None:
    fault.roster(agent("f1", "exec sleep 100000"))
    fault.ok("start")
    socket = fault.home / "fleet" / "run" / "tmux.sock"
    server = int(
        subprocess.run(
            ["tmux", "-S", str(socket), "display", "-p", "#{pid}"], capture_output=True, text=True, check=False
        ).stdout
    )
    os.kill(server, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        assert alive(server), "the stopped server died before anything touched it"
        for task in ("fleet.status", "fleet.restart"):
            began = time.monotonic()
            result = fault.inv(task, timeout=60)
            took = time.monotonic() - began
            assert result.returncode == 1, (task, result.stderr)
            assert "did not answer" in result.stderr
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert took < 30, f"{task} took {took:.1f}s"
    finally:
        os.kill(server, signal.SIGCONT)
    assert fault.status()["f1"]["process_state"] == "running"  # nothing was changed meanwhile


# --------------------------------------------------------------------------- 8. a unit is active exactly while its agent runs


@pytest.mark.systemd
def test_8_a_missing_command_under_systemd_fails_fast_and_leaves_the_unit_inactive(
    own_manager: UserManager, tmp_path: Path
) -> None:
    user_manager = own_manager
    fault = Fault(tmp_path, "systemd", user_manager)
    fault.setup()
    try:
        fault.roster("  - name: m1\n    runtime: custom\n    command: [no-such-agent-binary]\n")
        result = fault.drive("start", "--timeout", "60")
        assert result.returncode == 1
        assert "command not found" in result.stdout
        unit = UnitNames.for_home(fault.home).agent("m1")
        eventually(
            lambda: user_manager.systemctl("is-active", unit).stdout.strip() == "inactive",
            "the unit of a dead agent is inactive",
            limit=30,
        )
        time.sleep(3)
        restarts = user_manager.systemctl("show", "-p", "NRestarts", "--value", unit).stdout
        assert int(restarts.strip() or 0) == 0
        assert user_manager.systemctl("is-active", unit).stdout.strip() == "inactive"
        row = fault.status()["m1"]
        holder = user_manager.systemctl("status", UnitNames.for_home(fault.home).holder).stdout
        assert row["state"] == "failed", (row, holder)
    finally:
        fault.cleanup()


# --------------------------------------------------------------------------- 9. the backends agree


@pytest.mark.systemd
def test_9_cwd_default_and_environment_are_the_same_on_both_backends(user_manager: UserManager, tmp_path: Path) -> None:
    seen: dict[str, tuple[str, set[str]]] = {}
    for backend in ("tmux", "systemd"):
        fault = Fault(tmp_path / backend, backend, user_manager if backend == "systemd" else None)
        fault.setup()
        out = tmp_path / f"{backend}.env"
        try:
            fault.roster(agent("e1", f"pwd > {out}.pwd; env > {out}; exec sleep 100000"))
            stray = tmp_path / "elsewhere"
            stray.mkdir(exist_ok=True)
            subprocess.run(
                [sys.executable, "-m", "tests.fleet_driver", "start", "--backend", backend],
                cwd=REPO,
                env={**fault.env, "VIRTUAL_ENV": "/stray/venv", "STRAY_VAR": "1", "PWD": str(stray)},
                check=True,
                capture_output=True,
            )
            eventually(lambda out=out: out.exists() and out.stat().st_size > 0, f"{backend} agent wrote its env")
            time.sleep(0.2)
            names = {line.split("=", 1)[0] for line in out.read_text().splitlines() if "=" in line}
            seen[backend] = (
                Path(f"{out}.pwd").read_text().strip(),
                names - {"TMUX", "TMUX_PANE", "PWD", "OLDPWD", "SHLVL", "_"},
            )
        finally:
            fault.cleanup()
    assert seen["tmux"][0] == seen["systemd"][0] == str(Path.home())
    assert seen["tmux"][1] == seen["systemd"][1], seen
    assert "STRAY_VAR" not in seen["tmux"][1]
    assert "VIRTUAL_ENV" not in seen["tmux"][1]
    assert {"HOME", "PATH", "FLEET_AGENT"} <= seen["tmux"][1]
