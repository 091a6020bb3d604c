"""Bot commands and silence buttons, end to end: the fake Telegram API (getUpdates, callback queries), the
receiver as a process, and Debian's Alertmanager holding the alerts and the silences (also read back with
amtool, as an operator would)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import ROOT, free_port
from simulators.telegram import parse_html
from receiver_kit import GROUP_CHAT, OTHER_CHAT, ReceiverProcess, wait_for, write_receiver_config

ALLOWED_USER = 555
STRANGER = 777
STRANGERS_CHAT = -1001000000099
PRIVATE_CHAT_OF_ALLOWED_USER = ALLOWED_USER  # a private chat's id is the user's id
CONTROL_CHAT = -1001000000050  # on allowed_chats, but no route posts to it
NEW_OTHER_CHAT = -1001000000003  # where the route "other" moves to in a test


def alertmanager_config(receiver_url: str, token_file: Path) -> str:
    webhook = (f"    webhook_configs:\n      - url: {receiver_url}/alert/{{route}}\n        send_resolved: true\n"
               f"        http_config:\n          authorization:\n            credentials_file: {token_file}\n")
    return ("route:\n  receiver: telegram-duty\n  group_by: [alertname, site]\n  group_wait: 0s\n"
            "  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n"
            "    - matchers: ['team=\"other\"']\n      receiver: telegram-other\n"
            "receivers:\n  - name: telegram-duty\n" + webhook.format(route="duty")
            + "  - name: telegram-other\n" + webhook.format(route="other"))


class Stack:
    def __init__(self, telegram, alertmanager_url: str, receiver: ReceiverProcess, folder: Path, commands: str):
        self.telegram = telegram
        self.am = alertmanager_url
        self.receiver = receiver
        self.folder = folder
        self.commands = commands  # the config's commands section

    def fire(self, *alerts: dict) -> None:
        body = [{"labels": a, "annotations": {"summary": f"{a.get('site')}: {a['alertname']} горит"},
                 "startsAt": (datetime.now(timezone.utc) - timedelta(minutes=3)).isoformat()} for a in alerts]
        assert requests.post(f"{self.am}/api/v2/alerts", json=body, timeout=5).status_code == 200

    def silences(self, state: str = "active") -> list[dict]:
        found = requests.get(f"{self.am}/api/v2/silences", timeout=5).json()
        return [s for s in found if s["status"]["state"] == state]

    def am_alerts(self) -> list[dict]:
        return requests.get(f"{self.am}/api/v2/alerts", timeout=5).json()

    def say(self, text: str, chat: int = GROUP_CHAT, user: int = ALLOWED_USER) -> int:
        """Types `text` in `chat`; returns how many messages the chat had before, to find the answer."""
        before = len(self.telegram.messages(chat))
        self.telegram.user_says(chat, text, user_id=user)
        return before

    def answers(self, chat: int, before: int, count: int = 1, timeout: float = 15) -> list[str]:
        """The bot's answers since `before`, as the chat shows them (the fake parses the HTML as Telegram
        does); alert notifications arriving meanwhile ("🔥 …", "✅ …") are not answers."""
        def replies():
            found = [m for m in self.telegram.messages(chat)[before:]
                     if not m.text.lstrip().startswith(("🔥", "✅"))]
            return found if len(found) >= count else None
        sent = wait_for(replies, timeout, f"{count} answer(s) in chat {chat}")
        return [parse_html(m.text) if m.parse_mode else m.text for m in sent]

    def amtool_silences(self) -> str:
        result = subprocess.run(["amtool", "silence", "query", f"--alertmanager.url={self.am}"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture
def stack(tmp_path, fake_telegram, alertmanager):
    telegram = fake_telegram()
    telegram.add_chat(GROUP_CHAT, type="supergroup")
    telegram.add_chat(OTHER_CHAT, type="group")
    telegram.add_chat(STRANGERS_CHAT, type="group")
    telegram.add_chat(PRIVATE_CHAT_OF_ALLOWED_USER, type="private")
    telegram.add_chat(CONTROL_CHAT, type="supergroup")
    config = write_receiver_config(tmp_path, telegram.url)  # rewritten below, once Alertmanager's URL is known
    receiver = ReceiverProcess(config, tmp_path / "receiver.log")
    alertmanager_url = alertmanager(alertmanager_config(receiver.url, tmp_path / "webhook.token"))
    central = tmp_path / "central.yml"  # the central exporter's config: devices go to its targets file
    central.write_text("defaults: {interval: 15s}\ntargets_file: targets.yml\n", encoding="utf-8")
    commands = f"""
