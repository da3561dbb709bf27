"""Git worktrees per agent: the roster key, what ``ensure`` makes or refuses, and
``worktree.remove``'s guard, on real git repositories made by the tests (the fleet's own
start/restart with real tmux agents is in test_worktree_fleet.py)."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fleetlib import worktree
from fleetlib.doctor import check_cwds
from fleetlib.errors import FleetError, RosterError
from fleetlib.results import AgentOutcome
from fleetlib.roster import Roster, missing_cwd_warnings, parse_roster
from fleetlib.runner import SubprocessRunner
from fleetlib.schema import agent_json

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def make_repo(path: Path) -> Path:
    """A repository on branch ``main`` with one commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "first")
    return path


def roster_of(agents: str) -> Roster:
    return parse_roster(f"version: 1\nagents:\n{agents}", "roster.yaml")


def agent_entry(name: str, worktree_value: str, cwd: str | None = None) -> str:
    lines = f"  - name: {name}\n    runtime: shell\n    worktree: {worktree_value}\n"
    return lines + (f"    cwd: {cwd}\n" if cwd else "")


def ensure(roster: Roster, home: Path) -> dict[str, AgentOutcome]:
    bound = worktree.bind(roster, home)
    return worktree.ensure(SubprocessRunner(), bound, bound.names(), Path.home())


def made(roster: Roster, home: Path) -> list[str]:
    """The worktree paths ``ensure`` makes (and that none of its agents fails)."""
    bound = worktree.bind(roster, home)
    paths = [bound.cwd_of(agent, Path.home()) for agent in bound.agents]
    before = [os.path.exists(path) for path in paths]
    assert ensure(roster, home) == {}
    return [path for path, existed in zip(paths, before, strict=True) if not existed]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


# --------------------------------------------------------------------------- the roster key


def test_short_and_long_forms_parse_and_round_trip(tmp_path: Path) -> None:
    roster = roster_of(
        agent_entry("a", "true", cwd="/src/app")
        + agent_entry("b", "{repo: ~/src/app, branch: agents/b, base: main, path: /wt/b, setup: [make, deps]}")
        + agent_entry("c", "false")
    )
    a, b, c = roster.agents
    assert a.worktree == worktree.Worktree()
    assert b.worktree == worktree.Worktree("~/src/app", "agents/b", "main", "/wt/b", ("make", "deps"))
    assert c.worktree is None
    assert a.to_dict()["worktree"] is True
    assert b.to_dict()["worktree"] == {
        "repo": "~/src/app",
        "branch": "agents/b",
        "base": "main",
        "path": "/wt/b",
        "setup": ["make", "deps"],
    }
    # `roster.list --json` shows it as written (null without one).
    assert [agent_json(x)["worktree"] for x in (a, c)] == [True, None]
    assert agent_json(b)["worktree"] == b.to_dict()["worktree"]
    # The agent's working directory is its worktree: the default one under the fleet home.
    bound = worktree.bind(roster, tmp_path)
    assert bound.cwd_of(bound.get("a"), Path("/home/u")) == str(tmp_path / "fleet" / "worktrees" / "a")
    assert bound.cwd_of(bound.get("b"), Path("/home/u")) == "/wt/b"
    assert roster.host_text("local").count("worktree") == 2  # what a remote host's fleet is given


@pytest.mark.parametrize(
    ("value", "line", "problem"),
    [
        ("yes please", 5, "must be true, false or a mapping"),
        ("{branch: '-x'}", 5, "invalid branch name '-x'"),
        ("{branch: a..b}", 5, "invalid branch name 'a..b'"),
        ("{path: relative/dir}", 5, "relative path"),
        ("{setup: make}", 5, "must be a command as a list"),
        ("\n      repo: /r\n      brnch: x", 7, "unknown key 'brnch'; did you mean 'branch'?"),
    ],
)
def test_bad_worktree_values_are_one_error_with_file_and_line(value: str, line: int, problem: str) -> None:
    with pytest.raises(RosterError) as caught:
        roster_of(agent_entry("a", value))
    assert str(caught.value).startswith(f"roster.yaml:{line}: agents[0].worktree")
    assert problem in str(caught.value)


# --------------------------------------------------------------------------- ensure


