"""The ``http`` check end to end: a YAML config loaded as users write it, run against real local servers.

Every server here is a `ThreadingHTTPServer` on 127.0.0.1 with an ephemeral port, started by a fixture
and stopped (its handler threads joined) in the fixture's teardown. TLS cases use a self-signed
certificate made in the test with `cryptography`. The only other network activity is the resolution of
a ``.invalid`` name, which fails locally or at the resolver by definition (RFC 6761).

Assertions are on what the user sees: success, the reason word, a readable message and the samples.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.checks.base import Result
from exporter.config import load_config
from exporter.config.model import CheckConfig
from exporter.httpclient import HttpFailure, HttpRequest, fetch
from conftest import run_check as run

PROJECT = Path(__file__).resolve().parents[1]
MAINTENANCE = "Сервер в режиме обслуживания"
MAIN_PAGE = "<html><body><h1>Главная страница</h1><p>Добро пожаловать</p></body></html>"
USERNAME = "operator"
PASSWORD = "s3cret-Pa55word"


# -- a local web server ------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class LocalSite:
    """A running local server: its base URL, what it received, and a switch that ends slow answers."""

    base: str
    port: int
    stop: threading.Event
    seen: list[Seen] = field(default_factory=list)
    # Like nginx and Apache, answer a client that asked for "Connection: close" with the same header.
    announce_close: bool = True

    def url(self, path: str) -> str:
        return self.base + path


def _send(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
          content_type: str = "text/html; charset=utf-8", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    if handler.server.site.announce_close:  # type: ignore[attr-defined]
        handler.send_header("Connection", "close")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _route(handler: "_Handler") -> None:
    site: LocalSite = handler.server.site  # type: ignore[attr-defined]
    path = handler.path.split("?", 1)[0]
    if path == "/ok":
        _send(handler, 200, MAIN_PAGE.encode())
    elif path == "/missing":
        _send(handler, 404, b"<html>Not here</html>")
    elif path == "/private":
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        if handler.headers.get("Authorization") == expected:
            _send(handler, 200, "<html>Личный кабинет</html>".encode())
        else:
            _send(handler, 401, b"<html>Who are you?</html>", headers={"WWW-Authenticate": 'Basic realm="shop"'})
    elif path == "/maintenance-cp1251":
        body = f"<html><body><h1>{MAINTENANCE}</h1></body></html>".encode("cp1251")
        _send(handler, 200, body, content_type="text/html; charset=windows-1251")
    elif path == "/maintenance-no-charset":
        body = f"<html><body><h1>{MAINTENANCE}</h1></body></html>".encode("cp1251")
        _send(handler, 200, body, content_type="text/html")
    elif path == "/slow":
        # Answers only after 3 s, or never if the test ends first.
        if site.stop.wait(3):
            return
        _send(handler, 200, MAIN_PAGE.encode())
    elif path == "/sluggish":
        site.stop.wait(0.3)
        _send(handler, 200, MAIN_PAGE.encode())
    elif path == "/trickle":
        # Headers at once, then one byte every 0.2 s for as long as the test runs.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Connection", "close")  # the body ends when the connection does
        handler.end_headers()
        handler.wfile.flush()
        while not site.stop.wait(0.2):
            handler.wfile.write(b".")
            handler.wfile.flush()
    elif path == "/big":
        _send(handler, 200, b"x" * 200_000, content_type="text/plain")
    elif path == "/redirect":
        _send(handler, 302, b"", headers={"Location": "/ok"})
    elif path == "/loop":
        _send(handler, 302, b"", headers={"Location": "/loop"})
    else:
        _send(handler, 404, b"no such route")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # still one request per connection: the checker asks for "Connection: close"
    timeout = 5  # a client that connects and says nothing cannot hold a thread past the test

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # in this thread, so a rejected certificate never blocks accept()
        super().setup()

    def _any(self) -> None:
        site: LocalSite = self.server.site  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        site.seen.append(Seen(self.command, self.path, {k: v for k, v in self.headers.items()}, body))
        try:
            _route(self)
        except OSError:  # the client gave up (timeout, size limit): nothing left to answer
            pass

    do_GET = do_HEAD = do_POST = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every handler thread

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed TLS handshakes and dropped clients are expected here


def _start(tls: ssl.SSLContext | None = None):
    server = _Server(("127.0.0.1", 0), _Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    port = server.server_address[1]
    site = LocalSite(base=f"{'https' if tls else 'http'}://127.0.0.1:{port}", port=port, stop=threading.Event())
    server.site = site  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="test-http-server", daemon=True)
    thread.start()

    def stop() -> None:
        site.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

    return site, stop


@pytest.fixture
def web() -> LocalSite:
    site, stop = _start()
    yield site
    stop()


# -- a self-signed certificate for 127.0.0.1 -----------------------------------------------------------


@dataclass
class Certificate:
    pem_file: Path
    key_file: Path
    not_valid_after: datetime.datetime


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = now + datetime.timedelta(days=42)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem_file = folder / "cert.pem"
    key_file = folder / "key.pem"
    pem_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(pem_file, key_file, not_after)


@pytest.fixture
def tls_web(certificate: Certificate) -> LocalSite:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.pem_file, certificate.key_file)
    site, stop = _start(context)
    yield site
    stop()


# -- configs and runs --------------------------------------------------------------------------------


def _write_config(folder: Path, checks: list[dict[str, Any]]) -> Path:
    config = folder / "sitewatch.yml"
    config.write_text(yaml.safe_dump({"sites": [{"id": "shop", "checks": checks}]}, allow_unicode=True),
                      encoding="utf-8")
    return config


def load_http_check(folder: Path, options: dict[str, Any], timeout: str = "2s") -> CheckConfig:
    """The check as `load_config` builds it from YAML a user would write."""
    config = load_config(_write_config(folder, [{"name": "main", "timeout": timeout, "http": options}]))
    (check,) = config.checks()
    return check




def run_http(folder: Path, options: dict[str, Any], timeout: str = "2s") -> Result:
    return run(load_http_check(folder, options, timeout))


def values(result: Result) -> dict[str, float]:
    return {sample.name: sample.value for sample in result.samples}


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released, so the OS just handed it out)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- status codes ------------------------------------------------------------------------------------


def test_a_200_page_passes_with_its_status_and_duration_samples(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok")})

    assert result.success, result.message
    assert result.reason is None
    assert values(result)["sitewatch_http_status_code"] == 200
    assert 0 < values(result)["sitewatch_http_duration_seconds"] < 2
    assert result.figures.startswith("HTTP 200 in ")
    assert [seen.path for seen in web.seen] == ["/ok"]


def test_a_404_page_fails_with_reason_status_naming_the_code_and_the_expected_codes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/missing")})

    assert not result.success
    assert result.reason == "status"
    assert "404" in result.message
    assert "expected 200-299" in result.message
    assert web.url("/missing") in result.message
    assert values(result)["sitewatch_http_status_code"] == 404


@pytest.mark.parametrize("codes", ["4xx", "400-499", [200, 404], 404])
def test_a_404_page_passes_when_valid_status_codes_include_it(tmp_path, web, codes):
    result = run_http(tmp_path, {"url": web.url("/missing"), "valid_status_codes": codes})

    assert result.success, result.message
    assert values(result)["sitewatch_http_status_code"] == 404


@pytest.mark.parametrize("codes", ["2xx", "200-399", [200, 404]])
def test_a_200_page_passes_with_valid_status_codes_written_as_a_class_a_range_or_a_list(tmp_path, web, codes):
    result = run_http(tmp_path, {"url": web.url("/ok"), "valid_status_codes": codes})

    assert result.success, result.message


def test_a_404_outside_a_custom_range_names_that_range_in_the_message(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/missing"), "valid_status_codes": ["2xx", 301]})

    assert result.reason == "status"
    assert "expected 200-299, 301" in result.message


# -- authentication ----------------------------------------------------------------------------------


def test_a_page_behind_basic_auth_fails_with_reason_auth_without_credentials(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/private")})

    assert not result.success
    assert result.reason == "auth"
    assert "401" in result.message
    assert "credentials" in result.message
    assert "Authorization" not in web.seen[0].headers


def test_basic_auth_with_the_right_password_from_the_environment_passes(tmp_path, web, monkeypatch):
    monkeypatch.setenv("SHOP_WEB_PASSWORD", PASSWORD)
    result = run_http(tmp_path, {"url": web.url("/private"),
                                 "basic_auth": {"username": USERNAME, "password": {"env": "SHOP_WEB_PASSWORD"}}})

    assert result.success, result.message
    assert values(result)["sitewatch_http_status_code"] == 200
    assert web.seen[0].headers["Authorization"].startswith("Basic ")


def test_basic_auth_with_a_wrong_password_fails_with_reason_auth(tmp_path, web, monkeypatch):
    monkeypatch.setenv("SHOP_WEB_PASSWORD", "not-the-password")
    result = run_http(tmp_path, {"url": web.url("/private"),
                                 "basic_auth": {"username": USERNAME, "password": {"env": "SHOP_WEB_PASSWORD"}}})

    assert result.reason == "auth"
    assert "not-the-password" not in result.message


# -- the body ----------------------------------------------------------------------------------------


def test_a_200_page_without_the_expected_text_fails_with_reason_body(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "must_contain": "Корзина покупателя"})

    assert not result.success
    assert result.reason == "body"
    assert "does not contain /Корзина покупателя/" in result.message
    assert values(result)["sitewatch_http_status_code"] == 200


def test_a_200_page_with_the_expected_text_passes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "must_contain": ["Главная страница", "Добро"]})

    assert result.success, result.message


@pytest.mark.parametrize("path", ["/maintenance-cp1251", "/maintenance-no-charset"],
                         ids=["charset-windows-1251-declared", "no-charset-declared"])
def test_maintenance_banner_on_a_200_page_fails_with_reason_body(tmp_path, web, path):
    result = run_http(tmp_path, {"url": web.url(path), "must_not_contain": ["Ошибка сборки", "режиме обслуживания"]})

    assert not result.success
    assert result.reason == "body"
    assert "/режиме обслуживания/" in result.message
    assert "'режиме обслуживания'" in result.message  # what matched, quoted
    assert values(result)["sitewatch_http_status_code"] == 200


def test_must_not_contain_quotes_the_whole_text_a_regex_matched(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/maintenance-cp1251"), "must_not_contain": r"Сервер в \w+"})

    assert result.reason == "body"
    assert "'Сервер в режиме'" in result.message


def test_a_page_without_the_forbidden_text_passes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "must_not_contain": "режиме обслуживания"})

    assert result.success, result.message


def test_a_body_bigger_than_body_size_limit_fails_with_reason_body_size(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/big"), "body_size_limit": "100KB"})

    assert not result.success
    assert result.reason == "body_size"
    assert "body_size_limit" in result.message
    assert web.url("/big") in result.message


def test_a_body_within_body_size_limit_passes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/big"), "body_size_limit": "1MB"})

    assert result.success, result.message
    assert "200000 bytes" in result.figures


# -- time ------------------------------------------------------------------------------------------


def test_a_server_that_answers_after_the_timeout_fails_with_reason_timeout_in_time(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/slow")}, timeout="1s")

    assert not result.success
    assert result.reason == "timeout"
    assert f"127.0.0.1:{web.port}" in result.message
    assert result.duration < 1.5
    assert values(result)["sitewatch_http_status_code"] == 0


def test_a_body_that_trickles_forever_fails_with_reason_timeout_in_time(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/trickle")}, timeout="1s")

    assert not result.success
    assert result.reason == "timeout"
    assert "1s" in result.message
    assert result.duration < 2.0


def test_a_body_that_trickles_forever_frees_the_fetch_thread_at_the_deadline(web):
    outcome: list[BaseException | object] = []

    def worker() -> None:
        try:
            outcome.append(fetch(HttpRequest(url=web.url("/trickle"), timeout=0.5)))
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=worker, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(1.5)
    finished_after = time.monotonic() - started
    web.stop.set()  # lets the worker end in any case before the server is closed
    thread.join(5)

    assert finished_after < 1.5, "fetch() was still reading the trickling body well after its 0.5 s deadline"
    assert isinstance(outcome[0], HttpFailure) and outcome[0].reason == "timeout"


def test_a_page_slower_than_max_duration_fails_with_reason_slow(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/sluggish"), "max_duration": "100ms"})

    assert not result.success
    assert result.reason == "slow"
    assert "max_duration" in result.message
    assert "0.1s" in result.message
    assert values(result)["sitewatch_http_status_code"] == 200
    assert values(result)["sitewatch_http_duration_seconds"] >= 0.3


def test_a_page_faster_than_max_duration_passes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "max_duration": "1500ms"})

    assert result.success, result.message


# -- redirects ---------------------------------------------------------------------------------------


def test_a_redirect_to_a_good_page_is_followed_and_passes(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/redirect"), "must_contain": "Главная страница"})

    assert result.success, result.message
    assert values(result)["sitewatch_http_status_code"] == 200
    assert [seen.path for seen in web.seen] == ["/redirect", "/ok"]


def test_a_redirect_fails_with_reason_status_when_follow_redirects_is_off(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/redirect"), "follow_redirects": False})

    assert not result.success
    assert result.reason == "status"
    assert "302" in result.message
    assert values(result)["sitewatch_http_status_code"] == 302
    assert [seen.path for seen in web.seen] == ["/redirect"]


def test_a_redirect_loop_fails_with_reason_redirects(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/loop"), "max_redirects": 3})

    assert not result.success
    assert result.reason == "redirects"
    assert "more than 3 redirects" in result.message
    assert web.url("/loop") in result.message


# -- the request -------------------------------------------------------------------------------------


def test_custom_headers_reach_the_server(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"),
                                 "headers": {"X-Shop-Id": "магазин-7".encode().hex(), "Accept-Language": "ru"}})

    assert result.success, result.message
    (seen,) = web.seen
    assert seen.headers["X-Shop-Id"] == "магазин-7".encode().hex()
    assert seen.headers["Accept-Language"] == "ru"
    assert seen.headers["User-Agent"].startswith("sitewatch/")


def test_the_configured_method_is_used(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "method": "HEAD"})

    assert result.success, result.message
    assert [seen.method for seen in web.seen] == ["HEAD"]


# -- connection failures -----------------------------------------------------------------------------


def test_a_port_nothing_listens_on_fails_with_reason_refused(tmp_path):
    port = free_port()
    result = run_http(tmp_path, {"url": f"http://127.0.0.1:{port}/"})

    assert not result.success
    assert result.reason == "refused"
    assert f"127.0.0.1:{port}" in result.message
    assert "refused" in result.message
    assert values(result)["sitewatch_http_status_code"] == 0


def test_a_host_name_that_does_not_resolve_fails_with_reason_dns(tmp_path):
    result = run_http(tmp_path, {"url": "http://no-such-shop.sitewatch-test.invalid/"}, timeout="2s")

    assert not result.success
    assert result.reason == "dns"
    assert "no-such-shop.sitewatch-test.invalid" in result.message
    assert values(result)["sitewatch_http_status_code"] == 0


# -- TLS -----------------------------------------------------------------------------------------------


def test_a_self_signed_certificate_fails_with_reason_tls_when_verified(tmp_path, tls_web):
    result = run_http(tmp_path, {"url": tls_web.url("/ok")})

    assert not result.success
    assert result.reason == "tls"
    assert f"127.0.0.1:{tls_web.port}" in result.message
    assert "certificate" in result.message.lower()
    assert tls_web.seen == []  # no request was sent over an untrusted connection




@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_self_signed_certificate_passes_without_verification(tmp_path, tls_web):
    result = run_http(tmp_path, {"url": tls_web.url("/ok"), "tls": {"verify": False},
                                 "must_contain": "Главная страница"})

    assert result.success, result.message
    assert values(result)["sitewatch_http_status_code"] == 200
    assert len(tls_web.seen) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_certificate_expiry_is_reported_when_the_server_answers_connection_close(tmp_path, tls_web, certificate):
    result = run_http(tmp_path, {"url": tls_web.url("/ok"), "tls": {"verify": False}})

    assert result.success, result.message
    expiry = values(result).get("sitewatch_tls_cert_expiry_timestamp_seconds")
    assert expiry == pytest.approx(certificate.not_valid_after.timestamp(), abs=1)
    assert f"certificate until {certificate.not_valid_after:%Y-%m-%d}" in result.figures


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_certificate_expiry_is_reported_when_the_server_does_not_announce_the_close(
        tmp_path, tls_web, certificate):
    tls_web.announce_close = False
    result = run_http(tmp_path, {"url": tls_web.url("/ok"), "tls": {"verify": False}})

    assert result.success, result.message
    expiry = values(result)["sitewatch_tls_cert_expiry_timestamp_seconds"]
    assert expiry == pytest.approx(certificate.not_valid_after.timestamp(), abs=1)
    assert f"certificate until {certificate.not_valid_after:%Y-%m-%d}" in result.figures


def test_a_self_signed_certificate_passes_when_given_as_ca_file(tmp_path, tls_web, certificate):
    result = run_http(tmp_path, {"url": tls_web.url("/ok"), "tls": {"ca_file": str(certificate.pem_file)},
                                 "must_contain": "Главная страница"})

    assert result.success, result.message
    assert values(result)["sitewatch_http_status_code"] == 200


def test_a_plain_http_page_reports_no_certificate_expiry(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok")})

    assert "sitewatch_tls_cert_expiry_timestamp_seconds" not in values(result)
    assert "certificate" not in result.figures


# -- the one-shot CLI ----------------------------------------------------------------------------------


def _cli(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config), *extra],
                          capture_output=True, text=True, encoding="utf-8", timeout=30, cwd=PROJECT)


def test_check_command_exits_1_and_prints_ok_and_fail_rows_with_the_reason_and_message(tmp_path, web):
    config = _write_config(tmp_path, [
        {"name": "main-page", "timeout": "2s", "http": {"url": web.url("/ok"), "must_contain": "Главная"}},
        {"name": "catalog", "timeout": "2s", "http": {"url": web.url("/missing")}},
    ])

    done = _cli(config)

    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:6] == ["SITE", "CHECK", "TYPE", "RESULT", "REASON", "TIME"]
    ok_row = next(line for line in lines if line.startswith("shop") and "main-page" in line)
    fail_row = next(line for line in lines if line.startswith("shop") and "catalog" in line)
    assert ok_row.split()[:4] == ["shop", "main-page", "http", "OK"]
    assert fail_row.split()[:5] == ["shop", "catalog", "http", "FAIL", "status"]
    message = next(line for line in lines if line.startswith("shop/catalog: "))
    assert "HTTP 404" in message and "expected 200-299" in message
    assert "1 of 2 checks passed." in done.stdout


def test_check_command_exits_0_when_every_check_passes(tmp_path, web):
    config = _write_config(tmp_path, [
        {"name": "main-page", "timeout": "2s", "http": {"url": web.url("/ok")}},
        {"name": "moved", "timeout": "2s", "http": {"url": web.url("/redirect")}},
    ])

    done = _cli(config)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "2 of 2 checks passed." in done.stdout


def test_check_command_prints_json_with_the_reason_when_asked(tmp_path, web):
    config = _write_config(tmp_path, [
        {"name": "main-page", "timeout": "2s", "http": {"url": web.url("/ok")}},
        {"name": "catalog", "timeout": "2s", "http": {"url": web.url("/missing")}},
    ])

    done = _cli(config, "--format", "json")

    assert done.returncode == 1, done.stderr
    records = {record["check"]: record for record in json.loads(done.stdout)}
    assert records["main-page"]["success"] is True
    assert records["main-page"]["reason"] is None
    assert records["catalog"]["success"] is False
    assert records["catalog"]["reason"] == "status"
    assert "404" in records["catalog"]["message"]
    assert {"metric": "sitewatch_http_status_code", "labels": {}, "value": 404} in records["catalog"]["values"]


def test_a_header_value_can_be_a_secret_and_reaches_the_server(tmp_path, web, monkeypatch):
    monkeypatch.setenv("SW_TEST_API_KEY", "k3y-from-the-environment")
    result = run_http(tmp_path, {"url": web.url("/ok"), "headers": {"X-Api-Key": {"env": "SW_TEST_API_KEY"},
                                                                    "X-Site": "shop-12"}})
    assert result.success, result.message
    assert web.seen[-1].headers["X-Api-Key"] == "k3y-from-the-environment"
    assert web.seen[-1].headers["X-Site"] == "shop-12"


def test_a_post_sends_its_body(tmp_path, web):
    result = run_http(tmp_path, {"url": web.url("/ok"), "method": "POST", "body": "ping=1&who=sitewatch"})
    assert result.success, result.message
    assert web.seen[-1].method == "POST" and web.seen[-1].body == b"ping=1&who=sitewatch"


def test_a_relative_ca_file_is_read_from_the_config_folder(tmp_path, tls_web, certificate, monkeypatch):
    (tmp_path / "ca.pem").write_bytes(certificate.pem_file.read_bytes())
    monkeypatch.chdir("/")  # a service rarely runs in its config's folder
    result = run_http(tmp_path, {"url": tls_web.url("/ok"), "tls": {"ca_file": "ca.pem"}})
    assert result.success, result.message


def test_a_missing_ca_file_is_a_config_error_naming_where_it_was_looked_for(tmp_path):
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as error:
        load_http_check(tmp_path, {"url": "https://127.0.0.1:1/", "tls": {"ca_file": "nope.pem"}})
    message = str(error.value)
    assert "sites[0].checks[0].http.tls.ca_file" in message
    assert str(tmp_path / "nope.pem") in message


def test_a_url_with_an_impossible_port_costs_its_own_check_not_the_scrape(tmp_path):
    """sitewatch_check_target_info must never make the whole /metrics (or the pushed payload) fail."""
    from exporter.collector import CheckCollector, ExporterStatus
    from exporter.config import load_config
    from exporter.scheduler import site_labels
    from exporter.state import CheckState

    path = tmp_path / "site.yml"
    path.write_text('sites:\n  - id: shop\n    checks:\n'
                    '      - {name: odd, http: {url: "http://127.0.0.1:99999/"}}\n'
                    '      - {name: pc, ping: {host: 10.0.0.5}}\n', encoding="utf-8")
    config = load_config(path)
    states = [CheckState(check, site_labels(config, check)) for check in config.checks()]
    families = list(CheckCollector(lambda: states, ExporterStatus()).collect())
    targets = {s.labels["check"]: s.labels["target"] for f in families for s in f.samples
               if s.name == "sitewatch_check_target_info"}
    assert targets["pc"] == "10.0.0.5" and targets["odd"] == "http://127.0.0.1/"


def test_a_maintenance_page_served_as_503_is_maintenance_not_a_broken_page(tmp_path):
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = "<h1>Сервер: режим обслуживания</h1>".encode()
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from conftest import run_check
        from exporter.config import load_config

        path = tmp_path / "site.yml"
        path.write_text('sites:\n  - id: shop\n    checks:\n      - name: page\n        http:\n'
                        f'          url: "http://127.0.0.1:{server.server_address[1]}/"\n'
                        '          maintenance_text: "режим обслуживания"\n', encoding="utf-8")
        result = run_check(load_config(path).checks()[0])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.reason == "maintenance", result.message
