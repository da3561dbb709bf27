"""A screen shown as text: the one rule for every place fleet shows what a pane (or a
rendered transcript) displays, without the terminal emulator.

:func:`screen_lines` serves ``fleet logs``, ``FLEET_SCREEN`` for ``on_state_change`` and
the last lines in error messages, whether the screen came from tmux (``capture-pane``) or
from :mod:`fleetlib.terminal`. It lives apart from that emulator so the commands that only
capture a pane never import ``pyte`` (tens of milliseconds at every start). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

# The size of a pane whose size is not known: tmux's ``default-size``, the size of a window
# in a session no client is attached to (the fleet's windows, unless someone attaches).
DEFAULT_COLUMNS: Final = 80
DEFAULT_ROWS: Final = 24
MAX_COLUMNS: Final = 1000  # a recorded size beyond these is not believed (a hostile header)
MAX_ROWS: Final = 500


def rstrip_rows(rows: Iterable[str]) -> list[str]:
    """``rows`` without trailing spaces, and without the blank rows at the end."""
    kept = [row.rstrip() for row in rows]
    while kept and not kept[-1]:
        kept.pop()
    return kept


def screen_lines(text: str, count: int | None = None) -> str:
    """A screen (or its scroll-back) as shown to a person: lines without trailing spaces,
    no blank lines at the end, the last ``count`` lines (all when None). Pure."""
    kept = rstrip_rows(text.splitlines())
    return "\n".join(kept if count is None else kept[-count:] if count > 0 else [])


def size(columns: int | None, rows: int | None) -> tuple[int, int]:
    """``(columns, rows)`` to render at: the recorded size when it is believable, else
    :data:`DEFAULT_COLUMNS` x :data:`DEFAULT_ROWS`."""
    if columns is None or rows is None or not (1 < columns <= MAX_COLUMNS and 1 < rows <= MAX_ROWS):
        return DEFAULT_COLUMNS, DEFAULT_ROWS
    return columns, rows
