"""sitewatch-pusher against Debian's real Pushgateway, scraped by a real Prometheus with honor_labels."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import ROOT, free_port, http_get, value_of_metric, wait_until, write_config

SITE = """
sites:
  - id: shop-12
    labels: {{client: roga, distributor: d0001kopyta, telegram_route: chat-roga}}
    checks:
      - name: pc
        ping: {{host: 127.0.0.1, count: 2, interval: 100ms, timeout: 500ms}}
{extra}
"""
CLOSED_PORT_CHECK = """      - name: admin-port
        tcp: {{host: 127.0.0.1, port: {port}}}
"""


def site_config(tmp_path, gateway: str, extra: str = "", push_extra: str = ""):
    text = f'push: {{gateway: "{gateway}"{push_extra}}}\n' + SITE.format(extra=extra)
    return write_config(tmp_path / "site.yml", text)


def pusher(*args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "pusher.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def gateway_metrics(url: str) -> str:
    return http_get(url + "/metrics")[1]


def test_pushed_series_reach_prometheus_with_site_and_check_labels(tmp_path, pushgateway, prometheus):
    gateway = pushgateway()
    config = site_config(tmp_path, gateway, CLOSED_PORT_CHECK.format(port=free_port()))
    result = pusher("--config", str(config), "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("shop-12: pushed ") and f"series to {gateway} in " in result.stdout
    prometheus_url = prometheus([gateway.removeprefix("http://")], honor_labels=True)

    def query(expr: str):
        status, body = http_get(prometheus_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return json.loads(body)["data"]["result"] if status == 200 else []

    series = wait_until(lambda: query("sitewatch_check_success") if len(query("sitewatch_check_success")) == 2
                        else None, 30, interval=0.5, what="Prometheus to scrape the Pushgateway")
    by_check = {s["metric"]["check"]: s for s in series}
    pc = by_check["pc"]["metric"]
    assert pc["site"] == "shop-12" and pc["job"] == "sitewatch" and pc["client"] == "roga"
    assert pc["telegram_route"] == "chat-roga" and "exported_job" not in pc
    assert by_check["pc"]["value"][1] == "1" and by_check["admin-port"]["value"][1] == "0"
    push_time = query('push_time_seconds{job="sitewatch",site="shop-12"}')
    assert push_time and abs(float(push_time[0]["value"][1]) - time.time()) < 60
    assert query('sitewatch_pusher_series{site="shop-12"}')[0]["value"][1] != "0"


def test_a_second_push_without_a_check_removes_its_series(tmp_path, pushgateway):
    gateway = pushgateway()
    config = site_config(tmp_path, gateway, CLOSED_PORT_CHECK.format(port=free_port()))
    assert pusher("--config", str(config), "--once").returncode == 0
    assert 'check="admin-port"' in gateway_metrics(gateway)
    site_config(tmp_path, gateway)  # the same site, the port check removed
    assert pusher("--config", str(config), "--once").returncode == 0
    text = gateway_metrics(gateway)
    assert 'check="admin-port"' not in text and 'check="pc"' in text


def test_delete_removes_the_sites_group(tmp_path, pushgateway):
    gateway = pushgateway()
    config = site_config(tmp_path, gateway)
    assert pusher("--config", str(config), "--once").returncode == 0
    assert 'site="shop-12"' in gateway_metrics(gateway)
    result = pusher("--config", str(config), "--delete")
    assert result.returncode == 0 and result.stdout.strip() == f"shop-12: group deleted from {gateway}"
    wait_until(lambda: 'site="shop-12"' not in gateway_metrics(gateway), 5, what="the group to go")


def test_a_dead_pushgateway_is_retried_then_the_run_fails_saying_why(tmp_path):
    config = site_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = pusher("--config", str(config), "--once", "--interval", "6s")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = result.stdout.strip()
    assert line.startswith("shop-12: NOT pushed after ") and "attempts: refused: connection refused" in line
    assert elapsed < 20  # retries stay within the interval


def test_a_push_the_pushgateway_finds_inconsistent_shows_its_own_message(tmp_path, pushgateway):
    gateway = pushgateway()
    # Another group already has sitewatch_check_success as a counter: ours, a gauge, is inconsistent.
    clash = "# TYPE sitewatch_check_success counter\nsitewatch_check_success 1\n"
    assert requests.put(gateway + "/metrics/job/other", data=clash, timeout=5).status_code == 200
    result = pusher("--config", str(site_config(tmp_path, gateway)), "--once")
    assert result.returncode == 1
    assert "rejected: the Pushgateway rejected the push (HTTP 400):" in result.stdout
    assert "sitewatch_check_success" in result.stdout  # the Pushgateway's own words name the metric


def test_basic_auth_through_the_pushgateways_web_config(tmp_path, pushgateway):
    import bcrypt

    hashed = bcrypt.hashpw(b"pgw-s3cret", bcrypt.gensalt(rounds=4)).decode()
    gateway = pushgateway(f"basic_auth_users:\n  site12: '{hashed}'\n")
    anonymous = pusher("--config", str(site_config(tmp_path, gateway)), "--once")
    assert anonymous.returncode == 1
    assert "auth: the Pushgateway refused the credentials (HTTP 401)" in anonymous.stdout
    config = site_config(tmp_path, gateway,
                         push_extra=", basic_auth: {username: site12, password: {env: PGW_TEST_PASSWORD}}")
    result = pusher("--config", str(config), "--once", env={"PGW_TEST_PASSWORD": "pgw-s3cret"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pgw-s3cret" not in result.stdout + result.stderr
    status, _ = http_get(gateway + "/metrics")
    assert status == 401  # the Pushgateway really demands it


class _Pages(BaseHTTPRequestHandler):
    pages = {
        "/good": "# TYPE windows_cpu_time_total counter\nwindows_cpu_time_total{core=\"0\"} 12.5 1700000000000\n"
                 "kserver_main_page{service=\"kodweb\",path=\"/docs\"} 0\n",
        "/garbage": "<html><body>502 Bad Gateway</body></html>",
    }

    def do_GET(self):
        body = self.pages.get(self.path, "").encode()
        self.send_response(200 if self.path in self.pages else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def relayed_pages():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_relayed_pages_are_parsed_a_bad_one_is_reported_and_the_rest_pushed(tmp_path, pushgateway, relayed_pages):
    gateway = pushgateway()
    config = site_config(tmp_path, gateway)
    result = pusher("--config", str(config), "--once", "--from", relayed_pages + "/good",
                    "--from", relayed_pages + "/garbage")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"not relayed: parse: {relayed_pages}/garbage is not a Prometheus text page" in result.stdout
    text = gateway_metrics(gateway)
    # Relayed samples carry the site's labels, and no timestamp (the Pushgateway would refuse one).
    assert value_of_metric(text, "windows_cpu_time_total", core="0", site="shop-12", client="roga") == 12.5
    assert value_of_metric(text, "kserver_main_page", path="/docs", site="shop-12") == 0
    assert value_of_metric(text, "sitewatch_pusher_relay_up", source=relayed_pages + "/good") == 1
    assert value_of_metric(text, "sitewatch_pusher_relay_up", source=relayed_pages + "/garbage") == 0


def test_relaying_without_a_config_needs_only_a_site_id(pushgateway, relayed_pages):
    gateway = pushgateway()
    result = pusher("--gateway", gateway, "--site", "kodeks-office", "--from", relayed_pages + "/good", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert value_of_metric(gateway_metrics(gateway), "kserver_main_page", site="kodeks-office") == 0


def test_the_loop_keeps_pushing_until_stopped(tmp_path, pushgateway):
    gateway = pushgateway()
    config = site_config(tmp_path, gateway)
    log = (tmp_path / "pusher.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "pusher.cli", "--config", str(config), "--interval", "5s"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        def pushed_at():
            return value_of_metric(gateway_metrics(gateway), "sitewatch_pusher_last_success_timestamp_seconds",
                                   site="shop-12")

        first = wait_until(pushed_at, 20, what="the first push")
        wait_until(lambda: (pushed_at() or 0) > first, 20, what="a second push")
        assert value_of_metric(gateway_metrics(gateway), "sitewatch_check_success", check="pc") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def test_usage_mistakes_exit_2_with_a_clear_message(tmp_path):
    result = pusher("--config", str(write_config(tmp_path / "s.yml", SITE.format(extra=""))), "--once")
    assert result.returncode == 2
    assert "nowhere to push: set push.gateway (or push.import_url) in the config" in result.stderr
    result = pusher("--gateway", "http://127.0.0.1:9", "--from", "http://127.0.0.1:9/metrics", "--once")
    assert result.returncode == 2 and "--site ID" in result.stderr
    result = pusher("--gateway", "ftp://x", "--site", "a", "--from", "http://127.0.0.1:9/m", "--once")
    assert result.returncode == 2 and "the Pushgateway's URL" in result.stderr


def test_the_push_body_is_gzip_text_without_timestamps(tmp_path):
    from pusher.payload import encode, merge
    from pusher.relay import parse_page
    from exporter.config import Site

    relay = parse_page("http://x/metrics", "# TYPE a counter\na_total{x=\"1\"} 3 1700000000000\n")
    families = merge(Site("s1", (("client", "c"),), None, ()), [], [relay])
    text = encode(families).decode()
    assert 'a_total{client="c",x="1"} 3.0' in text and "1700000000000" not in text
    assert gzip.decompress(gzip.compress(text.encode())).decode() == text


class _Capture(BaseHTTPRequestHandler):
    """Answers 200 to anything and remembers what came: a stand-in gateway, or a proxy."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    _Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Capture.seen
    server.shutdown()
    server.server_close()


