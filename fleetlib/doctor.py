"""``fleet doctor``: what a fleet needs, checked, each failure with how to fix it.

Every check returns a :class:`Check` (data, never prose printed here); the command line
renders one line per check and exits 0 only when all pass. Checks only read: nothing here
creates, fixes or starts anything.

Checks, in order: the roster loads; tmux is installed and new enough; a systemd user
manager answers; lingering is enabled (without it the user manager, and the fleet, stop
at logout); the installed units are exactly what the roster would generate (no drift);
every agent's command resolves on the PATH that agent really gets (read from its running
process, else from its installed unit, else as a start from this shell would give it) and
every ``cwd`` exists; the run dir is owned by this user and not writable by others; every
transcript (and rotated transcript) is a regular file; no stale restart lock is left
behind; (tmux backend) the fleet's tmux server did not die without a stop, leaving agents
unsupervised; a running fleet has its watcher, and none of its agents is ``failed`` or
``exited`` (or runs without being in the roster). On the tmux backend (chosen on purpose,
or by ``auto`` for want of a user manager) the systemd checks are reported as skipped
(they pass); so is lingering where logind cannot be reached at all.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetlib import hooks, procs, transcript, watcher_config
from fleetlib.backend import MANAGER_UP, open_fleet
from fleetlib.backend_tmux import SERVER_DIED, server_died
from fleetlib.checks import Check, failed, passed, skipped
from fleetlib.errors import FleetError
from fleetlib.hosts import LOCAL
from fleetlib.lock import STALE_S, Identity, RestartLock, process_alive
from fleetlib.pane import agent_environment, base_environment
from fleetlib.paths import FleetPaths, default_unit_dir
from fleetlib.roster import Roster, load_roster
from fleetlib.rundir import kind_of
from fleetlib.runner import Runner, SubprocessRunner
from fleetlib.runtimes import hooked
from fleetlib.status import AgentStatus, FleetStatus
from fleetlib.systemd import UnitNames
from fleetlib.tmux import SESSION
from fleetlib.tmux_client import TmuxClient
from fleetlib.units import DROPIN_NAME, dropin_environment

TMUX_MIN_VERSION: Final = (3, 0)  # new-window -e (per-agent environment) arrived in tmux 3.0
_LOGIND_ANSWERED: Final = "Failed to get user"  # loginctl: logind answered, it knows no such lingering user
_BROKEN_STATES: Final = ("failed", "exited")  # nothing will start these again on its own
RUNNING_PATH: Final = "the PATH of the running agent process"
UNIT_PATH: Final = "the PATH its installed unit gives it"


# --------------------------------------------------------------------------- single checks


def fleet_command(task_name: str) -> str:
    """``fleet.install`` -> ``fleet install``; ``roster.init`` -> ``fleet roster.init``."""
    return "fleet " + task_name.removeprefix("fleet.")


def parse_tmux_version(text: str) -> tuple[int, int] | None:
    """``tmux 3.3a`` -> (3, 3); ``tmux next-3.5`` -> (3, 5); None if there is no version."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_tmux(runner: Runner, tmux_bin: str | None) -> Check:
    name = "tmux"
    fix = "install tmux >= {}.{} (e.g. `sudo apt-get install tmux`, `brew install tmux`)".format(*TMUX_MIN_VERSION)
    if tmux_bin is None:
        return failed(name, "tmux is not on PATH", fix)
    result = runner.run([tmux_bin, "-V"])
    version = parse_tmux_version(result.stdout) if result.ok else None
    if version is None:
        return failed(name, f"{tmux_bin} -V did not report a version ({result.error_line()})", fix)
    if version < TMUX_MIN_VERSION:
        return failed(name, f"{result.stdout.strip()} at {tmux_bin} is too old", fix)
    return passed(name, f"{result.stdout.strip()} ({tmux_bin})")


def manager_state(runner: Runner) -> tuple[bool, str]:
    """(reachable, what ``systemctl --user is-system-running`` said or why it failed)."""
    result = runner.run(["systemctl", "--user", "is-system-running"])
    answer = result.stdout.strip()
    if answer in MANAGER_UP:
        return True, answer
    return False, answer or result.error_line()


