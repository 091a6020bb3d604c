"""The exporter and the receiver behind a web config, as users run them: TLS with a certificate of a test CA
and basic auth, scraped by Debian's Prometheus, posted to by Debian's Alertmanager, asked by curl.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Daemons, free_port, value_of_metric, wait_until, write_config
from receiver_kit import BOT_TOKEN, GROUP_CHAT, ReceiverProcess
from test_web_config import PASSWORD, Certificates, make_certificates, password_hash

SITE = """
sites:
  - id: shop
    checks:
      - name: port
        interval: 1s
        timeout: 500ms
        tcp: {host: 127.0.0.1, port: %d}
"""
CURL = shutil.which("curl") or "/usr/bin/curl"


@pytest.fixture
def certificates(tmp_path) -> Certificates:
    folder = tmp_path / "tls"
    folder.mkdir()
    return make_certificates(folder)


def write_web_config(folder: Path, certificates: Certificates, users: dict[str, str], extra: str = "") -> Path:
    user_lines = "".join(f"  {user}: {password_hash(password, cost=10)}\n" for user, password in users.items())
    return write_config(folder / "web.yml", f"""tls_server_config:
  cert_file: {certificates.server_cert.relative_to(folder)}
  key_file: {certificates.server_key.relative_to(folder)}
{extra}basic_auth_users:
{user_lines}""")


class SecureExporter:
    """`sitewatch-exporter run --web.config.file` in its own process, stopped by its pid."""

    def __init__(self, tmp_path: Path, web: Path, certificates: Certificates, auth: tuple[str, str],
                 client_cert: tuple[str, str] | None = None):
        self.port = free_port()
        self.log = tmp_path / f"exporter-{self.port}.log"
        self.ca = certificates.ca
        self.auth = auth
        self.client_cert = client_cert  # shown by get() unless it is given another (or None)
        config = write_config(tmp_path / "site.yml", SITE % free_port())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "run", "--config", str(config),
             "--web.listen-address", f"127.0.0.1:{self.port}", "--web.config.file", str(web)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)

        def serving() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the exporter exited: {self.log_text()}")
            try:
                return self.get("/-/healthy", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(serving, 30, what="the exporter to serve over TLS")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5, **options) -> requests.Response:
        options.setdefault("cert", self.client_cert)
        return requests.get(self.url + path, verify=str(self.ca), auth=options.pop("auth", self.auth),
                            timeout=timeout, **options)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def secure_exporter(tmp_path):
    started: list[SecureExporter] = []

    def start(web: Path, certificates: Certificates, auth: tuple[str, str], **options) -> SecureExporter:
        exporter = SecureExporter(tmp_path, web, certificates, auth, **options)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def curl(*args: str) -> tuple[int, str, str]:
    """(HTTP status, headers, body) as the real curl reports them."""
    done = subprocess.run([CURL, "-sS", "-D", "-", "-w", "\n%{http_code}", *args], capture_output=True, text=True,
                          timeout=30)
    text, _, status = done.stdout.rpartition("\n")
    headers, _, body = text.partition("\n\n")  # text mode reads the head's CRLFs as newlines
    return int(status), headers, body


def test_prometheus_scrapes_over_tls_with_the_password_and_is_refused_without(tmp_path, certificates,
                                                                            secure_exporter):
    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD})
    exporter = secure_exporter(web, certificates, ("prometheus", PASSWORD))
    (tmp_path / "prometheus.password").write_text(PASSWORD + "\n", encoding="utf-8")
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    config = write_config(tmp_path / "prometheus.yml", f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: right-password
    scheme: https
    tls_config: {{ca_file: {certificates.ca}}}
    basic_auth: {{username: prometheus, password_file: {tmp_path / 'prometheus.password'}}}
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
  - job_name: wrong-password
    scheme: https
    tls_config: {{ca_file: {certificates.ca}}}
    basic_auth: {{username: prometheus, password: not-the-password}}
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
""")
    daemons = Daemons()
    try:
        url = daemons.start("Prometheus", [binary, f"--config.file={config}",
                                           f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                           f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log", port)

        def targets() -> dict[str, dict] | None:
            active = requests.get(url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            found = {target["labels"]["job"]: target for target in active}
            return found if all(t["health"] != "unknown" for t in found.values()) and len(found) == 2 else None

        found = wait_until(targets, 30, what="both jobs to be scraped")

        def up(job: str) -> float | None:
            result = requests.get(url + "/api/v1/query", params={"query": f'up{{job="{job}"}}'},
                                  timeout=5).json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        wait_until(lambda: up("right-password") == 1 and up("wrong-password") == 0, 20, what="up 1 and up 0")
        found = targets()
        assert found["right-password"]["health"] == "up" and found["right-password"]["scrapeUrl"].startswith("https:")
        assert found["wrong-password"]["health"] == "down"
        assert "401 Unauthorized" in found["wrong-password"]["lastError"], found["wrong-password"]
        # The scraped series are the exporter's: among them, the refusals of the other job's scrapes.
        def refusals_seen() -> bool:
            result = requests.get(url + "/api/v1/query", timeout=5, params={"query": (
                'sitewatch_exporter_http_auth_failures_total{job="right-password",reason="wrong_password"}')}).json()
            return bool(result["data"]["result"]) and float(result["data"]["result"][0]["value"][1]) >= 1

        wait_until(refusals_seen, 10, what="the wrong password's refusals in the scraped series")
    finally:
        daemons.stop_all()
    log = exporter.log_text()
    assert "event=http_auth_refused reason=wrong_password" in log and "not-the-password" not in log
    assert log.count("reason=wrong_password") == 1, log  # at most once a minute
    assert "Authorization" not in log and "Basic " not in log


def test_curl_needs_the_password_for_every_path_reload_included(tmp_path, certificates, secure_exporter):
    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD},
                           extra="http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    exporter = secure_exporter(web, certificates, ("prometheus", PASSWORD))
    tls = ["--cacert", str(certificates.ca)]
    for path in ("/metrics", "/-/healthy", "/-/ready", "/"):
        status, headers, _ = curl(*tls, exporter.url + path)
        assert status == 401, path
        assert 'WWW-Authenticate: Basic realm="sitewatch-exporter"' in headers
        assert "X-Frame-Options: deny" in headers
    status, headers, body = curl(*tls, "-u", f"prometheus:{PASSWORD}", exporter.url + "/metrics")
    assert status == 200 and "sitewatch_check_up" in body and "X-Frame-Options: deny" in headers
    status, _, _ = curl(*tls, "-u", "prometheus:wrong", exporter.url + "/metrics")
    assert status == 401
    status, _, _ = curl(*tls, "-X", "POST", exporter.url + "/-/reload")
    assert status == 401
    status, _, body = curl(*tls, "-X", "POST", "-u", f"prometheus:{PASSWORD}", exporter.url + "/-/reload")
    assert status == 200 and json.loads(body)["status"] == "success"
    assert "web config reloaded" in json.loads(body)["message"]
    # Plain HTTP on the TLS port: told to use HTTPS, not a bare reset.
    status, _, body = curl(exporter.url.replace("https:", "http:") + "/metrics")
    assert status == 400 and "https://" in body
    # Without the CA, curl refuses the certificate: the server is not trusted by accident.
    done = subprocess.run([CURL, "-sS", "-u", f"prometheus:{PASSWORD}", exporter.url + "/metrics"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 60, done.stderr
    metrics = exporter.get("/metrics").text
    assert value_of_metric(metrics, "sitewatch_exporter_http_auth_failures_total", reason="missing") == 5
    assert value_of_metric(metrics, "sitewatch_exporter_http_auth_failures_total", reason="wrong_password") == 1
    assert value_of_metric(metrics, "sitewatch_exporter_tls_handshake_failures_total", reason="plain_http") == 1
    assert value_of_metric(metrics, "sitewatch_exporter_tls_handshake_failures_total", reason="protocol") == 1


def test_a_client_that_never_finishes_its_handshake_blocks_no_scrape(tmp_path, certificates, secure_exporter):
    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD})
    exporter = secure_exporter(web, certificates, ("prometheus", PASSWORD))
    stalled = []
    try:
        for n in range(20):
            connection = socket.create_connection(("127.0.0.1", exporter.port), timeout=30)
            if n % 2:
                connection.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
            stalled.append(connection)
        started = time.monotonic()
        for _ in range(5):
            assert exporter.get("/metrics").status_code == 200
        assert time.monotonic() - started < 3
        # The server gives up on them after its handshake timeout (10 s), and counts them.
        for connection in stalled:
            assert connection.recv(100) == b""
        assert time.monotonic() - started < 15
    finally:
        for connection in stalled:
            connection.close()
    metrics = exporter.get("/metrics").text
    assert value_of_metric(metrics, "sitewatch_exporter_tls_handshake_failures_total", reason="timeout") == 20


def test_client_certificates_are_checked_when_the_config_asks(tmp_path, certificates, secure_exporter):
    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD}, extra=(
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certificates.ca}\n"
        "  client_allowed_sans: [prometheus.local]\n"))
    (tmp_path / "stranger").mkdir()
    stranger = make_certificates(tmp_path / "stranger")  # a client certificate of another CA
    ours = (str(certificates.client_cert), str(certificates.client_key))
    exporter = secure_exporter(web, certificates, ("prometheus", PASSWORD), client_cert=ours)
    assert exporter.get("/metrics").status_code == 200
    refused = [None, (str(stranger.client_cert), str(stranger.client_key)),
               (str(certificates.other_client_cert), str(certificates.other_client_key))]  # our CA, SAN not allowed
    for certificate in refused:
        with pytest.raises(requests.exceptions.RequestException):
            exporter.get("/metrics", cert=certificate)
    metrics = exporter.get("/metrics").text
    assert value_of_metric(metrics, "sitewatch_exporter_tls_handshake_failures_total",
                           reason="client_certificate") == 3
    assert "reason=client_certificate" in exporter.log_text()


