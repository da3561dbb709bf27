"""What every fleet operation works on: the paths, the roster, the runner, tmux, and time.

The systemd backend, the tmux backend and the messenger all extend this, so the clock,
the sleep and the runner are injected the same way everywhere.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetlib.paths import FleetPaths
from fleetlib.roster import Roster
from fleetlib.runner import Runner


def default_tmux() -> str:
    """The tmux binary on PATH (absolute, since unit files need it)."""
    return shutil.which("tmux") or "/usr/bin/tmux"


@dataclass(kw_only=True)
class FleetContext:
    paths: FleetPaths
    roster: Roster
    runner: Runner
    tmux_bin: str = field(default_factory=default_tmux)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time  # for times tmux records (epoch seconds)

    def names(self, agent: str | None) -> list[str]:
        """Every roster agent, or just ``agent`` (FleetError naming the known ones if unknown)."""
        return self.roster.names() if agent is None else [self.roster.get(agent).name]