def check_manager(reachable: bool, state: str, requested: str = "systemd") -> Check:
    """The user manager answers; without one, a failure only when ``requested`` is
    ``systemd``: with ``auto`` the fleet runs on tmux, which the README calls a supported
    choice, so that is said (skipped), not failed."""
    name = "user manager"
    if reachable:
        extra = "; some unit failed: see `systemctl --user --failed`" if state == "degraded" else ""
        return passed(name, f"systemd --user answers ({state}){extra}")
    if requested == "auto":
        return skipped(
            name,
            f"no systemd user manager reachable ({state}): the fleet runs on the tmux backend, without a "
            "supervisor (nothing comes back after a reboot); for one, log in through a session that starts "
            "`systemd --user`",
        )
    return failed(
        name,
        f"no systemd user manager reachable ({state}): the fleet can only run on tmux, without a supervisor",
        "log in through a session that starts `systemd --user` (XDG_RUNTIME_DIR set, `systemctl --user` working), "
        "or choose the tmux backend on purpose with --backend tmux",
    )


def check_linger(runner: Runner, user: str) -> Check:
    """Lingering is enabled for ``user``. Where logind cannot be reached (no system bus, no
    systemd as init, no ``loginctl``) lingering does not apply and nothing ``loginctl``
    could do would work: that is said (skipped), with no fix."""
    name = "lingering"
    fix = f"`loginctl enable-linger {user}` (as root for another user), so the fleet outlives your logout"
    result = runner.run(["loginctl", "show-user", user, "-p", "Linger"])
    if not result.ok and _LOGIND_ANSWERED not in result.stderr:
        return skipped(
            name,
            f"logind cannot be reached ({result.error_line()}): there is no login session to end here; "
            "the user manager runs as long as whatever started it",
        )
    value = "" if not result.ok else result.stdout.strip().partition("=")[2]
    if value == "yes":
        return passed(name, f"enabled for {user}: the user manager keeps running after logout")
    return failed(name, f"not enabled for {user}: the user manager, and every agent, stop at logout", fix)


