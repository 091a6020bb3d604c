"""Turns what waits in a chat's queue into the next Telegram request: a message, or an edit of one sent before.

A message carries alerts of one route and one status (firing or resolved, never mixed), in queue order.
When several alert groups wait for the same chat (a storm behind the chat's rate limit), they go out
together as one digest instead of one message per group. The outbox hands over a chat's urgent lane
(critical groups) alone while it has items, so critical alerts are never buried in a digest of warnings.
A text or an edit waiting in the queue goes alone.

A route with `resolved: edit`, `reply` or `both` tells of resolved alerts in their firing messages instead:
`plan_follow_up` picks the next edit or reply, `edited_message` is what a sent message shows now (its
text with a line per resolved alert and who took it, and the buttons left), `reply_text` the short reply.
"""

from __future__ import annotations

import dataclasses
import html
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Callable, Collection, Mapping, Sequence

from alertmanager.buttons import after_edit
from alertmanager.outbox import Ended, Item, SentMessage
from alertmanager.render import (BLOCK_SEPARATOR, GroupInfo, Renderer, all_resolved_header, compose, plural,
                                 resolved_line, taken_line)
from alertmanager.telegram_html import CUT_MARK, MESSAGE_LIMIT, fit_lines, html_to_text, message_length
from alertmanager.webhook import Alert


@dataclass(frozen=True)
class Message:
    text: str
    status: str
    route: str
    items: tuple[Item, ...]
    summed_up: tuple[int, ...] = ()  # batches whose remaining items this message sums up as "and N more"


def next_run(items: Sequence[Item], held_back: Collection[str] = ()) -> list[Item]:
    """The items the next message may carry: the head's route and status, in order.

    Items of the other status are left for a later message, but never overtaken by news of the same
    alert: if an alert was resolved and fired again, its messages keep their order. `held_back`: alerts
    (fingerprints) with news waiting before `items`, which the run must not overtake either.
    """
    head = items[0]
    if head.status not in ("firing", "resolved"):
        return [head]  # a text or an edit: a request of its own
    run: list[Item] = []
    waiting = set(held_back)
    for item in items:
        if item.route == head.route and item.status == head.status:
            if item.fingerprint and item.fingerprint in waiting:
                break
            run.append(item)
        elif item.fingerprint:
            waiting.add(item.fingerprint)
    return run


class _Blocks:
    """Renders items only when a message needs them, each once."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self.groups: dict[int, GroupInfo] = {}
        self.blocks: dict[int, str] = {}

    def group(self, item: Item) -> GroupInfo:
        if item.batch_id not in self.groups:
            self.groups[item.batch_id] = GroupInfo.from_json(item.info)
        return self.groups[item.batch_id]

    def block(self, item: Item) -> str:
        if item.id not in self.blocks:
            if item.summary:
                self.blocks[item.id] = self.renderer.more(item.status, item.summary, self.group(item))
            else:
                self.blocks[item.id] = self.renderer.alert_block(Alert.from_json(item.alert), self.group(item))
        return self.blocks[item.id]

    def header(self, items: Sequence[Item]) -> str:
        batch_ids = list(dict.fromkeys(item.batch_id for item in items))
        return self.renderer.header(items[0].status, sum(1 for item in items if not item.summary),
                                    [self.group(next(i for i in items if i.batch_id == b)) for b in batch_ids],
                                    continued=len(batch_ids) == 1 and items[0].sent_before > 0)


def build_message(run: Sequence[Item], renderer: Renderer, waiting_in_batch: Callable[[int, str], int]) -> Message:
    """As many items of `run` as fit in one message, with the header that describes exactly those.

    A group that has had `max_messages - 1` messages gets its last one here: what does not fit is summed
    up as "and N more" (``waiting_in_batch`` counts what is left of it).
    """
    blocks = _Blocks(renderer)
    chosen = _fitting(run, blocks, blocks.header(run[:1]))
    summed_up: tuple[int, ...] = ()
    last_part = [item for item in chosen if item.messages_before + 1 >= item.max_messages]
    if last_part:
        batch_id = last_part[0].batch_id
        left = waiting_in_batch(batch_id, run[0].status) - sum(1 for item in chosen if item.batch_id == batch_id)
        if left > 0:
            chosen, more = _with_summary(chosen, batch_id, left, blocks)
            summed_up = (batch_id,)
            text, _ = compose(blocks.header(chosen), [blocks.block(item) for item in chosen] + [more])
            return Message(text, run[0].status, run[0].route, tuple(chosen), summed_up)
    count = len(chosen)
    text = ""
    for _ in range(4):  # the header depends on what fits, and what fits on the header: settle it
        text, fitted = compose(blocks.header(chosen[:count]), [blocks.block(item) for item in chosen[:count]])
        if fitted == count:
            break
        count = fitted
    return Message(text, run[0].status, run[0].route, tuple(chosen[:count]))


def _fitting(run: Sequence[Item], blocks: _Blocks, header: str) -> list[Item]:
    """The items that fit after `header`, rendering no more of them than that."""
    used = message_length(header)
    chosen: list[Item] = []
    for item in run:
        size = len(BLOCK_SEPARATOR) + message_length(blocks.block(item))
        if chosen and used + size > MESSAGE_LIMIT:
            break
        chosen.append(item)
        used += size
    return chosen


def _with_summary(chosen: list[Item], batch_id: int, left: int, blocks: _Blocks) -> tuple[list[Item], str]:
    """Ends the message with the group's "and N more": later groups wait for the next message, and the
    group's own last items make room for the line if need be."""
    last = max(index for index, item in enumerate(chosen) if item.batch_id == batch_id)
    chosen = chosen[:last + 1]
    while True:
        more = blocks.renderer.more(chosen[0].status, left, blocks.group(chosen[-1]))
        sizes = [message_length(blocks.block(item)) for item in chosen]
        total = message_length(blocks.header(chosen)) + sum(len(BLOCK_SEPARATOR) + size for size in sizes)
        if total + len(BLOCK_SEPARATOR) + message_length(more) <= MESSAGE_LIMIT or len(chosen) == 1:
            return chosen, more
        chosen = chosen[:-1]
        left += 1


