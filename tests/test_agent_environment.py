"""An agent's environment is the documented base plus the roster's ``env``, on both backends,
whatever tmux client opens its window; ``doctor``'s ``commands`` check reads that environment.

The witness is the agent process itself: its ``/proc/<pid>/environ``, found by its marker
and its command line, never through the fleet's own status. Each command lives in a
directory of its own that is on ``PATH`` only where the test says: at ``fleet install``
(systemd) or ``fleet start`` (tmux), never on the user manager's ``PATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlib import pane
from fleetlib.transcript import HEADER_RE
from tests.conftest import FleetEnv, InvUser, eventually, run_inv
from tests.real_clis import installed_clis
from tests.test_fleet_tmux import TmuxEnv

# The base the README documents (captured at install, or by the `fleet start` on tmux), and
# what tmux and the shell add to every window's process.
BASE = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "PATH", "XDG_RUNTIME_DIR")
ADDED = {"TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "TMUX", "TMUX_PANE", "PWD", "FLEET_AGENT"}
ODD_VALUE = 'va lue $HOME %n "q";'
CODEX_MENU = "Sign in with ChatGPT"


def environ_of_file(path: Path) -> dict[str, str]:
    return dict(item.decode().split("=", 1) for item in path.read_bytes().split(b"\0") if b"=" in item)


def environ_of(pid: int) -> dict[str, str]:
    return environ_of_file(Path(f"/proc/{pid}/environ"))


def agent_process(socket: Path, name: str, program: str) -> int | None:
    """The live process running ``program`` that carries agent ``name``'s marker."""
    marker = f"FLEET_AGENT={name}@{socket}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and Path(argv[0].decode()).name == program:
            return int(entry.name)
    return None


def probe(directory: Path, name: str) -> None:
    """An agent command that only ``directory`` holds: it becomes a ``sleep`` (same pid)."""
    directory.mkdir(exist_ok=True)
    (directory / name).write_text("#!/bin/sh\nexec sleep 100000\n")
    (directory / name).chmod(0o755)


