"""The only place fleet starts a process (or, under a lease, signals one).

Everything else builds argv lists (``systemd.py``, ``tmux.py``) and hands them to a
:class:`Runner` (run one, run several at once, run on the user's terminal), or, for the
two processes fleet does not wait for, to :func:`spawn_detached` (a notification command
that outlives its tick) and :func:`exec_replacing` (a command that becomes this process,
such as ``ssh`` to attach on a host). ``SubprocessRunner`` runs them for real (never through a shell of the
caller's making, file descriptors closed in the child so no lock leaks into tmux or
systemctl). Tests substitute a recording runner to check orchestration order.

**Dry runs: the runner decides, the algorithm does not branch.** A caller says what a
command is: :func:`query` (``query(runner, argv)``) for one that only looks (``tmux
list-windows``, ``systemctl show``), ``runner.run`` for one that may change something (the
default: a command nobody marked is treated as a change), :func:`apply_change` for a change made
in-process (a file written, a directory made), ``runner.signal`` for signals, and
:func:`leased` for the lease an operation holds. A :class:`SubprocessRunner` does all of
them. A :class:`DryRunRunner` runs the queries for real through its ``reader`` (so a dry
run sees the fleet as it is); for the rest it prints what would run, records it in
``commands`` and runs nothing; no lease is taken. Callers run one algorithm for both, and
what a dry run shows is what the same call would change *given the current state*. The
decisions are made here, from :attr:`Runner.dry_run`, so any runner (a test's recording
runner too) takes part. The one decision left to a caller: whether to wait for a change
to take effect (a recorded change never will; the engine counts it as done).

**Fenced commands.** Within :meth:`SubprocessRunner.fenced` (the engine holds it for the
whole of every start, stop and restart) each command, and each signal sent with
:meth:`SubprocessRunner.signal`, checks the lease *in its own process, after the fork*:
it starts as ``/bin/sh`` running :data:`FENCE_GUARD` with the lease's
:class:`~fleetlib.lock.LeaseProof`, which execs the command only if the lock's path is
still the very file this process's last refresh installed (``test -ef`` against the file
descriptor passed in) and the boot clock (``/proc/uptime``) is still before the proof's
expiry, :data:`~fleetlib.lock.FENCE_MARGIN_S` after that refresh. Otherwise it exits
:data:`FENCE_REFUSED` having run nothing, and the runner refreshes the lease: that raises
:class:`~fleetlib.lock.LeaseLost` if the lease was lost, else the command is tried again
with the new proof (at most :data:`FENCE_TRIES` times, then a one-line
:class:`~fleetlib.errors.FleetOperationError`; nothing ran).

Guarantee: once this process has lost the lease, no command or signal of it takes effect
unless it passed its check before the loss, *wherever this process is paused* (SIGSTOP, a
debugger, the scheduler): paused before the fork, the child checks after the pause and
refuses; paused after the fork, the child is not paused. A check passed means the lease
was ours and refreshed less than ``FENCE_MARGIN_S`` before, so no waiter may break it for
``max_wait - FENCE_MARGIN_S`` more (29 s by default): the command's time to take effect.
Outside the guarantee: a command stopped itself between its check and its effect (a stop
of the whole process group), and what the engine does in-process without the runner:
writing the watcher's configuration and the pane script (only when they differ from what
the roster gives, the same for every owner) and SIGCONT to stopped transcript writers
(nothing to one that runs). Cost: one ``/bin/sh`` exec per command (about a millisecond), and a refresh only
when the last one is half a margin old. :meth:`~SubprocessRunner.interactive` is never
fenced (nothing runs it under a lease).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NoReturn, Protocol

from fleetlib import procs
from fleetlib.errors import FleetOperationError

if TYPE_CHECKING:  # the lock module is big; a command that takes no lock never loads it
    from fleetlib.lock import LeaseProof

TIMED_OUT: Final = 124  # the exit status a timed-out command reports (as timeout(1) does)
SHELL: Final = "/bin/sh"
FENCE_NAME: Final = "fleet-fence"
FENCE_REFUSED: Final = 75  # EX_TEMPFAIL: the guard refused; the command did not run
FENCE_REFUSAL: Final = "the fleet restart lock is no longer proven ours; not running"
FENCE_TRIES: Final = 3
_FD_DIR: Final = "/proc/self/fd" if sys.platform == "linux" else "/dev/fd"
# $1: the proof's fd as a path; $2: the lock's path; $3: the expiry in hundredths of a
# second on the boot clock ("" for none); then the command. Builtins only up to the exec.
FENCE_GUARD: Final = (
    'if [ "$1" -ef "$2" ] && { [ -z "$3" ] || { read -r up _ 2>/dev/null </proc/uptime '
    '&& [ "${up%.*}${up#*.}" -lt "$3" ]; }; }; then shift 3; else '
    f'printf \'%s: {FENCE_REFUSAL} %s\\n\' "$0" "$4" >&2; '
    f"exit {FENCE_REFUSED}; fi; "
    'command -v -- "$1" >/dev/null || { printf \'%s: command not found\\n\' "$1" >&2; exit 127; }; '
    'exec "$@"'
)
SIGNAL_NAME: Final = "fleet-signal"
# $1: signal names, comma-separated, sent in turn; then the pids (gone ones are fine).
_SIGNAL_SCRIPT: Final = 'sigs=$1; shift; IFS=,; for sig in $sigs; do kill -s "$sig" "$@" 2>/dev/null; done; exit 0'

Popen = Callable[..., "subprocess.Popen[str]"]


def timeout_message(argv: Sequence[str], seconds: float | None) -> str:
    return f"{argv[0]} did not answer within {seconds:g}s (is its server frozen or overloaded?)"


def fenced_argv(proof: LeaseProof, argv: Sequence[str]) -> list[str]:
    """``argv`` behind :data:`FENCE_GUARD` checking ``proof`` (its fd must be passed on)."""
    expires = "" if proof.expires is None else str(int(proof.expires * 100))
    return [SHELL, "-c", FENCE_GUARD, FENCE_NAME, f"{_FD_DIR}/{proof.fd}", str(proof.path), expires, *argv]


def signal_argv(pids: Sequence[int], *signums: int) -> list[str]:
    """A command sending each of ``signums`` in turn to ``pids`` (the shell's ``kill``; gone
    pids are skipped)."""
    names = ",".join(signal.Signals(signum).name.removeprefix("SIG") for signum in signums)
    return [SHELL, "-c", _SIGNAL_SCRIPT, SIGNAL_NAME, names, *map(str, pids)]


def refused(result: Result) -> bool:
    """Whether a fenced command's guard refused to run it."""
    return result.returncode == FENCE_REFUSED and result.stderr.startswith(f"{FENCE_NAME}: {FENCE_REFUSAL} ")


