"""Commits webhooks to the outbox in groups: one transaction, and one fsync, for all that arrived meanwhile.

Each webhook still waits for its own alerts to be on disk before it is answered; it only shares the
commit with the webhooks that came in while the previous commit was being written. Under a storm this
turns hundreds of small transactions a second, each fighting for SQLite's write lock, into a few dozen.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from alertmanager.outbox import EnqueueResult, Outbox, Webhook

log = logging.getLogger("sitewatch.receiver")
# Enough to keep a commit short; the rest waits for the next one.
MOST_PER_COMMIT = 256


class OutboxWriter:
    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self._waiting: queue.SimpleQueue[tuple[Webhook, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="receiver-outbox-writer", daemon=True)
        self._thread.start()

    def store(self, webhook: Webhook, timeout: float = 30.0) -> EnqueueResult:
        """Blocks until the webhook is committed; raises what the commit raised (sqlite3.Error)."""
        done: Future = Future()
        self._waiting.put((webhook, done))
        return done.result(timeout)

    def close(self) -> None:
        self._waiting.put(None)
        self._thread.join(10)

    def _write(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MOST_PER_COMMIT:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            try:
                results = self.outbox.enqueue_many([webhook for webhook, _ in group])
            except Exception as err:  # every webhook of the group is answered 503 and retried
                for _, done in group:
                    done.set_exception(err)
            else:
                for (_, done), result in zip(group, results):
                    done.set_result(result)
            if stop:
                return
