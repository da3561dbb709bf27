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
from typing import Protocol


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

    def error_line(self) -> str:
        """The first non-empty line of stderr (the cause; later lines are usually hints such
        as "See systemctl status ..."), or the exit status when stderr is empty."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[0] if lines else f"exit status {self.returncode}"


class Runner(Protocol):
    """Runs argv lists. ``run_all`` may run them concurrently; results keep the input order."""

    dry_run: bool

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None) -> Result: ...

    def run_all(self, argvs: Sequence[Sequence[str]]) -> list[Result]: ...

    def interactive(self, argv: Sequence[str]) -> int: ...


class SubprocessRunner:
    """Run commands for real, capturing output as text.

    A missing executable is reported as exit status 127 with a message on stderr (like a
    shell would), so callers handle one kind of failure.
    """

    dry_run = False

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float | None = 300.0) -> None:
        self.env = dict(env) if env is not None else None
        self.timeout = timeout

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None) -> Result:
        try:
            done = subprocess.run(
                list(argv),
                cwd=cwd,
                input=input,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL if input is None else None,
            )
        except FileNotFoundError:
            return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(tuple(argv), 124, "", f"{argv[0]}: timed out after {self.timeout}s")
        return Result(tuple(argv), done.returncode, done.stdout, done.stderr)

    def interactive(self, argv: Sequence[str]) -> int:
        """Run a command on the user's terminal (no capture); returns its exit status."""
        try:
            return subprocess.run(list(argv), env=self.env, check=False).returncode
        except FileNotFoundError:
            return 127

    def run_all(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        """Start every command, then collect them: wall time is the slowest, not the sum."""
        started: list[tuple[Sequence[str], subprocess.Popen[str] | None]] = []
        for argv in argvs:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=self.env,
                )
            except FileNotFoundError:
                proc = None
            started.append((argv, proc))
        results: list[Result] = []
        for argv, proc in started:
            if proc is None:
                results.append(Result(tuple(argv), 127, "", f"{argv[0]}: command not found"))
                continue
            try:
                out, err = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                results.append(Result(tuple(argv), 124, out, f"{argv[0]}: timed out after {self.timeout}s"))
                continue
            results.append(Result(tuple(argv), proc.returncode, out, err))
        return results


class DryRunRunner:
    """Print each command (shell-quoted) instead of running it; every command 'succeeds'."""

    dry_run = True

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None) -> Result:
        self.echo(f"would run: {shlex.join(argv)}" + (f"  (in {cwd})" if cwd else ""))
        return Result(tuple(argv), 0)

    def run_all(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        return [self.run(argv) for argv in argvs]

    def interactive(self, argv: Sequence[str]) -> int:
        return self.run(argv).returncode


def user_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment plus ``extra`` (for runners aimed at a private manager)."""
    return {**os.environ, **(extra or {})}
