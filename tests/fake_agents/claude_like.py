"""A fake runtime that draws a screen like Claude Code 2.1 (see tests/screens/claude-*.txt).

Idle: the "❯ " input line between two rules and "? for shortcuts" below; working: the spinner
line "✶ Baking… (2s · esc to interrupt)"; ``ask``: "Do you want to proceed?" with the numbered
"❯ 1. Yes / 2. No" menu. Behaviour: see ``_tui``. Run: ``python3 tests/fake_agents/claude_like.py``.
"""

# The screens quote the characters the real TUIs draw (❯, ›): look-alikes of ">" on purpose.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import sys

from _tui import Flavour, run

SPINNER = "·✢✳✶✻✽"


def _prompt(typed: str, width: int) -> tuple[str, ...]:
    rule = "─" * width
    return (rule, f"❯ {typed}", rule, "  ? for shortcuts")


CLAUDE_LIKE = Flavour(
    header=("╭─── Claude-like fake v0.1 ───╮", "│       Welcome back!         │", "╰─────────────────────────────╯"),
    user_line=lambda text: f"❯ {text}",
    reply_line=lambda text: f"⏺ {text}",
    prompt=_prompt,
    busy=lambda frame, seconds: f"{SPINNER[frame % len(SPINNER)]} Baking… ({seconds:.0f}s · esc to interrupt)",
    cursor="❯",
    question=(
        "─" * 60,
        " Bash command",
        "",
        "   rm -rf build/",
        "   Remove the build directory",
        "",
        " Do you want to proceed?",
        " ❯ 1. Yes",
        "   2. No, and tell Claude what to do differently (esc)",
        "",
        " Esc to cancel",
    ),
)

if __name__ == "__main__":
    sys.exit(run(CLAUDE_LIKE))
