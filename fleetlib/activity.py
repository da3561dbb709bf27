"""What an agent is doing, read from its screen: ``working``, ``waiting`` or ``idle``.

Pure functions over the text ``tmux capture-pane -p`` returns (no escapes), plus a
``Debouncer`` that turns the instantaneous reading into reported transitions. Nothing
here starts a process, reads a clock or touches tmux: the watcher captures the screens,
passes the time in and combines the result with the process states it knows (exited,
failed, stopped, ...). The rules per runtime live in ``fleetlib.runtimes``; the
reasoning behind them in ``docs/activity.md``.

Cost: the watcher classifies up to 200 screens per tick, so each ``ScreenRules`` is
compiled once (cached) and only the bottom ``rules.lines`` lines of a screen are searched:
about 12 microseconds a screen over the captured real screens (200 in ~2.5 ms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from fleetlib import defaults
from fleetlib.runtimes import RUNTIMES, ScreenRules

ACTIVITY_STATES: Final = defaults.ACTIVITY_STATES
FALLBACK_RULES: Final = ScreenRules()
"""Rules for a custom or unknown runtime: no patterns, output age alone decides."""

QUESTION_MAX_LINES: Final = 12
"""``question`` never returns more lines than this (a menu, not a screenful)."""
TAIL_LINES: Final = 5
"""Lines ``question`` returns when no waiting pattern matches."""

# Box-drawing borders that TUIs put around prompts and menus; stripped from the lines
# ``question`` returns so the text reads well in a terminal message or an environment variable.
_BORDER: Final = "│┃║╭╮╰╯┌┐└┘─━═╌┄┈ \t"


_Patterns = tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class _Compiled:
    waiting: _Patterns
    working: _Patterns
    idle: _Patterns


def _compile(patterns: tuple[str, ...]) -> _Patterns:
    return tuple(re.compile(p, re.MULTILINE) for p in patterns)


@lru_cache(maxsize=256)
def _compiled(rules: ScreenRules) -> _Compiled:
    # ScreenRules is frozen and hashable: every agent of a runtime shares one entry. Patterns stay
    # separate rather than joined into one alternation: a pattern that opens with a literal lets
    # the engine skip ahead, an alternation makes it try every branch at every position (measured
    # ~1.7x slower over the captured screens).
    return _Compiled(_compile(rules.waiting), _compile(rules.working), _compile(rules.idle))


def rules_for(runtime: str) -> ScreenRules:
    """The screen rules of a known runtime; ``FALLBACK_RULES`` (no patterns) for any other name."""
    known = RUNTIMES.get(runtime)
    return known.screen if known else FALLBACK_RULES


def bottom(screen: str, lines: int) -> str:
    """The last ``lines`` lines of ``screen`` after trailing blank lines (and trailing spaces) are removed.

    ``lines`` < 1 yields the empty string. Never raises.
    """
    if lines < 1:
        return ""
    parts = screen.rstrip().rsplit("\n", lines)
    if len(parts) > lines:
        del parts[0]
    return "\n".join(parts)


def classify(screen: str, rules: ScreenRules, *, output_age: float | None) -> str:
    """The instantaneous state of a screen: one of ``ACTIVITY_STATES``.

    Searches ``"\\n"`` plus the bottom ``rules.lines`` lines; the first of ``waiting``, ``working``,
    ``idle`` with a matching pattern wins. When none matches, ``output_age`` (seconds
    since the pane last wrote) decides: below ``rules.idle_after`` is ``working``,
    otherwise ``idle``; ``None`` (unknown) is ``idle``. Pure; never raises.
    """
    return read(screen, rules, output_age=output_age)[0]


def read(screen: str, rules: ScreenRules, *, output_age: float | None) -> tuple[str, str]:
    """:func:`classify` with what decided: ``(state, "screen")`` when a pattern matched,
    ``(state, "output")`` when the output age did. Pure; never raises."""
    text = "\n" + bottom(screen, rules.lines)
    compiled = _compiled(rules)
    for state, patterns in (
        ("waiting", compiled.waiting),
        ("working", compiled.working),
        ("idle", compiled.idle),
    ):
        if any(pattern.search(text) for pattern in patterns):
            return state, "screen"
    return by_age(rules, output_age)


def by_age(rules: ScreenRules, output_age: float | None) -> tuple[str, str]:
    """The reading when no pattern matched: ``working`` below ``rules.idle_after`` seconds
    since the last output, else (or unknown) ``idle``; source ``output``."""
    if output_age is not None and output_age < rules.idle_after:
        return "working", "output"
    return "idle", "output"


def _blank(line: str) -> bool:
    return not line.strip(_BORDER)


def _clean(lines: list[str]) -> str:
    return "\n".join(line.strip(_BORDER) for line in lines if not _blank(line))


def question(screen: str, rules: ScreenRules) -> str:
    """The lines that make up the question or menu on ``screen``, for a message to a person.

    The block runs from the first to the last line a ``waiting`` pattern matches in the
    bottom ``rules.lines`` lines, widened to the surrounding non-blank lines (the question
    above a menu, the options and hints below its cursor). Box borders and blank lines are
    dropped; at most ``QUESTION_MAX_LINES`` lines, the first ones. Without a waiting match it is the last
    ``TAIL_LINES`` non-blank lines; an empty screen gives ``""``. Pure; never raises.
    """
    text = bottom(screen, rules.lines)
    lines = text.split("\n")
    # Searched like classify, behind a "\n"; a match that starts on that "\n" belongs to the next line.
    searched = "\n" + text
    hits = [
        searched.count("\n", 0, match.start() + 1) - 1
        for pattern in _compiled(rules).waiting
        for match in pattern.finditer(searched)
    ]
    if not hits:
        return _clean([line for line in lines if not _blank(line)][-TAIL_LINES:])
    first, last = min(hits), max(hits)
    # Widen over one blank gap upwards (a question often sits one blank line above its
    # menu) and over the rest of the block downwards (the options after the cursor).
    while first > 0 and not _blank(lines[first - 1]):
        first -= 1
    if first > 1 and _blank(lines[first - 1]) and not _blank(lines[first - 2]):
        first -= 2
        while first > 0 and not _blank(lines[first - 1]):
            first -= 1
    end = last + 1
    while end < len(lines) and (not _blank(lines[end]) or (end + 1 < len(lines) and not _blank(lines[end + 1]))):
        end += 1
    block = [line for line in lines[first:end] if not _blank(line)]
    # A long block (a menu followed by a preview) is cut at the bottom: the question and
    # the first options matter most.
    return _clean(block[:QUESTION_MAX_LINES])


@dataclass(frozen=True)
class Transition:
    """A change of the reported state: ``old`` (None at the first observation) to ``new``.

    ``since`` is when ``new`` was first observed, not when the debounce let it through.
    """

    old: str | None
    new: str
    since: float


@dataclass
class Debouncer:
    """Turns raw per-tick states of one agent into reported transitions. Pure: the clock is passed in.

    An activity state (one of ``ACTIVITY_STATES``) replaces another only after it has been
    observed continuously for ``debounce`` seconds, so a redraw that briefly shows another
    state does not flicker the report. Any other string (a process state: exited, failed,
    stopped, ...) is reported at once, and so is the first observation and the first activity
    state after a process state: a crash or a restart is never delayed.
    """

    debounce: float = 1.0
    state: str | None = None
    since: float | None = None
    _pending: str | None = None
    _pending_since: float = 0.0

    def assume(self, state: str, since: float) -> None:
        """Report ``state`` since ``since`` from now on, without a transition (a message was
        delivered: the agent works on it); a state seen afterwards replaces it only after
        the debounce, like any other."""
        self.state, self.since, self._pending = state, since, None

    def observe(self, raw: str, now: float, *, exact: bool = False) -> Transition | None:
        """Feed the raw state seen at ``now``; the ``Transition`` when the reported state changes, else None.

        ``exact``: the state comes from the runtime's own hook, not from a screen that may be
        mid-redraw; it is reported at once, since ``now`` (pass the event's time)."""
        if raw == self.state:
            self._pending = None
            return None
        immediate = exact or self.state is None or raw not in ACTIVITY_STATES or self.state not in ACTIVITY_STATES
        if exact:
            self._pending, self._pending_since = raw, now
        if raw != self._pending or now < self._pending_since:
            # A wall clock stepped back (NTP, a VM resumed) restarts the debounce: measured
            # from the old time, the new state would be held back until the clock caught up.
            self._pending, self._pending_since = raw, now
        if not immediate and now - self._pending_since < self.debounce:
            return None
        transition = Transition(self.state, raw, self._pending_since)
        self.state, self.since, self._pending = raw, self._pending_since, None
        return transition
