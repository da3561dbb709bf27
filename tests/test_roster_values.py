"""Roster values arrive as written or not at all: no YAML 1.1 coercion, no NUL bytes, a cwd
that means one thing on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlib.errors import FleetError, RosterError
from fleetlib.roster import Agent, missing_cwd_warnings, parse_roster, validate_agent

HEAD = "version: 1\nagents:\n  - name: a\n    runtime: shell\n"  # the agent's keys go on line 5


def _error(body: str) -> RosterError:
    with pytest.raises(RosterError) as caught:
        parse_roster(HEAD + body, "roster.yaml")
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("body", "field", "written"),
    [
        ("    env: {PERM: 0755}\n", "agents[0].env.PERM", "0755"),
        ("    env: {T: 1:30}\n", "agents[0].env.T", "1:30"),
        ("    env: {ID: 0x1F}\n", "agents[0].env.ID", "0x1F"),
        ("    env:\n      N: 1_000\n", "agents[0].env.N", "1_000"),
        ("    env: {F: 1.5}\n", "agents[0].env.F", "1.5"),
        ("    env: {B: off}\n", "agents[0].env.B", "off"),
        ("    env: {B: yes}\n", "agents[0].env.B", "yes"),
        ("    env: {D: 2001-12-14}\n", "agents[0].env.D", "2001-12-14"),
        ("    env: {Z: ~}\n", "agents[0].env.Z", "~"),
        ("    env: {Z: null}\n", "agents[0].env.Z", "null"),
        ("    env: {I: .inf}\n", "agents[0].env.I", ".inf"),
        ("    args: [--x, 1_000]\n", "agents[0].args[1]", "1_000"),
        ("    args:\n      - on\n", "agents[0].args[0]", "on"),
        ("    command: [my-cli, 0755]\n", "agents[0].command[1]", "0755"),
        ("    command: 0755\n", "agents[0].command", "0755"),
        ("    description: 1:30\n", "agents[0].description", "1:30"),
        ("    description: no\n", "agents[0].description", "no"),
        ("    cwd: 2001-12-14\n", "agents[0].cwd", "2001-12-14"),
    ],
)
def test_a_plain_value_yaml_would_coerce_is_refused_showing_the_text_as_written(
    body: str, field: str, written: str
) -> None:
    error = _error(body)
    assert error.field == field
    assert error.line == 5 + body.rstrip("\n").count("\n")
    assert f"{written} " in error.problem
    assert "quote it" in error.problem


def test_the_quote_it_hint_shows_the_value_quoted() -> None:
    assert error_text("    env: {PERM: 0755}\n").endswith('quote it ("0755")')
    assert error_text("    args: [1:30]\n").endswith('quote it ("1:30")')


def error_text(body: str) -> str:
    return str(_error(body))


def test_quoted_and_str_tagged_values_arrive_exactly_as_written() -> None:
    roster = parse_roster(
        HEAD
        + "    env: {PERM: '0755', T: \"1:30\", ID: !!str 0x1F, B: 'yes', E: ''}\n"
        + "    args: ['1_000', \"0755\", plain-word, '~']\n"
        + "    description: '1:30'\n"
    )
    agent = roster.agents[0]
    assert agent.env == {"PERM": "0755", "T": "1:30", "ID": "0x1F", "B": "yes", "E": ""}
    assert agent.args == ("1_000", "0755", "plain-word", "~")
    assert agent.description == "1:30"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('    args: ["a\\0b"]\n', "agents[0].args[0]"),
        ('    env: {K: "v\\0"}\n', "agents[0].env.K"),
        ('    cwd: "/tmp/\\0x"\n', "agents[0].cwd"),
        ('    command: ["sh\\0"]\n', "agents[0].command[0]"),
        ('    command: "sh -c \\0"\n', "agents[0].command"),
        ('    description: "a\\0"\n', "agents[0].description"),
    ],
)
def test_characters_no_program_can_receive_are_refused(body: str, field: str) -> None:
    error = _error(body)
    assert error.field == field
    assert error.line == 5
    assert "cannot be passed to a program" in error.problem


def test_a_lone_surrogate_is_refused_in_one_line() -> None:
    with pytest.raises(RosterError) as caught:
        parse_roster(HEAD + '    args: ["\\ud800"]\n', "roster.yaml")
    assert str(caught.value).startswith("roster.yaml:5: ")


def test_a_nul_in_the_runtime_label_is_refused() -> None:
    text = 'version: 1\nagents:\n  - name: a\n    runtime: "x\\0"\n    command: [sh]\n'
    with pytest.raises(RosterError, match=r"roster.yaml:4: agents\[0\].runtime: .*cannot be passed"):
        parse_roster(text, "roster.yaml")


def test_command_line_input_is_checked_the_same_way() -> None:
    with pytest.raises(FleetError, match=r"^args\[0\]: .*cannot be passed"):
        validate_agent(Agent(name="a", runtime="shell", args=("a\0b",)))
    with pytest.raises(FleetError, match=r"^cwd: .*relative"):
        validate_agent(Agent(name="a", runtime="shell", cwd="src/x"))


# --------------------------------------------------------------------------- cwd


@pytest.mark.parametrize(
    ("cwd", "resolved"),
    [
        (None, "/home/u"),
        ('"~"', "/home/u"),
        ("~/src/x", "/home/u/src/x"),
        ("/srv/a b", "/srv/a b"),
        ("'/x#(touch y)'", "/x#(touch y)"),
        ("/a/../b", "/a/../b"),
    ],
)
def test_cwd_of_is_absolute_and_literal_with_the_home_directory_as_default(cwd: str | None, resolved: str) -> None:
    body = f"    cwd: {cwd}\n" if cwd is not None else ""
    roster = parse_roster(HEAD + body, "/etc/fleet/roster.yaml")
    assert roster.cwd_of(roster.agents[0], Path("/home/u")) == resolved


@pytest.mark.parametrize(
    ("cwd", "fragment"),
    [
        ("src/project", "relative path 'src/project'; write ~/src/project or an absolute path"),
        ("./x", "relative path './x'"),
        ("~bob/x", "only ~ and ~/... expand"),
        ("''", "must not be empty"),
    ],
)
def test_a_cwd_that_could_mean_several_places_is_refused(cwd: str, fragment: str) -> None:
    error = _error(f"    cwd: {cwd}\n")
    assert error.field == "agents[0].cwd"
    assert error.line == 5
    assert fragment in error.problem


def test_missing_cwd_warnings_name_file_line_and_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "here").mkdir(parents=True)
    (tmp_path / "file").write_text("")
    text = (
        "version: 1\nagents:\n"
        "  - {name: a, runtime: shell}\n"  # line 3: no cwd, the home directory exists
        "  - {name: b, runtime: shell, cwd: ~/here}\n"
        "  - name: c\n    runtime: shell\n    cwd: ~/gone\n"  # line 7
        f"  - name: d\n    runtime: shell\n    cwd: {tmp_path}/file\n"  # line 10
    )
    roster = parse_roster(text, "roster.yaml")
    assert missing_cwd_warnings(roster, home) == [
        f"warning: roster.yaml:7: agents[2].cwd: {home}/gone does not exist on this machine; "
        "start will fail until it does",
        f"warning: roster.yaml:10: agents[3].cwd: {tmp_path}/file is not a directory; start will fail until it is",
    ]
    assert missing_cwd_warnings(parse_roster(text.split("  - name: c", maxsplit=1)[0], "roster.yaml"), home) == []


def test_activity_and_transcript_keys_parse_and_round_trip() -> None:
    roster = parse_roster(
        "version: 1\nagents:\n  - name: a\n    runtime: shell\n"
        "    on_state_change: [notify-send, 'fleet: $x']\n    log_max_bytes: 65536\n    log_keep: 2\n"
    )
    agent = roster.agents[0]
    assert agent.on_state_change == ("notify-send", "fleet: $x")
    assert (agent.log_max_bytes, agent.log_keep) == (65536, 2)
    assert agent.to_dict()["on_state_change"] == ["notify-send", "fleet: $x"]
    default = parse_roster("version: 1\nagents:\n  - name: b\n    runtime: shell\n").agents[0]
    assert default.on_state_change == ()
    assert "log_keep" not in default.to_dict()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("on_state_change: notify-send", "list of strings"),
        ("on_state_change: []", "non-empty first word"),
        ("on_state_change: ['']", "non-empty first word"),
        ("on_state_change: [true]", "quote"),
        ("log_max_bytes: 100", ">= 4096"),
        ("log_max_bytes: 1e9", ">= 4096"),
        ("log_keep: 0", ">= 1"),
        ("log_keep: two", ">= 1"),
    ],
)
def test_bad_activity_and_transcript_keys_are_one_line_with_file_and_line(line: str, fragment: str) -> None:
    with pytest.raises(RosterError) as caught:
        parse_roster(f"version: 1\nagents:\n  - name: a\n    runtime: shell\n    {line}\n", "r.yaml")
    message = str(caught.value)
    assert message.startswith("r.yaml:5: agents[0].")
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["stop_timeout", "start_grace", "failure_window"])
@pytest.mark.parametrize("value", ["1.0e+300", "604801", "99999999999"])
def test_a_roster_duration_is_at_most_a_week_like_every_flag(key: str, value: str) -> None:
    # Defect: `stop_timeout: 1.0e+300` passed, and `fleet start --timeout 5` then never
    # returned (its wait is the timeout plus the longest stop_timeout).
    with pytest.raises(RosterError) as caught:
        parse_roster(f"version: 1\nagents:\n  - name: a\n    runtime: shell\n    {key}: {value}\n", "r.yaml")
    assert str(caught.value).startswith(f"r.yaml:5: agents[0].{key}: must be at most 604800 seconds (a week)")


def test_a_week_is_a_roster_duration_still() -> None:
    (agent,) = parse_roster("version: 1\nagents:\n  - {name: a, runtime: shell, stop_timeout: 604800}\n", "r").agents
    assert agent.stop_timeout == 604800.0
