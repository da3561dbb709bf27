"""The roster: which agents a fleet runs, stored as YAML (format version 1).

One mechanism per module, each stating its guarantee:

- :mod:`~fleetlib.roster.model`: the values (:class:`Agent`, :class:`Roster`), defaults, starter text;
- :mod:`~fleetlib.roster.scalars`: strict YAML reading (no surprising scalars; file:line in every error);
- :mod:`~fleetlib.roster.values`: the rule for each kind of value (names, paths, commands, numbers);
- :mod:`~fleetlib.roster.validate`: YAML text -> :class:`Roster`, one table of agent keys;
- :mod:`~fleetlib.roster.files`: reading the roster file safely; its paths on this machine;
- :mod:`~fleetlib.roster.splice`: comment-preserving text splices;
- :mod:`~fleetlib.roster.edit`: locked, re-validated, atomic edits of the file.

This package re-exports the names the rest of fleet imports. The model's names load with
the package; the others (which need PyYAML) load on first use, so code that only handles
:class:`Roster` values does not pay for importing YAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from fleetlib.roster.model import DEFAULT_STOP_TIMEOUT, NAME_PATTERN, STARTER_ROSTER, Agent, Roster

if TYPE_CHECKING:
    from fleetlib.roster.edit import add_agent, init_roster, remove_agent
    from fleetlib.roster.files import load_roster, missing_cwd_warnings
    from fleetlib.roster.scalars import did_you_mean as _did_you_mean
    from fleetlib.roster.validate import parse_roster, validate_agent

__all__ = [
    "DEFAULT_STOP_TIMEOUT",
    "NAME_PATTERN",
    "STARTER_ROSTER",
    "Agent",
    "Roster",
    "_did_you_mean",  # private, but fleetctl.hosts_tasks words its unknown-host error with it
    "add_agent",
    "init_roster",
    "load_roster",
    "missing_cwd_warnings",
    "parse_roster",
    "remove_agent",
    "validate_agent",
]

# name -> (module, name there) for the names that import PyYAML with their module.
_LAZY: Final = {
    "add_agent": ("edit", "add_agent"),
    "init_roster": ("edit", "init_roster"),
    "remove_agent": ("edit", "remove_agent"),
    "load_roster": ("files", "load_roster"),
    "missing_cwd_warnings": ("files", "missing_cwd_warnings"),
    "parse_roster": ("validate", "parse_roster"),
    "validate_agent": ("validate", "validate_agent"),
    "_did_you_mean": ("scalars", "did_you_mean"),
}


def __getattr__(name: str) -> object:
    """Load a lazily exported name on first use (PEP 562) and keep it as a module attribute."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value
