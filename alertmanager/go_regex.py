r"""Go's regular expressions (RE2, as Alertmanager's matchers use them), rewritten for Python's re.

Alertmanager compiles a matcher's regex with Go's regexp (RE2 syntax) as ^(?:...)$. Python's re reads
most of it alike but not all: a flag group such as (?i) may stand anywhere in Go and then holds to the
end of its group, (?U) swaps greedy and lazy, \d \w \s \b are ASCII, (?i) folds letters by Unicode's
simple case folding (K, k and the Kelvin sign; not the Turkish dotless ı with i, which Python's re
folds), ^ and $ mean the text's start and end, and Go has \z, \Q...\E, \x{...}, [[:alpha:]], \pL and
\p{Greek}, and reads a{,2} as text. `python_regex` rewrites a Go regex into a Python one of the same
meaning: every character and class is written out as the code points it matches, folded as Go folds
them, with no flag left for Python to apply.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import Iterable

_MAX_CHAR = 0x10FFFF
_LAST_CASED = 0x1FFFF  # no character above has a case (Unicode 15's last is U+1E943)
_WORD = "[0-9A-Za-z_]"
_PERL_CLASSES = {  # Go's \d, \s and \w: ASCII only
    "d": ((0x30, 0x39),),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}
_POSIX_CLASSES = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)), "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),), "blank": ((0x09, 0x09), (0x20, 0x20)), "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),), "graph": ((0x21, 0x7E),), "lower": ((0x61, 0x7A),), "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)), "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),), "word": _PERL_CLASSES["w"], "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_CONTROL_ESCAPES = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAG_GROUP = re.compile(r"\(\?([imsU]*(?:-[imsU]*)?)(\)|:)")
_NAMED_GROUP = re.compile(r"\(\?P?<([A-Za-z0-9_]+)>")
_UNICODE_NAME = re.compile(r"\{(\^?)([A-Za-z_]+)\}|([A-Za-z])")
_SCRIPT_NAMES = {"Han": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")}

Ranges = list[tuple[int, int]]


def python_regex(pattern: str) -> str:
    """A Python regex matching what Alertmanager's `^(?:pattern)$` matches, to be used with fullmatch.
    Raises ValueError, saying what and where, for what Go itself would refuse."""
    return _GoRegex(pattern).translate()


class _GoRegex:
    def __init__(self, pattern: str):
        self.text = pattern
        self.at = 0
        self.flags: frozenset[str] = frozenset()  # Go's i, m, s, U in force here

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} at position {self.at}")

    def translate(self) -> str:
        text, out = self.text, []
        groups: list[frozenset[str]] = []  # the flags to restore when each open group closes
        while self.at < len(text):
            char = text[self.at]
            if char == "(":
                flag_group = _FLAG_GROUP.match(text, self.at)
                named = _NAMED_GROUP.match(text, self.at)
                if flag_group:
                    self.at = flag_group.end()
                    on, negation, off = flag_group.group(1).partition("-")
                    if negation and not off:  # (?i-) and (?-:...), which Go refuses; (?:...) is a plain group
                        raise self.fail("a flag group with nothing after its -")
                    changed = frozenset((self.flags | set(on)) - set(off))
                    if flag_group.group(2) == ":":  # (?i:...): for that group only
                        groups.append(self.flags)
                        out.append("(?:")
                    self.flags = changed  # (?i): from here to the end of the enclosing group
                    continue
                if text.startswith("(?", self.at) and not named:
                    raise self.fail("a group Go does not know")
                groups.append(self.flags)
                self.at = named.end() if named else self.at + 1
                out.append("(")  # a capturing group: Go's group names need not be Python identifiers
                continue
            self.at += 1
            if char == ")":
                if not groups:
                    raise self.fail("an unopened )")
                self.flags = groups.pop()
                out.append(")")
            elif char == "|":
                out.append("|")
            elif char in "*+?":
                out.append(char + self.lazy())
            elif char == "{" and _REPEAT.match(text, self.at - 1):
                repeat = _REPEAT.match(text, self.at - 1)
                self.at = repeat.end()
                out.append(repeat.group() + self.lazy())
            elif char == "^":  # assertions in a group of their own: Go may repeat them
                out.append(r"(?:\A|(?<=\n))" if "m" in self.flags else r"(?:\A)")
            elif char == "$":
                out.append(r"(?:\Z|(?=\n))" if "m" in self.flags else r"(?:\Z)")
            elif char == ".":
                out.append(_class_text([(0, _MAX_CHAR)] if "s" in self.flags else [(0, 9), (11, _MAX_CHAR)]))
            elif char == "[":
                out.append(_class_text(*self.char_class()))
            elif char == "\\":
                out.append(self.escape())
            else:
                out.append(self.literal(ord(char)))
        if groups:
            raise self.fail("a ( that is not closed")
        return "".join(out)

    def lazy(self) -> str:
        """The repetition's `?` (lazy) as Python writes it: Go's (?U) swaps greedy and lazy."""
        lazy = self.text.startswith("?", self.at)
        if lazy:
            self.at += 1
        return "?" if lazy != ("U" in self.flags) else ""

    def literal(self, point: int) -> str:
        if "i" in self.flags:
            folded = _folded([(point, point)])
            if len(folded) > 1 or folded[0][0] != folded[0][1]:
                return _class_text(folded)
        return re.escape(chr(point))

    def escape(self) -> str:
        """What follows a backslash outside a class."""
        if self.at >= len(self.text):
            raise self.fail("a trailing backslash")
        char = self.text[self.at]
        if char == "Q":  # \Q...\E: literal text
            end = self.text.find(r"\E", self.at + 1)
            literal = self.text[self.at + 1:] if end < 0 else self.text[self.at + 1:end]
            self.at = len(self.text) if end < 0 else end + 2
            return "".join(self.literal(ord(c)) for c in literal)
        self.at += 1
        if char in "Az":
            return r"(?:\A)" if char == "A" else r"(?:\Z)"
        if char in "bB":  # ASCII word boundaries, as Go has them
            boundary = f"(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD})"
            inside = f"(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD})"
            return f"(?:{boundary if char == 'b' else inside})"
        self.at -= 1
        item = self.class_escape()
        return self.literal(item) if isinstance(item, int) else _class_text(item)

    def class_escape(self) -> int | Ranges:
        """What follows a backslash that stands for a character or a class: the character's code, or the
        class's ranges (folded when (?i) is in force, as Go folds a class before negating it)."""
        text = self.text
        if self.at >= len(text):
            raise self.fail("a trailing backslash")
        char = text[self.at]
        self.at += 1
        if char.lower() in _PERL_CLASSES:
            return self.group(_PERL_CLASSES[char.lower()], char.isupper())
        if char in "pP":
            name = _UNICODE_NAME.match(text, self.at)
            if not name:
                raise self.fail("a \\p without a class name")
            self.at = name.end()
            return self.group(_unicode_class(name.group(2) or name.group(3)), (char == "P") != bool(name.group(1)))
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char]
        if char == "x":
            if text.startswith("{", self.at):
                end = text.find("}", self.at)
                digits = text[self.at + 1:end] if end > 0 else ""
                self.at = end + 1
            else:
                digits = text[self.at:self.at + 2]
                self.at += 2
            if not digits or len(digits) > 8 or any(c not in "0123456789abcdefABCDEF" for c in digits) or \
                    int(digits, 16) > _MAX_CHAR:
                raise self.fail("a bad \\x escape")
            return int(digits, 16)
        if char in "01234567":  # octal, up to three digits; \1 alone would be a back reference Go refuses
            digits = char
            while len(digits) < 3 and self.at < len(text) and text[self.at] in "01234567":
                digits += text[self.at]
                self.at += 1
            if char != "0" and len(digits) == 1:
                raise self.fail("a back reference, which Go does not have,")
            return int(digits, 8)
        if ord(char) < 0x80 and not char.isalnum():
            return ord(char)  # an escaped punctuation mark is itself
        raise self.fail(f"an escape \\{char} Go does not know")

    def group(self, ranges: Iterable[tuple[int, int]], negated: bool) -> Ranges:
        positive = _folded(ranges) if "i" in self.flags else _normalised(ranges)
        return _complement(positive) if negated else positive

    def char_class(self) -> tuple[Ranges, bool]:
        """A bracketed class, after its `[`: its ranges, and whether it is negated."""
        text = self.text
        negated = text.startswith("^", self.at)
        self.at += negated
        ranges: Ranges = []
        first = True
        while True:
            if self.at >= len(text):
                raise self.fail("a [ that is not closed")
            char = text[self.at]
            if char == "]" and not first:
                self.at += 1
                return self.group(ranges, False), negated
            first = False
            if text.startswith("[:", self.at):
                end = text.find(":]", self.at + 2)
                name = text[self.at + 2:end] if end > 0 else ""
                if name.lstrip("^") in _POSIX_CLASSES:
                    self.at = end + 2
                    ranges.extend(self.group(_POSIX_CLASSES[name.lstrip("^")], name.startswith("^")))
                    continue
            low = self.class_char()
            if isinstance(low, list):
                ranges.extend(low)
                continue
            if text.startswith("-", self.at) and self.at + 1 < len(text) and text[self.at + 1] != "]":
                self.at += 1
                high = self.class_char()
                if isinstance(high, list) or high < low:
                    raise self.fail("a bad range in a class")
                ranges.append((low, high))
            else:
                ranges.append((low, low))

    def class_char(self) -> int | Ranges:
        char = self.text[self.at]
        self.at += 1
        return self.class_escape() if char == "\\" else ord(char)


