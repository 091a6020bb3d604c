"""Commits webhooks to the outbox in groups: one transaction, and one fsync, for all that arrived meanwhile.

Each webhook still waits for its own alerts to be on disk before it is answered; it only shares the
commit with the webhooks that came in while the previous commit was being written. Under a storm this
turns hundreds of small transactions a second, each fighting for SQLite's write lock, into a few dozen.
When a shared commit fails, each webhook of it is committed again on its own, so one webhook that
cannot be stored never fails the others it happened to share a commit with.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
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

    def submit(self, webhook: Webhook) -> Future:
        """Queues the webhook for the next commit; the future holds its EnqueueResult or what the commit raised."""
        done: Future = Future()
        self._waiting.put((webhook, done))
        return done

    def store(self, webhook: Webhook, timeout: float = 30.0) -> EnqueueResult:
        """Blocks until the webhook is committed; raises what the commit raised (sqlite3.Error)."""
        return self.submit(webhook).result(timeout)

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
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[tuple[Webhook, Future]]) -> None:
        for (_, done), outcome in zip(group, commit_each(self.outbox, [webhook for webhook, _ in group])):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)


def commit_each(outbox: Outbox, webhooks: list[Webhook],
                patience: float | None = None) -> list[EnqueueResult | Exception]:
    """Commits the webhooks together; each gets its result, or the exception that its own commit raised
    (the caller answers 503 for a database fault, 400 for what the webhook carried). `patience`: how long
    to wait for another writer's lock (default: the outbox's busy timeout)."""
    try:
        return list(outbox.enqueue_many(webhooks, patience))
    except sqlite3.Error as err:  # the database's fault, not a webhook's: all of them are retried later
        return [err] * len(webhooks)
    except Exception as err:
        if len(webhooks) == 1:
            return [err]
        # The rollback undid the whole group; find the webhook at fault by committing each alone.
        return [commit_each(outbox, [webhook], patience)[0] for webhook in webhooks]
