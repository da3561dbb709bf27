"""The roster's value rules: one reader per kind of value, each taking a YAML node, the
file and the field path, and returning the value or raising a :class:`RosterError` that
names all three and says how to fix it.

The rules exist because these values reach unit files, tmux targets, argv and paths: a
name is ``[a-z0-9][a-z0-9_-]{0,39}``, a cwd means the same on every machine, a command is
an argv list (never a shell string), a number is finite and in range.
"""

from __future__ import annotations

import math
import shlex

import yaml

from fleetlib.defaults import MAX_SECONDS
from fleetlib.errors import RosterError
from fleetlib.notify import url_problem
from fleetlib.resources import RESOURCE_KEYS, Resources, check_value
from fleetlib.roster.model import ENV_NAME_PATTERN, NAME_PATTERN, REF_PATTERN, WORKTREE_KEYS, Worktree
from fleetlib.roster.scalars import did_you_mean, line_of, mapping, scalar, string, string_list
from fleetlib.runtimes import RUNTIMES, known_runtime_names
from fleetlib.sessions import RESUMABLE


def agent_name(node: yaml.Node, source: str, where: str) -> str:
    """A name that can become a systemd instance name and a tmux window target."""
    name = string(node, source, where)
    if not NAME_PATTERN.fullmatch(name):
        raise RosterError(
            source,
            f"invalid agent name {name!r}: use 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit",
            line=line_of(node),
            field=where,
        )
    return name


def runtime_name(node: yaml.Node, source: str, where: str, *, has_command: bool) -> str:
    """A known runtime, or any name when the agent gives its own ``command``."""
    runtime = string(node, source, where)
    if not has_command and runtime not in RUNTIMES:
        raise RosterError(
            source,
            f"unknown runtime {runtime!r}{did_you_mean(runtime, known_runtime_names())} "
            f"(known: {', '.join(known_runtime_names())}; or give a 'command')",
            line=line_of(node),
            field=where,
        )
    return runtime


