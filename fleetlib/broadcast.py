"""Sending one message to one or many agents, with a result per agent.

Wraps :meth:`fleetlib.messaging.Messenger.send` (which delivers to one agent and raises
on failure): every named agent is attempted, in roster order, and what happened to each
is recorded, so ``fleet send --all`` reports every failure at once and ``--json`` has a
row per agent. Nothing here retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from fleetlib.errors import FleetError
from fleetlib.messaging import VERIFY_TIMEOUT_S, Messenger
from fleetlib.results import FAILED, SENT, WOULD_SEND, SendOutcome, SendResult


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
