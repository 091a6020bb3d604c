"""How a one-shot run (``sitewatch-exporter check --lang ru``) reads in Russian: the table, the register
lines under it, the failed checks with their targets and what to do, the summary, the opening hours and the
ping warning.

Nothing here translates a check's English message or figures: the Russian text is rebuilt from what a
check reports for machines, its reason word and its samples (the metric values), and a figure no sample
holds is left out rather than shown in English. The words the Telegram receiver uses for the same things
(reasons, ФН flags, plural forms, decimal commas, durations) come from its own modules, so the technician's
screen and the duty chat say the same.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo

from alertmanager.render_numbers import LANGUAGES, decimal_text, duration_text, plural
from alertmanager.wording import FLAGS, LABEL_WORDS, REASONS
from exporter.checks.base import Result, Sample
from exporter.config import CheckConfig, Config
from exporter.hours import describe

HEADER = ("ТОЧКА", "ПРОВЕРКА", "ВИД", "ИТОГ", "ПРИЧИНА", "ВРЕМЯ", "ПОКАЗАТЕЛИ")
PASSED, FAILED = "в норме", "сбой"
# What a Russian technician calls each kind of check.
TYPE_WORDS = {
    "ping": "пинг", "tcp": "порт", "http": "веб-страница", "kodeks": "Кодекс", "kkt": LABEL_WORDS["ru"]["kkt"],
    "getad": "файлы касс", "iiko_log": "журнал iiko",
}
UNKNOWN_REASON = "причина не описана"
# The full English messages are one option away; the line names it as it is typed.
ENGLISH_HINT = "Полные сообщения на английском покажет та же команда с параметром --lang en."
_NBSP = LANGUAGES["ru"].thousands_separator
_WINDOWS = sys.platform == "win32"
_AS_ADMIN = "от имени администратора" if _WINDOWS else "от имени суперпользователя"
PING_WARNING = (f"Внимание: от этой учётной записи нельзя отправлять пинг, поэтому проверки пингом не пройдут. "
                f"Повторите команду {_AS_ADMIN}.\n")

# What to do, by reason; (check type, reason) first where the type changes the advice. A reason with nothing
# to add to its own words has no entry.
HINTS: dict[str | tuple[str, str], str] = {
    "timeout": "Проверьте, включено ли устройство и есть ли до него сеть.",
    ("ping", "timeout"): "Компьютер выключен, отключён от сети или брандмауэр не пропускает пинг.",
    ("kkt", "timeout"): "Проверьте, включена ли касса, подключён ли кабель и тот ли указан порт.",
    ("http", "timeout"): "Сервер не успел ответить: проверьте, работает ли сайт и есть ли до него сеть.",
    ("kodeks", "timeout"): "Сервер Кодекса не успел ответить: проверьте его службу и сеть до него.",
    "loss": "Связь неустойчива: проверьте сетевой кабель, беспроводную сеть и загрузку канала.",
    "dns": "Проверьте, правильно ли написано имя в настройках, или укажите адрес цифрами, например 192.168.1.10.",
    ("ping", "permission"): ("Пинг требует прав администратора: откройте окно команд от имени администратора и "
                             "повторите команду." if _WINDOWS
                             else "Пинг требует особых прав: повторите команду от имени суперпользователя."),
    "permission": f"У учётной записи нет доступа: повторите команду {_AS_ADMIN}.",
    "unreachable": "Проверьте адрес, сетевой кабель и основной шлюз.",
    "refused": "На этом порту ничего не слушает или его закрывает брандмауэр: проверьте, запущена ли служба.",
    "connect": "Проверьте адрес, сеть и брандмауэр.",
    "tls": "Сертификат сайта истёк, выдан на другое имя или ему нет доверия: проверьте сертификат сервера.",
    "status": "Проверьте адрес страницы в настройках; если он верный — работу сайта.",
    "auth": "Проверьте логин и пароль в настройках проверки.",
    "body": "Открылась не та страница (заглушка или страница ошибки): проверьте адрес и работу сайта.",
    "body_size": "Проверьте адрес страницы: по нему отдаётся что-то очень большое.",
    "slow": "Проверьте загрузку сервера и канала.",
    "redirects": "Страница перенаправляет по кругу: проверьте адрес.",
    "maintenance": "На сервере идут технические работы; когда они закончатся, проверка пройдёт.",
    ("kodeks", "parse"): "По адресу отвечает не сервер Кодекса: проверьте адрес и порт.",
    ("getad", "parse"): "Файл кассы повреждён или записан не до конца: проверьте службу, которая его пишет.",
    "main_page": "Пользователи видят пустую страницу: перестройте её в администрировании сервера.",
    "product_control": "Сверьте установленные базы с комплектом клиента.",
    "service_message": "Прочитайте служебное сообщение на главной странице каталога.",
    "port_busy": ("Во время работы кассы это обычно: служба прочитает кассу, когда порт освободится. Чтобы "
                  "проверить сейчас, закройте кассовую программу и повторите команду."),
    ("kkt", "not_found"): "Проверьте номер порта в диспетчере устройств, кабель и питание кассы.",
    "not_found": "Проверьте путь к папке в настройках и есть ли в ней файлы.",
    "protocol": "Проверьте номер порта и скорость обмена в настройках кассы.",
    "device_error": "Посмотрите состояние кассы в кассовой программе.",
    "disconnected": "Проверьте кабель и питание кассы.",
    "wrong_device": "Если кассу заменили, исправьте её заводской номер в настройках.",
    "io": "Проверьте права на папку и файлы.",
    ("iiko_log", "stale"): "Журнал давно не обновлялся: запущена ли кассовая программа?",
    "fn_mismatch": "Сроки и предупреждения относятся к старому ФН: перечитайте кассу.",
    "error": "Это ошибка программы; её текст покажет вывод на английском.",
}


# --- numbers, sizes, dates -----------------------------------------------------------------------------

def whole(number: int) -> str:
    """A whole number with a no-break space between thousands, as the receiver writes it: "9 812"."""
    return f"{number:,}".replace(",", _NBSP)


def count(number: int, one: str, few: str, many: str) -> str:
    """"1 касса", "3 кассы", "5 касс"."""
    return f"{whole(number)} {plural(number, one, few, many)}"


def milliseconds(seconds: float) -> str:
    """A short time in milliseconds with as many decimals as say something: "0,05 мс", "4,2 мс", "41 мс"."""
    value = seconds * 1000
    if value < 0.995:  # what rounds to 1,00 is said as 1,0; what rounds to 10,0 as 10
        return f"{decimal_text(value, 2)} мс"
    if value < 9.95:
        return f"{decimal_text(value, 1)} мс"
    return f"{whole(round(value))} мс"


def elapsed(seconds: float) -> str:
    """How long a check ran: "41 мс", "1,2 с", "1 мин 13 с"."""
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)} мс"
    if seconds < 9.95:
        return f"{decimal_text(seconds, 1)} с"
    return duration_text(seconds, "ru")


def size(amount: int) -> str:
    """"512 байт", "1,5 КБ", "12 КБ", "3,4 МБ" (binary kilobytes, as Windows Explorer counts them)."""
    if amount < 1024:
        return count(amount, "байт", "байта", "байт")
    for unit, scale in (("КБ", 1024), ("МБ", 1024 ** 2), ("ГБ", 1024 ** 3)):
        value = amount / scale
        if round(value) < 1024 or unit == "ГБ":
            return f"{decimal_text(value, 1)} {unit}" if value < 9.95 else f"{whole(round(value))} {unit}"
    raise AssertionError("unreachable")


def day(timestamp: float, zone: ZoneInfo | None) -> str:
    """The date in the site's zone, as Russian papers write it: 05.12.2026."""
    return datetime.fromtimestamp(timestamp, zone).strftime("%d.%m.%Y")


