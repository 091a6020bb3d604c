"""The exporter as a running service: endpoints, reloads, scheduling, and a real Prometheus scraping it."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, http_get, value_of_metric as value_of, wait_until, write_config

SITE_A = """
  - id: shop-1
    labels: {client: roga, distributor: d0001kopyta, telegram_route: chat-roga}
    timezone: Europe/Moscow
    checks:
      - name: pc
        interval: 1s
        timeout: 900ms
        ping: {host: 127.0.0.1, count: 2, interval: 100ms, timeout: 500ms}
      - name: closed-port
        interval: 1s
        timeout: 900ms
        tcp: {host: 127.0.0.1, port: %(closed)d}
"""
SITE_B = """
  - id: shop-2
    labels: {client: kopyta}
    checks:
      - name: main-page
        interval: 1s
        timeout: 900ms
        http: {url: "http://127.0.0.1:%(closed)d/"}
"""


def metric_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith((name + "{", name + " "))]


@pytest.fixture
def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


@pytest.fixture
def two_site_config(tmp_path, closed_port):
    return write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port}
                        + SITE_B % {"closed": closed_port})


def test_metrics_carry_site_labels_and_failure_reasons(start_exporter, two_site_config):
    exporter = start_exporter(two_site_config)
    text = exporter.metrics()
    pc = value_of(text, "sitewatch_check_success", site="shop-1", check="pc", type="ping", client="roga",
                  distributor="d0001kopyta", telegram_route="chat-roga")
    assert pc == 1.0
    assert value_of(text, "sitewatch_check_success", site="shop-1", check="closed-port") == 0.0
    assert value_of(text, "sitewatch_check_failure_info", site="shop-1", check="closed-port", reason="refused") == 1
    assert value_of(text, "sitewatch_check_failure_info", site="shop-2", check="main-page", reason="refused") == 1
    assert value_of(text, "sitewatch_check_success", site="shop-2", check="main-page", client="kopyta") == 0.0
    assert value_of(text, "sitewatch_ping_loss_ratio", site="shop-1", check="pc") == 0.0
    assert value_of(text, "sitewatch_http_status_code", site="shop-2", check="main-page") == 0.0
    assert value_of(text, "sitewatch_exporter_build_info") == 1.0
    # No failure_info for a passing check.
    assert value_of(text, "sitewatch_check_failure_info", site="shop-1", check="pc") is None


def test_health_ready_status_page_and_unknown_paths(start_exporter, two_site_config):
    exporter = start_exporter(two_site_config)
    assert http_get(exporter.url + "/-/healthy")[0] == 200
    assert http_get(exporter.url + "/-/ready")[0] == 200
    status, page = http_get(exporter.url + "/")
    assert status == 200
    for text in ("shop-1", "shop-2", "closed-port", "refused", "main-page", "client=roga"):
        assert text in page
    assert http_get(exporter.url + "/nope")[0] == 404
    assert http_get(exporter.url + "/-/reload")[0] == 405


def test_debounced_state_goes_down_after_failure_threshold_runs(start_exporter, tmp_path, closed_port):
    config = write_config(tmp_path / "site.yml", f"""
sites:
  - id: shop
    checks:
      - name: port
        interval: 300ms
        timeout: 200ms
        failure_threshold: 3
        tcp: {{host: 127.0.0.1, port: {closed_port}}}
""")
    exporter = start_exporter(config)

    def runs_and_up():
        text = exporter.metrics()
        return value_of(text, "sitewatch_check_runs_total", check="port"), value_of(text, "sitewatch_check_up",
                                                                                    check="port")

    observed = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs, up = runs_and_up()
        observed.append((runs, up))
        if up == 0.0:
            break
        time.sleep(0.05)
    runs_when_down = next(runs for runs, up in observed if up == 0.0)
    assert runs_when_down >= 3
    assert all(up == 1.0 for runs, up in observed if runs is not None and runs < 3 and up is not None)


class _SlowHandler(BaseHTTPRequestHandler):
    hang = threading.Event()

    def do_GET(self):
        self.hang.wait(30)  # never answers within the check's timeout

    def log_message(self, *args):
        pass


def test_a_hung_check_costs_only_its_own_timeout(start_exporter, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = write_config(tmp_path / "site.yml", f"""
sites:
  - id: shop
    checks:
      - name: hung-page
        interval: 3s
        timeout: 2s
        http: {{url: "http://127.0.0.1:{server.server_port}/"}}
      - name: fast-port
        interval: 200ms
        timeout: 150ms
        tcp: {{host: 127.0.0.1, port: {server.server_port}}}
