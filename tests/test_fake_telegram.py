"""The fake Telegram Bot API over real HTTP: what it accepts and records, the errors the real API gives
(missing, migrated and blocked chats, HTML it cannot parse, long texts, flood limits), the failures tests
switch on, and a stop() that does not wait for a hanging request."""

from __future__ import annotations

import json
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


# --- inline keyboards, incoming updates and callback queries ---------------------------------------------------

SILENCE = {"inline_keyboard": [[{"text": "Тишина 1 ч", "callback_data": "silence:shop-1:1h"},
                                {"text": "4 ч", "callback_data": "silence:shop-1:4h"}],
                               [{"text": "Dashboard", "url": "https://grafana.example/d/sites"}]]}


def get_updates(server: FakeTelegram, token: str = DEFAULT_TOKEN, http_timeout: float = 30, **params):
    """getUpdates with its own `timeout` (the long poll's) among params; the status and the answer."""
    response = requests.post(f"{server.url}/bot{token}/getUpdates", json=params, timeout=http_timeout)
    return response.status_code, response.json()


def updates(server: FakeTelegram, **params) -> list[dict]:
    status, answer = get_updates(server, **params)
    assert status == 200, answer
    return answer["result"]


def polling(server: FakeTelegram, **params) -> tuple[threading.Thread, list]:
    """A getUpdates call in a thread; its (status, answer), or the exception it raised, lands in the list."""
    answers: list = []

    def poll() -> None:
        try:
            answers.append(get_updates(server, **params))
        except requests.RequestException as err:
            answers.append(err)

    thread = threading.Thread(target=poll)
    thread.start()
    return thread, answers


def test_a_keyboard_is_kept_on_the_message_and_returned_whichever_way_it_comes(telegram):
    status, answer = send(telegram, -5, reply_markup=SILENCE)
    assert status == 200 and answer["result"]["reply_markup"] == SILENCE
    as_string = {"inline_keyboard": [[{"text": "24 ч", "callback_data": "silence:shop-1:24h"}]]}
    assert send(telegram, -5, reply_markup=json.dumps(as_string))[0] == 200  # JSON-serialized, as documented
    form = {"chat_id": "-5", "text": "form", "reply_markup": json.dumps(as_string)}
    assert requests.post(f"{telegram.url}/bot{DEFAULT_TOKEN}/sendMessage", data=form, timeout=5).status_code == 200
    assert "reply_markup" not in send(telegram, -5, "no buttons")[1]["result"]
    assert [m.reply_markup for m in telegram.messages(-5)] == [SILENCE, as_string, as_string, None]


def many_buttons(count: int) -> dict:
    return {"inline_keyboard": [[{"text": str(n), "callback_data": str(n)}] for n in range(count)]}


@pytest.mark.parametrize("markup, error", [
    ({"inline_keyboard": [[{"text": "x", "callback_data": "ш" * 32}]]}, None),  # 64 bytes: the most there is
    ({"inline_keyboard": [[{"text": "x", "callback_data": "ш" * 33}]]}, "Bad Request: BUTTON_DATA_INVALID"),
    ({"inline_keyboard": [[{"text": "x", "callback_data": ""}]]}, "Bad Request: BUTTON_DATA_INVALID"),
    ({"inline_keyboard": [[{"text": "x"}]]},
     "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"),
    ({"inline_keyboard": [[{"text": "", "callback_data": "a"}]]},
     "Bad Request: can't parse inline keyboard button: Text must be non-empty"),
    ({"inline_keyboard": [[{"text": "x", "url": "javascript:alert(1)"}]]}, "Bad Request: BUTTON_URL_INVALID"),
    (many_buttons(100), None),
    (many_buttons(101), "Bad Request: reply markup is too long"),
    ("{not json", "Bad Request: can't parse reply keyboard markup JSON object"),
])
def test_keyboards_telegram_refuses(telegram, markup, error):
    status, answer = send(telegram, -5, reply_markup=markup)
    if error is None:
        assert status == 200
    else:
        assert (status, answer["description"]) == (400, error)
        assert telegram.messages() == []


