"""How to point the real Claude Code and Codex CLIs at a local ``ModelServer``.

Each CLI gets a ``HOME`` of its own (never the user's), prepared so it comes up at its input
prompt offline: Claude Code with its onboarding done, the API key approved and the working
directory trusted; Codex with a model provider of its own (so no sign-in) and the working
directory trusted. ``claude_setup`` / ``codex_setup`` return the ``AgentSetup`` (extra args and
environment) for one agent, ``roster_entry`` renders it as a fleet roster agent and
``real_roster`` a whole roster of them. ``RealFleet`` reads and types into a started fleet's
agents with tmux directly (the pane is the witness, not the fleet's reading of it).

For example (the ``model_server`` fixture and a tmux fleet home)::

    roster.write_text(real_roster(server, root, {"cl": "claude", "cx": "codex"}))
    inv fleet.start; RealFleet(user, home, root, server).wait_for("cl", "idle", 120)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import FleetEnv, InvUser, eventually
from tests.model_server import MODEL, ModelServer, running
from tests.real_clis import _pids_with, installed_clis
from tests.usermanager import UserManager

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


def kill_leftovers(root: Path) -> None:
    """Kill every process still running under ``root`` (the agents' HOMEs and work dirs live
    there): a CLI's helpers can outlive the window the fleet stopped."""
    for pid in _pids_with(f"{root}/"):  # "/": never a sibling whose name merely starts the same
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


SETUPS: Final[dict[str, Callable[[ModelServer, Path, Path], AgentSetup]]] = {
    "claude": claude_setup,
    "codex": codex_setup,
}
# What each CLI shows when it asks before running a command, and the key that says yes.
PERMISSION_QUESTION: Final = {
    "claude": "Do you want to proceed?",
    "codex": "Would you like to run the following command?",
}
PERMISSION_YES: Final = {"claude": "1", "codex": "y"}
TURN_LIMIT_S: Final = 60.0


def real_roster(
    server: ModelServer, root: Path, agents: Mapping[str, str], extra: Mapping[str, Sequence[str]] | None = None
) -> str:
    """A roster (YAML) of real CLI agents against ``server``: ``agents`` maps a name to its runtime
    (``claude`` or ``codex``). Agent ``N`` works in ``root/N-work`` with ``HOME`` ``root/N-home``
    (both created); ``extra`` adds roster lines per agent (e.g. ``["resume: true"]``)."""
    clis = installed_clis()
    entries = []
    for name, runtime in agents.items():
        cwd = root / f"{name}-work"
        cwd.mkdir(exist_ok=True)
        setup = SETUPS[runtime](server, root / f"{name}-home", cwd)
        binary: Path = getattr(clis, runtime)
        entries.append(roster_entry(name, runtime, binary, setup, cwd, extra=(extra or {}).get(name, ())))
    return "version: 1\ntransport: tmux\nagents:\n" + "".join(entries)


