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

from fleetctl import hosts_tasks, options
from fleetctl.options import (
    DRY_RUN_HELP,
    FLEET_HELP,
    JSON_HELP,
    PATH_HELP,
    VERIFY_TIMEOUT_S,
    WAIT_TIMEOUT_S,
    WAITABLE,
    count,
    fleet_paths,
    requested_backend,
    required,
    seconds,
    spell_commands,
    stderr_line,
    unit_dir_option,
    user_errors,
)
from fleetctl.options import WAIT_FOR_DEFAULT_S as DEFAULT_WAIT_S
from fleetctl.render import (
    LiveLine,
    failure_lines,
    failure_message,
    install_lines,
    operation_summary,
    print_checks,
    print_json,
    progress_hook,
    status_lines,
    status_rows_json,
)
from fleetlib.errors import FleetError

# The rest of fleetlib is imported inside the tasks that use it, so listing the tasks (and
# every other command) loads only what it runs (docs/development/startup.md).
if TYPE_CHECKING:
    from fleetlib.backend import Lifecycle
    from fleetlib.broadcast import SendResult
    from fleetlib.checks import Check
    from fleetlib.messaging import Messenger
    from fleetlib.paths import FleetPaths
    from fleetlib.results import InstallResult, OperationResult, ProgressHook
    from fleetlib.roster import Roster
    from fleetlib.waiting import WaitResult

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


def open_lifecycle(
    c: Context,
    *,
    home: str,
    roster: str,
    unit_dir: str = "",
    backend: str = "",
    dry_run: bool = False,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    progress: ProgressHook | None = None,
    quiet: bool = False,
    loaded: Roster | None = None,
) -> Lifecycle:
    """The fleet named by flags and config; loads (so validates) the roster unless given
    (``loaded``). ``quiet`` (``--json``) sends a dry run's "would run" lines to stderr,
    keeping stdout JSON; ``progress`` defaults to none."""
    from fleetlib.backend import open_fleet  # noqa: PLC0415
    from fleetlib.results import no_progress  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415

    paths = fleet_paths(c, home, roster)
    directory = unit_dir_option(c, unit_dir)
    return open_fleet(
        paths,
        loaded if loaded is not None else load_roster(paths.roster),
        backend=requested_backend(c, backend),
        unit_dir=Path(directory).expanduser() if directory else None,
        dry_run=dry_run,
        timeout=WAIT_TIMEOUT_S if timeout is None else timeout,
        lock_timeout=lock_timeout,
        progress=progress or no_progress,
        echo=stderr_line if quiet else print,
    )


def finish_operation(result: OperationResult, as_json: bool) -> None:
    """Render ``result``; exit 1 naming the failures when an agent failed."""
    if as_json:
        print_json(result.to_json())
    else:
        print(operation_summary(result))
    if not result.ok:
        if not as_json:
            for line in failure_lines(result.failures):
                stderr_line(spell_commands(line))
        raise Exit(f"error: {spell_commands(failure_message(result))}", code=OPERATION_FAILED)


def finish_install(result: InstallResult, as_json: bool) -> None:
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
    dry_run: bool = False,
    json: bool = False,
) -> None:
    """Write the systemd units for the roster, reload and enable them (idempotent)."""
    from fleetlib.roster import load_roster  # noqa: PLC0415

    backend = requested_backend(c, backend)
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts:  # several hosts: push each host's part, install there (README: Several hosts)
        hosts_tasks.install(
            c,
            "install",
            loaded,
            paths,
            backend=backend,
            unit_dir=unit_dir,
            enable=enable,
            dry_run=dry_run,
            as_json=json,
        )
        return
    lifecycle = open_lifecycle(
        c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, dry_run=dry_run, quiet=json, loaded=loaded
    )
    if serve and lifecycle.unit_dir is None:
        raise FleetError("--serve installs a systemd --user unit; without a user manager run `fleet serve` yourself")
    result = lifecycle.install(enable=enable)
    if serve and lifecycle.unit_dir is not None:
        from fleetlib import serving  # noqa: PLC0415

        result = serving.install_unit(result, paths, loaded, lifecycle.unit_dir, lifecycle.runner, enable=enable)
    finish_install(result, json)


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
    from fleetlib.roster import load_roster  # noqa: PLC0415

    backend = requested_backend(c, backend)
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts:
        hosts_tasks.install(
            c,
            "uninstall",
            loaded,
            paths,
            backend=backend,
            unit_dir=unit_dir,
            enable=True,
            dry_run=dry_run,
            as_json=json,
        )
        return
    lifecycle = open_lifecycle(
        c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, dry_run=dry_run, quiet=json, loaded=loaded
    )
    result = lifecycle.uninstall()
    if lifecycle.unit_dir is not None:  # and `fleet install --serve`'s unit, if there is one
        from fleetlib import serving  # noqa: PLC0415

        result = serving.uninstall_unit(result, paths, lifecycle.unit_dir, lifecycle.runner)
    finish_install(result, json)


