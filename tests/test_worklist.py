"""The worklist read from a real Prometheus: a day and a half of made-up samples for seven sites is
backfilled (promtool tsdb create-blocks-from openmetrics), Debian's Prometheus is started on it, and
`collect` must find exactly the work those sites hold, leave out what their opening hours explain and
what another item already says, route it with the shipped Alertmanager tree, and say it in Russian.

Then data no site should send, from a second Prometheus: a register two checks read, +Inf and NaN values,
ФН ends on the limit, label values with quotes, new lines, markup and 10 kB, a check whose reason flaps,
a site taken out an hour ago.

Also: the query client's errors (Prometheus down or starting, its own error JSON, its evaluation timeout,
an HTML error page, no JSON, too slow), each a sentence with no password from the URL in it, and an
answer with warnings (partial data), used and logged.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertmanager.config import WorklistConfig
from alertmanager.prometheus_query import PrometheusError, instant_query
from alertmanager.telegram_html import markup_problem
from alertmanager.worklist import RouteFinder, WorklistUnavailable, collect, for_routes, queries
from alertmanager.worklist_text import render
from conftest import ROOT, Daemons, free_port

ZONE = ZoneInfo("Europe/Moscow")
HOUR, DAY = 3600, 86400
STEP = 60  # seconds between samples, as a fast scrape would leave them
NOW = int(time.time()) // STEP * STEP - STEP  # the moment the worklist is made: the samples' last minute
START = NOW - 36 * HOUR  # a day and a half, so `offset 1d` and `[1d]` see data
TITLE = "Что сделать сегодня"
RECEIVER_ROUTES = {"duty", "kkt", "info", "pos", "kodeks-spb", "watchdog"}


def midnight_in(days: int) -> int:
    """00:00 of the date `days` after NOW's, in the sites' zone: how ФН and licence ends are exported."""
    day = datetime.fromtimestamp(NOW, ZONE).date() + timedelta(days=days)
    return int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp())


class History:
    """Series of samples from START to NOW, written as OpenMetrics for promtool to backfill."""

    def __init__(self):
        self.families: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]] = {}

    def add(self, name: str, labels: dict[str, str], value, since: int = START, until: int = NOW) -> None:
        """`value`: a number, or a function of the time giving the value (None: no sample then)."""
        series = self.families.setdefault(name, {}).setdefault(tuple(sorted(labels.items())), [])
        for moment in range(since, until + 1, STEP):
            sample = value(moment) if callable(value) else value
            if sample is not None:
                series.append((moment, float(sample)))

    def openmetrics(self) -> str:
        lines = []
        for name, all_series in self.families.items():
            for labels, samples in all_series.items():
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.extend(f"{name}{{{label_text}}} {value:.17g} {moment}" for moment, value in samples)
        return "\n".join(lines) + "\n# EOF\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def check(history: History, site: dict[str, str], name: str, kind: str, down_since: int | None = None,
          reason: str = "", never_passed: bool = False) -> dict[str, str]:
    """A check's series: up until `down_since` (or down throughout when `never_passed`), its last success and,
    while down, its failure reason."""
    labels = {**site, "check": name, "type": kind}
    if never_passed:
        history.add("sitewatch_check_up", labels, 0)
        history.add("sitewatch_check_last_success_timestamp_seconds", labels, 0)
        history.add("sitewatch_check_failure_info", {**labels, "reason": reason}, 1)
        return labels
    down = down_since if down_since is not None else NOW + STEP
    history.add("sitewatch_check_up", labels, lambda t: 1 if t < down else 0)
    history.add("sitewatch_check_last_success_timestamp_seconds", labels, lambda t: t if t < down else down)
    if down_since is not None:
        history.add("sitewatch_check_failure_info", {**labels, "reason": reason}, 1, since=max(START, down_since))
    return labels


def register(history: History, labels: dict[str, str], kkt: str, model: str, fn: str, fn_expiry: int,
             read: int | None = None) -> dict[str, str]:
    """A register's series; `read`: the time of its last good read (fresh at every sample when None)."""
    kkt_labels = {**labels, "kkt": kkt}
    history.add("sitewatch_kkt_info", {**kkt_labels, "model": model, "fn": fn, "vendor": "mitsu"}, 1)
    history.add("sitewatch_kkt_data_timestamp_seconds", kkt_labels, (lambda t: t) if read is None else read)
    history.add("sitewatch_fn_expiry_timestamp_seconds", {**kkt_labels, "fn": fn}, fn_expiry)
    return kkt_labels


