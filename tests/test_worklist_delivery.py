"""The morning worklist end to end: a real Prometheus holding three sites' registers and licences, a real
Alertmanager with the project's own routing tree, the receiver process and the fake Telegram.

Each route's chat gets its list at its time, with its sites only (as Alertmanager would route their
alerts), once a day even across a restart; a list due just before midnight in its route's zone goes out
after it; `/today` in a chat says the same, in a private chat every route's, and within seconds however
slowly Prometheus answers; a route whose time has not come gets nothing; Prometheus down means no list
yet and a log line, then the list once it is back; a dry run hands nothing to a helpdesk.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from conftest import ROOT, wait_until
from demo import timing
from receiver_kit import ReceiverProcess, write_receiver_config
from alertmanager.worklist_text import WEEKDAYS
from simulators.telegram import parse_html

MOSCOW = ZoneInfo("Europe/Moscow")
DUTY_CHAT, KKT_THREAD, SPB_CHAT, POS_CHAT, LATER_CHAT = -1001000000101, 42, -1001000000102, -1001000000103, \
    -1001000000104
ALLOWED_USER = 5550001


def exposition(now: float) -> str:
    """Three sites: one of the Кодекс distributor, one of the POS partner, one of our own."""
    day = 86400
    lines = []
    sites = (("spb-01", "kodeks-spb", "0651111111"), ("pos-07", "pos-service", "0652222222"),
             ("own-03", "", "0653333333"))
    for index, (site, distributor, kkt) in enumerate(sites):
        labels = f'site="{site}",client="клиент {index}",distributor="{distributor}",check="till-1",type="kkt"'
        fn = f"99990789020{index:05d}"
        lines.append(f'sitewatch_fn_expiry_timestamp_seconds{{{labels},kkt="{kkt}",fn="{fn}"}} '
                     f"{now + (5 + 10 * index) * day:.0f}")
        lines.append(f'sitewatch_kkt_data_timestamp_seconds{{{labels},kkt="{kkt}"}} {now - 60:.0f}')
        lines.append(f'sitewatch_fn_unsent_documents{{{labels},kkt="{kkt}"}} 0')
        lines.append(f'sitewatch_fn_oldest_unsent_document_timestamp_seconds{{{labels},kkt="{kkt}"}} 0')
    # The POS partner's site has documents stuck for 26 days: its ФН blocks in 4.
    pos = 'site="pos-07",client="клиент 1",distributor="pos-service",check="till-1",type="kkt",kkt="0652222222"'
    lines = [line for line in lines if not line.startswith(("sitewatch_fn_unsent_documents{site=\"pos-07\"",
                                                            "sitewatch_fn_oldest_unsent_document_timestamp_seconds"
                                                            "{site=\"pos-07\""))]
    lines.append(f"sitewatch_fn_unsent_documents{{{pos}}} 17")
    lines.append(f"sitewatch_fn_oldest_unsent_document_timestamp_seconds{{{pos}}} {now - 26 * day:.0f}")
    # The Кодекс distributor's server: its licence ends in 5 days (a warning: the duty group hears of it).
    lines.append('sitewatch_kodeks_licence_expiry_timestamp_seconds{site="spb-01",client="клиент 0",'
                 f'distributor="kodeks-spb",check="kodeks",type="kodeks"}} {now + 5 * day:.0f}')
    return "\n".join(lines) + "\n"


class MetricsPage:
    """A loopback page Prometheus scrapes, standing for the sites' exporters."""

    def __init__(self, text: str):
        page = text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def routing_config(receiver_url: str, token_file: Path) -> str:
    """The project's own alertmanager.yml, its webhooks pointed at the test's receiver."""
    document = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    timing.point_webhooks(document, receiver_url, token_file)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as the config writes them


def receiver_routes(now_local: datetime) -> str:
    due = (now_local - timedelta(minutes=1)).strftime("%H:%M")
    # Three hours from now, on that moment's weekday only: not due now, whichever day that is (near midnight
    # a daily time three hours on would be a time of the morning already past).
    later_moment = now_local + timedelta(hours=3)
    later, later_day = later_moment.strftime("%H:%M"), DAY_NAMES[later_moment.weekday()]
    return f"""
  duty:
    bot: main
    chat_id: {DUTY_CHAT}
    worklist: {{at: "{due}", days: daily}}
  kkt:
    bot: main
    chat_id: {DUTY_CHAT}
    thread_id: {KKT_THREAD}
    worklist: {{at: "{due}", days: daily}}
  kodeks-spb:
    bot: main
    chat_id: {SPB_CHAT}
    worklist: {{at: "{due}", days: daily}}
  pos:
    bot: main
    chat_id: {POS_CHAT}
    worklist: {{at: "{later}", days: [{later_day}]}}
  info:
    bot: main
    chat_id: {LATER_CHAT}
    worklist: false
  watchdog:
    bot: main
    chat_id: {LATER_CHAT}
    worklist: false
"""