""")
        exporter = start_exporter(config, wait_ready=False)

        def after_first_hung_run():
            text = exporter.metrics()
            return text if value_of(text, "sitewatch_check_runs_total", check="hung-page") else None

        text = wait_until(after_first_hung_run, 8, what="the hung page's first result")
        fast_runs = value_of(text, "sitewatch_check_runs_total", check="fast-port")
        # While the page hangs for its 2 s, the port check keeps its 200 ms rhythm.
        assert fast_runs is not None and fast_runs >= 8
        assert value_of(text, "sitewatch_check_failure_info", check="hung-page", reason="timeout") == 1.0
        hung_duration = value_of(text, "sitewatch_check_duration_seconds", check="hung-page")
        assert 1.8 <= hung_duration <= 2.6
    finally:
        _SlowHandler.hang.set()
        server.shutdown()
        server.server_close()


def test_reload_applies_a_good_config_and_removed_checks_vanish(start_exporter, tmp_path, closed_port):
    config = write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port}
                          + SITE_B % {"closed": closed_port})
    exporter = start_exporter(config)
    assert metric_lines(exporter.metrics(), "sitewatch_check_success") and \
        value_of(exporter.metrics(), "sitewatch_check_success", site="shop-2") is not None
    runs_before = value_of(exporter.metrics(), "sitewatch_check_runs_total", check="pc")

    write_config(config, "sites:" + SITE_A % {"closed": closed_port})
    status, body = http_get(exporter.url + "/-/reload", method="POST")
    assert status == 200, body
    assert json.loads(body)["status"] == "success"
    text = exporter.metrics()
    assert "shop-2" not in text
    # The unchanged check kept its history.
    assert value_of(text, "sitewatch_check_runs_total", check="pc") >= runs_before
    assert value_of(text, "sitewatch_exporter_config_last_reload_successful") == 1.0


def test_a_bad_config_on_reload_is_rejected_and_the_old_one_keeps_running(start_exporter, tmp_path,
                                                                         closed_port):
    config = write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port})
    exporter = start_exporter(config)
    write_config(config, "sites:\n  - id: shop-1\n    checks:\n      - name: pc\n        ping: {host: 127.0.0.1, "
                         "count: many}\n")
    status, body = http_get(exporter.url + "/-/reload", method="POST")
    assert status == 500
    message = json.loads(body)["message"]
    assert "sites[0].checks[0].ping.count" in message and "expected an integer" in message
    time.sleep(1.5)
    text = exporter.metrics()
    assert value_of(text, "sitewatch_exporter_config_last_reload_successful") == 0.0
    assert value_of(text, "sitewatch_check_success", check="closed-port") == 0.0  # still checked
    assert "event=reload_rejected" in exporter.log_text()
    assert exporter.process.poll() is None


def test_sighup_reloads_the_config(start_exporter, tmp_path, closed_port):
    config = write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port})
    exporter = start_exporter(config)
    write_config(config, "sites:" + SITE_A % {"closed": closed_port} + SITE_B % {"closed": closed_port})
    exporter.process.send_signal(signal.SIGHUP)
    wait_until(lambda: value_of(exporter.metrics(), "sitewatch_check_success", site="shop-2") is not None,
               10, what="the new site's first result after SIGHUP")
    assert "event=reloaded" in exporter.log_text()


def test_a_bad_config_at_start_exits_non_zero_naming_the_problem(tmp_path):
    import subprocess
    import sys

    config = write_config(tmp_path / "site.yml", "sites:\n  - id: shop\n    checks:\n      - name: x\n"
                                                 "        tcp: {host: 127.0.0.1, port: 70000}\n")
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "--config", str(config),
                             "--web.listen-address", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "sites[0].checks[0].tcp.port" in result.stderr and "from 1 to 65535" in result.stderr


def test_prometheus_scrapes_every_check_with_site_labels(start_exporter, prometheus, two_site_config):
    exporter = start_exporter(two_site_config)
    prometheus_url = prometheus([f"127.0.0.1:{exporter.port}"])

    def query():
        url = prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": "sitewatch_check_success"})
        status, body = http_get(url)
        result = json.loads(body)["data"]["result"] if status == 200 else []
        return result if len(result) == 3 else None

    series = wait_until(query, 30, interval=0.5, what="Prometheus to have scraped sitewatch_check_success")
    by_check = {(s["metric"]["site"], s["metric"]["check"]): s for s in series}
    assert set(by_check) == {("shop-1", "pc"), ("shop-1", "closed-port"), ("shop-2", "main-page")}
    pc = by_check[("shop-1", "pc")]["metric"]
    assert pc["client"] == "roga" and pc["distributor"] == "d0001kopyta" and pc["telegram_route"] == "chat-roga"
    assert pc["type"] == "ping" and pc["job"] == "sitewatch"
    assert by_check[("shop-1", "pc")]["value"][1] == "1"
    assert by_check[("shop-2", "main-page")]["value"][1] == "0"
    assert by_check[("shop-2", "main-page")]["metric"]["client"] == "kopyta"


def test_listen_address_in_use_is_reported_clearly(tmp_path, closed_port):
    import subprocess
    import sys

    config = write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "exporter.cli", "--config", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "cannot start" in result.stderr and "in use" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert re.search(r"127\.0\.0\.1:\d+", result.stderr)


def test_a_reload_keeps_the_timetable_of_unchanged_checks(start_exporter, tmp_path, closed_port):
    config = write_config(tmp_path / "site.yml", f"""
sites:
  - id: shop
    checks:
      - name: slow-rhythm
        interval: 30s
        tcp: {{host: 127.0.0.1, port: {closed_port}}}
""")
    exporter = start_exporter(config)
    assert value_of(exporter.metrics(), "sitewatch_check_runs_total", check="slow-rhythm") == 1.0
    for _ in range(3):
        assert http_get(exporter.url + "/-/reload", method="POST")[0] == 200
    time.sleep(2.5)  # longer than the first-run spread: a re-run would have happened by now
    assert value_of(exporter.metrics(), "sitewatch_check_runs_total", check="slow-rhythm") == 1.0


def test_check_for_an_unknown_site_is_a_usage_error_listing_the_known_sites(tmp_path, closed_port):
    import subprocess
    import sys

    config = write_config(tmp_path / "site.yml", "sites:" + SITE_A % {"closed": closed_port})
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config),
                             "--site", "shop-99"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no site with id 'shop-99'" in result.stderr and "shop-1" in result.stderr
