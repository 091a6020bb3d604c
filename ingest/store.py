"""The latest accepted upload of every site, source and item (a page, a register, a station), and each
site's check counters, in one SQLite file, so a restart neither makes sites look silent nor loses data.

Each upload is written in one transaction (the upload and its check's counters together) before its site's
state changes in memory, so what the metrics show has always been stored. The raw upload is kept, not
what was made of it: a restart reads it again with the current config and code. A file that is not a
database, or fails SQLite's own check, is moved aside (``NAME.corrupt-TIME``) and a fresh one started;
both are logged. A database written by a newer sitewatch-ingest is refused rather than guessed at.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sitewatch.ingest")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    site TEXT NOT NULL, source TEXT NOT NULL, item TEXT NOT NULL,
    body BLOB NOT NULL,
    upload_time REAL NOT NULL,  -- when the data was taken (the date: line, else arrival)
    arrived_at REAL NOT NULL,
    meta TEXT NOT NULL,         -- JSON: distributor, client, file name, date ignored...
    PRIMARY KEY (site, source, item));
CREATE TABLE IF NOT EXISTS checks (
    site TEXT NOT NULL, source TEXT NOT NULL,
    runs INTEGER NOT NULL, failures INTEGER NOT NULL, up INTEGER NOT NULL, last_success_at REAL NOT NULL,
    failures_in_a_row INTEGER NOT NULL, successes_in_a_row INTEGER NOT NULL, duration REAL NOT NULL,
    PRIMARY KEY (site, source));
CREATE TABLE IF NOT EXISTS about (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(Exception):
    """The storage cannot be used; the message says why and where."""


@dataclass
class StoredUpload:
    site: str
    source: str
    item: str
    body: bytes
    upload_time: float
    arrived_at: float
    meta: dict


@dataclass
class StoredCounters:
    runs: int = 0
    failures: int = 0
    up: bool = True
    last_success_at: float = 0.0
    failures_in_a_row: int = 0
    successes_in_a_row: int = 0
    duration: float = 0.0


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the folder of {self.path}: {err.strerror or err}") from None
        try:
            return self._connect()
        except sqlite3.DatabaseError as err:
            if not _looks_corrupt(err):
                raise StoreError(f"cannot open {self.path}: {err}") from None
            aside = self._move_aside()
            log.error("event=storage_corrupt path=%s problem=%r moved_to=%s action=fresh_start", self.path, str(err),
                      aside)
        try:
            return self._connect()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot open {self.path}: {err}") from None

    def _connect(self) -> sqlite3.Connection:
        existed = self.path.exists() and self.path.stat().st_size > 0
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an answered upload survives a power cut
            if existed:
                problem = db.execute("PRAGMA quick_check").fetchone()[0]
                if problem != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {problem}")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM about WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO about VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer sitewatch-ingest (schema {row[0]}, this one "
                                 f"knows {SCHEMA_VERSION}); upgrade, or point storage.path elsewhere")
        except BaseException:
            db.close()
            raise
        if not existed:
            log.info("event=storage_created path=%s", self.path)
        return db

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                try:
                    part.rename(Path(str(aside) + suffix))
                except OSError as err:
                    raise StoreError(f"{self.path} is damaged and cannot be moved aside: {err.strerror or err}") \
                        from None
        return aside

    def save(self, upload: StoredUpload, counters: StoredCounters, forget: list[str] = ()) -> None:
        """Keeps the upload and its check's counters, and drops the site's `forget` items, all or nothing."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (upload.site, upload.source, upload.item, upload.body, upload.upload_time, upload.arrived_at,
                     json.dumps(upload.meta, ensure_ascii=False)))
                self._db.execute(
                    "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (upload.site, upload.source, counters.runs, counters.failures, int(counters.up),
                     counters.last_success_at, counters.failures_in_a_row, counters.successes_in_a_row,
                     counters.duration))
                for item in forget:
                    self._db.execute("DELETE FROM uploads WHERE site=? AND source=? AND item=?",
                                     (upload.site, upload.source, item))
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write to {self.path}: {err}") from None
            except BaseException:
                # Anything else (a value SQLite cannot take): the transaction must not stay open, or it would
                # hold the write lock and every later upload of every site would fail.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def uploads(self) -> list[StoredUpload]:
        with self._lock:
            rows = self._db.execute("SELECT site, source, item, body, upload_time, arrived_at, meta FROM uploads "
                                    "ORDER BY site, source, item").fetchall()
        result = []
        for site, source, item, body, upload_time, arrived_at, meta in rows:
            try:
                meta_value = json.loads(meta)
            except ValueError:
                meta_value = {}
            result.append(StoredUpload(site, source, item, bytes(body), upload_time, arrived_at,
                                       meta_value if isinstance(meta_value, dict) else {}))
        return result

    def counters(self) -> dict[tuple[str, str], StoredCounters]:
        with self._lock:
            rows = self._db.execute("SELECT site, source, runs, failures, up, last_success_at, failures_in_a_row, "
                                    "successes_in_a_row, duration FROM checks").fetchall()
        return {(site, source): StoredCounters(runs, failures, bool(up), last_success_at, failures_in_a_row,
                                               successes_in_a_row, duration)
                for site, source, runs, failures, up, last_success_at, failures_in_a_row, successes_in_a_row,
                duration in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _looks_corrupt(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return any(word in text for word in ("not a database", "malformed", "corrupt", "quick_check"))
