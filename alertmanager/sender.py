"""Delivers the outbox to Telegram: per-chat order, Telegram's rate limits, retries, and give-ups that say why.

A few worker threads share the chats: a chat is worked on by one thread at a time (its order is kept),
different chats go out in parallel up to the bot's limit. Critical alerts go ahead of the rest of their
chat's queue (the outbox's urgent lane). Only the process holding the outbox's lease sends, so several
server processes on one database never send twice.

Edits of messages sent before (a resolution shown in its firing message, who took it) and replies to them
are requests to the chat like any message: one a turn, under the same limits and retries. An edit Telegram
refuses sends the resolution as a message of its own; "message is not modified" means it is shown already.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import threading
import time
import uuid
from datetime import tzinfo
from typing import Callable, Sequence

from alertmanager import maintenance
from alertmanager.buttons import keyboard, with_take
from alertmanager.config import ReceiverConfig, Route
from alertmanager.digest import (Message, build_message, edited_message, ended_of, next_run, plan_follow_up,
                                 reply_text)
from alertmanager.metrics import ReceiverMetrics
from alertmanager.outbox import EDIT, TEXT, Chat, DeadLetters, Delivered, Ended, Item, Outbox, SentMessage
from alertmanager.ratelimit import RateLimiter
from alertmanager.render import Renderer
from alertmanager.telegram_html import html_to_text
from alertmanager.telegram import ApiAnswer, bot_apis
from alertmanager.webhook import Alert

log = logging.getLogger("sitewatch.receiver")

LEASE_TTL = 5.0
MAINTENANCE_EVERY = 10.0
# Another process may add to the outbox without waking our threads; look for its work this often.
POLL_INTERVAL = 0.5
RESCAN_EVERY = 0.02
GIVE_UP_HINTS = {
    "forbidden": "add the bot to the chat again (or unblock it) and check routes.{route}.chat_id",
    "chat_not_found": "check routes.{route}.chat_id and that the bot was added to that chat",
    "rejected": "Telegram refused this message; see the detail",
    "expired": "Telegram could not be reached for too long; see the earlier warnings for the cause",
}
# After a sendMessage got no answer in time, the bot's sends wait this many times longer for one.
SLOW_ANSWER_FACTOR = 6
NOT_MODIFIED = "message is not modified"  # an edit Telegram finds already made: done
SLOW_HINT = ("Telegram may have shown the message without answering in time: the retry waits longer for its "
             "answer, and the message may appear twice")


class AnswerWait:
    """How long a bot's sendMessage waits for Telegram's answer.

    A send that times out may still have been shown in the chat: a retry cannot tell, and shows it again.
    Retrying with the same short wait against an API that answers late would show a message once per try,
    so after a timeout the bot's sends wait `SLOW_ANSWER_FACTOR` times longer, until an answer comes within
    the configured timeout again. Connecting keeps the short timeout: a connection never made sent nothing.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._slow: set[str] = set()  # bots whose last answer came late or not at all

    def read_timeout(self, bot: str) -> float:
        return self.timeout * SLOW_ANSWER_FACTOR if bot in self._slow else self.timeout

    def learn(self, bot: str, answer: ApiAnswer) -> None:
        if answer.kind == "timeout":
            self._slow.add(bot)
        elif not answer.network_error and answer.duration <= self.timeout:
            self._slow.discard(bot)


