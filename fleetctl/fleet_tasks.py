"""``fleet.*``: install and control the agents, talk to them, check the set-up.

Each task checks its flags, opens the fleet through :func:`fleetlib.backend.open_fleet`,
calls one operation and renders the result it returns (text, or ``--json``). Per-agent
failures are rendered, then the task exits 1; user errors exit 2 before anything changes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from fleetctl import options
from fleetctl.options import (
    BIND_HELP,
    DRY_RUN_HELP,
    FLEET_HELP,
    JSON_HELP,
    PATH_HELP,
    TOKEN_FILE_HELP,
    count,
    fleet_config,
    fleet_paths,
    requested_backend,
    required,
    seconds,
    spell_commands,
    stderr_line,
    unit_dir_option,
    user_errors,
)
from fleetctl.render import (
    LiveLine,
    check_lines,
    failure_lines,
    failure_message,
    host_failure_lines,
    host_lines,
    host_wait_lines,
    hosts_failure_message,
    hosts_status_lines,
    install_lines,
    operation_lines,
    operation_summary,
    print_json,
    progress_hook,
    remote_send_lines,
    send_all_lines,
    send_lines,
    status_lines,
    wait_line,
)
from fleetlib.defaults import VERIFY_TIMEOUT_S, WAIT_DEFAULT_S, WAIT_TIMEOUT_S, WAITABLE
from fleetlib.errors import FleetError
from fleetlib.hosts import DEFAULT_HOST_TIMEOUT_S, DEFAULT_KNOWN_HOSTS, LOCAL

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import TypeIs

    from fleetlib.fleet import FleetOptions, LocalFleet
    from fleetlib.group import HostsFleet
    from fleetlib.results import Check, HostsResult, InstallResult, Operation, OperationResult, ProgressHook
    from fleetlib.roster import Roster
    from fleetlib.serving import ServeAt
    from fleetlib.waiting import WaitResult

# The library is imported inside the task bodies, never here: `fleet --list` and every other
# command pay only for what they run. Imported above are only modules of constants
# (fleetlib.defaults, errors, hosts: the standard library only, a few lines each).

LOG_LINES: Final = 200
DOING: Final = {"start": "starting", "stop": "stopping", "restart": "restarting"}
OPERATION_FAILED: Final = 1
NOT_ALL_UP: Final = 3
USER_ERROR: Final = 2
SEND_WAITS: Final = ("idle", "waiting")  # what `send --wait` waits for: the end of the turn it started
TIMEOUT_HELP: Final = f"How long to wait for the fleet to reach the state before failing (default {WAIT_TIMEOUT_S:g})."
LOCK_TIMEOUT_HELP: Final = (
    "How long to wait for another operation's lock before failing (default: wait, breaking stale locks)."
)
HOST_TIMEOUT_HELP: Final = "Per-host limit for connecting, and for the whole of a status on a host (default 10 s)."
BATCH_HELP: Final = "With hosts: act on this many hosts at a time, stopping at the first batch that fails."


def host_timeout_seconds(c: Context, flag: str) -> float:
    """``--host-timeout`` (else config ``fleet.host_timeout``, else 10 s), checked like every
    duration; tasks call it before anything else, with hosts or without."""
    raw = flag or str(fleet_config(c).get("host_timeout") or "")
    value = seconds("--host-timeout", raw)
    return DEFAULT_HOST_TIMEOUT_S if value is None else value


def batch_size(raw: str) -> int:
    """``--batch K``: 0 (all hosts at once) when not given, else a whole number >= 1."""
    return count("--batch", raw, 0)


def load(c: Context, home: str, roster: str) -> Roster:
    """The roster named by flags and config, loaded (so validated)."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  (see the note on imports above)

    return load_roster(fleet_paths(c, home, roster).roster)


