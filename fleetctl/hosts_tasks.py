"""The ``hosts.*`` tasks: list the roster's hosts, trust their keys, install fleet there.

The ``fleet.*`` tasks drive a roster with ``hosts:`` through the library
(:class:`fleetlib.group.HostsFleet`, chosen by :func:`fleetlib.api.open_fleet`); only what
concerns the hosts themselves lives here. Fabric is imported inside the tasks that reach
a host, never at start-up.

Settings: ``--host-timeout`` (config ``fleet.host_timeout``, default 10 s) bounds connecting
to a host; the known_hosts file is config ``fleet.known_hosts`` (default
``~/.ssh/known_hosts``, environment ``INVOKE_FLEET_KNOWN_HOSTS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from fleetctl.fleet_tasks import HOST_TIMEOUT_HELP, finish_hosts, fleet_options, host_timeout_seconds, load
from fleetctl.options import JSON_HELP, PATH_HELP, fleet_paths, requested_backend, stderr_line, user_errors
from fleetctl.render import bootstrap_lines, hosts_list_lines, print_json, trust_lines
from fleetlib.hosts import LOCAL

if TYPE_CHECKING:
    from fleetlib.group import HostsFleet

HOSTS_HELP: Final = {
    **PATH_HELP,
    "host": "Only this host (default: every host in the roster).",
    "host_timeout": HOST_TIMEOUT_HELP,
    "json": JSON_HELP,
}


def hosts_fleet(c: Context, home: str, roster: str, host_timeout: str) -> HostsFleet:
    """The roster's hosts as a fleet; a roster without hosts is a one-line error."""
    from fleetlib.api import open_hosts  # noqa: PLC0415  (the library only when a task runs)

    limit = host_timeout_seconds(c, host_timeout)
    loaded = load(c, home, roster)
    return open_hosts(fleet_paths(c, home, roster), loaded, fleet_options(c, host_timeout=limit))


@task(auto_shortflags=False, help=HOSTS_HELP)
@user_errors
def hosts_bootstrap(
    c: Context, host: str = "", host_timeout: str = "", home: str = "", roster: str = "", json: bool = False
) -> None:
    """Install this controller's exact fleet version on each host (no registry needed there)."""
    fleet = hosts_fleet(c, home, roster, host_timeout)
    result = fleet.bootstrap(host, progress=(lambda _: None) if json else stderr_line)
    finish_hosts(result, json, bootstrap_lines)


@task(auto_shortflags=False, help=HOSTS_HELP)
@user_errors
def hosts_trust(
    c: Context, host: str = "", host_timeout: str = "", home: str = "", roster: str = "", json: bool = False
) -> None:
    """First contact: record each host's SSH key in known_hosts (check the fingerprints!)."""
    fleet = hosts_fleet(c, home, roster, host_timeout)
    finish_hosts(fleet.trust(host), json, trust_lines)


@task(auto_shortflags=False, help={**PATH_HELP, "json": JSON_HELP})
@user_errors
def hosts_list(c: Context, home: str = "", roster: str = "", json: bool = False) -> None:
    """List the roster's hosts: name, SSH target, backend, number of agents."""
    loaded = load(c, home, roster)
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
    for line in hosts_list_lines(rows):
        print(line)


hosts_ns = Collection("hosts")
hosts_ns.add_task(hosts_bootstrap, name="bootstrap")
hosts_ns.add_task(hosts_trust, name="trust")
hosts_ns.add_task(hosts_list, name="list")
