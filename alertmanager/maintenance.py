"""Planned one-off maintenance of a site, or of one check of it: an Alertmanager silence on the site's labels
whose comment starts with "Плановые работы: ", made from the chat (/maintenance) and the command line alike.

Ends are read as people write them in Russian ("до пн", "до 07.12 10:00") in the receiver's zone. Recurring
windows are not made here: they belong in the site's config (hours/maintenance), where the exporter knows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from alertmanager.render_numbers import duration_text, plural, zone_name
from alertmanager.silences import AlertmanagerApi, Silence, equal_matcher
from exporter.config.loader import NAME_PATTERN

COMMENT_PREFIX = "Плановые работы: "  # how /silences, amtool and the UI tell maintenance from other silences
DEFAULT_REASON = "без пояснений"
DEFAULT_ZONE = ZoneInfo("Europe/Moscow")  # the chat's zone when the receiver config names none
MIN_PREFIX = 4  # characters of an id that are enough to end maintenance, when unique
SHORTEST = 60.0  # seconds: the same floor as a chat's /silence
WEEKDAYS = {name: number for number, names in enumerate((
    ("пн", "понедельник", "понедельника"), ("вт", "вторник", "вторника"), ("ср", "среда", "среду", "среды"),
    ("чт", "четверг", "четверга"), ("пт", "пятница", "пятницу", "пятницы"), ("сб", "суббота", "субботу", "субботы"),
    ("вс", "воскресенье", "воскресенья"))) for name in names}
_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{4}|\d{2}))?\.?")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
# After a day or a date a time may be written with a dot too, as people type it: "до 7.12 10.00".
_TIME_AFTER_DAY = re.compile(r"(\d{1,2})[:.](\d{2})")
_NAME = re.compile(NAME_PATTERN)
# A date written without a year that is this far behind is meant for next year ("до 10.01" in late December).
_NEXT_YEAR_AFTER = timedelta(days=180)
WHEN_EXAMPLES = "день недели (пн, вт, ср, чт, пт, сб, вс), дату (07.12 или 07.12.2026) или время (18:00)"


class MaintenanceProblem(Exception):
    """The maintenance cannot be made as asked; str() says why, in plain Russian (escape it for HTML)."""


@dataclass(frozen=True)
class Maintenance:
    """One planned maintenance: where, until when, and the reason people gave (or the default)."""

    site: str
    check: str | None
    ends_at: datetime
    reason: str = DEFAULT_REASON

    def matchers(self) -> list[dict[str, Any]]:
        return [equal_matcher("site", self.site)] + ([equal_matcher("check", self.check)] if self.check else [])

    @property
    def comment(self) -> str:
        return COMMENT_PREFIX + self.reason


def plan(site: str, check: str | None, ends_at: datetime, reason: str, now: datetime, zone: tzinfo,
         longest: float) -> Maintenance:
    """A maintenance with its names and end checked: MaintenanceProblem when a name is not one, or the end is
    past, under a minute away or further than `longest` seconds."""
    _name(site, "площадки")
    if check is not None:
        _name(check, "проверки")
    seconds = (ends_at - now).total_seconds()
    if seconds <= 0:
        raise MaintenanceProblem(f"Время {moment_text(ends_at, zone)} уже прошло.")
    if seconds < SHORTEST:
        raise MaintenanceProblem("Плановые работы — не меньше минуты.")
    if seconds > longest:
        raise MaintenanceProblem(f"Плановые работы можно объявить не больше чем на {duration_text(longest)}, "
                                 f"а до {moment_text(ends_at, zone)} — {duration_text(seconds)}.")
    return Maintenance(site, check, ends_at, reason.strip() or DEFAULT_REASON)


def _name(text: str, of_what: str) -> None:
    if not _NAME.fullmatch(text):
        raise MaintenanceProblem(f"«{text}» не годится как имя {of_what}: имя пишут латинскими буквами и "
                                 f"цифрами, можно с точкой, дефисом и подчёркиванием (но не в начале), до 63 знаков.")


def until(words: list[str], now: datetime, zone: tzinfo) -> tuple[datetime, list[str]]:
    """The end written after "до" at the start of `words` ("пн", "07.12", "07.12.2026 10:00", "18:00"), in
    `zone`, and the words after it; MaintenanceProblem when it is not a day, a date or a time."""
    if not words:
        raise MaintenanceProblem(f"После «до» напишите {WHEN_EXAMPLES}.")
    first, rest = words[0], words[1:]
    local = now.astimezone(zone)
    if _TIME.fullmatch(first):
        if rest and (_DATE.fullmatch(rest[0]) or WEEKDAYS.get(rest[0].lower().rstrip(".")) is not None):
            first, rest = rest[0], [first] + rest[1:]  # "до 10:00 07.12": the same as "до 07.12 10:00"
        else:
            return _next_time(_clock_time(first), local), rest
    at = time(0, 0)
    if rest and _TIME_AFTER_DAY.fullmatch(rest[0]):
        at, rest = _clock_time(rest[0]), rest[1:]
    weekday = WEEKDAYS.get(first.lower().rstrip("."))
    if weekday is not None:
        return _next_weekday(weekday, at, local), rest
    if _DATE.fullmatch(first):
        return _dated(first, at, local), rest
    raise MaintenanceProblem(f"Не понял, до какого дня: «{first}». Напишите {WHEN_EXAMPLES}, например "
                             f"«до пн 10:00».")


def _next_time(at: time, local: datetime) -> datetime:
    """Today at `at`, or tomorrow once that has passed: "до 02:00" typed in the evening means the coming night."""
    moment = datetime.combine(local.date(), at, local.tzinfo)
    return moment if moment > local else datetime.combine(local.date() + timedelta(days=1), at, local.tzinfo)


def _clock_time(text: str) -> time:
    hours, minutes = (int(part) for part in _TIME_AFTER_DAY.fullmatch(text).groups())
    if hours > 23 or minutes > 59:
        raise MaintenanceProblem(f"Нет такого времени: {text}.")
    return time(hours, minutes)


def _next_weekday(weekday: int, at: time, local: datetime) -> datetime:
    """The first moment ahead at `at` on that weekday: "до пн" on a Monday is next Monday's midnight."""
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7)
    moment = datetime.combine(day, at, local.tzinfo)
    return moment if moment > local else datetime.combine(day + timedelta(days=7), at, local.tzinfo)