def test_a_changed_password_is_in_force_within_seconds_and_a_broken_file_keeps_the_old(tmp_path, certificates,
                                                                                     secure_exporter):
    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD})
    exporter = secure_exporter(web, certificates, ("prometheus", PASSWORD))
    assert exporter.get("/metrics").status_code == 200
    write_web_config(tmp_path, certificates, {"prometheus": "a new password"})
    wait_until(lambda: exporter.get("/-/healthy", auth=("prometheus", "a new password")).status_code == 200, 10,
               what="the new password to pass")
    assert exporter.get("/-/healthy").status_code == 401  # the old one no longer does
    # A broken file: the previous config stays, the log says so once, the gauge says 0.
    web.write_text(web.read_text() + "  grafana: plain-text-password\n", encoding="utf-8")
    new = ("prometheus", "a new password")

    def rejected() -> bool:
        assert exporter.get("/-/healthy", auth=new).status_code == 200  # a new connection looks at the file
        return "event=web_config_rejected" in exporter.log_text()

    wait_until(rejected, 10, what="the broken web config to be rejected")
    for _ in range(25):  # more connections, more looks at the file: still one log line
        assert exporter.get("/-/healthy", auth=new).status_code == 200
        time.sleep(0.1)
    metrics = exporter.get("/metrics", auth=new).text
    assert value_of_metric(metrics, "sitewatch_exporter_web_config_last_reload_successful") == 0
    log = exporter.log_text()
    assert log.count("event=web_config_rejected") == 1 and "plain-text-password" not in log
    assert "line 6: basic_auth_users.grafana: expected a bcrypt hash" in log
    # SIGHUP reads it again: still broken, still the previous config; /-/reload says so.
    exporter.process.send_signal(signal.SIGHUP)
    answer = requests.post(exporter.url + "/-/reload", verify=str(certificates.ca), auth=new, timeout=5)
    assert answer.status_code == 500 and "web config rejected" in answer.json()["message"]
    assert exporter.get("/metrics", auth=new).status_code == 200
    write_web_config(tmp_path, certificates, {"prometheus": PASSWORD})
    wait_until(lambda: exporter.get("/-/healthy").status_code == 200, 10, what="the fixed file to be read")
    metrics = exporter.get("/metrics").text
    assert value_of_metric(metrics, "sitewatch_exporter_web_config_last_reload_successful") == 1


