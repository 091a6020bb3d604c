"""The helpdesk hand-off against a real helpdesk on loopback (an HTTP server in a thread): what it receives,
that each item arrives once (offered twice, after a restart on the same file, from two processes' objects
on one file, with the file busy, after a route's rename), retries, give-ups, the Bitrix24 body and
answers, helpdesks that misbehave at the socket level, and that a webhook URL's secret never reaches
the log."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alertmanager.config import Helpdesk, Route, load_receiver_config
from alertmanager.helpdesk import HandOff
from alertmanager.helpdesk_body import bitrix24_body, generic_body, item_text, sound
from alertmanager.helpdesk_post import RETRY_AFTER_MOST, Destination, retry_after
from alertmanager.morning import Morning, Worklist
from alertmanager.outbox import Chat, Outbox
from alertmanager.workitem import KINDS, WorkItem
from conftest import free_port, wait_until
from exporter.config import ConfigError
from exporter.redaction import RedactingFilter
from exporter.secrets import SecretValue
from receiver_kit import write_receiver_config

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = 1796371200.0  # 04.12.2026 11:00 МСК
DAY = 86400.0
_STARTED = time.monotonic()


def clock() -> float:
    """The hand-offs' clock: NOW when the tests start, going on as time does. The items' dates are fixed
    around NOW, and a hand-off on the real clock would find them days old (and give them up) on a later
    day."""
    return NOW + (time.monotonic() - _STARTED)

HELPDESK_TOKEN = "helpdesk-bearer-for-tests"
WEBHOOK_CODE = "k9x2secretcode7q"  # a Bitrix24 incoming webhook's secret part of the URL
FN = WorkItem("fn_expiry", "shop-1", {"kkt": "0001234567", "fn": "9999078900012345", "client": "ООО Ромашка"},
              due=NOW + 9 * DAY)
SILENT = WorkItem("site_silent", "shop-2", {"client": "ИП Петров"}, since=NOW - 2.5 * DAY)
CATALOG = WorkItem("catalog_error", "kodeks-1", {"catalog": "Кодекс"})  # fixed from the office: no visit


# --- a helpdesk on loopback -------------------------------------------------------------------------------

class FakeHelpdesk:
    """Records every POST and answers as scripted: (status, body, headers) or ("hang", seconds); then 200."""

    def __init__(self, script=(), ok_body: bytes = b'{"ok": true}', host: str = "127.0.0.1"):
        self.script = list(script)
        self.ok_body = ok_body
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        helpdesk = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with helpdesk.lock:
                    helpdesk.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "at": time.monotonic()})
                    action = helpdesk.script.pop(0) if helpdesk.script else (200, helpdesk.ok_body, {})
                if action[0] == "hang":
                    helpdesk.release.wait(action[1])
                    action = (200, helpdesk.ok_body, {})
                status, answer, headers = action
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(request["body"]) for request in self.requests]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def started():
    """HandOffs and helpdesks made by a test, stopped and closed after it."""
    made: list = []
    yield made
    for thing in reversed(made):
        if isinstance(thing, HandOff):
            thing.stop()
            thing.close()
        else:
            thing.close()


def helpdesk_config(folder: Path, url: str, *, format: str = "generic", extra: str = "", token: bool = True,
                    timeout: str = "0.5s", route: str = "duty"):
    (folder / "helpdesk.url").write_text(url + "\n", encoding="utf-8")
    (folder / "helpdesk.token").write_text(HELPDESK_TOKEN + "\n", encoding="utf-8")
    routes = f"""
  {route}:
    bot: main
    chat_id: -1001000000001
    helpdesk:
      url: {{file: helpdesk.url}}
      format: {format}
      timeout: {timeout}
{"      bearer_token: {file: helpdesk.token}" if token else ""}
{extra}
  other:
    bot: main
    chat_id: -1001000000002
