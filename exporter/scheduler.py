"""Runs every configured check on its own interval, with jitter, on one asyncio event loop.

Due checks are kept in a single heap; a run is a short-lived task, so thousands of checks cost one heap
entry each between runs. A slow or hung check only costs its own timeout. The loop lives in a thread of
its own, so the HTTP server and signal handlers stay responsive; `apply` swaps in a new config at any time.
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

from exporter.config.model import CheckConfig, Config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.runner import run_once
from exporter.state import CheckState

log = logging.getLogger(__name__)

FIRST_RUN_SPREAD = 2.0  # seconds over which the first runs are spread, so a big config does not burst
SITE_DATA_WAIT = 10.0  # how long checks that compare with other checks' readings wait at start


def site_labels(config: Config, check: CheckConfig) -> tuple[tuple[str, str], ...]:
    site = config.site(check.site_id)
    return (("site", site.id), *site.labels, ("check", check.name), ("type", check.type))


class Scheduler:
    def __init__(self, ping_engine: PingEngine, http: HttpClient):
        self._ping_engine = ping_engine
        self._http = http
        self._states: dict[tuple[str, str], CheckState] = {}
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, CheckState]] = []
        self._order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: list[CheckState] = []
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
        scheduled = {id(entry[2]) for entry in self._heap} | {id(state) for state in self._running}
        self._heap = [entry for entry in self._heap if self._is_current(entry[2])]
        heapq.heapify(self._heap)
        for state in self.snapshot():
            if id(state) not in scheduled:
                heapq.heappush(self._heap, (now + self._first_offset(state), next(self._order), state))
        assert self._wake is not None
        self._wake.set()

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
        self._wake = asyncio.Event()
        main = loop.create_task(self._main())
        loop.call_soon(self._reschedule)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            main.cancel()
            for task in list(self._tasks):
                task.cancel()
            loop.run_until_complete(asyncio.gather(main, *self._tasks, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        assert self._wake is not None
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, state = heapq.heappop(self._heap)
                if self._is_current(state):
                    task = asyncio.get_running_loop().create_task(self._run(state))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            delay = self._heap[0][0] - now if self._heap else 3600.0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, delay))
            except asyncio.TimeoutError:
                pass

    async def _run(self, state: CheckState) -> None:
        started = time.monotonic()
        self._running.append(state)
        try:
            site_memory = self._site_memory.setdefault(state.check.site_id, {})
            result = await run_once(state.check, self._ping_engine, self._http, state.memory, site_memory)
        finally:
            self._running.remove(state)
        if not self._is_current(state):
            return  # removed or changed by a reload while it ran
        with self._lock:
            state.record(result)
        schedule = state.check.schedule
        interval = schedule.interval * (1 + random.uniform(-schedule.jitter, schedule.jitter))
        due = max(started + interval, time.monotonic())
        heapq.heappush(self._heap, (due, next(self._order), state))
        assert self._wake is not None
        self._wake.set()
