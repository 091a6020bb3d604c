"""What a sitewatch alert says, in the reader's language: a title, one line of facts and what to do.

The rules pass raw facts (docs/alerts.md#what-a-message-says): `value` unformatted (a timestamp, seconds, a
ratio, a count), `target` (what the check looks at), `reason` (a fixed word), `unsent`, `statuses`. Here they
become words: dates in the route's zone, numbers with the language's decimal mark, Russian plural forms,
durations such as "1 мин 13 с", reasons and ФН flags in plain words. An alert this module does not know
keeps its own summary and description.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from alertmanager.render_numbers import decimal_text, duration_text, plural, zone_name

DAY = 86400.0


@dataclass(frozen=True)
class Wording:
    """The words for one alert: a title (in place of the alert's name), a line of facts, what to do."""

    title: str
    facts: str
    action: str


# --- the words of each language --------------------------------------------------------------------------

SEVERITY = {
    "ru": {"critical": "критично", "warning": "предупреждение", "info": "для сведения"},
    "en": {"critical": "critical", "warning": "warning", "info": "info"},
}

REASONS = {
    "ru": {
        "timeout": "нет ответа", "loss": "слишком много потерь пакетов", "dns": "имя не находится в DNS",
        "permission": "нет прав на проверку", "unreachable": "нет маршрута до адреса",
        "refused": "соединение отклонено, порт закрыт", "connect": "не удаётся соединиться",
        "tls": "ошибка сертификата", "status": "сервер ответил кодом ошибки",
        "auth": "сервер не принял логин и пароль", "body": "на странице нет нужного текста или есть текст ошибки",
        "body_size": "страница слишком большая", "slow": "страница открывается слишком долго",
        "redirects": "слишком много перенаправлений", "maintenance": "режим обслуживания",
        "parse": "данные не читаются", "main_page": "главная страница каталога построена с ошибкой",
        "product_control": "проблема комплекта баз", "service_message": "сервер сообщает о неполадке",
        "port_busy": "порт занят кассовой программой", "not_found": "не найдено: нет порта, папки или файла",
        "protocol": "ответ не по протоколу: другое устройство или не та скорость порта",
        "device_error": "касса ответила ошибкой", "disconnected": "связь оборвалась",
        "wrong_device": "на порту другая касса", "io": "ошибка чтения", "stale": "данные устарели",
        "fn_mismatch": "в журнале кассовой программы другой ФН", "error": "непредвиденная ошибка",
    },
    "en": {
        "timeout": "no answer", "loss": "too many packets lost", "dns": "the name does not resolve",
        "permission": "no permission to check", "unreachable": "no route to the address",
        "refused": "connection refused, the port is closed", "connect": "cannot connect",
        "tls": "certificate error", "status": "the server answered with an error code",
        "auth": "the server refused the login", "body": "the page lacks the expected text or shows an error",
        "body_size": "the page is too large", "slow": "the page is too slow", "redirects": "too many redirects",
        "maintenance": "maintenance mode", "parse": "the data cannot be read",
        "main_page": "the catalog's main page was built with an error", "product_control": "bundle problem",
        "service_message": "the server reports a fault", "port_busy": "the till program holds the port",
        "not_found": "not found: no such port, folder or file",
        "protocol": "not a register's answer: another device or the wrong line speed",
        "device_error": "the register answered with an error", "disconnected": "the connection broke",
        "wrong_device": "another register on the port", "io": "read error", "stale": "the data is old",
        "fn_mismatch": "the POS log shows another ФН", "error": "unexpected error",
    },
}

FLAGS = {
    "ru": {"replace_urgent": "нужна срочная замена", "resource_exhausted": "ресурс на исходе",
           "archive_full": "архив почти заполнен", "ofd_timeout": "ОФД не отвечает", "critical": "критическая ошибка"},
    "en": {"replace_urgent": "replace urgently", "resource_exhausted": "resource nearly used up",
           "archive_full": "archive nearly full", "ofd_timeout": "the OFD does not answer",
           "critical": "critical error"},
}

# Names of labels a header may show, in words; other label names are never shown, only their values.
LABEL_WORDS = {
    "ru": {"check": "проверка", "kkt": "касса", "catalog": "каталог", "distributor": "партнёр", "fn": "ФН"},
    "en": {"check": "check", "kkt": "register", "catalog": "catalog", "distributor": "partner", "fn": "ФН"},
}


class Facts:
    """One alert's labels and raw annotations, read in the route's zone and language."""

    def __init__(self, labels: dict[str, str], notes: dict[str, str], language: str, zone: tzinfo, now: float):
        self.labels, self.notes, self.language, self.zone, self.now = labels, notes, language, zone, now

    def label(self, name: str) -> str:
        return self.labels.get(name, "")

    def number(self, name: str = "value") -> float | None:
        try:
            value = float(self.notes.get(name, ""))
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    @property
    def ru(self) -> bool:
        return self.language == "ru"

    def reason(self) -> str:
        reason = self.notes.get("reason", "").strip()
        if not reason:
            return ""
        return REASONS[self.language].get(reason, "причина не описана" if self.ru else "undescribed reason")

    def date(self, timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, self.zone).strftime("%d.%m.%Y" if self.ru else "%Y-%m-%d")

    def calendar_days(self, timestamp: float) -> int:
        """Dates from today's to that one, in the route's zone: "in 9 days" as on a calendar."""
        return (datetime.fromtimestamp(timestamp, self.zone).date()
                - datetime.fromtimestamp(self.now, self.zone).date()).days

    def days(self, count: int) -> str:
        if self.ru:
            return f"{count} {plural(count, 'день', 'дня', 'дней')}"
        return f"{count} {plural(count, 'day', 'days')}"

    def until(self, timestamp: float, gone: str, goes: str, midnight: bool = False) -> str:
        """"истекает 12.12.2026, через 9 дней" or "истёк 01.12.2026, 2 дня назад" (words given per gender).

        `midnight`: the moment is 00:00 of a date in the site's zone, which the route's zone may put on the
        evening before; any Russian zone is within 12 hours of any other, so the date of the moment plus 12
        hours is the site's date wherever the chat is."""
        shown = timestamp + 12 * 3600 if midnight else timestamp
        days = self.calendar_days(shown)
        date = self.date(shown)
        if self.ru:
            when = {0: "сегодня", 1: "завтра"}.get(days, f"через {self.days(days)}")
            if timestamp <= self.now:
                when = "сегодня" if days == 0 else f"{self.days(-days)} назад"
                return f"{gone} {date}, {when}"
            return f"{goes} {date}, {when}"
        when = {0: "today", 1: "tomorrow"}.get(days, f"in {self.days(days)}")
        if timestamp <= self.now:
            return f"{gone} {date}, " + ("today" if days == 0 else f"{self.days(-days)} ago")
        return f"{goes} {date}, {when}"

    def ago(self, timestamp: float) -> str:
        seconds = max(0.0, self.now - timestamp)
        if seconds >= 2 * DAY:
            return self.days(int(seconds // DAY))
        return duration_text(seconds, self.language)

    def count(self, value: float | None, *forms: str) -> str:
        amount = int(value or 0)
        return f"{amount} {plural(amount, *forms)}"


def _with(text: str, extra: str, separator: str = ": ") -> str:
    return f"{text}{separator}{extra}" if extra else text


def _at(f: Facts, thing: str) -> str:
    """`thing` followed by what the check looks at, in parentheses."""
    target = f.notes.get("target", "").strip()
    return f"{thing} ({target})" if target else thing


# --- one function per alert: (facts) -> Wording -----------------------------------------------------------

# What to look at on the site, by what sends its data: our pusher, or a tool sitewatch-ingest takes uploads
# from (the alert's `source` label).
_SILENT_ADVICE = {
    "": ("Проверьте, включён ли компьютер площадки, работает ли служба отправки и есть ли интернет.",
         "Is the site's PC on, the push service running, the internet up?"),
    "smartstatus": ("Проверьте, включён ли сервер Кодекса, выполняется ли задача СМАРТ.Статуса в Планировщике "
                    "заданий и есть ли интернет.",
                    "Is the Kodeks server on, the smartstatus task running in Task Scheduler, the internet up?"),
    "getad": ("Проверьте, включён ли кассовый компьютер, работает ли служба, которая отправляет данные касс, и есть "
              "ли интернет.",
              "Is the till PC on, the getad-service running, the internet up?"),
}


def _site_not_reporting(f: Facts) -> Wording:
    silent = f.number()
    ru_advice, en_advice = _SILENT_ADVICE.get(f.label("source"), _SILENT_ADVICE[""])
    if f.ru:
        return Wording("Площадка молчит", _with("Площадка не присылает данные", duration_text(silent, "ru") if silent
                                                 else "", " уже ") + ".", ru_advice)
    return Wording("Site silent", _with("The site sends no data", duration_text(silent, "en") if silent else "",
                                        " for "), en_advice)


def _not_back_after_opening(f: Facts) -> Wording:
    """The value is the opening the site missed: said as a time of today, or with its date."""
    opening = f.number()
    if opening is None or opening <= 0:
        when = ""
    else:
        moment = datetime.fromtimestamp(opening, f.zone)
        today = moment.date() == datetime.fromtimestamp(f.now, f.zone).date()
        clock = f"{moment:%H:%M} {zone_name(moment, f.language)}"
        if f.ru:
            when = f" в {clock}" if today else f" {f.date(opening)} в {clock}"
        else:
            when = f" at {clock}" if today else f" on {f.date(opening)} at {clock}"
    if f.ru:
        return Wording("Площадка не вышла на связь после открытия",
                       f"Площадка не вышла на связь после открытия{when}: она замолчала при закрытии "
                       "и с тех пор молчит.",
                       "Позвоните на площадку: включён ли компьютер, есть ли свет и интернет.")
    return Wording("Site not back after opening",
                   f"The site has not reported since opening{when}: it went quiet at closing and has been "
                   "silent since.",
                   "Call the site: is the PC on, is there power and internet?")


def _push_failing(f: Facts) -> Wording:
    if f.ru:
        return Wording("Данные площадки не принимаются",
                       "Площадка работает, но сервер мониторинга отклоняет её данные.",
                       "Причина — в журнале сервера приёма и в итоговой строке службы отправки.")
    return Wording("Site data refused", "The site works, but the monitoring server refuses its data.",
                   "See the gateway's log and the push service's summary line.")


def _exporter_down(f: Facts) -> Wording:
    where = f.notes.get("target") or f.label("instance")
    if f.ru:
        return Wording("Служба проверок недоступна", f"Служба проверок {where} не отвечает серверу мониторинга.",
                       "Пока она молчит, проверки её площадок не видны. Проверьте службу, сеть и VPN.")
    return Wording("Checking service down", f"The checking service {where} does not answer the monitoring server.",
                   "Its sites' checks are blind meanwhile. Check the service, network and VPN.")


def _ingest_down(f: Facts) -> Wording:
    where = f.notes.get("target") or f.label("instance")
    if f.ru:
        return Wording("Служба приёма отчётов недоступна",
                       f"Служба приёма отчётов {where} не отвечает серверу мониторинга.",
                       "Пока она молчит, площадки, которые присылают отчёты СМАРТ.Статуса и данные касс через неё, "
                       "не видны, а их оповещения заглушены. Проверьте службу приёма отчётов и сеть до неё.")
    return Wording("Upload service down", f"The smartstatus and getad-service upload service {where} does not answer "
                   "the monitoring server.",
                   "The sites that upload through it are blind and their alerts muted meanwhile. Check "
                   "sitewatch-ingest and the network to it.")


def _watchdog(f: Facts) -> Wording:
    if f.ru:
        return Wording("Сторожевое оповещение", "Цепочка оповещений работает.",
                       "Ничего делать не нужно; тревожно, если эти сообщения перестали приходить.")
    return Wording("Watchdog", "The alerting pipeline works.", "Nothing to do; worry when these stop.")


def _check_failure(ru_title: str, en_title: str, ru_thing: str, en_thing: str, ru_action: str,
                   en_action: str) -> Callable[[Facts], Wording]:
    def word(f: Facts) -> Wording:
        name = f.label("check")
        if f.ru:
            return Wording(ru_title, _with(_at(f, ru_thing.format(check=name)), f.reason()) + ".", ru_action)
        return Wording(en_title, _with(_at(f, en_thing.format(check=name)), f.reason()) + ".", en_action)
    return word


def _packet_loss(f: Facts) -> Wording:
    ratio = f.number()
    share = f"{decimal_text((ratio or 0) * 100, 0, f.language)} %"
    if f.ru:
        return Wording("Потери пакетов", f"{_at(f, '«' + f.label('check') + '»')}: теряется {share} пакетов ping.",
                       "Проверьте кабель, Wi-Fi и загрузку канала.")
    return Wording("Packet loss", f"{_at(f, f.label('check'))}: {share} of pings lost.",
                   "Check the cable, Wi-Fi and link load.")


def _expiring(ru_title: str, en_title: str, ru_thing: Callable[[Facts], str], en_thing: Callable[[Facts], str],
              ru_words: tuple[str, str], ru_action: str, en_action: str,
              midnight: bool = True) -> Callable[[Facts], Wording]:
    def word(f: Facts) -> Wording:
        moment = f.number()
        if f.ru:
            when = f.until(moment, *ru_words, midnight=midnight) if moment else "скоро истекает"
            return Wording(ru_title, f"{ru_thing(f)} {when}.", ru_action)
        when = f.until(moment, "expired", "expires", midnight=midnight) if moment else "expires soon"
        return Wording(en_title, f"{en_thing(f)} {when}.", en_action)
    return word


def _kkt_not_answering(f: Facts) -> Wording:
    if f.ru:
        facts = _with(_at(f, f"Кассу {f.label('kkt')}") + " не удаётся прочитать", f.reason()) + "."
        return Wording("Касса не читается", facts,
                       "Продажи это не останавливает; данные о ФН — от последнего чтения.")
    return Wording("Register unread", _with(_at(f, f"Register {f.label('kkt')}") + " cannot be read", f.reason()) + ".",
                   "Sales go on; the ФН figures are from the last read.")


def _kkt_data_stale(f: Facts) -> Wording:
    read = f.number()
    now_reason = f.reason()
    register = _at(f, f"кассы {f.label('kkt')}")
    if f.ru:
        facts = f"Данные {register} получены {f.date(read)}, {f.ago(read)} назад" if read else \
            f"Данные {register} устарели"
        facts = _with(facts, now_reason, "; сейчас: ")
        return Wording("Данные кассы устарели", facts + ".",
                       "Сроки ФН и неотправленные документы могут быть неверны: освободите порт кассы или "
                       "перезапустите кассовую службу.")
    register = _at(f, f"Register {f.label('kkt')}")
    facts = f"{register} last read {f.date(read)}, {f.ago(read)} ago" if read else f"{register} data is old"
    return Wording("Register data old", _with(facts, now_reason, "; now: ") + ".",
                   "ФН dates may be wrong: free the register's port or restart the till service.")


def _unsent(f: Facts) -> Wording:
    oldest = f.number()
    waiting = f.number("unsent")
    if f.ru:
        parts = [f"Касса {f.label('kkt')} не передаёт документы в ОФД"]
        if waiting:
            parts[0] += f": ждут {f.count(waiting, 'документ', 'документа', 'документов')}"
        if oldest:
            parts.append(f"самый старый от {f.date(oldest)}, {f.ago(oldest)} назад; касса заблокируется "
                         f"{f.date(oldest + 30 * DAY)}")
        return Wording("Документы не уходят в ОФД", "; ".join(parts) + ".",
                       "Проверьте интернет на кассе, настройки ОФД и оплату договора.")
    parts = [f"Register {f.label('kkt')} sends no documents to the OFD"]
    if waiting:
        parts[0] += f": {f.count(waiting, 'document', 'documents')} waiting"
    if oldest:
        parts.append(f"the oldest from {f.date(oldest)}, {f.ago(oldest)} ago; the register blocks on "
                     f"{f.date(oldest + 30 * DAY)}")
    return Wording("Documents stuck", "; ".join(parts) + ".", "Check the till's internet, OFD settings and contract.")


def _fn_warning(f: Facts) -> Wording:
    flag = FLAGS[f.language].get(f.label("flag"), "предупреждение" if f.ru else "warning")
    if f.ru:
        return Wording("ФН предупреждает", f"ФН кассы {f.label('kkt')}: {flag}.",
                       "Запланируйте замену ФН или проверьте связь с ОФД.")
    return Wording("ФН warning", f"ФН of register {f.label('kkt')}: {flag}.",
                   "Plan the ФН's replacement or check the OFD link.")


def _registrations(f: Facts) -> Wording:
    left = f.number()
    if f.ru:
        return Wording("Мало перерегистраций",
                       f"У ФН кассы {f.label('kkt')} осталось "
                       f"{f.count(left, 'перерегистрация', 'перерегистрации', 'перерегистраций')}.",
                       "После последней перерегистрации нужен новый ФН.")
    return Wording("Few re-registrations", f"The ФН of register {f.label('kkt')} allows "
                                           f"{f.count(left, 're-registration', 're-registrations')} more.",
                   "After the last one a new ФН is needed.")


def _fn_replaced(f: Facts) -> Wording:
    if f.ru:
        return Wording("ФН заменён, касса не перечитана",
                       f"Кассовая программа показывает в кассе {f.label('kkt')} ФН {f.label('log_fn')}, а последнее "
                       f"чтение кассы — ФН {f.label('fn')}.",
                       "Сроки и предупреждения относятся к старому ФН: перечитайте кассу.")
    return Wording("ФН replaced, not re-read", f"The POS shows ФН {f.label('log_fn')} in register {f.label('kkt')}; "
                                               f"the last read showed ФН {f.label('fn')}.",
                   "Dates refer to the old ФН: have the register read again.")


def _clock_off(f: Facts) -> Wording:
    offset = f.number() or 0.0
    size = duration_text(abs(offset), f.language)
    if f.ru:
        way = "спешат" if offset > 0 else "отстают"
        return Wording("Часы кассы расходятся", f"Часы кассы {f.label('kkt')} {way} на {size}.",
                       "Расхождение на целые часы — обычно неверный часовой пояс. Настройте часы кассы.")
    way = "ahead" if offset > 0 else "behind"
    return Wording("Register clock off", f"Register {f.label('kkt')}'s clock is {size} {way}.",
                   "Whole hours usually mean a wrong time zone. Set the register's clock.")


def _shift_expired(f: Facts) -> Wording:
    if f.ru:
        return Wording("Смена больше 24 часов", f"Смена на кассе {f.label('kkt')} открыта больше 24 часов.",
                       "Касса не продаёт, пока смену не закроют: закройте смену и откройте новую.")
    return Wording("Shift over 24 hours", f"The shift on register {f.label('kkt')} has been open over 24 hours.",
                   "It will not sell until the shift is closed: close it and open a new one.")


# What a Кодекс server says of a catalog (its own English words, seen by Техэксперт distributors' scripts).
STATUSES = {
    "ru": {"update DB": "базы обновляются", "unexpected change list products": "неожиданно изменился список продуктов",
           "no required volume DB": "не хватает нужного тома базы", "check DB set": "проверьте набор баз"},
}


def _statuses(f: Facts) -> str:
    said = list(dict.fromkeys(part.strip() for part in f.notes.get("statuses", "").split(";") if part.strip()))
    if not f.ru:
        return "; ".join(said)
    words = [STATUSES["ru"][part] for part in said if part in STATUSES["ru"]]
    if len(words) < len(said):  # a status of its own: named on the site's board, not copied in English here
        words.append("и другие сообщения сервера")
    return "; ".join(words)


def _kodeks_main_page(f: Facts) -> Wording:
    if f.ru:
        return Wording("Ошибка главной страницы каталога",
                       _at(f, f"Главная страница каталога {f.label('catalog')} построена с ошибкой") + ".",
                       "Пользователи видят пустую страницу: перестройте её в администрировании сервера.")
    return Wording("Catalog main page error", _at(f, f"Catalog {f.label('catalog')}'s main page has an error") + ".",
                   "Rebuild it in the server's administration.")


def _kodeks_bundle(f: Facts) -> Wording:
    if f.ru:
        return Wording("Проблема комплекта", _with(_at(f, f"Контроль комплекта каталога {f.label('catalog')}")
                                                   + " сообщает о проблеме", _statuses(f)) + ".",
                       "Сверьте установленные базы с комплектом клиента.")
    return Wording("Bundle problem", _with(f"Bundle control of catalog {f.label('catalog')} reports a problem",
                                           _statuses(f)) + ".", "Compare the installed databases with the bundle.")


def _maintenance_long(ru_what: str, en_what: str) -> Callable[[Facts], Wording]:
    def word(f: Facts) -> Wording:
        if f.ru:
            return Wording("Долгое обслуживание", _at(f, ru_what) + " в режиме обслуживания больше 3 часов.",
                           "Обычно это зависшее обновление: проверьте его и выведите сервер из режима обслуживания.")
        return Wording("Long maintenance", _at(f, en_what) + " in maintenance mode for over 3 hours.",
                       "Usually a stuck update: check it and leave maintenance mode.")
    return word


WORDINGS: dict[str, Callable[[Facts], Wording]] = {
    "SiteNotReporting": _site_not_reporting,
    "SiteNotBackAfterOpening": _not_back_after_opening,
    "SitePushFailing": _push_failing,
    "ExporterDown": _exporter_down,
    "IngestDown": _ingest_down,
    "Watchdog": _watchdog,
    "PcUnreachable": _check_failure("Компьютер не отвечает", "Host unreachable", "«{check}» не отвечает на ping",
                                    "{check} does not answer ping", "Проверьте питание, сетевой кабель и коммутатор.",
                                    "Check power, cable and switch."),
    "PcPacketLoss": _packet_loss,
    "PortDown": _check_failure("Порт недоступен", "Port down", "Порт «{check}» недоступен", "Port {check} is down",
                               "Служба на порту остановлена или порт закрыт межсетевым экраном.",
                               "The service is stopped or a firewall closes the port."),
    "MainPageBroken": _check_failure("Страница не работает", "Page broken", "Страница «{check}» не работает",
                                     "Page {check} is broken", "Пользователи не могут работать: почините сайт.",
                                     "Users cannot work: fix the site."),
    "PageMaintenanceLong": _maintenance_long("Страница", "The page"),
    "TlsCertificateExpiring": _expiring(
        "Сертификат истекает", "Certificate expiring", lambda f: _at(f, "Сертификат сайта"),
        lambda f: _at(f, "The site's certificate"), ("истёк", "истекает"),
        "Продлите и установите новый сертификат, иначе браузеры перестанут открывать сайт.",
        "Renew and install the certificate before browsers refuse the site.", midnight=False),
    "CheckDown": _check_failure("Проверка не проходит", "Check failing", "Проверка «{check}» не проходит",
                                "Check {check} fails", "Проверьте кассовую службу и папку её файлов.",
                                "Check the till service and its folder."),
    "KodeksServerDown": _check_failure("Сервер Кодекс не отвечает", "Кодекс server down",
                                       "Сервер Кодекс «{check}» не отвечает", "Кодекс server {check} does not answer",
                                       "Проверьте службу сервера и доступ к нему.",
                                       "Check the server's service and access."),
    "KodeksMainPageError": _kodeks_main_page,
    "KodeksBundleProblem": _kodeks_bundle,
    "KodeksMaintenanceLong": _maintenance_long("Сервер Кодекс", "The Кодекс server"),
    "KodeksLicenceExpiring": _expiring(
        "Регистрационный файл истекает", "Кодекс licence expiring",
        lambda f: _at(f, "Регистрационный файл сервера Кодекс"), lambda f: _at(f, "The Кодекс registration file"),
        ("истёк", "истекает"), "Получите и установите новый файл до срока, иначе сервер перестанет работать.",
        "Install the new file before the date, or the server stops serving."),
    "KktNotAnswering": _kkt_not_answering,
    "KktDataStale": _kkt_data_stale,
    "FnExpiring": _expiring(
        "ФН истекает", "ФН expiring", lambda f: f"ФН {f.label('fn')} кассы {f.label('kkt')}",
        lambda f: f"ФН {f.label('fn')} of register {f.label('kkt')}", ("истёк", "истекает"),
        "Закажите новый ФН и согласуйте с клиентом дату замены и перерегистрации.",
        "Order a ФН and agree the replacement date with the client."),
    "FnUnsentDocuments": _unsent,
    "FnWarning": _fn_warning,
    "FnRegistrationsLow": _registrations,
    "FnReplacedNotReread": _fn_replaced,
    "KktClockOff": _clock_off,
    "KktLicenceExpiring": _expiring(
        "Лицензия кассы истекает", "Register licence expiring",
        lambda f: f"Лицензия «{f.label('name')}» кассы {f.label('kkt')}",
        lambda f: f"Licence «{f.label('name')}» of register {f.label('kkt')}", ("истекла", "истекает"),
        "Закажите продление у поставщика.", "Order the renewal from the supplier."),
    "KktShiftExpired": _shift_expired,
}


def title(alertname: str, language: str = "ru") -> str:
    """What messages call an alert: a sitewatch alert's title ("ФН истекает"), another alert's own name."""
    wording = WORDINGS.get(alertname)
    if wording is None or language not in REASONS:
        return alertname
    return wording(Facts({"alertname": alertname}, {}, language, timezone.utc, 0.0)).title


def word(labels: dict[str, str], notes: dict[str, str], language: str, zone: tzinfo,
         now: float | None = None) -> Wording | None:
    """The words for a sitewatch alert; None for an alert this module does not know."""
    wording = WORDINGS.get(labels.get("alertname", ""))
    if wording is None or language not in REASONS:
        return None
    try:
        return wording(Facts(labels, notes, language, zone, time.time() if now is None else now))
    except (ValueError, OverflowError, OSError):
        # a value no calendar holds (a .NET "no date", 1e18): the alert's own summary, never a stuck chat
        return None