def sites_history() -> History:
    h = History()
    pushed = {"job": "sitewatch"}
    # shop-01: reports; a ФН in 25 days and documents stuck for 5 days on its Mitsu; a port down 30 hours;
    # a page that never passed; a Кодекс server whose catalog /docs2 has a broken main page (the check
    # fails on the catalog, not the server) and whose licence ends in 10 days; an iiko log showing a new
    # ФН (the rules' FnReplacedNotReread, no work for the list).
    shop1 = {**pushed, "site": "shop-01", "client": "romashka", "distributor": "pos-service"}
    h.add("sitewatch:site_last_report_timestamp_seconds", shop1, lambda t: t)
    till = check(h, shop1, "till-1", "kkt")
    mitsu = register(h, till, "065001234567890", "MITSU-1-F 001", "9999078902014447", midnight_in(25))
    h.add("sitewatch_fn_unsent_documents", mitsu, 4)
    h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", mitsu, NOW - 5 * DAY)
    check(h, shop1, "web-port", "tcp", down_since=NOW - 30 * HOUR, reason="refused")
    check(h, shop1, "catalog-page", "http", never_passed=True, reason="status")
    kodeks = check(h, shop1, "kodeks", "kodeks", never_passed=True, reason="main_page")
    h.add("sitewatch_kodeks_maintenance", kodeks, 0)
    h.add("sitewatch_kodeks_main_page_ok", {**kodeks, "catalog": "/docs2"}, 0)
    h.add("sitewatch_kodeks_main_page_ok", {**kodeks, "catalog": "/docs"}, 1)
    h.add("sitewatch_kodeks_product_control_ok", {**kodeks, "catalog": "/docs2"}, 1)
    h.add("sitewatch_kodeks_licence_expiry_timestamp_seconds", kodeks, midnight_in(10))
    check(h, shop1, "iiko", "iiko_log", down_since=NOW - 30 * HOUR, reason="fn_mismatch")

    # shop-02: silent 40 hours (its own route label); what it last said of its ping and register is as old,
    # but the ФН's date stays true.
    shop2 = {**pushed, "site": "shop-02", "client": "lavka", "telegram_route": "pos"}
    h.add("sitewatch:site_last_report_timestamp_seconds", shop2, NOW - 40 * HOUR)
    check(h, shop2, "pc", "ping", down_since=NOW - 40 * HOUR, reason="timeout")
    atol = check(h, shop2, "till", "kkt")
    register(h, atol, "00106107", "АТОЛ 22 v2 Ф", "7380440700012345", midnight_in(2), read=NOW - 40 * HOUR)

    # shop-03: checked from the office; its PC is unreachable, and so its RDP port is too (one cause).
    shop3 = {"job": "sitewatch-exporter", "site": "shop-03", "client": "Аптека №1"}
    check(h, shop3, "pc", "ping", down_since=NOW - 26 * HOUR, reason="timeout")
    check(h, shop3, "rdp", "tcp", down_since=NOW - 26 * HOUR, reason="timeout")

    # shop-04: closed for the weekend since 30 hours: its PC went off at closing, as planned. Only its
    # register licence, ending in 6 days, is work; ATOL's "unlimited" licence is not.
    shop4 = {**pushed, "site": "shop-04"}
    h.add("sitewatch:site_last_report_timestamp_seconds", shop4, lambda t: min(t, NOW - 30 * HOUR))
    h.add("sitewatch:site_quiet_push_timestamp_seconds", {"site": "shop-04"}, NOW - 30 * HOUR, since=NOW - 30 * HOUR)
    h.add("sitewatch:site_closed_since_timestamp_seconds", {"site": "shop-04"}, NOW - 30 * HOUR,
          since=NOW - 30 * HOUR)
    check(h, shop4, "pc", "ping", down_since=NOW - 30 * HOUR, reason="timeout")
    h.add("sitewatch:check_quiet_expected", {"site": "shop-04", "check": "pc"}, 1, since=NOW - 30 * HOUR)
    getad = check(h, shop4, "getad", "getad")
    register(h, getad, "00106108", "", "7380440700099999", midnight_in(200), read=NOW - 30 * HOUR)
    h.add("sitewatch_kkt_licence_expiry_timestamp_seconds",
          {**getad, "kkt": "00106108", "licence": "10", "name": "ФФД 1.2"}, midnight_in(6))
    h.add("sitewatch_kkt_licence_expiry_timestamp_seconds",
          {**getad, "kkt": "00106108", "licence": "11", "name": "Маркировка"}, 2147472847)

    # shop-05: reports, but one register has not been read for 28 hours (its port is taken); another gives
    # no date for its unsent documents, which have waited a day; a third has had 2 documents for an hour.
    shop5 = {**pushed, "site": "shop-05", "client": "romashka"}
    h.add("sitewatch:site_last_report_timestamp_seconds", shop5, lambda t: t)
    stuck = check(h, shop5, "till", "kkt", down_since=NOW - 28 * HOUR, reason="port_busy")
    register(h, stuck, "065001234567891", "MITSU-1-F 001", "9999078902014448", midnight_in(300), read=NOW - 28 * HOUR)
    dateless = register(h, check(h, shop5, "till-2", "kkt"), "065001234567892", "", "9999078902014449",
                        midnight_in(300))
    h.add("sitewatch_fn_unsent_documents", dateless, 3)
    h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", dateless, 0)
    fresh = register(h, check(h, shop5, "till-3", "kkt"), "065001234567893", "", "9999078902014450",
                     midnight_in(300))
    h.add("sitewatch_fn_unsent_documents", fresh, lambda t: 2 if t >= NOW - HOUR else 0)
    h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", fresh,
          lambda t: NOW - HOUR if t >= NOW - HOUR else 0)

    # shop-06: a Кодекс server СМАРТ.Статус uploads for (sitewatch-ingest), silent 40 hours; its catalog
    # error is as old as the silence, its licence end (tomorrow) is not.
    shop6 = {"job": "sitewatch-ingest", "site": "shop-06", "client": "Библиотека", "check": "smartstatus"}
    h.add("sitewatch_ingest_last_upload_timestamp_seconds", {**shop6, "source": "smartstatus"}, NOW - 40 * HOUR)
    h.add("sitewatch_kodeks_licence_expiry_timestamp_seconds", {**shop6, "type": "kodeks"}, midnight_in(1))
    h.add("sitewatch_kodeks_main_page_ok", {**shop6, "type": "kodeks", "catalog": "/docs"}, 0)

    # shop-07: closed by its hours for 8 hours now, but its PC died 30 hours ago, while it was open.
    shop7 = {"job": "sitewatch-exporter", "site": "shop-07"}
    h.add("sitewatch:site_closed_since_timestamp_seconds", {"site": "shop-07"}, NOW - 8 * HOUR, since=NOW - 8 * HOUR)
    check(h, shop7, "pc", "ping", down_since=NOW - 30 * HOUR, reason="unreachable")
    return h


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).exists():
        pytest.fail("promtool is not installed: run 'make test', which installs Debian's prometheus")
    return path


