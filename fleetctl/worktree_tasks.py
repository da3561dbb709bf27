"""``worktree.*``: the agents' git worktrees (see :mod:`fleetlib.worktree`), through the
library's fleet (:meth:`fleetlib.fleet.LocalFleet.worktrees`, and across hosts
:meth:`fleetlib.group.HostsFleet.worktrees`: each host's fleet acts on its own).

The library is imported inside the task bodies: the start-up of every other command never
loads it for this namespace.
"""

from __future__ import annotations

from typing import Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from fleetctl.fleet_tasks import across_hosts, open_any
from fleetctl.options import FAILED_EXIT, FLEET_HELP, JSON_HELP, PATH_HELP, required, stderr_line, user_errors
from fleetctl.render import host_failure_lines, print_json, worktree_lines, worktree_removed_line

AGENT_HELP: Final = "Agent whose worktree to remove (required)."
FORCE_HELP: Final = "Remove it even with uncommitted changes or commits on no other branch (the branch stays)."


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def worktree_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the agents' worktrees: path, branch, ahead/behind base, dirty files, last commit."""
    listed = open_any(c, home=home, roster=roster).worktrees()
    failed: list[str] = []
    if across_hosts(listed):
        rows: list[dict[str, Any]] = listed.agent_rows()
        failed = host_failure_lines(listed)
    else:
        rows = listed.rows
    if json:
        print_json(rows)
    else:
        for line in worktree_lines(rows, with_host=across_hosts(listed)):
            print(line)
    if failed:
        for line in failed:
            stderr_line(f"error: {line}")
        raise Exit(f"error: worktree.list failed on {len(failed)} host(s)", code=FAILED_EXIT)


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
    required("--agent", agent)
    removal = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend).remove_worktree(
        agent, force=force
    )
    if json:
        print_json(removal.to_json())
        return
    print(worktree_removed_line(removal, agent))


worktree_ns = Collection("worktree")
worktree_ns.add_task(worktree_list, name="list")
worktree_ns.add_task(worktree_remove, name="remove")
