"""What fleet operations did, as data: every operation returns one of these.

The command line renders text or JSON from the same object, so tests and scripts assert on
data, never on prose. Every ``to_json`` emits every key, always (``null`` when unknown), and
every ``from_json`` rebuilds the object from it (what another host answered), so
``X.from_json(x.to_json()).to_json() == x.to_json()``. A ``from_json`` given something
else raises :class:`ValueError` (a host's answer is untrusted input).

This module is pure (dataclasses only): the command line imports it at start-up for free.

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
from dataclasses import dataclass, field, replace
from typing import Any, Final, Generic, Literal, Protocol, TypeVar, get_args

# The progress types, exported under this module's name too (their own module keeps them
# cheap to import for the engine, which takes a hook but makes no result for `status`).
from fleetlib.progress import Progress as Progress  # noqa: PLC0414
from fleetlib.progress import ProgressHook as ProgressHook  # noqa: PLC0414
from fleetlib.progress import no_progress as no_progress  # noqa: PLC0414

Operation = Literal["start", "stop", "restart"]
"""What ``start``/``stop``/``restart`` are asked to do: a closed set, dispatched by
:func:`fleetlib.group.control`, never by looking a method up by name."""
OPERATIONS: Final[tuple[Operation, ...]] = get_args(Operation)

Action = Literal["started", "stopped", "restarted", "unchanged", "failed", "would start", "would stop", "would restart"]
"""What an operation did to one agent (or to the holder): a closed set, see above."""
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
SCREEN_MAX: Final = 10_000  # cells a side: a pane is far smaller; a host answering more is not believed

_WOULD: Final[dict[Action, Action]] = {"started": "would start", "stopped": "would stop", "restarted": "would restart"}


def would(action: Action) -> Action:
    """The dry-run form of ``action``: a change recorded, not made, says what it would do."""
    return _WOULD.get(action, action)


def _field(data: Any, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """``data[key]`` checked to be a ``kind``; ``default`` when absent (a host running an
    older fleet may lack a newer key), :class:`ValueError` otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if key not in data:
        if default is ...:
            raise ValueError(f"missing key {key!r}")
        return default
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ValueError(f"key {key!r}: unexpected {type(value).__name__}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _number(data: Any, key: str) -> float:
    value = _field(data, key, (int, float, type(None)), 0.0)
    return 0.0 if value is None else float(value)


def _optional(data: Any, key: str, kind: type) -> Any:
    return _field(data, key, (kind, type(None)), None)


def _strings(data: Any, key: str, default: Any = ...) -> list[str]:
    items = _field(data, key, list, default)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"key {key!r}: expected a list of strings")
    return list(items)


def _action(data: Any, key: str, default: Any = ...) -> Any:
    """``data[key]``, one of :data:`ACTIONS` (or None when ``default`` is None)."""
    value = _field(data, key, (str, type(None)) if default is None else str, default)
    if value is not None and value not in ACTIONS:
        raise ValueError(f"key {key!r}: unknown action {value!r} (expected one of: {', '.join(ACTIONS)})")
    return value


def _objects(data: Any, key: str) -> list[Any]:
    items = _field(data, key, list, [])
    return list(items)


