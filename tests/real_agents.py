"""How to point the real Claude Code and Codex CLIs at a local ``ModelServer``.

Each CLI gets a ``HOME`` of its own (never the user's), prepared so it comes up at its input
prompt offline: Claude Code with its onboarding done, the API key approved and the working
directory trusted; Codex with a model provider of its own (so no sign-in) and the working
directory trusted. ``claude_setup`` / ``codex_setup`` return the ``AgentSetup`` (extra args and
environment) for one agent, and ``roster_entry`` renders it as a fleet roster agent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from tests.model_server import MODEL, ModelServer, running

API_KEY: Final = "sk-fleet-test-0000000000000000000000000000"
# Claude Code remembers an approved key by its last 20 characters.
APPROVED_KEY_SUFFIX: Final = API_KEY[-20:]


@dataclass(frozen=True)
class AgentSetup:
    """What one real CLI agent needs besides its binary: arguments after it, and environment."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, binary: Path | str) -> list[str]:
        return [str(binary), *self.args]


def claude_setup(server: ModelServer, home: Path, cwd: Path) -> AgentSetup:
    """Claude Code against ``server``: a prepared ``home`` (created if missing) trusting ``cwd``.

    Without the onboarding state Claude Code stops at "Unable to connect to Anthropic services"
    (it checks the real API host first); with it, it uses ``ANTHROPIC_BASE_URL``.
    """
    home.mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": "2.1.197",
        "theme": "dark",
        "customApiKeyResponses": {"approved": [APPROVED_KEY_SUFFIX], "rejected": []},
        "projects": {
            str(cwd): {
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
                "allowedTools": [],
            }
        },
    }
    (home / ".claude.json").write_text(json.dumps(state))
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    return AgentSetup(args=(), env=env)


def codex_provider_args(server: ModelServer) -> tuple[str, ...]:
    """``-c`` overrides that give Codex the provider ``mock`` at ``server`` (key from ``MOCK_API_KEY``)."""
    provider = (
        f'{{name="mock",base_url="{server.url}/v1",env_key="MOCK_API_KEY",wire_api="responses",'
        "request_max_retries=0,stream_max_retries=0}"
    )
    return ("-c", "model_provider=mock", "-c", f"model_providers.mock={provider}", "-c", f"model={MODEL}")


def codex_setup(server: ModelServer, home: Path, cwd: Path) -> AgentSetup:
    """Codex against ``server``: its own ``home`` (``CODEX_HOME`` inside it) trusting ``cwd``.

    ``--no-daemon`` so no app-server outlives the agent's window.
    """
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(f'[projects.{json.dumps(str(cwd))}]\ntrust_level = "trusted"\n')
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "MOCK_API_KEY": API_KEY}
    return AgentSetup(args=("--no-daemon", *codex_provider_args(server)), env=env)


def npm_bin(binary: Path) -> str:
    """The directory holding ``binary`` (the npm prefix's bin dir), for an agent's ``PATH``."""
    return str(binary.parent)


def roster_entry(
    name: str,
    runtime: str,
    binary: Path,
    setup: AgentSetup,
    cwd: Path,
    *,
    extra: Sequence[str] = (),
) -> str:
    """One roster agent (YAML, two-space indented under ``agents:``) running ``binary`` with ``setup``.

    The command is the binary's absolute path and ``PATH`` holds its directory first (node
    finds itself there or on the base PATH), so the agent starts whatever PATH the backend
    gives its window. ``extra`` lines (``key: value``) are added to the entry as they are.
    """
    env = {**setup.env, "PATH": f"{npm_bin(binary)}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    lines = [
        f"  - name: {name}",
        f"    runtime: {runtime}",
        f"    command: {json.dumps([str(binary)])}",
        f"    cwd: {json.dumps(str(cwd))}",
    ]
    if setup.args:
        lines.append(f"    args: {json.dumps(list(setup.args))}")
    lines.append(f"    env: {json.dumps(env)}")
    lines.extend(f"    {line}" for line in extra)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def model_server() -> Iterator[ModelServer]:
    """One ``ModelServer`` per test module (import this fixture into the module to use it)."""
    with running() as server:
        yield server
