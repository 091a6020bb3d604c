"""The worklist's Russian text (alertmanager/worklist_text.py) as a dispatcher reads it on a phone: the
counts and their plural forms, dates in the chat's zone, the order of sites, escaping, and the split into
Telegram messages; then made-up lists of every shape (hypothesis) must always give valid Telegram HTML
within its limit, with every item said once and every site's block whole.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertmanager.telegram_html import html_to_text, markup_problem, message_length
from alertmanager.workitem import KINDS, WorkItem
from alertmanager.worklist_text import item_line, render

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 12, 4, 8, 30, tzinfo=MOSCOW).timestamp()  # a Friday
DAY, HOUR = 86400, 3600
TITLE = "Что сделать сегодня"
MARKS = ("🔴", "🟠", "🔵")


def midnight(day: int, month: int, year: int = 2026, zone=MOSCOW) -> float:
    return datetime(year, month, day, tzinfo=zone).timestamp()


def fn(site: str, due: float, kkt: str = "065001234567890", **labels) -> WorkItem:
    return WorkItem("fn_expiry", site, {"kkt": kkt, "fn": "9999078902014447", **labels}, due=due)


def header(messages: list[str]) -> str:
    return messages[0].split("\n", 1)[0]


@pytest.mark.parametrize("sites, per_site, counts", [
    (1, 1, "1 площадка, 1 дело"),
    (2, 2, "2 площадки, 4 дела"),
    (5, 1, "5 площадок, 5 дел"),
    (11, 2, "11 площадок, 22 дела"),
    (21, 1, "21 площадка, 21 дело"),
    (3, 4, "3 площадки, 12 дел"),
])
def test_the_header_gives_the_day_and_counts_in_russian_plurals(sites, per_site, counts):
    items = [fn(f"shop-{s:02d}", NOW + 10 * DAY, kkt=str(1000 + k)) for s in range(sites) for k in range(per_site)]
    assert header(render(items, MOSCOW, NOW, title=TITLE)) == f"📋 <b>{TITLE}, пт 04.12: {counts}</b>"


def test_the_day_is_the_chats_own():
    """At 23:30 Moscow time it is already Saturday in Yekaterinburg."""
    late = datetime(2026, 12, 4, 23, 30, tzinfo=MOSCOW).timestamp()
    assert "сб 05.12" in header(render([fn("shop-01", late + 9 * DAY)], ZoneInfo("Asia/Yekaterinburg"), late,
                                       title=TITLE))
    assert render([], ZoneInfo("Asia/Yekaterinburg"), late, title="На сегодня") == \
        ["✅ <b>На сегодня, сб 05.12</b>: на сегодня дел нет."]


@pytest.mark.parametrize("due, said", [
    (midnight(29, 12), "истекает 29.12.2026, через 25 дней"),
    (midnight(5, 12), "истекает 05.12.2026, завтра"),
    (midnight(6, 12), "истекает 06.12.2026, через 2 дня"),
    (midnight(25, 12), "истекает 25.12.2026, через 21 день"),
    (midnight(4, 12), "истёк 04.12.2026, сегодня"),
    (midnight(3, 12), "истёк 03.12.2026, вчера"),
    (midnight(2, 12), "истёк 02.12.2026, 2 дня назад"),
    (midnight(13, 11), "истёк 13.11.2026, 21 день назад"),
    (midnight(12, 11), "истёк 12.11.2026, 22 дня назад"),
    (midnight(15, 8), "истёк 15.08.2026, 111 дней назад"),
    (midnight(18, 12), "истекает 18.12.2026, через 14 дней"),
    (midnight(26, 12), "истекает 26.12.2026, через 22 дня"),
    (midnight(26, 3, 2027), "истекает 26.03.2027, через 112 дней"),
    (midnight(25, 3, 2027), "истекает 25.03.2027, через 111 дней"),
    (midnight(29, 11), "истёк 29.11.2026, 5 дней назад"),
])
def test_a_fns_end_is_said_with_its_date_and_the_days_left_or_past(due, said):
    line = item_line(fn("shop-01", due, model="MITSU-1-F 001"), MOSCOW, NOW)
    assert line.endswith(f"ФН 9999078902014447 кассы MITSU-1-F 001 № 065001234567890 {said}")
    late = due <= NOW
    assert line.startswith("🔴" if late or due - NOW < 3 * DAY else "🟠" if due - NOW < 30 * DAY else "🔵")


@pytest.mark.parametrize("zone", ["Europe/Kaliningrad", "Europe/Moscow", "Asia/Yekaterinburg", "Asia/Vladivostok"])
def test_a_date_at_the_sites_midnight_is_the_same_date_in_every_russian_zone(zone):
    """A ФН ends at 00:00 of its date in the site's zone (Moscow here); Kaliningrad's clock reads 23:00 the
    evening before then, and must still say the 29th."""
    line = item_line(fn("shop-01", midnight(29, 12)), ZoneInfo(zone), NOW)
    assert "истекает 29.12.2026, через 25 дней" in line, line


@pytest.mark.parametrize("now, zone, due, said", [
    # The list made at 22:00 in Moscow; a ФН whose end the register gives as 21:42 that day (not a midnight)
    (datetime(2026, 12, 4, 22, 0, tzinfo=MOSCOW), MOSCOW, datetime(2026, 12, 4, 21, 42, tzinfo=MOSCOW),
     "🔴 ФН 9999078902014447 кассы № 065001234567890 истёк 04.12.2026, сегодня"),
    (datetime(2026, 12, 4, 8, 30, tzinfo=MOSCOW), MOSCOW, datetime(2026, 12, 4, 21, 42, tzinfo=MOSCOW),
     "🔴 ФН 9999078902014447 кассы № 065001234567890 истекает 04.12.2026, сегодня"),
    # Kaliningrad at 23:30 is 00:30 in Moscow: a Moscow site's ФН ended half an hour ago, on its 5th
    (datetime(2026, 12, 4, 23, 30, tzinfo=ZoneInfo("Europe/Kaliningrad")), ZoneInfo("Europe/Kaliningrad"),
     datetime(2026, 12, 5, tzinfo=MOSCOW), "🔴 ФН 9999078902014447 кассы № 065001234567890 истёк 05.12.2026, сегодня"),
    # Vladivostok at 01:00 on the 5th (18:00 the 4th in Moscow): a Moscow site's ФН ends on the 29th
    (datetime(2026, 12, 5, 1, 0, tzinfo=ZoneInfo("Asia/Vladivostok")), ZoneInfo("Asia/Vladivostok"),
     datetime(2026, 12, 29, tzinfo=MOSCOW), "🟠 ФН 9999078902014447 кассы № 065001234567890 истекает 29.12.2026, "
                                            "через 24 дня"),
    # a Vladivostok site's ФН, read in Kaliningrad (16:00 the evening before, there)
    (datetime(2026, 12, 4, 8, 30, tzinfo=ZoneInfo("Europe/Kaliningrad")), ZoneInfo("Europe/Kaliningrad"),
     datetime(2026, 12, 29, tzinfo=ZoneInfo("Asia/Vladivostok")),
     "🟠 ФН 9999078902014447 кассы № 065001234567890 истекает 29.12.2026, через 25 дней"),
])
def test_the_date_and_days_of_an_end_hold_at_any_hour_in_any_zone(now, zone, due, said):
    """Never «-1 дней назад», never the next day's date for an end late in the evening."""
    assert item_line(fn("shop-01", due.timestamp()), zone, now.timestamp()) == said


