"""Talking to agents: send with verified delivery, pane logs, watch and attach.

Works the same on both backends: every agent is a window ``=fleet:=<name>`` of the fleet's
tmux server.

Delivery is literal. The text goes into a private tmux paste buffer as one argv word
(``set-buffer``), is pasted into the pane (``paste-buffer -p -r``: bracketed paste when the
agent asked for it, newlines kept as newlines) and then submitted with one ``Enter`` key,
all in one tmux command sequence. No shell ever sees the text and tmux never reads it as
key names, so quotes, ``$(...)``, ``;``, ``C-c``, ``Enter``, unicode and multi-line text
arrive byte for byte. Sends to one agent are serialised with a lock in the run dir, so
two concurrent sends never interleave within a message.

Verification polls the pane (``capture-pane``) until the agent shows it took the message:
new output after the message's echoed last line (a reply, a new prompt), or the runtime's
busy pattern from the runtime table. A send that is not accepted within the timeout fails
with the last lines of the pane.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from fleetlib import tmux
from fleetlib.atomic import edit_lock
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.lock import ensure_private_dir
from fleetlib.runtimes import busy_pattern

VERIFY_TIMEOUT_S: Final = 15.0
CAPTURE_LINES: Final = 2000  # scroll-back compared before/after a send (tmux keeps 2000 by default)
POLL_S: Final = 0.1
TAIL_LINES: Final = 8


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
        """Deliver ``message`` literally and submit it; with ``verify``, wait until accepted.

        Raises FleetError if the agent is not running (never hangs), FleetOperationError
        with the pane's last lines if it did not accept the message in time.
        """
        if not message:
            raise FleetError("--message is empty; give the text to send (or '-' to read it from stdin)")
        self.require_running(name)
        target = tmux.window_target(name)
        buffer = f"fleet-send-{uuid.uuid4().hex}"
        sequence = [
            *self._base(),
            "set-buffer", "-b", buffer, "--", tmux.literal(message), ";",
            "paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", target, ";",
            "send-keys", "-t", target, "Enter",
        ]  # fmt: skip
        if self.runner.dry_run:  # prints the command; takes no lock, writes nothing
            self.runner.run(sequence)
            return f"would send {len(message)} characters to {name}"
        ensure_private_dir(self.paths.run_dir, "fleet run directory")
        with edit_lock(self.paths.run_dir / f"send-{name}"):
            before = self.capture(name) if verify else ""
            result = self.runner.run(sequence)
            if not result.ok:
                raise FleetOperationError(f"could not send to agent {name!r}: {result.error_line()}")
            if not verify:
                return f"sent {len(message)} characters to {name} (not verified)"
            self._verify(name, before, message, timeout)
        return f"sent {len(message)} characters to {name}: accepted"

    def _verify(self, name: str, before: str, message: str, timeout: float) -> None:
        pattern = busy_pattern(self.roster.get(name).runtime)
        deadline = self.clock() + timeout
        while True:
            after = self.capture(name)
            if accepted(before, after, message, pattern):
                return
            if self.clock() >= deadline:
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
