"""Roster edits never touch another agent: the splice follows each item's exact extent.

The property test generates rosters in every layout the YAML allows (block scalars of each
chomping style whose content lines start with '#', flow and block collections, comments
between, inside and after items, trailing blank lines, empty lists) and checks, for an
add and for a remove, that every other agent parses to the identical value and every
comment outside the removed item is still there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetlib.errors import FleetError
from fleetlib.roster import Agent, add_agent, parse_roster, remove_agent

# The two cases from issue 11, byte for byte.
PR_RULE = """\
version: 1
agents:
  - name: a0
    runtime: codex
    description: |
      Review every change.
      # Never approve your own PR
  - name: a1
    runtime: claude
    description: |
      helper
      # internal
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(text)
    return path


def test_add_after_a_block_scalar_ending_in_hash_lines_keeps_them(tmp_path: Path) -> None:
    path = _write(tmp_path, PR_RULE)
    before = parse_roster(PR_RULE).agents
    after = add_agent(path, Agent(name="b1", runtime="shell")).agents
    assert after[:2] == before
    assert after[1].description == "helper\n# internal\n"


def test_remove_before_a_block_scalar_agent_keeps_its_hash_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, PR_RULE)
    assert remove_agent(path, "a1").agents == parse_roster(PR_RULE).agents[:1]
    assert parse_roster(path.read_text()).agents[0].description == "Review every change.\n# Never approve your own PR\n"
    path = _write(tmp_path, PR_RULE)
    assert remove_agent(path, "a0").agents == parse_roster(PR_RULE).agents[1:]


def test_remove_keeps_comments_between_items_and_drops_only_the_item(tmp_path: Path) -> None:
    text = (
        "version: 1\nagents:\n  - name: a  # a's\n    runtime: shell\n    # after a\n"
        "  # before b\n  - name: b\n    runtime: shell\n    description: |+\n      # b text\n\n\n"
        "# tail\n"
    )
    path = _write(tmp_path, text)
    remove_agent(path, "a")
    assert path.read_text() == text.replace("  - name: a  # a's\n    runtime: shell\n", "")
    path = _write(tmp_path, text)
    remove_agent(path, "b")
    assert path.read_text() == text.replace(
        "  - name: b\n    runtime: shell\n    description: |+\n      # b text\n\n\n", ""
    )


def test_flow_lists_are_edited_in_place_keeping_comments(tmp_path: Path) -> None:
    text = "version: 1\nagents: [\n  {name: a, runtime: shell},  # keep a\n  {name: b, runtime: shell}  # keep b\n]\n"
    path = _write(tmp_path, text)
    add_agent(path, Agent(name="c", runtime="shell"))
    assert "# keep a" in path.read_text()
    assert "# keep b" in path.read_text()
    assert remove_agent(path, "b").names() == ["a", "c"]
    assert remove_agent(path, "a").names() == ["c"]
    assert remove_agent(path, "c").names() == []
    assert "# keep a" in path.read_text()
    assert "# keep b" in path.read_text()


def test_an_edit_that_would_change_another_agent_is_refused(tmp_path: Path) -> None:
    # a1's env is an alias of a0's: removing a0 would take the anchor with it.
    text = "version: 1\nagents:\n  - name: a0\n    runtime: shell\n    env: &e {K: v}\n  - name: a1\n    runtime: shell\n    env: *e\n"
    path = _write(tmp_path, text)
    with pytest.raises(FleetError, match="edit it by hand"):
        remove_agent(path, "a0")
    assert path.read_text() == text


# --------------------------------------------------------------------------- generated rosters

COMMENT = re.compile(r"#\s*(?:in|out)-[\w-]+")
_counter = iter(range(10**9))


def _tag(kind: str) -> str:
    return f"# {kind}-{next(_counter)}"


words = st.sampled_from(["x", "hello world", "--flag", "a: b", "#x", "50%", "it's", 'say "hi"', "~/x"])
content_lines = st.lists(
    st.sampled_from(["text", "# Never approve your own PR", "#", "  # indented hash", "", "- item", "key: v"]),
    min_size=0,
    max_size=4,
)


@st.composite
def block_scalar(draw: st.DrawFn, indent: int) -> list[str]:
    """``description: |...`` and its content lines (first line plain text, so no indicator is needed)."""
    header = draw(st.sampled_from(["|", "|-", "|+", ">", ">-", ">+"]))
    pad = " " * (indent + 2)
    body = ["first line", *draw(content_lines)]
    lines = [f"description: {header}"] + [pad + line if line else "" for line in body]
    lines += [""] * draw(st.integers(0, 2))
    return lines


def _quote(word: str) -> str:
    return "'" + word.replace("'", "''") + "'"