@contextlib.contextmanager
def prometheus_holding(history: History, folder: Path):
    """Debian's Prometheus on loopback, holding `history` backfilled; stopped by its pid."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus is not installed: run 'make test', which installs Debian's package")
    samples = folder / "samples.om"
    samples.write_text(history.openmetrics(), encoding="utf-8")
    tsdb = folder / "tsdb"
    made = subprocess.run([promtool(), "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(samples), str(tsdb)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    config = folder / "prometheus.yml"
    config.write_text("global: {evaluation_interval: 1h}\n", encoding="utf-8")
    port = free_port()
    daemons = Daemons()
    try:
        yield daemons.start("Prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                                           "--storage.tsdb.retention.time=30d",
                                           f"--web.listen-address=127.0.0.1:{port}"], folder / "prometheus.log", port)
    finally:
        daemons.stop_all()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory):
    """Prometheus holding the seven sites' day and a half."""
    with prometheus_holding(sites_history(), tmp_path_factory.mktemp("worklist-prometheus")) as url:
        yield url


def settings_for(url: str, **changes) -> WorklistConfig:
    return replace(WorklistConfig(prometheus_url=url, alertmanager_url=None, timeout=10.0), **changes)


def found(items) -> set[tuple[str, str, str]]:
    """(kind, site, what in it) of each item: the check, register or catalog it is about."""
    return {(item.kind, item.site, item.labels.get("catalog") or item.labels.get("kkt") or item.labels.get("check", ""))
            for item in items}


EXPECTED = {
    ("fn_expiry", "shop-01", "065001234567890"),
    ("ofd_backlog", "shop-01", "065001234567890"),
    ("check_down", "shop-01", "web-port"),
    ("check_down", "shop-01", "catalog-page"),
    ("kodeks_licence", "shop-01", "kodeks"),
    ("catalog_error", "shop-01", "/docs2"),
    ("site_silent", "shop-02", ""),
    ("fn_expiry", "shop-02", "00106107"),
    ("check_down", "shop-03", "pc"),
    ("kkt_licence", "shop-04", "00106108"),
    ("kkt_not_read", "shop-05", "065001234567891"),
    ("ofd_backlog", "shop-05", "065001234567892"),
    ("site_silent", "shop-06", "smartstatus"),
    ("kodeks_licence", "shop-06", "smartstatus"),
    ("check_down", "shop-07", "pc"),
}


@pytest.fixture(scope="module")
def items(prometheus_url):
    return collect(settings_for(prometheus_url), NOW)


