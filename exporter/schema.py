"""Small declarative validators for YAML configs.

Each validator turns a raw YAML value into a Python value or raises `Invalid` with the path inside the
document (``sites[1].checks[0].ping.count``), what was expected and what was found. The exporter's config
is described with them, and so are the configs of the other sitewatch programs.

A mapping or a list is checked whole: `struct`, `list_of` and `mapping_of` go on past a bad key or item and
raise one `Invalid` for all they found (`Invalid.problems`, in the order they are written), so a config with
three mistakes is fixed in one go, not in three runs. That `Invalid` reads as the first of them.
"""

from __future__ import annotations

import contextvars
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter import redaction
from exporter.secrets import SecretValue, parse_secret

_MISSING = object()


class Invalid(Exception):
    """A value at `path` is not what the schema expects."""

    def __init__(self, path: str, expected: str, got: Any = _MISSING, hint: str = ""):
        self.path = path or "(top level)"
        self.expected = expected
        self.got = got
        self.hint = hint
        self.problems: list[Invalid] = [self]  # every problem this one stands for, itself first
        # Set by `struct`: what it could check, the keys it could not (None in `partial`) left out of checks
        # that depend on them. None when the value was not even a mapping.
        self.partial: dict[str, Any] | None = None
        self.failed: frozenset[str] = frozenset()
        super().__init__(self.describe())

    @classmethod
    def gather(cls, problems: Sequence[Invalid], partial: dict[str, Any] | None = None,
               failed: frozenset[str] = frozenset()) -> Invalid:
        """One Invalid for `problems` (each maybe a gathering itself): it reads as the first, and its
        `problems` holds them all, in the order given."""
        flat = [problem for group in problems for problem in group.problems]
        if len(flat) == 1 and partial is None:
            return flat[0]
        first = flat[0]
        gathered = cls(first.path, first.expected, first.got, first.hint)
        gathered.problems = flat
        gathered.partial = partial
        gathered.failed = failed
        return gathered

    def describe(self) -> str:
        text = f"{self.path}: expected {self.expected}"
        if self.got is not _MISSING:
            text += f", got {describe_value(self.got)}"
        if self.hint:
            text += f" ({self.hint})"
        return text


def describe_value(value: Any) -> str:
    """Names a YAML value for an error message without dumping big structures."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        value = redaction.redact(value)  # an address with user:password@ in it is shown without them
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"a mapping with keys {', '.join(map(str, value))}" if value else "an empty mapping"
    if isinstance(value, _Unknown):
        return f"unknown key {value.key!r}"
    return type(value).__name__


@dataclass(frozen=True)
class _Unknown:
    key: str


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


Validator = Callable[[Any, str], Any]


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(path, _range_text("an integer", minimum, maximum), value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise Invalid(path, _range_text("an integer", minimum, maximum), value)
        return value

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Validator:
    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or _finite(value) is None:
            raise Invalid(path, _range_text("a number", minimum, maximum), value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise Invalid(path, _range_text("a number", minimum, maximum), value)
        return float(value)

    return check


def _finite(value: int | float) -> float | None:
    """`value` as a float, or None for .nan, .inf and integers too big for a float: NaN passes every range
    check, and an infinite interval or timeout would stall what it schedules."""
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def _range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{kind} of at least {minimum:g}"
    if maximum is not None:
        return f"{kind} of at most {maximum:g}"
    return kind


def boolean() -> Validator:
    def check(value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise Invalid(path, "true or false", value)
        return value

    return check


def string(pattern: str | None = None, what: str = "a non-empty string") -> Validator:
    compiled = re.compile(pattern) if pattern else None

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid(path, what, value)
        if compiled and not compiled.fullmatch(value):
            raise Invalid(path, what, value)
        return value

    return check


def choice(*options: str) -> Validator:
    def check(value: Any, path: str) -> str:
        if value not in options:
            raise Invalid(path, "one of " + ", ".join(options), value)
        return value

    return check


def integer_choice(*options: int) -> Validator:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or value not in options:
            raise Invalid(path, "one of " + ", ".join(map(str, options)), value)
        return value

    return check


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float | None:
    """Reads durations such as ``500ms``, ``30s``, ``1m30s``, or plain seconds (``60``, as on a command line);
    None when the text is not one."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        return None
    return sum(float(amount) * _DURATION_UNITS[unit] for amount, unit in _DURATION_PART.findall(text))


