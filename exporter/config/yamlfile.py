"""Reads a YAML file strictly: duplicate keys are errors, and every error names the file and line.

`_StrictLoader` (PyYAML's safe loader with the rules below) is the reference: what it reads is what a config
means, and its words are the error messages. A big config is first read by `yamlevents` straight from
libyaml's events, several times faster; whatever that fast reader does not cover, it hands back to the
reference, so both ways give the same values and the same errors.

Besides YAML's own rules, a document may not nest lists and mappings more than `MAX_DEPTH` deep, an alias may
not sit inside the node it names, and an integer may not be longer than `MAX_NUMBER_LENGTH` characters:
such documents are never configs, and reading them would otherwise end in a RecursionError or a
ValueError from Python instead of a message naming the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from exporter.config import yamlevents

MAX_DEPTH = 100  # lists and mappings inside each other; a config needs about 8
MAX_NUMBER_LENGTH = 1000  # characters of an integer: Python neither reads nor prints one of over 4,300 digits


class YamlError(Exception):
    pass


class _OverLimit(yaml.MarkedYAMLError):
    """Valid YAML, but past what any config needs (MAX_DEPTH, MAX_NUMBER_LENGTH)."""


class _StrictLoader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # Counted here, before the composer recurses: at about 330 levels it would hit Python's recursion limit.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open_anchors:
                raise ComposerError(None, None, f"found the alias *{event.anchor} inside the node it names (a value "
                                    "cannot contain itself)", event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _OverLimit(None, None, f"lists and mappings nested at most {MAX_DEPTH} levels deep",
                                 self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        return self._composing(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        return self._composing(anchor, super().compose_mapping_node)

    def _composing(self, anchor: str | None, compose: Any) -> Any:
        if anchor is None:
            return compose(anchor)
        self._open_anchors.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._open_anchors.discard(anchor)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges; keys written beside it may override what it brings
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:
            raise YamlError(f"line {line}: a mapping key must be a plain value, not a list or a mapping") from None
        if first is not None:
            first_line = first.start_mark.line + 1
            raise YamlError(f"line {line}: the key {key!r} is written twice (first at line {first_line})")
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_NUMBER_LENGTH:
        raise _OverLimit(None, None, f"a number of at most {MAX_NUMBER_LENGTH} characters, got one of "
                         f"{len(node.value)} (write it in quotes if it is text)", node.start_mark)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
# Dates stay text: the validators read them and name the path of one that is not a real date, where
# YAML's own reading would stop the load on 2027-02-30 with a bare ValueError.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)


def parse_yaml(text: str) -> Any:
    """The value of the YAML document `text`; raises YamlError naming the line of what is wrong."""
    try:
        try:
            return yamlevents.build(text, _StrictLoader, MAX_DEPTH)
        except yamlevents.Unsupported:
            return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _OverLimit as err:
        mark = err.problem_mark
        raise YamlError(f"line {mark.line + 1}, column {mark.column + 1}: expected {err.problem}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlError(f"{where}not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise YamlError(f"not valid YAML: {err}") from None
    except YamlError:
        raise
    except (RecursionError, MemoryError):
        raise YamlError("expected a YAML document of a reasonable size and nesting") from None
    except Exception as err:  # noqa: BLE001 - a surprise in PyYAML must still be a message, not a traceback
        raise YamlError(f"expected a YAML document; reading it failed ({type(err).__name__})") from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise YamlError("the file does not exist") from None
    except OSError as err:
        raise YamlError(f"cannot read the file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise YamlError(f"the file is not UTF-8 text (byte {err.start})") from None
    return parse_yaml(text)
