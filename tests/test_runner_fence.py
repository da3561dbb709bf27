"""Fenced commands (fleetlib.runner): under a lease, each command and signal checks the
lease in its own process after the fork, so a pause of the caller anywhere before the
fork cannot make a change happen after the lease was lost.

The pause is the injected Popen: it runs after every check the caller makes and before
the fork. Real lock files, real child processes; the loss is a real take-over by another
lock instance (``stale_after=0`` breaks it at once).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fleetlib.errors import FleetOperationError
from fleetlib.lock import FENCE_MARGIN_S, LeaseLost, LeaseProof, RestartGuard, acquire_restart_lock, boot_clock
from fleetlib.runner import (
    FENCE_NAME,
    FENCE_REFUSED,
    FENCE_TRIES,
    SHELL,
    SubprocessRunner,
    fenced_argv,
    refused,
    signal_argv,
)
from tests.conftest import eventually


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[RestartGuard]:
    held = acquire_restart_lock(tmp_path, log=lambda _: None)
    yield held
    held.release()


def take_over(home: Path) -> None:
    """Another process's restart breaking the lock (at once: everything counts as stale)."""
    acquire_restart_lock(home, stale_after=0.0, log=lambda _: None)


def pausing(pause: Callable[[], None], when: Callable[[Sequence[str]], bool]) -> Callable[..., subprocess.Popen[str]]:
    """A Popen that runs ``pause`` before the first fork of a command ``when`` accepts."""
    done: list[bool] = []

    def popen(argv: Sequence[str], **options: Any) -> subprocess.Popen[str]:
        if not done and when(argv):
            done.append(True)
            pause()
        return subprocess.Popen(argv, **options)

    return popen


# --------------------------------------------------------------------------- builders


def test_a_fenced_command_is_the_guard_then_the_command_unchanged(tmp_path: Path) -> None:
    proof = LeaseProof(tmp_path / "restart.lock", 7, 12.345)
    argv = fenced_argv(proof, ["systemctl", "--user", "start", "a b"])
    assert argv[:2] == [SHELL, "-c"]
    assert argv[3:] == [
        FENCE_NAME,
        "/proc/self/fd/7",
        str(tmp_path / "restart.lock"),
        "1234",
        "systemctl",
        "--user",
        "start",
        "a b",
    ]
    assert fenced_argv(LeaseProof(tmp_path, 3, None), ["x"])[6] == ""  # no boot clock: no expiry


def test_signals_are_one_command_of_the_shells_kill() -> None:
    assert signal_argv([12, 34], signal.SIGTERM, signal.SIGHUP)[3:] == ["fleet-signal", "TERM,HUP", "12", "34"]


# --------------------------------------------------------------------------- the lease holds


def test_a_fenced_command_runs_as_it_would_unfenced(guard: RestartGuard, tmp_path: Path) -> None:
    runner = SubprocessRunner()
    with runner.fenced(guard):
        result = runner.run(
            ["sh", "-c", 'read -r line; echo "$line $FOO $(pwd) $PPID"; echo oops >&2; exit 3'],
            input="hello\n",
            cwd=str(tmp_path),
            env={**os.environ, "FOO": "bar"},
        )
        missing = runner.run(["definitely-not-a-command-x"])
        both = runner.run_all([["echo", "one"], ["echo", "two"]])
    assert result.argv[0] == "sh"  # the caller's argv, not the guard's
    assert (result.returncode, result.stderr) == (3, "oops\n")
    assert result.stdout == f"hello bar {tmp_path} {os.getpid()}\n"  # exec'd: our direct child
    assert (missing.returncode, missing.stderr) == (127, "definitely-not-a-command-x: command not found\n")
    assert [r.stdout for r in both] == ["one\n", "two\n"]


def test_fenced_signals_reach_their_processes(guard: RestartGuard, tmp_path: Path) -> None:
    log = tmp_path / "log"
    script = (
        f"trap 'echo TERM >> {log}' TERM; trap 'echo HUP >> {log}' HUP; echo up > {log}; while :; do sleep 0.05; done"
    )
    trapper = subprocess.Popen(["sh", "-c", script])
    runner = SubprocessRunner()
    try:
        eventually(log.exists, "the trapping shell is up")
        with runner.fenced(guard):
            runner.signal([trapper.pid, 4_000_000], signal.SIGTERM, signal.SIGHUP)  # a gone pid is skipped
        eventually(lambda: sorted(log.read_text().split()) == ["HUP", "TERM", "up"], "both signals arrived")
    finally:
        trapper.kill()
        trapper.wait()


