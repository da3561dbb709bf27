"""The `fleet` command as a new user gets it: `pip install` (not editable) into a fresh
virtualenv, run from a directory outside the repository, on the tmux backend."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import InstalledFleet, InvRunner

pytestmark = pytest.mark.tmux

STATUS_KEYS = {
    "name",
    "state",
    "process_state",
    "state_since",
    "last_output_at",
    "unit",
    "load_state",
    "active_state",
    "sub_state",
    "pid",
    "agent_pid",
    "since",
    "restarts",
    "failures",
    "window",
    "exit_status",
    "in_roster",
    "state_source",
    "reason",
    "memory_bytes",
    "cpu_percent",
    "session_id",
    "session_note",
    "backend",
}
OPERATION_KEYS = {"operation", "backend", "ok", "dry_run", "seconds", "holder", "agents", "commands"}
OUTCOME_KEYS = {"name", "action", "old_pid", "new_pid", "seconds", "error", "exit_status", "output"}
CHECK_KEYS = {"name", "ok", "skipped", "detail", "fix"}


@dataclass
class User:
    """A user of the installed command: a private home, a private runtime dir and no
    session bus (so no user manager answers and `auto` picks tmux), cwd outside the repo."""

    installed: InstalledFleet
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def cwd(self) -> Path:
        return self.root / "elsewhere"

    @property
    def env(self) -> dict[str, str | None]:
        return {
            "MOSAIC_HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.root / "runtime"),
            "DBUS_SESSION_BUS_ADDRESS": None,
        }

    def fleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.installed.fleet(*args, cwd=self.cwd, env=self.env)

    def fleet_ok(self, *args: str) -> str:
        result = self.fleet(*args)
        assert result.returncode == 0, f"fleet {' '.join(args)} -> {result.returncode}: {result.stderr}"
        return result.stdout


@pytest.fixture
def user(installed_fleet: InstalledFleet, tmp_path: Path) -> Iterator[User]:
    person = User(installed_fleet, tmp_path)
    person.home.mkdir()
    person.cwd.mkdir()
    (tmp_path / "runtime").mkdir(mode=0o700)
    yield person
    socket = person.home / "fleet" / "run" / "tmux.sock"
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, check=False)


def test_version_list_and_completion_script(user: User) -> None:
    assert re.fullmatch(r"fleet \d+\.\d+\.\d+\S*\n", user.fleet_ok("--version"))
    listing = user.fleet_ok("--list")
    for name in ("restart", "status", "doctor", "send", "roster.add", "roster.init", "build.dev"):
        assert re.search(rf"^\s+{re.escape(name)}\s", listing, re.MULTILINE), listing
    assert "fleet.restart" not in listing  # fleet tasks sit at the top

    script = user.cwd / "fleet-completion.bash"
    script.write_text(user.fleet_ok("--print-completion-script", "bash"))
    assert "complete -F" in script.read_text()
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "restart" in user.fleet_ok("--complete", "--", "fleet", "re").split()


def test_nothing_named_tasks_is_installed(user: User) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json; "
        "print(json.dumps([u.find_spec('tasks') is None, sorted(str(f) for f in m.files('fleet'))]))"
    )
    done = subprocess.run(
        [str(user.installed.python), "-c", probe],
        cwd=user.cwd,
        env=user.installed.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    no_tasks, files = json.loads(done.stdout)
    assert no_tasks
    assert not [f for f in files if Path(f).stem == "tasks"]
    assert {f.split("/")[0] for f in files if not f.startswith("..")} <= {
        "fleetlib",
        "fleetctl",
        "fleetweb",
        "fleet-0.1.0.dist-info",
    }


def test_inv_from_the_repository_still_lists_fleet_restart(inv: InvRunner) -> None:
    listing = inv("--list")
    assert listing.returncode == 0, listing.stderr
    assert "fleet.restart" in listing.stdout
    assert "roster.add" in listing.stdout


def test_a_fleet_run_from_outside_the_repository(user: User) -> None:
    assert "wrote starter roster" in user.fleet_ok("roster.init")
    for name in ("w1", "w2", "w3"):
        added = user.fleet_ok("roster.add", "--name", name, "--runtime", "custom", "--command", "sleep 100000")
        assert "fleet install" in added  # hints name the command in use
    status = user.fleet("status", "--json")
    assert status.returncode == 3, status.stderr
    rows = json.loads(status.stdout)
    assert [row["name"] for row in rows] == ["coder0", "w1", "w2", "w3"]
    assert all(set(row) == STATUS_KEYS and row["backend"] == "tmux" for row in rows)

    restarted = user.fleet("restart", "--json")
    assert restarted.returncode == 0, restarted.stderr
    result = json.loads(restarted.stdout)
    assert set(result) == OPERATION_KEYS
    assert (result["operation"], result["backend"], result["ok"], result["dry_run"]) == ("restart", "tmux", True, False)
    assert [agent["name"] for agent in result["agents"]] == ["coder0", "w1", "w2", "w3"]
    for agent in result["agents"]:
        assert set(agent) == OUTCOME_KEYS
        assert isinstance(agent["new_pid"], int)
        assert agent["error"] is None
    assert "\x1b[K" not in restarted.stderr  # not a terminal: no progress line

    rows = json.loads(user.fleet_ok("status", "--json"))
    assert {row["name"]: row["pid"] for row in rows} == {a["name"]: a["new_pid"] for a in result["agents"]}

    stopped = json.loads(user.fleet_ok("stop", "--json"))
    assert {a["action"] for a in stopped["agents"]} == {"stopped"}
    assert user.fleet_ok("stop").startswith("nothing to do: ")


def test_doctor_names_the_failing_check_and_its_fix(user: User) -> None:
    user.fleet_ok("roster.init")
    healthy = user.fleet("doctor", "--backend", "tmux", "--json")
    assert healthy.returncode == 0, healthy.stdout
    user.fleet_ok("roster.add", "--name", "ghost", "--runtime", "custom", "--command", "no-such-agent-cli --serve")
    broken = user.fleet("doctor", "--backend", "tmux", "--json")
    assert broken.returncode == 1
    checks = json.loads(broken.stdout)
    assert all(set(check) == CHECK_KEYS for check in checks)
    failing = [check for check in checks if not check["ok"]]
    assert [check["name"] for check in failing] == ["commands"]
    assert "ghost: no-such-agent-cli" in failing[0]["detail"]
    assert failing[0]["fix"]
    text = user.fleet("doctor", "--backend", "tmux")
    assert text.returncode == 1
    assert re.search(r"^FAIL\s+commands\s", text.stdout, re.MULTILINE)
    assert "fix: " in text.stdout


def test_progress_line_on_a_terminal_only(user: User) -> None:
    """Under a pseudo-terminal (script(1)) a restart of several agents draws a live line
    on stderr; through a pipe, or with --json, nothing but the result."""
    user.fleet_ok("roster.init")
    for name in ("p1", "p2", "p3", "p4"):
        user.fleet_ok("roster.add", "--name", name, "--runtime", "custom", "--command", "sleep 100000")
    user.fleet_ok("start")
    command = shlex.join([str(user.installed.bin / "fleet"), "restart"])

    def on_terminal(line: str) -> tuple[int, str]:
        # Bytes, not text: text mode would turn the line's carriage returns into newlines.
        done = subprocess.run(
            ["script", "-qfec", line, "/dev/null"],
            cwd=user.cwd,
            env=user.installed.env(user.env),
            capture_output=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout.decode()

    code, seen = on_terminal(command)
    assert code == 0, seen
    assert re.search(r"\r\x1b\[Krestarting: \d/5 (up|down), \d+\.\d s", seen), repr(seen)
    assert "\r\x1b[Krestarted 5 agent(s)" in seen  # the line is erased before the result

    piped = user.fleet("restart")
    assert piped.returncode == 0, piped.stderr
    assert "restarting:" not in piped.stderr + piped.stdout
    assert "\x1b" not in piped.stderr + piped.stdout

    code, seen = on_terminal(f"{command} > {shlex.quote(str(user.cwd / 'out.txt'))}")  # stdout to a file
    assert code == 0, seen
    assert "restarting:" not in seen
    assert (user.cwd / "out.txt").read_text().startswith("restarted 5 agent(s)")

    code, seen = on_terminal(command + " --json")
    assert code == 0, seen
    assert "restarting:" not in seen
    assert json.loads(seen)["ok"] is True
