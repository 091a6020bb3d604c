"""sitewatch-pusher against Debian's real VictoriaMetrics import endpoint: labels, timestamps, refusals,
and the site's clock corrected by the server's."""

from __future__ import annotations

import email.utils
import gzip
import json
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from conftest import ROOT, free_port, wait_until, write_config
from test_pusher import CLOSED_PORT_CHECK, SITE, pusher

IMPORT_PATH = "/api/v1/import/prometheus"


def import_config(tmp_path, url: str, extra: str = "", push_extra: str = ""):
    text = f'push: {{import_url: "{url}"{push_extra}}}\n' + SITE.format(extra=extra)
    return write_config(tmp_path / "site.yml", text)


def exported(vm: str, match: str) -> list[dict]:
    requests.get(vm + "/internal/force_flush", timeout=5)
    answer = requests.get(vm + "/api/v1/export", params={"match[]": match}, timeout=5)
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def test_a_push_lands_in_victoriametrics_with_the_site_labels_and_the_push_time(tmp_path, victoriametrics):
    vm = victoriametrics()
    config = import_config(tmp_path, vm + IMPORT_PATH, CLOSED_PORT_CHECK.format(port=free_port()))
    before = time.time()
    result = pusher("--config", str(config), "--once")
    after = time.time()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("shop-12: pushed ") and f"series to {vm}{IMPORT_PATH} in " in result.stdout

    series = wait_until(lambda: exported(vm, '{__name__="sitewatch_check_success"}') or None, 10,
                        what="the samples in VictoriaMetrics")
    by_check = {s["metric"]["check"]: s for s in series}
    assert set(by_check) == {"pc", "admin-port"}
    pc = by_check["pc"]["metric"]
    assert pc["site"] == "shop-12" and pc["job"] == "sitewatch" and pc["client"] == "roga"
    assert pc["telegram_route"] == "chat-roga"
    assert by_check["pc"]["values"] == [1] and by_check["admin-port"]["values"] == [0]
    # Every sample of the push carries the push time, which is also the heartbeat's value.
    heartbeat = exported(vm, '{__name__="sitewatch_pusher_last_success_timestamp_seconds"}')
    assert len(heartbeat) == 1 and heartbeat[0]["metric"]["site"] == "shop-12"
    stamp = heartbeat[0]["timestamps"][0]
    assert before - 1 <= stamp / 1000 <= after + 1
    assert abs(heartbeat[0]["values"][0] - stamp / 1000) < 0.01
    assert {s["timestamps"][0] for s in series} == {stamp}
    # Queries see it as Prometheus would see a scraped series.
    def query():
        answer = requests.get(vm + "/api/v1/query", params={"query": 'sitewatch_check_up{site="shop-12"}'},
                              timeout=5).json()
        return {r["metric"]["check"]: r["value"][1] for r in answer["data"]["result"]} or None

    assert wait_until(query, 10, what="the query to see the push") == {"pc": "1", "admin-port": "0"}


def test_a_refused_push_is_reported_once_without_retries_and_exits_1(tmp_path, victoriametrics):
    vm = victoriametrics()
    # VictoriaMetrics answers 400 to an extra_label without '=': the server's verdict, not worth a retry.
    config = import_config(tmp_path, vm + IMPORT_PATH + "?extra_label=oops")
    result = pusher("--config", str(config), "--once")
    assert result.returncode == 1
    line = result.stdout.strip()
    assert line.startswith("shop-12: NOT pushed: rejected: the import endpoint rejected the push (HTTP 400)")
    assert "after" not in line.split(":")[1]


def test_a_dead_import_endpoint_is_retried_within_the_budget(tmp_path):
    config = import_config(tmp_path, f"http://127.0.0.1:{free_port()}{IMPORT_PATH}", push_extra=", interval: 5s")
    result = pusher("--config", str(config), "--once")
    assert result.returncode == 1
    assert "NOT pushed after " in result.stdout and "refused" in result.stdout


def test_usage_mistakes_with_an_import_endpoint_exit_2(tmp_path):
    config = import_config(tmp_path, "http://127.0.0.1:9" + IMPORT_PATH)
    result = pusher("--config", str(config), "--delete")
    assert result.returncode == 2 and "--delete removes a Pushgateway group" in result.stderr
    both = write_config(tmp_path / "both.yml", 'push: {gateway: "http://a:9091", import_url: "http://b:8428/x"}\n'
                        + SITE.format(extra=""))
    result = pusher("--config", str(both), "--once")
    assert result.returncode == 2
    assert "push.import_url" in result.stderr and "either gateway (a Pushgateway) or import_url" in result.stderr
    result = pusher("--gateway", "http://a:9091", "--import-url", "http://b:8428" + IMPORT_PATH,
                    "--site", "s", "--from", "http://127.0.0.1:9/metrics", "--once")
    assert result.returncode == 2 and "not both" in result.stderr


class _SkewedServer(BaseHTTPRequestHandler):
    """An import endpoint whose clock is ten minutes ahead: answers 204 with that Date, keeps the bodies."""

    bodies: list[bytes] = []
    ahead = 600.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.bodies.append(gzip.decompress(body))
        self.send_response_only(204)
        self.send_header("Date", email.utils.formatdate(time.time() + self.ahead, usegmt=True))
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_site_clock_ten_minutes_behind_is_corrected_from_the_server_date(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SkewedServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}{IMPORT_PATH}"
    config = import_config(tmp_path, url, push_extra=", interval: 5s")
    log = (tmp_path / "pusher.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "pusher.cli", "--config", str(config)], stdout=log,
                               stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_until(lambda: len(_SkewedServer.bodies) >= 3, 40, what="three pushes")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        server.shutdown()

    def stamps(body: bytes) -> set[int]:
        return {int(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines() if line and line[0] != "#"}

    first, later = _SkewedServer.bodies[0], _SkewedServer.bodies[2]
    assert abs(stamps(first).pop() / 1000 - time.time()) < 60  # before any answer: the site's own clock
    (corrected,) = stamps(later)
    assert abs(corrected / 1000 - (time.time() + 600)) < 60
    offset = re.search(r"^sitewatch_pusher_clock_offset_seconds (\S+) ", later.decode(), re.M)
    assert offset and 590 <= float(offset.group(1)) <= 610
    text = (tmp_path / "pusher.log").read_text()
    assert text.count("event=clock_off") == 1 and "Windows Time service" in text


def test_any_date_header_from_the_server_is_read_or_ignored_never_fatal():
    """The Date header comes from whatever answers at the push URL: garbage must not stop a push."""
    import math

    from hypothesis import given, settings, strategies as st

    from exporter.httpclient import HttpResponse
    from pusher.transport import Transport

    transport = Transport({"job": "sitewatch", "timeout": 1.0}, "http://127.0.0.1:9")
    dates = st.one_of(st.text(max_size=80), st.from_regex(
        r"(Mon|Tue|Wed), \d{1,3} (Jan|Feb|Xyz) \d{1,6} \d{1,2}:\d{1,2}:\d{1,2} (GMT|\+\d{4}|-9999|)", fullmatch=True))

    @settings(max_examples=300, deadline=None)
    @given(dates)
    def read(date):
        transport.clock_offset = None
        response = HttpResponse(204, "No Content", "http://127.0.0.1:9/", {"Date": date}, b"", None, 0.0, 0, False)
        transport._read_clock(response, 1000.0, 1000.1)
        assert transport.clock_offset is None or math.isfinite(transport.clock_offset)
        assert math.isfinite(transport.now())

    read()
