"""``roster.*``: edit and inspect the roster.

:mod:`fleetlib.roster` (and YAML with it) is imported inside each task, so listing the
tasks loads none of it.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from fleetctl import options
from fleetctl.options import JSON_HELP, PATH_HELP, fleet_paths, required, stderr_line, user_errors
from fleetctl.render import (
    print_json,
    roster_agent_lines,
    roster_change_lines,
    roster_table,
    roster_valid_line,
    roster_written_line,
)
from fleetlib.errors import FleetError

if TYPE_CHECKING:
    from fleetlib.roster import Roster

CHANGE_JSON_HELP: Final = 'Print {"operation", "roster", "agent", "agents"} as JSON instead of text.'


def warn_missing_cwds(loaded: Roster) -> None:
    """Warn (stderr, never fail: a roster may be written for another machine) about every
    ``cwd`` that is not a directory here."""
    from fleetlib.roster import missing_cwd_warnings  # noqa: PLC0415  # start-up: see the module docstring

    for line in missing_cwd_warnings(loaded):
        stderr_line(line)  # already reads "warning: file:line: field: ..."


def print_change(operation: str, verb: str, name: str | None, loaded: Roster, as_json: bool) -> None:
    """What an edit did: ``{"operation", "roster", "agent", "agents"}`` with ``--json``."""
    if as_json:
        print_json({"operation": operation, "roster": loaded.source, "agent": name, "agents": len(loaded.agents)})
        return
    if name is None:
        print(roster_written_line(loaded.source, len(loaded.agents)))
        return
    for line in roster_change_lines(verb, name, loaded.source, len(loaded.agents), options.command("fleet.install")):
        print(line)


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def roster_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the agents in the roster."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: see the module docstring
    from fleetlib.schema import agent_json  # noqa: PLC0415

    loaded = load_roster(fleet_paths(c, home, roster).roster)
    if json:
        print_json([agent_json(agent) for agent in loaded.agents])
        return
    for line in roster_table(loaded.agents):
        print(line)


@task(auto_shortflags=False, help={**PATH_HELP, "name": "Agent to show (required).", "json": JSON_HELP})
@user_errors
def roster_show(c: Context, name: str = "", home: str = "", roster: str = "", json: bool = False) -> None:
    """Show one agent of the roster."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: see the module docstring
    from fleetlib.schema import agent_json  # noqa: PLC0415

    required("--name", name)
    data: dict[str, Any] = agent_json(load_roster(fleet_paths(c, home, roster).roster).get(name))
    if json:
        print_json(data)
        return
    for line in roster_agent_lines(data):
        print(line)


@task(auto_shortflags=False, help=PATH_HELP)
@user_errors
def roster_validate(c: Context, home: str = "", roster: str = "") -> None:
    """Check the roster and report the first problem (file:line: field: problem)."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: see the module docstring

    loaded = load_roster(fleet_paths(c, home, roster).roster)
    warn_missing_cwds(loaded)
    print(roster_valid_line(loaded.source, len(loaded.agents)))


@task(
    auto_shortflags=False,
    help={
        **PATH_HELP,
        "name": "Agent name (required): 1-40 of a-z, 0-9, '_' and '-'.",
        "runtime": "Runtime (required): claude, codex, gemini, opencode, shell, or a label when --command is given.",
        "cwd": "Working directory of the agent.",
        "command": "Command line that overrides the runtime's command (split like a shell would).",
        "description": "Free-text description.",
        "json": CHANGE_JSON_HELP,
    },
)
@user_errors
def roster_add(
    c: Context,
    name: str = "",
    runtime: str = "",
    cwd: str = "",
    command: str = "",
    description: str = "",
    home: str = "",
    roster: str = "",
    json: bool = False,
) -> None:
    """Add an agent to the roster (atomic; keeps comments)."""
    from fleetlib.roster import Agent, add_agent, validate_agent  # noqa: PLC0415  # start-up: see the module docstring

    required("--name", name)
    required("--runtime", runtime)
    try:
        argv = tuple(shlex.split(command)) if command else None
    except ValueError as exc:
        raise FleetError(f"--command: cannot split {command!r}: {exc}") from None
    agent = validate_agent(Agent(name=name, runtime=runtime, command=argv, cwd=cwd or None, description=description))
    updated = add_agent(fleet_paths(c, home, roster).roster, agent)
    warn_missing_cwds(updated)
    print_change("add", "added", name, updated, json)


@task(auto_shortflags=False, help={**PATH_HELP, "name": "Agent to remove (required).", "json": CHANGE_JSON_HELP})
@user_errors
def roster_remove(c: Context, name: str = "", home: str = "", roster: str = "", json: bool = False) -> None:
    """Remove an agent from the roster (atomic; keeps comments)."""
    from fleetlib.roster import remove_agent  # noqa: PLC0415  # start-up: see the module docstring

    required("--name", name)
    print_change("remove", "removed", name, remove_agent(fleet_paths(c, home, roster).roster, name), json)


@task(auto_shortflags=False, help={**PATH_HELP, "force": "Overwrite an existing roster.", "json": CHANGE_JSON_HELP})
@user_errors
def roster_init(c: Context, home: str = "", roster: str = "", force: bool = False, json: bool = False) -> None:
    """Write a starter roster (refuses to overwrite without --force)."""
    from fleetlib.roster import init_roster  # noqa: PLC0415  # start-up: see the module docstring

    print_change("init", "wrote", None, init_roster(fleet_paths(c, home, roster).roster, force=force), json)


roster_ns = Collection("roster")
for _task, _name in (
    (roster_list, "list"),
    (roster_show, "show"),
    (roster_validate, "validate"),
    (roster_add, "add"),
    (roster_remove, "remove"),
    (roster_init, "init"),
):
    roster_ns.add_task(_task, name=_name)
