"""Building a finding of ``fleet doctor`` (:class:`fleetlib.results.Check`): passed,
failed with its fix, or skipped as not relevant here.

Its own module so that every mechanism can report a check (the served page's
``fleetlib.serving``, say) without importing the doctor that gathers them all.
"""

from __future__ import annotations

from fleetlib.results import Check

__all__ = ["Check", "failed", "passed", "skipped"]


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def skipped(name: str, why: str) -> Check:
    return Check(name, True, f"skipped: {why}", skipped=True)