@dataclass
class RealFleet:
    """A fleet of real CLI agents: ``user`` runs ``inv``, ``home`` is its fleet home, agents live under ``root``."""

    user: InvUser
    home: Path
    root: Path
    server: ModelServer

    def cwd(self, name: str) -> Path:
        return self.root / f"{name}-work"

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        return subprocess.run(
            ["tmux", "-S", str(socket), *args], capture_output=True, text=True, timeout=30, check=False
        )

    def screen(self, name: str) -> str:
        """The agent's visible pane, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-t", f"=fleet:={name}").stdout

    def shows(self, name: str, text: str, limit: float = TURN_LIMIT_S) -> str:
        """Poll the pane until it shows ``text``; the screen then (AssertionError with it if never)."""
        seen = [""]

        def check() -> bool:
            seen[0] = self.screen(name)
            return text in seen[0]

        try:
            eventually(check, f"{text!r} on {name}'s screen", limit=limit, poll=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last screen:\n{seen[0]}") from None
        return seen[0]

    def keys(self, name: str, *keys: str) -> None:
        """Press ``keys`` (tmux key names) in the agent's pane, as a person would."""
        pressed = self.tmux("send-keys", "-t", f"=fleet:={name}", *keys)
        assert pressed.returncode == 0, pressed.stderr

    def submit(self, name: str, text: str, limit: float = TURN_LIMIT_S) -> None:
        """Type ``text`` (one line) into the agent's empty prompt and submit it, without ``fleet send``:
        paste, wait until the pane shows it, then Enter, and wait until the server got it.

        An Enter in the same burst as the paste is lost now and then by Claude Code (see
        /work/shared/REAL-CLIS.md); this is how a test drives a turn when send is not its subject.
        """
        before = len(self.server.prompts())
        # Ctrl-U empties the input line in both CLIs: nothing an earlier test left there joins the text.
        self.keys(name, "C-u")
        loaded = self.tmux("set-buffer", "-b", "real-agents", text)
        assert loaded.returncode == 0, loaded.stderr
        pasted = self.tmux("paste-buffer", "-p", "-r", "-d", "-b", "real-agents", "-t", f"=fleet:={name}")
        assert pasted.returncode == 0, pasted.stderr
        self.shows(name, text, limit)
        self.keys(name, "Enter")
        eventually(lambda: text in self.server.prompts()[before:], f"the server got {text!r} from {name}", limit=limit)

    def state(self, name: str) -> str:
        """The agent's ``state`` in ``fleet status --json``."""
        rows = json.loads(self.user.inv_ok("fleet.status", "--json"))
        return str(next(row for row in rows if row["name"] == name)["state"])

    def wait_for(self, name: str, state: str, limit: float = TURN_LIMIT_S) -> None:
        """``fleet wait --agent name --for state`` succeeds (AssertionError with the screen if not)."""
        waited = self.user.inv("fleet.wait", "--agent", name, "--for", state, "--timeout", f"{limit:g}")
        assert waited.returncode == 0, (waited.stderr, self.screen(name))


Setup = Callable[[ModelServer, Path, Path], AgentSetup]


class SoloAgent:
    """One real agent ``ag`` in a fleet of its own, talking to the model server: on tmux, or
    (``manager``) installed on that systemd --user manager."""

    def __init__(
        self, runtime: str, setup: Setup, server: ModelServer, root: Path, manager: UserManager | None = None
    ) -> None:
        from tests.test_fleet_tmux import TmuxEnv

        self.fleet: InvUser
        if manager is None:
            self.fleet = TmuxEnv(root)
        else:
            (root / "home").mkdir()
            self.fleet = FleetEnv(root / "home", manager)
        work = root / "work"
        work.mkdir()
        binary = getattr(installed_clis(), runtime)
        entry = roster_entry("ag", runtime, binary, setup(server, root / "agent-home", work), work)
        roster = self.fleet.home / "fleet" / "roster.yaml"
        roster.parent.mkdir(parents=True)
        roster.write_text(f"version: 1\nagents:\n{entry}")
        self.run_dir = self.fleet.home / "fleet" / "run"
        if manager is not None:
            self.fleet.inv_ok("fleet.install")

    def close(self) -> None:
        """Stop the fleet (and under systemd remove its units)."""
        if isinstance(self.fleet, FleetEnv):
            self.fleet.inv("fleet.uninstall")
            self.fleet.manager.systemctl("reset-failed")
            self.fleet.tmux("kill-server")
        else:
            self.fleet.inv("fleet.stop")

    def tmux(self, *args: str) -> str:
        socket = self.run_dir / "tmux.sock"
        return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True, check=True).stdout

    def type(self, text: str) -> None:
        """Typed as keys, then Enter once the input shows them (a CLI takes text and Enter in
        one burst for a paste, not submitted; how `fleet send` copes is not this test's)."""
        self.tmux("send-keys", "-t", "=fleet:=ag", "-l", text)
        eventually(lambda: text in self.tmux("capture-pane", "-p", "-t", "=fleet:=ag"), f"{text} typed")
        self.tmux("send-keys", "-t", "=fleet:=ag", "Enter")
