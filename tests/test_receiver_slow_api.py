"""A slow Telegram and a backed-up chat: what the duty engineer sees in the chat.

The receiver runs for real (create_app, its sender threads, a SQLite outbox) against the fake Bot API on
loopback, with timeouts and rate limits shrunk so that minutes of Telegram behaviour take seconds.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from pathlib import Path

import requests

from alertmanager.app import receiver_of
from alertmanager.outbox import Chat, NewBatch, NewItem, Outbox, Webhook
from conftest import value_of_metric
from receiver_kit import (BOT_TOKEN, GROUP_CHAT, WEBHOOK_TOKEN, alert, payload, sites_in, started_at, wait_for,
                          write_receiver_config)
from simulators.telegram import RateLimits

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def send(app, alerts: list[dict], group_key: str) -> None:
    answer = app.test_client().post("/alert/duty", json=payload(alerts, group_key), headers=AUTH)
    assert answer.status_code == 200, answer.get_data(as_text=True)


def metric(app, name: str, **labels: str) -> float | None:
    return value_of_metric(app.test_client().get("/metrics").get_data(as_text=True), name, **labels)


def config(tmp_path: Path, fake, *, timeout: str = "2s", rate_limits: str = "") -> Path:
    path = write_receiver_config(tmp_path, fake.url, telegram_extra=f"  rate_limits: {rate_limits}" if rate_limits
                                 else "")
    # receiver_kit writes `timeout: 2s`; these tests need their own.
    path.write_text(path.read_text(encoding="utf-8").replace("timeout: 2s", f"timeout: {timeout}"), encoding="utf-8")
    return path


def copies(fake, site: str) -> int:
    """How many times the chat shows the alert of `site`."""
    return sum(1 for message in fake.messages(GROUP_CHAT) if re.search(rf"\b{site}\b", message.text))


def index_of(fake, site: str) -> int:
    """The position of the first message in the chat that shows `site`."""
    return next(n for n, message in enumerate(fake.messages(GROUP_CHAT)) if re.search(rf"\b{site}\b", message.text))


# --- a slow API -----------------------------------------------------------------------------------------------

def test_an_api_that_shows_messages_but_answers_late_shows_each_at_most_twice(tmp_path, fake_telegram, receiver_app,
                                                                               caplog):
    # Telegram shows each message at once but answers 2.5 s later; the receiver gives up waiting after 1 s.
    fake = fake_telegram(answer_delay=2.5)
    app = receiver_app(config(tmp_path, fake, timeout="1s"))
    with caplog.at_level(logging.INFO, logger="sitewatch.receiver"):
        send(app, [alert(site="shop-1")], "a")
        # Within 8 s a client that retries with the same 1 s wait would have shown it 4 or 5 times.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and metric(app, "sitewatch_receiver_outbox_messages") != 0:
            time.sleep(0.1)
        assert copies(fake, "shop-1") <= 2, f"shop-1 shown {copies(fake, 'shop-1')} times"
        assert metric(app, "sitewatch_receiver_outbox_messages") == 0, "never confirmed"
        time.sleep(1.0)
        assert copies(fake, "shop-1") <= 2  # and nothing more afterwards

        # While Telegram stays that slow, the next message waits for its answer: shown once.
        send(app, [alert(site="shop-2")], "b")
        wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 10, "shop-2 to be confirmed")
        assert copies(fake, "shop-2") == 1
    assert metric(app, "sitewatch_receiver_telegram_requests_total", method="sendMessage", result="timeout") == 1
    # The cause is told once for the spell, and its end once.
    [warning] = [line for line in caplog.text.splitlines() if "event=telegram_unavailable" in line]
    assert "kind=timeout" in warning and "answer_wait=6s" in warning
    assert caplog.text.count("event=telegram_recovered") == 1
    # Telegram is quick again: the wait goes back to the configured timeout.
    fake.answer_delay = 0
    send(app, [alert(site="shop-3")], "c")
    wait_for(lambda: copies(fake, "shop-3") == 1, 10, "shop-3")
    wait_for(lambda: receiver_of(app).sender.answer_wait.read_timeout("main") == 1.0, 5, "the short wait again")


def test_the_fake_shows_a_message_before_its_late_answer(fake_telegram):
    fake = fake_telegram(answer_delay=1.5)
    started = time.monotonic()
    try:
        requests.post(f"{fake.url}/bot{BOT_TOKEN}/sendMessage", json={"chat_id": GROUP_CHAT, "text": "hi"},
                      timeout=0.5)
    except requests.Timeout:
        pass
    else:
        raise AssertionError("answered before the delay")
    assert [m.text for m in fake.messages(GROUP_CHAT)] == ["hi"]
    assert time.monotonic() - started < 1.5


# --- a critical alert behind a backlog ---------------------------------------------------------------------------

def test_a_critical_alert_overtakes_a_backlog_held_by_the_group_limit(tmp_path, fake_telegram, receiver_app):
    # 10 messages a minute into the group: the backlog of warnings uses 8 and then waits for the minute to
    # pass; the critical alert must not wait with it.
    fake = fake_telegram(enforce_limits=True)
    fake.limits = RateLimits(per_chat_interval=0.15, group_per_minute=10)
    app = receiver_app(config(tmp_path, fake, rate_limits="{chat_interval: 0.2s, group_per_minute: 10}"),
                       start_sender=False)
    for n in range(400):  # about 26 fit in one message: 16 messages
        send(app, [alert("DiskFilling", site=f"shop-{n}", severity="warning")], f"w{n}")
    receiver_of(app).sender.start()
    shown = held_up(fake)
    posted = time.monotonic()
    send(app, [alert("SiteDown", site="shop-900")], "critical")
    wait_for(lambda: copies(fake, "shop-900") == 1, 5, "the critical alert")
    assert time.monotonic() - posted < 2
    assert index_of(fake, "shop-900") == shown  # the very next message
    assert metric(app, "sitewatch_receiver_outbox_messages") > 100  # long before the backlog drains
    assert shown == 8  # two of the group's ten a minute were kept for it
    assert fake.rate_limited == 0  # within Telegram's limits all the same


def held_up(fake, quiet: float = 0.6) -> int:
    """Waits until no message has come for `quiet` seconds (the sender waits for the group's minute);
    returns how many the chat shows."""
    fake.wait_for_messages(1, chat_id=GROUP_CHAT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if time.monotonic() - fake.messages(GROUP_CHAT)[-1].at >= quiet:
            return len(fake.messages(GROUP_CHAT))
        time.sleep(0.05)
    raise AssertionError("the backlog never paused for the group limit")


def test_critical_alerts_go_first_in_their_own_order_and_a_resolution_follows_its_firing(tmp_path, fake_telegram,
                                                                                        receiver_app):
    fake = fake_telegram()
    app = receiver_app(config(tmp_path, fake, rate_limits="{chat_interval: 0.3s, group_per_minute: 1000}"),
                       start_sender=False)
    backlog = [f"shop-{n}" for n in range(300)]  # about 26 fit in one message: 12 messages, 4 s
    for n, site in enumerate(backlog):
        severity = "warning" if n % 2 else "info"
        send(app, [alert("DiskFilling", site=site, severity=severity)], f"w{n}")
    receiver_of(app).sender.start()
    fake.wait_for_messages(1, chat_id=GROUP_CHAT)

    shown_before = len(fake.messages(GROUP_CHAT))
    send(app, [alert("SiteDown", site="shop-900")], "c1")
    # A group with a critical alert comes whole, as Alertmanager grouped it.
    send(app, [alert("KktSilent", site="shop-901"), alert("FnExpiring", site="shop-902", severity="warning")], "c2")
    wait_for(lambda: copies(fake, "shop-901") == 1, 5, "the critical alerts")
    # Within two send slots: the message already on its way, then the critical ones.
    assert index_of(fake, "shop-900") <= shown_before + 1
    assert index_of(fake, "shop-900") <= index_of(fake, "shop-901") == index_of(fake, "shop-902")

    send(app, [alert("SiteDown", site="shop-900", status="resolved")], "c1")
    wait_for(lambda: copies(fake, "shop-900") == 2, 5, "the critical alert's resolution")
    assert metric(app, "sitewatch_receiver_outbox_messages") > 0  # the backlog is still draining

    wait_for(lambda: metric(app, "sitewatch_receiver_outbox_messages") == 0, 30, "the backlog to drain")
    messages = fake.messages(GROUP_CHAT)
    critical = [m for m in messages if re.search(r"\bshop-90[0-2]\b", m.text)]
    assert sites_in(critical) == ["shop-900", "shop-901", "shop-902", "shop-900"]
    assert "✅" in critical[-1].text.splitlines()[0]  # the resolution is the last of them
    rest = [m for m in messages if m not in critical]
    assert sites_in(rest) == backlog  # every warning and info once, in the order they came


def test_a_resolution_that_turned_critical_does_not_overtake_its_waiting_firing(tmp_path):
    """The lanes are chosen when alerts are stored: news of an alert whose earlier news waits in the ordinary
    lane joins it there (Alertmanager's fingerprints cover the severity label, so this is a safety net)."""
    outbox = Outbox(tmp_path / "outbox.db")
    chat = Chat("main", str(GROUP_CHAT), None)

    def store(status: str, severity: str, site: str) -> None:
        one = alert("Flapping", site=site, status=status, severity=severity, fingerprint=f"fp-{site}",
                     starts_at=started_at(0))
        item = NewItem(status, one["fingerprint"], "2026-11-22T09:00:00+00:00", _stored(one),
                       urgent=severity == "critical")
        outbox.enqueue_many([Webhook([NewBatch("duty", chat, "{}", [item])])])

    store("firing", "warning", "shop-1")
    [waiting] = outbox.peek(chat.queue)
    assert outbox.claim([waiting.id])  # on its way to Telegram, which may fail and put it back
    store("resolved", "critical", "shop-1")
    store("firing", "critical", "shop-2")
    outbox.release([waiting.id])
    assert [item.fingerprint for item in outbox.peek(chat.queue)] == ["fp-shop-2"]  # the critical lane
    outbox.mark_sent(outbox.peek(chat.queue))
    head = outbox.peek(chat.queue)
    assert [(item.fingerprint, item.status) for item in head] == [("fp-shop-1", "firing"), ("fp-shop-1", "resolved")]
    outbox.close()


def _stored(one: dict) -> str:
    return json.dumps(one, ensure_ascii=False)


def test_an_outbox_file_from_before_the_urgent_lane_keeps_its_items_and_gains_the_lane(tmp_path):
    from alertmanager import outbox as outbox_module

    path = tmp_path / "old.db"
    old_schema = outbox_module._SCHEMA.replace(",\n    urgent INTEGER NOT NULL DEFAULT 0", "")
    assert "urgent" not in old_schema
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.execute("INSERT INTO batches (id, route, received_at, info, max_messages) VALUES (1, 'duty', 0, '{}', 5)")
    db.execute("INSERT INTO items (batch_id, route, queue, status, fingerprint, starts_at, alert, created_at) "
               "VALUES (1, 'duty', 'main|1|', 'firing', 'fp-old', '', '{}', 0)")
    db.commit()
    db.close()
    outbox = Outbox(path)
    chat = Chat("main", "1", None)
    one = alert("SiteDown", site="shop-9")
    item = NewItem("firing", "fp-new", "", _stored(one), urgent=True)
    outbox.enqueue_many([Webhook([NewBatch("duty", chat, "{}", [item])])])
    assert [item.fingerprint for item in outbox.peek(chat.queue)] == ["fp-new"]
    assert [(queue, urgent) for queue, _head, urgent in outbox.waiting_queues()] == [(chat.queue, True)]
    outbox.mark_sent(outbox.peek(chat.queue))
    assert [item.fingerprint for item in outbox.peek(chat.queue)] == ["fp-old"]
    outbox.close()
