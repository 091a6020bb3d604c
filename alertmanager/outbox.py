"""The durable outbox (SQLite in WAL mode): alert notifications wait here until Telegram has accepted them.

A webhook's alerts are committed before the webhook is answered, so an answered alert survives a crash.
Each alert becomes an *item* (the alert as received) in the queue of one chat; the sender renders and
claims a run of items, sends them as one message and deletes them only after Telegram said yes. Rendering
waits until sending, so a storm costs the webhook only a commit, and alerts that never need a message
(cancelled, summed up as "and N more") are never rendered. Several processes may
share one database: writes are serialised by SQLite, and a lease row makes sure only one sends.

A chat's queue has two lanes: *urgent* items (the groups that carry a critical alert) go out before
everything else waiting for that chat; each lane keeps arrival order.

Besides alerts, a queue carries *texts* (messages rendered elsewhere, such as the morning worklist, sent as
they are) and *edits* (a sent message to be shown as it now is, after someone took it). The firing messages
Telegram accepted are remembered for a while (their message ids, texts, buttons and alerts), so that a
resolution or a take can edit them later, also after a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from alertmanager.telegram_html import MESSAGE_LIMIT, fit_lines

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    received_at REAL NOT NULL,
    info TEXT NOT NULL,
    max_messages INTEGER NOT NULL,
    firing_sent INTEGER NOT NULL DEFAULT 0,
    resolved_sent INTEGER NOT NULL DEFAULT 0,
    firing_messages INTEGER NOT NULL DEFAULT 0,
    resolved_messages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER NOT NULL,
    route TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alert TEXT NOT NULL,
    summary INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0,
    urgent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_by_batch ON items (batch_id, status);
CREATE INDEX IF NOT EXISTS items_by_queue ON items (queue, id);
CREATE INDEX IF NOT EXISTS items_by_alert ON items (queue, fingerprint);
CREATE INDEX IF NOT EXISTS items_by_age ON items (created_at);
CREATE TABLE IF NOT EXISTS queues (
    queue TEXT PRIMARY KEY,
    bot TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    thread_id INTEGER
);
CREATE TABLE IF NOT EXISTS migrations (
    bot TEXT NOT NULL,
    old_chat TEXT NOT NULL,
    new_chat TEXT NOT NULL,
    migrated_at REAL NOT NULL,
    PRIMARY KEY (bot, old_chat)
);
CREATE TABLE IF NOT EXISTS dedup (
    key TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS told (
    queue TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    route TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (queue, fingerprint, status, starts_at)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    status TEXT NOT NULL,
    alert TEXT NOT NULL,
    created_at REAL NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sender_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
-- Small values that must survive a restart: the bot's update offset, so no command is done twice.
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Which route each Alertmanager receiver posts to, as seen in webhooks: /status reads it to tell a
-- chat's alerts from Alertmanager's list.
CREATE TABLE IF NOT EXISTS receiver_routes (
    receiver TEXT NOT NULL,
    route TEXT NOT NULL,
    PRIMARY KEY (receiver, route)
);
-- Keys of texts already queued (enqueue_text), so a text queued twice is sent once.
CREATE TABLE IF NOT EXISTS text_keys (
    key TEXT PRIMARY KEY,
    stored_at REAL NOT NULL
);
-- Firing messages Telegram accepted, for the edits that follow (a resolution, a take).
CREATE TABLE IF NOT EXISTS sent_messages (
    id INTEGER PRIMARY KEY,
    bot TEXT NOT NULL,
    queue TEXT NOT NULL,
    chat_id TEXT NOT NULL,  -- as Telegram's answer named the chat: a number, also for an @channel
    thread_id INTEGER,
    message_id INTEGER NOT NULL,
    route TEXT NOT NULL,
    text TEXT NOT NULL,  -- as sent: HTML, or plain text when Telegram refused it as HTML
    parse_mode TEXT,
    keyboard TEXT,  -- the silence buttons as sent (JSON), without the take button
    take_button INTEGER NOT NULL DEFAULT 0,
    sent_at REAL NOT NULL,
    taken_user INTEGER,
    taken_name TEXT,
    taken_at REAL,
    taken_until REAL,  -- the end of the silence the take made
    edit_refused TEXT  -- Telegram's answer when it refused to edit the message: it is not tried again
);
CREATE UNIQUE INDEX IF NOT EXISTS sent_messages_by_telegram_id ON sent_messages (bot, chat_id, message_id);
CREATE INDEX IF NOT EXISTS sent_messages_by_age ON sent_messages (sent_at);
-- The alerts each of them carried; a resolved alert finds its firing message(s) here.
CREATE TABLE IF NOT EXISTS sent_alerts (
    message INTEGER NOT NULL,  -- sent_messages.id
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    title TEXT NOT NULL,  -- one line naming the alert, for the resolved lines (plain text)
    ended_at REAL,  -- when it resolved, once the chat was told
    replied INTEGER NOT NULL DEFAULT 0,  -- a reply to the firing message told it
    PRIMARY KEY (message, fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS sent_alerts_by_alert ON sent_alerts (fingerprint, starts_at);
"""

