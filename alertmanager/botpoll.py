"""Bot commands and silence buttons, read from Telegram by long polling (`getUpdates`).

Polling needs no inbound port, so the receiver can sit behind the office's NAT. Only the process holding
the outbox's sender lease polls: Telegram lets one client poll a bot at a time, and two would answer each
command twice. The offset of the last update done is kept in the outbox, so a restart neither repeats a
command nor loses one that Telegram still holds (it keeps updates for 24 hours).

The "✋ Беру" button records who took a message's alerts in the outbox (optionally silencing them for
`commands.take_silence`), and the sender then edits the message to show it.

Whoever is not on the allowlist is ignored: no answer (a stranger learns nothing about the bot), one log
line per chat and user an hour, and a counter. An allowed user is answered only where the answer cannot
reach the wrong people: in an allowed chat, in a chat some route posts to, and in their private chat with
the bot. Typed anywhere else, a command is not carried out, nothing is posted there, and the user gets a
short hint in their private chat (once an hour per chat).
"""

from __future__ import annotations

import html
import logging
import queue
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from alertmanager import maintenance
from alertmanager.buttons import TAKE, parse_callback
from alertmanager.chatcommands import Asker, ChatCommands, CommandProblem
from alertmanager.config import CommandsConfig
from alertmanager.metrics import ReceiverMetrics
from alertmanager.outbox import Outbox, SentAlert, SentMessage
from alertmanager.render import duration_text, isolated, moment_text
from alertmanager.silences import AlertmanagerError, exact_matchers
from alertmanager.telegram import ApiAnswer, BotApi
from alertmanager.telegram_html import html_to_text

log = logging.getLogger("sitewatch.receiver")

KNOWN_COMMANDS = ("status", "today", "alerts", "silence", "maintenance", "silences", "unsilence", "targets", "add",
                  "del", "help", "start")
REFUSAL_LOG_INTERVAL = 3600.0
MAX_BACKOFF = 60.0
CALLBACK_TEXT_LIMIT = 200  # Telegram's limit for answerCallbackQuery's text
MAX_COMMAND_AGE = 600.0  # seconds: an older command is not carried out (nor answered)
TAKE_PAUSES = (0.25, 0.5, 0.75)  # seconds between looks for a just-pressed message's record
REPLY_PATIENCE = 300.0  # seconds an answer may wait out Telegram's rate limits before it is given up
REFUSAL_HINTS = {
    "not_allowed": "add the chat to commands.allowed_chats or the user to commands.allowed_users if they should "
                   "command the bot",
    "chat_not_allowed": "an allowed user commands only in commands.allowed_chats, in chats that routes post to and "
                        "in a private chat with the bot; add this chat to commands.allowed_chats if its members may "
                        "see and silence alerts",
}


