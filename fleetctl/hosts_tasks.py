"""Fleet commands on a roster with ``hosts:``, and the ``hosts.*`` tasks.

The ``fleet.*`` tasks call into this module only when the roster names hosts; a roster
without hosts never gets here (and never imports Fabric). Each function here builds a
:class:`~fleetlib.controller.HostsResult` through :mod:`fleetlib.controller` (the local
part through :mod:`fleetlib` directly, each remote part through ``fleet ... --json`` on that
host), renders it, and exits: 0 when every host succeeded, 1 naming every failing host and
why (``status``: 3 when every host answered but some agent is not up).

Settings: ``--host-timeout`` (config ``fleet.host_timeout``, default 10 s) bounds connecting
to a host, and each host's part of a command runs under one deadline that covers
connecting, the remote command and reading its answer: the host timeout for ``status``,
three times it for ``logs`` and ``doctor``, six times for ``install``/``uninstall``;
operations that wait for agents get their own ``--timeout`` on top (:func:`wait_budget`).
The known_hosts file is config ``fleet.known_hosts`` (default ``~/.ssh/known_hosts``,
environment ``INVOKE_FLEET_KNOWN_HOSTS``).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from fleetctl.options import (
    JSON_HELP,
    PATH_HELP,
    count,
    fleet_config,
    fleet_paths,
    requested_backend,
    seconds,
    spell_commands,
    stderr_line,
    user_errors,
)
from fleetctl.render import operation_summary, print_checks, print_json, state_cell, table
from fleetlib.errors import FleetError
from fleetlib.hosts import LOCAL, SshTarget
from fleetlib.paths import FleetPaths

if TYPE_CHECKING:
    from fleetlib.controller import HostResult, HostsResult
    from fleetlib.remote import Deadline, HostLink, RemoteRun, RemoteSettings
    from fleetlib.roster import Roster

OPERATION_FAILED: Final = 1
NOT_ALL_UP: Final = 3
WAIT_DEFAULT_S: Final = 120.0
HOST_TIMEOUT_HELP: Final = "Per-host limit for connecting, and for the whole of a status on a host (default 10 s)."
BATCH_HELP: Final = "With hosts: act on this many hosts at a time, stopping at the first batch that fails."
REMOTE_ROSTER: Final = ".config/mosaic/fleet/roster.yaml"  # relative to the remote home


def host_timeout_seconds(c: Context, flag: str) -> float:
    """``--host-timeout`` (else config ``fleet.host_timeout``, else 10 s), checked like every
    duration; tasks call it before anything else, with hosts or without."""
    raw = flag or str(fleet_config(c).get("host_timeout") or "")
    value = seconds("--host-timeout", raw)
    return 10.0 if value is None else value


def settings(c: Context, timeout: float | None = None) -> RemoteSettings:
    from importlib.metadata import version  # noqa: PLC0415

    from fleetlib.remote import DEFAULT_KNOWN_HOSTS, RemoteSettings  # noqa: PLC0415

    known = fleet_config(c).get("known_hosts") or DEFAULT_KNOWN_HOSTS
    limit = host_timeout_seconds(c, "") if timeout is None else timeout
    return RemoteSettings(known_hosts=Path(known).expanduser(), timeout=limit, version=version("fleet"))


class Hosts:
    """The hosts a command drives: the roster, the links (one per remote host, opened on
    first use and closed when the command ends) and the settings."""

    def __init__(self, roster: Roster, remote: RemoteSettings) -> None:
        from fleetlib.remote import open_links  # noqa: PLC0415

        self.roster = roster
        self.settings = remote
        self.links: dict[str, HostLink] = open_links(list(roster.hosts.values()), remote)

    def chosen(self, host: str) -> list[str]:
        """``--host H`` (must be a roster host) or every remote host."""
        if not host:
            return list(self.roster.hosts)
        if host not in self.roster.hosts:
            from fleetlib.roster import _did_you_mean  # noqa: PLC0415

            known = ", ".join(self.roster.hosts) or "none"
            raise FleetError(
                f"unknown host {host!r}{_did_you_mean(host, list(self.roster.hosts))} in {self.roster.source} "
                f"(known: {known})"
            )
        return [host]

    def host_of(self, agent: str) -> str:
        return self.roster.get(agent).host

    def close(self) -> None:
        for link in self.links.values():
            link.close()


def open_hosts(c: Context, roster: Roster, timeout: float | None = None) -> Hosts:
    """The roster's hosts; ``timeout``: the checked ``--host-timeout`` (None: config or 10 s)."""
    return Hosts(roster, settings(c, timeout))


