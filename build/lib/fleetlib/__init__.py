"""fleetlib: manage a fleet of AI coding agents running in tmux under ``systemd --user``.

The package never imports Invoke; ``tasks.py`` is the thin command-line layer on top.
Each module holds one concept: ``roster`` (the YAML model), ``runtimes`` (what each
runtime launches), ``paths`` (where things live), ``lock`` (the cross-process restart
lock), ``runner`` (the only place a process starts), ``units``/``tmux``/``systemd``
(pure argv and unit-text builders), ``fleet`` (orchestration).
"""

from __future__ import annotations

from fleetlib.errors import FleetError, RosterError

__all__ = ["FleetError", "RosterError"]