# --- the receiver ------------------------------------------------------------------------------------------


class SecureReceiver(ReceiverProcess):
    """`sitewatch-receiver run --web.config.file`; stopped (its delivery process too) as ReceiverProcess is."""

    def __init__(self, config: Path, log_file: Path, web: Path, ca: Path | None, auth: tuple[str, str]):
        """`ca`: the CA of the server's certificate, or None for a web config without TLS."""
        super().__init__(config, log_file, ("--web.config.file", str(web)))
        self.ca = ca
        self.auth = auth

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    def get(self, path: str, **options) -> requests.Response:
        return requests.get(self.url + path, verify=str(self.ca) if self.ca else True,
                            auth=options.pop("auth", self.auth), timeout=5, **options)

    def start(self) -> "SecureReceiver":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alertmanager.cli", "run", "--config", str(self.config),
             "--web.listen-address", f"127.0.0.1:{self.port}", *self.extra_args],
            stdout=self.log_file.open("a"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the receiver exited: {self.log_text()}")
            try:
                return self.get("/-/ready").status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 30, what="the receiver to be ready over TLS")
        return self

    def metrics(self) -> str:
        return self.get("/metrics").text


def write_plain_receiver_config(folder: Path, api_url: str) -> Path:
    """One bot, the route duty; no auth of its own: the web config's users guard the webhooks."""
    (folder / "bot.token").write_text(BOT_TOKEN + "\n", encoding="utf-8")
    return write_config(folder / "receiver.yml", f"""
telegram:
  api_url: {api_url}
  timeout: 2s
  max_retry_interval: 1s
bots:
  main:
    token: {{file: bot.token}}
routes:
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
outbox:
  path: {folder / 'outbox.db'}
timezone: Europe/Moscow
""")