def duration(minimum: float | None = None, maximum: float | None = None) -> Validator:
    """A duration in seconds: a number, or a string such as ``500ms``, ``30s``, ``2m``, ``1h``."""
    expected = _range_text("a duration such as 500ms, 10s, 2m or a number of seconds", None, None)
    bounds = ""
    if minimum is not None:
        bounds += f" of at least {_format_seconds(minimum)}"
    if maximum is not None:
        bounds += f"{' and' if minimum is not None else ''} at most {_format_seconds(maximum)}"

    def check(value: Any, path: str) -> float:
        if isinstance(value, bool):
            raise Invalid(path, expected + bounds, value)
        if isinstance(value, (int, float)):
            seconds = _finite(value)
        elif isinstance(value, str) and (parsed := parse_duration(value)) is not None:
            seconds = _finite(parsed)
        else:
            seconds = None
        if seconds is None:
            raise Invalid(path, expected + bounds, value)
        if (minimum is not None and seconds < minimum) or (maximum is not None and seconds > maximum):
            raise Invalid(path, "a duration" + bounds, value)
        return seconds

    return check


def _format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def size(minimum: int = 0) -> Validator:
    """A size in bytes: an integer, or a string such as ``512KiB`` or ``10MB``."""

    def check(value: Any, path: str) -> int:
        expected = "a size such as 65536, 512KiB or 10MB"
        if isinstance(value, bool):
            raise Invalid(path, expected, value)
        if isinstance(value, int):
            result = value
        elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())) and len(match.group(1)) <= 30:
            # 30 digits are far past any real size, and keep int() clear of Python's 4,300-digit limit
            result = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
        else:
            raise Invalid(path, expected, value)
        if result < minimum:
            raise Invalid(path, f"a size of at least {minimum} bytes", value)
        return result

    return check


def timezone() -> Validator:
    """An IANA time zone name such as ``Europe/Moscow``, returned as a `ZoneInfo`."""
    expected = "an IANA time zone name such as Europe/Moscow"

    def check(value: Any, path: str) -> ZoneInfo:
        name = string(what=expected)(value, path)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(path, expected, value) from None

    return check


def regex() -> Validator:
    def check(value: Any, path: str) -> re.Pattern[str]:
        if not isinstance(value, str) or not value:
            raise Invalid(path, "a regular expression", value)
        try:
            return re.compile(value)
        except re.error as err:
            raise Invalid(path, "a valid regular expression", value, hint=str(err)) from None

    return check


def secret() -> Validator:
    """A secret: ``{env: NAME}``, ``{file: path}``, ``enc:...`` or (discouraged) plain text."""

    def check(value: Any, path: str) -> SecretValue:
        try:
            return parse_secret(value, path)
        except ValueError as err:
            raise Invalid(path, str(err)) from None  # never echo what was written: it may be the secret

    return check


# The folder of the file being validated: relative paths in it are read from there, not from the
# folder the program happens to run in (a service's working folder is rarely the config's).
config_folder: contextvars.ContextVar[Path] = contextvars.ContextVar("config_folder", default=Path("."))


# A backslash in double quotes starts an escape: "C:\new\table" reads as C:, a newline, "ew", a tab, "able";
# "D:\POS\Logs" as D:, a paragraph separator (\P), "OS", a line separator (\L), "ogs"; "\_" is a no-break space.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\xa0\u2028\u2029]")
WINDOWS_PATH_HINT = ("in double quotes a backslash starts an escape: write a Windows path in single quotes "
                     "('C:\\ProgramData\\sitewatch\\key') or with forward slashes (C:/ProgramData/sitewatch/key)")
ESCAPED_PATH_HINT = WINDOWS_PATH_HINT.replace("an escape:", "an escape (\\n is a newline, \\t a tab):", 1)


def file_path(what: str) -> Validator:
    """The path of a file or folder as written: text without control characters, which no real path holds and
    a Windows path in double quotes gets from its backslashes (``"C:\\new"`` is C:, a newline and ew)."""
    as_text = string(what=what)

    def check(value: Any, path: str) -> str:
        text = as_text(value, path)
        if _CONTROL.search(text):
            raise Invalid(path, f"{what}, without control characters (newline, tab...)", value,
                          hint=ESCAPED_PATH_HINT)
        return text

    return check


