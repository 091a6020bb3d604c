"""The exporter's /metrics body in the Prometheus text format (0.0.4), with each check's lines rendered once
per run instead of once per scrape.

A check's series change only when it finishes a run, so `refresh` renders its lines then (the scheduler calls
it) and keeps them on its state, one block of text per family; a scrape only joins the blocks. With 5,000
checks that is the difference between building 60,000 samples on every scrape and joining 50,000 short
strings. The text is the one prometheus_client's generate_latest writes for CheckCollector's families (a
test holds the two equal): one HELP and one TYPE per family, each family's samples in one block, families in
the collector's order, labels sorted, values as Go writes them.
"""

from __future__ import annotations

import gzip
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

from exporter.collector import CHECK_FAMILIES, TYPE_FAMILIES, ExporterStatus, Family, check_samples, exporter_families
from exporter.config.model import Site
from exporter.hours_metrics import hours_families
from exporter.state import CheckState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A scrape is read once and thrown away; level 1 compresses this repetitive text about 35-fold at an eighth of
# the CPU of level 9 (prometheus_client's choice), which costs more than the rest of a big scrape.
GZIP_LEVEL = 1


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(labels: dict[str, str], pairs: dict[tuple[str, str], str] | None = None) -> str:
    """``{a="1",b="2"}``: sorted by name and escaped; empty for no labels. `pairs` keeps the escaped pairs
    for the next call (a check's label sets share all but one or two of them)."""
    if not labels:
        return ""
    if pairs is None:
        pairs = {}
    texts = []
    for key in sorted(labels):
        value = labels[key]
        text = pairs.get((key, value))
        if text is None:
            text = pairs[(key, value)] = f'{key}="{_escape_label_value(value)}"'
        texts.append(text)
    return "{" + ",".join(texts) + "}"


def sample_line(name: str, labels: dict[str, str], value: float) -> str:
    return f"{name}{label_text(labels)} {floatToGoString(value)}\n"


def family_header(name: str, help_text: str, kind: str) -> str:
    shown = name + "_total" if kind == "counter" else name
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {shown} {escaped}\n# TYPE {shown} {kind}\n"


def metric_text(metric: Metric) -> str:
    """One prometheus_client family as text (for the few families built per scrape)."""
    return family_header(metric.name, metric.documentation, metric.type) + "".join(
        sample_line(sample.name, sample.labels, sample.value) for sample in metric.samples)


def refresh(state: CheckState) -> dict[str, str]:
    """Renders the check's lines for its current run and keeps them on the state."""
    version = state.runs  # read first: see CheckState.record
    blocks: dict[str, str] = {}
    label_texts: dict[int, str] = {}  # most samples share one labels dict: sort and escape it once
    pairs: dict[tuple[str, str], str] = {}
    for family, name, labels, value in check_samples(state):
        text = label_texts.get(id(labels))
        if text is None:
            text = label_texts[id(labels)] = label_text(labels, pairs)
        line = f"{name}{text} {floatToGoString(value)}\n"
        blocks[family] = blocks[family] + line if family in blocks else line
    state.rendered = (version, blocks)
    return blocks


def _blocks(state: CheckState) -> dict[str, str]:
    rendered = state.rendered
    # runs changes with every recorded run: lines rendered for another run (or none yet) are rendered now
    if rendered is None or rendered[0] != state.runs:
        return refresh(state)
    return rendered[1]


def checks_text(states: Iterable[CheckState]) -> list[str]:
    """The check families' text for `states`, family by family."""
    by_family: dict[str, list[str]] = {}
    for state in states:
        for family, block in _blocks(state).items():
            if family in by_family:
                by_family[family].append(block)
            else:
                by_family[family] = [block]
    parts: list[str] = []
    for family in CHECK_FAMILIES:
        parts.append(_header(family))
        parts.extend(by_family.get(family.name, ()))
    for family in TYPE_FAMILIES:
        blocks = by_family.get(family.name)
        if blocks:
            parts.append(_header(family))
            parts.extend(blocks)
    return parts


def _header(family: Family) -> str:
    return family_header(family.name, family.help, family.type)


class MetricsBody:
    """Builds the whole /metrics body: the process's own families, the exporter's, every check's, the hours'."""

    def __init__(self, states: Callable[[], list[CheckState]], status: ExporterStatus,
                 sites: Callable[[], Iterable[Site]]):
        self._states = states
        self._status = status
        self._sites = sites
        self.process_registry = CollectorRegistry()  # process, platform and GC collectors register here
        self._hours: tuple[object, int, str] | None = None  # sites, minute, their hours' text

    def text(self) -> bytes:
        parts = [generate_latest(self.process_registry).decode("utf-8")]
        parts.extend(metric_text(metric) for metric in exporter_families(self._status))
        parts.extend(checks_text(self._states()))
        parts.append(self._hours_text())
        return "".join(parts).encode("utf-8")

    def _hours_text(self) -> str:
        # The hours' series change only with the minute (exporter.hours_metrics lists spans per minute) or
        # with the config: rendered once a minute, not once per scrape.
        sites, now = self._sites(), time.time()
        minute = int(now // 60)
        kept = self._hours
        if kept is not None and kept[0] is sites and kept[1] == minute:
            return kept[2]
        text = "".join(metric_text(metric) for metric in hours_families(sites, now))
        self._hours = (sites, minute, text)  # holding `sites` keeps the identity check sound
        return text

    def response(self, accept_encoding: str) -> tuple[bytes, list[tuple[str, str]]]:
        """The body and its headers, gzipped when the client accepts it (Prometheus does)."""
        body = self.text()
        headers = [("Content-Type", CONTENT_TYPE)]
        if any(part.split(";")[0].strip().lower() == "gzip" for part in accept_encoding.split(",")):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        return body, headers