"""
    path = write_receiver_config(folder, "http://127.0.0.1:9", routes=routes,
                                 extra="worklist:\n  prometheus_url: http://127.0.0.1:9\n")
    return load_receiver_config(path)


def hand_off(config, folder: Path, started: list, registry: CollectorRegistry | None = None, **options) -> HandOff:
    options = {"first_retry": 0.1, "max_retry": 0.5, "clock": clock, **options}
    handoff = HandOff(config, folder / "outbox.db", registry, **options)
    started.append(handoff)
    return handoff


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def wait_for(helpdesk: FakeHelpdesk, count: int, timeout: float = 10) -> None:
    wait_until(lambda: helpdesk.count() >= count, timeout, 0.02, f"{count} posts to the helpdesk")


# --- what the helpdesk receives ---------------------------------------------------------------------------

def test_the_helpdesk_gets_each_item_that_needs_a_visit_as_json_with_a_stable_id(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url + "/hooks/sitewatch")
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)

    assert handoff.offer("duty", [FN, SILENT, CATALOG], NOW) == 2
    assert sample(registry, "sitewatch_receiver_helpdesk_pending", route="duty") == 2
    handoff.start(lambda: True)
    wait_for(helpdesk, 2)
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 2, 5, 0.02,
               "two items counted as sent")

    first, second = helpdesk.requests
    assert first["path"] == "/hooks/sitewatch"
    assert first["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert first["headers"]["Authorization"] == f"Bearer {HELPDESK_TOKEN}"
    fn, silent = json.loads(first["body"]), json.loads(second["body"])
    assert fn == {
        "id": f"duty:{FN.key}", "route": "duty", "site": "shop-1", "client": "ООО Ромашка", "kind": "fn_expiry",
        "item": "ФН 9999078900012345 кассы № 0001234567 истекает 13.12.2026, через 9 дней. Закажите новый ФН "
                "и согласуйте с клиентом дату замены и перерегистрации.",
        "due": "2026-12-13", "since": None,
        "labels": {"kkt": "0001234567", "fn": "9999078900012345", "client": "ООО Ромашка"},
        "created_at": "2026-12-04T11:00:00+03:00",
    }
    assert first["headers"]["Idempotency-Key"] == fn["id"]
    assert silent["id"] == f"duty:{SILENT.key}"
    assert silent["item"] == "Площадка молчит: данные не приходят с 01.12.2026 23:00, уже 2 дня. Проверьте, " \
                             "включён ли компьютер площадки, работает ли служба отправки и есть ли интернет."
    assert silent["since"] == "2026-12-01T23:00:00+03:00" and silent["due"] is None
    assert sample(registry, "sitewatch_receiver_helpdesk_queued_total", route="duty") == 2
    assert sample(registry, "sitewatch_receiver_helpdesk_requests_total", route="duty", result="ok") == 2
    assert sample(registry, "sitewatch_receiver_helpdesk_pending", route="duty") == 0


def test_the_same_items_offered_again_and_after_a_restart_are_posted_once(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)
    assert handoff.offer("duty", [FN, SILENT], NOW) == 2
    assert handoff.offer("duty", [SILENT, FN, FN], NOW + 60) == 0  # the same morning, offered again
    handoff.start(lambda: True)
    wait_for(helpdesk, 2)
    handoff.stop()
    handoff.close()

    tomorrow = NOW + DAY
    again = hand_off(config, tmp_path, started)  # the receiver restarted on the same file
    fn_reread = WorkItem(FN.kind, FN.site, FN.labels, due=FN.due + 3600)  # a date re-read: the same item
    new_fn = WorkItem(FN.kind, FN.site, {**FN.labels, "fn": "9999078900099999"}, due=NOW + 20 * DAY)
    assert again.offer("duty", [fn_reread, SILENT, new_fn], tomorrow) == 1
    again.start(lambda: True)
    wait_for(helpdesk, 3)
    time.sleep(0.5)  # time for a wrong second post to show
    assert [body["id"] for body in helpdesk.bodies] == [f"duty:{FN.key}", f"duty:{SILENT.key}",
                                                        f"duty:{new_fn.key}"]


def test_an_offered_item_survives_a_restart_before_it_was_posted(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)
    assert handoff.offer("duty", [FN], NOW) == 1
    handoff.close()  # never started: a crash right after the morning's list

    again = hand_off(config, tmp_path, started)
    again.start(lambda: True)
    wait_for(helpdesk, 1)
    assert helpdesk.bodies[0]["id"] == f"duty:{FN.key}"


def test_an_item_whose_text_does_not_encode_is_still_handed_off_once(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)
    broken = WorkItem("check_down", "shop-\ud800", {"check": "pc\udfff", "type": "ping"}, since=NOW - 2 * DAY,
                      reason="timeout")
    assert handoff.offer("duty", [broken], NOW) == 1
    assert handoff.offer("duty", [broken], NOW + DAY) == 0
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    body = helpdesk.bodies[0]
    assert body["site"] == "shop-\ufffd" and body["labels"] == {"check": "pc\ufffd", "type": "ping"}
    assert body["item"] == "Компьютер «pc\ufffd» не отвечает с 02.12.2026 11:00, уже 2 дня: нет ответа. Проверьте " \
                           "питание, сетевой кабель и коммутатор."


def test_a_route_without_a_helpdesk_hands_off_nothing(tmp_path, started):
    config = helpdesk_config(tmp_path, "http://127.0.0.1:9/hooks")
    handoff = hand_off(config, tmp_path, started)
    assert handoff.offer("other", [FN, SILENT], NOW) == 0
    assert handoff.pending() == {}


def test_only_the_process_holding_the_sender_lease_posts(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)
    active = threading.Event()
    handoff.start(active.is_set)
    handoff.offer("duty", [FN], NOW)
    time.sleep(1.0)
    assert helpdesk.count() == 0
    active.set()
    wait_for(helpdesk, 1)


# --- retries and give-ups ---------------------------------------------------------------------------------

def test_a_server_error_is_retried_and_the_item_delivered_once(tmp_path, started, caplog):
    helpdesk = FakeHelpdesk([(500, b"<html>Internal Server Error</html>", {})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 10, 0.02,
                   "the item delivered")
        time.sleep(0.5)
    assert helpdesk.count() == 2
    assert helpdesk.requests[0]["body"] == helpdesk.requests[1]["body"]  # the same item, the same id
    assert sample(registry, "sitewatch_receiver_helpdesk_requests_total", route="duty", result="server_error") == 1
    lines = [record.getMessage() for record in caplog.records]
    trouble = [line for line in lines if "event=helpdesk_unavailable" in line]
    assert len(trouble) == 1 and "kind=server_error" in trouble[0] and "HTTP 500" in trouble[0]
    assert any("event=helpdesk_recovered" in line for line in lines)


def test_too_many_requests_waits_as_long_as_retry_after_says(tmp_path, started):
    helpdesk = FakeHelpdesk([(429, b'{"error": "QUERY_LIMIT_EXCEEDED"}', {"Retry-After": "1"})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 2)
    assert helpdesk.requests[1]["at"] - helpdesk.requests[0]["at"] >= 0.95


def test_a_refused_item_is_given_up_logged_once_counted_and_offered_again_next_time(tmp_path, started, caplog):
    refusal = json.dumps({"error": "ERROR_CORE", "error_description": "Не указан ответственный"}).encode()
    helpdesk = FakeHelpdesk([(400, refusal, {})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_failed_total", route="duty",
                                  reason="rejected") == 1, 10, 0.02, "the item given up")
        time.sleep(0.5)
    assert helpdesk.count() == 1  # a 400 is not retried
    dead = [record for record in caplog.records if "event=helpdesk_dead_letter" in record.getMessage()]
    assert len(dead) == 1 and dead[0].levelno == logging.ERROR
    assert "status=400" in dead[0].getMessage()
    assert "ERROR_CORE: Не указан ответственный" in dead[0].getMessage()
    assert f"id=duty:{FN.key}" in dead[0].getMessage()
    assert [(row["route"], row["key"], row["reason"]) for row in handoff.dead_letters()] == [("duty", FN.key,
                                                                                             "rejected")]
    assert handoff.offer("duty", [FN], NOW + DAY) == 1  # forgotten: the next morning tries again
    wait_for(helpdesk, 2)


def test_a_hanging_helpdesk_hits_the_timeout_and_the_item_is_retried(tmp_path, started):
    helpdesk = FakeHelpdesk([("hang", 10)])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)  # timeout: 0.5s
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 10, 0.02,
               "the item delivered on a second try")
    first, second = helpdesk.requests[:2]
    assert 0.5 <= second["at"] - first["at"] < 3
    assert sample(registry, "sitewatch_receiver_helpdesk_requests_total", route="duty", result="timeout") == 1


def test_an_item_not_accepted_within_the_give_up_time_is_given_up(tmp_path, started, caplog):
    helpdesk = FakeHelpdesk([(502, b"bad gateway", {})] * 1000)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry, give_up_after=1.5)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], clock())
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_failed_total", route="duty",
                                  reason="expired") == 1, 10, 0.05, "the item given up as expired")
    assert helpdesk.count() >= 2
    dead = [record.getMessage() for record in caplog.records if "event=helpdesk_dead_letter" in record.getMessage()]
    assert len(dead) == 1 and "reason=expired" in dead[0] and "HTTP 502" in dead[0]
    assert handoff.pending() == {}


# --- Bitrix24 -----------------------------------------------------------------------------------------------

def test_bitrix24_gets_a_task_with_the_id_in_its_description_and_the_due_date_as_deadline(tmp_path, started):
    helpdesk = FakeHelpdesk(ok_body=b'{"result": {"task": {"id": "110"}}}')
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24", token=False)
    handoff = hand_off(config, tmp_path, started)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    request = helpdesk.requests[0]
    assert request["path"] == f"/rest/7/{WEBHOOK_CODE}/tasks.task.add.json"
    assert "Authorization" not in request["headers"]
    fields = json.loads(request["body"])["fields"]
    assert fields["TITLE"] == "ФН истекает: shop-1, касса 0001234567"
    assert fields["DESCRIPTION"].splitlines() == [
        "ФН 9999078900012345 кассы № 0001234567 истекает 13.12.2026, через 9 дней. Закажите новый ФН и согласуйте "
        "с клиентом дату замены и перерегистрации.", "",
        "Площадка: shop-1", "Клиент: ООО Ромашка", "Касса: 0001234567", "ФН: 9999078900012345", "Срок: 13.12.2026",
        f"Код в мониторинге: duty:{FN.key}"]
    assert fields["DEADLINE"] == "2026-12-13T11:00:00+03:00"
    assert fields["RESPONSIBLE_ID"] == 7  # the webhook's own user


def test_bitrix24_tasks_go_to_the_configured_responsible_and_the_method_url_is_taken_as_is(tmp_path, started):
    helpdesk = FakeHelpdesk(ok_body=b'{"result": {"task": {"id": "111"}}}')
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/tasks.task.add.json",
                             format="bitrix24", extra="      responsible_id: 12")
    handoff = hand_off(config, tmp_path, started)
    handoff.offer("duty", [SILENT], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    assert helpdesk.requests[0]["path"] == f"/rest/7/{WEBHOOK_CODE}/tasks.task.add.json"
    fields = helpdesk.bodies[0]["fields"]
    assert fields["RESPONSIBLE_ID"] == 12 and "DEADLINE" not in fields
    assert fields["TITLE"] == "Площадка молчит: shop-2"


def test_a_bitrix24_error_answered_with_200_is_a_refusal(tmp_path, started):
    helpdesk = FakeHelpdesk([(200, b'{"error": "ACCESS_DENIED", "error_description": "Access denied"}', {})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_failed_total", route="duty",
                              reason="rejected") == 1, 10, 0.02, "the refusal counted")
    assert sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 0


def test_the_webhook_url_and_its_secret_code_never_reach_the_log(tmp_path, started, caplog):
    echo = json.dumps({"error": "INVALID_CREDENTIALS", "error_description": f"bad hook /rest/7/{WEBHOOK_CODE}/"})
    helpdesk = FakeHelpdesk([(503, b"busy", {"Retry-After": "0"}), (401, echo.encode(), {})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")
    closed = free_port()  # nothing listens here: a network error
    (tmp_path / "down").mkdir()
    down = helpdesk_config(tmp_path / "down", f"http://127.0.0.1:{closed}/rest/7/{WEBHOOK_CODE}/",
                           format="bitrix24")
    ours = RawLines()  # the receiver's own lines, as written, before any filter
    logging.getLogger("sitewatch.receiver").addHandler(ours)
    caplog.handler.addFilter(RedactingFilter())  # every logger's lines, as the receiver's log file gets them
    try:
        with caplog.at_level(logging.DEBUG):
            run_into_trouble(config, down, tmp_path, started)
    finally:
        logging.getLogger("sitewatch.receiver").removeHandler(ours)
    text = "\n".join(ours.lines)
    assert "event=helpdesk_dead_letter" in text and "status=401" in text and "event=helpdesk_unavailable" in text
    assert f"host=127.0.0.1:{closed}" in text and "reason=expired" in text
    assert WEBHOOK_CODE not in text and "/rest/7/" not in text
    everything = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "HTTP/1.1" in everything  # the HTTP library's debug lines were there, naming the request's path
    assert WEBHOOK_CODE not in everything


class RawLines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_into_trouble(config, down, tmp_path: Path, started: list) -> None:
    """A 503, then a 401 whose answer echoes the URL; and a helpdesk nobody listens at, given up after 1 s."""
    handoff = hand_off(config, tmp_path, started)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    unreachable = hand_off(down, tmp_path / "down", started, give_up_after=1.0)
    unreachable.offer("duty", [SILENT], clock())
    unreachable.start(lambda: True)
    wait_until(lambda: len(handoff.dead_letters()) == 1 and len(unreachable.dead_letters()) == 1, 10, 0.05,
               "both items given up")
    for row in handoff.dead_letters() + unreachable.dead_letters():
        assert WEBHOOK_CODE not in row["detail"]


@pytest.mark.parametrize("url", [f"ftp://files.example.ru/{WEBHOOK_CODE}", f"https://b24.example.ru:99999/rest/7/"
                                                                           f"{WEBHOOK_CODE}/"])
def test_a_helpdesk_url_no_request_can_use_stops_the_start_naming_the_place(tmp_path, url):
    config = helpdesk_config(tmp_path, url)
    with pytest.raises(ConfigError) as caught:
        HandOff(config, tmp_path / "outbox.db")
    message = str(caught.value)
    assert "routes.duty.helpdesk.url: expected an http:// or https:// URL" in message
    assert "line " in message and "file helpdesk.url" in message
    assert WEBHOOK_CODE not in message


def test_a_bearer_token_no_header_can_carry_stops_the_start_naming_the_place(tmp_path):
    config = helpdesk_config(tmp_path, "http://127.0.0.1:9/hooks")
    (tmp_path / "helpdesk.token").write_text("tоken-with-a-cyrillic-о\n", encoding="utf-8")
    config = load_receiver_config(config.source)
    with pytest.raises(ConfigError) as caught:
        HandOff(config, tmp_path / "outbox.db")
    message = str(caught.value)
    assert "routes.duty.helpdesk.bearer_token: expected a token of printable ASCII characters" in message
    assert "line " in message and "file helpdesk.token" in message and "cyrillic" not in message


# --- any labels, any numbers ----------------------------------------------------------------------------

ANY_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=40),  # surrogates, controls, anything
    st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=8), st.integers(1000, 30000)),
)
ANY_NUMBER = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(kind="fn_expiry", site="\ud800", labels={"kkt": "\udfff" * 3, "\ud83d": "x" * 100_000}, due=float("nan"),
         since=1e300, count=float("inf"), reason="\udc80", now=0.0)
@given(kind=st.sampled_from(sorted(KINDS)), site=ANY_TEXT,
       labels=st.dictionaries(st.sampled_from(["kkt", "fn", "check", "client", "catalog", "name", "distributor"])
                              | ANY_TEXT, ANY_TEXT, max_size=6),
       due=ANY_NUMBER, since=ANY_NUMBER, count=ANY_NUMBER, reason=st.one_of(st.none(), ANY_TEXT),
       now=st.floats(0, 4e9))
def test_any_labels_and_numbers_make_valid_json_and_never_crash(kind, site, labels, due, since, count, reason, now):
    item = WorkItem(kind, site, labels, due=due, since=since, count=count, reason=reason)
    key = sound(item).key  # the key of the item as stored: its text made encodable
    line = item_text(item, MOSCOW, now)
    assert line and "\n" not in line
    for helpdesk in (Helpdesk(SecretValue("plain", "https://helpdesk.example.ru/hook", "url")),
                     Helpdesk(SecretValue("plain", "https://b24.example.ru/rest/1/abcd/", "url"), format="bitrix24")):
        destination = Destination(Route("duty", "main", -1), helpdesk, MOSCOW)
        body = destination.body(item, now)
        document = json.loads(body.decode("utf-8"))  # strict UTF-8, and JSON without NaN
        if helpdesk.format == "generic":
            assert document["id"] == f"duty:{key}" and document["item"] == line
            assert all(len(value) <= 1024 for value in document["labels"].values())
        else:
            assert document["fields"]["DESCRIPTION"].endswith(f"duty:{key}")
            assert len(document["fields"]["TITLE"]) <= 200
    assert generic_body("duty", item, MOSCOW, now)["kind"] == kind
    assert bitrix24_body("duty", item, MOSCOW, now, None)["fields"].get("RESPONSIBLE_ID") is None


# --- the example -----------------------------------------------------------------------------------------

def test_the_example_config_loads_and_keeps_its_helpdesk_secrets_out_of_the_file(tmp_path, monkeypatch):
    import yaml

    from conftest import ROOT

    example = ROOT / "examples" / "helpdesk" / "receiver.yml"
    text = example.read_text(encoding="utf-8")
    for route in yaml.safe_load(text)["routes"].values():
        for name in ("url", "bearer_token"):
            value = (route.get("helpdesk") or {}).get(name)
            assert value is None or isinstance(value, dict), f"{name} written in plain text"
    (tmp_path / "bitrix-webhook.url").write_text(f"https://b24.example.ru/rest/1/{WEBHOOK_CODE}/\n")
    for name in ("SITEWATCH_DUTY_BOT_TOKEN", "SITEWATCH_RECEIVER_TOKEN", "SITEWATCH_PARTNER_HELPDESK_TOKEN"):
        monkeypatch.setenv(name, "example-secret-value")
    monkeypatch.setenv("SITEWATCH_PARTNER_HELPDESK_URL", "https://helpdesk.partner.example.ru/hooks/sitewatch")
    copy = tmp_path / "receiver.yml"
    copy.write_text(text.replace("/etc/sitewatch/bitrix-webhook.url", str(tmp_path / "bitrix-webhook.url"))
                    .replace("/var/lib/sitewatch/receiver.db", str(tmp_path / "receiver.db")), encoding="utf-8")
    config = load_receiver_config(copy)
    handoff = HandOff(config, config.outbox_path)
    try:
        assert {name: (d.helpdesk.format, d.host, d.responsible_id) for name, d in handoff.destinations.items()} == {
            "duty": ("bitrix24", "b24.example.ru", 17), "partner": ("generic", "helpdesk.partner.example.ru", None)}
        assert handoff.destinations["duty"].url.endswith(f"/rest/1/{WEBHOOK_CODE}/tasks.task.add.json")
    finally:
        handoff.close()


# --- helpdesks that misbehave ------------------------------------------------------------------------------

class RawHelpdesk:
    """A helpdesk at the socket level, for answers no HTTP server library gives: it reads each request,
    then `answer(connection, number, stop)` writes what it likes, or nothing (number counts from 1)."""

    def __init__(self, answer):
        self.answer = answer
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def count(self) -> int:
        with self.lock:
            return len(self.times)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536) or b"\r\n\r\n"
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += connection.recv(65536)
                with self.lock:
                    self.times.append(time.monotonic())
                    number = len(self.times)
                self.answer(connection, number, self.stop)
            except OSError:
                pass  # the client cut the connection

    def close(self) -> None:
        self.stop.set()
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept under way
        except OSError:
            pass
        self.server.close()
        self.thread.join(5)


def answer_with(connection: socket.socket, status: str, body: bytes, content_type: str = "application/json") -> None:
    connection.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                       f"Connection: close\r\n\r\n".encode() + body)


BITRIX_TASK = b'{"result": {"task": {"id": "110"}}, "time": {"start": 1796371200.1}}'


def test_stop_does_not_wait_for_a_helpdesk_that_took_the_connection_and_never_answers(tmp_path, started):
    helpdesk = RawHelpdesk(lambda connection, number, stop: stop.wait(60))
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url, timeout="30s")
    handoff = hand_off(config, tmp_path, started)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    began = time.monotonic()
    handoff.stop()
    assert time.monotonic() - began < 1.0  # the request under way is cut, not waited for
    assert not [thread for thread in threading.enumerate() if thread.name == "receiver-helpdesk"]
    assert handoff.pending() == {"duty": 1}  # kept for the next start, not counted as a failed try
    assert handoff.store.waiting("duty", 10)[0].last_error == ""


def test_an_answer_trickled_a_byte_at_a_time_is_cut_at_twice_the_timeout(tmp_path, started):
    def trickle(connection, number, stop):
        if number > 1:
            return answer_with(connection, "200 OK", BITRIX_TASK)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        while not stop.wait(0.1):  # each byte well within the read timeout
            connection.sendall(b" ")

    helpdesk = RawHelpdesk(trickle)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")  # timeout 0.5s
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 6, 0.02,
               "the item delivered after the trickling answer was cut")
    first, second = helpdesk.times[:2]
    assert 1.0 <= second - first < 2.5
    assert sample(registry, "sitewatch_receiver_helpdesk_requests_total", route="duty", result="timeout") == 1


@pytest.mark.parametrize("format", ["generic", "bitrix24"])
def test_a_huge_or_endless_answer_is_read_no_further_than_needed(tmp_path, started, format):
    def flood(connection, number, stop):
        if number == 1:  # 100 MB announced
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
                               + BITRIX_TASK)
            filler = b" " * 65536
        else:  # chunks without end
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            connection.sendall(head + b"%x\r\n%s\r\n" % (len(BITRIX_TASK), BITRIX_TASK))
            filler = b"10000\r\n" + b" " * 65536 + b"\r\n"
        while not stop.is_set():
            connection.sendall(filler)

    helpdesk = RawHelpdesk(flood)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format=format)
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    began = time.monotonic()
    handoff.offer("duty", [FN, SILENT], NOW)
    handoff.start(lambda: True)
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 2, 5, 0.02,
               "both items taken")
    assert time.monotonic() - began < 3


def test_a_redirect_to_another_host_is_not_followed_and_its_address_stays_out_of_the_log(tmp_path, started):
    elsewhere = FakeHelpdesk(host="127.0.0.2")
    started.append(elsewhere)
    target = f"{elsewhere.url}/oauth/authorize/?hook={WEBHOOK_CODE}"
    page = f'<html><head><title>Moved</title></head><body><a href="{target}">{target}</a></body></html>'
    helpdesk = FakeHelpdesk([(301, page.encode(), {"Location": target})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")
    registry = CollectorRegistry()
    ours = RawLines()
    logging.getLogger("sitewatch.receiver").addHandler(ours)
    try:
        handoff = hand_off(config, tmp_path, started, registry)
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_failed_total", route="duty",
                                  reason="rejected") == 1, 5, 0.02, "the redirect given up")
        time.sleep(0.3)
    finally:
        logging.getLogger("sitewatch.receiver").removeHandler(ours)
    assert elsewhere.count() == 0 and helpdesk.count() == 1
    text = "\n".join(ours.lines)
    assert WEBHOOK_CODE not in text and "/oauth/" not in text
    assert WEBHOOK_CODE not in handoff.dead_letters()[0]["detail"]
    assert f"HTTP 301 to {elsewhere.url}, not followed" in text and "status=301" in text


def test_retry_after_is_read_as_seconds_or_an_http_date_and_kept_within_an_hour(monkeypatch):
    assert retry_after("120") == 120.0
    assert retry_after(" 1.5 ") == 1.5
    assert retry_after("1e9") == RETRY_AFTER_MOST == 3600.0
    assert retry_after("-5") == 0.0
    for nonsense in ("soon", "", None, "nan", "inf", "-inf", "Wed, 99 Foo 2026"):
        assert retry_after(nonsense) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after("Fri, 01 Jan 2100 00:00:00 GMT") == 3600.0
    monkeypatch.setenv("TZ", "Asia/Yekaterinburg")  # a zone-less date is GMT all the same, not local time
    time.tzset()
    try:
        soon = time.strftime("%a, %d %b %Y %H:%M:%S", time.gmtime(time.time() + 60))
        assert 55 <= retry_after(soon) <= 60
        assert 55 <= retry_after(soon + " GMT") <= 60
    finally:
        monkeypatch.undo()
        time.tzset()


def test_retry_after_is_honoured_on_any_answer_that_is_retried(tmp_path, started):
    helpdesk = FakeHelpdesk([(502, b"bad gateway", {"Retry-After": "1"})])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = hand_off(config, tmp_path, started)  # its own pause: 0.1 s
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 2)
    assert helpdesk.requests[1]["at"] - helpdesk.requests[0]["at"] >= 0.95


def test_a_bitrix24_maintenance_page_is_retried_and_named_by_its_title(tmp_path, started, caplog):
    page = ("<!DOCTYPE html><html><head><meta charset=utf-8><title>Портал на обслуживании</title><style>body "
            "{font: 14px Arial}</style></head><body><h1>Ведутся технические работы</h1></body></html>").encode()
    helpdesk = FakeHelpdesk([(503, page, {"Retry-After": "1", "Content-Type": "text/html; charset=utf-8"})],
                            ok_body=BITRIX_TASK)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 5, 0.02,
                   "the task made after the maintenance")
    assert helpdesk.requests[1]["at"] - helpdesk.requests[0]["at"] >= 0.95
    trouble = [record.getMessage() for record in caplog.records if "event=helpdesk_unavailable" in record.getMessage()]
    assert len(trouble) == 1 and "cause='HTTP 503: Портал на обслуживании'" in trouble[0]


def test_a_bitrix24_answer_without_a_result_made_no_task_and_a_result_in_pieces_did(tmp_path, started, caplog):
    login = "<html><head><title>Авторизация</title></head><body>Войдите в портал</body></html>".encode()

    def portal(connection, number, stop):
        if number == 1:  # the portal's login page: no REST answer at all
            return answer_with(connection, "200 OK", login, "text/html; charset=utf-8")
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (BITRIX_TASK[:9], BITRIX_TASK[9:30], BITRIX_TASK[30:]):
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.05)
        connection.sendall(b"0\r\n\r\n")

    helpdesk = RawHelpdesk(portal)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, f"{helpdesk.url}/rest/7/{WEBHOOK_CODE}/", format="bitrix24")
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_failed_total", route="duty",
                                  reason="rejected") == 1, 5, 0.02, "the login page taken for a refusal")
    assert sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 0
    dead = [record.getMessage() for record in caplog.records if "event=helpdesk_dead_letter" in record.getMessage()]
    assert len(dead) == 1 and "HTTP 200, not a Bitrix24 answer: Авторизация" in dead[0]
    assert "incoming webhook's address" in dead[0]
    assert handoff.offer("duty", [FN], NOW + DAY) == 1  # forgotten: the next morning tries again
    wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 5, 0.02,
               "the task made from an answer in three chunks")


# --- one file, several writers ------------------------------------------------------------------------------

def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process takes the file's write lock and keeps it `seconds`; returns once it holds it."""
    locker = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
                               "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                               "db.execute('BEGIN IMMEDIATE')\n"
                               "print('locked', flush=True)\n"
                               "time.sleep(float(sys.argv[2]))\n"
                               "db.execute('COMMIT')\n", str(path), str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    return locker


