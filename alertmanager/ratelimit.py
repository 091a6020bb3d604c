"""Telegram's sending limits, kept on our side so a storm queues here instead of bouncing off 429s.

About one message a second per chat, twenty a minute per group, thirty a second per bot (Bot FAQ); a 429's
``retry_after`` holds a chat back for as long as Telegram asked. A backlog may use all but a couple of a
group's messages a minute: those are kept for urgent (critical) alerts, which never wait for the minute.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

from alertmanager.config import RateLimits

GROUP_WINDOW = 60.0
BOT_WINDOW = 1.0
# Requests reach Telegram a little after they are counted here; a margin keeps their arrivals in the window.
BOT_MARGIN = 0.1
# A group's sends a minute that only urgent messages may use, when its limit is big enough to spare them.
URGENT_RESERVE = 2


def backlog_share(group_per_minute: int) -> int:
    """The sends a minute to one group that messages other than urgent ones may use (18 of Telegram's 20)."""
    return group_per_minute - min(URGENT_RESERVE, (group_per_minute - 1) // 4)


class RateLimiter:
    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        self._last_by_chat: dict[tuple[str, str], float] = {}
        self._group_sends: dict[tuple[str, str], collections.deque[float]] = collections.defaultdict(collections.deque)
        self._bot_sends: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._held_until: dict[tuple[str, str], float] = {}

    def ready_at(self, bot: str, chat_id: str, is_group: bool, urgent: bool = False) -> float:
        """The earliest moment a message to this chat is within every limit; an `urgent` one may use the
        group's reserve."""
        with self._lock:
            now = self.clock()
            key = (bot, chat_id)
            moments = [now, self._held_until.get(key, now)]
            last = self._last_by_chat.get(key)
            if last is not None:
                moments.append(last + self.limits.chat_interval)
            if is_group:
                sends = _trimmed(self._group_sends[key], now - GROUP_WINDOW)
                allowed = self.limits.group_per_minute if urgent else backlog_share(self.limits.group_per_minute)
                if len(sends) >= allowed:
                    moments.append(sends[len(sends) - allowed] + GROUP_WINDOW)
            bot_sends = _trimmed(self._bot_sends[bot], now - BOT_WINDOW - BOT_MARGIN)
            if len(bot_sends) >= self.limits.bot_per_second:
                moments.append(bot_sends[len(bot_sends) - self.limits.bot_per_second] + BOT_WINDOW + BOT_MARGIN)
            return max(moments)

    def reserve(self, bot: str) -> None:
        """Takes one of the bot's sends for this second as soon as a chat is picked, so the sender threads
        picking other chats meanwhile see it."""
        with self._lock:
            self._bot_sends[bot].append(self.clock())

    def record(self, bot: str, chat_id: str, is_group: bool) -> None:
        """Counts a message to this chat as its request leaves."""
        with self._lock:
            now = self.clock()
            self._last_by_chat[(bot, chat_id)] = now
            if is_group:
                self._group_sends[(bot, chat_id)].append(now)

    def answered(self, bot: str, chat_id: str, is_group: bool) -> None:
        """The request came back: Telegram saw it no later than now. Measuring the next gap from here keeps
        it at least `chat_interval` wide even when a busy machine delayed this request on its way out."""
        with self._lock:
            now = self.clock()
            key = (bot, chat_id)
            self._last_by_chat[key] = now
            sends = self._group_sends.get(key)
            if is_group and sends:
                sends[-1] = now

    def hold(self, bot: str, chat_id: str, seconds: float) -> None:
        """Telegram said "retry after": nothing more to this chat until then."""
        with self._lock:
            key = (bot, chat_id)
            self._held_until[key] = max(self._held_until.get(key, 0.0), self.clock() + seconds)


def _trimmed(sends: collections.deque[float], since: float) -> collections.deque[float]:
    while sends and sends[0] <= since:
        sends.popleft()
    return sends
