"""This machine's fleet as one object: what a caller drives (:class:`LocalFleet`).

:func:`fleetlib.api.open_fleet` reads the roster's ``hosts:`` and returns a
:class:`LocalFleet` (this machine's agents, through the engine) or a
:class:`fleetlib.group.HostsFleet` (every host's part, each through its own engine). Both
offer the same operations under the same names — ``install``, ``uninstall``, ``start``,
``stop``, ``restart``, ``status``, ``wait``, ``send``, ``logs``, ``attach``, ``doctor`` — so
a caller (the command line, a script) never branches on "has hosts"; like fabric's
``Connection`` and ``Group``, the several-host fleet returns one
:class:`~fleetlib.results.HostsResult` where the local one returns the result itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fleetlib.backend import WAIT_TIMEOUT_S, Lifecycle
from fleetlib.backend import open_fleet as open_engine
from fleetlib.errors import FleetError
from fleetlib.hosts import DEFAULT_HOST_TIMEOUT_S, DEFAULT_KNOWN_HOSTS
from fleetlib.paths import HOME_ENV, MAX_SOCKET_PATH_BYTES, FleetPaths
from fleetlib.progress import ProgressHook, no_progress
from fleetlib.roster import Roster
from fleetlib.runner import DryRunRunner, SubprocessRunner
from fleetlib.status import FleetStatus

if TYPE_CHECKING:
    from fleetlib.messaging import Messenger
    from fleetlib.results import (
        Check,
        InstallResult,
        Operation,
        OperationResult,
        Screen,
        SendResult,
        TranscriptText,
        WorktreeRemoval,
        WorktreeRows,
    )
    from fleetlib.top import Top
    from fleetlib.waiting import WaitResult

# What only some operations use (sending, logs, waiting, usage figures, `top`, the result
# types) is imported in the method that uses it: `fleet status`, the command run most,
# loads none of it.

if TYPE_CHECKING:
    from fleetlib.serving import ServeAt

Write = Callable[[str | bytes], None]


@dataclass(frozen=True)
class FleetOptions:
    """How to drive a fleet: the backend and unit directory of this machine, dry run,
    how long to wait for agents (``timeout``, None: the default) and for another
    operation's lock; for hosts, the per-host timeout, batches and known_hosts."""

    backend: str = "auto"
    unit_dir: Path | None = None
    dry_run: bool = False
    timeout: float | None = None
    lock_timeout: float | None = None
    progress: ProgressHook = no_progress
    echo: Callable[[str], None] = print
    host_timeout: float = DEFAULT_HOST_TIMEOUT_S
    batch: int = 0
    known_hosts: Path = field(default_factory=lambda: Path(DEFAULT_KNOWN_HOSTS).expanduser())


def require_socket_fits(paths: FleetPaths) -> None:
    """FleetError (exit 2) when the fleet's tmux socket is longer than a Unix socket's path
    may be: no tmux server could ever listen there, and a start would fail only after making
    the run dir. Checked before anything that starts the fleet or writes its units."""
    size = len(os.fsencode(paths.tmux_socket))
    if size > MAX_SOCKET_PATH_BYTES:
        raise FleetError(
            f"the fleet's tmux socket {paths.tmux_socket} is too long for a Unix socket ({size} bytes, "
            f"at most {MAX_SOCKET_PATH_BYTES}); choose a shorter --home (config fleet.home, ${HOME_ENV})"
        )


