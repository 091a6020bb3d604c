"""/metrics as text rendered once per check run: the same bytes prometheus_client writes for the collector's
families, valid Prometheus text with each family whole, and no rendering on a scrape when no check has run."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import write_config
from exporter import exposition, hours_metrics
from exporter.checks.base import Result, Sample
from exporter.collector import CheckCollector, ExporterStatus
from exporter.config import load_config
from exporter.scheduler import site_labels
from exporter.state import CheckState

CONFIG = """\
sites:
  - id: shop-1
    labels: {client: 'Ромашка "Юг"', note: "back\\\\slash and\\nnew line"}
    timezone: Europe/Moscow
    hours: {open: {daily: "10:00-22:00"}}
    maintenance: [{name: reboot, time: "03:00-03:30", checks: [pc]}]
    checks:
      - {name: pc, ping: {host: 127.0.0.1}}
      - {name: port, tcp: {host: 127.0.0.1, port: 9}}
      - {name: page, http: {url: "http://user@127.0.0.1:8080/x?secret=1"}}
      - {name: till, kkt: {driver: mitsu, port: "tcp://127.0.0.1:8200"}}
  - id: shop-2
    checks:
      - {name: pc, ping: {host: 127.0.0.2}}
      - {name: never-run, tcp: {host: 127.0.0.1, port: 10}}
"""


def finished(success: bool, reason: str | None = None, samples: list[Sample] | None = None,
             duration: float = 0.0123456789) -> Result:
    result = Result(success, reason, samples=samples or [])
    result.duration, result.finished_at = duration, 1764991234.567891
    return result


@pytest.fixture
def fleet(tmp_path):
    config = load_config(write_config(tmp_path / "site.yml", CONFIG))
    states = {check.key: CheckState(check, site_labels(config, check)) for check in config.checks()}
    states[("shop-1", "pc")].record(finished(True, samples=[
        Sample("sitewatch_ping_loss_ratio", 0.0),
        *(Sample("sitewatch_ping_rtt_seconds", value, (("stat", stat),))
          for stat, value in (("min", 1e-05), ("avg", 0.000123), ("max", 12345678.9)))]))
    for _ in range(4):
        states[("shop-1", "port")].record(finished(False, "refused", [Sample("sitewatch_not_a_family", 1)]))
    states[("shop-1", "page")].record(finished(False, None, [Sample("sitewatch_http_status_code", 0)]))
    states[("shop-1", "till")].record(finished(True, samples=[
        Sample("sitewatch_kkt_up", 1, (("kkt", "0650"),)),
        Sample("sitewatch_kkt_info", 1, (("kkt", "0650"), ("organization", 'ООО "Ромашка"\\'), ("model", "")))]))
    states[("shop-2", "pc")].record(finished(True, samples=[Sample("sitewatch_ping_loss_ratio", float("nan"))],
                                             duration=float("inf")))
    return config, list(states.values())


@pytest.fixture
def fixed_clock(monkeypatch):
    # The hours' spans are listed relative to now: both renderings must see the same minute.
    moment = time.time()
    monkeypatch.setattr(hours_metrics.time, "time", lambda: moment)


def test_the_text_is_what_prometheus_client_writes_for_the_collectors_families(fleet, fixed_clock):
    config, states = fleet
    status = ExporterStatus()
    status.reload_successful, status.reload_success_at = False, 1764990000.25
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CheckCollector(lambda: states, status, lambda: config.sites))
    expected = generate_latest(registry)
    assert b"sitewatch_maintenance_start_timestamp_seconds" in expected  # the hours are in the comparison
    body = exposition.MetricsBody(lambda: states, status, lambda: config.sites)
    assert body.text() == expected
    assert body.text() == expected  # and again from the kept lines


def test_every_family_has_one_help_one_type_and_one_block_of_samples(fleet, fixed_clock):
    config, states = fleet
    text = exposition.MetricsBody(lambda: states, ExporterStatus(), lambda: config.sites).text().decode()
    families = [(family.name, family.type) for family in text_string_to_metric_families(text)]
    assert len(families) == len(set(families)), families
    headers = [line.split(" ", 3)[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(headers) == len(set(headers))
    current = None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split(" ")[2]
        elif not line.startswith("#"):
            assert line.startswith(current), (line, current)  # every sample sits in its own family's block
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                                 timeout=60)
        # Exit 1 is a parse error; 3 lists lint findings, and the one it finds is about a name of the metrics
        # contract (docs/metrics.md), not about the text.
        findings = (checked.stdout + checked.stderr).decode().splitlines()
        assert checked.returncode in (0, 3), findings
        assert set(findings) <= {'sitewatch_site_hours_info use base unit "seconds" instead of "hours"'}, findings


def test_a_scrape_joins_kept_lines_and_a_run_renders_its_check_again(fleet, fixed_clock):
    config, states = fleet
    body = exposition.MetricsBody(lambda: states, ExporterStatus(), lambda: config.sites)
    body.text()
    kept = [state.rendered for state in states]
    body.text()
    assert all(state.rendered is before for state, before in zip(states, kept))  # nothing rendered again
    pc = states[0]
    pc.record(finished(False, "timeout"))
    exposition.refresh(pc)  # as the scheduler does when a run ends
    text = body.text().decode()
    assert 'sitewatch_check_runs_total{check="pc",client="Ромашка \\"Юг\\"",note="back\\\\slash and\\nnew line",' \
           'site="shop-1",type="ping"} 2.0' in text
    assert 'reason="timeout"' in text and "sitewatch_ping_rtt_seconds{" not in text.split("shop-2")[0]


def test_a_state_read_while_its_run_is_recorded_is_rendered_again_at_the_next_scrape(fleet):
    config, states = fleet
    pc = states[0]
    runs = pc.runs
    pc.rendered = (runs - 1, {"sitewatch_check_runs": "stale\n"})  # rendered from a half-recorded state
    assert "stale" not in "".join(exposition.checks_text([pc]))
