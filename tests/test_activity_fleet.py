"""What every agent is doing, end to end on both backends: the watcher classifies real panes
running fake runtimes, `fleet status` and `fleet wait` report it, `fleet send` refuses to
answer a question by accident, and `on_state_change` runs once per transition.

The fake runtimes (tests/fake_agents/) draw Claude-like and Codex-like screens; `chatter`
prints a line every second and never reads its input. The witness for notifications is a
file the notification command itself appends to (one line per run, with its environment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, FleetEnv, InvUser, eventually, watcher_pids
from tests.test_fleet_tmux import TmuxEnv

AGENTS = REPO / "tests" / "fake_agents"
NOTIFY = """
import json, os, sys
keys = ("FLEET_AGENT_NAME", "FLEET_OLD_STATE", "FLEET_NEW_STATE", "FLEET_SCREEN", "FLEET_HOME", "FLEET_AGENT")
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({key: os.environ.get(key) for key in keys}) + "\\n")
"""


class Fleet:
    """One test's fleet on one backend, driven through `inv fleet.*` like a user would."""

    def __init__(self, user: InvUser, home: Path, backend: str, tmp: Path) -> None:
        self.user, self.home, self.backend, self.tmp = user, home, backend, tmp
        self.notes = tmp / "notes.jsonl"
        (tmp / "notify.py").write_text(NOTIFY)

    def roster(self, agents: dict[str, str], *, notify: bool = True, hook_argv: list[str] | None = None) -> None:
        hook = json.dumps(hook_argv or [sys.executable, str(self.tmp / "notify.py"), str(self.notes)])
        body = "".join(
            f"  - name: {name}\n    runtime: {runtime}\n"
            f"    command: [{json.dumps(sys.executable)}, {json.dumps(str(AGENTS / script))}]\n"
            + (f"    on_state_change: {hook}\n" if notify else "")
            for name, (runtime, script) in ((n, spec.split(":")) for n, spec in agents.items())
        )
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("version: 1\nagents:\n" + body)
        if self.backend == "systemd":
            self.ok("fleet.install")

    def inv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.user.inv(*args)

    def ok(self, *args: str) -> str:
        return self.user.inv_ok(*args)

    def rows(self) -> dict[str, dict[str, object]]:
        result = self.inv("fleet.status", "--json")
        assert result.returncode in (0, 3), result.stderr
        return {row["name"]: row for row in json.loads(result.stdout)}

    def notes_of(self, name: str) -> list[dict[str, str]]:
        lines = self.notes.read_text().splitlines() if self.notes.exists() else []
        return [note for note in map(json.loads, lines) if note["FLEET_AGENT_NAME"] == name]

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True, check=False)