def check_units(unit_dir: Path, desired: Mapping[str, str], installed_dropins: Sequence[str], install: str) -> Check:
    """Installed unit files against what the roster generates (relative paths as keys);
    ``installed_dropins`` are the drop-in paths found in ``unit_dir`` (relative);
    ``install`` is the command that repairs drift."""
    name = "units"
    fix = f"run `{install}` (it rewrites the units from the roster and removes stale ones)"
    missing: list[str] = []
    drifted: list[str] = []
    for relative, text in desired.items():
        try:
            current = (unit_dir / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            missing.append(relative)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            return failed(name, f"cannot read {unit_dir / relative}: {exc}", fix)
        if current != text:
            drifted.append(relative)
    stale = sorted(set(installed_dropins) - set(desired))
    if len(missing) == len(desired) and not stale:
        return failed(name, f"not installed in {unit_dir}", fix)
    problems = [
        f"{label}: {', '.join(paths)}"
        for label, paths in (("differ from the roster", drifted), ("missing", missing), ("not in the roster", stale))
        if paths
    ]
    if problems:
        return failed(name, f"in {unit_dir}: " + "; ".join(problems), fix)
    return passed(name, f"{len(desired)} unit file(s) in {unit_dir} match the roster")


@dataclass(frozen=True)
class AgentPath:
    """The ``PATH`` an agent's command is looked up on, and where it was read (a phrase)."""

    path: str
    source: str


def agent_paths(
    roster: Roster,
    *,
    pids: Mapping[str, int],
    dropins: Mapping[str, str],
    base: Mapping[str, str],
    fleet_id: str,
    computed_source: str,
) -> dict[str, AgentPath]:
    """Each agent's ``PATH``, checked rather than assumed: the environment of its running
    process (``pids``: agent name -> the agent process), else the one its installed unit
    gives it (``dropins``: agent name -> its installed drop-in's text), else the one a
    start would give it now (``base``, see :func:`fleetlib.pane.base_environment`,
    with the roster's ``env``; described by ``computed_source``)."""
    found: dict[str, AgentPath] = {}
    for agent in roster.agents:
        pid = pids.get(agent.name)
        running = procs.environment(pid) if pid is not None else None
        if running is not None:
            found[agent.name] = AgentPath(running.get("PATH", ""), RUNNING_PATH)
            continue
        text = dropins.get(agent.name)
        installed = dropin_environment(text) if text is not None else None
        if installed is not None:
            found[agent.name] = AgentPath(installed.get("PATH", ""), UNIT_PATH)
            continue
        computed = agent_environment(base, procs.marker(agent.name, fleet_id), agent.env)
        found[agent.name] = AgentPath(computed.get("PATH", ""), computed_source)
    return found


def check_commands(
    roster: Roster, paths: Mapping[str, AgentPath], which: Callable[..., str | None] = shutil.which
) -> Check:
    """Every agent's executable resolves: a path must be executable, a bare name on the
    ``PATH`` that agent gets (``paths``, see :func:`agent_paths`); a failure names the
    agent, the command, the ``PATH`` searched and where that ``PATH`` was read."""
    name = "commands"
    missing: list[str] = []
    sources: dict[str, list[str]] = {}
    for agent in roster.agents:
        argv = agent.argv()
        executable = argv[0] if argv else ""
        where = paths[agent.name]
        if "/" in executable:
            found = os.path.isfile(executable) and os.access(executable, os.X_OK)
        else:
            found = bool(executable) and which(executable, path=where.path) is not None
        if found:
            sources.setdefault(where.source, []).append(agent.name)
        else:
            missing.append(f"{agent.name}: {shlex.quote(executable)} not found on PATH={where.path} ({where.source})")
    if missing:
        return failed(
            name,
            "; ".join(missing),
            "install the missing command(s) where that PATH finds them, or fix `command` (or `env: PATH`) in the "
            "roster; on systemd, re-run the install from a shell whose PATH finds them",
        )
    read = "; ".join(f"{', '.join(names)}: on {source}" for source, names in sources.items())
    return passed(
        name, f"{len(roster.agents)} agent command(s) found on the PATH each agent gets" + (f": {read}" if read else "")
    )


def check_cwds(roster: Roster, user_home: Path) -> Check:
    name = "directories"
    missing = [
        f"{agent.name}: {cwd}"
        for agent in roster.agents
        # a worktree (fleetlib.worktree) is made by the agent's start
        if agent.worktree is None and (cwd := roster.cwd_of(agent, user_home)) is not None and not os.path.isdir(cwd)
    ]
    if missing:
        return failed(
            name, f"not a directory: {'; '.join(missing)}", "create the directories or fix `cwd` in the roster"
        )
    with_cwd = sum(agent.cwd is not None for agent in roster.agents)
    return passed(name, f"{with_cwd} agent working {'directory exists' if with_cwd == 1 else 'directories exist'}")


def check_run_dir(run_dir: Path, uid: int) -> Check:
    """Owned by ``uid``, a real directory, not writable by group or others."""
    name = "run dir"
    try:
        info = run_dir.lstat()
    except FileNotFoundError:
        return passed(name, f"{run_dir} does not exist yet (created 0700 on first use)")
    except OSError as exc:
        return failed(name, f"cannot inspect {run_dir}: {exc.strerror}", f"check the permissions of {run_dir.parent}")
    if stat.S_ISLNK(info.st_mode):
        return failed(name, f"{run_dir} is a symlink", f"remove it (`rm {run_dir}`); it is created 0700 on first use")
    if not stat.S_ISDIR(info.st_mode):
        return failed(name, f"{run_dir} is not a directory", f"remove it (`rm {run_dir}`)")
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != uid:
        return failed(
            name,
            f"{run_dir} is owned by uid {info.st_uid}, not by you (uid {uid})",
            f"remove it as its owner or root (`rm -r {run_dir}`); it is created 0700 on first use",
        )
    if mode & 0o022:
        return failed(name, f"{run_dir} has mode {mode:04o}: others can write to it", f"`chmod 700 {run_dir}`")
    return passed(name, f"{run_dir} is yours, mode {mode:04o}")


def check_transcripts(directory: Path, writer: str | None = "perl") -> Check:
    """The pane's transcript writer runs (``writer``: where ``perl`` was found, None when it
    was not; :data:`fleetlib.capture.WRITER_PERL`), and every transcript name and rotated
    name in the transcripts directory holds a regular file
    (:func:`fleetlib.transcript.odd_files`): a symlink there once stopped rotation."""
    name = "transcripts"
    if writer is None:
        return failed(
            name,
            "perl is not installed: every pane's transcript writer is a small perl program: none is written",
            "install perl (Debian: apt install perl-base), then `fleet restart`",
        )
    try:
        odd = transcript.odd_files(directory)
    except FleetError as exc:
        return failed(name, str(exc), f"check the permissions of {directory}")
    if odd:
        found = "; ".join(f"{path} is {kind_of(mode)}" for path, mode in odd)
        return failed(
            name,
            f"not a regular file: {found} (readers skip a rotated one; at <name>.log the agent cannot start)",
            "remove it: " + " ".join(f"`rm -r {shlex.quote(str(path))}`" for path, _ in odd),
        )
    return passed(name, f"{directory}: every transcript is a regular file")


def check_watcher(fleet_running: bool, watchers: Sequence[int], restart: str, unit: str) -> Check:
    """A running fleet has its watcher (agent states, notifications, transcript rotation);
    ``unit`` is the home's watcher unit (for the fix under systemd)."""
    name = "watcher"
    if not fleet_running:
        return skipped(name, "the fleet is not running")
    if not watchers:
        return failed(
            name,
            "the fleet runs without its watcher: no notifications are sent, transcripts are not rotated, "
            "and `status` reads every screen itself",
            f"`{restart}` starts it with the fleet (under systemd also: `systemctl --user restart {unit}`)",
        )
    return passed(name, f"running (pid {', '.join(map(str, watchers))})")


def check_agents(status: FleetStatus, command: Callable[[str], str]) -> Check:
    """In a running fleet no agent is ``failed`` (its supervisor gave up on a crash loop) or
    ``exited`` (nothing starts it again), and no agent the roster no longer lists runs. An
    agent stopped on purpose (``fleet stop --agent``) is fine."""
    name = "agents"
    broken = [row for row in status.agents if row.state in _BROKEN_STATES]
    strays = [row for row in status.strays if not row.down]
    if not broken and not strays:
        counts = Counter(row.state for row in status.agents)
        return passed(name, ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no agents")
    problems = [
        f"{row.name} {row.state} after {row.failures} exit(s)"
        + (f", exit status {row.exit_status}" if row.exit_status is not None else "")
        for row in broken
    ]
    problems += [f"{row.name} not in the roster but {row.state}" for row in strays]
    fixes = [
        f"see why with `{command('fleet.logs')} --agent {row.name}`, fix its command or roster entry, "
        f"then `{command('fleet.restart')} --agent {row.name}`"
        for row in broken
    ]
    if strays:
        fixes.append(f"`{command('fleet.install')}` ends the agents the roster no longer lists")
    return failed(name, "; ".join(problems), "; ".join(fixes))


def check_hooks(rows: Sequence[AgentStatus], runtimes: Mapping[str, str], run_dir: Path, now: float) -> Check:
    """Every running agent of a hooked runtime (see :mod:`fleetlib.hooks`) that has been up
    :data:`~fleetlib.hooks.SILENT_AFTER_S` seconds has reported through its hooks in its
    current run. Codex reports only finished turns, so it counts once it has had one: an
    agent whose hooks never fire (an old CLI, hooks not trusted) is read from its screen."""
    name = "hooks"
    silent = []
    watched = 0
    for row in rows:
        runtime = runtimes.get(row.name, "")
        started = hooks.run_started(run_dir, row.name)
        if row.state != "running" or not hooked(runtime) or started is None:
            continue
        watched += 1
        quiet_for = now - started
        if quiet_for >= hooks.SILENT_AFTER_S and runtime != "codex" and hooks.current(run_dir, row.name) is None:
            silent.append(f"{row.name} ({runtime})")
    if not watched:
        return skipped(name, "no running agent of a runtime with hooks (claude, codex, gemini)")
    if not silent:
        return passed(name, f"{watched} agent(s) report their state through their hooks (or have not been asked yet)")
    return failed(
        name,
        f"running without hooks (their state is read from the screen): {', '.join(silent)}",
        "update the CLI to a version with hooks and check that it trusts the agent's working directory "
        "(a CLI asks before running hooks of an untrusted folder); then restart the agent",
    )


def check_server(socket: Path, running: bool, died: bool, left: Sequence[int], start: str, stop: str) -> Check:
    """(tmux backend) Whether the fleet's tmux server died without a stop (``died``: its
    socket is left), and what of its agents still runs unwatched (``left``)."""
    name = "tmux server"
    if running:
        return passed(name, f"running on {socket}")
    if not died:
        return passed(name, "not running (stopped, or never started)")
    still = (
        f"{len(left)} process(es) of its agents still run unwatched (pid {' '.join(map(str, left))})"
        if left
        else "none of its agents' processes runs any more"
    )
    return failed(
        name,
        f"{SERVER_DIED} without `{stop}` (killed, or out of memory; its socket {socket} is left): {still}",
        f"`{start}` starts the fleet again (first ending whatever of the old one still runs); `{stop}` leaves it "
        "stopped",
    )


def check_restart_lock(lock: RestartLock, now: float, here: Identity) -> Check:
    """A lock whose owner is gone, or that made no progress for ``STALE_S``, is stale."""
    name = "restart lock"
    try:
        record = lock.owner()
    except (FleetError, OSError) as exc:
        return failed(name, f"cannot read {lock.path}: {exc}", f"remove it (`rm -r {lock.path}`) when no restart runs")
    if record is None:
        return passed(name, "free")
    fix = f"nothing runs under it: the next restart breaks it, or remove it now (`rm {lock.path}`)"
    if record.problem is not None:
        return failed(name, f"stale: the lock file is corrupt ({record.problem})", fix)
    age = now - record.stamp_ms / 1000 if record.stamp_ms is not None else None
    age_text = f"{age:.0f} s old" if age is not None else "no time stamp"
    alive = process_alive(record, here)
    if alive is False:
        return failed(name, f"stale: held by {record.who()}, which is gone ({age_text})", fix)
    if age is None or age > STALE_S:
        return failed(name, f"stale: held by {record.who()} without progress ({age_text})", fix)
    return passed(name, f"held by {record.who()}: an operation is in progress ({age_text})")


# --------------------------------------------------------------------------- all of them


def diagnose(
    paths: FleetPaths,
    *,
    backend: str = "auto",
    unit_dir: Path | None = None,
    runner: Runner | None = None,
    environ: Mapping[str, str] | None = None,
    command: Callable[[str], str] = fleet_command,
) -> list[Check]:
    """Run every check for the fleet at ``paths``; ``backend`` as the user asked for it.
    ``command`` spells a task the way the user types it (for the fixes)."""
    run = runner or SubprocessRunner()
    env = os.environ if environ is None else environ
    checks: list[Check] = []
    roster: Roster | None
    try:
        roster = load_roster(paths.roster)
        checks.append(passed("roster", f"{paths.roster}: {len(roster.agents)} agent(s)"))
        if roster.hosts:  # the other hosts' agents are checked there (fleet doctor on each host)
            roster = roster.for_host(LOCAL)
    except FleetError as exc:
        roster = None
        checks.append(failed("roster", str(exc), f"fix the roster, or create one with `{command('roster.init')}`"))

    tmux_bin = shutil.which("tmux", path=env.get("PATH"))
    checks.append(check_tmux(run, tmux_bin))

    systemd_wanted = backend != "tmux"
    reachable, state = manager_state(run) if systemd_wanted else (False, "")
    on_systemd = backend == "systemd" or (backend == "auto" and reachable)
    dropins: dict[str, str] = {}
    if not systemd_wanted:
        why = "the tmux backend was chosen"
        checks += [skipped("user manager", why), skipped("lingering", why), skipped("units", why)]
    else:
        checks.append(check_manager(reachable, state, backend))
    if systemd_wanted and not on_systemd:
        checks += [skipped("lingering", "no user manager"), skipped("units", "no user manager")]
    elif on_systemd:
        checks.append(check_linger(run, pwd.getpwuid(os.getuid()).pw_name))
        if roster is None:
            checks.append(skipped("units", "the roster does not load"))
        else:
            units_check, dropins = _units_and_dropins(paths, roster, unit_dir, command)
            checks.append(units_check)

    fleet_running = (
        tmux_bin is not None
        and TmuxClient(run, paths.tmux_socket, tmux_bin).attempt(["has-session", "-t", f"={SESSION}"]).ok
    )
    status: FleetStatus | FleetError | None = None  # read once: for the commands and the agents checks
    if fleet_running and roster is not None:
        status = _status(paths, roster, "systemd" if on_systemd else "tmux", unit_dir)
    if roster is None:
        checks += [skipped("commands", "the roster does not load"), skipped("directories", "the roster does not load")]
    else:
        home = Path(env.get("HOME") or Path.home())
        pids = (
            {row.name: row.agent_pid for row in status.agents if row.agent_pid is not None}
            if isinstance(status, FleetStatus)
            else {}
        )
        task = command("fleet.install" if on_systemd else "fleet.start")
        found = agent_paths(
            roster,
            pids=pids,
            dropins=dropins,
            base=base_environment(env, str(home)),
            fleet_id=str(paths.tmux_socket),
            computed_source=f"the PATH `{task}` from this shell would give it",
        )
        checks.append(check_commands(roster, found))
        checks.append(check_cwds(roster, home))
    checks.append(check_run_dir(paths.run_dir, os.geteuid()))
    checks.append(check_transcripts(transcript.log_dir(paths), shutil.which("perl", path=env.get("PATH"))))
    checks.append(check_restart_lock(RestartLock(paths.home), time.time(), Identity.current()))
    if tmux_bin is None:
        checks += [
            skipped("watcher", "tmux is not installed"),
            skipped("agents", "tmux is not installed"),
            skipped("hooks", "tmux is not installed"),
        ]
    else:
        if on_systemd:
            checks.append(skipped("tmux server", "its holder unit starts it again when it dies, with the agents"))
        else:
            died = not fleet_running and server_died(paths.tmux_socket)
            left = sorted(procs.fleet_processes(str(paths.tmux_socket))) if died else []
            checks.append(
                check_server(
                    paths.tmux_socket, fleet_running, died, left, command("fleet.start"), command("fleet.stop")
                )
            )
        watchers = watcher_config.running(paths.run_dir)
        unit = UnitNames.for_home(paths.home).watcher
        checks.append(check_watcher(fleet_running, watchers, command("fleet.restart"), unit))
        if roster is None:
            checks += [skipped("agents", "the roster does not load"), skipped("hooks", "the roster does not load")]
        elif status is None:
            checks += [skipped("agents", "the fleet is not running"), skipped("hooks", "the fleet is not running")]
        elif isinstance(status, FleetError):
            why = f"cannot read the agents' states: {status}"
            checks += [failed("agents", why, f"see `{command('fleet.status')}`"), skipped("hooks", why)]
        else:
            runtimes = {agent.name: agent.runtime for agent in roster.agents}
            checks += [check_agents(status, command), check_hooks(status.agents, runtimes, paths.run_dir, time.time())]
    from fleetlib import serving  # noqa: PLC0415 (it builds on this module's checks)

    served_by = serving.unit_path(unit_dir or default_unit_dir(), paths.home) if on_systemd else None
    installed = served_by is not None and served_by.is_file()
    checks.append(serving.check_serve(paths.run_dir, installed, command("fleet.serve")))
    return checks


def _status(paths: FleetPaths, roster: Roster, backend: str, unit_dir: Path | None) -> FleetStatus | FleetError:
    """The fleet's own status (it only reads), or why it cannot be read."""
    try:
        return open_fleet(paths, roster, backend=backend, unit_dir=unit_dir).status()
    except FleetError as exc:
        return exc


def _units_and_dropins(
    paths: FleetPaths, roster: Roster, unit_dir: Path | None, command: Callable[[str], str]
) -> tuple[Check, dict[str, str]]:
    """The units check, and the text of each agent's installed drop-in (agent name -> text)."""
    lifecycle = open_fleet(paths, roster, backend="systemd", unit_dir=unit_dir, dry_run=True, echo=lambda _: None)
    installed_in = lifecycle.unit_dir
    if installed_in is None:
        return skipped("units", "no unit directory"), {}
    desired = lifecycle.desired_unit_files()
    units = UnitNames.for_home(paths.home)  # this home's only: other homes' units share the directory
    dropins = [str(path.relative_to(installed_in)) for path in installed_in.glob(f"{units.agent_pattern}.d/*.conf")]
    texts: dict[str, str] = {}
    for agent in roster.agents:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            texts[agent.name] = (installed_in / f"{units.agent(agent.name)}.d" / DROPIN_NAME).read_text(
                encoding="utf-8"
            )
    return check_units(installed_in, desired, dropins, command("fleet.install")), texts