commands:
  alertmanager_url: {alertmanager_url}
  allowed_chats: [{GROUP_CHAT}, {CONTROL_CHAT}]
  allowed_users: [{ALLOWED_USER}]
  exporter_config: {central}
  poll_timeout: 2s
  take_button: false
"""
    write_receiver_config(tmp_path, telegram.url, extra=commands)
    receiver.start()
    try:
        yield Stack(telegram, alertmanager_url, receiver, tmp_path, commands)
    finally:
        receiver.stop()


def title_of(alertname: str) -> str:
    """What a message calls a sitewatch alert: its Russian title, not its name."""
    from alertmanager.wording import title
    return title(alertname)


def firing_message_with_buttons(stack: Stack, alertname: str):
    def found():
        return [m for m in stack.telegram.messages(GROUP_CHAT) if title_of(alertname) in m.text and m.reply_markup]
    return wait_for(found, 20, f"a firing {alertname} message with buttons")[-1]


def test_a_button_silences_exactly_its_alert_in_alertmanager(stack):
    stack.fire({"alertname": "FnExpiring", "site": "shop-7", "kkt": "0650001", "severity": "critical"},
               {"alertname": "FnExpiring", "site": "shop-7", "kkt": "0650002", "severity": "critical"})
    message = firing_message_with_buttons(stack, "FnExpiring")
    rows = message.reply_markup["inline_keyboard"]
    assert len(rows) == 2 and [len(row) for row in rows] == [3, 3]  # one row per alert: 1 ч, 4 ч, 24 ч
    assert "0650001" in rows[0][0]["text"] or "0650001" in rows[1][0]["text"]
    row = next(r for r in rows if "0650001" in r[0]["text"])
    assert [b["text"] for b in row[1:]] == ["4 ч", "24 ч"]

    before = len(stack.telegram.messages(GROUP_CHAT))
    query = stack.telegram.press_button(GROUP_CHAT, message.message_id, row[1]["callback_data"],
                                        user_id=ALLOWED_USER)
    answer = stack.telegram.wait_for_callback_answer(query, timeout=15)
    assert answer["text"] == "⏳ Глушу на 4 ч…"  # answered at once, before Alertmanager is asked
    [notice] = stack.answers(GROUP_CHAT, before)
    assert "заглушил(а)" in notice and "на 4 ч" in notice and "/unsilence" in notice

    [silence] = stack.silences()
    matchers = {(m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in silence["matchers"]}
    assert matchers == {("alertname", "FnExpiring", False, True), ("site", "shop-7", False, True),
                        ("kkt", "0650001", False, True), ("severity", "critical", False, True)}
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert abs((ends - datetime.now(timezone.utc)).total_seconds() - 4 * 3600) < 120
    assert "duty_engineer" in silence["createdBy"]
    # Alertmanager now holds that till's alert as silenced, and only that one.
    def states():
        return {a["labels"]["kkt"]: a["status"]["state"] for a in stack.am_alerts()}
    wait_for(lambda: states() == {"0650001": "suppressed", "0650002": "active"}, 10, "one alert silenced")
    short = re.search(r"/unsilence ([0-9a-f]{8})", notice).group(1)
    assert silence["id"].startswith(short) and silence["id"][:8] in stack.amtool_silences()


def test_silence_silences_unsilence_round_trip_visible_to_amtool(stack):
    stack.fire({"alertname": "PcUnreachable", "site": "shop-9", "severity": "critical"})
    firing_message_with_buttons(stack, "PcUnreachable")

    before = stack.say("/silence shop-9 2h замена коммутатора")
    [reply] = stack.answers(GROUP_CHAT, before)
    assert "площадка shop-9" in reply and "на 2 ч" in reply
    assert "Под неё сейчас попадает оповещений: 1" in reply
    [silence] = stack.silences()
    assert [(m["name"], m["value"]) for m in silence["matchers"]] == [("site", "shop-9")]
    assert silence["comment"] == "замена коммутатора"
    assert "замена коммутатора" in stack.amtool_silences()

    before = stack.say("/silences")
    [listing] = stack.answers(GROUP_CHAT, before)
    assert silence["id"][:8] in listing and 'site="shop-9"' in listing
    assert "замена коммутатора" in listing

    before = stack.say(f"/unsilence {silence['id'][:6]}")
    [done] = stack.answers(GROUP_CHAT, before)
    assert "снята" in done
    assert stack.silences() == [] and len(stack.silences("expired")) == 1
    assert silence["id"][:8] not in stack.amtool_silences()


def test_status_shows_the_chats_own_alerts_grouped_by_site_and_escaped(stack):
    stack.fire({"alertname": "PortDown", "site": "shop-1", "check": "rdp", "severity": "warning",
                "client": "ООО <Ромашка> & Co"},
               {"alertname": "PcUnreachable", "site": "shop-2", "severity": "critical"},
               {"alertname": "KodeksMainPageError", "site": "office-5", "severity": "critical", "team": "other"})
    firing_message_with_buttons(stack, "PcUnreachable")
    wait_for(lambda: any(title_of("KodeksMainPageError") in m.text for m in stack.telegram.messages(OTHER_CHAT)), 20,
             "the other chat's alert")

    before = stack.say("/status")
    [status] = stack.answers(GROUP_CHAT, before)
    text = status
    assert "shop-1" in text and "shop-2" in text and "office-5" not in text  # only the duty route's alerts
    assert text.index("shop-2") < text.index("shop-1")  # the critical site first
    assert "клиент ООО <Ромашка> & Co" in text  # the fake parses the HTML: escaped values arrive literally

    before = stack.say("/status", chat=OTHER_CHAT)  # not allowed as a chat, but the user is
    [other] = stack.answers(OTHER_CHAT, before)
    assert "office-5" in other and "shop-1" not in other

    before = stack.say("/silence shop-1 1h")
    stack.answers(GROUP_CHAT, before)
    before = stack.say("/status")
    [after] = stack.answers(GROUP_CHAT, before)
    assert "shop-1" not in after.split("Заглушено")[0] and "Заглушено или подавлено: 1" in after


def test_strangers_are_ignored_logged_once_and_counted(stack):
    for _ in range(2):
        stack.say("/silence shop-4 1h", chat=STRANGERS_CHAT, user=STRANGER)
    before = stack.say("/help")  # an allowed command after them: once it is answered, theirs were read
    stack.answers(GROUP_CHAT, before)
    assert stack.telegram.messages(STRANGERS_CHAT) == []
    assert stack.silences() == []
    log = stack.receiver.log_text()
    assert log.count("event=command_ignored reason=not_allowed") == 1, log[-2000:]
    assert f"chat={STRANGERS_CHAT} user={STRANGER}" in log
    metrics = stack.receiver.metrics()
    assert 'sitewatch_receiver_commands_ignored_total{reason="not_allowed"} 2.0' in metrics
    assert 'sitewatch_receiver_commands_ignored_total{reason="chat_not_allowed"} 0.0' in metrics


def test_a_button_pressed_outside_the_allowlist_creates_no_silence(stack):
    stack.fire({"alertname": "PcUnreachable", "site": "shop-5", "severity": "critical", "telegram_route": "other"})
    wait_for(lambda: [m for m in stack.telegram.messages(OTHER_CHAT) if m.reply_markup], 20, "buttons in other")
    [message] = [m for m in stack.telegram.messages(OTHER_CHAT) if m.reply_markup]
    query = stack.telegram.press_button(OTHER_CHAT, message.message_id,
                                        message.reply_markup["inline_keyboard"][0][0]["callback_data"],
                                        user_id=STRANGER)
    answer = stack.telegram.wait_for_callback_answer(query, timeout=15)
    assert answer["show_alert"] and "нельзя" in answer["text"]
    assert stack.silences() == []


def fire_in_both_chats(stack: Stack) -> None:
    """shop-1 fires in the duty chat, office-5 in the other chat; returns once both chats were told (so the
    receiver has learnt which Alertmanager receiver posts to which route)."""
    stack.fire({"alertname": "PcUnreachable", "site": "shop-1", "severity": "critical"},
               {"alertname": "KodeksMainPageError", "site": "office-5", "severity": "critical", "team": "other"})
    firing_message_with_buttons(stack, "PcUnreachable")
    wait_for(lambda: [m for m in stack.telegram.messages(OTHER_CHAT) if "office-5" in m.text and m.reply_markup],
             20, "the other chat's alert")


def test_an_allowed_user_in_a_chat_that_is_not_allowed_posts_nothing_there(stack):
    fire_in_both_chats(stack)
    private_before = len(stack.telegram.messages(PRIVATE_CHAT_OF_ALLOWED_USER))
    for command in ("/status", "/alerts", "/silence shop-1 1h", "/maintenance shop-1 2h ремонт", "/help"):
        stack.say(command, chat=STRANGERS_CHAT)  # a group nobody configured, where the allowed user also is
    before = stack.say("/help")  # read after the five above: once it is answered, theirs were done
    stack.answers(GROUP_CHAT, before)
    assert [m.text for m in stack.telegram.messages(STRANGERS_CHAT)] == []  # not a word there, so no alert
    assert stack.silences() == []  # and nothing done

    stack.say("/status", chat=PRIVATE_CHAT_OF_ALLOWED_USER)
    hint, private = stack.answers(PRIVATE_CHAT_OF_ALLOWED_USER, private_before, count=2)
    # The user is told once, privately, in Russian, without any alert.
    assert hint == (f"Команда /status в чате «Test group {STRANGERS_CHAT}» не выполнена: там бот не отвечает на "
                    "команды, чтобы оповещения не увидели посторонние. Пишите команды здесь или в чатах, куда бот "
                    "присылает оповещения.")
    # Their private chat, which no route posts to, still shows every alert, as before.
    assert "shop-1" in private and "office-5" in private and "во всех оповещениях" in private
    log = stack.receiver.log_text()
    assert log.count("event=command_ignored reason=chat_not_allowed") == 1, log[-2000:]
    assert f"chat={STRANGERS_CHAT} user={ALLOWED_USER} command=status" in log
    assert 'sitewatch_receiver_commands_ignored_total{reason="chat_not_allowed"} 5.0' in stack.receiver.metrics()

    # A chat a route posts to is answered with that route's alerts only, whether or not it is on allowed_chats.
    for chat, own, foreign in ((OTHER_CHAT, "office-5", "shop-1"), (GROUP_CHAT, "shop-1", "office-5")):
        before = stack.say("/alerts", chat=chat)
        [listing] = stack.answers(chat, before)
        assert own in listing and foreign not in listing, (chat, listing)


def test_an_allowed_chat_no_route_posts_to_is_shown_no_alerts_but_may_act(stack):
    fire_in_both_chats(stack)
    for command in ("/status", "/alerts"):
        before = stack.say(command, chat=CONTROL_CHAT, user=STRANGER)
        [reply] = stack.answers(CONTROL_CHAT, before)
        assert reply == ("В этот чат бот не присылает оповещений, поэтому не показывает их и здесь. Все оповещения "
                         "можно посмотреть в личном чате с ботом, если он отвечает вам там."), (command, reply)
    before = stack.say("/silence shop-1 1h", chat=CONTROL_CHAT, user=STRANGER)  # its members may still command
    [done] = stack.answers(CONTROL_CHAT, before)
    assert "заглушил(а) площадка shop-1 на 1 ч" in done
    assert [[(m["name"], m["value"]) for m in s["matchers"]] for s in stack.silences()] == [[("site", "shop-1")]]
    assert all("office-5" not in m.text for m in stack.telegram.messages(CONTROL_CHAT))


def test_a_button_left_in_a_chat_no_route_posts_to_any_more_does_nothing(stack):
    stack.telegram.add_chat(NEW_OTHER_CHAT, type="group")
    stack.fire({"alertname": "PcUnreachable", "site": "shop-5", "severity": "critical", "telegram_route": "other"})
    [message] = wait_for(lambda: [m for m in stack.telegram.messages(OTHER_CHAT) if m.reply_markup], 20,
                         "buttons in the other chat")
    stack.receiver.stop()  # the route "other" moves to a new chat; the old one keeps its messages and buttons
    write_receiver_config(stack.folder, stack.telegram.url, extra=stack.commands, routes=f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
  other:
    bot: main
    chat_id: {NEW_OTHER_CHAT}
""")
    stack.receiver.start()
    before = len(stack.telegram.messages(OTHER_CHAT))
    query = stack.telegram.press_button(OTHER_CHAT, message.message_id,
                                        message.reply_markup["inline_keyboard"][0][0]["callback_data"],
                                        user_id=ALLOWED_USER)
    answer = stack.telegram.wait_for_callback_answer(query, timeout=15)
    assert answer["show_alert"] and answer["text"] == "В этом чате кнопки бота не действуют."
    before_help = stack.say("/help")  # read after the press
    stack.answers(GROUP_CHAT, before_help)
    assert stack.silences() == []
    assert len(stack.telegram.messages(OTHER_CHAT)) == before
    assert 'sitewatch_receiver_commands_ignored_total{reason="chat_not_allowed"} 1.0' in stack.receiver.metrics()