# Outboxes made before the urgent lane existed get its column here (the index needs the column).
_URGENT_LANE = "ALTER TABLE items ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0"
_URGENT_INDEX = "CREATE INDEX IF NOT EXISTS items_urgent ON items (queue, urgent, id)"
URGENT_SEVERITIES = frozenset({"critical"})
# Item statuses besides an alert's "firing" and "resolved": a rendered text, an edit of a sent message.
TEXT = "text"
EDIT = "edit"
KEEP_TEXT_KEYS = 7 * 86400.0
KEEP_SENT_MESSAGES = 30 * 86400.0
_SENT_COLUMNS = ("id, bot, queue, chat_id, thread_id, message_id, route, text, parse_mode, keyboard, take_button, "
                 "sent_at, taken_user, taken_name, taken_at, taken_until, edit_refused")
_ITEM_COLUMNS = (
    "items.id, items.batch_id, items.route, items.status, items.fingerprint, items.alert, items.summary, "
    "items.created_at, batches.info, "
    "CASE items.status WHEN 'firing' THEN batches.firing_sent ELSE batches.resolved_sent END, "
    "CASE items.status WHEN 'firing' THEN batches.firing_messages ELSE batches.resolved_messages END, "
    "batches.max_messages, items.starts_at")


def is_urgent(labels: dict[str, str]) -> bool:
    """Whether an alert goes ahead of the rest of its chat's queue: severity critical."""
    return labels.get("severity", "").strip().lower() in URGENT_SEVERITIES


@dataclass(frozen=True)
class Chat:
    """Where a queue's messages go."""

    bot: str
    chat_id: str
    thread_id: int | None

    @property
    def queue(self) -> str:
        return f"{self.bot}|{self.chat_id}|{self.thread_id or ''}"

    @property
    def api_chat_id(self) -> int | str:
        return int(self.chat_id) if self.chat_id.lstrip("-").isdigit() else self.chat_id

    @property
    def is_group(self) -> bool:
        # Groups, supergroups and channels have negative ids (channels may also go by @name).
        return self.chat_id.startswith("-") or self.chat_id.startswith("@")


@dataclass(frozen=True)
class NewItem:
    status: str
    fingerprint: str  # "" for a summary: it stands for no single alert
    starts_at: str
    alert: str  # the alert as JSON (`Alert.to_json`); "" for a summary
    summary: int = 0  # > 0: "and this many more" (alerts Alertmanager's max_alerts left out)
    urgent: bool = False  # is_urgent(its labels), worked out where the labels are at hand


@dataclass(frozen=True)
class NewBatch:
    """One alert group's alerts for one route, ready to be stored."""

    route: str
    chat: Chat
    info: str  # GroupInfo as JSON, for the message headers
    items: Sequence[NewItem]
    max_messages: int = 5  # the most messages this group may become; the rest is summed up
    shared_chat: bool = False  # another route posts to the same chat and topic: tell each alert there once


@dataclass(frozen=True)
class Webhook:
    """What one webhook stores: its batches, and the key that recognises a copy of it."""

    batches: Sequence[NewBatch]
    dedup_key: str | None = None
    dedup_window: float = 0.0


@dataclass(frozen=True)
class Item:
    id: int
    batch_id: int
    route: str
    status: str
    fingerprint: str
    alert: str
    summary: int
    created_at: float
    info: str
    sent_before: int  # items of the same batch and status already delivered
    messages_before: int  # messages that carried them
    max_messages: int
    starts_at: str = ""  # the alert's start, as stored: with the fingerprint, it names one firing of an alert


@dataclass(frozen=True)
class EnqueueResult:
    duplicate: bool = False
    queued: int = 0
    cancelled: int = 0
    already_told: int = 0  # alerts another route had just put into the same chat


@dataclass(frozen=True)
class DeadLetters:
    route: str
    count: int


@dataclass(frozen=True)
class Delivered:
    """A firing message Telegram accepted, as the outbox keeps it for the edits that may follow."""

    bot: str
    queue: str
    chat_id: str  # as Telegram's answer named the chat
    thread_id: int | None
    message_id: int
    route: str
    text: str
    parse_mode: str | None
    keyboard: dict[str, Any] | None  # the silence buttons, without the take button
    take_button: bool
    alerts: Sequence[tuple[str, str, str]]  # (fingerprint, starts_at, title) of each alert it carried


@dataclass(frozen=True)
class Ended:
    """A resolved alert the chat was told of, and when it ended (a Unix time)."""

    fingerprint: str
    starts_at: str
    at: float

    @property
    def key(self) -> tuple[str, str]:
        return self.fingerprint, self.starts_at


@dataclass(frozen=True)
class SentAlert:
    fingerprint: str
    starts_at: str
    title: str
    ended_at: float | None  # set once the chat was told it resolved
    replied: bool

    @property
    def key(self) -> tuple[str, str]:
        return self.fingerprint, self.starts_at


