"""The reading rule of fleetlib.terminal on synthetic escape sequences and on byte streams
recorded from the real CLIs (tests/screens/*.transcript, written by `fleet logs --raw`'s
source: the agents' transcripts, offline Claude Code and Codex at its sign-in menu)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlib import terminal, transcript
from fleetlib.paths import FleetPaths

SCREENS = Path(__file__).parent / "screens"
CODEX_MENU = ("> 1. Sign in with ChatGPT", "2. Sign in with Device Code", "3. Sign in another way")


def render(text: str, columns: int = 40, rows: int = 6) -> list[str]:
    return terminal.render(text, columns, rows)


def test_words_placed_by_cursor_moves_keep_their_spaces() -> None:
    assert render("Welcome\x1b[9Gto\x1b[12GClaude\x1b[1CCode\r\n") == ["Welcome to Claude Code"]


def test_a_menu_drawn_at_positions_is_one_line_per_entry() -> None:
    menu = "\x1b[1;3HChoose:\x1b[3;1H> 1. Yes\x1b[4;3H2. No\x1b[6;1H"
    assert render(menu) == ["  Choose:", "", "> 1. Yes", "  2. No"]


def test_a_redraw_loop_reads_once() -> None:
    frame = "\x1b[2J\x1b[H> prompt\r\n  status: idle"
    assert render(frame * 500) == ["> prompt", "  status: idle"]


def test_a_redraw_in_place_reads_its_last_state_only() -> None:
    spinner = "".join(f"\r\x1b[2Kworking {c}" for c in "|/-\\" * 100) + "\r\x1b[2Kdone\r\n"
    assert render("start\r\n" + spinner) == ["start", "done"]


def test_screens_cleared_between_different_contents_are_each_kept() -> None:
    assert render("one\x1b[2J\x1b[Htwo\x1b[2J\x1b[Hthree") == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("progress 10%\rprogress 99%\rprogress 100%\r\n", ["progress 100%"]),
        ("abcdef\rXY\r\n", ["XYcdef"]),  # a return overwrites only what is written again
        ("abc\b\bXY\r\n", ["aXY"]),
    ],
)
def test_carriage_returns_and_backspaces_overwrite_as_on_a_screen(raw: str, expected: list[str]) -> None:
    assert render(raw) == expected


def test_lines_scrolled_off_the_top_come_first_in_order() -> None:
    text = "".join(f"line {n}\r\n" for n in range(20))
    assert render(text, rows=5) == [f"line {n}" for n in range(20)]


def test_a_full_screen_program_in_the_alternate_screen_is_read_as_it_left_it() -> None:
    text = "before\r\n\x1b[?1049h\x1b[H\x1b[2Jframe 1\x1b[Hframe 2\x1b[?1049lafter\r\n"
    assert render(text) == ["frame 2", "before", "after"]


def test_ended_in_the_alternate_screen_the_main_screen_comes_first() -> None:
    assert render("shell line\r\n\x1b[?1049h\x1b[Hmenu entry") == ["shell line", "menu entry"]


def test_a_line_longer_than_the_screen_reads_as_one_line_as_written() -> None:
    text = "a" * 39 + " " + "b" * 45 + "\r\nnext\r\n"
    assert render(text) == ["a" * 39 + " " + "b" * 45, "next"]
    assert render("".join(f"{n:03d}" + "x" * 60 + "\r\n" for n in range(10))) == [
        f"{n:03d}" + "x" * 60 for n in range(10)
    ]  # also across scrolling


def test_screen_lines_is_the_one_rule_for_a_screen_as_text() -> None:
    assert terminal.screen_lines("a  \nb\n\n  \n") == "a\nb"
    assert terminal.screen_lines("a\nb\nc\n", 2) == "b\nc"


def test_the_recorded_size_is_used_and_an_absurd_one_is_not() -> None:
    assert terminal.size(120, 40) == (120, 40)
    assert terminal.size(10**9, 40) == (terminal.DEFAULT_COLUMNS, terminal.DEFAULT_ROWS)
    assert terminal.size(None, None) == (terminal.DEFAULT_COLUMNS, terminal.DEFAULT_ROWS)


# --------------------------------------------------------------------------- recorded streams


def recorded(name: str) -> str:
    return (SCREENS / name).read_bytes().decode("utf-8", "replace")


def test_recorded_claude_code_reads_with_its_spaces() -> None:
    lines = terminal.render(recorded("claude-offline.transcript"))
    assert "Welcome to Claude Code v2.1.197" in lines
    assert " Unable to connect to Anthropic services" in lines
    assert " Please check your internet connection and network settings." in lines


def test_recorded_codex_sign_in_menu_reads_one_entry_per_line() -> None:
    lines = [line.strip() for line in terminal.render(recorded("codex-signin.transcript"))]
    for entry in CODEX_MENU:
        assert entry in lines
    assert sum("Sign in with ChatGPT" in line for line in lines) == 1


def test_following_a_recorded_stream_byte_by_byte_shows_what_reading_shows(tmp_path: Path) -> None:
    """Fed in pieces of any size (sequences cut anywhere), the follower shows the same lines."""
    data = (SCREENS / "codex-signin.transcript").read_bytes()
    paths = FleetPaths.resolve(tmp_path / "home")
    transcript.ensure_log_dir(paths)
    path = transcript.log_path(paths, "cx")
    path.write_bytes(b"")
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    steps = iter(pieces)

    def sleep(_: float) -> None:
        with path.open("ab") as handle:
            handle.write(next(steps, b""))

    shown: list[str] = []
    polls = iter(range(len(pieces) + 3))
    for chunk in transcript.follow(paths, "cx", lines=50, sleep=sleep, stop=lambda: next(polls, None) is None):
        shown += chunk.split("\n")
    stripped = [line.strip() for line in shown]
    for entry in CODEX_MENU:
        assert entry in stripped
    assert "Welcome to Codex, OpenAI's command-line coding agent" in stripped
