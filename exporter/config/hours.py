"""Validates opening hours and maintenance windows: the top-level `hours:` (shared, by name) and a site's
`hours:` (a shared name or its own) and `maintenance:`.

Days are written as `mon`..`sun` (or `пн`..`вс`), ranges of them (`mon-fri`) or `daily`; times as
`HH:MM-HH:MM` (seconds allowed, `24:00` ends a day, an end before the start runs past midnight).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from exporter import schema as s
from exporter.hours import DAY, Hours, TimeRange, Window

_DAYS_EN = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS_RU = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
_DAY_NUMBER = {name: i for names in (_DAYS_EN, _DAYS_RU) for i, name in enumerate(names)}
_EVERY_DAY = ("daily", "ежедневно")
_CLOSED = ("closed", "выходной")
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_RANGE = re.compile(rf"\s*{_TIME}\s*[-–]\s*{_TIME}\s*")
DAYS_TEXT = "days such as mon, mon-fri, sat-sun, daily (or пн, пн-пт)"
RANGE_TEXT = "a time range such as \"10:00-23:00\" (\"22:00-02:00\" runs past midnight)"
GRACE_MAXIMUM = 12 * 3600


def time_range(value: Any, path: str) -> TimeRange:
    match = _RANGE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise s.Invalid(path, RANGE_TEXT, value)
    h1, m1, s1, h2, m2, s2 = (int(part or 0) for part in match.groups())
    if m1 > 59 or m2 > 59 or s1 > 59 or s2 > 59 or h1 > 23 or h2 > 24 or (h2 == 24 and (m2 or s2)):
        raise s.Invalid(path, RANGE_TEXT + " with real times (00:00 to 24:00)", value)
    start, end = h1 * 3600 + m1 * 60 + s1, h2 * 3600 + m2 * 60 + s2
    if start == end:
        raise s.Invalid(path, RANGE_TEXT + " that is not empty (a whole day is \"00:00-24:00\")", value)
    return TimeRange(start, end if end > start else end + DAY)


def day_spec(value: Any, path: str) -> frozenset[int]:
    """`mon`, `mon-fri`, `fri-mon` (wrapping), `daily`, or a list of those."""
    if isinstance(value, list):
        days: set[int] = set()
        for i, item in enumerate(value):
            days |= day_spec(item, s.join(path, i))
        if not days:
            raise s.Invalid(path, DAYS_TEXT, value)
        return frozenset(days)
    if not isinstance(value, str):
        raise s.Invalid(path, DAYS_TEXT, value)
    text = value.strip().lower()
    if text in _EVERY_DAY:
        return frozenset(range(7))
    first, _, last = (part.strip() for part in text.partition("-"))
    if first not in _DAY_NUMBER or (last and last not in _DAY_NUMBER):
        raise s.Invalid(path, DAYS_TEXT, value)
    start, end = _DAY_NUMBER[first], _DAY_NUMBER[last or first]
    return frozenset((start + i) % 7 for i in range((end - start) % 7 + 1))


def day_hours(value: Any, path: str) -> tuple[TimeRange, ...]:
    """A day's hours: a range, a list of ranges (a lunch break), or `closed`."""
    if isinstance(value, str) and value.strip().lower() in _CLOSED:
        return ()
    ranges = [time_range(item, s.join(path, i)) for i, item in enumerate(value)] if isinstance(value, list) \
        else [time_range(value, path)]
    if not ranges:
        raise s.Invalid(path, RANGE_TEXT + ", a list of them, or closed", value)
    return tuple(sorted(ranges, key=lambda r: r.start))


def _week(raw: Any, path: str) -> tuple[tuple[TimeRange, ...], ...]:
    if not isinstance(raw, dict) or not raw:
        raise s.Invalid(path, "a mapping of days to hours, such as {mon-fri: \"10:00-23:00\", sat: closed}", raw)
    week: list[tuple[TimeRange, ...] | None] = [None] * 7
    given_by: dict[int, str] = {}
    for key, value in raw.items():
        key_path = s.join(path, str(key))
        for day in sorted(day_spec(str(key), key_path)):
            if day in given_by:
                raise s.Invalid(key_path, f"days not given before ({_DAYS_EN[day]} is already in "
                                f"{s.join(path, given_by[day])})", key)
            given_by[day] = str(key)
            week[day] = day_hours(value, key_path)
    if not any(week):
        raise s.Invalid(path, "hours with at least one open day", raw)
    return tuple(day or () for day in week)  # a day not written is closed


