"""systemctl argv builders and output parsers (``systemctl --user`` only).

Unit names are the reference tool's: ``mosaic-tmux-holder.service`` and one instance of
``mosaic-agent@.service`` per roster agent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

HOLDER_UNIT: Final = "mosaic-tmux-holder.service"
AGENT_TEMPLATE: Final = "mosaic-agent@.service"
AGENT_PATTERN: Final = "mosaic-agent@*.service"
WATCHER_UNIT: Final = "mosaic-fleet-watcher.service"


def agent_unit(name: str) -> str:
    return f"mosaic-agent@{name}.service"


def agent_name(unit: str) -> str | None:
    """Inverse of :func:`agent_unit`; None for other units."""
    prefix, suffix = "mosaic-agent@", ".service"
    if unit.startswith(prefix) and unit.endswith(suffix) and len(unit) > len(prefix) + len(suffix):
        return unit[len(prefix) : -len(suffix)]
    return None


def systemctl_argv(action: str, units: Iterable[str] = (), *options: str) -> list[str]:
    """``systemctl --user [options] <action> <units...>``."""
    return ["systemctl", "--user", *options, action, *units]


def list_units_argv(pattern: str | Sequence[str] = (HOLDER_UNIT, AGENT_PATTERN)) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return systemctl_argv("list-units", patterns, "--all", "--output=json", "--no-pager")


@dataclass(frozen=True)
class UnitState:
    """What the manager says about one unit."""

    unit: str
    load_state: str = "not-found"
    active_state: str = "inactive"
    sub_state: str = "dead"


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
