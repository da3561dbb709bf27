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
import json
import math
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

from fleetlib.atomic import atomic_write_text, edit_lock
from fleetlib.errors import FleetError, RosterError
from fleetlib.hosts import HOST_BACKENDS, HOST_KEYS, HOST_NAME_PATTERN, LOCAL, Host, parse_target
from fleetlib.notify import url_problem
from fleetlib.resources import NO_LIMITS, RESOURCE_KEYS, Resources, check_value
from fleetlib.rundir import kind_of
from fleetlib.runtimes import RUNTIMES, known_runtime_names
from fleetlib.sessions import RESUMABLE, marker_word
from fleetlib.worktree import Worktree, parse_worktree

ROSTER_VERSION: Final = 1
TRANSPORTS: Final = ("tmux",)
# Names become systemd instance names and tmux window targets: nothing else may pass.
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ENV_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ``resources``: every agent's default limits; ``fleet_resources``: all agents together.
TOP_LEVEL_KEYS: Final = ("version", "transport", "hosts", "resources", "fleet_resources", "agents")
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
    "on_state_change",
    "notify",
    "log_max_bytes",
    "log_keep",
    "host",
    "resources",
    "resume",
    "worktree",
)
# Lifecycle defaults (seconds unless noted); the lifecycle engine reads them per agent.
DEFAULT_STOP_TIMEOUT: Final = 10.0
DEFAULT_START_GRACE: Final = 1.0
DEFAULT_MAX_FAILURES: Final = 5
DEFAULT_FAILURE_WINDOW: Final = 60.0
# Transcripts (<home>/fleet/logs/<name>.log): rotated past this size, this many old files kept.
DEFAULT_LOG_MAX_BYTES: Final = 10 * 1024 * 1024
DEFAULT_LOG_KEEP: Final = 5
MIN_LOG_MAX_BYTES: Final = 4096  # below a few screens a transcript would rotate on every redraw

STARTER_ROSTER: Final = """\
# Fleet roster (format version 1). Edit by hand or with `inv roster.add` / `inv roster.remove`;
# run `inv fleet.install` afterwards so the systemd units match.
version: 1
transport: tmux
agents:
  # Each agent runs in its own tmux window of the fleet's holder session. This one is a plain
  # shell, so the fleet runs on any machine; swap in a real agent once its CLI is installed.
  - name: coder0
    runtime: shell
    cwd: "~"              # working directory (default: your home directory)
  # Real agents (each needs its CLI on PATH):
  # - name: coder1
  #   runtime: claude     # also codex, gemini, opencode
  #   cwd: ~/src/project
  # - name: reviewer
  #   runtime: codex
  #   args: [--model, o3]
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
    # Activity: a command (argv) the fleet's watcher runs when the agent enters waiting,
    # exited or failed; transcripts: rotation size and how many rotated files stay.
    on_state_change: tuple[str, ...] = ()
    # Apprise URLs the watcher tells "needs input", "done", "exited", "failed" (fleetlib.notify);
    # they may hold secrets: shown only masked.
    notify: tuple[str, ...] = ()
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    log_keep: int = DEFAULT_LOG_KEEP
    # Which machine runs the agent: ``local`` or a name under the roster's ``hosts:``.
    host: str = LOCAL
    # cgroup limits (the roster's top-level ``resources`` already merged in).
    resources: Resources = NO_LIMITS
    # Whether a restart resumes the conversation (see fleetlib.sessions); None: the
    # runtime's default (on where it can, RESUMABLE).
    resume: bool | None = None
    # Its own git worktree (fleetlib.worktree), which becomes its working directory.
    worktree: Worktree | None = None

    @property
    def resumes(self) -> bool:
        """Whether the agent's starts resume its recorded conversation."""
        return self.resume if self.resume is not None else self.runtime in RESUMABLE

    def argv(self) -> list[str]:
        """The full argv the agent's window runs: command (or the runtime's) plus args."""
        base = self.command if self.command is not None else RUNTIMES[self.runtime].command
        return [*base, *self.args]

    def launch_argv(self) -> list[str]:
        """What the agent's supervisor is given: :meth:`argv`, with the resume marker word
        after the command when the agent resumes (the supervisor replaces it on each start
        by that start's resume words, see :mod:`fleetlib.sessions`)."""
        if not self.resumes:
            return self.argv()
        base = self.command if self.command is not None else RUNTIMES[self.runtime].command
        return [*base, marker_word(self.runtime), *self.args]

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
        if self.on_state_change:
            data["on_state_change"] = list(self.on_state_change)
        if self.notify:
            data["notify"] = list(self.notify)
        if self.log_max_bytes != DEFAULT_LOG_MAX_BYTES:
            data["log_max_bytes"] = self.log_max_bytes
        if self.log_keep != DEFAULT_LOG_KEEP:
            data["log_keep"] = self.log_keep
        if self.host != LOCAL:
            data["host"] = self.host
        if self.resources:
            data["resources"] = self.resources.to_dict()
        if self.resume is not None:
            data["resume"] = self.resume
        if self.worktree is not None:
            data["worktree"] = self.worktree.to_value()
        return data