def test_what_a_user_says_comes_through_get_updates_until_confirmed(telegram):
    telegram.add_chat(-5, title="Ops")
    said = telegram.user_says(-5, "/silence shop-1 4h")
    assert telegram.pending_updates() == 1
    [update] = updates(telegram)
    assert update == said and update["update_id"] >= 100000  # ids start anywhere, not at 0 or 1
    message = update["message"]
    assert message["text"] == "/silence shop-1 4h" and message["chat"] == {"id": -5, "type": "group", "title": "Ops"}
    assert message["from"] == {"id": 555, "is_bot": False, "first_name": "Иван", "username": "duty_engineer"}
    assert message["entities"] == [{"offset": 0, "length": 8, "type": "bot_command"}]

    plain = telegram.user_says(-5, "just talking")
    assert "entities" not in plain["message"] and plain["message"]["message_id"] == message["message_id"] + 1
    assert updates(telegram) == [update, plain]  # nothing is confirmed without an offset
    assert updates(telegram, offset=update["update_id"] + 1) == [plain]
    assert updates(telegram, offset=update["update_id"]) == [plain]  # what was confirmed is gone for good
    assert updates(telegram, offset=plain["update_id"] + 1) == [] and telegram.pending_updates() == 0
    assert ("getUpdates", "", 200) in telegram.requests

    with pytest.raises(ValueError, match="add_chat"):
        telegram.user_says(-999, "/status")
    with pytest.raises(ValueError, match="topics"):
        telegram.user_says(-5, "/status", message_thread_id=3)


def test_a_topic_message_goes_to_the_bot_asked_for():
    with FakeTelegram({DEFAULT_TOKEN: 123456, "777:other": 777}) as telegram:
        telegram.add_chat(-1001, type="supergroup", is_forum=True)
        said = telegram.user_says(-1001, "/status@bot777_bot now", message_thread_id=3, bot_token="777:other")
        assert said["message"]["message_thread_id"] == 3 and said["message"]["is_topic_message"]
        assert said["message"]["entities"][0]["length"] == len("/status@bot777_bot")
        assert updates(telegram) == [] and telegram.pending_updates("777:other") == 1
        assert updates(telegram, token="777:other") == [said]


def test_a_long_poll_returns_as_soon_as_a_message_arrives_and_empty_after_its_timeout(telegram):
    telegram.add_chat(-5)
    old = telegram.user_says(-5, "old")
    poll, answers = polling(telegram, offset=old["update_id"] + 1, timeout=20)
    time.sleep(0.5)
    assert poll.is_alive() and telegram.pending_updates() == 0  # waiting, and "old" is confirmed
    said_at = time.monotonic()
    said = telegram.user_says(-5, "/status")
    poll.join(5)
    assert not poll.is_alive() and time.monotonic() - said_at < 2
    assert answers == [(200, {"ok": True, "result": [said]})]

    began = time.monotonic()
    assert updates(telegram, offset=said["update_id"] + 1, timeout=1) == []
    assert 0.9 < time.monotonic() - began < 2


def test_a_second_get_updates_terminates_the_first(telegram):
    first, answers = polling(telegram, timeout=20)
    time.sleep(0.3)
    began = time.monotonic()
    second, second_answers = polling(telegram, timeout=1)
    first.join(5)
    assert not first.is_alive() and time.monotonic() - began < 2
    assert answers == [(409, {"ok": False, "error_code": 409, "description": "Conflict: terminated by other "
                              "getUpdates request; make sure that only one bot instance is running"})]
    second.join(5)
    assert second_answers == [(200, {"ok": True, "result": []})]  # the newer one went on, to its timeout
    assert ("getUpdates", "", 409) in telegram.requests


def test_stop_ends_a_long_poll():
    telegram = FakeTelegram().start()
    poll, answers = polling(telegram, timeout=30)
    time.sleep(0.3)
    began = time.monotonic()
    telegram.stop()
    poll.join(3)
    assert not poll.is_alive() and time.monotonic() - began < 1.5
    # [] as it wakes, unless the connection closed under it first: either way the client is not left waiting
    assert answers[0] == (200, {"ok": True, "result": []}) or isinstance(answers[0], requests.ConnectionError)


def test_allowed_updates_are_remembered_and_apply_to_updates_made_after(telegram):
    telegram.add_chat(-5)
    send(telegram, -5, reply_markup=SILENCE)
    before = telegram.user_says(-5, "/status")  # made before the bot narrowed its updates: still delivered
    assert updates(telegram, allowed_updates=json.dumps(["callback_query"])) == [before]
    assert "update_id" not in telegram.user_says(-5, "/status")  # Telegram drops what the bot does not want
    query = telegram.press_button(-5, 1, "silence:shop-1:4h")
    [update] = updates(telegram, offset=before["update_id"] + 1)  # no allowed_updates: the last ones hold
    assert update["callback_query"]["id"] == query
    assert updates(telegram, offset=update["update_id"] + 1, allowed_updates=[]) == []  # [] is the default again
    assert telegram.user_says(-5, "/status")["update_id"] > update["update_id"]


