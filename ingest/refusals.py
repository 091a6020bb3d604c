"""Uploads that are turned away: the answer each gets, the counter by source and reason, and a log that says
each kind at most once a minute.

A script with a wrong token runs every 15 minutes on hundreds of PCs, and a scanner may send thousands of
requests: each is counted in ``sitewatch_ingest_refused_total{source,reason}``, but a kind of refusal
(source and reason) is logged at most once a minute, with how many more came since the last line. No token,
key or query string is ever written: the detail is ingest's own sentence about what was wrong.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from exporter.redaction import redact

log = logging.getLogger("sitewatch.ingest")

LOG_EVERY = 60.0  # seconds between two log lines of one kind of refusal


class Refusal(Exception):
    """An upload that is not taken: the HTTP status, a fixed reason word and a sentence for the sender."""

    def __init__(self, status: int, reason: str, message: str, site: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.site = site  # the site it came from, when that was known before it was refused


@dataclass
class _Kind:
    count: int = 0  # since the process started
    unlogged: int = 0  # since the last log line of this kind
    logged_at: float = -LOG_EVERY
    last_at: float = 0.0  # wall clock, for the status page
    last_message: str = ""


class Refusals:
    """Counts refusals by (source, reason) and logs each kind at most once every `every` seconds."""

    def __init__(self, every: float = LOG_EVERY):
        self._every = every
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def note(self, source: str, refusal: Refusal, remote: str, site: str = "") -> None:
        now = time.monotonic()
        message = redact(refusal.message)
        with self._lock:
            kind = self._kinds.setdefault((source, refusal.reason), _Kind())
            kind.count += 1
            kind.unlogged += 1
            kind.last_at, kind.last_message = time.time(), message
            if now - kind.logged_at < self._every:
                return
            count, kind.unlogged, kind.logged_at = kind.unlogged, 0, now
        log.warning("event=upload_refused source=%s reason=%s status=%d remote=%s site=%s count_since_last_line=%d "
                    "detail=%r", source, refusal.reason, refusal.status, remote, site or "-", count, message)

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return {key: kind.count for key, kind in self._kinds.items()}

    def latest(self) -> list[tuple[str, str, int, float, str]]:
        """(source, reason, count, last time, last message) of every kind, the latest first."""
        with self._lock:
            rows = [(source, reason, kind.count, kind.last_at, kind.last_message)
                    for (source, reason), kind in self._kinds.items()]
        return sorted(rows, key=lambda row: row[3], reverse=True)


def shown(text: str) -> str:
    """Text that came in a request, fit for a message: quoted, printable, at most 80 characters."""
    text = "".join(char if char.isprintable() else "?" for char in text)
    return repr(text if len(text) <= 80 else text[:77] + "...")
