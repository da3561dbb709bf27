"""The only place fleet starts a process.

Everything else builds argv lists (``systemd.py``, ``tmux.py``) and hands them to a
:class:`Runner`. ``SubprocessRunner`` runs them for real (never through a shell, file
descriptors closed in the child so no lock leaks into tmux or systemctl);
``DryRunRunner`` prints what would run and runs nothing. Tests substitute a recording
runner to check orchestration order.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

TIMED_OUT: Final = 124  # the exit status a timed-out command reports (as timeout(1) does)

Popen = Callable[..., "subprocess.Popen[str]"]


def timeout_message(argv: Sequence[str], seconds: float | None) -> str:
    return f"{argv[0]} did not answer within {seconds:g}s (is its server frozen or overloaded?)"


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
    """Runs argv lists. ``run_all`` may run them concurrently; results keep the input order."""

    dry_run: bool

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


class SubprocessRunner:
    """Run commands for real, capturing output as text.

    A missing executable is reported as exit status 127 with a message on stderr (like a
    shell would), so callers handle one kind of failure. ``popen`` (``subprocess.Popen``)
    is injectable: every command starts through it.
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
        proc = self._start(argv, piped_input=input is not None, cwd=cwd, env=dict(env) if env is not None else None)
        return self._collect(argv, proc, limit, input)

    def interactive(self, argv: Sequence[str]) -> int:
        """Run a command on the user's terminal (no capture); returns its exit status."""
        try:
            return subprocess.run(list(argv), env=self.env, check=False).returncode
        except FileNotFoundError:
            return 127

    def run_all(self, argvs: Sequence[Sequence[str]], *, timeout: float | None = None) -> list[Result]:
        """Start every command, then collect them: wall time is the slowest, not the sum."""
        limit = timeout if timeout is not None else self.timeout
        started = [(argv, self._start(argv)) for argv in argvs]
        return [self._collect(argv, proc, limit) for argv, proc in started]

    def _start(
        self,
        argv: Sequence[str],
        *,
        piped_input: bool = False,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str] | None:
        """Start one command (None when its executable does not exist)."""
        try:
            return self.popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.PIPE if piped_input else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env if env is not None else self.env,
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
    """Print each command (shell-quoted) instead of running it; every command 'succeeds'.

    The commands are also kept in ``commands``, so a dry run can report them as data."""

    dry_run = True

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo
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


def user_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment plus ``extra`` (for runners aimed at a private manager)."""
    return {**os.environ, **(extra or {})}
