"""Pure pieces of the command line: rendering results, flag values, the progress line,
parse-error wording, and doctor's checks as data."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from invoke.exceptions import ParseError

from fleetctl.options import count, seconds
from fleetctl.program import parse_error_line
from fleetctl.render import (
    LiveLine,
    StepTicker,
    check_lines,
    failure_message,
    install_lines,
    names_phrase,
    operation_summary,
    progress_hook,
    progress_text,
    state_cell,
    status_lines,
)
from fleetlib import doctor
from fleetlib.doctor import Check
from fleetlib.errors import FleetError
from fleetlib.lock import Identity, RestartLock
from fleetlib.results import AgentOutcome, InstallResult, OperationResult, Progress
from fleetlib.roster import parse_roster
from fleetlib.runner import Result
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitState
from fleetlib.units import agent_dropin_text
from tests.conftest import eventually


def outcome(name: str, action: str, **kw: object) -> AgentOutcome:
    return AgentOutcome(name, action, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            OperationResult(
                "restart", "tmux", [outcome("a", "restarted"), outcome("b", "restarted")], 1.234, holder="restarted"
            ),
            "restarted 2 agent(s) (a, b) and the holder in 1.23 s: all up",
        ),
        (
            OperationResult(
                "start", "systemd", [outcome("a", "unchanged"), outcome("b", "unchanged")], 0.1, holder="unchanged"
            ),
            "nothing to do: 2 agent(s) (a, b) already running",
        ),
        (
            OperationResult("stop", "tmux", [outcome("a", "unchanged")], 0.0, holder="unchanged"),
            "nothing to do: 1 agent(s) (a) already stopped",
        ),
        (
            OperationResult(
                "start", "tmux", [outcome("a", "started"), outcome("b", "unchanged")], 0.5, holder="unchanged"
            ),
            "started 1 agent(s) (a) in 0.50 s: all up; 1 agent(s) (b) already running",
        ),
        (
            OperationResult("stop", "systemd", [outcome("a", "stopped")], 0.25, holder="stopped"),
            "stopped 1 agent(s) (a) and the holder in 0.25 s",
        ),
        (
            OperationResult(
                "restart", "tmux", [outcome("a", "would restart")], 0.0, dry_run=True, holder="would restart"
            ),
            "would restart 1 agent(s) (a) and the holder",
        ),
        (
            OperationResult("restart", "tmux", [outcome("a", "restarted"), outcome("b", "failed", error="x")], 2.0),
            "restarted 1 agent(s) (a) in 2.00 s; failed: 1 agent(s) (b)",
        ),
        (
            OperationResult("start", "tmux", [outcome("a", "started")], 0.1, holder="started"),
            "started 1 agent(s) (a) and the holder in 0.10 s: all up",
        ),
    ],
)
def test_operation_summary_is_one_wording_for_both_backends(result: OperationResult, expected: str) -> None:
    assert operation_summary(result) == expected


def test_long_name_lists_are_cut() -> None:
    names = [f"a{i}" for i in range(200)]
    assert names_phrase(names).endswith(", a9, … and 190 more)")
    assert names_phrase(names).startswith("200 agent(s) (a0, a1,")


def test_failure_message_names_every_failed_agent() -> None:
    result = OperationResult(
        "start", "tmux", [outcome("a", "failed", error="exited with status 127"), outcome("b", "started")], 1.0
    )
    assert failure_message(result) == "start failed for 1 agent(s): a: exited with status 127"


def test_install_lines_say_would_and_nothing_to_do() -> None:
    wrote = InstallResult("install", "systemd", written=["/u/x.service"], enabled=["x.service"], reloaded=True)
    assert install_lines(wrote) == [
        "wrote /u/x.service",
        "reloaded the user manager",
        "enabled 1 unit(s): x.service",
    ]
    dry = InstallResult("install", "systemd", dry_run=True, written=["/u/x.service"])
    assert install_lines(dry) == ["would write /u/x.service"]
    assert install_lines(InstallResult("uninstall", "systemd")) == ["nothing to do: no fleet units are installed"]
    assert install_lines(InstallResult("install", "systemd")) == [
        "nothing to do: the installed units already match the roster"
    ]
    assert install_lines(InstallResult("install", "tmux", notes=["tmux: nothing to install"])) == [
        "tmux: nothing to install"
    ]


@pytest.mark.parametrize(("raw", "value"), [("", None), ("1", 1.0), ("0.25", 0.25), ("120", 120.0)])
def test_seconds_accepts_finite_positive_numbers(raw: str, value: float | None) -> None:
    assert seconds("--timeout", raw) == value


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "-inf", "abc", "1e999", "1e10", "604801"])
def test_seconds_refuses_everything_else(raw: str) -> None:
    with pytest.raises(FleetError, match=r"^--timeout: "):
        seconds("--timeout", raw)


def test_count() -> None:
    assert count("--lines", "", 200) == 200
    assert count("--lines", "5", 200) == 5
    for raw in ("0", "-3", "1.5", "x"):
        with pytest.raises(FleetError, match=r"^--lines: "):
            count("--lines", raw, 200)


def test_parse_errors_in_our_words() -> None:
    assert parse_error_line(ParseError("Flag <Argument: lock_timeout> needed value and was not given one!")) == (
        "error: --lock-timeout needs a value"
    )
    assert parse_error_line(ParseError("No idea what '--x' is!")) == (
        "error: '--x' is not a command or flag here (see --help)"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_line_draws_in_place_throttled_and_clears() -> None:
    stream, clock = io.StringIO(), Clock()
    line = LiveLine(stream, enabled=True, clock=clock)
    hook = progress_hook(line, label="restarting")
    hook(Progress("starting", "starting", 1, 200, 0.5))
    hook(Progress("starting", "starting", 2, 200, 0.55))  # within the redraw interval: skipped
    clock.now = 1.0
    hook(Progress("stopping", "stopping", 143, 200, 2.1))
    hook(Progress("starting", "starting", 1, 2, 0.1))  # too few agents to bother
    line.clear()
    assert stream.getvalue() == ("\r\x1b[Krestarting: 1/200 up, 0.5 s\r\x1b[Krestarting: 143/200 down, 2.1 s\r\x1b[K")


def test_live_line_disabled_writes_nothing() -> None:
    stream = io.StringIO()
    line = LiveLine(stream, enabled=False)
    progress_hook(line)(Progress("starting", "starting", 1, 200, 0.5))
    line.show("x", force=True)
    line.clear()
    with StepTicker(line, "build.dev").running() as ticker:
        ticker.step("pnpm install")
    assert stream.getvalue() == ""


def test_output_printed_above_the_line_redraws_it() -> None:
    stream = io.StringIO()
    line = LiveLine(stream, enabled=True)
    line.show("building: 1.0 s", force=True)
    line.above(lambda: stream.write("==> pnpm install\n"))
    assert stream.getvalue() == "\r\x1b[Kbuilding: 1.0 s\r\x1b[K==> pnpm install\n\r\x1b[Kbuilding: 1.0 s"


def test_step_ticker_counts_the_current_step() -> None:
    stream = io.StringIO()
    with StepTicker(LiveLine(stream, enabled=True), "build.dev").running() as ticker:
        ticker.step("pnpm install")
        time.sleep(0.5)
    drawn = stream.getvalue()
    assert "build.dev: pnpm install, 0.0 s" in drawn
    assert "build.dev: pnpm install, 0.2 s" in drawn or "build.dev: pnpm install, 0.3 s" in drawn
    assert drawn.endswith("\r\x1b[K")


def test_progress_text() -> None:
    assert progress_text(Progress("starting", "starting", 3, 10, 1.25)) == "starting: 3/10 up, 1.2 s"


def test_an_agent_the_roster_lost_is_marked_in_the_state_column() -> None:
    assert state_cell("running", in_roster=False) == "running (not in roster)"
    assert state_cell("idle", in_roster=True) == "idle"


# --------------------------------------------------------------------------- doctor


def test_check_lines_show_fixes_and_a_verdict() -> None:
    lines = check_lines(
        [
            Check("tmux", True, "tmux 3.3a"),
            Check("units", False, "drift", "run `fleet install`"),
            doctor.skipped("x", "y"),
        ]
    )
    assert lines == [
        "ok    tmux   tmux 3.3a",
        "FAIL  units  drift",
        "             fix: run `fleet install`",
        "skip  x      skipped: y",
        "1 of 3 check(s) failed",
    ]


@pytest.mark.parametrize(
    ("cwds", "detail"),
    [(["/"], "1 agent working directory exists"), (["/", "/tmp"], "2 agent working directories exist")],
)
def test_the_directories_check_agrees_with_its_count(cwds: list[str], detail: str, tmp_path: Path) -> None:
    agents = "".join(f"  - {{name: a{i}, runtime: shell, cwd: {cwd}}}\n" for i, cwd in enumerate(cwds))
    check = doctor.check_cwds(parse_roster(f"version: 1\nagents:\n{agents}", "r.yaml"), tmp_path)
    assert (check.ok, check.detail) == (True, detail)


class FakeRunner:
    dry_run = False

    def __init__(self, answers: dict[str, Result]) -> None:
        self.answers = answers

    def run(self, argv: list[str], **_: object) -> Result:
        return self.answers[argv[0]]


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        (Result(("tmux",), 0, "tmux 3.3a\n"), True),
        (Result(("tmux",), 0, "tmux next-3.5\n"), True),
        (Result(("tmux",), 0, "tmux 2.9a\n"), False),
        (Result(("tmux",), 127, "", "tmux: command not found"), False),
    ],
)
def test_check_tmux(answer: Result, ok: bool) -> None:
    check = doctor.check_tmux(FakeRunner({"/usr/bin/tmux": answer}), "/usr/bin/tmux")  # type: ignore[arg-type]
    assert check.ok is ok
    assert check.fix is None if ok else "tmux >= 3.0" in (check.fix or "")
    assert not doctor.check_tmux(FakeRunner({}), None).ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        (Result(("loginctl",), 0, "Linger=yes\n"), True),
        (Result(("loginctl",), 0, "Linger=no\n"), False),
        (Result(("loginctl",), 1, "", "Failed to get user: User ID 1000 is not logged in or lingering"), False),
    ],
)
def test_check_linger(answer: Result, ok: bool) -> None:
    check = doctor.check_linger(FakeRunner({"loginctl": answer}), "alice")  # type: ignore[arg-type]
    assert check.ok is ok
    assert not check.skipped
    assert ok or "loginctl enable-linger alice" in (check.fix or "")


@pytest.mark.parametrize(
    "answer",
    [
        Result(("loginctl",), 1, "", "Failed to connect to bus: No such file or directory"),
        Result(("loginctl",), 1, "", "System has not been booted with systemd as init system (PID 1). Can't operate."),
        Result(("loginctl",), 127, "", "loginctl: command not found"),
    ],
    ids=["no-bus", "no-systemd", "no-loginctl"],
)
def test_check_linger_without_logind_says_so_and_suggests_nothing_that_cannot_work(answer: Result) -> None:
    # Defect: `loginctl enable-linger root` was the fix where logind cannot be reached at all.
    check = doctor.check_linger(FakeRunner({"loginctl": answer}), "alice")  # type: ignore[arg-type]
    assert (check.ok, check.skipped, check.fix) == (True, True, None)
    assert "logind cannot be reached" in check.detail
    assert "enable-linger" not in check.detail


def test_no_user_manager_is_a_failure_only_when_systemd_was_asked_for() -> None:
    # Defect: with `auto` (the README: systemd is optional, tmux is chosen) doctor failed.
    chosen = doctor.check_manager(False, "offline", requested="auto")
    assert (chosen.ok, chosen.skipped, chosen.fix) == (True, True, None)
    assert "tmux backend" in chosen.detail
    asked = doctor.check_manager(False, "offline", requested="systemd")
    assert not asked.ok
    assert "--backend tmux" in (asked.fix or "")
    assert doctor.check_manager(True, "running", requested="auto").ok


def _row(
    name: str, state: str, *, in_roster: bool = True, failures: int = 0, exit_status: int | None = None
) -> AgentStatus:
    up = state == "running"
    return AgentStatus(
        name, state, f"=fleet:={name}", "loaded", "active" if up else "inactive", "running" if up else "dead",
        pid=1 if up else None, restarts=0, window=up, exit_status=exit_status, failures=failures,
        in_roster=in_roster,
    )  # fmt: skip


def test_check_agents_fails_on_a_crash_loop_and_on_agents_the_roster_lost() -> None:
    holder = UnitState("tmux:fleet", "loaded", "active", "running")
    healthy = FleetStatus("tmux", holder, [_row("a1", "running"), _row("a2", "stopped")])
    check = doctor.check_agents(healthy, doctor.fleet_command)
    assert check.ok
    assert "1 running" in check.detail
    looping = FleetStatus("tmux", holder, [_row("a1", "running"), _row("lo", "failed", failures=5, exit_status=3)])
    check = doctor.check_agents(looping, doctor.fleet_command)
    assert not check.ok
    assert "lo" in check.detail
    assert "exit status 3" in check.detail
    assert "fleet logs --agent lo" in (check.fix or "")
    strays = FleetStatus("tmux", holder, [_row("a1", "running")], [_row("gone", "running", in_roster=False)])
    check = doctor.check_agents(strays, doctor.fleet_command)
    assert not check.ok
    assert "gone" in check.detail
    assert "fleet install" in (check.fix or "")


def test_check_units_finds_drift_missing_and_stale_files(tmp_path: Path) -> None:
    desired = {"holder.service": "H\n", "agent@.service": "A\n", "agent@a.service.d/50.conf": "a\n"}
    assert doctor.check_units(tmp_path, desired, [], "fleet install").detail == f"not installed in {tmp_path}"
    for relative, text in desired.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert doctor.check_units(tmp_path, desired, ["agent@a.service.d/50.conf"], "fleet install").ok
    (tmp_path / "holder.service").write_text("H edited\n")
    (tmp_path / "agent@.service").unlink()
    check = doctor.check_units(tmp_path, desired, ["agent@a.service.d/50.conf", "agent@old.service.d/50.conf"], "x")
    assert not check.ok
    assert "differ from the roster: holder.service" in check.detail
    assert "missing: agent@.service" in check.detail
    assert "not in the roster: agent@old.service.d/50.conf" in check.detail
    assert check.fix == "run `x` (it rewrites the units from the roster and removes stale ones)"


def test_check_commands_resolves_each_agent_on_its_own_path_and_says_where_it_was_read(tmp_path: Path) -> None:
    tool = tmp_path / "my-agent"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    roster = parse_roster(
        "version: 1\nagents:\n  - name: a\n    runtime: custom\n    command: [my-agent]\n"
        f"  - name: b\n    runtime: custom\n    command: [{tool}]\n"
    )
    on = {"a": doctor.AgentPath(str(tmp_path), doctor.RUNNING_PATH), "b": doctor.AgentPath("", doctor.UNIT_PATH)}
    found = doctor.check_commands(roster, on)
    assert found.ok
    assert found.detail == (
        "2 agent command(s) found on the PATH each agent gets: a: on the PATH of the running agent process; "
        "b: on the PATH its installed unit gives it"
    )
    missing = doctor.check_commands(roster, {**on, "a": doctor.AgentPath("/nonexistent:/x", doctor.UNIT_PATH)})
    assert not missing.ok
    assert missing.detail == "a: my-agent not found on PATH=/nonexistent:/x (the PATH its installed unit gives it)"


def test_agent_paths_read_the_running_process_then_the_installed_unit_then_compute(tmp_path: Path) -> None:
    roster = parse_roster(
        "version: 1\nagents:\n"
        "  - name: run\n    runtime: custom\n    command: [x]\n"
        "  - name: unit\n    runtime: custom\n    command: [x]\n"
        "  - name: new\n    runtime: custom\n    command: [x]\n    env: {PATH: /roster}\n"
    )
    dropin = agent_dropin_text(
        roster.get("unit"), "tmux", tmp_path / "s", environment={"PATH": "/installed"}, cwd="/", cgroup_mounts=(),
        source="r",
    )  # fmt: skip
    running = subprocess.Popen(["/bin/sleep", "60"], env={"PATH": "/running:/bin"})
    try:
        # Read once it runs sleep: until its exec, /proc shows the forking parent's environment, and
        # during it (new image mapped, stack not yet laid out) an empty one.
        def execed() -> bool:
            runs_sleep = os.readlink(f"/proc/{running.pid}/exe") == os.path.realpath("/bin/sleep")
            return runs_sleep and Path(f"/proc/{running.pid}/environ").read_bytes() != b""

        eventually(execed, "sleep runs with its environment laid out")
        found = doctor.agent_paths(
            roster,
            pids={"run": running.pid},
            dropins={"unit": dropin, "new": "[Service]\n"},
            base={"PATH": "/base"},
            fleet_id="f",
            computed_source="computed",
        )
    finally:
        running.kill()
        running.wait()
    assert found == {
        "run": doctor.AgentPath("/running:/bin", doctor.RUNNING_PATH),
        "unit": doctor.AgentPath("/installed", doctor.UNIT_PATH),
        "new": doctor.AgentPath("/roster", "computed"),
    }


def test_check_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert doctor.check_run_dir(run, os.geteuid()).ok  # not created yet
    run.mkdir(mode=0o700)
    assert doctor.check_run_dir(run, os.geteuid()).ok
    run.chmod(0o777)
    loose = doctor.check_run_dir(run, os.geteuid())
    assert not loose.ok
    assert loose.fix == f"`chmod 700 {run}`"
    run.chmod(0o700)
    assert "owned by uid" in doctor.check_run_dir(run, os.geteuid() + 1).detail
    run.rmdir()
    run.symlink_to(tmp_path)
    assert "symlink" in doctor.check_run_dir(run, os.geteuid()).detail


def test_check_restart_lock(tmp_path: Path) -> None:
    lock = RestartLock(tmp_path)
    here = Identity.current()
    assert doctor.check_restart_lock(lock, time.time(), here).detail == "free"
    lock.path.parent.mkdir(parents=True, mode=0o700)
    now_ms = int(time.time() * 1000)
    dead = subprocess.Popen(["true"])  # once reaped, its pid is free (recycling takes a while)
    dead.wait()
    lock.path.write_text(f"{dead.pid}\n{now_ms}\ntoken\n{here.host}\n1\n")
    stale = doctor.check_restart_lock(lock, time.time(), here)
    assert not stale.ok
    assert "which is gone" in stale.detail
    assert str(lock.path) in (stale.fix or "")
    lock.path.write_text(f"{'9' * 5000}\n{now_ms}\ntoken\n{here.host}\n1\n")
    corrupt = doctor.check_restart_lock(lock, time.time(), here)
    assert not corrupt.ok
    assert "corrupt" in corrupt.detail
    lock.path.write_text(f"{os.getpid()}\n{now_ms}\ntoken\n{here.host}\n{here.start}\n")
    assert doctor.check_restart_lock(lock, time.time(), here).ok  # a live owner: an operation in progress


def test_check_server() -> None:
    socket = Path("/h/fleet/run/tmux.sock")
    assert doctor.check_server(socket, True, False, [], "fleet start", "fleet stop").ok
    assert doctor.check_server(socket, False, False, [], "fleet start", "fleet stop").ok  # stopped
    died = doctor.check_server(socket, False, True, [], "fleet start", "fleet stop")
    assert not died.ok
    assert died.detail == (
        "the fleet's tmux server died without `fleet stop` (killed, or out of memory; its socket "
        "/h/fleet/run/tmux.sock is left): none of its agents' processes runs any more"
    )
    assert (died.fix or "").startswith("`fleet start` starts the fleet again")
    left = doctor.check_server(socket, False, True, [41, 42], "fleet start", "fleet stop")
    assert "2 process(es) of its agents still run unwatched (pid 41 42)" in left.detail


def test_status_lines_carry_the_fleets_note() -> None:
    holder = UnitState("tmux:fleet", "loaded", "failed", "died")
    status = FleetStatus("tmux", holder, [], note="the fleet's tmux server died ...")
    assert status_lines(status, now=0)[1:3] == [
        "holder tmux:fleet: failed (died)",
        "note: the fleet's tmux server died ...",
    ]
    assert not any(line.startswith("note:") for line in status_lines(FleetStatus("tmux", holder, []), now=0))


def _status_row(name: str, state: str = "running", **kw: Any) -> AgentStatus:
    base: dict[str, object] = {
        "name": name, "state": state, "unit": f"fleet:{name}", "load_state": "loaded", "active_state": "active",
        "sub_state": "running", "pid": os.getpid(), "restarts": 0, "window": state == "running",
    }  # fmt: skip
    return AgentStatus(**{**base, **kw})


def test_status_lines_show_what_status_json_says() -> None:
    # The text table is built without to_json() (it shows a dozen of its keys and reads
    # each agent's start time once): every cell and note is what the JSON row says.
    from fleetctl.render import STATUS_HEADER, status_cells, status_notes, table

    now = time.time()
    agents = [
        _status_row(
            "working", activity="working", activity_since=now - 75.9, last_output=now - 3.2, activity_source="hook"
        ),
        _status_row("idle-no-since", activity="idle", last_output=now - 7200),
        _status_row("no-activity"),  # FOR and SINCE: its process' start time, read from /proc
        _status_row("gone-pid", pid=2**22 + 1),  # no such process: no start time
        _status_row("exited", "exited", pid=None, window=False, exit_status=3, failures=2, reason="out of memory"),
        _status_row(
            "resumed", activity="waiting", activity_since=now - 10, session_note="resume failed: new conversation"
        ),
        _status_row("stopped", "stopped", pid=None, restarts=None, window=False),
    ]
    stray = _status_row("stray", in_roster=False, restarts=4)
    status = FleetStatus("tmux", UnitState("tmux:fleet", "loaded", "active", "running"), agents, [stray])
    rows = status.to_json()
    expected = [*table(STATUS_HEADER, [status_cells(row, now) for row in rows]), *status_notes(rows)]
    assert status_lines(status, now=now)[2:] == expected
    assert any("out of memory" in line for line in expected)
    assert any("resume failed" in line for line in expected)


def test_library_hints_are_spelled_for_the_command_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetctl import options

    hint = "start it with `inv fleet.start --agent a1`, or `inv roster.add --name a1`"
    monkeypatch.setattr(options._Program, "fleet", False)
    assert options.spell_commands(hint) == hint
    monkeypatch.setattr(options._Program, "fleet", True)
    assert options.spell_commands(hint) == "start it with `fleet start --agent a1`, or `fleet roster.add --name a1`"
    assert options.command("fleet.install") == "fleet install"
    assert options.command("roster.init") == "fleet roster.init"


def test_roster_text_shows_control_characters_as_escapes() -> None:
    # Defect: a description holding a newline or an escape sequence was printed raw by
    # roster.list and roster.show: the table broke, the terminal acted on it.
    from fleetctl.render import roster_agent_lines, roster_table
    from fleetlib.roster import parse_roster

    text = 'version: 1\nagents:\n  - name: a\n    runtime: shell\n    description: "two\\nlines \\e[2J"\n'
    (agent,) = parse_roster(text, "roster.yaml").agents
    lines = roster_table([agent]) + roster_agent_lines({"description": agent.description})
    assert len(roster_table([agent])) == 2
    assert not any(char in line for line in lines for char in "\n\x1b")
    assert "two\\nlines \\x1b[2J" in lines[1]
