"""The morning worklist: at each route's time, in its zone, what its sites need today goes to its chat.

The list is read from Prometheus when it is due (worklist.py), split per route by Alertmanager's own
routing tree, written in Russian (worklist_text.py) and put in the outbox, from which it is delivered like
any message: a Telegram outage delays it, never loses it. Routes that post to one chat (and topic) and
are due together get one list there, each item once. Only the process holding the outbox's sender lease
sends it, and the day it went out is kept in the outbox, so a restart or a second receiver process never
sends a day's list twice. A receiver that was down at the time sends it when it is back, up to
`worklist.late_by` late (a list due at 23:59 goes out after midnight too); later than that the day is
skipped and the log says so.

`compose` is shared with `/today` and `sitewatch-receiver worklist`, so the three always agree.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Callable, Iterable, Mapping, Sequence

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
LOOK_BACK = 8  # days searched for a route's latest list time: a week, whatever its days
ON_DEMAND_BUDGET = 8.0  # seconds /today may take: the bot's other commands and its buttons wait for it
ROUTING_UNAVAILABLE = ("⚠️ Список дел не составлен: не удалось узнать у сервера оповещений, какие площадки "
                       "относятся к какому чату. Подробности — в журнале получателя.")


@dataclass(frozen=True)
class Worklist:
    """One route's list: its items, and the messages that say them."""

    route: str
    items: tuple[WorkItem, ...]
    texts: tuple[str, ...]


def zone_of(config: ReceiverConfig, route: Route | None) -> tzinfo:
    return (route.timezone if route is not None else None) or config.timezone or maintenance.DEFAULT_ZONE


def shared_zone(config: ReceiverConfig, routes: Iterable[str]) -> tzinfo:
    """The zone of several routes' list: theirs when they share one, else the receiver's."""
    zones = {zone_of(config, config.routes.get(name)) for name in routes}
    return zones.pop() if len(zones) == 1 else config.timezone or maintenance.DEFAULT_ZONE


def compose(config: ReceiverConfig, routes: Sequence[str], now: float, title: str = TITLE) -> dict[str, Worklist]:
    """The lists of `routes` as of `now`, from one round of queries; raises WorklistUnavailable."""
    settings = _settings(config)
    items = collect(settings, now)
    finder = None
    if settings.alertmanager_url:
        try:
            finder = RouteFinder.fetch(settings.alertmanager_url, set(config.routes), settings.timeout)
        except WorklistUnavailable as err:  # its Russian speaks of a list sent round; /today shows this one
            raise WorklistUnavailable(str(err), russian=ROUTING_UNAVAILABLE) from None
    split = for_routes(items, finder, now) if finder is not None else {name: list(items) for name in routes}
    lists = {}
    for name in routes:
        mine = split.get(name, [])
        texts = render(mine, zone_of(config, config.routes.get(name)), now, title=title)
        lists[name] = Worklist(name, tuple(mine), tuple(texts))
    return lists


def merged(config: ReceiverConfig, routes: Iterable[str], now: float, zone: tzinfo, title: str = TITLE) -> list[str]:
    """One list for several routes (a chat several routes post to, or a private chat): each item once."""
    return render(_union(compose(config, list(routes), now, title).values()), zone, now, title=title)


def _union(lists: Iterable[Worklist]) -> list[WorkItem]:
    seen: dict[str, WorkItem] = {}
    for worklist in lists:
        for item in worklist.items:
            seen.setdefault(item.key, item)
    return list(seen.values())


def per_chat(config: ReceiverConfig, lists: Sequence[Worklist], now: float,
             title: str = TITLE) -> list[tuple[tuple[str, ...], Worklist]]:
    """The lists as their chats get them: routes posting to one chat and topic share one list there (each
    item once, in their common zone); (the routes, the list) in the order of `lists`. The shared list
    bears the first route's name, whose queue it goes through."""
    groups: dict[str, list[Worklist]] = {}
    for worklist in lists:
        groups.setdefault(chat_of(config.routes[worklist.route]).queue, []).append(worklist)
    shared = []
    for group in groups.values():
        names = tuple(worklist.route for worklist in group)
        if len(group) == 1:
            shared.append((names, group[0]))
            continue
        items = _union(group)
        texts = render(items, shared_zone(config, names), now, title=title)
        shared.append((names, Worklist(names[0], tuple(items), tuple(texts))))
    return shared


_ASKED = threading.Lock()  # held while a /today is being made, by its thread


