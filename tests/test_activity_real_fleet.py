"""The issue's own reproduction, with the real CLIs in a real fleet.

Offline, the Codex CLI sits at its sign-in menu: `fleet status` says `waiting`, and
`fleet send --message "hello codex"` is refused with the question shown, so nothing
presses Enter on the menu's first entry (which starts a browser sign-in). The witness
that nothing was typed is the agent's own screen, read with tmux directly.

Offline, Claude Code cannot reach its service and exits: a real `exited`, told to the
agent's `on_state_change` command with the error on the screen.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.real_clis import installed_clis
from tests.test_fleet_tmux import TmuxEnv

pytestmark = pytest.mark.tmux

QUESTION = "Sign in with ChatGPT"
SIGN_IN = ("Finish signing in", "auth.openai.com", "localhost:1455")  # had Enter been pressed
NOTIFY = "import json, os, sys; open(sys.argv[1], 'a').write(json.dumps(dict(os.environ)) + '\\n')"


def _screen(tenv: TmuxEnv, name: str) -> str:
    socket = tenv.home / "fleet" / "run" / "tmux.sock"
    return subprocess.run(
        ["tmux", "-S", str(socket), "capture-pane", "-p", "-t", f"=fleet:={name}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def _fleet(runtime: str, tmp_path: Path) -> TmuxEnv:
    """A tmux fleet of one real CLI with a fresh HOME (so no sign-in exists), telling every
    state change to ``notes.jsonl``."""
    binary = getattr(installed_clis(), runtime)
    tenv = TmuxEnv(tmp_path)
    private_home = tmp_path / "agent-home"
    private_home.mkdir()
    roster = tenv.home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    notify = json.dumps(["python3", "-c", NOTIFY, str(tmp_path / "notes.jsonl")])
    roster.write_text(
        "version: 1\nagents:\n"
        f"  - name: ag\n    runtime: {runtime}\n    command: [{json.dumps(str(binary))}]\n"
        f"    cwd: {json.dumps(str(tmp_path))}\n    env: {{HOME: {json.dumps(str(private_home))}}}\n"
        f"    on_state_change: {notify}\n    max_failures: 2\n"
    )
    return tenv


def _start_until_waiting(tenv: TmuxEnv) -> None:
    """Start the fleet and wait until its agent ``ag`` asks a question (Codex offline: its
    sign-in menu); the screen is shown if it never does."""
    tenv.inv_ok("fleet.start")
    waited = tenv.inv("fleet.wait", "--agent", "ag", "--for", "waiting", "--timeout", "120")
    assert waited.returncode == 0, (waited.stderr, _screen(tenv, "ag"))


def test_send_never_answers_the_real_codex_sign_in_menu_by_accident(tmp_path: Path) -> None:
    tenv = _fleet("codex", tmp_path)
    try:
        _start_until_waiting(tenv)
        assert QUESTION in _screen(tenv, "ag")

        refused = tenv.inv("fleet.send", "--agent", "ag", "--message", "hello codex")
        assert refused.returncode == 1, refused.stdout
        assert "waiting for an answer" in refused.stderr
        assert QUESTION in refused.stderr  # the question is shown
        assert "Traceback" not in refused.stderr

        time.sleep(2)  # what a pressed Enter would have drawn by now
        after = _screen(tenv, "ag")
        assert not any(word in after for word in SIGN_IN), after
        assert "hello codex" not in after
        assert QUESTION in after
        assert json.loads(tenv.inv("fleet.status", "--json").stdout)[0]["state"] == "waiting"
        notes = [json.loads(line) for line in (tmp_path / "notes.jsonl").read_text().splitlines()]
        assert [note["FLEET_NEW_STATE"] for note in notes] == ["waiting"]
        assert QUESTION in notes[0]["FLEET_SCREEN"]
    finally:
        tenv.inv("fleet.stop")


def test_real_claude_code_offline_is_a_real_exit_told_to_its_notification_command(tmp_path: Path) -> None:
    tenv = _fleet("claude", tmp_path)
    notes_file = tmp_path / "notes.jsonl"
    try:
        started = tenv.inv("fleet.start")
        # Whether it exits within its 1 s grace (start then fails, naming why) or after it
        # (a slow machine: start succeeded) depends on how fast node starts; never a traceback.
        assert started.returncode in (0, 1), started.stderr
        assert "Traceback" not in started.stderr
        if started.returncode == 1:
            assert "Unable to connect" in started.stderr or "ENOTFOUND" in started.stderr
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            notes = [json.loads(line) for line in notes_file.read_text().splitlines()] if notes_file.exists() else []
            if [note["FLEET_NEW_STATE"] for note in notes][-1:] == ["failed"]:
                break
            time.sleep(0.5)
        states = [note["FLEET_NEW_STATE"] for note in notes]
        assert states[0] == "exited", states
        assert states[-1] == "failed", states  # max_failures 2: it was given up on
        assert any("connect" in note["FLEET_SCREEN"] for note in notes)
        assert json.loads(tenv.inv("fleet.status", "--json").stdout)[0]["state"] == "failed"
    finally:
        tenv.inv("fleet.stop")
