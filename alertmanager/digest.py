"""Turns what waits in a chat's queue into the next Telegram message.

A message carries alerts of one route and one status (firing or resolved, never mixed), in queue order.
When several alert groups wait for the same chat (a storm behind the chat's rate limit), they go out
together as one digest instead of one message per group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from alertmanager.outbox import Item
from alertmanager.render import GroupInfo, Renderer, compose


@dataclass(frozen=True)
class Message:
    text: str
    status: str
    route: str
    items: tuple[Item, ...]


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


def build_message(run: Sequence[Item], renderer: Renderer) -> Message:
    """As many items of `run` as fit in one message, with the header that describes exactly those."""
    groups: dict[int, GroupInfo] = {}
    count = len(run)
    text = ""
    for _ in range(4):  # the header depends on what fits, and what fits on the header: settle it
        used = run[:count]
        for item in used:
            if item.batch_id not in groups:
                groups[item.batch_id] = GroupInfo.from_json(item.info)
        batch_ids = list(dict.fromkeys(item.batch_id for item in used))
        header = renderer.header(run[0].status, sum(1 for item in used if item.fingerprint),
                                 [groups[batch_id] for batch_id in batch_ids],
                                 continued=len(batch_ids) == 1 and used[0].sent_before > 0)
        text, fitted = compose(header, [item.block for item in used])
        if fitted == count:
            break
        count = fitted
    return Message(text=text, status=run[0].status, route=run[0].route, items=tuple(run[:count]))
