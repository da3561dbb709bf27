"""Ending a dead tmux server's generation (fleetlib.orphans) against real processes.

The processes carry a fleet marker for a socket under the test's own directory; a moment
between two generations is the bound (a new server's start time, in the watcher): what
started before it is the old generation, what started after is a new one that must be
left alone. The witness is /proc, read by the test itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleetlib import orphans, procs
from tests.conftest import eventually

STUBBORN = "trap '' HUP TERM; while :; do sleep 1; done"


def _alive(pid: int) -> bool:
    state = procs.state(pid)
    return state not in ("", "Z", "X")


def _spawn(spawned: list[subprocess.Popen[bytes]], marker: str, script: str) -> int:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), procs.MARKER_ENV: marker}
    proc = subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)
    spawned.append(proc)
    return proc.pid


def _next_tick() -> None:
    """Wait until the clock-tick counter moved on, so the next process starts in a later tick."""
    first = orphans.now_ticks()
    assert first is not None
    eventually(lambda: (orphans.now_ticks() or 0) > first + 1, "the next clock tick", poll=0.005)


def test_ends_the_old_generation_even_signal_ignorers_and_spares_the_new_one(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    # Both fleets' sockets have a live server throughout, so no sweep of stray processes
    # (another test session's) takes these for orphans; the bound is a moment between the
    # two generations, as a new server's start time would be.
    fleet, other = str(tmp_path / "tmux.sock"), str(tmp_path / "other.sock")
    for path in (fleet, other):
        subprocess.run(["tmux", "-S", path, "-f", "/dev/null", "new-session", "-d", "sleep 300"], check=True)
    try:
        stubborn = _spawn(spawned, f"a1@{fleet}", STUBBORN)
        removed = _spawn(spawned, f"gone@{fleet}", "exec sleep 300")  # an agent no longer in the roster
        other_fleet = _spawn(spawned, f"a1@{other}", "exec sleep 300")  # another fleet's: never ours to end
        _next_tick()
        bound = orphans.now_ticks()
        assert bound is not None
        _next_tick()
        new = _spawn(spawned, f"a1@{fleet}", "exec sleep 300")
        began = time.monotonic()
        left = orphans.end_generation(fleet, {"a1": 1.0}, lambda: bound, default_timeout=1.0)
        assert left == []
        assert not _alive(stubborn)
        assert not _alive(removed)
        assert _alive(new), "the new generation was ended"
        assert _alive(other_fleet), "another fleet's process was ended"
        assert time.monotonic() - began < 1.0 + orphans.KILL_GRACE_S
    finally:
        for path in (fleet, other):
            subprocess.run(["tmux", "-S", path, "kill-server"], check=False)


def test_a_round_without_a_bound_ends_nothing(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    fleet = str(tmp_path / "tmux.sock")
    pid = _spawn(spawned, f"a1@{fleet}", "exec sleep 300")
    assert orphans.end_generation(fleet, {}, lambda: None, default_timeout=1.0) == []
    assert _alive(pid)


def test_gives_up_on_what_outlives_sigkill_and_returns_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A process stuck in the kernel (state D) outlives SIGKILL: modelled by a scan that
    # keeps finding it, on a fake clock.
    clock = [0.0]
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(orphans, "old_generation", lambda fleet_id, bound: {4242: "a1"})
    monkeypatch.setattr(procs, "signal_all", lambda pids, signum: sent.extend((pid, signum) for pid in pids))

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    fleet = str(tmp_path / "tmux.sock")
    left = orphans.end_generation(
        fleet, {"a1": 2.0}, lambda: 1, default_timeout=9.0, clock=lambda: clock[0], sleep=sleep
    )
    assert left == [4242]
    assert sent[:2] == [(4242, signal.SIGTERM), (4242, signal.SIGHUP)]  # once, at first sight
    assert signal.SIGTERM not in [signum for _, signum in sent[2:]]
    first_kill = next(i for i, (_, signum) in enumerate(sent) if signum == signal.SIGKILL)
    assert first_kill == 2
    assert 2.0 + orphans.KILL_GRACE_S <= clock[0] < 2.0 + orphans.KILL_GRACE_S + 2 * orphans.POLL_S


def test_with_no_server_the_bound_is_the_moment_before_asking() -> None:
    # Defect: the watcher of a killed server took "now" after asking whether a server
    # answered; a `fleet start` whose new server came up meanwhile had its first agent
    # processes (started in between) counted as the old generation and ended.
    moments = iter([100, 200])
    asked: list[int] = []

    def server_pid() -> int:
        asked.append(1)
        return orphans.NO_SERVER

    assert orphans.generation_bound(server_pid, now=lambda: next(moments)) == 100
    assert asked == [1]
    assert orphans.generation_bound(lambda: None, now=lambda: 5) is None  # unsure: end nothing
    me = int(procs.start_ticks(os.getpid()))
    assert orphans.generation_bound(os.getpid, now=lambda: 5) == me  # the answering server's start