# --------------------------------------------------------------------------- rendering


def host_failure_lines(result: HostsResult) -> list[str]:
    return [f"{host.host}: {host.error}" for host in result.failed]


def finish_hosts(result: HostsResult, as_json: bool, text: Callable[[HostResult], list[str]]) -> None:
    """Print ``result`` (JSON, or ``text`` per answering host); exit 1 naming failed hosts."""
    if as_json:
        print_json(result.to_json())
    else:
        for host in result.hosts:
            if host.data is not None:
                for line in text(host):
                    print(f"{host.host}: {line}")
    if not result.ok:
        for line in host_failure_lines(result):
            if not as_json:
                stderr_line(spell_commands(f"error: {line}"))
        names = ", ".join(host.host for host in result.failed)
        raise Exit(f"error: {result.operation} failed on {len(result.failed)} host(s): {names}", code=OPERATION_FAILED)


def operation_text(host: HostResult) -> list[str]:
    from fleetlib.controller import operation_from_json  # noqa: PLC0415

    result = operation_from_json(host.data)
    lines = [operation_summary(result)]
    lines += [f"{o.name}: {o.error}" for o in result.failures]
    return lines


# --------------------------------------------------------------------------- jobs


def parsed_answer(link: HostLink, run: RemoteRun, expect: type) -> Any:
    """A host's ``fleet ... --json`` answer, parsed; a host that has no roster yet is told
    to run ``fleet install`` (which pushes each host's part)."""
    from fleetlib.controller import parse_answer  # noqa: PLC0415
    from fleetlib.remote import HostError  # noqa: PLC0415

    try:
        return parse_answer(link.host.name, run, expect)
    except HostError as exc:
        if str(exc).startswith("roster not found"):
            raise HostError("no roster on this host yet; run `fleet install` (it pushes each host's part)") from None
        raise


def remote_answer(
    link: HostLink, argv: Sequence[str], expect: type, *, deadline: Deadline, stdin: str | None = None
) -> Any:
    """``fleet argv --json`` on ``link``'s host (connecting included, within ``deadline``),
    parsed by :func:`parsed_answer`."""
    return parsed_answer(link, link.fleet(argv, stdin=stdin, deadline=deadline), expect)


def wait_budget(roster: Roster, timeout: float | None, hosts: Hosts) -> float:
    """How long a host may take for start/stop/restart: its own wait, the longest stop
    (TERM then KILL, twice for a restart's stop and a possible second try), plus the host timeout."""
    longest_stop = max((agent.stop_timeout for agent in roster.agents), default=10.0)
    return (timeout or WAIT_DEFAULT_S) + 2 * longest_stop + hosts.settings.timeout


def run_hosts(
    hosts: Hosts,
    names: Sequence[str],
    remote: Callable[[HostLink, Roster, Deadline], Any],
    local: Callable[[Roster], Any] | None,
    budget: float,
    batch: int = 0,
) -> list[HostResult]:
    """Run the job on each named host (``local`` included when named). A remote host's
    whole job runs under one :class:`~fleetlib.remote.Deadline` of ``budget`` seconds,
    started when its job starts; the fan-out abandons a job still running a host timeout
    later (a backstop: the deadline ends it first)."""
    from fleetlib.controller import fan_out, in_batches, local_first  # noqa: PLC0415
    from fleetlib.remote import Deadline  # noqa: PLC0415

    def job(name: str) -> Any:
        part = hosts.roster.for_host(name)
        if name == LOCAL:
            assert local is not None
            return local(part)
        return remote(hosts.links[name], part, Deadline(budget))

    ordered = local_first(names)
    backstop = budget + hosts.settings.timeout
    return in_batches(ordered, batch, job, backstop) if batch else fan_out(ordered, job, backstop)


