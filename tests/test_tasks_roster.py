"""The roster tasks as a user runs them: `inv roster.*` in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_ROSTER, REPO, InvRunner


def assert_user_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """One line on stderr, exit 2, no traceback."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_inv_list_shows_the_task_tree(inv: InvRunner) -> None:
    result = inv("--list")
    assert result.returncode == 0
    for name in ("roster.list", "roster.show", "roster.validate", "roster.add", "roster.remove", "roster.init"):
        assert name in result.stdout


def test_roster_tasks_on_the_example_roster(inv: InvRunner, home: Path) -> None:
    roster = home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    shutil.copy(EXAMPLE_ROSTER, roster)
    assert inv("roster.validate").stdout.startswith("ok: ")
    listed = json.loads(inv("roster.list", "--json").stdout)
    assert [a["name"] for a in listed] == ["coder0", "reviewer", "scratch"]
    assert set(listed[0]) == {
        "name", "runtime", "command", "argv", "cwd", "args", "env", "description",
        "stop_timeout", "start_grace", "max_failures", "failure_window", "on_state_change", "notify", "log_max_bytes",
        "log_keep", "resources", "resume", "worktree",
    }  # fmt: skip
    shown = json.loads(inv("roster.show", "--name", "reviewer", "--json").stdout)
    assert shown["argv"] == ["sh", "-i", "-c", 'echo "reviewing as $REVIEW_MODE"; exec sh -i']
    assert shown["env"] == {"REVIEW_MODE": "strict"}
    table = inv("roster.list").stdout
    assert table.splitlines()[0].split() == ["NAME", "RUNTIME", "COMMAND", "CWD", "DESCRIPTION"]
    added = inv("roster.add", "--name", "extra", "--runtime", "custom", "--command", "python3 -u 'my agent.py'")
    assert added.returncode == 0, added.stderr
    assert "inv fleet.install" in added.stdout
    assert json.loads(inv("roster.show", "--name", "extra", "--json").stdout)["argv"] == [
        "python3",
        "-u",
        "my agent.py",
    ]
    assert "# Example fleet roster" in roster.read_text()
    assert inv("roster.remove", "--name", "extra").returncode == 0
    assert roster.read_text() == EXAMPLE_ROSTER.read_text()


def test_explicit_roster_flag_and_config_env(inv: InvRunner, tmp_path: Path) -> None:
    assert inv("roster.list", "--roster", str(EXAMPLE_ROSTER)).returncode == 0
    other = tmp_path / "other"
    assert inv("roster.init", env={"INVOKE_FLEET_HOME": str(other)}).returncode == 0
    assert (other / "fleet" / "roster.yaml").exists()
    assert inv("roster.init", "--home", str(tmp_path / "third")).returncode == 0
    assert (tmp_path / "third" / "fleet" / "roster.yaml").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\nagents: [\n", "roster.yaml:3: invalid YAML"),
        (
            "version: 1\nagents:\n  - name: a\n    runtime: codex\n  - name: a\n    runtime: codex\n",
            "duplicate agent name",
        ),
        (
            "version: 1\nagents:\n  - name: a;rm -rf\n    runtime: codex\n",
            "roster.yaml:3: agents[0].name: invalid agent name",
        ),
        ("version: 1\nagents:\n  - name: a\n    runtime: codx\n", "did you mean 'codex'"),
        ("version: 1\nagents:\n  - name: a\n    runtime: codex\n    cwdd: /\n", "did you mean 'cwd'"),
    ],
)
def test_broken_rosters_give_one_clear_line(inv: InvRunner, home: Path, text: str, fragment: str) -> None:
    roster = home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(text)
    for args in (("roster.validate",), ("roster.list",), ("roster.add", "--name", "z", "--runtime", "codex")):
        assert_user_error(inv(*args), fragment)
    assert roster.read_text() == text


def test_user_errors_exit_2_without_traceback(inv: InvRunner) -> None:
    assert_user_error(inv("roster.list"), "roster not found")
    assert inv("roster.init").returncode == 0
    assert_user_error(inv("roster.init"), "--force")
    assert_user_error(inv("roster.show", "--name", "nobody"), "unknown agent 'nobody'")
    assert_user_error(inv("roster.add", "--name", "a;rm -rf", "--runtime", "codex"), "name: invalid agent name")
    assert_user_error(inv("roster.add", "--name", "x", "--runtime", "codx"), "did you mean 'codex'")
    assert_user_error(inv("roster.add", "--name", "coder0", "--runtime", "codex"), "already exists")
    assert_user_error(inv("roster.remove", "--name", "nobody"), "unknown agent")


def test_two_concurrent_roster_adds_both_land(home: Path, inv: InvRunner) -> None:
    assert inv("roster.init").returncode == 0
    env = {"MOSAIC_HOME": str(home), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "invoke", "roster.add", "--name", name, "--runtime", "claude"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("left", "right")
    ]
    for proc in procs:
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    listed = json.loads(inv("roster.list", "--json").stdout)
    assert sorted(a["name"] for a in listed) == ["coder0", "left", "right"]


def test_roster_edits_report_json(inv: InvRunner, home: Path) -> None:
    roster = str(home / "fleet" / "roster.yaml")
    assert json.loads(inv("roster.init", "--json").stdout) == {
        "operation": "init",
        "roster": roster,
        "agent": None,
        "agents": 1,
    }
    added = inv("roster.add", "--name", "b1", "--runtime", "shell", "--cwd", "/does/not/exist", "--json")
    assert json.loads(added.stdout) == {"operation": "add", "roster": roster, "agent": "b1", "agents": 2}
    assert added.stderr.startswith("warning: ")  # a cwd missing here: warned, not refused
    assert "/does/not/exist" in added.stderr
    removed = inv("roster.remove", "--name", "b1", "--json")
    assert json.loads(removed.stdout) == {"operation": "remove", "roster": roster, "agent": "b1", "agents": 1}
