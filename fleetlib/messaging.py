"""Talking to agents: send with verified delivery, pane logs, watch and attach.

Works the same on both backends: every agent is a window ``=fleet:=<name>`` of the fleet's
tmux server.

A message is data, never keys. Before delivery it is cleaned (:func:`clean_message`):
ESC, the other C0 controls except tab and newline, DEL and the C1 controls
(U+0080-U+009F, which include the 8-bit CSI) are removed; ``\r\n`` and a lone ``\r``
become ``\n``. So no message can end the bracketed paste (``ESC[201~`` arrives as the
text ``[201~``), start an escape sequence, or submit anything by itself: only the one
Enter ``send`` types after the paste submits. A NUL byte is refused (one line), as is a
message over :data:`MAX_MESSAGE_BYTES` (4 MiB of UTF-8).

Delivery is literal. The cleaned text is loaded into a private tmux paste buffer through a
pipe (``load-buffer -b NAME -``, the text on stdin: never argv, whose size is limited), is
pasted into the pane (``paste-buffer -p -r``: bracketed paste when the agent asked for it,
newlines kept as newlines) and then submitted with one ``Enter`` key. No shell ever sees
the text and tmux never reads it as key names, so quotes, ``$(...)``, ``;``, ``C-c``,
``Enter``, unicode and multi-line text arrive as written. Sends to one agent are
serialised with a lock in the run dir, so two concurrent sends never interleave.

Verification polls the pane (``capture-pane``) until the agent shows it took the message:
new output after the message's echoed last line (a reply, a new prompt), or the runtime's
busy pattern from the runtime table. A send that is not accepted within the timeout fails
with the last lines of the pane; the wait is bounded by the real monotonic clock too, so
it ends even if an injected clock stands still.
"""

from __future__ import annotations

import math
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from fleetlib import tmux
from fleetlib.atomic import edit_lock
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.rundir import ensure_private_dir
from fleetlib.runtimes import busy_pattern

VERIFY_TIMEOUT_S: Final = 15.0
CAPTURE_LINES: Final = 2000  # scroll-back compared before/after a send (tmux keeps 2000 by default)
POLL_S: Final = 0.1
TAIL_LINES: Final = 8
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024  # UTF-8 bytes, after cleaning
# Removed from every message: C0 controls but tab and newline (ESC among them), DEL, C1.
_CONTROLS: Final = re.compile("[\x01-\x08\x0b-\x1f\x7f-\x9f]")


