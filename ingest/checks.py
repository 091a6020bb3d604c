"""The check each site and source stands for, so an upload's results carry exactly the labels and series of
the exporter's own check: a smartstatus upload is a run of a ``kodeks`` check, a getad post a run of a
``getad`` check, rendered by the exporter's collector and exposition.

Uploads come every 15 minutes (smartstatus) or hours (getad), not every minute, so the debounce of
``sitewatch_check_up`` counts uploads: by default a smartstatus site is down after two failed uploads in a
row (one that catches the server's nightly restart is not an outage), a getad site after one.
"""

from __future__ import annotations

from exporter.checks import getad as getad_check
from exporter.checks import kodeks as kodeks_check
from exporter.config.model import CheckConfig, Schedule
from ingest.config import SMARTSTATUS, IngestSite, SourceSettings

Labels = tuple[tuple[str, str], ...]


def check_config(site: IngestSite, settings: SourceSettings) -> CheckConfig:
    binding = site.binding(settings.name)
    assert binding is not None, f"site {site.id} takes no {settings.name} uploads"
    if settings.name == SMARTSTATUS:
        kind = kodeks_check
        # The kodeks check's target is its server's URL; an upload knows it only when the config says it.
        options = {"url": binding.server} if binding.server else {}  # type: ignore[union-attr]
    else:
        kind = getad_check
        options = {}  # no folder: the posts come over HTTP, so the check names no target
    # interval and timeout mean nothing for an upload; silent_after is the nearest thing to an interval.
    schedule = Schedule(interval=settings.silent_after, timeout=settings.silent_after,
                        failure_threshold=settings.failure_threshold, success_threshold=settings.success_threshold,
                        jitter=0.0)
    return CheckConfig(site_id=site.id, name=binding.check, kind=kind, options=options, schedule=schedule,
                       path=f"{site.path}.{settings.name}", timezone=site.timezone)


def site_labels(site: IngestSite) -> Labels:
    """`site` and the site's labels, as every series of the site carries them."""
    return (("site", site.id), *site.labels)


def check_labels(site: IngestSite, check: CheckConfig) -> Labels:
    """The labels of a check's series, in the exporter's order (exporter.scheduler.site_labels)."""
    return (*site_labels(site), ("check", check.name), ("type", check.type))
