"""How a long operation reports its progress: :class:`Progress` and the hook it is handed to.

Its own module (re-exported by :mod:`fleetlib.results`) so that the engine, which takes a
progress hook, can be built without loading every result type: `fleet status` makes none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long operation, for a live progress line: ``done`` of ``total``
    agents have reached the wanted state after ``elapsed`` seconds, in ``phase``."""

    operation: str
    phase: str
    done: int
    total: int
    elapsed: float


ProgressHook = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default progress hook: report nothing."""
