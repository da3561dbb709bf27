"""The runtime table: what each agent runtime launches.

One table, so the roster validator, the unit builder and the docs agree on the set of
known runtimes. A roster agent may override the command with its own ``command`` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Runtime:
    """A known agent runtime and the argv that starts it."""

    name: str
    command: tuple[str, ...]
    description: str


RUNTIMES: Final[dict[str, Runtime]] = {
    rt.name: rt
    for rt in (
        Runtime("claude", ("claude",), "Anthropic Claude Code CLI"),
        Runtime("codex", ("codex",), "OpenAI Codex CLI"),
        Runtime("gemini", ("gemini",), "Google Gemini CLI"),
        Runtime("opencode", ("opencode",), "opencode CLI"),
        Runtime("shell", ("sh", "-i"), "an interactive POSIX shell (for testing and scripts)"),
    )
}


def known_runtime_names() -> list[str]:
    """Sorted names of every known runtime, for error messages and help text."""
    return sorted(RUNTIMES)
