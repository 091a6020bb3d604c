"""Runs every configured check on its own interval, with jitter, on one asyncio event loop.

Due checks are kept in a single heap, with one timer set for the earliest; a run is a short-lived task, so
thousands of checks cost one heap entry each between runs, and a finished run wakes nothing but itself. A slow
or hung check only costs its own timeout. The loop lives in a thread of its own, so the HTTP server and signal
handlers stay responsive; `apply` swaps in a new config at any time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import threading
import time
import zlib
from typing import Callable

from exporter.config.model import CheckConfig, Config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.runner import run_once
from exporter.state import CheckState

log = logging.getLogger(__name__)

FIRST_RUN_SPREAD = 2.0  # seconds over which the first runs are spread, so a big config does not burst
SITE_DATA_WAIT = 10.0  # how long checks that compare with other checks' readings wait at start
# Checks due within this many seconds start together: each wake-up of the loop costs syscalls, and 5,000
# checks a minute would otherwise wake it 80 times a second for one check each. Never more than a tenth of
# the check's interval, which its jitter (10 % by default) moves anyway.
START_SLACK = 0.05


def site_labels(config: Config, check: CheckConfig) -> tuple[tuple[str, str], ...]:
    site = config.site(check.site_id)
    return (("site", site.id), *site.labels, ("check", check.name), ("type", check.type))


class Scheduler:
    def __init__(self, ping_engine: PingEngine, http: HttpClient,
                 on_result: Callable[[CheckState], object] | None = None):
        self._ping_engine = ping_engine
        self._http = http
        self._on_result = on_result  # called on the loop's thread after each recorded run
        self._states: dict[tuple[str, str], CheckState] = {}
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, CheckState]] = []
        self._order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # time.monotonic() the timer fires at
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[int] = set()  # id() of the states with a run in progress
        self._site_memory: dict[str, dict] = {}  # per site id, kept across reloads
        self._started = threading.Event()

    # -- reading (any thread) -----------------------------------------------------------------------

    def snapshot(self) -> list[CheckState]:
        with self._lock:
            return list(self._states.values())

    def pending(self) -> int:
        """How many checks have not finished their first run."""
        return sum(1 for state in self.snapshot() if state.last is None)

    # -- configuration ------------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        """Switches to `config`; unchanged checks keep their history, removed ones vanish at once."""
        new_states: dict[tuple[str, str], CheckState] = {}
        with self._lock:
            for check in config.checks():
                labels = site_labels(config, check)
                previous = self._states.get(check.key)
                if previous is not None and previous.check.raw == check.raw and previous.labels == labels:
                    # Unchanged: keep history and timetable; take the new options (secrets may have rotated).
                    previous.check = check
                    new_states[check.key] = previous
                else:
                    new_states[check.key] = CheckState(check, labels)
            self._states = new_states
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reschedule)

    def _reschedule(self) -> None:
        now = time.monotonic()
        scheduled = {id(entry[2]) for entry in self._heap} | self._running
        self._heap = [entry for entry in self._heap if self._is_current(entry[2])]
        heapq.heapify(self._heap)
        for state in self.snapshot():
            if id(state) not in scheduled:
                heapq.heappush(self._heap, (now + self._first_offset(state), next(self._order), state))
        self._arm()

    def _is_current(self, state: CheckState) -> bool:
        return self._states.get(state.check.key) is state

    @staticmethod
    def _first_offset(state: CheckState) -> float:
        # A stable spread: the same check starts at the same offset after every restart.
        fraction = zlib.crc32("/".join(state.check.key).encode()) / 0xFFFFFFFF
        offset = fraction * min(state.check.schedule.interval, FIRST_RUN_SPREAD)
        if getattr(state.check.kind, "USES_SITE_DATA", False):
            # Compares with what the site's other checks read: let their first runs finish first.
            offset += min(state.check.schedule.interval, FIRST_RUN_SPREAD + SITE_DATA_WAIT)
        return offset

    # -- running ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="scheduler", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._reschedule)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.gather(*self._tasks, return_exceptions=True))
            loop.close()

    def _arm(self) -> None:
        """Sets the one timer for the earliest due check, unless it is set for that already or sooner."""
        if not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at <= due:
                return  # it fires first and sets itself again for whatever is due then
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = due
        self._timer = self._loop.call_later(max(0.0, due - time.monotonic()), self._start_due)

    def _start_due(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = time.monotonic()
        while self._heap:
            due, _, state = self._heap[0]
            if due > now + min(START_SLACK, state.check.schedule.interval * 0.1):
                break
            heapq.heappop(self._heap)
            if self._is_current(state):
                task = loop.create_task(self._run(state))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._arm()

    async def _run(self, state: CheckState) -> None:
        started = time.monotonic()
        self._running.add(id(state))
        try:
            site_memory = self._site_memory.setdefault(state.check.site_id, {})
            result = await run_once(state.check, self._ping_engine, self._http, state.memory, site_memory)
        finally:
            self._running.discard(id(state))
        if not self._is_current(state):
            return  # removed or changed by a reload while it ran
        with self._lock:
            state.record(result)
        if self._on_result is not None:
            try:
                self._on_result(state)
            except Exception:  # noqa: BLE001 - the timetable must go on whatever the listener does
                log.exception("event=result_listener_failed site=%s check=%s", *state.check.key)
        schedule = state.check.schedule
        interval = schedule.interval * (1 + random.uniform(-schedule.jitter, schedule.jitter))
        due = max(started + interval, time.monotonic())
        heapq.heappush(self._heap, (due, next(self._order), state))
        self._arm()  # usually nothing to do: the next run is an interval away, later than the timer