@dataclass(frozen=True)
class AgentOutcome:
    """What one operation did to one agent."""

    name: str
    action: Action
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

    @classmethod
    def from_json(cls, data: Any) -> AgentOutcome:
        return cls(
            name=_field(data, "name", str),
            action=_action(data, "action"),
            old_pid=_optional(data, "old_pid", int),
            new_pid=_optional(data, "new_pid", int),
            seconds=_number(data, "seconds"),
            error=_optional(data, "error", str),
            exit_status=_optional(data, "exit_status", int),
            output=_optional(data, "output", str),
        )


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
    holder: Action | None = None
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

    def as_dry_run(self, commands: list[list[str]]) -> OperationResult:
        """This result as a dry run that recorded ``commands`` reports it: each change in
        its "would ..." form (see :func:`would`), no time spent."""
        agents = [replace(agent, action=would(agent.action)) for agent in self.agents]
        holder = None if self.holder is None else would(self.holder)
        return replace(self, agents=agents, seconds=0.0, dry_run=True, holder=holder, commands=commands)

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

    @classmethod
    def from_json(cls, data: Any) -> OperationResult:
        commands = _objects(data, "commands")
        if not all(isinstance(argv, list) and all(isinstance(a, str) for a in argv) for argv in commands):
            raise ValueError("key 'commands': expected lists of strings")
        return cls(
            operation=_field(data, "operation", str),
            backend=_field(data, "backend", str, "?"),
            agents=[AgentOutcome.from_json(item) for item in _objects(data, "agents")],
            seconds=_number(data, "seconds"),
            dry_run=_field(data, "dry_run", bool, False),
            holder=_action(data, "holder", None),
            commands=[list(argv) for argv in commands],
        )


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

    @classmethod
    def from_json(cls, data: Any) -> InstallResult:
        return cls(
            operation=_field(data, "operation", str),
            backend=_field(data, "backend", str),
            dry_run=_field(data, "dry_run", bool, False),
            written=_strings(data, "written", []),
            removed=_strings(data, "removed", []),
            enabled=_strings(data, "enabled", []),
            disabled=_strings(data, "disabled", []),
            reloaded=_field(data, "reloaded", bool, False),
            notes=_strings(data, "notes", []),
            stopped=_strings(data, "stopped", []),  # a host older than this key stops none
        )


# --------------------------------------------------------------------------- send

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
            "exit_code": self.exit_code,
        }

    @classmethod
    def from_json(cls, data: Any) -> SendOutcome:
        action = _field(data, "action", str)
        return cls(
            name=_field(data, "name", str),
            action=action,
            verified=_field(data, "verified", bool, False),
            seconds=_number(data, "seconds"),
            error=_optional(data, "error", str),
            output=_optional(data, "output", str),
            # (An older fleet's JSON does not carry it: attempted, failed.)
            exit_code=_field(data, "exit_code", int, 1 if action == FAILED else 0),
        )


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

    @classmethod
    def from_json(cls, data: Any) -> SendResult:
        return cls(
            characters=_field(data, "characters", int),
            verify=_field(data, "verify", bool, True),
            dry_run=_field(data, "dry_run", bool, False),
            seconds=_number(data, "seconds"),
            agents=[SendOutcome.from_json(item) for item in _objects(data, "agents")],
        )


# --------------------------------------------------------------------------- wait / status / doctor


@dataclass(frozen=True)
class WaitRow:
    """One agent at the end of a wait: the state it showed, and whether it was the one wanted."""

    name: str
    state: str
    reached: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "reached": self.reached}


@dataclass(frozen=True)
class WaitReport:
    """A finished ``wait`` as data (what :class:`fleetlib.waiting.WaitResult` says in JSON):
    the state wanted, whether every agent reached it, after how long, and where each was."""

    wanted: str
    ok: bool
    seconds: float
    agents: list[WaitRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": "wait",
            "for": self.wanted,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "agents": [row.to_json() for row in self.agents],
        }

    @classmethod
    def from_json(cls, data: Any) -> WaitReport:
        rows = [
            WaitRow(_field(item, "name", str), _field(item, "state", str), _field(item, "reached", bool))
            for item in _objects(data, "agents")
        ]
        return cls(_field(data, "for", str), _field(data, "ok", bool), _number(data, "seconds"), rows)


@dataclass(frozen=True)
class StatusReport:
    """One machine's ``status --json`` rows (the status schema, kept as it was answered)
    and whether every agent there is up (its exit code was 0)."""

    all_up: bool
    agents: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "all_up": self.all_up, "agents": list(self.agents)}

    @classmethod
    def from_json(cls, data: Any) -> StatusReport:
        rows = _objects(data, "agents")
        if not all(isinstance(row, dict) and isinstance(row.get("name"), str) for row in rows):
            raise ValueError("key 'agents': expected status objects with a name")
        return cls(_field(data, "all_up", bool), rows)