def command_words(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    """``command``: a list of strings, or one string split like a shell would (no shell runs it)."""
    if isinstance(node, yaml.SequenceNode):
        command = string_list(node, source, where)
    else:
        try:
            command = tuple(shlex.split(string(node, source, where)))
        except ValueError as exc:
            raise RosterError(source, f"cannot split command: {exc}", line=line_of(node), field=where) from None
    if not command:
        raise RosterError(source, "must not be empty", line=line_of(node), field=where)
    return command


def environment(node: yaml.Node, source: str, where: str) -> dict[str, str]:
    """``env``: variable name -> string value; names a shell and ``systemd`` accept."""
    env: dict[str, str] = {}
    for key, value_node in mapping(node, source, where, None).items():
        if not ENV_NAME_PATTERN.fullmatch(key):
            raise RosterError(
                source, f"invalid environment variable name {key!r}", line=line_of(value_node), field=where
            )
        env[key] = string(value_node, source, f"{where}.{key}")
    return env


def cwd_path(node: yaml.Node, source: str, where: str) -> str:
    """``~``, ``~/path`` or an absolute path: one meaning on every backend and machine."""
    cwd = string(node, source, where)
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
        raise RosterError(source, problem, line=line_of(node), field=where)
    return cwd


def seconds(node: yaml.Node, source: str, where: str, *, allow_zero: bool) -> float:
    value = scalar(node, source, where)
    bound = ">= 0" if allow_zero else "> 0"
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise RosterError(source, f"must be a number {bound} (seconds), got {value!r}", line=line_of(node), field=where)
    if value > MAX_SECONDS:  # like every flag: a wait that long never ends, a timer overflows
        raise RosterError(
            source, f"must be at most {MAX_SECONDS} seconds (a week), got {value!r}", line=line_of(node), field=where
        )
    return float(value)


def count(node: yaml.Node, source: str, where: str, *, minimum: int = 1) -> int:
    value = scalar(node, source, where)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RosterError(
            source, f"must be a whole number >= {minimum}, got {value!r}", line=line_of(node), field=where
        )
    return value


def command_list(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    """A command as an argv list (never a shell string: the watcher runs it without a shell)."""
    if not isinstance(node, yaml.SequenceNode):
        raise RosterError(
            source, "must be a command as a list of strings, e.g. [notify-send, fleet]", line=line_of(node), field=where
        )
    argv = string_list(node, source, where)
    if not argv or not argv[0]:
        raise RosterError(source, "must name a command (a non-empty first word)", line=line_of(node), field=where)
    return argv


def resource_limits(node: yaml.Node, source: str, where: str) -> Resources:
    """``{memory_high, memory_max, cpu_quota, tasks_max}``: sizes (``4G``), a percentage of
    one core (``150%``), a whole number of tasks; each optional."""
    values: dict[str, str] = {}
    for key, value_node in mapping(node, source, where, RESOURCE_KEYS).items():
        value = scalar(value_node, source, f"{where}.{key}")
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        problem = check_value(key, text) if isinstance(text, str) else "must be given"
        if problem:
            raise RosterError(source, f"{problem}, got {value!r}", line=line_of(value_node), field=f"{where}.{key}")
        values[key] = text
    return Resources(**values)


def notify_urls(node: yaml.Node, source: str, where: str, name: str) -> tuple[str, ...]:
    """``notify``: one Apprise URL or a list of them, each checked by Apprise's own parser
    (a typo is found at load, not when the first question goes unheard). The error names
    the agent and shows the URL masked (it may hold a password or a token)."""
    if isinstance(node, yaml.SequenceNode):
        urls, wheres = string_list(node, source, where), [f"{where}[{i}]" for i in range(len(node.value))]
        lines = [line_of(item) for item in node.value]
    else:
        urls, wheres, lines = (string(node, source, where),), [where], [line_of(node)]
    for url, at, line in zip(urls, wheres, lines, strict=True):
        problem = url_problem(url)
        if problem is not None:
            raise RosterError(source, f"agent {name!r}: notify URL {problem}", line=line, field=at)
    return urls


def resume_flag(node: yaml.Node, runtime: str, source: str, where: str) -> bool:
    """``resume``: true or false; true only for a runtime that can resume a conversation."""
    value = scalar(node, source, where)
    if not isinstance(value, bool):
        raise RosterError(source, f"must be true or false, got {value!r}", line=line_of(node), field=where)
    if value and runtime not in RESUMABLE:
        raise RosterError(
            source,
            f"runtime {runtime!r} cannot resume a conversation (only {', '.join(RESUMABLE)} can); "
            "remove `resume: true`",
            line=line_of(node),
            field=where,
        )
    return value


def worktree_value(node: yaml.Node, source: str, where: str) -> Worktree | None:
    """``worktree:``: ``true`` (short form), ``false`` (none) or a mapping of
    :data:`~fleetlib.roster.model.WORKTREE_KEYS`; :class:`RosterError` with file:line otherwise."""
    if isinstance(node, yaml.ScalarNode):
        value = scalar(node, source, where)
        if isinstance(value, bool):
            return Worktree() if value else None
        raise RosterError(
            source,
            f"must be true, false or a mapping of {', '.join(WORKTREE_KEYS)}, got {value!r}",
            line=line_of(node),
            field=where,
        )
    fields = mapping(node, source, where, WORKTREE_KEYS)
    refs: dict[str, str] = {}
    for key in ("branch", "base"):
        if key in fields:
            ref = string(fields[key], source, f"{where}.{key}")
            if not REF_PATTERN.fullmatch(ref) or ".." in ref or "//" in ref or ref.endswith(("/", ".", ".lock")):
                raise RosterError(
                    source,
                    f"invalid branch name {ref!r}: use letters, digits, '.', '_', '-' and '/' (e.g. agents/coder1)",
                    line=line_of(fields[key]),
                    field=f"{where}.{key}",
                )
            refs[key] = ref
    return Worktree(
        repo=cwd_path(fields["repo"], source, f"{where}.repo") if "repo" in fields else None,
        branch=refs.get("branch"),
        base=refs.get("base"),
        path=cwd_path(fields["path"], source, f"{where}.path") if "path" in fields else None,
        setup=command_list(fields["setup"], source, f"{where}.setup") if "setup" in fields else (),
    )
