"""Builds a YAML document's value straight from libyaml's parse events: the fast way to read a big config.

PyYAML's loader turns every event into a node and every node into a value through generic machinery; for a
config of 10,000 sites that is seconds of work that a flat loop over the events does several times faster.
This loop covers what configs are made of (mappings, lists, plain and quoted scalars, anchors and aliases)
and builds exactly the values the reference loader (`yamlfile._StrictLoader`) would: each scalar is resolved
and constructed by that loader's own resolver and constructors. Anything else raises `Unsupported`, and the
caller reads the text with the reference loader, which decides and words any error: an explicit tag, a merge
key (``<<``), a key written twice or that is a list or a mapping, an undefined, repeated or self-containing
anchor, nesting past the limit, any scalar the constructors refuse, a second document, any parse error, a
tab or a byte order mark anywhere (libyaml and PyYAML read those differently), and a PyYAML built without
libyaml. tests/test_exporter_config_fuzz.py compares the two readers on generated documents.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent, StreamEndEvent)

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml (possible on Windows): the reference loader reads everything
    _CParser = None
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null",
                                                                  "timestamp"))


class Unsupported(Exception):
    """The document needs the reference loader."""


class _Frame:
    """An open list or mapping, with what it still waits for."""

    __slots__ = ("value", "anchor", "key", "has_key")

    def __init__(self, value: Any, anchor: str | None):
        self.value = value
        self.anchor = anchor
        self.key: Any = None
        self.has_key = False


def build(text: str, reference: type[yaml.SafeLoader], max_depth: int) -> Any:
    """The value of the single document in `text`, as `reference` would construct it, or Unsupported."""
    if _CParser is None:
        raise Unsupported("PyYAML has no libyaml")
    if "\t" in text or "\ufeff" in text:
        # libyaml accepts tabs and byte order marks in places where PyYAML refuses them or reads them otherwise
        raise Unsupported("a tab or a byte order mark")
    parser = _CParser(text)
    try:
        return _build(parser, reference, max_depth)
    except Unsupported:
        raise
    except Exception as err:  # noqa: BLE001 - parse errors included: the reference loader words them
        raise Unsupported(str(err)) from None
    finally:
        parser.dispose()


def _build(parser: Any, reference: type[yaml.SafeLoader], max_depth: int) -> Any:
    loader = reference("")  # for its resolver and scalar constructors, which read nothing from the stream
    constructors = reference.yaml_constructors
    scalars: dict[tuple[str, tuple[bool, bool]], Any] = {}  # most scalars repeat: keys, hosts' forms, units
    anchors: dict[str, Any] = {}
    open_anchors: set[str] = set()
    stack: list[_Frame] = []
    documents = 0
    root: Any = None
    get_event = parser.get_event
    while True:
        event = get_event()
        kind = type(event)
        if kind is ScalarEvent:
            if event.tag is not None or len(stack) >= max_depth:
                raise Unsupported("tag or depth")
            cache_key = (event.value, event.implicit)
            try:
                value = scalars[cache_key]
            except KeyError:
                tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                if tag not in _SCALAR_TAGS:
                    raise Unsupported(tag) from None
                value = constructors[tag](loader, yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark))
                scalars[cache_key] = value
            if event.anchor is not None:
                _name_anchor(event.anchor, anchors, open_anchors)
                anchors[event.anchor] = value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None or len(stack) >= max_depth:
                raise Unsupported("tag or depth")
            if event.anchor is not None:
                _name_anchor(event.anchor, anchors, open_anchors)
                open_anchors.add(event.anchor)
            stack.append(_Frame({} if kind is MappingStartEvent else [], event.anchor))
            continue
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            frame = stack.pop()
            value = frame.value
            if frame.anchor is not None:
                open_anchors.discard(frame.anchor)
                anchors[frame.anchor] = value
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise Unsupported("undefined or self-containing alias")
            value = anchors[event.anchor]
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise Unsupported("more than one document")
            continue
        elif kind is StreamEndEvent:
            return root
        else:
            continue  # stream start, document end
        if not stack:
            root = value
            continue
        frame = stack[-1]
        container = frame.value
        if type(container) is list:
            container.append(value)
        elif frame.has_key:
            container[frame.key] = value
            frame.has_key = False
        else:
            if type(value) is list or type(value) is dict or value in container:
                raise Unsupported("a key the reference loader words an error for")
            frame.key = value
            frame.has_key = True


def _name_anchor(anchor: str, anchors: dict[str, Any], open_anchors: set[str]) -> None:
    if anchor in anchors or anchor in open_anchors:
        raise Unsupported("an anchor defined twice")
