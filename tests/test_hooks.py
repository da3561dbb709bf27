"""The agents' own hooks: wired in per process, recorded by a builtins-only script, and deciding
``working``/``idle``/``waiting`` before the screen does (``state_source`` says which).

Pure tests of the event -> state decision and the wiring first; then the recorder script run
as the CLIs run it; then real tmux fleets whose fake runtime (tests/fake_agents/hooked.py)
finds and runs its hooks the way Claude Code, Codex and Gemini CLI do.
"""

# ruff: noqa: RUF001

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib import activity, doctor, hooks, tmux
from fleetlib.backend import open_fleet
from fleetlib.paths import FleetPaths
from fleetlib.roster import load_roster
from fleetlib.runtimes import hooked
from fleetlib.status import AgentStatus
from fleetlib.units import agent_dropin_text
from tests.conftest import REPO, eventually
from tests.test_activity_fleet import Fleet, _watcher_pid, fleet
from tests.test_fleet_tmux import TmuxEnv

HOOKED = REPO / "tests" / "fake_agents" / "hooked.py"
__all__ = ["fleet"]  # both backends' fixture, imported for this module

# --------------------------------------------------------------------------- which agents


@pytest.mark.parametrize(
    ("runtime", "wired"),
    [("claude", True), ("codex", True), ("gemini", True), ("opencode", False), ("shell", False), ("mytool", False)],
)
def test_the_runtime_table_says_which_runtimes_get_the_hooks(runtime: str, wired: bool) -> None:
    # `status` asks the table (no hook code loaded for a fleet without hooked agents); the
    # hook code's own list is derived from it, so the two cannot disagree.
    assert hooked(runtime) is wired
    assert (runtime in hooks.HOOKED_RUNTIMES) is wired


# --------------------------------------------------------------------------- the decision


def _event(name: str, at: float = 100.0) -> hooks.HookEvent:
    return hooks.HookEvent(name, at, "{}", f"{at:.2f}")


SCREEN = hooks.Reading


@pytest.mark.parametrize(
    ("runtime", "event", "screen", "screen_at", "expected"),
    [
        # A hook that has spoken decides, whatever an older or pattern-less screen says.
        ("claude", "claude.UserPromptSubmit", SCREEN("idle", "screen"), 101.0, ("working", "hook")),
        ("claude", "claude.Stop", SCREEN("working", "screen"), 101.0, ("idle", "hook")),
        ("claude", "claude.Notification:permission_prompt", SCREEN("idle", "output"), 101.0, ("waiting", "hook")),
        ("claude", "claude.Notification:elicitation_dialog", None, None, ("waiting", "hook")),
        ("claude", "claude.Notification:idle_prompt", SCREEN("idle", "output"), 101.0, ("idle", "hook")),
        ("claude", "claude.SessionStart", SCREEN("working", "output"), 101.0, ("idle", "hook")),
        ("gemini", "gemini.BeforeAgent", SCREEN("idle", "screen"), 101.0, ("working", "hook")),
        ("gemini", "gemini.AfterAgent", None, None, ("idle", "hook")),
        ("gemini", "gemini.Notification", None, None, ("waiting", "hook")),
        ("codex", "codex.notify", SCREEN("idle", "output"), 101.0, ("idle", "hook")),
        # The screen covers what the hooks do not report: a menu read after the event ...
        ("claude", "claude.UserPromptSubmit", SCREEN("waiting", "screen"), 101.0, ("waiting", "screen")),
        ("codex", "codex.notify", SCREEN("waiting", "screen"), 101.0, ("waiting", "screen")),
        # ... but not one read before it.
        ("claude", "claude.Stop", SCREEN("waiting", "screen"), 99.0, ("idle", "hook")),
        # A screen that agrees leaves the word to the hook.
        ("claude", "claude.Notification:permission_prompt", SCREEN("waiting", "screen"), 101.0, ("waiting", "hook")),
        # A permission prompt answered, a new Codex turn: the hooks do not say so, the screen does.
        ("claude", "claude.Notification:permission_prompt", SCREEN("working", "screen"), 101.0, ("working", "screen")),
        ("codex", "codex.notify", SCREEN("working", "screen"), 101.0, ("working", "screen")),
        ("codex", "codex.notify", SCREEN("working", "screen"), 99.0, ("idle", "hook")),
        # ... a pattern, not the output age (a redraw is no answer).
        ("codex", "codex.notify", SCREEN("working", "output"), 101.0, ("idle", "hook")),
        # No hook has spoken, the session ended, or an event that says nothing: the screen decides.
        ("claude", None, SCREEN("idle", "screen"), 101.0, ("idle", "screen")),
        ("claude", "claude.SessionEnd", SCREEN("working", "output"), 101.0, ("working", "output")),
        ("claude", "claude.PreCompact", SCREEN("idle", "screen"), 101.0, ("idle", "screen")),
    ],
)
def test_a_hook_that_has_spoken_decides_and_the_screen_covers_the_rest(
    runtime: str, event: str | None, screen: hooks.Reading | None, screen_at: float | None, expected: tuple[str, str]
) -> None:
    decided = hooks.decide(runtime, _event(event) if event else None, screen, screen_at)
    assert decided == hooks.Reading(*expected)


