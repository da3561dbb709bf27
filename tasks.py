"""Invoke tasks for fleet: thin wrappers that parse flags, call fleetlib and print.

Namespaces: ``roster`` (edit and inspect the roster), ``fleet`` (install and control the
agents), ``build`` (build the stack from source). Configuration keys live under
``fleet.*`` (``invoke.yaml`` or ``INVOKE_FLEET_HOME=...``); a flag beats the config,
which beats ``MOSAIC_HOME``.

User errors print one line on stderr and exit 2; an operation that was attempted and
failed exits 1, naming what failed; ``fleet.status`` exits 3 when any agent is not active
(like ``systemctl is-active``).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from fleetlib.backend import FleetBackend, resolve_backend
from fleetlib.devbuild import DEFAULT_PACKAGES, SKIP_GATEWAY_ENV, DevBuild
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.fleet import Fleet
from fleetlib.messaging import Messenger
from fleetlib.paths import FleetPaths, default_unit_dir
from fleetlib.roster import Agent, Roster, add_agent, init_roster, load_roster, remove_agent, validate_agent
from fleetlib.runner import DryRunRunner, SubprocessRunner, user_environment
from fleetlib.systemd import agent_unit
from fleetlib.tmux_fleet import TmuxFleet

F = TypeVar("F", bound=Callable[..., Any])

HOME_HELP = "Fleet home (default: config fleet.home, then $MOSAIC_HOME, then ~/.config/mosaic)."
ROSTER_HELP = "Roster file (default: config fleet.roster, then <home>/fleet/roster.yaml)."
JSON_HELP = "Print machine-readable JSON instead of a table (schema in README)."
PATH_HELP = {"home": HOME_HELP, "roster": ROSTER_HELP}


def user_errors(body: F) -> F:
    """Turn a ``FleetError`` into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except FleetError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`inv fleet.status | head`): stop quietly, like coreutils.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=141) from None

    return wrapper  # type: ignore[return-value]


def fleet_paths(c: Context, home: str, roster: str) -> FleetPaths:
    """Resolve paths: flag, then ``fleet.*`` config, then the environment defaults."""
    config = c.config.get("fleet", {})
    return FleetPaths.resolve(home or config.get("home") or None, roster or config.get("roster") or None)


def chosen_backend(c: Context, flag: str) -> str:
    """``systemd`` or ``tmux``: the flag, else config ``fleet.backend``, else auto-detected
    (the probe runs even in a dry run: choosing is not a change)."""
    return resolve_backend(flag or c.config.get("fleet", {}).get("backend") or "auto", SubprocessRunner())


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --------------------------------------------------------------------------- roster


def agent_json(agent: Agent) -> dict[str, Any]:
    """The stable JSON shape of one agent (every key always present)."""
    return {
        "name": agent.name,
        "runtime": agent.runtime,
        "command": list(agent.command) if agent.command is not None else None,
        "argv": agent.argv(),
        "cwd": agent.cwd,
        "args": list(agent.args),
        "env": dict(agent.env),
        "description": agent.description,
    }


def print_roster_change(verb: str, name: str, roster: Roster) -> None:
    print(f"{verb} agent {name!r} in {roster.source} ({len(roster.agents)} agents)")
    print("run `inv fleet.install` so the systemd units match the roster")


