"""The activity classifier: pure tests over captured real screens and synthetic ones, then the fake
runtimes (tests/fake_agents) classified live in a private tmux server."""

# The screens quote the characters the real TUIs draw (❯, ›): look-alikes of ">" on purpose.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fleetlib.activity import (
    ACTIVITY_STATES,
    FALLBACK_RULES,
    QUESTION_MAX_LINES,
    Debouncer,
    Transition,
    bottom,
    classify,
    question,
    rules_for,
)
from fleetlib.runtimes import RUNTIMES, ScreenRules, busy_pattern
from tests.real_clis import PrivateTmux

SCREENS = Path(__file__).parent / "screens"
FAKES = Path(__file__).parent / "fake_agents"


def screen(name: str) -> str:
    return (SCREENS / name).read_text()


# Every captured screen with a pattern to match, the runtime it came from, and what it must read as.
CAPTURED = [
    ("codex-signin-menu.txt", "codex", "waiting"),
    ("codex-trust-folder.txt", "codex", "waiting"),
    ("codex-idle-prompt.txt", "codex", "idle"),
    ("codex-working.txt", "codex", "working"),
    ("codex-reconnecting.txt", "codex", "working"),
    ("claude-theme-menu.txt", "claude", "waiting"),
    ("claude-trust-folder.txt", "claude", "waiting"),
    ("claude-idle-prompt.txt", "claude", "idle"),
    ("claude-idle-after-reply.txt", "claude", "idle"),
]
# Claude Code offline exits 1 after "Unable to connect to Anthropic services": the process state
# (the lead's "exited") tells; the last screen matches no pattern and reads by output age.
EXITED = "claude-offline-exit.txt"


def test_every_captured_screen_is_listed() -> None:
    assert sorted([EXITED, *(name for name, _, _ in CAPTURED)]) == sorted(p.name for p in SCREENS.glob("*.txt"))


@pytest.mark.parametrize(("output_age", "want"), [(None, "idle"), (0.0, "working"), (600.0, "idle")])
def test_the_screen_a_crashed_claude_leaves_reads_by_output_age(output_age: float | None, want: str) -> None:
    assert classify(screen(EXITED), rules_for("claude"), output_age=output_age) == want


@pytest.mark.parametrize(("name", "runtime", "want"), CAPTURED)
@pytest.mark.parametrize("output_age", [None, 0.0, 600.0])
def test_captured_real_screens_classify_by_their_patterns_whatever_the_output_age(
    name: str, runtime: str, want: str, output_age: float | None
) -> None:
    assert classify(screen(name), rules_for(runtime), output_age=output_age) == want


@pytest.mark.parametrize(
    ("name", "runtime", "expected"),
    [
        ("codex-signin-menu.txt", "codex", ["Choose how you want to use Codex.", "> 1. Sign in with ChatGPT"]),
        ("codex-trust-folder.txt", "codex", ["› 1. Trust and continue", "2. Back to Agent Command Center"]),
        ("claude-theme-menu.txt", "claude", ["Choose the text style", "❯ 2. Dark mode ✔"]),
        ("claude-trust-folder.txt", "claude", ["❯ 1. Yes, I trust this folder", "Enter to confirm · Esc to cancel"]),
    ],
)
def test_question_shows_the_question_and_its_menu_without_borders(name: str, runtime: str, expected: list[str]) -> None:
    shown = question(screen(name), rules_for(runtime))
    for line in expected:
        assert line in shown
    lines = shown.splitlines()
    assert 0 < len(lines) <= QUESTION_MAX_LINES
    assert all(line == line.strip("│╌─ ") and line for line in lines)


def test_question_without_a_question_is_the_last_non_blank_lines() -> None:
    text = "\n".join(f"line {n}" for n in range(1, 10)) + "\n\n\n"
    assert question(text, FALLBACK_RULES) == "line 5\nline 6\nline 7\nline 8\nline 9"
    assert question("", FALLBACK_RULES) == ""
    assert question("\n\n  \n", rules_for("claude")) == ""


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_known_runtime_has_screen_rules_and_keeps_its_busy_pattern(runtime: str) -> None:
    rules = rules_for(runtime)
    assert rules is RUNTIMES[runtime].screen
    assert rules.idle or rules.working or rules.waiting
    assert busy_pattern(runtime) == RUNTIMES[runtime].busy_pattern