@dataclass
class Fleet:
    """One fleet home on one backend: ``up`` installs (systemd) and starts it, with
    ``at_install`` as the environment of install (systemd) or start (tmux)."""

    user: InvUser
    home: Path
    backend: str

    @property
    def socket(self) -> Path:
        return self.home / "fleet" / "run" / "tmux.sock"

    def write_roster(self, body: str) -> None:
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("version: 1\nagents:\n" + body)

    def with_path(self, first: Path) -> dict[str, str]:
        env = dict(self.user.env)
        env["PATH"] = f"{first}{os.pathsep}{env['PATH']}"
        return env

    def inv(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_inv(args, env or self.user.env)

    def up(self, at_install: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Install with ``at_install`` (systemd), then start: under systemd from the plain
        environment (what the unit runs must not depend on it), on tmux with ``at_install``."""
        installed = self.inv("fleet.install", env=at_install)
        assert installed.returncode == 0, installed.stderr
        return self.inv("fleet.start", env=None if self.backend == "systemd" else at_install)

    def doctor(self, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
        result = self.inv("fleet.doctor", "--json", env=env)
        assert result.returncode in (0, 1), result.stderr
        return {row["name"]: row for row in json.loads(result.stdout)}

    def screen(self, name: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), "capture-pane", "-p", "-t", f"=fleet:={name}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout


def test_the_supervisor_gives_its_agent_exactly_its_parameters_whatever_the_window_has(tmp_path: Path) -> None:
    """No tmux: the window's environment is what this test gives the supervisor, as a tmux
    client's PATH, a default-shell's SHELL or a stale server variable would be."""
    run_dir, bin_dir, out = tmp_path / "run", tmp_path / "bin", tmp_path / "environ"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    bin_dir.mkdir()
    (bin_dir / "dump-env").write_text('#!/bin/sh\n/bin/cat /proc/$$/environ > "$1"\n')  # $$: the agent itself
    (bin_dir / "dump-env").chmod(0o755)
    spec = pane.PaneSpec("a1", "=fleet:=a1", "/bin/true", str(tmp_path / "s"), str(tmp_path), 1, 60.0)
    # The agent's PATH finds its command only; the window's finds the supervisor's own date.
    given = {"PATH": str(bin_dir), "IFS": ":", "ODD": ODD_VALUE + "\nline", "FLEET_AGENT": "a1@s"}
    window = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/wrong", "LC_ALL": "stale", "HOME": "/", "FLEET_AGENT": "a1@s"}
    done = subprocess.run(
        pane.pane_argv(spec, ["dump-env", str(out)], run_dir, given),
        env=window,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header = HEADER_RE.search(done.stdout)
    assert header is not None, done.stdout
    assert header["time"].startswith("20"), done.stdout  # the supervisor's own date ran
    assert header["command"] == f"dump-env {out}"  # spaced as ever, whatever the agent's IFS
    assert environ_of_file(out) == {**given, "PWD": str(tmp_path)}


@pytest.fixture(
    params=[
        pytest.param("systemd", marks=[pytest.mark.systemd, pytest.mark.tmux]),
        pytest.param("tmux", marks=pytest.mark.tmux),
    ]
)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    if request.param == "systemd":
        fleet_env: FleetEnv = request.getfixturevalue("fleet_env")
        yield Fleet(fleet_env, fleet_env.home, "systemd")
        return
    tenv = TmuxEnv(tmp_path)
    fleet = Fleet(tenv, tenv.home, "tmux")
    try:
        yield fleet
    finally:
        fleet.inv("fleet.stop")
        subprocess.run(["tmux", "-S", str(fleet.socket), "kill-server"], capture_output=True, check=False)


def test_agents_get_exactly_the_base_from_install_plus_the_roster_env(fleet: Fleet, tmp_path: Path) -> None:
    at_install, roster_only = tmp_path / "at-install", tmp_path / "roster-only"
    probe(at_install, "probe-install")
    probe(roster_only, "probe-roster")
    probe(at_install, "probe-lost")  # on the install PATH, but its roster PATH leaves that out
    roster_path = f"{roster_only}:/usr/bin:/bin"
    fleet.write_roster(
        f"  - name: found\n    runtime: custom\n    command: [probe-install]\n"
        f"    env: {{FLEET_TEST: {json.dumps(ODD_VALUE)}, LANG: C}}\n"
        f"  - name: pathed\n    runtime: custom\n    command: [probe-roster]\n    env: {{PATH: {json.dumps(roster_path)}}}\n"
        f"  - name: lost\n    runtime: custom\n    command: [probe-lost]\n    env: {{PATH: /usr/bin:/bin}}\n"
    )
    install_env = fleet.with_path(at_install)
    started = fleet.up(install_env)
    assert started.returncode == 1, started.stdout  # only `lost` fails: its command is not on its PATH
    assert "lost" in started.stderr
    assert "fleet: probe-lost: command not found" in started.stderr

    base = {key: install_env[key] for key in BASE if install_env.get(key)}
    wanted = {
        "found": {**base, "FLEET_TEST": ODD_VALUE, "LANG": "C"},
        "pathed": {**base, "PATH": roster_path},
    }
    for name, expected in wanted.items():
        pid = agent_process(fleet.socket, name, "sleep")
        assert pid is not None, f"{name} is not running: {fleet.screen(name)}"
        seen = environ_of(pid)
        assert {key: value for key, value in seen.items() if key not in ADDED} == expected, name
        assert seen["FLEET_AGENT"] == f"{name}@{fleet.socket}"

    # doctor, from a shell whose PATH has neither directory: the running agents' commands
    # resolve on the PATH their processes carry; `lost`'s does not on the one it gets.
    checks = fleet.doctor()
    commands = checks["commands"]
    assert commands["ok"] is False, commands
    detail = str(commands["detail"])
    assert "lost: probe-lost not found on PATH=/usr/bin:/bin" in detail
    assert "found:" not in detail
    assert "pathed" not in detail

    # Without `lost`, the check passes, saying where each PATH was read.
    fleet.write_roster(
        f"  - name: found\n    runtime: custom\n    command: [probe-install]\n"
        f"    env: {{FLEET_TEST: {json.dumps(ODD_VALUE)}, LANG: C}}\n"
        f"  - name: pathed\n    runtime: custom\n    command: [probe-roster]\n    env: {{PATH: {json.dumps(roster_path)}}}\n"
    )
    if fleet.backend == "systemd":  # its unit goes (on tmux, the roster alone is what doctor reads)
        assert fleet.inv("fleet.install", env=install_env).returncode == 0
    commands = fleet.doctor()["commands"]
    assert commands["ok"] is True, commands
    assert "found, pathed: on the PATH of the running agent process" in str(commands["detail"])


@pytest.mark.systemd
@pytest.mark.tmux
def test_doctor_reads_a_stopped_agents_path_from_its_installed_unit(fleet_env: FleetEnv, tmp_path: Path) -> None:
    at_install = tmp_path / "at-install"
    probe(at_install, "probe-install")
    fleet = Fleet(fleet_env, fleet_env.home, "systemd")
    fleet.write_roster("  - name: s1\n    runtime: custom\n    command: [probe-install]\n")
    install_env = fleet.with_path(at_install)
    assert fleet.inv("fleet.install", env=install_env).returncode == 0
    # Not running; doctor runs from a shell without the directory: the unit carries it.
    commands = fleet.doctor()["commands"]
    assert commands["ok"] is True, commands
    assert "s1: on the PATH its installed unit gives it" in str(commands["detail"])
    # Installed from a shell without it: the unit's PATH lacks it, whatever doctor's shell has.
    assert fleet.inv("fleet.install").returncode == 0
    commands = fleet.doctor(env=install_env)["commands"]
    assert commands["ok"] is False, commands
    assert f"s1: probe-install not found on PATH={fleet_env.env['PATH']}" in str(commands["detail"])
    assert "its installed unit" in str(commands["detail"])


@pytest.mark.systemd
@pytest.mark.tmux
def test_the_real_codex_cli_from_an_npm_prefix_comes_up_under_systemd(fleet_env: FleetEnv, tmp_path: Path) -> None:
    prefix_bin = installed_clis().codex.parent
    assert str(prefix_bin) not in fleet_env.env["PATH"].split(os.pathsep)
    agent_home = tmp_path / "agent-home"
    agent_home.mkdir()
    fleet = Fleet(fleet_env, fleet_env.home, "systemd")
    fleet.write_roster(
        f"  - name: cx\n    runtime: codex\n    cwd: {json.dumps(str(tmp_path))}\n"
        f"    env: {{HOME: {json.dumps(str(agent_home))}}}\n    log_max_bytes: 4096\n    log_keep: 3\n"
    )
    started = fleet.up(fleet.with_path(prefix_bin))
    assert started.returncode == 0, (started.stderr, fleet.screen("cx"))
    eventually(lambda: CODEX_MENU in fleet.screen("cx"), "Codex shows its sign-in menu", limit=120)
    assert "command not found" not in fleet.screen("cx")
    # Its transcript, written by the pane's writer under systemd, rotated by the watcher
    # while the TUI redraws (each resize draws the whole screen again), reads as its screen.
    logs = fleet.home / "fleet" / "logs"
    widths = iter(range(10_000))

    def redrawn_and_rotated() -> bool:
        width = 100 + next(widths) % 2 * 20
        subprocess.run(
            ["tmux", "-S", str(fleet.socket), "resize-window", "-t", "=fleet:=cx", "-x", str(width)], check=False
        )
        return (logs / "cx.log.1").exists() and (logs / "cx.log").exists()

    eventually(redrawn_and_rotated, "the real CLI's transcript rotated and written on", limit=120, poll=0.3)
    shown = fleet.inv("fleet.logs", "--agent", "cx")
    assert shown.returncode == 0, shown.stderr
    assert CODEX_MENU in shown.stdout
    assert fleet.inv("fleet.stop").returncode == 0
