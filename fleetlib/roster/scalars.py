"""Strict YAML reading: a document's nodes and scalars, every refusal a :class:`RosterError`
with the file, the line and the field.

YAML 1.1 resolves plain scalars in surprising ways (``0755`` is 493, ``off`` is false,
``2001-12-14`` a date). The readers here take a value only when it is what the user wrote:
:func:`string` refuses anything YAML did not read as a string and shows how to quote it,
:func:`mapping` refuses duplicate, unknown and non-string keys. Only PyYAML's safe loader
is used; a tag it does not know is refused, never constructed.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import Any, Final

import yaml

from fleetlib.errors import RosterError


def line_of(node: yaml.Node) -> int:
    """The node's 1-based line in its document."""
    return node.start_mark.line + 1


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the option closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# libyaml's safe loader when PyYAML was built with it (10x faster on big rosters); both
# record the line marks the error messages need.
_SAFE_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG: Final = "tag:yaml.org,2002:str"
# One constructor for scalars; its memo is cleared before each use so nothing accumulates.
_SCALARS: Final = yaml.SafeLoader("")


def compose(text: str, source: str) -> yaml.Node | None:
    """The document's root node (None for an empty one); ``RosterError`` on invalid YAML."""
    try:
        return yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark is not None else None
        raise RosterError(source, f"invalid YAML: {problem}; fix the syntax", line=line) from None
    except yaml.YAMLError as exc:
        raise RosterError(source, f"invalid YAML: {exc}") from None


def scalar(node: yaml.Node, source: str, where: str) -> Any:
    """The value YAML reads from a scalar node; refuses lists, mappings and unsafe tags."""
    if not isinstance(node, yaml.ScalarNode):
        raise RosterError(source, "expected a single value, not a list or mapping", line=line_of(node), field=where)
    if node.tag == _STR_TAG:
        # What the safe constructor gives a string node (its text), without its dispatch:
        # most of a roster is strings, and `fleet status` reads the roster on every run.
        return node.value
    try:
        _SCALARS.constructed_objects.clear()
        return _SCALARS.construct_object(node)
    except yaml.YAMLError as exc:  # e.g. a !!python/object tag the safe loader refuses
        problem = getattr(exc, "problem", None) or str(exc)
        raise RosterError(source, f"unsupported value: {problem}", line=line_of(node), field=where) from None


# Characters no program can receive in argv, the environment or a path: execve() and every
# path call stop at NUL, and a lone surrogate cannot be encoded as UTF-8 at all.
_UNPASSABLE: Final = re.compile(r"[\x00\ud800-\udfff]")


def _reads_as(value: Any) -> str:
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return f"a {type(value).__name__} ({value})"


def string(node: yaml.Node, source: str, where: str) -> str:
    """A string field, exactly as written.

    YAML 1.1 resolves plain scalars: ``0755`` is 493, ``1:30`` is 90, ``off`` is false,
    ``2001-12-14`` a date. Rather than pass on a value the user never wrote, anything not
    tagged as a string (by quoting, or by being plain text YAML does not resolve) is
    refused, showing the text as written and how to quote it.
    """
    value = scalar(node, source, where)
    assert isinstance(node, yaml.ScalarNode)  # _scalar checked
    if node.tag != _STR_TAG or not isinstance(value, str):
        written = node.value
        if written == "":
            problem = 'must be a string; an empty value is null to YAML; write "" for an empty string'
        else:
            quoted = json.dumps(written, ensure_ascii=False)
            problem = f"must be a string: {written} as written is {_reads_as(value)} to YAML; quote it ({quoted})"
        raise RosterError(source, problem, line=line_of(node), field=where)
    bad = _UNPASSABLE.search(value)
    if bad:
        what = "a NUL byte" if bad.group() == "\0" else f"the lone surrogate U+{ord(bad.group()):04X}"
        raise RosterError(
            source, f"contains {what}, which cannot be passed to a program; remove it", line=line_of(node), field=where
        )
    return value


def string_list(node: yaml.Node, source: str, where: str) -> tuple[str, ...]:
    """A list of strings, each read by :func:`string`."""
    if not isinstance(node, yaml.SequenceNode):
        raise RosterError(source, "must be a list of strings", line=line_of(node), field=where)
    return tuple(string(item, source, f"{where}[{index}]") for index, item in enumerate(node.value))


def mapping(node: yaml.Node, source: str, where: str, allowed: Sequence[str] | None) -> dict[str, yaml.Node]:
    """Return key -> value node, rejecting non-string, duplicate and unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        what = where or "top level"
        raise RosterError(source, f"{what} must be a mapping", line=line_of(node))
    result: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = scalar(key_node, source, where or "top level")
        if not isinstance(key, str):
            raise RosterError(
                source, f"keys must be strings, got {key!r}", line=line_of(key_node), field=where or "top level"
            )
        path = f"{where}.{key}" if where else key
        if key in result:
            raise RosterError(source, "duplicate key; keep only one", line=line_of(key_node), field=path)
        if allowed is not None and key not in allowed:
            raise RosterError(
                source,
                f"unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})",
                line=line_of(key_node),
                field=path,
            )
        result[key] = value_node
    return result
