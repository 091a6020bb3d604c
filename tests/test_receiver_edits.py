"""Resolved alerts told in their firing messages (routes' `resolved: edit | reply | both`), and texts queued
with `Outbox.enqueue_text`: the receiver as a process against the fake Telegram Bot API, which edits,
replies and refuses as Telegram does."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import free_port, value_of_metric
from receiver_kit import (GROUP_CHAT, OTHER_CHAT, alert, payload, post, resolved_at, wait_for,
                          write_receiver_config)
from simulators.telegram import parse_html

MOSCOW = ZoneInfo("Europe/Moscow")  # the zone the test config names


def config_for(tmp_path, telegram, mode: str, *, other_mode: str | None = None, extra: str = ""):
    """Routes duty (a group) and other (silent resolved) in `mode`, and commands, so firing messages carry
    their buttons (the commands' Alertmanager is never asked here)."""
    routes = f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    resolved: {mode}
  other:
    bot: main
    chat_id: {OTHER_CHAT}
    silent_resolved: true
    resolved: {other_mode or mode}
"""
    commands = f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
  allowed_chats: [{GROUP_CHAT}]
  poll_timeout: 2s
{extra}"""
    return write_receiver_config(tmp_path, telegram.url, routes=routes, extra=commands)


@pytest.fixture
def telegram(fake_telegram):
    fake = fake_telegram()
    fake.add_chat(GROUP_CHAT, type="supergroup")
    fake.add_chat(OTHER_CHAT, type="group")
    return fake


def moments(minutes_ago: int = 30) -> tuple[datetime, datetime]:
    """A start `minutes_ago` and the end the resolved payload gives (7 minutes later)."""
    starts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return starts, starts + timedelta(minutes=7)


def fire(receiver, route: str, *alerts: dict, group_key: str | None = None) -> None:
    answer = post(f"{receiver.url}/alert/{route}", payload(list(alerts), group_key))
    assert answer.status_code == 200, answer.text


def resolved(firing: dict) -> dict:
    """The same alert as its resolved notification carries it."""
    starts = datetime.fromisoformat(firing["startsAt"].replace("Z", "+00:00"))
    return {**firing, "status": "resolved",
            "endsAt": (starts + timedelta(minutes=7)).isoformat().replace("+00:00", "Z")}


def visible(message) -> str:
    return parse_html(message.text) if message.parse_mode else message.text


def buttons_of(message) -> list[str]:
    return [button["text"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for button in row]


def edited(telegram, chat: int, message_id: int, edits: int = 1, timeout: float = 15):
    def found():
        message = next((m for m in telegram.messages(chat) if m.message_id == message_id), None)
        return message if message is not None and message.edits >= edits else None
    return wait_for(found, timeout, f"message {message_id} edited {edits} time(s)")


def metric(receiver, name: str, **labels: str) -> float | None:
    return value_of_metric(receiver.metrics(), name, **labels)


# --- edit ---------------------------------------------------------------------------------------------------

def test_a_resolved_alert_edits_its_firing_message_and_drops_its_buttons(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, ends = moments()
    firing = alert("FnExpiring", site="shop-12", fingerprint="0123456789abcdef", starts_at=starts, kkt="0651234567")
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    before = visible(message)
    assert before.startswith("🔥 Срабатывает: ФН истекает (1)")
    assert buttons_of(message) == ["✋ Беру", "🔕 Заглушить на 1 ч", "4 ч", "24 ч"]

    fire(receiver, "duty", resolved(firing))
    message = edited(telegram, GROUP_CHAT, message.message_id)
    shown = visible(message)
    assert shown.startswith("✅ Решено: ФН истекает (1)")  # the header says it is over
    assert shown.endswith(f"\n\n✅ Решено {resolved_at(ends, message.date)}, длилось 7 мин"), shown
    assert shown.split("\n")[1:] == before.split("\n")[1:] + ["", f"✅ Решено {resolved_at(ends, message.date)}, длилось 7 мин"]
    assert message.reply_markup is None  # nothing left to press
    time.sleep(1.5)
    assert len(telegram.messages(GROUP_CHAT)) == 1  # no separate resolved message
    wait_for(lambda: metric(receiver, "sitewatch_receiver_messages_edited_total", route="duty",
                            reason="resolved") == 1, 10, "the edit counted")
    assert metric(receiver, "sitewatch_receiver_outbox_messages") == 0
    assert [status for method, _, status in telegram.requests if method == "editMessageText"] == [200]


def test_the_edit_survives_a_restart_between_firing_and_resolving(tmp_path, telegram, receiver_process):
    config = config_for(tmp_path, telegram, "edit")
    receiver = receiver_process(config)
    starts, ends = moments(90)
    firing = alert("PcUnreachable", site="shop-3", fingerprint="00000000000000aa", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    receiver.stop()
    receiver = receiver_process(config)  # a new process on the same outbox
    fire(receiver, "duty", resolved(firing))
    message = edited(telegram, GROUP_CHAT, message.message_id)
    assert visible(message).endswith(f"✅ Решено {resolved_at(ends, message.date)}, длилось 7 мин")
    time.sleep(1)
    assert len(telegram.messages(GROUP_CHAT)) == 1


def test_a_refused_edit_falls_back_to_a_resolved_message_of_its_own(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, _ = moments()
    firing = alert("SiteDown", site="shop-5", fingerprint="00000000000000bb", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    telegram.delete_message(GROUP_CHAT, message.message_id)  # someone cleaned up the chat
    fire(receiver, "duty", resolved(firing))
    [separate] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert visible(separate).startswith("✅ Восстановлено: SiteDown (1)")
    assert "🏁 Конец:" in visible(separate) and "длилось 7 мин" in visible(separate)
    assert separate.reply_to_message_id is None
    assert [status for method, _, status in telegram.requests if method == "editMessageText"] == [400]
    log = receiver.log_text()
    assert log.count("event=edit_refused") == 1, log[-3000:]
    assert "message to edit not found" in log and "action=send_separately" in log
    wait_for(lambda: metric(receiver, "sitewatch_receiver_resolved_fallbacks_total", route="duty",
                            reason="edit_refused") == 1, 10, "the fallback counted")
    assert metric(receiver, "sitewatch_receiver_edits_refused_total", route="duty") == 1


def test_an_edit_waits_out_telegram_trouble_like_a_message(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, ends = moments()
    firing = alert("SiteDown", site="shop-6", fingerprint="00000000000000cc", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    telegram.fail_next(1, "500")
    telegram.fail_next(1, "429", retry_after=1)
    fire(receiver, "duty", resolved(firing))
    message = edited(telegram, GROUP_CHAT, message.message_id)
    assert visible(message).endswith(f"✅ Решено {resolved_at(ends, message.date)}, длилось 7 мин")
    assert [status for method, _, status in telegram.requests if method == "editMessageText"] == [500, 429, 200]
    assert len(telegram.messages(GROUP_CHAT)) == 1


def test_a_resolution_repeated_after_the_edit_changes_nothing(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, _ = moments()
    firing = alert("SiteDown", site="shop-8", fingerprint="00000000000000dd", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    fire(receiver, "duty", resolved(firing))
    edited(telegram, GROUP_CHAT, message.message_id)
    fire(receiver, "duty", resolved(firing), firing | {"fingerprint": "00000000000000ee",
                                                      "labels": {**firing["labels"], "check": "rdp"}})
    telegram.wait_for_messages(2, chat_id=GROUP_CHAT)  # the new alert's message, and nothing else
    time.sleep(1.5)
    assert len(telegram.messages(GROUP_CHAT)) == 2
    assert [m for m in telegram.messages(GROUP_CHAT) if m.message_id == message.message_id][0].edits == 1


def test_an_alert_whose_firing_message_is_unknown_gets_a_resolved_message(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, _ = moments()
    # Fired before the receiver remembered messages (or to another route): only its resolution arrives.
    fire(receiver, "duty", resolved(alert("SiteDown", site="shop-9", fingerprint="00000000000000ff",
                                          starts_at=starts)))
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert visible(message).startswith("✅ Восстановлено: SiteDown (1)")
    assert "editMessageText" not in [method for method, _, _ in telegram.requests]
    wait_for(lambda: metric(receiver, "sitewatch_receiver_resolved_fallbacks_total", route="duty",
                            reason="unknown_message") == 1, 10, "the fallback counted")


def test_resolutions_sent_separately_are_counted_once_each(tmp_path, telegram, receiver_process):
    """Forty resolved alerts whose firing messages are unknown go out as resolved messages (several, as they do
    not fit in one): each alert is counted once, whichever message carried it."""
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, _ = moments()
    shops = [resolved(alert("SiteDown", site=f"shop-{n}", fingerprint=f"0000000000000a{n:02d}", starts_at=starts))
             for n in range(40)]
    fire(receiver, "duty", *shops, group_key="unknown-forty")
    wait_for(lambda: metric(receiver, "sitewatch_receiver_outbox_messages") == 0, 30, "all of them told")
    messages = telegram.messages(GROUP_CHAT)
    assert len(messages) > 1 and all(visible(m).startswith("✅") for m in messages)
    assert {f"shop-{n}" for n in range(40)} <= set(re.findall(r"\bshop-\d+\b", "\n".join(m.text for m in messages)))
    assert metric(receiver, "sitewatch_receiver_resolved_fallbacks_total", route="duty", reason="unknown_message") == 40
    assert metric(receiver, "sitewatch_receiver_resolved_fallbacks_total", route="duty", reason="edit_refused") == 0


# --- reply and both ------------------------------------------------------------------------------------------

def test_reply_mode_answers_the_firing_message_silently_where_the_route_says(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "reply"))
    starts, ends = moments()
    loud = alert("SiteDown", site="shop-1", fingerprint="0000000000000101", starts_at=starts)
    quiet = alert("SiteDown", site="shop-2", fingerprint="0000000000000102", starts_at=starts)
    fire(receiver, "duty", loud)
    fire(receiver, "other", quiet)
    [duty_firing] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    [other_firing] = telegram.wait_for_messages(1, chat_id=OTHER_CHAT)
    fire(receiver, "duty", resolved(loud))
    fire(receiver, "other", resolved(quiet))
    _, duty_reply = telegram.wait_for_messages(2, chat_id=GROUP_CHAT)
    _, other_reply = telegram.wait_for_messages(2, chat_id=OTHER_CHAT)
    assert duty_reply.reply_to_message_id == duty_firing.message_id
    assert visible(duty_reply) == f"✅ SiteDown · shop-1: решено {resolved_at(ends, duty_firing.date)}, длилось 7 мин"
    assert not duty_reply.disable_notification
    assert other_reply.reply_to_message_id == other_firing.message_id
    assert other_reply.disable_notification  # silent_resolved
    assert duty_firing.edits == 0 and telegram.messages(GROUP_CHAT)[0].edits == 0  # the firing message as it was
    assert "editMessageText" not in [method for method, _, _ in telegram.requests]


def test_both_mode_edits_the_message_then_replies_to_it(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "both"))
    starts, ends = moments()
    firing = alert("CustomCheckFailed", site="shop-4", fingerprint="0000000000000201", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    fire(receiver, "duty", resolved(firing))
    _, reply = telegram.wait_for_messages(2, chat_id=GROUP_CHAT)
    message = edited(telegram, GROUP_CHAT, message.message_id)
    assert visible(message).endswith(f"✅ Решено {resolved_at(ends, message.date)}, длилось 7 мин")
    assert reply.reply_to_message_id == message.message_id
    assert visible(reply) == f"✅ CustomCheckFailed · shop-4: решено {resolved_at(ends, message.date)}, длилось 7 мин"
    methods = [method for method, chat, _ in telegram.requests
               if chat == str(GROUP_CHAT) and method in ("sendMessage", "editMessageText")]
    assert methods == ["sendMessage", "editMessageText", "sendMessage"]  # the edit first, the reply after


def test_separate_mode_is_unchanged(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "separate"))
    starts, _ = moments()
    firing = alert("SiteDown", site="shop-7", fingerprint="0000000000000301", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    fire(receiver, "duty", resolved(firing))
    first, second = telegram.wait_for_messages(2, chat_id=GROUP_CHAT)
    assert first.edits == 0 and visible(first) == visible(message)
    assert visible(second).startswith("✅ Восстановлено: SiteDown (1)")
    assert second.reply_to_message_id is None
    assert "editMessageText" not in [method for method, _, _ in telegram.requests]


# --- digests and split groups ----------------------------------------------------------------------------------

def test_a_digest_shows_each_resolution_then_all_resolved(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, ends = moments()
    shops = [alert("SiteDown", site=f"shop-{n}", fingerprint=f"00000000000004{n:02d}", starts_at=starts)
             for n in range(1, 4)]
    telegram.set_mode("500")  # Telegram is down while three groups arrive: they go out as one digest
    for n, firing in enumerate(shops):
        fire(receiver, "duty", firing, group_key=f"digest-{n}")
    time.sleep(1.5)
    telegram.set_mode(None)
    [digest] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=20)
    assert visible(digest).startswith("🔥 Сводка: 3 срабатывания в 3 группах")
    assert [b for b in buttons_of(digest) if b.startswith("🔕")] == [f"🔕 SiteDown shop-{n}: 1 ч" for n in (1, 2, 3)]

    fire(receiver, "duty", resolved(shops[1]), group_key="digest-1")
    message = edited(telegram, GROUP_CHAT, digest.message_id)
    shown = visible(message)
    assert shown.startswith("🔥 Сводка: 3 срабатывания в 3 группах")  # not all of it is over
    assert shown.endswith(f"\n\n✅ SiteDown · shop-2: решено {resolved_at(ends, message.date)}, длилось 7 мин"), shown
    assert [b for b in buttons_of(message) if b.startswith("🔕")] == ["🔕 SiteDown shop-1: 1 ч",
                                                                     "🔕 SiteDown shop-3: 1 ч"]
    assert buttons_of(message)[0] == "✋ Беру"

    fire(receiver, "duty", resolved(shops[0]), resolved(shops[2]), group_key="digest-0")
    message = edited(telegram, GROUP_CHAT, digest.message_id, edits=2)
    shown = visible(message)
    assert shown.startswith("✅ Всё решено. Сводка: 3 срабатывания в 3 группах"), shown
    assert shown.count(f": решено {resolved_at(ends, message.date)}") == 3
    assert "✅ SiteDown · shop-1: решено" in shown and "✅ SiteDown · shop-3: решено" in shown
    assert message.reply_markup is None
    time.sleep(1)
    assert len(telegram.messages(GROUP_CHAT)) == 1


def test_a_group_split_over_two_messages_edits_each_for_its_own_alerts(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, ends = moments()
    group = []
    for n in range(6):  # each block near 1 000 characters: six of them need two messages
        one = alert("CustomPortCheck", site="shop-big", fingerprint=f"00000000000005{n:02d}", starts_at=starts,
                    check=f"port-{n}")
        one["annotations"]["description"] = f"порт {n}: " + "соединение не устанавливается; " * 30
        group.append(one)
    fire(receiver, "duty", *group, group_key="big")
    first, second = telegram.wait_for_messages(2, chat_id=GROUP_CHAT)
    in_first = [n for n in range(6) if f"port-{n}" in first.text]
    in_second = [n for n in range(6) if f"port-{n}" in second.text]
    assert in_first and in_second and sorted(in_first + in_second) == list(range(6))

    fire(receiver, "duty", resolved(group[in_second[0]]), group_key="big")
    message = edited(telegram, GROUP_CHAT, second.message_id)
    assert visible(message).endswith(f"✅ CustomPortCheck · shop-big · проверка port-{in_second[0]}: решено "
                                     f"{resolved_at(ends, second.date)}, длилось 7 мин")
    assert telegram.messages(GROUP_CHAT)[0].edits == 0  # the other message did not carry it

    fire(receiver, "duty", *(resolved(one) for one in group), group_key="big")
    first = edited(telegram, GROUP_CHAT, first.message_id)
    second = edited(telegram, GROUP_CHAT, second.message_id, edits=2)
    for message, numbers in ((first, in_first), (second, in_second)):
        shown = visible(message)
        assert shown.startswith("✅ Решено: CustomPortCheck"), shown[:100]
        assert [int(n) for n in re.findall(r"проверка port-(\d): решено ", shown)] == numbers
        assert message.reply_markup is None
        assert len(shown) <= 4096
    time.sleep(1)
    assert len(telegram.messages(GROUP_CHAT)) == 2


# --- texts ---------------------------------------------------------------------------------------------------

def test_texts_go_out_as_they_are_in_order_once_per_key(tmp_path, telegram, receiver_process):
    from alertmanager.outbox import Chat, Outbox

    config = config_for(tmp_path, telegram, "separate")
    receiver = receiver_process(config)
    outbox = Outbox(tmp_path / "outbox.db")  # another process on the same file, as the scheduler may be
    chat = Chat("main", str(GROUP_CHAT), None)
    texts = ["<b>План на сегодня</b> · 1/2", "shop-1: заменить ФН до <b>30.09.2027</b> · 2/2"]
    telegram.fail_next(1, "429", retry_after=1)
    assert outbox.enqueue_text("duty", chat, texts, kind="worklist", key="worklist:duty:2026-12-04") == 2
    assert outbox.enqueue_text("duty", chat, texts, kind="worklist", key="worklist:duty:2026-12-04") == 0
    first, second = telegram.wait_for_messages(2, chat_id=GROUP_CHAT, timeout=20)
    assert (first.text, second.text) == tuple(texts) and first.parse_mode == "HTML"
    assert first.reply_markup is None  # a text gets no buttons
    # Telegram refusing a text's HTML: it goes out as plain text, not lost.
    assert outbox.enqueue_text("duty", chat, ["<x>сломанная разметка</x> & всё"], key="broken") == 1
    _, _, plain = telegram.wait_for_messages(3, chat_id=GROUP_CHAT, timeout=20)
    assert plain.parse_mode is None and plain.text == "сломанная разметка & всё"
    time.sleep(1)
    assert len(telegram.messages(GROUP_CHAT)) == 3
    wait_for(lambda: metric(receiver, "sitewatch_receiver_messages_sent_total", route="duty") == 3, 10,
             "the texts counted as sent")
    outbox.close()


def test_an_outbox_from_before_remembers_messages_once_opened(tmp_path):
    """A file made before sent messages were remembered gets the new tables, and its items keep going."""
    from alertmanager.outbox import Chat, Outbox

    path = tmp_path / "old.db"
    Outbox(path).close()
    with sqlite3.connect(path) as db:
        for table in ("sent_alerts", "sent_messages", "text_keys"):
            db.execute(f"DROP TABLE {table}")
    outbox = Outbox(path)
    assert outbox.enqueue_text("duty", Chat("main", "-1", None), ["a"], key="k") == 1
    assert outbox.messages_carrying("main|-1|", "duty", [("f", "s")]) == [] and outbox.takers() == {}
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sent_messages", "sent_alerts", "text_keys"} <= tables
    outbox.close()


# --- the fake Telegram these tests rely on ------------------------------------------------------------------

def test_the_fake_telegram_edits_replies_and_refuses_as_telegram_does(telegram):
    import requests

    from simulators.telegram import DEFAULT_TOKEN, NOT_MODIFIED

    def call(method: str, **params):
        answer = requests.post(f"{telegram.url}/bot{DEFAULT_TOKEN}/{method}", json=params, timeout=5).json()
        return answer.get("result") if answer["ok"] else answer["description"]

    keys = {"inline_keyboard": [[{"text": "✋ Беру", "callback_data": "take"}]]}
    sent = call("sendMessage", chat_id=GROUP_CHAT, text="<b>горит</b>", parse_mode="HTML", reply_markup=keys)
    number = sent["message_id"]
    edited = call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="<b>решено</b>", parse_mode="HTML",
                  reply_markup=keys)
    assert edited["text"] == "решено" and edited["edit_date"] and edited["reply_markup"] == keys
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="<b>решено</b>", parse_mode="HTML",
                reply_markup=keys) == NOT_MODIFIED
    # Without reply_markup the buttons go, as Telegram removes them.
    assert "reply_markup" not in call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="решено")
    [shown] = telegram.messages(GROUP_CHAT)
    assert (shown.text, shown.parse_mode, shown.reply_markup, shown.edits) == ("решено", None, None, 2)
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="<b>x", parse_mode="HTML") == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"")
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="я" * 4097) == (
        "Bad Request: MESSAGE_TOO_LONG")
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text=" ") == (
        "Bad Request: message text is empty")
    said = telegram.user_says(GROUP_CHAT, "/alerts")["message"]["message_id"]
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=said, text="x") == (
        "Bad Request: message can't be edited")

    reply = call("sendMessage", chat_id=GROUP_CHAT, text="ответ",
                 reply_parameters={"message_id": number, "allow_sending_without_reply": True})
    assert reply["reply_to_message"]["message_id"] == number
    assert telegram.messages(GROUP_CHAT)[-1].reply_to_message_id == number
    telegram.delete_message(GROUP_CHAT, number)
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=number, text="x") == (
        "Bad Request: message to edit not found")
    assert call("sendMessage", chat_id=GROUP_CHAT, text="ответ", reply_parameters={"message_id": number}) == (
        "Bad Request: message to be replied not found")
    alone = call("sendMessage", chat_id=GROUP_CHAT, text="ответ",
                 reply_parameters={"message_id": number, "allow_sending_without_reply": True})
    assert "reply_to_message" not in alone and telegram.messages(GROUP_CHAT)[-1].reply_to_message_id is None
    assert number not in [m.message_id for m in telegram.messages(GROUP_CHAT)]
    # Edits meet the same injected failures as messages.
    telegram.fail_next(1, "429", retry_after=2)
    assert call("editMessageText", chat_id=GROUP_CHAT, message_id=alone["message_id"], text="y") == (
        "Too Many Requests: retry after 2")


# --- what the edits cost, and what they must not cost ------------------------------------------------------------

def test_a_storm_of_edits_does_not_hold_back_a_new_critical_alert(tmp_path, telegram, receiver_process):
    """Resolutions shown in their firing messages are one request each: a storm of them must neither stand in
    front of a new critical alert nor use up the sends a minute kept for it."""
    route = f"\n  duty:\n    bot: main\n    chat_id: {GROUP_CHAT}\n    resolved: edit\n"

    def config(limits: str):
        return write_receiver_config(tmp_path, telegram.url, outbox_extra="  dedup_window: 0s", telegram_extra=limits,
                                     routes=route)
    receiver = receiver_process(config("  rate_limits:\n    chat_interval: 0s\n    group_per_minute: 1000\n"))
    starts, _ = moments()
    shops = [alert("SiteDown", site=f"shop-{n}", fingerprint=f"00000000000006{n:02d}", starts_at=starts)
             for n in range(8)]  # critical, as the receiver kit makes them: the urgent lane
    for n, firing in enumerate(shops):
        fire(receiver, "duty", firing, group_key=f"storm-{n}")
        telegram.wait_for_messages(n + 1, chat_id=GROUP_CHAT)
    receiver.stop()
    # Six sends a minute to the group: eight edits would take it all, and more.
    receiver = receiver_process(config("  rate_limits:\n    group_per_minute: 6\n"))
    for n, firing in enumerate(shops):
        fire(receiver, "duty", resolved(firing), group_key=f"storm-{n}")
    new = alert("PcUnreachable", site="shop-new", fingerprint="00000000000006ff", starts_at=starts)
    posted = time.monotonic()
    fire(receiver, "duty", new, group_key="storm-new")
    message = wait_for(lambda: next((m for m in telegram.messages(GROUP_CHAT) if "shop-new" in m.text), None), 90,
                       "the new critical alert")
    assert message.at - posted < 5, f"the new critical alert waited {message.at - posted:.1f} s behind the edits"
    wait_for(lambda: sum(1 for m in telegram.messages(GROUP_CHAT) if m.edits) >= 4, 20, "the edits going on")


def test_a_digest_sent_as_plain_text_is_shown_resolved_in_plain_text(tmp_path, telegram, receiver_process):
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, _ = moments()
    shops = [alert("SiteDown", site=f"shop-{n}", fingerprint=f"00000000000007{n:02d}", starts_at=starts)
             for n in (1, 2)]
    shops[0]["annotations"]["description"] = "порог <b>5</b> не достигнут"  # text, not markup
    telegram.set_mode("500")
    for n, firing in enumerate(shops):
        fire(receiver, "duty", firing, group_key=f"plain-{n}")
    time.sleep(1.5)
    telegram.fail_next(1, "reject_html")  # Telegram refuses the digest's HTML: it goes out as plain text
    telegram.set_mode(None)
    [digest] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=20)
    assert digest.parse_mode is None and "порог <b>5</b> не достигнут" in digest.text
    for n, firing in enumerate(shops):
        fire(receiver, "duty", resolved(firing), group_key=f"plain-{n}")
    message = wait_for(lambda: "✅ Всё решено." in telegram.messages(GROUP_CHAT)[0].text and
                       telegram.messages(GROUP_CHAT)[0], 20, "the digest shown all resolved")
    assert message.parse_mode is None
    assert message.text.startswith("✅ Всё решено. Сводка: 2 срабатывания в 2 группах"), message.text[:80]


def test_a_message_full_of_markup_keeps_all_its_text_when_edited(tmp_path, telegram, receiver_process):
    """Telegram counts a message's length after its markup is read (a "&amp;" is one character): a firing
    message near the limit in HTML has room for its resolved lines without losing its end."""
    receiver = receiver_process(config_for(tmp_path, telegram, "edit"))
    starts, ends = moments()
    group = []
    for n in (1, 2):
        one = alert("SiteDown", site="shop-9", fingerprint=f"00000000000008{n:02d}", starts_at=starts, check=f"c{n}")
        one["annotations"]["description"] = "R&D " * 233 + f"конец {n}"
        group.append(one)
    fire(receiver, "duty", *group, group_key="markup")
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    assert "конец 1" in message.text and "конец 2" in message.text
    assert len(message.text) > 4000 and len(visible(message)) < 2500  # full in HTML, half of it in what shows
    fire(receiver, "duty", resolved(group[1]), group_key="markup")
    shown = visible(edited(telegram, GROUP_CHAT, message.message_id))
    assert shown == visible(message) + f"\n\n✅ SiteDown · shop-9 · проверка c2: решено {resolved_at(ends, message.date)}, длилось 7 мин"


def test_an_edit_made_but_not_heard_of_is_done_again_harmlessly(tmp_path, telegram, receiver_process):
    """The delivery process is killed after Telegram showed the edit and before its answer came: the edit is
    made again after the restart, Telegram finds nothing to change, and the reply still goes out once."""
    receiver = receiver_process(config_for(tmp_path, telegram, "both"))
    starts, ends = moments()
    firing = alert("SiteDown", site="shop-11", fingerprint="0000000000000901", starts_at=starts)
    fire(receiver, "duty", firing)
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    telegram.answer_delay = 4
    fire(receiver, "duty", resolved(firing))
    edited(telegram, GROUP_CHAT, message.message_id)  # shown at once, answered 4 s later
    [delivery] = receiver.children()
    os.kill(delivery, signal.SIGKILL)
    telegram.answer_delay = 0
    _, reply = telegram.wait_for_messages(2, chat_id=GROUP_CHAT, timeout=30)
    assert reply.reply_to_message_id == message.message_id
    time.sleep(1.5)
    [shown, again] = telegram.messages(GROUP_CHAT)
    assert again == reply and shown.edits == 1
    assert visible(shown).endswith(f"✅ Решено {resolved_at(ends, shown.date)}, длилось 7 мин")
    edits = [status for method, _, status in telegram.requests if method == "editMessageText"]
    # Two edits: one made, one "message is not modified" (taken as done). The fake records each when it
    # answers, and the first is answered 4 s late: on a busy machine the second's answer is recorded first.
    assert sorted(edits) == [200, 400], edits


def test_telling_a_resolution_stays_quick_with_a_month_of_messages_remembered(tmp_path):
    """Marking a resolved message's alerts in their firing messages looks each alert up by its index: it must
    not read every message remembered (30 days of a busy chat) while it holds the outbox's write lock."""
    from alertmanager.outbox import Chat, Delivered, Ended, NewBatch, NewItem, Outbox, Webhook

    outbox = Outbox(tmp_path / "month.db")
    chat = Chat("main", str(GROUP_CHAT), None)
    started = "2026-12-04T07:00:00+00:00"
    with outbox._write() as db:
        for n in range(50_000):
            outbox._remember(db, Delivered("main", chat.queue, str(GROUP_CHAT), None, n + 1, "duty", "🔥", "HTML",
                                           None, True, [(f"{n:016x}", started, "SiteDown")]))
    alerts = [f"{n * 1000:016x}" for n in range(30)]
    outbox.enqueue_many([Webhook([NewBatch("duty", chat, "{}", [NewItem("resolved", fingerprint, started, "{}")
                                                                 for fingerprint in alerts])])])
    items = outbox.peek(chat.queue)
    assert len(items) == 30 and outbox.claim([item.id for item in items])
    began = time.perf_counter()
    outbox.mark_sent(items, queue=chat.queue, ended=[Ended(fingerprint, started, 1.0) for fingerprint in alerts])
    took = time.perf_counter() - began
    assert took < 0.25, f"marking 30 resolved alerts took {took:.2f} s"
    marked = sqlite3.connect(tmp_path / "month.db").execute(
        "SELECT COUNT(*) FROM sent_alerts WHERE ended_at IS NOT NULL").fetchone()[0]
    assert marked == 30
    outbox.close()
