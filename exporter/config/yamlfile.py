"""Reads a YAML file strictly: duplicate keys are errors, and every error names the file and line.

`_StrictLoader` (PyYAML's safe loader with the rules below) is the reference: what it reads is what a config
means, and its words are the error messages. A big config is first read by `yamlevents` straight from
libyaml's events, several times faster; whatever that fast reader does not cover, it hands back to the
reference, so both ways give the same values and the same errors.

Besides YAML's own rules, a document may not nest lists and mappings more than `MAX_DEPTH` deep, an alias may
not sit inside the node it names, and an integer may not be longer than `MAX_NUMBER_LENGTH` characters:
such documents are never configs, and reading them would otherwise end in a RecursionError or a
ValueError from Python instead of a message naming the line.

Files are often written in Windows Notepad: `decode` reads UTF-8 with or without a byte order mark, and
UTF-16 or UTF-32 with one (Notepad's "Unicode" and "Unicode big endian"); a file in the ANSI code page
(cp1251 on Russian Windows) is refused with the line of its first such character and how to save it as
UTF-8. A Windows path in double quotes, where a backslash starts an escape, gets a hint to quote it otherwise.
Every sitewatch program reads its YAML files through `read_text` (or `read_yaml`), so all decode alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from exporter.config import yamlevents
from exporter.schema import WINDOWS_PATH_HINT

MAX_DEPTH = 100  # lists and mappings inside each other; a config needs about 8
MAX_NUMBER_LENGTH = 1000  # characters of an integer: Python neither reads nor prints one of over 4,300 digits


# Shown wherever a backslash in double quotes was taken for an escape ("C:\new" holds a newline).
_SAVE_AS_UTF8 = ("save it as UTF-8 (in Notepad: File > Save As, Encoding: UTF-8; on Russian Windows: "
                 "Файл > Сохранить как, Кодировка: UTF-8)")
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS = ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                     (b"\xef\xbb\xbf", "utf-8"), (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le"))


class YamlError(Exception):
    """A file that is not a usable YAML document. `str()` is the message, led by the line (and column) of
    the problem when it has one; `problem`, `line` and `column` are its parts."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None):
        self.problem = problem
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line and column else f"line {line}: " if line else ""
        super().__init__(where + problem)


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
            raise YamlError("a mapping key must be a plain value, not a list or a mapping", line) from None
        if first is not None:
            first_line = first.start_mark.line + 1
            raise YamlError(f"the key {key!r} is written twice (first at line {first_line})", line)
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
        raise YamlError(f"expected {err.problem}", mark.line + 1, mark.column + 1) from None
    except yaml.reader.ReaderError as err:
        # A control character (Ctrl-Z at the end of a file, a form feed, ESC): PyYAML names only its offset.
        line, column = _place(text[:err.position])
        raise YamlError(f"the file holds the control character U+{err.character:04X}, which YAML does not allow; "
                        "delete it", line, column) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        problem = f"not valid YAML: {err.problem}"
        if err.context == "while scanning a double-quoted scalar" and "escape" in (err.problem or ""):
            problem += f" ({WINDOWS_PATH_HINT})"
        raise YamlError(problem, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as err:
        raise YamlError(f"not valid YAML: {err}") from None
    except YamlError:
        raise
    except (RecursionError, MemoryError):
        raise YamlError("expected a YAML document of a reasonable size and nesting") from None
    except Exception as err:  # noqa: BLE001 - a surprise in PyYAML must still be a message, not a traceback
        raise YamlError(f"expected a YAML document; reading it failed ({type(err).__name__})") from None


def read_text(path: Path) -> str:
    """The text of the file at `path`, decoded by `decode`; raises YamlError saying why it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise YamlError("the file does not exist") from None
    except OSError as err:
        raise YamlError(f"cannot read the file: {err.strerror or err}") from None
    return decode(data)


def decode(data: bytes) -> str:
    """The text of a file's bytes: UTF-8 with or without a byte order mark, or UTF-16 or UTF-32 with one.

    Raises YamlError naming the line and column of the first character that is neither; bytes that are not
    UTF-8 are most likely the ANSI code page Notepad saves in by default, and the message says how to fix that.
    """
    encoding = "utf-8"
    for mark, name in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            data, encoding = data[len(mark):], name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line, column = _place(data[:err.start].decode(encoding, errors="replace"))
        if encoding == "utf-8" and b"\x00" in data:
            # UTF-16 without a byte order mark: a NUL beside every Latin letter, Russian ones not UTF-8 at all
            raise YamlError(f"the file holds NUL bytes, so it is probably UTF-16 text without a byte order mark; "
                            f"{_SAVE_AS_UTF8}") from None
        if encoding == "utf-8":
            raise YamlError("the file is not UTF-8 text; it is probably in the Windows ANSI encoding (cp1251): "
                            + _SAVE_AS_UTF8, line, column) from None
        unicode = encoding[:6].upper()
        raise YamlError(f"the file starts with the byte order mark of {unicode} but is not {unicode} text from "
                        f"here on; {_SAVE_AS_UTF8}", line, column) from None
    nul = text.find("\x00")
    if nul >= 0:
        # UTF-16 without a byte order mark reads as UTF-8 with a NUL beside every Latin letter; no YAML has one
        line, column = _place(text[:nul])
        raise YamlError("the file holds a NUL character, so it is probably UTF-16 text without a byte order "
                        f"mark; {_SAVE_AS_UTF8}", line, column)
    # Characters Notepad does not show that change how YAML reads the file: a byte order mark left in the
    # middle by joining two files, and the Unicode line and paragraph separators, which end a line (a
    # comment's rest becomes YAML) although the editor shows none.
    hidden = _HIDDEN.search(text, len(text) - len(text.lstrip("\ufeff")))  # marks at the very start are harmless
    if hidden:
        line, column = _place(text[:hidden.start()])
        raise YamlError(f"the file holds the invisible character U+{ord(hidden.group()):04X} "
                        f"({_HIDDEN_NAMES[hidden.group()]}); delete it (retype the line)", line, column)
    return text


_HIDDEN = re.compile("[\ufeff\u2028\u2029]")
_HIDDEN_NAMES = {"\ufeff": "a byte order mark, as left where two files were joined",
                 "\u2028": "a line separator", "\u2029": "a paragraph separator"}
_LINE_BREAK = re.compile("\r\n|[\n\r\x85]")  # as YAML counts lines: CR alone ends one too (old Mac files)


def _place(before: str) -> tuple[int, int]:
    """The 1-based line and column of the character that follows the text `before`."""
    breaks = list(_LINE_BREAK.finditer(before))
    start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, len(before) - start + 1


def read_yaml(path: Path) -> Any:
    """The value of the YAML file at `path` (`read_text`, then `parse_yaml`); raises YamlError only."""
    return parse_yaml(read_text(path))