# --------------------------------------------------------------------------- start / stop / restart

CONTROL_HELP: Final = {
    **FLEET_HELP,
    "agent": "Act on this agent only (default: the whole fleet).",
    "timeout": TIMEOUT_HELP,
    "lock_timeout": LOCK_TIMEOUT_HELP,
    "dry_run": DRY_RUN_HELP,
    "json": JSON_HELP,
    "batch": hosts_tasks.BATCH_HELP,
    "host_timeout": hosts_tasks.HOST_TIMEOUT_HELP,
    "fresh": "start and restart: begin new conversations instead of resuming the agents' own (roster `resume`).",
}


def control_task(action: str, doc: str) -> Task[Any]:
    """Build the start/stop/restart task: same flags, one lifecycle method each."""

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
        from fleetlib.roster import load_roster  # noqa: PLC0415

        # Every flag is checked before anything happens, whether the roster has hosts or not.
        if fresh and action == "stop":
            raise FleetError("--fresh is for start and restart (a stop keeps the conversation for the next start)")
        wait = seconds("--timeout", timeout)
        lock_wait = seconds("--lock-timeout", lock_timeout)
        batch_size = hosts_tasks.batch_size(batch)
        per_host = hosts_tasks.host_timeout_seconds(c, host_timeout)
        backend = requested_backend(c, backend)
        paths = fleet_paths(c, home, roster)
        loaded = load_roster(paths.roster)
        if loaded.hosts:  # several hosts: the controller (README: Several hosts)
            hosts_tasks.control(
                c,
                action,
                loaded,
                paths,
                agent=agent,
                backend=backend,
                unit_dir=unit_dir,
                timeout=wait,
                lock_timeout=lock_wait,
                dry_run=dry_run,
                as_json=json,
                batch=batch_size,
                host_timeout=per_host,
                fresh=fresh,
            )
            return
        line = LiveLine.on_stderr(quiet=json)
        lifecycle = open_lifecycle(
            c,
            home=home,
            roster=roster,
            unit_dir=unit_dir,
            backend=backend,
            dry_run=dry_run,
            timeout=wait,
            lock_timeout=lock_wait,
            progress=progress_hook(line, label=DOING[action]),
            quiet=json,
            loaded=loaded,
        )
        try:
            kwargs = {"fresh": True} if fresh else {}
            result: OperationResult = getattr(lifecycle, action)(agent or None, **kwargs)
        finally:
            line.clear()
        finish_operation(result, json)

    control.__doc__ = doc
    control.__name__ = control.__qualname__ = f"fleet_{action}"
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
        "host_timeout": hosts_tasks.HOST_TIMEOUT_HELP,
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
    from fleetlib.roster import load_roster  # noqa: PLC0415

    per_host = hosts_tasks.host_timeout_seconds(c, host_timeout)
    backend = requested_backend(c, backend)
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts:  # several hosts: rows of every host, with a host column
        hosts_tasks.status(
            c,
            loaded,
            paths,
            agent=agent,
            backend=backend,
            unit_dir=unit_dir,
            as_json=json,
            host_timeout=per_host,
        )
        return
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    names = [lifecycle.roster.get(agent).name] if agent else lifecycle.roster.names()
    lifecycle.ensure_installed(names)
    status = lifecycle.status(agent or None)
    if json:
        # Measured only for --json (a few /proc reads per agent); text shows no figures.
        from fleetlib.usage import fleet_sampler, with_usage  # noqa: PLC0415

        status = with_usage(status, fleet_sampler(lifecycle.paths).sample(status.agents))
        print_json(status_rows_json(status))
    else:
        for line in status_lines(status):
            print(line)
    if not status.all_up:
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
    watcher and the agents of a running fleet (none failed)."""
    directory = unit_dir_option(c, unit_dir)

    def local_checks() -> list[Check]:
        from fleetlib.doctor import diagnose  # noqa: PLC0415

        return diagnose(
            fleet_paths(c, home, roster),
            backend=requested_backend(c, backend),
            unit_dir=Path(directory).expanduser() if directory else None,
            command=options.command,
        )

    paths = fleet_paths(c, home, roster)
    loaded = hosts_tasks.roster_if_valid(paths.roster)  # a broken roster is the roster check's finding
    if loaded is not None and loaded.hosts:  # several hosts: this machine's checks, then every host's
        hosts_tasks.doctor(c, loaded, local_checks, json)
        return
    checks = local_checks()
    print_checks(checks, json)
    if not all(check.ok for check in checks):
        raise Exit(code=OPERATION_FAILED)


# --------------------------------------------------------------------------- talking to agents


def make_messenger(paths: FleetPaths, roster: Roster, dry_run: bool = False, *, quiet: bool = False) -> Messenger:
    from fleetlib.messaging import Messenger  # noqa: PLC0415
    from fleetlib.runner import DryRunRunner, SubprocessRunner  # noqa: PLC0415

    runner = DryRunRunner(echo=stderr_line if quiet else print) if dry_run else SubprocessRunner()
    return Messenger(paths=paths, roster=roster, runner=runner)


def send_lines(result: SendResult) -> list[str]:
    lines = []
    for outcome in result.agents:
        if outcome.ok and outcome.detail:
            lines.append(outcome.detail)
        elif outcome.ok:
            how = ": accepted" if outcome.verified else "" if result.dry_run else " (not verified)"
            lines.append(f"{outcome.action} {result.characters} characters to {outcome.name}{how}")
    return lines


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
    from fleetlib.broadcast import send_to  # noqa: PLC0415
    from fleetlib.messaging import read_message  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.waiting import wait_for  # noqa: PLC0415

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
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    messenger = make_messenger(paths, loaded, dry_run, quiet=json)
    names = messenger.roster.names() if all else [messenger.roster.get(agent).name]
    text = read_message(message, sys.stdin.buffer)
    if not text:
        raise FleetError("--message is empty; give the text to send (or '-' to read it from stdin)")
    if loaded.hosts:
        if dry_run:
            raise FleetError("with hosts, send has no --dry-run yet")
        if wait:
            raise FleetError("with hosts, send has no --wait yet; run `fleet wait` after it")
        if all:
            each = VERIFY_TIMEOUT_S if limit is None else limit

            def local_send(part: Roster) -> dict[str, Any]:
                sent = send_to(
                    make_messenger(paths, part), part.names(), text, verify=verify, timeout=each, answer=answer
                )
                return sent.to_json()

            hosts_tasks.send_all(
                c, loaded, local_send, text=text, verify=verify, timeout=limit, as_json=json, answer=answer
            )
            return
        if hosts_tasks.send(
            c, loaded, agent=agent, text=text, verify=verify, timeout=limit, as_json=json, answer=answer
        ):
            return
    result = send_to(
        messenger, names, text, verify=verify, timeout=VERIFY_TIMEOUT_S if limit is None else limit, answer=answer
    )
    single = result.agents[0] if not all and result.agents else None
    if single is not None and not single.ok and single.exit_code != OPERATION_FAILED:
        raise FleetError(single.error or "send failed")  # e.g. the agent is not running: a user error
    waited = None
    if wait and result.ok:
        lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir="", backend="", loaded=loaded)
        name = names[0] if not all else None
        waited = wait_for(lambda: lifecycle.status(name), wait, DEFAULT_WAIT_S if limit is None else limit)
    if json:
        print_json({**result.to_json(), "wait": waited.to_json() if waited else None})
    else:
        for line in send_lines(result):
            print(line)
        if waited is not None and waited.ok:
            print(wait_line(waited, names[0] if not all else None))
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


def wait_line(result: WaitResult, name: str | None) -> str:
    """What a wait that reached its state says."""
    who = name or f"all {len(result.agents)} agent(s)"
    return f"{who}: {result.wanted} after {result.seconds:.1f} s"


def _attach(c: Context, agent: str, home: str, roster: str, read_only: bool) -> None:
    from fleetlib.roster import load_roster  # noqa: PLC0415

    required("--agent", agent)
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts and hosts_tasks.attach(c, loaded, agent=agent, read_only=read_only):
        return
    code = make_messenger(paths, loaded).attach(agent, read_only=read_only)
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
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.systemd import UnitNames  # noqa: PLC0415

    required("--agent", agent)
    count_lines = count("--lines", lines, LOG_LINES)
    which = transcript.check_generation(generation or "current")
    if screen and generation:
        raise FleetError("--generation reads the transcript; it cannot be combined with --screen")
    if screen and raw:
        raise FleetError("--raw reads the transcript; it cannot be combined with --screen")
    if follow and which == "previous":
        raise FleetError("--follow shows new output; it cannot be combined with --generation previous")
    loaded = load_roster(fleet_paths(c, home, roster).roster)
    passed_on = [
        *(["--screen"] if screen else []),
        *(["--raw"] if raw else []),
        *(["--generation", generation] if generation else []),
    ]
    if loaded.hosts and hosts_tasks.logs(c, loaded, agent=agent, lines=count_lines, follow=follow, extra=passed_on):
        return
    if not screen:
        paths = fleet_paths(c, home, roster)
        show_transcript(paths, loaded.get(agent).name, count_lines, which, follow=follow, raw=raw)
        return
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    messenger = make_messenger(fleet_paths(c, home, roster), lifecycle.roster)
    if follow:
        try:
            for chunk in messenger.follow(agent, count_lines):
                print(chunk, flush=True)
        except KeyboardInterrupt:
            return
        return
    print(messenger.logs(agent, count_lines))
    journal = lifecycle.journal(agent, count_lines)
    if journal:
        print(f"--- journal of {UnitNames.for_home(fleet_paths(c, home, roster).home).agent(agent)} ---")
        print(journal.rstrip())


def show_transcript(
    paths: FleetPaths, name: str, lines: int, generation: str, *, follow: bool, raw: bool = False
) -> None:
    """Print the agent's transcript, rendered (or with ``raw`` the bytes as written,
    :func:`fleetlib.transcript.read_raw`); with ``follow``, then what it gains until
    interrupted. An empty generation is :class:`fleetlib.transcript.NoTranscript` (exit 1)."""
    from fleetlib import transcript  # noqa: PLC0415

    def emit(chunk: str | bytes) -> None:
        if isinstance(chunk, bytes):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            print(chunk, flush=True)

    if follow:
        chunks = (transcript.follow_raw if raw else transcript.follow)(paths, name, lines=lines, generation=generation)
        try:
            for chunk in chunks:
                emit(chunk)
        except KeyboardInterrupt:
            return
        return
    text = (transcript.read_raw if raw else transcript.read)(paths, name, lines=lines, generation=generation)
    if not text:
        raise transcript.NoTranscript(f"the transcript of {name} holds no {generation} generation")
    emit(text)


@task(
    auto_shortflags=False,
    help={
        **FLEET_HELP,
        "agent": "Agent to wait for.",
        "all": "Wait until every agent is in the state at once instead.",
        "for_": f"The state to wait for (required): {', '.join(WAITABLE)}.",
        "timeout": f"How long to wait before failing, exit 1 (default {DEFAULT_WAIT_S:g}).",
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
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.waiting import check_state, wait_for  # noqa: PLC0415

    wanted = check_state(for_)
    limit = seconds("--timeout", timeout)
    if bool(agent) == all:
        raise FleetError("give exactly one of --agent NAME or --all")
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts:  # several hosts: every host waits for its own agents, at once
        hosts_tasks.wait(c, loaded, paths, agent=agent, state=wanted, timeout=limit, as_json=json)
        return
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    name = lifecycle.roster.get(agent).name if agent else None
    lifecycle.ensure_installed([name] if name else lifecycle.roster.names())
    result = wait_for(lambda: lifecycle.status(name), wanted, DEFAULT_WAIT_S if limit is None else limit)
    if json:
        print_json(result.to_json())
    elif result.ok:
        print(wait_line(result, name))
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
