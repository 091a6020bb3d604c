"""The "✋ Беру" button, end to end: the fake Telegram API (button presses, edits), the receiver as a process,
and Debian's Alertmanager, whose silences a take makes and whose repeat notifications they stop."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import free_port
from receiver_kit import (GROUP_CHAT, OTHER_CHAT, ReceiverProcess, alert, payload, post, resolved_at, wait_for,
                          write_receiver_config)
from simulators.telegram import parse_html

ALLOWED_USER = 555
COLLEAGUE = 556  # another member of the allowed duty group
STRANGER = 777
MOSCOW = ZoneInfo("Europe/Moscow")


def alertmanager_config(receiver_url: str, token_file: Path) -> str:
    """Repeats every few seconds, so a test sees them arrive, and then stop once the take silenced them."""
    webhook = (f"    webhook_configs:\n      - url: {receiver_url}/alert/{{route}}\n        send_resolved: true\n"
               f"        http_config:\n          authorization:\n            credentials_file: {token_file}\n")
    return ("route:\n  receiver: telegram-duty\n  group_by: [alertname, site]\n  group_wait: 0s\n"
            "  group_interval: 1s\n  repeat_interval: 2s\n"
            "receivers:\n  - name: telegram-duty\n" + webhook.format(route="duty"))


class Stack:
    def __init__(self, telegram, alertmanager_url: str, receiver: ReceiverProcess):
        self.telegram = telegram
        self.am = alertmanager_url
        self.receiver = receiver

    def fire(self, *alerts: dict) -> None:
        body = [{"labels": a, "annotations": {"summary": f"{a.get('site')}: {a['alertname']} горит"},
                 "startsAt": (datetime.now(timezone.utc) - timedelta(minutes=3)).isoformat()} for a in alerts]
        assert requests.post(f"{self.am}/api/v2/alerts", json=body, timeout=5).status_code == 200

    def silences(self) -> list[dict]:
        found = requests.get(f"{self.am}/api/v2/silences", timeout=5).json()
        return [s for s in found if s["status"]["state"] == "active"]

    def am_alerts(self) -> list[dict]:
        return requests.get(f"{self.am}/api/v2/alerts", timeout=5).json()

    def firing_messages(self) -> list:
        return [m for m in self.telegram.messages(GROUP_CHAT) if m.text.startswith("🔥")]


@pytest.fixture
def stack(tmp_path, fake_telegram, alertmanager):
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    config = write_receiver_config(tmp_path, telegram.url)  # rewritten below, once Alertmanager's URL is known
    receiver = ReceiverProcess(config, tmp_path / "receiver.log")
    alertmanager_url = alertmanager(alertmanager_config(receiver.url, tmp_path / "webhook.token"))
    write_receiver_config(tmp_path, telegram.url, outbox_extra="  dedup_window: 0s", extra=f"""
commands:
  alertmanager_url: {alertmanager_url}
  allowed_chats: [{GROUP_CHAT}]
  allowed_users: [{ALLOWED_USER}]
  poll_timeout: 2s
  take_silence: 2h
