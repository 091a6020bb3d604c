"""The helpdesk hand-off's memory, in the outbox's SQLite file (tables helpdesk_*): which items each route
handed off and when they were last on its list, which wait to be posted, and which were given up.

Every process sharing the outbox shares this memory. A delivery is claimed before it is posted, so two
processes never post the same one at once. Writes wait for another writer as the outbox's do; each
thread gets its own connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from alertmanager.helpdesk_body import sound
from alertmanager.outbox import Transaction, open_database
from alertmanager.workitem import WorkItem

KEEP_DEAD_LETTERS = 7 * 86400.0

_SCHEMA = """
-- Items handed off, by route and key; seen_at is the last morning the item was on the route's list,
-- host the helpdesk's (a route renamed in the config takes over what its old name handed to that host).
CREATE TABLE IF NOT EXISTS helpdesk_handed (
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    first_at REAL NOT NULL,
    seen_at REAL NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (route, key)
);
CREATE INDEX IF NOT EXISTS helpdesk_handed_by_age ON helpdesk_handed (seen_at);
-- Items waiting to be posted: the item as offered, its tries so far, and who is posting it until when.
CREATE TABLE IF NOT EXISTS helpdesk_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    item TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    claimed_by TEXT NOT NULL DEFAULT '',
    claimed_until REAL NOT NULL DEFAULT 0,
    UNIQUE (route, key)
);
CREATE TABLE IF NOT EXISTS helpdesk_dead_letters (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    item TEXT NOT NULL,
    created_at REAL NOT NULL,
    dead_at REAL NOT NULL
);
"""
# Columns a file written by an earlier build lacks: (table, column, declaration).
_ADDED_COLUMNS = (
    ("helpdesk_handed", "host", "TEXT NOT NULL DEFAULT ''"),
    ("helpdesk_deliveries", "claimed_by", "TEXT NOT NULL DEFAULT ''"),
    ("helpdesk_deliveries", "claimed_until", "REAL NOT NULL DEFAULT 0"),
)


@dataclass(frozen=True)
class Delivery:
    """An item waiting to be posted, as stored."""

    id: int
    route: str
    key: str
    stored: str  # the item's JSON
    created_at: float
    last_error: str = ""

    def item(self) -> WorkItem:
        """The item; ValueError, KeyError or TypeError for a row this version cannot read."""
        document = json.loads(self.stored)
        return WorkItem(kind=document["kind"], site=document["site"], labels=document.get("labels") or {},
                        due=document.get("due"), since=document.get("since"), count=document.get("count"),
                        reason=document.get("reason"))


class HandOffStore:
    """The hand-off's tables in the SQLite file at `path`, made (or brought up to date) when opened."""

    def __init__(self, path: Path | str, busy_timeout: float = 10.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)
        if self._missing_columns(self._connection()):
            with self._write() as db:  # looked at again under the lock: another process may have added them
                for table, column, declaration in self._missing_columns(db):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @staticmethod
    def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
        present = {(table, row[1]) for table in {added[0] for added in _ADDED_COLUMNS}
                   for row in db.execute(f"PRAGMA table_info({table})")}
        return [added for added in _ADDED_COLUMNS if added[:2] not in present]

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:  # durable: an offered item is on disk before offer returns
            db = self._local.db = open_database(self.path, self.busy_timeout)
        return db

    def _write(self) -> Transaction:
        return Transaction(self._connection(), self.busy_timeout)

    def close(self) -> None:
        """Closes the calling thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def remember(self, route: str, host: str, items: Iterable[WorkItem], now: float, forget_before: float,
                 routes: Sequence[str]) -> list[WorkItem]:
        """Stores for posting the items `route` has not handed off before, and returns them; refreshes the
        record of the others. An item a route no longer in `routes` handed to the same `host` counts as
        handed off by `route` (the route was renamed), unless it is still waiting. First forgets what was
        last seen before `forget_before` and is not waiting, and the dead letters older than a week."""
        new = []
        marks = ",".join("?" * len(routes))
        with self._write() as db:
            db.execute("DELETE FROM helpdesk_handed WHERE seen_at < ? AND NOT EXISTS (SELECT 1 FROM "
                       "helpdesk_deliveries d WHERE d.route = helpdesk_handed.route AND d.key = helpdesk_handed.key)",
                       (forget_before,))
            db.execute("DELETE FROM helpdesk_dead_letters WHERE dead_at < ?", (now - KEEP_DEAD_LETTERS,))
            for item in items:
                key = item.key
                known = db.execute("UPDATE helpdesk_handed SET seen_at = MAX(seen_at, ?) WHERE route = ? AND key = ?",
                                   (now, route, key)).rowcount
                if known:
                    continue
                inherited = db.execute(
                    f"SELECT rowid FROM helpdesk_handed h WHERE key = ? AND host = ? AND route NOT IN ({marks}) "
                    f"AND NOT EXISTS (SELECT 1 FROM helpdesk_deliveries d WHERE d.route = h.route AND d.key = h.key) "
                    f"LIMIT 1", (key, host, *routes)).fetchone()
                if inherited:
                    db.execute("UPDATE helpdesk_handed SET route = ?, seen_at = MAX(seen_at, ?) WHERE rowid = ?",
                               (route, now, inherited[0]))
                    continue
                db.execute("INSERT INTO helpdesk_handed (route, key, first_at, seen_at, host) VALUES (?, ?, ?, ?, ?)",
                           (route, key, now, now, host))
                db.execute("INSERT OR IGNORE INTO helpdesk_deliveries (route, key, item, created_at) "
                           "VALUES (?, ?, ?, ?)", (route, key, _item_json(item), now))
                new.append(item)
        return new

    def waiting(self, route: str, limit: int) -> list[Delivery]:
        """The route's deliveries, oldest first."""
        rows = self._connection().execute(
            "SELECT id, route, key, item, created_at, last_error FROM helpdesk_deliveries WHERE route = ? "
            "ORDER BY id LIMIT ?", (route, limit)).fetchall()
        return [Delivery(*row) for row in rows]

    def overdue(self, created_before: float, routes: Sequence[str], now: float) -> list[Delivery]:
        """The deliveries stored before `created_before`, and those of routes not in `routes`; not those
        being posted (claimed until after `now`)."""
        marks = ",".join("?" * len(routes))
        rows = self._connection().execute(
            f"SELECT id, route, key, item, created_at, last_error FROM helpdesk_deliveries WHERE claimed_until <= ? "
            f"AND (created_at < ? OR route NOT IN ({marks})) ORDER BY id", (now, created_before, *routes)).fetchall()
        return [Delivery(*row) for row in rows]

    def claim(self, delivery: Delivery, owner: str, now: float, until: float) -> bool:
        """Claims a delivery for `owner` to post until `until`; False if another owner's claim holds, or
        it is gone (posted or given up by another process)."""
        with self._write() as db:
            return db.execute("UPDATE helpdesk_deliveries SET claimed_by = ?, claimed_until = ? WHERE id = ? AND "
                              "(claimed_until <= ? OR claimed_by = ?)",
                              (owner, until, delivery.id, now, owner)).rowcount == 1

    def sent(self, delivery: Delivery) -> None:
        with self._write() as db:
            db.execute("DELETE FROM helpdesk_deliveries WHERE id = ?", (delivery.id,))

    def failed(self, delivery: Delivery, cause: str) -> None:
        """Counts a failed try, and frees the delivery for the next."""
        with self._write() as db:
            db.execute("UPDATE helpdesk_deliveries SET attempts = attempts + 1, last_error = ?, claimed_until = 0 "
                       "WHERE id = ?", (cause, delivery.id))

    def release(self, delivery: Delivery) -> None:
        """Frees a claimed delivery without counting a try."""
        with self._write() as db:
            db.execute("UPDATE helpdesk_deliveries SET claimed_until = 0 WHERE id = ?", (delivery.id,))

    def bury(self, deliveries: Sequence[Delivery], reason: str, detail: str, now: float) -> None:
        """Moves deliveries to the dead letters and forgets their items, so the next list offers them again."""
        with self._write() as db:
            for delivery in deliveries:
                db.execute("INSERT INTO helpdesk_dead_letters (route, key, reason, detail, item, created_at, dead_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (delivery.route, delivery.key, reason, detail,
                                                            delivery.stored, delivery.created_at, now))
                db.execute("DELETE FROM helpdesk_deliveries WHERE id = ?", (delivery.id,))
                db.execute("DELETE FROM helpdesk_handed WHERE route = ? AND key = ?", (delivery.route, delivery.key))

    def pending(self) -> dict[str, int]:
        """Deliveries waiting, by route, across every process sharing the file."""
        rows = self._connection().execute("SELECT route, COUNT(*) FROM helpdesk_deliveries GROUP BY route")
        return dict(rows.fetchall())

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The deliveries given up in the last week, newest first."""
        rows = self._connection().execute(
            "SELECT route, key, reason, detail, item, created_at, dead_at FROM helpdesk_dead_letters "
            "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        keys = ("route", "key", "reason", "detail", "item", "created_at", "dead_at")
        return [dict(zip(keys, row)) for row in rows]


def _item_json(item: WorkItem) -> str:
    return json.dumps(asdict(sound(item)), ensure_ascii=False, allow_nan=False)
