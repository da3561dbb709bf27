"""Nox sessions for fleet. `nox` runs tests, lint and typecheck; `nox -s bench` is opt-in."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
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


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (restart lock, fleet control, start-up, activity, hosts, transcripts); print figures."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "benchmarks", *session.posargs)