""")
    receiver.start()
    try:
        yield Stack(telegram, alertmanager_url, receiver)
    finally:
        receiver.stop()


def buttons_of(message) -> list[str]:
    return [button["text"] for row in (message.reply_markup or {}).get("inline_keyboard", []) for button in row]


def current(telegram, chat: int, message_id: int):
    return next(m for m in telegram.messages(chat) if m.message_id == message_id)


def local(moment: float | datetime) -> datetime:
    if isinstance(moment, datetime):
        return moment.astimezone(MOSCOW)
    return datetime.fromtimestamp(moment, MOSCOW)


def test_take_records_who_edits_the_message_and_silences_the_repeats(stack):
    stack.fire({"alertname": "FnExpiring", "site": "shop-7", "kkt": "0650001", "severity": "critical"},
               {"alertname": "FnExpiring", "site": "shop-7", "kkt": "0650002", "severity": "critical"})
    # Alertmanager repeats the group every few seconds while nobody acts.
    wait_for(lambda: len(stack.firing_messages()) >= 2, 20, "the group and a repeat of it")
    message = stack.firing_messages()[-1]
    assert buttons_of(message)[0] == "✋ Беру" and message.reply_markup["inline_keyboard"][0] == [
        {"text": "✋ Беру", "callback_data": "take"}]
    silence_rows = message.reply_markup["inline_keyboard"][1:]
    assert len(silence_rows) == 2

    pressed = time.time()
    first = stack.telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=ALLOWED_USER)
    # Pressed by a colleague and by the same person again before the message changed.
    second = stack.telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=COLLEAGUE,
                                         username="second_engineer")
    again = stack.telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=ALLOWED_USER)
    answer = stack.telegram.wait_for_callback_answer(first, timeout=15)
    assert answer["text"] == "✋ Вы взяли это в работу. Глушу на 2 ч…" and not answer["show_alert"]
    taken_at = local(pressed).strftime("%d.%m %H:%M")
    other = stack.telegram.wait_for_callback_answer(second, timeout=15)
    assert other["show_alert"] and other["text"].startswith("Это уже взял(а) @duty_engineer, ")
    assert stack.telegram.wait_for_callback_answer(again, timeout=15)["text"] == "Вы уже взяли это в работу."

    def edited():
        shown = current(stack.telegram, GROUP_CHAT, message.message_id)
        return shown if shown.edits else None
    shown = wait_for(edited, 15, "the message edited")
    text = parse_html(shown.text)

    def until(taken: float) -> str:  # the day too, when the silence ends after midnight
        ends = local(taken + 2 * 3600)
        return ends.strftime("%H:%M" if ends.date() == local(taken).date() else "%d.%m %H:%M")
    last = text.split("\n")[-1]
    assert last.startswith("✋ Взял(а): @duty_engineer, "), last
    # The press is handled a moment after it is made, perhaps in the next minute.
    assert last.rpartition(", заглушено до ")[2] in (until(pressed), until(pressed + 60)), last
    assert last.split(", ")[1] in (taken_at, local(pressed + 60).strftime("%d.%m %H:%M"))
    assert text.split("\n\n✋")[0] == parse_html(message.text)  # the alerts' text as it was
    assert shown.reply_markup["inline_keyboard"] == silence_rows  # the take button is gone, the rest stay
    assert shown.edits == 1

    # A silence per alert, exactly its labels, made by whoever took it, for two hours.
    silences = stack.silences()
    assert len(silences) == 2
    for silence in silences:
        assert silence["comment"] == "взял(а) @duty_engineer"
        assert silence["createdBy"] == f"Telegram @duty_engineer ({ALLOWED_USER})"
        assert all(not m["isRegex"] and m.get("isEqual", True) for m in silence["matchers"])
        ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
        assert abs(ends.timestamp() - pressed - 2 * 3600) < 60
    assert sorted(tuple(sorted((m["name"], m["value"]) for m in s["matchers"])) for s in silences) == [
        (("alertname", "FnExpiring"), ("kkt", kkt), ("severity", "critical"), ("site", "shop-7"))
        for kkt in ("0650001", "0650002")]
    wait_for(lambda: all(a["status"]["state"] == "suppressed" for a in stack.am_alerts()), 10, "both silenced")
    # The repeats stop: nothing more fires in the chat.
    count = len(stack.firing_messages())
    time.sleep(6)
    assert len(stack.firing_messages()) == count

    # /alerts tells who took what.
    before = len(stack.telegram.messages(GROUP_CHAT))
    stack.telegram.user_says(GROUP_CHAT, "/alerts", user_id=ALLOWED_USER)
    [listing] = wait_for(lambda: [m for m in stack.telegram.messages(GROUP_CHAT)[before:]
                                  if not m.text.startswith("🔥")] or None, 15, "the /alerts answer")
    lines = [line for line in parse_html(listing.text).split("\n") if "shop-7" in line]
    assert len(lines) == 2 and all(line.endswith(" · ✋ @duty_engineer") for line in lines), lines
    log = stack.receiver.log_text()
    assert "event=command command=take" in log and "silenced=yes result=ok" in log


def test_a_strangers_press_is_refused_and_changes_nothing(tmp_path, fake_telegram, receiver_process):
    telegram = fake_telegram()
    telegram.add_chat(OTHER_CHAT, type="group")
    config = write_receiver_config(tmp_path, telegram.url, extra=f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
  allowed_chats: [{GROUP_CHAT}]
  allowed_users: [{ALLOWED_USER}]
  poll_timeout: 2s
  take_silence: 1h
""")
    receiver = receiver_process(config)
    starts = datetime.now(timezone.utc) - timedelta(minutes=5)
    answer = post(f"{receiver.url}/alert/other", payload([alert(site="shop-2", fingerprint="00000000000000a1",
                                                                 starts_at=starts)]))
    assert answer.status_code == 200
    [message] = telegram.wait_for_messages(1, chat_id=OTHER_CHAT)
    assert buttons_of(message)[0] == "✋ Беру"
    query = telegram.press_button(OTHER_CHAT, message.message_id, "take", user_id=STRANGER)
    answer = telegram.wait_for_callback_answer(query, timeout=15)
    assert answer["show_alert"] and answer["text"] == "Вам нельзя брать в работу оповещения этого бота."
    time.sleep(2)
    assert current(telegram, OTHER_CHAT, message.message_id).edits == 0
    assert "editMessageText" not in [method for method, _, _ in telegram.requests]
    from alertmanager.outbox import Outbox
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.takers() == {}
    [sent] = outbox.messages_carrying(f"main|{OTHER_CHAT}|", "other", [("00000000000000a1", starts.isoformat())])
    assert sent.taken_user is None
    outbox.close()
    assert "event=command_ignored reason=not_allowed" in receiver.log_text()