@pytest.mark.parametrize("count, words", [
    (1, "ждёт 1 документ"), (2, "ждут 2 документа"), (5, "ждут 5 документов"), (11, "ждут 11 документов"),
    (21, "ждёт 21 документ"), (1234, "ждут 1\u00a0234 документа"),
])
def test_unsent_documents_agree_with_their_number(count, words):
    item = WorkItem("ofd_backlog", "shop-01", {"kkt": "065001234567890"}, count=count, since=NOW - 21 * DAY,
                    due=NOW + 9 * DAY)
    line = item_line(item, MOSCOW, NOW)
    assert line == (f"🔴 Касса № 065001234567890 не передаёт документы в ОФД: {words}; самый старый от 13.11.2026, "
                    "21 день назад; касса заблокируется 13.12.2026, через 9 дней")


@pytest.mark.parametrize("count", [float("inf"), float("nan"), 0.4])
def test_a_count_no_register_can_have_is_left_out(count):
    """+Inf unsent documents (a broken exporter) made the whole list fail; now the line says what it can."""
    item = WorkItem("ofd_backlog", "shop-01", {"kkt": "065001234567890"}, count=count, since=NOW - 5 * DAY,
                    due=NOW + 25 * DAY)
    assert item_line(item, MOSCOW, NOW) == ("🟠 Касса № 065001234567890 не передаёт документы в ОФД; самый старый от "
                                            "29.11.2026, 5 дней назад; касса заблокируется 29.12.2026, через 25 дней")
    assert len(render([item], MOSCOW, NOW, title=TITLE)) == 1


