"""A command imports only what it uses (issue 22; docs/development/startup.md).

Each case runs the ``fleet`` program's ``main`` in a fresh interpreter and records, as it
exits, every module that got imported; the assertions are about that set, never about time
(the timing targets are the cli benchmark's: ``python -m benchmarks cli``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl import options
from tests.conftest import REPO

# The fleetlib modules every command may load: the package and its exceptions (the task
# wrapper turns a FleetError into one error line), plus pure data modules the task modules
# name at import time: hosts (the LOCAL name), paths (FleetPaths), results (the default
# progress hook), defaults (the library's default timeouts, quoted in help). Each imports
# only the standard library.
ALLOWED_AT_START: frozenset[str] = frozenset(
    {"fleetlib", "fleetlib.errors", "fleetlib.hosts", "fleetlib.paths", "fleetlib.results", "fleetlib.defaults"}
)
# Heavy or optional packages that no command loads unless it needs them (hosts: Fabric and
# paramiko; transcripts: pyte; `top`: Rich and psutil; notifications: apprise).
NEVER_AT_START: tuple[str, ...] = ("fabric", "paramiko", "pyte", "rich", "psutil", "apprise")
# What `status` must not load: the hosts code and Fabric (no hosts in the roster), the build
# code, `top`'s Rich; nor what only other commands use: sending (messaging, broadcast, and
# uuid with them), waiting, usage figures and `top`, transcripts, the unit files' builder,
# `secrets` and hashlib (a tmux fleet's names need no hash), and the result types (status
# makes none: its FleetStatus is the status model's), nor the worktree (git) code for a
# roster without worktrees, nor screen reading while the watcher's records are fresh.
NEVER_FOR_STATUS: tuple[str, ...] = (
    "fabric",
    "paramiko",
    "fleetlib.remote",
    "fleetlib.controller",
    "fleetlib.devbuild",
    "rich",
    "fleetlib.messaging",
    "fleetlib.broadcast",
    "fleetlib.waiting",
    "fleetlib.usage",
    "fleetlib.top",
    "fleetlib.transcript",
    "fleetlib.units",
    "uuid",
    "secrets",
    "hashlib",
    "fleetlib.results",
    "fleetlib.worktree",
    # A fleet without hooked agents (its agents run `shell`) has no hook records to read, and
    # the watcher's configuration is written by install and start.
    "fleetlib.hooks",
    "fleetlib.watcher_config",
)
TASK_MODULES: tuple[str, ...] = (
    "fleetctl.namespaces",
    "fleetctl.fleet_tasks",
    "fleetctl.hosts_tasks",
    "fleetctl.build_tasks",
    "fleetctl.roster_tasks",
    "fleetctl.top_tasks",
)

# Run the program as its console script does, then write the names of the loaded modules
# (at exit, after the command ran) to the file named by the first argument.
PROBE = """
import atexit, sys
out = sys.argv[1]
def record():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(record)
from fleetctl.program import main
sys.argv = ["fleet", *sys.argv[2:]]
main()
"""

ROSTER = "version: 1\ntransport: tmux\nagents:\n" + "".join(
    f"  - name: a{i}\n    runtime: shell\n    command: [sleep, '100000']\n" for i in (1, 2)
)


def loaded_by(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, set[str]]:
    """Run ``fleet <args>`` in a fresh interpreter: (exit status, names of the modules it loaded)."""
    out = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=REPO,  # this working tree's packages, as `python -m fleetctl` would find them
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.exists(), f"fleet {' '.join(args)} did not get to exit normally: {done.stderr}"
    return done.returncode, set(out.read_text().split())


def under(names: set[str], roots: tuple[str, ...]) -> list[str]:
    """The names in ``names`` that are one of ``roots`` or inside one of them."""
    return sorted(n for n in names if any(n == root or n.startswith(root + ".") for root in roots))


@pytest.fixture
def fleet_env(tmp_path: Path) -> dict[str, str]:
    """A private fleet home whose roster has no hosts, on the tmux backend (private runtime
    dir, no session bus: no user manager answers, so ``auto`` picks tmux)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    roster = tmp_path / "home" / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(ROSTER)
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHONPATH")}
    return {**env, "MOSAIC_HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(runtime)}


@pytest.fixture
def running_fleet(fleet_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Two agents running on tmux, stopped afterwards."""
    fleet = [sys.executable, "-m", "fleetctl"]
    started = subprocess.run(
        [*fleet, "start"], cwd=REPO, env=fleet_env, capture_output=True, text=True, timeout=120, check=False
    )
    try:
        assert started.returncode == 0, started.stderr
        yield fleet_env
    finally:
        subprocess.run([*fleet, "stop"], cwd=REPO, env=fleet_env, capture_output=True, timeout=120, check=False)


def test_version_loads_no_task_module_and_no_fleetlib_code(fleet_env: dict[str, str], tmp_path: Path) -> None:
    code, names = loaded_by(["--version"], fleet_env, tmp_path)
    assert code == 0
    assert under(names, TASK_MODULES) == []
    # fleetlib.defaults: constants only, which the program's options quote in help texts.
    assert under(names, ("fleetlib",)) == ["fleetlib", "fleetlib.defaults", "fleetlib.errors"]
    assert under(names, NEVER_AT_START) == []


@pytest.mark.parametrize("args", [["--list"], ["--help"], ["--help", "status"], ["--bogus"]])
def test_listing_and_help_load_the_tasks_but_not_the_library(
    args: list[str], fleet_env: dict[str, str], tmp_path: Path
) -> None:
    code, names = loaded_by(args, fleet_env, tmp_path)
    assert code == (2 if args == ["--bogus"] else 0)
    if args != ["--bogus"]:
        assert "fleetctl.fleet_tasks" in names  # it did list the tasks
    assert sorted(set(under(names, ("fleetlib",))) - ALLOWED_AT_START) == []
    assert under(names, NEVER_AT_START) == []


def test_roster_list_loads_no_build_or_hosts_code(fleet_env: dict[str, str], tmp_path: Path) -> None:
    code, names = loaded_by(["roster.list"], fleet_env, tmp_path)
    assert code == 0
    assert "fleetlib.roster" in names
    assert under(names, ("fleetlib.devbuild", "fleetlib.remote", "fleetlib.controller", *NEVER_AT_START)) == []


@pytest.mark.parametrize("args", [["doctor"], ["hosts.list"], ["install"], ["stop"], ["worktree.list"]])
def test_commands_of_a_fleet_without_hosts_load_neither_hosts_nor_build_code(
    args: list[str], fleet_env: dict[str, str], tmp_path: Path
) -> None:
    # Fabric and the hosts code only with `hosts:` in the roster; the build code only under build.*.
    code, names = loaded_by(args, fleet_env, tmp_path)
    assert code == 0
    assert under(names, ("fabric", "paramiko", "fleetlib.remote", "fleetlib.controller", "fleetlib.devbuild")) == []


def test_status_loads_neither_hosts_nor_build_code(running_fleet: dict[str, str], tmp_path: Path) -> None:
    code, names = loaded_by(["status"], running_fleet, tmp_path)
    assert code == 0  # both agents up
    assert "fleetlib.status" in names
    assert under(names, NEVER_FOR_STATUS) == []


def test_status_loads_no_screen_emulator(running_fleet: dict[str, str], tmp_path: Path) -> None:
    # States come from the watcher's records (or the screen's plain text): pyte, which
    # renders transcripts, is for `fleet logs`.
    code, names = loaded_by(["status"], running_fleet, tmp_path)
    assert code == 0
    assert under(names, ("pyte",)) == []


def test_status_on_tmux_loads_neither_the_lock_nor_the_systemd_backend(
    running_fleet: dict[str, str], tmp_path: Path
) -> None:
    # status takes no lock, and a tmux fleet has no units.
    code, names = loaded_by(["status"], running_fleet, tmp_path)
    assert code == 0
    assert under(names, ("fleetlib.lock", "fleetlib.backend_systemd", "fleetlib.doctor")) == []


def test_the_defaults_quoted_in_help_are_the_library_defaults() -> None:
    # options.py writes them out so that --help need not import the modules defining them.
    from fleetlib.engine import WAIT_TIMEOUT_S
    from fleetlib.messaging import VERIFY_TIMEOUT_S
    from fleetlib.waiting import DEFAULT_TIMEOUT_S, WAITABLE

    assert options.WAIT_TIMEOUT_S == WAIT_TIMEOUT_S
    assert options.VERIFY_TIMEOUT_S == VERIFY_TIMEOUT_S
    assert options.WAIT_FOR_DEFAULT_S == DEFAULT_TIMEOUT_S
    assert options.WAITABLE == WAITABLE


@pytest.mark.parametrize("name", ["fleet", "invoke", "pytest", "not-a-distribution-here"])
def test_version_read_without_importlib_metadata_is_what_importlib_metadata_says(name: str) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from fleetctl.program import installed_version

    try:
        expected: str | None = version(name)
    except PackageNotFoundError:
        expected = None
    assert installed_version(name) == expected


def test_version_loads_no_importlib_metadata(fleet_env: dict[str, str], tmp_path: Path) -> None:
    code, names = loaded_by(["--version"], fleet_env, tmp_path)
    assert code == 0
    assert "importlib.metadata" not in names


# --------------------------------------------------------------------------- the backend probe


@pytest.mark.parametrize(
    ("present", "extra", "expected"),
    [
        ((), {}, True),  # nothing to connect to: tmux without a systemctl process
        (("bus",), {}, False),
        (("systemd/private",), {}, False),
        ((), {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/elsewhere/bus"}, False),
        ((), {"XDG_RUNTIME_DIR": ""}, False),  # unset: systemctl decides, so it is asked
        ((), {"XDG_RUNTIME_DIR": "relative/dir"}, False),
    ],
)
def test_auto_asks_systemctl_only_when_a_user_manager_could_answer(
    present: tuple[str, ...], extra: dict[str, str], expected: bool, tmp_path: Path
) -> None:
    from fleetlib.backend import no_user_manager_socket, resolve_backend
    from tests.fakes import FakeRunner

    for name in present:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()  # a socket in life; the probe only asks whether the name exists
    environ = {"XDG_RUNTIME_DIR": str(tmp_path), **extra}
    assert no_user_manager_socket(environ) is expected
    probe = FakeRunner()  # answers `running`, as a reachable manager would
    assert resolve_backend("auto", probe, environ) == ("tmux" if expected else "systemd")
    assert len(probe.calls) == (0 if expected else 1)
    assert resolve_backend("auto", FakeRunner()) == "systemd"  # no environment given: always asked