def test_collect_finds_the_work_of_each_site_and_nothing_else(items):
    assert found(items) == EXPECTED
    assert len(items) == len(EXPECTED)  # one item per thing, no repeats
    by = {(item.kind, item.site, item.labels.get("check", "")): item for item in items}
    fn = next(i for i in items if i.kind == "fn_expiry" and i.site == "shop-01")
    assert fn.due == midnight_in(25) and fn.labels["fn"] == "9999078902014447"
    assert fn.labels["model"] == "MITSU-1-F 001" and fn.labels["client"] == "romashka"
    backlog = by[("ofd_backlog", "shop-01", "till-1")]
    assert (backlog.count, backlog.since, backlog.due) == (4, NOW - 5 * DAY, NOW + 25 * DAY)
    dateless = by[("ofd_backlog", "shop-05", "till-2")]
    assert (dateless.count, dateless.since, dateless.due) == (3, None, None)
    port = by[("check_down", "shop-01", "web-port")]
    assert (port.since, port.reason, port.labels["type"]) == (NOW - 30 * HOUR, "refused", "tcp")
    page = by[("check_down", "shop-01", "catalog-page")]
    assert (page.since, page.reason) == (None, "status")  # never passed since the exporter started
    assert by[("site_silent", "shop-02", "")].since == NOW - 40 * HOUR
    assert by[("site_silent", "shop-02", "")].labels["telegram_route"] == "pos"
    assert by[("site_silent", "shop-06", "smartstatus")].labels["source"] == "smartstatus"
    unread = by[("kkt_not_read", "shop-05", "till")]
    assert (unread.since, unread.reason) == (NOW - 28 * HOUR, "port_busy")
    assert by[("catalog_error", "shop-01", "kodeks")].reason == "main_page"
    assert by[("kkt_licence", "shop-04", "getad")].labels["name"] == "ФФД 1.2"
    assert by[("check_down", "shop-07", "pc")].since == NOW - 30 * HOUR


def test_the_limits_of_the_settings_are_applied(prometheus_url):
    near = collect(settings_for(prometheus_url, fn_days=3, licence_days=2, down_for=36 * HOUR), NOW)
    assert found(near) == {
        ("fn_expiry", "shop-02", "00106107"),  # 2 days; shop-01's 25 days are beyond 3
        ("kodeks_licence", "shop-06", "smartstatus"),  # tomorrow; shop-01's 10 days are beyond 2
        ("site_silent", "shop-02", ""), ("site_silent", "shop-06", "smartstatus"),  # 40 hours > 36
        ("check_down", "shop-01", "catalog-page"),  # never passed, and down 36 hours ago too
        ("catalog_error", "shop-01", "/docs2"),
        ("ofd_backlog", "shop-01", "065001234567890"),  # the oldest waits 5 days
        ("ofd_backlog", "shop-05", "065001234567892"),  # no date, but waiting now and 36 hours ago
    }