def test_alertmanager_posts_to_the_receiver_over_tls_with_basic_auth(tmp_path, certificates, fake_telegram,
                                                                      alertmanager):
    fake = fake_telegram()
    web = write_web_config(tmp_path, certificates, {"alertmanager": PASSWORD, "prometheus": "scrape-password"})
    receiver = SecureReceiver(write_plain_receiver_config(tmp_path, fake.url), tmp_path / "receiver.log", web,
                              certificates.ca, ("prometheus", "scrape-password"))
    (tmp_path / "alertmanager.password").write_text(PASSWORD + "\n", encoding="utf-8")
    try:
        receiver.start()
        am_url = alertmanager(f"""
route:
  receiver: telegram
  group_by: [alertname, site]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: telegram
    webhook_configs:
      - url: {receiver.url}/alert/duty
        send_resolved: true
        http_config:
          basic_auth:
            username: alertmanager
            password_file: {tmp_path / 'alertmanager.password'}
          tls_config:
            ca_file: {certificates.ca}
""")
        alert = {"labels": {"alertname": "SiteDown", "site": "shop-7", "severity": "critical"},
                 "annotations": {"summary": "Площадка shop-7 недоступна"},
                 "startsAt": datetime.now(timezone.utc).isoformat()}
        assert requests.post(f"{am_url}/api/v2/alerts", json=[alert], timeout=5).status_code == 200
        [message] = fake.wait_for_messages(1, chat_id=GROUP_CHAT, timeout=30)
        assert "shop-7" in message.text
        # Without credentials, or with Alertmanager's user and a wrong password, a webhook is refused.
        status, headers, _ = curl("--cacert", str(certificates.ca), "-X", "POST", "--data", "{}",
                                  receiver.url + "/alert/duty")
        assert status == 401 and 'WWW-Authenticate: Basic realm="sitewatch-receiver"' in headers
        status, _, _ = curl("--cacert", str(certificates.ca), "-u", "alertmanager:wrong", "-X", "POST",
                            "--data", "{}", receiver.url + "/alert/duty")
        assert status == 401
        assert receiver.get("/metrics", auth=None).status_code == 401
        metrics = receiver.metrics()
        assert value_of_metric(metrics, "sitewatch_receiver_webhooks_total", result="accepted") >= 1
        assert value_of_metric(metrics, "sitewatch_receiver_http_auth_failures_total", reason="missing") == 2
        assert value_of_metric(metrics, "sitewatch_receiver_http_auth_failures_total", reason="wrong_password") == 1
        # SIGHUP reads the web config again (it would end a process without a handler).
        receiver.process.send_signal(signal.SIGHUP)
        wait_until(lambda: receiver.log_text().count("event=web_config_loaded") == 2, 10,
                   what="the web config to be read again")
        assert receiver.get("/-/ready").status_code == 200
        log = receiver.log_text()
        assert PASSWORD not in log and "scrape-password" not in log and "Basic " not in log
    finally:
        receiver.stop()


