"""The morning worklist: at each route's time, in its zone, what its sites need today goes to its chat.

The list is read from Prometheus when it is due (worklist.py), split per route by Alertmanager's own
routing tree, written in Russian (worklist_text.py) and put in the outbox, from which it is delivered like
any message: a Telegram outage delays it, never loses it. Only the process holding the outbox's sender
lease sends it, and the day it went out is kept in the outbox, so a restart or a second receiver process
never sends a day's list twice. A receiver that was down at the time sends it when it is back, up to
`worklist.late_by` late; later than that the day is skipped and the log says so.

`compose` is shared with `/today` and `sitewatch-receiver worklist`, so the three always agree.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Callable, Iterable, Sequence

from prometheus_client import Counter, CollectorRegistry

from alertmanager import maintenance
from alertmanager.config import ReceiverConfig, Route, WorklistConfig
from alertmanager.outbox import Chat, Outbox
from alertmanager.workitem import WorkItem
from alertmanager.worklist import RouteFinder, WorklistUnavailable, collect, for_routes
from alertmanager.worklist_text import render

log = logging.getLogger("sitewatch.receiver")

TITLE = "Что сделать сегодня"
TICK = 20.0  # seconds between looks at the clock: a list goes out within this of its time
RETRY_EVERY = 60.0  # while Prometheus or Alertmanager cannot answer
RESULTS = ("queued", "unavailable", "missed")


@dataclass(frozen=True)
class Worklist:
    """One route's list: its items, and the messages that say them."""

    route: str
    items: tuple[WorkItem, ...]
    texts: tuple[str, ...]


def zone_of(config: ReceiverConfig, route: Route | None) -> tzinfo:
    return (route.timezone if route is not None else None) or config.timezone or maintenance.DEFAULT_ZONE


def compose(config: ReceiverConfig, routes: Sequence[str], now: float, title: str = TITLE) -> dict[str, Worklist]:
    """The lists of `routes` as of `now`, from one round of queries; raises WorklistUnavailable."""
    settings = _settings(config)
    items = collect(settings, now)
    finder = RouteFinder.fetch(settings.alertmanager_url, set(config.routes), settings.timeout) \
        if settings.alertmanager_url else None
    split = for_routes(items, finder, now) if finder is not None else {name: list(items) for name in routes}
    lists = {}
    for name in routes:
        mine = split.get(name, [])
        texts = render(mine, zone_of(config, config.routes.get(name)), now, title=title)
        lists[name] = Worklist(name, tuple(mine), tuple(texts))
    return lists


def merged(config: ReceiverConfig, routes: Iterable[str], now: float, zone: tzinfo, title: str = TITLE) -> list[str]:
    """One list for several routes (a chat several routes post to, or a private chat): each item once."""
    names = list(routes)
    seen: dict[str, WorkItem] = {}
    for worklist in compose(config, names, now, title).values():
        for item in worklist.items:
            seen.setdefault(item.key, item)
    return render(list(seen.values()), zone, now, title=title)


def _settings(config: ReceiverConfig) -> WorklistConfig:
    if config.worklist is None:
        raise WorklistUnavailable("the receiver config has no worklist section",
                                  russian="Список дел не настроен: в настройках получателя не указан сервер мониторинга, "
                                          "из которого его составлять.")
    return config.worklist


def chat_of(route: Route) -> Chat:
    return Chat(route.bot, str(route.chat_id), route.thread_id)


def due_day(route: Route, zone: tzinfo, now: float, late_by: float) -> tuple[date, float] | None:
    """(the local day, the moment) of the route's list if it is due at `now`: its time has come today, on
    one of its days, no more than `late_by` ago."""
    if route.worklist is None:
        return None
    local = datetime.fromtimestamp(now, zone)
    day = local.date()
    if day.weekday() not in route.worklist.days:
        return None
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    # Added as wall-clock time: on a day the clocks change, 08:30 is still 08:30.
    moment = (midnight + timedelta(seconds=route.worklist.at)).timestamp()
    if moment <= now:
        return day, moment
    return None


