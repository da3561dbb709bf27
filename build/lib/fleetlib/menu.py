"""Numbered menus on an agent's screen, and the keys that choose an entry (pure).

The agent TUIs draw a choice as numbered entries with a cursor on one of them: ``❯ 1. Yes``
(Claude Code), ``> 1. Sign in with ChatGPT`` / ``› 1. Yes, proceed`` (Codex), ``● 1. Allow
once`` (Gemini CLI). They take keys, not text: a bracketed paste of ``2`` is ignored by the
Codex sign-in menu, and the Enter after it takes the highlighted entry. A digit typed as a
key is no better: Codex takes its entry at once (so the Enter after it lands on the next
screen), Claude Code's menus differ from one to the next. What every one of them does the
same is what a person does: the arrow keys move the cursor, Enter takes the entry under it.
So :func:`fleetlib.messaging.Messenger.send` answers a menu with Up/Down until the screen
shows the cursor on the asked entry, then Enter, then checks the screen changed.
"""

# The patterns quote the characters the TUIs really draw (❯, ›): look-alikes of ">" on purpose.
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from fleetlib.activity import bottom

# One entry: optional border and cursor mark, the number, "." or ")", the label.
_ENTRY: Final = re.compile(r"^[ \t│┃|]*(?P<mark>[❯›>●▶→] ?)?(?P<number>\d{1,2})[.)] +(?P<label>\S.*?)[ \t│┃|]*$")


@dataclass(frozen=True)
class Menu:
    """A menu as the screen shows it: entry number -> label, and the entry the cursor is on."""

    entries: dict[int, str]
    cursor: int

    def keys_to(self, target: int) -> list[str]:
        """The tmux key names that move the cursor to ``target`` (none when it is there)."""
        step = "Down" if target > self.cursor else "Up"
        return [step] * abs(target - self.cursor)

    def span(self) -> str:
        """The entries' numbers for a message: ``1-3``."""
        return f"{min(self.entries)}-{max(self.entries)}"


def parse_menu(screen: str, lines: int = 40) -> Menu | None:
    """The menu in the bottom ``lines`` lines of ``screen``: the entries numbered one after
    another around the last line with a cursor mark; None when there is no cursor on a
    numbered entry (a numbered list in a reply is not a menu)."""
    found = []
    for line in bottom(screen, lines).splitlines():
        match = _ENTRY.match(line)
        if match:
            found.append((int(match["number"]), match["label"], bool(match["mark"])))
    marked = [i for i, (_, _, mark) in enumerate(found) if mark]
    if not marked:
        return None
    at = marked[-1]
    first = last = at
    while first > 0 and found[first - 1][0] == found[first][0] - 1:
        first -= 1
    while last + 1 < len(found) and found[last + 1][0] == found[last][0] + 1:
        last += 1
    entries = {number: label for number, label, _ in found[first : last + 1]}
    return Menu(entries, found[at][0])


def choice(answer: str) -> int | None:
    """The entry an answer names when it is a number (``2``, `` 2 ``); None for text."""
    text = answer.strip()
    return int(text) if text.isdigit() and len(text) <= 2 else None
