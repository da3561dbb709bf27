"""The roster: which agents a fleet runs, stored as YAML (format version 1).

Loading uses PyYAML's safe loader only and validates everything a unit file or a tmux
target will later be built from, so a name like ``a;rm -rf`` never gets further than
this module. Every validation error is a :class:`RosterError` naming the file, the line
and the field.

Edits (``add_agent``, ``remove_agent``) splice the YAML text instead of re-dumping it, so
the user's comments and key order survive. They run under an exclusive lock on the
roster (two concurrent edits both land), re-validate the result before writing, and
replace the file atomically (a failed edit leaves the old file untouched).
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from fleetlib.atomic import atomic_write_text, edit_lock
from fleetlib.errors import FleetError, RosterError
from fleetlib.runtimes import RUNTIMES, known_runtime_names

ROSTER_VERSION: Final = 1
TRANSPORTS: Final = ("tmux",)
# Names become systemd instance names and tmux window targets: nothing else may pass.
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ENV_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TOP_LEVEL_KEYS: Final = ("version", "transport", "agents")
AGENT_KEYS: Final = (
    "name",
    "runtime",
    "command",
    "cwd",
    "args",
    "env",
    "description",
    "stop_timeout",
    "start_grace",
    "max_failures",
    "failure_window",
)
# Lifecycle defaults (seconds unless noted); the lifecycle engine reads them per agent.
DEFAULT_STOP_TIMEOUT: Final = 10.0
DEFAULT_START_GRACE: Final = 1.0
DEFAULT_MAX_FAILURES: Final = 5
DEFAULT_FAILURE_WINDOW: Final = 60.0

STARTER_ROSTER: Final = """\
# Fleet roster (format version 1). Edit by hand or with `inv roster.add` / `inv roster.remove`;
# run `inv fleet.install` afterwards so the systemd units match.
version: 1
transport: tmux
agents:
  # Each agent runs in its own tmux window of the fleet's holder session.
  - name: coder0
    runtime: codex
"""


@dataclass(frozen=True)
class Agent:
    """One roster entry. ``command`` overrides the runtime's command when given."""

    name: str
    runtime: str
    command: tuple[str, ...] | None = None
    cwd: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    # Lifecycle: TERM, then KILL after ``stop_timeout`` s; started once alive ``start_grace`` s;
    # ``max_failures`` exits within ``failure_window`` s count as a crash loop.
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    start_grace: float = DEFAULT_START_GRACE
    max_failures: int = DEFAULT_MAX_FAILURES
    failure_window: float = DEFAULT_FAILURE_WINDOW

    def argv(self) -> list[str]:
        """The full argv the agent's window runs: command (or the runtime's) plus args."""
        base = self.command if self.command is not None else RUNTIMES[self.runtime].command
        return [*base, *self.args]

    def to_dict(self) -> dict[str, Any]:
        """The agent as roster YAML would hold it; optional fields only when set."""
        data: dict[str, Any] = {"name": self.name, "runtime": self.runtime}
        if self.command is not None:
            data["command"] = list(self.command)
        if self.cwd is not None:
            data["cwd"] = self.cwd
        if self.args:
            data["args"] = list(self.args)
        if self.env:
            data["env"] = dict(self.env)
        if self.description:
            data["description"] = self.description
        if self.stop_timeout != DEFAULT_STOP_TIMEOUT:
            data["stop_timeout"] = self.stop_timeout
        if self.start_grace != DEFAULT_START_GRACE:
            data["start_grace"] = self.start_grace
        if self.max_failures != DEFAULT_MAX_FAILURES:
            data["max_failures"] = self.max_failures
        if self.failure_window != DEFAULT_FAILURE_WINDOW:
            data["failure_window"] = self.failure_window
        return data


