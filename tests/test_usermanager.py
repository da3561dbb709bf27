"""The tests' private user managers (tests/usermanager.py) never reach into one another.

systemd takes the cgroup it starts in as the root of everything it manages, so two managers
started from one cgroup would share every unit's cgroup: stopping a unit in one would kill
the same-named unit's processes in the other. The witness here is /proc, read by the test:
a process is the same process when its pid and its start time are unchanged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cgroups import OwnCgroup, manager_root, own_cgroup_dirs
from tests.conftest import booted_manager, eventually
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
    started = manager.run("systemd-run", "--user", f"--unit={PROBE}", "sleep", "1000")
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


@pytest.mark.systemd
def test_each_manager_runs_its_units_in_a_cgroup_of_its_own(manager_a: UserManager, manager_b: UserManager) -> None:
    roots = []
    for manager in (manager_a, manager_b):
        pid = start_probe(manager)
        own = f"/{manager.cgroup.name}/"
        unit_cgroup = manager.systemctl("show", "-p", "ControlGroup", "--value", PROBE).stdout.strip()
        # The manager's own view and the kernel's agree: the unit is below the manager's cgroup.
        assert own in unit_cgroup
        assert systemd_cgroup(pid) == unit_cgroup
        assert own in systemd_cgroup(manager.process.pid)
        roots.append(unit_cgroup.partition(own)[0] + own)
    assert roots[0] != roots[1]


@pytest.mark.systemd
def test_stop_ends_what_a_killed_manager_left_and_removes_its_cgroup(manager_a: UserManager) -> None:
    pid = start_probe(manager_a)
    before = identity(pid)
    os.kill(manager_a.process.pid, signal.SIGKILL)  # a crashed manager stops nothing itself
    manager_a.process.wait()
    assert identity(pid) == before
    manager_a.stop()
    eventually(lambda: identity(pid) is None, f"the orphaned probe {pid} ends")
    assert manager_a.cgroup.dirs
    assert [path for path in manager_a.cgroup.dirs if path.exists()] == []


@pytest.mark.systemd
def test_a_cgroup_trimmed_before_the_manager_joins_it_is_made_again() -> None:
    # A manager rooted above (started from the root cgroup) trims every empty cgroup below
    # its root when it exits; the directories made for the next manager may go that way.
    try:
        cgroup = OwnCgroup.make(f"fleet-test-{uuid.uuid4().hex[:12]}")
    except OSError as error:
        pytest.skip(f"cannot make a cgroup here: {error}")
    try:
        for path in cgroup.dirs:
            path.rmdir()
        joined = subprocess.run(
            cgroup.join_argv(["cat", "/proc/self/cgroup"]), capture_output=True, text=True, timeout=60, check=False
        )
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.count(f"/{cgroup.name}\n") == len(cgroup.dirs), joined.stdout
    finally:
        cgroup.remove()
    assert [path for path in cgroup.dirs if path.exists()] == []


# --------------------------------------------------------------------------- where the cgroup goes

MOUNTINFO_HYBRID = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 22 0:38 /init.scope /mnt/elsewhere rw,relatime - cgroup2 cgroup2 rw
"""
CGROUP_HYBRID = """\
9:name=systemd:/init.scope
8:pids:/init.scope
4:memory:/process_api/0d38
3:cpuset:/
2:cpu,cpuacct:/init.scope
0::/init.scope
"""
MOUNTINFO_UNIFIED = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
35 22 0:30 / /sys/fs/cgroup\\040x rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""


@pytest.mark.parametrize(
    ("proc_cgroup", "root"),
    [
        (CGROUP_HYBRID, "/"),
        ("1:name=systemd:/system.slice/ci.service\n0::/other\n", "/system.slice/ci.service"),
        ("0::/user.slice/session-1.scope/init.scope\n", "/user.slice/session-1.scope"),
        ("3:cpu:/x\n", None),
        ("", None),
    ],
)
def test_manager_root_is_what_systemd_would_take(proc_cgroup: str, root: str | None) -> None:
    assert manager_root(proc_cgroup) == root


def test_own_cgroup_is_one_path_in_every_hierarchy_systemd_uses() -> None:
    # Below the root systemd would take (not the memory path this process is in: systemd
    # puts a unit at one path in every hierarchy); cpuset is left alone; only root mounts.
    assert own_cgroup_dirs(CGROUP_HYBRID, MOUNTINFO_HYBRID, "m1") == (
        Path("/sys/fs/cgroup/systemd/m1"),
        Path("/sys/fs/cgroup/pids/m1"),
        Path("/sys/fs/cgroup/memory/m1"),
        Path("/sys/fs/cgroup/cpu,cpuacct/m1"),
        Path("/sys/fs/cgroup/unified/m1"),
    )
    assert own_cgroup_dirs("0::/a/init.scope\n", MOUNTINFO_UNIFIED, "m2") == (Path("/sys/fs/cgroup x/a/m2"),)
    assert own_cgroup_dirs("0::/\n", "", "m3") == ()
    assert own_cgroup_dirs("3:cpu:/\n", MOUNTINFO_HYBRID, "m4") == ()