@dataclass(frozen=True)
class Roster:
    """A validated roster. ``source`` is the file it came from (for messages)."""

    version: int
    transport: str
    agents: tuple[Agent, ...]
    source: str = "<roster>"
    # field path ("agents[2].cwd") -> line in ``source``, for messages about valid rosters
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    # host name -> Host, for the machines other than this one (empty: a one-machine fleet)
    hosts: Mapping[str, Host] = field(default_factory=dict)
    # the ceiling on all agents together (the slice holding every agent)
    fleet_resources: Resources = NO_LIMITS

    def names(self) -> list[str]:
        return [agent.name for agent in self.agents]

    def cwd_of(self, agent: Agent, user_home: Path) -> str:
        """The absolute directory the agent starts in, literally (no normalisation, no tmux
        or shell expansion): ``~`` and ``~/x`` are in ``user_home``, an absolute path is
        itself, and no cwd means ``user_home`` (both backends start agents there).
        Validation refuses any other form, so this never depends on the caller's cwd. An
        agent with a worktree starts in it."""
        if agent.worktree is not None:
            return agent.worktree.checkout(self, agent, user_home)
        cwd = agent.cwd
        if cwd is None or cwd == "~":
            return str(user_home)
        if cwd.startswith("~/"):
            return str(user_home).rstrip("/") + cwd[1:]
        return cwd

    def get(self, name: str) -> Agent:
        """Return the agent called ``name``; ``FleetError`` naming the known ones otherwise."""
        for agent in self.agents:
            if agent.name == name:
                return agent
        known = ", ".join(self.names()) or "none"
        raise FleetError(f"unknown agent {name!r} in {self.source} (known: {known}); add it with `inv roster.add`")

    def host_names(self) -> list[str]:
        """Every host with agents, ``local`` first when it has any, then in roster order."""
        used = {agent.host for agent in self.agents}
        return [name for name in (LOCAL, *self.hosts) if name in used]

    def for_host(self, host: str) -> Roster:
        """The part of the fleet that runs on ``host``: its agents, without ``hosts:``
        (each host's own fleet is a one-machine fleet), same source for messages."""
        agents = tuple(replace(agent, host=LOCAL) for agent in self.agents if agent.host == host)
        return replace(self, agents=agents, hosts={}, lines={})

    def host_text(self, host: str) -> str:
        """``for_host(host)`` as roster YAML: what ``fleet install`` pushes to that host."""
        part = self.for_host(host)
        data: dict[str, Any] = {"version": self.version, "transport": self.transport}
        if self.fleet_resources:
            data["fleet_resources"] = self.fleet_resources.to_dict()
        data["agents"] = [a.to_dict() for a in part.agents]
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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


_STR_TAG: Final = "tag:yaml.org,2002:str"
# Characters no program can receive in argv, the environment or a path: execve() and every
# path call stop at NUL, and a lone surrogate cannot be encoded as UTF-8 at all.
_UNPASSABLE: Final = re.compile(r"[\x00\ud800-\udfff]")