@dataclass(frozen=True)
class Check:
    """One finding: ``detail`` says what was seen, ``fix`` how to repair a failure. A
    ``skipped`` check (not relevant here, e.g. lingering on the tmux backend) passes."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail, "fix": self.fix}

    @classmethod
    def from_json(cls, data: Any) -> Check:
        return cls(
            _field(data, "name", str),
            _field(data, "ok", bool),
            _field(data, "detail", str),
            _optional(data, "fix", str),
            _field(data, "skipped", (bool, type(None)), False) or False,
        )


@dataclass(frozen=True)
class Checks:
    """A machine's ``doctor`` findings, in order."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> list[dict[str, Any]]:
        return [check.to_json() for check in self.checks]

    @classmethod
    def from_json(cls, data: Any) -> Checks:
        if not isinstance(data, list):
            raise ValueError(f"expected a JSON list of checks, got {type(data).__name__}")
        return cls([Check.from_json(item) for item in data])


# --------------------------------------------------------------------------- hosts.*


@dataclass(frozen=True)
class Bootstrapped:
    """What ``hosts.bootstrap`` installed on one host."""

    version: str
    wheels: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "version": self.version, "wheels": list(self.wheels)}

    @classmethod
    def from_json(cls, data: Any) -> Bootstrapped:
        return cls(_field(data, "version", str), _strings(data, "wheels"))


@dataclass(frozen=True)
class Trusted:
    """What ``hosts.trust`` recorded for one host (a line per key)."""

    lines: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "lines": list(self.lines)}

    @classmethod
    def from_json(cls, data: Any) -> Trusted:
        return cls(_strings(data, "lines"))


# --------------------------------------------------------------------------- several hosts


class HostData(Protocol):
    """What one host can answer: any result above."""

    def to_json(self) -> Any: ...


D = TypeVar("D", bound=HostData)


def _succeeded(data: HostData) -> bool:
    """Whether a host's answer says it did what was asked (``ok``, where the result has it)."""
    ok = getattr(data, "ok", True)
    return bool(ok)


@dataclass(frozen=True)
class HostResult(Generic[D]):
    """One host's part of a command: its typed answer, or the one line saying why not."""

    host: str
    ok: bool
    seconds: float
    data: D | None = None
    error: str | None = None
    attempted: bool = True

    @classmethod
    def answered(cls, host: str, data: D, seconds: float) -> HostResult[D]:
        """The host answered ``data``; it failed when the answer says so (its agents say why)."""
        ok = _succeeded(data)
        error = None if ok else "the operation failed on this host (see its agents)"
        return cls(host=host, ok=ok, seconds=seconds, data=data, error=error)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "attempted": self.attempted,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "result": None if self.data is None else self.data.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, parse: Callable[[Any], D]) -> HostResult[D]:
        """Rebuilt from :meth:`to_json`; ``parse`` rebuilds the host's answer."""
        answer = _field(data, "result", object, None)
        return cls(
            host=_field(data, "host", str),
            ok=_field(data, "ok", bool),
            seconds=_number(data, "seconds"),
            data=None if answer is None else parse(answer),
            error=_optional(data, "error", str),
            attempted=_field(data, "attempted", bool, True),
        )