def test_a_stalled_handshake_holds_up_no_webhook_at_the_receiver(tmp_path, certificates, fake_telegram):
    fake = fake_telegram()
    web = write_web_config(tmp_path, certificates, {"alertmanager": PASSWORD})
    receiver = SecureReceiver(write_plain_receiver_config(tmp_path, fake.url), tmp_path / "receiver.log", web,
                              certificates.ca, ("alertmanager", PASSWORD))
    stalled = []
    try:
        receiver.start()
        for _ in range(10):
            stalled.append(socket.create_connection(("127.0.0.1", receiver.port), timeout=30))
        context = ssl.create_default_context(cafile=str(certificates.ca))
        raw = socket.create_connection(("127.0.0.1", receiver.port), timeout=30)
        stalled.append(raw)
        started = time.monotonic()
        assert receiver.get("/-/ready").status_code == 200
        assert receiver.get("/-/ready").status_code == 200
        assert time.monotonic() - started < 2
        with context.wrap_socket(socket.create_connection(("127.0.0.1", receiver.port), timeout=10),
                                 server_hostname="127.0.0.1") as fine:
            assert fine.version() in ("TLSv1.2", "TLSv1.3")
        for connection in stalled:
            assert connection.recv(100) == b""  # closed by the receiver after its handshake timeout
        assert time.monotonic() - started < 15
        metrics = receiver.metrics()
        assert value_of_metric(metrics, "sitewatch_receiver_tls_handshake_failures_total", reason="timeout") == 11
    finally:
        for connection in stalled:
            connection.close()
        receiver.stop()


def test_any_authorization_header_gets_401_or_200_from_the_receiver(tmp_path, fake_telegram):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from alertmanager.httphead import HeadProblem, parse_head
    from test_web_config import HEADER_TEXT, basic

    fake = fake_telegram()
    users = {"alertmanager": PASSWORD}
    web = write_config(tmp_path / "web.yml", "basic_auth_users:\n" + "".join(
        f"  {user}: {password_hash(password)}\n" for user, password in users.items()))
    receiver = SecureReceiver(write_plain_receiver_config(tmp_path, fake.url), tmp_path / "receiver.log", web, None,
                              ("alertmanager", PASSWORD))
    valid = basic("alertmanager", PASSWORD)
    try:
        receiver.start()

        def answer(header_value: str | None) -> int:
            lines = ["GET /-/healthy HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
            if header_value is not None:
                lines.append(f"Authorization: {header_value}")
            head = "\r\n".join(lines).encode("latin-1")
            with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as connection:
                connection.sendall(head + b"\r\n\r\n")
                data = b""
                while chunk := connection.recv(65536):
                    data += chunk
            try:
                parse_head(head)
            except HeadProblem as problem:  # the head reader refuses it before anyone looks at credentials
                assert int(data.split(b" ", 2)[1]) == problem.status
                return problem.status
            return int(data.split(b" ", 2)[1])

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.one_of(st.none(), HEADER_TEXT,
                         st.builds(lambda rest: "Basic " + rest, HEADER_TEXT),
                         st.builds(basic, st.sampled_from(["alertmanager", "nobody", ""]), st.text(max_size=80)),
                         st.just(valid)))
        def answered(header_value):
            status = answer(header_value)
            assert status in (200, 401) or (status == 400 and header_value), (header_value, status)
            if header_value == valid:
                assert status == 200

        answered()
        assert receiver.get("/-/ready").status_code == 200  # still serving
        assert "Traceback" not in receiver.log_text()
    finally:
        receiver.stop()


