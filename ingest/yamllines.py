"""Finds the line of a config value from its path (``sites[2].getad.serials[0]``), so an error names it.

The exporter's validators name the path; the YAML node tree knows where each value was written. A path that
leads to nothing (a required key left out) gets the line of the nearest value above it that exists.
"""

from __future__ import annotations

import re

import yaml

_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def line_of(text: str, path: str) -> int | None:
    """The 1-based line of `path` in the YAML document `text`, or None when the document has no such place."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = None
    rest = path
    while node is not None:
        line = node.start_mark.line + 1
        node, rest = _step(node, rest)
    return line


def _step(node: yaml.Node, rest: str) -> tuple[yaml.Node | None, str]:
    if not rest:
        return None, rest
    if isinstance(node, yaml.SequenceNode):
        match = _STEP.match(rest)
        if match is None or match.group(1) is None or int(match.group(1)) >= len(node.value):
            return None, rest
        return node.value[int(match.group(1))], rest[match.end():]
    if isinstance(node, yaml.MappingNode):
        rest = rest[1:] if rest.startswith(".") else rest
        # Keys may hold dots themselves; the longest key the path goes on from wins.
        best: tuple[yaml.Node, yaml.Node] | None = None
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if rest.startswith(key) and rest[len(key):len(key) + 1] in ("", ".", "[") and (
                    best is None or len(key) > len(str(best[0].value))):
                best = (key_node, value_node)
        if best is None:
            return None, rest
        key_node, value_node = best
        remaining = rest[len(str(key_node.value)):]
        if remaining or not isinstance(value_node, yaml.ScalarNode):
            # A path that goes on steps into the value; one that ends at a list or a mapping names its key's
            # line, where the reader looks for it, not the line the nested block happens to start on.
            return (value_node if remaining else key_node), remaining
        return value_node, remaining
    return None, rest