@dataclass(frozen=True)
class Roster:
    """A validated roster. ``source`` is the file it came from (for messages)."""

    version: int
    transport: str
    agents: tuple[Agent, ...]
    source: str = "<roster>"

    def names(self) -> list[str]:
        return [agent.name for agent in self.agents]

    def cwd_of(self, agent: Agent, user_home: Path) -> str | None:
        """The agent's cwd as an absolute path: ``~`` is the user's home, relative paths are
        relative to the roster file's directory; None when the roster gives none."""
        if agent.cwd is None:
            return None
        if agent.cwd == "~" or agent.cwd.startswith("~/"):
            return str(user_home / agent.cwd[2:]) if agent.cwd != "~" else str(user_home)
        path = Path(agent.cwd)
        return str(path if path.is_absolute() else Path(self.source).parent / path)

    def get(self, name: str) -> Agent:
        """Return the agent called ``name``; ``FleetError`` naming the known ones otherwise."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        known = ", ".join(self.names()) or "none"
        raise FleetError(f"unknown agent {name!r} in {self.source} (known: {known}); add it with `inv roster.add`")


# --------------------------------------------------------------------------- parsing


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# libyaml's safe loader when PyYAML was built with it (10x faster on big rosters); both
# record the line marks the error messages need.
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# One constructor for scalars; its memo is cleared before each use so nothing accumulates.
_SCALARS: Final = yaml.SafeLoader("")


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark is not None else None
        raise RosterError(source, f"invalid YAML: {problem}; fix the syntax", line=line) from None
    except yaml.YAMLError as exc:
        raise RosterError(source, f"invalid YAML: {exc}") from None


def _scalar(node: yaml.Node, source: str, where: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise RosterError(source, "expected a single value, not a list or mapping", line=_line(node), field=where)
    try:
        _SCALARS.constructed_objects.clear()
        return _SCALARS.construct_object(node)
    except yaml.YAMLError as exc:  # e.g. a !!python/object tag the safe loader refuses
        problem = getattr(exc, "problem", None) or str(exc)
        raise RosterError(source, f"unsupported value: {problem}", line=_line(node), field=where) from None


def _string(node: yaml.Node, source: str, where: str) -> str:
    value = _scalar(node, source, where)
    if not isinstance(value, str):
        raise RosterError(source, f"must be a string, got {value!r}; quote it", line=_line(node), field=where)
    return value


def _string_list(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise RosterError(source, "must be a list of strings", line=_line(node), field=where)
    items: list[str] = []
    for index, item in enumerate(node.value):
        value = _scalar(item, source, f"{where}[{index}]")
        # Numbers are harmless as argv words; booleans and nulls are almost always mistakes.
        if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
            raise RosterError(
                source, f"must be a string, got {value!r}; quote it", line=_line(item), field=f"{where}[{index}]"
            )
        items.append(str(value))
    return tuple(items)


def _seconds(node: yaml.Node, source: str, where: str, *, allow_zero: bool) -> float:
    value = _scalar(node, source, where)
    bound = ">= 0" if allow_zero else "> 0"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise RosterError(source, f"must be a number {bound} (seconds), got {value!r}", line=_line(node), field=where)
    return float(value)


def _count(node: yaml.Node, source: str, where: str) -> int:
    value = _scalar(node, source, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RosterError(source, f"must be a whole number >= 1, got {value!r}", line=_line(node), field=where)
    return value


def _mapping(node: yaml.Node, source: str, where: str, allowed: Sequence[str] | None) -> dict[str, yaml.Node]:
    """Return key -> value node, rejecting non-string, duplicate and unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        what = where or "top level"
        raise RosterError(source, f"{what} must be a mapping", line=_line(node))
    result: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node, source, where or "top level")
        if not isinstance(key, str):
            raise RosterError(
                source, f"keys must be strings, got {key!r}", line=_line(key_node), field=where or "top level"
            )
        path = f"{where}.{key}" if where else key
        if key in result:
            raise RosterError(source, "duplicate key; keep only one", line=_line(key_node), field=path)
        if allowed is not None and key not in allowed:
            raise RosterError(
                source,
                f"unknown key {key!r}{_did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})",
                line=_line(key_node),
                field=path,
            )
        result[key] = value_node
    return result