def _reads_as(value: Any) -> str:
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"a {type(value).__name__} ({value})"


def _string(node: yaml.Node, source: str, where: str) -> str:
    """A string field, exactly as written.

    YAML 1.1 resolves plain scalars: ``0755`` is 493, ``1:30`` is 90, ``off`` is false,
    ``2001-12-14`` a date. Rather than pass on a value the user never wrote, anything not
    tagged as a string (by quoting, or by being plain text YAML does not resolve) is
    refused, showing the text as written and how to quote it.
    """
    value = _scalar(node, source, where)
    assert isinstance(node, yaml.ScalarNode)  # _scalar checked
    if node.tag != _STR_TAG or not isinstance(value, str):
        written = node.value
        if written == "":
            problem = 'must be a string; an empty value is null to YAML; write "" for an empty string'
        else:
            quoted = json.dumps(written, ensure_ascii=False)
            problem = f"must be a string: {written} as written is {_reads_as(value)} to YAML; quote it ({quoted})"
        raise RosterError(source, problem, line=_line(node), field=where)
    bad = _UNPASSABLE.search(value)
    if bad:
        what = "a NUL byte" if bad.group() == "\0" else f"the lone surrogate U+{ord(bad.group()):04X}"
        raise RosterError(
            source, f"contains {what}, which cannot be passed to a program; remove it", line=_line(node), field=where
        )
    return value