@pytest.mark.parametrize("runtime", ["my-agent", "", "CLAUDE"])
def test_an_unknown_runtime_gets_the_fallback_rules(runtime: str) -> None:
    assert rules_for(runtime) == FALLBACK_RULES == ScreenRules()


RULES = ScreenRules(waiting=(r"Proceed\?",), working=(r"esc to interrupt",), idle=(r"^> $",), lines=5)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Proceed?\n... esc to interrupt\n> ", "waiting"),
        ("... esc to interrupt\n> ", "working"),
        ("output\n> ", "idle"),
        # Only the bottom 5 lines count, and trailing blank lines do not push a match out.
        ("Proceed?\n1\n2\n3\n4\n5\n> ", "idle"),
        ("1\n2\n3\nProceed?\n> " + "\n" * 30, "waiting"),
    ],
)
def test_precedence_is_waiting_working_idle_in_the_bottom_lines(text: str, want: str) -> None:
    assert classify(text, RULES, output_age=None) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Pick one:\n│ ❯ 1. Yes  │\n│   2. No   │", "waiting"),  # a cursor inside a box
        ("> 1. Sign in with ChatGPT", "waiting"),  # on the very first line
        ("if n > 1. Then halve it.\n? for shortcuts", "idle"),  # mid-line: prose, not a menu
        ("✻ Baked for 0s\n❯\n? for shortcuts", "idle"),  # a finished turn
        ("✶ Baking… (3s)\n❯", "working"),
    ],
)
def test_line_start_patterns_match_only_at_a_line_start(text: str, want: str) -> None:
    assert classify(text, rules_for("claude"), output_age=None) == want


def test_rules_written_with_a_caret_still_match_line_starts() -> None:
    rules = ScreenRules(waiting=(r"^Continue\?",))
    assert classify("output\nContinue? [y/N]", rules, output_age=None) == "waiting"
    assert classify("Do you Continue? no", rules, output_age=None) == "idle"


@pytest.mark.parametrize(
    ("output_age", "want"),
    [(None, "idle"), (0.0, "working"), (4.9, "working"), (5.0, "idle"), (3600.0, "idle")],
)
@pytest.mark.parametrize("rules", [FALLBACK_RULES, RULES])
def test_without_a_matching_pattern_output_age_decides(rules: ScreenRules, output_age: float | None, want: str) -> None:
    assert classify("compiling foo.c\ncompiling bar.c", rules, output_age=output_age) == want


@pytest.mark.parametrize(
    ("text", "age", "want"),
    [("$ ls\nREADME\n$ ", 0.1, "idle"), ("# ", None, "idle"), ("$ make\ncc -c a.c", 0.5, "working")],
)
def test_a_shell_is_idle_at_its_prompt_and_working_while_a_command_prints(
    text: str, age: float | None, want: str
) -> None:
    assert classify(text, rules_for("shell"), output_age=age) == want


@pytest.mark.parametrize(
    ("text", "lines", "want"),
    [("a\nb\nc\n\n \n", 2, "b\nc"), ("a\nb", 5, "a\nb"), ("a\nb", 0, ""), ("", 3, "")],
)
def test_bottom_takes_the_last_lines_after_trailing_blank_ones(text: str, lines: int, want: str) -> None:
    assert bottom(text, lines) == want


def feed(debouncer: Debouncer, samples: list[tuple[float, str]]) -> list[Transition]:
    return [t for now, raw in samples if (t := debouncer.observe(raw, now)) is not None]


def test_the_first_observation_is_reported_at_once() -> None:
    debouncer = Debouncer(debounce=1.0)
    assert debouncer.observe("idle", 10.0) == Transition(None, "idle", 10.0)
    assert (debouncer.state, debouncer.since) == ("idle", 10.0)


