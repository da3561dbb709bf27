"""Roster edits against real files: comments kept, atomic, serialised across processes."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from fleetlib.errors import FleetError
from fleetlib.roster import Agent, add_agent, init_roster, load_roster, parse_roster, remove_agent

COMMENTED = """\
# fleet of the week
version: 1  # format
agents:
  - name: a   # the first one
    runtime: codex
    args: [x]

  # about b
  - name: b
    runtime: claude
# after the list
transport: tmux
"""


@pytest.fixture
def roster_file(tmp_path: Path) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(COMMENTED)
    return path


def test_add_keeps_comments_and_key_order(roster_file: Path) -> None:
    roster = add_agent(roster_file, Agent(name="c", runtime="shell", cwd="/tmp", env={"K": "v"}))
    text = roster_file.read_text()
    assert roster.names() == ["a", "b", "c"]
    for comment in ("# fleet of the week", "# format", "# the first one", "# about b", "# after the list"):
        assert comment in text
    assert text.index("version") < text.index("agents") < text.index("transport")
    assert text.index("name: c") < text.index("# after the list")
    assert load_roster(roster_file).get("c").env == {"K": "v"}


def test_remove_then_add_round_trips_the_text(roster_file: Path) -> None:
    add_agent(roster_file, Agent(name="c", runtime="shell"))
    remove_agent(roster_file, "c")
    assert roster_file.read_text() == COMMENTED


def test_remove_middle_agent_keeps_neighbours_comments(roster_file: Path) -> None:
    remove_agent(roster_file, "a")
    text = roster_file.read_text()
    assert "# the first one" not in text
    assert "# about b" in text
    assert load_roster(roster_file).names() == ["b"]
    remove_agent(roster_file, "b")
    assert load_roster(roster_file).names() == []
    assert "agents: []" in roster_file.read_text()


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nagents: []\n",
        "version: 1\nagents:\n",
        "version: 1\n",
        "version: 1\nagents: [{name: a, runtime: codex}]\ntransport: tmux\n",
        "version: 1\nagents:\n- name: a\n  runtime: codex\ntransport: tmux",
    ],
)
def test_add_and_remove_work_on_every_list_shape(tmp_path: Path, text: str) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(text)
    before = parse_roster(text).names()
    assert add_agent(path, Agent(name="new", runtime="gemini")).names() == [*before, "new"]
    assert remove_agent(path, "new").names() == before


def test_failed_edits_leave_the_file_untouched(roster_file: Path) -> None:
    with pytest.raises(FleetError, match="already exists"):
        add_agent(roster_file, Agent(name="a", runtime="codex"))
    with pytest.raises(FleetError, match="invalid agent name"):
        add_agent(roster_file, Agent(name="a;rm -rf", runtime="codex"))
    with pytest.raises(FleetError, match="unknown agent 'zz'"):
        remove_agent(roster_file, "zz")
    assert roster_file.read_text() == COMMENTED
    assert sorted(p.name for p in roster_file.parent.iterdir()) == ["roster.yaml", "roster.yaml.lock"]


def test_edit_refuses_a_broken_roster_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text("version: 1\nagents: [\n")
    with pytest.raises(FleetError, match="invalid YAML"):
        add_agent(path, Agent(name="x", runtime="codex"))
    assert path.read_text() == "version: 1\nagents: [\n"


def test_write_failure_on_full_disk_keeps_the_old_file(roster_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate the rename failing after the temp file was written (e.g. EIO / ENOSPC).
    def failing_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(FleetError, match="No space left on device; the roster was left unchanged"):
        add_agent(roster_file, Agent(name="c", runtime="codex"))
    assert roster_file.read_text() == COMMENTED
    assert sorted(p.name for p in roster_file.parent.iterdir()) == ["roster.yaml", "roster.yaml.lock"]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "fleet" / "roster.yaml"
    assert init_roster(path).names() == ["coder0"]
    path.write_text(COMMENTED)
    with pytest.raises(FleetError, match="--force"):
        init_roster(path)
    assert path.read_text() == COMMENTED
    init_roster(path, force=True)
    assert load_roster(path).names() == ["coder0"]


def _add_many(path: str, prefix: str, count: int) -> None:
    for index in range(count):
        add_agent(Path(path), Agent(name=f"{prefix}{index}", runtime="codex"))


def test_concurrent_adds_from_many_processes_all_land(roster_file: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_add_many, args=(str(roster_file), f"p{n}-", 15)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    names = load_roster(roster_file).names()
    assert len(names) == 2 + 4 * 15
    assert set(names) == {"a", "b"} | {f"p{n}-{i}" for n in range(4) for i in range(15)}
    assert "# after the list" in roster_file.read_text()