@st.composite
def block_item(draw: st.DrawFn, name: str, dash: int) -> list[str]:
    """One agent as a block mapping, dash at column ``dash``; comments inside are tagged ``in-<name>``."""
    indent = dash + 2
    pad = " " * indent
    keys: list[list[str]] = [[f"name: {name}"], ["runtime: shell"]]
    if draw(st.booleans()):
        args = draw(st.lists(words, min_size=0, max_size=3))
        if draw(st.booleans()):
            keys.append(["args: [" + ", ".join(_quote(a) for a in args) + "]"])
        else:
            keys.append(["args:"] + [f"  - {_quote(a)}" for a in args] if args else ["args: []"])
    if draw(st.booleans()):
        if draw(st.booleans()):
            keys.append(["env: {K: 'v', L: \"w #x\"}"])
        else:
            keys.append(["env:", "  K: v", f"  L: '0755'  {_tag('in-' + name)}"])
    if draw(st.booleans()):
        keys.append(["cwd: /tmp/x"])
    if draw(st.booleans()):
        keys.append(draw(block_scalar(indent)))
    keys = draw(st.permutations(keys))
    lines: list[str] = []
    for key_index, key_lines in enumerate(keys):
        for line_index, line in enumerate(key_lines):
            lines.append(pad + line if line else "")
            is_block_scalar = key_lines[0].startswith("description:")
            last_of_item = key_index == len(keys) - 1 and line_index == len(key_lines) - 1
            if not is_block_scalar and line and draw(st.integers(0, 3)) == 0 and not last_of_item:
                lines[-1] += "  " + _tag("in-" + name)
        if key_index < len(keys) - 1 and draw(st.integers(0, 3)) == 0:
            lines.append(pad + _tag("in-" + name))  # a comment between two keys of the item
    if draw(st.booleans()):
        lines[0] = " " * dash + "- " + lines[0][indent:]
    else:
        lines.insert(0, " " * dash + "-" + (f"  {_tag('in-' + name)}" if draw(st.booleans()) else ""))
    return lines


def flow_item(name: str) -> str:
    return f"{{name: {name}, runtime: shell, args: ['#a', b], env: {{K: '1:30'}}}}"


@st.composite
def between(draw: st.DrawFn, dash: int) -> list[str]:
    """Blank lines and comments outside every item, at any indentation."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            lines.append("")
        else:
            # Not deeper than an item's keys: a deeper '#' line after a block scalar is its content.
            lines.append(" " * draw(st.sampled_from([0, dash, dash + 2])) + _tag("out"))
    return lines


@st.composite
def rosters(draw: st.DrawFn) -> str:
    count = draw(st.integers(0, 4))
    names = [f"a{i}" for i in range(count)]
    lines = [_tag("out"), "version: 1"]
    style = draw(st.sampled_from(["block0", "block2", "flow", "empty"] if count else ["empty", "null"]))
    if style == "empty":
        lines.append("agents: []  " + _tag("out"))
    elif style == "null":
        lines.append("agents:")
    elif style == "flow":
        lines.append("agents: [")
        for index, name in enumerate(names):
            comma = "," if index < count - 1 or draw(st.booleans()) else ""
            lines.append(f"  {flow_item(name)}{comma}" + (f"  {_tag('out')}" if draw(st.booleans()) else ""))
            lines += [line for line in draw(between(2)) if line]
        lines.append("]")
    else:
        dash = 0 if style == "block0" else 2
        lines.append("agents:" + (f"  {_tag('out')}" if draw(st.booleans()) else ""))
        for name in names:
            lines += draw(between(dash))
            if draw(st.integers(0, 4)) == 0:
                lines.append(" " * dash + "- " + flow_item(name))
            else:
                lines += draw(block_item(name, dash))
        lines += draw(between(dash))
    if draw(st.booleans()):
        lines.append("transport: tmux  " + _tag("out"))
    lines += draw(between(0))
    text = "\n".join(lines)
    return text + draw(st.sampled_from(["", "\n", "\n\n\n"]))


def _comments(text: str) -> list[str]:
    return COMMENT.findall(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=rosters(), data=st.data())
def test_edits_never_change_another_agent_or_drop_an_outside_comment(
    tmp_path: Path, text: str, data: st.DataObject
) -> None:
    before = parse_roster(text)  # the generator only writes valid rosters
    path = _write(tmp_path, text)
    new = Agent(name="new", runtime="shell", args=("#x",), description="line\n# hash\n")
    after = add_agent(path, new)
    assert after.agents == (*before.agents, new)
    written = path.read_text()
    assert parse_roster(written, str(path)) == after
    assert _comments(written) == _comments(text)
    if not before.agents:
        return
    path.write_text(text)
    victim = data.draw(st.sampled_from(before.names()))
    after = remove_agent(path, victim)
    assert after.agents == tuple(a for a in before.agents if a.name != victim)
    written = path.read_text()
    assert parse_roster(written, str(path)) == after
    assert _comments(written) == [c for c in _comments(text) if not c.startswith(f"# in-{victim}-")]
    # Removing what was just added gives back the same agents and comments.
    path.write_text(text)
    add_agent(path, new)
    assert remove_agent(path, "new").agents == before.agents
    assert _comments(path.read_text()) == _comments(text)