class CommandPoller:
    def __init__(self, settings: CommandsConfig, api: BotApi, commands: ChatCommands, outbox: Outbox,
                 metrics: ReceiverMetrics, is_active):
        self.settings = settings
        self.api = api
        self.commands = commands
        self.outbox = outbox
        self.metrics = metrics
        self.is_active = is_active  # True while this process holds the sender lease
        if commands.takers is None:  # /alerts names who took what: the outbox remembers it
            commands.takers = outbox.takers
        self.username: str | None = None
        self._offset_key = f"telegram_offset:{settings.bot}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-commands", daemon=True)
        # Answers go out from a thread of their own: a long /alerts in a group waits out Telegram's 20
        # messages a minute, and the poll loop must meanwhile stay free for button presses, which Telegram
        # wants answered within 15 s.
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._replier = threading.Thread(target=self._send_replies, name="receiver-command-replies", daemon=True)
        self._refusals: dict[tuple[int, int | None], float] = {}
        self._failing_since: float | None = None
        self._offset: int | None = None

    def start(self) -> None:
        self._thread.start()
        self._replier.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._replies.put(None)
        for thread in (self._thread, self._replier):
            if thread.is_alive():
                thread.join(timeout)

    # --- the loop ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            if not self.is_active():
                self._stopping.wait(1.0)
                continue
            try:
                done = self._poll_once()
            except Exception:  # noqa: BLE001 - the loop must outlive any single bad update
                log.exception("event=commands_error action=continuing")
                done = False
            if done:
                backoff = 1.0
            else:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _poll_once(self) -> bool:
        if self.username is None:
            me = self.api.call("getMe")
            if not me.ok:
                self._failed("getMe", me)
                return False
            self.username = str((me.result or {}).get("username") or "")
            log.info("event=commands_polling bot=%s username=%s allowed_chats=%d allowed_users=%d",
                     self.settings.bot, self.username, len(self.settings.allowed_chats),
                     len(self.settings.allowed_users))
        if self._offset is None:
            self._offset = int(self.outbox.setting(self._offset_key) or 0)
        offset = self._offset
        answer = self.api.call("getUpdates", {
            "offset": offset, "timeout": int(self.settings.poll_timeout),
            "allowed_updates": ["message", "callback_query"]}, timeout=self.settings.poll_timeout + 10)
        if not answer.ok:
            self._failed("getUpdates", answer)
            return False
        if self._failing_since is not None:
            log.info("event=commands_recovered after=%.0fs", time.monotonic() - self._failing_since)
            self._failing_since = None
        for update in answer.result or []:
            if self._stopping.is_set() or not self.is_active():
                break  # not confirmed: whoever polls next does it
            try:
                self._handle(update)
            except Exception:  # noqa: BLE001 - done again, it would fail again and hold back every update after it
                log.exception("event=update_failed update_id=%s action=skipped", update.get("update_id"))
            # Kept one by one: a crash repeats at most the update it was doing. Memory is the truth while
            # running, so a busy database cannot make a command run twice.
            self._offset = int(update["update_id"]) + 1
            try:
                self.outbox.set_setting(self._offset_key, str(self._offset))
            except sqlite3.Error as err:
                log.warning("event=offset_not_saved error=%r effect=a_restart_may_repeat_this_command", str(err))
        return True

    def _failed(self, method: str, answer: ApiAnswer) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            hint = ""
            if answer.error_code == 409:
                hint = ("another program polls this bot, or a webhook is set for it: give commands a bot of "
                        "their own, or remove the webhook (deleteWebhook)")
            log.warning("event=commands_failing method=%s error=%r hint=%r action=retrying", method,
                        answer.description or answer.network_error, hint)

    # --- one update ---------------------------------------------------------------------------------------

    def _handle(self, update: dict[str, Any]) -> None:
        if "message" in update:
            self._message(update["message"])
        elif "callback_query" in update:
            self._button(update["callback_query"])

    def _message(self, message: dict[str, Any]) -> None:
        text = (message.get("text") or "").strip()
        if not text.startswith("/"):
            return
        words = text[1:].split()
        command, _, addressed = (words[0] if words else "").partition("@")
        if addressed and self.username and addressed.lower() != self.username.lower():
            return  # "/status@other_bot" in a group with several bots
        chat = message["chat"]
        chat_id = int(chat["id"])
        sender = message.get("from") or {}
        user_id = sender.get("id")
        name = command.lower()
        age = time.time() - float(message.get("date") or 0)
        if age > MAX_COMMAND_AGE:  # typed while the receiver was down: "/silence … 4h" from yesterday is wrong now
            log.info("event=command_ignored reason=too_old age=%.0fs chat=%s user=%s command=%s", age, chat_id,
                     user_id, name if name in KNOWN_COMMANDS else "unknown")
            return
        label = name if name in KNOWN_COMMANDS else "unknown"
        refusal = self._refusal(chat, user_id)
        if refusal:
            first = self._refuse(chat_id, user_id, label, refusal)
            if first and refusal == "chat_not_allowed" and label != "unknown":
                self._reply(int(user_id), None, _elsewhere_hint(name, chat), None)
            return
        thread = message.get("message_thread_id") if message.get("is_topic_message") else None
        asker = Asker(chat_id, int(user_id or 0), _display_name(sender), private=_is_private(chat),
                      thread_id=_number(thread) or None)
        try:
            replies = self.commands.answer(name, words[1:], asker)
            result = "ok"
        except CommandProblem as problem:
            replies, result = [str(problem)], "refused"
        except Exception:  # noqa: BLE001 - the chat gets a short answer, the log the details
            log.exception("event=command_failed command=%s chat=%s", label, chat_id)
            replies, result = ["⚠️ Команда не выполнена из-за внутренней ошибки; подробности — в журнале "
                               "получателя."], "error"
        self.metrics.commands.labels(label, result).inc()
        log.info("event=command command=%s chat=%s user=%s result=%s", label, chat_id, user_id, result)
        for reply in replies:
            self._reply(chat_id, thread, reply, message.get("message_id"))

    def _button(self, query: dict[str, Any]) -> None:
        message = query.get("message") or {}
        chat = message.get("chat") or {}
        chat_id = _number(chat.get("id"))
        sender = query.get("from") or {}
        user_id = sender.get("id")
        take = query.get("data") == TAKE
        refusal = self._refusal(chat, user_id)
        if refusal:
            self._refuse(chat_id, user_id, "take" if take else "button", refusal)
            if refusal == "not_allowed":
                text = "Вам нельзя брать в работу оповещения этого бота." if take else \
                    "Вам нельзя глушить оповещения этого бота."
            else:
                text = "В этом чате кнопки бота не действуют."
            self._answer_button(query["id"], text, alert=True)
            return
        if take:
            self._take(query, message, chat, sender)
            return
        pressed = parse_callback(query.get("data") or "")
        if pressed is None:
            self._answer_button(query["id"], "Эта кнопка устарела.", alert=True)
            return
        seconds, fingerprint = pressed
        # Answered first, within Telegram's 15 s, so the spinner stops even if Alertmanager is slow. A press
        # Telegram no longer takes an answer for is stale (made while the receiver was down): not acted on.
        if not self._answer_button(query["id"], f"⏳ Глушу на {duration_text(seconds)}…"):
            log.info("event=button_ignored reason=too_old chat=%s user=%s", chat_id, user_id)
            return
        asker = Asker(chat_id, int(user_id or 0), _display_name(sender), private=_is_private(chat))
        try:
            if not 60 <= seconds <= self.settings.max_silence:
                raise CommandProblem("Срок этой кнопки больше разрешённого.")
            replies, result = self.commands.silence_alert(fingerprint, seconds, asker), "ok"
        except CommandProblem as problem:
            replies, result = [str(problem)], "refused"
        except Exception:  # noqa: BLE001
            log.exception("event=command_failed command=button chat=%s", chat_id)
            replies, result = ["⚠️ Не получилось заглушить: подробности в журнале получателя."], "error"
        self.metrics.commands.labels("button", result).inc()
        log.info("event=command command=button chat=%s user=%s result=%s", chat_id, user_id, result)
        thread = message.get("message_thread_id") if message.get("is_topic_message") else None
        for reply in replies:
            self._reply(chat_id, thread, reply, message.get("message_id"))

    def _take(self, query: dict[str, Any], message: dict[str, Any], chat: dict[str, Any],
              sender: dict[str, Any]) -> None:
        """"✋ Беру" under a firing message: who pressed it takes its alerts. The first press counts; the
        next ones are told who took them. The press is answered before Alertmanager is asked."""
        chat_id = _number(chat.get("id"))
        user_id = _number(sender.get("id"))
        asker = Asker(chat_id, user_id, _display_name(sender), private=_is_private(chat))
        message_id = _number(message.get("message_id"))
        sent = self._sent_message(chat_id, message_id) if message_id > 0 else None
        if sent is None:  # sent before takes were remembered, or forgotten after 30 days
            self._answer_button(query["id"], "Эта кнопка устарела.", alert=True)
            self.metrics.commands.labels("take", "refused").inc()
            return
        zone = self._zone(sent.route)
        firing = [alert for alert in sent.alerts if alert.ended_at is None]
        if sent.taken_user is not None or not firing:
            if sent.taken_user == user_id:
                text = "Вы уже взяли это в работу."
            elif sent.taken_user is not None:
                text = f"Это уже взял(а) {isolated(sent.taken_name)}, {moment_text(sent.taken_at or 0, zone)}."
            else:
                text = "Эти оповещения уже закончились."
            self._answer_button(query["id"], text, alert=sent.taken_user != user_id)
            self.metrics.commands.labels("take", "refused").inc()
            return
        seconds = self.settings.take_silence
        answer = "✋ Вы взяли это в работу." + (f" Глушу на {duration_text(seconds)}…" if seconds > 0 else "")
        if not self._answer_button(query["id"], answer):
            log.info("event=button_ignored reason=too_old chat=%s user=%s", chat_id, user_id)
            return
        now = time.time()
        until, result, problem = None, "ok", ""
        if seconds > 0:
            try:
                until = self._silence_taken(firing, seconds, asker)
            except AlertmanagerError as err:
                result, problem = "refused", f"⚠️ Не получилось заглушить: {html.escape(str(err))}"
            except Exception:  # noqa: BLE001 - the take is recorded all the same
                log.exception("event=command_failed command=take chat=%s", chat_id)
                result, problem = "error", "⚠️ Не получилось заглушить: подробности в журнале получателя."
        self.outbox.take(sent.id, user_id, asker.name, now, until)
        self.metrics.commands.labels("take", result).inc()
        log.info("event=command command=take chat=%s user=%s message_id=%s silenced=%s result=%s", chat_id, user_id,
                 sent.message_id, "yes" if until else "no", result)
        if problem:
            thread = message.get("message_thread_id") if message.get("is_topic_message") else None
            self._reply(chat_id, thread, problem, message.get("message_id"))

    def _sent_message(self, chat_id: int, message_id: int) -> SentMessage | None:
        """The remembered message a button is under. Telegram shows a message before the sender hears back
        and records it, so a press in that moment looks a little longer."""
        sent = self.outbox.sent_message_at(self.settings.bot, chat_id, message_id)
        for pause in TAKE_PAUSES:
            if sent is not None or self._stopping.wait(pause):
                break
            sent = self.outbox.sent_message_at(self.settings.bot, chat_id, message_id)
        return sent

    def _silence_taken(self, firing: list[SentAlert], seconds: float, asker: Asker) -> float | None:
        """A silence per alert still firing (all its labels, as Alertmanager has them), commented with who
        took it; the end of the silences, or None when Alertmanager has none of the alerts any more."""
        active = {alert.get("fingerprint"): alert for alert in self.commands.api.alerts()}
        ends = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        made = 0
        for alert in firing:
            found = active.get(alert.fingerprint)
            if found is not None:
                self.commands.api.create_silence(exact_matchers(found["labels"]), ends, asker.created_by,
                                                 f"взял(а) {asker.name}")
                made += 1
        return ends.timestamp() if made else None

    def _zone(self, route_name: str) -> tzinfo:
        config = self.commands.config
        route = config.routes.get(route_name)
        return (route.timezone if route else None) or config.timezone or maintenance.DEFAULT_ZONE

    def _refusal(self, chat: dict[str, Any], user_id: int | None) -> str | None:
        """Why a command or button press from this chat and user is not carried out; None when it is."""
        chat_id = _number(chat.get("id"))
        if chat_id in self.settings.allowed_chats:
            return None
        if user_id is None or user_id not in self.settings.allowed_users:
            return "not_allowed"
        if _is_private(chat) or self.commands.routes_of_chat(chat_id):
            return None
        return "chat_not_allowed"  # an answer there would show alerts to whoever is in that chat

    def _refuse(self, chat_id: int, user_id: int | None, label: str, reason: str) -> bool:
        """Counts a refusal and logs it once an hour per chat and user; True when it was logged now."""
        self.metrics.commands_refused.labels(reason).inc()
        now = time.monotonic()
        key = (chat_id, user_id)
        if now - self._refusals.get(key, -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
            return False
        self._refusals[key] = now
        hint = REFUSAL_HINTS[reason]
        log.warning("event=command_ignored reason=%s chat=%s user=%s command=%s hint=%r", reason, chat_id, user_id,
                    label, hint)
        return True

    # --- answers --------------------------------------------------------------------------------------------

    def _reply(self, chat_id: int, thread_id: int | None, text: str, reply_to: int | None) -> None:
        """Queues an answer; the reply thread sends the chat's answers in order."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                                  "link_preview_options": {"is_disabled": True}}
        if thread_id:
            params["message_thread_id"] = thread_id
        if reply_to:
            params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        self._replies.put(params)

    def _send_replies(self) -> None:
        while True:
            params = self._replies.get()
            if params is None or self._stopping.is_set():
                return
            answer = self._send(params)
            if answer.kind == "parse_error":  # never expected, every value is escaped: say it in plain text
                answer = self._send({**params, "text": html_to_text(params["text"]), "parse_mode": None})
            if not answer.ok:
                log.warning("event=command_reply_failed chat=%s error=%r", params["chat_id"],
                            answer.description or answer.network_error)

    def _send(self, params: dict[str, Any]) -> ApiAnswer:
        """One answer, waiting out 429s (a long list in a group meets the 20-a-minute limit) for up to
        REPLY_PATIENCE seconds; other failures are not retried: the user can ask again."""
        deadline = time.monotonic() + REPLY_PATIENCE
        while True:
            answer = self.api.call("sendMessage", {k: v for k, v in params.items() if v is not None})
            if not answer.retry_after or time.monotonic() + answer.retry_after > deadline:
                return answer
            if self._stopping.wait(answer.retry_after):
                return answer

    def _answer_button(self, query_id: str, text: str, alert: bool = False) -> bool:
        answer = self.api.call("answerCallbackQuery", {"callback_query_id": query_id,
                                                       "text": text[:CALLBACK_TEXT_LIMIT], "show_alert": alert})
        if not answer.ok:
            log.warning("event=button_answer_failed error=%r", answer.description or answer.network_error)
        return answer.ok


def _number(value: object) -> int:
    """An id from an update as a number SQLite can keep; 0 for anything else (Telegram sends numbers, but one
    odd update must not stop the bot)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 < value < 2 ** 63:
        return value
    return 0


def _is_private(chat: dict[str, Any]) -> bool:
    return chat.get("type") == "private"


def _elsewhere_hint(command: str, chat: dict[str, Any]) -> str:
    """The private note to an allowed user whose command in another chat was not carried out."""
    where = f"в чате «{html.escape(str(chat['title']))}»" if chat.get("title") else "в том чате"
    return (f"Команда /{html.escape(command)} {where} не выполнена: там бот не отвечает на команды, чтобы оповещения "
            f"не увидели посторонние. Пишите команды здесь или в чатах, куда бот присылает оповещения.")


def _display_name(user: dict[str, Any]) -> str:
    if user.get("username"):
        return "@" + str(user["username"])
    return str(user.get("first_name") or user.get("id") or "кто-то")