def test_two_agents_on_one_repo_get_two_worktrees_on_two_branches(repo: Path, tmp_path: Path) -> None:
    roster = roster_of(agent_entry("a", "true", cwd=str(repo)) + agent_entry("b", "true", cwd=str(repo)))
    wa, wb = (tmp_path / "home" / "fleet" / "worktrees" / n for n in ("a", "b"))
    assert made(roster, tmp_path / "home") == [str(wa), str(wb)]
    assert git(wa, "branch", "--show-current") == "fleet/a"
    assert git(wb, "branch", "--show-current") == "fleet/b"
    (wa / "only-a").write_text("a\n")
    assert not (wb / "only-a").exists()
    assert not (repo / "only-a").exists()
    assert made(roster, tmp_path / "home") == []  # reused, not made again
    assert (wa / "only-a").exists()


def test_an_existing_branch_is_checked_out_and_base_is_honoured(repo: Path, tmp_path: Path) -> None:
    git(repo, "branch", "feature")
    git(repo, "checkout", "-q", "-b", "dev")
    (repo / "dev-only").write_text("d\n")
    git(repo, "add", "dev-only")
    git(repo, "commit", "-q", "-m", "dev")
    roster = roster_of(
        agent_entry("a", f"{{repo: {repo}, branch: feature}}") + agent_entry("b", f"{{repo: {repo}, base: main}}")
    )
    ensure(roster, tmp_path / "home")
    wa, wb = (tmp_path / "home" / "fleet" / "worktrees" / n for n in ("a", "b"))
    assert git(wa, "branch", "--show-current") == "feature"
    assert not (wb / "dev-only").exists()  # based on main, not on the current branch dev


def refusal(roster: Roster, home: Path) -> str:
    with pytest.raises(FleetError) as caught:
        ensure(roster, home)
    assert type(caught.value) is FleetError  # exit 2: nothing was attempted
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_path_holding_another_repository_is_refused_and_nothing_changes(repo: Path, tmp_path: Path) -> None:
    other = make_repo(tmp_path / "other")
    roster = roster_of(agent_entry("a", "true", cwd=str(repo)) + agent_entry("b", f"{{repo: {repo}, path: {other}}}"))
    message = refusal(roster, tmp_path / "home")
    assert f"path {other} already holds something that is not a worktree of {repo}" in message
    assert git(repo, "branch", "--list") == "* main"  # no branch made, not even agent a's
    assert not (tmp_path / "home" / "fleet" / "worktrees" / "a").exists()
    assert git(other, "status", "--porcelain") == ""
    assert git(other, "branch", "--show-current") == "main"


@pytest.mark.parametrize(
    ("b_value", "fragment"),
    [
        ("{{repo: {repo}, branch: fleet/a}}", "agents a and b both want branch fleet/a of {repo}"),
        ("{{repo: {repo}, path: {home}/fleet/worktrees/a}}", "agents a and b both want the worktree {home}/fleet"),
    ],
)
def test_two_agents_claiming_one_branch_or_path_are_refused_before_anything(
    repo: Path, tmp_path: Path, b_value: str, fragment: str
) -> None:
    # Defect: both passed the check; a's worktree was made, then b's `git worktree add`
    # failed ("a branch named 'fleet/a' already exists"): exit 1, half done.
    home = tmp_path / "home"
    b = b_value.format(repo=repo, home=home)
    message = refusal(roster_of(agent_entry("a", "true", cwd=str(repo)) + agent_entry("b", b)), home)
    assert fragment.format(repo=repo, home=home) in message
    assert git(repo, "branch", "--list") == "* main"
    assert not (home / "fleet" / "worktrees").exists()


