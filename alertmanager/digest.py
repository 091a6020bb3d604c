"""Turns what waits in a chat's queue into the next Telegram message.

A message carries alerts of one route and one status (firing or resolved, never mixed), in queue order.
When several alert groups wait for the same chat (a storm behind the chat's rate limit), they go out
together as one digest instead of one message per group. The outbox hands over a chat's urgent lane
(critical groups) alone while it has items, so critical alerts are never buried in a digest of warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from alertmanager.outbox import Item
from alertmanager.render import BLOCK_SEPARATOR, GroupInfo, Renderer, compose
from alertmanager.telegram_html import MESSAGE_LIMIT, message_length
from alertmanager.webhook import Alert


@dataclass(frozen=True)
class Message:
    text: str
    status: str
    route: str
    items: tuple[Item, ...]
    summed_up: tuple[int, ...] = ()  # batches whose remaining items this message sums up as "and N more"


def next_run(items: Sequence[Item]) -> list[Item]:
    """The items the next message may carry: the head's route and status, in order.

    Items of the other status are left for a later message, but never overtaken by news of the same
    alert: if an alert was resolved and fired again, its messages keep their order.
    """
    head = items[0]
    run: list[Item] = []
    held_back: set[str] = set()
    for item in items:
        if item.route == head.route and item.status == head.status:
            if item.fingerprint and item.fingerprint in held_back:
                break
            run.append(item)
        elif item.fingerprint:
            held_back.add(item.fingerprint)
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
