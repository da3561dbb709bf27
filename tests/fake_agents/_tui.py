"""The shared engine of the fake runtimes: a full-screen TUI that redraws like Ink or ratatui apps.

A flavour (``claude_like.py``, ``codex_like.py``) supplies only the text of its screens; this
module owns the behaviour every flavour guarantees:

* idle: the flavour's prompt, the typed characters echoed in it as they arrive;
* ``work N``: a busy line redrawn every 0.1 s for N seconds (keys typed meanwhile are kept), then
  a reply and idle again;
* ``ask``: a permission prompt that waits for ``1``/``y`` (or Enter, the highlighted entry: yes)
  or ``2``/``n``/Esc (no), then idle;
* ``quit``: exit 0; any other line: an echoed reply, idle.

Every frame clears the screen and draws it whole, so an answered question does not linger in
the scroll-back the classifier reads. Stdlib only; runs with stdin a terminal (cbreak mode, no
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


@dataclass(frozen=True)
class Flavour:
    """The text of one fake runtime's screens."""

    header: tuple[str, ...]
    user_line: Callable[[str], str]  # how a submitted message shows in the transcript
    reply_line: Callable[[str], str]
    prompt: Callable[[str, int], tuple[str, ...]]  # (typed text, width) -> the input area
    busy: Callable[[int, float], str]  # (frame number, seconds working) -> the busy line
    question: tuple[str, ...]


def run(flavour: Flavour) -> int:
    """Drive ``flavour`` until ``quit`` (exit 0) or end of input (exit 0)."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)
    try:
        return _loop(flavour, fd)
    finally:
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
            body += list(flavour.question)
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
        for key in data:
            if asking:
                answer = {"1": "yes", "y": "yes", "\n": "yes", "\r": "yes", "2": "no", "n": "no", ESC: "no"}.get(key)
                if answer:
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