def test_refusals_are_one_line_each(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "is not a git repository" in refusal(roster_of(agent_entry("a", "true", cwd=str(plain))), home)
    # A detached HEAD gives no current branch to base a new one on.
    git(repo, "checkout", "-q", "--detach")
    assert "has a detached HEAD" in refusal(roster_of(agent_entry("a", "true", cwd=str(repo))), home)
    git(repo, "checkout", "-q", "main")
    # A branch checked out elsewhere (here: in the main working tree).
    assert "branch main is already checked out in" in refusal(
        roster_of(agent_entry("a", f"{{repo: {repo}, branch: main}}")), home
    )
    # A locked worktree of the agent's.
    roster = roster_of(agent_entry("a", "true", cwd=str(repo)))
    ensure(roster, home)
    path = home / "fleet" / "worktrees" / "a"
    git(repo, "worktree", "lock", "--reason", "in use", str(path))
    assert f"{path} is locked (in use)" in refusal(roster, home)
    # An unknown base.
    assert "base nope is not a branch or commit" in refusal(
        roster_of(agent_entry("b", f"{{repo: {repo}, base: nope}}")), home
    )


def test_setup_runs_once_in_the_new_worktree_and_its_failure_fails_with_its_output(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    roster = roster_of(agent_entry("a", f"{{repo: {repo}, setup: [sh, -c, 'pwd >> {log}']}}"))
    ensure(roster, tmp_path / "home")
    ensure(roster, tmp_path / "home")
    assert log.read_text().splitlines() == [str(tmp_path / "home" / "fleet" / "worktrees" / "a")]

    failing = roster_of(agent_entry("b", f"{{repo: {repo}, setup: [sh, -c, 'echo boom >&2; exit 3']}}"))
    for _ in range(2):  # no marker: tried again at the next start
        (outcome,) = ensure(failing, tmp_path / "home").values()
        assert (outcome.name, outcome.action, outcome.output) == ("b", "failed", "boom")
        assert outcome.error is not None
        assert re.search(r"^worktree setup .* failed .*\(exit 3\): boom", outcome.error)


# --------------------------------------------------------------------------- state and remove


def test_remove_refuses_dirty_and_unmerged_work_and_removes_a_clean_worktree(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    roster = worktree.bind(roster_of(agent_entry("a", f"{{repo: {repo}, base: main}}")), home)
    agent = roster.get("a")
    path = home / "fleet" / "worktrees" / "a"
    runner = SubprocessRunner()
    ensure(roster, home)

    (path / "work").write_text("w\n")
    with pytest.raises(FleetError, match="has 1 uncommitted change"):
        worktree.remove(runner, roster, agent, Path.home())
    git(path, "add", "work")
    git(path, "commit", "-q", "-m", "work")
    listed = worktree.state(runner, roster, agent, Path.home())
    assert (listed.branch, listed.ahead, listed.behind, listed.dirty) == ("fleet/a", 1, 0, ())
    assert listed.last_commit is not None
    assert listed.last_commit.endswith(" work")
    with pytest.raises(FleetError, match="1 commit\\(s\\) on no other branch"):
        worktree.remove(runner, roster, agent, Path.home())
    assert path.is_dir()

    git(repo, "merge", "-q", "--ff-only", "fleet/a")  # the work is on main now
    worktree.remove(runner, roster, agent, Path.home())
    assert not path.exists()
    assert git(repo, "branch", "--list", "fleet/a").strip() == "fleet/a"  # the branch stays


def test_the_short_form_counts_ahead_and_behind_against_the_repository_head(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    roster = worktree.bind(roster_of(agent_entry("a", "true", cwd=str(repo))), home)
    agent = roster.get("a")
    ensure(roster, home)
    path = home / "fleet" / "worktrees" / "a"
    (path / "work").write_text("w\n")
    git(path, "add", "work")
    git(path, "commit", "-q", "-m", "work")
    (repo / "other").write_text("o\n")
    git(repo, "add", "other")
    git(repo, "commit", "-q", "-m", "other")
    listed = worktree.state(SubprocessRunner(), roster, agent, Path.home())
    assert (listed.base, listed.ahead, listed.behind) == (None, 1, 1)


def test_remove_with_force_discards_uncommitted_changes(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    roster = worktree.bind(roster_of(agent_entry("a", "true", cwd=str(repo))), home)
    ensure(roster, home)
    path = home / "fleet" / "worktrees" / "a"
    (path / "scratch").write_text("s\n")
    worktree.remove(SubprocessRunner(), roster, roster.get("a"), Path.home(), force=True)
    assert not path.exists()


def test_concurrent_makers_make_one_worktree_and_run_setup_once(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    roster = roster_of(
        agent_entry("a", f"{{repo: {repo}, setup: [sh, -c, 'echo ran >> {log}']}}")
        + agent_entry("b", f"{{repo: {repo}}}")
    )
    with ThreadPoolExecutor(4) as pool:
        failed = list(pool.map(lambda _: ensure(roster, tmp_path / "home"), range(4)))
    assert failed == [{}] * 4  # one maker; the others found the worktrees made
    assert log.read_text().splitlines() == ["ran"]


def test_a_worktree_not_made_yet_is_no_warning_and_no_doctor_failure(tmp_path: Path) -> None:
    roster = worktree.bind(roster_of(agent_entry("a", "true", cwd=str(tmp_path))), tmp_path / "home")
    assert missing_cwd_warnings(roster) == []  # the start makes it
    assert check_cwds(roster, Path.home()).ok