# --- the ingest --------------------------------------------------------------------------------------------


def test_the_ingest_serves_its_pages_and_uploads_behind_the_web_config(tmp_path, certificates):
    from ingest_data.ingest_kit import SECRETS, write_ingest_config

    web = write_web_config(tmp_path, certificates, {"prometheus": PASSWORD})
    port = free_port()
    log = tmp_path / "ingest.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "run", "--config", str(write_ingest_config(tmp_path)),
         "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **SECRETS})
    url = f"https://127.0.0.1:{port}"
    tls = ["--cacert", str(certificates.ca)]
    try:
        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the ingest exited: {log.read_text()}")
            try:
                return requests.get(url + "/-/healthy", verify=str(certificates.ca), auth=("prometheus", PASSWORD),
                                    timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(serving, 30, what="the ingest to serve over TLS")
        status, headers, _ = curl(*tls, url + "/metrics")
        assert status == 401 and 'WWW-Authenticate: Basic realm="sitewatch-ingest"' in headers
        status, _, body = curl(*tls, "-u", f"prometheus:{PASSWORD}", url + "/metrics")
        assert status == 200 and "sitewatch_ingest_http_auth_failures_total" in body
        status, _, _ = curl(*tls, "-X", "POST", "-F", "file=@/dev/null", url + "/upload?token=anything")
        assert status == 401  # an upload needs the credentials too, before its token is looked at
        status, _, body = curl(url.replace("https:", "http:") + "/metrics")
        assert status == 400 and "https://" in body
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "event=http_auth_refused reason=missing" in log.read_text()


def test_a_flood_of_new_wrong_passwords_neither_grows_the_receiver_nor_locks_out_alertmanager(tmp_path,
                                                                                              fake_telegram):
    # Each new password costs a bcrypt check on one thread; queued without a bound, a flood held every
    # connection until its turn (gigabytes) and kept the right user waiting behind it for minutes.
    import threading

    from test_web_config import basic

    fake = fake_telegram()
    web = write_config(tmp_path / "web.yml", f"basic_auth_users:\n  alertmanager: '{password_hash(PASSWORD, 11)}'\n")
    receiver = SecureReceiver(write_plain_receiver_config(tmp_path, fake.url), tmp_path / "receiver.log", web, None,
                              ("alertmanager", PASSWORD))
    stop = threading.Event()
    statuses: list[int] = []

    def flood(worker: int) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            try:
                statuses.append(requests.get(receiver.url + "/-/ready", timeout=10,
                                             auth=("alertmanager", f"guess-{worker}-{number}")).status_code)
            except requests.RequestException:
                statuses.append(0)

    try:
        receiver.start()  # its ready probe is the right user's first check: remembered from now on
        workers = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(24)]
        for worker in workers:
            worker.start()
        time.sleep(3)
        waits = []
        for _ in range(5):
            started = time.monotonic()
            assert receiver.get("/-/ready").status_code == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.3)
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
        assert max(waits) < 2.0, waits
        assert statuses and set(statuses) <= {401}, set(statuses)
        metrics = receiver.metrics()
        busy = [line for line in metrics.splitlines()
                if line.startswith('sitewatch_receiver_http_auth_failures_total{reason="busy"}')]
        assert busy and float(busy[0].split()[-1]) > 0, busy
        rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{receiver.process.pid}/status").read_text()
                           .splitlines() if line.startswith("VmRSS:")))
        assert rss_kib < 300 * 1024, f"the receiver grew to {rss_kib // 1024} MiB"
        assert "Traceback" not in receiver.log_text()
    finally:
        stop.set()
        receiver.stop()
