"""The shared engine of the fake runtimes: a full-screen TUI that redraws like Ink or ratatui apps.

A flavour (``claude_like.py``, ``codex_like.py``) supplies only the text of its screens; this
module owns the behaviour every flavour guarantees:

* idle: the flavour's prompt, the typed characters echoed in it as they arrive;
* ``work N``: a busy line redrawn every 0.1 s for N seconds (keys typed meanwhile are kept), then
  a reply and idle again;
* ``ask``: a permission menu, its cursor on entry 1 (yes); Up/Down move the cursor, Enter takes
  the highlighted entry, a digit typed as a key takes its entry at once, ``y``/``n``/Esc answer
  yes/no; a bracketed paste is ignored there (as the real Codex sign-in menu ignores one); then idle;
* ``quit``: exit 0; any other line: an echoed reply, idle.

Every frame clears the screen and draws it whole, so an answered question does not linger in
the scroll-back the classifier reads. Bracketed paste is turned on, as the real TUIs do. Stdlib only; runs with stdin a terminal (cbreak mode, no
echo) or a pipe.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass

TICK_S = 0.1
ESC = "\x1b"
PASTE_START, PASTE_END = ESC + "[200~", ESC + "[201~"
ARROWS = {ESC + "[A": "up", ESC + "OA": "up", ESC + "[B": "down", ESC + "OB": "down"}


@dataclass(frozen=True)
class Flavour:
    """The text of one fake runtime's screens."""

    header: tuple[str, ...]
    user_line: Callable[[str], str]  # how a submitted message shows in the transcript
    reply_line: Callable[[str], str]
    prompt: Callable[[str, int], tuple[str, ...]]  # (typed text, width) -> the input area
    busy: Callable[[int, float], str]  # (frame number, seconds working) -> the busy line
    question: tuple[str, ...]  # the menu's entries are the lines "N. ..."; entry 1 drawn with the cursor
    cursor: str  # the cursor's mark, drawn in the two columns before the entry's number


def keys(data: str) -> list[str]:
    """``data`` read from the terminal as keys: an arrow's or a paste marker's escape
    sequence is one key, any other character another."""
    found: list[str] = []
    i = 0
    while i < len(data):
        for sequence in (PASTE_START, PASTE_END, *ARROWS):
            if data.startswith(sequence, i):
                found.append(sequence)
                i += len(sequence)
                break
        else:
            found.append(data[i])
            i += 1
    return found


def menu_lines(flavour: Flavour, cursor: int) -> list[str]:
    """The question with the cursor's mark on entry ``cursor`` (1-based) only."""
    lines = []
    for line in flavour.question:
        body = line.replace(flavour.cursor + " ", "  ", 1) if flavour.cursor + " " in line else line
        stripped = body.lstrip()
        number = stripped.split(".", 1)[0]
        if number.isdigit() and stripped[len(number) :].startswith(". "):
            at = len(body) - len(stripped)
            body = body[: at - 2] + (flavour.cursor + " " if int(number) == cursor else "  ") + body[at:]
        lines.append(body)
    return lines


def run(flavour: Flavour) -> int:
    """Drive ``flavour`` until ``quit`` (exit 0) or end of input (exit 0)."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)
    sys.stdout.write(ESC + "[?2004h")
    try:
        return _loop(flavour, fd)
    finally:
        sys.stdout.write(ESC + "[?2004l")
        sys.stdout.flush()
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _draw(lines: list[str]) -> None:
    rows = os.get_terminal_size(sys.stdout.fileno()).lines if os.isatty(sys.stdout.fileno()) else 50
    sys.stdout.write(ESC + "[H" + ESC + "[2J" + "\r\n".join(lines[-rows:]))
    sys.stdout.flush()


def _loop(flavour: Flavour, fd: int) -> int:
    transcript: list[str] = []
    typed = ""
    work_until = work_started = 0.0
    asking = False
    cursor = 1
    pasting = False
    frame = 0
    while True:
        now = time.monotonic()
        working = now < work_until
        if work_until and not working:
            transcript.append(flavour.reply_line(f"done after {work_until - work_started:.0f}s of work"))
            work_until = 0.0
        width = os.get_terminal_size(sys.stdout.fileno()).columns if os.isatty(sys.stdout.fileno()) else 80
        body = [*flavour.header, "", *transcript, ""]
        if asking:
            body += menu_lines(flavour, cursor)
        else:
            if working:
                body.append(flavour.busy(frame, now - work_started))
            body += list(flavour.prompt(typed, width))
        _draw(body)
        frame += 1
        ready, _, _ = select.select([fd], [], [], TICK_S if working else 1.0)
        if not ready:
            continue
        data = os.read(fd, 1024).decode(errors="replace")
        if not data:
            return 0
        for key in keys(data):
            if key in (PASTE_START, PASTE_END):
                pasting = key == PASTE_START
                continue
            if asking:
                if pasting:
                    continue  # a menu takes keys, not pasted text
                if key in ARROWS:
                    cursor = max(1, min(2, cursor + (1 if ARROWS[key] == "down" else -1)))
                    continue
                entered = "yes" if cursor == 1 else "no"
                answer = {"1": "yes", "y": "yes", "\n": entered, "\r": entered, "2": "no", "n": "no", ESC: "no"}.get(
                    key
                )
                if answer:
                    cursor = 1
                    asking = False
                    transcript.append(
                        flavour.reply_line("approved: ran it" if answer == "yes" else "denied: did not run it")
                    )
            elif key in "\r\n":
                line, typed = typed.strip(), ""
                if not line or working:
                    typed = line if working else ""
                    continue
                transcript.append(flavour.user_line(line))
                if line == "quit":
                    return 0
                if line == "ask":
                    asking = True
                elif line.startswith("work"):
                    seconds = float(line.split()[1]) if len(line.split()) > 1 else 3.0
                    work_started, work_until = time.monotonic(), time.monotonic() + seconds
                else:
                    transcript.append(flavour.reply_line(f"you said: {line}"))
            elif key in "\x7f\b":
                typed = typed[:-1]
            elif key.isprintable():
                typed += key