# --- resolved alerts told in their firing messages ---------------------------------------------------------

@dataclass(frozen=True)
class FollowUp:
    """The next request for a run of resolved items whose route edits or replies to the firing messages."""

    action: str  # "edit", "reply", "separate" (a resolved message of its own) or "" (no request needed)
    message: SentMessage | None = None  # the firing message edited or replied to
    items: tuple[Item, ...] = ()  # what the request tells of
    finished: tuple[Item, ...] = ()  # of those, the ones owed nothing more once it succeeds
    done: tuple[Item, ...] = ()  # items owed nothing already (the chat was told): dropped without a request
    refused: frozenset[int] = frozenset()  # separate: its items (ids) whose firing messages Telegram refused to edit


def plan_follow_up(run: Sequence[Item], mode: str, messages: Sequence[SentMessage]) -> FollowUp:
    """What to do next for `run` (resolved items of one route, in queue order) in `mode` (edit, reply or
    both), knowing the sent `messages` that carried these alerts.

    Edits come before the reply, one message per request: the first item's first firing message not yet
    showing it resolved is edited, for every item it carried. Then the reply goes to its latest firing
    message. An item whose firing messages are all unknown or refused goes into a resolved message of its
    own, as with `resolved: separate`.
    """
    carriers: dict[tuple[str, str], list[SentMessage]] = {}
    for message in messages:
        for alert in message.alerts:
            carriers.setdefault(alert.key, []).append(message)

    def key(item: Item) -> tuple[str, str]:
        return item.fingerprint, item.starts_at

    def usable(item: Item) -> list[SentMessage]:
        return [m for m in carriers.get(key(item), []) if m.edit_refused is None] if item.fingerprint else []

    def edits(item: Item) -> list[SentMessage]:
        if mode not in ("edit", "both"):
            return []
        return [m for m in usable(item) if m.alert(key(item)).ended_at is None]

    def owes_reply(item: Item) -> bool:
        return mode in ("reply", "both") and not any(m.alert(key(item)).replied for m in usable(item))

    done, left = [], []
    for item in run:
        if usable(item) and not edits(item) and not owes_reply(item):
            done.append(item)
        else:
            left.append(item)
    if not left:
        return FollowUp("", done=tuple(done))
    first = left[0]
    if not usable(first):
        unknown = tuple(item for item in left if not usable(item))
        return FollowUp("separate", items=unknown, done=tuple(done),
                        refused=frozenset(item.id for item in unknown if carriers.get(key(item))))
    pending = edits(first)
    if pending:
        target = pending[0]
        items = tuple(item for item in left if usable(item) and any(m.id == target.id for m in edits(item)))
        finished = tuple(item for item in items
                         if all(m.id == target.id for m in edits(item)) and not owes_reply(item))
        return FollowUp("edit", target, items, finished, tuple(done))
    target = usable(first)[-1]
    items = tuple(item for item in left if usable(item) and not edits(item) and owes_reply(item)
                  and any(m.id == target.id for m in usable(item)))
    return FollowUp("reply", target, items, items, tuple(done))


def ended_of(item: Item, now: float) -> Ended:
    """When a resolved item's alert ended (`now` if its payload did not say)."""
    ends = None
    try:
        ends = Alert.from_json(item.alert).ends_at
    except ValueError:
        pass
    return Ended(item.fingerprint, item.starts_at, ends.timestamp() if ends is not None else now)