def existing_file(what: str) -> Validator:
    """A path to a readable file, relative to the config file's folder; returned absolute."""
    as_path = file_path(what)

    def check(value: Any, path: str) -> str:
        name = as_path(value, path)
        file = Path(name).expanduser()
        file = file if file.is_absolute() else config_folder.get() / file
        if not file.is_file():
            raise Invalid(path, f"{what} that exists (looked for {file})", value)
        return str(file)

    return check


def text_or_secret() -> Validator:
    """Plain text, or a secret in one of its written forms (``{env: ...}``, ``{file: ...}``, ``enc:...``)."""
    as_secret = secret()
    as_text = string(what="a string, or a secret written as {env: NAME}, {file: path} or enc:...")

    def check(value: Any, path: str) -> str | SecretValue:
        if isinstance(value, dict) or (isinstance(value, str) and value.startswith("enc:")):
            return as_secret(value, path)
        return as_text(value, path)

    return check


def list_of(item: Validator, min_items: int = 0, what: str = "a list") -> Validator:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid(path, what, value)
        if len(value) < min_items:
            raise Invalid(path, f"{what} with at least {min_items} item(s)", value)
        result = []
        problems: list[Invalid] = []
        for index, element in enumerate(value):
            try:
                result.append(checked(item, element, join(path, index)))
            except Invalid as err:
                problems.append(err)
        if problems:
            raise Invalid.gather(problems)
        return result

    return check


def one_or_list_of(item: Validator) -> Validator:
    """Accepts a single item where a list is allowed, as users often write one regex or one code."""
    many = list_of(item)

    def check(value: Any, path: str) -> list[Any]:
        return many(value, path) if isinstance(value, list) else [item(value, path)]

    return check


def mapping_of(key: Validator, value: Validator, what: str = "a mapping") -> Validator:
    def check(raw: Any, path: str) -> dict[Any, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise Invalid(path, what, raw)
        result = {}
        problems: list[Invalid] = []
        for k, v in raw.items():
            item_path = join(path, str(k))
            try:
                checked_key = checked(key, k, item_path)
            except Invalid as err:
                problems.append(err)
                checked_key = None  # its value is checked all the same
            try:
                result[checked_key] = checked(value, v, item_path)
            except Invalid as err:
                problems.append(err)
        if problems:
            raise Invalid.gather(problems)
        return result

    return check


def checked(validator: Validator, value: Any, path: str) -> Any:
    """`validator(value, path)`, where any exception but Invalid becomes Invalid at `path`: a value no
    validator foresaw (a 5,000-digit size, say) is still a config error naming where it is, not a traceback."""
    try:
        return validator(value, path)
    except Invalid:
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring
        raise Invalid(path, f"a value sitewatch can check (checking this one failed with {type(err).__name__}; "
                            "please report it)") from None


@dataclass(frozen=True)
class Field:
    validator: Validator
    required: bool = False
    default: Any = None


def struct(fields: dict[str, Field], what: str = "a mapping") -> Validator:
    """A mapping with known keys; unknown keys are errors, with the nearest known key as a hint.

    Every key is checked; the Invalid for those that fail (in the order they are written, left-out required
    keys last) carries the checked mapping with None for them as `partial`, and their names as `failed`."""

    def check(raw: Any, path: str) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise Invalid(path, what, raw)
        problems: list[tuple[Any, Invalid]] = []  # (the key it is about, the problem)
        for key in raw:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                problems.append((key, Invalid(
                    join(path, str(key)),
                    "one of the keys " + ", ".join(fields),
                    _Unknown(str(key)),
                    hint=f"did you mean {close[0]!r}?" if close else "",
                )))
        result: dict[str, Any] = {}
        for name, field in fields.items():
            value = raw.get(name)
            if value is not None:
                try:
                    result[name] = checked(field.validator, value, join(path, name))
                except Invalid as err:
                    problems.append((name, err))
                    result[name] = None
            elif field.required:
                problems.append((name, Invalid(join(path, name), "a value (this key is required)")))
                result[name] = None
            else:
                result[name] = field.default
        if problems:
            written = {key: index for index, key in enumerate(raw)}
            problems.sort(key=lambda problem: written.get(problem[0], len(written)))
            raise Invalid.gather([problem for _, problem in problems], partial=result,
                                 failed=frozenset(key for key, _ in problems if key in fields))
        return result

    return check