@dataclass(frozen=True)
class Result:
    """The outcome of one command."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.returncode == TIMED_OUT and "did not answer" in self.stderr

    def error_line(self) -> str:
        """The first non-empty line of stderr (the cause; later lines are usually hints such
        as "See systemctl status ..."), or the exit status when stderr is empty."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[0] if lines else f"exit status {self.returncode}"


class Runner(Protocol):
    """Runs argv lists. ``run_all`` may run them concurrently; results keep the input order.

    ``run``/``run_all`` are for commands that may change something; commands that only look
    go through :func:`query`/:func:`query_all` (see the module docstring)."""

    dry_run: bool
    """True when changes are recorded instead of made (queries still run): nothing a change
    would bring about will ever be observed, so nobody waits for it."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result: ...

    def run_all(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]: ...

    def interactive(self, argv: Sequence[str]) -> int: ...

    def signal(self, pids: Sequence[int], *signums: int) -> None:
        """Send each of ``signums`` in turn to ``pids``; those already gone are skipped."""

    def fenced(self, lease: Lease) -> AbstractContextManager[None]:
        """Within the block, every command and signal checks ``lease`` in its own process."""


class Lease(Protocol):
    """A held lease (:class:`fleetlib.lock.RestartGuard`) as fenced commands check it."""

    def proof(self) -> LeaseProof: ...

    def refresh(self) -> None: ...


class HeldLease(Lease, Protocol):
    """A lease its holder also gives back (:class:`fleetlib.lock.RestartGuard`)."""

    def release(self) -> None: ...


def _no_fence() -> None:
    """The fence of a dry run: no lease to prove."""


def query(
    runner: Runner,
    argv: Sequence[str],
    *,
    input: str | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run a command that only looks (it changes nothing, so it runs in a dry run too)."""
    return _reader(runner).run(argv, input=input, cwd=cwd, timeout=timeout, env=env)


