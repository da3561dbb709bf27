"""What the web page asks of the fleet, as one object: :class:`WebFleet`.

Every read and every action goes through the library's fleet (:func:`fleetlib.api.open_fleet`:
this machine's :class:`~fleetlib.fleet.LocalFleet`, or the :class:`~fleetlib.group.HostsFleet`
across a roster's hosts), the object the command line drives: a restart takes the same
restart lock (on each host, that host's), a send makes the same checks as ``fleet send``.
Every result is worded by the command line's own renderers, so the page says what the
terminal would. Nothing here shells out to ``fleet``; nothing branches on "has hosts"
except to read a result that covers several.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from fleetctl.options import spell_commands
from fleetctl.render import (
    failure_lines,
    failure_message,
    host_failure_lines,
    host_lines,
    hosts_failure_message,
    operation_lines,
    operation_summary,
    send_lines,
)
from fleetlib.errors import FleetError
from fleetlib.menu import parse_menu
from fleetlib.results import HostsResult, OperationResult, Screen, SendResult, StatusReport, TranscriptText
from fleetlib.roster import Roster
from fleetlib.status import FleetStatus

if TYPE_CHECKING:
    from fleetlib.fleet import LocalFleet
    from fleetlib.group import HostsFleet

ACTIONS: Final = ("restart", "stop")
USAGE_EVERY_S: Final = 30.0  # memory figures: their measuring (/proc, cgroups) costs more than all the rest
SETTLED_S: Final = 2.0  # tmux's output time has whole seconds: a read this long after it saw all of it
NO_FACTS: Final[dict[str, Any]] = {"last_line": "", "menu": {}}


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


def said_operation(result: OperationResult | HostsResult[OperationResult]) -> Said:
    """An operation's result as ``fleet restart``/``fleet stop`` print it (one host's
    lines each prefixed with it, when the roster names hosts)."""
    if isinstance(result, HostsResult):
        lines = host_lines(result, operation_lines)
        if result.ok:
            return Said(True, lines, None, 0)
        lines += [spell_commands(line) for line in host_failure_lines(result)]
        return Said(False, lines, spell_commands(hosts_failure_message(result)), 1)
    lines = [operation_summary(result)]
    if result.ok:
        return Said(True, lines, None, 0)
    lines += [spell_commands(line) for line in failure_lines(result.failures)]
    return Said(False, lines, f"error: {spell_commands(failure_message(result))}", 1)


def said_error(exc: FleetError) -> Said:
    """A refusal or failure as the command line's one ``error:`` line."""
    first, _, rest = str(exc).partition("\n")
    return Said(False, rest.splitlines(), f"error: {spell_commands(first)}", exc.exit_code)


def said_send(result: SendResult | HostsResult[SendResult]) -> Said:
    """One agent's send as ``fleet send --agent`` says it (a host that failed: its line)."""
    if isinstance(result, HostsResult):
        (host,) = result.hosts
        if host.data is None:
            return said_error(FleetError(f"{host.host}: {host.error}"))
        result = host.data
    outcome = result.agents[0]
    if outcome.ok:
        return Said(True, send_lines(result), None, 0)
    output = (outcome.output or "").splitlines()
    return Said(False, output, f"error: {spell_commands(outcome.error or 'send failed')}", outcome.exit_code or 1)


def status_rows(status: FleetStatus | HostsResult[StatusReport], roster: Roster) -> list[dict[str, Any]]:
    """``fleet status --json``'s rows, each with its ``host``; the agents of a host that did
    not answer (``roster`` names them) as rows in state ``unknown`` whose ``reason`` is the
    host's one line."""
    if isinstance(status, FleetStatus):
        return [{**row, "host": "local"} for row in status.to_json()]
    rows = status.agent_rows()
    for host in status.failed:
        if host.data is None:
            reason = f"{host.host}: {host.error}"
            rows += [
                {"name": name, "host": host.host, "state": "unknown", "window": None, "pid": None, "reason": reason}
                for name in roster.for_host(host.host).names()
            ]
    return rows


def _epoch(iso: object) -> float:
    if not isinstance(iso, str):
        return 0.0
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