def _parse_agent(node: yaml.Node, index: int, source: str) -> Agent:
    where = f"agents[{index}]"
    fields = _mapping(node, source, where, AGENT_KEYS)
    for required in ("name", "runtime"):
        if required not in fields:
            raise RosterError(source, f"missing required key {required!r}", line=_line(node), field=where)
    name = _string(fields["name"], source, f"{where}.name")
    if not NAME_PATTERN.fullmatch(name):
        raise RosterError(
            source,
            f"invalid agent name {name!r}: use 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit",
            line=_line(fields["name"]),
            field=f"{where}.name",
        )
    runtime = _string(fields["runtime"], source, f"{where}.runtime")
    command: tuple[str, ...] | None = None
    if "command" in fields:
        command_node = fields["command"]
        if isinstance(command_node, yaml.SequenceNode):
            command = _string_list(command_node, source, f"{where}.command")
        else:
            try:
                command = tuple(shlex.split(_string(command_node, source, f"{where}.command")))
            except ValueError as exc:
                raise RosterError(
                    source, f"cannot split command: {exc}", line=_line(command_node), field=f"{where}.command"
                ) from None
        if not command:
            raise RosterError(source, "must not be empty", line=_line(command_node), field=f"{where}.command")
    if command is None and runtime not in RUNTIMES:
        raise RosterError(
            source,
            f"unknown runtime {runtime!r}{_did_you_mean(runtime, known_runtime_names())} "
            f"(known: {', '.join(known_runtime_names())}; or give a 'command')",
            line=_line(fields["runtime"]),
            field=f"{where}.runtime",
        )
    env: dict[str, str] = {}
    if "env" in fields:
        for key, value_node in _mapping(fields["env"], source, f"{where}.env", None).items():
            if not ENV_NAME_PATTERN.fullmatch(key):
                raise RosterError(
                    source, f"invalid environment variable name {key!r}", line=_line(value_node), field=f"{where}.env"
                )
            value = _scalar(value_node, source, f"{where}.env.{key}")
            if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
                raise RosterError(
                    source,
                    f"must be a string, got {value!r}; quote it",
                    line=_line(value_node),
                    field=f"{where}.env.{key}",
                )
            env[key] = str(value)
    return Agent(
        name=name,
        runtime=runtime,
        command=command,
        cwd=_string(fields["cwd"], source, f"{where}.cwd") if "cwd" in fields else None,
        args=_string_list(fields["args"], source, f"{where}.args") if "args" in fields else (),
        env=env,
        description=_string(fields["description"], source, f"{where}.description") if "description" in fields else "",
        stop_timeout=_seconds(fields["stop_timeout"], source, f"{where}.stop_timeout", allow_zero=False)
        if "stop_timeout" in fields
        else DEFAULT_STOP_TIMEOUT,
        start_grace=_seconds(fields["start_grace"], source, f"{where}.start_grace", allow_zero=True)
        if "start_grace" in fields
        else DEFAULT_START_GRACE,
        max_failures=_count(fields["max_failures"], source, f"{where}.max_failures")
        if "max_failures" in fields
        else DEFAULT_MAX_FAILURES,
        failure_window=_seconds(fields["failure_window"], source, f"{where}.failure_window", allow_zero=False)
        if "failure_window" in fields
        else DEFAULT_FAILURE_WINDOW,
    )


@dataclass(frozen=True)
class _Parsed:
    roster: Roster
    agents_key: yaml.Node | None
    agents_node: yaml.Node | None


