"""What series the exporter serves: its own, every check's and the sites' hours, as metric families.

`check_samples` is the one place that decides which series a check has; `CheckCollector` turns them into
prometheus_client families, built fresh on every collect (the pusher pushes those), and exporter.exposition
renders the same samples as text once per check run (the exporter's /metrics serves that). Nothing is kept
between scrapes here, so a check removed by a reload disappears from the next scrape, and sites with different
label sets sit side by side in one family.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    type: str = "gauge"


# Every check's families, in the order they are served; a counter's samples are named NAME_total.
CHECK_FAMILIES = (
    Family("sitewatch_check_success", "1 if the latest run of the check passed, else 0."),
    Family("sitewatch_check_up", "Debounced state: 0 after failure_threshold failed runs in a row, "
                                 "1 again after success_threshold passed runs."),
    Family("sitewatch_check_duration_seconds", "How long the latest run took."),
    Family("sitewatch_check_last_run_timestamp_seconds", "When the latest run finished."),
    Family("sitewatch_check_last_success_timestamp_seconds", "When a run last passed (0 if never)."),
    Family("sitewatch_check_failure_info", "1 while the latest run failed, with the failure's reason."),
    Family("sitewatch_check_target_info", "1, with what the check looks at (host, host:port, URL without "
                                          "credentials or query, serial port, folder) in `target`."),
    Family("sitewatch_check_runs", "Runs of the check since the exporter started.", "counter"),
    Family("sitewatch_check_failures", "Failed runs of the check since the exporter started.", "counter"),
)


def _type_families() -> tuple[Family, ...]:
    # Check types may share families (kkt and getad do): one family per name, at its first place; the help
    # text of the last type that names it, as a dict built in this order keeps it.
    helps: dict[str, str] = {}
    for kind in CHECK_TYPES.values():
        for spec in kind.METRICS:
            helps[spec.name] = spec.help
    return tuple(Family(name, text) for name, text in helps.items())


# The check types' families (ping loss, HTTP status, register data...), in the order they are served; only
# those with samples are.
TYPE_FAMILIES = _type_families()
_TYPE_FAMILY_NAMES = frozenset(family.name for family in TYPE_FAMILIES)

Sample = tuple[str, str, Labels, float]  # family, sample name, labels, value


def check_samples(state: CheckState) -> list[Sample]:
    """Every series of one check, in the order each family lists them."""
    labels = dict(state.labels)
    samples: list[Sample] = []
    target = _target(state)
    if target:
        samples.append(("sitewatch_check_target_info", "sitewatch_check_target_info", {**labels, "target": target}, 1))
    samples.append(("sitewatch_check_runs", "sitewatch_check_runs_total", labels, state.runs))
    samples.append(("sitewatch_check_failures", "sitewatch_check_failures_total", labels, state.failures))
    samples.append(("sitewatch_check_last_success_timestamp_seconds", "sitewatch_check_last_success_timestamp_seconds",
                    labels, state.last_success_at))
    result = state.last
    if result is None:
        return samples  # not run yet: no claim either way
    samples.append(("sitewatch_check_success", "sitewatch_check_success", labels, int(result.success)))
    samples.append(("sitewatch_check_up", "sitewatch_check_up", labels, int(state.up)))
    samples.append(("sitewatch_check_duration_seconds", "sitewatch_check_duration_seconds", labels, result.duration))
    samples.append(("sitewatch_check_last_run_timestamp_seconds", "sitewatch_check_last_run_timestamp_seconds",
                    labels, result.finished_at))
    if not result.success:
        samples.append(("sitewatch_check_failure_info", "sitewatch_check_failure_info",
                        {**labels, "reason": result.reason or "unknown"}, 1))
    for sample in result.samples:
        if sample.name in _TYPE_FAMILY_NAMES:
            samples.append((sample.name, sample.name, {**labels, **dict(sample.labels)}, sample.value))
    return samples


class ExporterStatus:
    """The exporter's own facts that are not about any check."""

    def __init__(self) -> None:
        self.reload_successful = True
        self.reload_success_at = 0.0
        self.icmp_permitted = True


def exporter_families(status: ExporterStatus) -> list[Metric]:
    build = Metric("sitewatch_exporter_build_info", "Version of the running sitewatch exporter; always 1.", "gauge")
    build.add_sample("sitewatch_exporter_build_info",
                     {"version": __version__, "python_version": platform.python_version()}, 1)
    reload_ok = Metric("sitewatch_exporter_config_last_reload_successful",
                       "1 if the latest config load or reload succeeded.", "gauge")
    reload_ok.add_sample("sitewatch_exporter_config_last_reload_successful", {}, 1 if status.reload_successful else 0)
    reload_at = Metric("sitewatch_exporter_config_last_reload_success_timestamp_seconds",
                       "When the config was last loaded successfully.", "gauge")
    reload_at.add_sample("sitewatch_exporter_config_last_reload_success_timestamp_seconds", {},
                         status.reload_success_at)
    icmp = Metric("sitewatch_exporter_icmp_permitted",
                  "1 if this process may send ICMP echo requests (ping checks can work).", "gauge")
    icmp.add_sample("sitewatch_exporter_icmp_permitted", {}, 1 if status.icmp_permitted else 0)
    return [build, reload_ok, reload_at, icmp]


class CheckCollector(Collector):
    def __init__(self, states: Callable[[], list[CheckState]], status: ExporterStatus,
                 sites: Optional[Callable[[], Iterable[Site]]] = None):
        self._states = states
        self._status = status
        self._sites = sites

    def collect(self) -> Iterable[Metric]:
        yield from exporter_families(self._status)
        families = {family.name: Metric(family.name, family.help, family.type)
                    for family in CHECK_FAMILIES + TYPE_FAMILIES}
        for state in self._states():
            for family, name, labels, value in check_samples(state):
                families[family].add_sample(name, labels, value)
        yield from (families[family.name] for family in CHECK_FAMILIES)
        yield from (families[family.name] for family in TYPE_FAMILIES if families[family.name].samples)
        if self._sites is not None:
            yield from hours_families(self._sites())


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
