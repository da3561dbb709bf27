"""Talking to agents: send with verified delivery, pane logs, watch and attach.

Works the same on both backends: every agent is a window ``=fleet:=<name>`` of the fleet's
tmux server.

A message is data, never keys. Before delivery it is cleaned (:func:`clean_message`):
ESC, the other C0 controls except tab and newline, DEL and the C1 controls
(U+0080-U+009F, which include the 8-bit CSI) are removed; ``\r\n`` and a lone ``\r``
become ``\n``. So no message can end the bracketed paste (``ESC[201~`` arrives as the
text ``[201~``), start an escape sequence, or submit anything by itself: only the one
Enter ``send`` types after the paste submits. A NUL byte is refused (one line), as is a
message over :data:`MAX_MESSAGE_BYTES` (4 MiB of UTF-8) or one that is not valid UTF-8.

A newline stays text only inside a bracketed paste, which the agent's program must have
turned on; elsewhere it is an Enter. A message with line breaks is therefore refused (one
line, exit 2, nothing typed) unless the agent's pane takes bracketed paste
(:func:`newlines_stay_text`: tmux's record where tmux 3.7+ keeps one, else the runtime's
declaration; custom runtimes and ``shell`` do not).

Delivery is literal. The cleaned text is loaded into a private tmux paste buffer through a
pipe (``load-buffer -b NAME -``, the text on stdin: never argv, whose size is limited), is
pasted into the pane (``paste-buffer -p -r``: bracketed paste when the agent asked for it,
newlines kept as newlines) and then, once the pane shows it (or after
:data:`PASTE_SETTLE_S`), submitted with one ``Enter`` key of its own. No shell ever sees
the text and tmux never reads it as key names, so quotes, ``$(...)``, ``;``, ``C-c``,
``Enter``, unicode and multi-line text arrive as written. Sends to one agent are
serialised with a lock in the run dir, so two concurrent sends never interleave.

A send goes only to an agent that runs: one that is ``restarting`` (its supervisor waits
out the back-off between two generations), ``failed``, ``exited`` or ``stopped`` is refused
(one line naming the state, exit 2, nothing typed), or the text would surface in whatever
generation comes next. A dry run reads the agent's window and screen like a send (reading
changes nothing) and prints the commands it would run.

A send never answers a question by accident. Before delivering, the agent's screen is
read with its runtime's rules (:mod:`fleetlib.activity`): an agent that is ``waiting`` (a
permission prompt, a yes/no question, a menu such as a sign-in menu) is not sent to: the
send fails (exit 1) showing the question, unless ``answer`` says the message is the
answer. An agent that is ``working`` (its runtime's busy indicator, or output within the
last seconds for a runtime without one) is given until the timeout to become idle; the
message is delivered only then, so it is never typed into a busy agent (``verify=False``
delivers at once).

An answer to a menu (``answer`` and a number, on a screen with a cursor on a numbered
entry, see :mod:`fleetlib.menu`) is given with keys, the way a person gives it: the arrow
keys until the screen shows the cursor on that entry, then Enter; it is accepted once the
screen changed after the Enter. A number the menu does not offer is refused (exit 2,
nothing typed); a cursor that will not go there, or a menu that stays as it was, fails
(exit 1). Any other answer (text, ``y``) is delivered like a message.

Every delivery is recorded on the agent's window (:data:`fleetlib.tmux.SENT_AT_OPTION`,
in the client that types it): from then on the agent counts as working until it is seen
idle or waiting after that moment (:func:`fleetlib.status.after_send`), so ``fleet wait
--for idle`` right after a send waits for the turn the message started.

Verification uses the state too. A message counts as accepted when the agent shows its
runtime's busy indicator, or shows something after the message's echoed last line (a
reply, a new prompt); an answer also counts once the question is gone. The echo alone
never counts, and output that is merely new does not either: an agent that prints a line
every second and never reads its input is working, so nothing is typed into it and the
send fails. A send that is not accepted within the timeout fails with the last lines of
the pane; the wait is bounded by the real monotonic clock too, so it ends even if an
injected clock stands still.
"""

from __future__ import annotations

