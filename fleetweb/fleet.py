"""What the web page asks of the fleet, as one object: :class:`WebFleet`.

Every action goes through the library calls the command line uses (``Lifecycle.restart``
and ``stop`` under the restart lock, :func:`fleetlib.broadcast.send_to` with the same
checks as ``fleet send``), and every result is worded by the command line's own renderers,
so the page says what the terminal would. Nothing here shells out to ``fleet``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from fleetctl.options import spell_commands
from fleetctl.render import failure_lines, failure_message, operation_summary
from fleetlib import transcript
from fleetlib.broadcast import send_to
from fleetlib.errors import FleetError
from fleetlib.menu import parse_menu
from fleetlib.messaging import VERIFY_TIMEOUT_S, Messenger
from fleetlib.results import OperationResult
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.usage import Usage, fleet_sampler, with_usage

ACTIONS: Final = ("restart", "stop")
USAGE_EVERY_S: Final = 5.0
SETTLED_S: Final = 2.0  # tmux's output time has whole seconds: a read this long after it saw all of it


class Operations(Protocol):
    """The fleet object's methods the page uses: the local :class:`fleetlib.engine.Lifecycle`
    has them, and so does a fleet over several hosts."""

    def status(self, agent: str | None = None) -> FleetStatus: ...
    def restart(self, agent: str | None = None, *, fresh: bool = False) -> OperationResult: ...
    def stop(self, agent: str | None = None) -> OperationResult: ...


@dataclass(frozen=True)
class Said:
    """What an action did, in the command line's words: ``lines`` as it prints them on
    stdout, ``error`` its ``error:`` line (None when it succeeded) and its exit status."""

    ok: bool
    lines: list[str]
    error: str | None
    exit_code: int

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "lines": self.lines, "error": self.error, "exit_code": self.exit_code}


def said_operation(result: OperationResult) -> Said:
    """An operation's result as ``fleet restart``/``fleet stop`` print it."""
    lines = [operation_summary(result)]
    if result.ok:
        return Said(True, lines, None, 0)
    lines += [spell_commands(line) for line in failure_lines(result.failures)]
    return Said(False, lines, f"error: {spell_commands(failure_message(result))}", 1)


def said_error(exc: FleetError) -> Said:
    """A refusal or failure as the command line's one ``error:`` line."""
    first, _, rest = str(exc).partition("\n")
    return Said(False, rest.splitlines(), f"error: {spell_commands(first)}", exc.exit_code)


@dataclass
class WebFleet:
    """The fleet the page shows and acts on: ``lifecycle`` for states and operations (one
    line to change for a fleet over several hosts), ``messenger`` for screens and sends."""

    lifecycle: Operations
    messenger: Messenger
    _seen: dict[str, tuple[tuple[Any, ...], float, dict[str, Any]]] = field(default_factory=dict)
    _usage_at: float | None = None
    _measured: Mapping[str, Usage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sampler = fleet_sampler(self.messenger.paths)  # keeps the last figures: CPU is a difference

    def names(self) -> list[str]:
        return self.messenger.roster.names()

    def cards(self) -> list[dict[str, Any]]:
        """One row per agent: ``fleet status --json``'s keys, ``host``, ``last_line`` (the
        last non-blank line of its screen) and ``menu`` (the entries of the menu it shows
        while ``waiting``, number -> label; empty otherwise)."""
        status = self.lifecycle.status()
        status = with_usage(status, self._usage(status.agents))
        agents = [*status.agents, *status.strays]
        return [
            {**row, "host": "local", **self._screen_facts(row, agent)}
            for row, agent in zip(status.to_json(), agents, strict=True)
        ]

    def _usage(self, agents: list[AgentStatus]) -> Mapping[str, Usage]:
        """Memory and CPU "where known", measured at most every :data:`USAGE_EVERY_S` (the
        measuring costs more than the rest of a card); none when they cannot be read."""
        now = self.messenger.clock()
        if self._usage_at is None or now - self._usage_at >= USAGE_EVERY_S:
            self._usage_at = now
            self._measured = {}
            with contextlib.suppress(OSError, FleetError):
                self._measured = self._sampler.sample(agents)
        running = {agent.name for agent in agents if agent.pid}
        return {name: usage for name, usage in self._measured.items() if name in running}

    def _screen_facts(self, row: dict[str, Any], agent: AgentStatus) -> dict[str, Any]:
        """``last_line`` and ``menu`` of a row, read from its screen only when the pane
        may have written since the last read (an unchanged fleet costs no screen reads).
        tmux times output to the second: a read in the second of the last output, or the
        next, may have missed the rest of that second's output, so it is read again."""
        if not row["window"]:
            return {"last_line": "", "menu": {}}
        key = (agent.pid, agent.last_output, row["state"])
        cached = self._seen.get(row["name"])
        now = self.messenger.wall_clock()
        if cached is not None and cached[0] == key and cached[1] > (agent.last_output or 0.0) + SETTLED_S:
            return cached[2]
        try:
            text = self.screen_text(row["name"])
        except FleetError:
            return {"last_line": "", "menu": {}}
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        shown = parse_menu(text) if row["state"] == "waiting" else None
        facts = {"last_line": last, "menu": {str(n): label for n, label in shown.entries.items()} if shown else {}}
        self._seen[row["name"]] = (key, now, facts)
        return facts

    def screen_text(self, name: str) -> str:
        """The agent's visible screen as text (tmux's own rendering)."""
        return self.messenger.capture(name, 0)

    def screen_ansi(self, name: str) -> tuple[str, int, int]:
        """The visible screen with its colours (``capture-pane -e``) and the pane's size."""
        return self.messenger.screen(name)

    def transcript(self, name: str, lines: int) -> str:
        """The last ``lines`` lines of the agent's transcript, rendered as ``fleet logs`` does."""
        return transcript.read(self.messenger.paths, self.messenger.roster.get(name).name, lines=lines)

    def send(self, name: str, text: str, *, answer: bool) -> Said:
        """``fleet send --agent NAME [--answer] --message TEXT``, said as it says it."""
        from fleetctl.render import send_lines  # noqa: PLC0415

        try:
            self.messenger.roster.get(name)
        except FleetError as exc:
            return said_error(exc)
        result = send_to(self.messenger, [name], text, verify=True, timeout=VERIFY_TIMEOUT_S, answer=answer)
        outcome = result.agents[0]
        if outcome.ok:
            return Said(True, send_lines(result), None, 0)
        output = (outcome.output or "").splitlines()
        return Said(False, output, f"error: {spell_commands(outcome.error or 'send failed')}", outcome.exit_code or 1)

    def act(self, action: str, name: str | None) -> Said:
        """``fleet restart`` / ``fleet stop`` (one agent, or the whole fleet for a restart)."""
        if action not in ACTIONS:
            return Said(False, [], f"error: unknown action {action!r}; use one of: {', '.join(ACTIONS)}", 2)
        try:
            if name is not None:
                self.messenger.roster.get(name)
            result = self.lifecycle.restart(name) if action == "restart" else self.lifecycle.stop(name)
        except FleetError as exc:
            return said_error(exc)
        return said_operation(result)
