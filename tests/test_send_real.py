"""`fleet send --answer` on the real Codex CLI's sign-in menu, offline (issue 20).

The menu ignores a bracketed paste and takes the highlighted entry on Enter, so a pasted
``3`` followed by Enter chose entry 1 ("Sign in with ChatGPT", a browser sign-in) and was
reported ``accepted``. The witness is the agent's own screen: entry 3 ("Sign in another
way") leads to a menu of its own ("Use an OpenAI API key"); entry 1 would show the
browser sign-in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_activity_real_fleet import QUESTION, SIGN_IN, _fleet, _screen, _start_until_waiting

pytestmark = pytest.mark.tmux

ENTRY_3_NEXT = "Use an OpenAI API key"  # the first entry of the menu "Sign in another way" leads to


def test_answer_selects_the_asked_entry_of_the_real_codex_sign_in_menu(tmp_path: Path) -> None:
    tenv = _fleet("codex", tmp_path)
    try:
        _start_until_waiting(tenv)
        assert QUESTION in _screen(tenv, "ag")

        answered = tenv.inv("fleet.send", "--agent", "ag", "--answer", "--message", "3")
        assert answered.returncode == 0, (answered.stdout, answered.stderr, _screen(tenv, "ag"))
        after = _screen(tenv, "ag")
        assert ENTRY_3_NEXT in after, after
        assert not any(word in after for word in SIGN_IN), after
        assert "Sign in another way" in answered.stdout  # it says which entry it chose
    finally:
        tenv.inv("fleet.stop")