def test_the_day_a_register_blocks_is_the_chats_date_even_on_a_whole_hour():
    """30 days after a document sent at 18:00 Moscow time is 18:00 too: midnight in Yakutsk, but a moment,
    not a site's date, so it is the chat's 4th, not the 5th."""
    item = WorkItem("ofd_backlog", "shop-01", {"kkt": "065001234567890"}, count=2,
                    since=datetime(2026, 11, 4, 18, 0, tzinfo=MOSCOW).timestamp(),
                    due=datetime(2026, 12, 4, 18, 0, tzinfo=MOSCOW).timestamp())
    assert item_line(item, MOSCOW, NOW).endswith("касса заблокируется 04.12.2026, сегодня")


def test_a_blocked_register_is_said_blocked():
    item = WorkItem("ofd_backlog", "shop-01", {"kkt": "065001234567890"}, count=3, since=NOW - 32 * DAY,
                    due=NOW - 2 * DAY)
    assert item_line(item, MOSCOW, NOW).endswith("касса заблокирована 02.12.2026, 2 дня назад")


@pytest.mark.parametrize("item, line", [
    (WorkItem("site_silent", "s", {}, since=NOW - 3 * DAY - 600),
     "🔴 Площадка молчит: данные не приходят с 01.12.2026 08:20, уже 3 дня"),
    (WorkItem("site_silent", "s", {"check": "getad", "source": "getad"}, since=NOW - 30 * HOUR),
     "🔴 Не приходят данные касс (проверка «getad») с 03.12.2026 02:30, уже 1 д 6 ч"),
    (WorkItem("check_down", "s", {"check": "pc", "type": "ping"}, since=NOW - 2 * DAY, reason="timeout"),
     "🔴 Компьютер «pc» не отвечает с 02.12.2026 08:30, уже 2 дня: нет ответа"),
    (WorkItem("check_down", "s", {"check": "web", "type": "http"}, since=NOW - 2 * DAY, reason="maintenance"),
     "🟠 Страница «web» в режиме обслуживания с 02.12.2026 08:30, уже 2 дня"),
    (WorkItem("check_down", "s", {"check": "kodeks", "type": "kodeks"}, since=NOW - 2 * DAY, reason="weird"),
     "🔴 Сервер Кодекс «kodeks» не отвечает с 02.12.2026 08:30, уже 2 дня"),
    (WorkItem("check_down", "s", {"check": "getad", "type": "getad"}, since=NOW - 2 * DAY, reason="not_found"),
     "🟠 Проверка «getad» не проходит с 02.12.2026 08:30, уже 2 дня: не найдено: нет порта, папки или файла"),
    (WorkItem("kkt_not_read", "s", {"kkt": "COM7", "check": "till"}, since=NOW - 4 * DAY),
     "🟠 Данные кассы COM7 получены 30.11.2026 08:30, 4 дня назад"),
    (WorkItem("kodeks_licence", "s", {"check": "kodeks"}, due=midnight(1, 1, 2027)),
     "🔵 Регистрационный файл сервера Кодекс «kodeks» истекает 01.01.2027, через 28 дней"),
    (WorkItem("kkt_licence", "s", {"kkt": "00106108", "model": "АТОЛ 22 v2 Ф", "name": "ФФД 1.2"},
              due=midnight(1, 12)),
     "🔴 Лицензия «ФФД 1.2» кассы АТОЛ 22 v2 Ф № 00106108 истекла 01.12.2026, 3 дня назад"),
    (WorkItem("catalog_error", "s", {"catalog": "/docs"}, reason="product_control"),
     "🟠 Контроль комплекта каталога /docs сообщает о проблеме"),
    (WorkItem("catalog_error", "s", {"catalog": "/docs"}, reason="main_page,product_control"),
     "🔴 Главная страница каталога /docs построена с ошибкой; контроль комплекта каталога /docs сообщает о проблеме"),
])
def test_each_kind_is_said_in_plain_words(item, line):
    assert item_line(item, MOSCOW, NOW) == line