class Morning:
    """The thread that sends each route's list when it is due."""

    def __init__(self, config: ReceiverConfig, outbox: Outbox, is_active: Callable[[], bool],
                 registry: CollectorRegistry | None = None, handoff=None, wake: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.outbox = outbox
        self.is_active = is_active
        self.handoff = handoff
        self.wake = wake or (lambda: None)
        self.clock = clock
        self.worklists = Counter("sitewatch_receiver_worklists", "Morning worklists, by route and result: queued "
                                 "for the chat, unavailable (Prometheus or Alertmanager did not answer; retried), "
                                 "missed (the receiver was down past worklist.late_by).", ["route", "result"],
                                 registry=registry)
        self.items = Counter("sitewatch_receiver_worklist_items", "Items in the worklists queued, by route.",
                             ["route"], registry=registry)
        for name, route in config.routes.items():
            if route.worklist is not None:
                self.items.labels(name)
                for result in RESULTS:
                    self.worklists.labels(name, result)
        self._retry_at = 0.0
        self._unavailable: str | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-worklist", daemon=True)

    @property
    def routes(self) -> list[str]:
        return [name for name, route in self.config.routes.items() if route.worklist is not None]

    def start(self) -> None:
        if self.config.worklist is not None and self.routes:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.is_active():
                    self.tick()
            except Exception:  # noqa: BLE001 - the next tick tries again; the alerts go on regardless
                log.exception("event=worklist_error action=retrying")
            self._stopping.wait(TICK)

    def tick(self) -> list[str]:
        """Queues every list that is due and not yet sent today; returns the routes queued."""
        now = self.clock()
        due: dict[str, date] = {}
        for name in self.routes:
            route = self.config.routes[name]
            found = due_day(route, zone_of(self.config, route), now, self.config.worklist.late_by)
            if found is None:
                continue
            day, moment = found
            sent = self.outbox.setting(_sent_key(name))
            if sent == day.isoformat():
                continue
            if now - moment > self.config.worklist.late_by:
                self.outbox.set_setting(_sent_key(name), day.isoformat())
                if sent is None:  # the first day with a worklist, started after its time: nothing was missed
                    continue
                self.worklists.labels(name, "missed").inc()
                log.warning("event=worklist_missed route=%s day=%s late=%.0fs hint=%r", name, day, now - moment,
                            "the receiver was not running at the list's time; /today gives it on demand")
                continue
            due[name] = day
        if not due or now < self._retry_at:
            return []
        try:
            lists = compose(self.config, list(due), now)
        except WorklistUnavailable as err:
            self._retry_at = now + RETRY_EVERY
            for name in due:
                self.worklists.labels(name, "unavailable").inc()
            if self._unavailable != str(err):  # once per spell, and again if its cause changes
                self._unavailable = str(err)
                log.warning("event=worklist_unavailable routes=%s error=%r action=retry_every_%.0fs",
                            ",".join(due), str(err), RETRY_EVERY)
            return []
        if self._unavailable is not None:
            log.info("event=worklist_recovered")
            self._unavailable = None
        for name, worklist in lists.items():
            self.queue(worklist, key=f"worklist:{name}:{due[name].isoformat()}")
            self.outbox.set_setting(_sent_key(name), due[name].isoformat())
        self.wake()
        return list(lists)

    def queue(self, worklist: Worklist, key: str | None = None) -> int:
        route = self.config.routes[worklist.route]
        stored = self.outbox.enqueue_text(worklist.route, chat_of(route), worklist.texts, kind="worklist", key=key)
        if stored:
            self.worklists.labels(worklist.route, "queued").inc()
            self.items.labels(worklist.route).inc(len(worklist.items))
            log.info("event=worklist_queued route=%s items=%d messages=%d", worklist.route, len(worklist.items),
                     len(worklist.texts))
        if self.handoff is not None and route.helpdesk is not None:
            self.handoff.offer(worklist.route, list(worklist.items), self.clock())
        return stored


def _sent_key(route: str) -> str:
    return f"worklist_day:{route}"