def test_a_redraw_flicker_within_the_debounce_changes_nothing() -> None:
    debouncer = Debouncer(debounce=1.0)
    samples = [(0.0, "working"), (0.2, "idle"), (0.4, "working"), (0.9, "idle"), (1.5, "waiting"), (2.0, "working")]
    assert feed(debouncer, samples) == [Transition(None, "working", 0.0)]
    assert (debouncer.state, debouncer.since) == ("working", 0.0)


def test_a_state_that_persists_is_reported_with_the_time_it_was_first_seen() -> None:
    debouncer = Debouncer(debounce=1.0)
    samples = [(0.0, "working"), (5.0, "idle"), (5.5, "idle"), (6.0, "idle"), (6.5, "idle")]
    assert feed(debouncer, samples) == [Transition(None, "working", 0.0), Transition("working", "idle", 5.0)]
    assert (debouncer.state, debouncer.since) == ("idle", 5.0)


def test_a_pending_state_restarts_its_clock_when_another_replaces_it() -> None:
    debouncer = Debouncer(debounce=1.0)
    samples = [(0.0, "idle"), (1.0, "working"), (1.8, "waiting"), (2.5, "waiting"), (2.9, "waiting")]
    assert feed(debouncer, samples) == [Transition(None, "idle", 0.0), Transition("idle", "waiting", 1.8)]


@pytest.mark.parametrize("process_state", ["exited", "failed", "stopped", "restarting"])
def test_process_states_are_reported_at_once_and_so_is_the_first_screen_after_them(process_state: str) -> None:
    assert process_state not in ACTIVITY_STATES
    debouncer = Debouncer(debounce=10.0)
    samples = [(0.0, "working"), (0.1, process_state), (0.2, "idle"), (0.3, "working")]
    assert feed(debouncer, samples) == [
        Transition(None, "working", 0.0),
        Transition("working", process_state, 0.1),
        Transition(process_state, "idle", 0.2),
    ]


def test_a_zero_debounce_reports_every_change() -> None:
    debouncer = Debouncer(debounce=0.0)
    assert len(feed(debouncer, [(0.0, "idle"), (0.1, "working"), (0.2, "idle")])) == 3


# --- live: the fake runtimes in a private tmux server ------------------------------------------


@pytest.mark.tmux
@pytest.mark.parametrize(("fake", "runtime"), [("claude_like.py", "claude"), ("codex_like.py", "codex")])
def test_a_fake_runtime_reads_idle_working_waiting_and_idle_again(
    tmux: PrivateTmux, tmp_path: Path, fake: str, runtime: str
) -> None:
    rules = rules_for(runtime)
    tmux.start([sys.executable, str(FAKES / fake)], cwd=tmp_path)
    tmux.poll_state(rules, "idle")

    tmux.send_keys("work 3")
    tmux.poll_state(rules, "working")
    tmux.poll(lambda s: "done after" in s, timeout=60, what="the reply to work 3")
    tmux.poll_state(rules, "idle")

    tmux.send_keys("ask")
    shown = question(tmux.poll_state(rules, "waiting"), rules)
    assert "1. Yes" in shown
    assert "2. No" in shown

    tmux.send_keys("y", enter=False)
    tmux.poll(lambda s: "approved" in s, timeout=60, what="the answer taken")
    tmux.poll_state(rules, "idle")

    tmux.send_keys("quit")
    tmux.poll(lambda _: tmux.exit_status() is not None, timeout=60, what="the exit after quit")
    assert tmux.exit_status() == 0


@pytest.mark.tmux
@pytest.mark.parametrize(("fake", "want"), [("chatter.py", "working"), ("silent.py", "idle")])
def test_without_patterns_the_output_age_tells_a_chatterer_from_a_silent_one(
    tmux: PrivateTmux, tmp_path: Path, fake: str, want: str
) -> None:
    # A short idle_after keeps the test quick; tmux's window_activity has 1 s resolution.
    rules = replace(rules_for("my-custom-agent"), idle_after=3.0)
    tmux.start([sys.executable, str(FAKES / fake)], cwd=tmp_path)
    tmux.poll_state(rules, want)
    if fake == "chatter.py":
        tmux.poll(lambda s: "chatter line 3" in s, timeout=60, what="three lines")
        assert classify(tmux.capture(), rules, output_age=tmux.output_age()) == "working"