def test_a_take_without_silence_stays_shown_when_the_alert_resolves(tmp_path, fake_telegram, receiver_process):
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    config = write_receiver_config(tmp_path, telegram.url, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
    resolved: edit
""", extra=f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
  allowed_chats: [{GROUP_CHAT}]
  poll_timeout: 2s
""")
    receiver = receiver_process(config)
    starts = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    firing = alert("SiteDown", site="shop-4", fingerprint="00000000000000b1", starts_at=starts)
    assert post(f"{receiver.url}/alert/duty", payload([firing])).status_code == 200
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    pressed = time.time()
    query = telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=COLLEAGUE, username=None,
                                  first_name="Пётр")
    assert telegram.wait_for_callback_answer(query, timeout=15)["text"] == "✋ Вы взяли это в работу."
    taken = wait_for(lambda: current(telegram, GROUP_CHAT, message.message_id).edits == 1 and
                     current(telegram, GROUP_CHAT, message.message_id), 15, "the take shown")
    line = parse_html(taken.text).split("\n")[-1]
    assert line in (f"✋ Взял(а): Пётр, {local(pressed).strftime('%d.%m %H:%M')}",
                    f"✋ Взял(а): Пётр, {local(pressed + 60).strftime('%d.%m %H:%M')}"), line
    assert "заглушено" not in line
    assert buttons_of(taken) == ["🔕 Заглушить на 1 ч", "4 ч", "24 ч"]  # taken: only its take button is gone
    ends = starts + timedelta(minutes=7)
    resolved = {**firing, "status": "resolved", "endsAt": ends.isoformat().replace("+00:00", "Z")}
    assert post(f"{receiver.url}/alert/duty", payload([resolved])).status_code == 200
    done = wait_for(lambda: current(telegram, GROUP_CHAT, message.message_id).edits == 2 and
                    current(telegram, GROUP_CHAT, message.message_id), 15, "the resolution shown")
    lines = parse_html(done.text).split("\n")
    assert lines[0].startswith("✅ Решено: SiteDown (1)")
    assert lines[-2:] == [line, f"✅ Решено {resolved_at(ends, done.date)}, длилось 7 мин"]
    assert done.reply_markup is None
    assert len(telegram.messages(GROUP_CHAT)) == 1


