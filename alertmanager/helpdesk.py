"""The helpdesk hand-off: the worklist's items that need a visit, posted once each to a route's helpdesk.

After each morning worklist the route's items that need someone on site (`WorkItem.needs_visit`) are
offered here. An item is known by its route and its stable key: one offered before is not stored again,
so the helpdesk gets each item once however many mornings it stays on the list. The key is remembered
until the item has been off the lists for `remember` (90 days): an item that comes back later than that
is a new task. New items are stored in the outbox's SQLite file (helpdesk_store.py) before `offer`
returns, and a thread posts them, one request each (helpdesk_post.py), as generic JSON or as a Bitrix24
task (helpdesk_body.py, docs/helpdesk.md). A file kept busy by another writer never holds up the morning
list that offers the items: they are kept and stored by the thread once the file is free.

Network errors, timeouts, 5xx, 408 and 429 are retried with a growing pause (Retry-After honoured); any
other answer outside 2xx gives the item up at once, and so does a day without success: logged once with
the cause, counted, kept a week among the hand-off's dead letters, and forgotten, so that the next
morning's list offers it again if it is still there. The log names a helpdesk by its host only. Only the
process holding the outbox's sender lease posts, and a delivery is claimed in the file before it is
posted; what the helpdesk took is never posted again, even when the file is too busy to note it at once.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import requests

from alertmanager.config import ReceiverConfig
from alertmanager.helpdesk_body import delivery_id, sound
from alertmanager.helpdesk_metrics import HelpdeskMetrics
from alertmanager.helpdesk_deadline import session
from alertmanager.helpdesk_post import RETRIED, Answer, Destination, destinations
from alertmanager.helpdesk_store import Delivery, HandOffStore
from alertmanager.workitem import WorkItem

log = logging.getLogger("sitewatch.receiver")

REMEMBER = 90 * 86400.0  # an item handed off is not handed off again until it has been gone this long
GIVE_UP_AFTER = 86400.0  # a delivery not accepted within this is given up
FIRST_RETRY = 1.0
MAX_RETRY = 300.0
POLL_INTERVAL = 2.0  # another process sharing the file may have stored deliveries: look this often
BATCH = 100  # deliveries read at a time
CLAIM_MARGIN = 30.0  # a delivery is claimed for its request's longest time and this much more
GIVE_UP_HINTS = {
    "expired": "the helpdesk could not be reached for {give_up}; see the earlier warnings for the cause",
    "unconfigured": "the route no longer has a helpdesk section (renamed or removed): the next list of a "
                    "route with a helpdesk offers its items again",
}


class HandOff:
    """The helpdesk hand-off of one receiver config.

    Thread-safe: `offer` may be called from any thread; every thread gets its own connection."""

    def __init__(self, config: ReceiverConfig, outbox_path: Path | str, metrics: Any = None, *,
                 clock: Callable[[], float] = time.time, remember: float = REMEMBER,
                 give_up_after: float = GIVE_UP_AFTER, first_retry: float = FIRST_RETRY,
                 max_retry: float = MAX_RETRY, busy_timeout: float = 10.0):
        """`metrics`: the registry to count in (a CollectorRegistry, or anything with a `registry`, such as
        ReceiverMetrics), or None. Raises ConfigError for a helpdesk URL that is not an http(s) address."""
        self.clock = clock
        self.remember = remember
        self.give_up_after = give_up_after
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.destinations = destinations(config)
        self.store = HandOffStore(outbox_path, busy_timeout)
        self.metrics = HelpdeskMetrics(getattr(metrics, "registry", metrics), list(self.destinations),
                                       self.store.pending)
        self._wakeup = threading.Condition()
        self._woken = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._is_active: Callable[[], bool] = lambda: True
        self._retry_at: dict[str, tuple[float, int]] = {}  # route -> (monotonic time, failed tries in a row)
        self._trouble: dict[str, str] = {}  # route -> the result last logged for it
        self._posted_at: dict[str, float] = {}  # host -> monotonic time of the last post to it
        self._session: requests.Session | None = None
        self._owner = uuid.uuid4().hex  # this object's claims in the file
        self._unstored: list[tuple[str, list[WorkItem], float]] = []  # offers the busy file did not take yet
        self._unstored_lock = threading.Lock()
        self._unwritten: dict[int, tuple[Delivery, str, str]] = {}  # id -> (delivery, outcome, cause) to note
        self._failing: str | None = None  # the error the thread's rounds last failed with

    def close(self) -> None:
        """Closes the calling thread's connection to the file."""
        self.store.close()

    # --- offering -----------------------------------------------------------------------------------------

    def offer(self, route: str, items: Sequence[WorkItem], now: float) -> int:
        """Stores the items of `route` that need a visit and were not handed off before; returns how many.

        Every offered item's record is refreshed, so an item is remembered until it has been off the
        route's lists for `remember`. A route without a helpdesk stores nothing. If another writer keeps
        the file busy beyond `busy_timeout`, the items are kept and 0 returned: the posting thread stores
        them once the file is free (lost only if the process ends first; the next list offers them again)."""
        if route not in self.destinations:
            return 0
        visits: dict[str, WorkItem] = {}
        for item in map(sound, items):
            if item.needs_visit:
                visits.setdefault(item.key, item)
        try:
            return self._store(route, list(visits.values()), now)
        except sqlite3.Error as err:
            with self._unstored_lock:
                self._unstored.append((route, list(visits.values()), now))
            log.warning("event=helpdesk_not_stored_yet route=%s items=%d error=%r action=stored_when_the_file_is_free",
                        route, len(visits), str(err))
            self.wake()
            return 0

    def _store(self, route: str, items: list[WorkItem], now: float) -> int:
        destination = self.destinations[route]
        new = len(self.store.remember(route, destination.host, items, now, now - self.remember,
                                      list(self.destinations)))
        if new:
            self.metrics.queued.labels(route).inc(new)
            log.info("event=helpdesk_queued route=%s items=%d host=%s", route, new, destination.host)
            self.wake()
        return new

    def _store_unstored(self) -> None:
        """Stores the offers a busy file did not take; raises sqlite3.Error while it stays busy."""
        while True:
            with self._unstored_lock:
                if not self._unstored:
                    return
                route, items, now = self._unstored[0]
            self._store(route, items, now)
            with self._unstored_lock:
                self._unstored.pop(0)

    # --- posting ------------------------------------------------------------------------------------------

    def start(self, is_active: Callable[[], bool] | None = None) -> None:
        """Starts the thread that posts; it posts only while `is_active()` is true (the outbox's sender
        lease: Sender.active), so processes sharing the file never post twice."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._is_active = is_active or (lambda: True)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="receiver-helpdesk", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._wakeup:
            self._woken = True
            self._wakeup.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the thread within `timeout`: a post under way is cut short, and its item posted after the
        next start."""
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            pause = POLL_INTERVAL
            try:
                if self._is_active():
                    pause = self.deliver_due()
            except Exception as err:  # noqa: BLE001 - the next round tries again; alerts go on regardless
                failing = f"{type(err).__name__}: {self._scrub(str(err))}"
                if failing != self._failing:  # once per spell, and again if the error changes
                    log.error("event=helpdesk_error error=%s detail=%r action=retrying", type(err).__name__,
                              self._scrub(str(err)))
                    self._failing = failing
            else:
                if self._failing is not None:
                    log.info("event=helpdesk_error_cleared")
                    self._failing = None
            with self._wakeup:
                if not self._woken and not self._stopping.is_set():
                    self._wakeup.wait(max(0.01, min(pause, POLL_INTERVAL)))
                self._woken = False

    def deliver_due(self) -> float:
        """One round of the thread's (not to be called while it runs): notes the outcomes and stores the
        offers a busy file did not take, gives up what is too old or has nowhere to go, then posts what
        waits for each route that is not pausing after a failure. Returns the seconds until a pausing route
        may try again."""
        self._note_unwritten()
        self._store_unstored()
        self._give_up_old()
        soonest = POLL_INTERVAL
        for route, destination in self.destinations.items():
            if self._stopping.is_set():
                break
            wait = self._retry_at.get(route, (0.0, 0))[0] - time.monotonic()
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            more = self._deliver_route(destination)
            wait = self._retry_at.get(route, (0.0, 0))[0] - time.monotonic()
            if wait > 0:
                soonest = min(soonest, wait)
            elif more:
                soonest = 0.0
        return soonest

    def _deliver_route(self, destination: Destination) -> bool:
        """Posts the route's waiting items in order until one fails; True if more may wait beyond a batch."""
        route = destination.route
        deliveries = self.store.waiting(route, BATCH)
        for delivery in deliveries:
            if self._stopping.is_set() or not self._is_active():
                return False
            if delivery.id in self._unwritten:  # posted, its outcome not noted yet: never posted again
                return False
            try:
                item = delivery.item()
            except (ValueError, KeyError, TypeError) as err:  # a row this version cannot read: never a stuck queue
                self._bury([delivery], "rejected", f"unreadable: {err!r}")
                log.error("event=helpdesk_dead_letter route=%s key=%s reason=rejected detail=%r", route,
                          delivery.key, f"the stored item cannot be read: {err!r}")
                continue
            now = self.clock()
            if not self.store.claim(delivery, self._owner, now, now + 2 * destination.helpdesk.timeout + CLAIM_MARGIN):
                return False  # another process is posting it: the route's others wait behind it
            spacing = self._posted_at.get(destination.host, float("-inf")) + destination.min_interval \
                - time.monotonic()
            if spacing > 0:
                self._stopping.wait(spacing)
            self._posted_at[destination.host] = time.monotonic()
            answer = destination.post(self._http(), item, delivery.created_at, cancel=self._stopping)
            if self._stopping.is_set() and answer.result in RETRIED:  # cut short by stop(): not a try
                self._note(delivery, "released")
                return False
            self.metrics.requests.labels(route, answer.result).inc()
            if answer.result == "ok":
                self.metrics.sent.labels(route).inc()
                log.info("event=helpdesk_sent route=%s id=%s host=%s status=%d", route,
                         delivery_id(route, item), destination.host, answer.status)
                self._recovered(destination)
                if not self._note(delivery, "sent"):
                    return False
            elif answer.result in RETRIED:
                self._back_off(destination, answer)
                self._note(delivery, "failed", answer.cause)
                return False  # the rest of the route's items wait with it
            else:
                log.error("event=helpdesk_dead_letter route=%s id=%s host=%s reason=rejected status=%d detail=%r "
                          "hint=%r", route, delivery_id(route, item), destination.host, answer.status, answer.cause,
                          answer.hint)
                self._recovered(destination)
                if not self._note(delivery, "rejected", answer.cause):
                    return False
        return len(deliveries) == BATCH

    def _note(self, delivery: Delivery, outcome: str, cause: str = "") -> bool:
        """Writes what a post came to; False if the file is busy (kept, and written by a later round)."""
        try:
            self._write_outcome(delivery, outcome, cause)
            return True
        except sqlite3.Error as err:
            self._unwritten[delivery.id] = (delivery, outcome, cause)
            log.warning("event=helpdesk_outcome_not_noted_yet route=%s key=%s outcome=%s error=%r "
                        "action=noted_when_the_file_is_free", delivery.route, delivery.key, outcome, str(err))
            return False

    def _note_unwritten(self) -> None:
        for row_id, (delivery, outcome, cause) in list(self._unwritten.items()):
            self._write_outcome(delivery, outcome, cause)
            del self._unwritten[row_id]

    def _write_outcome(self, delivery: Delivery, outcome: str, cause: str) -> None:
        if outcome == "sent":
            self.store.sent(delivery)
        elif outcome == "failed":
            self.store.failed(delivery, cause)
        elif outcome == "released":
            self.store.release(delivery)
        else:
            self._bury([delivery], "rejected", cause)

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = session()
        return self._session

    def _back_off(self, destination: Destination, answer: Answer) -> None:
        route = destination.route
        attempts = self._retry_at.get(route, (0.0, 0))[1] + 1
        delay = min(self.first_retry * 2.0 ** (attempts - 1), self.max_retry) * random.uniform(0.8, 1.2)
        if answer.retry_after is not None:
            delay = max(delay, answer.retry_after)
        self._retry_at[route] = (time.monotonic() + delay, attempts)
        if self._trouble.get(route) != answer.result:  # once per trouble spell, and again if its kind changes
            self._trouble[route] = answer.result
            log.warning("event=helpdesk_unavailable route=%s host=%s kind=%s cause=%r attempt=%d "
                        "action=retry_with_backoff retry_in=%.1fs", route, destination.host, answer.result,
                        answer.cause, attempts, delay)

    def _recovered(self, destination: Destination) -> None:
        attempts = self._retry_at.pop(destination.route, (0.0, 0))[1]
        if self._trouble.pop(destination.route, None) is not None:
            log.info("event=helpdesk_recovered route=%s host=%s failed_attempts=%d", destination.route,
                     destination.host, attempts)

    def _give_up_old(self) -> None:
        """Gives up the deliveries older than `give_up_after`, and those of routes without a helpdesk now."""
        groups: dict[tuple[str, str], list[Delivery]] = {}
        now = self.clock()
        for delivery in self.store.overdue(now - self.give_up_after, list(self.destinations), now):
            reason = "unconfigured" if delivery.route not in self.destinations else "expired"
            groups.setdefault((delivery.route, reason), []).append(delivery)
        for (route, reason), group in groups.items():
            causes = [delivery.last_error for delivery in group if delivery.last_error]
            detail = causes[-1] if causes else "no answer yet"
            self._bury(group, reason, detail)
            hint = GIVE_UP_HINTS[reason].format(give_up=f"{self.give_up_after:g}s")
            destination = self.destinations.get(route)
            log.error("event=helpdesk_dead_letter route=%s host=%s reason=%s items=%d detail=%r hint=%r", route,
                      destination.host if destination else "-", reason, len(group), detail, hint)

    def _bury(self, deliveries: Sequence[Delivery], reason: str, detail: str) -> None:
        self.store.bury(deliveries, reason, detail, self.clock())
        for route in {delivery.route for delivery in deliveries}:
            self.metrics.failed.labels(route, reason).inc(sum(1 for d in deliveries if d.route == route))

    def _scrub(self, text: str) -> str:
        for destination in self.destinations.values():
            text = destination.scrub(text)
        return text

    # --- what /metrics and people see -----------------------------------------------------------------

    def pending(self) -> dict[str, int]:
        """Items waiting to be posted, by route, across every process sharing the file."""
        return self.store.pending()

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The items given up in the last week, newest first."""
        return self.store.dead_letters(limit)