class LocalFleet:
    """This machine's agents of ``roster`` (see the module docstring)."""

    send_wait_refused: Final = ""  # why a send cannot be followed by a wait here (nothing: it can)

    def __init__(self, paths: FleetPaths, roster: Roster, options: FleetOptions | None = None) -> None:
        self.paths = paths
        self.roster = roster
        self.options = options or FleetOptions()

    @property
    def engine(self) -> Lifecycle:
        """The lifecycle engine (built on each use: it holds no connection)."""
        o = self.options
        return open_engine(
            self.paths,
            self.roster,
            backend=o.backend,
            unit_dir=o.unit_dir,
            dry_run=o.dry_run,
            timeout=WAIT_TIMEOUT_S if o.timeout is None else o.timeout,
            lock_timeout=o.lock_timeout,
            progress=o.progress,
            echo=o.echo,
        )

    def messenger(self) -> Messenger:
        from fleetlib.messaging import Messenger  # noqa: PLC0415 (see the note on imports above)

        runner = DryRunRunner(echo=self.options.echo) if self.options.dry_run else SubprocessRunner()
        return Messenger(paths=self.paths, roster=self.roster, runner=runner)

    # ------------------------------------------------------------------ lifecycle

    def install(self, *, enable: bool = True, serve: bool = False, serve_at: ServeAt | None = None) -> InstallResult:
        """Write the units for the roster (``serve``: and `fleet serve`'s, beside the
        watcher, listening where ``serve_at`` says)."""
        require_socket_fits(self.paths)
        engine = self.engine
        if serve and engine.unit_dir is None:
            raise FleetError(
                "--serve installs a systemd --user unit; without a user manager run `fleet serve` yourself"
            )
        result = engine.install(enable=enable)
        if serve and engine.unit_dir is not None:
            from fleetlib import serving  # noqa: PLC0415 (only a fleet that serves its page)

            result = serving.install_unit(
                result, self.paths, self.roster, engine.unit_dir, engine.runner, enable=enable, at=serve_at
            )
        return result

    def uninstall(self) -> InstallResult:
        """Stop and remove the fleet's units, `fleet install --serve`'s too if there is one."""
        engine = self.engine
        result = engine.uninstall()
        if engine.unit_dir is not None:
            from fleetlib import serving  # noqa: PLC0415

            result = serving.uninstall_unit(result, self.paths, engine.unit_dir, engine.runner)
        return result

    def control(self, operation: Operation, agent: str | None = None, *, fresh: bool = False) -> OperationResult:
        """``start``, ``stop`` or ``restart`` the fleet (or ``agent``); ``fresh``: new conversations."""
        if operation != "stop":
            require_socket_fits(self.paths)
        engine = self.engine
        if operation == "stop":
            if fresh:
                raise FleetError("--fresh is for start and restart (a stop keeps the conversation for the next start)")
            return engine.stop(agent)
        if operation == "start":
            return engine.start(agent, fresh=True) if fresh else engine.start(agent)
        return engine.restart(agent, fresh=True) if fresh else engine.restart(agent)

    def start(self, agent: str | None = None, *, fresh: bool = False) -> OperationResult:
        return self.control("start", agent, fresh=fresh)

    def stop(self, agent: str | None = None) -> OperationResult:
        return self.control("stop", agent)

    def restart(self, agent: str | None = None, *, fresh: bool = False) -> OperationResult:
        return self.control("restart", agent, fresh=fresh)

    # ------------------------------------------------------------------ looking

    def status(self, agent: str | None = None, *, usage: bool = False) -> FleetStatus:
        """Every agent's state (or ``agent``'s); ``usage``: with memory and CPU figures
        (a few /proc reads per agent). Units must be installed (else one line saying so)."""
        engine = self.engine
        engine.ensure_installed([self.roster.get(agent).name] if agent else self.roster.names())
        status = engine.status(agent)
        if not usage:
            return status
        from fleetlib.usage import fleet_sampler, with_usage  # noqa: PLC0415

        return with_usage(status, fleet_sampler(self.paths).sample(status.agents))

    def witness(self) -> str | None:
        """A cheap witness of change: the same text while no agent starts, stops, exits,
        writes or changes activity (the windows of the tmux listing ``status`` reads, one
        tmux client);
        None when tmux does not answer in time. A long-lived reader (``fleet serve``)
        reads the whole status only when it moved. Under systemd a unit's own states
        (``starting``, ``stopping``) show only in the status."""
        from fleetlib import tmux  # noqa: PLC0415
        from fleetlib.context import default_tmux  # noqa: PLC0415
        from fleetlib.tmux_client import TmuxClient  # noqa: PLC0415

        # The windows alone: the server options beside them in status's listing carry the
        # watcher's tick, which moves every second whether anything changed or not.
        listing = ["list-windows", "-t", tmux.session_target(), "-F", tmux.WINDOW_FORMAT]
        result = TmuxClient(SubprocessRunner(), self.paths.tmux_socket, default_tmux()).attempt(listing)
        if result.timed_out:
            return None
        return result.stdout if result.ok else "no tmux server"

    def pinned(self) -> LocalFleet:
        """This fleet with its backend chosen once (``auto`` asks the user manager on
        every use otherwise): for a long-lived caller such as ``fleet serve``."""
        from fleetlib.backend import resolve_backend  # noqa: PLC0415

        chosen = resolve_backend(self.options.backend, SubprocessRunner())
        return LocalFleet(self.paths, self.roster, replace(self.options, backend=chosen))

    def wait(self, state: str, agent: str | None = None, timeout: float | None = None) -> WaitResult:
        """Until every agent (or ``agent``) is in ``state`` (see :func:`fleetlib.waiting.wait_for`)."""
        from fleetlib.waiting import DEFAULT_TIMEOUT_S as DEFAULT_WAIT_S  # noqa: PLC0415
        from fleetlib.waiting import wait_for  # noqa: PLC0415

        engine = self.engine
        name = self.roster.get(agent).name if agent else None
        engine.ensure_installed([name] if name else self.roster.names())
        return wait_for(lambda: engine.status(name), state, DEFAULT_WAIT_S if timeout is None else timeout)

    def send(
        self,
        names: Sequence[str],
        text: str,
        *,
        verify: bool = True,
        timeout: float | None = None,
        answer: bool = False,
    ) -> SendResult:
        from fleetlib.broadcast import send_to  # noqa: PLC0415
        from fleetlib.messaging import VERIFY_TIMEOUT_S  # noqa: PLC0415

        each = VERIFY_TIMEOUT_S if timeout is None else timeout
        return send_to(self.messenger(), list(names), text, verify=verify, timeout=each, answer=answer)

    def logs(
        self,
        agent: str,
        lines: int,
        write: Write,
        *,
        generation: str = "",
        screen: bool = False,
        raw: bool = False,
        follow: bool = False,
    ) -> None:
        """Hand what ``agent`` wrote to ``write``: its transcript (rendered, or ``raw``
        bytes; with ``follow`` then what it gains until interrupted), or with ``screen``
        its pane and the unit's journal. An empty generation is
        :class:`fleetlib.transcript.NoTranscript` (exit 1)."""
        from fleetlib import transcript  # noqa: PLC0415
        from fleetlib.systemd import UnitNames  # noqa: PLC0415

        name = self.roster.get(agent).name
        which = transcript.check_generation(generation or "current")
        if not screen:
            if follow:
                follow_chunks = transcript.follow_raw if raw else transcript.follow
                _each(follow_chunks(self.paths, name, lines=lines, generation=which), write)
                return
            read = transcript.read_raw if raw else transcript.read
            text = read(self.paths, name, lines=lines, generation=which)
            if not text:
                raise transcript.NoTranscript(f"the transcript of {name} holds no {which} generation")
            write(text)
            return
        messenger = self.messenger()
        if follow:
            _each(messenger.follow(name, lines), write)
            return
        write(messenger.logs(name, lines))
        journal = self.engine.journal(name, lines)
        if journal:
            write(f"--- journal of {UnitNames.for_home(self.paths.home).agent(name)} ---")
            write(journal.rstrip())

    def screen(self, agent: str) -> Screen:
        """``agent``'s visible screen with its colours and the pane's size (one tmux
        client); a FleetError when its window is not there."""
        from fleetlib.results import Screen  # noqa: PLC0415 (see the note on imports above)

        name = self.roster.get(agent).name
        text, columns, rows = self.messenger().screen(name)
        return Screen(name, text, columns, rows)

    def transcript(self, agent: str, lines: int) -> TranscriptText:
        """The last ``lines`` lines of ``agent``'s transcript (this generation), rendered
        as ``fleet logs`` prints them; :class:`fleetlib.transcript.NoTranscript` when it
        holds none."""
        from fleetlib import transcript  # noqa: PLC0415
        from fleetlib.results import TranscriptText  # noqa: PLC0415

        name = self.roster.get(agent).name
        text = transcript.read(self.paths, name, lines=lines)
        if not text:
            raise transcript.NoTranscript(f"the transcript of {name} holds no current generation")
        return TranscriptText(name, text)

    # ------------------------------------------------------------------ worktrees

    def worktrees(self) -> WorktreeRows:
        """Every agent's worktree as git sees it (``worktree.list``), made or not yet."""
        from fleetlib import worktree  # noqa: PLC0415 (only the worktree tasks)
        from fleetlib.results import WorktreeRows  # noqa: PLC0415

        bound, runner = worktree.bind(self.roster, self.paths.home), SubprocessRunner()
        with_one = [agent for agent in bound.agents if agent.worktree is not None]
        return WorktreeRows([worktree.state(runner, bound, agent, Path.home()).to_json() for agent in with_one])

    def remove_worktree(self, agent: str, *, force: bool = False) -> WorktreeRemoval:
        """Remove ``agent``'s worktree (:func:`fleetlib.worktree.remove`: never one holding
        work, unless ``force``); refused while the agent runs in it."""
        from fleetlib import worktree  # noqa: PLC0415
        from fleetlib.results import WorktreeRemoval  # noqa: PLC0415

        bound = worktree.bind(self.roster, self.paths.home)
        chosen = bound.get(agent)
        if chosen.worktree is None:
            raise FleetError(f"agent {agent} has no worktree in {bound.source}; nothing to remove")
        row = self.engine.status(agent).by_name()[agent]
        if not row.down:
            raise FleetError(
                f"agent {agent} is {row.state} in its worktree; stop it first (fleet stop --agent {agent})"
            )
        removed = worktree.remove(SubprocessRunner(), bound, chosen, Path.home(), force=force)
        return WorktreeRemoval(removed.to_json(), force)

    def top(self) -> Top:
        """Samples of what each agent costs (``fleet top``)."""
        from fleetlib.top import Top  # noqa: PLC0415
        from fleetlib.usage import fleet_sampler  # noqa: PLC0415

        return Top(self.engine, fleet_sampler(self.paths))

    def attach(self, agent: str, *, read_only: bool) -> int:
        """Attach the terminal to ``agent``'s window (``read_only``: watch); its exit code."""
        return self.messenger().attach(agent, read_only=read_only)

    def doctor(self, command: Callable[[str], str] | None = None) -> list[Check]:
        """This machine's checks (see :func:`local_checks`)."""
        return local_checks(self.paths, self.options, command)


def local_checks(paths: FleetPaths, options: FleetOptions, command: Callable[[str], str] | None = None) -> list[Check]:
    """This machine's checks of the fleet at ``paths`` (:func:`fleetlib.doctor.diagnose`),
    the roster's among them (so it needs no valid roster); ``command`` spells a task for the fixes."""
    from fleetlib.doctor import diagnose  # noqa: PLC0415 (the doctor reads the lock: only `fleet doctor`)

    if command is None:
        return diagnose(paths, backend=options.backend, unit_dir=options.unit_dir)
    return diagnose(paths, backend=options.backend, unit_dir=options.unit_dir, command=command)


def _each(chunks: Iterator[str] | Iterator[bytes], write: Write) -> None:
    """``write`` every chunk of a follow until it ends or Ctrl-C (which ends it quietly)."""
    try:
        for chunk in chunks:
            write(chunk)
    except KeyboardInterrupt:
        return


def write_stdout(chunk: str | bytes) -> None:
    """A :data:`Write` to this process's stdout: text as lines, bytes as they are."""
    if isinstance(chunk, bytes):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    else:
        print(chunk, flush=True)
