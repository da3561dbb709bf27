"""Pure tests of roster parsing and validation: text in, Roster or RosterError out."""

from __future__ import annotations

import pytest

from fleetlib.errors import RosterError
from fleetlib.roster import STARTER_ROSTER, Agent, parse_roster
from fleetlib.runtimes import RUNTIMES
from tests.conftest import EXAMPLE_ROSTER


def test_reference_minimal_roster_parses() -> None:
    roster = parse_roster("version: 1\ntransport: tmux\nagents:\n  - name: coder0\n    runtime: codex\n")
    assert roster.agents == (Agent(name="coder0", runtime="codex"),)
    assert roster.agents[0].argv() == ["codex"]


def test_example_and_starter_rosters_are_valid() -> None:
    example = parse_roster(EXAMPLE_ROSTER.read_text(), str(EXAMPLE_ROSTER))
    assert len(example.agents) >= 3
    assert {a.runtime for a in example.agents} <= set(RUNTIMES) | {"custom"}
    assert parse_roster(STARTER_ROSTER).names() == ["coder0"]


def test_optional_fields_are_read() -> None:
    roster = parse_roster(
        """
version: 1
agents:
  - name: a1
    runtime: claude
    cwd: ~/src
    args: [--model, opus, '3']
    env: {FOO: bar, N: "1"}
    description: first agent
  - name: tool
    runtime: custom
    command: "python3 -m agent --flag 'two words'"
  - name: listed
    runtime: custom
    command: [python3, -u, x.py]
""",
    )
    a1, tool, listed = roster.agents
    assert a1.argv() == ["claude", "--model", "opus", "3"]
    assert a1.env == {"FOO": "bar", "N": "1"}
    assert a1.cwd == "~/src"
    assert tool.argv() == ["python3", "-m", "agent", "--flag", "two words"]
    assert listed.argv() == ["python3", "-u", "x.py"]


def test_every_runtime_in_the_table_is_accepted() -> None:
    body = "".join(f"  - name: a{i}\n    runtime: {rt}\n" for i, rt in enumerate(RUNTIMES))
    roster = parse_roster("version: 1\nagents:\n" + body)
    assert [a.runtime for a in roster.agents] == list(RUNTIMES)
    assert all(a.argv() == list(RUNTIMES[a.runtime].command) for a in roster.agents)


def test_empty_or_null_agent_list_is_an_empty_fleet() -> None:
    assert parse_roster("version: 1\nagents: []\n").agents == ()
    assert parse_roster("version: 1\nagents:\n").agents == ()


AGENT = "version: 1\ntransport: tmux\nagents:\n  - name: a\n    runtime: codex\n"


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("version: 1\nagents: [\n", 3, "", "invalid YAML"),
        ("- a\n- b\n", 1, "", "must be a mapping"),
        ("just a string\n", 1, "", "must be a mapping"),
        ("", None, "", "empty"),
        ("transport: tmux\n", 1, "", "missing required key 'version'"),
        ("version: 2\n", 1, "version", "unsupported version 2"),
        ("version: 1\ntransport: ssh\n", 2, "transport", "unsupported transport 'ssh'"),
        ("version: 1\nagnets: []\n", 2, "agnets", "did you mean 'agents'"),
        ("version: 1\nagents: {a: 1}\n", 2, "agents", "must be a list"),
        ("version: 1\nagents:\n  - just-a-name\n", 3, "", "agents[0] must be a mapping"),
        (AGENT.replace("name: a", "name: a;rm -rf"), 4, "agents[0].name", "invalid agent name 'a;rm -rf'"),
        (AGENT.replace("name: a", "name: A"), 4, "agents[0].name", "invalid agent name"),
        (AGENT.replace("name: a", "name: " + "x" * 41), 4, "agents[0].name", "invalid agent name"),
        (AGENT.replace("name: a", "name: -a"), 4, "agents[0].name", "invalid agent name"),
        (AGENT.replace("name: a", "name: 12"), 4, "agents[0].name", "must be a string"),
        (
            AGENT + "  - name: a\n    runtime: claude\n",
            6,
            "agents[1].name",
            "duplicate agent name 'a' (first at line 4)",
        ),
        (AGENT.replace("codex", "codx"), 5, "agents[0].runtime", "did you mean 'codex'"),
        (AGENT.replace("codex", "nope"), 5, "agents[0].runtime", "known: claude, codex, gemini, opencode, shell"),
        (AGENT + "    comand: x\n", 6, "agents[0].comand", "did you mean 'command'"),
        (AGENT + "    runtime: claude\n", 6, "agents[0].runtime", "duplicate key"),
        (AGENT + "    args: oops\n", 6, "agents[0].args", "must be a list of strings"),
        (AGENT + "    args: [yes]\n", 6, "agents[0].args[0]", "quote it"),
        (AGENT + "    env: {1X: a}\n", 6, "agents[0].env", "invalid environment variable name"),
        (AGENT + "    command: []\n", 6, "agents[0].command", "must not be empty"),
        (AGENT + '    command: "unterminated \'quote"\n', 6, "agents[0].command", "cannot split"),
        ("version: 1\nagents:\n  - runtime: codex\n", 3, "agents[0]", "missing required key 'name'"),
        ("version: 1\nagents:\n  - name: a\n", 3, "agents[0]", "missing required key 'runtime'"),
        ("version: !!python/object:os.system x\n", 1, "version", "could not determine a constructor"),
    ],
)
def test_invalid_rosters_name_file_line_and_field(text: str, line: int | None, field: str, fragment: str) -> None:
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "roster.yaml")
    error = caught.value
    assert error.line == line
    assert error.field == field
    assert fragment in str(error)
    assert str(error).startswith(f"roster.yaml:{line}:" if line else "roster.yaml:")
    assert "\n" not in str(error)


