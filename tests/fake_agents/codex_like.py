"""A fake runtime that draws a screen like the Codex CLI 0.171 (see tests/screens/codex-*.txt).

Idle: "› Ask Codex to do anything" (or the typed text) with "? for shortcuts" below; working:
"• Working (2s • esc to interrupt)" alternating • and ◦; ``ask``: "Would you like to run the
following command?" with "› 1. Yes, proceed (y)" and "Press enter to confirm or esc to cancel".
Behaviour: see ``_tui``. Run: ``python3 tests/fake_agents/codex_like.py``.
"""

# The screens quote the characters the real TUIs draw (❯, ›): look-alikes of ">" on purpose.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import sys

from _tui import Flavour, run


def _prompt(typed: str, width: int) -> tuple[str, ...]:
    return (f"› {typed or 'Ask Codex to do anything'}", "", "  ? for shortcuts")


CODEX_LIKE = Flavour(
    header=(
        "╭──────────────────────────────────╮",
        "│ >_ OpenAI Codex-like fake (v0.1) │",
        "╰──────────────────────────────────╯",
    ),
    user_line=lambda text: f"› {text}",
    reply_line=lambda text: f"• {text}",
    prompt=_prompt,
    busy=lambda frame, seconds: f"{'•◦'[frame % 2]} Working ({seconds:.0f}s • esc to interrupt)",
    cursor="›",
    question=(
        "  Would you like to run the following command?",
        "",
        "  $ rm -rf build/",
        "",
        "› 1. Yes, proceed (y)",
        "  2. No, and tell Codex what to do differently (esc)",
        "",
        "  Press enter to confirm or esc to cancel",
    ),
)

if __name__ == "__main__":
    sys.exit(run(CODEX_LIKE))
