"""Where a fleet keeps its files.

The layout matches the reference tool, so both can manage the same home:
``<home>/fleet/roster.yaml`` and ``<home>/fleet/run/`` (restart lock, tmux socket).
Resolution order for the home: explicit value, then ``MOSAIC_HOME``, then
``~/.config/mosaic``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HOME_ENV: Final = "MOSAIC_HOME"
DEFAULT_HOME: Final = Path("~/.config/mosaic")
# A Unix socket's path fits in sockaddr_un.sun_path: 108 bytes on Linux, one of them the NUL.
MAX_SOCKET_PATH_BYTES: Final = 107


def resolve_home(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the fleet home: ``explicit``, else ``$MOSAIC_HOME``, else ``~/.config/mosaic``."""
    env = os.environ if environ is None else environ
    raw = os.fspath(explicit) if explicit else env.get(HOME_ENV) or os.fspath(DEFAULT_HOME)
    return Path(raw).expanduser().absolute()


def default_unit_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return ``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/systemd/user`` by default)."""
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(config_home) / "systemd" / "user"


@dataclass(frozen=True)
class FleetPaths:
    """Every path one fleet uses, derived from its home (and an optional roster override)."""

    home: Path
    roster: Path

    @classmethod
    def resolve(
        cls,
        home: str | os.PathLike[str] | None = None,
        roster: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> FleetPaths:
        resolved_home = resolve_home(home, environ)
        resolved_roster = Path(roster).expanduser().absolute() if roster else resolved_home / "fleet" / "roster.yaml"
        return cls(home=resolved_home, roster=resolved_roster)

    @property
    def fleet_dir(self) -> Path:
        return self.home / "fleet"

    @property
    def run_dir(self) -> Path:
        """Private (0700) directory for the restart lock and the tmux socket."""
        return self.fleet_dir / "run"

    @property
    def tmux_socket(self) -> Path:
        """The fleet's own tmux server socket; never the user's default server."""
        return self.run_dir / "tmux.sock"
