"""The validated configuration of a site exporter, as immutable objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from exporter.hours import Hours


@dataclass(frozen=True)
class Schedule:
    interval: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    jitter: float


@dataclass(frozen=True, eq=False)
class CheckConfig:
    site_id: str
    name: str
    kind: ModuleType  # the check type's module, e.g. exporter.checks.ping
    options: dict[str, Any]
    schedule: Schedule
    path: str  # where in the file it was written, for messages
    raw: Any = field(repr=False, default=None)  # as written, to tell whether a reload changed it
    timezone: ZoneInfo | None = None  # the site's; None means the machine's local time

    @property
    def type(self) -> str:
        return self.kind.NAME

    @property
    def key(self) -> tuple[str, str]:
        return (self.site_id, self.name)


@dataclass(frozen=True)
class Site:
    id: str
    labels: tuple[tuple[str, str], ...]
    timezone: ZoneInfo | None
    checks: tuple[CheckConfig, ...]
    relay: tuple[str, ...] = ()  # other metrics pages the pusher sends with this site's group
    hours: Hours | None = None  # opening hours and maintenance windows; None: always open, no windows
    own_windows: int = 0  # how many of hours.windows the site wrote itself (the rest come from shared hours)


@dataclass(frozen=True)
class Config:
    source: Path
    sites: tuple[Site, ...]
    push: dict[str, Any] | None = None  # the validated `push:` section, for sitewatch-pusher
    targets_file: Path | None = None  # the `targets_file:` whose targets are among the sites, absolute
    hours_file: Path | None = None  # the `hours_file:` of shared opening hours, absolute

    def checks(self) -> list[CheckConfig]:
        return [check for site in self.sites for check in site.checks]

    def site(self, site_id: str) -> Site:
        return self._sites_by_id[site_id]

    @cached_property
    def _sites_by_id(self) -> dict[str, Site]:
        # Looked up once per check on every reload: a scan of 10,000 sites for each of 10,000 checks took most
        # of a reload's 40 s.
        return {site.id: site for site in self.sites}