@dataclass(frozen=True)
class HostsResult(Generic[D]):
    """A command across hosts (fabric's ``GroupResult``): one :class:`HostResult` per host."""

    operation: str
    hosts: list[HostResult[D]]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(host.ok for host in self.hosts)

    @property
    def failed(self) -> list[HostResult[D]]:
        return [host for host in self.hosts if not host.ok]

    @property
    def succeeded(self) -> list[HostResult[D]]:
        return [host for host in self.hosts if host.ok]

    def answers(self) -> list[tuple[str, D]]:
        """Every host that answered, with its answer (failed operations included)."""
        return [(host.host, host.data) for host in self.hosts if host.data is not None]

    def agent_rows(self) -> list[dict[str, Any]]:
        """Every agent object of every answering host, with its ``host``."""
        rows: list[dict[str, Any]] = []
        for host, answer in self.answers():
            data = answer.to_json()
            items = data if isinstance(data, list) else data.get("agents", []) if isinstance(data, dict) else []
            rows.extend({**item, "host": host} for item in items if isinstance(item, dict))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "hosts": [host.to_json() for host in self.hosts],
            "agents": self.agent_rows(),
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: Any, parse: Callable[[Any], D]) -> HostsResult[D]:
        known = {"operation", "ok", "seconds", "hosts", "agents"}
        extra = {key: value for key, value in data.items() if key not in known} if isinstance(data, dict) else {}
        return cls(
            operation=_field(data, "operation", str),
            hosts=[HostResult.from_json(item, parse) for item in _objects(data, "hosts")],
            seconds=_number(data, "seconds"),
            extra=extra,
        )


@dataclass(frozen=True)
class TopRows:
    """One machine's ``top --once --json`` sample: a row per agent (the top schema, kept
    as it was answered)."""

    rows: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.rows)

    @classmethod
    def from_json(cls, data: Any) -> TopRows:
        if not isinstance(data, list) or not all(
            isinstance(row, dict) and isinstance(row.get("name"), str) for row in data
        ):
            raise ValueError("expected a JSON list of top rows with names")
        return cls(list(data))


@dataclass(frozen=True)
class WorktreeRows:
    """One machine's ``worktree.list --json``: a row per agent that has a worktree (agent,
    path, branch, ahead/behind, dirty files, last commit; see :mod:`fleetlib.worktree`)."""

    rows: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.rows)

    @classmethod
    def from_json(cls, data: Any) -> WorktreeRows:
        if not isinstance(data, list) or not all(
            isinstance(row, dict) and isinstance(row.get("agent"), str) for row in data
        ):
            raise ValueError("expected a JSON list of worktree rows with agents")
        return cls(list(data))


@dataclass(frozen=True)
class WorktreeRemoval:
    """``worktree.remove``: the worktree as it was when removed (its branch is kept), and
    whether ``--force`` allowed it; ``host`` when another host's fleet removed it."""

    removed: dict[str, Any]
    forced: bool
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"operation": "worktree.remove", "removed": self.removed, "forced": self.forced}
        return {**data, "host": self.host} if self.host is not None else data

    @classmethod
    def from_json(cls, data: Any) -> WorktreeRemoval:
        removed = _field(data, "removed", dict)
        if not isinstance(removed.get("path"), str) or not isinstance(removed.get("branch"), str):
            raise ValueError("expected the removed worktree's path and branch")
        host = data.get("host")
        return cls(removed, _field(data, "forced", bool), host if isinstance(host, str) else None)


@dataclass(frozen=True)
class Screen:
    """An agent's visible screen as tmux draws it: ``text`` with its colours (``tmux
    capture-pane -e``), the pane's size (``columns``, ``rows``) and the ``host`` it runs on."""

    agent: str
    text: str
    columns: int
    rows: int
    host: str = "local"

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "host": self.host, "text": self.text, "columns": self.columns, "rows": self.rows}

    @classmethod
    def from_json(cls, data: Any) -> Screen:
        columns, rows = _field(data, "columns", int), _field(data, "rows", int)
        if not (0 < columns <= SCREEN_MAX and 0 < rows <= SCREEN_MAX):
            raise ValueError(f"a screen of {columns}x{rows} cells is out of range")
        return cls(_field(data, "agent", str), _field(data, "text", str), columns, rows, _field(data, "host", str))


@dataclass(frozen=True)
class TranscriptText:
    """The last lines of an agent's transcript, rendered as ``fleet logs`` prints them,
    and the ``host`` it runs on."""

    agent: str
    text: str
    host: str = "local"

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "host": self.host, "text": self.text}

    @classmethod
    def from_json(cls, data: Any) -> TranscriptText:
        return cls(_field(data, "agent", str), _field(data, "text", str), _field(data, "host", str))