def fleet_options(
    c: Context,
    *,
    unit_dir: str = "",
    backend: str = "",
    dry_run: bool = False,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    progress: ProgressHook | None = None,
    quiet: bool = False,
    host_timeout: float | None = None,
    batch: int = 0,
) -> FleetOptions:
    """The options flags and config give (:class:`fleetlib.fleet.FleetOptions`). ``quiet``
    (``--json``) sends a dry run's "would run" lines to stderr, keeping stdout JSON."""
    from fleetlib.fleet import FleetOptions  # noqa: PLC0415

    directory = unit_dir_option(c, unit_dir)
    known = fleet_config(c).get("known_hosts") or DEFAULT_KNOWN_HOSTS
    return FleetOptions(
        backend=requested_backend(c, backend),
        unit_dir=Path(directory).expanduser() if directory else None,
        dry_run=dry_run,
        timeout=timeout,
        lock_timeout=lock_timeout,
        echo=stderr_line if quiet else print,
        host_timeout=host_timeout_seconds(c, "") if host_timeout is None else host_timeout,
        batch=batch,
        known_hosts=Path(known).expanduser(),
        **({"progress": progress} if progress is not None else {}),
    )


def open_any(
    c: Context, *, home: str, roster: str, loaded: Roster | None = None, **chosen: Any
) -> LocalFleet | HostsFleet:
    """The fleet named by flags and config (:func:`fleetlib.api.open_fleet`: across its
    hosts when the roster names any), with :func:`fleet_options` of ``chosen``; loads (so
    validates) the roster unless given (``loaded``)."""
    from fleetlib.api import open_fleet  # noqa: PLC0415

    paths = fleet_paths(c, home, roster)
    return open_fleet(paths, loaded if loaded is not None else load(c, home, roster), fleet_options(c, **chosen))


def across_hosts(result: object) -> TypeIs[HostsResult[Any]]:
    """Whether ``result`` is several hosts' (:class:`fleetlib.results.HostsResult`); the
    results module is imported when a result is there to look at, not at start-up."""
    if "fleetlib.results" not in sys.modules:
        return False  # nothing made a HostsResult (a local `status` loads no result type)
    from fleetlib.results import HostsResult  # noqa: PLC0415

    return isinstance(result, HostsResult)


def finish_hosts(
    result: HostsResult[Any], as_json: bool, text: Callable[[Any], list[str]], code: int = OPERATION_FAILED
) -> None:
    """Print ``result`` (JSON, or ``text`` per answering host); exit ``code`` (1) naming failed hosts."""
    if as_json:
        print_json(result.to_json())
    else:
        for line in host_lines(result, text):
            print(spell_commands(line))  # a host's agents' hints name library (`inv`) tasks
    if not result.ok:
        if not as_json:
            for line in host_failure_lines(result):
                stderr_line(spell_commands(line))
        raise Exit(hosts_failure_message(result), code=code)


def finish_operation(result: OperationResult | HostsResult[OperationResult], as_json: bool) -> None:
    """Render ``result``; exit 1 naming the failures when an agent (or a host) failed."""
    if across_hosts(result):
        finish_hosts(result, as_json, operation_lines)
        return
    if as_json:
        print_json(result.to_json())
    else:
        print(operation_summary(result))
    if not result.ok:
        if not as_json:
            for line in failure_lines(result.failures):
                stderr_line(spell_commands(line))
        raise Exit(f"error: {spell_commands(failure_message(result))}", code=OPERATION_FAILED)


def finish_install(result: InstallResult | HostsResult[InstallResult], as_json: bool) -> None:
    if across_hosts(result):
        finish_hosts(result, as_json, install_lines)
        return
    if as_json:
        print_json(result.to_json())
        return
    for line in install_lines(result):
        print(line)