@pytest.fixture
def fleet(tmp_path, prometheus, alertmanager, fake_telegram):
    now = time.time()
    page = MetricsPage(exposition(now))
    try:
        prometheus_url = prometheus([page.target], honor_labels=True)
        wait_until(lambda: requests.get(f"{prometheus_url}/api/v1/query", timeout=5, params={
            "query": "count(sitewatch_fn_expiry_timestamp_seconds)"}).json()["data"]["result"], 30,
            what="Prometheus to scrape the sites")
        telegram = fake_telegram()
        telegram.add_chat(DUTY_CHAT, type="supergroup", is_forum=True)  # the kkt route posts to a topic
        for chat in (SPB_CHAT, POS_CHAT, LATER_CHAT):
            telegram.add_chat(chat, type="supergroup")
        config = write_receiver_config(tmp_path, telegram.url)
        receiver = ReceiverProcess(config, tmp_path / "receiver.log")
        alertmanager_url = alertmanager(routing_config(receiver.url, tmp_path / "webhook.token"))
        extra = f"""
commands:
  alertmanager_url: {alertmanager_url}
  allowed_chats: [{DUTY_CHAT}, {SPB_CHAT}, {POS_CHAT}]
  allowed_users: [{ALLOWED_USER}]
  poll_timeout: 2s
worklist:
  prometheus_url: {prometheus_url}
"""
        write_receiver_config(tmp_path, telegram.url, routes=receiver_routes(datetime.now(MOSCOW)), extra=extra)
        yield telegram, receiver, prometheus_url
    finally:
        page.close()


def texts(telegram, chat: int) -> list[str]:
    return [parse_html(m.text) if m.parse_mode else m.text for m in telegram.messages(chat)]


def worklists(telegram, chat: int) -> list[str]:
    return [text for text in texts(telegram, chat) if "сегодня" in text.splitlines()[0]]


def same_list(answer: list[str], morning: list[str], answered: float, sent: float) -> bool:
    """Whether /today's `answer` says what the `morning` list said: word for word, or, when midnight came
    between them (both unix times), the same sites (their days left are a day fewer)."""
    if datetime.fromtimestamp(answered, MOSCOW).date() == datetime.fromtimestamp(sent, MOSCOW).date():
        return answer == morning

    def sites(texts: list[str]) -> set[str]:
        return set(re.findall(r"\b(?:spb|pos|own)-\d+\b", "\n".join(texts)))
    return sites(answer) == sites(morning) != set()


def test_each_chat_gets_its_own_sites_list_once_at_its_time(fleet):
    telegram, receiver, _ = fleet
    receiver.start()
    try:
        wait_until(lambda: worklists(telegram, SPB_CHAT) and len(worklists(telegram, DUTY_CHAT)) >= 2, 60,
                   what="the lists of the routes that are due")
        spb = "\n".join(worklists(telegram, SPB_CHAT))
        # The distributor's chat: its own site only, the ФН and the Кодекс licence.
        assert "spb-01" in spb and "pos-07" not in spb and "own-03" not in spb
        assert "9999078902000000" in spb and "ФН" in spb
        duty = "\n".join(worklists(telegram, DUTY_CHAT))
        # The duty group (the kkt topic and the duty route) gets every site's registers: the distributors'
        # routes go on to our own chats, as in alertmanager.yml.
        for site in ("spb-01", "pos-07", "own-03"):
            assert site in duty
        assert "17" in duty  # the stuck documents
        # The POS partner's list is not due for three hours; the info and watchdog routes have none.
        time.sleep(3)
        assert worklists(telegram, POS_CHAT) == [] and worklists(telegram, LATER_CHAT) == []
        for text in (spb, duty):
            assert "sitewatch_" not in text and "site=" not in text and "{" not in text
        # Sent once a day: a restart does not send it again.
        before = len(telegram.messages())
        receiver.stop()
        receiver.start()
        time.sleep(25)  # longer than a tick of the worklist's clock
        assert len(worklists(telegram, SPB_CHAT)) == 1
        assert len(telegram.messages()) == before
    finally:
        receiver.stop()