class Sender:
    def __init__(self, config: ReceiverConfig, outbox: Outbox, renderers: dict[str, Renderer],
                 fallback_renderer: Renderer, metrics: ReceiverMetrics, *, dry_run: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.outbox = outbox
        self.renderers = renderers
        self.fallback_renderer = fallback_renderer
        self.metrics = metrics
        self.dry_run = dry_run
        self._stdout_lock = threading.Lock()
        self.clock = clock
        self.apis = bot_apis(config, metrics.observe_telegram)
        self.answer_wait = AnswerWait(config.request_timeout)
        self.limiter = RateLimiter(config.rate_limits, clock)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wakeup = threading.Condition()
        self._busy: set[str] = set()
        self._retry_at: dict[str, tuple[float, int]] = {}  # queue -> (when, attempts so far)
        self._trouble: dict[str, str] = {}  # queue -> the failure last logged for it
        self._chats: dict[str, Chat] = {}
        # Routes whose resolutions are shown in their firing messages: those resolutions are follow-ups, not news.
        self._follow_up_routes = frozenset(name for name, route in config.routes.items()
                                           if route.resolved_mode != "separate")
        self._waiting: list[tuple[str, int, bool]] = []  # the outbox's queues as last scanned
        self._scanned_at = float("-inf")
        self._stale = True
        self._active = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- life cycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._keep_lease, name="receiver-lease", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"receiver-sender-{n}", daemon=True)
                          for n in range(self.config.senders)]
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        """New items were stored: one idle worker looks (waking all of them on every webhook of a storm
        would have each rescan the outbox for nothing)."""
        with self._wakeup:
            self._stale = True
            self._wakeup.notify()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._active:
            try:
                self.outbox.drop_lease(self.owner)
            except Exception as err:  # the database may be the reason we stop
                log.warning("event=lease_not_dropped error=%r", str(err))
        self._active = False
        self.metrics.sender_active.set(0)

    @property
    def active(self) -> bool:
        return self._active

    def _keep_lease(self) -> None:
        next_maintenance = 0.0
        while not self._stopping.is_set():
            try:
                held = self.outbox.hold_lease(self.owner, LEASE_TTL)
            except Exception as err:
                log.error("event=outbox_unavailable file=%s error=%r", self.outbox.path, str(err))
                held = False
            if held and not self._active:
                freed = self.outbox.reset_claims()
                log.info("event=sender_active file=%s owner=%s resumed=%d", self.outbox.path, self.owner, freed)
            elif not held and self._active:
                log.warning("event=sender_lease_lost file=%s owner=%s", self.outbox.path, self.owner)
            with self._wakeup:
                self._active = held
                self._wakeup.notify_all()
            self.metrics.sender_active.set(1 if held else 0)
            if held and time.monotonic() >= next_maintenance:
                # A short max_age (seconds, in tests) is honoured without a busy loop on a long one.
                next_maintenance = time.monotonic() + min(MAINTENANCE_EVERY, self.config.max_age / 2)
                self._maintain()
            self._stopping.wait(LEASE_TTL / 4)

    def _maintain(self) -> None:
        try:
            for chat, buried in self.outbox.expire(self.config.max_age):
                self._report_give_up(chat, buried, "expired", f"not delivered within {self.config.max_age:g}s")
            self.outbox.tidy(self.config.dedup_window)
        except Exception as err:
            log.error("event=outbox_maintenance_failed file=%s error=%r", self.outbox.path, str(err))

    # --- choosing what to send next -----------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            picked = self._pick()
            if picked is None:
                continue
            queue, chat = picked
            try:
                self._deliver(queue, chat)
            except Exception:
                log.exception("event=send_failed queue=%s", queue)
                self._back_off(queue)
            finally:
                with self._wakeup:
                    self._busy.discard(queue)
                    self._stale = True
                    self._wakeup.notify()

    def _pick(self) -> tuple[str, Chat] | None:
        with self._wakeup:
            if not self._active or self._stopping.is_set():
                self._wakeup.wait(POLL_INTERVAL)
                return None
            now = self.clock()
            # Rescan when something changed (at most every RESCAN_EVERY: a storm's webhooks share a
            # scan), and every POLL_INTERVAL for what other processes stored.
            due = self._scanned_at + (RESCAN_EVERY if self._stale else POLL_INTERVAL)
            if now >= due:
                try:
                    self._waiting = self.outbox.waiting_queues(self._follow_up_routes)
                except Exception as err:
                    log.error("event=outbox_unavailable file=%s error=%r", self.outbox.path, str(err))
                    self._wakeup.wait(1.0)
                    return None
                self._scanned_at, self._stale = now, False
            soonest = self._scanned_at + (RESCAN_EVERY if self._stale else POLL_INTERVAL)
            for index, (queue, _head, urgent) in enumerate(self._waiting):
                if queue in self._busy:
                    continue
                chat = self._chat(queue)
                if chat is None:
                    continue
                ready = max(self.limiter.ready_at(chat.bot, chat.chat_id, chat.is_group, urgent),
                            self._retry_at.get(queue, (0.0, 0))[0])
                if ready <= self.clock():
                    self._busy.add(queue)
                    self.limiter.reserve(chat.bot)
                    del self._waiting[index]  # until the next scan says it still has items
                    return queue, chat
                soonest = min(soonest, ready)
            self._wakeup.wait(max(0.002, soonest - self.clock()))
            return None

    def _chat(self, queue: str) -> Chat | None:
        chat = self._chats.get(queue)
        if chat is None:
            chat = self.outbox.chat(queue)
            if chat is not None:
                self._chats[queue] = chat
        return chat

    # --- sending one message --------------------------------------------------------------------------

    def _deliver(self, queue: str, chat: Chat) -> None:
        items = self.outbox.peek(queue)
        if not items:
            return
        run = self._next_run(items)
        head = run[0]
        if head.status == TEXT:
            self._deliver_text(queue, chat, head)
            return
        if head.status == EDIT:
            self._deliver_edit(queue, chat, head)
            return
        route = self.config.routes.get(head.route)
        if head.status == "resolved" and route is not None and route.resolved_mode != "separate":
            self._follow_up(queue, chat, run, route)
            return
        self._deliver_message(queue, chat, run)

    def _next_run(self, items: list[Item]) -> list[Item]:
        """What the next request carries. News (firing alerts) goes before the follow-ups waiting ahead of it
        (edits, resolutions shown in their firing messages): a storm of those, one request each, must not
        stand between a new alert and the chat. Never before a follow-up of the same alert."""
        skipped: set[str] = set()
        for index, item in enumerate(items):
            if not self._follows_up(item):
                if index and item.status == "firing" and item.fingerprint not in skipped:
                    return next_run(items[index:], held_back=skipped)
                break
            if item.fingerprint:
                skipped.add(item.fingerprint)
        return next_run(items)

    def _follows_up(self, item: Item) -> bool:
        return item.status == EDIT or item.status == "resolved" and item.route in self._follow_up_routes

    def _deliver_message(self, queue: str, chat: Chat, run: list[Item],
                         fallback: frozenset[int] | None = None) -> None:
        """One message of alerts. `fallback`, when given: the run is resolved alerts that a route which edits
        or replies could not tell in their firing messages, and it holds the ids of those whose firing messages
        Telegram refused to edit (the others' were unknown)."""
        route_name = run[0].route
        message = build_message(run, self.renderers.get(route_name, self.fallback_renderer),
                                self.outbox.waiting_in_batch)
        if not self.outbox.claim([item.id for item in message.items]):
            return  # a resolved alert cancelled part of it meanwhile: compose again
        route = self.config.routes.get(route_name)
        silent = message.status == "resolved" and route is not None and route.silent_resolved
        silence_rows = buttons = None
        take = False
        commands = self.config.commands
        # Only the bot that polls for presses gets buttons: another bot's would spin and time out.
        if commands is not None and message.status == "firing" and chat.bot == commands.bot:
            silence_rows = keyboard(message.items, commands.silence_buttons)
            take = commands.take_button and any(item.fingerprint for item in message.items)
            buttons = with_take(silence_rows, take)
        text, parse_mode = message.text, "HTML"
        answer = self._send(chat, text, parse_mode, silent, route_name, buttons)
        if buttons and answer.kind == "rejected":
            log.warning("event=buttons_rejected route=%s chat=%s detail=%r action=resend_without_buttons",
                        route_name, chat.chat_id, answer.description)
            buttons, silence_rows, take = None, None, False
            answer = self._send(chat, text, parse_mode, silent, route_name)
        if answer.kind == "parse_error":
            log.warning("event=html_rejected route=%s chat=%s detail=%r action=resend_as_plain_text",
                        route_name, chat.chat_id, answer.description)
            text, parse_mode = html_to_text(message.text), None
            answer = self._send(chat, text, parse_mode, silent, route_name, buttons)
        delivered = None
        ended: list[Ended] = []
        if message.status == "firing":
            delivered = self._delivered(chat, message, answer, text, parse_mode, silence_rows, take)
        else:
            now = time.time()
            ended = [ended_of(item, now) for item in message.items if item.fingerprint]
        self._settle(queue, chat, message, answer, delivered=delivered, ended=ended)
        if fallback is None or not answer.ok:
            return
        told = [item for item in message.items if item.fingerprint]  # those this message carried, each once
        refused = sum(1 for item in told if item.id in fallback)
        unknown = len(told) - refused
        if unknown or refused:
            self.metrics.resolved_fallbacks.labels(route_name, "unknown_message").inc(unknown)
            self.metrics.resolved_fallbacks.labels(route_name, "edit_refused").inc(refused)
            if unknown:
                log.info("event=resolved_fallback route=%s chat=%s reason=unknown_message alerts=%d "
                         "action=sent_separately", route_name, chat.chat_id, unknown)

    def _delivered(self, chat: Chat, message: Message, answer: ApiAnswer, text: str, parse_mode: str | None,
                   silence_rows: dict | None, take: bool) -> Delivered | None:
        """What the outbox remembers of a firing message Telegram accepted, for the edits that may follow."""
        result = answer.result if isinstance(answer.result, dict) else {}
        message_id = result.get("message_id")
        if not answer.ok or not isinstance(message_id, int):
            return None  # not sent, or a dry run: nothing to edit later
        chat_id = (result.get("chat") or {}).get("id", chat.api_chat_id)
        renderer = self.renderers.get(message.route, self.fallback_renderer)
        alerts = []
        for item in message.items:
            if not item.fingerprint or item.summary:
                continue
            try:
                caption = renderer.caption(Alert.from_json(item.alert))
            except ValueError:
                caption = item.fingerprint
            alerts.append((item.fingerprint, item.starts_at, caption))
        return Delivered(chat.bot, chat.queue, str(chat_id), chat.thread_id, message_id, message.route, text,
                         parse_mode, silence_rows, take, alerts)

    def _deliver_text(self, queue: str, chat: Chat, item: Item) -> None:
        """A text rendered elsewhere (the morning worklist), sent as it is; as plain text if Telegram refuses
        its HTML."""
        if not self.outbox.claim([item.id]):
            return
        message = Message(item.alert, TEXT, item.route, (item,))
        answer = self._send(chat, message.text, "HTML", False, item.route)
        if answer.kind == "parse_error":
            log.warning("event=html_rejected route=%s chat=%s detail=%r action=resend_as_plain_text",
                        item.route, chat.chat_id, answer.description)
            answer = self._send(chat, html_to_text(message.text), None, False, item.route)
        self._settle(queue, chat, message, answer)

    # --- telling of what happened to a message sent before -----------------------------------------------

    def _zone(self, route_name: str) -> tzinfo:
        route = self.config.routes.get(route_name)
        return (route.timezone if route else None) or self.config.timezone or maintenance.DEFAULT_ZONE

    def _language(self, route_name: str) -> str:
        route = self.config.routes.get(route_name)
        return route.language if route else "ru"

    def _follow_up(self, queue: str, chat: Chat, run: list[Item], route: Route) -> None:
        """Resolved alerts of a route that edits or replies to their firing messages: one request a turn."""
        keys = [(item.fingerprint, item.starts_at) for item in run if item.fingerprint]
        messages = self.outbox.messages_carrying(chat.queue, route.name, keys)
        plan = plan_follow_up(run, route.resolved_mode, messages)
        if plan.done:
            self.outbox.drop(plan.done)  # the chat was told already (a resolution sent again)
        if plan.action == "separate":
            self._deliver_message(queue, chat, list(plan.items), plan.refused)
            return
        if plan.message is None or not plan.items or not self.outbox.claim([item.id for item in plan.items]):
            return
        now = time.time()
        ended = [ended_of(item, now) for item in plan.items]
        if plan.action == "edit":
            answer = self._edit(chat, plan.message, {alert.key: alert.at for alert in ended})
            outcome = self._edit_outcome(queue, chat, plan.message, answer, plan.items, "resolved")
            if outcome == "done":
                self.outbox.edited(plan.message.id, ended, plan.finished,
                                   [item for item in plan.items if item not in plan.finished])
            return
        text = reply_text(plan.message, ended, self._language(route.name), self._zone(route.name))
        message = Message(text, "resolved", route.name, plan.items)
        answer = self._send(chat, text, "HTML", route.silent_resolved, route.name, reply_to=plan.message.message_id)
        if answer.kind == "parse_error":
            answer = self._send(chat, html_to_text(text), None, route.silent_resolved, route.name,
                                reply_to=plan.message.message_id)
        self._settle(queue, chat, message, answer, ended=ended, replied=True)

    def _deliver_edit(self, queue: str, chat: Chat, item: Item) -> None:
        """An edit queued by a take: the message shown as it now is."""
        if not self.outbox.claim([item.id]):
            return
        try:
            sent = self.outbox.sent_message(int(json.loads(item.alert)["message"]))
        except (ValueError, KeyError, TypeError):
            sent = None
        if sent is None or sent.edit_refused is not None:  # forgotten (30 days), or Telegram will not edit it
            self.outbox.drop([item])
            return
        answer = self._edit(chat, sent)
        if self._edit_outcome(queue, chat, sent, answer, (item,), "taken") in ("done", "refused"):
            self.outbox.drop([item])

    def _edit(self, chat: Chat, sent: SentMessage, ended: dict[tuple[str, str], float] | None = None) -> ApiAnswer:
        """editMessageText with what `sent` shows now; as plain text if Telegram refuses the HTML."""
        text, buttons = edited_message(sent, self._language(sent.route), self._zone(sent.route), ended)
        params: dict[str, object] = {"chat_id": sent.api_chat_id, "message_id": sent.message_id, "text": text,
                                     "link_preview_options": {"is_disabled": True}}
        if sent.parse_mode:
            params["parse_mode"] = sent.parse_mode
        if buttons:
            params["reply_markup"] = buttons  # left out, Telegram removes the buttons
        answer = self._call(chat, "editMessageText", params, text, buttons)
        if answer.kind == "parse_error":
            log.warning("event=html_rejected route=%s chat=%s detail=%r action=edit_as_plain_text", sent.route,
                        chat.chat_id, answer.description)
            params.pop("parse_mode", None)
            params["text"] = html_to_text(text)
            answer = self._call(chat, "editMessageText", params, params["text"], buttons)
        return answer

    def _edit_outcome(self, queue: str, chat: Chat, sent: SentMessage, answer: ApiAnswer, items: Sequence[Item],
                      reason: str) -> str:
        """"done" (Telegram shows it), "refused" (it never will: remembered, so the message is not tried
        again and resolutions go out as messages of their own) or "retry" (the items wait again)."""
        if answer.ok or NOT_MODIFIED in answer.description.lower():
            self.metrics.edited.labels(sent.route, reason).inc()
            self._recovered(queue, chat, sent.route)
            return "done"
        if answer.kind in ("rejected", "parse_error", "migrated"):
            self.outbox.refuse_edits(sent.id, answer.description)
            self.metrics.edits_refused.labels(sent.route).inc()
            log.warning("event=edit_refused route=%s chat=%s message_id=%s edit=%s detail=%r action=%s",
                        sent.route, chat.chat_id, sent.message_id, reason, answer.description,
                        "send_separately" if reason == "resolved" else "none")
            if answer.kind != "migrated":
                self.outbox.release([item.id for item in items])
                return "refused"
        self._not_done(queue, chat, sent.route, [item.id for item in items], answer)
        return "retry"

    def _call(self, chat: Chat, method: str, params: dict[str, object], text: str,
              buttons: dict | None) -> ApiAnswer:
        """One request to a chat (a message or an edit), counted by the rate limiter as it leaves."""
        if self.dry_run:  # a dry run remembers no sent message, so it has none to edit
            log.info("event=dry_run method=%s chat=%s length=%d", method, chat.chat_id, len(text))
            return ApiAnswer(True)
        api = self.apis.get(chat.bot)
        if api is None:  # a bot removed from the config while its messages still wait
            return ApiAnswer(False, error_code=401, description=f"no bot named {chat.bot!r} in the config")
        # Counted as the request leaves, not when the chat was picked: under load the two can be far
        # apart, and Telegram measures the gaps between requests as they arrive.
        self.limiter.record(chat.bot, chat.chat_id, chat.is_group)
        try:
            answer = api.call(method, params, read_timeout=self.answer_wait.read_timeout(chat.bot))
        finally:
            self.limiter.answered(chat.bot, chat.chat_id, chat.is_group)
        self.answer_wait.learn(chat.bot, answer)
        return answer

    def _send(self, chat: Chat, text: str, parse_mode: str | None, silent: bool, route: str,
              buttons: dict | None = None, reply_to: int | None = None) -> ApiAnswer:
        if self.dry_run:
            log.info("event=dry_run chat=%s thread=%s silent=%s length=%d", chat.chat_id, chat.thread_id or "",
                     silent, len(text))
            self._show(route, chat, text, silent, buttons)
            return ApiAnswer(True)
        params: dict[str, object] = {"chat_id": chat.api_chat_id, "text": text,
                                     "link_preview_options": {"is_disabled": True}}
        if parse_mode:
            params["parse_mode"] = parse_mode
        if chat.thread_id:
            params["message_thread_id"] = chat.thread_id
        if silent:
            params["disable_notification"] = True
        if buttons:
            params["reply_markup"] = buttons
        if reply_to:
            # A firing message deleted meanwhile must not cost the news: then it goes out as no reply.
            params["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
        return self._call(chat, "sendMessage", params, text, buttons)

    def _show(self, route: str, chat: Chat, text: str, silent: bool, buttons: dict | None) -> None:
        """A dry run's message on standard output, as a reader would see it: plain text under a header line,
        then its buttons."""
        where = f"route {route}: chat {chat.chat_id}" + (f", topic {chat.thread_id}" if chat.thread_id else "") \
            + (", silent" if silent else "")
        rows = (buttons or {}).get("inline_keyboard", [])
        keys = "".join(" ".join(f"[{button['text']}]" for button in row) + "\n" for row in rows)
        block = f"\n──── Telegram → {where} ────\n{html_to_text(text).strip()}\n{keys}"
        with self._stdout_lock:  # the workers' messages must not interleave
            sys.stdout.write(block)
            sys.stdout.flush()

    def _settle(self, queue: str, chat: Chat, message: Message, answer: ApiAnswer, *,
                delivered: Delivered | None = None, ended: Sequence[Ended] = (), replied: bool = False) -> None:
        ids = [item.id for item in message.items]
        kind = answer.kind
        if kind == "ok":
            self.outbox.mark_sent(message.items, message.summed_up, delivered=delivered, queue=chat.queue,
                                  ended=ended, replied=replied)
            self.metrics.sent.labels(message.route).inc()
            self._recovered(queue, chat, message.route)
        elif kind in ("rejected", "parse_error"):
            buried = self.outbox.dead_letter(message.items, chat, "rejected", answer.description)
            self._report_give_up(chat, buried, "rejected", answer.description)
        else:
            self._not_done(queue, chat, message.route, ids, answer)

    def _not_done(self, queue: str, chat: Chat, route: str, ids: list[int], answer: ApiAnswer) -> None:
        """A request Telegram did not carry out, for a reason that is not the request's own: the chat moved,
        is rate-limited, is gone, or Telegram is unwell. The items wait again, or are given up with the chat."""
        kind = answer.kind
        if kind == "migrated":
            self.outbox.release(ids)
            new = self.outbox.migrate(chat, str(answer.migrate_to_chat_id))
            self._chats.pop(queue, None)
            log.warning("event=chat_migrated route=%s old_chat=%s new_chat=%s hint=%r", route,
                        chat.chat_id, new.chat_id,
                        f"the group became a supergroup; the new id is remembered, but set "
                        f"routes.{route}.chat_id to {new.chat_id}")
        elif kind == "rate_limited":
            self.outbox.release(ids)
            self.limiter.hold(chat.bot, chat.chat_id, answer.retry_after or 1.0)
            log.info("event=rate_limited route=%s chat=%s retry_after=%s", route, chat.chat_id,
                     answer.retry_after)
        elif kind in ("forbidden", "chat_not_found"):
            self.outbox.release(ids)
            buried = self.outbox.dead_letter_queue(chat, kind, answer.description)
            self._retry_at.pop(queue, None)
            self._report_give_up(chat, buried, kind, answer.description)
        else:
            self.outbox.release(ids)
            attempts = self._back_off(queue)
            cause = answer.network_error or f"HTTP {answer.error_code} {answer.description}".strip()
            if self._trouble.get(queue) != kind:  # once per trouble spell, and again if its cause changes
                self._trouble[queue] = kind
                self._log_trouble(route, chat, kind, cause, attempts)

    def _log_trouble(self, route: str, chat: Chat, kind: str, cause: str, attempts: int) -> None:
        if kind == "timeout":
            log.warning("event=telegram_unavailable route=%s chat=%s kind=timeout cause=%r attempt=%d "
                        "action=retry_with_backoff answer_wait=%gs hint=%r", route, chat.chat_id, cause, attempts,
                        self.answer_wait.read_timeout(chat.bot), SLOW_HINT)
        else:
            log.warning("event=telegram_unavailable route=%s chat=%s kind=%s cause=%r attempt=%d "
                        "action=retry_with_backoff", route, chat.chat_id, kind, cause, attempts)

    def _back_off(self, queue: str) -> int:
        attempts = self._retry_at.get(queue, (0.0, 0))[1] + 1
        delay = min(2.0 ** (attempts - 1), self.config.max_retry_interval) * random.uniform(0.8, 1.2)
        self._retry_at[queue] = (self.clock() + delay, attempts)
        return attempts

    def _recovered(self, queue: str, chat: Chat, route: str) -> None:
        attempts = self._retry_at.pop(queue, (0.0, 0))[1]
        if self._trouble.pop(queue, None) is not None:
            log.info("event=telegram_recovered route=%s chat=%s failed_attempts=%d", route, chat.chat_id, attempts)

    def _report_give_up(self, chat: Chat, buried: list[DeadLetters], reason: str, detail: str) -> None:
        for dead in buried:
            self.metrics.failed.labels(dead.route, reason).inc(dead.count)
            log.error("event=dead_letter route=%s chat=%s reason=%s alerts=%d detail=%r hint=%r", dead.route,
                      chat.chat_id, reason, dead.count, detail, GIVE_UP_HINTS[reason].format(route=dead.route))
