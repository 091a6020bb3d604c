"""From one webhook to outbox batches: pick each alert's route; rendering waits until the message is composed.

An alert's ``telegram_route`` label picks its route (one Alertmanager receiver can serve many chats, as
the seed's monitor sent each device to its own chat); without it the webhook's path decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from alertmanager.config import ReceiverConfig
from alertmanager.outbox import Chat, NewBatch, NewItem, is_urgent
from alertmanager.render import GroupInfo
from alertmanager.webhook import Alert, Notification

ROUTE_LABEL = "telegram_route"
STATUSES = ("firing", "resolved")


@dataclass
class Intake:
    batches: list[NewBatch] = field(default_factory=list)
    dedup_key: str = ""
    unknown_routes: dict[str, int] = field(default_factory=dict)  # label value -> alerts sent to the path's route
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, status) -> alerts


def dedup_key(path_route: str, notification: Notification) -> str:
    """Alertmanager HA peers send the same notification: same route, group and alert states. A state includes
    the alert's start, so an alert that resolved and fired again within the window is news, not a copy."""
    states = sorted(f"{alert.fingerprint}:{alert.status}:{alert.starts_at.isoformat() if alert.starts_at else ''}"
                    for alert in notification.alerts)
    text = "\x00".join([path_route, notification.group_key, *states])
    return hashlib.sha256(text.encode()).hexdigest()


def take_in(notification: Notification, path_route: str, config: ReceiverConfig,
            shared: frozenset[str] | None = None) -> Intake:
    """`shared`: the routes that share their chat with another (`shared_chat_routes`; worked out once)."""
    if shared is None:
        shared = shared_chat_routes(config)
    intake = Intake(dedup_key=dedup_key(path_route, notification))
    routed: dict[str, list[Alert]] = {}
    for alert in notification.alerts:
        name = alert.labels.get(ROUTE_LABEL) or path_route
        if name not in config.routes:
            intake.unknown_routes[name] = intake.unknown_routes.get(name, 0) + 1
            name = path_route
        route = config.routes[name]
        if alert.status == "resolved" and not route.send_resolved:
            continue
        routed.setdefault(name, []).append(alert)
    group = GroupInfo.from_notification(notification).to_json()
    for name, alerts in routed.items():
        route = config.routes[name]
        items: list[NewItem] = []
        for status in STATUSES:
            these = [alert for alert in alerts if alert.status == status]
            if these:
                intake.alerts[(name, status)] = len(these)
                items.extend(NewItem(status, alert.fingerprint, alert.starts_at.isoformat() if alert.starts_at else "",
                                     alert.to_json(), urgent=is_urgent(alert.labels)) for alert in these)
        if notification.truncated_alerts and name == path_route:
            # Alertmanager's max_alerts dropped some: say so rather than pretend the group was whole.
            items.append(NewItem(notification.status, "", "", "", summary=notification.truncated_alerts))
        if items:
            chat = Chat(route.bot, str(route.chat_id), route.thread_id)
            intake.batches.append(NewBatch(route=name, chat=chat, info=group, items=items,
                                           max_messages=route.max_messages,
                                           shared_chat=name in shared))
    return intake


def shared_chat_routes(config: ReceiverConfig) -> frozenset[str]:
    """The routes that post to the same chat and topic as another route: only for them is an alert checked
    against what the other route has told there (a write per alert that the usual one-route chat does without)."""
    places: dict[tuple, list[str]] = {}
    for name, route in config.routes.items():
        places.setdefault((route.bot, str(route.chat_id), route.thread_id), []).append(name)
    return frozenset(name for names in places.values() if len(names) > 1 for name in names)