def control(
    c: Context,
    action: str,
    roster: Roster,
    paths: FleetPaths,
    *,
    agent: str,
    backend: str,
    unit_dir: str,
    timeout: float | None,
    lock_timeout: float | None,
    dry_run: bool,
    as_json: bool,
    batch: int,
    host_timeout: float,
    fresh: bool = False,
) -> None:
    """``start``/``stop``/``restart`` across hosts (or on ``agent``'s host); ``fresh``
    (start, restart): new conversations."""
    import time  # noqa: PLC0415

    from fleetlib.backend import open_fleet  # noqa: PLC0415
    from fleetlib.controller import HostsResult  # noqa: PLC0415

    hosts = open_hosts(c, roster, host_timeout)
    names = [hosts.host_of(agent)] if agent else roster.host_names()
    budget = wait_budget(roster, timeout, hosts)

    def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
        argv = [action, "--json", "--backend", link.host.backend]
        argv += ["--agent", agent] if agent else []
        argv += ["--timeout", f"{timeout:g}"] if timeout is not None else []
        argv += ["--lock-timeout", f"{lock_timeout:g}"] if lock_timeout is not None else []
        argv += ["--dry-run"] if dry_run else []
        argv += ["--fresh"] if fresh else []
        return remote_answer(link, argv, dict, deadline=deadline)

    def local(part: Roster) -> Any:
        lifecycle = open_fleet(
            paths,
            part,
            backend=requested_backend(c, backend),
            unit_dir=Path(unit_dir).expanduser() if unit_dir else None,
            dry_run=dry_run,
            timeout=timeout or WAIT_DEFAULT_S,
            lock_timeout=lock_timeout,
            echo=stderr_line,
        )
        kwargs = {"fresh": True} if fresh else {}
        return getattr(lifecycle, action)(agent or None, **kwargs).to_json()

    started = time.monotonic()
    try:
        results = run_hosts(hosts, names, remote, local, budget, batch)
    finally:
        hosts.close()
    finish_hosts(HostsResult(action, results, time.monotonic() - started), as_json, operation_text)


