"""A fake runner for unit tests of orchestration order (integration tests use the real thing).

It models just enough of a user manager and tmux to answer status queries: units become
active on start/restart, inactive on stop, and an active agent has a window.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from fleetlib.runner import Result
from fleetlib.systemd import HOLDER_UNIT, agent_name


class FakeRunner:
    dry_run = False

    def __init__(self, fail: Callable[[list[str]], bool] = lambda argv: False) -> None:
        self.calls: list[list[str]] = []
        self.events: list[str] = []
        self.active: set[str] = set()
        self.fail = fail

    def systemctl_calls(self) -> list[list[str]]:
        """Mutating systemctl calls (queries and reset-failed left out)."""
        skip = {"list-units", "reset-failed", "is-system-running"}
        return [c for c in self.calls if c[0] == "systemctl" and not skip & set(c)]

    def run(self, argv: Sequence[str], *, input: str | None = None, cwd: str | None = None) -> Result:
        args = list(argv)
        if "list-units" in args or "list-windows" in args:
            return self._query(args)
        self.calls.append(args)
        self.events.append("run:" + " ".join(args[2:]))
        if self.fail(args):
            return Result(tuple(args), 1, "", f"Failed to {args[2]} {args[-1]}: Operation refused")
        action, units = args[2], args[3:]
        for unit in units:
            if action in ("start", "restart"):
                self.active.add(unit)
                if unit != HOLDER_UNIT:
                    self.active.add(HOLDER_UNIT)  # Requires= pulls the holder in
            elif action == "stop":
                self.active.discard(unit)
                if unit == HOLDER_UNIT:  # Requires= stops agents with it
                    self.active = {u for u in self.active if agent_name(u) is None}
        return Result(tuple(args), 0)

    def run_all(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        return [self.run(argv) for argv in argvs]

    def _query(self, args: list[str]) -> Result:
        if "list-windows" in args:
            windows = [agent_name(u) for u in sorted(self.active) if agent_name(u)]
            listing = "".join(f"{w}\t{100 + i}\t0\t\t\n" for i, w in enumerate(windows))
            return Result(tuple(args), 0, listing + "".join(f"@fleet-starts-{w} 1\n" for w in windows))
        if "list-units" in args:
            rows = [{"unit": u, "load": "loaded", "active": "active", "sub": "running"} for u in sorted(self.active)]
            return Result(tuple(args), 0, json.dumps(rows))
        raise AssertionError(f"unexpected query {args}")
