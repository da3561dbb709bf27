"""What fleet operations did, as data: every mutating operation returns one of these.

The command line renders text or JSON from the same object, so tests and scripts assert on
data, never on prose. Every ``to_json`` emits every key, always (``null`` when unknown).

Actions an agent outcome can carry:

``started`` / ``stopped`` / ``restarted``
    the operation changed the agent and it reached the requested state;
``unchanged``
    the agent already was in the requested state (nothing to do);
``failed``
    the operation was attempted and the agent did not reach the state (``error`` says why);
``would start`` / ``would stop`` / ``would restart``
    a dry run: nothing was changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

ACTIONS: Final = (
    "started",
    "stopped",
    "restarted",
    "unchanged",
    "failed",
    "would start",
    "would stop",
    "would restart",
)


@dataclass(frozen=True)
class AgentOutcome:
    """What one operation did to one agent."""

    name: str
    action: str
    old_pid: int | None = None
    new_pid: int | None = None
    seconds: float = 0.0
    error: str | None = None
    exit_status: int | None = None
    output: str | None = None  # the agent's last output lines when it failed

    @property
    def ok(self) -> bool:
        return self.action != "failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "old_pid": self.old_pid,
            "new_pid": self.new_pid,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "exit_status": self.exit_status,
            "output": self.output,
        }


@dataclass(frozen=True)
class OperationResult:
    """The outcome of ``start``, ``stop`` or ``restart`` of the fleet or of one agent.

    ``holder`` is what happened to the holder (the tmux server / its unit): one of the
    actions above, or None when the operation did not concern it (a single agent).
    """

    operation: str
    backend: str
    agents: list[AgentOutcome]
    seconds: float
    dry_run: bool = False
    holder: str | None = None
    commands: list[list[str]] = field(default_factory=list)  # a dry run's planned commands

    @property
    def ok(self) -> bool:
        return self.holder != "failed" and all(agent.ok for agent in self.agents)

    @property
    def failures(self) -> list[AgentOutcome]:
        return [agent for agent in self.agents if not agent.ok]

    @property
    def changed(self) -> bool:
        return any(agent.action not in ("unchanged",) for agent in self.agents) or self.holder not in (
            None,
            "unchanged",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "backend": self.backend,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "holder": self.holder,
            "agents": [agent.to_json() for agent in self.agents],
            "commands": [list(argv) for argv in self.commands],
        }


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` or ``uninstall`` changed (paths are absolute, as text)."""

    operation: str
    backend: str
    dry_run: bool = False
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    reloaded: bool = False
    notes: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # agents no longer in the roster, ended by install

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.enabled or self.disabled or self.reloaded or self.stopped)

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "backend": self.backend,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "written": list(self.written),
            "removed": list(self.removed),
            "enabled": list(self.enabled),
            "disabled": list(self.disabled),
            "reloaded": self.reloaded,
            "notes": list(self.notes),
            "stopped": list(self.stopped),
        }


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long operation, for a live progress line: ``done`` of ``total``
    agents have reached the wanted state after ``elapsed`` seconds, in ``phase``."""

    operation: str
    phase: str
    done: int
    total: int
    elapsed: float


ProgressHook = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default progress hook: report nothing."""