def _date(value: Any, path: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise s.Invalid(path, "a date such as 2027-01-01", value) from None


def _dates(raw: Any, path: str) -> dict[date, tuple[TimeRange, ...]]:
    """Holidays: a list of dates closed all day, or a mapping of dates to their hours (or `closed`)."""
    if isinstance(raw, list):
        return {_date(item, s.join(path, i)): () for i, item in enumerate(raw)}
    if isinstance(raw, dict):
        return {_date(key, s.join(path, str(key))): day_hours(value, s.join(path, str(key)))
                for key, value in raw.items()}
    raise s.Invalid(path, "a list of dates closed all day, or a mapping of dates to hours "
                          "(such as {2026-12-31: \"10:00-18:00\", 2027-01-01: closed})", raw)


_WINDOW = s.struct({
    "name": s.Field(s.string(what="a name for the window, such as \"Кодекс: ночной перезапуск\""), required=True),
    "time": s.Field(time_range, required=True),
    "days": s.Field(day_spec, default=frozenset(range(7))),
    "checks": s.Field(s.one_or_list_of(s.string(what="a check name of this site")), default=[]),
}, what="a maintenance window: a mapping with name, time and optionally days and checks")


def windows(raw: Any, path: str) -> tuple[Window, ...]:
    items = s.list_of(lambda v, p: v, what="a list of maintenance windows")(raw, path)
    result = []
    found = []
    for i, item in enumerate(items):
        try:
            window = _WINDOW(item, s.join(path, i))
        except s.Invalid as err:
            found.append(err)
            continue
        result.append(Window(name=window["name"], days=window["days"], span=window["time"],
                             checks=tuple(window["checks"])))
    if found:
        raise s.Invalid.gather(found)
    return tuple(result)


_HOURS = s.struct({
    "open": s.Field(_week),
    "holidays": s.Field(_dates, default={}),
    "opening_grace": s.Field(s.duration(minimum=0, maximum=GRACE_MAXIMUM), default=900.0),
    "closing_grace": s.Field(s.duration(minimum=0, maximum=GRACE_MAXIMUM), default=900.0),
    "maintenance": s.Field(windows, default=()),
}, what="opening hours: a mapping with open, and optionally holidays, opening_grace, closing_grace, maintenance")


def hours(raw: Any, path: str, name: str) -> Hours:
    fields = _HOURS(raw, path)
    if fields["holidays"] and fields["open"] is None:
        raise s.Invalid(s.join(path, "open"), "the usual hours the holidays differ from (this key is missing)")
    return Hours(name=name, week=fields["open"], dates=fields["holidays"], opening_grace=fields["opening_grace"],
                 closing_grace=fields["closing_grace"], windows=fields["maintenance"])


def shared_hours(raw: Any, path: str, name_pattern: str, name_text: str) -> dict[str, Hours]:
    named = s.mapping_of(s.string(name_pattern, name_text), lambda v, p: v,
                         what="a mapping of names to opening hours")(raw, path)
    result = {}
    found = []
    for name, value in named.items():
        try:
            result[name] = hours(value, s.join(path, name), name)
        except s.Invalid as err:
            found.append(err)
    if found:
        raise s.Invalid.gather(found)
    return result


def site_hours(raw: Any, own_windows: Any, path: str, shared: dict[str, Hours]) -> Hours | None:
    """The site's hours: `hours:` names shared ones or is written out; `maintenance:` adds its windows."""
    base: Hours | None
    if raw is None:
        base = None
    elif isinstance(raw, str):
        if raw not in shared:
            known = ", ".join(shared) or "none are defined: add them under the top-level hours:"
            raise s.Invalid(s.join(path, "hours"), f"the name of shared hours ({known})", raw)
        base = shared[raw]
    else:
        base = hours(raw, s.join(path, "hours"), "inline")
    extra = windows(own_windows, s.join(path, "maintenance")) if own_windows is not None else ()
    if base is None and not extra:
        return None
    if base is None:
        base = Hours(name="inline", week=None)
    all_windows = base.windows + extra
    names = [window.name for window in all_windows]
    for i, window_name in enumerate(names):
        if window_name in names[:i]:
            raise s.Invalid(s.join(path, "maintenance"), "maintenance windows with different names "
                            f"({window_name!r} is used twice, counting the shared hours' windows)")
    return Hours(name=base.name, week=base.week, dates=base.dates, opening_grace=base.opening_grace,
                 closing_grace=base.closing_grace, windows=all_windows)


def check_window_targets(site_hours_: Hours, own_count: int, check_names: set[str], path: str) -> None:
    """The site's own windows must name checks it has; shared windows cover the named checks a site has."""
    own = site_hours_.windows[len(site_hours_.windows) - own_count:] if own_count else ()
    for i, window in enumerate(own):
        for name in window.checks:
            if name not in check_names:
                raise s.Invalid(f"{path}.maintenance[{i}].checks", "names of this site's checks "
                                f"({', '.join(sorted(check_names)) or 'it has none'})", name)
