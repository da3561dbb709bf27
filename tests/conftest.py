"""Shared fixtures: run the real `inv` command line against a private fleet home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.usermanager import UserManager, boot

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROSTER = REPO / "roster.example.yaml"

InvRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private fleet home (never the user's ~/.config/mosaic)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def run_inv(
    args: Sequence[str], env: dict[str, str], *, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `inv <args>` in the repo as a user would (a real subprocess, output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )


def run_inv_concurrently(argsets: Sequence[Sequence[str]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Start every `inv` at once, then collect (exit status, stdout, stderr) for each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in argsets
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    return results


class InvUser:
    """A user of one fleet home: subclasses say which environment `inv` runs with."""

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def inv(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_inv(args, self.env, input=input)

    def inv_ok(self, *args: str) -> str:
        result = self.inv(*args)
        assert result.returncode == 0, f"inv {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        return result.stdout


@pytest.fixture
def inv(home: Path) -> InvRunner:
    """Run `inv <args>` with MOSAIC_HOME pointing at ``home``."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_inv(args, {**os.environ, "MOSAIC_HOME": str(home), **(env or {})}, input=input)

    return run


@pytest.fixture(scope="session")
def user_manager() -> Iterator[UserManager]:
    """A private systemd --user manager for the whole session; skips (fails in CI) if it cannot boot."""
    booted = boot()
    if isinstance(booted, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the systemd tests, but no user manager could be booted: {booted}")
        pytest.skip(f"cannot boot a systemd --user manager here: {booted}")
    yield booted
    booted.stop()


@dataclass
class FleetEnv(InvUser):
    """One test's fleet: a private home (so a private tmux socket) on the shared manager."""

    home: Path
    manager: UserManager

    @property
    def env(self) -> dict[str, str]:
        return {**self.manager.env, "MOSAIC_HOME": str(self.home)}

    def write_roster(self, text: str) -> None:
        roster = self.home / "fleet" / "roster.yaml"
        roster.parent.mkdir(parents=True, exist_ok=True)
        roster.write_text(text)

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True, check=False)


@pytest.fixture
def fleet_env(user_manager: UserManager, tmp_path: Path) -> Iterator[FleetEnv]:
    env = FleetEnv(tmp_path / "home", user_manager)
    env.home.mkdir()
    yield env
    env.inv("fleet.uninstall")
    user_manager.systemctl("reset-failed")
    env.tmux("kill-server")