@dataclass(frozen=True)
class SentMessage:
    """A remembered firing message: what Telegram shows now follows from it (see digest.edited_message)."""

    id: int  # the outbox's own number for it
    bot: str
    queue: str
    chat_id: str
    thread_id: int | None
    message_id: int  # Telegram's
    route: str
    text: str
    parse_mode: str | None
    keyboard: dict[str, Any] | None
    take_button: bool
    sent_at: float
    taken_user: int | None
    taken_name: str
    taken_at: float | None
    taken_until: float | None
    edit_refused: str | None
    alerts: tuple[SentAlert, ...]

    def alert(self, key: tuple[str, str]) -> SentAlert | None:
        return next((alert for alert in self.alerts if alert.key == key), None)

    @property
    def api_chat_id(self) -> int | str:
        return int(self.chat_id) if self.chat_id.lstrip("-").isdigit() else self.chat_id


class Outbox:
    """One SQLite outbox file. Thread-safe: every thread gets its own connection."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time, busy_timeout: float = 10.0,
                 durable_commits: bool = True):
        """`durable_commits=False` is for the delivery process: its commits (claims, sent marks) skip the
        fsync and reach the disk with the web process's next one. A power cut may then undo the last sent
        marks, and those messages go out again: a duplicate, never a loss. The web process keeps FULL."""
        self.path = Path(path)
        self.durable_commits = durable_commits
        self.clock = clock
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)  # commits by itself
        with self._write() as db:  # in a transaction: two processes opening an old file add the column once
            if "urgent" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}:
                db.execute(_URGENT_LANE)
            db.execute(_URGENT_INDEX)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # FULL: a commit reaches the disk before the webhook is answered, so even a power cut loses
            # nothing that Alertmanager was told is safe.
            db = self._local.db = open_database(self.path, self.busy_timeout, self.durable_commits)
        return db

    def _write(self, patience: float | None = None) -> "Transaction":
        return Transaction(self._connection(), self.busy_timeout if patience is None else patience,
                           self.busy_timeout)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # --- webhooks -------------------------------------------------------------------------------------

    def enqueue_many(self, webhooks: Sequence[Webhook], patience: float | None = None) -> list[EnqueueResult]:
        """Stores several webhooks in one transaction (one commit, one fsync); returns after the commit.

        A resolved alert whose firing item still waits (unclaimed) in the same chat cancels it: neither
        is sent. A webhook whose `dedup_key` was seen within its `dedup_window` stores nothing.
        """
        now = self.clock()
        with self._write(patience) as db:
            return [self._store(db, webhook, now) for webhook in webhooks]

    def _store(self, db: sqlite3.Connection, webhook: Webhook, now: float) -> EnqueueResult:
        if webhook.dedup_key is not None and webhook.dedup_window > 0:
            row = db.execute("SELECT seen_at FROM dedup WHERE key = ?", (webhook.dedup_key,)).fetchone()
            if row is not None and now - row[0] < webhook.dedup_window:
                return EnqueueResult(duplicate=True)
            db.execute("INSERT OR REPLACE INTO dedup (key, seen_at) VALUES (?, ?)", (webhook.dedup_key, now))
        queued = cancelled = told = 0
        for batch in webhook.batches:
            chat = _followed(db, batch.chat)
            rows: list[NewItem] = []
            for item in batch.items:
                if batch.shared_chat and item.fingerprint and self._told_by_another_route(
                        db, chat.queue, batch.route, item, now, webhook.dedup_window):
                    told += 1
                    continue
                if item.status == "resolved" and item.fingerprint:
                    gone = db.execute(
                        "DELETE FROM items WHERE queue = ? AND fingerprint = ? AND starts_at = ? "
                        "AND status = 'firing' AND claimed = 0", (chat.queue, item.fingerprint, item.starts_at))
                    if gone.rowcount:
                        cancelled += gone.rowcount
                        continue
                rows.append(item)
            if not rows:
                continue
            batch_id = db.execute("INSERT INTO batches (route, received_at, info, max_messages) VALUES (?, ?, ?, ?)",
                                  (batch.route, now, batch.info, batch.max_messages)).lastrowid
            lanes = self._lanes(db, chat.queue, rows)
            db.executemany(
                "INSERT INTO items (batch_id, route, queue, status, fingerprint, starts_at, alert, summary, "
                "created_at, urgent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(batch_id, batch.route, chat.queue, item.status, item.fingerprint, item.starts_at, item.alert,
                  item.summary, now, urgent) for item, urgent in zip(rows, lanes)])
            queued += len(rows)
        return EnqueueResult(queued=queued, cancelled=cancelled, already_told=told)

    def enqueue_text(self, route: str, chat: Chat, texts: Sequence[str], kind: str = "worklist",
                     key: str | None = None, settings: Mapping[str, str] | None = None) -> int:
        """Stores rendered Telegram HTML messages for one chat, which the sender delivers as they are, in this
        order, through the chat's queue (its rate limits, retries and dead letters, as for alerts); returns how
        many were stored. A `key` stored before (kept KEEP_TEXT_KEYS) stores nothing and returns 0, so a text
        queued twice (a restart, a second process) goes out once. A text over Telegram's limit is cut
        between lines rather than refused. `settings` are stored in the same transaction, so that what
        records the texts as queued (a worklist's day) cannot be lost to a crash between the two."""
        messages = [fit_lines(text, MESSAGE_LIMIT) for text in texts if text.strip()]
        now = self.clock()
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (settings or {}).items())
            if not messages:
                return 0
            if key is not None:
                if db.execute("SELECT 1 FROM text_keys WHERE key = ?", (key,)).fetchone() is not None:
                    return 0
                db.execute("INSERT INTO text_keys (key, stored_at) VALUES (?, ?)", (key, now))
            chat = _followed(db, chat)
            batch_id = db.execute("INSERT INTO batches (route, received_at, info, max_messages) VALUES (?, ?, ?, ?)",
                                  (route, now, json.dumps({"kind": kind}), len(messages))).lastrowid
            db.executemany("INSERT INTO items (batch_id, route, queue, status, fingerprint, starts_at, alert, "
                           "created_at) VALUES (?, ?, ?, ?, '', '', ?, ?)",
                           [(batch_id, route, chat.queue, TEXT, text, now) for text in messages])
        return len(messages)

    @staticmethod
    def _lanes(db: sqlite3.Connection, queue: str, rows: Sequence[NewItem]) -> list[int]:
        """1 for the items that take the urgent lane, 0 for the others.

        A group (one batch, one status) with a critical alert takes it whole, "and N more" included: the
        alerts Alertmanager grouped with the critical one arrive with it, in one message, as it sent them.
        An alert whose earlier news still waits in the ordinary lane stays there behind it, so a
        resolution never overtakes its firing message.
        """
        statuses = {item.status for item in rows}
        urgent_statuses = {status for status in statuses
                           if any(item.urgent for item in rows if item.status == status)}
        # Only an ordinary lane with items in it can hold an alert's earlier news (and a storm's big group
        # then costs no look-up per alert).
        ordinary = bool(urgent_statuses) and db.execute(
            "SELECT 1 FROM items WHERE queue = ? AND urgent = 0 LIMIT 1", (queue,)).fetchone() is not None
        lanes = []
        for item in rows:
            urgent = item.status in urgent_statuses
            if urgent and ordinary and item.fingerprint and db.execute(
                    "SELECT 1 FROM items WHERE queue = ? AND fingerprint = ? AND urgent = 0 LIMIT 1",
                    (queue, item.fingerprint)).fetchone():
                urgent = False
            lanes.append(int(urgent))
        return lanes

    @staticmethod
    def _told_by_another_route(db: sqlite3.Connection, queue: str, route: str, item: NewItem, now: float,
                               window: float) -> bool:
        """Whether another route put this very alert state into this chat within `window` (a site in a
        partner's route and in ours, both posting to one chat). The same route repeating it is Alertmanager's
        group_interval or repeat_interval at work, and goes through."""
        if window <= 0:
            return False
        key = (queue, item.fingerprint, item.status, item.starts_at)
        row = db.execute("SELECT route, seen_at FROM told WHERE queue = ? AND fingerprint = ? AND status = ? "
                         "AND starts_at = ?", key).fetchone()
        if row is not None and row[0] != route and now - row[1] < window:
            return True
        db.execute("INSERT OR REPLACE INTO told (queue, fingerprint, status, starts_at, route, seen_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (*key, route, now))
        return False

    # --- the sender -----------------------------------------------------------------------------------

    def waiting_queues(self, follow_up_routes: Collection[str] = ()) -> list[tuple[str, int, bool]]:
        """(queue, id of its first item, whether urgent news waits) for every queue with items: those with
        urgent news first, then oldest first.

        Urgent news is an urgent item that is not a follow-up of a message sent before: not an edit, nor a
        resolution of one of the `follow_up_routes` (those that show it in the firing message). A storm of
        such follow-ups in the urgent lane must not take the sends a minute kept for a new critical alert.

        Index look-ups per chat, not a scan of the items: the sender asks often, the outbox may hold
        tens of thousands of items in a storm.
        """
        routes = sorted(follow_up_routes)
        follow_up = f" AND NOT (items.status = 'resolved' AND items.route IN ({','.join('?' * len(routes))}))" \
            if routes else ""
        rows = self._connection().execute(
            "SELECT queue, head, urgent FROM (SELECT queue, "
            "(SELECT MIN(items.id) FROM items WHERE items.queue = queues.queue) AS head, "
            "EXISTS (SELECT 1 FROM items WHERE items.queue = queues.queue AND items.urgent = 1 AND "
            f"items.status != '{EDIT}'{follow_up}) AS urgent "
            "FROM queues) WHERE head IS NOT NULL ORDER BY urgent DESC, head", routes).fetchall()
        return [(queue, head, bool(urgent)) for queue, head, urgent in rows]

    def chat(self, queue: str) -> Chat | None:
        return _chat_of(self._connection(), queue)

    def peek(self, queue: str, limit: int = 100) -> list[Item]:
        """The first items of a queue: more than one message can carry (a block is at least ~150 characters).

        Urgent items, when any wait, and only they: the next message carries nothing else, so its
        notification and its first line are the urgent news.
        """
        db = self._connection()
        rows = db.execute(f"SELECT {_ITEM_COLUMNS} FROM items JOIN batches ON batches.id = items.batch_id "
                          "WHERE items.queue = ? AND items.urgent = 1 ORDER BY items.id LIMIT ?",
                          (queue, limit)).fetchall()
        if not rows:
            rows = db.execute(f"SELECT {_ITEM_COLUMNS} FROM items JOIN batches ON batches.id = items.batch_id "
                              "WHERE items.queue = ? ORDER BY items.id LIMIT ?", (queue, limit)).fetchall()
        return [Item(*row) for row in rows]

    def claim(self, ids: Sequence[int]) -> bool:
        """Marks items as being sent; False if any of them is gone (cancelled meanwhile) or already claimed."""
        with self._write() as db:
            marks = ",".join("?" * len(ids))
            changed = db.execute(f"UPDATE items SET claimed = 1 WHERE claimed = 0 AND id IN ({marks})", ids).rowcount
            if changed != len(ids):
                db.execute(f"UPDATE items SET claimed = 0 WHERE id IN ({marks})", ids)
                return False
        return True

    def release(self, ids: Sequence[int]) -> None:
        with self._write() as db:
            db.execute(f"UPDATE items SET claimed = 0 WHERE id IN ({','.join('?' * len(ids))})", ids)

    def waiting_in_batch(self, batch_id: int, status: str) -> int:
        """Items of one group and status still waiting (for the "and N more" of its last message)."""
        return self._connection().execute("SELECT COUNT(*) FROM items WHERE batch_id = ? AND status = ?",
                                          (batch_id, status)).fetchone()[0]

    def mark_sent(self, items: Sequence[Item], summed_up: Sequence[int] = (), *, delivered: Delivered | None = None,
                  queue: str = "", ended: Sequence[Ended] = (), replied: bool = False) -> None:
        """Telegram took the message: its items are done, and so are the rest of the groups `summed_up`
        (batch ids) in its "and N more". In the same commit, a firing message is remembered (`delivered`),
        and the resolved alerts it told of are marked `ended` in the firing messages of the same `queue`
        and route (`replied`: it was a reply to them)."""
        with self._write() as db:
            db.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(items))})", [i.id for i in items])
            status = items[0].status
            if status in ("firing", "resolved"):
                sent, messages = ("firing_sent", "firing_messages") if status == "firing" else \
                    ("resolved_sent", "resolved_messages")
                per_batch: dict[int, int] = {}
                for item in items:
                    per_batch[item.batch_id] = per_batch.get(item.batch_id, 0) + 1
                for batch_id, count in per_batch.items():
                    db.execute(f"UPDATE batches SET {sent} = {sent} + ?, {messages} = {messages} + 1 WHERE id = ?",
                               (count, batch_id))
            for batch_id in summed_up:
                db.execute("DELETE FROM items WHERE batch_id = ? AND status = ? AND claimed = 0", (batch_id, status))
            if delivered is not None:
                self._remember(db, delivered)
            # Each alert by its index, then its messages by their ids: "message IN (those of the queue)" would read
            # every message remembered (a month of a busy chat) once per alert, holding the write lock.
            db.executemany("UPDATE sent_alerts SET ended_at = COALESCE(ended_at, ?), replied = MAX(replied, ?) "
                           "WHERE fingerprint = ? AND starts_at = ? AND EXISTS (SELECT 1 FROM sent_messages WHERE "
                           "sent_messages.id = sent_alerts.message AND sent_messages.queue = ? AND "
                           "sent_messages.route = ?)",
                           [(alert.at, int(replied), alert.fingerprint, alert.starts_at, queue, items[0].route)
                            for alert in ended])

    def drop(self, items: Sequence[Item]) -> None:
        """Items that need no message after all (a resolution the chat was already shown)."""
        if items:
            with self._write() as db:
                db.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(items))})", [i.id for i in items])

    def dead_letter(self, items: Sequence[Item], chat: Chat, reason: str, detail: str) -> list[DeadLetters]:
        with self._write() as db:
            return self._bury(db, [i.id for i in items], chat, reason, detail)

    def dead_letter_queue(self, chat: Chat, reason: str, detail: str) -> list[DeadLetters]:
        """Gives up on everything waiting for a chat (the bot was blocked, the chat is gone)."""
        with self._write() as db:
            ids = [row[0] for row in db.execute("SELECT id FROM items WHERE queue = ?", (chat.queue,))]
            return self._bury(db, ids, chat, reason, detail)

    def expire(self, max_age: float) -> list[tuple[Chat, list[DeadLetters]]]:
        """Gives up on unclaimed items older than `max_age` seconds."""
        cutoff = self.clock() - max_age
        buried = []
        with self._write() as db:
            queues = [row[0] for row in db.execute(
                "SELECT DISTINCT queue FROM items WHERE created_at < ? AND claimed = 0", (cutoff,))]
            for queue in queues:
                chat = _chat_of(db, queue) or Chat("?", queue, None)
                ids = [row[0] for row in db.execute(
                    "SELECT id FROM items WHERE queue = ? AND created_at < ? AND claimed = 0", (queue, cutoff))]
                buried.append((chat, self._bury(db, ids, chat, "expired",
                                                f"not delivered within {max_age:g}s")))
        return buried

    def _bury(self, db: sqlite3.Connection, ids: Sequence[int], chat: Chat, reason: str,
              detail: str) -> list[DeadLetters]:
        if not ids:
            return []
        now = self.clock()
        counts: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            marks = ",".join("?" * len(part))
            rows = db.execute(f"SELECT route, status, alert, created_at FROM items WHERE id IN ({marks})",
                              part).fetchall()
            db.executemany("INSERT INTO dead_letters (route, chat_id, reason, detail, status, alert, created_at, "
                           "dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(route, chat.chat_id, reason, detail, status, alert, created, now)
                            for route, status, alert, created in rows])
            db.execute(f"DELETE FROM items WHERE id IN ({marks})", part)
            for route, *_ in rows:
                counts[route] = counts.get(route, 0) + 1
        return [DeadLetters(route, count) for route, count in counts.items()]

    def migrate(self, old: Chat, new_chat_id: str) -> Chat:
        """Follows a group that became a supergroup: remembers the new id and moves the waiting items."""
        new = Chat(old.bot, new_chat_id, old.thread_id)
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO migrations (bot, old_chat, new_chat, migrated_at) VALUES (?, ?, ?, ?)",
                       (old.bot, old.chat_id, new_chat_id, self.clock()))
            # A chain (A -> B, then B -> C) must lead straight to the newest id.
            db.execute("UPDATE migrations SET new_chat = ? WHERE bot = ? AND new_chat = ?",
                       (new_chat_id, old.bot, old.chat_id))
            db.execute("INSERT OR IGNORE INTO queues (queue, bot, chat_id, thread_id) VALUES (?, ?, ?, ?)",
                       (new.queue, new.bot, new.chat_id, new.thread_id))
            db.execute("UPDATE items SET queue = ? WHERE queue = ?", (new.queue, old.queue))
        return new

    def reset_claims(self) -> int:
        """Frees items left claimed by a sender that died mid-send; they will be sent (again)."""
        with self._write() as db:
            return db.execute("UPDATE items SET claimed = 0 WHERE claimed = 1").rowcount

    def tidy(self, dedup_window: float, keep_dead_letters: float = 7 * 86400,
             keep_sent: float = KEEP_SENT_MESSAGES) -> None:
        """Drops what no longer matters: old de-duplication keys, emptied batches, old dead letters, text keys
        and sent messages older than a resolution or a take is expected for."""
        now = self.clock()
        with self._write() as db:
            db.execute("DELETE FROM text_keys WHERE stored_at < ?", (now - KEEP_TEXT_KEYS,))
            db.execute("DELETE FROM sent_alerts WHERE message IN (SELECT id FROM sent_messages WHERE sent_at < ?)",
                       (now - keep_sent,))
            db.execute("DELETE FROM sent_messages WHERE sent_at < ?", (now - keep_sent,))
            db.execute("DELETE FROM dedup WHERE seen_at < ?", (now - max(dedup_window, 1.0),))
            db.execute("DELETE FROM told WHERE seen_at < ?", (now - max(dedup_window, 1.0),))
            db.execute("DELETE FROM batches WHERE received_at < ? AND NOT EXISTS "
                       "(SELECT 1 FROM items WHERE items.batch_id = batches.id)", (now - 3600,))
            db.execute("DELETE FROM dead_letters WHERE dead_at < ?", (now - keep_dead_letters,))

    # --- sent messages, for the edits that follow -----------------------------------------------------------

    def _remember(self, db: sqlite3.Connection, sent: Delivered) -> None:
        old = db.execute("SELECT id FROM sent_messages WHERE bot = ? AND chat_id = ? AND message_id = ?",
                         (sent.bot, sent.chat_id, sent.message_id)).fetchone()
        if old is not None:  # a message id seen again: the chat was cleared and made anew, or it is a test
            db.execute("DELETE FROM sent_alerts WHERE message = ?", old)
            db.execute("DELETE FROM sent_messages WHERE id = ?", old)
        row_id = db.execute(
            "INSERT INTO sent_messages (bot, queue, chat_id, thread_id, message_id, route, text, parse_mode, keyboard, "
            "take_button, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sent.bot, sent.queue, sent.chat_id, sent.thread_id, sent.message_id, sent.route, sent.text,
             sent.parse_mode, json.dumps(sent.keyboard, ensure_ascii=False) if sent.keyboard else None,
             int(sent.take_button), self.clock())).lastrowid
        db.executemany("INSERT OR IGNORE INTO sent_alerts (message, fingerprint, starts_at, title) VALUES (?, ?, ?, ?)",
                       [(row_id, fingerprint, starts_at, title) for fingerprint, starts_at, title in sent.alerts])

    def messages_carrying(self, queue: str, route: str, keys: Sequence[tuple[str, str]]) -> list[SentMessage]:
        """The remembered messages of this queue and route that carried any of these alerts ((fingerprint,
        starts_at) pairs), oldest first; also those Telegram refused to edit (`edit_refused`)."""
        db = self._connection()
        ids: set[int] = set()
        for fingerprint, starts_at in dict.fromkeys(keys):
            ids.update(row[0] for row in db.execute(
                "SELECT sent_alerts.message FROM sent_alerts JOIN sent_messages ON sent_messages.id = "
                "sent_alerts.message WHERE sent_alerts.fingerprint = ? AND sent_alerts.starts_at = ? AND "
                "sent_messages.queue = ? AND sent_messages.route = ?", (fingerprint, starts_at, queue, route)))
        return _sent_messages(db, sorted(ids))

    def sent_message(self, message: int) -> SentMessage | None:
        """A remembered message by the outbox's own number for it."""
        found = _sent_messages(self._connection(), [message])
        return found[0] if found else None

    def sent_message_at(self, bot: str, chat_id: int | str, message_id: int) -> SentMessage | None:
        """A remembered message by what Telegram calls it (a pressed button's message)."""
        row = self._connection().execute(
            "SELECT id FROM sent_messages WHERE bot = ? AND chat_id = ? AND message_id = ?",
            (bot, str(chat_id), int(message_id))).fetchone()
        return self.sent_message(row[0]) if row else None

    def edited(self, message: int, ended: Sequence[Ended], finished: Sequence[Item],
               unfinished: Sequence[Item]) -> None:
        """Telegram shows `message` with these alerts resolved: they are marked, the `finished` items are done
        and the others (still owed another edit or a reply) wait again."""
        with self._write() as db:
            db.executemany("UPDATE sent_alerts SET ended_at = COALESCE(ended_at, ?) WHERE message = ? AND "
                           "fingerprint = ? AND starts_at = ?",
                           [(alert.at, message, alert.fingerprint, alert.starts_at) for alert in ended])
            if finished:
                db.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(finished))})",
                           [item.id for item in finished])
            if unfinished:
                db.execute(f"UPDATE items SET claimed = 0 WHERE id IN ({','.join('?' * len(unfinished))})",
                           [item.id for item in unfinished])

    def refuse_edits(self, message: int, reason: str) -> None:
        """Telegram will not edit this message (deleted, too old): its resolutions go out as new messages."""
        with self._write() as db:
            db.execute("UPDATE sent_messages SET edit_refused = ? WHERE id = ?", (reason or "refused", message))

    def take(self, message: int, user_id: int, name: str, at: float, until: float | None = None) -> bool:
        """Records who took a message's alerts (and the end of the silence that made) and queues the edit that
        shows it, in one commit; False, and nothing changed, when someone had taken it already."""
        with self._write() as db:
            changed = db.execute("UPDATE sent_messages SET taken_user = ?, taken_name = ?, taken_at = ?, "
                                 "taken_until = ? WHERE id = ? AND taken_user IS NULL",
                                 (user_id, name, at, until, message)).rowcount
            if changed:
                self._queue_edit(db, message, "taken")
        return bool(changed)

    def _queue_edit(self, db: sqlite3.Connection, message: int, cause: str) -> None:
        queue, route = db.execute("SELECT queue, route FROM sent_messages WHERE id = ?", (message,)).fetchone()
        now = self.clock()
        batch_id = db.execute("INSERT INTO batches (route, received_at, info, max_messages) VALUES (?, ?, ?, 1)",
                              (route, now, json.dumps({"kind": EDIT}))).lastrowid
        # The urgent lane: whoever pressed the button is waiting to see it, and an edit is no news to bury.
        db.execute("INSERT INTO items (batch_id, route, queue, status, fingerprint, starts_at, alert, created_at, "
                   "urgent) VALUES (?, ?, ?, ?, '', '', ?, ?, 1)",
                   (batch_id, route, queue, EDIT, json.dumps({"message": message, "cause": cause}), now))

    def takers(self) -> dict[str, str]:
        """Who took each alert (by fingerprint) that has not resolved since: the name of the latest take.

        A take is of one firing of the alert: once a later firing was sent (it resolved unseen, with
        send_resolved off, and fired again), the earlier take no longer names anyone."""
        db = self._connection()
        rows = db.execute(
            "SELECT sent_alerts.fingerprint, sent_alerts.starts_at, sent_messages.taken_name FROM sent_alerts JOIN "
            "sent_messages ON sent_messages.id = sent_alerts.message WHERE sent_messages.taken_user IS NOT NULL AND "
            "sent_alerts.ended_at IS NULL ORDER BY sent_messages.taken_at").fetchall()
        latest: dict[str, str] = {}
        for fingerprint in {row[0] for row in rows}:
            starts = [row[0] for row in db.execute("SELECT DISTINCT starts_at FROM sent_alerts WHERE fingerprint = ?",
                                                   (fingerprint,))]
            latest[fingerprint] = max(starts, key=_moment)
        return {fingerprint: name for fingerprint, starts_at, name in rows
                if _moment(starts_at) >= _moment(latest[fingerprint])}

    # --- one sender per database ------------------------------------------------------------------------

    def hold_lease(self, owner: str, ttl: float) -> bool:
        """Takes or renews the sender lease; True while `owner` is the one sender of this database."""
        now = self.clock()
        with self._write() as db:
            row = db.execute("SELECT owner, expires_at FROM sender_lease WHERE id = 1").fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return False
            db.execute("INSERT OR REPLACE INTO sender_lease (id, owner, expires_at) VALUES (1, ?, ?)",
                       (owner, now + ttl))
        return True

    def drop_lease(self, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM sender_lease WHERE id = 1 AND owner = ?", (owner,))

    # --- the bot commands' memory ----------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self._connection().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def note_receiver_route(self, receiver: str, route: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO receiver_routes (receiver, route) VALUES (?, ?)", (receiver, route))

    def receiver_routes(self) -> set[tuple[str, str]]:
        """(Alertmanager receiver, route) pairs seen in webhooks, by any process sharing the file."""
        return set(self._connection().execute("SELECT receiver, route FROM receiver_routes").fetchall())

    # --- what /metrics shows ------------------------------------------------------------------------------

    def depth(self) -> tuple[int, float | None]:
        """(items waiting, creation time of the oldest) — across every process sharing the file."""
        count, oldest = self._connection().execute("SELECT COUNT(*), MIN(created_at) FROM items").fetchone()
        return count, oldest

    def dead_letter_rows(self, limit: int = 50) -> list[dict[str, object]]:
        rows = self._connection().execute(
            "SELECT route, chat_id, reason, detail, status, alert, created_at, dead_at FROM dead_letters "
            "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        keys = ("route", "chat_id", "reason", "detail", "status", "alert", "created_at", "dead_at")
        return [dict(zip(keys, row)) for row in rows]


def open_database(path: Path, busy_timeout: float, durable: bool = True) -> sqlite3.Connection:
    """A connection to the outbox's file as everything sharing the file opens one: WAL, transactions begun
    by hand (Transaction), and commits that reach the disk before they return unless `durable` is false."""
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
    return db


class Transaction:
    """BEGIN IMMEDIATE (waiting for another writer as begin_immediate does) ... COMMIT, or ROLLBACK on an
    error: every write to the outbox's file, the helpdesk's tables included, goes through one."""

    def __init__(self, db: sqlite3.Connection, patience: float, usual: float | None = None):
        self.db = db
        self.patience = patience
        self.usual = patience if usual is None else usual

    def __enter__(self) -> sqlite3.Connection:
        begin_immediate(self.db, self.patience, self.usual)
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def begin_immediate(db: sqlite3.Connection, patience: float, usual: float) -> None:
    """BEGIN IMMEDIATE, waiting for another writer in steps of at most 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between looks: with the delivery process
    committing a claim or a sent mark every few milliseconds, a webhook's commit kept finding the lock
    taken and slept its way to a p99 of over 100 ms. Looking every 0.1–2 ms finds the gaps."""
    db.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + patience
        pause = 0.0001
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.002)
    finally:
        db.execute(f"PRAGMA busy_timeout = {int(usual * 1000)}")  # for the reads that follow


def _followed(db: sqlite3.Connection, chat: Chat) -> Chat:
    """The chat, followed to its new id if the group became a supergroup, with its queue row in place."""
    migrated = db.execute("SELECT new_chat FROM migrations WHERE bot = ? AND old_chat = ?",
                          (chat.bot, chat.chat_id)).fetchone()
    if migrated:
        chat = Chat(chat.bot, migrated[0], chat.thread_id)
    db.execute("INSERT OR IGNORE INTO queues (queue, bot, chat_id, thread_id) VALUES (?, ?, ?, ?)",
               (chat.queue, chat.bot, chat.chat_id, chat.thread_id))
    return chat


def _sent_messages(db: sqlite3.Connection, ids: Sequence[int]) -> list[SentMessage]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    alerts: dict[int, list[SentAlert]] = {}
    for message, fingerprint, starts_at, title, ended_at, replied in db.execute(
            f"SELECT message, fingerprint, starts_at, title, ended_at, replied FROM sent_alerts WHERE message IN "
            f"({marks}) ORDER BY rowid", list(ids)):
        alerts.setdefault(message, []).append(SentAlert(fingerprint, starts_at, title, ended_at, bool(replied)))
    found = []
    for row in db.execute(f"SELECT {_SENT_COLUMNS} FROM sent_messages WHERE id IN ({marks}) ORDER BY sent_at, id",
                          list(ids)):
        (row_id, bot, queue, chat_id, thread_id, message_id, route, text, parse_mode, keyboard, take_button, sent_at,
         taken_user, taken_name, taken_at, taken_until, edit_refused) = row
        found.append(SentMessage(row_id, bot, queue, chat_id, thread_id, message_id, route, text, parse_mode,
                                 json.loads(keyboard) if keyboard else None, bool(take_button), sent_at, taken_user,
                                 taken_name or "", taken_at, taken_until, edit_refused,
                                 tuple(alerts.get(row_id, ()))))
    return found


def _moment(starts_at: str) -> float:
    """An alert's stored start as a Unix time, for ordering its firings; an unreadable one sorts first."""
    try:
        return datetime.fromisoformat(starts_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")


def _chat_of(db: sqlite3.Connection, queue: str) -> Chat | None:
    row = db.execute("SELECT bot, chat_id, thread_id FROM queues WHERE queue = ?", (queue,)).fetchone()
    return Chat(row[0], row[1], row[2]) if row else None