def test_today_in_a_chat_says_what_its_morning_list_said(fleet):
    telegram, receiver, _ = fleet
    receiver.start()
    try:
        wait_until(lambda: worklists(telegram, SPB_CHAT), 60, what="the distributor's list")
        morning = worklists(telegram, SPB_CHAT)
        before = len(telegram.messages(SPB_CHAT))
        telegram.user_says(SPB_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: len(telegram.messages(SPB_CHAT)) > before, 30, what="the answer to /today")
        answer = texts(telegram, SPB_CHAT)[before:]
        assert same_list(answer, morning, telegram.messages(SPB_CHAT)[before].date,
                         telegram.messages(SPB_CHAT)[0].date), answer
        # In the POS partner's chat, whose list is not due yet, /today gives its own sites now.
        before = len(telegram.messages(POS_CHAT))
        telegram.user_says(POS_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: len(telegram.messages(POS_CHAT)) > before, 30, what="the answer to /today")
        pos = "\n".join(texts(telegram, POS_CHAT)[before:])
        assert "pos-07" in pos and "spb-01" not in pos and "own-03" not in pos
        # In the POS team's topic of the duty group, the topic's own list: the registers, not the licence.
        def in_topic(thread):
            return [parse_html(m.text) for m in telegram.messages(DUTY_CHAT) if m.message_thread_id == thread]

        wait_until(lambda: in_topic(KKT_THREAD), 60, what="the POS team's list")
        topic_morning = [text for text in in_topic(KKT_THREAD) if "сегодня" in text.splitlines()[0]]
        before = len(in_topic(KKT_THREAD))
        telegram.user_says(DUTY_CHAT, "/today", user_id=ALLOWED_USER, message_thread_id=KKT_THREAD)
        wait_until(lambda: len(in_topic(KKT_THREAD)) > before, 30, what="the answer to /today in the topic")
        answer = in_topic(KKT_THREAD)[before:]
        assert same_list(answer, topic_morning, telegram.messages(DUTY_CHAT)[-1].date,
                         telegram.messages(DUTY_CHAT)[0].date), answer
        assert "Регистрационный файл" not in "\n".join(answer)
    finally:
        receiver.stop()


def test_without_prometheus_the_list_waits_and_says_why_once(fleet):
    telegram, receiver, prometheus_url = fleet
    config = receiver.config
    text = config.read_text(encoding="utf-8").replace(prometheus_url, "http://127.0.0.1:9")
    config.write_text(text, encoding="utf-8")
    receiver.start()
    try:
        wait_until(lambda: "event=worklist_unavailable" in receiver.log_text(), 60, what="the log line")
        assert worklists(telegram, SPB_CHAT) == []
        assert receiver.log_text().count("event=worklist_unavailable") == 1
        metrics = receiver.metrics()
        assert 'sitewatch_receiver_worklists_total{result="unavailable",route="kodeks-spb"}' in metrics
        # /today says why in Russian, once marked.
        telegram.user_says(SPB_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: texts(telegram, SPB_CHAT), 30, what="the answer to /today")
        assert texts(telegram, SPB_CHAT) == ["⚠️ Список дел не составлен: сервер мониторинга недоступен. Подробности — "
                                             "в журнале получателя."]
    finally:
        receiver.stop()


def test_without_alertmanager_the_list_waits_and_today_says_why(fleet):
    telegram, receiver, prometheus_url = fleet
    text = receiver.config.read_text(encoding="utf-8")
    where = f"  prometheus_url: {prometheus_url}\n"
    receiver.config.write_text(text.replace(where, where + "  alertmanager_url: http://127.0.0.1:9\n"), encoding="utf-8")
    receiver.start()
    try:
        # Without the routing tree no chat gets a list: every site in every chat would show a partner's
        # chat what is not theirs.
        wait_until(lambda: "event=worklist_unavailable" in receiver.log_text(), 60, what="the log line")
        assert "the worklist cannot be routed" in receiver.log_text()
        telegram.user_says(SPB_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: texts(telegram, SPB_CHAT), 30, what="the answer to /today")
        assert texts(telegram, SPB_CHAT) == ["⚠️ Список дел не составлен: не удалось узнать у сервера оповещений, "
                                             "какие площадки относятся к какому чату. Подробности — в журнале "
                                             "получателя."]
        assert worklists(telegram, DUTY_CHAT) == [] and worklists(telegram, POS_CHAT) == []
    finally:
        receiver.stop()