def clean_message(message: str) -> str:
    """The text a message delivers: ``\r\n`` and ``\r`` become ``\n``; ESC, the other C0
    controls except tab and newline, DEL and C1 controls are removed; the rest is kept as is.

    Raises a one-line FleetError for a NUL byte or a result over ``MAX_MESSAGE_BYTES``.
    """
    nul = message.find("\0")
    if nul >= 0:
        raise FleetError(
            f"the message contains a NUL byte (at character {nul}); a message is text, remove it and send again"
        )
    cleaned = _CONTROLS.sub("", message.replace("\r\n", "\n").replace("\r", "\n"))
    size = len(cleaned.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise FleetError(
            f"the message is too long ({size} bytes; the maximum is {MAX_MESSAGE_BYTES} bytes); send it in parts"
        )
    return cleaned


def check_timeout(timeout: float) -> float:
    """``timeout`` if it is a finite number > 0; a one-line FleetError otherwise."""
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise FleetError(f"--timeout must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)


def accepted(before: str, after: str, message: str, pattern: str | None = None) -> bool:
    """Whether the pane shows the agent took ``message`` (pure: two captures in, bool out).

    Only text that appeared after the send counts. Accepted when, after the last
    occurrence of the message's last non-empty line, something else is shown (a reply or
    a fresh prompt: a terminal's echo alone is not acceptance), or when ``pattern`` (the
    runtime's busy pattern) matches the new text.
    """
    new = _new_text(before, after)
    if pattern and re.search(pattern, new):
        return True
    # Compare with white space folded: a terminal shows a tab as spaces.
    last = next((_fold(line) for line in reversed(message.splitlines()) if line.strip()), "")
    lines = [_fold(line) for line in new.splitlines()]
    if not last:
        return any(lines)
    positions = [i for i, line in enumerate(lines) if last in line]
    if not positions:
        return False
    return any(lines[positions[-1] + 1 :])


def _fold(text: str) -> str:
    return " ".join(text.split())


def _new_text(before: str, after: str) -> str:
    """The part of ``after`` not already in ``before`` (captures of the same pane)."""
    old = before.rstrip("\n").splitlines()
    new = after.rstrip("\n").splitlines()
    # Trailing blank lines and the line the cursor sits on may change; compare what came before.
    keep = len(old)
    while keep and not old[keep - 1].strip():
        keep -= 1
    if keep and new[: keep - 1] == old[: keep - 1]:
        return "\n".join(new[keep - 1 :])
    return "\n".join(new)


def tail(text: str, count: int = TAIL_LINES) -> str:
    lines = [line.rstrip() for line in text.rstrip().splitlines()]
    return "\n".join(lines[-count:])


@dataclass(kw_only=True)
class Messenger(FleetContext):
    """Send to, read from and attach to the agents of one fleet."""

    def _base(self) -> list[str]:
        return tmux.tmux_base(self.tmux_bin, self.paths.tmux_socket)

    def require_running(self, name: str) -> None:
        """FleetError (exit 2) unless ``name`` is in the roster and its pane is alive."""
        self.roster.get(name)
        listing = self.runner.run(tmux.list_windows_argv(self.tmux_bin, self.paths.tmux_socket))
        window = tmux.parse_windows(listing.stdout).get(name) if listing.ok else None
        if window is None or window.dead:
            state = "has exited" if window else "is not running"
            raise FleetError(f"agent {name!r} {state}; start it with `inv fleet.start --agent {name}`")

    def capture(self, name: str, lines: int = CAPTURE_LINES) -> str:
        result = self.runner.run(
            [*self._base(), "capture-pane", "-p", "-J", "-S", f"-{lines}", "-t", tmux.window_target(name)]
        )
        if not result.ok:
            raise FleetError(f"cannot read agent {name!r}'s pane: {result.error_line()}")
        return result.stdout

    def send(self, name: str, message: str, *, verify: bool = True, timeout: float = VERIFY_TIMEOUT_S) -> str:
        """Deliver ``message`` (cleaned, see :func:`clean_message`) and submit it; with
        ``verify``, wait until accepted.

        Every argument is checked before anything runs: an empty message, a NUL byte, one
        over the maximum or a timeout that is not finite and > 0 is a one-line FleetError.
        Raises FleetError if the agent is not running (never hangs), FleetOperationError
        with the pane's last lines if it did not accept the message in time.
        """
        if not message:
            raise FleetError("--message is empty; give the text to send (or '-' to read it from stdin)")
        timeout = check_timeout(timeout)
        text = clean_message(message)
        if not text:
            raise FleetError("the message has only control characters; nothing to send")
        self.require_running(name)
        target = tmux.window_target(name)
        buffer = f"fleet-send-{uuid.uuid4().hex}"
        load = [*self._base(), "load-buffer", "-b", buffer, "-"]
        paste = [
            *self._base(),
            "paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", target, ";",
            "send-keys", "-t", target, "Enter",
        ]  # fmt: skip
        if self.runner.dry_run:  # prints the commands; takes no lock, writes nothing
            self.runner.run(load, input=text)
            self.runner.run(paste)
            return f"would send {len(text)} characters to {name}"
        ensure_private_dir(self.paths.run_dir, "fleet run directory")
        with edit_lock(self.paths.run_dir / f"send-{name}"):
            before = self.capture(name) if verify else ""
            loaded = self.runner.run(load, input=text)
            if not loaded.ok:
                raise FleetOperationError(f"could not send to agent {name!r}: {loaded.error_line()}")
            result = self.runner.run(paste)
            if not result.ok:
                self.runner.run([*self._base(), "delete-buffer", "-b", buffer])
                raise FleetOperationError(f"could not send to agent {name!r}: {result.error_line()}")
            if not verify:
                return f"sent {len(text)} characters to {name} (not verified)"
            self._verify(name, before, text, timeout)
        return f"sent {len(text)} characters to {name}: accepted"

    def _verify(self, name: str, before: str, message: str, timeout: float) -> None:
        pattern = busy_pattern(self.roster.get(name).runtime)
        deadline = self.clock() + timeout
        # The injected clock paces the loop; the real monotonic clock bounds it regardless.
        hard_deadline = time.monotonic() + timeout
        while True:
            after = self.capture(name)
            if accepted(before, after, message, pattern):
                return
            if self.clock() >= deadline or time.monotonic() >= hard_deadline:
                raise FleetOperationError(
                    f"agent {name!r} did not accept the message within {timeout:g}s; last lines of its pane:\n"
                    + tail(after)
                )
            self.sleep(POLL_S)

    def logs(self, name: str, lines: int) -> str:
        """The last ``lines`` lines of the agent's pane scroll-back."""
        self.roster.get(name)
        return tail(self.capture(name, lines), lines)

    def follow(self, name: str, lines: int) -> Iterator[str]:
        """Yield the pane's last lines, then new lines as they appear (until the pane goes)."""
        previous = self.capture(name, lines)
        yield tail(previous, lines)
        while True:
            self.sleep(POLL_S * 5)
            try:
                current = self.capture(name)
            except FleetError:
                return
            fresh = _new_text(previous, current)
            if fresh.strip():
                yield fresh
            previous = current

    def attach(self, name: str, *, read_only: bool) -> int:
        """Attach this terminal to the agent's window through a private view; returns the
        tmux client's exit status once it detaches, after removing the view."""
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise FleetError("attaching needs a terminal (stdin and stdout must be a tty); run it interactively")
        self.require_running(name)
        view = f"{tmux.SESSION}view{uuid.uuid4().hex[:12]}"  # unique, so no prefix match
        try:
            return self.runner.interactive([*self._base(), *tmux.view_commands(name, view, read_only=read_only)])
        finally:
            self.runner.run(tmux.kill_session_argv(self.tmux_bin, self.paths.tmux_socket, view))