def install(
    c: Context,
    operation: str,
    roster: Roster,
    paths: FleetPaths,
    *,
    backend: str,
    unit_dir: str,
    enable: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """``install`` (push each host's part of the roster atomically, then install there) or
    ``uninstall`` across hosts. A dry run pushes the part beside the roster, never over it."""
    import time  # noqa: PLC0415

    from fleetctl.render import install_lines  # noqa: PLC0415
    from fleetlib.backend import open_fleet  # noqa: PLC0415
    from fleetlib.controller import HostsResult, remote_fleet_json  # noqa: PLC0415
    from fleetlib.results import InstallResult  # noqa: PLC0415

    hosts = open_hosts(c, roster)
    budget = hosts.settings.timeout * 6

    def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
        argv = [operation, "--json", "--backend", link.host.backend]
        if operation == "install":
            target = REMOTE_ROSTER.replace("roster.yaml", "roster.dry-run.yaml") if dry_run else REMOTE_ROSTER
            link.put_atomic(roster.host_text(link.host.name).encode(), target, deadline=deadline)
            argv += ["--roster", target] if dry_run else []
            argv += [] if enable else ["--no-enable"]
        argv += ["--dry-run"] if dry_run else []
        return remote_fleet_json(link, argv, dict, deadline=deadline)

    def local(part: Roster) -> Any:
        lifecycle = open_fleet(
            paths,
            part,
            backend=requested_backend(c, backend),
            unit_dir=Path(unit_dir).expanduser() if unit_dir else None,
            dry_run=dry_run,
            echo=stderr_line,
        )
        done = lifecycle.install(enable=enable) if operation == "install" else lifecycle.uninstall()
        return done.to_json()

    def text(host: HostResult) -> list[str]:
        data = host.data
        result = InstallResult(
            operation=data["operation"],
            backend=data["backend"],
            dry_run=data["dry_run"],
            written=data["written"],
            removed=data["removed"],
            enabled=data["enabled"],
            disabled=data["disabled"],
            reloaded=data["reloaded"],
            notes=data["notes"],
            stopped=data.get("stopped", []),  # a host older than this key stops none
        )
        return install_lines(result)

    started = time.monotonic()
    try:
        # Every listed host, even one left without agents: its install stops and removes
        # the agents it no longer has, as a local install does.
        names = [*(name for name in roster.host_names() if name == LOCAL), *roster.hosts]
        results = run_hosts(hosts, names, remote, local, budget)
    finally:
        hosts.close()
    finish_hosts(HostsResult(operation, results, time.monotonic() - started), as_json, text)


def status(
    c: Context,
    roster: Roster,
    paths: FleetPaths,
    *,
    agent: str,
    backend: str,
    unit_dir: str,
    as_json: bool,
    host_timeout: float | None = None,
) -> None:
    """Every host's rows, merged with a ``host`` column/key; exit 1 when a host failed,
    else 3 when some agent (or holder) is not up. Each host gets one host timeout for all
    of it: connecting, its ``fleet status`` and reading the answer."""
    from fleetctl.render import status_rows_json  # noqa: PLC0415
    from fleetlib.backend import open_fleet  # noqa: PLC0415
    from fleetlib.controller import HostsResult  # noqa: PLC0415
    from fleetlib.usage import fleet_sampler, with_usage  # noqa: PLC0415

    hosts = open_hosts(c, roster, host_timeout)
    names = [hosts.host_of(agent)] if agent else roster.host_names()

    def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
        argv = ["status", "--json", "--backend", link.host.backend, *(["--agent", agent] if agent else [])]
        run = link.fleet(argv, deadline=deadline)
        rows = parsed_answer(link, run, list)
        return {"ok": True, "all_up": run.exit_code == 0, "agents": rows}

    def local(part: Roster) -> Any:
        unit_path = Path(unit_dir).expanduser() if unit_dir else None
        lifecycle = open_fleet(paths, part, backend=requested_backend(c, backend), unit_dir=unit_path)
        chosen = [agent] if agent else part.names()
        lifecycle.ensure_installed(chosen)
        fleet_status = lifecycle.status(agent or None)
        if as_json:  # this machine's figures, as each remote host's `fleet status --json` gives its own
            fleet_status = with_usage(fleet_status, fleet_sampler(paths).sample(fleet_status.agents))
        return {"ok": True, "all_up": fleet_status.all_up, "agents": status_rows_json(fleet_status)}

    try:
        results = run_hosts(hosts, names, remote, local, hosts.settings.timeout)
    finally:
        hosts.close()
    merged = HostsResult("status", results)
    rows = merged.agent_rows()
    if as_json:
        print_json(rows)
    else:
        body = [
            [
                row["host"],
                row["name"],
                state_cell(str(row.get("state", "?")), in_roster=row.get("in_roster") is not False),
                "-" if row.get("pid") is None else str(row["pid"]),
                "-" if row.get("restarts") is None else str(row["restarts"]),
                str(row.get("failures", 0)),
                "-" if row.get("exit_status") is None else str(row["exit_status"]),
                str(row.get("backend", "?")),
            ]
            for row in rows
        ]
        for line in table(["HOST", "NAME", "STATE", "PID", "RESTARTS", "FAILURES", "EXIT", "BACKEND"], body):
            print(line)
    if not merged.ok:
        for line in host_failure_lines(merged):
            stderr_line(spell_commands(f"error: {line}"))
        names_failed = ", ".join(host.host for host in merged.failed)
        raise Exit(f"error: status failed on {len(merged.failed)} host(s): {names_failed}", code=OPERATION_FAILED)
    if not all(host.data.get("all_up") for host in results):
        raise Exit(code=NOT_ALL_UP)


def on_agent_host(c: Context, roster: Roster, agent: str) -> tuple[Hosts, HostLink] | None:
    """The link to ``agent``'s host, or None when the agent is local."""
    host = roster.get(agent).host
    if host == LOCAL:
        return None
    hosts = open_hosts(c, roster)
    return hosts, hosts.links[host]


def send(
    c: Context,
    roster: Roster,
    *,
    agent: str,
    text: str,
    verify: bool,
    timeout: float | None,
    as_json: bool,
    answer: bool = False,
) -> bool:
    """Send to an agent on another host (the message travels on stdin); False when the
    agent is local (the caller sends as usual)."""
    from fleetlib.remote import Deadline, HostError  # noqa: PLC0415

    routed = on_agent_host(c, roster, agent)
    if routed is None:
        return False
    hosts, link = routed
    argv = ["send", "--agent", agent, "--message", "-", "--json"]
    argv += [] if verify else ["--no-verify"]
    argv += ["--answer"] if answer else []
    argv += ["--timeout", f"{timeout:g}"] if timeout is not None else []
    budget = (timeout or 15.0) + 2 * hosts.settings.timeout
    try:
        data = remote_answer(link, argv, dict, deadline=Deadline(budget), stdin=text + "\n")
    except HostError as exc:
        raise FleetError(
            f"{link.host.name}: {exc}",
        ) from None
    finally:
        hosts.close()
    data = {**data, "agents": [{**item, "host": link.host.name} for item in data.get("agents", [])]}
    if as_json:
        print_json(data)
    else:
        for item in data["agents"]:
            if item["action"] != "failed":
                how = ": accepted" if item.get("verified") else ""
                print(f"{link.host.name}: {item['action']} {data['characters']} characters to {item['name']}{how}")
    if not data.get("ok"):
        failed = "; ".join(f"{i['name']}: {i['error']}" for i in data["agents"] if i["action"] == "failed")
        raise Exit(spell_commands(f"error: send failed on {link.host.name}: {failed}"), code=OPERATION_FAILED)
    return True


def send_all(
    c: Context,
    roster: Roster,
    local_send: Callable[[Roster], dict[str, Any]],
    *,
    text: str,
    verify: bool,
    timeout: float | None,
    as_json: bool,
    answer: bool = False,
) -> None:
    """``send --all`` across hosts: every host sends to its own agents at once (the message
    on each remote command's stdin); ``local_send`` sends to this machine's part."""
    import time  # noqa: PLC0415

    from fleetlib.controller import HostsResult  # noqa: PLC0415

    hosts = open_hosts(c, roster)
    most = max((len(roster.for_host(name).agents) for name in roster.host_names()), default=1)
    budget = (timeout or 15.0) * most + 2 * hosts.settings.timeout
    argv = ["send", "--all", "--message", "-", "--json"]
    argv += [] if verify else ["--no-verify"]
    argv += ["--answer"] if answer else []
    argv += ["--timeout", f"{timeout:g}"] if timeout is not None else []

    def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
        return remote_answer(link, argv, dict, deadline=deadline, stdin=text + "\n")

    def lines(host: HostResult) -> list[str]:
        data = host.data
        sent = [a for a in data.get("agents", []) if a["action"] != "failed"]
        failed = [f"{a['name']}: {a['error']}" for a in data.get("agents", []) if a["action"] == "failed"]
        done = [f"sent {data['characters']} characters to {', '.join(a['name'] for a in sent)}"] if sent else []
        return done + [f"FAILED {line}" for line in failed]

    started = time.monotonic()
    try:
        results = run_hosts(hosts, roster.host_names(), remote, local_send, budget)
    finally:
        hosts.close()
    finish_hosts(HostsResult("send", results, time.monotonic() - started), as_json, lines)


def logs(c: Context, roster: Roster, *, agent: str, lines: int, follow: bool, extra: Sequence[str] = ()) -> bool:
    """Show the logs of an agent on another host (``extra``: more ``logs`` flags, passed
    on as given); False when the agent is local. ``follow`` prints new output as it
    comes until Ctrl-C, which ends the follower on the host too."""
    from fleetlib.remote import Deadline, HostError  # noqa: PLC0415

    routed = on_agent_host(c, roster, agent)
    if routed is None:
        return False
    hosts, link = routed
    argv = ["logs", "--agent", agent, "--lines", str(lines), "--backend", link.host.backend, *extra]

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    try:
        if follow:
            run = link.follow([*argv, "--follow"], write)
        else:
            run = link.fleet(argv, deadline=Deadline(hosts.settings.timeout * 3))
    except HostError as exc:
        raise FleetError(f"{link.host.name}: {exc}") from None
    except KeyboardInterrupt:
        return True  # the follow closed its channel on the way out: the host's follower ends
    finally:
        hosts.close()
    if run.exit_code != 0:
        raise FleetError(f"{link.host.name}: {run.error_line()}")
    sys.stdout.write(run.stdout)
    return True


def wait(
    c: Context, roster: Roster, paths: FleetPaths, *, agent: str, state: str, timeout: float | None, as_json: bool
) -> None:
    """``wait`` across hosts: each host waits for its own agents (``--agent``: that
    agent's host only) at once; exit 1 naming every host that timed out or failed."""
    import time  # noqa: PLC0415

    from fleetlib.backend import open_fleet  # noqa: PLC0415
    from fleetlib.controller import HostsResult  # noqa: PLC0415
    from fleetlib.waiting import DEFAULT_TIMEOUT_S, wait_for  # noqa: PLC0415

    hosts = open_hosts(c, roster)
    names = [hosts.host_of(agent)] if agent else roster.host_names()
    limit = timeout or DEFAULT_TIMEOUT_S
    budget = limit + hosts.settings.timeout * 2

    def remote(link: HostLink, part: Roster, deadline: Deadline) -> Any:
        argv = ["wait", "--for", state, "--timeout", f"{limit:g}", "--json", "--backend", link.host.backend]
        argv += ["--agent", agent] if agent else ["--all"]
        return remote_answer(link, argv, dict, deadline=deadline)

    def local(part: Roster) -> Any:
        lifecycle = open_fleet(paths, part, backend=requested_backend(c, ""))
        name = agent or None
        lifecycle.ensure_installed([agent] if agent else part.names())
        return wait_for(lambda: lifecycle.status(name), state, limit).to_json()

    started = time.monotonic()
    try:
        results = run_hosts(hosts, names, remote, local, budget)
    finally:
        hosts.close()
    finish_hosts(
        HostsResult("wait", results, time.monotonic() - started),
        as_json,
        lambda host: [f"{state} after {float(host.data.get('seconds') or 0):.1f} s"],
    )


def proxy_command(hops: Sequence[SshTarget], strict: Sequence[str]) -> str:
    """An OpenSSH ``ProxyCommand`` reaching ``%h:%p`` through ``hops`` (in the order they are
    connected to), each hop an ``ssh -W`` with the same ``strict`` options. OpenSSH's own
    ProxyJump passes no ``-o`` option on to the hops, so they would be checked against the
    default known_hosts, and could prompt. Each level's ``%`` is doubled for the level
    above, which expands it once."""
    command = ""
    for hop in hops:
        literal = ["ssh", *strict, "-o", f"ProxyCommand={command}" if command else "ProxyJump=none"]
        literal += ["-l", hop.user] if hop.user else []
        literal += ["-p", str(hop.port)] if hop.port is not None else []
        escaped = [arg.replace("%", "%%") for arg in literal]
        command = shlex.join([*escaped, "-W", "[%h]:%p", "--", hop.address.replace("%", "%%")])
    return command


def ssh_argv(link: HostLink, remote_command: str, hops: Sequence[SshTarget] = ()) -> list[str]:
    """OpenSSH argv for an interactive session on ``link``'s host: a TTY, the same
    known_hosts (strict), keys only; through ``hops`` (its ProxyJump hosts), each checked
    the same way."""
    target = link.host.ssh
    strict = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    strict += ["-o", f"UserKnownHostsFile={link.settings.known_hosts}"]
    argv = ["ssh", "-t", *strict]
    if hops:
        argv += ["-o", f"ProxyCommand={proxy_command(hops, strict)}"]
    if link.host.identity_file:
        argv += ["-i", os.path.expanduser(link.host.identity_file)]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    destination = f"{target.user}@{target.address}" if target.user else target.address
    return [*argv, destination, remote_command]


def attach(c: Context, roster: Roster, *, agent: str, read_only: bool) -> bool:
    """``watch``/``attach`` an agent on another host through ``ssh -t``; False when local."""
    from fleetlib.remote import version_guarded  # noqa: PLC0415

    routed = on_agent_host(c, roster, agent)
    if routed is None:
        return False
    hosts, link = routed
    hosts.close()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise FleetError(f"{'watch' if read_only else 'attach'} needs a terminal (stdin and stdout)")
    command = version_guarded(hosts.settings.version, ["watch" if read_only else "attach", "--agent", agent])
    os.execvp("ssh", ssh_argv(link, command, link.jump_hosts()))  # noqa: S606  # argv list, no shell: the terminal is the user's
    return True  # not reached


def doctor(c: Context, roster: Roster, local_checks: Callable[[], list[Any]], as_json: bool) -> None:
    """Local checks, then per host: reachable, version, and that host's own doctor."""
    from fleetlib.checks import Check, failed, passed  # noqa: PLC0415
    from fleetlib.controller import parse_answer  # noqa: PLC0415
    from fleetlib.remote import Deadline, HostError  # noqa: PLC0415

    hosts = open_hosts(c, roster)

    def remote(link: HostLink, part: Roster) -> Any:
        name = link.host.name
        checks: list[Check] = []
        deadline = Deadline(hosts.settings.timeout * 3)
        try:
            link.connection(deadline)
        except HostError as exc:
            return [failed(f"{name}: reachable", str(exc), "check the address, sshd and known_hosts")]
        checks.append(passed(f"{name}: reachable", f"ssh {link.host.ssh}"))
        try:
            run = link.fleet(["doctor", "--json", "--backend", link.host.backend], deadline=deadline)
        except HostError as exc:
            checks.append(failed(f"{name}: version", str(exc), f"fleet hosts.bootstrap --host {name}"))
            return checks
        checks.append(passed(f"{name}: version", f"fleet {hosts.settings.version}"))
        for item in parse_answer(name, run, list):
            checks.append(
                Check(f"{name}: {item['name']}", item["ok"], item["detail"], item.get("fix"), bool(item.get("skipped")))
            )
        return checks

    from fleetlib.controller import fan_out  # noqa: PLC0415

    remote_names = [name for name in roster.host_names() if name != LOCAL] or list(roster.hosts)

    def job(name: str) -> Any:
        return {"ok": True, "checks": remote(hosts.links[name], roster.for_host(name))}

    try:
        results = fan_out(remote_names, job, hosts.settings.timeout * 5)
    finally:
        hosts.close()
    checks = list(local_checks())
    for result in results:
        if result.data is None:
            checks.append(failed(f"{result.host}: reachable", result.error or "failed", "check the host"))
        else:
            checks.extend(result.data["checks"])
    print_checks(checks, as_json)
    if not all(check.ok for check in checks):
        raise Exit(code=OPERATION_FAILED)


# --------------------------------------------------------------------------- hosts.* tasks

HOSTS_HELP: Final = {
    **PATH_HELP,
    "host": "Only this host (default: every host in the roster).",
    "host_timeout": HOST_TIMEOUT_HELP,
    "json": JSON_HELP,
}


def roster_if_valid(path: Path) -> Roster | None:
    """The roster at ``path``, or None when it is missing or invalid (``doctor`` reports that
    itself, as its ``roster`` check)."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: fleetlib loads when used

    try:
        return load_roster(path)
    except FleetError:
        return None


def roster_with_hosts(c: Context, home: str, roster: str) -> Roster:
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: fleetlib loads when used

    loaded = load_roster(fleet_paths(c, home, roster).roster)
    if not loaded.hosts:
        raise FleetError(f"{loaded.source} names no hosts; add a hosts: mapping (see README, Several hosts)")
    return loaded


@task(auto_shortflags=False, help=HOSTS_HELP)
@user_errors
def hosts_bootstrap(
    c: Context, host: str = "", host_timeout: str = "", home: str = "", roster: str = "", json: bool = False
) -> None:
    """Install this controller's exact fleet version on each host (no registry needed there)."""
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415

    from fleetlib.bootstrap import build_wheels, install_on  # noqa: PLC0415
    from fleetlib.controller import HostsResult, fan_out  # noqa: PLC0415

    limit = host_timeout_seconds(c, host_timeout)
    loaded = roster_with_hosts(c, home, roster)
    hosts = open_hosts(c, loaded, limit)
    names = hosts.chosen(host)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleet-wheels-") as directory:
        if not json:
            stderr_line("building wheels ...")
        wheels = build_wheels(Path(directory))

        def job(name: str) -> Any:
            answer = install_on(hosts.links[name], wheels, hosts.settings.version)
            return {"ok": True, "version": answer, "wheels": [wheel.name for wheel in wheels]}

        try:
            results = fan_out(names, job, 900.0)
        finally:
            hosts.close()
    finish_hosts(
        HostsResult("bootstrap", results, time.monotonic() - started),
        json,
        lambda result: [f"installed {result.data['version']} ({len(result.data['wheels'])} wheels)"],
    )


@task(auto_shortflags=False, help=HOSTS_HELP)
@user_errors
def hosts_trust(
    c: Context, host: str = "", host_timeout: str = "", home: str = "", roster: str = "", json: bool = False
) -> None:
    """First contact: record each host's SSH key in known_hosts (check the fingerprints!)."""
    from fleetlib.controller import HostsResult, fan_out  # noqa: PLC0415

    limit = host_timeout_seconds(c, host_timeout)
    loaded = roster_with_hosts(c, home, roster)
    hosts = open_hosts(c, loaded, limit)
    names = hosts.chosen(host)
    # One at a time would be safer against two writers of known_hosts; appends are atomic
    # lines (O_APPEND), so parallel is fine.
    results = fan_out(names, lambda name: {"ok": True, "lines": hosts.links[name].trust()}, hosts.settings.timeout * 2)
    finish_hosts(HostsResult("trust", results), json, lambda result: list(result.data["lines"]))


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def hosts_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the roster's hosts: name, SSH target, backend, number of agents."""
    from fleetlib.roster import load_roster  # noqa: PLC0415  # start-up: fleetlib loads when used

    loaded = load_roster(fleet_paths(c, home, roster).roster)
    counts = dict.fromkeys([LOCAL, *loaded.hosts], 0)
    for agent in loaded.agents:
        counts[agent.host] += 1
    rows: list[dict[str, Any]] = [
        {
            "host": LOCAL,
            "ssh": None,
            "identity_file": None,
            "backend": requested_backend(c, ""),
            "agents": counts[LOCAL],
        }
    ]
    rows += [
        {
            "host": h.name,
            "ssh": str(h.ssh),
            "identity_file": h.identity_file,
            "backend": h.backend,
            "agents": counts[h.name],
        }
        for h in loaded.hosts.values()
    ]
    if json:
        print_json(rows)
        return
    body = [[r["host"], r["ssh"] or "-", r["backend"], str(r["agents"])] for r in rows]
    for line in table(["HOST", "SSH", "BACKEND", "AGENTS"], body):
        print(line)


def batch_size(raw: str) -> int:
    """``--batch K``: 0 (all hosts at once) when not given, else a whole number >= 1."""
    return count("--batch", raw, 0)


hosts_ns = Collection("hosts")
hosts_ns.add_task(hosts_bootstrap, name="bootstrap")
hosts_ns.add_task(hosts_trust, name="trust")
hosts_ns.add_task(hosts_list, name="list")
