"""The real Claude Code and Codex keep their conversation across `fleet restart` (the local
model server sees the earlier turn in the next turn's request); `--fresh` starts a new one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from tests.conftest import eventually
from tests.model_server import REPLY, ModelServer
from tests.real_agents import Setup, SoloAgent, claude_setup, codex_setup, model_server
from tests.usermanager import UserManager

__all__ = ["model_server"]  # the fixture, imported for this module

pytestmark = pytest.mark.tmux


class Conversation(SoloAgent):
    """The agent's conversation, as the model server sees it."""

    def __init__(
        self, runtime: str, setup: Setup, server: ModelServer, root: Path, manager: UserManager | None = None
    ) -> None:
        super().__init__(runtime, setup, server, root, manager)
        self.server = server
        self.api: Literal["anthropic", "openai"] = "anthropic" if runtime == "claude" else "openai"

    def row(self) -> dict[str, object]:
        row: dict[str, object] = json.loads(self.fleet.inv("fleet.status", "--json").stdout)[0]
        return row

    def session_id(self) -> object:
        return self.row()["session_id"]

    def turn(self, marker: str) -> list[str]:
        """Send ``marker`` once the agent is idle; the texts of the conversation its turn sent."""
        waited = self.fleet.inv("fleet.wait", "--agent", "ag", "--for", "idle", "--timeout", "120")
        assert waited.returncode == 0, waited.stderr
        self.type(marker)

        def asked() -> list[str] | None:
            turns = [t for t in self.server.turns(self.api) if t.prompt and marker in t.prompt]
            return turns[-1].texts() if turns else None

        eventually(lambda: asked() is not None, f"a model turn for {marker}", limit=120)
        # The answer is on screen once the CLI took it, so also kept in its conversation.
        screen = ("capture-pane", "-p", "-J", "-t", "=fleet:=ag")
        eventually(lambda: REPLY + marker in self.tmux(*screen), "the reply shown")
        texts = asked()
        assert texts is not None
        return texts


@pytest.mark.parametrize(
    "backend", ["tmux", pytest.param("systemd", marks=pytest.mark.systemd)]
)  # under systemd the restart renews the agent in place
@pytest.mark.parametrize(("runtime", "setup"), [("claude", claude_setup), ("codex", codex_setup)])
def test_a_restart_resumes_the_conversation_and_fresh_does_not(
    runtime: str, setup: Setup, model_server: ModelServer, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    manager = request.getfixturevalue("user_manager") if backend == "systemd" else None
    talk = Conversation(runtime, setup, model_server, tmp_path, manager)
    first, second, third = (f"{runtime}-{word}-{tmp_path.name}" for word in ("one", "two", "three"))
    try:
        talk.fleet.inv_ok("fleet.start")
        talk.turn(first)
        # Claude's id is pinned at the first start; Codex's is learned (its hook, or the
        # rollout it holds open when the restart stops it).
        pinned = talk.session_id()

        supervisor = talk.row()["pid"]
        talk.fleet.inv_ok("fleet.restart", "--agent", "ag")
        assert (talk.row()["pid"] == supervisor) is (backend == "systemd")  # renewed in place there
        texts = talk.turn(second)
        assert any(first in text for text in texts), texts  # the earlier turn came along
        assert any(REPLY + first in text for text in texts), texts
        session = talk.session_id()
        assert isinstance(session, str)
        assert pinned in (session, None if runtime == "codex" else session)

        talk.fleet.inv_ok("fleet.restart", "--agent", "ag", "--fresh")
        texts = talk.turn(third)
        assert not any(first in text or second in text for text in texts), texts
        assert talk.session_id() != session
    finally:
        talk.close()
