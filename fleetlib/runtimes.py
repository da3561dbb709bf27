"""The runtime table: what each agent runtime launches and how its screen reads.

One table, so the roster validator, the unit builder and the docs agree on the set of
known runtimes. A roster agent may override the command with its own ``command`` field.
How each runtime's screen is read (``ScreenRules``) is explained in ``docs/activity.md``;
``fleetlib.activity`` applies the rules.
"""

# The screen patterns quote the characters the TUIs really draw (❯, ›, ▌), look-alikes of ">" on purpose.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ScreenRules:
    """How a runtime's visible screen shows what it is doing (see ``fleetlib.activity``).

    Every pattern is a Python regex (``re.MULTILINE``) searched in ``"\\n"`` followed by the
    bottom ``lines`` lines of the screen, trailing blank lines removed first: ``\\n`` marks a
    line start (cheaper than ``^``, see below) and ``\\Z`` the end of the last non-blank line.
    Precedence is ``waiting`` > ``working`` > ``idle``; when nothing matches, output age
    decides: ``working`` if the pane wrote within ``idle_after`` seconds, else ``idle``. A new
    state is reported once it has persisted ``debounce`` seconds, so a redraw does not flicker
    the state.
    """

    waiting: tuple[str, ...] = ()
    """The screen asks the user something: a permission, a yes/no question, a menu."""
    working: tuple[str, ...] = ()
    """A busy indicator: a spinner line, "esc to interrupt", ..."""
    idle: tuple[str, ...] = ()
    """At its input prompt, nothing happening."""
    debounce: float = 1.0
    idle_after: float = 5.0
    lines: int = 40

    @property
    def reads_screen(self) -> bool:
        """Whether the screen can tell anything; without patterns output age alone decides,
        so nobody needs to read the screen at all."""
        return bool(self.waiting or self.working or self.idle)


# A line start is written "\n" (the searched text begins with one), not "^": a pattern that opens
# with a literal lets the regex engine skip ahead, "^" makes it try every position, which costs
# ~5x on a 40-line screen. Leading blanks are [ \t]*+ (possessive: no backtracking over a logo's
# indentation), never \s (it spans lines).
#
# A numbered menu with a selection cursor on one entry, as Ink/ratatui TUIs draw them:
# "❯ 1. Yes" (Claude Code), "› 1. Yes, proceed" and "> 1. Sign in with ChatGPT" (Codex),
# "● 1. Allow once" (Gemini CLI). Only the cursor line is needed: the others have none.
_MENU_CURSOR: Final = r"\n[ \t│┃|]*+[❯›>●▶→] ?\d+[.)] +\S"

# Claude Code 2.1 (captured in tests/screens/claude-*.txt): menus "❯ 1. Yes, I trust this folder",
# "Enter to confirm · Esc to cancel"; while working the spinner line "✶ Baking… (3s · ...)" and
# "esc to interrupt" in the footer; idle is the "❯ " input line between two rules with
# "? for shortcuts" below. A finished turn leaves "✻ Baked for 0s", which is not working.
CLAUDE_SCREEN: Final = ScreenRules(
    waiting=(
        _MENU_CURSOR,
        r"Do you want to (?:proceed|make this edit|create|allow|use this)",
        r"Enter to confirm · Esc to (?:cancel|exit)",
        r"Press Enter to (?:continue|retry)",
    ),
    working=(r"esc to interrupt", r"\n[ \t]*+[·✢✳✶✻✽] +\S[^\n]*…"),
    idle=(r"\? for shortcuts", r"\n[ \t│]*+[>❯](?: |\n|\Z)"),
)
# Codex CLI 0.171 (tests/screens/codex-*.txt): menus "> 1. Sign in with ChatGPT" / "› 1. Trust and
# continue" with "Press enter to continue" or "enter continue · esc back"; approvals "Would you like
# to run the following command?"; working "◦ Working (8s • esc to interrupt)" (also while
# "Reconnecting... 2/5"); idle "› Ask Codex to do anything" with "? for shortcuts" below.
CODEX_SCREEN: Final = ScreenRules(
    waiting=(
        _MENU_CURSOR,
        r"Press enter to (?:continue|confirm)",
        r"\n[ \t]*+enter (?:continue|confirm) · esc",
        r"Would you like to (?:run|make|grant|send|apply)",
    ),
    working=(r"esc to interrupt", r"\n[ \t]*+[•◦] +Working\b"),
    idle=(r"\? for shortcuts", r"\n›(?: |\n|\Z)"),
)
GEMINI_SCREEN: Final = ScreenRules(
    waiting=(
        _MENU_CURSOR,
        r"Allow execution",
        r"Apply this change\?",
        r"Do you want to proceed\?",
        r"Waiting for user confirmation",
        r"How would you like to authenticate",
        r"Do you trust this folder",
    ),
    working=(r"esc to cancel",),
    idle=(r"Type your message",),
)
OPENCODE_SCREEN: Final = ScreenRules(
    waiting=(r"Permission required", r"Allow (?:once|always)"),
    working=(r"esc (?:to )?interrupt",),
    idle=(r"enter send",),
)
# An interactive shell is idle at its prompt (the last non-blank line ends in $, # or >)
# and otherwise goes by output age: a running command that prints is working.
SHELL_SCREEN: Final = ScreenRules(idle=(r"[$#%>] ?\Z",))


