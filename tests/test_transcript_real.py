"""`fleet logs` of the real CLIs reads as their screens did (issue 20, "Transcripts read as text").

Offline, Claude Code greets (`Welcome to Claude Code`, moving the cursor between the words)
and then says it cannot connect; Codex shows its sign-in menu. Their transcripts, rendered
by `fleet logs`, keep the words' spaces and the menu's entries on lines of their own, and
`--raw` gives the bytes as the pane wrote them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.test_activity_real_fleet import QUESTION, _fleet, _screen, _start_until_waiting

pytestmark = pytest.mark.tmux

MENU = ("1. Sign in with ChatGPT", "2. Sign in with Device Code", "3. Sign in another way")


def _line_with(text: str, needle: str) -> str:
    """The one line of ``text`` holding ``needle`` (the test fails naming the text otherwise)."""
    found = [line for line in text.splitlines() if needle in line]
    assert found, text
    return found[0]


def test_logs_of_the_real_codex_sign_in_menu_show_each_entry_on_a_line_of_its_own(tmp_path: Path) -> None:
    tenv = _fleet("codex", tmp_path)
    try:
        _start_until_waiting(tenv)
        logs = tenv.inv_ok("fleet.logs", "--agent", "ag")
        lines = [line.strip() for line in logs.splitlines()]
        for entry in MENU:  # each entry a line of its own, whatever marks the highlighted one
            assert any(line.removeprefix(">").strip() == entry for line in lines), logs
        assert sum(QUESTION in line for line in lines) == 1, logs  # drawn once, read once
        assert "Welcome to Codex, OpenAI's command-line coding agent" in logs
        raw = tenv.inv_ok("fleet.logs", "--agent", "ag", "--raw")
        assert "\x1b[" in raw  # the bytes as written, sequences and all
        assert QUESTION in raw
    finally:
        tenv.inv("fleet.stop")


def test_logs_of_real_claude_code_offline_keep_the_spaces_between_words(tmp_path: Path) -> None:
    tenv = _fleet("claude", tmp_path)
    try:
        tenv.inv("fleet.start")
        deadline = time.monotonic() + 120
        while json.loads(tenv.inv("fleet.status", "--json").stdout)[0]["state"] != "failed":
            assert time.monotonic() < deadline, _screen(tenv, "ag")
            time.sleep(0.5)
        logs = tenv.inv_ok("fleet.logs", "--agent", "ag")
        assert _line_with(logs, "Welcome to Claude Code").strip().startswith("Welcome to Claude Code v")
        assert "Unable to connect to Anthropic services" in logs
        assert "Please check your internet connection and network settings." in logs
        previous = tenv.inv_ok("fleet.logs", "--agent", "ag", "--generation", "previous")
        assert "Unable to connect to Anthropic services" in previous
    finally:
        tenv.inv("fleet.stop")
