"""Reads a YAML file strictly: duplicate keys are errors, and every error names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(Exception):
    pass


class _StrictLoader(yaml.SafeLoader):
    pass


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


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay text: the validators read them and name the path of one that is not a real date, where
# YAML's own reading would stop the load on 2027-02-30 with a bare ValueError.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise YamlError("the file does not exist") from None
    except OSError as err:
        raise YamlError(f"cannot read the file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise YamlError(f"the file is not UTF-8 text (byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlError(f"{where}not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise YamlError(f"not valid YAML: {err}") from None
