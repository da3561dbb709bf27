"""Shared fixtures: run the real `inv` command line against a private fleet home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROSTER = REPO / "roster.example.yaml"

InvRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private fleet home (never the user's ~/.config/mosaic)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def inv(home: Path) -> InvRunner:
    """Run `inv <args>` in the repo as a user would, with MOSAIC_HOME pointing at ``home``."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "MOSAIC_HOME": str(home), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=REPO,
            env=full_env,
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            check=False,
        )

    return run
