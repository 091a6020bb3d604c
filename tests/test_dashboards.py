"""Grafana provisioning and dashboards: structure, datasource references, metric names, PromQL validity."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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
RULES_DIR = ROOT / "prometheus" / "rules"

DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
EXPECTED_UIDS = {
    "fleet.json": "sitewatch-fleet",
    "site.json": "sitewatch-site",
    "kkt.json": "sitewatch-kkt",
    "sitewatch.json": "sitewatch-self",
    "today.json": "sitewatch-today",
}
SITEWATCH_METRIC = re.compile(r"\bsitewatch_[a-z0-9_]+\b")
RECORDED_SERIES = re.compile(r"\bsitewatch:[a-z0-9_:]+")
# A Grafana variable ($site, ${site}, $__interval); `$1` in a label_replace replacement is not one.
GRAFANA_VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")
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


def query_annotations(dashboard: dict) -> list[dict]:
    """The dashboard's annotation queries, without Grafana's built-in "Annotations & Alerts"."""
    return [a for a in dashboard.get("annotations", {}).get("list", []) if not a.get("builtIn")]


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, every query variable and every annotation query."""
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
    for annotation in query_annotations(dashboard):
        found.append((f"annotation {annotation['name']!r}", annotation.get("expr", "")))
    return found


def substitute(expr: str) -> str:
    """Grafana's variables replaced so that Prometheus can evaluate the expression."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "5m").replace("$__range", "5m")
    expr = re.sub(r'=~"\$\{?(\w+)\}?"', '=~".*"', expr)
    return GRAFANA_VARIABLE.sub(lambda m: SAMPLE_VALUES.get(m.group(1), "sample"), expr)


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
    assert prom["url"] == "${SITEWATCH_METRICS_URL}"  # set in docker-compose.yml: Prometheus or VictoriaMetrics
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
    for annotation in query_annotations(dashboard):
        assert annotation.get("datasource") == expected, f"annotation {annotation.get('name')!r}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_sitewatch_metrics_are_documented(path: Path):
    documented = documented_metrics()
    assert documented, "no metrics found in docs/metrics.md"
    for where, expr in expressions(load(path)):
        unknown = set(SITEWATCH_METRIC.findall(expr)) - documented
        assert not unknown, f"{path.name}, {where}: metrics not in docs/metrics.md: {sorted(unknown)}"


@pytest.mark.parametrize("engine", ["prometheus", "victoriametrics"])
def test_expressions_evaluate_in_prometheus_and_victoriametrics(engine, request):
    """Grafana reads VictoriaMetrics through the same Prometheus datasource type: every query must run on both."""
    if engine == "prometheus":
        url = request.getfixturevalue("prometheus")([f"127.0.0.1:{free_port()}"])
    else:
        url = request.getfixturevalue("victoriametrics")()
    failures = []
    count = 0
    for path in DASHBOARD_FILES:
        for where, expr in expressions(load(path)):
            query = substitute(expr)
            assert not GRAFANA_VARIABLE.search(query), f"{path.name}, {where}: unsubstituted variable in {query}"
            status, body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
            count += 1
            result = json.loads(body)
            if status != 200 or result.get("status") != "success":
                failures.append(f"{path.name}, {where}: {result.get('error', body)}\n    {query}")
    assert count > 0
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------------------------------
# Opening hours and maintenance windows on the boards: the shading, availability without closed time,
# "Часы работы".

SITE_BOARD = DASHBOARDS_DIR / "site.json"
FLEET_BOARD = DASHBOARDS_DIR / "fleet.json"
CLOSED_ANNOTATION = "Закрыто по графику"
MAINTENANCE_ANNOTATION = "Плановые работы"
CLOSED_LEFT_OUT = "Закрытое по графику время не учитывается"
CLOSED_RULE = "sitewatch:site_closed_since_timestamp_seconds"


def panel(path: Path, title: str) -> dict:
    (found,) = [p for p in all_panels(load(path)["panels"]) if p.get("title") == title]
    return found


def target(found: dict, ref: str) -> str:
    (expr,) = [t["expr"] for t in found["targets"] if t["refId"] == ref]
    return expr


def annotation(name: str) -> dict:
    (found,) = [a for a in query_annotations(load(SITE_BOARD)) if a["name"] == name]
    return found


def interval_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m|h)", text)
    assert match, f"not a Grafana interval: {text!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def recorded_names() -> set[str]:
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def test_site_board_shades_closed_time_and_maintenance_windows():
    """Two Prometheus annotation queries, in the fields Grafana's Prometheus data source reads (expr, step,
    titleFormat, textFormat, tagKeys, useValueForTime), each drawing one region per run of its series."""
    uid = datasource_uid()
    annotations = {a["name"]: a for a in query_annotations(load(SITE_BOARD))}
    assert set(annotations) == {CLOSED_ANNOTATION, MAINTENANCE_ANNOTATION}
    for name, found in annotations.items():
        assert found["datasource"] == {"type": "prometheus", "uid": uid}, name
        assert found["enable"] is True and found["hide"] is False, name
        assert found["iconColor"], name
        assert '{site="$site"' in found["expr"], f"{name}: the annotation must follow the board's site"
        # The series' value is a unix time, positive: Grafana marks the points whose value is above 0.
        # It must not be read as the event's time (that would be milliseconds, and one instant).
        assert found["useValueForTime"] is False, name
        # Grafana 11.2 joins points into one region only when they are at most `step` apart: the step
        # must be at least what it picks by itself for the default day-long range (range/100 → 15m).
        assert interval_seconds(found["step"]) >= 15 * 60, name
        # Each query step is marked if the state held at any moment in it: short windows are not lost.
        assert "[$__interval]" in found["expr"], name
        assert isinstance(found["tagKeys"], str) and isinstance(found["textFormat"], str), name
    closed, maintenance = annotations[CLOSED_ANNOTATION], annotations[MAINTENANCE_ANNOTATION]
    assert CLOSED_RULE in closed["expr"]
    assert closed["titleFormat"] == "Закрыто по графику"
    assert "sitewatch:maintenance_since_timestamp_seconds" in maintenance["expr"]
    assert maintenance["titleFormat"] == "Плановые работы: {{window}}"
    assert "{{scope}}" in maintenance["textFormat"]
    assert set(maintenance["tagKeys"].split(",")) == {"window", "check"}
    assert closed["iconColor"] != maintenance["iconColor"]


@pytest.mark.parametrize("engine", ["prometheus", "victoriametrics"])
def test_annotation_queries_run_as_grafana_runs_them(engine, request):
    """Grafana sends an annotation query as a range query with its step; recording rules without data
    answer with nothing, which is fine: the query must parse and run, on either engine."""
    if engine == "prometheus":
        url = request.getfixturevalue("prometheus")([f"127.0.0.1:{free_port()}"])
    else:
        url = request.getfixturevalue("victoriametrics")()
    for name in (CLOSED_ANNOTATION, MAINTENANCE_ANNOTATION):
        found = annotation(name)
        step = interval_seconds(found["step"])
        query = found["expr"].replace("$__interval", found["step"]).replace("$site", SAMPLE_VALUES["site"])
        assert not GRAFANA_VARIABLE.search(query), query
        params = {"query": query, "start": "1700000000", "end": str(1700000000 + 86400), "step": str(step)}
        status, body = http_get(f"{url}/api/v1/query_range?" + urllib.parse.urlencode(params))
        result = json.loads(body)
        assert status == 200 and result.get("status") == "success", f"{name}: {result.get('error', body)}"
        assert result["data"]["resultType"] == "matrix"


def test_recorded_series_the_boards_use_are_recorded():
    recorded = recorded_names()
    for path in DASHBOARD_FILES:
        for where, expr in expressions(load(path)):
            unknown = set(RECORDED_SERIES.findall(expr)) - recorded
            assert not unknown, f"{path.name}, {where}: not recorded in prometheus/rules: {sorted(unknown)}"


def test_availability_figures_leave_closed_time_out():
    site = panel(SITE_BOARD, "Доступность за период")
    fleet = panel(FLEET_BOARD, "Доступность за 30 дней (ping)")
    for found in (site, fleet):
        assert found["type"] in {"stat", "table"}
        assert found["fieldConfig"]["defaults"]["unit"] == "percent"
        assert CLOSED_LEFT_OUT in found["description"], f"{found['title']}: say that closed time is not counted"
    assert f"unless on(site) {CLOSED_RULE}" in target(site, "A")
    assert "sitewatch:check_up_while_open" in target(fleet, "A")  # recorded: 30 days stay cheap
    # The site's figure covers the range chosen on the board, minute by minute.
    assert "[$__range:1m]" in target(site, "A")


def promtool() -> str:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        pytest.fail("promtool is not installed: run 'make test', which installs Debian's package")
    return binary


def as_sent(expr: str, site: str, range_: str = "2h") -> str:
    """An expression as Grafana sends it for `site`, over `range_`, at a 1-minute step."""
    expr = expr.replace("$__range", range_).replace("$__interval", "1m")
    expr = re.sub(r'=~"\$\{?\w+\}?"', '=~".*"', expr)
    expr = expr.replace("$site", site)
    assert not GRAFANA_VARIABLE.search(expr), expr
    return expr


def test_closed_time_as_the_boards_show_it(tmp_path):
    """The boards' expressions on a made-up day (promtool): shop-01 closes at 120m and opens at 240m
    (its PC is off meanwhile), is down 10 minutes after opening, and has two maintenance windows;
    kiosk-02 has no hours. The recorded series are given as prometheus/rules/hours.yml records them:
    present only while true, valued with the moment it began."""
    shop, kiosk = "shop-01", "kiosk-02"
    labels = f'site="{shop}",client="romashka",distributor="north"'
    window = "Кодекс: ночной перезапуск"
    series = {
        # closed in span 0: 120m-240m; in span 1: next day, 26h-28h
        f'sitewatch_site_hours_info{{{labels},hours="inline"}}': "1x300",
        f'sitewatch_site_closed_start_timestamp_seconds{{{labels},span="0"}}': "7200x300",
        f'sitewatch_site_closed_end_timestamp_seconds{{{labels},span="0"}}': "14400x300",
        f'sitewatch_site_closed_start_timestamp_seconds{{{labels},span="1"}}': "93600x300",
        f'sitewatch_site_closed_end_timestamp_seconds{{{labels},span="1"}}': "100800x300",
        f'{CLOSED_RULE}{{site="{shop}"}}': "_x120 7200x119 stale",
        # a window of the kodeks check 30m-45m, one of the whole site 50m-60m
        f'sitewatch:maintenance_since_timestamp_seconds{{{labels},check="kodeks",window="{window}"}}':
            "_x30 1800x14 stale",
        f'sitewatch:maintenance_since_timestamp_seconds{{{labels},window="Обновление"}}': "_x50 3000x9 stale",
        # the PC: up, off while closed (120m-239m), down 260m-269m after opening
        f'sitewatch_check_up{{{labels},check="pc",type="ping"}}': "1x119 0x119 1x19 0x9 1x30",
        # what hours.yml records of it: nothing while closed
        f'sitewatch:check_up_while_open{{{labels},check="pc",type="ping"}}': "1x119 _x119 1x19 0x9 1x30",
        f'sitewatch_check_up{{{labels},check="main-page",type="http"}}': "1x300",
        f'sitewatch_check_up{{site="{kiosk}",client="romashka",distributor="north",check="pc",type="ping"}}':
            "1x300",
        f'sitewatch:check_up_while_open{{site="{kiosk}",client="romashka",distributor="north",check="pc",'
        'type="ping"}': "1x300",
    }
    hours = panel(SITE_BOARD, "Часы работы")
    now, next_change = target(hours, "A"), target(hours, "B")
    availability = target(panel(SITE_BOARD, "Доступность за период"), "A")
    fleet = target(panel(FLEET_BOARD, "Доступность за 30 дней (ping)"), "A")
    closed, maintenance = annotation(CLOSED_ANNOTATION)["expr"], annotation(MAINTENANCE_ANNOTATION)["expr"]
    shop_hours, none = "свои часы площадки", "часы работы не заданы"

    def case(expr: str, minute: int, *samples: tuple[str, float]) -> dict:
        return {"expr": expr, "eval_time": f"{minute}m",
                "exp_samples": [{"labels": labels_, "value": value} for labels_, value in samples]}

    cases = [
        # open, closed, open again; a site without hours is always open
        case(as_sent(now, shop), 60, (f'{{site="{shop}",hours="{shop_hours}"}}', 1)),
        case(as_sent(now, shop), 180, (f'{{site="{shop}",hours="{shop_hours}"}}', 0)),
        case(as_sent(now, shop), 250, (f'{{site="{shop}",hours="{shop_hours}"}}', 1)),
        case(as_sent(now, kiosk), 180, (f'{{site="{kiosk}",hours="{none}"}}', 2)),
        # when it closes (open now) or opens (closed now), in milliseconds for Grafana's date units
        case(as_sent(next_change, shop), 60, (f'{{site="{shop}",event="закроется"}}', 7200 * 1000)),
        case(as_sent(next_change, shop), 180, (f'{{site="{shop}",event="откроется"}}', 14400 * 1000)),
        case(as_sent(next_change, shop), 250, (f'{{site="{shop}",event="закроется"}}', 93600 * 1000)),
        case(as_sent(next_change, kiosk), 180, (f'{{site="{kiosk}",event="закрытие по графику"}}', 0)),
        # availability over 180m-300m: the closed hour 180m-239m is left out, not counted as down;
        # of the 61 open minutes 240m-300m, 10 were down
        case(f"round(1000 * ({as_sent(availability, shop, '2h')}))", 300,
             (f'{{site="{shop}"}}', round(1000 * 100 * 51 / 61))),
        case(f"round(1000 * ({as_sent(availability, kiosk, '2h')}))", 300, (f'{{site="{kiosk}"}}', 100000)),
        # the fleet's 30 days from the recorded minutes 0m-300m: the closed ones are not there, 10 of the
        # 181 open ones are down
        case(f"round(1000 * ({as_sent(fleet, shop)}))", 300,
             (f'{{site="{shop}",client="romashka",distributor="north"}}', round(1000 * 100 * 171 / 181)),
             (f'{{site="{kiosk}",client="romashka",distributor="north"}}', 100000)),
        # shading: closed at 180m, not at 60m or 250m
        case(as_sent(closed, shop), 60),
        case(as_sent(closed, shop), 180, (f'{{site="{shop}"}}', 7200)),
        case(as_sent(closed, shop), 250),
        # maintenance: one region per window, saying whether it covers one check or the whole site
        case(as_sent(maintenance, shop), 40,
             (f'{{{labels},check="kodeks",window="{window}",scope="проверка «kodeks»"}}', 1800)),
        case(as_sent(maintenance, shop), 55,
             (f'{{{labels},window="Обновление",scope="вся площадка"}}', 3000)),
        case(as_sent(maintenance, shop), 70),
    ]
    spec = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": cases,
    }]}
    path = tmp_path / "boards.test.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


# ---------------------------------------------------------------------------------------------------------
# Reasons in words and the dispatcher's board "что сделать сегодня".

TODAY_BOARD = DASHBOARDS_DIR / "today.json"
DOWN_NOW = "Недоступные сейчас"
DOWN_FOR_A_DAY = "Не работают больше суток"


def reason_words(found: dict) -> dict[str, str]:
    """The value mappings of a table's "Причина" column: reason label value → the words shown."""
    (override,) = [o for o in found["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Причина"]
    (mappings,) = [p["value"] for p in override["properties"] if p["id"] == "mappings"]
    return {value: shown["text"] for mapping in mappings for value, shown in mapping["options"].items()}


def test_reasons_read_as_in_telegram_messages():
    from alertmanager.wording import REASONS

    assert reason_words(panel(FLEET_BOARD, DOWN_NOW)) == REASONS["ru"]
    today = reason_words(panel(TODAY_BOARD, DOWN_FOR_A_DAY))
    assert today == {**REASONS["ru"], "silent": "площадка не присылает данные"}
    for found in (panel(FLEET_BOARD, DOWN_NOW), *load(TODAY_BOARD)["panels"]):
        renamed = found["transformations"][-1]["options"]["renameByName"]
        if "reason" in target(found, "A"):
            assert renamed.get("reason") == "Причина", found["title"]


def test_today_board_links_each_site_to_the_site_board():
    for found in load(TODAY_BOARD)["panels"]:
        (override,) = [o for o in found["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Площадка"]
        (links,) = [p["value"] for p in override["properties"] if p["id"] == "links"]
        assert links[0]["url"].startswith("/d/sitewatch-site?var-site=${__value.raw}"), found["title"]


def test_down_tables_as_the_boards_show_them(tmp_path):
    """On a made-up day and a half (promtool), at 36h: the shop's PC has been down since 6h with the reason
    `timeout`, its web page since 30h (less than a day); the office stopped pushing at 10h; the kiosk's PC is
    down since 2h but the kiosk is closed by its hours now. The fleet board lists every down check with its
    reason; the dispatcher's board only what has been down for over a day."""
    shop = 'site="shop-01",client="romashka",distributor="north"'
    kiosk = 'site="kiosk-02",client="romashka",distributor="north"'
    office = 'site="office-03",client="lutik",distributor="south"'
    minutes = 36 * 60
    series = {
        f'sitewatch_check_up{{{shop},check="pc",type="ping"}}': f"1x{6 * 60} 0x{minutes - 6 * 60}",
        f'sitewatch_check_last_success_timestamp_seconds{{{shop},check="pc",type="ping"}}':
            f"0+60x{6 * 60} {6 * 3600}x{minutes - 6 * 60}",
        f'sitewatch_check_failure_info{{{shop},check="pc",type="ping",reason="timeout"}}':
            f"_x{6 * 60} 1x{minutes - 6 * 60}",
        f'sitewatch_check_up{{{shop},check="page",type="http"}}': f"1x{30 * 60} 0x{6 * 60}",
        f'sitewatch_check_last_success_timestamp_seconds{{{shop},check="page",type="http"}}':
            f"0+60x{30 * 60} {30 * 3600}x{6 * 60}",
        f'sitewatch_check_failure_info{{{shop},check="page",type="http",reason="status"}}':
            f"_x{30 * 60} 1x{6 * 60}",
        f'sitewatch_check_up{{{kiosk},check="pc",type="ping"}}': f"1x120 0x{minutes - 120}",
        f'sitewatch_check_last_success_timestamp_seconds{{{kiosk},check="pc",type="ping"}}':
            f"0+60x120 7200x{minutes - 120}",
        f'sitewatch_check_failure_info{{{kiosk},check="pc",type="ping",reason="unreachable"}}':
            f"_x120 1x{minutes - 120}",
        # a register's PC added at 30h, down ever since: not a day yet, though it never passed
        f'sitewatch_check_up{{{shop},check="till",type="ping"}}': f"_x{30 * 60} 0x{6 * 60}",
        f'sitewatch_check_last_success_timestamp_seconds{{{shop},check="till",type="ping"}}': f"_x{30 * 60} 0x{6 * 60}",
        f'sitewatch_check_failure_info{{{shop},check="till",type="ping",reason="refused"}}': f"_x{30 * 60} 1x{6 * 60}",
        'sitewatch:site_closed_since_timestamp_seconds{site="kiosk-02"}': f"_x120 7200x{minutes - 120}",
        f'sitewatch:site_last_report_timestamp_seconds{{job="sitewatch",{office},telegram_route="duty"}}':
            f"0+60x600 36000x{minutes - 600}",
    }
    fleet = as_sent(target(panel(FLEET_BOARD, DOWN_NOW), "A"), "")
    today = as_sent(target(panel(TODAY_BOARD, DOWN_FOR_A_DAY), "A"), "")
    shop_labels = 'site="shop-01",client="romashka",distributor="north"'
    cases = [
        {"expr": fleet, "eval_time": f"{minutes}m", "exp_samples": [
            {"labels": f'{{{shop_labels},check="pc",reason="timeout"}}', "value": 0},
            {"labels": f'{{{shop_labels},check="page",reason="status"}}', "value": 0},
            {"labels": f'{{{shop_labels},check="till",reason="refused"}}', "value": 0},
            {"labels": '{site="kiosk-02",client="romashka",distributor="north",check="pc",reason="unreachable"}',
             "value": 0},
        ]},
        # days down: the PC 30 h, the office silent 26 h; the page and the till (6 h) and the closed kiosk
        # are not listed
        {"expr": f"round(100 * ({today}))", "eval_time": f"{minutes}m", "exp_samples": [
            {"labels": f'{{{shop_labels},check="pc",reason="timeout"}}', "value": 125},
            {"labels": '{site="office-03",client="lutik",distributor="south",reason="silent"}', "value": 108},
        ]},
    ]
    spec = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "promql_expr_test": cases,
    }]}
    path = tmp_path / "down.test.yml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
