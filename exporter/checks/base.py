"""The one shape every check has: options in, a `Result` out, never an exception.

A check type is a module with ``NAME``, ``OPTIONS`` (a schema validator), ``METRICS`` (the metric families
its results fill), ``async def run(options, context) -> Result`` and optionally
``target(options)`` (what it looks at, for people: a host, host:port, URL, port or folder),
``validate(options, timeout, path)`` (checks across options), ``DEFAULT_INTERVAL`` (its own interval,
above the site's defaults) and ``USES_SITE_DATA`` (it compares with other checks' readings, so it runs
after them). The scheduler, the collector and the one-shot table know nothing else about it, so adding a
check type means adding one module and registering it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from exporter.httpclient import HttpClient
    from exporter.workers import BlockingWorkers
    from exporter.icmp.engine import PingEngine


@dataclass(frozen=True)
class MetricSpec:
    """A metric family a check type fills: its name, help text and extra label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    """One value a check measured, for the metric family `name`, with the family's extra labels."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Result:
    """The outcome of one run. `reason` is a short fixed word; `message` is for people."""

    success: bool
    reason: str | None = None
    message: str = ""
    figures: str = ""
    samples: list[Sample] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # one line per device, for the one-shot table
    duration: float = 0.0
    finished_at: float = 0.0

    @classmethod
    def failed(cls, reason: str, message: str, figures: str = "", samples: list[Sample] | None = None,
               details: list[str] | None = None) -> "Result":
        return cls(False, reason, message, figures, samples or [], details or [])


@dataclass
class CheckContext:
    """What a check may use besides its options: shared engines, built once per process."""

    ping_engine: "PingEngine"
    http: "HttpClient"
    timeout: float
    timezone: "ZoneInfo | None" = None  # the site's, for device and server dates that carry no zone
    # Kept between runs of one check (cookies, for example); a new dict on every one-shot run.
    memory: dict[str, Any] = field(default_factory=dict)
    # Shared by the checks of one site: what one check learns another may compare with (ФН numbers).
    site_memory: dict[str, Any] = field(default_factory=dict)

    @property
    def workers(self) -> "BlockingWorkers":
        """Where blocking work (devices, files, several fetches in a row) runs."""
        return self.http.workers
