"""Validation: roster YAML text in, a :class:`Roster` out, or one :class:`RosterError`
naming the file, the line and the field of the first problem.

Everything a unit file, a tmux target or an argv is later built from is checked here, so a
name like ``a;rm -rf`` never gets further than this module. An agent's keys are read by one
loop over :data:`AGENT_READERS` (key -> reader), in that order; a key an entry leaves out
keeps the :class:`Agent` field's default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, fields
from functools import partial
from typing import Any, Final, NamedTuple

import yaml

from fleetlib.errors import FleetError, RosterError
from fleetlib.hosts import HOST_BACKENDS, HOST_KEYS, HOST_NAME_PATTERN, LOCAL, Host, parse_target
from fleetlib.resources import NO_LIMITS, Resources
from fleetlib.roster.model import (
    AGENT_KEYS,
    MIN_LOG_MAX_BYTES,
    ROSTER_VERSION,
    TOP_LEVEL_KEYS,
    TRANSPORTS,
    Agent,
    Roster,
)
from fleetlib.roster.scalars import compose, did_you_mean, line_of, mapping, scalar, string, string_list
from fleetlib.roster.values import (
    agent_name,
    command_list,
    command_words,
    count,
    cwd_path,
    environment,
    notify_urls,
    resource_limits,
    resume_flag,
    runtime_name,
    seconds,
    worktree_value,
)


class At(NamedTuple):
    """Where a reader is: the file, the field path (``agents[2].cwd``), the keys the agent's
    entry gives and the values read before this one (in :data:`AGENT_READERS` order). A
    named tuple, not a dataclass: one is made per key of every agent (600 for 200 agents of
    three keys) in half a frozen dataclass's time, and its class costs less to import."""

    source: str
    where: str
    given: Collection[str]
    read: Mapping[str, Any]


Reader = Callable[[yaml.Node, At], Any]


def _plain(read: Callable[[yaml.Node, str, str], Any]) -> Reader:
    """A reader that needs only the node, the file and the field path."""
    return lambda node, at: read(node, at.source, at.where)


# Agent key -> its reader, in reading order: a reader may use the values read before it
# (``notify`` names the agent, ``resume`` checks the runtime), and the first problem in
# this order is the one reported. Adding a key: a field on Agent (with its default) and a
# line here.
AGENT_READERS: Final[Mapping[str, Reader]] = {
    "name": _plain(agent_name),
    "runtime": lambda node, at: runtime_name(node, at.source, at.where, has_command="command" in at.given),
    "command": _plain(command_words),
    "env": _plain(environment),
    "cwd": _plain(cwd_path),
    "args": _plain(string_list),
    "description": _plain(string),
    "stop_timeout": _plain(partial(seconds, allow_zero=False)),
    "start_grace": _plain(partial(seconds, allow_zero=True)),
    "max_failures": _plain(count),
    "failure_window": _plain(partial(seconds, allow_zero=False)),
    "on_state_change": _plain(command_list),
    "notify": lambda node, at: notify_urls(node, at.source, at.where, at.read["name"]),
    "log_max_bytes": _plain(partial(count, minimum=MIN_LOG_MAX_BYTES)),
    "log_keep": _plain(count),
    "host": _plain(string),
    "resources": _plain(resource_limits),
    "resume": lambda node, at: resume_flag(node, at.read["runtime"], at.source, at.where),
    "worktree": _plain(worktree_value),
}
# The Agent fields without a default: an entry must give them.
REQUIRED_KEYS: Final = tuple(
    spec.name for spec in fields(Agent) if spec.default is MISSING and spec.default_factory is MISSING
)


def _parse_agent(node: yaml.Node, index: int, source: str, lines: dict[str, int], defaults: Resources) -> Agent:
    """The agent at ``agents[index]``; records each of its keys' lines in ``lines``."""
    where = f"agents[{index}]"
    given = mapping(node, source, where, AGENT_KEYS)
    lines[where] = line_of(node)
    lines.update({f"{where}.{key}": line_of(value) for key, value in given.items()})
    for required in REQUIRED_KEYS:
        if required not in given:
            raise RosterError(source, f"missing required key {required!r}", line=line_of(node), field=where)
    read: dict[str, Any] = {}
    for key, reader in AGENT_READERS.items():
        if key in given:
            read[key] = reader(given[key], At(source, f"{where}.{key}", given, read))
    # The roster's top-level ``resources`` fill in every limit the agent leaves out.
    read["resources"] = read.get("resources", NO_LIMITS).over(defaults)
    return Agent(**read)