# --------------------------------------------------------------------------- install / uninstall


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "enable": "Enable the units so the fleet comes back after a reboot (--no-enable to skip).",
        "serve": "Also install `fleet serve` as a unit beside the watcher (loopback, port 8470), started now.",
        "bind": f"With --serve: {BIND_HELP}",
        "token_file": f"With --serve: {TOKEN_FILE_HELP}",
        "dry_run": DRY_RUN_HELP,
        "json": JSON_HELP,
    },
)
@user_errors
def fleet_install(
    c: Context,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    enable: bool = True,
    serve: bool = False,
    bind: str = "",
    token_file: str = "",
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Write the systemd units for the roster, reload and enable them (idempotent)."""
    at = serve_address(serve, bind, token_file)
    fleet = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, dry_run=dry_run, quiet=json)
    finish_install(fleet.install(enable=enable, serve=serve, serve_at=at), json)


def serve_address(serve: bool, bind: str, token_file: str) -> ServeAt | None:
    """Where `fleet install --serve`'s unit listens, checked as `fleet serve` checks it
    (loopback unless a token file is given; the file private and long enough), before
    anything is written; None without --serve (and --bind or --token-file is then refused)."""
    if not serve:
        if bind or token_file:
            raise FleetError("--bind and --token-file say where --serve listens; add --serve, or leave them out")
        return None
    from fleetlib.serving import DEFAULT_BIND, ServeAt  # noqa: PLC0415
    from fleetweb import guard  # noqa: PLC0415  (its checks, not the server)

    guard.check_exposure(guard.parse_bind(bind or DEFAULT_BIND), token_file)
    if token_file:
        guard.read_token_file(token_file)
    return ServeAt(bind or DEFAULT_BIND, str(Path(token_file).expanduser().resolve()) if token_file else "")


@task(auto_shortflags=False, help={**FLEET_HELP, "dry_run": DRY_RUN_HELP, "json": JSON_HELP})
@user_errors
def fleet_uninstall(
    c: Context,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Stop and disable every fleet unit and remove the unit files."""
    fleet = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, dry_run=dry_run, quiet=json)
    finish_install(fleet.uninstall(), json)


# --------------------------------------------------------------------------- start / stop / restart

CONTROL_HELP: Final = {
    **FLEET_HELP,
    "agent": "Act on this agent only (default: the whole fleet).",
    "timeout": TIMEOUT_HELP,
    "lock_timeout": LOCK_TIMEOUT_HELP,
    "dry_run": DRY_RUN_HELP,
    "json": JSON_HELP,
    "batch": BATCH_HELP,
    "host_timeout": HOST_TIMEOUT_HELP,
    "fresh": "start and restart: begin new conversations instead of resuming the agents' own (roster `resume`).",
}


def control_task(operation: Operation, doc: str) -> Task[Any]:
    """Build the start/stop/restart task: same flags, one operation each."""

    def control(
        c: Context,
        agent: str = "",
        home: str = "",
        roster: str = "",
        unit_dir: str = "",
        backend: str = "",
        timeout: str = "",
        lock_timeout: str = "",
        dry_run: bool = False,
        json: bool = False,
        batch: str = "",
        host_timeout: str = "",
        fresh: bool = False,
    ) -> None:
        # Every flag is checked before anything happens, whether the roster has hosts or not.
        if fresh and operation == "stop":
            raise FleetError("--fresh is for start and restart (a stop keeps the conversation for the next start)")
        wait = seconds("--timeout", timeout)
        lock_wait = seconds("--lock-timeout", lock_timeout)
        batches = batch_size(batch)
        per_host = host_timeout_seconds(c, host_timeout)
        line = LiveLine.on_stderr(quiet=json)
        fleet = open_any(
            c,
            home=home,
            roster=roster,
            unit_dir=unit_dir,
            backend=backend,
            dry_run=dry_run,
            timeout=wait,
            lock_timeout=lock_wait,
            progress=progress_hook(line, label=DOING[operation]),
            quiet=json,
            host_timeout=per_host,
            batch=batches,
        )
        try:
            result = fleet.control(operation, agent or None, fresh=fresh)
        finally:
            line.clear()
        finish_operation(result, json)

    control.__doc__ = doc
    control.__name__ = control.__qualname__ = f"fleet_{operation}"
    built: Task[Any] = task(auto_shortflags=False, help=dict(CONTROL_HELP))(user_errors(control))
    return built


fleet_start = control_task("start", "Start the fleet (holder and every agent) or one agent, and wait until it is up.")
fleet_stop = control_task("stop", "Stop every agent and the holder (or one agent); tries all, names every failure.")
fleet_restart = control_task("restart", "Restart the fleet or one agent under the restart lock; wait until it is up.")


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "agent": "Show this agent only.",
        "json": JSON_HELP,
        "host_timeout": HOST_TIMEOUT_HELP,
    },
)
@user_errors
def fleet_status(
    c: Context,
    agent: str = "",
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
    host_timeout: str = "",
) -> None:
    """Show every agent's state; exit 0 when all are active, 3 otherwise."""
    per_host = host_timeout_seconds(c, host_timeout)
    fleet = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, host_timeout=per_host)
    # Figures (a few /proc reads per agent) only for --json; text shows none.
    status = fleet.status(agent or None, usage=json)
    if across_hosts(status):
        if json:
            print_json(status.agent_rows())
        else:
            for line in hosts_status_lines(status):
                print(line)
        if not status.ok:
            for line in host_failure_lines(status):
                stderr_line(spell_commands(line))
            raise Exit(hosts_failure_message(status), code=OPERATION_FAILED)
        all_up = all(report.all_up for _, report in status.answers())
    else:
        if json:
            print_json(status.to_json())
        else:
            for line in status_lines(status):
                print(line)
        all_up = status.all_up
    if not all_up:
        raise Exit(code=NOT_ALL_UP)