def test_bad_commands_get_a_clear_answer(stack):
    cases = {
        "/silence shop-1": "Пишите: /silence",
        "/silence shop-1 4 часа": "Не понял срок",
        "/silence shop-1 90d": "не больше 30 д",
        "/silence shop-1 10s": "Не понял срок",
        "/unsilence abcd1234": "Нет действующей тишины",
        "/frobnicate": "Не знаю команду /frobnicate",
        "/add 999.1.1.1 kassa-1": "999.1.1.1",
    }
    for command, expected in cases.items():
        before = stack.say(command)
        [reply] = stack.answers(GROUP_CHAT, before)
        assert expected in reply, (command, reply)
    assert stack.silences() == []
    before = stack.say("/help")
    [help_text] = stack.answers(GROUP_CHAT, before)
    assert "/silence" in help_text and "/targets" in help_text


def test_devices_are_added_listed_and_removed_from_the_chat(stack):
    before = stack.say("/add 127.0.0.1 kassa-9 tcp:3389")
    [added] = stack.answers(GROUP_CHAT, before)
    assert "kassa-9" in added and "маршрут duty" in added
    text = (stack.folder / "targets.yml").read_text(encoding="utf-8")
    assert "kassa-9" in text and "telegram_route: duty" in text and "tcp:3389" in text

    before = stack.say("/add 127.0.0.2 kassa-9")
    [duplicate] = stack.answers(GROUP_CHAT, before)
    assert "kassa-9" in duplicate and "⚠️" in duplicate

    before = stack.say("/targets")
    [listing] = stack.answers(GROUP_CHAT, before)
    assert "kassa-9" in listing and "127.0.0.1" in listing

    before = stack.say("/del kassa-9")
    [removed] = stack.answers(GROUP_CHAT, before)
    assert "Удалено" in removed
    assert "kassa-9" not in (stack.folder / "targets.yml").read_text(encoding="utf-8")


