"""Comment-preserving splices: :func:`add_text` and :func:`remove_text` change only the text
of the agent item they add or remove; the user's comments, blank lines, quoting and key
order elsewhere survive byte for byte.

Each item's extent comes from the scanner (node marks and tokens), never from guessing by
lines: a block scalar's content may have lines that start with '#', and only the scanner
can tell those from comments. The pure-Python loader is used here because its marks count
characters of the str we splice. These functions are pure (text in, text out) and trust
that the text validated; the caller (:mod:`fleetlib.roster.edit`) parses the result again
and refuses any splice that changed another agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

import yaml

from fleetlib.roster.model import Agent

_EDIT_LOADER: Final = yaml.SafeLoader


def _dump_items(agents: Sequence[Agent], indent: int) -> str:
    text = yaml.safe_dump([a.to_dict() for a in agents], sort_keys=False, default_flow_style=False, allow_unicode=True)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def _dump_flow(agent: Agent) -> str:
    return yaml.safe_dump(agent.to_dict(), sort_keys=False, default_flow_style=True, width=1 << 30).strip()


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the line holding ``index`` (``index`` itself when it starts a line)."""
    if index == 0 or text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _insert_lines(text: str, at: int, lines: str) -> str:
    """Insert whole ``lines`` at ``at`` (a line start or the end of the text)."""
    if at == len(text) and text and not text.endswith("\n"):
        return _terminated(text) + lines
    return text[:at] + lines + text[at:]


def _terminated(text: str) -> str:
    """``text`` with a final line break, meaning the same.

    A block scalar that ends the file without one has no trailing break (``|`` and ``|+``
    then keep nothing); the added break would become part of it, so its chomping indicator
    becomes ``-`` (strip), which reads the same value with the break in place.
    """
    for scalar in _block_scalars(text):
        if scalar.end_mark.index == len(text):
            start = scalar.start_mark.index
            header = re.match(r"[|>][-+0-9]*", text[start:])
            assert header is not None
            indent = re.sub(r"[-+]", "", header.group()[1:])
            text = f"{text[:start]}{scalar.style}{indent}-{text[start + header.end() :]}"
            break
    return text + "\n"


def _block_scalars(text: str) -> Iterator[yaml.ScalarNode]:
    """Every ``|`` or ``>`` scalar of the document."""
    root = yaml.compose(text, Loader=_EDIT_LOADER)
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            yield node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)


def _keeps_blank_lines(text: str, index: int) -> bool:
    """Whether a keep-chomped (``|+``/``>+``) block scalar ends at ``index``: blank lines
    placed there would become part of its value."""
    for scalar in _block_scalars(text):
        if scalar.end_mark.index == index:
            header = re.match(r"[|>][-+0-9]*", text[scalar.start_mark.index :])
            return header is not None and "+" in header.group()
    return False


def _content_end(node: yaml.Node) -> int:
    """Where the node's last character of content ends.

    A block collection's own end mark lies at the next token, after any comments that follow
    it, so it is not used: the end is that of its last scalar or flow collection. Scalar and
    flow marks are exact; a block scalar's end includes its trailing line break(s). Empty
    (zero-width) scalars carry no position and count as -1.
    """
    if isinstance(node, yaml.ScalarNode):
        return node.end_mark.index if node.end_mark.index > node.start_mark.index else -1
    if isinstance(node, yaml.CollectionNode) and node.flow_style:
        return int(node.end_mark.index)
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = list(node.value)
    else:
        children = [part for pair in node.value for part in pair]
    return max((_content_end(child) for child in children), default=-1)


def _tokens(text: str, kind: type[yaml.Token]) -> list[int]:
    return [token.start_mark.index for token in yaml.scan(text, Loader=_EDIT_LOADER) if isinstance(token, kind)]


def _agents_nodes(text: str) -> tuple[yaml.MappingNode, yaml.Node | None, yaml.Node | None]:
    root = yaml.compose(text, Loader=_EDIT_LOADER)
    assert isinstance(root, yaml.MappingNode)  # the text validated already
    for key, value in root.value:
        if key.value == "agents":
            return root, key, value
    return root, None, None


