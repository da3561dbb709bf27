"""The tests' private user managers (tests/usermanager.py) never reach into one another.

systemd takes the cgroup it starts in as the root of everything it manages, so two managers
started from one cgroup would share every unit's cgroup: stopping a unit in one would kill
the same-named unit's processes in the other. The witness here is /proc, read by the test:
a process is the same process when its pid and its start time are unchanged.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import booted_manager
from tests.usermanager import UserManager

PROBE = "fleet-harness-probe.service"


@pytest.fixture
def manager_a() -> Iterator[UserManager]:
    yield from booted_manager()


@pytest.fixture
def manager_b() -> Iterator[UserManager]:
    yield from booted_manager()


def start_probe(manager: UserManager) -> int:
    """Run ``sleep`` as the transient unit PROBE under ``manager``; return its pid."""
    started = subprocess.run(
        ["systemd-run", "--user", f"--unit={PROBE}", "sleep", "1000"],
        env=manager.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    pid = int(manager.systemctl("show", "-p", "MainPID", "--value", PROBE).stdout.strip())
    assert pid > 0
    return pid


def identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of a live process, None once it has exited (zombies count as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else (pid, fields[19])


def systemd_cgroup(pid: int) -> str:
    """The cgroup of ``pid`` as the manager tracks it (name=systemd on hybrid, else cgroup2)."""
    lines = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    return lines.get("name=systemd", lines[""])


@pytest.mark.systemd
def test_stopping_a_unit_in_one_manager_leaves_the_same_named_unit_of_another_running(
    manager_a: UserManager, manager_b: UserManager
) -> None:
    pid_a, pid_b = start_probe(manager_a), start_probe(manager_b)
    before = identity(pid_a)
    assert before is not None
    assert identity(pid_b) is not None

    stopped = manager_b.systemctl("stop", PROBE)
    assert stopped.returncode == 0, stopped.stderr
    assert identity(pid_b) is None

    assert identity(pid_a) == before, f"stopping {PROBE} in manager B ended manager A's process {pid_a}"
    os.kill(pid_a, 0)  # and the kernel agrees: signal 0 reaches it
    assert manager_a.systemctl("is-active", PROBE).stdout.strip() == "active"
    assert manager_a.systemctl("show", "-p", "MainPID", "--value", PROBE).stdout.strip() == str(pid_a)
