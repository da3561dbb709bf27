"""``worktree.*``: the agents' git worktrees (see :mod:`fleetlib.worktree`).

``fleetlib.worktree`` and the fleet are imported inside the task bodies: the start-up of
every other command never loads them for this namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from fleetctl.options import (
    FAILED_EXIT,
    FLEET_HELP,
    JSON_HELP,
    PATH_HELP,
    fleet_paths,
    required,
    stderr_line,
    user_errors,
)
from fleetctl.render import print_json, table

if TYPE_CHECKING:
    from fleetlib.remote import Deadline, HostLink
    from fleetlib.roster import Roster

AGENT_HELP: Final = "Agent whose worktree to remove (required)."
GIT_BUDGET_S: Final = 120.0  # a remote removal's git commands, beyond the host timeout
FORCE_HELP: Final = "Remove it even with uncommitted changes or commits on no other branch (the branch stays)."


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def worktree_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the agents' worktrees: path, branch, ahead/behind base, dirty files, last commit."""
    from pathlib import Path  # noqa: PLC0415

    from fleetctl import hosts_tasks  # noqa: PLC0415
    from fleetlib import worktree  # noqa: PLC0415
    from fleetlib.controller import HostsResult  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.runner import SubprocessRunner  # noqa: PLC0415

    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)

    def local(part: Roster) -> Any:
        bound, runner = worktree.bind(part, paths.home), SubprocessRunner()
        agents = [a for a in bound.agents if a.worktree is not None]
        return {"ok": True, "agents": [worktree.state(runner, bound, a, Path.home()).to_json() for a in agents]}

    failed: list[str] = []
    if loaded.hosts:  # each host's worktrees are on that host: its own fleet lists them
        hosts = hosts_tasks.open_hosts(c, loaded)

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
            run = link.fleet(["worktree.list", "--json"], deadline=deadline)
            return {"ok": True, "agents": hosts_tasks.parsed_answer(link, run, list)}

        with_worktrees = {agent.host for agent in loaded.agents if agent.worktree is not None}
        names = [name for name in loaded.host_names() if name in with_worktrees]
        try:
            results = hosts_tasks.run_hosts(hosts, names, remote, local, hosts.settings.timeout)
        finally:
            hosts.close()
        merged = HostsResult("worktree.list", results)
        rows: list[dict[str, Any]] = merged.agent_rows()
        failed = hosts_tasks.host_failure_lines(merged)
    else:
        rows = local(loaded)["agents"]
    if json:
        print_json(rows)
    else:
        body = [
            [
                *([str(row.get("host"))] if loaded.hosts else []),
                str(row["agent"]),
                str(row["path"]),
                str(row["branch"]),
                "-" if row["ahead"] is None else f"+{row['ahead']}/-{row['behind']}",
                str(len(row["dirty"])) if row["exists"] else "-",
                row["last_commit"] or ("-" if row["exists"] else "(not made yet)"),
            ]
            for row in rows
        ]
        header = ["AGENT", "PATH", "BRANCH", "AHEAD/BEHIND", "DIRTY", "LAST COMMIT"]
        for line in table([*(["HOST"] if loaded.hosts else []), *header], body):
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
    if chosen.host != LOCAL:  # its worktree is on its host: that host's fleet removes it
        answer = _on_host(c, loaded, agent, ["worktree.remove", "--agent", agent, "--json", *(["--force"] * force)])
        removed_there = answer["removed"]
        if json:
            print_json({**answer, "host": chosen.host})
        else:
            print(f"{chosen.host}: removed worktree {removed_there['path']} of agent {agent} "
                  f"(branch {removed_there['branch']} kept)")  # fmt: skip
        return
    lifecycle = open_lifecycle(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend, loaded=loaded)
    row = lifecycle.status(agent).by_name()[agent]
    if not row.down:
        raise FleetError(f"agent {agent} is {row.state} in its worktree; stop it first (fleet stop --agent {agent})")
    removed = worktree.remove(SubprocessRunner(), loaded, chosen, Path.home(), force=force)
    if json:
        print_json({"operation": "worktree.remove", "removed": removed.to_json(), "forced": force})
        return
    print(f"removed worktree {removed.path} of agent {agent} (branch {removed.branch} kept)")


def _on_host(c: Context, loaded: Roster, agent: str, argv: list[str]) -> Any:
    """``fleet argv`` on ``agent``'s host, its JSON answer; its refusal as our own one line."""
    from fleetctl import hosts_tasks  # noqa: PLC0415
    from fleetlib.errors import FleetError  # noqa: PLC0415
    from fleetlib.remote import Deadline, HostError  # noqa: PLC0415

    routed = hosts_tasks.on_agent_host(c, loaded, agent)
    assert routed is not None
    hosts, link = routed
    try:
        return hosts_tasks.remote_answer(link, argv, dict, deadline=Deadline(hosts.settings.timeout + GIT_BUDGET_S))
    except HostError as exc:
        raise FleetError(f"{link.host.name}: {str(exc).removeprefix('error: ')}") from None
    finally:
        hosts.close()


worktree_ns = Collection("worktree")
worktree_ns.add_task(worktree_list, name="list")
worktree_ns.add_task(worktree_remove, name="remove")