def percent(ratio: float) -> str:
    return f"{decimal_text(ratio * 100, 0)} %"


# --- what the samples say ------------------------------------------------------------------------------

class Readings:
    """A result's samples, looked up by metric name and labels."""

    def __init__(self, samples: list[Sample]):
        self._samples = samples

    def all(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        found = []
        for sample in self._samples:
            own = dict(sample.labels)
            if sample.name == name and all(own.get(key) == value for key, value in labels.items()):
                found.append((own, sample.value))
        return found

    def value(self, name: str, **labels: str) -> float | None:
        found = self.all(name, **labels)
        return found[0][1] if found else None

    def registers(self) -> list[str]:
        """Serial numbers of the registers read, in the order the check reported them."""
        return list(dict.fromkeys(labels["kkt"] for labels, _ in self.all("sitewatch_kkt_info")))


def register_line(readings: Readings, serial: str, zone: ZoneInfo | None, now: float) -> str:
    """One register as its samples tell it: "MITSU-1-F №0650…, ФН до 14.08.2027, неотправленных документов нет"."""
    info = readings.all("sitewatch_kkt_info", kkt=serial)[0][0]
    parts = [f"{info.get('model') or LABEL_WORDS['ru']['kkt']} №{serial}"]
    expiry = readings.value("sitewatch_fn_expiry_timestamp_seconds", kkt=serial)
    if expiry is not None:
        # The ФН's date is 00:00 of its last day, in the site's zone, as the register writes it.
        parts.append(f"ФН до {day(expiry, zone)}" if expiry > now else f"срок ФН истёк {day(expiry, zone)}")
    unsent = readings.value("sitewatch_fn_unsent_documents", kkt=serial)
    if unsent is not None:
        oldest = readings.value("sitewatch_fn_oldest_unsent_document_timestamp_seconds", kkt=serial)
        if not unsent:
            parts.append("неотправленных документов нет")
        else:
            parts.append(f"не отправлено в ОФД документов: {whole(int(unsent))}"
                         + (f", самый старый от {day(oldest, zone)}" if oldest else ""))
    flags = [FLAGS["ru"].get(labels["flag"], "предупреждение")
             for labels, value in readings.all("sitewatch_fn_warning", kkt=serial) if value]
    if flags:
        parts.append("ФН: " + ", ".join(flags))
    offset = readings.value("sitewatch_kkt_clock_offset_seconds", kkt=serial)
    if offset is not None and abs(offset) >= 300:
        parts.append(f"часы кассы {'спешат' if offset > 0 else 'отстают'} на {duration_text(abs(offset), 'ru')}")
    if readings.value("sitewatch_kkt_shift_expired", kkt=serial):
        parts.append("смена открыта больше 24 часов")
    for labels, until in readings.all("sitewatch_kkt_licence_expiry_timestamp_seconds", kkt=serial):
        if until - now < 400 * 86400:  # a licence for ever is no news; one running out within the year is
            name = labels.get('name') or labels.get('licence')
            parts.append(f"лицензия «{name}» {'до' if until > now else 'действовала до'} {day(until, zone)}")
    return ", ".join(parts)


def _ping(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    loss = readings.value("sitewatch_ping_loss_ratio")
    average = readings.value("sitewatch_ping_rtt_seconds", stat="avg")
    if average is None:
        return "ответов нет" if loss is not None else ""
    return f"ответ в среднем {milliseconds(average)}, потерь {percent(loss or 0.0)}"


def _tcp(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    connect = readings.value("sitewatch_tcp_connect_seconds")
    return f"соединение за {milliseconds(connect)}" if connect is not None else ""


# The body's size is no metric: the http check tells it only in its figures, and only there is it read.
_BODY_BYTES = re.compile(r"\b(\d+) bytes\b")


def _http(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    status = readings.value("sitewatch_http_status_code")
    if not status:
        return ""
    parts = [f"код {int(status)}"]
    duration = readings.value("sitewatch_http_duration_seconds")
    if duration is not None:
        parts[0] += f" за {milliseconds(duration)}"
    if match := _BODY_BYTES.search(result.figures):
        parts.append(size(int(match[1])))
    expiry = readings.value("sitewatch_tls_cert_expiry_timestamp_seconds")
    if expiry is not None:
        parts.append(f"сертификат до {day(expiry, check.timezone)}" if expiry > now
                     else f"сертификат истёк {day(expiry, check.timezone)}")
    return ", ".join(parts)


def _kodeks(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    parts = []
    catalogs = {labels["catalog"] for labels, _ in readings.all("sitewatch_kodeks_main_page_ok")}
    if catalogs:
        parts.append(count(len(catalogs), "каталог", "каталога", "каталогов"))
    if readings.value("sitewatch_kodeks_maintenance"):
        parts.append("режим обслуживания")
    expiry = readings.value("sitewatch_kodeks_licence_expiry_timestamp_seconds")
    if expiry is not None:
        # The file is valid through the day before the moment exported (the next day's 00:00, site time).
        through = datetime.fromtimestamp(expiry, check.timezone).date() - timedelta(days=1)
        parts.append(f"регистрационный файл {'до' if expiry > now else 'действовал до'} {through:%d.%m.%Y}")
    sessions = readings.value("sitewatch_kodeks_sessions")
    if sessions is not None:
        limit = readings.value("sitewatch_kodeks_sessions_limit")
        parts.append(f"соединений {whole(int(sessions))}" + (f" из {whole(int(limit))}" if limit is not None else ""))
    return ", ".join(parts)


def _kkt(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    return "; ".join(register_line(readings, serial, check.timezone, now) for serial in readings.registers())


def _unreadable_files(readings: Readings) -> list[str]:
    """The getad files that could not be read: down, and never described by an info sample."""
    read = set(readings.registers())
    return [labels["kkt"] for labels, value in readings.all("sitewatch_kkt_up")
            if not value and labels["kkt"] not in read]


def _getad(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    parts = []
    registers = len(readings.registers())
    if registers:
        parts.append(count(registers, "касса", "кассы", "касс"))
    broken = len(_unreadable_files(readings))
    if broken:
        parts.append(f"{count(broken, 'файл', 'файла', 'файлов')} "
                     f"{plural(broken, 'не читается', 'не читаются', 'не читаются')}")
    return ", ".join(parts)


def _iiko_log(readings: Readings, result: Result, check: CheckConfig, now: float) -> str:
    compared = readings.all("sitewatch_fn_log_mismatch")
    if not compared:
        return ""
    differing = sum(1 for _, value in compared if value)
    if not differing:
        return f"ФН совпадает у {count(len(compared), 'кассы', 'касс', 'касс')}"
    return f"ФН не совпадает у {count(differing, 'кассы', 'касс', 'касс')} из {whole(len(compared))}"


FIGURES: dict[str, Callable[[Readings, Result, CheckConfig, float], str]] = {
    "ping": _ping, "tcp": _tcp, "http": _http, "kodeks": _kodeks, "kkt": _kkt, "getad": _getad,
    "iiko_log": _iiko_log,
}


def figures(check: CheckConfig, result: Result, now: float) -> str:
    """The figures column in Russian; empty for a check type with no Russian figures."""
    build = FIGURES.get(check.type)
    return build(Readings(result.samples), result, check, now) if build else ""


def detail_lines(check: CheckConfig, result: Result, now: float) -> list[str]:
    """The lines under the table for a check that reads several registers: one line per register."""
    readings = Readings(result.samples)
    if check.type == "getad":
        return ([register_line(readings, serial, check.timezone, now) for serial in readings.registers()]
                + [f"файл {name} не читается" for name in _unreadable_files(readings)])
    if check.type == "iiko_log":
        lines = []
        for labels, differs in readings.all("sitewatch_fn_log_mismatch"):
            seen = f"касса №{labels['kkt']}: в журнале ФН {labels['log_fn']}"
            lines.append(f"{seen}, а при чтении кассы был ФН {labels['fn']}: ФН заменили" if differs
                         else f"{seen}, совпадает с прочитанным")
        return lines
    return []


# --- the failures and the summary ----------------------------------------------------------------------

def reason_words(reason: str | None) -> str:
    return REASONS["ru"].get(reason or "", UNKNOWN_REASON) if reason else ""


def hint(check_type: str, reason: str | None) -> str:
    return HINTS.get((check_type, reason or ""), HINTS.get(reason or "", ""))


def target(check: CheckConfig) -> str:
    """What the check looks at, as the config says it: host:port, a URL, a serial port, a folder."""
    describe_target = getattr(check.kind, "target", None)
    return describe_target(check.options) if describe_target else ""


def failure_lines(check: CheckConfig, result: Result) -> list[str]:
    """The failed check, what it looks at and the reason in words, then what to do."""
    where = target(check)
    said = reason_words(result.reason) or UNKNOWN_REASON
    status = Readings(result.samples).value("sitewatch_http_status_code")
    if result.reason in ("status", "auth") and status:
        said += f" (код {int(status)})"
    lines = [f"{check.site_id}/{check.name}" + (f" ({where})" if where else "") + f": {said}."]
    if advice := hint(check.type, result.reason):
        lines.append(f"  {advice}")
    return lines


def summary(passed: int, total: int) -> str:
    """The last line: "Все 4 проверки в норме.", "В норме 3 проверки из 4.", "Не прошла ни одна из 5 проверок."."""
    if total == 0:
        return "Проверок нет."
    if passed == total:
        return "Проверка в норме." if total == 1 else f"Все {count(total, 'проверка', 'проверки', 'проверок')} в норме."
    if passed == 0:
        return "Проверка не прошла." if total == 1 else \
            f"Не прошла ни одна из {count(total, 'проверки', 'проверок', 'проверок')}."
    return f"В норме {count(passed, 'проверка', 'проверки', 'проверок')} из {whole(total)}."


# --- the whole output ----------------------------------------------------------------------------------

def print_table(checks: list[CheckConfig], results: list[Result], out: TextIO, color: bool,
                now: float | None = None) -> None:
    """The table, the registers under it, the failed checks with what to do, and the summary."""
    now = time.time() if now is None else now

    def paint(text: str, ok: bool) -> str:
        return f"\033[{'32' if ok else '31'}m{text}\033[0m" if color else text

    rows = [HEADER]
    for check, result in zip(checks, results, strict=True):
        rows.append((check.site_id, check.name, TYPE_WORDS.get(check.type, check.type),
                     PASSED if result.success else FAILED, "" if result.success else reason_words(result.reason),
                     elapsed(result.duration), figures(check, result, now)))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for index, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) for i in range(6)]
        if index:
            cells[3] = paint(cells[3], row[3] == PASSED)
        out.write("  ".join(cells + [row[6]]).rstrip() + "\n")
    detailed = [(check, lines) for check, result in zip(checks, results, strict=True)
                if (lines := detail_lines(check, result, now))]
    if detailed:
        out.write("\n")
        for check, lines in detailed:
            out.write(f"{check.site_id}/{check.name}:\n" + "".join(f"  {line}\n" for line in lines))
    failed = [(check, result) for check, result in zip(checks, results, strict=True) if not result.success]
    if failed:
        out.write("\n")
        for check, result in failed:
            out.write("".join(f"{line}\n" for line in failure_lines(check, result)))
        out.write(f"\n{ENGLISH_HINT}\n")
    out.write(f"\n{summary(len(results) - len(failed), len(results))}\n")


def print_hours(config: Config, site_ids: set[str], out: TextIO) -> None:
    """Whether each site with hours is open now, in Russian."""
    for site in config.sites:
        if site.id in site_ids and site.hours is not None:
            out.write(f"{site.id}: {describe(site.hours, site.timezone, time.time(), 'ru')}.\n")
