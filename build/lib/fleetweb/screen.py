"""An agent's screen as HTML, played on the emulator ``fleet logs`` uses (:mod:`fleetlib.terminal`).

The pane's text with its colours (``tmux capture-pane -e``) is fed to a
:class:`fleetlib.terminal.LiveText` of the pane's size, and each cell is read back: runs of
cells with the same colours become one ``<span>``. Every character is escaped
(:func:`html.escape`): what an agent prints is text, never markup; a colour reaches the
page only as one of the sixteen class names or a six-digit hex value checked here.
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

from fleetlib.terminal import MAX_COLUMNS, MAX_ROWS, _prepare, _Screen, _Stream

NAMED: Final = frozenset(
    {
        "black",
        "red",
        "green",
        "brown",
        "blue",
        "magenta",
        "cyan",
        "white",
        "brightblack",
        "brightred",
        "brightgreen",
        "brightbrown",
        "brightblue",
        "brightmagenta",
        "brightcyan",
        "brightwhite",
    }
)
_HEX: Final = re.compile(r"[0-9a-fA-F]{6}")


class _ColourScreen(_Screen):
    """The emulator ``logs`` uses, keeping colours on plain ASCII too: its fast path draws
    cells without attributes (text is all ``logs`` reads); the page shows the colours."""

    def _draw_ascii(self, data: str) -> None:
        attrs = self.cursor.attrs
        if attrs._replace(data=" ") == self.default_char:
            super()._draw_ascii(data)
            return
        for char in data:
            if self.cursor.x >= self.columns:
                self.wrapped.add(self.cursor.y)
                self.carriage_return()
                self.linefeed()
            self.buffer[self.cursor.y][self.cursor.x] = attrs._replace(data=char)
            self.cursor.x += 1


def _colour(value: str, layer: str) -> tuple[list[str], str]:
    """The CSS classes and style for one cell colour (``fg``/``bg``); nothing for the default."""
    if value in NAMED:
        return [f"{layer}-{value}"], ""
    if _HEX.fullmatch(value):
        return [], f"{'color' if layer == 'fg' else 'background'}:#{value.lower()}"
    return [], ""


def _style(cell: Any) -> tuple[str, str]:
    fg, bg = (cell.bg, cell.fg) if cell.reverse else (cell.fg, cell.bg)
    classes, styles = [], []
    for value, layer in ((fg, "fg"), (bg, "bg")):
        named, style = _colour(value, layer)
        classes += named
        if style:
            styles.append(style)
    if cell.reverse and fg == "default":
        classes.append("rev-fg")  # the text takes the page's background
    if cell.reverse and bg == "default":
        classes.append("rev-bg")  # the cell takes the page's text colour
    classes += [name for name in ("bold", "italics", "underscore", "strikethrough") if getattr(cell, name)]
    return " ".join(classes), ";".join(styles)


def screen_rows(text: str, columns: int, rows: int) -> list[list[tuple[str, str, str]]]:
    """The screen as rows of runs ``(text, classes, style)``, trailing blanks dropped."""
    columns, rows = max(1, min(columns, MAX_COLUMNS)), max(1, min(rows, MAX_ROWS))
    screen = _ColourScreen(columns, rows)
    # capture-pane ends every row with a newline; the last one would scroll the top row away.
    _Stream(screen).feed(_prepare(text[:-1] if text.endswith("\n") else text))
    out: list[list[tuple[str, str, str]]] = []
    for y in range(rows):
        line: dict[int, Any] = screen.buffer.get(y) or {}
        runs: list[tuple[str, str, str]] = []
        last = max(line, default=-1)
        for x in range(min(last + 1, columns)):
            cell = line.get(x)
            data = cell.data if cell is not None else " "
            style = _style(cell) if cell is not None else ("", "")
            if runs and (runs[-1][1], runs[-1][2]) == style:
                runs[-1] = (runs[-1][0] + data, *style)
            else:
                runs.append((data, *style))
        while runs and not runs[-1][0].strip() and not runs[-1][1] and not runs[-1][2]:
            runs.pop()
        if runs and not runs[-1][1] and not runs[-1][2]:
            runs[-1] = (runs[-1][0].rstrip(), "", "")
        out.append(runs)
    while out and not out[-1]:
        out.pop()
    return out


def screen_html(text: str, columns: int, rows: int) -> str:
    """The screen as escaped HTML: one ``<div class="row">`` per row, ``<span>`` per run."""
    parts = []
    for runs in screen_rows(text, columns, rows):
        spans = []
        for data, classes, style in runs:
            attrs = (f' class="{classes}"' if classes else "") + (f' style="{style}"' if style else "")
            spans.append(f"<span{attrs}>{html.escape(data)}</span>" if attrs else html.escape(data))
        parts.append(f'<div class="row">{"".join(spans)}</div>')
    return "".join(parts)
