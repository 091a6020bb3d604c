"""The opening hours' and maintenance windows' series of the sites that have them, built fresh per scrape.

Moments, not states: a pushed site's last values stay in the Pushgateway while its PC is off, and
closures given as unix times stay true there, where an "open now" gauge would freeze at its last value.
The recording rules in prometheus/rules/hours.yml turn them into "closed now" at evaluation time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import tzinfo
from typing import Callable, Iterable

from prometheus_client.core import Metric

from exporter.config.model import Site
from exporter.hours import Hours, QuietSpan, Window, occurrences, quiet_spans

CACHE_SIZE = 4096  # (hours, zone, check) combinations kept; a chain shares one per zone and check


class _SpanCache:
    """Quiet spans per hours, zone and check, computed once a minute: a chain's sites share their hours, and
    a fleet's /metrics would otherwise convert the same local times for every site at every scrape. The
    spans' moments do not depend on the minute, only which of them are listed does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[Hours, list]] = OrderedDict()

    def spans(self, hours: Hours, zone: tzinfo | None, now: float, check: str | None = None) -> list[QuietSpan]:
        return self._get(("spans", check), hours, zone, now, lambda: quiet_spans(hours, zone, now, check=check))

    def occurrences(self, hours: Hours, window: Window, zone: tzinfo | None, now: float) -> list[tuple[float, float]]:
        return self._get(("window", window.name), hours, zone, now, lambda: occurrences(window, zone, now))

    def _get(self, what: tuple, hours: Hours, zone: tzinfo | None, now: float, compute: Callable[[], list]) -> list:
        # id(hours) is safe as a key: the entry holds the Hours itself, so the id is not reused meanwhile
        key = (id(hours), str(zone), int(now // 60), what)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found[1]
        value = compute()
        with self._lock:
            self._entries[key] = (hours, value)
            while len(self._entries) > CACHE_SIZE:
                self._entries.popitem(last=False)
        return value


_CACHE = _SpanCache()

HELP = {
    "sitewatch_site_hours_info": "1 for a site with opening hours or maintenance windows; `hours` names them.",
    "sitewatch_site_quiet_start_timestamp_seconds": "When a span the site may be quiet in begins (graces included).",
    "sitewatch_site_quiet_end_timestamp_seconds": "When that quiet span ends (graces included).",
    "sitewatch_site_closed_start_timestamp_seconds": "The first closing by the site's hours in that quiet span.",
    "sitewatch_site_closed_end_timestamp_seconds": "The last opening by the site's hours in that quiet span.",
    "sitewatch_check_quiet_start_timestamp_seconds": "When a span a check covered by a window may fail in begins.",
    "sitewatch_check_quiet_end_timestamp_seconds": "When that span ends.",
    "sitewatch_maintenance_start_timestamp_seconds": "When an occurrence of a maintenance window begins.",
    "sitewatch_maintenance_end_timestamp_seconds": "When that occurrence ends.",
}


def hours_families(sites: Iterable[Site], now: float | None = None) -> list[Metric]:
    moment = time.time() if now is None else now
    families = {name: Metric(name, text, "gauge") for name, text in HELP.items()}

    def add(name: str, labels: dict[str, str], value: float) -> None:
        families[name].add_sample(name, labels, value)

    for site in sites:
        hours = site.hours
        if hours is None:
            continue
        labels = {"site": site.id, **dict(site.labels)}
        add("sitewatch_site_hours_info", {**labels, "hours": hours.name}, 1)
        for index, span in enumerate(_CACHE.spans(hours, site.timezone, moment)):
            one = {**labels, "span": str(index)}
            add("sitewatch_site_quiet_start_timestamp_seconds", one, span.start)
            add("sitewatch_site_quiet_end_timestamp_seconds", one, span.end)
            if span.closing is not None and span.opening is not None:
                add("sitewatch_site_closed_start_timestamp_seconds", one, span.closing)
                add("sitewatch_site_closed_end_timestamp_seconds", one, span.opening)
        check_names = {check.name for check in site.checks}
        covered_checks = sorted({name for window in hours.windows for name in window.checks if name in check_names})
        for name in covered_checks:
            for index, span in enumerate(_CACHE.spans(hours, site.timezone, moment, check=name)):
                one = {**labels, "check": name, "span": str(index)}
                add("sitewatch_check_quiet_start_timestamp_seconds", one, span.start)
                add("sitewatch_check_quiet_end_timestamp_seconds", one, span.end)
        for window in hours.windows:
            # A shared window covers the named checks this site has; one that names none of them is not its.
            covered = [name for name in window.checks if name in check_names]
            if window.checks and not covered:
                continue
            scopes = [{"check": name} for name in covered] or [{}]
            for index, (start, end) in enumerate(_CACHE.occurrences(hours, window, site.timezone, moment)):
                for scope in scopes:
                    one = {**labels, **scope, "window": window.name, "occurrence": str(index)}
                    add("sitewatch_maintenance_start_timestamp_seconds", one, start)
                    add("sitewatch_maintenance_end_timestamp_seconds", one, end)
    return [family for family in families.values() if family.samples]
