"""Telegram HTML of the receiver: alert blocks, headers, digests, templates, and packing blocks into messages."""

from __future__ import annotations

import html
import logging
import re
import time
from dataclasses import replace
from datetime import datetime, timezone
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertmanager.render import BLOCK_LIMIT, GroupInfo, Renderer, TemplateProblem, compose
from alertmanager.telegram_html import MESSAGE_LIMIT, html_to_text, message_length
from alertmanager.webhook import parse_notification
from alertmanager.wording import WORDINGS

MOSCOW = ZoneInfo("Europe/Moscow")
ALERTMANAGER = "https://alertmanager.example.ru"
GRAFANA = "https://grafana.example.ru/"
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
                 "tg-spoiler", "tg-emoji", "blockquote"}


class TelegramHtmlCheck(HTMLParser):
    """Strict reading of Telegram's HTML parse mode: known tags only, balanced, http(s) links, escaped text."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in TELEGRAM_TAGS:
            self.problems.append(f"tag <{tag}>")
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if urlsplit(href).scheme not in ("http", "https"):
                self.problems.append(f"link to {href!r}")
        self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.problems.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag):
        if not self.open or self.open.pop() != tag:
            self.problems.append(f"</{tag}> closes nothing open")

    def handle_data(self, data):
        for char in "<>&":
            if char in data:
                self.problems.append(f"bare {char!r} in {data[:40]!r}")

    def handle_entityref(self, name):
        if name not in ("lt", "gt", "amp", "quot"):
            self.problems.append(f"entity &{name};")

    def handle_charref(self, name):
        if not re.fullmatch(r"[0-9]+|[xX][0-9a-fA-F]+", name):
            self.problems.append(f"character reference &#{name};")

    def handle_comment(self, data):
        self.problems.append("comment")

    def handle_decl(self, decl):
        self.problems.append("declaration")


def telegram_html_problems(text: str) -> list[str]:
    check = TelegramHtmlCheck()
    check.feed(text)
    check.close()
    return check.problems + [f"<{tag}> not closed" for tag in check.open]


def assert_telegram_html(text: str, per_line: bool = True) -> None:
    assert telegram_html_problems(text) == [], text
    if per_line:
        for line in text.split("\n"):
            assert telegram_html_problems(line) == [], line


def make_alert(labels: dict, annotations: dict | None = None, status: str = "firing",
               starts: str = "2026-11-22T11:05:07.123456789Z", ends: str = "0001-01-01T00:00:00Z") -> dict:
    return {"status": status, "labels": labels, "annotations": annotations or {}, "startsAt": starts,
            "endsAt": ends, "generatorURL": "http://prometheus:9090/graph?g0.expr=up", "fingerprint": ""}


def make_notification(alerts: list[dict], group_labels: dict | None = None, common_labels: dict | None = None,
                      group_key: str = '{}:{alertname="SiteDown"}'):
    return parse_notification({
        "version": "4", "receiver": "telegram-romashka", "status": alerts[0]["status"], "groupKey": group_key,
        "truncatedAlerts": 0, "groupLabels": group_labels if group_labels is not None else {"alertname": "SiteDown"},
        "commonLabels": common_labels or {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts,
    })


SITE_DOWN = {"alertname": "SiteDown", "severity": "critical", "site": "shop-12", "client": "Ромашка",
             "check": "pc"}


def one_block(renderer: Renderer, labels: dict, annotations: dict | None = None, **alert) -> str:
    notification = make_notification([make_alert(labels, annotations, **alert)])
    return renderer.alert_block(notification.alerts[0], GroupInfo.from_notification(notification))


def links_of(text: str) -> dict[str, str]:
    """Link text -> href, as Telegram would read them."""
    return {html_to_text(label).strip(): html.unescape(href)
            for href, label in re.findall(r'<a href="([^"]*)">(.*?)</a>', text)}


@pytest.fixture
def renderer():
    return Renderer(timezone=MOSCOW, grafana_url=GRAFANA, alertmanager_url=ALERTMANAGER)


# --- escaping and hostile values

def test_label_value_with_markup_is_shown_literally(renderer):
    block = one_block(renderer, {**SITE_DOWN, "client": "<b>&", "site": 'shop "12"'})
    assert "&lt;b&gt;&amp;" in block
    assert "<b>&" not in block
    assert_telegram_html(block)
    assert "клиент <b>&" in html_to_text(block)


def test_description_script_and_javascript_dashboard_do_not_become_markup_or_links(renderer):
    block = one_block(renderer, SITE_DOWN, {
        "description": 'Страница отдаёт <script>alert("x")</script>',
        "dashboard_url": "javascript:alert(1)", "runbook_url": "data:text/html,<b>x</b>",
    })
    assert "&lt;script&gt;" in block and "<script" not in block
    assert "javascript:" not in block and "data:" not in block
    assert set(links_of(block)) == {"🔕 Заглушить"}
    assert_telegram_html(block)


def test_template_markup_comes_only_from_the_template_not_from_annotations(renderer):
    block = one_block(renderer, SITE_DOWN, {"summary": '<a href="https://evil.example">жми</a>'})
    assert "https://evil.example" not in links_of(block).values()
    assert "&lt;a href=" in block


# --- Russian block content

def test_firing_block_in_russian_has_emoji_severity_place_summary_and_moscow_time(renderer):
    block = one_block(renderer, SITE_DOWN, {"summary": "ПК на кассе не отвечает на ping",
                                            "description": "Потеряно 100% пакетов"})
    lines = block.split("\n")
    assert lines[0] == "🔥 <b>SiteDown</b> · 🔴 критично"
    assert lines[1] == "🏪 клиент Ромашка · площадка shop-12"
    assert lines[2] == "ПК на кассе не отвечает на ping"
    # the start and the links come before the longer text, so a huge label cannot push them out
    assert lines[3] == "🕒 Начало: 22.11.2026 14:05:07 МСК"
    assert lines.index("Потеряно 100% пакетов") > 3
    assert "🔧 проверка pc" in lines
    # startsAt 11:05:07 UTC is 14:05:07 in Moscow
    assert "🕒 Начало: 22.11.2026 14:05:07 МСК" in lines
    assert "Конец" not in block
    assert_telegram_html(block)


@pytest.mark.parametrize("severity, shown", [("warning", "🟠 предупреждение"), ("info", "🔵 для сведения"),
                                             ("page-duty", "page-duty")])
def test_severity_words_in_russian_and_unknown_severity_as_given(renderer, severity, shown):
    block = one_block(renderer, {**SITE_DOWN, "severity": severity})
    assert block.split("\n")[0] == f"🔥 <b>SiteDown</b> · {shown}"


@pytest.mark.parametrize("ends, duration", [
    ("2026-11-22T12:10:07Z", "1 ч 5 мин"),
    ("2026-11-22T11:05:52Z", "45 с"),
    ("2026-11-24T14:05:07Z", "2 д 3 ч"),
    ("2026-11-22T12:05:07Z", "1 ч"),
])
def test_resolved_block_shows_end_time_and_duration_in_russian(renderer, ends, duration):
    block = one_block(renderer, SITE_DOWN, status="resolved", starts="2026-11-22T11:05:07Z", ends=ends)
    end_text = ends[8:10] + "." + ends[5:7] + "." + ends[:4]
    assert block.startswith("✅ <b>SiteDown</b>")
    end_line = next(line for line in block.split("\n") if line.startswith("🏁"))
    assert re.fullmatch(rf"🏁 Конец: {end_text} \d\d:\d\d:\d\d МСК · длилось {duration}", end_line)
    assert "Заглушить" not in block  # nothing to silence once it is over
    assert_telegram_html(block)


def test_long_description_is_cut_to_a_thousand_characters(renderer):
    block = one_block(renderer, SITE_DOWN, {"description": "щ" * 5000})
    assert "щ" * 999 + "…" in block
    assert "щ" * 1000 not in block


def test_blank_lines_inside_a_description_do_not_split_the_block(renderer):
    block = one_block(renderer, SITE_DOWN, {"description": "первая строка\n\n\nвторая строка"})
    assert "\n\n" not in block
    assert "первая строка\nвторая строка" in block


def test_block_over_the_limit_is_cut_between_lines_and_stays_well_formed(renderer):
    block = one_block(renderer, {**SITE_DOWN, "instance": "<&>" * 3000},
                      {"summary": "s", "description": "d", "runbook_url": "https://wiki.example.ru/SiteDown"})
    assert message_length(block) <= BLOCK_LIMIT
    assert block.endswith("…")
    assert block.startswith("🔥 <b>SiteDown</b>")
    assert_telegram_html(block)


def test_first_line_too_long_alone_becomes_its_cut_visible_text(renderer):
    block = one_block(renderer, {**SITE_DOWN, "alertname": "Ж<" * 4000})
    assert message_length(block) <= BLOCK_LIMIT
    first = block.split("\n")[0]
    assert first.startswith("🔥 Ж&lt;Ж&lt;") and first.endswith("…")
    assert_telegram_html(block)


# --- links

def test_relative_dashboard_is_joined_to_grafana_url(renderer):
    block = one_block(renderer, SITE_DOWN, {"dashboard_url": "/d/abc?var-site=shop-12&var-check=pc"})
    assert links_of(block)["📊 Панель площадки"] == "https://grafana.example.ru/d/abc?var-site=shop-12&var-check=pc"
    assert_telegram_html(block)


def test_relative_dashboard_without_grafana_url_is_no_link():
    block = one_block(Renderer(timezone=MOSCOW), SITE_DOWN, {"dashboard": "/d/abc"})
    assert "Панель площадки" not in block


def test_absolute_dashboard_and_runbook_are_links(renderer):
    block = one_block(renderer, SITE_DOWN, {"dashboard": "https://g.example.ru/d/x",
                                            "runbook": "http://wiki.example.ru/SiteDown"})
    assert links_of(block)["📊 Панель площадки"] == "https://g.example.ru/d/x"
    assert links_of(block)["📖 Инструкция"] == "http://wiki.example.ru/SiteDown"


def test_silence_link_carries_the_alerts_labels_as_url_encoded_matchers(renderer):
    block = one_block(renderer, {**SITE_DOWN, "check": 'главная "страница"'})
    silence = links_of(block)["🔕 Заглушить"]
    assert silence.startswith(ALERTMANAGER + "/#/silences/new?filter=%7B")
    assert "Ромашка" not in silence and " " not in silence  # encoded
    assert unquote(silence.split("filter=", 1)[1]) == (
        '{alertname="SiteDown",check="главная \\"страница\\"",client="Ромашка",severity="critical",site="shop-12"}')


def test_no_silence_link_without_a_configured_alertmanager_url():
    """Alertmanager's own external URL may have no web UI behind it (Debian's has none): a link from it
    would open an error page, so only a configured address makes a link."""
    block = one_block(Renderer(timezone=MOSCOW), SITE_DOWN)
    assert "Заглушить" not in block and "alertmanager:9093" not in block


# --- headers

def group(alertname: str = "SiteDown", key: str | None = None, **labels: str) -> GroupInfo:
    return GroupInfo(receiver="telegram-romashka", group_key=key or f'{{}}:{{alertname="{alertname}"}}',
                     group_labels={"alertname": alertname, **labels}, common_labels={"client": "Ромашка"},
                     common_annotations={}, external_url="http://alertmanager:9093")


def test_header_for_one_group_names_the_alert_client_and_site(renderer):
    shop = group(site="shop-12")
    assert renderer.header("firing", 3, [shop]) == (
        "🔥 <b>Срабатывает: SiteDown</b> (3) · клиент Ромашка · площадка shop-12")
    assert renderer.header("resolved", 1, [shop]).startswith("✅ <b>Восстановлено: SiteDown</b> (1)")
    assert renderer.header("firing", 3, [shop, shop], continued=True).endswith("(продолжение)")


@pytest.mark.parametrize("count, words", [
    (1, "1 срабатывание"), (2, "2 срабатывания"), (5, "5 срабатываний"), (11, "11 срабатываний"),
    (12, "12 срабатываний"), (21, "21 срабатывание"), (22, "22 срабатывания"), (111, "111 срабатываний"),
    (1001, "1\u00a0001 срабатывание"),
])
def test_digest_header_counts_alerts_with_russian_plurals(renderer, count, words):
    groups = [group("SiteDown", site="shop-12"), group("KktDown", site="shop-12")]
    text = renderer.header("firing", count, groups)
    assert text.split("\n")[0].startswith(f"🔥 <b>Сводка: {words} в 2 группах</b>")


@pytest.mark.parametrize("group_count, words", [(2, "в 2 группах"), (5, "в 5 группах"), (21, "в 21 группе")])
def test_digest_header_counts_groups_with_russian_plurals(renderer, group_count, words):
    groups = [group(f"Alert{i}", site=f"shop-{i}") for i in range(group_count)]
    first_line, names = renderer.header("firing", 37, groups).split("\n")
    assert first_line == f"🔥 <b>Сводка: 37 срабатываний {words}</b> · клиент Ромашка"
    assert names.startswith("Alert0 · Alert1")
    assert_telegram_html(first_line)


def test_digest_header_for_resolved_alerts(renderer):
    text = renderer.header("resolved", 5, [group("SiteDown"), group("KktDown")])
    assert text.startswith("✅ <b>Сводка: 5 восстановлений в 2 группах</b>")


def test_more_block_counts_the_left_out_alerts_and_links_the_group_in_alertmanager(renderer):
    text = renderer.more("firing", 9812, group(site="shop-12"))
    assert text.split("\n")[0] == "… и ещё 9\u00a0812 срабатываний"
    url = links_of(text)["Все в Alertmanager"]
    assert url.startswith(ALERTMANAGER + "/#/alerts?filter=")
    assert parse_qs(url.split("?", 1)[1])["filter"] == ['{alertname="SiteDown",site="shop-12"}']
    assert_telegram_html(text)
    assert "href" not in Renderer().more("firing", 3, group())  # no configured Alertmanager address
    assert "href" not in renderer.more("resolved", 3, group())  # Alertmanager lists no resolved alerts


# --- composing messages

def test_compose_counts_utf16_and_uses_blocks_in_order():
    # Each 🔥 is one character in Python but two UTF-16 units for Telegram.
    blocks = [f"{i} " + "🔥" * 700 for i in range(10)]
    header = "🔥 <b>Срабатывает: SiteDown</b> (10)"
    used_total = 0
    while used_total < len(blocks):
        text, used = compose(header, blocks[used_total:])
        assert used >= 1
        assert message_length(text) <= MESSAGE_LIMIT
        assert text == "\n\n".join([header] + blocks[used_total:used_total + used])
        used_total += used
    assert compose(header, blocks)[1] == 2  # by Python's len three would seem to fit


def test_compose_cuts_a_first_block_that_cannot_fit_on_a_line_boundary():
    block = "\n".join(f"<b>строка {i}</b> · 🔥" for i in range(1000))
    text, used = compose("🔥 <b>заголовок</b>", [block, "второй"])
    assert used == 1
    assert message_length(text) <= MESSAGE_LIMIT
    assert text.endswith("\n…")
    assert_telegram_html(text)


# --- a group of 10,000 alerts

SERIAL = re.compile(r"касса (\d{10})")
ALERT_COUNT = 10_000


@pytest.fixture(scope="module")
def big_group():
    alerts = [make_alert({"alertname": "KktDown", "severity": "critical", "site": f"shop-{i % 300}",
                          "client": "Ромашка & Ко", "check": "kkt", "kkt": f"{i:010d}"},
                         {"summary": f"Касса {i} не отвечает 🔥", "description": "Нет связи с ККТ по COM-порту",
                          "dashboard_url": "/d/kkt?var-site=shop"})
              for i in range(ALERT_COUNT)]
    notification = make_notification(alerts, group_labels={"alertname": "KktDown"},
                                      group_key='{}:{alertname="KktDown"}')
    renderer = Renderer(timezone=MOSCOW, grafana_url=GRAFANA, alertmanager_url=ALERTMANAGER)
    info = GroupInfo.from_notification(notification)
    started = time.perf_counter()
    blocks = [renderer.alert_block(alert, info) for alert in notification.alerts]
    rendering = time.perf_counter() - started
    assert rendering < 4, f"rendering {ALERT_COUNT} alerts took {rendering:.1f}s"
    return renderer, info, blocks


def test_ten_thousand_alert_blocks_render_quickly_each_within_the_block_limit(big_group):
    _renderer, _info, blocks = big_group
    assert len(blocks) == ALERT_COUNT
    assert all(message_length(block) <= BLOCK_LIMIT for block in blocks)
    assert [int(SERIAL.search(block).group(1)) for block in blocks] == list(range(ALERT_COUNT))
    for block in blocks[::500]:
        assert_telegram_html(block)


# --- English

def test_english_block_header_and_more():
    renderer = Renderer(language="en", timezone=MOSCOW, alertmanager_url=ALERTMANAGER)
    block = one_block(renderer, SITE_DOWN, {"summary": "Cash desk PC does not answer ping"}, status="resolved",
                      starts="2026-11-22T11:05:07Z", ends="2026-11-22T12:10:07Z")
    lines = block.split("\n")
    assert lines[0] == "✅ <b>SiteDown</b> · 🔴 critical"
    assert lines[1] == "🏪 client Ромашка · site shop-12"
    assert "🕒 Started: 2026-11-22 14:05:07 MSK" in lines
    assert "🏁 Ended: 2026-11-22 15:10:07 MSK · lasted 1h 5m" in lines
    assert_telegram_html(block)
    assert renderer.header("firing", 1, [group(), group("KktDown")]).startswith(
        "🔥 <b>Digest: 1 alert firing in 2 groups</b>")
    assert renderer.more("firing", 9812, group()).startswith("… and 9,812 more firing")


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="language"):
        Renderer(language="de")


# --- a route's own template

def test_custom_template_overriding_only_alert_keeps_the_built_in_header(tmp_path):
    template = tmp_path / "kassa.html.j2"
    template.write_text(
        '{% import "ru.html.j2" as base %}\n'
        "{% macro alert(a) %}\n"
        "🧾 <b>{{ a.labels.kkt }}</b> · {{ a.site }}\n"
        "{{ base.alert(a) }}\n"
        "{% endmacro %}\n", encoding="utf-8")
    custom = Renderer(template_file=template, timezone=MOSCOW)
    block = one_block(custom, {**SITE_DOWN, "kkt": "<0012>"})
    assert block.startswith("🧾 <b>&lt;0012&gt;</b> · shop-12\n🔥 <b>SiteDown</b>")
    assert_telegram_html(block)
    shop = group(site="shop-12")
    assert custom.header("firing", 3, [shop]) == Renderer(timezone=MOSCOW).header("firing", 3, [shop])
    assert custom.more("firing", 5, shop) == Renderer(timezone=MOSCOW).more("firing", 5, shop)


def test_custom_template_named_like_a_built_in_one_still_imports_the_built_in(tmp_path):
    template = tmp_path / "ru.html.j2"
    template.write_text('{% import "ru.html.j2" as base %}\n'
                        "{% macro alert(a) %}\n📌 своя\n{{ base.alert(a) }}\n{% endmacro %}\n", encoding="utf-8")
    block = one_block(Renderer(template_file=template), SITE_DOWN)
    assert block.startswith("📌 своя\n🔥 <b>SiteDown</b>")


def test_custom_template_rendering_nothing_falls_back_to_the_built_in_block(tmp_path, caplog):
    template = tmp_path / "silent.html.j2"
    template.write_text("{% macro alert(a) %}\n{% if a.labels.kkt %}{{ a.labels.kkt }}{% endif %}\n{% endmacro %}\n",
                        encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="sitewatch.receiver"):
        block = one_block(Renderer(template_file=template), SITE_DOWN)
    assert block == one_block(Renderer(), SITE_DOWN)
    assert "template_empty" in caplog.text and "silent.html.j2" in caplog.text


def test_custom_template_with_a_syntax_error_names_the_file_and_line(tmp_path):
    template = tmp_path / "broken.html.j2"
    template.write_text("{% macro alert(a) %}\n{{ a.site }}\n{% if a.firing %}\n{% endmacro %}\n", encoding="utf-8")
    with pytest.raises(TemplateProblem) as problem:
        Renderer(template_file=template)
    assert "broken.html.j2" in str(problem.value)
    assert "line 4" in str(problem.value)


def test_custom_template_importing_a_missing_file_names_the_importing_line(tmp_path):
    template = tmp_path / "imports.html.j2"
    template.write_text('{# header #}\n{% import "nowhere.j2" as lib %}\n{% macro alert(a) %}x{% endmacro %}\n',
                        encoding="utf-8")
    with pytest.raises(TemplateProblem) as problem:
        Renderer(template_file=template)
    assert "imports.html.j2, line 2" in str(problem.value) and "nowhere.j2" in str(problem.value)


def test_missing_custom_template_file_is_a_template_problem(tmp_path):
    with pytest.raises(TemplateProblem, match="absent.html.j2"):
        Renderer(template_file=tmp_path / "absent.html.j2")


def test_custom_template_failing_at_render_time_falls_back_and_logs_once(tmp_path, caplog):
    template = tmp_path / "divides.html.j2"
    template.write_text("{% macro alert(a) %}\n{{ a.site }}\n{{ 1 // (a.labels | length - a.labels | length) }}\n"
                        "{% endmacro %}\n", encoding="utf-8")
    custom = Renderer(template_file=template, timezone=MOSCOW)
    with caplog.at_level(logging.ERROR, logger="sitewatch.receiver"):
        first = one_block(custom, SITE_DOWN)
        one_block(custom, SITE_DOWN)
    assert first == one_block(Renderer(timezone=MOSCOW), SITE_DOWN)
    errors = [r for r in caplog.records if r.name == "sitewatch.receiver" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "divides.html.j2" in message and "line=3" in message and "ZeroDivisionError" in message


def test_custom_template_markup_telegram_would_refuse_is_shown_as_text(tmp_path):
    template = tmp_path / "div.html.j2"
    template.write_text("{% macro alert(a) %}\n<div>{{ a.site }}</div>\n<b>{{ a.alertname }}\n"
                        "<i>{{ a.client }}</i>\n"
                        '<a href="{{ a.annotations.dashboard_url }}">Дашборд</a>\n{% endmacro %}\n',
                        encoding="utf-8")
    block = one_block(Renderer(template_file=template), SITE_DOWN, {"dashboard_url": "javascript:alert(1)"})
    assert block == "shop-12\nSiteDown\n<i>Ромашка</i>\nДашборд (javascript:alert(1))"
    assert_telegram_html(block)


def test_custom_template_defining_none_of_the_macros_is_refused(tmp_path):
    template = tmp_path / "go-style.tmpl"
    template.write_text('{{ define "telegram.message" }}{{ .Status }}{{ end }}\n', encoding="utf-8")
    with pytest.raises(TemplateProblem, match="go-style.tmpl"):
        Renderer(template_file=template)


# --- stored group info and the plain-text fallback

def test_group_info_round_trips_through_json():
    notification = make_notification([make_alert(SITE_DOWN)], group_labels={"alertname": "SiteDown", "site": "shop-12"},
                                      common_labels={"client": "Ромашка"})
    info = GroupInfo.from_notification(notification)
    assert GroupInfo.from_json(info.to_json()) == info
    assert "Ромашка" in info.to_json()
    with pytest.raises(ValueError):
        GroupInfo.from_json('{"group_labels": ["not", "a", "map"]}')


def test_html_to_text_strips_tags_spells_out_links_and_unescapes():
    text = ('🔥 <b>SiteDown</b> · клиент &lt;b&gt;&amp;\n'
            '<a href="https://grafana.example.ru/d/abc?var-site=x&amp;var-check=pc">📊 Панель площадки</a> · '
            '<a href="https://example.ru/">https://example.ru/</a>')
    assert html_to_text(text) == ("🔥 SiteDown · клиент <b>&\n"
                                  "📊 Панель площадки (https://grafana.example.ru/d/abc?var-site=x&var-check=pc) · "
                                  "https://example.ru/")


def test_a_huge_label_is_cut_and_leaves_the_facts_start_and_links_in_the_block():
    renderer = Renderer(timezone=MOSCOW, grafana_url=GRAFANA, alertmanager_url=ALERTMANAGER,
                        clock=lambda: datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc).timestamp())
    labels = {"alertname": "FnExpiring", "severity": "warning", "site": "shop-12", "kkt": "0651234567",
              "fn": "9999078902014447", "check": "x" * 5000, "client": "Ромашка " * 700}
    notes = {"value": str(datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc).timestamp()),
             "dashboard": "/d/sitewatch-site?var-site=shop-12", "description": "д" * 5000}
    block = one_block(renderer, labels, notes)
    assert message_length(block) <= BLOCK_LIMIT
    assert "ФН 9999078902014447 кассы 0651234567 истекает 02.12.2026, через 10 дней." in block
    assert "🕒 Начало:" in block and "Панель площадки" in block
    # a silence link would carry the 5,000 characters in its address: it is left out, the message stays
    assert "x" * 81 not in block and "x" * 79 in block  # the label is cut to a readable length
    assert_telegram_html(block)


def test_an_english_route_gets_the_same_facts_in_english():
    renderer = Renderer(language="en", timezone=MOSCOW,
                        clock=lambda: datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc).timestamp())
    labels = {"alertname": "FnUnsentDocuments", "severity": "critical", "site": "shop-12", "kkt": "0651234567"}
    notes = {"value": str(datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc).timestamp()), "unsent": "63"}
    block = one_block(renderer, labels, notes)
    assert "Register 0651234567 sends no documents to the OFD: 63 documents waiting; the oldest from 2026-11-01, " \
           "21 days ago; the register blocks on 2026-12-01." in block
    assert "<b>Documents stuck</b> · 🔴 critical" in block


@pytest.mark.parametrize("value", ["-62135605817", "1e18", "253402300800", "-1e12", "nan", "inf"])
def test_a_value_no_calendar_holds_falls_back_to_the_alerts_own_text(value):
    """A .NET "no date" read as 0001-01-01 must not make the block fail (a failing block blocks its chat)."""
    renderer = Renderer(timezone=MOSCOW, clock=lambda: datetime(2026, 12, 3, 7, 0, tzinfo=timezone.utc).timestamp())
    block = one_block(renderer, {"alertname": "KktDataStale", "severity": "warning", "site": "shop-1", "kkt": "001"},
                      {"value": value, "summary": "shop-1: данные ККТ 001 старше трёх дней"})
    assert "shop-1" in block and "001" in block
    assert_telegram_html(block)


def test_a_resolved_sitewatch_alert_leaves_out_the_facts_of_the_moment_it_fired():
    renderer = Renderer(timezone=MOSCOW, clock=lambda: datetime(2026, 12, 3, 7, 0, tzinfo=timezone.utc).timestamp())
    labels = {"alertname": "KktNotAnswering", "severity": "warning", "site": "shop-1", "kkt": "001"}
    notes = {"reason": "port_busy", "target": "COM7"}
    firing = one_block(renderer, labels, notes)
    resolved = one_block(renderer, labels, notes, status="resolved", ends="2026-11-22T12:10:07Z")
    assert "порт занят кассовой программой" in firing
    assert "порт занят" not in resolved and "Касса не читается" in resolved and "Конец" in resolved


def test_a_kodeks_servers_own_statuses_are_said_in_russian():
    renderer = Renderer(timezone=MOSCOW)
    block = one_block(renderer, {"alertname": "KodeksBundleProblem", "severity": "warning", "site": "lib-1",
                                 "catalog": "/law"},
                      {"statuses": "no required volume DB;update DB;something new;", "target": "http://10.0.0.5/"})
    assert "не хватает нужного тома базы; базы обновляются; и другие сообщения сервера" in block
    assert "required" not in block and "something" not in block


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(alertname=st.sampled_from(sorted(WORDINGS) + ["MyOwnAlert"]),
       labels=st.dictionaries(st.sampled_from(["site", "kkt", "fn", "log_fn", "check", "catalog", "name", "flag",
                                               "severity", "instance", "client"]), st.text(max_size=300)),
       notes=st.dictionaries(st.sampled_from(["value", "target", "reason", "unsent", "statuses", "summary"]),
                             st.one_of(st.text(max_size=300), st.floats().map(str), st.integers().map(str))),
       status=st.sampled_from(["firing", "resolved"]))
def test_any_labels_and_annotations_render_a_valid_block_within_the_limit(alertname, labels, notes, status):
    """Whatever a rule or a hostile webhook puts in an alert: a block Telegram accepts, never an exception."""
    renderer = Renderer(timezone=MOSCOW, grafana_url=GRAFANA, alertmanager_url=ALERTMANAGER)
    block = one_block(renderer, {**labels, "alertname": alertname}, notes, status=status,
                      ends="2026-11-22T12:10:07Z" if status == "resolved" else "0001-01-01T00:00:00Z")
    assert message_length(block) <= BLOCK_LIMIT
    assert_telegram_html(block)
