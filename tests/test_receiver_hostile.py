"""The receiver facing hostile and broken input: payloads that once got 500, a bad webhook among good ones,
and a thousand idle or dribbling connections while Alertmanager's webhook must still be answered in a second."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import threading
import time

import pytest
from requests import get as requests_get

from conftest import value_of_metric, wait_until
from receiver_kit import WEBHOOK_TOKEN, alert, payload, post, write_receiver_config

from alertmanager.cli import DELIVERY_NICENESS
from alertmanager.outbox import Chat, NewBatch, NewItem, Outbox, Webhook
from alertmanager.writer import commit_each


def _valid(n: int) -> dict:
    return payload([alert(site=f"shop-{n}")], group_key=f"g{n}")


def _with_lone_surrogate(n: int) -> bytes:
    # json.dumps writes "\ud800" as the six characters \ud800: valid JSON, but not text.
    document = _valid(n)
    document["alerts"][0]["labels"]["client"] = "Ромашка \ud800"
    return json.dumps(document).encode()


HOSTILE = {
    "nested 1,000 deep": (b'{"version": "4", "alerts": ' + b"[" * 1000 + b"]" * 1000 + b"}", "too deeply"),
    "a number of 5,000 digits": (json.dumps(_valid(1)).replace('"truncatedAlerts": 0',
                                                                '"truncatedAlerts": ' + "9" * 5000).encode(),
                                 "number too long"),
    "truncatedAlerts past 64 bits": (json.dumps(_valid(1)).replace('"truncatedAlerts": 0',
                                                                    '"truncatedAlerts": 9223372036854775808').encode(),
                                     "truncatedAlerts: expected a count"),
    "a lone surrogate in a label value": (_with_lone_surrogate(1), "lone UTF-16 surrogate"),
    "a lone surrogate in a label name": (json.dumps(_valid(1)).replace('"site":', '"\\udc00site":').encode(),
                                         "lone UTF-16 surrogate"),
    "a surrogate as raw UTF-8 bytes": (json.dumps(_valid(1), ensure_ascii=False).replace("shop-1", "shop-\udc80", 1)
                                       .encode("utf-8", "surrogatepass"), "not UTF-8"),
}


@pytest.fixture
def receiver(tmp_path, fake_telegram, receiver_process):
    fake = fake_telegram()
    return receiver_process(write_receiver_config(tmp_path, fake.url))


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_payload_gets_400_naming_the_problem_and_the_next_webhook_is_taken(receiver, kind):
    body, named = HOSTILE[kind]
    answer = post(f"{receiver.url}/alert/duty", body)
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["message"]
    assert post(f"{receiver.url}/alert/duty", _valid(2)).json()["status"] == "queued"
    assert "Traceback" not in receiver.log_text()


def test_a_bad_webhook_among_sixteen_senders_never_fails_the_good_ones(receiver):
    """One webhook in ten carries a lone surrogate; the 360 good ones are all stored."""
    def send(n: int) -> tuple[int, int]:
        body = _with_lone_surrogate(n) if n % 10 == 9 else json.dumps(_valid(n)).encode()
        return n, post(f"{receiver.url}/alert/duty", body).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = dict(pool.map(send, range(400)))
    good = {n: status for n, status in answers.items() if n % 10 != 9}
    bad = {n: status for n, status in answers.items() if n % 10 == 9}
    assert set(good.values()) == {200} and len(good) == 360
    assert set(bad.values()) == {400}
    metrics = receiver.metrics()
    assert value_of_metric(metrics, "sitewatch_receiver_alerts_queued_total", route="duty", status="firing") == 360
    assert value_of_metric(metrics, "sitewatch_receiver_webhooks_total", result="bad_payload") == 40


def test_a_webhook_its_commit_refuses_fails_alone_and_the_rest_of_its_group_is_stored(tmp_path):
    """What gets past the payload reader but not SQLite (an integer past 64 bits here) costs only its webhook."""
    outbox = Outbox(tmp_path / "outbox.db")
    chat = Chat("main", "-100", None)

    def webhook(site: str, summary: int = 0) -> Webhook:
        item = NewItem("firing", f"fp-{site}", "", json.dumps(alert(site=site)), summary=summary)
        return Webhook([NewBatch("duty", chat, "{}", [item])], dedup_key=site, dedup_window=600)

    outcomes = commit_each(outbox, [webhook("shop-1"), webhook("shop-2", summary=2**70), webhook("shop-3")])
    assert [type(outcome).__name__ for outcome in outcomes] == ["EnqueueResult", "OverflowError", "EnqueueResult"]
    assert [item.fingerprint for item in outbox.peek(chat.queue)] == ["fp-shop-1", "fp-shop-3"]
    outbox.close()
    assert sqlite3.connect(tmp_path / "outbox.db").execute("SELECT COUNT(*) FROM dedup").fetchone()[0] == 2


def _open(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(first_bytes)
    return sock


def test_eleven_hundred_idle_and_dribbling_connections_do_not_delay_alertmanagers_webhook(receiver):
    """Half the sockets send only a request line, half dribble a header line a second: the limit is 1,000
    connections, and each webhook from Alertmanager (a whole request at once) is still answered in a second."""
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def dribble() -> None:
        line = 0
        while not stop.wait(1.0):
            line += 1
            for sock in list(sockets[1::2]):
                try:
                    sock.send(f"X-Dribble-{line}: 1\r\n".encode())
                except OSError:
                    pass

    try:
        for n in range(1100):
            try:
                sockets.append(_open(receiver.port, b"POST /alert/duty HTTP/1.1\r\n"))
            except OSError:
                pass  # the receiver closed an older one to make room: that is the point
        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        slowest = 0.0
        for n in range(24):  # 12 s: past the 10 s the receiver gives a request head
            started = time.monotonic()
            answer = post(f"{receiver.url}/alert/duty", _valid(1000 + n), timeout=5)
            slowest = max(slowest, time.monotonic() - started)
            assert answer.status_code == 200, answer.text
            if n < 23:
                sockets.append(_open(receiver.port, b"POST /alert/duty HTTP/1.1\r\n"))  # the flood keeps coming
            time.sleep(0.5)
        assert slowest < 1.0
        metrics = receiver.metrics()
        assert value_of_metric(metrics, "sitewatch_receiver_http_refused_total", reason="evicted") >= 100
        assert value_of_metric(metrics, "sitewatch_receiver_http_refused_total", reason="head_timeout") >= 100
        assert value_of_metric(metrics, "sitewatch_receiver_http_connections") <= 1000
        log = receiver.log_text()
        assert log.count("reason=evicted") == 1  # once a minute, however many
        assert "Traceback" not in log
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" in status.read()
    except OSError:
        return True


def test_a_killed_delivery_process_is_started_again_and_a_killed_web_process_takes_it_along(
        tmp_path, fake_telegram, receiver_process):
    fake = fake_telegram()
    receiver = receiver_process(write_receiver_config(tmp_path, fake.url))
    [first] = receiver.children()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: receiver.children() and receiver.children() != [first], 10, what="a new delivery process")
    assert post(f"{receiver.url}/alert/duty", _valid(7)).status_code == 200
    [message] = fake.wait_for_messages(1, timeout=20)
    assert "shop-7" in message.text
    assert value_of_metric(receiver.metrics(), "sitewatch_receiver_delivery_restarts_total") == 1
    assert receiver.log_text().count("event=delivery_exited") == 1
    [second] = receiver.children()
    receiver.process.kill()  # SIGKILL: no chance to stop its child
    receiver.process.wait(10)
    wait_until(lambda: _gone(second), 10, what="the delivery process to stop once its web process is gone")


def _niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[16])  # field 19 of proc(5), counted after the name


def test_the_delivery_process_gives_way_to_the_one_answering_webhooks(tmp_path, fake_telegram, receiver_process):
    """On a busy machine a webhook's answer (50 ms target) matters more than a message's pace (seconds)."""
    receiver = receiver_process(write_receiver_config(tmp_path, fake_telegram().url))
    [child] = receiver.children()
    wanted = min(19, _niceness(receiver.process.pid) + DELIVERY_NICENESS)
    wait_until(lambda: _niceness(child) == wanted, 10, what=f"the delivery process at niceness {wanted}")


def test_a_time_at_the_calendars_end_is_refused_not_left_to_block_the_chat(receiver):
    document = _valid(1)
    document["alerts"][0]["startsAt"] = "9999-12-31T23:59:59-12:00"
    answer = post(f"{receiver.url}/alert/duty", document)
    assert answer.status_code == 400 and "between 1970 and 9000" in answer.json()["message"]


def test_a_thousand_pipelined_bad_payloads_are_each_answered(receiver):
    """Answers made at once on the loop once recursed from one to the next and broke the connection."""
    one = (f"POST /alert/duty HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WEBHOOK_TOKEN}\r\n"
           "Content-Length: 2\r\n\r\n{}").encode()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(one * 1000)
        sock.shutdown(socket.SHUT_WR)
        answers = bytearray()
        while chunk := sock.recv(65536):
            answers += chunk
    assert answers.count(b"HTTP/1.1 400 ") == 1000
    assert "Traceback" not in receiver.log_text()


def test_a_huge_body_without_credentials_is_refused_before_it_is_sent(receiver):
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
        sock.sendall(b"POST /alert/duty HTTP/1.1\r\nHost: x\r\nContent-Length: 16000000\r\n\r\n")
        assert sock.recv(200).startswith(b"HTTP/1.1 401 ")


def test_a_locked_outbox_gets_quick_503s_and_the_server_keeps_answering(receiver, tmp_path):
    holder = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 shell, a backup
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            statuses = list(pool.map(lambda n: post(f"{receiver.url}/alert/duty", _valid(n)).status_code, range(4)))
            took = time.monotonic() - started
        assert statuses == [503] * 4 and took < 5
        started = time.monotonic()
        assert requests_get(f"{receiver.url}/-/healthy").status_code == 200
        assert time.monotonic() - started < 1.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert post(f"{receiver.url}/alert/duty", _valid(9)).status_code == 200


def test_a_stream_of_new_half_sent_and_pipelining_sockets_does_not_lock_alertmanager_out(
        tmp_path, fake_telegram, receiver_process):
    receiver = receiver_process(write_receiver_config(tmp_path, fake_telegram().url), "--web.max-connections", "50")
    stop = threading.Event()
    opened: list[socket.socket] = []

    def flood() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            first = b"G" if n % 2 else b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n" * 50
            try:
                opened.append(_open(receiver.port, first))
            except OSError:
                pass
            time.sleep(0.002)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        time.sleep(1)
        answers = [post(f"{receiver.url}/alert/duty", _valid(n), timeout=5).status_code for n in range(20)]
        assert answers == [200] * 20
    finally:
        stop.set()
        flooder.join(5)
        for sock in opened:
            sock.close()
