"""The documentation stays true to the code: every task and flag, every roster key is in the
reference, and the README keeps the two command lines `.ci/run` and newcomers rely on.
(`nox -s docs` checks the links: mkdocs --strict.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetctl.namespaces import program_ns
from fleetlib.group import HostsFleet
from fleetlib.hosts import HOST_KEYS
from fleetlib.resources import RESOURCE_KEYS
from fleetlib.roster import parse_roster
from fleetlib.roster.model import AGENT_KEYS, TOP_LEVEL_KEYS
from fleetlib.schema import agent_json

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "reference"
# The README's limit: what it is, install, the quick start and links; the rest is docs/.
README_MAX_BYTES = 8 * 1024


def _task_flags(name: str) -> list[str]:
    task, _ = program_ns.task_with_config(name)
    return sorted(n.replace("_", "-") for arg in task.get_arguments() for n in arg.names if len(n) > 1)


@pytest.mark.parametrize("name", sorted(program_ns.task_names))
def test_cli_reference_names_every_task_and_flag(name: str) -> None:
    text = (REFERENCE / "cli.md").read_text() + (REFERENCE / "build-dev.md").read_text()
    assert f"`{name}" in text, f"docs/reference/cli.md does not describe the task {name}"
    missing = [flag for flag in _task_flags(name) if not re.search(rf"--(\[no-\]|no-)?{re.escape(flag)}\b", text)]
    assert not missing, f"docs/reference/cli.md does not name {name}'s flags {missing}"


@pytest.mark.parametrize("key", sorted({*AGENT_KEYS, *TOP_LEVEL_KEYS, *HOST_KEYS}))
def test_roster_reference_lists_every_key(key: str) -> None:
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", (REFERENCE / "roster.md").read_text(), re.MULTILINE))
    assert key in rows, f"docs/reference/roster.md has no table row for the roster key {key!r}"


def test_roster_reference_names_every_resource_key() -> None:
    text = (REFERENCE / "roster.md").read_text()
    assert [key for key in RESOURCE_KEYS if f"{key}" not in text] == []


def test_readme_is_short_and_keeps_the_set_up_and_test_lines() -> None:
    text = README.read_text()
    assert len(text.encode()) < README_MAX_BYTES
    # .ci/run runs the line ending in `  # tests` (sed on the README): exactly one of each.
    for tag in ("tests", "main job"):
        lines = re.findall(rf"^    \$ (.*)  # {tag}$", text, re.MULTILINE)
        assert len(lines) == 1, f"README.md needs one '    $ ...  # {tag}' line"
        # Debian's system Python refuses `pip install` outside a virtualenv.
        assert "python3 -m venv .venv" in lines[0]
        assert "python3 -m pip" not in lines[0]


def _json_reference_keys(heading: str) -> list[str]:
    """The keys of the first table under ``heading`` in docs/reference/json.md."""
    section = (REFERENCE / "json.md").read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)


def test_json_reference_lists_exactly_the_keys_roster_list_prints() -> None:
    (agent,) = parse_roster("version: 1\nagents:\n  - {name: a, runtime: shell}\n", "r.yaml").agents
    assert _json_reference_keys("## Roster tasks") == list(agent_json(agent))


def test_the_hosts_guide_says_which_methods_return_a_hosts_result() -> None:
    # The guide named logs, attach, doctor and top too: they return None, an exit code, a
    # list of checks and a live sampler, so a script written from it broke.
    text = " ".join((ROOT / "docs" / "guide" / "hosts.md").read_text().split())
    said = text.split("## From Python", 1)[1].split("each return one `fleetlib.results.HostsResult`", 1)[0]
    methods = re.findall(r"`([a-z_]+)`", said.rsplit("Across hosts,", 1)[1])
    assert methods
    # The annotation as written (postponed: some parameter types are imported for checking only).
    wrong = [m for m in methods if not getattr(HostsFleet, m).__annotations__["return"].startswith("HostsResult[")]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(program_ns.task_names))
def test_task_help_sends_readers_to_the_docs_not_the_readme(name: str) -> None:
    # The README keeps only the quick start; `--json`'s help said "(schema in README)".
    task, _ = program_ns.task_with_config(name)
    texts = [task.__doc__ or "", *(arg.help or "" for arg in task.get_arguments())]
    assert [text for text in texts if "README" in text] == []
