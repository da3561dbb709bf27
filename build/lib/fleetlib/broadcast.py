"""Sending one message to one or many agents, with a result per agent.

Wraps :meth:`fleetlib.messaging.Messenger.send` (which delivers to one agent and raises
on failure): every named agent is attempted, in roster order, and what happened to each
is recorded, so ``fleet send --all`` reports every failure at once and ``--json`` has a
row per agent. Nothing here retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fleetlib.errors import FleetError
from fleetlib.messaging import VERIFY_TIMEOUT_S, Messenger

SENT: Final = "sent"
WOULD_SEND: Final = "would send"
FAILED: Final = "failed"


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one agent. ``verified``: the agent showed it took the message
    (False when not asked to verify). ``exit_code`` is the failure's exit status (2: the
    agent was not there to send to; 1: the send was attempted and failed); 0 when ok."""

    name: str
    action: str
    verified: bool = False
    seconds: float = 0.0
    error: str | None = None
    output: str | None = None  # the pane's last lines when the agent did not accept it
    exit_code: int = 0
    detail: str | None = None  # what an answer did, in the messenger's words (the menu entry it chose)

    @property
    def ok(self) -> bool:
        return self.action != FAILED

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "verified": self.verified,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "output": self.output,
        }


@dataclass(frozen=True)
class SendResult:
    """The outcome of sending ``characters`` characters to every agent in ``agents``."""

    characters: int
    verify: bool
    dry_run: bool
    seconds: float
    agents: list[SendOutcome]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.agents)

    @property
    def failures(self) -> list[SendOutcome]:
        return [outcome for outcome in self.agents if not outcome.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": "send",
            "ok": self.ok,
            "dry_run": self.dry_run,
            "characters": self.characters,
            "verify": self.verify,
            "seconds": round(self.seconds, 3),
            "agents": [outcome.to_json() for outcome in self.agents],
        }


def send_to(
    messenger: Messenger,
    names: Sequence[str],
    message: str,
    *,
    verify: bool = True,
    timeout: float = VERIFY_TIMEOUT_S,
    answer: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> SendResult:
    """Send ``message`` to each of ``names`` in turn; one failure does not stop the rest."""
    dry = messenger.runner.dry_run
    started = clock()
    outcomes: list[SendOutcome] = []
    for name in names:
        began = clock()
        try:
            said = messenger.send(name, message, verify=verify, timeout=timeout, answer=answer)
        except FleetError as exc:
            error, _, output = str(exc).partition("\n")
            outcomes.append(SendOutcome(name, FAILED, False, clock() - began, error, output or None, exc.exit_code))
            continue
        action = WOULD_SEND if dry else SENT
        detail = said if answer else None  # a menu answer says which entry it chose
        outcomes.append(SendOutcome(name, action, verify and not dry, clock() - began, detail=detail))
    return SendResult(len(message), verify, dry, clock() - started, outcomes)