@dataclass(frozen=True)
class Runtime:
    """A known agent runtime, the argv that starts it, and how to tell it took a message.

    ``busy_pattern``: a regex the runtime's screen shows once it is working on a message;
    seeing it after a send also counts as accepted (see ``fleetlib.messaging``).
    ``bracketed_paste``: its program turns on bracketed paste (``ESC[?2004h``) while it reads
    a message, so a newline inside a paste is text; without it every newline is an Enter and
    a multi-line message would be submitted line by line (``fleet send`` refuses it).
    ``hooks``: the fleet wires its hooks into the runtime's program, which then reports its
    own events (see ``fleetlib.hooks``).
    """

    name: str
    command: tuple[str, ...]
    description: str
    busy_pattern: str | None = None
    screen: ScreenRules = ScreenRules()
    bracketed_paste: bool = False
    hooks: bool = False


RUNTIMES: Final[dict[str, Runtime]] = {
    rt.name: rt
    for rt in (
        # The four agent TUIs turn bracketed paste on for their input box (Ink, ratatui/crossterm,
        # Bubble Tea): a pasted newline is a line break in the message, only Enter submits.
        Runtime(
            "claude",
            ("claude",),
            "Anthropic Claude Code CLI",
            busy_pattern=r"esc to interrupt",
            screen=CLAUDE_SCREEN,
            bracketed_paste=True,
            hooks=True,
        ),
        Runtime(
            "codex",
            ("codex",),
            "OpenAI Codex CLI",
            busy_pattern=r"esc to interrupt",
            screen=CODEX_SCREEN,
            bracketed_paste=True,
            hooks=True,
        ),
        Runtime(
            "gemini",
            ("gemini",),
            "Google Gemini CLI",
            busy_pattern=r"esc to cancel",
            screen=GEMINI_SCREEN,
            bracketed_paste=True,
            hooks=True,
        ),
        Runtime("opencode", ("opencode",), "opencode CLI", screen=OPENCODE_SCREEN, bracketed_paste=True),
        # `sh -i` (dash on Debian) has no bracketed paste: each newline runs the line before it.
        Runtime("shell", ("sh", "-i"), "an interactive POSIX shell (for testing and scripts)", screen=SHELL_SCREEN),
    )
}


def busy_pattern(runtime: str) -> str | None:
    """The runtime's busy pattern; None for custom runtimes and those without one."""
    known = RUNTIMES.get(runtime)
    return known.busy_pattern if known else None


def takes_bracketed_paste(runtime: str) -> bool:
    """Whether the runtime's program turns bracketed paste on (:attr:`Runtime.bracketed_paste`);
    False for custom runtimes: nobody can tell what their program does."""
    known = RUNTIMES.get(runtime)
    return known.bracketed_paste if known else False


def hooked(runtime: str) -> bool:
    """Whether the fleet wires its hooks into agents of ``runtime`` (:attr:`Runtime.hooks`);
    False for custom runtimes."""
    known = RUNTIMES.get(runtime)
    return known.hooks if known else False


def known_runtime_names() -> list[str]:
    """Sorted names of every known runtime, for error messages and help text."""
    return sorted(RUNTIMES)