def on_demand(config: ReceiverConfig, routes: Iterable[str], now: float, zone: tzinfo,
              budget: float = ON_DEMAND_BUDGET) -> list[str]:
    """`merged`, for someone waiting in a chat. The bot's command loop (and with it the buttons, which
    Telegram wants answered within seconds) waits for the answer, so the list is made on a thread of its
    own and given `budget` seconds, each query no longer; one not made by then is given up
    (WorklistUnavailable), and while it finishes in the background another /today is refused at once."""
    settings = _settings(config)
    quick = dataclasses.replace(config, worklist=dataclasses.replace(settings, timeout=min(settings.timeout, budget)))
    names = list(routes)
    if not _ASKED.acquire(blocking=False):
        raise WorklistUnavailable("an earlier /today is still being made",
                                  russian="⏳ Предыдущий список дел ещё составляется: сервер мониторинга отвечает "
                                          "медленно. Повторите /today через минуту.")
    answer: dict[str, object] = {}
    done = threading.Event()

    def make() -> None:
        try:
            answer["texts"] = merged(quick, names, now, zone)
        except Exception as err:  # noqa: BLE001 - raised again on the asking thread, if it still waits
            answer["error"] = err
        finally:
            _ASKED.release()
            done.set()

    threading.Thread(target=make, name="receiver-today", daemon=True).start()
    if not done.wait(budget):
        log.warning("event=worklist_too_slow budget=%gs routes=%s hint=%r", budget, ",".join(names),
                    "Prometheus or Alertmanager answer slowly; the morning list waits for them up to worklist.timeout "
                    "per query")
        raise WorklistUnavailable(f"the worklist was not made within {budget:g} s",
                                  russian=f"⚠️ Список дел не составлен: сервер мониторинга не ответил за {budget:g} с. "
                                          "Утренний список придёт в своё время, а /today можно повторить позже.")
    if "error" in answer:
        raise answer["error"]  # type: ignore[misc]
    return answer["texts"]  # type: ignore[return-value]


def _settings(config: ReceiverConfig) -> WorklistConfig:
    if config.worklist is None:
        raise WorklistUnavailable("the receiver config has no worklist section",
                                  russian="⚠️ Список дел не настроен: администратор не указал сервер мониторинга, "
                                          "по данным которого его составлять.")
    return config.worklist


def chat_of(route: Route) -> Chat:
    return Chat(route.bot, str(route.chat_id), route.thread_id)


def _moment(day: date, at: float, zone: tzinfo) -> float:
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    # Added as wall-clock time: on a day the clocks change, 08:30 is still 08:30.
    return (midnight + timedelta(seconds=at)).timestamp()


def last_moment(route: Route, zone: tzinfo, now: float) -> tuple[date, float] | None:
    """(the local day, the moment) of the route's latest list time at or before `now`, on one of its days
    (yesterday's when today's has not come: a list due at 23:59 is still due at 00:01); None for a route
    without a list."""
    if route.worklist is None or not route.worklist.days:
        return None
    today = datetime.fromtimestamp(now, zone).date()
    for back in range(LOOK_BACK):
        day = today - timedelta(days=back)
        if day.weekday() in route.worklist.days:
            moment = _moment(day, route.worklist.at, zone)
            if moment <= now:
                return day, moment
    return None


