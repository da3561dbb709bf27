"""A finding of ``fleet doctor``: what was seen, whether it is fine, and how to fix it.

Its own module so that every mechanism can report a check (the served page's
``fleetlib.serving``, say) without importing the doctor that gathers them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One finding: ``detail`` says what was seen, ``fix`` how to repair a failure. A
    ``skipped`` check (not relevant here, e.g. lingering on the tmux backend) passes."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail, "fix": self.fix}


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def skipped(name: str, why: str) -> Check:
    return Check(name, True, f"skipped: {why}", skipped=True)
