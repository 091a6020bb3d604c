"""The ingest's /metrics body: its own series (uploads, refusals, freshness per site and source) and every
site's check series, rendered by the exporter's own exposition code so they are the exporter's to the byte.

No sample carries a timestamp: an upload every 15 minutes would look stale to Prometheus 5 minutes after it
came. The age of the data is a value instead, ``sitewatch_ingest_last_upload_timestamp_seconds``, beside
``sitewatch_ingest_silent_after_seconds``, the age at which a site counts as silent.
"""

from __future__ import annotations

import platform
import time
from typing import Callable

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from exporter import __version__
from exporter.collector import ExporterStatus
from exporter.exposition import MetricsBody, checks_text, metric_text
from ingest.checks import site_labels
from ingest.intake import Intake
from ingest.refusals import Refusals


class IngestStatus:
    """The ingest's own facts that are not about a site: its config's reloads."""

    def __init__(self) -> None:
        self.reload_successful = True
        self.reload_success_at = time.time()


def own_families(intake: Intake, refusals: Refusals, status: IngestStatus) -> list[Metric]:
    build = Metric("sitewatch_ingest_build_info", "Version of the running sitewatch-ingest; always 1.", "gauge")
    build.add_sample("sitewatch_ingest_build_info", {"version": __version__,
                                                     "python_version": platform.python_version()}, 1)
    reload_ok = Metric("sitewatch_ingest_config_last_reload_successful",
                       "1 if the latest config load or reload succeeded.", "gauge")
    reload_ok.add_sample("sitewatch_ingest_config_last_reload_successful", {}, 1 if status.reload_successful else 0)
    reload_at = Metric("sitewatch_ingest_config_last_reload_success_timestamp_seconds",
                       "When the config was last loaded successfully.", "gauge")
    reload_at.add_sample("sitewatch_ingest_config_last_reload_success_timestamp_seconds", {},
                         status.reload_success_at)
    uploads = Metric("sitewatch_ingest_uploads", "Uploads accepted, by source.", "counter")
    for source, count in intake.uploads_total.items():
        uploads.add_sample("sitewatch_ingest_uploads_total", {"source": source}, count)
    refused = Metric("sitewatch_ingest_refused", "Uploads refused, by source and reason.", "counter")
    for (source, reason), count in sorted(refusals.counts().items()):
        refused.add_sample("sitewatch_ingest_refused_total", {"source": source, "reason": reason}, count)
    ignored = Metric("sitewatch_ingest_dates_ignored", "Uploads whose date: line was too far from their arrival "
                                                       "to be believed (arrival was used), by source.", "counter")
    for source, count in intake.dates_ignored_total.items():
        ignored.add_sample("sitewatch_ingest_dates_ignored_total", {"source": source}, count)
    last = Metric("sitewatch_ingest_last_upload_timestamp_seconds",
                  "When the site's latest upload from the source was taken (its date: line, else arrival).", "gauge")
    silent = Metric("sitewatch_ingest_silent_after_seconds",
                    "How long without an upload from the source before the site counts as silent.", "gauge")
    for feed in intake.feeds():
        # `check` too: the alert rules' freshness gate holds back exactly the check the uploads feed.
        labels = {**dict(site_labels(feed.site)), "source": feed.source, "check": feed.state.check.name}
        silent.add_sample("sitewatch_ingest_silent_after_seconds", labels, feed.settings.silent_after)
        if (when := feed.last_upload) is not None:
            last.add_sample("sitewatch_ingest_last_upload_timestamp_seconds", labels, when)
    return [build, reload_ok, reload_at, uploads, refused, ignored, last, silent]


class IngestMetricsBody(MetricsBody):
    """The exporter's MetricsBody (gzip, process metrics), with the ingest's families in place of the
    exporter's own and of the opening hours'."""

    def __init__(self, intake: Intake, refusals: Refusals, status: IngestStatus):
        super().__init__(lambda: [feed.state for feed in intake.feeds()], ExporterStatus(), lambda: ())
        self._own: Callable[[], list[Metric]] = lambda: own_families(intake, refusals, status)

    def text(self) -> bytes:
        parts = [generate_latest(self.process_registry).decode("utf-8")]
        parts.extend(metric_text(metric) for metric in self._own())
        parts.extend(checks_text(self._states()))
        return "".join(parts).encode("utf-8")