# --------------------------------------------------------------------------- lifecycle keys


def test_lifecycle_keys_default_and_parse() -> None:
    default = parse_roster(AGENT).agents[0]
    assert (default.stop_timeout, default.start_grace, default.max_failures, default.failure_window) == (
        10.0,
        1.0,
        5,
        60.0,
    )
    assert default.to_dict() == {"name": "a", "runtime": "codex"}
    text = AGENT + "    stop_timeout: 2.5\n    start_grace: 0\n    max_failures: 3\n    failure_window: 30\n"
    agent = parse_roster(text).agents[0]
    assert (agent.stop_timeout, agent.start_grace, agent.max_failures, agent.failure_window) == (2.5, 0.0, 3, 30.0)
    assert isinstance(agent.stop_timeout, float)
    assert isinstance(agent.failure_window, float)
    assert isinstance(agent.max_failures, int)
    assert agent.to_dict() == {
        "name": "a",
        "runtime": "codex",
        "stop_timeout": 2.5,
        "start_grace": 0.0,
        "max_failures": 3,
        "failure_window": 30.0,
    }
    assert parse_roster("version: 1\nagents: [" + str(agent.to_dict()) + "]\n").agents[0] == agent


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("stop_timeout: 0", "must be a number > 0"),
        ("stop_timeout: -1", "must be a number > 0"),
        ("stop_timeout: .nan", "must be a number > 0"),
        ("stop_timeout: .inf", "must be a number > 0"),
        ("stop_timeout: '10'", "must be a number > 0"),
        ("stop_timeout: yes", "must be a number > 0"),
        ("start_grace: -0.5", "must be a number >= 0"),
        ("start_grace: [1]", "expected a single value"),
        ("max_failures: 0", "must be a whole number >= 1"),
        ("max_failures: 2.5", "must be a whole number >= 1"),
        ("max_failures: true", "must be a whole number >= 1"),
        ("failure_window: 0", "must be a number > 0"),
    ],
)
def test_invalid_lifecycle_keys_name_line_and_field(line: str, fragment: str) -> None:
    key = line.partition(":")[0]
    with pytest.raises(RosterError) as caught:
        parse_roster(AGENT + f"    {line}\n", "roster.yaml")
    assert caught.value.line == 6
    assert caught.value.field == f"agents[0].{key}"
    assert fragment in str(caught.value)


def test_the_starter_roster_runs_anywhere_and_shows_the_real_runtimes_commented_out() -> None:
    roster = parse_roster(STARTER_ROSTER)
    assert [(a.name, a.runtime) for a in roster.agents] == [("coder0", "shell")]
    commented = "\n".join(line for line in STARTER_ROSTER.splitlines() if line.lstrip().startswith("#"))
    for runtime in ("claude", "codex", "gemini", "opencode"):
        assert runtime in commented
    uncommented = parse_roster(
        STARTER_ROSTER.replace("  # - ", "  - ").replace("  #   ", "    "),
    )
    assert {a.runtime for a in uncommented.agents} == {"shell", "claude", "codex"}


def test_the_starter_roster_names_the_installed_commands() -> None:
    # It named `inv roster.add` and `inv fleet.install`, which exist only in a clone.
    header = STARTER_ROSTER.split("version:", 1)[0]
    assert "`fleet roster.add`" in header
    assert "`fleet install`" in header
    assert "`inv " not in header
