"""Alert rules: promtool syntax check and unit tests, and their agreement with the metric docs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "prometheus" / "rules"
TESTS_DIR = ROOT / "prometheus" / "tests"
METRICS_DOC = ROOT / "docs" / "metrics.md"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
CONTRACT = ROOT.parent / "shared" / "metrics-contract.md"

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.test.yml"))
SEVERITIES = {"info", "warning", "critical", "none"}
METRIC_IN_EXPR = re.compile(r"\b(sitewatch_[a-z0-9_]+|push_time_seconds)\b")
# Rules on site data carry the freshness gate (a recording rule of hours.yml); these are about the
# pipeline itself, or are the gate's own alerts.
UNGATED = {"SiteNotReporting", "SiteNotBackAfterOpening", "SitePushFailing", "ExporterDown", "IngestDown", "Watchdog"}
GATE = ('unless on(site) ((time() - sitewatch_pusher_last_success_timestamp_seconds{job="sitewatch"} > 270) '
        'unless on(site) sitewatch:site_quiet_push_timestamp_seconds)')
# The same for a check sitewatch-ingest fills from uploads: its own heartbeat and limit (site.yml's header).
INGEST_GATE = ("unless on(site, check) (time() - sitewatch_ingest_last_upload_timestamp_seconds > on(site, check) "
               "(sitewatch_ingest_silent_after_seconds + 120))")
QUIET = "unless on(site, check) sitewatch:check_quiet_expected"
# Alerts on whether the PC, its ports, pages and registers are on: closed time and maintenance hold them.
ON_ALERTS = {"PcUnreachable", "PcPacketLoss", "PortDown", "MainPageBroken", "PageMaintenanceLong", "CheckDown",
             "KodeksServerDown", "KodeksMainPageError", "KodeksBundleProblem", "KodeksMaintenanceLong",
             "KktNotAnswering"}
RECORDED = re.compile(r"\b(sitewatch:[a-z0-9_:]+)\b")


def promtool() -> str:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(binary).exists():
        pytest.fail("promtool is not installed: run 'make test', which installs Debian's package")
    return binary


def all_rules() -> list[dict]:
    return [{**rule, "_file": path.name} for path in RULE_FILES
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def alerting_rules() -> list[dict]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rules.append({**rule, "_file": path.name})
    return rules


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_there_are_rules_and_tests():
    assert {p.name for p in RULE_FILES} >= {"hours.yml", "site.yml", "kodeks.yml", "kkt.yml"}
    assert TEST_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path):
    result = run([promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, f"promtool check rules {path.name}:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def promtool_test_results() -> dict[str, subprocess.CompletedProcess]:
    """Every unit test file run by promtool at once, one process each: the opening-hours files take most of
    a minute each, and run side by side they cost the suite the longest of them, not the sum."""
    running = {path.name: subprocess.Popen([promtool(), "test", "rules", str(path)], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, cwd=ROOT) for path in TEST_FILES}
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path, promtool_test_results):
    result = promtool_test_results[path.name]
    assert result.returncode == 0, f"promtool test rules {path.name}:\n{result.stdout}\n{result.stderr}"


def test_every_alert_has_a_unit_test():
    tested = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                tested.add(case["alertname"])
    missing = sorted({rule["alert"] for rule in alerting_rules()} - tested)
    assert not missing, f"alerts without an alert_rule_test: {missing}"


def test_every_severity_variant_fires_in_a_test():
    fired = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    fired.add((case["alertname"], alert["exp_labels"].get("severity")))
    missing = sorted({(r["alert"], r["labels"]["severity"]) for r in alerting_rules()} - fired)
    assert not missing, f"(alert, severity) never expected to fire in a test: {missing}"


def test_rule_metrics_are_documented():
    documented = set(re.findall(r"`([a-z_:][a-z0-9_:]*)`", METRICS_DOC.read_text(encoding="utf-8")))
    used = {m for rule in all_rules() for m in METRIC_IN_EXPR.findall(rule["expr"])}
    used |= {m for rule in all_rules() for m in RECORDED.findall(rule["expr"])}
    used |= {rule["record"] for rule in all_rules() if "record" in rule}
    assert used, "no metric found in the rule expressions"
    undocumented = sorted(used - documented - {"push_time_seconds"})
    assert not undocumented, f"metrics used by rules but missing from docs/metrics.md: {undocumented}"


def test_contract_metrics_are_alerted_on_or_explained():
    if not CONTRACT.exists():
        pytest.skip(f"{CONTRACT} not present")
    contract = set(re.findall(r"`((?:sitewatch_|push_)[a-z0-9_]+)`", CONTRACT.read_text(encoding="utf-8")))
    used = set()
    for rule in alerting_rules():
        used |= set(re.findall(r"\b((?:sitewatch_|push_)[a-z0-9_]+)\b", rule["expr"]))
    doc = ALERTS_DOC.read_text(encoding="utf-8")
    match = re.search(r"^## Metrics no alert uses\s*$(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert match, "docs/alerts.md has no section 'Metrics no alert uses'"
    explained = {}
    for line in match.group(1).splitlines():
        names = re.findall(r"`((?:sitewatch_|push_)[a-z0-9_]+)`", line)
        reason = re.sub(r"`[^`]*`|[|,\s-]", "", line)
        for name in names:
            if reason:
                explained[name] = line
    missing = sorted(contract - used - set(explained))
    assert not missing, f"contract metrics neither used by a rule nor explained in docs/alerts.md: {missing}"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_rule_labels_and_annotations(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    for key in ("summary", "description", "runbook", "dashboard"):
        assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: annotation {key} missing"
    anchor = rule["alert"].lower()
    assert rule["annotations"]["runbook"].endswith("docs/alerts.md#" + anchor)
    assert re.search(r"^## " + re.escape(rule["alert"]) + r"\s*$", ALERTS_DOC.read_text(encoding="utf-8"), re.M), \
        f"docs/alerts.md has no section '## {rule['alert']}' (the runbook anchor)"
    # Russian text: summary and description contain Cyrillic
    assert re.search("[А-Яа-яЁё]", rule["annotations"]["summary"] + rule["annotations"]["description"])


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_site_data_alerts_carry_the_freshness_gate(rule):
    expr = " ".join(rule["expr"].split())
    if rule["alert"] in UNGATED:
        assert GATE not in expr and INGEST_GATE not in expr
        return
    assert expr.endswith(GATE + " " + INGEST_GATE), f"{rule['alert']}: expression does not end with the freshness gate"
    # Debian's vmalert (1.79) refuses a rule file with keep_firing_for: the hold is built from the order
    # of SiteNotReporting and the gate, and from ALERTS for a severity hand-over.
    assert "keep_firing_for" not in rule, f"{rule['alert']}: keep_firing_for, which vmalert cannot read"
    assert (QUIET in expr) == (rule["alert"] in ON_ALERTS), \
        f"{rule['alert']}: alerts on the PC being on, and only they, are held in closed and maintenance time"


def test_every_recording_rule_used_is_recorded_and_every_one_recorded_is_used():
    recorded = {rule["record"] for rule in all_rules() if "record" in rule}
    used = {m for rule in all_rules() for m in RECORDED.findall(rule["expr"])}
    dashboards = " ".join(p.read_text(encoding="utf-8") for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    used |= set(RECORDED.findall(dashboards))
    assert used - recorded == set(), f"used but never recorded: {sorted(used - recorded)}"
    assert recorded - used == set(), f"recorded but never used: {sorted(recorded - used)}"


DATE_ALERTS = {"FnExpiring", "FnUnsentDocuments", "KktDataStale", "KktLicenceExpiring", "KodeksLicenceExpiring",
               "TlsCertificateExpiring"}


def test_non_critical_date_alerts_wait_for_opening_and_critical_ones_do_not():
    held = "on(site) group_left sitewatch:site_closed_since_timestamp_seconds"
    for rule in alerting_rules():
        expr = " ".join(rule["expr"].split())
        if rule["alert"] in DATE_ALERTS:
            assert (held in expr) == (rule["labels"]["severity"] != "critical"), \
                f"{rule['alert']} ({rule['labels']['severity']}): a date alert is held in closed time unless critical"
        else:
            assert held not in expr, f"{rule['alert']} is held in closed time, but is no date alert"


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_unit_tests_evaluate_the_recording_rules_first(path):
    # Without group_eval_order promtool evaluates groups in any order, and an alert would read the gate
    # of the previous minute in one run and of this minute in another: a test that passes by chance.
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    groups = [group["name"] for rule_file in document["rule_files"]
              for group in yaml.safe_load((path.parent / rule_file).read_text(encoding="utf-8"))["groups"]]
    assert document.get("group_eval_order", [None])[0] == "sitewatch-hours"
    assert sorted(document["group_eval_order"]) == sorted(groups), "every group, in the order to evaluate them"


def test_vmalert_reads_the_unchanged_rule_files():
    """The VictoriaMetrics variant evaluates these very files: Debian's vmalert must accept every rule."""
    binary = shutil.which("vmalert") or "/usr/bin/vmalert"
    if not Path(binary).exists():
        pytest.fail("vmalert is not installed: run 'make test', which installs Debian's victoria-metrics")
    result = subprocess.run([binary, "-dryRun", f"-rule={RULES_DIR}/*.yml"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fatal" not in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["FnExpiring", "FnUnsentDocuments", "KodeksLicenceExpiring",
                                  "TlsCertificateExpiring"])
def test_a_lower_severity_is_handed_over_without_a_gap(name):
    """Each severity but the highest stays past its range until a higher one fires for the same object."""
    variants = [rule for rule in alerting_rules() if rule["alert"] == name]
    order = ["info", "warning", "critical"]
    severities = sorted((rule["labels"]["severity"] for rule in variants), key=order.index)
    for rule in variants:
        severity = rule["labels"]["severity"]
        higher = severities[severities.index(severity) + 1:]
        expr = " ".join(rule["expr"].split())
        if not higher:
            assert "ALERTS" not in expr
            continue
        assert f'ALERTS{{alertname="{name}", alertstate="firing", severity="{severity}"}}' in expr
        assert f'ALERTS{{alertname="{name}", alertstate="firing", severity=~"{"|".join(higher)}"}}' in expr
