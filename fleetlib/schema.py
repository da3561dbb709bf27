"""The JSON shape of roster agents, as ``roster.list --json`` and ``roster.show --json``
print it. Every key is always present (``null`` when the roster leaves it unset), so
scripts never need ``.get``; docs/reference/json.md documents the schema.
"""

from __future__ import annotations

from typing import Any

from fleetlib.notify import mask
from fleetlib.roster import Agent


def agent_json(agent: Agent) -> dict[str, Any]:
    """One agent: what the roster says plus ``argv``, the command its window runs."""
    return {
        "name": agent.name,
        "runtime": agent.runtime,
        "command": list(agent.command) if agent.command is not None else None,
        "argv": agent.argv(),
        "cwd": agent.cwd,
        "args": list(agent.args),
        "env": dict(agent.env),
        "description": agent.description,
        "stop_timeout": agent.stop_timeout,
        "start_grace": agent.start_grace,
        "max_failures": agent.max_failures,
        "failure_window": agent.failure_window,
        "on_state_change": list(agent.on_state_change) or None,
        "notify": [mask(url) for url in agent.notify],  # they may hold secrets
        "log_max_bytes": agent.log_max_bytes,
        "log_keep": agent.log_keep,
        "resources": agent.resources.to_dict() or None,  # the roster's defaults merged in
        "resume": agent.resumes,
        "worktree": agent.worktree.to_value() if agent.worktree is not None else None,
    }