@pytest.fixture(params=["tmux", pytest.param("systemd", marks=pytest.mark.systemd)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    if request.param == "systemd":
        env: FleetEnv = request.getfixturevalue("fleet_env")
        yield Fleet(env, env.home, "systemd", tmp_path)
        return
    tenv = TmuxEnv(tmp_path)
    made = Fleet(tenv, tenv.home, "tmux", tmp_path)
    yield made
    made.tmux("kill-server")


pytestmark = pytest.mark.tmux


def test_states_are_classified_reported_and_waited_for_and_a_question_is_never_answered_by_accident(
    fleet: Fleet,
) -> None:
    fleet.roster({"cl": "claude:claude_like.py", "cx": "codex:codex_like.py"})
    fleet.ok("fleet.start")
    fleet.ok("fleet.wait", "--all", "--for", "idle", "--timeout", "60")
    rows = fleet.rows()
    for name in ("cl", "cx"):
        assert rows[name]["state"] == "idle", rows[name]
        assert rows[name]["process_state"] == "running"
        assert rows[name]["state_since"]
        assert rows[name]["last_output_at"]
    assert "idle" in fleet.ok("fleet.status")

    # A message that makes it work: accepted because the busy indicator shows.
    assert "accepted" in fleet.ok("fleet.send", "--agent", "cl", "--message", "work 4")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "working", "--timeout", "30")
    assert fleet.rows()["cl"]["state"] == "working"
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")

    # A question: the state says so, a plain send is refused showing it, --answer answers.
    for name in ("cl", "cx"):
        fleet.ok("fleet.send", "--agent", name, "--message", "ask")
        fleet.ok("fleet.wait", "--agent", name, "--for", "waiting", "--timeout", "30")
        refused = fleet.inv("fleet.send", "--agent", name, "--message", "hello there")
        assert refused.returncode == 1, refused.stderr
        assert "waiting for an answer" in refused.stderr
        assert "--answer" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert fleet.rows()[name]["state"] == "waiting"  # nothing was typed: still asking
        assert "accepted" in fleet.ok("fleet.send", "--agent", name, "--message", "1", "--answer")
        fleet.ok("fleet.wait", "--agent", name, "--for", "idle", "--timeout", "30")
    assert "Do you want to proceed?" in refused.stderr or "Yes" in refused.stderr  # the question is shown

    # A wait for a state that never comes times out with exit 1.
    timed_out = fleet.inv("fleet.wait", "--agent", "cx", "--for", "working", "--timeout", "2")
    assert timed_out.returncode == 1
    assert "timed out" in timed_out.stderr
    assert "cx is idle" in timed_out.stderr

    # Each entry into waiting was told once, with the agent's name, states and screen.
    eventually(lambda: len(fleet.notes_of("cl")) >= 1 and len(fleet.notes_of("cx")) >= 1, "notifications")
    time.sleep(2)  # a late duplicate would show by now
    for name in ("cl", "cx"):
        notes = fleet.notes_of(name)
        assert [note["FLEET_NEW_STATE"] for note in notes] == ["waiting"], notes
        assert notes[0]["FLEET_OLD_STATE"] in ("idle", "working")
        assert notes[0]["FLEET_HOME"] == str(fleet.home)
        assert notes[0]["FLEET_AGENT"] is None  # not an agent process: a stop must not sweep it
        assert "1." in notes[0]["FLEET_SCREEN"]


def test_an_agent_that_prints_by_itself_and_never_reads_is_never_reported_as_accepting(fleet: Fleet) -> None:
    fleet.roster({"chat": "custom:chatter.py"}, notify=False)
    fleet.ok("fleet.start")
    fleet.ok("fleet.wait", "--agent", "chat", "--for", "working", "--timeout", "30")
    result = fleet.inv("fleet.send", "--agent", "chat", "--message", "are you listening", "--timeout", "4")
    assert result.returncode == 1, result.stdout
    assert "accepted" not in result.stdout
    assert "Traceback" not in result.stderr


def test_an_exit_is_told_once_and_the_watcher_comes_back_when_killed(fleet: Fleet) -> None:
    fleet.roster({"cl": "claude:claude_like.py"})
    fleet.ok("fleet.start")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    fleet.ok("fleet.send", "--agent", "cl", "--message", "quit", "--no-verify")  # exits 0: its supervisor restarts it
    eventually(lambda: [n["FLEET_NEW_STATE"] for n in fleet.notes_of("cl")] == ["exited"], "one exit notification")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")

    watcher = _watcher_pid(fleet)
    os.kill(watcher, signal.SIGKILL)
    eventually(lambda: _watcher_pid(fleet) not in (None, watcher), "the watcher back under a new pid")
    fleet.ok("fleet.send", "--agent", "cl", "--message", "ask")
    eventually(lambda: [n["FLEET_NEW_STATE"] for n in fleet.notes_of("cl")] == ["exited", "waiting"], "told again")

    fleet.ok("fleet.stop")
    eventually(lambda: _watcher_pid(fleet) is None, "the watcher gone with the fleet")


def _escaped_sleeps(home: Path) -> list[int]:
    """Live `sleep 7777` processes started by this fleet's notifications (our own /proc scan)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:-1]
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv == [b"sleep", b"7777"] and f"FLEET_HOME={home}".encode() in environ:
            found.append(int(entry))
    return found


def test_fleet_stop_ends_a_notification_that_left_its_session(fleet: Fleet) -> None:
    # Defect: a notification command that `setsid`s left its process group, the only thing
    # the watcher watched: one `sleep 7777` per transition outlived the 60 s kill, the cap
    # of 32 and `fleet stop`.
    fleet.roster({"cl": "claude:claude_like.py"}, hook_argv=["sh", "-c", "setsid sleep 7777 & exit 0"])
    fleet.ok("fleet.start")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    fleet.ok("fleet.send", "--agent", "cl", "--message", "ask")
    eventually(lambda: bool(_escaped_sleeps(fleet.home)), "the notification's setsid sleep")
    fleet.ok("fleet.stop")
    eventually(lambda: not _escaped_sleeps(fleet.home), "no notification process left by the stop", 10)


def _watcher_pid(fleet: Fleet) -> int | None:
    """The live watcher of this fleet, if one runs."""
    return next(iter(watcher_pids(fleet.home)), None)


def test_the_watcher_rotates_transcripts_keeping_log_keep_files_and_renews_a_dead_writer(tmp_path: Path) -> None:
    tenv = TmuxEnv(tmp_path)
    counter = "i=0; while :; do i=$((i+1)); echo line-$i-padding-padding-padding-padding; sleep 0.01; done"
    tenv.roster([], extra=(
        f"  - name: log\n    runtime: custom\n    command: [sh, -c, {json.dumps(counter)}]\n"
        "    log_max_bytes: 8192\n    log_keep: 2\n"
    ))  # fmt: skip
    logs = tenv.home / "fleet" / "logs"
    try:
        tenv.inv_ok("fleet.start")
        eventually((logs / "log.log.2").exists, "two rotations")
        time.sleep(6)  # more rotations: still at most log_keep old files
        assert sorted(p.name for p in logs.iterdir()) == ["log.log", "log.log.1", "log.log.2"]

        # Nothing lost across the rotations: the lines run on from file to file.
        text = "".join((logs / name).read_text() for name in ("log.log.2", "log.log.1", "log.log"))
        numbers = [int(word.split("-")[1]) for word in text.split() if word.startswith("line-")]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "a line went missing"

        # The transcript's writer dies (say, a full disk killed it): the watcher renews it.
        fleet = Fleet(tenv, tenv.home, "tmux", tmp_path)
        writer = int(fleet.tmux("display", "-p", "-t", "=fleet:=log", "#{pane_pid}").stdout)  # the pane's process
        cats = _writers(logs / "log.log")
        assert cats, "no transcript writer found"
        for pid in cats:
            os.kill(pid, signal.SIGKILL)
        eventually(lambda: fleet.tmux("display", "-p", "-t", "=fleet:=log", "#{pane_pipe}").stdout.strip() == "1"
                   and (logs / "log.log").exists() and (logs / "log.log").stat().st_size > 0, "a new writer")  # fmt: skip
        assert int(fleet.tmux("display", "-p", "-t", "=fleet:=log", "#{pane_pid}").stdout) == writer  # same agent
    finally:
        tenv.inv("fleet.stop")


def _writers(log: Path) -> list[int]:
    """The processes whose standard output is ``log`` (the pane's transcript writer)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/fd/1") == str(log):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_doctor_says_when_a_running_fleet_has_no_watcher(tmp_path: Path) -> None:
    tenv = TmuxEnv(tmp_path)
    tenv.roster(["d1"])
    fleet = Fleet(tenv, tenv.home, "tmux", tmp_path)

    def watcher_check() -> dict[str, object]:
        checks = json.loads(tenv.inv("fleet.doctor", "--backend", "tmux", "--json").stdout)
        return next(check for check in checks if check["name"] == "watcher")

    try:
        assert watcher_check()["skipped"]  # no fleet running: nothing to check
        tenv.inv_ok("fleet.start")
        eventually(lambda: watcher_check()["ok"] is True, "the watcher found")
        fleet.tmux("kill-window", "-t", "=fleet:=_watcher")
        eventually(lambda: _watcher_pid(fleet) is None, "the watcher gone")
        check = watcher_check()
        assert check["ok"] is False
        assert "restart" in str(check["fix"])
        tenv.inv_ok("fleet.restart")
        eventually(lambda: watcher_check()["ok"] is True, "the watcher back after a restart")
    finally:
        tenv.inv("fleet.stop")