def query_all(runner: Runner, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]:
    """Run commands that only look, concurrently (in a dry run too)."""
    return _reader(runner).run_all(argvs, timeout=timeout)


def apply_change(runner: Runner, action: Callable[[], object]) -> None:
    """Make an in-process change (write a file, make a directory): ``action()``, except in a
    dry run (what it would write is the caller's result to report)."""
    if not runner.dry_run:
        action()


@contextlib.contextmanager
def leased(runner: Runner, take: Callable[[], HeldLease]) -> Iterator[Callable[[], None]]:
    """Hold the lease ``take()`` acquires for the block, every command and signal of
    ``runner`` fenced by it; yields the fence (a refresh, or
    :class:`~fleetlib.lock.LeaseLost`), and releases the lease at the end. A dry run takes
    none (it changes nothing another operation could trip over); its fence does nothing."""
    if runner.dry_run:
        yield _no_fence
        return
    lease = take()
    try:
        with runner.fenced(lease):  # each command checks the lease again after its fork
            yield lease.refresh
    finally:
        lease.release()


def _reader(runner: Runner) -> Runner:
    """What runs ``runner``'s queries: itself, or a dry runner's reader."""
    return runner.reader if isinstance(runner, DryRunRunner) else runner


class SubprocessRunner:
    """Run commands for real, capturing output as text.

    A missing executable is reported as exit status 127 with a message on stderr (like a
    shell would), so callers handle one kind of failure. ``popen`` (``subprocess.Popen``)
    is injectable: every command starts through it. Fenced commands: see the module
    docstring.
    """

    dry_run = False

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300.0,
        *,
        popen: Popen = subprocess.Popen,
    ) -> None:
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self.popen = popen
        self.lease: Lease | None = None

    @contextlib.contextmanager
    def fenced(self, lease: Lease) -> Iterator[None]:
        """Fence every command and signal of the block with ``lease`` (see the module docstring)."""
        previous, self.lease = self.lease, lease
        try:
            yield
        finally:
            self.lease = previous

    def signal(self, pids: Sequence[int], *signums: int) -> None:
        """Send each of ``signums`` in turn to ``pids`` (those already gone are skipped):
        directly, or under a lease from one fenced child process like any command."""
        if not pids or not signums:
            return
        if self.lease is None:
            for signum in signums:
                procs.signal_all(pids, signum)
        else:
            self.run(signal_argv(pids, *signums))

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run ``argv`` to completion; ``timeout`` (default: the runner's) bounds the wait,
        ``env`` replaces the runner's environment for this command only."""
        limit = timeout if timeout is not None else self.timeout
        return self._fenced([argv], limit, input=input, cwd=cwd, env=dict(env) if env is not None else None)[0]

    def interactive(self, argv: Sequence[str]) -> int:
        """Run a command on the user's terminal (no capture); returns its exit status."""
        try:
            return subprocess.run(list(argv), env=self.env, check=False).returncode
        except FileNotFoundError:
            return 127

    def run_all(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]:
        """Start every command, then collect them: wall time is the slowest, not the sum."""
        limit = timeout if timeout is not None else self.timeout
        return self._fenced(argvs, limit)

    def _fenced(
        self,
        argvs: Sequence[Sequence[str]],
        limit: float | None,
        *,
        input: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> list[Result]:
        """Start every command, then collect them; under a lease, each behind the guard,
        and those the guard refused again after a refresh (see the module docstring)."""
        lease = self.lease
        results: dict[int, Result] = {}
        todo = list(range(len(argvs)))
        for _ in range(FENCE_TRIES):
            proof = None if lease is None else lease.proof()
            started = [(i, self._start(argvs[i], proof, piped_input=input is not None, cwd=cwd, env=env)) for i in todo]
            for i, proc in started:
                results[i] = self._collect(argvs[i], proc, limit, input)
            todo = [i for i in todo if refused(results[i])]
            if lease is None or not todo:
                return [results[i] for i in range(len(argvs))]
            lease.refresh()  # LeaseLost when it was lost: the refused commands never ran
        from fleetlib.lock import FENCE_MARGIN_S  # noqa: PLC0415  # loaded by the lease already

        raise FleetOperationError(
            f"could not run `{shlex.join(argvs[todo[0]])}`: its process found the fleet restart lock "
            f"unproven {FENCE_TRIES} times, each within {FENCE_MARGIN_S:g}s of proving it ours "
            "(is the machine overloaded?); stopping without further changes"
        )

    def _start(
        self,
        argv: Sequence[str],
        proof: LeaseProof | None,
        *,
        piped_input: bool = False,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str] | None:
        """Start one command, behind the guard when ``proof`` is given (None when its
        executable does not exist)."""
        try:
            return self.popen(
                list(argv) if proof is None else fenced_argv(proof, argv),
                cwd=cwd,
                stdin=subprocess.PIPE if piped_input else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env if env is not None else self.env,
                pass_fds=() if proof is None else (proof.fd,),
            )
        except FileNotFoundError:
            return None

    def _collect(
        self, argv: Sequence[str], proc: subprocess.Popen[str] | None, limit: float | None, input: str | None = None
    ) -> Result:
        """Wait for a started command (bounded by ``limit``) and build its result."""
        if proc is None:
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
        try:
            out, err = proc.communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            # Do not read to EOF after the kill: a tmux client hands its stdout to the
            # server, so a frozen server would keep the pipe open for ever.
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            return Result(tuple(argv), TIMED_OUT, "", timeout_message(argv, limit))
        return Result(tuple(argv), proc.returncode, out, err)


class DryRunRunner:
    """Print each change (a command shell-quoted, a signal) instead of making it; every
    command 'succeeds'. Queries run for real through ``reader`` (default: a
    :class:`SubprocessRunner`), so the caller's algorithm sees the state as it is; no
    lease is taken; in-process changes are skipped.

    The commands are also kept in ``commands``, so a dry run can report them as data."""

    dry_run = True

    def __init__(self, echo: Callable[[str], None] = print, reader: Runner | None = None) -> None:
        self.echo = echo
        self.reader: Runner = reader if reader is not None else SubprocessRunner()
        self.commands: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        self.commands.append(list(argv))
        self.echo(f"would run: {shlex.join(argv)}" + (f"  (in {cwd})" if cwd else ""))
        return Result(tuple(argv), 0)

    def run_all(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]:
        return [self.run(argv) for argv in argvs]

    def interactive(self, argv: Sequence[str]) -> int:
        return self.run(argv).returncode

    def signal(self, pids: Sequence[int], *signums: int) -> None:
        if pids and signums:
            names = " then ".join(signal.Signals(signum).name for signum in signums)
            self.echo(f"would send {names} to pid(s) {' '.join(map(str, pids))}")

    def fenced(self, lease: Lease) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


def spawn_detached(argv: Sequence[str], env: Mapping[str, str], hold: int) -> subprocess.Popen[bytes]:
    """Start ``argv`` (no shell) in a session of its own, stdin from /dev/null, output to
    this process's, and ``hold`` (a file descriptor) passed down under its own number:
    everything the command starts inherits it, whatever session it moves to. Never waited
    for here (the caller reaps it). OSError when it cannot be started."""
    return subprocess.Popen(
        list(argv), env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=(hold,)
    )


def exec_replacing(argv: Sequence[str]) -> NoReturn:
    """Replace this process with ``argv`` (looked up on ``PATH``, no shell): the terminal
    goes to it. OSError when it cannot be started; never returns otherwise."""
    os.execvp(argv[0], list(argv))  # noqa: S606 - an argv list, no shell


def user_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment plus ``extra`` (for runners aimed at a private manager)."""
    return {**os.environ, **(extra or {})}