def test_a_bearer_token_and_gzip_reach_the_gateway(tmp_path, capture):
    url, seen = capture
    (tmp_path / "token").write_text("t0ken-from-file\n")
    config = site_config(tmp_path, url, push_extra=", bearer_token: {file: token}")
    result = pusher("--config", str(config), "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    method, path, headers, body = seen[-1]
    assert (method, path) == ("PUT", "/metrics/job/sitewatch/site/shop-12")
    assert headers["Authorization"] == "Bearer t0ken-from-file"
    assert headers["Content-Encoding"] == "gzip"
    assert b"sitewatch_check_success" in gzip.decompress(body)
    assert "t0ken-from-file" not in result.stdout + result.stderr


def test_an_explicit_proxy_carries_the_push(tmp_path, capture):
    proxy, seen = capture
    gateway = "http://pgw.example.invalid:9091"  # never resolved: the proxy is asked for it
    result = pusher("--config", str(site_config(tmp_path, gateway)), "--once", "--proxy", proxy)
    assert result.returncode == 0, result.stdout + result.stderr
    method, path, _, _ = seen[-1]
    assert method == "PUT" and path == gateway + "/metrics/job/sitewatch/site/shop-12"


def test_command_line_values_are_checked_like_the_files(tmp_path):
    config = str(site_config(tmp_path, "http://127.0.0.1:9"))
    result = pusher("--config", config, "--once", "--ca-file", str(tmp_path / "missing.pem"))
    assert result.returncode == 2 and "a PEM file of CA certificates that exists" in result.stderr
    result = pusher("--config", config, "--once", "--from", "ftp://127.0.0.1/metrics")
    assert result.returncode == 2 and "--from[0]" in result.stderr
    (tmp_path / "pw").write_text("x")
    (tmp_path / "tok").write_text("y")
    result = pusher("--config", config, "--once", "--basic-auth-user", "u", "--basic-auth-password-file",
                    str(tmp_path / "pw"), "--bearer-token-file", str(tmp_path / "tok"))
    assert result.returncode == 2 and "basic auth or a bearer token, not both" in result.stderr


def test_plain_seconds_on_the_command_line(tmp_path, pushgateway):
    gateway = pushgateway()
    result = pusher("--config", str(site_config(tmp_path, gateway)), "--once", "--interval", "30",
                    "--timeout", "5")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_checks_pushes_the_local_exporters_page_without_running_the_checks_again(tmp_path, pushgateway):
    # One PC running both agents (the Windows install script's Both mode): the exporter runs the checks, the
    # pusher only carries its page to the office. A register's port opened twice would be "busy" half the time.
    import os
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    connections = 0
    done = threading.Event()

    def count():
        nonlocal connections
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            connections += 1
            conn.close()

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    gateway = pushgateway()
    port = listener.getsockname()[1]
    config = write_config(tmp_path / "site.yml", f"""
push: {{gateway: "{gateway}"}}
sites:
  - id: shop-12
    labels: {{client: roga, telegram_route: chat-roga}}
    checks:
      - name: till-port
        interval: 1h
        tcp: {{host: 127.0.0.1, port: {port}}}
""")
    exporter_port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "exporter.cli", "run", "--config", str(config),
                                 "--web.listen-address", f"127.0.0.1:{exporter_port}"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        exporter_url = f"http://127.0.0.1:{exporter_port}/metrics"

        def checked() -> bool:
            try:
                return 'sitewatch_check_up{' in http_get(exporter_url)[1] and connections == 1
            except OSError:
                return False

        wait_until(checked, timeout=30, what="the exporter's first run of the check")
        result = pusher("--config", str(config), "--once", "--no-checks", "--from", exporter_url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("shop-12: pushed ")
        assert connections == 1, "the pusher ran the check itself"
        page = gateway_metrics(gateway)
        up = [line for line in page.splitlines() if line.startswith("sitewatch_check_up{")]
        assert up and all('site="shop-12"' in line and 'check="till-port"' in line and 'client="roga"' in line
                          for line in up), up
        assert "sitewatch_pusher_last_success_timestamp_seconds{" in page
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(timeout=20)
        done.set()
        counter.join(timeout=2)
        listener.close()


def test_no_checks_without_a_page_to_relay_is_a_usage_error(tmp_path):
    config = site_config(tmp_path, "http://127.0.0.1:9")
    result = pusher("--config", str(config), "--once", "--no-checks")
    assert result.returncode == 2
    assert "--no-checks pushes only relayed pages: give --from URL" in result.stderr
