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
from exporter.hours import closures, occurrences

HELP = {
    "sitewatch_site_hours_info": "1 for a site with opening hours or maintenance windows; `hours` names them.",
    "sitewatch_site_closed_start_timestamp_seconds": "When a closure by the site's hours begins (its closing).",
    "sitewatch_site_closed_end_timestamp_seconds": "When that closure ends (the next opening).",
    "sitewatch_site_opening_grace_seconds": "How long after opening the site may take to report.",
    "sitewatch_site_closing_grace_seconds": "How long before closing (or a maintenance window) it may go quiet.",
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
        add("sitewatch_site_opening_grace_seconds", labels, hours.opening_grace)
        add("sitewatch_site_closing_grace_seconds", labels, hours.closing_grace)
        for index, (start, end) in enumerate(closures(hours, site.timezone, moment)):
            closure = {**labels, "closure": str(index)}
            add("sitewatch_site_closed_start_timestamp_seconds", closure, start)
            add("sitewatch_site_closed_end_timestamp_seconds", closure, end)
        check_names = {check.name for check in site.checks}
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
