"""An optional git worktree per agent: made, reused and removed through git's own CLI.

An agent with ``worktree:`` in the roster works in its own checkout of a repository, on
its own branch, so several agents on one repository never share files. Long form::

    worktree: {repo: ~/src/app, branch: agents/coder1, base: main, path: ~/wt/c1, setup: [npm, ci]}

short form ``worktree: true``: the repository holding the agent's ``cwd``, branch
``fleet/<name>``, based on the repository's current branch. The checkout lives at
``path`` or, by default, ``<fleet home>/fleet/worktrees/<name>``; it becomes the agent's
working directory (:meth:`fleetlib.roster.Roster.cwd_of`).

Guarantees:

* Every git command is an argv list run by the fleet's :class:`~fleetlib.runner.Runner`
  (the one process boundary); no shell.
* :func:`ensure` makes a missing worktree (``git worktree add``: a new branch from
  ``base``, or the existing branch) and reuses an existing one. Every problem it can see
  beforehand (a path holding something that is not this repository's worktree, a
  directory that is not a repository, a detached HEAD as base, a locked worktree, a branch
  checked out elsewhere) is one line, a :class:`~fleetlib.errors.FleetError` (exit 2),
  raised before anything changes.
* ``setup`` runs once per new worktree, in it, before the agent's first start; success is
  recorded by a marker in the worktree's own git directory (so it goes when the worktree
  goes). A failed setup leaves no marker (the next start tries again) and fails that
  agent's start, with its output; the others start.
* :func:`remove` deletes a worktree only when it has no uncommitted changes and no commit
  that is on no other branch (local or remote-tracking), unless forced; the branch stays.
  Nothing else in the fleet ever deletes a worktree.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fleetlib.atomic import edit_lock
from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.roster import Agent, Roster
from fleetlib.roster.model import DEFAULT_BRANCH_PREFIX, REF_PATTERN, WORKTREE_KEYS, Worktree
from fleetlib.runner import Result, Runner, query

if TYPE_CHECKING:
    from fleetlib.results import AgentOutcome

# The roster's value of the key (read and written by fleetlib.roster); the git work is here.
__all__ = ["DEFAULT_BRANCH_PREFIX", "REF_PATTERN", "WORKTREE_KEYS", "Worktree"]


SETUP_MARKER: Final = "fleet-setup-done"
LOCK_NAME: Final = "fleet-worktree"  # <git common dir>/fleet-worktree.lock
GIT: Final = "git"
GIT_TIMEOUT_S: Final = 60.0


def bind(roster: Roster, home: Path) -> Roster:
    """``roster`` with every agent's worktree under the fleet home ``home`` (its default path)."""
    agents = tuple(
        replace(agent, worktree=replace(agent.worktree, home=str(home))) if agent.worktree is not None else agent
        for agent in roster.agents
    )
    return replace(roster, agents=agents)


# --------------------------------------------------------------------------- git


