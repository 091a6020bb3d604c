"""The worklist as a dispatcher reads it in Telegram: Russian, by site, the most urgent first.

A header with the day and the counts («Что сделать сегодня, пт 04.12: 5 площадок, 9 дел»), then a block
per site (the site with the most urgent item first): the site and its client in bold, then one line per
item, marked by the severity its alert would have (🔴 critical or already late, 🟠 warning, 🔵 for
information), saying what is wrong in the words the alert messages use (alertmanager/wording.py): dates as
ДД.ММ.ГГГГ (times HH:MM) in the route's zone, days left or past with their plural forms, the register's
model and number, the ФН's number, a failed check's reason in words. Label values are shown as values
only, escaped; no label or metric name appears.

Messages stay within Telegram's limit: a site's block is never split across two messages when it fits in
one, and every message after the first repeats the title marked «(продолжение)».
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, tzinfo

from alertmanager.chatcommands import SEVERITY_MARKS, split_messages
from alertmanager.render import LABEL_LIMIT, shorten
from alertmanager.render_numbers import LANGUAGES, plural
from alertmanager.telegram_html import MESSAGE_LIMIT, message_length
from alertmanager.wording import REASONS, Facts
from alertmanager.workitem import WorkItem

WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
LATE_MARK = SEVERITY_MARKS["critical"]
SITE_MARK = "🏪"
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
        site_items.sort(key=lambda item: (item.urgency(now), item.key))
    order = sorted(by_site, key=lambda site: (by_site[site][0].urgency(now), site))
    sites = len(by_site)
    counts = (f"{_number(sites)} {plural(sites, 'площадка', 'площадки', 'площадок')}, "
              f"{_number(len(items))} {plural(len(items), 'дело', 'дела', 'дел')}")
    header = f"📋 <b>{_escape(title)}, {day}: {counts}</b>"
    continued = f"📋 <b>{_escape(title)}, {day}</b> (продолжение)"
    room = MESSAGE_LIMIT - message_length(continued) - 1
    units = [header]
    for site in order:
        lines = [_site_line(site, by_site[site])] + [item_line(item, zone, now) for item in by_site[site]]
        block = "\n" + "\n".join(lines)  # the empty line before it sets the site apart
        if message_length(block) <= room:
            units.append(block)
        else:  # a site with more than a message holds: its lines, the first set apart
            units.extend(["\n" + lines[0], *lines[1:]])
    messages = [text.strip("\n") for text in split_messages(units, limit=room)]
    return messages[:1] + [f"{continued}\n\n{text}" for text in messages[1:]]


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
        return f"{what} {f.until(due, 'истёк', 'истекает', midnight=True)}" if due else f"{what} скоро истекает"
    if item.kind == "ofd_backlog":
        parts = [f"{_register(labels, 'Касса')} не передаёт документы в ОФД"]
        if item.count:
            amount = int(item.count)
            parts[0] += (f": {plural(amount, 'ждёт', 'ждут', 'ждут')} {_number(amount)} "
                         f"{plural(amount, 'документ', 'документа', 'документов')}")
        if since:
            parts.append(f"самый старый от {f.date(since)}, {f.ago(since)} назад")
        if due:
            parts.append(f"касса {f.until(due, 'заблокирована', 'заблокируется')}")
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
        return f"{what} {f.until(due, 'истёк', 'истекает', midnight=True)}" if due else f"{what} скоро истекает"
    if item.kind == "kkt_licence":
        name = _value(labels.get("name", ""))
        what = (f"Лицензия «{name}»" if name else "Лицензия") + " " + _register(labels, "кассы")
        return f"{what} {f.until(due, 'истекла', 'истекает', midnight=True)}" if due else f"{what} скоро истекает"
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
