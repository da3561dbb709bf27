"""The pure parts of send and wait (issue 20): menus read from captured real screens, the
keys that choose an entry, "sent" meeting "seen", and a wait that ends on a down agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlib import activity, tmux
from fleetlib.menu import Menu, choice, parse_menu
from fleetlib.status import AgentStatus, FleetStatus, after_send
from fleetlib.systemd import UnitState
from fleetlib.waiting import wait_for
from fleetlib.watcher import _new_send, _Seen

SCREENS = Path(__file__).parent / "screens"


@pytest.mark.parametrize(
    ("screen", "entries", "cursor"),
    [
        ("codex-signin-menu", ["Sign in with ChatGPT", "Sign in with Device Code", "Sign in another way"], 1),
        ("claude-trust-folder", ["Yes, I trust this folder", "No, exit"], 1),
        ("codex-trust-folder", ["Trust and continue", "Back to Agent Command Center"], 1),
    ],
)
def test_the_menus_of_the_real_clis_are_read_with_their_cursor(screen: str, entries: list[str], cursor: int) -> None:
    menu = parse_menu((SCREENS / f"{screen}.txt").read_text())
    assert menu is not None
    assert list(menu.entries.values()) == entries
    assert menu.cursor == cursor


def test_the_claude_theme_menu_has_its_cursor_on_entry_2() -> None:
    menu = parse_menu((SCREENS / "claude-theme-menu.txt").read_text())
    assert menu is not None
    assert (menu.cursor, menu.span()) == (2, "1-7")


@pytest.mark.parametrize("screen", ["claude-idle-prompt", "claude-idle-after-reply", "codex-idle-prompt"])
def test_a_screen_without_a_cursor_on_a_numbered_entry_has_no_menu(screen: str) -> None:
    assert parse_menu((SCREENS / f"{screen}.txt").read_text()) is None
    assert parse_menu("Steps:\n1. build\n2. test\n> ") is None  # a numbered list in a reply


def test_the_keys_to_an_entry_are_arrows_from_the_cursor() -> None:
    menu = Menu({1: "a", 2: "b", 3: "c"}, cursor=1)
    assert menu.keys_to(3) == ["Down", "Down"]
    assert menu.keys_to(1) == []
    assert Menu(menu.entries, cursor=3).keys_to(2) == ["Up"]
    assert [choice(text) for text in ("2", " 3 ", "y", "2a", "", "123")] == [2, 3, None, None, None, None]


def test_an_observation_older_than_the_send_is_superseded_by_working() -> None:
    assert after_send("idle", 10.0, 20.0) == ("working", 20.0)
    assert after_send("waiting", 20.0, 20.0) == ("working", 20.0)
    assert after_send("idle", 30.0, 20.0) == ("idle", 30.0)  # seen after the send
    assert after_send("idle", 10.0, None) == ("idle", 10.0)
    assert after_send("working", 10.0, 20.0) == ("working", 10.0)


def _seen(state: str, since: float) -> _Seen:
    debouncer = activity.Debouncer(1.0)
    debouncer.observe(state, since)
    return _Seen("%1", 0, debouncer)


def test_the_watcher_takes_a_send_as_working_until_it_sees_otherwise_after_the_debounce() -> None:
    seen = _seen("idle", 10.0)
    window = tmux.Window("a", 1, False, activity="idle", activity_since=10.0, pane_id="%1", sent_at=20.0)
    assert _new_send(seen, window) == 20.0
    assert (seen.debouncer.state, seen.debouncer.since) == ("working", 20.0)
    assert _new_send(seen, window) is None  # told once
    assert seen.debouncer.observe("idle", 21.0) is None  # debounced like any other change
    change = seen.debouncer.observe("idle", 22.5)
    assert change is not None
    assert (change.new, change.since) == ("idle", 21.0)

    # Already seen after the send (a watcher restarted after the turn): nothing to assume.
    later = _seen("idle", 30.0)
    assert _new_send(later, window) == 20.0
    assert later.debouncer.state == "idle"


def _row(name: str, state: str, activity_state: str | None = None) -> AgentStatus:
    return AgentStatus(
        name, state, f"{name}.service", "loaded", "active", "running", None, 0, True, activity=activity_state
    )


@pytest.mark.parametrize("down", ["failed", "exited", "stopped"])
def test_a_wait_ends_at_once_on_a_down_agent_unless_its_state_is_the_one_asked_for(down: str) -> None:
    rows = [_row("a", "running", "working"), _row("b", down)]
    polls: list[int] = []

    def observe() -> FleetStatus:
        polls.append(1)
        return FleetStatus("tmux", UnitState("holder"), rows)

    result = wait_for(observe, "idle", 300.0, sleep=lambda _: None)
    assert (result.ok, len(polls)) == (False, 1)
    assert [row.name for row in result.down] == ["b"]
    assert f"b is {down}" in result.error()
    assert "timed out" not in result.error()
    assert wait_for(lambda: FleetStatus("tmux", UnitState("h"), [_row("b", down)]), down, 1.0).ok


@pytest.mark.parametrize(
    ("down", "because", "hint"),
    [
        (["b"], "so it will not become idle by itself", "start it with"),
        (["b", "c"], "so they will not become idle by themselves", "start them with"),
    ],
)
def test_a_down_wait_names_every_agent_in_one_sentence_that_agrees_with_their_number(
    down: list[str], because: str, hint: str
) -> None:
    rows = [_row(name, "stopped") for name in down]
    error = wait_for(lambda: FleetStatus("tmux", UnitState("h"), rows), "idle", 300.0, sleep=lambda _: None).error()
    assert error.startswith("error: " + ", ".join(f"{name} is stopped" for name in down))
    assert because in error
    assert hint in error


def test_a_wait_sleeps_no_further_than_its_timeout() -> None:
    # Defect: `wait --timeout 1` said "timed out after 1.6 s": it slept a whole poll past
    # the limit before its last look.
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def observe() -> FleetStatus:
        now[0] += 0.15  # a look takes time too
        return FleetStatus("tmux", UnitState("h"), [_row("a", "working")])

    result = wait_for(observe, "idle", 1.0, clock=lambda: now[0], sleep=sleep)
    assert not result.ok
    assert all(s >= 0 for s in slept)
    assert result.seconds <= 1.0 + 0.15  # the limit and the one look that ends it