def ended(locker: subprocess.Popen) -> None:
    try:
        locker.wait(30)
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait()
        locker.stdout.close()


def test_two_receivers_sharing_the_file_never_post_an_item_twice(tmp_path, started):
    helpdesk = FakeHelpdesk([("hang", 0.2)] * 12)
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    one, two = hand_off(config, tmp_path, started), hand_off(config, tmp_path, started)
    items = [WorkItem("site_silent", f"shop-{number}", {}, since=NOW - 2 * DAY) for number in range(6)]
    assert one.offer("duty", items, NOW) == 6 and two.offer("duty", items, NOW) == 0
    one.start(lambda: True)  # both think they hold the lease: a hand-over while a post is under way
    two.start(lambda: True)
    wait_until(lambda: one.pending() == {}, 10, 0.05, "every item posted")
    time.sleep(0.5)
    ids = [body["id"] for body in helpdesk.bodies]
    assert sorted(ids) == sorted(f"duty:{item.key}" for item in items)


def test_what_the_helpdesk_took_is_not_posted_again_when_the_file_is_busy_at_that_moment(tmp_path, started, caplog):
    helpdesk = FakeHelpdesk([("hang", 0.8)])
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url, timeout="3s")
    registry = CollectorRegistry()
    handoff = hand_off(config, tmp_path, started, registry, busy_timeout=0.3)
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        handoff.offer("duty", [FN], NOW)
        handoff.start(lambda: True)
        wait_for(helpdesk, 1)
        locker = hold_write_lock(tmp_path / "outbox.db", 2.5)  # taken while the helpdesk answers
        try:
            wait_until(lambda: sample(registry, "sitewatch_receiver_helpdesk_sent_total", route="duty") == 1, 5,
                       0.02, "the item taken")
        finally:
            ended(locker)
        wait_until(lambda: handoff.pending() == {}, 5, 0.05, "the delivery noted as posted")
        time.sleep(0.5)
    assert helpdesk.count() == 1
    lines = [record.getMessage() for record in caplog.records]
    assert len([line for line in lines if "event=helpdesk_error " in line]) <= 1  # once per spell, not per round
    assert any("event=helpdesk_outcome_not_noted_yet" in line and "outcome=sent" in line for line in lines)


