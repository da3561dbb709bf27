"""systemctl argv builders and output parsers (``systemctl --user`` only), and the
names of a fleet's units.

The default home (``~/.config/mosaic``) keeps the reference tool's unit names:
``mosaic-tmux-holder.service``, one instance of ``mosaic-agent@.service`` per roster
agent and ``mosaic-fleet-watcher.service``. Every other home puts the first 8 hex digits
of the SHA-256 of its resolved path into the prefix (``mosaic-1a2b3c4d-tmux-holder.service``,
``mosaic-1a2b3c4d-agent@a1.service``, ...), so several homes run side by side under one
user manager without ever naming (installing over, stopping, restarting) each other's units.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fleetlib.observed import SupervisorState
from fleetlib.paths import resolve_home

DEFAULT_PREFIX: Final = "mosaic-"
HOME_HASH_DIGITS: Final = 8


@dataclass(frozen=True)
class UnitNames:
    """The unit names of one fleet home (see the module docstring); ``home`` is the
    resolved home they belong to, None for the default home (its units carry no path)."""

    prefix: str = DEFAULT_PREFIX
    home: str | None = None

    @classmethod
    def for_home(cls, home: str | os.PathLike[str]) -> UnitNames:
        """The names for ``home``: the default home's are exactly the reference tool's; any
        other home's depend only on its resolved path (symlinks followed), so every
        spelling of one home names the same units and two homes never the same."""
        resolved = os.path.realpath(home)
        if resolved == os.path.realpath(resolve_home(None, {})):
            return cls()
        import hashlib  # noqa: PLC0415 (a non-default home's unit names only: `status` on tmux never needs it)

        digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:HOME_HASH_DIGITS]
        return cls(f"{DEFAULT_PREFIX}{digest}-", resolved)

    @property
    def holder(self) -> str:
        return f"{self.prefix}tmux-holder.service"

    @property
    def template(self) -> str:
        return f"{self.prefix}agent@.service"

    @property
    def agent_pattern(self) -> str:
        """A ``systemctl``/glob pattern matching this home's agent units and no other's."""
        return f"{self.prefix}agent@*.service"

    @property
    def slice(self) -> str:
        """The slice holding the holder, the watcher and every agent of this home: the
        fleet-wide ceiling (``fleet_resources``) is its limits. A child of ``app.slice``
        (``-`` nests slices, so the prefix's dashes become ``_``)."""
        return f"app-{self.prefix.rstrip('-').replace('-', '_')}.slice"

    def scope(self, name: str, token: str) -> str:
        """A transient scope agent ``name`` runs in on the tmux backend when it has limits;
        ``token`` (hex) tells its windows apart (a new window may start before the old
        window's scope is gone)."""
        return f"{self.prefix}agent-{name}-{token}.scope"

    def is_scope_of(self, unit: str, name: str) -> bool:
        """Whether ``unit`` is one of :meth:`scope` for agent ``name`` (and no other agent)."""
        head, tail = f"{self.prefix}agent-{name}-", ".scope"
        token = unit[len(head) : -len(tail)] if unit.startswith(head) and unit.endswith(tail) else ""
        return bool(token) and all(char in "0123456789abcdef" for char in token)

    @property
    def watcher(self) -> str:
        return f"{self.prefix}fleet-watcher.service"

    def agent(self, name: str) -> str:
        return f"{self.prefix}agent@{name}.service"

    def agent_name(self, unit: str) -> str | None:
        """Inverse of :meth:`agent`; None for other units (another home's included)."""
        prefix, suffix = f"{self.prefix}agent@", ".service"
        if unit.startswith(prefix) and unit.endswith(suffix) and len(unit) > len(prefix) + len(suffix):
            return unit[len(prefix) : -len(suffix)]
        return None

    def describe(self, what: str) -> str:
        """A unit's ``Description=``: ``what``, and for a home other than the default the
        home's path (printable, ``%`` escaped: systemd expands specifiers there)."""
        if self.home is None:
            return what
        shown = "".join(char if char.isprintable() else "?" for char in self.home).replace("%", "%%")
        return f"{what} ({shown})"

    def list_units_argv(self) -> list[str]:
        """``list-units`` of this home's holder and agents."""
        return list_units_argv([self.holder, self.agent_pattern])


DEFAULT_UNITS: Final = UnitNames()


def systemctl_argv(action: str, units: Iterable[str] = (), *options: str) -> list[str]:
    """``systemctl --user [options] <action> <units...>``."""
    return ["systemctl", "--user", *options, action, *units]


def list_units_argv(patterns: Sequence[str]) -> list[str]:
    return systemctl_argv("list-units", patterns, "--all", "--output=json", "--no-pager")


# Re-exported under the name the systemd layer has always used.
UnitState = SupervisorState


def parse_list_units(output: str) -> dict[str, UnitState]:
    """Parse ``systemctl list-units --output=json``. Units the manager has not loaded are
    absent from it; callers treat a missing unit as inactive."""
    try:
        rows = json.loads(output or "[]")
    except json.JSONDecodeError:
        return {}
    return {
        row["unit"]: UnitState(
            unit=row["unit"], load_state=row["load"], active_state=row["active"], sub_state=row["sub"]
        )
        for row in rows
        if isinstance(row, dict) and "unit" in row
    }


def no_user_manager_socket(environ: Mapping[str, str]) -> bool:
    """Whether ``systemctl --user`` in ``environ`` has nothing to connect to: no session
    bus address, and neither the manager's private socket nor the user bus in
    ``$XDG_RUNTIME_DIR`` (where it looks when the variable is set). False when unsure."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if environ.get("DBUS_SESSION_BUS_ADDRESS") or not os.path.isabs(runtime):
        return False
    return not any(os.path.lexists(os.path.join(runtime, name)) for name in ("systemd/private", "bus"))