def parse_roster(text: str, source: str = "<roster>") -> Roster:
    """Validate roster YAML text; ``RosterError`` (file, line, field) on any problem."""
    root = compose(text, source)
    if root is None:
        raise RosterError(source, "the roster is empty; it needs version, transport and agents (see `inv roster.init`)")
    if not isinstance(root, yaml.MappingNode):
        raise RosterError(source, "the roster must be a mapping with version, transport and agents", line=line_of(root))
    top = mapping(root, source, "", TOP_LEVEL_KEYS)
    if "version" not in top:
        raise RosterError(source, f"missing required key 'version'; add `version: {ROSTER_VERSION}`", line=1)
    version = scalar(top["version"], source, "version")
    if version != ROSTER_VERSION or isinstance(version, bool):
        raise RosterError(
            source,
            f"unsupported version {version!r}; this tool reads version {ROSTER_VERSION}",
            line=line_of(top["version"]),
            field="version",
        )
    transport = "tmux"
    if "transport" in top:
        transport = string(top["transport"], source, "transport")
        if transport not in TRANSPORTS:
            raise RosterError(
                source,
                f"unsupported transport {transport!r}; use 'tmux'",
                line=line_of(top["transport"]),
                field="transport",
            )
    hosts = _parse_hosts(top["hosts"], source) if "hosts" in top else {}
    defaults = resource_limits(top["resources"], source, "resources") if "resources" in top else NO_LIMITS
    ceiling = (
        resource_limits(top["fleet_resources"], source, "fleet_resources") if "fleet_resources" in top else NO_LIMITS
    )
    agents: list[Agent] = []
    lines: dict[str, int] = {key: line_of(top[key]) for key in ("resources", "fleet_resources") if key in top}
    agents_node = top.get("agents")
    if agents_node is not None and not (
        isinstance(agents_node, yaml.ScalarNode) and scalar(agents_node, source, "agents") is None
    ):
        if not isinstance(agents_node, yaml.SequenceNode):
            raise RosterError(source, "must be a list of agents", line=line_of(agents_node), field="agents")
        seen: dict[str, int] = {}
        for index, item in enumerate(agents_node.value):
            agent = _parse_agent(item, index, source, lines, defaults)
            if agent.name in seen:
                raise RosterError(
                    source,
                    f"duplicate agent name {agent.name!r} (first at line {seen[agent.name]}); names must be unique",
                    line=line_of(item),
                    field=f"agents[{index}].name",
                )
            seen[agent.name] = line_of(item)
            if agent.host != LOCAL and agent.host not in hosts:
                known = [LOCAL, *hosts]
                raise RosterError(
                    source,
                    f"unknown host {agent.host!r}{did_you_mean(agent.host, known)} "
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
    if isinstance(node, yaml.ScalarNode) and scalar(node, source, "hosts") is None:
        return {}
    hosts: dict[str, Host] = {}
    for name, value in mapping(node, source, "hosts", None).items():
        where = f"hosts.{name}"
        line = line_of(value)
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
            fields = mapping(value, source, where, HOST_KEYS)
            if "ssh" not in fields:
                raise RosterError(source, "missing required key 'ssh' (user@address[:port])", line=line, field=where)
            target_node = fields["ssh"]
            target_where = f"{where}.ssh"
            if "identity_file" in fields:
                identity_file = string(fields["identity_file"], source, f"{where}.identity_file")
                if not identity_file:
                    raise RosterError(
                        source,
                        "must not be empty",
                        line=line_of(fields["identity_file"]),
                        field=f"{where}.identity_file",
                    )
            if "backend" in fields:
                backend = string(fields["backend"], source, f"{where}.backend")
                if backend not in HOST_BACKENDS:
                    raise RosterError(
                        source,
                        f"unknown backend {backend!r}{did_you_mean(backend, HOST_BACKENDS)} "
                        f"(known: {', '.join(HOST_BACKENDS)})",
                        line=line_of(fields["backend"]),
                        field=f"{where}.backend",
                    )
        else:
            target_node, target_where = value, where
        try:
            target = parse_target(string(target_node, source, target_where))
        except ValueError as exc:
            raise RosterError(source, str(exc), line=line_of(target_node), field=target_where) from None
        hosts[name] = Host(name=name, ssh=target, identity_file=identity_file, backend=backend)
    return hosts


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