@task(help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def roster_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the agents in the roster."""
    loaded = load_roster(fleet_paths(c, home, roster).roster)
    if json:
        print_json([agent_json(agent) for agent in loaded.agents])
        return
    rows = [[a.name, a.runtime, shlex.join(a.argv()), a.cwd or "-", a.description] for a in loaded.agents]
    print_table(["NAME", "RUNTIME", "COMMAND", "CWD", "DESCRIPTION"], rows)


@task(help={**PATH_HELP, "name": "Agent to show.", "json": JSON_HELP})
@user_errors
def roster_show(c: Context, name: str, home: str = "", roster: str = "", json: bool = False) -> None:
    """Show one agent of the roster."""
    agent = load_roster(fleet_paths(c, home, roster).roster).get(name)
    data = agent_json(agent)
    if json:
        print_json(data)
        return
    for key, value in data.items():
        print(f"{key}: {value if isinstance(value, str) or value is None else _json_inline(value)}")


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _json_inline(value: Any) -> str:
    return json.dumps(value)


@task(help=PATH_HELP)
@user_errors
def roster_validate(c: Context, home: str = "", roster: str = "") -> None:
    """Check the roster and report the first problem (file:line: field: problem)."""
    loaded = load_roster(fleet_paths(c, home, roster).roster)
    print(f"ok: {loaded.source} is valid ({len(loaded.agents)} agents)")


@task(
    help={
        **PATH_HELP,
        "name": "Agent name: 1-40 of a-z, 0-9, '_' and '-'.",
        "runtime": "Runtime (claude, codex, gemini, opencode, shell) or a label when --command is given.",
        "cwd": "Working directory of the agent.",
        "command": "Command line that overrides the runtime's command (split like a shell would).",
        "description": "Free-text description.",
    }
)
@user_errors
def roster_add(
    c: Context,
    name: str,
    runtime: str,
    cwd: str = "",
    command: str = "",
    description: str = "",
    home: str = "",
    roster: str = "",
) -> None:
    """Add an agent to the roster (atomic; keeps comments)."""

    try:
        argv = tuple(shlex.split(command)) if command else None
    except ValueError as exc:
        raise FleetError(f"--command: cannot split {command!r}: {exc}") from None
    agent = validate_agent(Agent(name=name, runtime=runtime, command=argv, cwd=cwd or None, description=description))
    print_roster_change("added", name, add_agent(fleet_paths(c, home, roster).roster, agent))


@task(help={**PATH_HELP, "name": "Agent to remove."})
@user_errors
def roster_remove(c: Context, name: str, home: str = "", roster: str = "") -> None:
    """Remove an agent from the roster (atomic; keeps comments)."""
    print_roster_change("removed", name, remove_agent(fleet_paths(c, home, roster).roster, name))


@task(help={**PATH_HELP, "force": "Overwrite an existing roster."})
@user_errors
def roster_init(c: Context, home: str = "", roster: str = "", force: bool = False) -> None:
    """Write a starter roster (refuses to overwrite without --force)."""
    path = fleet_paths(c, home, roster).roster
    init_roster(path, force=force)
    print(f"wrote starter roster {path}")


roster_ns = Collection("roster")
for roster_task, roster_name in (
    (roster_list, "list"),
    (roster_show, "show"),
    (roster_validate, "validate"),
    (roster_add, "add"),
    (roster_remove, "remove"),
    (roster_init, "init"),
):
    roster_ns.add_task(roster_task, name=roster_name)

# --------------------------------------------------------------------------- fleet

UNIT_DIR_HELP = "Where unit files live (default: config fleet.unit_dir, then $XDG_CONFIG_HOME/systemd/user)."
DRY_RUN_HELP = "Print the commands that would run and run none."
BACKEND_HELP = "auto (default: systemd when a user manager answers, else tmux), systemd or tmux."
FLEET_HELP = {**PATH_HELP, "unit_dir": UNIT_DIR_HELP, "backend": BACKEND_HELP}
CONTROL_HELP = {
    **FLEET_HELP,
    "agent": "Act on this agent only (default: the whole fleet).",
    "timeout": "Seconds to wait for the fleet to reach the state before failing.",
    "dry_run": DRY_RUN_HELP,
}


def make_fleet(
    c: Context, home: str, roster: str, unit_dir: str, dry_run: bool, timeout: float = 120.0, backend: str = ""
) -> FleetBackend:
    """Build the fleet from flags and config; loads (and so validates) the roster."""
    paths = fleet_paths(c, home, roster)
    config = c.config.get("fleet", {})
    loaded = load_roster(paths.roster)
    runner = DryRunRunner() if dry_run else SubprocessRunner()
    chosen = chosen_backend(c, backend)
    if chosen == "tmux":
        return TmuxFleet(paths=paths, roster=loaded, runner=runner, timeout=timeout)
    configured = unit_dir or config.get("unit_dir") or ""
    return Fleet(
        paths=paths,
        roster=loaded,
        runner=runner,
        unit_dir=Path(configured).expanduser() if configured else default_unit_dir(),
        timeout=timeout,
    )


@task(
    help={
        **FLEET_HELP,
        "enable": "Enable the units so the fleet comes back after a reboot (--no-enable to skip).",
        "dry_run": DRY_RUN_HELP,
    }
)
@user_errors
def fleet_install(
    c: Context,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    enable: bool = True,
    dry_run: bool = False,
) -> None:
    """Write the systemd units for the roster, reload and enable them (idempotent)."""
    changes = make_fleet(c, home, roster, unit_dir, dry_run, backend=backend).install(enable=enable)
    for line in changes or ["the installed units already match the roster; nothing to do"]:
        print(line)


@task(help={**FLEET_HELP, "dry_run": DRY_RUN_HELP})
@user_errors
def fleet_uninstall(
    c: Context, home: str = "", roster: str = "", unit_dir: str = "", backend: str = "", dry_run: bool = False
) -> None:
    """Stop and disable every fleet unit and remove the unit files."""
    for line in make_fleet(c, home, roster, unit_dir, dry_run, backend=backend).uninstall():
        print(line)


def control_task(action: str, doc: str) -> Task[Any]:
    """Build the start/stop/restart task: same flags, one Fleet method each."""

    def control(
        c: Context,
        agent: str = "",
        home: str = "",
        roster: str = "",
        unit_dir: str = "",
        backend: str = "",
        timeout: float = 120.0,
        dry_run: bool = False,
    ) -> None:
        fleet = make_fleet(c, home, roster, unit_dir, dry_run, timeout, backend)
        print(getattr(fleet, action)(agent or None))

    control.__doc__ = doc
    control.__name__ = control.__qualname__ = f"fleet_{action}"
    built: Task[Any] = task(help=CONTROL_HELP)(user_errors(control))
    return built


fleet_start = control_task("start", "Start the fleet (holder and every agent) or one agent, and wait until it is up.")
fleet_stop = control_task("stop", "Stop every agent and the holder (or one agent); tries all, names every failure.")
fleet_restart = control_task("restart", "Restart the fleet or one agent under the restart lock; wait until it is up.")


@task(help={**FLEET_HELP, "agent": "Show this agent only.", "json": JSON_HELP})
@user_errors
def fleet_status(
    c: Context,
    agent: str = "",
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
) -> None:
    """Show every agent's state; exit 0 when all are active, 3 otherwise."""
    fleet = make_fleet(c, home, roster, unit_dir, dry_run=False, backend=backend)
    names = [fleet.roster.get(agent).name] if agent else fleet.roster.names()
    fleet.ensure_installed(names)
    status = fleet.status(agent or None)
    if json:
        print_json([{**a.to_json(), "backend": status.backend} for a in status.agents])
    else:
        print(f"backend: {status.backend}")
        print(f"holder {status.holder.unit}: {status.holder.active_state} ({status.holder.sub_state})")
        rows = [
            [
                a.name,
                a.active_state,
                a.sub_state,
                str(a.pid or "-"),
                a.since or "-",
                _or_dash(a.restarts),
                "yes" if a.window else "no",
                _or_dash(a.exit_status),
            ]
            for a in status.agents
        ]
        print_table(["NAME", "STATE", "SUB", "PID", "SINCE", "RESTARTS", "WINDOW", "EXIT"], rows)
    if not status.all_up:
        raise Exit(code=3)


# --------------------------------------------------------------------------- talking to agents


def make_messenger(c: Context, home: str, roster: str, dry_run: bool = False) -> Messenger:
    paths = fleet_paths(c, home, roster)
    return Messenger(
        paths=paths, roster=load_roster(paths.roster), runner=DryRunRunner() if dry_run else SubprocessRunner()
    )


@task(
    help={
        **PATH_HELP,
        "agent": "Agent to send to.",
        "all": "Send to every agent in the roster instead.",
        "message": "Text to send, delivered literally; '-' reads it from stdin.",
        "timeout": "Seconds to wait for the agent to accept the message.",
        "verify": "Wait until the agent shows it took the message (--no-verify to just deliver).",
        "dry_run": DRY_RUN_HELP,
    }
)
@user_errors
def fleet_send(
    c: Context,
    message: str,
    agent: str = "",
    all: bool = False,
    timeout: float = 15.0,
    verify: bool = True,
    home: str = "",
    roster: str = "",
    dry_run: bool = False,
) -> None:
    """Send a message to an agent (or --all), literally, and verify it was accepted."""
    if bool(agent) == all:
        raise FleetError("give exactly one of --agent NAME or --all")
    messenger = make_messenger(c, home, roster, dry_run)
    # A message piped in ends with the newline `echo` adds; Enter already submits it.
    text = sys.stdin.read().removesuffix("\n") if message == "-" else message
    names = messenger.roster.names() if all else [agent]
    failures = []
    for name in names:
        try:
            print(messenger.send(name, text, verify=verify, timeout=timeout))
        except FleetError as exc:
            if not all:
                raise
            failures.append(f"{name}: {exc}")
    if failures:
        raise FleetOperationError(f"send failed for {len(failures)} agent(s): " + "; ".join(failures))


def _attach(c: Context, agent: str, home: str, roster: str, read_only: bool) -> None:
    messenger = make_messenger(c, home, roster)
    code = messenger.attach(agent, read_only=read_only)
    if code:
        raise Exit(code=code)


@task(help={**PATH_HELP, "agent": "Agent to watch."})
@user_errors
def fleet_watch(c: Context, agent: str, home: str = "", roster: str = "") -> None:
    """Attach to an agent's window read-only (you cannot type into it)."""
    _attach(c, agent, home, roster, read_only=True)


@task(help={**PATH_HELP, "agent": "Agent to attach to."})
@user_errors
def fleet_attach(c: Context, agent: str, home: str = "", roster: str = "") -> None:
    """Attach to an agent's window read-write (detach with the tmux prefix, then d)."""
    _attach(c, agent, home, roster, read_only=False)


@task(
    help={
        **FLEET_HELP,
        "agent": "Agent whose output to show.",
        "lines": "How many lines of scroll-back to show.",
        "follow": "Keep printing new output until interrupted.",
    }
)
@user_errors
def fleet_logs(
    c: Context,
    agent: str,
    lines: int = 200,
    follow: bool = False,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
) -> None:
    """Show an agent's pane scroll-back (and its unit's journal under systemd)."""
    messenger = make_messenger(c, home, roster)
    if follow:
        try:
            for chunk in messenger.follow(agent, lines):
                print(chunk, flush=True)
        except KeyboardInterrupt:
            return
        return
    print(messenger.logs(agent, lines))
    chosen = chosen_backend(c, backend)
    if chosen == "systemd":
        journal = messenger.runner.run(
            ["journalctl", "--user", "-u", agent_unit(agent), "-n", str(lines), "--no-pager", "-q"]
        )
        if journal.ok and journal.stdout.strip():
            print(f"--- journal of {agent_unit(agent)} ---")
            print(journal.stdout.rstrip())


fleet_ns = Collection("fleet")
fleet_ns.add_task(fleet_install, name="install")
fleet_ns.add_task(fleet_uninstall, name="uninstall")
fleet_ns.add_task(fleet_start, name="start")
fleet_ns.add_task(fleet_stop, name="stop")
fleet_ns.add_task(fleet_restart, name="restart")
fleet_ns.add_task(fleet_status, name="status")
fleet_ns.add_task(fleet_send, name="send")
fleet_ns.add_task(fleet_watch, name="watch")
fleet_ns.add_task(fleet_attach, name="attach")
fleet_ns.add_task(fleet_logs, name="logs")

# --------------------------------------------------------------------------- build


@task(
    iterable=["package"],
    help={
        "source": "Git repository (exported at --ref), directory or .tar.gz URL (default: config build.source or .).",
        "ref": "Git ref to build when --source is a git repository.",
        "prefix": "npm global prefix to install into (default: `npm prefix -g`).",
        "package": "Workspace package to build and install; repeat for several (default: gateway and CLI).",
        "check": "Only report installed and source versions; change nothing.",
        "keep_workdir": "Keep the temp work dir (for debugging a failed build).",
        "json": "Print a JSON report on stdout (progress goes to stderr).",
    },
)
@user_errors
def build_dev(
    c: Context,
    source: str = "",
    ref: str = "main",
    prefix: str = "",
    package: list[str] | None = None,
    check: bool = False,
    keep_workdir: bool = False,
    json: bool = False,
) -> None:
    """Build the CLI and gateway from source and install them from local tarballs (no registry writes)."""
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if json else print
    build = DevBuild(
        source=source or c.config.get("build", {}).get("source") or ".",
        runner=SubprocessRunner(env=user_environment(SKIP_GATEWAY_ENV), timeout=3600),
        ref=ref,
        prefix=prefix,
        packages=package or DEFAULT_PACKAGES,
        keep_workdir=keep_workdir,
        report=progress,
    )
    report = build.check() if check else build.build()
    if json:
        print_json(report.to_json())
        return
    for row in report.packages:
        if check:
            print(f"{row['name']}: installed {row['installed_version'] or '(none)'}, source {row['source_version']}")
        else:
            print(f"installed {row['name']}@{row['version']} into {report.prefix} (from {row['tarball']})")
    for warning in report.warnings:
        print(f"warning: {warning}")


build_ns = Collection("build")
build_ns.add_task(build_dev, name="dev")

ns = Collection()
ns.add_collection(roster_ns)
ns.add_collection(fleet_ns)
ns.add_collection(build_ns)
ns.configure({"fleet": {"home": "", "roster": "", "unit_dir": "", "backend": "auto"}, "build": {"source": ""}})