def test_a_restart_neither_repeats_nor_loses_commands(stack):
    before = stack.say("/silence shop-3 1h")
    stack.answers(GROUP_CHAT, before)
    assert len(stack.silences()) == 1
    stack.receiver.stop()
    stack.telegram.user_says(GROUP_CHAT, "/silence shop-8 1h", user_id=ALLOWED_USER)  # typed while it was down
    stack.receiver.start()
    wait_for(lambda: len(stack.silences()) == 2, 20, "the command typed during the restart to be done")
    time.sleep(3)
    sites = sorted(s["matchers"][0]["value"] for s in stack.silences())
    assert sites == ["shop-3", "shop-8"]  # the first command was not done again


def test_a_long_list_is_split_into_messages_telegram_accepts(stack):
    stack.fire(*({"alertname": "PortDown", "site": f"shop-{i:03d}", "check": "rdp-port-on-the-main-server",
                  "severity": "warning"} for i in range(150)))
    wait_for(lambda: len(stack.am_alerts()) == 150, 20, "150 alerts in Alertmanager")
    before = stack.say("/alerts")
    replies = stack.answers(GROUP_CHAT, before, count=2, timeout=30)
    time.sleep(2)
    replies = [m for m in stack.telegram.messages(GROUP_CHAT)[before:] if title_of("PortDown") in m.text]
    assert len(replies) >= 2
    shown = sorted(set(re.findall(r"shop-\d{3}", " ".join(m.text for m in replies))))
    assert len(shown) == 150