def test_a_hook_state_is_reported_at_once_and_since_its_event() -> None:
    debouncer = activity.Debouncer(1.0)
    debouncer.observe("idle", 10.0)
    change = debouncer.observe("working", 10.5, exact=True)
    assert change == activity.Transition("idle", "working", 10.5)
    assert debouncer.observe("idle", 10.6) is None  # a screen reading is still debounced
    assert debouncer.state == "working"


def test_a_screen_reading_says_whether_a_pattern_or_the_output_age_decided() -> None:
    claude = activity.rules_for("claude")
    assert activity.read("──\n❯ \n──\n  ? for shortcuts", claude, output_age=0.0) == ("idle", "screen")
    assert activity.read("plain text", claude, output_age=1.0) == ("working", "output")
    assert activity.read("plain text", activity.rules_for("mine"), output_age=None) == ("idle", "output")


# --------------------------------------------------------------------------- the wiring


def test_each_hooked_runtime_gets_the_fleets_hooks_per_process(tmp_path: Path) -> None:
    hooks.install(tmp_path, [("cl", "claude"), ("gm", "gemini"), ("cx", "codex"), ("sh", "shell")])
    argv = hooks.wired_argv(tmp_path, "cl", "claude", ["claude", "--model", "x"], ["--model", "x"])
    assert argv == ["claude", "--settings", str(tmp_path / "cl.claude.json"), "--model", "x"]
    settings = json.loads((tmp_path / "cl.claude.json").read_text())["hooks"]
    assert set(settings) == {"SessionStart", "UserPromptSubmit", "Stop", "Notification", "SessionEnd"}
    assert [group["matcher"] for group in settings["Notification"]] == [
        "permission_prompt",
        "idle_prompt",
        "elicitation_dialog",
    ]
    assert shlex.split(settings["Stop"][0]["hooks"][0]["command"]) == [
        "/bin/sh",
        str(tmp_path / "hook.sh"),
        "cl",
        "claude.Stop",
    ]
    codex = hooks.wired_argv(tmp_path, "cx", "codex", ["codex", "resume", "ID"], ["resume", "ID"])
    assert codex[0] == "codex"
    assert codex[-2:] == ["resume", "ID"]
    assert tomllib.loads(codex[2])["notify"] == ["/bin/sh", str(tmp_path / "hook.sh"), "cx", "codex.notify"]
    env = hooks.wired_env(tmp_path, "gm", "gemini", {"A": "1"})
    assert env == {hooks.GEMINI_DEFAULTS_ENV: str(tmp_path / "gm.gemini.json"), "A": "1"}
    gemini = json.loads((tmp_path / "gm.gemini.json").read_text())["hooks"]
    assert set(gemini) == {"SessionStart", "BeforeAgent", "AfterAgent", "Notification", "SessionEnd"}
    assert hooks.wired_argv(tmp_path, "sh", "shell", ["sh", "-i"], []) == ["sh", "-i"]
    assert not (tmp_path / "sh.shell.json").exists()


def test_gemini_keeps_the_systems_own_defaults_and_hooks() -> None:
    theirs = {"ui": {"theme": "corp"}, "hooks": {"AfterAgent": [{"hooks": [{"type": "command", "command": "x"}]}]}}
    settings = hooks.gemini_settings(Path("/run"), "gm", theirs)
    assert settings["ui"] == {"theme": "corp"}
    assert settings["hooks"]["AfterAgent"][0]["hooks"][0]["command"] == "x"
    assert "gm gemini.AfterAgent" in settings["hooks"]["AfterAgent"][1]["hooks"][0]["command"]


def test_the_systemd_unit_starts_the_agent_with_its_hooks(tmp_path: Path) -> None:
    roster = tmp_path / "roster.yaml"
    roster.write_text("version: 1\nagents:\n  - name: cl\n    runtime: claude\n")
    agent = load_roster(roster).agents[0]
    text = agent_dropin_text(
        agent, "tmux", tmp_path / "run" / "tmux.sock", environment={}, cwd="/", cgroup_mounts=(), source="r"
    )
    assert f"--settings {tmp_path}/run/cl.claude.json" in text


# --------------------------------------------------------------------------- the recorder


def _run_hook(run_dir: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/sh", str(hooks.script_path(run_dir)), *args], input=stdin, capture_output=True, check=False
    )