def _parse(text: str, source: str) -> _Parsed:
    root = _compose(text, source)
    if root is None:
        raise RosterError(source, "the roster is empty; it needs version, transport and agents (see `inv roster.init`)")
    if not isinstance(root, yaml.MappingNode):
        raise RosterError(source, "the roster must be a mapping with version, transport and agents", line=_line(root))
    top = _mapping(root, source, "", TOP_LEVEL_KEYS)
    if "version" not in top:
        raise RosterError(source, f"missing required key 'version'; add `version: {ROSTER_VERSION}`", line=1)
    version = _scalar(top["version"], source, "version")
    if version != ROSTER_VERSION or isinstance(version, bool):
        raise RosterError(
            source,
            f"unsupported version {version!r}; this tool reads version {ROSTER_VERSION}",
            line=_line(top["version"]),
            field="version",
        )
    transport = "tmux"
    if "transport" in top:
        transport = _string(top["transport"], source, "transport")
        if transport not in TRANSPORTS:
            raise RosterError(
                source,
                f"unsupported transport {transport!r}; use 'tmux'",
                line=_line(top["transport"]),
                field="transport",
            )
    agents: list[Agent] = []
    agents_node = top.get("agents")
    agents_key = next((k for k, _ in root.value if k.value == "agents"), None)
    if agents_node is not None and not (
        isinstance(agents_node, yaml.ScalarNode) and _scalar(agents_node, source, "agents") is None
    ):
        if not isinstance(agents_node, yaml.SequenceNode):
            raise RosterError(source, "must be a list of agents", line=_line(agents_node), field="agents")
        seen: dict[str, int] = {}
        for index, item in enumerate(agents_node.value):
            agent = _parse_agent(item, index, source)
            if agent.name in seen:
                raise RosterError(
                    source,
                    f"duplicate agent name {agent.name!r} (first at line {seen[agent.name]}); names must be unique",
                    line=_line(item),
                    field=f"agents[{index}].name",
                )
            seen[agent.name] = _line(item)
            agents.append(agent)
    roster = Roster(version=version, transport=transport, agents=tuple(agents), source=source)
    return _Parsed(roster, agents_key, agents_node)


def parse_roster(text: str, source: str = "<roster>") -> Roster:
    """Validate roster YAML text; ``RosterError`` (file, line, field) on any problem."""
    return _parse(text, source).roster


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetError(f"roster not found: {path}; create one with `inv roster.init` or pass --roster") from None
    except UnicodeDecodeError as exc:
        raise RosterError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None


def load_roster(path: Path) -> Roster:
    """Read and validate the roster at ``path``."""
    return parse_roster(_read(path), str(path))


# --------------------------------------------------------------------------- editing


def _dump_items(agents: Sequence[Agent], indent: int) -> str:
    text = yaml.safe_dump([a.to_dict() for a in agents], sort_keys=False, default_flow_style=False, allow_unicode=True)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _last_content_line(lines: list[str], start: int, stop: int) -> int:
    """Index of the last line in ``[start, stop)`` holding YAML content (not blank/comment)."""
    for index in range(min(stop, len(lines)) - 1, start - 1, -1):
        if _is_content(lines[index]):
            return index
    return start


def _rewrite_agents_block(text: str, parsed: _Parsed, agents: Sequence[Agent]) -> str:
    """Replace the whole ``agents`` value with a block list (for flow, null or absent lists)."""
    key_col = parsed.agents_key.start_mark.column if parsed.agents_key is not None else 0
    block = "\n" + _dump_items(agents, key_col + 2) if agents else " []\n"
    node = parsed.agents_node
    if parsed.agents_key is None or node is None:
        sep = "" if text.endswith("\n") or not text else "\n"
        return f"{text}{sep}agents:{block}"
    # Replace from just after "agents:" to the end of the value's last content line, so
    # comments and keys after the list stay where they are.
    lines = text.splitlines(keepends=True)
    key_line = parsed.agents_key.start_mark.line
    stop = node.end_mark.line + (1 if node.end_mark.column > 0 else 0)
    last = _last_content_line(lines, key_line, stop)
    colon = text.index(":", parsed.agents_key.end_mark.index) + 1
    return text[:colon] + block + "".join(lines[last + 1 :])


