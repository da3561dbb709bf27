"""``worktree.*``: the agents' git worktrees (see :mod:`fleetlib.worktree`).

``fleetlib.worktree`` and the fleet are imported inside the task bodies: the start-up of
every other command never loads them for this namespace.
"""

from __future__ import annotations

from typing import Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from fleetctl.options import FLEET_HELP, JSON_HELP, PATH_HELP, fleet_paths, required, user_errors
from fleetctl.render import print_json, table

AGENT_HELP: Final = "Agent whose worktree to remove (required)."
FORCE_HELP: Final = "Remove it even with uncommitted changes or commits on no other branch (the branch stays)."


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def worktree_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the agents' worktrees: path, branch, ahead/behind base, dirty files, last commit."""
    from pathlib import Path  # noqa: PLC0415

    from fleetlib import worktree  # noqa: PLC0415
    from fleetlib.hosts import LOCAL  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.runner import SubprocessRunner  # noqa: PLC0415

    paths = fleet_paths(c, home, roster)
    loaded = worktree.bind(load_roster(paths.roster), paths.home)
    runner = SubprocessRunner()
    # Each host's worktrees are on that host: this machine lists the agents it runs.
    states = [
        worktree.state(runner, loaded, agent, Path.home())
        for agent in loaded.agents
        if agent.worktree is not None and agent.host == LOCAL
    ]
    if json:
        print_json([s.to_json() for s in states])
        return
    rows = [
        [
            s.agent,
            s.path,
            s.branch,
            "-" if s.ahead is None else f"+{s.ahead}/-{s.behind}",
            str(len(s.dirty)) if s.exists else "-",
            s.last_commit or ("(not made yet)" if not s.exists else "-"),
        ]
        for s in states
    ]
    for line in table(["AGENT", "PATH", "BRANCH", "AHEAD/BEHIND", "DIRTY", "LAST COMMIT"], rows):
        print(line)


@task(auto_shortflags=False, help={**FLEET_HELP, "agent": AGENT_HELP, "force": FORCE_HELP, "json": JSON_HELP})
@user_errors
def worktree_remove(
    c: Context,
    agent: str = "",
    force: bool = False,
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
) -> None:
    """Remove an agent's worktree: only when it holds no uncommitted or unmerged work, unless --force."""
    from pathlib import Path  # noqa: PLC0415

    from fleetctl.fleet_tasks import open_lifecycle  # noqa: PLC0415
    from fleetlib import worktree  # noqa: PLC0415
    from fleetlib.errors import FleetError  # noqa: PLC0415
    from fleetlib.hosts import LOCAL  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.runner import SubprocessRunner  # noqa: PLC0415

    required("--agent", agent)
    paths = fleet_paths(c, home, roster)
    loaded = worktree.bind(load_roster(paths.roster), paths.home)
    chosen = loaded.get(agent)
    if chosen.worktree is None:
        raise FleetError(f"agent {agent} has no worktree in {loaded.source}; nothing to remove")
    if chosen.host != LOCAL:
        raise FleetError(f"agent {agent} runs on host {chosen.host}, its worktree too; run this there")
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    row = lifecycle.status(agent).by_name()[agent]
    if not row.down:
        raise FleetError(f"agent {agent} is {row.state} in its worktree; stop it first (fleet stop --agent {agent})")
    removed = worktree.remove(SubprocessRunner(), loaded, chosen, Path.home(), force=force)
    if json:
        print_json({"operation": "worktree.remove", "removed": removed.to_json(), "forced": force})
        return
    print(f"removed worktree {removed.path} of agent {agent} (branch {removed.branch} kept)")


worktree_ns = Collection("worktree")
worktree_ns.add_task(worktree_list, name="list")
worktree_ns.add_task(worktree_remove, name="remove")
