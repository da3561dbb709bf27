"""The roster package's own invariants: one reader per agent key, a lossless ``to_dict``,
and an import that does not load PyYAML."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from fleetlib.resources import Resources
from fleetlib.roster import Agent, parse_roster, validate_agent
from fleetlib.roster.model import AGENT_KEYS, Worktree
from fleetlib.roster.validate import AGENT_READERS

# Every field different from its default, each value valid.
EVERY_KEY: Agent = Agent(
    name="all",
    runtime="claude",
    command=("claude", "--x"),
    cwd="~/src",
    args=("--model", "opus"),
    env={"FOO": "bar"},
    description="every key",
    stop_timeout=3.0,
    start_grace=0.0,
    max_failures=2,
    failure_window=9.5,
    on_state_change=("notify-send", "fleet"),
    notify=("json://localhost",),
    log_max_bytes=8192,
    log_keep=1,
    host="gpu",
    resources=Resources(memory_max="4G"),
    resume=False,
    worktree=Worktree(repo="~/src", branch="agents/all"),
)


def test_every_agent_key_has_exactly_one_reader() -> None:
    # A key on Agent without a reader would be accepted in the file and silently dropped.
    assert sorted(AGENT_READERS) == sorted(AGENT_KEYS)


def test_to_dict_holds_every_key_in_key_order_and_reads_back_equal() -> None:
    assert list(EVERY_KEY.to_dict()) == list(AGENT_KEYS)
    local = replace(EVERY_KEY, host="local")  # validate_agent knows no hosts
    assert "host" not in local.to_dict()
    assert validate_agent(local) == local
    assert Agent(name="a", runtime="shell").to_dict() == {"name": "a", "runtime": "shell"}


def test_host_text_writes_the_hosts_agents_as_local() -> None:
    roster = parse_roster(
        "version: 1\nhosts: {gpu: u@h}\nagents:\n  - {name: a, runtime: shell, host: gpu, log_keep: 2}\n"
        "  - {name: b, runtime: shell}\n"
    )
    assert parse_roster(roster.host_text("gpu")).agents == (Agent(name="a", runtime="shell", log_keep=2),)


def test_importing_the_package_does_not_load_yaml() -> None:
    # Code that only handles Roster values (the engine, the backends) should not pay for PyYAML.
    probe = "import sys, fleetlib.roster; print('yaml' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"