def _splice_add(text: str, parsed: _Parsed, agent: Agent) -> str:
    node = parsed.agents_node
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        return _rewrite_agents_block(text, parsed, [*parsed.roster.agents, agent])
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    last_item = node.value[-1]
    stop = node.end_mark.line + (1 if node.end_mark.column > 0 else 0)
    insert_at = _last_content_line(lines, last_item.start_mark.line, stop) + 1
    lines.insert(insert_at, _dump_items([agent], node.start_mark.column))
    return "".join(lines)


def _splice_remove(text: str, parsed: _Parsed, name: str) -> str:
    node = parsed.agents_node
    assert isinstance(node, yaml.SequenceNode)  # the agent exists, so agents is a list
    remaining = [a for a in parsed.roster.agents if a.name != name]
    if node.flow_style or not remaining:
        return _rewrite_agents_block(text, parsed, remaining)
    index = parsed.roster.names().index(name)
    lines = text.splitlines(keepends=True)
    item = node.value[index]
    if index + 1 < len(node.value):
        stop = node.value[index + 1].start_mark.line
    else:
        stop = node.end_mark.line + (1 if node.end_mark.column > 0 else 0)
    last = _last_content_line(lines, item.start_mark.line, stop)
    del lines[item.start_mark.line : last + 1]
    return "".join(lines)


def _edit(path: Path, change: str, splice: Any) -> Roster:
    with edit_lock(path):
        text = _read(path)
        parsed = _parse(text, str(path))
        new_text = splice(text, parsed)
        # Never write something we could not read back: validate the spliced text first.
        roster = parse_roster(new_text, str(path))
        try:
            atomic_write_text(path, new_text)
        except OSError as exc:
            raise FleetError(f"cannot {change} in {path}: {exc.strerror}; the roster was left unchanged") from None
        return roster


def validate_agent(agent: Agent) -> Agent:
    """Validate one agent built from command-line input, with the same rules as the file.

    The error names the offending field (``name: invalid agent name ...``) rather than a
    line of a file the user never wrote.
    """
    text = yaml.safe_dump({"version": ROSTER_VERSION, "agents": [agent.to_dict()]}, sort_keys=False)
    try:
        return parse_roster(text, "agent").agents[0]
    except RosterError as exc:
        field_name = exc.field.partition(".")[2] or "agent"
        raise FleetError(f"{field_name}: {exc.problem}") from None


def add_agent(path: Path, agent: Agent) -> Roster:
    """Append ``agent`` to the roster at ``path``, keeping comments and key order.

    Raises ``FleetError`` if the name is taken or the result would not validate; the
    file is then unchanged.
    """
    checked = validate_agent(agent)

    def splice(text: str, parsed: _Parsed) -> str:
        if agent.name in parsed.roster.names():
            raise FleetError(f"agent {agent.name!r} already exists in {path}; pick another name or remove it first")
        return _splice_add(text, parsed, checked)

    return _edit(path, f"add agent {agent.name!r}", splice)


def remove_agent(path: Path, name: str) -> Roster:
    """Remove the agent called ``name``; ``FleetError`` if it is not in the roster."""

    def splice(text: str, parsed: _Parsed) -> str:
        parsed.roster.get(name)  # raises with the known names
        return _splice_remove(text, parsed, name)

    return _edit(path, f"remove agent {name!r}", splice)


def init_roster(path: Path, *, force: bool = False) -> Roster:
    """Write the starter roster; refuses to replace an existing file unless ``force``."""
    with edit_lock(path):
        if path.exists() and not force:
            raise FleetError(f"roster already exists: {path}; pass --force to overwrite it")
        atomic_write_text(path, STARTER_ROSTER)
    return parse_roster(STARTER_ROSTER, str(path))
