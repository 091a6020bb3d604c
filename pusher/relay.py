"""Reads other metrics pages (a sitewatch exporter, a Кодекс server's /sysmon/metrics, windows_exporter)
for the pusher: parsed and checked, never forwarded blindly, so one malformed page cannot spoil the push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.httpclient import HttpFailure, HttpRequest, fetch


@dataclass
class RelayResult:
    url: str
    families: list[Metric] = field(default_factory=list)
    error: str | None = None  # why this page was not relayed


def read_page(url: str, timeout: float, tls_verify: bool = True, ca_file: str | None = None,
              proxy: str | None = None) -> RelayResult:
    try:
        response = fetch(HttpRequest(url=url, timeout=timeout, verify_tls=tls_verify, ca_file=ca_file,
                                     proxy=proxy, headers=(("Accept", "text/plain;version=0.0.4"),)))
    except HttpFailure as failure:
        return RelayResult(url, error=f"{failure.reason}: {failure.message}")
    if response.status != 200:
        return RelayResult(url, error=f"status: {url} answered HTTP {response.status} {response.reason}")
    return parse_page(url, response.text())


def parse_page(url: str, text: str) -> RelayResult:
    """The page's families with timestamps dropped (a push must carry none); an error for a malformed page."""
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as err:
        first_line = text.strip().splitlines()[0][:80] if text.strip() else "(empty)"
        return RelayResult(url, error=f"parse: {url} is not a Prometheus text page ({err}); "
                                      f"it starts {first_line!r}")
    for family in families:
        family.samples = [sample._replace(timestamp=None, exemplar=None) for sample in family.samples]
    return RelayResult(url, families=families)