def test_items_go_to_the_chats_their_alerts_would_reach(items):
    finder = RouteFinder.from_yaml((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"),
                                   RECEIVER_ROUTES)
    split = {route: found(route_items) for route, route_items in for_routes(items, finder, NOW).items()}
    # The distributor's chat gets all of shop-01; shop-02's own route label takes all of it to pos.
    assert {thing for thing in EXPECTED if thing[1] in ("shop-01", "shop-02")} == split["pos"]
    # ФН and register items go to the POS team as well (FnExpiring, KktDataStale, KktLicenceExpiring).
    assert split["kkt"] == {("fn_expiry", "shop-01", "065001234567890"), ("ofd_backlog", "shop-01", "065001234567890"),
                            ("kkt_licence", "shop-04", "00106108"), ("kkt_not_read", "shop-05", "065001234567891"),
                            ("ofd_backlog", "shop-05", "065001234567892")}
    assert ("check_down", "shop-03", "pc") in split["duty"]
    assert ("site_silent", "shop-06", "smartstatus") in split["duty"]
    assert ("kodeks_licence", "shop-01", "kodeks") in split["info"]  # 10 days ahead: for information
    assert split["watchdog"] == set() and split["kodeks-spb"] == set()


def dates(moment: float, with_time: bool = False) -> str:
    return datetime.fromtimestamp(moment, ZONE).strftime("%d.%m.%Y %H:%M" if with_time else "%d.%m.%Y")


def test_the_worklist_reads_as_a_dispatcher_would_write_it(items):
    messages = render(items, ZONE, NOW, title=TITLE)
    assert len(messages) == 1
    text = messages[0]
    local = datetime.fromtimestamp(NOW, ZONE)
    weekday = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")[local.weekday()]
    assert text.startswith(f"📋 <b>{TITLE}, {weekday} {local:%d.%m}: 7 площадок, 15 дел</b>\n\n🏪 <b>shop-02</b>")
    for line in [
        f"🟠 ФН 9999078902014447 кассы MITSU-1-F 001 № 065001234567890 истекает {dates(midnight_in(25))}, "
        "через 25 дней",
        f"🟠 Касса MITSU-1-F 001 № 065001234567890 не передаёт документы в ОФД: ждут 4 документа; самый старый от "
        f"{dates(NOW - 5 * DAY)}, 5 дней назад; касса заблокируется {dates(NOW + 25 * DAY)}, через 25 дней",
        f"🟠 Порт «web-port» недоступен с {dates(NOW - 30 * HOUR, True)}, уже 1 д 6 ч: соединение отклонено, "
        "порт закрыт",
        "🔴 Страница «catalog-page» не работает (с запуска службы проверок ни одной удачной проверки): сервер "
        "ответил кодом ошибки",
        f"🔵 Регистрационный файл сервера Кодекс «kodeks» истекает {dates(midnight_in(10))}, через 10 дней",
        "🔴 Главная страница каталога /docs2 построена с ошибкой",
        f"🔴 Площадка молчит: данные не приходят с {dates(NOW - 40 * HOUR, True)}, уже 1 д 16 ч",
        f"🔴 ФН 7380440700012345 кассы АТОЛ 22 v2 Ф № 00106107 истекает {dates(midnight_in(2))}, через 2 дня",
        f"🔴 Компьютер «pc» не отвечает с {dates(NOW - 26 * HOUR, True)}, уже 1 д 2 ч: нет ответа",
        f"🟠 Лицензия «ФФД 1.2» кассы № 00106108 истекает {dates(midnight_in(6))}, через 6 дней",
        f"🟠 Данные кассы MITSU-1-F 001 № 065001234567891 получены {dates(NOW - 28 * HOUR, True)}, 1 д 4 ч назад; "
        "сейчас: порт занят кассовой программой",
        "🟠 Касса № 065001234567892 не передаёт документы в ОФД: ждут 3 документа",
        f"🔴 Нет отчётов СМАРТ.Статуса (проверка «smartstatus») с {dates(NOW - 40 * HOUR, True)}, уже 1 д 16 ч",
        f"🔴 Регистрационный файл сервера Кодекс «smartstatus» истекает {dates(midnight_in(1))}, завтра",
        f"🔴 Компьютер «pc» не отвечает с {dates(NOW - 30 * HOUR, True)}, уже 1 д 6 ч: нет маршрута до адреса",
    ]:
        assert line in text.splitlines(), f"{line!r} is not a line of:\n{text}"
    # The most urgent site first: the two silent 40 hours (by name), then the PCs down longest; shop-01's
    # critical items before the sites with warnings only.
    order = re.findall(r"^🏪 <b>(shop-\d\d)</b>", text, re.MULTILINE)
    assert order == ["shop-02", "shop-06", "shop-07", "shop-03", "shop-01", "shop-05", "shop-04"]
    assert "🏪 <b>shop-03</b> · клиент Аптека №1" in text and "🏪 <b>shop-04</b>\n" in text
    # No metric, label or English words: only names taken from the data are in Latin letters.
    visible = re.sub(r"</?b>", "", text)
    assert "sitewatch" not in visible and "=" not in visible and "_" not in visible
    names = ["shop-0\\d", "romashka", "lavka", "web-port", "catalog-page", "kodeks", "smartstatus", "pc",
             "MITSU-1-F 001", "АТОЛ 22 v2 Ф", "/docs2"]
    assert re.findall("[A-Za-z]+", re.sub("|".join(names), "", visible)) == []


def test_a_long_worklist_is_split_between_sites_within_telegrams_limit(items):
    many = [replace(item, site=f"{item.site}-{n:03d}") for n in range(40) for item in items]
    messages = render(many, ZONE, NOW, title=TITLE)
    assert len(messages) > 3
    assert messages[0].startswith(f"📋 <b>{TITLE}, ") and "280 площадок, 600 дел" in messages[0]
    for text in messages[1:]:
        assert text.startswith(f"📋 <b>{TITLE}, ") and "</b> (продолжение)\n\n🏪 <b>shop-" in text
    for text in messages:
        assert len(text.encode("utf-16-le")) // 2 <= 4096
        assert not text.endswith("\n")
        # a site's block is whole: every site line is followed by its items up to the next site or the end
        blocks = text.split("\n\n")[1:]
        assert all(block.startswith("🏪 <b>") for block in blocks)
    sites_seen = [site for text in messages for site in re.findall(r"^🏪 <b>([^<]+)</b>", text, re.MULTILINE)]
    assert len(sites_seen) == len(set(sites_seen)) == 280


def test_an_empty_worklist_is_one_short_message():
    local = datetime.fromtimestamp(NOW, ZONE)
    weekday = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")[local.weekday()]
    assert render([], ZONE, NOW, title=TITLE) == [f"✅ <b>{TITLE}, {weekday} {local:%d.%m}</b>: на сегодня дел нет."]


# --- when Prometheus cannot answer ---------------------------------------------------------------------

def test_a_prometheus_that_is_down_makes_the_worklist_unavailable():
    url = f"http://monitor:pa55word-secret@127.0.0.1:{free_port()}"
    with pytest.raises(WorklistUnavailable) as caught:
        collect(settings_for(url), NOW)
    message = str(caught.value)
    assert message.startswith("the worklist cannot be made: Prometheus at http://<redacted>@127.0.0.1:")
    assert "cannot be reached: Connection refused (question fn_expiry)" in message
    assert "pa55word-secret" not in message
    assert caught.value.russian == "⚠️ Список дел не составлен: сервер мониторинга недоступен. Подробности — в " \
                                   "журнале получателя."


def test_prometheus_refusing_a_query_is_said_with_its_own_words(prometheus_url):
    with pytest.raises(PrometheusError) as caught:
        instant_query(prometheus_url, "max by (site (sitewatch_check_up)", at=NOW, timeout=10)
    assert caught.value.cause == "refused"
    assert str(caught.value).startswith(f"Prometheus at {prometheus_url} refused the query (bad_data, HTTP 400): ")
    # and every question collect asks is one Prometheus takes
    for name, expr in queries(settings_for(prometheus_url)).items():
        instant_query(prometheus_url, expr, at=NOW, timeout=10)


@pytest.mark.parametrize("timeout", [2.5, 0.75, 30])
def test_a_timeout_in_fractions_of_a_second_is_one_prometheus_takes(prometheus_url, timeout):
    """`timeout: 2500ms` in the config: Prometheus refuses a duration such as "2.5s", so none is sent."""
    assert collect(settings_for(prometheus_url, timeout=timeout), NOW)


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Answers /api/v1/query as the path prefix says: /error-json, /html-502, /not-json, /slow, /matrix,
    /starting (Prometheus replaying its log), /eval-timeout (its own evaluation timed out), /warnings."""

    def do_POST(self):  # noqa: N802 - the handler's API
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        kind = self.path.split("/")[1]
        if kind == "slow":
            time.sleep(2)
        status, body, content_type = {
            "starting": (503, "Service Unavailable", "text/plain; charset=utf-8"),  # Prometheus replaying its WAL
            "eval-timeout": (503, json.dumps({"status": "error", "errorType": "timeout",
                                              "error": "query timed out in expression evaluation"}),
                             "application/json"),
            "warnings": (200, json.dumps({"status": "success", "warnings": [
                             'remote_read: Get "http://reader:pa55word-secret@127.0.0.1:9201/read": EOF'],
                                          "data": {"resultType": "vector", "result": []}}), "application/json"),
            "error-json": (422, json.dumps({"status": "error", "errorType": "execution",
                                            "error": "query processing would load too many samples"}),
                           "application/json"),
            "html-502": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
            "not-json": (200, "Prometheus is starting\n", "text/plain"),
            "slow": (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}),
                     "application/json"),
            "matrix": (200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}),
                       "application/json"),
        }[kind]
        payload = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the slow case: the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def misbehaving():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True  # a handler still sleeping for the slow case does not hold up the stop
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("path, cause, says, russian", [
    ("error-json", "refused", "refused the query (execution, HTTP 422): query processing would load too many samples",
     "сервер мониторинга не смог ответить на запрос"),
    ("html-502", "unavailable", "is not ready: HTTP 502 Bad Gateway: <html><body><h1>502 Bad Gateway</h1></body></html>",
     "сервер мониторинга временно недоступен"),
    ("starting", "unavailable", "is not ready: HTTP 503 Service Unavailable: Service Unavailable",
     "сервер мониторинга временно недоступен"),
    ("eval-timeout", "timeout", "gave up the query after 1 s (HTTP 503): query timed out in expression evaluation",
     "сервер мониторинга не ответил за 1 с"),
    ("not-json", "invalid", "answered with something that is not the query API's JSON: Prometheus is starting",
     "сервер мониторинга не смог ответить на запрос"),
    ("matrix", "invalid", "answered with a result this client cannot read (a matrix result, where an instant vector "
                          "was expected)", "сервер мониторинга не смог ответить на запрос"),
    ("slow", "timeout", "did not answer within 1 s", "сервер мониторинга не ответил за 1 с"),
])
def test_each_way_prometheus_can_fail_is_told_in_a_sentence(misbehaving, path, cause, says, russian):
    url = f"{misbehaving}/{path}"
    with pytest.raises(PrometheusError) as caught:
        instant_query(url, "up", at=NOW, timeout=1)
    assert caught.value.cause == cause
    assert str(caught.value).startswith(f"Prometheus at {url} {says}"), str(caught.value)
    with pytest.raises(WorklistUnavailable) as unavailable:
        collect(settings_for(url, timeout=1), NOW)
    assert unavailable.value.russian == f"⚠️ Список дел не составлен: {russian}. Подробности — в журнале получателя."


def test_an_answer_with_warnings_is_used_and_each_warning_logged(misbehaving, caplog):
    """Prometheus answers with `warnings` when it could read only part of its data: the list is made from
    what it has (a list that may lack an item beats none), and the log says so, without secrets."""
    url = f"{misbehaving}/warnings"
    said_by_prometheus = 'remote_read: Get "http://<redacted>@127.0.0.1:9201/read": EOF'
    assert instant_query(url, "up", at=NOW, timeout=5).warnings == (said_by_prometheus,)
    with caplog.at_level("WARNING", logger="sitewatch.receiver"):
        assert collect(settings_for(url, timeout=5), NOW) == []
    said = [record.getMessage() for record in caplog.records if "event=worklist_partial_data" in record.getMessage()]
    assert len(said) == len(queries(settings_for(url)))
    assert said[0] == (f"event=worklist_partial_data question=fn_expiry prometheus={url} "
                       f"warning={said_by_prometheus!r} action=listed_anyway")
    assert "pa55word-secret" not in caplog.text


# --- data no site should send, and sites that send it anyway -------------------------------------------

ODD_SITE = 'магазин "№1" <b>&amp;\n🙂'
ODD_CHECK = 'pc "a"\n<i>'


def odd_history() -> History:
    h = History()
    pushed = {"job": "sitewatch"}
    # A register two checks read (a kkt check, and getad's log of the same till): the till reads it now,
    # getad's copy is two days old. Its ФН and its unsent documents are one thing each, and it is read.
    twice = {**pushed, "site": "twice", "client": "c"}
    h.add("sitewatch:site_last_report_timestamp_seconds", twice, lambda t: t)
    for name, kind in (("till", "kkt"), ("getad", "getad")):
        kkt = register(h, check(h, twice, name, kind), "065001234567890", "MITSU-1-F 001", "9999078902014447",
                       midnight_in(10), read=NOW - 2 * DAY if name == "getad" else None)
        h.add("sitewatch_fn_unsent_documents", kkt, 7)
        h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", kkt, NOW - 5 * DAY)
    # The same when neither reads it: one item, since the later of the two readings.
    stale = {**pushed, "site": "twice-stale"}
    h.add("sitewatch:site_last_report_timestamp_seconds", stale, lambda t: t)
    for name, kind, read in (("till", "kkt", NOW - 3 * DAY), ("getad", "getad", NOW - 2 * DAY)):
        register(h, check(h, stale, name, kind), "00106107", "", "7380440700012345", midnight_in(300), read=read)
    # A broken exporter: +Inf documents, NaN and ±Inf dates.
    broken = {**pushed, "site": "broken"}
    h.add("sitewatch:site_last_report_timestamp_seconds", broken, lambda t: t)
    till = check(h, broken, "till", "kkt")
    infinite = register(h, till, "1", "", "2", float("inf"))
    h.add("sitewatch_fn_unsent_documents", infinite, float("inf"))
    h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", infinite, NOW - 5 * DAY)
    nan = register(h, till, "3", "", "4", float("nan"), read=float("nan"))
    h.add("sitewatch_fn_unsent_documents", nan, float("nan"))
    h.add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", nan, float("nan"))
    register(h, till, "5", "", "6", float("-inf"))
    h.add("sitewatch_kodeks_licence_expiry_timestamp_seconds", {**broken, "check": "kodeks"}, float("-inf"))
    # ФН ends on the limit: 30 days from now is beyond it, a second less within; one ended right now.
    edge = {**pushed, "site": "edge"}
    h.add("sitewatch:site_last_report_timestamp_seconds", edge, lambda t: t)
    till = check(h, edge, "till", "kkt")
    register(h, till, "7", "", "8", NOW + 30 * DAY)
    register(h, till, "9", "", "10", NOW + 30 * DAY - 1)
    register(h, till, "11", "", "12", NOW)
    # Label values with quotes, a new line, markup, an emoji, and a client name of 10 kB.
    # (Their last ten minutes only: the lookback needs no more, and 10 kB a sample adds up.)
    odd = {**pushed, "site": ODD_SITE, "client": "Б" * 10_000}
    recent = NOW - 10 * STEP
    h.add("sitewatch:site_last_report_timestamp_seconds", odd, lambda t: t, since=recent)
    pc = {**odd, "check": ODD_CHECK, "type": "ping"}
    h.add("sitewatch_check_up", pc, 0, since=recent)
    h.add("sitewatch_check_last_success_timestamp_seconds", pc, NOW - 30 * HOUR, since=recent)
    h.add("sitewatch_check_failure_info", {**pc, "reason": "timeout"}, 1, since=recent)
    # A check down two days whose reason changes every minute: the latest is said.
    flapping = {**pushed, "site": "flapping", "check": "web", "type": "tcp"}
    h.add("sitewatch:site_last_report_timestamp_seconds", {**pushed, "site": "flapping"}, lambda t: t)
    h.add("sitewatch_check_up", flapping, 0)
    h.add("sitewatch_check_last_success_timestamp_seconds", flapping, NOW - 2 * DAY)
    h.add("sitewatch_check_failure_info", {**flapping, "reason": "timeout"}, lambda t: 1 if t // STEP % 2 else None)
    h.add("sitewatch_check_failure_info", {**flapping, "reason": "refused"}, lambda t: None if t // STEP % 2 else 1)
    # A site taken out of monitoring an hour ago, its PC down for a day before that: Prometheus's 5-minute
    # lookback no longer sees any of it.
    gone = {"job": "sitewatch-exporter", "site": "gone"}
    h.add("sitewatch_check_up", {**gone, "check": "pc", "type": "ping"}, 0, until=NOW - HOUR)
    h.add("sitewatch_check_last_success_timestamp_seconds", {**gone, "check": "pc", "type": "ping"}, NOW - 2 * DAY,
          until=NOW - HOUR)
    return h


@pytest.fixture(scope="module")
def odd_items(tmp_path_factory):
    with prometheus_holding(odd_history(), tmp_path_factory.mktemp("worklist-odd")) as url:
        yield collect(settings_for(url), NOW)


def test_a_register_two_checks_read_is_one_register(odd_items):
    mine = sorted((item.kind, item.labels["kkt"]) for item in odd_items if item.site == "twice")
    assert mine == [("fn_expiry", "065001234567890"), ("ofd_backlog", "065001234567890")]  # and it is read
    (unread,) = [item for item in odd_items if item.site == "twice-stale"]
    assert (unread.kind, unread.since, unread.labels["check"]) == ("kkt_not_read", NOW - 2 * DAY, "getad")
    text = render([item for item in odd_items if item.site.startswith("twice")], ZONE, NOW, title=TITLE)[0]
    assert text.count("ФН 9999078902014447") == 1 and text.count("не передаёт документы") == 1


def test_infinite_and_missing_numbers_neither_list_nor_break_anything(odd_items):
    mine = [item for item in odd_items if item.site == "broken"]
    assert [(item.kind, item.labels["kkt"], item.count) for item in mine] == [("ofd_backlog", "1", None)]
    (text,) = render(mine, ZONE, NOW, title=TITLE)
    assert "🟠 Касса № 1 не передаёт документы в ОФД; самый старый от " in text


def test_a_fn_is_listed_up_to_the_limit_and_one_that_ended_now_has_ended_today(odd_items):
    mine = {item.labels["kkt"]: item for item in odd_items if item.site == "edge"}
    assert set(mine) == {"9", "11"}
    (text,) = render(list(mine.values()), ZONE, NOW, title=TITLE)
    assert f"🔴 ФН 12 кассы № 11 истёк {dates(NOW)}, сегодня" in text.splitlines()
    assert f"🟠 ФН 10 кассы № 9 истекает {dates(NOW + 30 * DAY - 1)}, через 30 дней" in text.splitlines()


def test_odd_label_values_are_shown_escaped_on_one_line(odd_items):
    (item,) = [item for item in odd_items if item.site == ODD_SITE]
    assert item.labels["check"] == ODD_CHECK and len(item.labels["client"]) == 10_000
    (text,) = render([item], ZONE, NOW, title=TITLE)
    assert all(markup_problem(line) == "" for line in text.splitlines())
    lines = text.splitlines()
    assert lines[2] == ("🏪 <b>магазин \"№1\" &lt;b&gt;&amp;amp; 🙂</b> · клиент " + "Б" * 79 + "…")
    assert lines[3].startswith("🔴 Компьютер «pc \"a\" &lt;i&gt;» не отвечает с ")


def test_a_flapping_check_is_said_with_its_latest_reason(odd_items):
    (item,) = [item for item in odd_items if item.site == "flapping"]
    assert item.reason == ("timeout" if NOW // STEP % 2 else "refused")


def test_a_site_taken_out_an_hour_ago_is_not_listed(odd_items):
    assert not [item for item in odd_items if item.site == "gone"]
