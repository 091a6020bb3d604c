"""What has been accepted: per site and source, the latest upload of each item and the check state made of
them; taking a new upload; and rebuilding it all from the store at start and on reload.

Every upload is judged again together with the site's other items of that source (a getad site's other
registers), stored with the check's new counters in one transaction, and only then shown: what /metrics
serves has always been written. One lock serialises uploads; scrapes read the states without it, as the
exporter's do (exporter.state.CheckState.record counts a run last).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from exporter.checks.base import Result
from exporter.kkt.getad import GetadFile
from exporter.state import CheckState
from ingest import getad, smartstatus
from ingest.checks import check_config, check_labels
from ingest.config import GETAD, SMARTSTATUS, SOURCES, IngestConfig, IngestSite, SourceSettings
from ingest.refusals import Refusal
from ingest.sitemap import SiteMap
from ingest.store import Store, StoredCounters, StoredUpload

log = logging.getLogger("sitewatch.ingest")
# Registers per site and source. A till PC has one to four; every post re-reads all of a site's registers,
# so a key that posts endless made-up serials under one hostname must not grow a site without end.
MOST_ITEMS_PER_SITE = 64


@dataclass
class Feed:
    """One site's uploads from one source and the check they make."""

    site: IngestSite
    settings: SourceSettings
    state: CheckState
    uploads: dict[str, StoredUpload] = field(default_factory=dict)  # by item: "page", "kkt:<serial>", ...

    @property
    def source(self) -> str:
        return self.settings.name

    @property
    def last_upload(self) -> float | None:
        return max((upload.upload_time for upload in self.uploads.values()), default=None)