def _normalised(ranges: Iterable[tuple[int, int]]) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: Iterable[tuple[int, int]]) -> Ranges:
    result, start = [], 0
    for low, high in _normalised(ranges):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CHAR:
        result.append((start, _MAX_CHAR))
    return result


def _class_text(ranges: Ranges, negated: bool = False) -> str:
    """A Python class of these ranges, every character written as a code so nothing in it is special."""
    if not ranges:
        return _class_text([(0, _MAX_CHAR)]) if negated else "(?!)"

    def code(point: int) -> str:
        return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"

    body = "".join(code(low) if low == high else f"{code(low)}-{code(high)}" for low, high in ranges)
    return f"[{'^' if negated else ''}{body}]"


_FOLD_ORBITS: dict[int, tuple[int, ...]] = {}  # a cased character -> every character it folds together with


def _folded(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """The ranges with every character's case variants added, by simple case folding (Go's (?i))."""
    ranges = _normalised(ranges)
    if not _FOLD_ORBITS:
        orbits: dict[str, list[int]] = {}
        for point in range(_LAST_CASED + 1):
            char = chr(point)
            folded = char.casefold()
            if len(folded) != 1:  # only a full folding (ß -> ss): the simple one is to lower case, if any
                folded = char.lower() if len(char.lower()) == 1 else char
            orbits.setdefault(folded, []).append(point)
        for members in orbits.values():
            if len(members) > 1:
                _FOLD_ORBITS.update((member, tuple(members)) for member in members)
    starts = [low for low, _ in ranges]
    extra = [(other, other) for point, orbit in _FOLD_ORBITS.items()
             if (index := bisect.bisect_right(starts, point) - 1) >= 0 and ranges[index][1] >= point
             for other in orbit]
    return _normalised(ranges + extra)


def _unicode_class(name: str) -> Ranges:
    """\\pL, \\p{Lu}, \\p{Greek}: a general category (as Python's unicodedata has it), or a script, taken as
    the characters whose Unicode names begin with it (Go's tables and Python's may differ by a Unicode
    version)."""
    if name == "Any":
        return [(0, _MAX_CHAR)]
    categories = _categories()
    if name in categories or (len(name) == 1 and any(key.startswith(name) for key in categories)):
        return _normalised(r for key, ranges in categories.items() if key == name or key[0] == name
                           for r in ranges if len(name) == 2 or key != "Cn")
    return _script(name)


_CATEGORY_CACHE: dict[str, Ranges] = {}
_SCRIPT_CACHE: dict[str, Ranges] = {}


def _categories() -> dict[str, Ranges]:
    if not _CATEGORY_CACHE:
        for point in range(_MAX_CHAR + 1):
            ranges = _CATEGORY_CACHE.setdefault(unicodedata.category(chr(point)), [])
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))
    return _CATEGORY_CACHE


def _script(name: str) -> Ranges:
    if name not in _SCRIPT_CACHE:
        prefixes = _SCRIPT_NAMES.get(name, (name.upper().replace("_", " ") + " ",))
        points = [p for p in range(_MAX_CHAR + 1) if unicodedata.name(chr(p), "").startswith(prefixes)]
        if not points or name in ("Common", "Inherited"):
            raise ValueError(f"\\p{{{name}}}: a Unicode class this reading of Go's regular expressions does not know")
        _SCRIPT_CACHE[name] = _normalised((p, p) for p in points)
    return _SCRIPT_CACHE[name]