def _git(runner: Runner, *args: str) -> Result:
    """A git command that only reads (it runs in a dry run too, see :mod:`fleetlib.runner`)."""
    return query(runner, [GIT, *args], timeout=GIT_TIMEOUT_S, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


@dataclass(frozen=True)
class Listed:
    """One entry of ``git worktree list --porcelain``."""

    path: str
    branch: str | None  # short name; None: detached or bare
    locked: str | None  # the reason ("" when none was given); None: not locked


def _listed(runner: Runner, repo: str) -> list[Listed]:
    result = _git(runner, "-C", repo, "worktree", "list", "--porcelain")
    if not result.ok:
        raise FleetError(f"cannot list the worktrees of {repo}: {result.error_line()}")
    entries: list[Listed] = []
    for block in result.stdout.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        if "worktree" in fields:
            branch = fields.get("branch")
            entries.append(
                Listed(
                    path=fields["worktree"],
                    branch=branch.removeprefix("refs/heads/") if branch else None,
                    locked=fields.get("locked"),
                )
            )
    return entries


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


@dataclass(frozen=True)
class Plan:
    """One agent's worktree as :func:`inspect` found it."""

    agent: str
    repo: str  # the repository's top directory
    path: str
    branch: str
    base: str | None  # None when the worktree exists already and none was given
    setup: tuple[str, ...]
    exists: bool
    branch_exists: bool


def inspect(runner: Runner, roster: Roster, agent: Agent, user_home: Path) -> Plan:
    """What :func:`ensure` would do for ``agent``; :class:`FleetError` (one line, nothing
    changed) for every problem that would make it fail."""
    spec = agent.worktree
    assert spec is not None
    who = f"agent {agent.name}: worktree"
    wanted = spec.repo_dir(roster, agent, user_home)
    path = spec.checkout(roster, agent, user_home)
    branch = spec.branch_of(agent.name)
    if not os.path.isdir(wanted):
        raise FleetError(f"{who} repo {wanted} is not a directory; fix worktree.repo (or cwd) in the roster")
    top = _git(runner, "-C", wanted, "rev-parse", "--show-toplevel")
    if not top.ok or not top.stdout.strip():
        raise FleetError(
            f"{who} repo {wanted} is not a git repository with a working tree ({top.error_line()}); "
            "fix worktree.repo (or cwd) in the roster"
        )
    repo = top.stdout.strip()
    listed = _listed(runner, repo)
    if os.path.lexists(path):
        mine = next((entry for entry in listed if _same(entry.path, path)), None)
        if mine is None or not os.path.isdir(path) or _same(path, repo):
            if os.path.isdir(path) and not os.listdir(path):
                mine = None  # an empty directory: git adds the worktree into it
            else:
                raise FleetError(
                    f"{who} path {path} already holds something that is not a worktree of {repo}; "
                    "move it away or set worktree.path in the roster"
                )
        if mine is not None:
            if mine.locked is not None:
                raise FleetError(
                    f"{who} {path} is locked ({mine.locked or 'no reason given'}); `git worktree unlock {path}`"
                )
            if mine.branch != branch:
                on = f"branch {mine.branch}" if mine.branch else "a detached HEAD"
                raise FleetError(
                    f"{who} {path} is on {on}, the roster says {branch}; "
                    f"check out {branch} there or fix worktree.branch"
                )
            return Plan(agent.name, repo, path, branch, spec.base, spec.setup, exists=True, branch_exists=True)
    for entry in listed:
        if _same(entry.path, path) and entry.locked is not None:
            raise FleetError(f"{who} {path} is registered but locked and missing; `git worktree unlock {path}`")
        if entry.branch == branch:
            raise FleetError(
                f"{who} branch {branch} is already checked out in {entry.path}; "
                "give this agent another worktree.branch or remove that worktree"
            )
    branch_exists = _git(runner, "-C", repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").ok
    base = spec.base
    if not branch_exists:
        if base is None:
            head = _git(runner, "-C", repo, "symbolic-ref", "--quiet", "--short", "HEAD")
            if not head.ok or not head.stdout.strip():
                raise FleetError(
                    f"{who} repo {repo} has a detached HEAD, so there is no current branch to base "
                    f"{branch} on; set worktree.base in the roster"
                )
            base = head.stdout.strip()
        if not _git(runner, "-C", repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}").ok:
            raise FleetError(f"{who} base {base} is not a branch or commit of {repo}; fix worktree.base")
    return Plan(agent.name, repo, path, branch, base, spec.setup, exists=False, branch_exists=branch_exists)


def refuse_shared(plans: Sequence[Plan]) -> None:
    """FleetError (one line, nothing changed) when two agents would make one worktree path,
    or one branch of one repository: each plan passes :func:`inspect` alone (nothing is
    made yet), and the second ``git worktree add`` would fail after the first was made."""
    paths: dict[str, str] = {}
    branches: dict[tuple[str, str], str] = {}
    for plan in plans:
        if plan.exists:
            continue  # found made, on its branch: inspect checked it against git itself
        path, repo = os.path.realpath(plan.path), os.path.realpath(plan.repo)
        if (first := paths.setdefault(path, plan.agent)) != plan.agent:
            raise FleetError(
                f"agents {first} and {plan.agent} both want the worktree {plan.path}; "
                "give one of them another worktree.path in the roster"
            )
        if (first := branches.setdefault((repo, plan.branch), plan.agent)) != plan.agent:
            raise FleetError(
                f"agents {first} and {plan.agent} both want branch {plan.branch} of {plan.repo}; "
                "give one of them another worktree.branch in the roster"
            )


def add_argv(plan: Plan) -> list[str]:
    """The ``git worktree add`` that makes ``plan``'s worktree."""
    if plan.branch_exists:
        return [GIT, "-C", plan.repo, "worktree", "add", "--", plan.path, plan.branch]
    assert plan.base is not None
    return [GIT, "-C", plan.repo, "worktree", "add", "-b", plan.branch, "--", plan.path, plan.base]


def _marker(runner: Runner, path: str) -> Path:
    git_dir = _git(runner, "-C", path, "rev-parse", "--absolute-git-dir")
    if not git_dir.ok:
        raise FleetError(f"cannot find the git directory of worktree {path}: {git_dir.error_line()}")
    return Path(git_dir.stdout.strip()) / SETUP_MARKER


def _output(result: Result, lines: int = 20) -> str:
    """A failed command's last ``lines`` lines of output (stdout, then stderr)."""
    text = [line.rstrip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    return "\n".join(text[-lines:])


def _output_tail(result: Result, lines: int = 3) -> str:
    return " | ".join(_output(result, lines).splitlines()) or "no output"


def ensure(
    runner: Runner, roster: Roster, names: Sequence[str], user_home: Path, *, setup: bool = True
) -> dict[str, AgentOutcome]:
    """Make every named agent's missing worktree and (``setup``) run its pending setup.

    Every agent is inspected before anything is made, so a refusal (one line, exit 2)
    changes nothing. Returns a ``failed`` outcome, with the output, for each agent whose
    ``git worktree add`` or setup failed (the caller does not start it); a dry run
    returns none and shows what would run."""
    wanted = set(names)  # (a set: rosters may hold hundreds of agents)
    agents = [agent for agent in roster.agents if agent.name in wanted and agent.worktree is not None]
    if not agents:
        return {}
    if runner.dry_run:
        # git is only read; the dry runner shows what would change. Apart from _make: no
        # lock (a file in the user's repository), and a worktree it would add has no setup
        # marker to look for yet.
        plans = [inspect(runner, roster, agent, user_home) for agent in agents]
        refuse_shared(plans)
        for plan in plans:
            if not plan.exists:
                runner.run(add_argv(plan))
            if setup and plan.setup and (not plan.exists or not _marker(runner, plan.path).exists()):
                runner.run(plan.setup, cwd=plan.path)
        return {}
    with contextlib.ExitStack() as locks:
        # One maker per repository at a time (two concurrent starts: one makes, the other
        # then finds the worktree made, and setup still runs once). In a fixed order.
        # Each once: a second flock of the same file from this process would wait for ever.
        commons = {_common_dir(runner, roster, agent, user_home) for agent in agents}
        for common in sorted(c for c in commons if c is not None):
            locks.enter_context(edit_lock(Path(common) / LOCK_NAME))
        plans = [inspect(runner, roster, agent, user_home) for agent in agents]
        refuse_shared(plans)
        return _make(runner, plans, setup=setup)


def _common_dir(runner: Runner, roster: Roster, agent: Agent, user_home: Path) -> str | None:
    """The git directory every worktree of the agent's repository shares (None: not a repository)."""
    assert agent.worktree is not None
    repo = agent.worktree.repo_dir(roster, agent, user_home)
    if not os.path.isdir(repo):
        return None
    found = _git(runner, "-C", repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return found.stdout.strip() or None if found.ok else None


def _make(runner: Runner, plans: Sequence[Plan], *, setup: bool) -> dict[str, AgentOutcome]:
    from fleetlib.results import AgentOutcome  # noqa: PLC0415 (the engine loads this module for `status`, which makes none)

    failed: dict[str, AgentOutcome] = {}
    for plan in plans:
        if not plan.exists:
            Path(plan.path).parent.mkdir(parents=True, exist_ok=True)
            added = runner.run(add_argv(plan), timeout=GIT_TIMEOUT_S)
            if not added.ok:
                error = f"`{shlex.join(add_argv(plan))}` failed: {added.error_line()}"
                failed[plan.agent] = AgentOutcome(plan.agent, "failed", error=error, output=_output(added))
                continue
        if setup and plan.setup and not (marker := _marker(runner, plan.path)).exists():
            ran = runner.run(plan.setup, cwd=plan.path)
            if not ran.ok:
                error = (
                    f"worktree setup `{shlex.join(plan.setup)}` failed in {plan.path} "
                    f"(exit {ran.returncode}): {_output_tail(ran)}; fix it and start again"
                )
                failed[plan.agent] = AgentOutcome(plan.agent, "failed", error=error, output=_output(ran))
                continue
            marker.write_text(shlex.join(plan.setup) + "\n", encoding="utf-8")
    return failed


# --------------------------------------------------------------------------- inspect, remove


@dataclass(frozen=True)
class WorktreeState:
    """One agent's worktree as ``worktree.list`` shows it."""

    agent: str
    path: str
    branch: str
    base: str | None
    exists: bool
    ahead: int | None = None
    behind: int | None = None
    dirty: tuple[str, ...] = ()
    last_commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "path": self.path,
            "branch": self.branch,
            "base": self.base,
            "exists": self.exists,
            "ahead": self.ahead,
            "behind": self.behind,
            "dirty": list(self.dirty),
            "last_commit": self.last_commit,
        }


def _dirty(runner: Runner, path: str) -> tuple[str, ...]:
    result = _git(runner, "-C", path, "status", "--porcelain", "--untracked-files=all")
    if not result.ok:
        raise FleetError(f"cannot read the status of worktree {path}: {result.error_line()}")
    return tuple(line[3:] for line in result.stdout.splitlines() if line.strip())


def _head_commit(runner: Runner, repo: str) -> str | None:
    """The commit ``repo`` has checked out, or None (not a repository, no commit yet)."""
    head = _git(runner, "-C", repo, "rev-parse", "--verify", "--quiet", "HEAD")
    return head.stdout.strip() or None if head.ok else None


def state(runner: Runner, roster: Roster, agent: Agent, user_home: Path) -> WorktreeState:
    """``agent``'s worktree: where, which branch, how far from its base, what is uncommitted."""
    spec = agent.worktree
    assert spec is not None
    path = spec.checkout(roster, agent, user_home)
    branch = spec.branch_of(agent.name)
    if not os.path.isdir(path) or not _git(runner, "-C", path, "rev-parse", "--git-dir").ok:
        return WorktreeState(agent.name, path, branch, spec.base, exists=False)
    head = _git(runner, "-C", path, "symbolic-ref", "--quiet", "--short", "HEAD")
    branch = head.stdout.strip() if head.ok else branch
    ahead = behind = None
    # The short form branches from the repository's HEAD at creation: counted against the
    # repository's HEAD now, as a user comparing with the checkout they work in would.
    base = spec.base or _head_commit(runner, spec.repo_dir(roster, agent, user_home))
    if base is not None:
        counts = _git(runner, "-C", path, "rev-list", "--left-right", "--count", f"{base}...HEAD")
        if counts.ok and len(counts.stdout.split()) == 2:
            behind, ahead = (int(n) for n in counts.stdout.split())
    last = _git(runner, "-C", path, "log", "-1", "--format=%h %s")
    return WorktreeState(
        agent.name,
        path,
        branch,
        spec.base,
        exists=True,
        ahead=ahead,
        behind=behind,
        dirty=_dirty(runner, path),
        last_commit=last.stdout.strip() or None if last.ok else None,
    )


def unique_commits(runner: Runner, path: str, branch: str) -> int:
    """How many commits of the worktree's HEAD are on no other branch, local or
    remote-tracking: the work its removal could strand."""
    refs = _git(runner, "-C", path, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes")
    if not refs.ok:
        raise FleetError(f"cannot list the branches of {path}: {refs.error_line()}")
    others = [ref for ref in refs.stdout.split() if ref != f"refs/heads/{branch}"]
    counted = _git(runner, "-C", path, "rev-list", "--count", "HEAD", "--not", *others)
    if not counted.ok:
        raise FleetError(f"cannot count the commits of {path}: {counted.error_line()}")
    return int(counted.stdout.strip() or 0)


def remove(runner: Runner, roster: Roster, agent: Agent, user_home: Path, *, force: bool = False) -> WorktreeState:
    """Remove ``agent``'s worktree (its branch stays). Refused, one line and nothing
    changed, when it has uncommitted changes or commits on no other branch (unless
    ``force``), or is locked; returns its state before removal."""
    spec = agent.worktree
    if spec is None:
        raise FleetError(f"agent {agent.name} has no worktree in {roster.source}")
    before = state(runner, roster, agent, user_home)
    if not before.exists:
        raise FleetError(f"agent {agent.name}: no worktree at {before.path}; nothing to remove")
    top = _git(runner, "-C", before.path, "rev-parse", "--show-toplevel")
    if not top.ok or not _same(top.stdout.strip(), before.path):
        raise FleetError(f"agent {agent.name}: {before.path} is not a git worktree; remove it by hand")
    listed = _listed(runner, before.path)  # the first entry is the repository's main working tree
    mine = next((entry for entry in listed[1:] if _same(entry.path, before.path)), None)
    if mine is None:
        raise FleetError(f"agent {agent.name}: {before.path} is a repository's main working tree, not a worktree")
    repo = listed[0].path
    if mine.locked is not None:
        raise FleetError(
            f"agent {agent.name}: worktree {before.path} is locked ({mine.locked or 'no reason given'}); "
            f"`git worktree unlock {before.path}` first"
        )
    if not force:
        if before.dirty:
            raise FleetError(
                f"agent {agent.name}: worktree {before.path} has {len(before.dirty)} uncommitted change(s) "
                f"({', '.join(before.dirty[:3])}); commit them, or pass --force to discard them"
            )
        stranded = unique_commits(runner, before.path, before.branch)
        if stranded:
            raise FleetError(
                f"agent {agent.name}: branch {before.branch} has {stranded} commit(s) on no other branch; "
                "push or merge them first, or pass --force (the branch is kept either way)"
            )
    argv = [GIT, "-C", repo, "worktree", "remove", *(["--force"] if force else []), "--", before.path]
    removed = runner.run(argv, timeout=GIT_TIMEOUT_S)
    if not removed.ok:
        raise FleetOperationError(f"agent {agent.name}: `{shlex.join(argv)}` failed: {removed.error_line()}")
    return before