class BusyDuringTheOffer(HandOff):
    """The real hand-off, whose file another process locks just as the morning's items are offered."""

    lock_for = 2.5
    locker: subprocess.Popen | None = None

    def offer(self, route, items, now) -> int:
        if self.locker is None:
            self.locker = hold_write_lock(self.store.path, self.lock_for)
        return super().offer(route, items, now)


def test_the_morning_list_is_queued_and_its_visits_follow_when_the_file_is_busy_during_the_offer(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    handoff = BusyDuringTheOffer(config, tmp_path / "outbox.db", None, clock=clock, first_retry=0.1,
                                 max_retry=0.5, busy_timeout=0.5)
    started.append(handoff)
    handoff.start(lambda: True)
    outbox = Outbox(tmp_path / "outbox.db")
    morning = Morning(config, outbox, lambda: True, handoff=handoff, clock=clock)
    began = time.monotonic()
    try:
        assert morning.queue(Worklist("duty", (FN, SILENT, CATALOG), ("<b>Что сделать сегодня</b>",)),
                             key="worklist:duty:2026-12-04") == 1
        # The offer gave up after its 0.5 s and kept the items; the list waited for the file, no longer.
        assert time.monotonic() - began < BusyDuringTheOffer.lock_for + 2.0
        assert outbox.enqueue_text("duty", Chat("main", "-1001000000001", None), ["again"],
                                   key="worklist:duty:2026-12-04") == 0  # the list is stored
    finally:
        ended(handoff.locker)
        outbox.close()
    wait_for(helpdesk, 2)
    time.sleep(0.5)
    assert sorted(body["id"] for body in helpdesk.bodies) == sorted([f"duty:{FN.key}", f"duty:{SILENT.key}"])


def test_a_route_renamed_while_items_wait_hands_each_open_item_off_once(tmp_path, started, caplog):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    handoff = hand_off(helpdesk_config(tmp_path, helpdesk.url), tmp_path, started)
    handoff.offer("duty", [FN], NOW)
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    handoff.stop()
    handoff.offer("duty", [SILENT], NOW + 60)  # stored, not posted yet
    handoff.close()

    renamed = helpdesk_config(tmp_path, helpdesk.url, route="dispatch")  # the same helpdesk, a new name
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        again = hand_off(renamed, tmp_path, started)
        again.start(lambda: True)
        wait_until(lambda: again.pending() == {}, 5, 0.05, "the old name's waiting item given up")
    assert again.offer("dispatch", [FN, SILENT], NOW + DAY) == 1  # FN's task exists; SILENT was never posted
    wait_for(helpdesk, 2)
    time.sleep(0.5)
    assert [body["id"] for body in helpdesk.bodies] == [f"duty:{FN.key}", f"dispatch:{SILENT.key}"]
    dead = [record.getMessage() for record in caplog.records if "event=helpdesk_dead_letter" in record.getMessage()]
    assert len(dead) == 1 and "route=duty" in dead[0] and "reason=unconfigured" in dead[0] and "renamed" in dead[0]


def test_a_file_written_before_claims_and_hosts_were_kept_is_brought_up_to_date(tmp_path, started):
    helpdesk = FakeHelpdesk()
    started.append(helpdesk)
    config = helpdesk_config(tmp_path, helpdesk.url)
    with sqlite3.connect(tmp_path / "outbox.db") as db:  # the tables as the first build of the hand-off made them
        db.executescript("""
            CREATE TABLE helpdesk_handed (route TEXT NOT NULL, key TEXT NOT NULL, first_at REAL NOT NULL,
                                          seen_at REAL NOT NULL, PRIMARY KEY (route, key));
            CREATE TABLE helpdesk_deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, route TEXT NOT NULL,
                key TEXT NOT NULL, item TEXT NOT NULL, created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT NOT NULL DEFAULT '', UNIQUE (route, key));
        """)
        item = json.dumps({"kind": FN.kind, "site": FN.site, "labels": FN.labels, "due": FN.due, "since": None,
                           "count": None, "reason": None})
        db.execute("INSERT INTO helpdesk_handed VALUES ('duty', ?, ?, ?)", (FN.key, NOW, NOW))
        db.execute("INSERT INTO helpdesk_deliveries (route, key, item, created_at) VALUES ('duty', ?, ?, ?)",
                   (FN.key, item, NOW))
    db.close()
    handoff = hand_off(config, tmp_path, started)
    assert handoff.offer("duty", [FN], NOW + DAY) == 0  # still known
    handoff.start(lambda: True)
    wait_for(helpdesk, 1)
    assert helpdesk.bodies[0]["id"] == f"duty:{FN.key}"
