"""An agent's conversation: the session id its runtime reported, kept in the run dir.

(Placeholder owned by the resume work: only :func:`record_session`, which the hooks use.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fleetlib.atomic import atomic_write_text

SESSION_SUFFIX: Final = ".session"


def session_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{SESSION_SUFFIX}"


def record_session(run_dir: Path, name: str, session_id: str) -> None:
    """Write ``<run dir>/<name>.session`` holding ``session_id`` (atomic, private)."""
    atomic_write_text(session_path(run_dir, name), session_id + "\n", mode=0o600)
