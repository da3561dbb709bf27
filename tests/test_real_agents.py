"""Real Claude Code and Codex in a real fleet, doing real turns against the local model server.

One fleet per backend, tmux and systemd (module-scoped: the CLIs take seconds to start on a busy machine), runs
``cl`` (Claude Code) and ``cx`` (Codex), installed under an npm prefix that is not on the
default PATH (the roster names the binary and puts its directory on the agent's PATH). Each
test uses its own markers in the prompts, so the tests share the agents without reading each
other's turns. What the agents show is read with tmux directly (the witness is the pane, not
the fleet's own reading of it); deadlines are polling limits, not timing targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FleetEnv, InvUser
from tests.model_server import DONE, REPLY, ModelServer
from tests.real_agents import (
    PERMISSION_QUESTION,
    PERMISSION_YES,
    RealFleet,
    kill_leftovers,
    model_server,  # noqa: F401 - the fixture, used by name
    real_roster,
)
from tests.test_fleet_tmux import TmuxEnv

pytestmark = pytest.mark.tmux

UP_LIMIT_S = 120.0  # both CLIs start at once on 2 shared cores
AGENTS = {"cl": "claude", "cx": "codex"}


def tmux_user(root: Path, request: pytest.FixtureRequest) -> tuple[InvUser, Path]:
    """A fleet home (and who runs ``inv`` there) no user manager can reach: ``auto`` picks tmux."""
    user = TmuxEnv(root)
    return user, user.home


def systemd_user(root: Path, request: pytest.FixtureRequest) -> tuple[InvUser, Path]:
    """A fleet home (and who runs ``inv`` there) on the session's private systemd --user manager."""
    home = root / "home"
    home.mkdir()
    return FleetEnv(home, request.getfixturevalue("user_manager")), home


@pytest.fixture(
    scope="module",
    params=[pytest.param(tmux_user, id="tmux"), pytest.param(systemd_user, id="systemd", marks=pytest.mark.systemd)],
)
def fleet(
    model_server: ModelServer,  # noqa: F811 - the imported fixture
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[RealFleet]:
    """``cl`` and ``cx`` started on one backend and at their prompts; everything stopped and removed after."""
    root = tmp_path_factory.mktemp("real-agents")
    make: Callable[[Path, pytest.FixtureRequest], tuple[InvUser, Path]] = request.param
    user, home = make(root, request)
    roster = home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(real_roster(model_server, root, AGENTS))
    started = RealFleet(user, home, root, model_server)
    systemd = isinstance(user, FleetEnv)
    try:
        if systemd:
            user.inv_ok("fleet.install")
        user.inv_ok("fleet.start")
        for name in AGENTS:
            started.wait_for(name, "idle", UP_LIMIT_S)
        yield started
    finally:
        user.inv("fleet.uninstall" if systemd else "fleet.stop")
        if isinstance(user, FleetEnv):
            user.manager.systemctl("reset-failed")
        started.tmux("kill-server")
        kill_leftovers(root)


def mark(fleet: RealFleet, name: str) -> str:
    """A marker for prompts unique to this agent of this fleet (both fleets share the server)."""
    return f"{name}-{fleet.root.name}"


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_real_agent_comes_up_at_its_prompt(fleet: RealFleet, name: str) -> None:
    assert fleet.state(name) == "idle"
    assert "Unable to connect" not in fleet.screen(name)
    assert "Sign in" not in fleet.screen(name)


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_sent_message_gets_a_real_turn(fleet: RealFleet, name: str) -> None:
    message = f"hello {mark(fleet, name)}"
    sent = fleet.user.inv("fleet.send", "--agent", name, "--message", message)
    assert sent.returncode == 0, (sent.stderr, fleet.screen(name))
    fleet.shows(name, REPLY + message)
    assert message in fleet.server.prompts()
    shown = fleet.user.inv_ok("fleet.logs", "--agent", name, "--screen")
    assert REPLY + message in shown


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_command_turn_asks_permission_then_runs_it(fleet: RealFleet, name: str) -> None:
    runtime = AGENTS[name]
    made = fleet.cwd(name) / f"ran-{name}.txt"
    command = f"touch {made.name} && echo ran-{mark(fleet, name)}"
    fleet.submit(name, f"RUN: {command}")  # typed directly: this test is about the prompt, not about send
    fleet.shows(name, PERMISSION_QUESTION[runtime])
    fleet.wait_for(name, "waiting")
    assert not made.exists()  # asked first

    # The answer is a key, as a person presses it (what `fleet send --answer` should do too).
    fleet.keys(name, PERMISSION_YES[runtime])
    fleet.shows(name, f"{DONE}ran-{mark(fleet, name)}")
    assert made.exists()
    fleet.wait_for(name, "idle")


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_held_turn_is_working_until_the_model_answers(fleet: RealFleet, name: str) -> None:
    prompt = f"HOLD {mark(fleet, name)}"
    fleet.submit(name, prompt)
    try:
        fleet.wait_for(name, "working")
    finally:
        fleet.server.release()
    fleet.shows(name, REPLY + prompt)
    fleet.wait_for(name, "idle")


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_later_turn_carries_the_earlier_ones(fleet: RealFleet, name: str) -> None:
    first, second = f"first {mark(fleet, name)}", f"second {mark(fleet, name)}"
    fleet.submit(name, first)
    fleet.shows(name, REPLY + first)
    fleet.submit(name, second)
    (request,) = [turn for turn in fleet.server.turns() if turn.prompt == second]
    history = request.texts()
    assert first in history
    assert REPLY + first in history  # the model's own earlier answer, as a resumed session must carry it


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_restarted_real_agent_comes_back_and_takes_a_turn(fleet: RealFleet, name: str) -> None:
    """`fleet restart` of a real CLI: under systemd it is renewed in place (the same supervisor,
    a new agent process), on tmux started in a new window; either way it is back at its
    prompt and answers."""

    def row() -> dict[str, object]:
        return next(r for r in json.loads(fleet.user.inv_ok("fleet.status", "--json")) if r["name"] == name)

    before = row()
    result = json.loads(fleet.user.inv_ok("fleet.restart", "--agent", name, "--json"))
    assert result["ok"] is True, result
    after = row()
    assert after["agent_pid"] not in (None, before["agent_pid"])
    assert (after["pid"] == before["pid"]) is isinstance(fleet.user, FleetEnv)  # in place under systemd
    fleet.wait_for(name, "idle", UP_LIMIT_S)
    message = f"after restart {mark(fleet, name)}"
    sent = fleet.user.inv("fleet.send", "--agent", name, "--message", message)
    assert sent.returncode == 0, (sent.stderr, fleet.screen(name))
    fleet.shows(name, REPLY + message)