def _dated(text: str, at: time, local: datetime) -> datetime:
    day, month, year = _DATE.fullmatch(text).groups()
    written = int(year) + (2000 if year and len(year) == 2 else 0) if year else local.year
    candidates = [written] if year else [written, written + 1]  # 29.02 typed in a year without one
    for candidate in candidates:
        try:
            moment = datetime.combine(date(candidate, int(month), int(day)), at, local.tzinfo)
        except ValueError:
            continue
        if not year and candidate == written and moment < local - _NEXT_YEAR_AFTER:
            moment = datetime.combine(date(written + 1, int(month), int(day)), at, local.tzinfo)
        return moment
    raise MaintenanceProblem(f"Нет такой даты: {text}.")


def moment_text(moment: datetime, zone: tzinfo | None) -> str:
    """"07.12.2026 10:00 МСК": a maintenance's end as the chat's other times are told, with the year."""
    local = moment.astimezone(zone)
    return f"{local:%d.%m.%Y %H:%M} {zone_name(local)}".strip()


def scope_text(site: str, check: str | None) -> str:
    """"площадка shop-01", or "площадка shop-01, проверка kodeks"."""
    return f"площадка {site}" + (f", проверка {check}" if check else "")


def sentence(text: str) -> str:
    """`text` ending as a sentence does: a full stop added unless it has its own mark."""
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def where_text(site: str, check: str | None) -> str:
    """"на площадке shop-01", or "на площадке shop-01 (только проверка kodeks)"."""
    return f"на площадке {site}" + (f" (только проверка {check})" if check else "")


def covered_text(count: int) -> str:
    """How many alerts firing now the maintenance silences, said in a sentence."""
    if not count:
        return "Сейчас ничего не горит: заглушены будут оповещения, которые появятся до конца работ."
    return f"Сейчас под них попадает {count} {plural(count, 'оповещение', 'оповещения', 'оповещений')}."


def is_maintenance(silence: Silence) -> bool:
    return silence.comment.startswith(COMMENT_PREFIX)


def reason_of(silence: Silence) -> str:
    return silence.comment[len(COMMENT_PREFIX):].strip() or DEFAULT_REASON


def scope_of(silence: Silence) -> tuple[str, str | None] | None:
    """(site, check) of a silence shaped as maintenance is made; None for any other matchers (amtool's)."""
    labels = silence.equalities()
    if labels is None or "site" not in labels or set(labels) - {"site", "check"}:
        return None
    return labels["site"], labels.get("check")


def describe(silence: Silence) -> str:
    """What a silence covers: in words for maintenance ("площадка shop-01, проверка kodeks"), else its matchers
    (maintenance typed by hand in amtool may select more than a site)."""
    scope = scope_of(silence) if is_maintenance(silence) else None
    return scope_text(*scope) if scope else silence.matchers_text()


def start(api: AlertmanagerApi, maintenance: Maintenance, created_by: str) -> tuple[str, int]:
    """Makes the silence; its id, and how many of the alerts now active it covers."""
    alerts = api.alerts()
    silence_id = api.create_silence(maintenance.matchers(), maintenance.ends_at, created_by, maintenance.comment)
    wanted = {"site": maintenance.site, **({"check": maintenance.check} if maintenance.check else {})}
    covered = sum(1 for alert in alerts if all(alert.get("labels", {}).get(k) == v for k, v in wanted.items()))
    return silence_id, covered


def current(api: AlertmanagerApi) -> list[Silence]:
    """Maintenance now under way or still to start, the soonest to end first."""
    return [silence for silence in api.silences() if is_maintenance(silence)]


def find(api: AlertmanagerApi, prefix: str) -> Silence:
    """The one maintenance whose id starts with `prefix`; MaintenanceProblem for none or several."""
    if len(prefix) < MIN_PREFIX:
        raise MaintenanceProblem(f"Нужно хотя бы {MIN_PREFIX} "
                                 f"{plural(MIN_PREFIX, 'первый знак', 'первых знака', 'первых знаков')} id.")
    found = [s for s in current(api) if s.id.lower().startswith(prefix.lower())]
    if not found:
        raise MaintenanceProblem(f"Нет действующих плановых работ с id {prefix}.")
    if len(found) > 1:
        raise MaintenanceProblem(f"id {prefix} подходит к нескольким плановым работам ({len(found)}): добавьте знаков.")
    return found[0]
