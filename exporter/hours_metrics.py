"""The opening hours' and maintenance windows' series of the sites that have them, built fresh per scrape.

Moments, not states: a pushed site's last values stay in the Pushgateway while its PC is off, and
closures given as unix times stay true there, where an "open now" gauge would freeze at its last value.
The recording rules in prometheus/rules/hours.yml turn them into "closed now" at evaluation time.
"""

from __future__ import annotations

import time
from typing import Iterable

from prometheus_client.core import Metric

from exporter.config.model import Site
from exporter.hours import occurrences, quiet_spans

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
        for index, span in enumerate(quiet_spans(hours, site.timezone, moment)):
            one = {**labels, "span": str(index)}
            add("sitewatch_site_quiet_start_timestamp_seconds", one, span.start)
            add("sitewatch_site_quiet_end_timestamp_seconds", one, span.end)
            if span.closing is not None and span.opening is not None:
                add("sitewatch_site_closed_start_timestamp_seconds", one, span.closing)
                add("sitewatch_site_closed_end_timestamp_seconds", one, span.opening)
        check_names = {check.name for check in site.checks}
        covered_checks = sorted({name for window in hours.windows for name in window.checks if name in check_names})
        for name in covered_checks:
            for index, span in enumerate(quiet_spans(hours, site.timezone, moment, check=name)):
                one = {**labels, "check": name, "span": str(index)}
                add("sitewatch_check_quiet_start_timestamp_seconds", one, span.start)
                add("sitewatch_check_quiet_end_timestamp_seconds", one, span.end)
        for window in hours.windows:
            # A shared window covers the named checks this site has; one that names none of them is not its.
            covered = [name for name in window.checks if name in check_names]
            if window.checks and not covered:
                continue
            scopes = [{"check": name} for name in covered] or [{}]
            for index, (start, end) in enumerate(occurrences(window, site.timezone, moment)):
                for scope in scopes:
                    one = {**labels, **scope, "window": window.name, "occurrence": str(index)}
                    add("sitewatch_maintenance_start_timestamp_seconds", one, start)
                    add("sitewatch_maintenance_end_timestamp_seconds", one, end)
    return [family for family in families.values() if family.samples]