def test_the_recorder_appends_one_line_per_event_from_stdin_or_its_argument(tmp_path: Path) -> None:
    hooks.install(tmp_path, [])
    pretty = json.dumps({"session_id": "s1", "last_assistant_message": "a\tb\nc"}, indent=2).encode()
    assert _run_hook(tmp_path, "a", "claude.Stop", stdin=pretty).stdout == b""
    codex = json.dumps({"type": "agent-turn-complete", "thread-id": "t1", "last-assistant-message": "done"})
    _run_hook(tmp_path, "a", "codex.notify", codex)
    gemini = _run_hook(tmp_path, "a", "gemini.AfterAgent", stdin=b'{"prompt_response": "hi"}')
    assert json.loads(gemini.stdout) == {}  # Gemini parses a hook's stdout as JSON
    lines = (tmp_path / "a.hooks").read_bytes().splitlines()
    assert len(lines) == 3
    event = hooks.latest(tmp_path, "a")
    assert event is not None
    assert event.event == "gemini.AfterAgent"
    assert event.state == "idle"
    assert abs(event.at - time.time()) < 5
    assert hooks.last_message(tmp_path, "a") == "hi"
    first = hooks.parse_line(lines[0], 0.0)
    assert first is not None
    assert first.session_id == "s1"
    assert first.message == "a\tb\nc"
    second = hooks.parse_line(lines[1], 0.0)
    assert second is not None
    assert second.session_id == "t1"
    assert second.message == "done"


def test_codexs_thread_title_job_is_not_the_agents_turn(tmp_path: Path) -> None:
    # Seen with the real Codex 0.171: after the first turn it names the thread in an
    # ephemeral thread of its own and sends that turn's end to notify too, with another id.
    hooks.install(tmp_path, [])
    turn = {
        "type": "agent-turn-complete",
        "thread-id": "main",
        "input-messages": ["hi"],
        "last-assistant-message": "hello",
    }
    title = {**turn, "thread-id": "side", "input-messages": ["Generate a concise, single-line task title of ..."]}
    title["last-assistant-message"] = '{"title": "Mock title"}'
    for payload in (turn, title):
        _run_hook(tmp_path, "cx", "codex.notify", json.dumps(payload, separators=(",", ":")))
    event = hooks.latest(tmp_path, "cx")
    assert event is not None
    assert event.session_id == "main"
    assert hooks.last_message(tmp_path, "cx") == "hello"


def test_an_earlier_runs_events_and_a_rotated_record(tmp_path: Path) -> None:
    hooks.install(tmp_path, [])
    _run_hook(tmp_path, "a", "claude.UserPromptSubmit", stdin=b'{"session_id": "s"}')
    assert hooks.current(tmp_path, "a") is not None  # no run record: every event counts
    (tmp_path / "a.exec").write_text("1 2\n")
    os.utime(tmp_path / "a.exec", (time.time() + 60, time.time() + 60))
    assert hooks.current(tmp_path, "a") is None  # the events were of an earlier run
    os.utime(tmp_path / "a.exec", (time.time() - 60, time.time() - 60))
    big = json.dumps({"session_id": "s", "last_assistant_message": "x" * 5000}).encode()
    for _ in range(3):
        _run_hook(tmp_path, "a", "claude.Stop", stdin=big)
    assert hooks.rotate(tmp_path, "a", limit=1000)
    assert not (tmp_path / "a.hooks").exists()
    event = hooks.current(tmp_path, "a")  # read from the rotated record until a new one begins
    assert event is not None
    assert event.event == "claude.Stop"
    assert hooks.last_message(tmp_path, "a") == "x" * 5000
    whole = hooks.latest(tmp_path, "a")
    assert whole is not None
    assert whole.session_id == "s"


def test_doctor_names_the_agents_that_run_without_hooks(tmp_path: Path) -> None:
    (tmp_path / "a.exec").write_text("1 2\n")
    (tmp_path / "b.exec").write_text("1 2\n")
    started = time.time()
    hooks.install(tmp_path, [])
    _run_hook(tmp_path, "b", "claude.SessionStart", stdin=b"{}")
    rows = [_running("a"), _running("b"), _running("c")]
    runtimes = {"a": "claude", "b": "claude", "c": "shell"}
    assert doctor.check_hooks(rows, runtimes, tmp_path, started + 1).ok  # still starting up
    check = doctor.check_hooks(rows, runtimes, tmp_path, started + hooks.SILENT_AFTER_S + 1)
    assert not check.ok
    assert "a (claude)" in check.detail
    assert "b" not in check.detail.split(":")[-1]
    assert check.fix is not None
    assert "screen" in check.detail


def _running(name: str) -> AgentStatus:
    return AgentStatus(name, "running", "", "loaded", "active", "running", 1, 0, window=True)


# --------------------------------------------------------------------------- real tmux fleets