def due_day(route: Route, zone: tzinfo, now: float, late_by: float) -> tuple[date, float] | None:
    """(the local day, the moment) of the route's list if it is due at `now`: its latest time on one of
    its days has come, no more than `late_by` ago."""
    found = last_moment(route, zone, now)
    if found is None or now - found[1] > late_by:
        return None
    return found


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
                                 "missed (not sent within worklist.late_by of its time).", ["route", "result"],
                                 registry=registry)
        self.items = Counter("sitewatch_receiver_worklist_items", "Items in the worklists queued, by route.",
                             ["route"], registry=registry)
        for name, route in config.routes.items():
            if route.worklist is not None:
                self.items.labels(name)
                for result in RESULTS:
                    self.worklists.labels(name, result)
        self._retry_at = 0.0
        self._unavailable: str | None = None  # the last failure's cause, for the log line of a missed day
        self._cause: str | None = None  # its kind, as the chat would be told it: logged once per kind
        self._previous: float | None = None  # this process's last tick while it held the lease
        self._saw: dict[str, str] = {}  # route -> the last day whose list time came while this process watched
        self._tried: dict[str, str] = {}  # route -> the day whose list was last tried
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-worklist", daemon=True)

    @property
    def routes(self) -> list[str]:
        return [name for name, route in self.config.routes.items() if route.worklist is not None]

    def start(self) -> None:
        if self.config.worklist is not None and self.routes:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the thread; one waiting on Prometheus is not waited for past `timeout` (the process may end
        under it: what it had not queued, the next start queues, under the same key)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.is_active():
                    self.tick()
                else:
                    self._previous = None  # another process sends: what happens meanwhile is not ours to see
            except Exception:  # noqa: BLE001 - the next tick tries again; the alerts go on regardless
                log.exception("event=worklist_error action=retrying")
            self._stopping.wait(TICK)

    def tick(self) -> list[str]:
        """Queues every list that is due and not yet sent today; returns the routes queued."""
        now = self.clock()
        previous, self._previous = self._previous, now
        late_by = self.config.worklist.late_by
        due: dict[str, date] = {}
        for name in self.routes:
            route = self.config.routes[name]
            zone = zone_of(self.config, route)
            found = last_moment(route, zone, now)
            if found is None:
                continue
            day, moment = found
            sent = self.outbox.setting(_sent_key(name))
            if _done(sent, day, datetime.fromtimestamp(now, zone).date()):
                continue
            # A list whose time came while this process was watching gets one try, however small late_by
            # is (ticks are TICK apart: `late_by: 0` means "at its time", not "never").
            if previous is not None and previous < moment:
                self._saw[name] = day.isoformat()
            first_try = self._saw.get(name) == day.isoformat() and self._tried.get(name) != day.isoformat()
            if now - moment > late_by and not first_try:
                self.outbox.set_setting(_sent_key(name), day.isoformat())
                if sent is None:  # the first day with a worklist, started after its time: nothing was missed
                    continue
                self.worklists.labels(name, "missed").inc()
                hint = ("the receiver was not running at the list's time; /today gives it on demand"
                        if self._unavailable is None else
                        f"Prometheus or Alertmanager did not answer within worklist.late_by ({self._unavailable}); "
                        "/today gives it on demand")
                log.warning("event=worklist_missed route=%s day=%s late=%.0fs hint=%r", name, day, now - moment, hint)
                continue
            due[name] = day
        if not due or now < self._retry_at:
            return []
        self._tried.update((name, day.isoformat()) for name, day in due.items())
        self._retry_at = now + RETRY_EVERY  # whatever goes wrong, not again before then (no log line a tick)
        try:
            lists = compose(self.config, list(due), now)
        except WorklistUnavailable as err:
            for name in due:
                self.worklists.labels(name, "unavailable").inc()
            # Once per spell, and again if its kind of cause changes: the English text quotes the answer,
            # which differs at each try (a proxy's error page with a request id), the Russian one names the kind.
            if self._cause != err.russian:
                self._cause = err.russian
                log.warning("event=worklist_unavailable routes=%s error=%r action=retry_every_%.0fs",
                            ",".join(due), str(err), RETRY_EVERY)
            self._unavailable = str(err)
            return []
        self._retry_at = 0.0
        if self._stopping.is_set():  # stopping while Prometheus answered: the next start queues it
            return []
        if self._unavailable is not None:
            log.info("event=worklist_recovered")
            self._unavailable = self._cause = None
        # Routes sharing a chat share a list only when due on the same day: one key per chat and day.
        by_day: dict[date, list[Worklist]] = {}
        for name, worklist in lists.items():
            by_day.setdefault(due[name], []).append(worklist)
        for day, day_lists in by_day.items():
            for names, worklist in per_chat(self.config, day_lists, now):
                self.queue(worklist, key=f"worklist:{'+'.join(names)}:{day.isoformat()}",
                           routes=[lists[name] for name in names],
                           settings={_sent_key(name): day.isoformat() for name in names})
        self.wake()
        return list(lists)

    def queue(self, worklist: Worklist, key: str | None = None, routes: Sequence[Worklist] = (),
              settings: Mapping[str, str] | None = None) -> int:
        """Queues `worklist` for its route's chat; `routes`: the lists of the routes it stands for when it is
        shared (default: its own). Their items that need a visit go to their helpdesks. `settings` (the day
        recorded as sent) are stored with the texts, in one transaction."""
        routes = routes or (worklist,)
        chat = chat_of(self.config.routes[worklist.route])
        # The helpdesk's items are stored first: once the texts and their day are, a restart does not come
        # back to this list, and items offered after them would be lost to a crash in between. Offering
        # twice (a crash before the texts) is harmless: items handed off before are skipped.
        if self.handoff is not None:
            for own in routes:
                if self.config.routes[own.route].helpdesk is not None:
                    self.handoff.offer(own.route, list(own.items), self.clock())
        stored = self.outbox.enqueue_text(worklist.route, chat, worklist.texts, kind="worklist", key=key,
                                          settings=settings)
        if stored:
            for own in routes:
                self.worklists.labels(own.route, "queued").inc()
                self.items.labels(own.route).inc(len(own.items))
            log.info("event=worklist_queued route=%s items=%d messages=%d", "+".join(own.route for own in routes),
                     len(worklist.items), len(worklist.texts))
        return stored


def _done(sent: str | None, day: date, today: date) -> bool:
    """Whether the day's list went out (or was given up), by the day recorded last: that day or a later
    one (the clock went back after it went out). A record more than a day ahead of the local date was made
    by a clock that ran ahead; it is not believed, or no list would go out until that day."""
    if sent is None:
        return False
    return day.isoformat() <= sent <= (today + timedelta(days=1)).isoformat()


def _sent_key(route: str) -> str:
    return f"worklist_day:{route}"