def edited_message(sent: SentMessage, language: str, zone: tzinfo,
                   ended: Mapping[tuple[str, str], float] | None = None) -> tuple[str, dict[str, Any] | None]:
    """The text and buttons `sent` shows now: as sent, then who took it and a line per resolved alert
    (`ended` adds resolutions not stored yet). When every alert resolved, the first line says so. Only the
    silence buttons of alerts still firing are left, and the take button while nobody took it."""
    ended = ended or {}
    alerts = [alert if alert.ended_at is not None or alert.key not in ended
              else dataclasses.replace(alert, ended_at=ended[alert.key]) for alert in sent.alerts]
    resolved = sorted((alert for alert in alerts if alert.ended_at is not None), key=lambda alert: alert.ended_at)
    notes = []
    if sent.taken_name and sent.taken_at is not None:
        notes.append(taken_line(language, zone, sent.taken_name, sent.taken_at, sent.taken_until))
    named = len(alerts) > 1
    notes += [resolved_line(language, zone, alert.ended_at, _lasted(alert.starts_at, alert.ended_at),
                            alert.title if named else None, since=sent.sent_at) for alert in resolved]
    text = sent.text
    if alerts and len(resolved) == len(alerts):
        text = all_resolved_header(language, text, plain=sent.parse_mode is None)
    firing = {alert.fingerprint for alert in alerts if alert.ended_at is None}
    keyboard = after_edit(sent.keyboard, firing, sent.take_button and sent.taken_user is None and bool(firing))
    return _with_notes(text, notes, plain=sent.parse_mode is None, language=language), keyboard


def reply_text(sent: SentMessage, ended: Sequence[Ended], language: str, zone: tzinfo) -> str:
    """HTML for the short reply to `sent` about these resolved alerts: one line each, naming it."""
    lines = []
    for alert in ended:
        known = sent.alert(alert.key)
        caption = known.title if known is not None else alert.fingerprint
        lines.append(resolved_line(language, zone, alert.at, _lasted(alert.starts_at, alert.at), caption,
                                   since=sent.sent_at))
    return _fitting_lines(lines, language)


def _lasted(starts_at: str, ended_at: float) -> float | None:
    try:
        started = datetime.fromisoformat(starts_at).timestamp()
    except ValueError:
        return None
    return ended_at - started if ended_at >= started else None


def _with_notes(text: str, notes: Sequence[str], *, plain: bool, language: str) -> str:
    """`text` with the notes below it, all within Telegram's limit: if they do not fit, the resolved lines
    are summed up in one, and what is still too long is cut from the end of the text.

    Lengths are counted as Telegram counts them, in what the message shows: a firing message near the limit
    in HTML (links, tags, "&amp;") usually shows far less, and keeps all of its text."""
    if not notes:
        return text
    if plain:
        notes = [html_to_text(note) for note in notes]
    footer = "\n".join(notes)
    if _shown_length(text, plain) + len(BLOCK_SEPARATOR) + _shown_length(footer, plain) > MESSAGE_LIMIT:
        footer = _fitting_lines(list(notes), language, limit=MESSAGE_LIMIT // 4)
    room = MESSAGE_LIMIT - len(BLOCK_SEPARATOR) - _shown_length(footer, plain)
    if _shown_length(text, plain) > room:
        text = _cut_lines(text, room, plain)
    return text + BLOCK_SEPARATOR + footer


_TAG = re.compile(r"<[^<>]*>")


def _shown_length(text: str, plain: bool) -> int:
    """How long Telegram finds `text` (UTF-16 code units of what it shows): HTML without its tags, with its
    entities read. A sent message's HTML escapes every "<" of its text, so whatever is between < and > is a tag."""
    return message_length(text if plain else html.unescape(_TAG.sub("", text)))


def _fitting_lines(lines: list[str], language: str, limit: int = MESSAGE_LIMIT) -> str:
    """The lines that fit in `limit`, then "… и ещё N" for the rest."""
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        rest = len(lines) - index
        tail = _and_more(rest - 1, language) if rest > 1 else ""
        size = message_length(line) + (1 if kept else 0)
        if used + size + (len(tail) + 1 if tail else 0) > limit:
            kept.append(_and_more(rest, language))
            break
        kept.append(line)
        used += size
    return "\n".join(kept)


def _and_more(count: int, language: str) -> str:
    if language == "ru":
        return f"{CUT_MARK} и ещё {count} {plural(count, 'оповещение', 'оповещения', 'оповещений')}"
    return f"{CUT_MARK} and {count} more"


def _cut_lines(text: str, room: int, plain: bool) -> str:
    """`text` cut between lines to show at most `room`, with "…" at the cut. A sent message's HTML keeps each
    line's tags balanced, so whole lines keep it valid."""
    kept: list[str] = []
    used = len(CUT_MARK) + 1
    for line in text.split("\n"):
        size = _shown_length(line, plain) + 1
        if used + size > room:
            break
        kept.append(line)
        used += size
    if not kept and not plain:  # one line longer than the room: its visible text, cut
        return fit_lines(text, room)
    return "\n".join(kept + [CUT_MARK])
