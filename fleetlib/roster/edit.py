"""Edits of the roster file: :func:`add_agent`, :func:`remove_agent`, :func:`init_roster`.

Each edit runs under an exclusive lock on the roster (two concurrent edits both land),
splices the text (:mod:`fleetlib.roster.splice`, so comments and key order survive),
parses the result again and requires exactly the expected agents (the others identical, in
order; an alias into a removed item or a layout the splicer does not handle refuses the
edit), and replaces the file atomically. A failed edit is a :class:`FleetError` and leaves
the old file untouched. A symlinked roster is written through to its target.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fleetlib.atomic import atomic_write_text, edit_lock
from fleetlib.errors import FleetError, RosterError
from fleetlib.roster.files import read_text, require_regular
from fleetlib.roster.model import STARTER_ROSTER, Agent, Roster
from fleetlib.roster.splice import add_text, remove_text
from fleetlib.roster.validate import parse_roster, validate_agent


def _edit_target(path: Path) -> Path:
    """The file an edit writes: a symlinked roster's target (the link stays a link, and the
    edit lock sits beside the target, where every editor of that file meets)."""
    return Path(os.path.realpath(path))


def _edit(path: Path, change: str, splice: Callable[[str, Roster], tuple[str, tuple[Agent, ...]]]) -> Roster:
    """Under the edit lock: ``splice`` the text and its parsed roster into new text and the
    agents it must hold; write it only if it parses to exactly those agents."""
    target = _edit_target(path)
    require_regular(target)  # before the lock: a refused edit leaves no lock file behind
    with edit_lock(target):
        text = read_text(target)
        new_text, expected = splice(text, parse_roster(text, str(path)))
        try:
            roster = parse_roster(new_text, str(path))
        except RosterError:
            roster = None
        if roster is None or roster.agents != expected:
            raise FleetError(
                f"cannot {change} in {path} without changing another agent (it shares an anchor or uses a layout "
                "this tool does not edit); edit it by hand; the roster was left unchanged"
            )
        try:
            atomic_write_text(target, new_text)
        except OSError as exc:
            raise FleetError(
                f"cannot {change} in {path}: writing {exc.filename or target} failed: {exc.strerror}; "
                "the roster was left unchanged"
            ) from None
        return roster


def add_agent(path: Path, agent: Agent) -> Roster:
    """Append ``agent`` to the roster at ``path``, keeping comments and key order.

    Raises ``FleetError`` if the name is taken or the result would not validate; the
    file is then unchanged.
    """
    checked = validate_agent(agent)

    def splice(text: str, roster: Roster) -> tuple[str, tuple[Agent, ...]]:
        if agent.name in roster.names():
            raise FleetError(f"agent {agent.name!r} already exists in {path}; pick another name or remove it first")
        return add_text(text, checked), (*roster.agents, checked)

    return _edit(path, f"add agent {agent.name!r}", splice)


def remove_agent(path: Path, name: str) -> Roster:
    """Remove the agent called ``name``; ``FleetError`` if it is not in the roster."""

    def splice(text: str, roster: Roster) -> tuple[str, tuple[Agent, ...]]:
        roster.get(name)  # raises with the known names
        remaining = tuple(a for a in roster.agents if a.name != name)
        return remove_text(text, roster.names().index(name)), remaining

    return _edit(path, f"remove agent {name!r}", splice)


def init_roster(path: Path, *, force: bool = False) -> Roster:
    """Write the starter roster; refuses to replace an existing file unless ``force``, and
    anything that is not a regular file (a FIFO, a device, a directory) even with it.

    A symlinked roster is written through to its target, like every edit."""
    target = _edit_target(path)
    if os.path.lexists(target) and not force:
        raise FleetError(f"roster already exists: {path}; pass --force to overwrite it")
    require_regular(target, missing_ok=True)  # --force replaces a roster, never a FIFO or device
    with edit_lock(target):
        if os.path.lexists(target) and not force:
            raise FleetError(f"roster already exists: {path}; pass --force to overwrite it")
        require_regular(target, missing_ok=True)
        try:
            atomic_write_text(target, STARTER_ROSTER)
        except OSError as exc:
            raise FleetError(
                f"cannot write roster {path}: writing {exc.filename or target} failed: {exc.strerror}; "
                "nothing was changed"
            ) from None
    return parse_roster(STARTER_ROSTER, str(path))