import math
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from fleetlib import activity, defaults, menu, tmux
from fleetlib.atomic import edit_lock
from fleetlib.context import FleetContext
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.rundir import ensure_private_dir
from fleetlib.runner import Result
from fleetlib.runtimes import ScreenRules, takes_bracketed_paste
from fleetlib.screen import screen_lines
from fleetlib.status import derive_state
from fleetlib.tmux_client import TmuxClient

VERIFY_TIMEOUT_S: Final = defaults.VERIFY_TIMEOUT_S
PASTE_SETTLE_S: Final = 1.0  # at most this long for a paste to show before its Enter
CAPTURE_LINES: Final = 2000  # scroll-back compared before/after a send (tmux keeps 2000 by default)
POLL_S: Final = 0.1
QUIET_S: Final = 2.0  # an agent no pattern recognises is ready once its screen was still this long
TAIL_LINES: Final = 8
MENU_ROUNDS: Final = 4  # rounds of arrow keys before a cursor that does not go there fails
MENU_SETTLE_S: Final = 1.0  # a menu cursor that has not moved for this long has taken every key sent
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024  # UTF-8 bytes, after cleaning
# What `--message -` reads at most: room for control characters cleaning drops, never all of
# an endless stdin.
MAX_STDIN_BYTES: Final = 4 * MAX_MESSAGE_BYTES
# tmux's record of whether the pane's program turned bracketed paste on; tmux before 3.7
# has no such format and expands it to "".
PASTE_FLAG_FORMAT: Final = "#{bracket_paste_flag}"
# Removed from every message: C0 controls but tab and newline (ESC among them), DEL, C1.
_CONTROLS: Final = re.compile("[\x01-\x08\x0b-\x1f\x7f-\x9f]")


def clean_message(message: str) -> str:
    """The text a message delivers: ``\r\n`` and ``\r`` become ``\n``; ESC, the other C0
    controls except tab and newline, DEL and C1 controls are removed; the rest is kept as is.

    Raises a one-line FleetError for text that is not valid UTF-8 (:func:`check_utf8`), a
    NUL byte or a result over ``MAX_MESSAGE_BYTES``.
    """
    check_utf8(message)
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


def check_utf8(message: str) -> str:
    """``message`` if it can be sent as UTF-8; a one-line FleetError naming the first bad
    byte otherwise. Bytes that are not UTF-8 reach Python as lone surrogates (argv and
    :func:`read_message` decode with ``surrogateescape``); no tmux client could take them."""
    try:
        message.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = message[exc.start]
        what = f"byte 0x{ord(bad) - 0xDC00:02x}" if "\udc80" <= bad <= "\udcff" else f"U+{ord(bad):04X}"
        raise FleetError(
            f"the message is not valid UTF-8 ({what} at character {exc.start}); "
            "send UTF-8 text (convert it first, e.g. with `iconv -t UTF-8`)"
        ) from None
    return message


def read_message(argument: str, stdin: BinaryIO) -> str:
    """The message a ``--message`` argument gives: the text itself, or for ``-`` what
    ``stdin`` holds, less one trailing line end (the one ``echo`` adds: Enter already
    submits). A message that is not valid UTF-8 is a one-line FleetError (exit 2), and so
    is a stdin that goes on past :data:`MAX_STDIN_BYTES` (``< /dev/zero``): it is never read
    to its end."""
    if argument == "-":
        data = stdin.read(MAX_STDIN_BYTES + 1)
        if len(data) > MAX_STDIN_BYTES:
            raise FleetError(
                f"the message on stdin is over {MAX_STDIN_BYTES} bytes (a message holds at most "
                f"{MAX_MESSAGE_BYTES}); send it in parts"
            )
        argument = data.decode("utf-8", "surrogateescape")
        for end in ("\r\n", "\n", "\r"):
            if argument.endswith(end):
                argument = argument.removesuffix(end)
                break
    return check_utf8(argument)


def newlines_stay_text(runtime: str, pane_flag: str) -> bool:
    """Whether a newline pasted into an agent's pane stays text rather than acting as Enter:
    only while its program has bracketed paste on. ``pane_flag`` is tmux's record of the
    pane's mode (:data:`PASTE_FLAG_FORMAT`: ``1`` or ``0``) where tmux reports it (3.7 and
    later) and decides; otherwise (empty) the runtime's declaration does
    (:func:`fleetlib.runtimes.takes_bracketed_paste`), and a custom runtime is not trusted."""
    if pane_flag in ("0", "1"):
        return pane_flag == "1"
    return takes_bracketed_paste(runtime)


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


