"""What a roster is: the :class:`Agent` and :class:`Roster` values, their defaults and the
starter text.

Everything here is plain data built by :mod:`fleetlib.roster.validate`; a value of these
types has passed validation (names, paths, commands), so code that builds unit files or
tmux targets from it needs no further checks. Importing this module does not import
PyYAML (only :meth:`Roster.host_text` needs it, on call).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from fleetlib.errors import FleetError
from fleetlib.hosts import LOCAL, Host
from fleetlib.paths import resolve_home
from fleetlib.resources import NO_LIMITS, Resources
from fleetlib.runtimes import RUNTIMES
from fleetlib.sessions import RESUMABLE, marker_word

ROSTER_VERSION: Final = 1
TRANSPORTS: Final = ("tmux",)
# Names become systemd instance names and tmux window targets: nothing else may pass.
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ENV_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ``resources``: every agent's default limits; ``fleet_resources``: all agents together.
TOP_LEVEL_KEYS: Final = ("version", "transport", "hosts", "resources", "fleet_resources", "agents")
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
# Fleet roster (format version 1). Edit by hand or with `fleet roster.add` / `fleet roster.remove`;
# run `fleet install` afterwards so the systemd units match.
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


# --------------------------------------------------------------------------- worktree:

WORKTREE_KEYS: Final = ("repo", "branch", "base", "path", "setup")
DEFAULT_BRANCH_PREFIX: Final = "fleet/"
# A branch or base name as the roster may give it: git's own rules (check-ref-format) are
# wider, but these names also reach argv, so nothing that could read as an option or glob.
REF_PATTERN: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class Worktree:
    """An agent's ``worktree:`` as written (None: the default) plus the fleet home the
    default path is under (set by :func:`bind`; None: the home from the environment)."""

    repo: str | None = None
    branch: str | None = None
    base: str | None = None
    path: str | None = None
    setup: tuple[str, ...] = ()
    home: str | None = field(default=None, compare=False)

    def to_value(self) -> Any:
        """The roster value: ``true`` for the short form, else the keys that were given."""
        data: dict[str, Any] = {}
        for key in ("repo", "branch", "base", "path"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.setup:
            data["setup"] = list(self.setup)
        return data or True

    def branch_of(self, name: str) -> str:
        return self.branch or f"{DEFAULT_BRANCH_PREFIX}{name}"

    def checkout(self, roster: Roster, agent: Agent, user_home: Path) -> str:
        """The worktree's absolute path: ``path`` expanded as a ``cwd`` is, else
        ``<fleet home>/fleet/worktrees/<name>``."""
        if self.path is not None:
            return roster.cwd_of(replace(agent, cwd=self.path, worktree=None), user_home)
        home = Path(self.home) if self.home is not None else resolve_home()
        return str(home / "fleet" / "worktrees" / agent.name)

    def repo_dir(self, roster: Roster, agent: Agent, user_home: Path) -> str:
        """The repository as a directory: ``repo`` expanded, else the agent's ``cwd``."""
        cwd = self.repo if self.repo is not None else agent.cwd
        return roster.cwd_of(replace(agent, cwd=cwd, worktree=None), user_home)


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
        """The agent as roster YAML would hold it, in key order; a field only when it differs
        from its default (``name`` and ``runtime`` have none, so they are always there)."""
        data: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value != _default(spec):
                data[spec.name] = _yaml_value(value)
        return data


_NO_DEFAULT: Final = object()


def _default(spec: Field[Any]) -> object:
    """The field's default (a marker no value equals when it has none)."""
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return _NO_DEFAULT if spec.default is MISSING else spec.default


def _yaml_value(value: object) -> object:
    """``value`` as YAML holds it: lists for tuples, a plain dict for the environment."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Resources):
        return value.to_dict()
    if isinstance(value, Worktree):
        return value.to_value()
    if isinstance(value, Mapping):
        return dict(value)
    return value


# The keys an agent may have, in the order messages list them: the fields of Agent.
AGENT_KEYS: Final = tuple(spec.name for spec in fields(Agent))


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

    @functools.cached_property
    def _by_name(self) -> dict[str, Agent]:
        # Built once per roster (``agents`` is a tuple, names are unique): the engine looks
        # agents up per row, so a linear search made a 200-agent status quadratic.
        return {agent.name: agent for agent in self.agents}

    def get(self, name: str) -> Agent:
        """Return the agent called ``name``; ``FleetError`` naming the known ones otherwise."""
        agent = self._by_name.get(name)
        if agent is not None:
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
        import yaml  # noqa: PLC0415 - only this method needs it; the model's importers do not pay for YAML

        part = self.for_host(host)
        data: dict[str, Any] = {"version": self.version, "transport": self.transport}
        if self.fleet_resources:
            data["fleet_resources"] = self.fleet_resources.to_dict()
        data["agents"] = [a.to_dict() for a in part.agents]
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
