"""Finds the line of a config value from its path (``sites[2].checks[0].ping.count``), so an error names it.

The validators name the path; the YAML document knows where each value was written. A path that leads to
nothing (a required key left out) gets the line of the nearest value above it that exists.

The lines are read only when an error needs one, and once per document however many errors there are
(`Lines`): a config that loads never pays for it. They are read into a tree of lines and keys only, straight
from libyaml's parse events (PyYAML's own parser without libyaml): a full node tree of a 10,000-site config
takes several times longer, as each of its values is resolved for nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentEndEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent, StreamEndEvent)

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: its own parser reads the events
    _CParser = None

_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")
_UNREAD = object()


class _Scalar:
    __slots__ = ("line", "text")

    def __init__(self, line: int, text: str | None):
        self.line = line
        self.text = text  # None for a key that is a list or a mapping


class _Sequence:
    __slots__ = ("line", "items")

    def __init__(self, line: int):
        self.line = line
        self.items: list[_Node] = []


class _Mapping:
    __slots__ = ("line", "pairs", "key")

    def __init__(self, line: int):
        self.line = line
        self.pairs: list[tuple[_Scalar, _Node]] = []
        self.key: _Scalar | None = None  # read, its value not yet


_Node = _Scalar | _Sequence | _Mapping


class Lines:
    """The lines of paths in one YAML document, read on the first question."""

    def __init__(self, text: str):
        self._text = text
        self._root: Any = _UNREAD

    def of(self, path: str) -> int | None:
        """The 1-based line of `path`, or None when the document has no such place (or is not YAML)."""
        if self._root is _UNREAD:
            self._root = _read(self._text)
        node = self._root
        line = None
        rest = "" if path == "(top level)" else path
        while node is not None:
            line = node.line
            node, rest = _step(node, rest)
        return line


def line_of(text: str, path: str) -> int | None:
    """The 1-based line of `path` in the YAML document `text`, or None when the document has no such place."""
    return Lines(text).of(path)


def _read(text: str) -> _Node | None:
    if not text:
        return None
    for events in (_libyaml_events, _pyyaml_events):
        try:
            return _tree(events(text))
        except Exception:  # noqa: BLE001 - a line is a courtesy: no lookup may replace the error it is for
            continue
    return None


def _libyaml_events(text: str) -> Iterator[Any]:
    if _CParser is None:
        raise LookupError("PyYAML has no libyaml")
    parser = _CParser(text)
    try:
        while True:
            event = parser.get_event()
            yield event
            if type(event) is StreamEndEvent:
                return
    finally:
        parser.dispose()


def _pyyaml_events(text: str) -> Iterator[Any]:
    return yaml.parse(text, Loader=yaml.SafeLoader)


def _tree(events: Iterator[Any]) -> _Node | None:
    """The first document's tree of lines."""
    anchors: dict[str, _Node] = {}
    stack: list[_Sequence | _Mapping] = []
    root: _Node | None = None
    for event in events:
        kind = type(event)
        if kind is ScalarEvent:
            node: _Node = _Scalar(event.start_mark.line + 1, event.value)
        elif kind is AliasEvent:
            node = anchors.get(event.anchor) or _Scalar(event.start_mark.line + 1, None)
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            opened = (_Mapping if kind is MappingStartEvent else _Sequence)(event.start_mark.line + 1)
            if event.anchor is not None:
                anchors[event.anchor] = opened
            stack.append(opened)
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            node = stack.pop()
        elif kind is DocumentEndEvent or kind is StreamEndEvent:
            return root
        else:
            continue  # stream and document start
        if kind is ScalarEvent and event.anchor is not None:
            anchors[event.anchor] = node
        if not stack:
            root = node
            continue
        parent = stack[-1]
        if type(parent) is _Sequence:
            parent.items.append(node)
        elif parent.key is None:
            parent.key = node if type(node) is _Scalar else _Scalar(node.line, None)
        else:
            parent.pairs.append((parent.key, node))
            parent.key = None
    return root


def _step(node: _Node, rest: str) -> tuple[_Node | None, str]:
    if not rest:
        return None, rest
    if type(node) is _Sequence:
        match = _STEP.match(rest)
        if match is None or match.group(1) is None or int(match.group(1)) >= len(node.items):
            return None, rest
        return node.items[int(match.group(1))], rest[match.end():]
    if type(node) is _Mapping:
        rest = rest[1:] if rest.startswith(".") else rest
        # Keys may hold dots themselves; the longest key the path goes on from wins.
        best: tuple[_Scalar, _Node] | None = None
        for key_node, value_node in node.pairs:
            key = key_node.text
            if key is not None and rest.startswith(key) and rest[len(key):len(key) + 1] in ("", ".", "[") and (
                    best is None or len(key) > len(best[0].text or "")):
                best = (key_node, value_node)
        if best is None:
            return None, rest
        key_node, value_node = best
        remaining = rest[len(key_node.text or ""):]
        if remaining or type(value_node) is not _Scalar:
            # A path that goes on steps into the value; one that ends at a list or a mapping names its key's
            # line, where the reader looks for it, not the line the nested block happens to start on.
            return (value_node if remaining else key_node), remaining
        return value_node, remaining
    return None, rest
