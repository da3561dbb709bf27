"""The runtime table: what each agent runtime launches.

One table, so the roster validator, the unit builder and the docs agree on the set of
known runtimes. A roster agent may override the command with its own ``command`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Runtime:
    """A known agent runtime, the argv that starts it, and how to tell it took a message.

    ``busy_pattern``: a regex the runtime's screen shows once it is working on a message;
    seeing it after a send also counts as accepted (see ``fleetlib.messaging``).
    """

    name: str
    command: tuple[str, ...]
    description: str
    busy_pattern: str | None = None


RUNTIMES: Final[dict[str, Runtime]] = {
    rt.name: rt
    for rt in (
        Runtime("claude", ("claude",), "Anthropic Claude Code CLI", busy_pattern=r"esc to interrupt"),
        Runtime("codex", ("codex",), "OpenAI Codex CLI", busy_pattern=r"esc to interrupt"),
        Runtime("gemini", ("gemini",), "Google Gemini CLI", busy_pattern=r"esc to cancel"),
        Runtime("opencode", ("opencode",), "opencode CLI"),
        Runtime("shell", ("sh", "-i"), "an interactive POSIX shell (for testing and scripts)"),
    )
}


def busy_pattern(runtime: str) -> str | None:
    """The runtime's busy pattern; None for custom runtimes and those without one."""
    known = RUNTIMES.get(runtime)
    return known.busy_pattern if known else None


def known_runtime_names() -> list[str]:
    """Sorted names of every known runtime, for error messages and help text."""
    return sorted(RUNTIMES)