class Intake:
    def __init__(self, config: IngestConfig, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self.uploads_total = {source: 0 for source in SOURCES}
        self.dates_ignored_total = {source: 0 for source in SOURCES}
        self.config = config
        self.map = SiteMap(config)
        self._feeds: dict[tuple[str, str], Feed] = self._load(config)

    # --- reading ------------------------------------------------------------------------------------------

    def feeds(self) -> list[Feed]:
        return list(self._feeds.values())

    def made_for_another(self, site: IngestSite) -> IngestSite | None:
        """The site made earlier under the same id for another client or distributor (two names that spell the
        same id, such as "Ромашка Офис" and "romashka-ofis"), which `site` must not take over."""
        feed = self._feeds.get((site.id, SMARTSTATUS))
        if feed is None or not site.derived or not feed.site.derived:
            return None
        theirs, ours = feed.site.smartstatus, site.smartstatus
        if feed.site.distributor != site.distributor or theirs is None or ours is None \
                or theirs.client.casefold() != ours.client.casefold():
            return feed.site
        return None

    def derived_count_for(self, distributor: str) -> Callable[[str], int]:
        """For SiteMap.smartstatus_site: the distributor's made sites, or 0 for a site already made."""
        def count(site_id: str) -> int:
            if (site_id, SMARTSTATUS) in self._feeds:
                return 0
            return sum(1 for (_, source), feed in self._feeds.items()
                       if source == SMARTSTATUS and feed.site.derived and feed.site.distributor == distributor)
        return count

    # --- taking uploads -----------------------------------------------------------------------------------

    def accept(self, site: IngestSite, source: str, item: str, body: bytes, upload_time: float, arrived_at: float,
               meta: dict) -> Result:
        """Judges the site's items of `source` with this upload among them, stores it, and shows the result.

        Raises StoreError when it cannot be stored (nothing changes then)."""
        with self._lock:
            key = (site.id, source)
            feed = self._feeds.get(key) or self._new_feed(site, self.config.settings(source))
            if item not in feed.uploads and len(feed.uploads) >= MOST_ITEMS_PER_SITE:
                raise Refusal(422, "too_many_items", f"site {site.id} already has {len(feed.uploads)} "
                                                     f"{'registers' if source == GETAD else 'items'} from "
                                                     f"{source}; one more is not taken (a till PC has a few)",
                              site=site.id)
            upload = StoredUpload(site.id, source, item, body, upload_time, arrived_at, meta)
            uploads = {**feed.uploads, item: upload}
            forget = _forgotten(uploads, feed.settings, arrived_at)
            for gone in forget:
                del uploads[gone]
            started = time.perf_counter()
            result = judge(feed.site, source, uploads)
            result.duration = time.perf_counter() - started
            result.finished_at = upload_time
            state = dataclasses.replace(feed.state, rendered=None)
            state.record(result)
            self.store.save(upload, _counters(state, result.duration), forget)
            first = not feed.uploads
            feed.state, feed.uploads = state, uploads
            if key not in self._feeds:  # a new dict, not a change to the one a scrape may be reading
                self._feeds = {**self._feeds, key: feed}
            if meta.get("date_ignored"):
                self.dates_ignored_total[source] += 1
        if first:
            log.info("event=first_upload site=%s source=%s item=%s", site.id, source, item)
        else:
            log.debug("event=upload_accepted site=%s source=%s item=%s success=%s", site.id, source, item,
                      result.success)
        for gone in forget:
            log.info("event=item_forgotten site=%s source=%s item=%s after_days=%.0f", site.id, source, gone,
                     feed.settings.forget_after / 86400)
        return result

    def count_upload(self, source: str) -> None:
        with self._lock:
            self.uploads_total[source] += 1

    # --- building -----------------------------------------------------------------------------------------

    def apply(self, config: IngestConfig) -> None:
        """Takes a new config: every site's feeds are built again from the store, counters included."""
        with self._lock:
            feeds = self._load(config)
            self.config, self.map, self._feeds = config, SiteMap(config), feeds

    def _load(self, config: IngestConfig) -> dict[tuple[str, str], Feed]:
        site_map = SiteMap(config)
        feeds: dict[tuple[str, str], Feed] = {}
        for site in config.sites:
            for source in SOURCES:
                if site.binding(source) is not None:
                    feeds[(site.id, source)] = self._new_feed(site, config.settings(source))
        counters = self.store.counters()
        unclaimed = 0
        for upload in self.store.uploads():
            feed = feeds.get((upload.site, upload.source))
            if feed is None and upload.source == SMARTSTATUS and upload.meta.get("derived"):
                site = site_map.derived_site(str(upload.meta.get("distributor", "")),
                                             str(upload.meta.get("client", "")))
                if site is not None and site.id == upload.site:
                    feed = feeds[(site.id, SMARTSTATUS)] = self._new_feed(site, config.smartstatus)
            if feed is None or not _still_its(feed.site, upload):
                unclaimed += 1  # its site left the config, or its client went elsewhere: kept, in case it returns
                continue
            feed.uploads[upload.item] = upload
        for key, feed in feeds.items():
            if feed.uploads:
                _restore(feed, counters.get(key, StoredCounters()))
        if unclaimed:
            log.info("event=stored_uploads_unclaimed count=%d hint=%s", unclaimed,
                     "their sites are not in the config; they stay stored")
        log.info("event=feeds_loaded feeds=%d with_uploads=%d", len(feeds), sum(1 for f in feeds.values() if f.uploads))
        return feeds

    @staticmethod
    def _new_feed(site: IngestSite, settings: SourceSettings) -> Feed:
        check = check_config(site, settings)
        return Feed(site=site, settings=settings, state=CheckState(check, check_labels(site, check)))


def judge(site: IngestSite, source: str, uploads: dict[str, StoredUpload]) -> Result:
    """The check's verdict from the latest upload of each item, read again from what was stored."""
    if source == SMARTSTATUS:
        upload = max(uploads.values(), key=lambda u: u.upload_time)
        status = smartstatus.read_status_file(str(upload.meta.get("file_name", "")) or "upload.status", upload.body)
        return smartstatus.judge_status_file(status)
    posts: list[GetadFile] = []
    for item in sorted(uploads):
        try:
            posts.append(getad.read_record(getad.decode_post(uploads[item].body), site.timezone))
        except Refusal as refusal:  # stored by an older version that took it; a restart must not stop on it
            log.warning("event=stored_post_unreadable site=%s item=%s problem=%r", site.id, item, refusal.message)
    return getad.judge_posts(posts, site.timezone)


def _still_its(site: IngestSite, upload: StoredUpload) -> bool:
    """A stored page belongs to the site only while the site still claims the client that sent it."""
    if upload.source != SMARTSTATUS or site.smartstatus is None:
        return True
    return str(upload.meta.get("client", "")).casefold() == site.smartstatus.client.casefold()


def _forgotten(uploads: dict[str, StoredUpload], settings: SourceSettings, now: float) -> list[str]:
    """getad registers and stations not posted for forget_after: replaced, or taken away from the PC."""
    if settings.name != GETAD:
        return []
    return [item for item, upload in uploads.items() if now - upload.arrived_at > settings.forget_after]


def _counters(state: CheckState, duration: float) -> StoredCounters:
    return StoredCounters(runs=state.runs, failures=state.failures, up=state.up, last_success_at=state.last_success_at,
                          failures_in_a_row=state.failures_in_a_row, successes_in_a_row=state.successes_in_a_row,
                          duration=duration)


def _restore(feed: Feed, counters: StoredCounters) -> None:
    """The check as it was before the restart: its counters, and its latest result made again from the uploads."""
    try:
        result = judge(feed.site, feed.source, feed.uploads)
    except Exception:  # noqa: BLE001 - one damaged row must not stop the start; the site waits for its next upload
        log.exception("event=stored_upload_unreadable site=%s source=%s", feed.site.id, feed.source)
        return
    result.duration = counters.duration
    result.finished_at = feed.last_upload or 0.0
    state = feed.state
    state.runs, state.failures, state.up = counters.runs, counters.failures, counters.up
    state.last_success_at = counters.last_success_at
    state.failures_in_a_row, state.successes_in_a_row = counters.failures_in_a_row, counters.successes_in_a_row
    state.last = result
