"""Flags through the real entry points (`inv` and `fleet`): every bad flag is one line on
stderr, exit 2, no traceback, and nothing changed; `-h` is help; value flags show what
they take."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetlib.systemd import UnitNames
from tests.conftest import run_inv, run_module

Entry = Callable[..., subprocess.CompletedProcess[str]]

ROSTER = "version: 1\ntransport: tmux\nagents:\n  - name: a1\n    runtime: custom\n    command: [sleep, '100000']\n"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    roster = tmp_path / "home" / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(ROSTER)
    base = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    return {**base, "MOSAIC_HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(runtime)}


def run_fleet(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_module("fleetctl", args, env, timeout=60)


def run_inv_args(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_inv(args, env, timeout=60)


def inv_name(task: str) -> str:
    return task if "." in task else f"fleet.{task}"


ENTRIES = {"inv": (run_inv_args, inv_name), "fleet": (run_fleet, lambda task: task)}

BAD = [
    (["restart", "--timeout", "abc"], "--timeout: 'abc' is not a number of seconds"),
    (["restart", "--timeout", "0"], "--timeout: must be a finite number of seconds > 0"),
    (["restart", "--timeout", "-1"], "--timeout: must be a finite number of seconds > 0"),
    (["start", "--timeout", "nan"], "--timeout: must be a finite number of seconds > 0"),
    (["stop", "--timeout", "inf"], "--timeout: must be a finite number of seconds > 0"),
    (["restart", "--lock-timeout", "0"], "--lock-timeout: must be a finite number of seconds > 0"),
    (["send", "--agent", "a1", "--message", "hi", "--timeout", "nan"], "--timeout: must be a finite"),
    (["send", "--agent", "a1"], "--message is required"),
    (["logs", "--agent", "a1", "--lines", "0"], "--lines: must be at least 1"),
    (["logs", "--agent", "a1", "--lines", "x"], "--lines: 'x' is not a whole number"),
    (["logs"], "--agent is required"),
    (["roster.add", "--name", "x"], "--runtime is required"),
    (["roster.show"], "--name is required"),
    (["restart", "--timeout"], "--timeout needs a value"),
    (["restart", "--bogus"], "'--bogus' is not a command or flag here"),
]


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize(("args", "fragment"), BAD, ids=[" ".join(args) for args, _ in BAD])
def test_bad_flags_are_one_line_exit_2_and_change_nothing(
    entry: str, args: list[str], fragment: str, env: dict[str, str], tmp_path: Path
) -> None:
    runner, name = ENTRIES[entry]
    roster = tmp_path / "home" / "fleet" / "roster.yaml"
    before = roster.read_bytes()
    began = time.monotonic()
    result = runner([name(args[0]), *args[1:]], env)
    assert time.monotonic() - began < 10
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
    assert roster.read_bytes() == before
    assert not (tmp_path / "home" / "fleet" / "run" / "tmux.sock").exists()  # no fleet was started


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_dash_h_is_help_and_value_flags_show_a_placeholder(entry: str, env: dict[str, str]) -> None:
    runner, name = ENTRIES[entry]
    result = runner([name("restart"), "-h"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")
    assert "--home=" in result.stdout  # --home takes a value; -h is not its short flag
    assert "-h " not in result.stdout.replace("-h [", "")
    placeholder = "SECONDS" if entry == "fleet" else "STRING"
    assert f"--timeout={placeholder}" in result.stdout
    assert f"--lock-timeout={placeholder}" in result.stdout
    assert "--dry-run " in result.stdout  # a switch has no placeholder


def test_send_wait_says_it_takes_a_state(env: dict[str, str]) -> None:
    # It showed `--wait=WAIT`, which says nothing; `wait --for` shows `--for=STATE`.
    result = run_fleet(["send", "-h"], env)
    assert result.returncode == 0, result.stderr
    assert "--wait=STATE " in result.stdout


@pytest.mark.parametrize("task", ["start", "restart", "install"])
def test_a_home_too_deep_for_the_tmux_socket_is_one_line_before_anything(
    task: str, env: dict[str, str], tmp_path: Path
) -> None:
    # Defect: `start` made the run dir, then failed (exit 1) with tmux's "error connecting to
    # .../tmux.sock (File name too long)": a Unix socket's path holds at most 107 bytes.
    home = tmp_path / ("h" * 100)
    (home / "fleet").mkdir(parents=True)
    (home / "fleet" / "roster.yaml").write_text(ROSTER)
    result = run_fleet([task, "--backend", "tmux", "--home", str(home)], env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: the fleet's tmux socket {home}/fleet/run/tmux.sock is too long"), line
    assert "choose a shorter --home" in line
    assert os.listdir(home / "fleet") == ["roster.yaml"]  # no run dir: nothing was started


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.yaml", "fleet: [unclosed\n", "is not valid YAML"),
        ("list.yaml", "fleet: [1, 2]\n", "cannot merge"),
        ("conf.txt", "fleet: {}\n", "must end in .yaml, .yml, .json or .py"),
        ("missing.yaml", None, "not found"),
        ("home.yaml", "fleet:\n  home: [a, b]\n", "fleet.home must be text"),
        ("flag.yaml", "fleet:\n  roster: true\n", "fleet.roster must be text"),
    ],
)
def test_a_bad_config_file_is_one_line_exit_2(
    name: str, text: str | None, fragment: str, env: dict[str, str], tmp_path: Path
) -> None:
    # Defect: `fleet -f FILE` with broken YAML, a type Invoke does not read or a mapping
    # given a list printed Invoke's traceback; a missing FILE was silently ignored.
    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    result = run_fleet(["-f", str(config), "roster.list"], env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: config file {config}"), line
    assert fragment in line, line


def test_a_number_in_the_config_file_is_its_text_also_beside_the_environment(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Defect: `home: 5` was a TypeError traceback, and with INVOKE_FLEET_HOME set a
    # ValueError one (Invoke casts the variable to the type of the file's value).
    config = tmp_path / "numbers.yaml"
    config.write_text("fleet:\n  home: 5\n  host_timeout: 30\n")
    for extra in ({}, {"INVOKE_FLEET_HOME": str(tmp_path / "elsewhere")}):
        roster = str(tmp_path / "home" / "fleet" / "roster.yaml")
        argv = ["-f", str(config), "status", "--backend", "tmux", "--roster", roster, "--json"]
        result = run_fleet(argv, {**env, **extra})
        assert result.returncode in (0, 3), result.stderr
        assert "Traceback" not in result.stderr


def test_fleet_core_options_are_only_the_useful_ones(env: dict[str, str]) -> None:
    result = run_fleet(["--help"], env)
    assert result.returncode == 0
    for flag in ("--version", "--list", "--print-completion-script", "--help"):
        assert flag in result.stdout
    for flag in ("--echo", "--pty", "--hide", "--dry ", "--warn-only", "--prompt-for-sudo-password"):
        assert flag not in result.stdout


def test_unknown_completion_shell_is_one_line(env: dict[str, str]) -> None:
    result = run_fleet(["--print-completion-script", "tcsh"], env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_install_on_systemd_without_a_manager_writes_nothing_and_uninstall_still_cleans_up(
    entry: str, env: dict[str, str], tmp_path: Path
) -> None:
    runner, name = ENTRIES[entry]
    units = tmp_path / "units"
    refused = runner([name("install"), "--backend", "systemd", "--unit-dir", str(units)], env)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith("error: no systemd user manager reachable")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not units.exists()
    # Files an install left behind (say, before the manager went away) can always be removed.
    names = UnitNames.for_home(env["MOSAIC_HOME"])
    (units / f"{names.agent('a1')}.d").mkdir(parents=True)
    for relative in (names.holder, names.template, f"{names.agent('a1')}.d/50-fleet-roster.conf"):
        (units / relative).write_text("# written by fleet install\n")
    removed = runner([name("uninstall"), "--backend", "systemd", "--unit-dir", str(units), "--json"], env)
    assert removed.returncode == 0, removed.stderr
    assert not list(units.rglob("*.service"))
    assert not list(units.rglob("*.conf"))


@pytest.mark.parametrize("task", ["status", "start", "restart"])
def test_systemd_without_a_manager_says_so_not_run_install(task: str, env: dict[str, str], tmp_path: Path) -> None:
    # Defect: `status --backend systemd` said "units are not installed ... run `fleet
    # install`", and `fleet install` then said there is no user manager.
    result = run_fleet([task, "--backend", "systemd", "--unit-dir", str(tmp_path / "units")], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no systemd user manager reachable"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_install_on_tmux_says_why_nothing_is_installed(env: dict[str, str]) -> None:
    result = run_fleet(["install", "--backend", "tmux"], env)
    assert result.returncode == 0, result.stderr
    assert "no systemd user manager" not in result.stdout
    assert "reboot" in result.stdout
