"""The worklist as a dispatcher reads it in Telegram: Russian, by site, the most urgent first.

A header with the day and the counts («Что сделать сегодня, пт 04.12: 5 площадок, 9 дел»), then a block
per site (the site with the most urgent item first): the site and its client in bold, then one line per
item, marked by the severity its alert would have (🔴 critical or already late, 🟠 warning, 🔵 for
information), saying what is wrong in the words the alert messages use (alertmanager/wording.py): dates as
ДД.ММ.ГГГГ (times HH:MM) in the route's zone, days left or past with their plural forms, the register's
model and number, the ФН's number, a failed check's reason in words. Label values are shown as values
only, escaped; no label or metric name appears.

Messages stay within Telegram's limit (4096 UTF-16 code units): a site's block is never split across two
messages when it fits in one, every message after the first repeats the title marked «(продолжение)», and
a site too long for one message says its name again, so marked, at the top of each next one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo

from alertmanager.chatcommands import SEVERITY_MARKS
from alertmanager.render import LABEL_LIMIT, shorten
from alertmanager.render_numbers import LANGUAGES, plural
from alertmanager.telegram_html import MESSAGE_LIMIT, html_to_text, message_length
from alertmanager.wording import REASONS, Facts
from alertmanager.workitem import IDENTITY, WorkItem

WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
LATE_MARK = SEVERITY_MARKS["critical"]
SITE_MARK = "🏪"
RUSSIAN_OFFSETS = range(2, 13)  # Kaliningrad's UTC+2 to Kamchatka's UTC+12, whole hours
# A Кодекс check or page in maintenance is said so by its line; the reason would only repeat it.
MAINTENANCE = "maintenance"
# A check that is down, by its type, as the alert titles say it (wording.py), without the word "ping".
CHECK_DOWN = {
    "ping": "Компьютер «{check}» не отвечает",
    "tcp": "Порт «{check}» недоступен",
    "http": "Страница «{check}» не работает",
    "kodeks": "Сервер Кодекс «{check}» не отвечает",
    "kkt": "Проверка касс «{check}» не проходит",
}
IN_MAINTENANCE = {
    "http": "Страница «{check}» в режиме обслуживания",
    "kodeks": "Сервер Кодекс «{check}» в режиме обслуживания",
}
CATALOG_PROBLEMS = {
    "main_page": "Главная страница каталога {catalog} построена с ошибкой",
    "product_control": "Контроль комплекта каталога {catalog} сообщает о проблеме",
}


def render(items: Sequence[WorkItem], zone: tzinfo, now: float, *, title: str) -> list[str]:
    """Telegram HTML messages listing `items` as of `now`, dates in `zone`; one short message when empty."""
    day = _day(now, zone)
    if not items:
        return [f"✅ <b>{_escape(title)}, {day}</b>: на сегодня дел нет."]
    by_site: dict[str, list[WorkItem]] = {}
    for item in items:
        by_site.setdefault(item.site, []).append(item)
    for site_items in by_site.values():
        # the most urgent first; alike ones by what they are about (registers by number), not by chance
        site_items.sort(key=lambda item: (item.urgency(now), [item.labels.get(name, "") for name in IDENTITY],
                                          item.key))
    order = sorted(by_site, key=lambda site: (by_site[site][0].urgency(now), site))
    sites = len(by_site)
    counts = (f"{_number(sites)} {plural(sites, 'площадка', 'площадки', 'площадок')}, "
              f"{_number(len(items))} {plural(len(items), 'дело', 'дела', 'дел')}")
    header = f"📋 <b>{_escape(title)}, {day}: {counts}</b>"
    continued = f"📋 <b>{_escape(title)}, {day}</b> (продолжение)"
    blocks = [(_site_line(site, by_site[site]), [item_line(item, zone, now) for item in by_site[site]])
              for site in order]
    return _messages(header, continued, blocks)


def _messages(header: str, continued: str, blocks: list[tuple[str, list[str]]]) -> list[str]:
    """The header and the sites' blocks (an empty line between), as few messages as Telegram's limit allows.

    A block goes whole into the message that has room for it, or else begins the next one. A site with
    more than one message holds begins where there is room and goes on in the next messages, each saying
    the site again, marked «(продолжение)», so no line is read without its site. Lengths are counted on
    the HTML as written (UTF-16 code units, as Telegram counts): the text it shows is never longer."""
    messages: list[str] = []
    current = header

    def fits(text: str) -> bool:
        return message_length(text) <= MESSAGE_LIMIT

    for site_line, lines in blocks:
        block = "\n".join([site_line, *lines])
        if fits(f"{current}\n\n{block}"):
            current = f"{current}\n\n{block}"
            continue
        if current != continued and fits(f"{continued}\n\n{block}"):
            messages.append(current)
            current = f"{continued}\n\n{block}"
            continue
        part = f"{current}\n\n{site_line}"
        if current != header and not fits(f"{part}\n{lines[0]}"):  # not even its first line fits: next message
            messages.append(current)
            part = f"{continued}\n\n{site_line}"
        for line in lines:
            if not fits(f"{part}\n{line}"):
                messages.append(part)
                part = f"{continued}\n\n{site_line} (продолжение)"
            part = f"{part}\n{_within(line, MESSAGE_LIMIT - message_length(part) - 1)}"
        current = part
    messages.append(current)
    return messages


def _within(line: str, room: int) -> str:
    """A line that cannot fit even a message of its own (never one of ours: values are cut to a name's
    length) loses its end, and its markup with it."""
    if message_length(line) <= room:
        return line
    return _escape(html_to_text(line)[:max(0, room // 2 - 1)]) + "…"


def item_line(item: WorkItem, zone: tzinfo, now: float) -> str:
    """One item as an HTML line: its mark, then what is wrong, in plain words."""
    facts = Facts({}, {}, "ru", zone, now)
    try:
        text = _words(item, facts, dated=True)
    except (ValueError, OverflowError, OSError):  # a date no calendar holds: what is wrong, without when
        text = _words(item, facts, dated=False)
    late = item.due is not None and item.due <= now
    mark = LATE_MARK if late else SEVERITY_MARKS.get(item.severity(now), "")
    return f"{mark} {_escape(text)}".strip()


def _words(item: WorkItem, f: Facts, dated: bool) -> str:
    labels = item.labels
    due = item.due if dated else None
    since = item.since if dated else None
    check = _value(labels.get("check", ""))
    if item.kind == "fn_expiry":
        what = _joined("ФН", _value(labels.get("fn", ""))) + " " + _register(labels, "кассы")
        return f"{what} {_until(f, due, 'истёк', 'истекает')}" if due else f"{what} скоро истекает"
    if item.kind == "ofd_backlog":
        parts = [f"{_register(labels, 'Касса')} не передаёт документы в ОФД"]
        if item.count and math.isfinite(item.count) and item.count >= 1:  # +Inf from a broken exporter: no count
            amount = int(item.count)
            parts[0] += (f": {plural(amount, 'ждёт', 'ждут', 'ждут')} {_number(amount)} "
                         f"{plural(amount, 'документ', 'документа', 'документов')}")
        if since:
            parts.append(f"самый старый от {f.date(since)}, {f.ago(since)} назад")
        if due:
            parts.append(f"касса {_until(f, due, 'заблокирована', 'заблокируется', site_date=False)}")
        return "; ".join(parts)
    if item.kind == "site_silent":
        source = labels.get("source", "")
        if source == "smartstatus":
            what = "Нет отчётов СМАРТ.Статуса" + (f" (проверка «{check}»)" if check else "")
        elif source == "getad":
            what = "Не приходят данные касс" + (f" (проверка «{check}»)" if check else "")
        elif check:
            what = f"Проверка «{check}» не присылает данные"
        else:
            what = "Площадка молчит: данные не приходят"
        return what + (f" с {_moment(f, since)}, уже {f.ago(since)}" if since else "")
    if item.kind == "check_down":
        kind = labels.get("type", "")
        reason = item.reason or ""
        if reason == MAINTENANCE and kind in IN_MAINTENANCE:
            what, reason = IN_MAINTENANCE[kind].format(check=check), ""
        else:
            what = CHECK_DOWN.get(kind, "Проверка «{check}» не проходит").format(check=check)
        if since:
            what += f" с {_moment(f, since)}, уже {f.ago(since)}"
        elif dated:
            what += " (с запуска службы проверок ни одной удачной проверки)"
        words = REASONS["ru"].get(reason, "")
        return f"{what}: {words}" if words else what
    if item.kind == "kkt_not_read":
        register = _register(labels, "кассы")
        what = f"Данные {register} получены {_moment(f, since)}, {f.ago(since)} назад" if since else \
            f"Данные {register} устарели"
        words = REASONS["ru"].get(item.reason or "", "")
        return f"{what}; сейчас: {words}" if words else what
    if item.kind == "kodeks_licence":
        what = "Регистрационный файл сервера Кодекс" + (f" «{check}»" if check else "")
        return f"{what} {_until(f, due, 'истёк', 'истекает')}" if due else f"{what} скоро истекает"
    if item.kind == "kkt_licence":
        name = _value(labels.get("name", ""))
        what = (f"Лицензия «{name}»" if name else "Лицензия") + " " + _register(labels, "кассы")
        return f"{what} {_until(f, due, 'истекла', 'истекает')}" if due else f"{what} скоро истекает"
    if item.kind == "catalog_error":
        catalog = _value(labels.get("catalog", ""))
        said = [CATALOG_PROBLEMS[reason].format(catalog=catalog).replace("  ", " ")
                for reason in (item.reason or "main_page").split(",") if reason in CATALOG_PROBLEMS]
        said = said or [CATALOG_PROBLEMS["main_page"].format(catalog=catalog).replace("  ", " ")]
        return "; ".join(said[:1] + [part[0].lower() + part[1:] for part in said[1:]])
    return "Нужна проверка на месте"


def _site_line(site: str, items: list[WorkItem]) -> str:
    client = next((item.labels["client"] for item in items if item.labels.get("client")), "")
    line = f"{SITE_MARK} <b>{_escape(_value(site) or 'площадка без имени')}</b>"
    return line + (f" · клиент {_escape(_value(client))}" if client else "")


def _register(labels: dict[str, str], word: str) -> str:
    """«кассы MITSU-1-F 001 № 065001234567890»: the model when known, and the serial (factory) number."""
    model = _value(labels.get("model", ""))
    serial = _value(labels.get("kkt", ""))
    if serial.isdigit():
        serial = f"№ {serial}"
    elif serial and model:
        serial = f"({serial})"
    return _joined(word, model, serial)


def _until(f: Facts, timestamp: float, gone: str, goes: str, site_date: bool = True) -> str:
    """«истекает 29.12.2026, через 25 дней», «истёк 03.12.2026, вчера»: the date the moment falls on, and
    the days from today's date in the chat's zone to it.

    A ФН or licence ends at 00:00 of its date in the site's zone (`site_date`), which the chat's zone may
    put on the evening before (Kaliningrad) or at 07:00 (Vladivostok): a moment that is a midnight in the
    chat's zone or else in one of Russia's (UTC+2 to UTC+12) is that zone's date. Anything past is
    «сегодня» at the latest, even when the site's date is already tomorrow's in the chat."""
    day = _date_named(timestamp, f.zone) if site_date else datetime.fromtimestamp(timestamp, f.zone).date()
    days = (day - datetime.fromtimestamp(f.now, f.zone).date()).days
    said = f"{day:%d.%m.%Y}"
    if timestamp <= f.now:
        return f"{gone} {said}, " + ("сегодня" if days >= 0 else "вчера" if days == -1 else f"{f.days(-days)} назад")
    return f"{goes} {said}, " + ("сегодня" if days <= 0 else "завтра" if days == 1 else f"через {f.days(days)}")


def _date_named(timestamp: float, zone: tzinfo) -> date:
    local = datetime.fromtimestamp(timestamp, zone)
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return local.date()
    for hours in RUSSIAN_OFFSETS:
        moment = datetime.fromtimestamp(timestamp, timezone(timedelta(hours=hours)))
        if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
            return moment.date()
    return local.date()


def _moment(f: Facts, timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, f.zone).strftime("%d.%m.%Y %H:%M")


def _day(now: float, zone: tzinfo) -> str:
    local = datetime.fromtimestamp(now, zone)
    return f"{WEEKDAYS[local.weekday()]} {local:%d.%m}"


def _number(count: int) -> str:
    return f"{count:,}".replace(",", LANGUAGES["ru"].thousands_separator)


def _value(text: str) -> str:
    """A label value as a line shows it: on one line, no longer than a name."""
    return shorten(" ".join(str(text).split()), LABEL_LIMIT)


def _joined(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)