def test_commands_need_an_allowlist(tmp_path):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9", extra=f"""
commands:
  alertmanager_url: http://127.0.0.1:{free_port()}
""")
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "--offline", "-c", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert f"{config}: line 26: commands: expected allowed_chats or allowed_users" in result.stderr


def test_a_site_named_like_a_number_is_silenced_as_a_site(stack):
    stack.fire({"alertname": "PcUnreachable", "site": "cafe", "severity": "critical"},
               *({"alertname": "PortDown", "site": f"shop-{i}", "severity": "warning"} for i in range(40)))
    wait_for(lambda: len(stack.am_alerts()) == 41, 20, "41 alerts in Alertmanager")
    before = stack.say("/silence cafe 1h")
    [reply] = stack.answers(GROUP_CHAT, before)
    assert "площадка cafe" in reply
    [silence] = stack.silences()
    assert [(m["name"], m["value"]) for m in silence["matchers"]] == [("site", "cafe")]
    before = stack.say("/silence #ffffffffff 1h")
    [unknown] = stack.answers(GROUP_CHAT, before)
    assert "Нет активного оповещения с номером" in unknown


def test_commands_typed_long_ago_are_not_carried_out(stack):
    stack.telegram.user_says(GROUP_CHAT, "/silence shop-1 4h", user_id=ALLOWED_USER, sent_ago=3600)
    before = stack.say("/silences")
    [reply] = stack.answers(GROUP_CHAT, before)
    assert "Действующих тишин нет" in reply
    assert stack.silences() == []
    assert "event=command_ignored reason=too_old" in stack.receiver.log_text()


def test_odd_fingerprints_and_truncated_groups_cost_buttons_never_the_message(stack):
    from receiver_kit import alert, payload, post
    odd = alert(name="PortDown", site="shop-odd", fingerprint="not-hex-" + "x" * 60)
    good = alert(name="PortDown", site="shop-odd", fingerprint="0123456789abcdef", check="rdp")
    body = payload([odd, good])
    body["truncatedAlerts"] = 7
    assert post(f"{stack.receiver.url}/alert/duty", body).status_code == 200
    found = wait_for(lambda: [m for m in stack.telegram.messages(GROUP_CHAT) if "shop-odd" in m.text], 40,
                     "the message")
    assert len(found) == 1, [m.text for m in found]
    message = found[0]
    rows = message.reply_markup["inline_keyboard"]
    assert len(rows) == 1 and rows[0][0]["callback_data"].endswith(":0123456789abcdef")
    assert "7" in parse_html(message.text)  # the truncated alerts are still counted in the message


@pytest.mark.parametrize("section, expected", [
    ("  allowed_users: [5]\n  silence_buttons: [1h, 48h]\n  max_silence: 1d\n",
     "commands.silence_buttons: expected durations no longer than commands.max_silence"),
    ("  allowed_users: [5]\n  poll_timeout: 0s\n", "commands.poll_timeout: expected a duration"),
    ("  allowed_chats: ['@duty']\n", "commands.allowed_chats[0]: expected a numeric chat id"),
])
def test_bad_commands_sections_are_refused_with_the_path(tmp_path, section, expected):
    config = write_receiver_config(tmp_path, "http://127.0.0.1:9",
                                   extra=f"commands:\n  alertmanager_url: http://127.0.0.1:9093\n{section}")
    result = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "--offline", "-c", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and expected in result.stderr, result.stderr


def test_a_button_is_answered_at_once_while_a_long_answer_waits_out_the_group_limit(stack):
    from simulators.telegram import RateLimits
    stack.fire({"alertname": "PcUnreachable", "site": "shop-btn", "severity": "critical"},
               *({"alertname": "PortDown", "site": f"shop-{i:03d}", "check": "rdp-port-on-the-main-server",
                  "severity": "warning"} for i in range(150)))
    message = firing_message_with_buttons(stack, "PcUnreachable")
    wait_for(lambda: len(stack.am_alerts()) == 151, 20, "151 alerts in Alertmanager")
    time.sleep(2)  # the alert notifications settle
    # A group takes 3 messages a minute from now on: /alerts becomes several answers, most of them held.
    stack.telegram.limits = RateLimits(group_per_minute=3, group_window=60.0)
    stack.telegram.enforce_limits = True
    stack.say("/alerts")
    time.sleep(1)
    pressed = time.monotonic()
    query = stack.telegram.press_button(GROUP_CHAT, message.message_id,
                                        message.reply_markup["inline_keyboard"][0][0]["callback_data"],
                                        user_id=ALLOWED_USER)
    stack.telegram.wait_for_callback_answer(query, timeout=10)
    assert time.monotonic() - pressed < 5
    wait_for(lambda: len(stack.silences()) == 1, 10, "the button's silence")


# --- planned maintenance -------------------------------------------------------------------------------------

MOSCOW = ZoneInfo("Europe/Moscow")  # the zone the test receiver config names


def ends_of(silence: dict) -> datetime:
    return datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))


def matchers_of(silence: dict) -> set[tuple[str, str]]:
    assert all(not m["isRegex"] and m.get("isEqual", True) for m in silence["matchers"])
    return {(m["name"], m["value"]) for m in silence["matchers"]}


def said_end(answer: str) -> datetime:
    """The end a maintenance answer names ("до 07.12.2026 10:00 МСК"), as a moment."""
    day, clock = re.search(r"до (\d\d\.\d\d\.\d{4}) (\d\d:\d\d) МСК", answer).groups()
    return datetime.strptime(f"{day} {clock}", "%d.%m.%Y %H:%M").replace(tzinfo=MOSCOW)


def next_monday_midnight() -> datetime:
    today = datetime.now(MOSCOW).date()
    days = 7 - today.weekday()  # on a Monday, its midnight has passed: the next one
    return datetime(today.year, today.month, today.day, tzinfo=MOSCOW) + timedelta(days=days)


def test_maintenance_of_a_site_or_one_check_is_a_marked_silence_ended_early_by_unsilence(stack):
    stack.fire({"alertname": "KodeksServerDown", "site": "shop-01", "check": "kodeks", "severity": "critical"},
               {"alertname": "PcUnreachable", "site": "shop-01", "severity": "critical"},
               {"alertname": "PcUnreachable", "site": "shop-02", "severity": "critical"})
    wait_for(lambda: len(stack.am_alerts()) == 3, 20, "3 alerts in Alertmanager")
    before = stack.say("/silence shop-02 1h замена коммутатора")  # an ordinary silence, to tell them apart
    stack.answers(GROUP_CHAT, before)

    asked = datetime.now(timezone.utc)
    before = stack.say("/maintenance shop-01 kodeks 2h Кодекс обновляется")
    [reply] = stack.answers(GROUP_CHAT, before)
    assert reply.startswith("🛠 @duty_engineer объявил(а) плановые работы на площадке shop-01 (только проверка "
                            "kodeks) до "), reply
    assert " МСК (2 ч).\nКомментарий: Кодекс обновляется.\nСейчас под них попадает 1 оповещение.\n" in reply
    assert abs((said_end(reply) - asked).total_seconds() - 2 * 3600) <= 90
    [kodeks] = [s for s in stack.silences() if s["comment"].startswith("Плановые работы: ")]
    assert matchers_of(kodeks) == {("site", "shop-01"), ("check", "kodeks")}
    assert kodeks["comment"] == "Плановые работы: Кодекс обновляется"
    assert kodeks["createdBy"] == f"Telegram @duty_engineer ({ALLOWED_USER})"
    assert abs((ends_of(kodeks) - asked).total_seconds() - 2 * 3600) < 60
    assert f"/unsilence {kodeks['id'][:8]}" in reply

    def states():
        return {(a["labels"]["site"], a["labels"]["alertname"]): a["status"]["state"] for a in stack.am_alerts()}
    wait_for(lambda: states()[("shop-01", "KodeksServerDown")] == "suppressed"
             and states()[("shop-01", "PcUnreachable")] == "active", 10, "only the check's alert silenced")

    monday = next_monday_midnight()
    if monday.timestamp() - time.time() < 120:  # late on a Sunday: the silence would end during the test
        time.sleep(max(0.0, monday.timestamp() - time.time()) + 1)
        monday = next_monday_midnight()
    before = stack.say("/maintenance shop-01 до пн площадка закрыта до понедельника")
    [whole] = stack.answers(GROUP_CHAT, before)
    assert f"на площадке shop-01 до {monday:%d.%m.%Y} 00:00 МСК (" in whole, whole
    assert "Комментарий: площадка закрыта до понедельника." in whole
    assert "Сейчас под них попадает 2 оповещения." in whole
    [site] = [s for s in stack.silences() if s["comment"] == "Плановые работы: площадка закрыта до понедельника"]
    assert matchers_of(site) == {("site", "shop-01")} and ends_of(site) == monday

    amtool = stack.amtool_silences()
    assert "Плановые работы: Кодекс обновляется" in amtool and "Плановые работы: площадка закрыта" in amtool

    before = stack.say("/silences")
    [listing] = stack.answers(GROUP_CHAT, before)
    lines = listing.splitlines()
    [kodeks_line] = [line for line in lines if line.startswith(kodeks["id"][:8])]
    assert kodeks_line.endswith("· площадка shop-01, проверка kodeks · Telegram @duty_engineer (555): "
                                "🛠 плановые работы — Кодекс обновляется"), kodeks_line
    [site_line] = [line for line in lines if line.startswith(site["id"][:8])]
    assert f"до {monday:%d.%m} 00:00 · площадка shop-01 ·" in site_line and "site=" not in site_line
    [ordinary] = [line for line in lines if "shop-02" in line]
    assert 'site="shop-02"' in ordinary and ordinary.endswith(": замена коммутатора") and "🛠" not in ordinary

    before = stack.say(f"/unsilence {kodeks['id'][:6]}")
    [ended] = stack.answers(GROUP_CHAT, before)
    assert ended == (f"🔔 Плановые работы {kodeks['id'][:8]} (площадка shop-01, проверка kodeks) закончены раньше "
                     f"срока (@duty_engineer): оповещения снова приходят.")
    assert kodeks["id"] in {s["id"] for s in stack.silences("expired")}
    assert kodeks["id"][:8] not in stack.amtool_silences()
    # The site's own maintenance still holds the check's alert: ending one leaves the other.
    assert {s["id"] for s in stack.silences() if s["comment"].startswith("Плановые работы")} == {site["id"]}


def test_maintenance_until_a_date_and_time_in_the_chats_zone(stack):
    day = (datetime.now(MOSCOW) + timedelta(days=3)).date()
    before = stack.say(f"/maintenance shop-05 до {day:%d.%m} 10:00 ремонт <кассы> & сети")
    [reply] = stack.answers(GROUP_CHAT, before)
    assert f"на площадке shop-05 до {day:%d.%m.%Y} 10:00 МСК (" in reply
    assert "Комментарий: ремонт <кассы> & сети." in reply  # escaped in HTML, shown as typed
    assert "Сейчас ничего не горит: заглушены будут оповещения, которые появятся до конца работ." in reply
    [silence] = stack.silences()
    assert ends_of(silence) == datetime(day.year, day.month, day.day, 10, 0, tzinfo=MOSCOW)
    assert silence["comment"] == "Плановые работы: ремонт <кассы> & сети"

    before = stack.say("/maintenance shop-06 30m")
    [plain] = stack.answers(GROUP_CHAT, before)
    assert "на площадке shop-06 до " in plain and "(30 мин)." in plain and "Комментарий" not in plain
    [default] = [s for s in stack.silences() if matchers_of(s) == {("site", "shop-06")}]
    assert default["comment"] == "Плановые работы: без пояснений"


def test_maintenance_typed_wrong_gets_a_clear_answer_and_makes_no_silence(stack):
    too_far = (datetime.now(MOSCOW) + timedelta(days=40)).date()
    cases = {
        "/maintenance shop-01": "Пишите: /maintenance площадка [проверка] срок|до когда [комментарий]",
        "/maintenance shop-01 kodeks": "Не понял срок «kodeks»",
        "/maintenance shop-01 до 01.01.2020 ремонт": "Время 01.01.2020 00:00 МСК уже прошло.",
        "/maintenance shop-01 до пх ремонт": "Не понял, до какого дня: «пх». Напишите день недели (пн, вт, ср, чт, пт",
        "/maintenance shop-01 до 31.02": "Нет такой даты: 31.02.",
        "/maintenance shop-01 до пт 25:00": "Нет такого времени: 25:00.",
        "/maintenance shop-01 до": "После «до» напишите день недели",
        f"/maintenance shop-01 до {too_far:%d.%m.%Y}": "Плановые работы можно объявить не больше чем на 30 д",
        "/maintenance shop-01 90d": "Срок тишины — не больше 30 д.",
        "/maintenance шоп-01 2h": "«шоп-01» не годится как имя площадки",
        "/maintenance shop-01 kod/eks 2h": "«kod/eks» не годится как имя проверки",
    }
    for command, expected in cases.items():
        before = stack.say(command)
        [reply] = stack.answers(GROUP_CHAT, before)
        assert expected in reply, (command, reply)
        assert "{" not in reply and "site=" not in reply, reply
    assert stack.silences() == [] and stack.silences("pending") == []
    before = stack.say("/help")
    [help_text] = stack.answers(GROUP_CHAT, before)
    assert "/maintenance площадка [проверка] срок|до когда [комментарий] — плановые работы" in help_text
