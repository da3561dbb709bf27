"""Agents in their own git worktrees, started by the fleet on real tmux (``inv fleet.*``,
``inv worktree.*``) against real git repositories made by the tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FleetEnv, eventually
from tests.test_fleet_tmux import TmuxEnv
from tests.test_worktree import git, make_repo

pytestmark = pytest.mark.tmux


class WorktreeEnv(TmuxEnv):
    def worktree(self, name: str) -> Path:
        return self.home / "fleet" / "worktrees" / name

    @staticmethod
    def entry(repo: Path, name: str, worktree: str) -> str:
        """An agent that appends its name to ``edits-<name>`` in its working directory at
        every start (an uncommitted file), then idles."""
        script = 'echo "$0" >> "edits-$0"; while :; do sleep 1; done'
        return (
            f"  - name: {name}\n    runtime: custom\n    command: [sh, -c, {json.dumps(script)}, {name}]\n"
            f"    cwd: {repo}\n    worktree: {worktree}\n"
        )

    def agents(self, repo: Path, names: list[str], worktree: str = "true", extra: str = "") -> None:
        body = "".join(self.entry(repo, n, worktree) for n in names) + extra
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("version: 1\ntransport: tmux\nagents:\n" + body)

    def edits(self, name: str) -> list[str]:
        path = self.worktree(name) / f"edits-{name}"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def wenv(tmp_path: Path) -> Iterator[WorktreeEnv]:
    env = WorktreeEnv(tmp_path)
    yield env
    subprocess.run(
        ["tmux", "-S", str(env.home / "fleet" / "run" / "tmux.sock"), "kill-server"], capture_output=True, check=False
    )


def test_agents_work_in_their_own_worktrees_which_restarts_and_roster_remove_keep(
    wenv: WorktreeEnv, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    wenv.agents(repo, ["a", "b"])
    wenv.inv_ok("fleet.start")
    eventually(lambda: wenv.edits("a") == ["a"] and wenv.edits("b") == ["b"], "both agents wrote in their worktrees")
    assert not (wenv.worktree("a") / "edits-b").exists()
    assert not (wenv.worktree("b") / "edits-a").exists()
    assert not (repo / "edits-a").exists()
    assert git(wenv.worktree("a"), "branch", "--show-current") == "fleet/a"
    assert git(wenv.worktree("b"), "branch", "--show-current") == "fleet/b"

    wenv.inv_ok("fleet.restart", "--agent", "a")  # the worktree and its uncommitted file stay
    eventually(lambda: wenv.edits("a") == ["a", "a"], "the restarted agent wrote again in the same worktree")

    rows = {row["agent"]: row for row in json.loads(wenv.inv_ok("worktree.list", "--json"))}
    assert rows["a"]["path"] == str(wenv.worktree("a"))
    assert (rows["a"]["branch"], rows["a"]["dirty"], rows["a"]["exists"]) == ("fleet/a", ["edits-a"], True)
    assert "fleet/b" in wenv.inv_ok("worktree.list")

    running = wenv.inv("worktree.remove", "--agent", "a")
    assert running.returncode == 2
    assert "stop it first" in running.stderr
    wenv.inv_ok("fleet.stop", "--agent", "a")
    dirty = wenv.inv("worktree.remove", "--agent", "a")
    assert dirty.returncode == 2
    assert "1 uncommitted change(s)" in dirty.stderr
    assert len(dirty.stderr.strip().splitlines()) == 1

    wenv.inv_ok("roster.remove", "--name", "b")  # never deletes a worktree
    assert wenv.edits("b") == ["b"]
    (wenv.worktree("a") / "edits-a").unlink()
    wenv.inv_ok("worktree.remove", "--agent", "a")
    assert not wenv.worktree("a").exists()


def test_setup_runs_once_before_the_first_start_and_a_failing_one_fails_the_start(
    wenv: WorktreeEnv, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    log = tmp_path / "setup.log"
    wenv.agents(repo, ["s"], worktree=f"{{setup: [sh, -c, 'echo ran >> {log}']}}")
    wenv.inv_ok("fleet.start")
    wenv.inv_ok("fleet.restart")
    eventually(lambda: wenv.edits("s") == ["s", "s"], "the agent started twice")
    assert log.read_text().splitlines() == ["ran"]

    wenv.inv_ok("fleet.stop")
    wenv.agents(repo, ["s"], extra=wenv.entry(repo, "f", "{setup: [sh, -c, 'echo cannot install deps >&2; exit 4']}"))
    failed = wenv.inv("fleet.start")  # fails f, with its output; starts s
    assert failed.returncode == 1
    assert "f: worktree setup `sh -c 'echo cannot install deps >&2; exit 4'` failed" in failed.stderr
    assert "(exit 4): cannot install deps" in failed.stderr
    eventually(lambda: wenv.edits("s") == ["s", "s", "s"], "the other agent started")
    assert wenv.edits("f") == []  # f never started
    assert log.read_text().splitlines() == ["ran"]


def test_a_path_holding_another_repository_refuses_the_start(wenv: WorktreeEnv, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    other = make_repo(tmp_path / "other")
    wenv.agents(repo, ["p"], worktree=f"{{path: {other}}}")
    refused = wenv.inv("fleet.start")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: agent p: worktree path {other} already holds something that is not a worktree of {repo}; "
        "move it away or set worktree.path in the roster"
    )
    assert git(repo, "branch", "--list") == "* main"


def test_a_dry_run_start_shows_the_worktree_it_would_make_and_makes_nothing(wenv: WorktreeEnv, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    wenv.agents(repo, ["d"], worktree="{setup: [make, deps]}")
    shown = wenv.inv_ok("fleet.start", "--dry-run")
    assert f"would run: git -C {repo} worktree add -b fleet/d -- {wenv.worktree('d')} main" in shown
    assert f"would run: make deps  (in {wenv.worktree('d')})" in shown
    assert not wenv.worktree("d").exists()
    assert git(repo, "branch", "--list") == "* main"


@pytest.mark.systemd
def test_install_makes_the_worktree_and_the_systemd_unit_starts_the_agent_there(
    fleet_env: FleetEnv, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    fleet_env.write_roster(
        "version: 1\nagents:\n" + WorktreeEnv.entry(repo, "u", f"{{setup: [sh, -c, 'echo ran >> {tmp_path}/log']}}")
    )
    fleet_env.inv_ok("fleet.install")
    path = fleet_env.home / "fleet" / "worktrees" / "u"
    assert git(path, "branch", "--show-current") == "fleet/u"
    assert not (tmp_path / "log").exists()  # setup waits for the first start
    fleet_env.inv_ok("fleet.start")
    eventually((path / "edits-u").exists, "the agent started in its worktree")
    assert (tmp_path / "log").read_text() == "ran\n"