def test_check_config_says_whether_the_lists_can_be_made_and_routed(fleet):
    telegram, receiver, prometheus_url = fleet
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "-c", str(receiver.config)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ok   worklist data: Prometheus at {prometheus_url} answers: 5 item(s) to do now" in result.stdout
    assert "ok   worklist routing: Alertmanager's routing tree read: its receivers post to duty, info, kkt, " \
           "kodeks-spb, pos, watchdog" in result.stdout
    # Prometheus gone: the check fails and says why.
    text = receiver.config.read_text(encoding="utf-8").replace(prometheus_url, "http://127.0.0.1:9")
    receiver.config.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "-c", str(receiver.config)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "BAD  worklist data: " in result.stdout, result.stdout


def test_by_hand_the_list_is_printed_or_queued_for_the_running_receiver(fleet):
    telegram, receiver, _ = fleet
    command = [sys.executable, "-m", "alertmanager.cli", "worklist", "-c", str(receiver.config)]
    printed = subprocess.run([*command, "--route", "pos"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith(f"\n──── Telegram → route pos: chat {POS_CHAT} ────\n📋 Что сделать сегодня")
    assert "pos-07" in printed.stdout and "spb-01" not in printed.stdout and "<b>" not in printed.stdout
    assert telegram.messages() == []  # printing sends nothing
    # Two routes posting to one chat: one list there, as at the list's time.
    shared = subprocess.run([*command, "--route", "info", "--route", "watchdog"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.count("──── Telegram →") == 1, shared.stdout
    assert f"──── Telegram → routes info, watchdog (one chat, one list): chat {LATER_CHAT} ────" in shared.stdout
    unknown = subprocess.run([*command, "--route", "nowhere"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert unknown.returncode == 2 and "no route named nowhere" in unknown.stderr
    queued = subprocess.run([*command, "--route", "pos", "--send"], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert queued.returncode == 0 and "queued for route pos: 2 items, 1 message" in queued.stdout, queued.stdout
    receiver.start()  # the outbox holds the list: the receiver delivers it, with the lists that are due
    try:
        wait_until(lambda: worklists(telegram, POS_CHAT), 30, what="the queued list")
        assert "pos-07" in worklists(telegram, POS_CHAT)[0]
    finally:
        receiver.stop()


def with_routes(config: Path, routes: str) -> None:
    """The receiver config with these routes instead of the fleet's."""
    text = config.read_text(encoding="utf-8")
    head, rest = text.split("routes:", 1)
    config.write_text(f"{head}routes:{routes}\nauth:{rest.split(chr(10) + 'auth:', 1)[1]}", encoding="utf-8")


def zone_at_hour(hour: int) -> str:
    """A zone whose local time is now `hour` o'clock (Etc/GMT zones have every whole offset)."""
    offset = (hour - datetime.now(timezone.utc).hour) % 24
    if offset > 14:
        offset -= 24
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-3 is UTC+3


def test_a_list_due_at_23_59_goes_out_after_midnight_in_its_route_zone(fleet):
    telegram, receiver, _ = fleet
    zone = zone_at_hour(0)  # just past midnight there, whatever the server's zone and day
    today = datetime.now(ZoneInfo(zone))
    yesterday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today - timedelta(days=1)).weekday()]
    with_routes(receiver.config, f"""
  kodeks-spb:
    bot: main
    chat_id: {SPB_CHAT}
    timezone: {zone}
    worklist: {{at: "23:59", days: [{yesterday}]}}
""")
    receiver.start()
    try:
        # Yesterday's list there, due at 23:59, was missed while the receiver was down: it is within late_by.
        wait_until(lambda: worklists(telegram, SPB_CHAT), 60, what="yesterday's list, after midnight")
        first = worklists(telegram, SPB_CHAT)[0].splitlines()[0]
        assert f", {WEEKDAYS[today.weekday()]} {today:%d.%m}: " in first, first  # what to do today, there
        assert "spb-01" in worklists(telegram, SPB_CHAT)[0]
    finally:
        receiver.stop()


NO_ROUTE_CHAT = -1001000000105


def test_today_in_a_private_chat_lists_every_route_sites_once_and_elsewhere_says_why_not(fleet):
    telegram, receiver, _ = fleet
    text = receiver.config.read_text(encoding="utf-8")
    receiver.config.write_text(text.replace("allowed_chats: [", f"allowed_chats: [{NO_ROUTE_CHAT}, "),
                               encoding="utf-8")
    telegram.add_chat(ALLOWED_USER, type="private")
    telegram.add_chat(NO_ROUTE_CHAT, type="supergroup")
    receiver.start()
    try:
        telegram.user_says(ALLOWED_USER, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: texts(telegram, ALLOWED_USER), 30, what="the answer in the private chat")
        private = "\n".join(texts(telegram, ALLOWED_USER))
        for site in ("spb-01", "pos-07", "own-03"):
            assert private.count(f"🏪 {site}") == 1, private
        assert private.count("9999078902000001") == 1  # the POS site's ФН: routed to two chats, said once
        assert "Регистрационный файл сервера Кодекс" in private  # the distributor's chat's item too
        telegram.user_says(NO_ROUTE_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: texts(telegram, NO_ROUTE_CHAT), 30, what="the answer in a chat no route posts to")
        assert texts(telegram, NO_ROUTE_CHAT)[0].startswith("В этот чат бот не присылает ни оповещений, ни списков "
                                                            "дел"), texts(telegram, NO_ROUTE_CHAT)
    finally:
        receiver.stop()


class SlowPrometheus:
    """A loopback proxy in front of Prometheus that holds every request `delay` seconds."""

    def __init__(self, upstream: str, delay: float):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                answer = requests.post(upstream + self.path, data=body, timeout=30,
                                       headers={"Content-Type": self.headers.get("Content-Type", "")})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_slow_prometheus_holds_the_bot_up_for_seconds_not_minutes(fleet):
    telegram, receiver, prometheus_url = fleet
    slow = SlowPrometheus(prometheus_url, 3.0)  # eleven questions: over half a minute for a list
    try:
        text = receiver.config.read_text(encoding="utf-8").replace(prometheus_url, slow.url)
        receiver.config.write_text(text.replace("worklist:\n", "worklist:\n  timeout: 5s\n"), encoding="utf-8")
        receiver.start()
        asked = time.monotonic()
        telegram.user_says(SPB_CHAT, "/today", user_id=ALLOWED_USER)
        telegram.user_says(POS_CHAT, "/help", user_id=ALLOWED_USER)
        wait_until(lambda: texts(telegram, POS_CHAT), 30, what="the answer to /help")
        assert time.monotonic() - asked < 20  # /today gave up after its 8 s; /help waited no longer (not 33 s)
        assert texts(telegram, SPB_CHAT) == ["⚠️ Список дел не составлен: сервер мониторинга не ответил за 8 с. "
                                             "Утренний список придёт в своё время, а /today можно повторить позже."]
        # The first one still runs out its queries: a second is told so at once, not queued behind it.
        telegram.user_says(SPB_CHAT, "/today", user_id=ALLOWED_USER)
        wait_until(lambda: len(texts(telegram, SPB_CHAT)) == 2, 10, what="the answer to the second /today")
        assert texts(telegram, SPB_CHAT)[1].startswith("⏳ Предыдущий список дел ещё составляется")
        # The morning list waits for Prometheus as long as its timeout allows, and goes out.
        wait_until(lambda: worklists(telegram, SPB_CHAT), 90, what="the morning list, slowly")
        assert "spb-01" in worklists(telegram, SPB_CHAT)[0]
        stopping = time.monotonic()
        receiver.stop()
        assert time.monotonic() - stopping < 15
    finally:
        receiver.stop()
        slow.close()


class Helpdesk:
    """A loopback helpdesk that counts what it is sent."""

    def __init__(self):
        self.posts: list[bytes] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                posts.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/tasks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_dry_run_prints_the_lists_and_hands_nothing_to_the_helpdesk(fleet, tmp_path):
    telegram, receiver, _ = fleet
    helpdesk = Helpdesk()
    try:
        (tmp_path / "helpdesk.url").write_text(helpdesk.url + "\n", encoding="utf-8")
        due = (datetime.now(MOSCOW) - timedelta(minutes=1)).strftime("%H:%M")
        with_routes(receiver.config, f"""
  pos:
    bot: main
    chat_id: {POS_CHAT}
    worklist: {{at: "{due}", days: daily}}
    helpdesk: {{url: {{file: helpdesk.url}}}}
""")
        dry = ReceiverProcess(receiver.config, tmp_path / "dry.log", extra_args=("--dry-run",))
        dry.start()
        try:
            wait_until(lambda: "event=worklist_queued" in dry.log_text(), 60, what="the list")
            wait_until(lambda: "pos-07" in dry.log_text(), 30, what="the list printed")
            time.sleep(5)  # the hand-off posts at once when it runs
            assert helpdesk.posts == [] and telegram.messages() == []
        finally:
            dry.stop()
    finally:
        helpdesk.close()
