"""Nox sessions for fleet. `nox` runs tests, lint, typecheck and docs; `nox -s bench` and `nox -s stress` are opt-in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import nox
from nox.command import CommandFailed

HERE = Path(__file__).resolve().parent

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the pytest suite (unit, property and real tmux/systemd integration tests)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff (lint and format check)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check fleetlib, fleetctl, tasks.py and this file with mypy --strict."""
    session.install("-e", ".[dev]")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs, strict: a broken link or anchor fails the build)."""
    # The `docs` extra alone: mkdocs needs none of fleet's own dependencies.
    session.install(*nox.project.load_toml(HERE / "pyproject.toml")["project"]["optional-dependencies"]["docs"])
    # Into the session's own directory: the build never writes into the working tree.
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site"), *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (lock, fleet control, start-up, activity, hosts, transcripts, hooks); print figures."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def stress(session: nox.Session) -> None:
    """Run the systemd and fault tests under CPU and process-spawn load (tests/load.py)."""
    session.install("-e", ".[test]")
    # A process group of its own: the killpg below reaches every worker, however the tests end.
    load = subprocess.Popen([sys.executable, "-m", "tests.load"], cwd=HERE, start_new_session=True)
    failed = []
    try:
        for selection in (["-m", "systemd"], ["-m", "not systemd", "tests/test_engine_faults.py"]):
            try:
                session.run("pytest", *selection, *session.posargs)
            except CommandFailed:
                failed.append(" ".join(selection))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(load.pid, signal.SIGTERM)
        load.wait()
    if failed:
        session.error(f"failed under load: {'; '.join(failed)}")
