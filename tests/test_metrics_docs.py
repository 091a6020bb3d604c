"""docs/metrics.md, the code and the shared metric contract agree on every metric name."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT

NAME = re.compile(r"sitewatch_[a-z0-9_]+")
SUFFIXES = re.compile(r"_(total|created|bucket|sum|count)$")
CONTRACT = ROOT.parent / "shared" / "metrics-contract.md"


def names_in_code() -> set[str]:
    found: set[str] = set()
    for path in [*(ROOT / "exporter").rglob("*.py"), *(ROOT / "pusher").rglob("*.py"),
                 *(ROOT / "alertmanager").rglob("*.py"), *(ROOT / "ingest").rglob("*.py")]:
        found |= {SUFFIXES.sub("", name) for name in re.findall(r'"(sitewatch_[a-z0-9_]*[a-z0-9])"', path.read_text())}
    return found


def documented() -> set[str]:
    return set(NAME.findall((ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")))


def test_every_metric_the_exporter_exposes_is_documented():
    missing = names_in_code() - {SUFFIXES.sub("", n) for n in documented()} - documented()
    assert not missing, f"metrics missing from docs/metrics.md: {sorted(missing)}"


def test_every_documented_exporter_metric_exists_in_code():
    code = names_in_code()
    stale = {n for n in documented() if SUFFIXES.sub("", n) not in code and n not in code}
    assert not stale, f"docs/metrics.md names metrics the exporter does not expose: {sorted(stale)}"


def contract_section(title: str) -> set[str]:
    text = CONTRACT.read_text(encoding="utf-8")
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return {SUFFIXES.sub("", n) for n in NAME.findall(section)}


@pytest.mark.skipif(not CONTRACT.exists(), reason="the shared metric contract is not beside the project")
@pytest.mark.parametrize("section", ["Every check", "Network", "Pushing and receiving"])
def test_contract_metrics_are_exposed_under_their_contract_names(section):
    missing = contract_section(section) - names_in_code()
    assert not missing, f"contract metrics not exposed: {sorted(missing)}"
