"""The receiver's own metrics: deliveries, edits, give-ups, webhooks, Telegram calls and the outbox's depth.

Each app gets its own registry, so tests can run several receivers in one process. The outbox figures are
read from the database at scrape time, so every process sharing one outbox reports the same depth.
"""

from __future__ import annotations

import time

from prometheus_client import (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter, Gauge,
                               Histogram)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alertmanager.outbox import Outbox
from exporter import __version__

WEBHOOK_RESULTS = ("accepted", "duplicate", "unauthorized", "unknown_route", "too_large", "bad_json",
                   "bad_payload", "wrong_version", "unstorable", "outbox_error")
HTTP_REFUSALS = ("head_timeout", "body_timeout", "evicted", "connection_limit", "not_reading", "bad_request",
                 "bad_version", "head_too_large", "length_required", "too_large")
FAILURE_REASONS = ("expired", "forbidden", "chat_not_found", "rejected")
PARTS = ("intake", "delivery")
IGNORED_REASONS = ("not_allowed", "chat_not_allowed")  # why a command or button press was ignored
EDIT_REASONS = ("resolved", "taken")  # why a sent message was edited
FALLBACK_REASONS = ("unknown_message", "edit_refused")  # why a resolution went out as a message of its own


class _OutboxCollector(Collector):
    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def collect(self):
        count, oldest = self.outbox.depth()
        waiting = GaugeMetricFamily("sitewatch_receiver_outbox_messages",
                                    "Alert notifications waiting in the outbox to be sent to Telegram.")
        waiting.add_metric([], count)
        age = GaugeMetricFamily("sitewatch_receiver_outbox_oldest_age_seconds",
                                "Age of the oldest alert notification waiting in the outbox (0 when empty).")
        age.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        yield waiting
        yield age


class ReceiverMetrics:
    def __init__(self, outbox: Outbox, routes: list[str], parts: tuple[str, ...] = PARTS):
        """`parts` picks what this process exports: the web server's "intake" (webhooks, connections, the
        outbox, the process), the delivery process's "delivery" (Telegram, commands), or both. The others are
        still counted, but into nothing, so the code that counts them need not know which process it runs in."""
        self.registry = CollectorRegistry()
        r = self.registry
        intake = r if "intake" in parts else None
        delivery = r if "delivery" in parts else None
        self.sent = Counter("sitewatch_receiver_messages_sent", "Messages Telegram accepted.", ["route"],
                            registry=delivery)
        self.failed = Counter("sitewatch_receiver_messages_failed",
                              "Alert notifications given up (dead-lettered), by reason.", ["route", "reason"],
                              registry=delivery)
        self.edited = Counter("sitewatch_receiver_messages_edited",
                              "Sent messages edited to show what happened since: resolved alerts (reason "
                              "resolved), who took them (reason taken).", ["route", "reason"], registry=delivery)
        self.edits_refused = Counter("sitewatch_receiver_edits_refused",
                                     "Edits Telegram refused (the message was deleted, cannot be edited any more); "
                                     "the message is not edited again.", ["route"], registry=delivery)
        self.resolved_fallbacks = Counter("sitewatch_receiver_resolved_fallbacks",
                                          "Resolved alerts of routes that edit or reply to the firing message, sent "
                                          "as a message of their own instead, by reason (unknown_message: the "
                                          "firing message is not known; edit_refused: Telegram refused the edit).",
                                          ["route", "reason"], registry=delivery)
        self.webhooks = Counter("sitewatch_receiver_webhooks", "Webhook requests, by result.", ["result"],
                                registry=intake)
        self.webhook_duration = Histogram("sitewatch_receiver_webhook_duration_seconds",
                                          "Time to answer a webhook, from its first byte: read, route and commit "
                                          "to the outbox.",
                                          buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
                                          registry=intake)
        self.alerts_queued = Counter("sitewatch_receiver_alerts_queued", "Alerts stored in the outbox.",
                                     ["route", "status"], registry=intake)
        self.alerts_cancelled = Counter("sitewatch_receiver_alerts_cancelled",
                                        "Firing alerts dropped unsent because they resolved while waiting.",
                                        ["route"], registry=intake)
        self.alerts_already_told = Counter("sitewatch_receiver_alerts_already_told",
                                           "Alerts not queued because another route had just put the same alert "
                                           "state into the same chat.", ["route"], registry=intake)
        self.commands = Counter("sitewatch_receiver_commands",
                                "Bot commands and silence buttons from allowed chats and users, by result "
                                "(ok, refused: the answer explains why, error: see the log).",
                                ["command", "result"], registry=delivery)
        self.commands_refused = Counter("sitewatch_receiver_commands_ignored",
                                        "Commands and button presses ignored, by reason (not_allowed: chat and "
                                        "user not on the allowlist; chat_not_allowed: an allowed user in a chat "
                                        "where the bot takes no commands).", ["reason"], registry=delivery)
        self.route_fallbacks = Counter("sitewatch_receiver_route_fallbacks",
                                       "Alerts whose telegram_route label named an unknown route; sent to the "
                                       "webhook's route instead.", registry=intake)
        self.telegram_requests = Counter("sitewatch_receiver_telegram_requests", "Bot API calls, by result.",
                                         ["method", "result"], registry=delivery)
        self.telegram_duration = Histogram("sitewatch_receiver_telegram_request_duration_seconds",
                                           "Bot API call latency.", ["method"],
                                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                           registry=delivery)
        self.http_refused = Counter("sitewatch_receiver_http_refused",
                                    "Connections closed or requests refused by the receiver's HTTP server before "
                                    "they reached a route, by reason (head_timeout, body_timeout, evicted, "
                                    "bad_request, ...).", ["reason"], registry=intake)
        self.connections_open = Gauge("sitewatch_receiver_http_connections",
                                      "Client connections open to the receiver's HTTP server.", registry=intake)
        self.sender_active = Gauge("sitewatch_receiver_sender_active",
                                   "1 while this process is the outbox's one sender.", registry=delivery)
        self.route_usable = Gauge("sitewatch_receiver_route_usable",
                                  "1 when the start-up check found the route's bot able to post to its chat, "
                                  "0 when it found a problem.", ["route"], registry=delivery)
        if intake is not None:
            Gauge("sitewatch_receiver_build_info", "The receiver's version.", ["version"],
                  registry=r).labels(__version__).set(1)
            r.register(_OutboxCollector(outbox))
            for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(standard)
        for route in routes:  # every series exists from the start, so rate() and absent() behave
            self.sent.labels(route)
            for reason in FAILURE_REASONS:
                self.failed.labels(route, reason)
            for reason in EDIT_REASONS:
                self.edited.labels(route, reason)
            self.edits_refused.labels(route)
            for reason in FALLBACK_REASONS:
                self.resolved_fallbacks.labels(route, reason)
        for result in WEBHOOK_RESULTS:
            self.webhooks.labels(result)
        for reason in HTTP_REFUSALS:
            self.http_refused.labels(reason)
        for reason in IGNORED_REASONS:
            self.commands_refused.labels(reason)

    def observe_telegram(self, method: str, result: str, seconds: float) -> None:
        self.telegram_requests.labels(method, result).inc()
        self.telegram_duration.labels(method).observe(seconds)
