"""Conversations survive a restart (fleetlib/sessions.py, the supervisor's resume words),
with fake claude/codex programs on the tmux backend; the real CLIs are in test_resume_real.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib import sessions
from fleetlib.errors import RosterError
from fleetlib.roster import parse_roster
from tests.conftest import FleetEnv, eventually, kill_fleet_tmux
from tests.test_fleet_tmux import TmuxEnv

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CODEX_ID = "0b0e5d39-1111-4222-8333-944455556666"


def roster_of(agent: str) -> str:
    return f"version: 1\nagents:\n  - {agent}\n"


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("agent", "resumes"),
    [
        ("{name: a, runtime: claude}", True),
        ("{name: a, runtime: codex}", True),
        ("{name: a, runtime: gemini}", True),
        ("{name: a, runtime: claude, resume: false}", False),
        ("{name: a, runtime: shell}", False),
        ("{name: a, runtime: opencode, resume: false}", False),
        ("{name: a, runtime: mine, command: [x]}", False),
    ],
)
def test_resume_defaults_to_the_runtimes_that_can(agent: str, resumes: bool) -> None:
    assert parse_roster(roster_of(agent)).agents[0].resumes is resumes


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        ("{name: a, runtime: shell, resume: true}", "runtime 'shell' cannot resume a conversation"),
        ("{name: a, runtime: mine, command: [x], resume: true}", "runtime 'mine' cannot resume"),
        ("{name: a, runtime: claude, resume: yes please}", "must be true or false"),
        ("{name: a, runtime: claude, resume: 1}", "must be true or false"),
    ],
)
def test_resume_is_refused_where_it_cannot_work(agent: str, problem: str) -> None:
    with pytest.raises(RosterError, match=problem) as caught:
        parse_roster(roster_of(agent), "r.yaml")
    assert "agents[0].resume" in str(caught.value)


def test_the_resume_marker_sits_between_command_and_args_and_round_trips() -> None:
    roster = parse_roster(
        roster_of("{name: a, runtime: claude, args: [--model, x]}")
        + "  - {name: b, runtime: codex, resume: false, args: [-m, y]}\n"
        + "  - {name: c, runtime: gemini, command: [sh, g.sh]}\n"
    )
    a, b, c = roster.agents
    assert a.launch_argv() == ["claude", "--fleet-resume=claude", "--model", "x"]
    assert a.argv() == ["claude", "--model", "x"]  # what users see stays clean
    assert b.launch_argv() == b.argv() == ["codex", "-m", "y"]
    assert c.launch_argv() == ["sh", "g.sh", "--fleet-resume=gemini"]
    assert (a.to_dict().get("resume"), b.to_dict()["resume"]) == (None, False)


def test_session_files_are_atomic_private_and_untrusted(tmp_path: Path) -> None:
    assert sessions.read_session(tmp_path, "a") is None
    sessions.record_session(tmp_path, "a", CODEX_ID)
    assert sessions.read_session(tmp_path, "a") == CODEX_ID
    assert (tmp_path / "a.session").stat().st_mode & 0o777 == 0o600
    for bad in ("-rf", "a b", "x;y", "", "é", "a" * 129):
        assert not sessions.record_session(tmp_path, "a", bad)
    assert sessions.read_session(tmp_path, "a") == CODEX_ID  # unchanged
    for planted in (b"$(reboot)\n", b"--resume\n", b"\n", b"a" * 300):
        (tmp_path / "a.session").write_bytes(planted)
        assert sessions.read_session(tmp_path, "a") is None
    (tmp_path / "a.session").unlink()
    (tmp_path / "a.session").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text(CODEX_ID)
    assert sessions.read_session(tmp_path, "a") is None  # never followed
    os.mkfifo(tmp_path / "b.session")
    assert sessions.read_session(tmp_path, "b") is None  # never a hang
    sessions.forget_session(tmp_path, "a")
    assert not (tmp_path / "a.session").is_symlink()


def test_a_codex_thread_is_learned_from_the_rollout_file_it_holds_open(tmp_path: Path) -> None:
    rollout = tmp_path / "sessions/2026/12/04" / f"rollout-2026-12-04T23-50-01-{CODEX_ID}.jsonl"
    rollout.parent.mkdir(parents=True)
    holder = subprocess.Popen(["sh", "-c", f'exec 3>>"{rollout}"; exec sleep 100'])
    try:
        eventually(lambda: sessions.codex_session_of([holder.pid]) == CODEX_ID, "the open rollout is seen")
        sessions.learn_codex_sessions(tmp_path, {"cx": [holder.pid], "other": [os.getpid()]})
    finally:
        holder.kill()
        holder.wait()
    assert sessions.read_session(tmp_path, "cx") == CODEX_ID
    assert sessions.read_session(tmp_path, "other") is None


# --------------------------------------------------------------------------- fake runtimes, real tmux

# A fake Claude Code: logs each run's arguments; `--session-id X` creates the conversation
# file the real one keeps, `--resume X` fails (as for a session that is gone) while the
# file `fail-resume` exists; otherwise it runs until stopped.
FAKE_CLAUDE = """\
echo "run $*" >> "$FAKE_LOG"
if [ "$1" = --session-id ]; then mkdir -p "$CLAUDE_CONFIG_DIR/projects/-w"; : > "$CLAUDE_CONFIG_DIR/projects/-w/$2.jsonl"; fi
if [ "$1" = --resume ] && [ -e "$FAKE_FAIL" ]; then echo "No conversation found with session ID: $2"; exit 1; fi
exec sleep 100000
"""
# A fake Codex: holds a rollout file open, as the real one does, named after $FAKE_THREAD.
FAKE_CODEX = """\
echo "run $*" >> "$FAKE_LOG"
d="$CODEX_HOME/sessions/2026/12/04"; mkdir -p "$d"
exec 3>>"$d/rollout-2026-12-04T23-50-01-$FAKE_THREAD.jsonl"
exec sleep 100000
"""


def fake_roster(root: Path) -> str:
    """Roster text of two fake agents, ``cl`` (claude) and ``cx`` (codex), logging their runs
    to ``<root>/<name>.runs``."""
    (root / "claude.sh").write_text(FAKE_CLAUDE)
    (root / "codex.sh").write_text(FAKE_CODEX)
    agents = ""
    for name, runtime in (("cl", "claude"), ("cx", "codex")):
        env = {
            "FAKE_LOG": str(root / f"{name}.runs"),
            "FAKE_FAIL": str(root / "fail-resume"),
            "CLAUDE_CONFIG_DIR": str(root / "claude"),
            "CODEX_HOME": str(root / "codex"),
            "FAKE_THREAD": CODEX_ID,
        }
        agents += (
            f"  - name: {name}\n    runtime: {runtime}\n    command: [sh, {root / f'{runtime}.sh'}]\n"
            f"    start_grace: 0.5\n    env: {json.dumps(env)}\n"
        )
    return "version: 1\nagents:\n" + agents


def runs_of(root: Path, name: str) -> list[str]:
    """Each run's arguments, without the words that wire the fleet's hooks in (``--settings
    FILE`` for claude, ``-c notify=...`` for codex: fleetlib.hooks, tested there)."""
    path = root / f"{name}.runs"
    return [_unwired(line) for line in path.read_text().splitlines()] if path.exists() else []


def _unwired(line: str) -> str:
    words, kept = line.split(" "), []
    while words:
        word = words.pop(0)
        if word == "--settings":
            words.pop(0)
            continue
        if word == "-c" and words and words[0].startswith("notify=["):
            while words and not words.pop(0).endswith("]"):
                pass  # the notify command's words, up to the list's end
            continue
        kept.append(word)
    return " ".join(kept).rstrip()


class FakeEnv(TmuxEnv):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.root = root
        self.fail = root / "fail-resume"
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fake_roster(root))

    def runs(self, name: str) -> list[str]:
        return runs_of(self.root, name)


@pytest.fixture
def fenv(tmp_path: Path) -> Iterator[FakeEnv]:
    env = FakeEnv(tmp_path)
    yield env
    kill_fleet_tmux(env.home)


@pytest.mark.tmux
def test_claude_pins_its_session_resumes_it_and_fresh_starts_anew(fenv: FakeEnv) -> None:
    fenv.inv_ok("fleet.start", "--agent", "cl")
    [first] = fenv.runs("cl")
    pinned = first.removeprefix("run --session-id ")
    assert UUID.fullmatch(pinned), first
    assert fenv.row("cl")["session_id"] == pinned

    fenv.inv_ok("fleet.restart", "--agent", "cl")
    assert fenv.runs("cl")[1:] == [f"run --resume {pinned}"]
    assert fenv.row("cl")["session_id"] == pinned

    fenv.inv_ok("fleet.restart", "--agent", "cl", "--fresh")
    last = fenv.runs("cl")[2]
    assert last.startswith("run --session-id ")
    assert pinned not in last
    row = fenv.row("cl")
    assert row["session_id"] == last.removeprefix("run --session-id ")
    assert row["session_note"] is None


@pytest.mark.tmux
def test_a_resume_that_fails_starts_fresh_once_with_one_line_in_transcript_and_status(fenv: FakeEnv) -> None:
    fenv.inv_ok("fleet.start", "--agent", "cl")
    pinned = fenv.row("cl")["session_id"]
    fenv.fail.write_text("")  # from now on every resume fails: the session is gone
    fenv.inv("fleet.restart", "--agent", "cl")
    eventually(lambda: len(fenv.runs("cl")) == 3, "the fresh start after the failed resume")
    _, resumed, fresh = fenv.runs("cl")
    assert resumed == f"run --resume {pinned}"
    new = fresh.removeprefix("run --session-id ")
    assert UUID.fullmatch(new)
    assert new != pinned
    row = fenv.row("cl")
    assert row["process_state"] == "running"
    assert row["failures"] == 0
    assert row["session_id"] == new
    assert row["session_note"] == f"resuming session {pinned} failed (exit 1); started a new conversation"
    assert f"cl: resuming session {pinned} failed" in fenv.inv("fleet.status").stdout
    log = fenv.inv_ok("fleet.logs", "--agent", "cl", "--generation", "all")
    assert log.count(f"fleet: agent cl: resuming session {pinned} failed") == 1
    # Not a loop: the new conversation runs on; its first start is no resume to fail.
    assert len(fenv.runs("cl")) == 3
    fenv.fail.unlink()
    fenv.inv_ok("fleet.restart", "--agent", "cl")  # the new conversation resumes; the note is history
    assert fenv.runs("cl")[3:] == [f"run --resume {new}"]
    assert fenv.row("cl")["session_note"] is None


@pytest.mark.tmux
def test_a_crash_restart_by_the_supervisor_resumes(fenv: FakeEnv) -> None:
    fenv.inv_ok("fleet.start", "--agent", "cl")
    pinned = fenv.row("cl")["session_id"]
    record = (fenv.home / "fleet" / "run" / "cl.exec").read_text().split()
    os.kill(int(record[1]), signal.SIGKILL)  # the agent itself dies; its supervisor restarts it
    eventually(lambda: len(fenv.runs("cl")) == 2, "the supervisor's restart")
    assert fenv.runs("cl")[1] == f"run --resume {pinned}"


@pytest.mark.tmux
def test_codex_resumes_the_thread_a_hook_reported_or_it_had_open(fenv: FakeEnv) -> None:
    fenv.inv_ok("fleet.start", "--agent", "cx")
    assert fenv.runs("cx") == ["run"]  # Codex picks its own id: nothing to pin
    # No hook spoke: the restart reads the thread from the rollout the agent holds open.
    fenv.inv_ok("fleet.restart", "--agent", "cx")
    assert fenv.runs("cx")[1] == f"run resume {CODEX_ID}"
    assert fenv.row("cx")["session_id"] == CODEX_ID
    # A hook's report (record_session) is what the next start resumes.
    sessions.record_session(fenv.home / "fleet" / "run", "cx", "11111111-2222-4333-8444-555555555555")
    fenv.inv_ok("fleet.stop", "--agent", "cx")  # stopping learns the thread it had open...
    fenv.inv_ok("fleet.start", "--agent", "cx", "--fresh")  # ...which --fresh forgets
    assert fenv.runs("cx")[2] == "run"
    assert fenv.row("cx")["session_id"] is None


def test_fresh_is_refused_for_stop_and_resume_true_for_a_shell(tmp_path: Path) -> None:
    env = TmuxEnv(tmp_path)
    env.roster(["s1"])
    result = env.inv("fleet.stop", "--fresh")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --fresh is for start and restart")
    roster = env.home / "fleet" / "roster.yaml"
    roster.write_text("version: 1\nagents:\n  - {name: s1, runtime: shell, resume: true}\n")
    result = env.inv("fleet.start")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "agents[0].resume" in result.stderr
    assert "cannot resume a conversation" in result.stderr
    assert not (env.home / "fleet" / "run").exists()


@pytest.mark.systemd
def test_under_systemd_a_unit_restart_resumes_and_a_fresh_fleet_restart_does_not(
    fleet_env: FleetEnv, tmp_path: Path
) -> None:
    fleet_env.write_roster(fake_roster(tmp_path))
    fleet_env.inv_ok("fleet.install")
    fleet_env.inv_ok("fleet.start")
    [first] = runs_of(tmp_path, "cl")
    pinned = first.removeprefix("run --session-id ")
    assert fleet_env.manager.systemctl("restart", fleet_env.units.agent("cl")).returncode == 0
    eventually(lambda: len(runs_of(tmp_path, "cl")) == 2, "the unit's new start")
    assert runs_of(tmp_path, "cl")[1] == f"run --resume {pinned}"
    fleet_env.inv_ok("fleet.restart", "--fresh")
    assert runs_of(tmp_path, "cl")[2].startswith("run --session-id ")
    assert pinned not in runs_of(tmp_path, "cl")[2]
    assert runs_of(tmp_path, "cx") == ["run", "run"]  # what it had open is not resumed either
