"""The library's front door: :func:`open_fleet` gives the fleet a roster describes.

A roster without ``hosts:`` is this machine's fleet (:class:`fleetlib.fleet.LocalFleet`);
one with hosts is the fleet across them (:class:`fleetlib.group.HostsFleet`), with the same
methods (fabric's ``Connection`` and ``Group``). Fabric is imported only for a roster with
hosts; without it installed, such a roster is a one-line
:class:`~fleetlib.errors.FleetError` saying how to install it.

Its own module so that neither fleet imports the other's chooser: the local fleet never
loads the several-host code, and the several-host fleet builds on the local one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from fleetlib.errors import FleetError
from fleetlib.fleet import FleetOptions, LocalFleet
from fleetlib.paths import FleetPaths
from fleetlib.roster import Roster

if TYPE_CHECKING:
    from fleetlib.group import HostsFleet

__all__ = ["INSTALL_HOSTS", "FleetOptions", "LocalFleet", "open_fleet", "open_hosts"]

INSTALL_HOSTS: Final = "pip install 'fleet[hosts]'"


def open_fleet(paths: FleetPaths, roster: Roster, options: FleetOptions | None = None) -> LocalFleet | HostsFleet:
    """The fleet of ``roster``: across its hosts when it names any (:func:`open_hosts`),
    else this machine's."""
    if roster.hosts:
        return open_hosts(paths, roster, options)
    return LocalFleet(paths, roster, options)


def open_hosts(paths: FleetPaths, roster: Roster, options: FleetOptions | None = None) -> HostsFleet:
    """The fleet of ``roster`` across its hosts. A roster without hosts, or one with hosts
    and no Fabric installed, is a one-line :class:`FleetError` (exit 2) saying what to do."""
    if not roster.hosts:
        raise FleetError(f"{roster.source} names no hosts; add a hosts: mapping (see docs/guide/hosts.md)")
    try:
        # Fabric only for a roster with hosts (an optional extra): imported here, not above.
        from fleetlib.group import HostsFleet  # noqa: PLC0415
    except ImportError as exc:
        missing = str(exc.name)
        if missing.partition(".")[0] not in ("fabric", "paramiko", "invoke"):
            raise
        raise FleetError(
            f"{roster.source} names hosts, which needs Fabric ({missing} is not installed); "
            f"install it with: {INSTALL_HOSTS}"
        ) from None
    return HostsFleet(paths, roster, options)
