"""The helpdesk hand-off's metrics (docs/helpdesk.md#retries-give-ups-logs-and-metrics): items stored,
taken and given up per route, requests by result, and the items waiting, read from the database at
each scrape."""

from __future__ import annotations

import sqlite3
from typing import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alertmanager.helpdesk_post import REQUEST_RESULTS

FAILURE_REASONS = ("rejected", "expired", "unconfigured")


class HelpdeskMetrics:
    """The hand-off's counters, in `registry` (None: counted into nothing), and its pending gauge, which
    calls `pending` (items waiting by route) at each scrape."""

    def __init__(self, registry: CollectorRegistry | None, routes: Sequence[str],
                 pending: Callable[[], dict[str, int]]):
        self.queued = Counter("sitewatch_receiver_helpdesk_queued", "Worklist items stored for the route's "
                              "helpdesk (each item once).", ["route"], registry=registry)
        self.sent = Counter("sitewatch_receiver_helpdesk_sent", "Worklist items the route's helpdesk accepted.",
                            ["route"], registry=registry)
        self.failed = Counter("sitewatch_receiver_helpdesk_failed", "Worklist items given up, by reason (rejected: "
                              "the helpdesk refused them; expired: not accepted within a day; unconfigured: the "
                              "route lost its helpdesk).", ["route", "reason"], registry=registry)
        self.requests = Counter("sitewatch_receiver_helpdesk_requests", "Posts to helpdesks, by result.",
                                ["route", "result"], registry=registry)
        for route in routes:  # every series exists from the start, so rate() and absent() behave
            self.queued.labels(route)
            self.sent.labels(route)
            for reason in FAILURE_REASONS:
                self.failed.labels(route, reason)
            for result in REQUEST_RESULTS:
                self.requests.labels(route, result)
        if registry is not None:
            registry.register(_PendingCollector(list(routes), pending))


class _PendingCollector(Collector):
    def __init__(self, routes: list[str], pending: Callable[[], dict[str, int]]):
        self.routes = routes
        self.pending = pending

    def collect(self):
        family = GaugeMetricFamily("sitewatch_receiver_helpdesk_pending",
                                   "Worklist items waiting to be posted to their route's helpdesk.", labels=["route"])
        try:
            counts = self.pending()
        except sqlite3.Error:
            counts = {}
        for route in self.routes:
            family.add_metric([route], counts.get(route, 0))
        yield family