def test_garbled_presses_are_answered_and_the_commands_after_them_still_work(tmp_path, fake_telegram,
                                                                             receiver_process):
    """Updates Telegram would never send (a message id that is text or too big for any number, a chat id that
    is no number, 64 bytes of noise as the data) are answered or skipped one by one: none of them stops the
    bot from reading the updates after it."""
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    config = write_receiver_config(tmp_path, telegram.url, extra=f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
  allowed_chats: [{GROUP_CHAT}]
  poll_timeout: 2s
""")
    receiver = receiver_process(config)
    starts = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert post(f"{receiver.url}/alert/duty", payload([alert(site="shop-3", fingerprint="00000000000000c1",
                                                              starts_at=starts)])).status_code == 200
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    chat = {"id": GROUP_CHAT, "type": "supergroup", "title": "Дежурные"}
    person = {"id": ALLOWED_USER, "is_bot": False, "first_name": "Иван", "username": "duty_engineer"}
    shown = {"message_id": message.message_id, "chat": chat, "date": int(time.time()), "text": "…"}
    presses = {"text-id": {**shown, "message_id": "abc"}, "huge-id": {**shown, "message_id": 2 ** 70},
               "negative-id": {**shown, "message_id": -5}, "other-chat": {**shown, "chat": {**chat, "id": OTHER_CHAT}},
               "no-message": {}}
    for name, shown_message in presses.items():
        telegram.raw_update("callback_query", {"id": name, "from": person, "message": shown_message,
                                               "chat_instance": "1", "data": "take"})
    telegram.raw_update("callback_query", {"id": "noise", "from": person, "message": shown, "chat_instance": "1",
                                           "data": "\x00ÿ" * 21 + "x"})
    telegram.raw_update("callback_query", {"id": "chat-text", "from": person, "chat_instance": "1", "data": "take",
                                           "message": {**shown, "chat": {"id": "zzz", "type": "supergroup"}}})
    before = len(telegram.messages(GROUP_CHAT))
    telegram.user_says(GROUP_CHAT, "/help", user_id=ALLOWED_USER)
    [help_text] = wait_for(lambda: telegram.messages(GROUP_CHAT)[before:] or None, 20, "the /help answer")
    assert "/alerts" in parse_html(help_text.text)
    for name in ("text-id", "huge-id", "negative-id", "noise"):
        answer = telegram.wait_for_callback_answer(name, timeout=5)
        assert answer["text"] == "Эта кнопка устарела." and answer["show_alert"], (name, answer)
    for name in ("other-chat", "no-message", "chat-text"):  # not the allowed chat, and nobody is allowed elsewhere
        answer = telegram.wait_for_callback_answer(name, timeout=5)
        assert answer["text"] == "Вам нельзя брать в работу оповещения этого бота.", (name, answer)
    assert current(telegram, GROUP_CHAT, message.message_id).edits == 0  # nothing was taken
    assert "Traceback" not in receiver.log_text()


def test_alerts_names_only_who_took_the_firing_now(tmp_path, fake_telegram, alertmanager, receiver_process):
    """A take is of one firing: when the alert resolved unseen (send_resolved: false) and fired again, /alerts
    no longer names who took its earlier firing, and a take of the new one is named."""
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    am = alertmanager("route:\n  receiver: telegram\nreceivers:\n  - name: telegram\n")
    config = write_receiver_config(tmp_path, telegram.url, outbox_extra="  dedup_window: 0s", extra=f"""
commands:
  alertmanager_url: {am}
  allowed_chats: [{GROUP_CHAT}]
  poll_timeout: 2s
""")
    receiver = receiver_process(config)
    labels = {"alertname": "SiteDown", "site": "shop-5", "severity": "critical"}
    first = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    assert requests.post(f"{am}/api/v2/alerts", json=[{"labels": labels, "startsAt": first.isoformat()}],
                         timeout=5).status_code == 200
    [held] = wait_for(lambda: requests.get(f"{am}/api/v2/alerts", timeout=5).json(), 10, "the alert in Alertmanager")
    fingerprint = held["fingerprint"]

    def fired(starts: datetime):
        before = len(telegram.messages(GROUP_CHAT))
        firing = alert("SiteDown", site="shop-5", fingerprint=fingerprint, starts_at=starts)
        assert post(f"{receiver.url}/alert/duty", payload([firing])).status_code == 200
        return telegram.wait_for_messages(before + 1, chat_id=GROUP_CHAT)[-1]

    def taken_by(message, user: int, username: str) -> None:
        query = telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=user, username=username)
        assert telegram.wait_for_callback_answer(query, timeout=15)["text"] == "✋ Вы взяли это в работу."
        wait_for(lambda: current(telegram, GROUP_CHAT, message.message_id).edits == 1, 15, "the take shown")

    def listed() -> str:
        before = len(telegram.messages(GROUP_CHAT))
        telegram.user_says(GROUP_CHAT, "/alerts", user_id=ALLOWED_USER)
        [listing] = wait_for(lambda: telegram.messages(GROUP_CHAT)[before:] or None, 15, "the /alerts answer")
        [line] = [line for line in parse_html(listing.text).split("\n") if "shop-5" in line]
        return line

    taken_by(fired(first), ALLOWED_USER, "duty_engineer")
    assert listed().endswith(" · ✋ @duty_engineer")
    again = fired(first + timedelta(hours=1))  # its resolution never came: send_resolved is off
    assert "✋" not in listed()
    taken_by(again, COLLEAGUE, "second_engineer")
    assert listed().endswith(" · ✋ @second_engineer")


def test_a_name_written_right_to_left_keeps_the_time_after_it(tmp_path, fake_telegram, receiver_process):
    """A name in Arabic or Hebrew (or with a direction mark in it) is isolated, so the date and time after it
    stay where a Russian reader expects them and are not pulled into the name's direction."""
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    config = write_receiver_config(tmp_path, telegram.url, extra=f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
  allowed_chats: [{GROUP_CHAT}]
  poll_timeout: 2s
""")
    receiver = receiver_process(config)
    starts = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert post(f"{receiver.url}/alert/duty", payload([alert(site="shop-6", fingerprint="00000000000000d1",
                                                              starts_at=starts)])).status_code == 200
    [message] = telegram.wait_for_messages(1, chat_id=GROUP_CHAT)
    name = "علي <b>\u202e"
    query = telegram.press_button(GROUP_CHAT, message.message_id, "take", user_id=ALLOWED_USER, username=None,
                                  first_name=name)
    telegram.wait_for_callback_answer(query, timeout=15)
    shown = wait_for(lambda: current(telegram, GROUP_CHAT, message.message_id).edits == 1 and
                     current(telegram, GROUP_CHAT, message.message_id), 15, "the take shown")
    last = parse_html(shown.text).split("\n")[-1]
    assert last.startswith(f"✋ Взял(а): \u2068{name}\u2069, "), repr(last)
    # The take button is gone from the message; a press made before the edit reached the chat is still answered.
    second = telegram.raw_update("callback_query", {
        "id": "late", "from": {"id": COLLEAGUE, "is_bot": False, "first_name": "Пётр"}, "chat_instance": "1",
        "data": "take", "message": {"message_id": message.message_id, "date": int(time.time()), "text": "…",
                                    "chat": {"id": GROUP_CHAT, "type": "supergroup", "title": "Дежурные"}}})
    assert second["callback_query"]["id"] == "late"
    answer = telegram.wait_for_callback_answer("late", timeout=15)
    assert answer["text"].startswith(f"Это уже взял(а) \u2068{name}\u2069, "), repr(answer["text"])