def _string_list(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise RosterError(source, "must be a list of strings", line=_line(node), field=where)
    return tuple(_string(item, source, f"{where}[{index}]") for index, item in enumerate(node.value))


def _cwd(node: yaml.Node, source: str, where: str) -> str:
    """``~``, ``~/path`` or an absolute path: one meaning on every backend and machine."""
    cwd = _string(node, source, where)
    problem = ""
    if not cwd:
        problem = "must not be empty; leave it out for the home directory"
    elif cwd.startswith("~") and cwd != "~" and not cwd.startswith("~/"):
        problem = f"{cwd!r}: only ~ and ~/... expand (to your home directory); write the absolute path"
    elif not cwd.startswith(("/", "~")):
        relative = cwd.removeprefix("./")
        problem = (
            f"relative path {cwd!r}; write ~/{relative} or an absolute path "
            "(a relative cwd would depend on where the fleet is started)"
        )
    if problem:
        raise RosterError(source, problem, line=_line(node), field=where)
    return cwd


def _seconds(node: yaml.Node, source: str, where: str, *, allow_zero: bool) -> float:
    value = _scalar(node, source, where)
    bound = ">= 0" if allow_zero else "> 0"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise RosterError(source, f"must be a number {bound} (seconds), got {value!r}", line=_line(node), field=where)
    return float(value)


def _count(node: yaml.Node, source: str, where: str, *, minimum: int = 1) -> int:
    value = _scalar(node, source, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RosterError(source, f"must be a whole number >= {minimum}, got {value!r}", line=_line(node), field=where)
    return value


def _command_list(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    """A command as an argv list (never a shell string: the watcher runs it without a shell)."""
    if not isinstance(node, yaml.SequenceNode):
        raise RosterError(
            source, "must be a command as a list of strings, e.g. [notify-send, fleet]", line=_line(node), field=where
        )
    argv = _string_list(node, source, where)
    if not argv or not argv[0]:
        raise RosterError(source, "must name a command (a non-empty first word)", line=_line(node), field=where)
    return argv


def _resources(node: yaml.Node, source: str, where: str) -> Resources:
    """``{memory_high, memory_max, cpu_quota, tasks_max}``: sizes (``4G``), a percentage of
    one core (``150%``), a whole number of tasks; each optional."""
    values: dict[str, str] = {}
    for key, value_node in _mapping(node, source, where, RESOURCE_KEYS).items():
        value = _scalar(value_node, source, f"{where}.{key}")
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        problem = check_value(key, text) if isinstance(text, str) else "must be given"
        if problem:
            raise RosterError(source, f"{problem}, got {value!r}", line=_line(value_node), field=f"{where}.{key}")
        values[key] = text
    return Resources(**values)


def _notify_urls(node: yaml.Node, source: str, where: str, name: str) -> tuple[str, ...]:
    """``notify``: one Apprise URL or a list of them, each checked by Apprise's own parser
    (a typo is found at load, not when the first question goes unheard). The error names
    the agent and shows the URL masked (it may hold a password or a token)."""
    if isinstance(node, yaml.SequenceNode):
        urls, wheres = _string_list(node, source, where), [f"{where}[{i}]" for i in range(len(node.value))]
        lines = [_line(item) for item in node.value]
    else:
        urls, wheres, lines = (_string(node, source, where),), [where], [_line(node)]
    for url, at, line in zip(urls, wheres, lines, strict=True):
        problem = url_problem(url)
        if problem is not None:
            raise RosterError(source, f"agent {name!r}: notify URL {problem}", line=line, field=at)
    return urls


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


def _parse_agent(
    node: yaml.Node, index: int, source: str, lines: dict[str, int], defaults: Resources = NO_LIMITS
) -> Agent:
    where = f"agents[{index}]"
    fields = _mapping(node, source, where, AGENT_KEYS)
    lines[where] = _line(node)
    lines.update({f"{where}.{key}": _line(value) for key, value in fields.items()})
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
            env[key] = _string(value_node, source, f"{where}.env.{key}")
    return Agent(
        name=name,
        runtime=runtime,
        command=command,
        cwd=_cwd(fields["cwd"], source, f"{where}.cwd") if "cwd" in fields else None,
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
        on_state_change=_command_list(fields["on_state_change"], source, f"{where}.on_state_change")
        if "on_state_change" in fields
        else (),
        notify=_notify_urls(fields["notify"], source, f"{where}.notify", name) if "notify" in fields else (),
        log_max_bytes=_count(fields["log_max_bytes"], source, f"{where}.log_max_bytes", minimum=MIN_LOG_MAX_BYTES)
        if "log_max_bytes" in fields
        else DEFAULT_LOG_MAX_BYTES,
        log_keep=_count(fields["log_keep"], source, f"{where}.log_keep") if "log_keep" in fields else DEFAULT_LOG_KEEP,
        host=_string(fields["host"], source, f"{where}.host") if "host" in fields else LOCAL,
        resources=(
            _resources(fields["resources"], source, f"{where}.resources") if "resources" in fields else NO_LIMITS
        ).over(defaults),
        resume=_resume(fields["resume"], runtime, source, f"{where}.resume") if "resume" in fields else None,
        worktree=parse_worktree(fields["worktree"], source, f"{where}.worktree") if "worktree" in fields else None,
    )


def _resume(node: yaml.Node, runtime: str, source: str, where: str) -> bool:
    """``resume``: true or false; true only for a runtime that can resume a conversation."""
    value = _scalar(node, source, where)
    if not isinstance(value, bool):
        raise RosterError(source, f"must be true or false, got {value!r}", line=_line(node), field=where)
    if value and runtime not in RESUMABLE:
        raise RosterError(
            source,
            f"runtime {runtime!r} cannot resume a conversation (only {', '.join(RESUMABLE)} can); "
            "remove `resume: true`",
            line=_line(node),
            field=where,
        )
    return value


def parse_roster(text: str, source: str = "<roster>") -> Roster:
    """Validate roster YAML text; ``RosterError`` (file, line, field) on any problem."""
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
    hosts = _parse_hosts(top["hosts"], source) if "hosts" in top else {}
    defaults = _resources(top["resources"], source, "resources") if "resources" in top else NO_LIMITS
    ceiling = _resources(top["fleet_resources"], source, "fleet_resources") if "fleet_resources" in top else NO_LIMITS
    agents: list[Agent] = []
    lines: dict[str, int] = {key: _line(top[key]) for key in ("resources", "fleet_resources") if key in top}
    agents_node = top.get("agents")
    if agents_node is not None and not (
        isinstance(agents_node, yaml.ScalarNode) and _scalar(agents_node, source, "agents") is None
    ):
        if not isinstance(agents_node, yaml.SequenceNode):
            raise RosterError(source, "must be a list of agents", line=_line(agents_node), field="agents")
        seen: dict[str, int] = {}
        for index, item in enumerate(agents_node.value):
            agent = _parse_agent(item, index, source, lines, defaults)
            if agent.name in seen:
                raise RosterError(
                    source,
                    f"duplicate agent name {agent.name!r} (first at line {seen[agent.name]}); names must be unique",
                    line=_line(item),
                    field=f"agents[{index}].name",
                )
            seen[agent.name] = _line(item)
            if agent.host != LOCAL and agent.host not in hosts:
                known = [LOCAL, *hosts]
                raise RosterError(
                    source,
                    f"unknown host {agent.host!r}{_did_you_mean(agent.host, known)} "
                    f"(known: {', '.join(known)}; add it under hosts:)",
                    line=lines[f"agents[{index}].host"],
                    field=f"agents[{index}].host",
                )
            agents.append(agent)
    return Roster(
        version=version,
        transport=transport,
        agents=tuple(agents),
        source=source,
        lines=lines,
        hosts=hosts,
        fleet_resources=ceiling,
    )


def _parse_hosts(node: yaml.Node, source: str) -> dict[str, Host]:
    """``hosts:``: name -> SSH target string, or a mapping with ``ssh`` and optional
    ``identity_file`` and ``backend``. ``local`` is implicit and cannot be redefined."""
    if isinstance(node, yaml.ScalarNode) and _scalar(node, source, "hosts") is None:
        return {}
    hosts: dict[str, Host] = {}
    for name, value in _mapping(node, source, "hosts", None).items():
        where = f"hosts.{name}"
        line = _line(value)
        if name == LOCAL:
            raise RosterError(source, "'local' is this machine, always present; remove it", line=line, field=where)
        if not HOST_NAME_PATTERN.fullmatch(name):
            raise RosterError(
                source,
                f"invalid host name {name!r}: use 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit",
                line=line,
                field=where,
            )
        identity_file: str | None = None
        backend = "auto"
        if isinstance(value, yaml.MappingNode):
            fields = _mapping(value, source, where, HOST_KEYS)
            if "ssh" not in fields:
                raise RosterError(source, "missing required key 'ssh' (user@address[:port])", line=line, field=where)
            target_node = fields["ssh"]
            target_where = f"{where}.ssh"
            if "identity_file" in fields:
                identity_file = _string(fields["identity_file"], source, f"{where}.identity_file")
                if not identity_file:
                    raise RosterError(
                        source, "must not be empty", line=_line(fields["identity_file"]), field=f"{where}.identity_file"
                    )
            if "backend" in fields:
                backend = _string(fields["backend"], source, f"{where}.backend")
                if backend not in HOST_BACKENDS:
                    raise RosterError(
                        source,
                        f"unknown backend {backend!r}{_did_you_mean(backend, HOST_BACKENDS)} "
                        f"(known: {', '.join(HOST_BACKENDS)})",
                        line=_line(fields["backend"]),
                        field=f"{where}.backend",
                    )
        else:
            target_node, target_where = value, where
        try:
            target = parse_target(_string(target_node, source, target_where))
        except ValueError as exc:
            raise RosterError(source, str(exc), line=_line(target_node), field=target_where) from None
        hosts[name] = Host(name=name, ssh=target, identity_file=identity_file, backend=backend)
    return hosts


# Far beyond any real roster; a bigger file is a mistake (or /dev/zero) and is not read.
MAX_ROSTER_BYTES: Final = 16 * 1024 * 1024


def missing_cwd_warnings(roster: Roster, user_home: Path | None = None) -> list[str]:
    """One warning line per agent whose ``cwd`` is not an existing directory on this machine.

    Not an error: a roster may be written for another machine. ``start`` fails for such an
    agent, naming it and the path. ``user_home`` defaults to this user's home directory.
    """
    home = Path.home() if user_home is None else user_home
    warnings: list[str] = []
    for index, agent in enumerate(roster.agents):
        if agent.cwd is None or agent.worktree is not None:  # start makes the worktree
            continue
        path = roster.cwd_of(agent, home)
        where = f"agents[{index}].cwd"
        line = roster.lines.get(where)
        prefix = f"warning: {roster.source}:{line}: {where}: " if line else f"warning: {roster.source}: {where}: "
        try:
            info = os.stat(path)
        except FileNotFoundError:
            warnings.append(f"{prefix}{path} does not exist on this machine; start will fail until it does")
            continue
        except OSError as exc:
            warnings.append(f"{prefix}{path} cannot be checked ({exc.strerror}); start may fail")
            continue
        if not stat.S_ISDIR(info.st_mode):
            warnings.append(f"{prefix}{path} is not a directory; start will fail until it is")
    return warnings


def _read(path: Path) -> str:
    """The roster's text. Follows a symlinked roster; a FIFO, device or directory there is a
    one-line error, never a hang (opened without blocking and checked to be a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FleetError(f"roster not found: {path}; create one with `inv roster.init` or pass --roster") from None
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FleetError(f"roster {path} is not a regular file ({kind_of(info.st_mode)})")
        if info.st_size > MAX_ROSTER_BYTES:
            raise FleetError(f"roster {path} is too large ({info.st_size} bytes; the limit is {MAX_ROSTER_BYTES})")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ROSTER_BYTES:
                raise FleetError(f"roster {path} is too large (over {MAX_ROSTER_BYTES} bytes)")
    except OSError as exc:
        raise FleetError(f"cannot read roster {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RosterError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_roster(path: Path) -> Roster:
    """Read and validate the roster at ``path``."""
    return parse_roster(_read(path), str(path))


# --------------------------------------------------------------------------- editing
#
# An edit changes only the text of the item it adds or removes. Each item's extent comes from
# the scanner (node marks and tokens), never from guessing by lines: a block scalar's content
# may have lines that start with '#', and only the scanner can tell those from comments. The
# pure-Python loader is used here because its marks count characters of the str we splice.
# After splicing, the result is parsed again and must hold exactly the expected agents (the
# others identical, in order); anything else (an alias into the removed item, a layout this
# code does not handle) refuses the edit and leaves the file alone.

_EDIT_LOADER: Final = yaml.SafeLoader


def _dump_items(agents: Sequence[Agent], indent: int) -> str:
    text = yaml.safe_dump([a.to_dict() for a in agents], sort_keys=False, default_flow_style=False, allow_unicode=True)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def _dump_flow(agent: Agent) -> str:
    return yaml.safe_dump(agent.to_dict(), sort_keys=False, default_flow_style=True, width=1 << 30).strip()


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the line holding ``index`` (``index`` itself when it starts a line)."""
    if index == 0 or text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _insert_lines(text: str, at: int, lines: str) -> str:
    """Insert whole ``lines`` at ``at`` (a line start or the end of the text)."""
    if at == len(text) and text and not text.endswith("\n"):
        return _terminated(text) + lines
    return text[:at] + lines + text[at:]


def _terminated(text: str) -> str:
    """``text`` with a final line break, meaning the same.

    A block scalar that ends the file without one has no trailing break (``|`` and ``|+``
    then keep nothing); the added break would become part of it, so its chomping indicator
    becomes ``-`` (strip), which reads the same value with the break in place.
    """
    for scalar in _block_scalars(text):
        if scalar.end_mark.index == len(text):
            start = scalar.start_mark.index
            header = re.match(r"[|>][-+0-9]*", text[start:])
            assert header is not None
            indent = re.sub(r"[-+]", "", header.group()[1:])
            text = f"{text[:start]}{scalar.style}{indent}-{text[start + header.end() :]}"
            break
    return text + "\n"


def _block_scalars(text: str) -> Iterator[yaml.ScalarNode]:
    """Every ``|`` or ``>`` scalar of the document."""
    root = yaml.compose(text, Loader=_EDIT_LOADER)
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            yield node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)


def _keeps_blank_lines(text: str, index: int) -> bool:
    """Whether a keep-chomped (``|+``/``>+``) block scalar ends at ``index``: blank lines
    placed there would become part of its value."""
    for scalar in _block_scalars(text):
        if scalar.end_mark.index == index:
            header = re.match(r"[|>][-+0-9]*", text[scalar.start_mark.index :])
            return header is not None and "+" in header.group()
    return False


def _content_end(node: yaml.Node) -> int:
    """Where the node's last character of content ends.

    A block collection's own end mark lies at the next token, after any comments that follow
    it, so it is not used: the end is that of its last scalar or flow collection. Scalar and
    flow marks are exact; a block scalar's end includes its trailing line break(s). Empty
    (zero-width) scalars carry no position and count as -1.
    """
    if isinstance(node, yaml.ScalarNode):
        return node.end_mark.index if node.end_mark.index > node.start_mark.index else -1
    if isinstance(node, yaml.CollectionNode) and node.flow_style:
        return int(node.end_mark.index)
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    else:
        children = [part for pair in node.value for part in pair]
    return max((_content_end(child) for child in children), default=-1)


def _tokens(text: str, kind: type[yaml.Token]) -> list[int]:
    return [token.start_mark.index for token in yaml.scan(text, Loader=_EDIT_LOADER) if isinstance(token, kind)]


def _agents_nodes(text: str) -> tuple[yaml.MappingNode, yaml.Node | None, yaml.Node | None]:
    root = yaml.compose(text, Loader=_EDIT_LOADER)
    assert isinstance(root, yaml.MappingNode)  # the text validated already
    for key, value in root.value:
        if key.value == "agents":
            return root, key, value
    return root, None, None


def _add_text(text: str, agent: Agent) -> str:
    root, key, seq = _agents_nodes(text)
    if key is None or seq is None:  # no `agents` key at all
        if root.flow_style:
            close = root.end_mark.index - 1
            return f"{text[:close]}, agents: [{_dump_flow(agent)}]{text[close:]}"
        return _insert_lines(text, len(text), "agents:\n" + _dump_items([agent], 2))
    if isinstance(seq, yaml.SequenceNode) and seq.value and not seq.flow_style:
        dash = _line_start(text, seq.start_mark.index)
        column = seq.start_mark.index - dash
        return _insert_lines(text, _line_end(text, _content_end(seq.value[-1])), _dump_items([agent], column))
    if isinstance(seq, yaml.SequenceNode) and seq.value:  # a flow list with items
        at = seq.value[-1].end_mark.index
        return f"{text[:at]}, {_dump_flow(agent)}{text[at:]}"
    # An empty flow list or a null: becomes a block list under the key, unless in flow context.
    start, end = seq.start_mark.index, seq.end_mark.index
    if root.flow_style:
        return f"{text[:start]}[{_dump_flow(agent)}]{text[end:]}"
    if isinstance(seq, yaml.SequenceNode) and text[start + 1 : end - 1].strip():  # `[ # comment ... ]`
        return f"{text[: start + 1]}{_dump_flow(agent)}{text[start + 1 :]}"
    if end > start and "\n" not in text[start:end]:
        text = text[:start] + text[end:]  # drop `[]`, `~` or `null`; a comment after it stays
    key_column = key.start_mark.column
    return _insert_lines(text, _line_end(text, key.end_mark.index), _dump_items([agent], key_column + 2))


def _remove_text(text: str, index: int) -> str:
    _root, key, seq = _agents_nodes(text)
    assert key is not None  # the agent exists, so does its list
    assert isinstance(seq, yaml.SequenceNode)
    item = seq.value[index]
    if seq.flow_style:
        # Delete the item and one comma next to it (the following one, else the preceding
        # one); comments and line breaks around them stay.
        commas = _tokens(text, yaml.FlowEntryToken)
        after_limit = seq.value[index + 1].start_mark.index if index + 1 < len(seq.value) else seq.end_mark.index
        following = [c for c in commas if item.end_mark.index <= c < after_limit]
        before_limit = seq.value[index - 1].end_mark.index if index else seq.start_mark.index
        preceding = [c for c in commas if before_limit <= c < item.start_mark.index]
        comma = following[0] if following else (preceding[-1] if preceding else None)
        cuts = [(item.start_mark.index, item.end_mark.index)]
        if comma is not None:
            cuts.append((comma, comma + 1))
        for start, end in sorted(cuts, reverse=True):
            text = text[:start] + text[end:]
        return text
    # Block list: from the start of the item's `-` line to the end of the line where its
    # content ends (a comment on that line goes with it; comments on later lines stay).
    dash = max(i for i in _tokens(text, yaml.BlockEntryToken) if i < item.start_mark.index)
    start, end = _line_start(text, dash), _line_end(text, _content_end(item))
    if _keeps_blank_lines(text, start):
        # The blank lines after the item would join the keep-chomped scalar above it.
        while end < len(text) and not text[end : _line_end(text, end + 1)].strip():
            end = _line_end(text, end + 1)
    text = text[:start] + text[end:]
    if len(seq.value) == 1:  # the list is now empty: say so rather than leaving a null
        colon = text.index(":", key.end_mark.index) + 1
        text = f"{text[:colon]} []{text[colon:]}"
    return text


def _edit(path: Path, change: str, splice: Callable[[str, Roster], tuple[str, tuple[Agent, ...]]]) -> Roster:
    target = _edit_target(path)
    with edit_lock(target):
        text = _read(target)
        new_text, expected = splice(text, parse_roster(text, str(path)))
        try:
            roster = parse_roster(new_text, str(path))
        except RosterError:
            roster = None
        if roster is None or roster.agents != expected:
            raise FleetError(
                f"cannot {change} in {path} without changing another agent (it shares an anchor or uses a layout "
                "this tool does not edit); edit it by hand; the roster was left unchanged"
            )
        try:
            atomic_write_text(target, new_text)
        except OSError as exc:
            raise FleetError(
                f"cannot {change} in {path}: writing {exc.filename or target} failed: {exc.strerror}; "
                "the roster was left unchanged"
            ) from None
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

    def splice(text: str, roster: Roster) -> tuple[str, tuple[Agent, ...]]:
        if agent.name in roster.names():
            raise FleetError(f"agent {agent.name!r} already exists in {path}; pick another name or remove it first")
        return _add_text(text, checked), (*roster.agents, checked)

    return _edit(path, f"add agent {agent.name!r}", splice)


def remove_agent(path: Path, name: str) -> Roster:
    """Remove the agent called ``name``; ``FleetError`` if it is not in the roster."""

    def splice(text: str, roster: Roster) -> tuple[str, tuple[Agent, ...]]:
        roster.get(name)  # raises with the known names
        remaining = tuple(a for a in roster.agents if a.name != name)
        return _remove_text(text, roster.names().index(name)), remaining

    return _edit(path, f"remove agent {name!r}", splice)


def _edit_target(path: Path) -> Path:
    """The file an edit writes: a symlinked roster's target (the link stays a link, and the
    edit lock sits beside the target, where every editor of that file meets)."""
    return Path(os.path.realpath(path))


def init_roster(path: Path, *, force: bool = False) -> Roster:
    """Write the starter roster; refuses to replace an existing file unless ``force``.

    A symlinked roster is written through to its target, like every edit."""
    target = _edit_target(path)
    with edit_lock(target):
        if os.path.lexists(target) and not force:
            raise FleetError(f"roster already exists: {path}; pass --force to overwrite it")
        try:
            atomic_write_text(target, STARTER_ROSTER)
        except OSError as exc:
            raise FleetError(
                f"cannot write roster {path}: writing {exc.filename or target} failed: {exc.strerror}; "
                "nothing was changed"
            ) from None
    return parse_roster(STARTER_ROSTER, str(path))
