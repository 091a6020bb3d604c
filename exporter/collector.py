"""Turns the scheduler's latest results into metric families, built fresh on every scrape.

Nothing is kept between scrapes, so a check removed by a reload disappears from the next scrape, and
sites with different label sets sit side by side in one family.
"""

from __future__ import annotations

import platform
from typing import Callable, Iterable, Optional

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.checks.registry import CHECK_TYPES
from exporter.config.model import Site
from exporter.hours_metrics import hours_families
from exporter.state import CheckState

Labels = dict[str, str]


TARGET_LIMIT = 200  # a target label longer than this is cut: it names a thing, it is not the thing


class ExporterStatus:
    """The exporter's own facts that are not about any check."""

    def __init__(self) -> None:
        self.reload_successful = True
        self.reload_success_at = 0.0
        self.icmp_permitted = True


class CheckCollector(Collector):
    def __init__(self, states: Callable[[], list[CheckState]], status: ExporterStatus,
                 sites: Optional[Callable[[], Iterable[Site]]] = None):
        self._states = states
        self._status = status
        self._sites = sites

    def collect(self) -> Iterable[Metric]:
        yield from self._exporter_families()
        states = self._states()
        yield from self._check_families(states)
        yield from self._type_families(states)
        if self._sites is not None:
            yield from hours_families(self._sites())

    def _exporter_families(self) -> Iterable[Metric]:
        build = Metric("sitewatch_exporter_build_info", "Version of the running sitewatch exporter; always 1.", "gauge")
        build.add_sample("sitewatch_exporter_build_info",
                         {"version": __version__, "python_version": platform.python_version()}, 1)
        reload_ok = Metric("sitewatch_exporter_config_last_reload_successful",
                           "1 if the latest config load or reload succeeded.", "gauge")
        reload_ok.add_sample("sitewatch_exporter_config_last_reload_successful", {},
                             1 if self._status.reload_successful else 0)
        reload_at = Metric("sitewatch_exporter_config_last_reload_success_timestamp_seconds",
                           "When the config was last loaded successfully.", "gauge")
        reload_at.add_sample("sitewatch_exporter_config_last_reload_success_timestamp_seconds", {},
                             self._status.reload_success_at)
        icmp = Metric("sitewatch_exporter_icmp_permitted",
                      "1 if this process may send ICMP echo requests (ping checks can work).", "gauge")
        icmp.add_sample("sitewatch_exporter_icmp_permitted", {}, 1 if self._status.icmp_permitted else 0)
        return [build, reload_ok, reload_at, icmp]

    def _check_families(self, states: list[CheckState]) -> Iterable[Metric]:
        gauges = {
            "sitewatch_check_success": "1 if the latest run of the check passed, else 0.",
            "sitewatch_check_up": "Debounced state: 0 after failure_threshold failed runs in a row, "
                                  "1 again after success_threshold passed runs.",
            "sitewatch_check_duration_seconds": "How long the latest run took.",
            "sitewatch_check_last_run_timestamp_seconds": "When the latest run finished.",
            "sitewatch_check_last_success_timestamp_seconds": "When a run last passed (0 if never).",
            "sitewatch_check_failure_info": "1 while the latest run failed, with the failure's reason.",
            "sitewatch_check_target_info": "1, with what the check looks at (host, host:port, URL without "
                                           "credentials or query, serial port, folder) in `target`.",
        }
        families = {name: Metric(name, text, "gauge") for name, text in gauges.items()}
        runs = Metric("sitewatch_check_runs", "Runs of the check since the exporter started.", "counter")
        failures = Metric("sitewatch_check_failures", "Failed runs of the check since the exporter started.",
                          "counter")
        for state in states:
            labels = dict(state.labels)
            target = _target(state)
            if target:
                families["sitewatch_check_target_info"].add_sample("sitewatch_check_target_info",
                                                                   {**labels, "target": target}, 1)
            runs.add_sample("sitewatch_check_runs_total", labels, state.runs)
            failures.add_sample("sitewatch_check_failures_total", labels, state.failures)
            families["sitewatch_check_last_success_timestamp_seconds"].add_sample(
                "sitewatch_check_last_success_timestamp_seconds", labels, state.last_success_at)
            result = state.last
            if result is None:
                continue  # not run yet: no claim either way
            families["sitewatch_check_success"].add_sample("sitewatch_check_success", labels, int(result.success))
            families["sitewatch_check_up"].add_sample("sitewatch_check_up", labels, int(state.up))
            families["sitewatch_check_duration_seconds"].add_sample(
                "sitewatch_check_duration_seconds", labels, result.duration)
            families["sitewatch_check_last_run_timestamp_seconds"].add_sample(
                "sitewatch_check_last_run_timestamp_seconds", labels, result.finished_at)
            if not result.success:
                families["sitewatch_check_failure_info"].add_sample(
                    "sitewatch_check_failure_info", {**labels, "reason": result.reason or "unknown"}, 1)
        return [*families.values(), runs, failures]

    def _type_families(self, states: list[CheckState]) -> Iterable[Metric]:
        families = {spec.name: Metric(spec.name, spec.help, "gauge")
                    for kind in CHECK_TYPES.values() for spec in kind.METRICS}
        for state in states:
            if state.last is None:
                continue
            labels = dict(state.labels)
            for sample in state.last.samples:
                family = families.get(sample.name)
                if family is not None:
                    family.add_sample(sample.name, {**labels, **dict(sample.labels)}, sample.value)
        return [family for family in families.values() if family.samples]


def _target(state: CheckState) -> str:
    """What the check looks at, for alert texts: its type's `target(options)`, cut to a readable length."""
    describe = getattr(state.check.kind, "target", None)
    if describe is None:
        return ""
    try:
        text = describe(state.check.options)
    except Exception:  # noqa: BLE001 - one check's odd option must never cost the whole scrape
        return ""
    return text if len(text) <= TARGET_LIMIT else text[:TARGET_LIMIT - 1] + "…"
