"""What a helpdesk gets for one worklist item: its stable id, its Russian line, and the document posted
(generic JSON, or a Bitrix24 task), with text that always encodes and numbers that are always finite.

docs/helpdesk.md#generic-json and #bitrix24 describe the documents; a change there is a change here.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, tzinfo
from typing import Any

from alertmanager.chatcommands import SEVERITY_MARKS
from alertmanager.render import shorten
from alertmanager.wording import LABEL_WORDS, title, word
from alertmanager.workitem import WorkItem
from alertmanager.worklist_text import item_line

LABEL_LIMIT = 1024  # a label value longer than this is cut in what is posted: it names a thing
TEXT_LIMIT = 80  # a label value in a Bitrix24 task's title and description, as in the chat's messages
TITLE_LIMIT = 200  # Bitrix24 keeps a task's title to 255 characters
MARKS = frozenset(SEVERITY_MARKS.values())
NO_TITLE = "Нужна проверка на месте"  # an item of a kind this version does not know (stored by a newer one)


def delivery_id(route: str, item: WorkItem) -> str:
    """The id the helpdesk sees: the same item from the same route always has the same one."""
    return f"{route}:{item.key}"


def item_text(item: WorkItem, zone: tzinfo, now: float) -> str:
    """One Russian line: what is wrong, as the morning worklist says it (dates in `zone` as of `now`), then
    what to do, as the alert's message says it."""
    item = sound(item)
    try:
        said = html.unescape(item_line(item, zone, now))
    except KeyError:  # a kind this version does not know
        return f"{NO_TITLE}."
    mark, _, rest = said.partition(" ")
    if mark in MARKS:  # the worklist's colour marks are for the chat
        said = rest
    action = _action(item, zone, now)
    return f"{said}. {action}" if action else f"{said}."


def generic_body(route: str, item: WorkItem, zone: tzinfo, created_at: float) -> dict[str, Any]:
    """The JSON a generic helpdesk gets for one item (docs/helpdesk.md#generic-json)."""
    item = sound(item)
    return {
        "id": delivery_id(route, item),
        "route": route,
        "site": item.site,
        "client": item.labels.get("client") or None,
        "kind": item.kind,
        "item": item_text(item, zone, created_at),
        "due": _due_date(item, zone),
        "since": _local(item.since, zone),
        "labels": {name: shorten(value, LABEL_LIMIT) for name, value in item.labels.items()},
        "created_at": _local(created_at, zone),
    }


def bitrix24_body(route: str, item: WorkItem, zone: tzinfo, created_at: float, responsible_id: int | None) -> dict:
    """Bitrix24's tasks.task.add: {"fields": {TITLE, DESCRIPTION, DEADLINE, RESPONSIBLE_ID}}. The id is the
    description's last line, where a person finds it and a search of the tasks does too."""
    item = sound(item)
    site = _words(item.site)
    labels = {name: _words(value) for name, value in item.labels.items() if value}
    where = [site] + [f"{LABEL_WORDS['ru'][name]} {labels[name]}" for name in ("kkt", "check", "catalog")
                      if name in labels]
    lines = [item_text(item, zone, created_at), "", f"Площадка: {site}"]
    if labels.get("client"):
        lines.append(f"Клиент: {labels['client']}")
    lines += [f"{_capital(LABEL_WORDS['ru'][name])}: {labels[name]}" for name in LABEL_WORDS["ru"]
              if name in labels]
    due = _due_date(item, zone)
    if due:
        lines.append(f"Срок: {datetime.fromisoformat(due):%d.%m.%Y}")
    lines.append(f"Код в мониторинге: {delivery_id(route, item)}")
    fields: dict[str, Any] = {
        "TITLE": shorten(f"{_title(item)}: {', '.join(where)}", TITLE_LIMIT),
        "DESCRIPTION": "\n".join(lines),
    }
    deadline = _local(item.due, zone)
    if deadline:
        fields["DEADLINE"] = deadline
    if responsible_id is not None:
        fields["RESPONSIBLE_ID"] = responsible_id
    return {"fields": fields}


def sound(item: WorkItem) -> WorkItem:
    """The item as it is stored and posted: text that encodes as UTF-8 (a lone surrogate, which a JSON
    escape can make, becomes U+FFFD) and numbers that are finite, or None."""
    return WorkItem(_clean(item.kind), _clean(item.site),
                    {_clean(name): _clean(value) for name, value in item.labels.items()},
                    due=_finite(item.due), since=_finite(item.since), count=_finite(item.count),
                    reason=_clean(item.reason) if item.reason is not None else None)


def _action(item: WorkItem, zone: tzinfo, now: float) -> str:
    try:
        wording = word(item.alert_labels(now), {}, "ru", zone, now)
    except KeyError:  # a kind this version does not know
        return ""
    return wording.action if wording is not None else ""


def _words(value: Any) -> str:
    """A label value as a sentence shows it: on one line, and no longer than a name."""
    return shorten(" ".join(_clean(value).split()), TEXT_LIMIT)


def _title(item: WorkItem) -> str:
    try:
        return title(item.alertname)
    except KeyError:
        return NO_TITLE


def _due_date(item: WorkItem, zone: tzinfo) -> str | None:
    """The date the item is due by, as the worklist says it: a ФН's or licence's end is 00:00 of a date in
    the site's zone, which another zone may put on the evening before (see wording.Facts.until)."""
    due = item.due
    if due is None:
        return None
    midnight = item.kind in ("fn_expiry", "kodeks_licence", "kkt_licence")
    return _local(due + (12 * 3600 if midnight else 0), zone, date_only=True)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]  # "ФН" stays "ФН"


def _clean(text: Any) -> str:
    """A string that encodes as UTF-8: a lone surrogate (never valid text) becomes U+FFFD."""
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _finite(value: float | None) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _local(timestamp: float | None, zone: tzinfo, date_only: bool = False) -> str | None:
    """ISO 8601 in `zone` (2026-12-04T08:30:00+03:00, or 2026-12-04); None for no time or one no calendar holds."""
    timestamp = _finite(timestamp)
    if timestamp is None:
        return None
    try:
        moment = datetime.fromtimestamp(timestamp, zone)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.date().isoformat() if date_only else moment.isoformat(timespec="seconds")
