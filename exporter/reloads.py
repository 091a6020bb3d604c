"""Config reloads one at a time, however many are asked for at once.

A reload reads and checks the whole config, so two at the same moment would only race to apply the same file,
and a burst of requests (a tool sending SIGHUP for every file it writes, a script POSTing /-/reload in a
loop, the file watcher on top) would start one each. Here at most one reload runs and at most one waits to
run after it: whoever asks while one waits joins that one and gets its outcome. That outcome is still
current for them, since the waiting reload starts reading the config after their request.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

Outcome = tuple[bool, str]


class _Round:
    """One reload and everyone waiting for it."""

    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome: Outcome = (False, "the reload did not run")


class Reloads:
    def __init__(self, reload: Callable[[], Outcome]):
        self._reload = reload
        self._lock = threading.Lock()
        self._waiting: _Round | None = None  # asked for, not started yet
        self._worker: threading.Thread | None = None

    def ask(self) -> _Round:
        """Asks for a reload that starts after this call, without waiting for it."""
        with self._lock:
            if self._waiting is None:
                self._waiting = _Round()
                if self._worker is None:
                    self._worker = threading.Thread(target=self._work, name="reload", daemon=True)
                    self._worker.start()
            return self._waiting

    def run(self) -> Outcome:
        """Asks for a reload and waits for its outcome (for POST /-/reload and the file watcher)."""
        round_ = self.ask()
        round_.done.wait()
        return round_.outcome

    def _work(self) -> None:
        while True:
            with self._lock:
                round_ = self._waiting
                if round_ is None:
                    self._worker = None  # the next ask() starts a new worker
                    return
                self._waiting = None
            try:
                round_.outcome = self._reload()
            except Exception:  # noqa: BLE001 - the waiters must get an answer, and the next round must run
                log.exception("event=reload_failed")
                round_.outcome = (False, "the reload failed with an internal error; see the exporter's log")
            finally:
                round_.done.set()
