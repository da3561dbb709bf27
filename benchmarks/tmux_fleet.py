"""A benchmark's own fleet on the tmux backend, driven through the `fleet` command.

The home, the runtime dir and the roster live in a temporary directory; no session bus is
passed on, so no user manager answers and `auto` picks tmux. Whatever a benchmark started
is stopped when it leaves the ``with`` block, also when it failed half-way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleetlib.watcher import running


def fleet_argv() -> list[str]:
    """The installed console script when there is one (what users run), else the module."""
    script = shutil.which("fleet")
    return [script] if script else [sys.executable, "-m", "fleetctl"]


def tmux_fleet_env(root: Path) -> tuple[Path, dict[str, str]]:
    """A private fleet home under ``root`` that picks the tmux backend (a private runtime
    dir and no session bus, so no user manager answers): (roster path, environment)."""
    (root / "runtime").mkdir(mode=0o700)
    roster = root / "home" / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    # Without PYTHONDONTWRITEBYTECODE every `fleet` run keeps its bytecode caches, as an
    # installed package has them: compiling the sources on each run is not what we measure.
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "PYTHONDONTWRITEBYTECODE")}
    env.update(MOSAIC_HOME=str(root / "home"), XDG_RUNTIME_DIR=str(root / "runtime"))
    return roster, env


@dataclass(frozen=True)
class TmuxFleet:
    """One private tmux fleet: the `fleet` command line, its directory, roster and environment."""

    argv: list[str]
    root: Path
    roster: Path
    env: dict[str, str]

    @property
    def run_dir(self) -> Path:
        return self.root / "home" / "fleet" / "run"

    @property
    def socket(self) -> Path:
        return self.run_dir / "tmux.sock"

    def start_watched(self) -> int:
        """`fleet start` every agent of the roster (raises if it fails) and return the pid of
        the fleet's watcher (exits the benchmark if none runs)."""
        subprocess.run([*self.argv, "start", "--timeout", "300"], env=self.env, check=True, stdout=subprocess.DEVNULL)
        watchers = running(self.run_dir)
        if not watchers:
            raise SystemExit("the fleet's watcher is not running")
        return watchers[0]


@contextmanager
def tmux_fleet(prefix: str) -> Iterator[TmuxFleet]:
    """A private tmux fleet in a temporary directory named ``prefix...``; on exit `fleet stop`
    ends whatever it runs (never raising) and the directory is removed."""
    argv = fleet_argv()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        roster, env = tmux_fleet_env(root)
        try:
            yield TmuxFleet(argv, root, roster, env)
        finally:
            subprocess.run([*argv, "stop"], env=env, capture_output=True, check=False)
