"""Resource limits: roster keys, the unit text they become, cgroup figures (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetlib.errors import RosterError
from fleetlib.resources import Resources, human_size, oom_reason
from fleetlib.roster import parse_roster
from fleetlib.schema import agent_json
from fleetlib.systemd import DEFAULT_UNITS, UnitNames
from fleetlib.units import agent_dropin_text, agent_template_text, unit_files

ROSTER = """\
version: 1
resources: {memory_max: 4G, tasks_max: 256}
fleet_resources:
  memory_max: 16G
  cpu_quota: 150%
agents:
  - name: a
    runtime: shell
    resources: {memory_high: 3G, cpu_quota: 50%}
  - name: b
    runtime: shell
"""


def test_roster_json_carries_each_agents_limits_with_the_defaults_merged_in() -> None:
    # docs/reference/json.md lists `resources` among roster.list/show --json keys; it was never printed.
    a, b = parse_roster(ROSTER, "r.yaml").agents
    assert agent_json(a)["resources"] == {
        "memory_high": "3G",
        "memory_max": "4G",
        "cpu_quota": "50%",
        "tasks_max": "256",
    }
    assert agent_json(b)["resources"] == {"memory_max": "4G", "tasks_max": "256"}
    (plain,) = parse_roster("version: 1\nagents:\n  - {name: c, runtime: shell}\n", "r.yaml").agents
    assert agent_json(plain)["resources"] is None  # every key is always present, null without limits


def test_agent_limits_take_the_fleet_wide_defaults_and_the_ceiling_is_the_slices() -> None:
    roster = parse_roster(ROSTER, "r.yaml")
    a, b = roster.agents
    assert a.resources == Resources(memory_high="3G", memory_max="4G", cpu_quota="50%", tasks_max="256")
    assert b.resources == Resources(memory_max="4G", tasks_max="256")
    assert roster.fleet_resources == Resources(memory_max="16G", cpu_quota="150%")
    files = unit_files(
        roster, units=DEFAULT_UNITS, tmux_bin="tmux", socket=Path("/s"), environment={}, user_home=Path("/h")
    )
    dropin = files["mosaic-agent@a.service.d/50-fleet-roster.conf"]
    for line in ("MemoryHigh=3G", "MemoryMax=4G", "CPUQuota=50%", "TasksMax=256"):
        assert f"\n{line}\n" in dropin
    slice_text = files[DEFAULT_UNITS.slice]
    assert "[Slice]\n" in slice_text
    assert "\nMemoryMax=16G\n" in slice_text
    assert "\nCPUQuota=150%\n" in slice_text
    assert "TasksMax" not in slice_text
    # A host's part of the roster keeps the limits (they are the agent's, not the machine's).
    assert parse_roster(roster.host_text("local"), "again").agents == roster.agents


def test_template_lets_the_supervisor_report_an_out_of_memory_kill() -> None:
    text = agent_template_text("r")
    assert "OOMPolicy=continue\n" in text
    assert "MemoryAccounting=yes\n" in text


def test_no_limits_no_lines() -> None:
    roster = parse_roster("version: 1\nagents:\n  - {name: a, runtime: shell}\n", "r")
    text = agent_dropin_text(
        roster.agents[0], "tmux", Path("/s"), environment={}, cwd="/", cgroup_mounts=(), source="r"
    )
    assert "Memory" not in text
    assert "Tasks" not in text


def test_slice_is_per_home() -> None:
    other = UnitNames.for_home("/tmp/some-home")
    assert DEFAULT_UNITS.slice == "app-mosaic.slice"
    assert other.slice.startswith("app-mosaic_")
    assert "-" not in other.slice.removeprefix("app-")  # one slice level below app.slice
    assert other.slice != DEFAULT_UNITS.slice


@pytest.mark.parametrize(
    ("block", "line", "problem"),
    [
        ("    resources: {memory_max: 4X}\n", 5, "resources.memory_max: must be a size like 512M or 4G"),
        ("    resources: {cpu_quota: 50}\n", 5, "resources.cpu_quota: must be a percentage of one core"),
        ("    resources:\n      tasks_max: 0\n", 6, "resources.tasks_max: must be a whole number of tasks >= 1"),
        ("    resources: {memory_maxx: 1G}\n", 5, "unknown key 'memory_maxx'; did you mean 'memory_max'?"),
        ("    resources: 4G\n", 5, "resources must be a mapping"),
    ],
)
def test_bad_limits_name_file_line_and_field(block: str, line: int, problem: str) -> None:
    text = "version: 1\nagents:\n  - name: a\n    runtime: shell\n" + block
    with pytest.raises(RosterError) as error:
        parse_roster(text, "/r/roster.yaml")
    assert str(error.value).startswith(f"/r/roster.yaml:{line}: agents[0].")
    assert problem in str(error.value)


def test_bad_ceiling_is_refused_too() -> None:
    with pytest.raises(RosterError, match=r"^r:2: fleet_resources.memory_max: must be a size"):
        parse_roster("version: 1\nfleet_resources: {memory_max: lots}\nagents: []\n", "r")


def test_sizes_and_reason() -> None:
    assert [human_size(v) for v in (4 << 30, 512 << 20, 3 << 10, 1000)] == ["4G", "512M", "3K", "1000"]
    assert oom_reason("4G") == "out of memory (memory_max 4G)"
