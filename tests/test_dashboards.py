"""Grafana provisioning and dashboards: structure, datasource references, metric names, PromQL validity."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, http_get

GRAFANA = ROOT / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "sitewatch.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
EXPECTED_UIDS = {
    "fleet.json": "sitewatch-fleet",
    "site.json": "sitewatch-site",
    "kkt.json": "sitewatch-kkt",
    "sitewatch.json": "sitewatch-self",
}
SITEWATCH_METRIC = re.compile(r"\bsitewatch_[a-z0-9_]+\b")
DOC_METRIC = re.compile(r"^\| `([a-z_:][a-z0-9_:]*)` \|", re.MULTILINE)
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$", re.DOTALL)
# Sample values for variables compared with `=`; variables compared with `=~` become `.*`.
SAMPLE_VALUES = {"site": "demo-site"}


def datasource_uid() -> str:
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (prom,) = [ds for ds in config["datasources"] if ds["type"] == "prometheus"]
    return prom["uid"]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def all_panels(panels: list[dict]):
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of a dashboard."""
    found = []
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query)
        found.append((f"variable {variable['name']!r}", match.group(1) if match else query))
    return found


def substitute(expr: str) -> str:
    """Grafana's variables replaced so that Prometheus can evaluate the expression."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "5m").replace("$__range", "5m")
    expr = re.sub(r'=~"\$\{?(\w+)\}?"', '=~".*"', expr)
    return re.sub(r'\$\{?(\w+)\}?', lambda m: SAMPLE_VALUES.get(m.group(1), "sample"), expr)


def documented_metrics() -> set[str]:
    return set(DOC_METRIC.findall(METRICS_DOC.read_text(encoding="utf-8")))


def test_dashboards_present_with_expected_uids():
    names = {path.name for path in DASHBOARD_FILES}
    assert set(EXPECTED_UIDS) <= names, f"missing dashboards: {set(EXPECTED_UIDS) - names}"
    uids = [load(path)["uid"] for path in DASHBOARD_FILES]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"
    for name, uid in EXPECTED_UIDS.items():
        assert load(DASHBOARDS_DIR / name)["uid"] == uid


def test_provisioning():
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    (prom,) = config["datasources"]
    assert prom["type"] == "prometheus"
    assert prom["url"] == "http://prometheus:9090"
    assert prom["uid"] == "sitewatch-prometheus"
    assert prom["isDefault"] is True
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    assert providers[0]["folder"] == "sitewatch"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path):
    text = path.read_text(encoding="utf-8")
    assert "${DS_" not in text, "import placeholders must not be used: the datasource uid is fixed"
    assert "__inputs" not in text
    dashboard = json.loads(text)
    assert dashboard.get("id") is None
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels if "id" in p]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    assert any(p.get("targets") for p in panels)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_query_uses_the_provisioned_datasource(path: Path):
    uid = datasource_uid()
    expected = {"type": "prometheus", "uid": uid}
    dashboard = load(path)
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == expected, f"panel {panel.get('title')!r}: {panel.get('datasource')}"
        for target in panel.get("targets", []):
            assert target.get("datasource", expected) == expected, f"panel {panel.get('title')!r} target"
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable.get("datasource") == expected, f"variable {variable['name']!r}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_sitewatch_metrics_are_documented(path: Path):
    documented = documented_metrics()
    assert documented, "no metrics found in docs/metrics.md"
    for where, expr in expressions(load(path)):
        unknown = set(SITEWATCH_METRIC.findall(expr)) - documented
        assert not unknown, f"{path.name}, {where}: metrics not in docs/metrics.md: {sorted(unknown)}"


def test_expressions_evaluate_in_prometheus(prometheus):
    url = prometheus([f"127.0.0.1:{free_port()}"])
    failures = []
    count = 0
    for path in DASHBOARD_FILES:
        for where, expr in expressions(load(path)):
            query = substitute(expr)
            assert "$" not in query, f"{path.name}, {where}: unsubstituted variable in {query}"
            status, body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
            count += 1
            result = json.loads(body)
            if status != 200 or result.get("status") != "success":
                failures.append(f"{path.name}, {where}: {result.get('error', body)}\n    {query}")
    assert count > 0
    assert not failures, "\n".join(failures)