# --------------------------------------------------------------------------- checking the set-up


@task(auto_shortflags=False, help={**FLEET_HELP, "json": JSON_HELP})
@user_errors
def fleet_doctor(
    c: Context, home: str = "", roster: str = "", unit_dir: str = "", backend: str = "", json: bool = False
) -> None:
    """Check what the fleet needs and say how to fix each failure (exit 0: all passed).

    Checks: the roster, tmux, the user manager, lingering, installed units against the
    roster (drift), agent commands and directories, the run dir, a stale restart lock, the
    watcher and the agents of a running fleet (none failed); with hosts, then every host:
    reachable, its fleet version, and its own checks."""
    from fleetlib.api import open_fleet  # noqa: PLC0415
    from fleetlib.fleet import local_checks  # noqa: PLC0415

    chosen = fleet_options(c, unit_dir=unit_dir, backend=backend)
    paths = fleet_paths(c, home, roster)
    try:
        loaded = load(c, home, roster)
    except FleetError:
        # A missing or broken roster is the roster check's finding: this machine's checks say it.
        print_checks(local_checks(paths, chosen, options.command), json)
        return
    print_checks(open_fleet(paths, loaded, chosen).doctor(options.command), json)


def print_checks(checks: list[Check], as_json: bool) -> None:
    """``fleet doctor``'s output (a line per check, or the JSON list); exit 1 on a failure."""
    if as_json:
        print_json([check.to_json() for check in checks])
    else:
        for line in check_lines(checks):
            print(line)
    if not all(check.ok for check in checks):
        raise Exit(code=OPERATION_FAILED)


# --------------------------------------------------------------------------- talking to agents