def recognised(screen: str, rules: ScreenRules) -> str | None:
    """The state a pattern of the runtime's rules recognises on ``screen``; None when no
    pattern matches (then only output age could tell, see :func:`fleetlib.activity.classify`)."""
    without_age = activity.classify(screen, rules, output_age=None)  # no pattern: idle
    just_wrote = activity.classify(screen, rules, output_age=0.0)  # no pattern: working
    return without_age if without_age == just_wrote else None


def tail(text: str, count: int = TAIL_LINES) -> str:
    """The last ``count`` lines of a captured screen, shown as every screen is
    (:func:`fleetlib.screen.screen_lines`)."""
    return screen_lines(text, count)


@dataclass(kw_only=True)
class Messenger(FleetContext):
    """Send to, read from and attach to the agents of one fleet. What only reads (the
    window listing, screens) runs in a dry run too (see :mod:`fleetlib.runner`)."""

    def _client(self) -> TmuxClient:
        """The fleet server's client."""
        return TmuxClient(self.runner, self.paths.tmux_socket, self.tmux_bin)

    def _tmux(self, commands: list[str], *, input: str | None = None, read: bool = False) -> Result:
        """Run one tmux client, bounded: a stopped or frozen server is one line (exit 1)
        after :data:`~fleetlib.tmux_client.TMUX_TIMEOUT_S`, never a send that hangs for
        minutes and then calls the agent "not running"."""
        return self._client().run(commands, input=input, read=read)

    def require_running(self, name: str) -> None:
        """FleetError (exit 2) unless ``name`` is in the roster and its pane is alive."""
        self.roster.get(name)
        listing = self._tmux(tmux.list_windows_commands(), read=True)
        window = tmux.parse_windows(listing.stdout).get(name) if listing.ok else None
        if window is None or window.dead:
            state = "has exited" if window else "is not running"
            raise FleetError(f"agent {name!r} {state}; start it with `inv fleet.start --agent {name}`")

    def require_sendable(self, name: str) -> None:
        """FleetError (exit 2, one line naming the state) unless ``name``'s agent runs now:
        not between two generations (``restarting``), nor ``failed``, ``exited``, ``stopped``."""
        self.roster.get(name)
        listing = self._tmux(tmux.list_windows_commands(), read=True)
        window = tmux.parse_windows(listing.stdout).get(name) if listing.ok else None
        state = derive_state(window, None)
        if state == "running":
            return
        if state == "restarting":
            raise FleetError(
                f"agent {name!r} is restarting (its supervisor waits to start it again), so nothing was sent; "
                f"wait until it is up with `fleet wait --agent {name} --for idle`, then send"
            )
        raise FleetError(
            f"agent {name!r} is not running ({state}), so nothing was sent; "
            f"start it with `inv fleet.start --agent {name}`"
        )

    def capture(self, name: str, lines: int = CAPTURE_LINES) -> str:
        """The pane's last ``lines`` lines of scroll-back and its screen; 0: the screen only."""
        start = ["-S", f"-{lines}"] if lines else []
        result = self._tmux(["capture-pane", "-p", "-J", *start, "-t", tmux.window_target(name)], read=True)
        if not result.ok:
            raise self._unreadable(name, result)
        return result.stdout

    def _unreadable(self, name: str, failed: Result) -> FleetError:
        """Why ``name``'s pane could not be read, in the user's words: an agent without a
        window (never started, stopped, or its fleet's server gone) is "not running", as
        ``send`` says; anything else is tmux's own line."""
        listing = self._tmux(tmux.list_windows_commands(), read=True)
        window = tmux.parse_windows(listing.stdout).get(name) if listing.ok else None
        if window is None:
            return FleetError(
                f"agent {name!r} is not running (it has no window), so it has no screen to show; "
                f"its transcript: `inv fleet.logs --agent {name}`"
            )
        return FleetError(f"cannot read the pane of agent {name!r}: {failed.error_line()}")

    def screen(self, name: str) -> tuple[str, int, int]:
        """The pane's visible screen with its colours (``capture-pane -e``) and its size
        (columns, rows), read in one client so the two agree."""
        self.roster.get(name)
        target = tmux.window_target(name)
        size_format = "#{pane_width} #{pane_height}"
        result = self._tmux(
            ["capture-pane", "-p", "-e", "-t", target, ";", "display-message", "-p", "-t", target, size_format],
            read=True,
        )
        if not result.ok:
            raise self._unreadable(name, result)
        shown, _, size = result.stdout.rstrip("\n").rpartition("\n")
        columns, rows = (int(part) for part in (size.split() or ["80", "24"])[:2])
        return shown + "\n", columns, rows

    def send(
        self, name: str, message: str, *, verify: bool = True, timeout: float = VERIFY_TIMEOUT_S, answer: bool = False
    ) -> str:
        """Deliver ``message`` (cleaned, see :func:`clean_message`) and submit it; with
        ``verify``, wait until accepted (see the module docstring for what counts).

        Every argument is checked before anything runs: an empty message, a NUL byte, one
        over the maximum or a timeout that is not finite and > 0 is a one-line FleetError.
        Raises FleetError if the agent is not running (never hangs); FleetOperationError
        (exit 1) with the question when the agent is waiting and ``answer`` is not set,
        when ``answer`` is set but its runtime's rules show it idle (no question to answer),
        when it stayed busy for the whole timeout (nothing was typed), or with the pane's
        last lines when it did not accept the message in time.
        """
        if not message:
            raise FleetError("--message is empty; give the text to send (or '-' to read it from stdin)")
        timeout = check_timeout(timeout)
        text = clean_message(message)
        if not text:
            raise FleetError("the message has only control characters; nothing to send")
        self.require_sendable(name)
        if "\n" in text:
            self._check_newlines(name, text)
        target = tmux.window_target(name)
        entry = menu.choice(text) if answer else None
        buffer = f"fleet-send-{uuid.uuid4().hex}"
        load = ["load-buffer", "-b", buffer, "-"]
        paste = ["paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", target]
        if self.runner.dry_run:  # reads the screen, prints the commands; takes no lock, types nothing
            shown = menu.parse_menu(self.capture(name, 0)) if entry is not None else None
            if shown is not None and entry is not None:
                self._offered(name, shown, entry)
                self._tmux(["send-keys", "-t", target, *shown.keys_to(entry), "Enter"])
                return f"would choose entry {entry} ({shown.entries[entry]}) of {name}'s menu"
            self._tmux(load, input=text)
            self._tmux(paste)
            self._tmux(["send-keys", "-t", target, "Enter", ";", *self._sent_now(target)])
            return f"would send {len(text)} characters to {name}"
        ensure_private_dir(self.paths.run_dir, "fleet run directory")
        with edit_lock(self.paths.run_dir / f"send-{name}"):
            rules = activity.rules_for(self.roster.get(name).runtime)
            before, state = self._ready(name, rules, timeout, wait=verify, answer=answer)
            shown = menu.parse_menu(self.capture(name, 0), rules.lines) if entry is not None else None
            if shown is not None and entry is not None and state == "waiting":
                return self._choose(name, shown, entry, timeout, verify=verify)
            loaded = self._tmux(load, input=text)
            if not loaded.ok:
                raise FleetOperationError(f"could not send to agent {name!r}: {loaded.error_line()}")
            pasted_over = self.capture(name, 0)
            result = self._tmux(paste)
            if not result.ok:
                self._tmux(["delete-buffer", "-b", buffer])
                raise FleetOperationError(f"could not send to agent {name!r}: {result.error_line()}")
            self._shown(name, pasted_over)
            self._keys(name, ["Enter"], record=True)
            if not verify:
                return f"sent {len(text)} characters to {name} (not verified)"
            self._verify(name, before, text, timeout, rules, answering=state == "waiting")
        return f"sent {len(text)} characters to {name}: accepted"

    def _shown(self, name: str, before: str) -> None:
        """Wait until the pane's screen differs from ``before`` (the paste arrived and was
        drawn), at most :data:`PASTE_SETTLE_S`: an Enter that follows a paste in the same
        burst is taken as part of the paste by some TUIs (Claude Code dropped it about half
        the time, leaving the text in its input box), so Enter goes on its own once the
        text shows. A program that draws nothing for a paste only costs the wait."""
        deadline = self.clock() + PASTE_SETTLE_S
        hard_deadline = time.monotonic() + PASTE_SETTLE_S
        while self.capture(name, 0) == before:
            if self.clock() >= deadline or time.monotonic() >= hard_deadline:
                return
            self.sleep(POLL_S)

    def _sent_now(self, target: str) -> list[str]:
        """The tmux command that records a delivery to ``target`` now (see the module docstring);
        it runs in the client that types, right after the keys."""
        return ["set-option", "-w", "-t", target, tmux.SENT_AT_OPTION, f"{self.wall_clock():.3f}"]

    def _keys(self, name: str, keys: list[str], *, record: bool = False) -> None:
        """Press ``keys`` (tmux key names) in the agent's pane; ``record``: as a delivery."""
        target = tmux.window_target(name)
        recorded = [";", *self._sent_now(target)] if record else []
        pressed = self._tmux(["send-keys", "-t", target, *keys, *recorded])
        if not pressed.ok:
            raise FleetOperationError(f"could not send to agent {name!r}: {pressed.error_line()}")

    @staticmethod
    def _offered(name: str, shown: menu.Menu, entry: int) -> None:
        if entry not in shown.entries:
            raise FleetError(
                f"agent {name!r}'s menu offers entries {shown.span()}, not {entry}, so nothing was typed; "
                f"answer with one of them (--answer --message N)"
            )

    def _settled(self, name: str, entry: int, expired: Callable[[], bool]) -> menu.Menu | None:
        """The agent's menu once its cursor is on ``entry``, or has not moved for
        :data:`MENU_SETTLE_S` (keys still on their way would move it on: pressing more
        then would overshoot), or the menu is gone (None), or ``expired``."""
        last: tuple[int, float, float] | None = None  # cursor, and since when on both clocks
        while True:
            current = menu.parse_menu(self.capture(name, 0))
            if current is None or current.cursor == entry or expired():
                return current
            if last is None or last[0] != current.cursor:
                last = (current.cursor, self.clock(), time.monotonic())
            elif self.clock() - last[1] >= MENU_SETTLE_S or time.monotonic() - last[2] >= MENU_SETTLE_S:
                return current
            self.sleep(POLL_S)

    def _choose(self, name: str, shown: menu.Menu, entry: int, timeout: float, *, verify: bool) -> str:
        """Take entry ``entry`` of the menu ``shown`` on the agent's screen, as a person does:
        arrow keys until the screen shows the cursor on it, then Enter; with ``verify``,
        accepted once the screen changed after the Enter.

        A number the menu does not offer is a FleetError (exit 2, nothing typed); a cursor
        that does not get there within :data:`MENU_ROUNDS` rounds (or the timeout), a menu
        that changes meanwhile, or a screen that stays as it was after Enter is a
        FleetOperationError (exit 1) naming what happened, with the screen's last lines."""
        self._offered(name, shown, entry)
        label = shown.entries[entry]
        deadline, hard_deadline = self.clock() + timeout, time.monotonic() + timeout

        def expired() -> bool:
            return self.clock() >= deadline or time.monotonic() >= hard_deadline

        current: menu.Menu | None = shown
        for _ in range(MENU_ROUNDS):
            if current is None or current.entries != shown.entries:
                raise FleetOperationError(
                    f"agent {name!r}'s menu changed while its cursor was moved to entry {entry} ({label}); "
                    "nothing was chosen; its screen now:\n" + tail(self.capture(name, 0))
                )
            if current.cursor == entry or expired():
                break
            self._keys(name, current.keys_to(entry))
            current = self._settled(name, entry, expired)
        if current is None or current.cursor != entry:
            raise FleetOperationError(
                f"the cursor of agent {name!r}'s menu did not move to entry {entry} ({label}); nothing was chosen; "
                "its screen now:\n" + tail(self.capture(name, 0))
            )
        before = self.capture(name, 0)
        self._keys(name, ["Enter"], record=True)
        if not verify:
            return f"chose entry {entry} ({label}) of {name}'s menu (not verified)"
        while True:
            after = self.capture(name, 0)
            if after != before:
                return f"chose entry {entry} ({label}) of {name}'s menu: accepted"
            if expired():
                raise FleetOperationError(
                    f"agent {name!r} showed nothing new within {timeout:g}s after Enter on entry {entry} ({label}) "
                    "of its menu; the choice may not have been taken; its screen:\n" + tail(after)
                )
            self.sleep(POLL_S)

    def _check_newlines(self, name: str, text: str) -> None:
        """A one-line FleetError (exit 2, nothing typed) unless the newlines of ``text`` stay
        text in the agent's pane (:func:`newlines_stay_text`): without bracketed paste each
        would be an Enter, and the lines before it would be submitted on their own. There is
        no portable way to type a newline that does not submit (``\\`` joins the lines of a
        shell command, Ctrl-V Ctrl-J is readline's and zle's only), so the message is refused."""
        runtime = self.roster.get(name).runtime
        shown = self._tmux(["display-message", "-p", "-t", tmux.window_target(name), PASTE_FLAG_FORMAT], read=True)
        flag = shown.stdout.strip() if shown.ok else ""
        if not newlines_stay_text(runtime, flag):
            breaks = text.count("\n")
            raise FleetError(
                f"agent {name!r} (runtime {runtime!r}) does not take bracketed paste, so each of the message's "
                f"{breaks} line break(s) would act as Enter and submit the text before it on its own; nothing was "
                "sent: send one line per message, or join the lines"
            )

    def _ready(self, name: str, rules: ScreenRules, timeout: float, *, wait: bool, answer: bool) -> tuple[str, str]:
        """The scroll-back before the send and the state it starts from, once the agent may
        be typed into: never while it asks a question (unless ``answer``), and (``wait``)
        not while it is busy, for up to ``timeout``.

        Busy is the runtime's busy indicator; on a screen no pattern of its runtime
        recognises, it is output: such an agent is ready once its screen has not changed
        for :data:`QUIET_S` (or half the timeout, when shorter): an agent that keeps
        printing by itself is never typed into."""
        deadline = self.clock() + timeout
        hard_deadline = time.monotonic() + timeout
        # Quiet is measured on both clocks, like the deadline: an injected clock that stands
        # still must not make a still screen look busy for ever.
        quiet_since, real_quiet_since, last = self.clock(), time.monotonic(), None
        while True:
            screen = self.capture(name, 0)
            state = recognised(screen, rules)
            if state == "waiting" and not answer:
                raise FleetOperationError(
                    f"agent {name!r} is waiting for an answer, so nothing was sent (send the answer with --answer); "
                    "it asks:\n" + (activity.question(screen, rules) or tail(screen))
                )
            if state == "idle" and answer:
                # The question is gone (answered, timed out): typed now, the answer would
                # be a new message (a "1" or "y" the agent starts working on).
                raise FleetOperationError(
                    f"agent {name!r} is not asking anything (it is idle), so the answer was not sent; "
                    "send it without --answer if it is a message"
                )
            if screen != last:
                quiet_since, real_quiet_since, last = self.clock(), time.monotonic(), screen
            needed = min(QUIET_S, rules.idle_after, timeout / 2)
            quiet = self.clock() - quiet_since >= needed or time.monotonic() - real_quiet_since >= needed
            if not wait or state in ("idle", "waiting") or (state is None and quiet):
                return self.capture(name), state or "idle"
            if self.clock() >= deadline or time.monotonic() >= hard_deadline:
                raise FleetOperationError(
                    f"agent {name!r} stayed busy (working) for {timeout:g}s, so nothing was sent; "
                    f"wait for it with `fleet wait --agent {name} --for idle`; last lines of its pane:\n" + tail(screen)
                )
            self.sleep(POLL_S)

    def _verify(
        self, name: str, before: str, message: str, timeout: float, rules: ScreenRules, *, answering: bool
    ) -> None:
        deadline = self.clock() + timeout
        # The injected clock paces the loop; the real monotonic clock bounds it regardless.
        hard_deadline = time.monotonic() + timeout
        while True:
            after = self.capture(name)
            # Only the runtime's busy indicator counts as working here: the echo of the
            # message is output too, and must not count.
            now = recognised(self.capture(name, 0), rules)
            if now == "working" or accepted(before, after, message) or (answering and now != "waiting"):
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
            return self.runner.interactive(self._client().argv(tmux.view_commands(name, view, read_only=read_only)))
        finally:
            self._client().attempt(["kill-session", "-t", view])
