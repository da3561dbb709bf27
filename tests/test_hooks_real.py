"""The real Claude Code and Codex, doing real turns against the local model server, report their
state through the hooks the fleet wires in: Claude Code working -> idle from its hooks
(`state_source` `hook`) and `waiting` on a permission prompt; Codex idle from its
turn-complete notification. Their session ids and last messages are recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib import hooks
from tests.conftest import eventually
from tests.model_server import REPLY, ModelServer
from tests.real_agents import SoloAgent, claude_setup, codex_setup, model_server

__all__ = ["model_server"]  # the fixture, imported for this module

pytestmark = pytest.mark.tmux


class RealFleet(SoloAgent):
    """The agent, and what ``fleet status`` reads of it."""

    def reads(self, state: str, source: str) -> bool:
        row = json.loads(self.fleet.inv("fleet.status", "--json").stdout)[0]
        return (row["state"], row["state_source"]) == (state, source)


@pytest.fixture
def held(model_server: ModelServer) -> Iterator[ModelServer]:
    """The server, whose replies to ``HOLD`` prompts wait for ``release()``; one left held
    by a failing test is let go (the next tests share the server)."""
    yield model_server
    model_server.release()


def test_real_claude_code_reports_working_idle_and_waiting_through_its_hooks(held: ModelServer, tmp_path: Path) -> None:
    real = RealFleet("claude", claude_setup, held, tmp_path)
    try:
        real.fleet.inv_ok("fleet.start")
        eventually(lambda: real.reads("idle", "hook"), "idle from SessionStart", limit=120)
        real.type(f"HOLD {tmp_path.name}")  # the reply waits for release(): the turn stays working
        eventually(lambda: real.reads("working", "hook"), "working from UserPromptSubmit", limit=120)
        held.release()
        eventually(lambda: real.reads("idle", "hook"), "idle from Stop", limit=120)
        message = hooks.last_message(real.run_dir, "ag")
        assert message is not None
        assert REPLY in message
        recorded = real.run_dir / "ag.session"
        eventually(recorded.exists, "the session id recorded by the watcher")
        assert recorded.read_text().strip() in (real.run_dir / "ag.hooks").read_text()
        real.type(f"RUN: touch hooked-{tmp_path.name}")  # a Bash command that writes: a permission prompt
        eventually(lambda: real.reads("waiting", "hook"), "waiting from its permission_prompt", limit=120)
    finally:
        real.fleet.inv("fleet.stop")


def test_real_codex_reports_a_finished_turn_through_its_notify(model_server: ModelServer, tmp_path: Path) -> None:
    real = RealFleet("codex", codex_setup, model_server, tmp_path)
    try:
        real.fleet.inv_ok("fleet.start")
        waited = real.fleet.inv("fleet.wait", "--agent", "ag", "--for", "idle", "--timeout", "120")
        assert waited.returncode == 0, waited.stderr
        marker = f"codex-{tmp_path.name}"
        real.type(marker)
        eventually(lambda: real.reads("idle", "hook"), "idle from agent-turn-complete", limit=120)
        assert hooks.last_message(real.run_dir, "ag") == REPLY + marker
        recorded = real.run_dir / "ag.session"
        eventually(recorded.exists, "the thread id recorded by the watcher")
        assert recorded.read_text().strip() in (real.run_dir / "ag.hooks").read_text()
    finally:
        real.fleet.inv("fleet.stop")