def add_text(text: str, agent: Agent) -> str:
    """``text`` with ``agent`` appended to its ``agents`` list, in the list's own style
    (block items at its indentation, flow items inline); creates the list if missing."""
    root, key, seq = _agents_nodes(text)
    if key is None or seq is None:  # no `agents` key at all
        if root.flow_style:
            close = root.end_mark.index - 1
            return f"{text[:close]}, agents: [{_dump_flow(agent)}]{text[close:]}"
        return _insert_lines(text, len(text), "agents:\n" + _dump_items([agent], 2))
    if isinstance(seq, yaml.SequenceNode) and seq.value and not seq.flow_style:
        dash = _line_start(text, seq.start_mark.index)
        column = seq.start_mark.index - dash
        return _insert_lines(text, _line_end(text, _content_end(seq.value[-1])), _dump_items([agent], column))
    if isinstance(seq, yaml.SequenceNode) and seq.value:  # a flow list with items
        at = seq.value[-1].end_mark.index
        return f"{text[:at]}, {_dump_flow(agent)}{text[at:]}"
    # An empty flow list or a null: becomes a block list under the key, unless in flow context.
    start, end = seq.start_mark.index, seq.end_mark.index
    if root.flow_style:
        return f"{text[:start]}[{_dump_flow(agent)}]{text[end:]}"
    if isinstance(seq, yaml.SequenceNode) and text[start + 1 : end - 1].strip():  # `[ # comment ... ]`
        return f"{text[: start + 1]}{_dump_flow(agent)}{text[start + 1 :]}"
    if end > start and "\n" not in text[start:end]:
        text = text[:start] + text[end:]  # drop `[]`, `~` or `null`; a comment after it stays
    key_column = key.start_mark.column
    return _insert_lines(text, _line_end(text, key.end_mark.index), _dump_items([agent], key_column + 2))


def remove_text(text: str, index: int) -> str:
    """``text`` without the ``agents`` item at ``index`` (and the comment on its last line);
    an emptied list becomes ``[]`` rather than a null."""
    _root, key, seq = _agents_nodes(text)
    assert key is not None  # the agent exists, so does its list
    assert isinstance(seq, yaml.SequenceNode)
    item = seq.value[index]
    if seq.flow_style:
        # Delete the item and one comma next to it (the following one, else the preceding
        # one); comments and line breaks around them stay.
        commas = _tokens(text, yaml.FlowEntryToken)
        after_limit = seq.value[index + 1].start_mark.index if index + 1 < len(seq.value) else seq.end_mark.index
        following = [c for c in commas if item.end_mark.index <= c < after_limit]
        before_limit = seq.value[index - 1].end_mark.index if index else seq.start_mark.index
        preceding = [c for c in commas if before_limit <= c < item.start_mark.index]
        comma = following[0] if following else (preceding[-1] if preceding else None)
        cuts = [(item.start_mark.index, item.end_mark.index)]
        if comma is not None:
            cuts.append((comma, comma + 1))
        for start, end in sorted(cuts, reverse=True):
            text = text[:start] + text[end:]
        return text
    # Block list: from the start of the item's `-` line to the end of the line where its
    # content ends (a comment on that line goes with it; comments on later lines stay).
    dash = max(i for i in _tokens(text, yaml.BlockEntryToken) if i < item.start_mark.index)
    start, end = _line_start(text, dash), _line_end(text, _content_end(item))
    if _keeps_blank_lines(text, start):
        # The blank lines after the item would join the keep-chomped scalar above it.
        while end < len(text) and not text[end : _line_end(text, end + 1)].strip():
            end = _line_end(text, end + 1)
    text = text[:start] + text[end:]
    if len(seq.value) == 1:  # the list is now empty: say so rather than leaving a null
        colon = text.index(":", key.end_mark.index) + 1
        text = f"{text[:colon]} []{text[colon:]}"
    return text
