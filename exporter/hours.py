"""A site's opening hours and maintenance windows, turned into moments: when it is closed, when it opens.

The office must know a site's hours while the site is silent (a PC switched off at closing pushes
nothing), so the exporter does not export "open now" but the closures around now and ahead, as unix
times: the last ones the site pushed stay in the Pushgateway and still say, a day later, when it was due
to open. See docs/alerts.md#opening-hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

DAY = 86400
# Quiet spans that ended within this many days stay exported: an office-checked site that did not come
# back after opening is told so for three days (a long weekend); a pushed site's last push keeps its own
# span for good.
PAST_DAYS = 3
# Closures still to come: the next one, for its closing grace and the dashboard's "closes at", and the
# one after, should the next be short (a lunch break). A silent site needs no more: once it has missed an
# opening, that missed opening is what is told.
CLOSURES_AHEAD = 2
WINDOWS_AHEAD = 2  # occurrences of each maintenance window still to come
SEARCH_DAYS = 400  # how far ahead to look for an opening (long holidays, a seasonal site)


@dataclass(frozen=True)
class TimeRange:
    """Open (or in maintenance) from `start` to `end` seconds after the day's midnight; an `end` past
    86400 runs into the next day ("22:00-02:00")."""

    start: int
    end: int


@dataclass(frozen=True)
class Window:
    """A named recurring maintenance window: on `days` (0 is Monday) during `span`, covering the listed
    checks, or the whole site when `checks` is empty."""

    name: str
    days: frozenset[int]
    span: TimeRange
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hours:
    """When a site is expected to be on. `week` is None for a site always open (windows only)."""

    name: str  # the shared hours' name, or "inline" for hours written in the site itself
    week: tuple[tuple[TimeRange, ...], ...] | None  # 7 days, Monday first; () is a closed day
    dates: dict[date, tuple[TimeRange, ...]] = field(default_factory=dict)  # holidays and short days
    opening_grace: float = 900.0  # a site must report within this after opening
    closing_grace: float = 900.0  # and may go quiet this long before closing
    windows: tuple[Window, ...] = ()

    def ranges_on(self, day: date) -> tuple[TimeRange, ...]:
        if self.week is None:
            return (TimeRange(0, DAY),)
        if day in self.dates:
            return self.dates[day]
        return self.week[day.weekday()]


def local_moment(day: date, seconds: int, zone: tzinfo | None) -> float:
    """Unix time of `seconds` after midnight of `day` in `zone` (None: the machine's local time)."""
    moment = datetime.combine(day, time()) + timedelta(seconds=seconds)
    return (moment.replace(tzinfo=zone) if zone is not None else moment).timestamp()


def local_day(now: float, zone: tzinfo | None) -> date:
    return datetime.fromtimestamp(now, zone).date()


def open_intervals(hours: Hours, zone: tzinfo | None, first: date, days: int) -> list[tuple[float, float]]:
    """Open intervals of the days `first` .. `first + days - 1`, merged where they touch or overlap."""
    spans = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        spans.extend((local_moment(day, r.start, zone), local_moment(day, r.end, zone)) for r in hours.ranges_on(day))
    spans.sort()
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def closures(hours: Hours, zone: tzinfo | None, now: float, past_days: int = PAST_DAYS) -> list[tuple[float, float]]:
    """The closures (closing, next opening) that ended within `past_days`, the current one, and up to
    CLOSURES_AHEAD to come; oldest first. Empty for a site always open. A closure is found whole however
    long it is (a fortnight of holidays, a site open only at weekends): the search reaches back to the last
    opening before it and ahead to the next."""
    if hours.week is None:
        return []
    today = local_day(now, zone)
    back, ahead = past_days + 2, 2 * CLOSURES_AHEAD + 2
    while True:
        intervals = open_intervals(hours, zone, today - timedelta(days=back), back + ahead)
        gaps = [(intervals[i][1], intervals[i + 1][0]) for i in range(len(intervals) - 1)]
        found = [gap for gap in gaps if gap[1] >= now - past_days * DAY]
        opened_before = bool(intervals) and intervals[0][0] <= now
        enough_ahead = sum(1 for start, _ in found if start > now) >= CLOSURES_AHEAD
        around_the_clock = not gaps and ahead >= 14 and not any(day >= today for day in hours.dates)
        if around_the_clock or ((opened_before or back >= SEARCH_DAYS) and (enough_ahead or ahead >= SEARCH_DAYS)):
            break
        if not opened_before:
            back = min(SEARCH_DAYS, back * 2)
        if not enough_ahead:
            ahead = min(SEARCH_DAYS, ahead * 2)
    past_and_current = [gap for gap in found if gap[0] <= now]
    return past_and_current + [gap for gap in found if gap[0] > now][:CLOSURES_AHEAD]


def occurrences(window: Window, zone: tzinfo | None, now: float, past_days: int = 1) -> list[tuple[float, float]]:
    """The window's occurrences that ended within `past_days`, the current one and WINDOWS_AHEAD to come."""
    today = local_day(now, zone)
    found = []
    for offset in range(-past_days - 1, 9):
        day = today + timedelta(days=offset)
        if day.weekday() in window.days:
            found.append((local_moment(day, window.span.start, zone), local_moment(day, window.span.end, zone)))
    recent = [span for span in found if span[1] > now - past_days * DAY and span[0] <= now]
    ahead = [span for span in found if span[0] > now][:WINDOWS_AHEAD]
    return recent + ahead


@dataclass(frozen=True)
class QuietSpan:
    """A stretch of time in which the site (or a check) may be quiet as planned: closures and maintenance
    windows widened by the graces and joined where they touch or overlap, so that a window ending at the
    closing, or two overlapping windows, are one quiet time. `closing` and `opening` are the first closing
    and the last opening by the hours inside it (None for a span of windows only)."""

    start: float
    end: float
    closing: float | None = None
    opening: float | None = None


def quiet_spans(hours: Hours, zone: tzinfo | None, now: float, check: str | None = None) -> list[QuietSpan]:
    """The site's quiet spans (with `check`, that check's: the site's joined with the windows covering it)
    that ended within PAST_DAYS, the current one and up to CLOSURES_AHEAD to come; oldest first."""
    # one day more than is kept: a piece joined to a kept span stays part of it at the PAST_DAYS edge
    pieces = [QuietSpan(start - hours.closing_grace, end + hours.opening_grace, start, end)
              for start, end in closures(hours, zone, now, past_days=PAST_DAYS + 1)]
    for window in hours.windows:
        if not window.checks or (check is not None and check in window.checks):
            pieces.extend(QuietSpan(start - hours.closing_grace, end + hours.opening_grace)
                          for start, end in occurrences(window, zone, now, past_days=PAST_DAYS + 1))
    merged: list[QuietSpan] = []
    for piece in sorted(pieces, key=lambda p: p.start):
        if merged and piece.start <= merged[-1].end:
            last = merged[-1]
            closings = [c for c in (last.closing, piece.closing) if c is not None]
            openings = [o for o in (last.opening, piece.opening) if o is not None]
            merged[-1] = QuietSpan(last.start, max(last.end, piece.end), min(closings) if closings else None,
                                   max(openings) if openings else None)
        else:
            merged.append(piece)
    recent = [span for span in merged if span.end > now - PAST_DAYS * DAY and span.start <= now]
    return recent + [span for span in merged if span.start > now][:CLOSURES_AHEAD]


def is_open(hours: Hours, zone: tzinfo | None, now: float) -> bool:
    """Whether the hours have the site open at `now` (for `check` and the status page)."""
    return not any(start <= now < end for start, end in closures(hours, zone, now))


# What `describe` says, per language: the site's state and the maintenance windows running now.
_DESCRIBE_WORDS = {
    "en": {"always": "open all the time", "closed_until": "closed by its hours until",
           "open_until": "open by its hours until", "open": "open by its hours", "windows": "in maintenance now"},
    "ru": {"always": "точка работает круглосуточно", "closed_until": "точка по графику закрыта до",
           "open_until": "точка по графику открыта до", "open": "точка по графику открыта",
           "windows": "сейчас обслуживание"},
}
# Short Russian day names, Monday first, as on a Russian calendar.
_RU_DAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")


def describe(hours: Hours, zone: tzinfo | None, now: float, language: str = "en") -> str:
    """One line for `sitewatch-exporter check`: open or closed by the hours now, until when, and the windows
    running now, in the site's local time. `language` "ru" says it in Russian ("точка по графику закрыта
    до 10:00, сб 05.12"); window and check names stay as the config writes them."""
    words = _DESCRIBE_WORDS[language]

    def at(moment: float) -> str:
        local = datetime.fromtimestamp(moment, zone)
        same_day = local.date() == datetime.fromtimestamp(now, zone).date()
        if same_day:
            return f"{local:%H:%M}"
        if language == "ru":  # not %a: a Russian day name must not depend on the machine's locale
            return f"{local:%H:%M}, {_RU_DAYS[local.weekday()]} {local:%d.%m}"
        return f"{local:%a %d.%m %H:%M}"

    found = closures(hours, zone, now)
    current = [span for span in found if span[0] <= now < span[1]]
    ahead = [span for span in found if span[0] > now]
    if hours.week is None:
        state = words["always"]
    elif current:
        state = f"{words['closed_until']} {at(current[0][1])}"
    else:
        state = f"{words['open_until']} {at(ahead[0][0])}" if ahead else words["open"]
    running = [w.name + (f" ({', '.join(w.checks)})" if w.checks else "") for w in hours.windows
               if any(start <= now < end for start, end in occurrences(w, zone, now))]
    return state + (f"; {words['windows']}: {'; '.join(running)}" if running else "")