def test_each_refresh_installs_a_new_file_that_the_proof_holds_open(guard: RestartGuard) -> None:
    first = guard.proof()
    first_file = os.fstat(first.fd)
    assert os.path.samestat(first_file, os.stat(guard.lock.path))
    guard.refresh()
    second = guard.proof()
    assert os.path.samestat(os.fstat(second.fd), os.stat(guard.lock.path))
    assert not os.path.samestat(first_file, os.stat(guard.lock.path))
    now = boot_clock()
    assert now is not None
    assert second.expires is not None
    assert second.expires - now <= FENCE_MARGIN_S  # measured from before the refresh
    take_over(guard.lock.home)
    assert not os.path.samestat(os.fstat(second.fd), os.stat(guard.lock.path))


# --------------------------------------------------------------------------- the lease is lost during a pause


@pytest.mark.parametrize("how", ["run", "run_all"])
def test_a_command_forked_after_the_lease_was_lost_never_runs(guard: RestartGuard, tmp_path: Path, how: str) -> None:
    made = tmp_path / "made"
    seen: list[int] = []

    def pause() -> None:
        seen.append(1)
        take_over(tmp_path)

    runner = SubprocessRunner(popen=pausing(pause, lambda argv: "touch" in argv))
    touch = ["touch", str(made)]
    run: Callable[[], object] = (
        (lambda: runner.run(touch)) if how == "run" else (lambda: runner.run_all([touch, touch]))
    )
    with runner.fenced(guard), pytest.raises(LeaseLost, match="lost the fleet restart lock"):
        run()
    assert seen == [1]  # the caller forked after the loss: only the child could refuse
    assert not made.exists()


def test_a_signal_forked_after_the_lease_was_lost_is_never_sent(guard: RestartGuard, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        runner = SubprocessRunner(popen=pausing(lambda: take_over(tmp_path), lambda argv: "fleet-signal" in argv))
        with runner.fenced(guard), pytest.raises(LeaseLost):
            runner.signal([sleeper.pid], signal.SIGKILL)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------- an expired proof


class ExpiredFirst:
    """A lease whose first proof has already expired (the caller paused past the margin
    after its refresh, and nobody broke the lock meanwhile)."""

    def __init__(self, guard: RestartGuard) -> None:
        self.guard = guard
        self.proofs = 0
        self.refreshes = 0

    def proof(self) -> LeaseProof:
        self.proofs += 1
        proof = self.guard.proof()
        now = boot_clock()
        assert now is not None
        return LeaseProof(proof.path, proof.fd, now - 1.0) if self.proofs == 1 else proof

    def refresh(self) -> None:
        self.refreshes += 1
        self.guard.refresh()


def test_a_command_whose_proof_expired_is_refused_then_run_once_after_a_refresh(
    guard: RestartGuard, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    lease = ExpiredFirst(guard)
    runner = SubprocessRunner()
    with runner.fenced(lease):
        result = runner.run(["sh", "-c", f"echo ran >> {log}"])
    assert result.ok
    assert log.read_text() == "ran\n"  # refused once in its own process, then run exactly once
    assert lease.refreshes >= 1
    assert lease.proofs == lease.refreshes + 1


class NeverProven:
    """A lease whose every proof has expired: the guard refuses every time."""

    def __init__(self, guard: RestartGuard) -> None:
        self.guard = guard

    def proof(self) -> LeaseProof:
        proof = self.guard.proof()
        return LeaseProof(proof.path, proof.fd, 0.0)

    def refresh(self) -> None:
        self.guard.refresh()


def test_a_command_never_proven_in_its_process_fails_in_one_line_without_running(
    guard: RestartGuard, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    runner = SubprocessRunner()
    with runner.fenced(NeverProven(guard)), pytest.raises(FleetOperationError) as caught:
        runner.run(["sh", "-c", f"echo ran >> {log}"])
    assert f"unproven {FENCE_TRIES} times" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not log.exists()


def test_a_commands_own_exit_status_75_is_its_result_not_a_refusal(guard: RestartGuard, tmp_path: Path) -> None:
    log = tmp_path / "log"
    runner = SubprocessRunner()
    with runner.fenced(guard):
        own = runner.run(["sh", "-c", f"echo ran >> {log}; echo 'temporary failure' >&2; exit {FENCE_REFUSED}"])
    assert (own.returncode, own.stderr) == (FENCE_REFUSED, "temporary failure\n")
    assert not refused(own)
    assert log.read_text() == "ran\n"