def test_a_button_press_is_a_callback_query_answered_once(telegram):
    telegram.add_chat(-5, title="Ops")
    message = send(telegram, -5, "<b>Down</b>", parse_mode="HTML", reply_markup=SILENCE)[1]["result"]
    with pytest.raises(ValueError, match="no button"):
        telegram.press_button(-5, message["message_id"], "silence:shop-1:7d")
    with pytest.raises(ValueError, match="no message"):
        telegram.press_button(-5, message["message_id"] + 1, "silence:shop-1:4h")

    query_id = telegram.press_button(-5, message["message_id"], "silence:shop-1:4h")
    [update] = updates(telegram)
    query = update["callback_query"]
    assert query["id"] == query_id and query["data"] == "silence:shop-1:4h" and query["chat_instance"]
    assert query["message"] == message and query["message"]["reply_markup"] == SILENCE
    assert query["from"]["id"] == 555

    assert call(telegram, "answerCallbackQuery", callback_query_id=query_id, text="x" * 201)[1]["description"] == (
        "Bad Request: MESSAGE_TOO_LONG")
    assert call(telegram, "answerCallbackQuery", callback_query_id=query_id, text="Тишина на 4 ч") == (
        200, {"ok": True, "result": True})
    assert telegram.wait_for_callback_answer(query_id, timeout=1) == {
        "callback_query_id": query_id, "text": "Тишина на 4 ч", "show_alert": False}
    too_old = (400, {"ok": False, "error_code": 400, "description": "Bad Request: query is too old and response "
                     "timeout expired or query ID is invalid"})
    assert call(telegram, "answerCallbackQuery", callback_query_id=query_id) == too_old  # answered already
    assert call(telegram, "answerCallbackQuery", callback_query_id="12345") == too_old

    telegram.callback_answer_timeout = 0.2
    late = telegram.press_button(-5, message["message_id"], "silence:shop-1:1h")
    time.sleep(0.3)
    assert call(telegram, "answerCallbackQuery", callback_query_id=late, show_alert=True) == too_old
    with pytest.raises(AssertionError, match="not answered"):
        telegram.wait_for_callback_answer(late, timeout=0.1)
    assert len(telegram.callback_answers) == 1


def test_edited_buttons_are_what_can_be_pressed(telegram):
    telegram.add_chat(-5)
    message_id = send(telegram, -5, reply_markup=SILENCE)[1]["result"]["message_id"]
    telegram.press_button(-5, message_id, "silence:shop-1:1h")
    only_24h = {"inline_keyboard": [[{"text": "24 ч", "callback_data": "silence:shop-1:24h"}]]}
    status, answer = call(telegram, "editMessageReplyMarkup", chat_id=-5, message_id=message_id,
                          reply_markup=json.dumps(only_24h))
    assert status == 200 and answer["result"]["reply_markup"] == only_24h and answer["result"]["edit_date"]
    assert telegram.messages(-5)[0].reply_markup == only_24h
    with pytest.raises(ValueError, match="no button"):
        telegram.press_button(-5, message_id, "silence:shop-1:1h")
    telegram.press_button(-5, message_id, "silence:shop-1:24h")
    shown = [u["callback_query"]["message"]["reply_markup"] for u in updates(telegram)]
    assert shown == [SILENCE, only_24h]  # each press carries the message as it was then

    assert call(telegram, "editMessageReplyMarkup", chat_id=-5, message_id=message_id, reply_markup=only_24h) == (
        400, {"ok": False, "error_code": 400, "description": "Bad Request: message is not modified: specified new "
              "message content and reply markup are exactly the same as a current content and reply markup of "
              "the message"})
    status, answer = call(telegram, "editMessageReplyMarkup", chat_id=-5, message_id=message_id)
    assert status == 200 and "reply_markup" not in answer["result"]
    assert telegram.messages(-5)[0].reply_markup is None
    with pytest.raises(ValueError, match="no button"):
        telegram.press_button(-5, message_id, "silence:shop-1:24h")
    assert call(telegram, "editMessageReplyMarkup", chat_id=-5, message_id=message_id,
                reply_markup={"inline_keyboard": []})[1]["description"].startswith("Bad Request: message is not mod")
    assert call(telegram, "editMessageReplyMarkup", chat_id=-5, message_id=99)[1]["description"] == (
        "Bad Request: message to edit not found")