@task(
    auto_shortflags=False,
    help={
        **PATH_HELP,
        "agent": "Agent to send to.",
        "all": "Send to every agent in the roster instead.",
        "message": "What to send (required), delivered literally; '-' reads it from stdin.",
        "timeout": f"How long to wait for each agent to accept the message (default {VERIFY_TIMEOUT_S:g}).",
        "verify": "Wait until the agent is ready and shows it took the message (--no-verify to just deliver).",
        "answer": "The message answers the question the agent is asking (without it, a waiting agent is not sent to); "
        "a number on a menu chooses that entry with the arrow keys and Enter.",
        "wait": "Then wait until the agent (each one) finished the turn: idle or waiting (exit 1 on --timeout).",
        "dry_run": DRY_RUN_HELP,
        "json": JSON_HELP,
    },
)
@user_errors
def fleet_send(
    c: Context,
    message: str = "",
    agent: str = "",
    all: bool = False,
    timeout: str = "",
    verify: bool = True,
    answer: bool = False,
    wait: str = "",
    home: str = "",
    roster: str = "",
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Send a message to an agent (or --all), literally, and verify it was accepted.

    An agent that is asking a question is not sent to unless --answer says this is the
    answer; a busy agent is given --timeout to become idle before anything is typed; one
    that is not running (restarting, failed, exited, stopped) is refused (exit 2).
    With --wait idle|waiting it then waits, like `fleet wait`, for the turn to end."""
    from fleetlib.messaging import read_message  # noqa: PLC0415

    required("--message", message)
    limit = seconds("--timeout", timeout)
    if bool(agent) == all:
        raise FleetError("give exactly one of --agent NAME or --all")
    if wait and wait not in SEND_WAITS:
        raise FleetError(f"--wait {wait!r}: send waits for the end of the turn, one of {', '.join(SEND_WAITS)}")
    if wait and (dry_run or not verify):
        raise FleetError(
            "--wait waits for the turn of an accepted message; it cannot be combined with --dry-run or --no-verify"
        )
    loaded = load(c, home, roster)
    names = loaded.names() if all else [loaded.get(agent).name]
    text = read_message(message, sys.stdin.buffer)
    if not text:
        raise FleetError("--message is empty; give the text to send (or '-' to read it from stdin)")
    fleet = open_any(c, home=home, roster=roster, dry_run=dry_run, quiet=json, loaded=loaded)
    if wait and fleet.send_wait_refused:
        raise FleetError(fleet.send_wait_refused)
    sent = fleet.send(names, text, verify=verify, timeout=limit, answer=answer)
    if across_hosts(sent):
        if all or sent.hosts[0].host != LOCAL or sent.hosts[0].data is None:
            finish_host_send(sent, single=not all, as_json=json)
            return
        result = sent.hosts[0].data  # this machine's agent: rendered like a fleet without hosts
    else:
        result = sent
    single = result.agents[0] if not all and result.agents else None
    if single is not None and not single.ok and single.exit_code != OPERATION_FAILED:
        raise FleetError(single.error or "send failed")  # e.g. the agent is not running: a user error
    waited: WaitResult | None = None
    if wait and result.ok:
        found = fleet.wait(wait, names[0] if not all else None, WAIT_DEFAULT_S if limit is None else limit)
        assert not across_hosts(found)  # refused above: with hosts, send has no --wait
        waited = found
    if json:
        print_json({**result.to_json(), "wait": waited.to_json() if waited else None})
    else:
        for line in send_lines(result):
            print(line)
        if waited is not None and waited.ok:
            print(wait_line(waited.wanted, waited.seconds, names[0] if not all else None, len(waited.agents)))
    if waited is not None and not waited.ok:
        raise Exit(spell_commands(waited.error()), code=OPERATION_FAILED)
    if not result.ok:
        if not json:
            for outcome in result.failures:
                stderr_line(spell_commands(f"{outcome.name}: {outcome.error}"))
                for line in (outcome.output or "").splitlines():
                    stderr_line(f"    {line}")
        named = "; ".join(f"{o.name}: {o.error}" for o in result.failures)
        # Refusals only (agents not running, bad input): a user error, exit 2, like one agent's.
        refused = not any(o.exit_code != USER_ERROR for o in result.failures)  # `all` is the flag here
        what = "refused" if refused else "failed"
        message = f"error: send {what} for {len(result.failures)} agent(s): {named}"
        raise Exit(spell_commands(message), code=USER_ERROR if refused else OPERATION_FAILED)


def finish_host_send(result: HostsResult[Any], *, single: bool, as_json: bool) -> None:
    """A send across hosts: ``--all`` as every host's result; one agent as its host's
    answer (its agents carrying the ``host``); a host that failed is one line, exit 2."""
    # Refusals only (agents not running, bad input): a user error, exit 2, as without hosts.
    answers = [host.data for host in result.hosts]
    refused = all(sent is not None for sent in answers) and all(
        o.exit_code == USER_ERROR for sent in answers if sent is not None for o in sent.failures
    )
    if not single:
        finish_hosts(result, as_json, send_all_lines, code=USER_ERROR if refused else OPERATION_FAILED)
        return
    (host,) = result.hosts
    if host.data is None:
        raise FleetError(f"{host.host}: {host.error}")
    sent = host.data
    if refused and not sent.ok:  # as one agent here: e.g. it is not running
        (outcome,) = sent.failures
        raise FleetError(f"{host.host}: {outcome.error or 'send refused'}")
    if as_json:
        print_json({**sent.to_json(), "agents": [{**item, "host": host.host} for item in sent.to_json()["agents"]]})
    else:
        for line in remote_send_lines(sent, host.host):
            print(line)
    if not sent.ok:
        failed = "; ".join(f"{o.name}: {o.error}" for o in sent.failures)
        raise Exit(spell_commands(f"error: send failed on {host.host}: {failed}"), code=OPERATION_FAILED)


def _attach(c: Context, agent: str, home: str, roster: str, read_only: bool) -> None:
    required("--agent", agent)
    code = open_any(c, home=home, roster=roster).attach(agent, read_only=read_only)
    if code:
        raise Exit(code=code)


@task(auto_shortflags=False, help={**PATH_HELP, "agent": "Agent to watch (required)."})
@user_errors
def fleet_watch(c: Context, agent: str = "", home: str = "", roster: str = "") -> None:
    """Attach to an agent's window read-only (you cannot type into it)."""
    _attach(c, agent, home, roster, read_only=True)


@task(auto_shortflags=False, help={**PATH_HELP, "agent": "Agent to attach to (required)."})
@user_errors
def fleet_attach(c: Context, agent: str = "", home: str = "", roster: str = "") -> None:
    """Attach to an agent's window read-write (detach with the tmux prefix, then d)."""
    _attach(c, agent, home, roster, read_only=False)


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "agent": "Agent whose output to show (required).",
        "lines": f"How many lines to show, >= 1 (default {LOG_LINES}).",
        "follow": "Keep printing new output until interrupted.",
        "generation": "current (default: since the agent last started), previous (the run before) or all.",
        "screen": "Show the pane's scroll-back (and the unit's journal under systemd) instead of the transcript.",
        "raw": "Show the transcript's bytes exactly as the agent wrote them (escape sequences and all).",
    },
)
@user_errors
def fleet_logs(
    c: Context,
    agent: str = "",
    lines: str = "",
    follow: bool = False,
    generation: str = "",
    screen: bool = False,
    raw: bool = False,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
) -> None:
    """Show what an agent wrote: its transcript, kept across restarts (--screen: its pane).

    The transcript is rendered as the pane showed it (--raw: the bytes as written).
    No transcript yet (or no such generation) is one line on stderr, exit 1."""
    from fleetlib import transcript  # noqa: PLC0415
    from fleetlib.fleet import write_stdout  # noqa: PLC0415

    required("--agent", agent)
    count_lines = count("--lines", lines, LOG_LINES)
    which = transcript.check_generation(generation or "current")
    if screen and generation:
        raise FleetError("--generation reads the transcript; it cannot be combined with --screen")
    if screen and raw:
        raise FleetError("--raw reads the transcript; it cannot be combined with --screen")
    if follow and which == "previous":
        raise FleetError("--follow shows new output; it cannot be combined with --generation previous")
    fleet = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend)
    fleet.logs(agent, count_lines, write_stdout, generation=generation, screen=screen, raw=raw, follow=follow)


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "agent": "Agent to wait for.",
        "all": "Wait until every agent is in the state at once instead.",
        "for_": f"The state to wait for (required): {', '.join(WAITABLE)}.",
        "timeout": f"How long to wait before failing, exit 1 (default {WAIT_DEFAULT_S:g}).",
        "json": JSON_HELP,
    },
)
@user_errors
def fleet_wait(
    c: Context,
    agent: str = "",
    all: bool = False,
    for_: str = "",
    timeout: str = "",
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
) -> None:
    """Wait until an agent (or --all) is idle, waiting or working; exit 1 on timeout.

    An agent that is down (exited, failed, stopped) in another state than the one asked
    for ends the wait at once, exit 1, naming its state.

    Scripts use it to send the next message only when the agent is ready:
    `fleet wait --agent a1 --for idle && fleet send --agent a1 --message ...`."""
    from fleetlib.waiting import check_state  # noqa: PLC0415

    wanted = check_state(for_)
    limit = seconds("--timeout", timeout)
    if bool(agent) == all:
        raise FleetError("give exactly one of --agent NAME or --all")
    fleet = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend)
    # Every host (and this machine's part) with the same --backend and --unit-dir.
    result = fleet.wait(wanted, agent or None, WAIT_DEFAULT_S if limit is None else limit)
    if across_hosts(result):
        finish_hosts(result, json, host_wait_lines)
        return
    name = fleet.roster.get(agent).name if agent else None
    if json:
        print_json(result.to_json())
    elif result.ok:
        print(wait_line(result.wanted, result.seconds, name, len(result.agents)))
    if not result.ok:
        raise Exit(spell_commands(result.error()), code=OPERATION_FAILED)


fleet_tasks: Final = {
    "install": fleet_install,
    "uninstall": fleet_uninstall,
    "start": fleet_start,
    "stop": fleet_stop,
    "restart": fleet_restart,
    "status": fleet_status,
    "doctor": fleet_doctor,
    "send": fleet_send,
    "watch": fleet_watch,
    "attach": fleet_attach,
    "logs": fleet_logs,
    "wait": fleet_wait,
}

fleet_ns = Collection("fleet")
for _name, _task in fleet_tasks.items():
    fleet_ns.add_task(_task, name=_name)
