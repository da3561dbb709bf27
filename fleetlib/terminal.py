"""What a program wrote to a terminal, as the text a person watching it saw.

Agents are terminal programs: Claude Code places each word with a cursor move, Codex
draws its menus at screen positions, both redraw the same screen many times. Deleting
the control sequences (what ``fleet logs`` once did) runs words together and puts a whole
menu on one line. Instead the bytes are played on a terminal emulator, ``pyte`` (a
VT100/xterm screen in pure Python), of the pane's size, and the text is read off it.

**The reading rule** (:func:`render`, :class:`LiveText`). The text is, in order:

1. every line that scrolls off the top of the screen (a line feed at the bottom, also
   within a scroll region that starts at the top row), as it stood when it left;
2. every screen that is erased as a whole -- clear screen (``CSI 2 J``/``CSI 3 J``), a
   reset (``ESC c``), leaving the alternate screen (a full-screen program's frames) --
   as it stood just before, unless it is the same as the screen shown just before it
   with nothing between them (a program that clears and redraws the same screen in a
   loop is read once);
3. the final screen, unless it is that same last screen again.

Lines and screens lose their trailing spaces; a screen loses its blank rows at the
bottom. A redraw in place (cursor moves, line erases: a spinner, a status line, Ink's
re-render) changes the screen and never adds a line: only its final state is read. So the
text is what a person scrolling back through the pane would find, with full-screen
frames kept where the pane would have dropped them. What never reaches the screen does
not count: titles, colours, hyperlink targets, and queries to the terminal.

Before the emulator sees them, string sequences (OSC, DCS, SOS, PM, APC; one that never
ends, ends at the line's end) and CSI sequences the emulator does not implement are
removed (:func:`_prepare`): ``pyte`` would otherwise draw their bytes as text. Any other
byte stream is safe: nothing here raises on input, and time is linear in its size.

A line feed also returns the carriage (see :meth:`_Screen.linefeed`). Known limits: a pane
resized while a generation ran is rendered at the size the generation started with (the
transcript does not record resizes); lines scrolled out of a region that does not start at
the top row are not read.

:func:`fleetlib.screen.screen_lines` (re-exported here) is the one rule for a screen shown as
text anywhere (``fleet logs``, ``FLEET_SCREEN`` for ``on_state_change``, the last lines in
error messages), whether the screen came from this emulator or from tmux's own (``capture-pane``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import Any, Final

import pyte
from pyte import modes
from pyte.charsets import LAT1_MAP
from pyte.screens import Char, Cursor
from wcwidth import wcwidth

from fleetlib.screen import DEFAULT_COLUMNS, DEFAULT_ROWS, MAX_COLUMNS, MAX_ROWS, rstrip_rows, screen_lines, size

# Re-exported: callers that render also name the screen rule and the size here.
__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_ROWS",
    "HOLD_CAP",
    "MAX_COLUMNS",
    "MAX_ROWS",
    "WRAP",
    "LiveText",
    "render",
    "screen_lines",
    "size",
]

# Marks a row whose text goes on in the next row (never drawn: the emulator drops controls).
WRAP: Final = "\x00"
# xterm's alternate screen: 47 and 1047 switch, 1049 also saves and restores the cursor.
_ALTERNATE: Final = frozenset({47, 1047, 1049})

# String sequences: OSC, DCS, SOS, PM, APC (7- and 8-bit), ended by BEL or ST; one that
# never ends, ends at the line's end (a terminal would swallow the rest of the stream).
_STRINGS: Final = re.compile(
    "(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*?(?:\x07|\x1b\\\\|\x9c)"
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*"
)
# A CSI sequence the emulator implements: an optional "?", digits and ";", one final byte
# it knows. Every other CSI sequence (private markers "<", "=", ">", intermediates such as
# "$" or " ", sub-parameters ":") is removed: pyte would draw part of it as text.
_KNOWN_FINALS: Final = "".join(sorted(pyte.Stream.csi))
_CSI: Final = re.compile("\x1b\\[(\\?)?([0-9;]*)([" + re.escape(_KNOWN_FINALS) + "])")
_UNKNOWN_CSI: Final = re.compile("(?:\x1b\\[|\x9b)(?!\\??[0-9;]*[" + re.escape(_KNOWN_FINALS) + "])[0-?]*[ -/]*[@-~]?")
# Characters that must never be drawn: controls the parser leaves to the screen.
_UNDRAWABLE: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


# Runs of moves the emulator would take one control at a time (about a microsecond each),
# written as the fewest that do the same: what comes before the run's last return does not
# matter (a return goes to the first column wherever the cursor is), and n backspaces are
# "CSI n D" (both stop at the first column and leave a pending wrap alike).
_MOVES: Final = re.compile("[\r\b]{2,}")


def _fewer_moves(run: re.Match[str]) -> str:
    moves = run[0]
    last_return = moves.rfind("\r")
    back = len(moves) - last_return - 1  # the backspaces after it (all of them without one)
    return ("\r" if last_return >= 0 else "") + (f"\x1b[{back}D" if back > 1 else "\b" * back)


# A run of escapes: each cancels the one before it (as in a terminal), so the last one counts.
_ESCAPES: Final = re.compile("\x1b{2,}")


def _prepare(text: str) -> str:
    text = _MOVES.sub(_fewer_moves, _UNKNOWN_CSI.sub("", _STRINGS.sub("", text)))
    return _ESCAPES.sub("\x1b", text) if "\x1b\x1b" in text else text


class _Nothing(set[int]):
    """A set that stays empty (what is added is dropped)."""

    def add(self, element: int) -> None:
        pass

    def update(self, *others: Iterable[int]) -> None:
        pass


class _Screen(pyte.Screen):
    """A pyte screen that keeps what leaves it (the reading rule's parts 1 and 2) in
    ``gone`` as ``(pushed, lines)``: ``pushed`` False for one line scrolled off the top,
    True for a whole screen erased."""

    def __init__(self, columns: int, rows: int) -> None:
        self.gone: list[tuple[bool, list[str]]] = []
        # The last screen pushed, while nothing else has left the screen since (None otherwise).
        self.last_pushed: list[str] | None = None
        self.saved_main: tuple[dict[int, Any], Cursor, set[int]] | None = None  # in the alternate screen
        self.wrapped: set[int] = set()  # rows whose text goes on in the next row (an automatic wrap)
        self._cells = {chr(c): Char(chr(c)) for c in range(0x20, 0x7F)}
        super().__init__(columns, rows)
        self.dirty = _Nothing()  # pyte's record of rows to repaint: nobody repaints here

    # ------------------------------------------------------------------ reading

    def row(self, y: int, buffer: dict[int, Any] | None = None, wrapped: set[int] | None = None) -> str:
        """Row ``y`` as text; a row that wraps into the next one ends in :data:`WRAP`."""
        line = (self.buffer if buffer is None else buffer).get(y)
        if y in (self.wrapped if wrapped is None else wrapped):
            return "".join(line[x].data if x in line else " " for x in range(self.columns)) + WRAP if line else WRAP
        if not line:
            return ""
        return "".join(line[x].data if x in line else " " for x in range(min(max(line) + 1, self.columns))).rstrip()

    def rows(self, end: int | None = None) -> list[str]:
        return [self.row(y) for y in range(self.lines if end is None else end)]

    def final(self) -> list[str]:
        """The final screen (part 3): empty when it repeats the last screen pushed. Ended
        in the alternate screen, the main screen (what was there before) comes first."""
        rows = rstrip_rows(self.rows())
        rows = [] if rows == self.last_pushed else rows
        if self.saved_main is not None:
            main, _, wrapped = self.saved_main
            rows = rstrip_rows(self.row(y, main, wrapped) for y in range(self.lines)) + rows
        return rows

    def _push(self) -> None:
        rows = rstrip_rows(self.rows())
        if rows and rows != self.last_pushed:
            self.gone.append((True, rows))
            self.last_pushed = rows

    # ------------------------------------------------------------------ events

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y != bottom:
            self.cursor_down()
            return
        if top == 0:
            self.gone.append((False, [self.row(0)]))
            self.last_pushed = None
        buffer = self.buffer
        for y in range(top, bottom):  # as pyte's, without creating the empty rows it moves
            line = buffer.pop(y + 1, None)
            if line is None:
                buffer.pop(y, None)
            else:
                buffer[y] = line
        buffer.pop(bottom, None)
        if self.wrapped:
            self.wrapped = {y - 1 if top < y <= bottom else y for y in self.wrapped if y != top}

    def linefeed(self) -> None:
        # A line feed also returns the carriage: the pane's tty adds that return (ONLCR); a
        # bare one in a transcript was written by a program that turned it off, and such
        # programs (crossterm, and Node TUIs, which keep ONLCR on) write their own return.
        self.index()
        self.carriage_return()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        whole_from_top = how == 0 and self.cursor.y == 0 and self.cursor.x == 0
        if how in (2, 3) or whole_from_top:
            self._push()
        if how == 0:
            self.wrapped = {y for y in self.wrapped if y < self.cursor.y}
        elif how == 1:
            self.wrapped = {y for y in self.wrapped if y > self.cursor.y}
        else:
            self.wrapped = set()
        super().erase_in_display(how)

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        self.wrapped.discard(self.cursor.y)
        super().erase_in_line(how, private)

    def reset(self) -> None:
        if hasattr(self, "gone"):  # not on the first call, from __init__
            self._push()
            self.saved_main = None
            self.wrapped = set()
        super().reset()

    def set_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE & set(modes_) and self.saved_main is None:
            self.saved_main = (dict(self.buffer), self.cursor, self.wrapped)
            self.cursor = Cursor(self.cursor.x, self.cursor.y, self.cursor.attrs)
            self.buffer.clear()
            self.wrapped = set()
        super().set_mode(*(m for m in modes_ if not (kwargs.get("private") and m in _ALTERNATE)), **kwargs)

    def reset_mode(self, *modes_: int, **kwargs: Any) -> None:
        if kwargs.get("private") and _ALTERNATE & set(modes_) and self.saved_main is not None:
            self._push()
            buffer, cursor, self.wrapped = self.saved_main
            self.saved_main = None
            self.buffer.clear()
            self.buffer.update(buffer)
            self.cursor = cursor
        super().reset_mode(*(m for m in modes_ if not (kwargs.get("private") and m in _ALTERNATE)), **kwargs)

    def draw(self, data: str) -> None:
        """pyte's ``draw`` without its faults (a zero-width character that does not combine
        or a control character ends the whole run there), and faster for plain text."""
        plain = modes.DECAWM in self.mode and modes.IRM not in self.mode
        if plain and data.isascii() and data.isprintable() and not self.charset and self.g0_charset is LAT1_MAP:
            self._draw_ascii(data)  # the common case, with nothing to translate or remove
            return
        data = _UNDRAWABLE.sub("", data.translate(self.g1_charset if self.charset else self.g0_charset))
        if plain and data.isascii():
            self._draw_ascii(data)
            return
        for char in data:
            width = wcwidth(char)
            if width <= 0:  # joins the character before it (an accent, ZWJ, a variation selector)
                line = self.buffer[self.cursor.y]
                if width == 0 and self.cursor.x and self.cursor.x - 1 in line:
                    cell = line[self.cursor.x - 1]
                    line[self.cursor.x - 1] = cell._replace(data=cell.data + char)
                continue
            if self.cursor.x + width > self.columns:
                if modes.DECAWM in self.mode:
                    self.wrapped.add(self.cursor.y)
                    self.carriage_return()
                    self.linefeed()
                else:
                    self.cursor.x = max(0, self.columns - width)
            if modes.IRM in self.mode:
                self.insert_characters(width)
            line = self.buffer[self.cursor.y]
            line[self.cursor.x] = self.cursor.attrs._replace(data=char)
            if width == 2 and self.cursor.x + 1 < self.columns:
                line[self.cursor.x + 1] = self.cursor.attrs._replace(data="")
            self.cursor.x += width

    def _draw_ascii(self, data: str) -> None:
        cells = self._cells
        pos, end = 0, len(data)
        while pos < end:
            if self.cursor.x >= self.columns:
                self.wrapped.add(self.cursor.y)
                self.carriage_return()
                self.linefeed()
            piece = data[pos : pos + self.columns - self.cursor.x]
            x = self.cursor.x
            self.buffer[self.cursor.y].update(zip(range(x, x + len(piece)), map(cells.__getitem__, piece), strict=True))
            self.cursor.x = x + len(piece)
            pos += len(piece)

    # pyte passes private=True to every handler of a CSI sequence with "?": those that do
    # not take it would raise. The handlers that matter take it; the rest ignore it here.
    def delete_characters(self, count: int | None = None, **_: Any) -> None:
        super().delete_characters(count)

    def insert_characters(self, count: int | None = None, **_: Any) -> None:
        super().insert_characters(count)


class _Stream(pyte.Stream):
    """A stream whose handlers never raise into the reader: a sequence a handler chokes on
    is dropped and the parser starts afresh (pyte resets it before re-raising).

    Outside a sequence, line feeds, returns, backspaces and tabs go straight to the screen
    (pyte passes each through its parser, a generator, at a few times the cost), and so do
    the CSI sequences the emulator implements: what the parser would do with them there is
    exactly that call."""

    def feed(self, data: str) -> None:
        screen = self.listener
        assert screen is not None
        direct = {
            "\n": screen.linefeed,
            "\r": screen.carriage_return,
            "\b": screen.backspace,
            "\t": screen.tab,
        }
        csi = {final: getattr(screen, name) for final, name in self.csi.items()}
        draw, match_text, send = screen.draw, self._text_pattern.match, self._send_to_parser
        ground = self._taking_plain_text
        offset, length = 0, len(data)
        while offset < length:
            if ground:
                match = match_text(data, offset)
                if match:
                    start, offset = match.span()
                    draw(data[start:offset])
                    continue
                char = data[offset]
                handler = direct.get(char)
                if handler is not None:
                    handler()
                    offset += 1
                    continue
                sequence = _CSI.match(data, offset) if char == "\x1b" else None
                if sequence is not None:  # what the parser would call, parsed as it does
                    private, params, final = sequence.groups()
                    numbers = [min(int(p or 0), 9999) for p in params.split(";")]
                    with contextlib.suppress(Exception):  # as _send_to_parser: that sequence is lost
                        if private:
                            csi[final](*numbers, private=True)
                        else:
                            csi[final](*numbers)
                    offset = sequence.end()
                    continue
            ground = send(data[offset])
            offset += 1
        self._taking_plain_text = ground

    def _send_to_parser(self, data: str) -> bool | None:
        try:
            return super()._send_to_parser(data)
        except Exception:  # any fault of the emulator on odd input loses that sequence only
            return True


class LiveText:
    """Renders one generation as its text arrives, and tells which lines are new.

    :meth:`feed` takes the next piece (a control sequence cut in two by the piece's end
    is held back until its end arrives); :meth:`lines` is the whole reading rule at once.
    :meth:`new_lines` returns the lines that left the screen since the last call and the
    rows above the cursor (a row the cursor has left is taken as written), each unless it
    was returned before at the same row, unchanged: a row that changed is returned again.
    :meth:`finish` returns what remains of the final screen."""

    def __init__(self, columns: int = DEFAULT_COLUMNS, rows: int = DEFAULT_ROWS) -> None:
        self.screen = _Screen(*size(columns, rows))
        self.stream = _Stream(self.screen)
        self.shown: list[str] = []  # rows of the screen as they were when returned
        self.pending = ""

    def feed(self, text: str) -> None:
        text = self.pending + text
        cut = _cut(text)
        self.pending = text[cut:]
        self.stream.feed(_prepare(text[:cut]))

    def flush(self) -> None:
        """Feed what :meth:`feed` held back (the text has ended)."""
        text, self.pending = self.pending, ""
        self.stream.feed(_prepare(text))

    def lines(self) -> list[str]:
        """Everything fed so far, read by the rule (lines gone, then the final screen)."""
        return _joined([line for _, lines in self.screen.gone for line in lines] + self.screen.final())

    def new_lines(self) -> list[str]:
        out: list[str] = []
        for pushed, lines in self.screen.gone:
            if pushed:
                out += _changed(self.shown, lines)
                self.shown = []
            elif self.shown:
                if self.shown.pop(0) != lines[0]:
                    out.append(lines[0])
            else:
                out.append(lines[0])
        self.screen.gone.clear()
        settled = self.screen.cursor.y
        while settled and settled - 1 in self.screen.wrapped:
            settled -= 1  # a line wrapping into the cursor's row is not written yet
        current = self.screen.rows(settled)
        out += _changed(self.shown, current)
        self.shown = current + self.shown[len(current) :]
        return _joined(out)

    def finish(self) -> list[str]:
        """The lines not yet returned, once the generation has ended."""
        self.flush()
        out = self.new_lines()
        return out + _joined(_changed(self.shown, self.screen.final()))


def _joined(rows: list[str]) -> list[str]:
    """``rows`` with each row that wraps (ends in :data:`WRAP`) joined to the next: the line
    as the program wrote it, as ``tmux capture-pane -J`` gives it."""
    out: list[str] = []
    carried = ""
    for row in rows:
        if row.endswith(WRAP):
            carried += row[:-1]
        else:
            out.append(carried + row)
            carried = ""
    if carried:
        out.append(carried.rstrip())
    return out


def _changed(shown: list[str], rows: list[str]) -> list[str]:
    """The rows not shown before at the same row, as they were."""
    return [row for y, row in enumerate(rows) if y >= len(shown) or shown[y] != row]


# The start of a control sequence that has not ended yet (a string sequence ends at a line end).
_UNENDED: Final = re.compile(
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*|\x1b[ -/]*|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*"
)
_STARTS: Final = "\x1b\x90\x98\x9b\x9d\x9e\x9f"
HOLD_CAP: Final = 64 * 1024  # a sequence longer than this unended is fed as it stands


def _cut(text: str) -> int:
    """Where ``text`` ends, less a control sequence at its end that has not ended yet."""
    start = max(text.rfind(char, max(0, len(text) - HOLD_CAP)) for char in _STARTS)
    if start >= 0 and _UNENDED.fullmatch(text, start):
        return start
    return len(text)


def render(text: str, columns: int = DEFAULT_COLUMNS, rows: int = DEFAULT_ROWS) -> list[str]:
    """``text`` (what a program wrote to a terminal of ``columns`` x ``rows``) as lines,
    by the reading rule of this module. Pure; never raises; linear in ``len(text)``."""
    live = LiveText(columns, rows)
    live.feed(text)
    live.flush()
    return live.lines()
