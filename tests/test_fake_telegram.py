"""The fake Telegram Bot API over real HTTP: what it accepts and records, the errors the real API gives
(missing, migrated and blocked chats, HTML it cannot parse, long texts, flood limits), the failures tests
switch on, and a stop() that does not wait for a hanging request."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from simulators.telegram import DEFAULT_TOKEN, FakeTelegram, RateLimits


@pytest.fixture
def telegram():
    with FakeTelegram() as server:
        yield server


def call(server: FakeTelegram, method: str, token: str = DEFAULT_TOKEN, timeout: float = 5, **params):
    response = requests.post(f"{server.url}/bot{token}/{method}", json=params, timeout=timeout)
    assert response.headers["Content-Type"].startswith("application/json")
    return response.status_code, response.json()


def send(server: FakeTelegram, chat_id, text: str = "disk full", **params):
    return call(server, "sendMessage", chat_id=chat_id, text=text, **params)


def test_get_me_answers_the_bot_and_a_wrong_token_is_unauthorized(telegram):
    status, answer = call(telegram, "getMe")
    assert status == 200 and answer["ok"]
    assert answer["result"] == {"id": 123456, "is_bot": True, "first_name": "sitewatch test",
                                "username": "sitewatch_test_bot", "can_join_groups": True,
                                "can_read_all_group_messages": False, "supports_inline_queries": False}
    assert call(telegram, "getMe", token="1:nope") == (
        401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert call(telegram, "sendSticker", chat_id=1) == (
        404, {"ok": False, "error_code": 404, "description": "Not Found"})
    assert telegram.requests == [("getMe", "", 200), ("getMe", "", 401), ("sendSticker", "1", 404)]


def test_sent_messages_are_recorded_whichever_way_the_parameters_come(telegram):
    status, answer = send(telegram, -100500, "<b>Down</b>: office", parse_mode="HTML", disable_notification=True)
    assert status == 200
    assert answer["result"]["text"] == "Down: office"
    assert answer["result"]["chat"]["id"] == -100500
    base = f"{telegram.url}/bot{DEFAULT_TOKEN}/sendMessage"
    assert requests.post(base, data={"chat_id": "-100500", "text": "form"}, timeout=5).status_code == 200
    assert requests.get(base, params={"chat_id": "@alerts", "text": "query"}, timeout=5).status_code == 200

    in_group = telegram.wait_for_messages(2, chat_id="-100500", timeout=2)
    assert [m.text for m in in_group] == ["<b>Down</b>: office", "form"]
    assert in_group[0].parse_mode == "HTML" and in_group[0].disable_notification
    assert in_group[1].chat_id == -100500 and [m.message_id for m in in_group] == [1, 2]
    assert [m.text for m in telegram.messages("@ALERTS")] == ["query"]
    with pytest.raises(AssertionError, match="expected 4 messages"):
        telegram.wait_for_messages(4, timeout=0.1)


def test_forgotten_migrated_and_blocked_chats_answer_like_telegram(telegram):
    telegram.forget_chat(-5)
    assert send(telegram, -5)[1]["description"] == "Bad Request: chat not found"
    assert call(telegram, "getChat", chat_id=-5)[0] == 400

    telegram.migrate_chat(-6, -1001234567890)
    status, answer = send(telegram, -6)
    assert status == 400
    assert answer["description"] == "Bad Request: group chat was upgraded to a supergroup chat"
    assert answer["parameters"] == {"migrate_to_chat_id": -1001234567890}
    assert call(telegram, "getChat", chat_id=-1001234567890)[1]["result"]["type"] == "supergroup"

    telegram.block_bot(42)
    assert send(telegram, 42) == (403, {"ok": False, "error_code": 403,
                                        "description": "Forbidden: bot was blocked by the user"})
    telegram.block_bot(-7)
    assert send(telegram, -7)[1]["description"] == "Forbidden: bot was kicked from the group chat"
    member = call(telegram, "getChatMember", chat_id=-7, user_id=123456)[1]["result"]
    assert member["status"] == "kicked" and member["user"]["id"] == 123456
    assert telegram.messages() == []


def test_chat_and_member_details(telegram):
    telegram.add_chat("@news", type="channel", title="News")
    member = call(telegram, "getChatMember", chat_id="@news", user_id=123456)[1]["result"]
    assert member["status"] == "administrator" and member["can_post_messages"] is True
    telegram.add_chat(-300, type="supergroup", title="Ops", is_forum=True)
    assert call(telegram, "getChat", chat_id=-300)[1]["result"] == {
        "id": -300, "type": "supergroup", "title": "Ops", "is_forum": True, "accent_color_id": 0,
        "max_reaction_count": 11}
    assert send(telegram, -300, message_thread_id=7)[0] == 200
    assert send(telegram, -301, message_thread_id=7)[1]["description"] == "Bad Request: message thread not found"


def test_injected_failures_and_an_outage(telegram):
    telegram.fail_next(1, "429", chat_id=-5, retry_after=7)
    assert send(telegram, -6)[0] == 200  # another chat is not affected
    status, answer = send(telegram, -5)
    assert (status, answer["parameters"]) == (429, {"retry_after": 7})
    assert answer["description"] == "Too Many Requests: retry after 7"
    assert send(telegram, -5)[0] == 200

    telegram.set_mode("500")
    assert send(telegram, -5) == (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
    telegram.set_mode("502")
    response = requests.post(f"{telegram.url}/bot{DEFAULT_TOKEN}/sendMessage", json={"chat_id": -5, "text": "x"},
                             timeout=5)
    assert response.status_code == 502 and "<h1>502 Bad Gateway</h1>" in response.text
    telegram.set_mode(None)
    assert send(telegram, -5)[0] == 200

    telegram.set_mode("reject_html")
    status, answer = send(telegram, -5, "<b>x</b>", parse_mode="HTML")
    assert status == 400 and answer["description"].startswith("Bad Request: can't parse entities: Unsupported")
    assert send(telegram, -5, "<b>x</b>")[0] == 200
    assert [m.text for m in telegram.messages(-5)] == ["disk full", "disk full", "<b>x</b>"]


@pytest.mark.parametrize("text, error", [
    ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("диск &nbsp;", 'Unsupported HTML entity "&nbsp;" at byte offset 9'),
    ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ('<a href="javascript:alert(1)">y</a>', "Unsupported URL protocol"),
])
def test_html_it_cannot_parse_is_refused(telegram, text, error):
    assert send(telegram, 1, text, parse_mode="HTML") == (
        400, {"ok": False, "error_code": 400, "description": f"Bad Request: can't parse entities: {error}"})


@pytest.mark.parametrize("text, visible", [
    ("&lt;b&gt;&amp;", "<b>&"),
    ("<b>x</b>", "x"),
    ('<a href="https://x.ru/?a=1&amp;b=2">y</a>', "y"),
    ('<blockquote expandable><span class="tg-spoiler">&#x1F600;</span></blockquote>', "😀"),
])
def test_valid_html_is_accepted(telegram, text, visible):
    status, answer = send(telegram, 1, text, parse_mode="HTML")
    assert status == 200 and answer["result"]["text"] == visible


def test_length_is_counted_in_utf16_code_units_of_the_visible_text(telegram):
    assert send(telegram, 1, "😀" + "a" * 4094)[0] == 200
    assert send(telegram, 1, "😀" + "a" * 4095) == (
        400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"})
    assert send(telegram, 1, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")[0] == 200
    assert send(telegram, 1, "  ")[1]["description"] == "Bad Request: message text is empty"


def test_flood_limits():
    with FakeTelegram(enforce_limits=True) as telegram:
        assert send(telegram, 42)[0] == 200
        status, answer = send(telegram, 42)
        assert (status, answer["parameters"]) == (429, {"retry_after": 1})
        assert answer["description"] == "Too Many Requests: retry after 1"
        assert send(telegram, 43)[0] == 200  # the limit is per chat
        assert telegram.rate_limited == 1

    limits = RateLimits(per_chat_interval=0.0, group_per_minute=3, bot_per_second=5, group_window=0.4)
    with FakeTelegram(enforce_limits=True, limits=limits) as telegram:
        assert [send(telegram, -5)[0] for _ in range(4)] == [200, 200, 200, 429]
        time.sleep(0.45)
        assert send(telegram, -5)[0] == 200
        time.sleep(1.05)  # out of the bot's one-second window
        assert [send(telegram, chat)[0] for chat in range(1, 7)] == [200] * 5 + [429]
        assert telegram.rate_limited == 2 and len(telegram.messages()) == 9


def test_a_hanging_answer_times_the_client_out_and_stop_does_not_wait_for_it():
    telegram = FakeTelegram(hang_seconds=0.5).start()
    telegram.fail_next(1, "hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(telegram, 1, timeout=0.2)
    assert send(telegram, 1)[0] == 200  # after the hang, Telegram is back
    telegram.stop()

    telegram = FakeTelegram(hang_seconds=30).start()
    telegram.set_mode("hang")
    client = threading.Thread(target=lambda: pytest.raises(requests.RequestException, send, telegram, 1))
    client.start()
    time.sleep(0.2)
    began = time.monotonic()
    telegram.stop()
    client.join(2)
    assert time.monotonic() - began < 1.5 and not client.is_alive()
    assert telegram.messages() == []