@dataclass
class WebFleet:
    """The fleet the page shows and acts on (see the module docstring). ``wall_clock``
    times the screen reads' freshness; ``clock`` the usage figures' age."""

    fleet: LocalFleet | HostsFleet
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    _seen: dict[str, tuple[tuple[Any, ...], float, dict[str, Any]]] = field(default_factory=dict)
    _usage_at: float | None = None
    _measured: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    _unsettled: set[str] = field(default_factory=set)  # screens read too soon after their last output

    def names(self) -> list[str]:
        return self.fleet.roster.names()

    def witness(self) -> str | None:
        """The library fleet's cheap witness of change (None: it has none; read it all)."""
        return self.fleet.witness()

    def settling(self) -> bool:
        """Whether a card's screen facts were read in the second of its last output (or
        the next): the cards must be read again even if the witness stays the same."""
        return bool(self._unsettled)

    def cards(self) -> list[dict[str, Any]]:
        """One row per agent of every host: ``fleet status --json``'s keys, ``host``,
        ``last_line`` (the last non-blank line of its screen) and ``menu`` (the entries of
        the menu it shows while ``waiting``, number -> label; empty otherwise)."""
        rows = status_rows(self._status(), self.fleet.roster)
        return [{**row, **self._screen_facts(row)} for row in rows]

    def _status(self) -> FleetStatus | HostsResult[StatusReport]:
        """Every agent's row, with memory (and, where the host has it, CPU) figures
        measured at most every :data:`USAGE_EVERY_S` (the measuring costs more than the
        rest of a card) and carried over in between."""
        now = self.clock()
        measure = self._usage_at is None or now - self._usage_at >= USAGE_EVERY_S
        status = self.fleet.status(usage=measure)
        if measure:
            self._usage_at = now
            self._measured = {
                f"{row['host']}/{row['name']}": (row.get("memory_bytes"), row.get("cpu_percent"))
                for row in status_rows(status, self.fleet.roster)
            }
        return status

    def _screen_facts(self, row: dict[str, Any]) -> dict[str, Any]:
        """``last_line`` and ``menu`` of a row (and its carried usage figures), read from
        its screen only when the pane may have written since the last read (an unchanged
        fleet costs no screen reads; another host's agent: when it changed state). tmux
        times output to the second: a read in the second of the last output, or the next,
        may have missed the rest of that second's output, so it is read again."""
        usage: dict[str, Any] = {}
        measured = self._measured.get(f"{row['host']}/{row['name']}")
        if measured is not None and row.get("pid") and row.get("memory_bytes") is None:
            usage = {"memory_bytes": measured[0], "cpu_percent": measured[1]}
        if not row.get("window"):
            self._unsettled.discard(row["name"])
            return {**usage, **NO_FACTS}
        # Another host's screen is a command over SSH: read when its agent starts or
        # changes state (the moments its last line and menu matter), not at every output.
        last_output = 0.0 if row["host"] != "local" else _epoch(row.get("last_output_at"))
        key = (row.get("pid"), last_output, row["state"])
        cached = self._seen.get(row["name"])
        now = self.wall_clock()
        if cached is not None and cached[0] == key and cached[1] > last_output + SETTLED_S:
            self._unsettled.discard(row["name"])
            return {**usage, **cached[2]}
        try:
            text = self.screen(row["name"]).text
        except FleetError:
            return {**usage, **NO_FACTS}
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        shown = parse_menu(text) if row["state"] == "waiting" else None
        facts = {"last_line": last, "menu": {str(n): label for n, label in shown.entries.items()} if shown else {}}
        self._seen[row["name"]] = (key, now, facts)
        if now > last_output + SETTLED_S:
            self._unsettled.discard(row["name"])
        else:
            self._unsettled.add(row["name"])
        return {**usage, **facts}

    def screen(self, name: str) -> Screen:
        """The agent's visible screen with its colours and the pane's size, wherever it runs."""
        return self.fleet.screen(name)

    def transcript(self, name: str, lines: int) -> TranscriptText:
        """The last ``lines`` lines of the agent's transcript, rendered as ``fleet logs`` does."""
        return self.fleet.transcript(name, lines)

    def send(self, name: str, text: str, *, answer: bool) -> Said:
        """``fleet send --agent NAME [--answer] --message TEXT``, said as it says it."""
        try:
            self.fleet.roster.get(name)
            return said_send(self.fleet.send([name], text, answer=answer))
        except FleetError as exc:
            return said_error(exc)

    def act(self, action: str, name: str | None) -> Said:
        """``fleet restart`` / ``fleet stop`` (one agent, or the whole fleet for a restart)."""
        if action not in ACTIONS:
            return Said(False, [], f"error: unknown action {action!r}; use one of: {', '.join(ACTIONS)}", 2)
        try:
            if name is not None:
                self.fleet.roster.get(name)
            result = self.fleet.restart(name) if action == "restart" else self.fleet.stop(name)
        except FleetError as exc:
            return said_error(exc)
        return said_operation(result)
