"""Builds one site's push: its checks' metrics, the pages it relays and the pusher's own health, as one
text exposition without the `site` label, which the grouping key (or the import's extra label) carries;
with every sample stamped with the push time where the destination keeps timestamps."""

from __future__ import annotations

import logging
from typing import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.collector import CheckCollector, ExporterStatus
from exporter.config import Site
from exporter.state import CheckState
from pusher.relay import RelayResult

log = logging.getLogger(__name__)


class _Families(Collector):
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def pusher_families(pushed_at: float, series: int, relays: list[RelayResult],
                    clock_offset: float | None = None) -> list[Metric]:
    build = Metric("sitewatch_pusher_build_info", "Version of the sitewatch pusher; always 1.", "gauge")
    build.add_sample("sitewatch_pusher_build_info", {"version": __version__}, 1)
    success = Metric("sitewatch_pusher_last_success_timestamp_seconds",
                     "When this push was made: the group shows it only once the push has succeeded.", "gauge")
    success.add_sample("sitewatch_pusher_last_success_timestamp_seconds", {}, pushed_at)
    count = Metric("sitewatch_pusher_series", "Series in this push, besides the pusher's own.", "gauge")
    count.add_sample("sitewatch_pusher_series", {}, series)
    relay_up = Metric("sitewatch_pusher_relay_up", "1 if the relayed page was read and parsed for this push.",
                      "gauge")
    for relay in relays:
        relay_up.add_sample("sitewatch_pusher_relay_up", {"source": relay.url}, 0 if relay.error else 1)
    families = [build, success, count] + ([relay_up] if relays else [])
    if clock_offset is not None:
        offset = Metric("sitewatch_pusher_clock_offset_seconds",
                        "Seconds the server's clock was ahead of this machine's at the previous push "
                        "(from its Date header); the push times are corrected by it.", "gauge")
        offset.add_sample("sitewatch_pusher_clock_offset_seconds", {}, round(clock_offset))
        families.append(offset)
    return families


def merge(site: Site, check_families: list[Metric], relays: list[RelayResult]) -> list[Metric]:
    """One family per name: the checks' first, then each relayed page's, dropping clashes with a warning."""
    merged: dict[str, Metric] = {}
    seen_series: set[tuple] = set()
    site_labels = dict(site.labels)
    sources = [("checks", check_families, False)] + [(r.url, r.families, True) for r in relays if not r.error]
    for source, families, relayed in sources:
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            elif target.type != family.type:
                log.warning("event=relay_family_dropped source=%s family=%s reason=%r", source, family.name,
                            f"already a {target.type}, this page has a {family.type}")
                continue
            for sample in family.samples:
                if sample.labels.get("site", site.id) != site.id:
                    log.warning("event=relay_sample_dropped source=%s family=%s reason=%r", source, family.name,
                                f"belongs to site {sample.labels['site']!r}, not {site.id!r}")
                    continue
                labels = {k: v for k, v in sample.labels.items() if k != "site"}
                if relayed:  # relayed pages carry no site labels: give them the site's, for routing
                    labels = {**site_labels, **labels}
                key = (sample.name, tuple(sorted(labels.items())))
                if key in seen_series:
                    continue  # the same series twice would make the Pushgateway refuse the whole push
                seen_series.add(key)
                target.add_sample(sample.name, labels, sample.value)
    return [family for family in merged.values() if family.samples]


def site_families(site: Site, states: list[CheckState], status: ExporterStatus) -> list[Metric]:
    mine = [state for state in states if state.check.site_id == site.id]
    # The exporter's own families describe a running exporter's process; the pusher has none to report.
    return [family for family in CheckCollector(lambda: mine, status, lambda: [site]).collect()
            if not family.name.startswith("sitewatch_exporter_")]


def stamp(families: list[Metric], at: float) -> list[Metric]:
    """The same families with every sample carrying the time `at` (unix seconds)."""
    for family in families:
        family.samples = [sample._replace(timestamp=at) for sample in family.samples]
    return families


def encode(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def count_series(families: list[Metric]) -> int:
    return sum(len(family.samples) for family in families)