def test_a_date_no_calendar_holds_leaves_the_line_without_it():
    line = item_line(fn("shop-01", 1e18), MOSCOW, NOW)
    assert line == "🔵 ФН 9999078902014447 кассы № 065001234567890 скоро истекает"


def test_sites_come_most_urgent_first_and_items_too():
    items = [
        fn("a-calm", NOW + 20 * DAY),
        WorkItem("kkt_licence", "b-late", {"kkt": "1", "name": "x"}, due=NOW + 20 * DAY),
        fn("b-late", NOW - DAY, kkt="2"),  # already late: first of all
        WorkItem("site_silent", "c-silent", {}, since=NOW - 2 * DAY),
        WorkItem("check_down", "d-down", {"check": "pc", "type": "ping"}, since=NOW - 3 * DAY),
        WorkItem("kodeks_licence", "e-info", {"check": "k"}, due=NOW + 20 * DAY),
    ]
    text = render(items, MOSCOW, NOW, title=TITLE)[0]
    assert re.findall(r"^🏪 <b>([^<]+)</b>", text, re.MULTILINE) == ["b-late", "d-down", "c-silent", "a-calm", "e-info"]
    block = text.split("🏪 <b>b-late</b>\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block[0].startswith("🔴 ФН") and block[1].startswith("🟠 Лицензия")


def test_every_value_is_escaped_and_no_label_name_is_shown():
    item = WorkItem("check_down", "<b>shop</b> & co", {"client": "ООО «Рога & копыта» <script>", "check": "a<b>c",
                                                       "type": "tcp"}, since=NOW - 2 * DAY)
    (text,) = render([item], MOSCOW, NOW, title="Дела <сегодня>")
    assert all(markup_problem(line) == "" for line in text.splitlines()), text
    visible = html_to_text(text)
    assert "🏪 <b>shop</b> & co · клиент ООО «Рога & копыта» <script>" in visible
    assert "Порт «a<b>c» недоступен" in visible and "Дела <сегодня>" in visible
    assert "check" not in visible and "client" not in visible and "type" not in visible


def test_a_long_label_value_is_cut_as_alert_messages_cut_it():
    item = fn("shop-" + "x" * 200, NOW + 10 * DAY)
    site_line = render([item], MOSCOW, NOW, title=TITLE)[0].split("\n")[2]
    assert site_line.endswith("x…</b>") and len(html_to_text(site_line)) < 100


def test_a_site_longer_than_a_message_is_split_between_its_lines():
    items = [fn("big-site", NOW + 10 * DAY, kkt=f"{n:015d}", model="M" * 60) for n in range(60)]
    items.append(fn("small-site", NOW + 20 * DAY))
    messages = render(items, MOSCOW, NOW, title=TITLE)
    assert len(messages) >= 2 and all(message_length(m) <= 4096 for m in messages)
    lines = [line for m in messages for line in m.splitlines() if line.startswith(MARKS)]
    assert len(lines) == 61
    assert "(продолжение)" in messages[1].split("\n", 1)[0]


@pytest.mark.parametrize("title", ["Т" * n for n in range(1, 40, 3)])
def test_a_site_with_300_items_keeps_every_item_and_says_its_site_in_every_message(title):
    """Each message within 4096 UTF-16 code units, whatever the lengths; every item once, in order; a
    message that goes on with the site says the site again, so no item is read without its site."""
    items = [fn("big-site", NOW + 10 * DAY, kkt=f"{n:015d}", model="M" * 33, client="ООО «Рога & копыта» 🙂")
             for n in range(300)]
    items.append(WorkItem("check_down", "small", {"check": "pc", "type": "ping"}, since=NOW - 2 * DAY))
    messages = render(items, MOSCOW, NOW, title=title)
    assert len(messages) > 3
    kkts = []
    for index, text in enumerate(messages):
        assert message_length(text) <= 4096, (index, message_length(text))
        assert all(markup_problem(line) == "" for line in text.splitlines())
        lines = text.split("\n")
        if index:
            assert lines[0] == f"📋 <b>{title}, пт 04.12</b> (продолжение)" and lines[1] == ""
        site = None
        for line in lines:
            if line.startswith("🏪"):
                site = line
            elif line.startswith(MARKS):
                assert site is not None, f"message {index} has an item before any site: {line}"
                if "big-site" in site:
                    kkts.append(re.search(r"№ (\d+)", line).group(1))
        if index:
            assert lines[2] == "🏪 <b>big-site</b> · клиент ООО «Рога &amp; копыта» 🙂 (продолжение)"
    assert kkts == [f"{n:015d}" for n in range(300)]  # every one, once, in the register's order


# --- any list at all -------------------------------------------------------------------------------------

LABEL_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
MOMENTS = st.one_of(st.none(), st.floats(min_value=NOW - 400 * DAY, max_value=NOW + 400 * DAY),
                    st.sampled_from([0.0, 1e18, -1e12, float("inf"), float("nan")]))


@st.composite
def work_items(draw):
    kind = draw(st.sampled_from(sorted(KINDS)))
    labels = draw(st.dictionaries(st.sampled_from(["client", "kkt", "fn", "check", "catalog", "name", "model", "type",
                                                   "source"]), LABEL_TEXT, max_size=6))
    return WorkItem(kind, draw(st.sampled_from(["shop-01", "shop-02", "<&>", "магазин", ""]) | LABEL_TEXT), labels,
                    due=draw(MOMENTS), since=draw(MOMENTS),
                    count=draw(st.one_of(st.none(), st.integers(0, 10**7), st.floats(allow_nan=True, allow_infinity=True))),
                    reason=draw(st.one_of(st.none(), st.sampled_from(
                        ["timeout", "main_page", "main_page,product_control", "maintenance", "x"]))))


@settings(max_examples=150, deadline=None)
@given(items=st.lists(work_items(), max_size=300), zone=st.sampled_from(["Europe/Moscow", "Asia/Kamchatka", "UTC"]))
def test_any_worklist_is_valid_telegram_html_within_the_limit_with_every_item_once(items, zone):
    messages = render(items, ZoneInfo(zone), NOW, title=TITLE)
    assert messages
    for text in messages:
        assert message_length(text) <= 4096
        assert all(markup_problem(line) == "" for line in text.splitlines()), text
    if not items:
        assert len(messages) == 1 and "дел нет" in messages[0]
        return
    said = [line for text in messages for line in text.splitlines() if line.startswith(MARKS)]
    assert len(said) == len(items)
    sites = {item.site for item in items}
    site_lines = [line for text in messages for line in text.splitlines()
                  if line.startswith("🏪") and not line.endswith(" (продолжение)")]
    assert len(site_lines) == len(sites)
    for text in messages:  # no item without its site above it in the same message
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        assert all(block.startswith("🏪") for block in body.split("\n\n")), text


def test_a_day_with_a_clock_change_still_counts_calendar_days():
    """Moscow keeps no summer time, Berlin does: 29 March 2026 has 23 hours there."""
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 28, 8, 30, tzinfo=berlin).timestamp()
    due = (datetime(2026, 3, 28, tzinfo=berlin) + timedelta(days=3)).timestamp()
    assert item_line(fn("s", due), berlin, now).endswith("истекает 31.03.2026, через 3 дня")