pytestmark = pytest.mark.tmux


@pytest.fixture
def tmux_fleet(tmp_path: Path) -> Iterator[Fleet]:
    tenv = TmuxEnv(tmp_path)
    made = Fleet(tenv, tenv.home, "tmux", tmp_path)
    yield made
    made.tmux("kill-server")


def _roster(fleet: Fleet, agents: dict[str, str], env: str = "") -> None:
    body = "".join(
        f"  - name: {name}\n    runtime: {runtime}\n"
        f"    command: [{json.dumps(sys.executable)}, {json.dumps(str(HOOKED))}]\n" + env
        for name, runtime in agents.items()
    )
    path = fleet.home / "fleet" / "roster.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("version: 1\nagents:\n" + body)
    if fleet.backend == "systemd":
        fleet.ok("fleet.install")


def _type(fleet: Fleet, name: str, line: str) -> None:
    assert fleet.tmux("send-keys", "-t", tmux.window_target(name), line, "Enter").returncode == 0


def _reads(fleet: Fleet, name: str, state: str, source: str) -> bool:
    row = fleet.rows()[name]
    return (row["state"], row["state_source"]) == (state, source)


def test_states_come_from_the_agents_hooks_first_and_the_screen_covers_the_rest(fleet: Fleet) -> None:
    _roster(fleet, {"cl": "claude", "gm": "gemini", "cx": "codex"})
    fleet.ok("fleet.start")
    run_dir = fleet.home / "fleet" / "run"
    for name in ("cl", "gm"):  # their session start says idle
        eventually(lambda name=name: _reads(fleet, name, "idle", "hook"), f"{name} idle from its hook")
    # A turn: working from the hook, though the screen shows Claude's idle input line.
    _type(fleet, "cl", "prompt")
    eventually(lambda: _reads(fleet, "cl", "working", "hook"), "cl working from UserPromptSubmit")
    _type(fleet, "cl", "perm")
    eventually(lambda: _reads(fleet, "cl", "waiting", "hook"), "cl waiting from its permission_prompt")
    # Answered: no hook says so, the spinner on the screen does.
    _type(fleet, "cl", "busy")
    eventually(lambda: _reads(fleet, "cl", "working", "screen"), "cl working again, from the screen")
    for name in ("cl", "gm", "cx"):
        _type(fleet, name, "prompt")
        _type(fleet, name, "stop")
        eventually(lambda name=name: _reads(fleet, name, "idle", "hook"), f"{name} idle from its turn's end")
        assert hooks.last_message(run_dir, name) == "all done"
        session = run_dir / f"{name}.session"
        eventually(session.exists, f"{name}'s session id recorded")
        assert session.read_text().strip() == "11111111-2222-3333-4444-555555555555"
    # The record the watcher keeps says the same (with its source) once it has ticked.
    eventually(lambda: "hook" in fleet.tmux("show-options", "-w", "-t", "=fleet:=cx").stdout, "recorded source")


def test_status_sees_a_hook_event_the_watcher_has_not_taken_in(tmux_fleet: Fleet) -> None:
    fleet = tmux_fleet
    _roster(fleet, {"cl": "claude"})
    fleet.ok("fleet.start")
    eventually(lambda: _reads(fleet, "cl", "idle", "hook"), "cl idle from its hook")
    eventually(lambda: tmux.HOOKS_READ_OPTION in fleet.tmux("show-options", "-g").stdout, "the watcher read the hooks")
    watcher = _watcher_pid(fleet)
    assert watcher is not None
    os.kill(watcher, signal.SIGSTOP)  # frozen: its record stays as it was ...
    try:
        fleet.tmux("set-option", "-g", tmux.WATCHER_TICK_OPTION, f"{time.time() + 3:.3f}")  # ... and still fresh
        _type(fleet, "cl", "prompt")
        eventually(lambda: Path(fleet.home / "fleet/run/cl.hooks").read_text().count("\n") >= 2, "the event")
        paths = FleetPaths.resolve(home=fleet.home)
        status = open_fleet(paths, load_roster(paths.roster), backend="tmux").status()
        row = status.by_name()["cl"]
        assert (row.shown_state, row.state_source) == ("working", "hook")
    finally:
        os.kill(watcher, signal.SIGCONT)


def test_an_agent_whose_hooks_never_fire_is_read_from_its_screen(tmux_fleet: Fleet) -> None:
    fleet = tmux_fleet
    _roster(fleet, {"cl": "claude"}, env="    env: {FAKE_HOOKS: 'off'}\n")
    fleet.ok("fleet.start")
    _type(fleet, "cl", "busy")
    eventually(lambda: _reads(fleet, "cl", "working", "screen"), "cl working from its screen")
    assert not (fleet.home / "fleet" / "run" / "cl.hooks").exists()
