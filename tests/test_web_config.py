"""The web config file (``--web.config.file``): what it refuses and how, how its basic auth behaves, the
``hash-password`` command, and a fuzz of the Authorization header against a real server socket.

The certificates here are made by `make_certificates` (a CA, a server certificate for 127.0.0.1 and a
client certificate it signs); test_web_config_servers.py uses them with real Prometheus, Alertmanager and curl.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT

from exporter.config import ConfigError
from exporter.httpauth import (ACCEPTED, BUSY, MALFORMED, MISSING, UNKNOWN_USER, WRONG_PASSWORD, BasicAuth,
                               Verdicts)
from exporter.server import HttpServer
from exporter.webconfig import load_web_config
from exporter.webguard import MetricNames, WebGuard

PASSWORD = "correct horse battery staple"


@dataclass
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by the same CA for grafana.local
    other_client_key: Path


def _key_and_name(common_name: str):
    return ec.generate_private_key(ec.SECP256R1()), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certificates(folder: Path, client_san: str = "prometheus.local") -> Certificates:
    """A CA of its own, a server certificate for 127.0.0.1 and localhost, client certificates for `client_san`
    and for grafana.local."""
    now = datetime.now(timezone.utc)
    ca_key, ca_name = _key_and_name("sitewatch test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def issued(common_name: str, names: list[x509.GeneralName], usage) -> tuple[bytes, bytes]:
        key, name = _key_and_name(common_name)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    server = issued("127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
                    ExtendedKeyUsageOID.SERVER_AUTH)
    client = issued("prometheus", [x509.DNSName(client_san)], ExtendedKeyUsageOID.CLIENT_AUTH)
    other_client = issued("grafana", [x509.DNSName("grafana.local")], ExtendedKeyUsageOID.CLIENT_AUTH)
    files = Certificates(folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "client.crt",
                         folder / "client.key", folder / "other-client.crt", folder / "other-client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server[0])
    files.server_key.write_bytes(server[1])
    files.client_cert.write_bytes(client[0])
    files.client_key.write_bytes(client[1])
    files.other_client_cert.write_bytes(other_client[0])
    files.other_client_key.write_bytes(other_client[1])
    return files


def password_hash(password: str = PASSWORD, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


def web_config(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    return str(caught.value)


# --- what the file may say ---------------------------------------------------------------------------------


def test_a_config_of_tls_users_and_headers_is_read_with_paths_relative_to_its_folder(tmp_path, certificates):
    folder = tmp_path / "etc"
    folder.mkdir()
    for source in (certificates.server_cert, certificates.server_key, certificates.ca):
        (folder / source.name).write_bytes(source.read_bytes())
    digest = password_hash()
    config = load_web_config(web_config(folder, f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: ca.crt
  min_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  curve_preferences: [CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  prometheus: {digest}
"""))
    assert config.tls is not None and config.tls.client_auth == "VerifyClientCertIfGiven"
    assert config.files == (folder / "web.yml", folder / "server.crt", folder / "server.key", folder / "ca.crt")
    assert config.headers == (("X-Frame-Options", "deny"), ("Strict-Transport-Security", "max-age=31536000"))
    assert config.users == {"prometheus": digest.encode()}


def test_an_empty_file_is_a_config_without_tls_or_users(tmp_path):
    config = load_web_config(web_config(tmp_path, "# nothing yet\n"))
    assert config.tls is None and config.users == {} and config.headers == ()


@pytest.mark.parametrize("text, line, expected", [
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_fiel: other.crt\n", 4,
     "tls_server_config.cert_fiel: expected one of the keys cert_file, key_file"),
    ("basic_auth_users: {}\nhttp_server_config:\n  headers:\n    X-Powered-By: sitewatch\n", 4,
     "http_server_config.headers.X-Powered-By: expected one of the headers Strict-Transport-Security"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", 3,
     "http_server_config.headers.X-Frame-Options: expected one of deny, sameorigin"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", 2,
     "tls_server_config.cert_file: expected a certificate file (PEM) that exists (looked for "),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n", 4,
     "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got the string 'TLS14'"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
     "  max_version: TLS12\n", 4, "tls_server_config.min_version: expected a version no higher than max_version"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
     4, "client_auth_type: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert: Python"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", 4,
     "tls_server_config.client_auth_type: expected client_ca_file (or client_ca) beside it"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n", 2,
     "client_auth_type: expected VerifyClientCertIfGiven or RequireAndVerifyClientCert: a client CA is given"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_RC4]\n",
     4, "tls_server_config.cipher_suites[0]: expected one of TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
     "  curve_preferences: [X25519, CurveP256]\n", 4, "expected one curve: Python's ssl sets a single curve"),
    ("tls_server_config:\n  cert_file: server.crt\n", 2,
     "tls_server_config.key_file: expected a value: tls_server_config turns TLS on"),
    ("tls_server_config:\n  cert_file: server.key\n  key_file: server.crt\n", 2,
     "tls_server_config.cert_file: expected a PEM certificate file"),
    ("rate_limit:\n  interval: 1s\n  burst: 10\n", 2, "rate_limit.interval: expected 0 or no rate_limit"),
    ("basic_auth_users:\n  'ivan:petrov': $2y$04$abcdefghijklmnopqrstuu\n", 2,
     "basic_auth_users.ivan: expected a user name: text without ':'"),  # the part after ':' may be a password
])
def test_a_mistake_is_named_with_the_file_line_path_and_expectation(tmp_path, certificates, text, line, expected):
    for source in (certificates.server_cert, certificates.server_key, certificates.ca):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    message = refusal(web_config(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'web.yml'}: line {line}: "), message
    assert expected in message, message


@pytest.mark.parametrize("written", [PASSWORD, "$2y$10$tooshort", "hunter2", "12345",
                                     "'$1$abcdefgh$abcdefghijklmnopqrstuv'"])
def test_a_password_where_a_hash_belongs_is_refused_without_being_shown(tmp_path, written):
    message = refusal(web_config(tmp_path, f"basic_auth_users:\n  prometheus: {written}\n"))
    assert "line 2: basic_auth_users.prometheus: expected a bcrypt hash" in message
    assert "hash-password" in message and "not shown" in message
    assert written.strip("'") not in message


def test_a_password_written_on_the_users_line_itself_is_not_shown(tmp_path):
    message = refusal(web_config(tmp_path, f"basic_auth_users: prometheus:{PASSWORD}\n"))
    assert "basic_auth_users: expected a mapping of user names to bcrypt hashes" in message
    assert PASSWORD not in message


def test_an_inline_key_is_refused_without_being_shown(tmp_path, certificates):
    key_text = certificates.server_key.read_text()
    (tmp_path / "server.crt").write_bytes(certificates.server_cert.read_bytes())
    text = "tls_server_config:\n  cert_file: server.crt\n  key: |\n" + "".join(f"    {line}\n"
                                                                             for line in key_text.splitlines())
    message = refusal(web_config(tmp_path, text))
    assert "tls_server_config.key: expected no inline key" in message
    assert "PRIVATE KEY" not in message and key_text.splitlines()[1] not in message


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path, certificates):
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")
    message = refusal(web_config(tmp_path, f"tls_server_config:\n  cert_file: {certificates.server_cert}\n"
                                           f"  key_file: {other.server_key}\n"))
    assert "line 3: tls_server_config.key_file: expected the private key of the certificate in cert_file" in message


def test_the_exporter_and_the_receiver_exit_2_on_a_web_config_they_cannot_use(tmp_path):
    (tmp_path / "site.yml").write_text("sites:\n  - id: shop\n    checks: []\n", encoding="utf-8")
    web = web_config(tmp_path, f"basic_auth_users:\n  prometheus: {PASSWORD}\n")
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "run", "--config", str(tmp_path / "site.yml"),
                           "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"config error: {web}: line 2: basic_auth_users.prometheus: expected a bcrypt")
    assert PASSWORD not in done.stderr + done.stdout


def test_the_receiver_refuses_users_that_its_own_bearer_token_would_lock_out(tmp_path):
    from receiver_kit import write_receiver_config

    config = write_receiver_config(tmp_path, "http://127.0.0.1:9")  # has auth.bearer_token
    web = web_config(tmp_path, f"basic_auth_users:\n  alertmanager: {password_hash()}\n")
    done = subprocess.run([sys.executable, "-m", "alertmanager.cli", "run", "--config", str(config),
                           "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(web), "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"config error: {web}: basic_auth_users: expected none while {config} has auth.bearer_token" in done.stderr


def test_the_example_file_loads_beside_its_certificates(tmp_path, certificates):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "pos-01.crt").write_bytes(certificates.server_cert.read_bytes())
    (tmp_path / "tls" / "pos-01.key").write_bytes(certificates.server_key.read_bytes())
    example = (ROOT / "examples" / "web-config.yml").read_text(encoding="utf-8")
    config = load_web_config(web_config(tmp_path, example))
    assert config.tls is not None and set(config.users) == {"prometheus", "alertmanager"}
    assert ("X-Content-Type-Options", "nosniff") in config.headers


@pytest.mark.parametrize("user, password, fits", [("alertmanager", PASSWORD, True),
                                                  ("alertmanager", "another", False),
                                                  ("grafana", PASSWORD, False)])
def test_the_receivers_own_basic_auth_must_be_one_of_the_users(tmp_path, monkeypatch, user, password, fits):
    from alertmanager.cli import _fits
    from alertmanager.config import load_receiver_config
    from receiver_kit import write_receiver_config

    monkeypatch.setenv("WEBHOOK_TEST_PASSWORD", password)
    config_text = write_receiver_config(tmp_path, "http://127.0.0.1:9").read_text(encoding="utf-8").replace(
        "auth:\n  bearer_token: {file: webhook.token}",
        f"auth:\n  basic_auth: {{username: {user}, password: {{env: WEBHOOK_TEST_PASSWORD}}}}")
    (tmp_path / "receiver.yml").write_text(config_text, encoding="utf-8")
    config = load_receiver_config(tmp_path / "receiver.yml")
    web = load_web_config(web_config(tmp_path, f"basic_auth_users:\n  alertmanager: {password_hash()}\n"))
    if fits:
        _fits(config, web)
        return
    with pytest.raises(ConfigError) as caught:
        _fits(config, web)
    assert f"basic_auth_users: expected the user {user!r} of auth.basic_auth in" in str(caught.value)
    assert password not in str(caught.value)


# --- basic auth: outcomes, the cache, timing --------------------------------------------------------------


def test_each_kind_of_credentials_gets_its_outcome():
    auth = BasicAuth({"prometheus": password_hash().encode()}, Verdicts(), cost=4)
    assert auth.check(basic("prometheus", PASSWORD)) == ACCEPTED
    assert auth.check(basic("prometheus", "wrong")) == WRONG_PASSWORD
    assert auth.check(basic("grafana", PASSWORD)) == UNKNOWN_USER
    assert auth.check("") == MISSING
    assert auth.check("Bearer abc") == MALFORMED
    assert auth.check("Basic not-base64!") == MALFORMED
    assert auth.check("Basic " + base64.b64encode(b"no colon").decode()) == MALFORMED
    assert auth.check("basic  " + basic("prometheus", PASSWORD).split(" ")[1]) == ACCEPTED  # the scheme's case


def test_a_known_password_costs_microseconds_and_a_changed_hash_is_checked_again():
    verdicts = Verdicts()
    auth = BasicAuth({"prometheus": password_hash(cost=10).encode()}, verdicts, cost=10)
    header = basic("prometheus", PASSWORD)
    started = time.perf_counter()
    assert auth.check(header) == ACCEPTED
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(1000):
        assert auth.quick(header) == ACCEPTED
    each = (time.perf_counter() - started) / 1000
    assert first > 0.01 and each < 0.0002, (first, each)
    # The same password under a new hash (the file was edited): not believed from the cache.
    changed = BasicAuth({"prometheus": password_hash("another one", cost=4).encode()}, verdicts, cost=4)
    assert changed.quick(header) is None
    assert changed.check(header) == WRONG_PASSWORD


def test_an_unknown_user_takes_as_long_as_a_wrong_password():
    auth = BasicAuth({"prometheus": password_hash(cost=8).encode()}, Verdicts(), cost=8)

    def seconds(header: str) -> float:
        started = time.perf_counter()
        auth.check(header)
        return time.perf_counter() - started

    wrong = min(seconds(basic("prometheus", f"wrong-{n}")) for n in range(5))
    unknown = min(seconds(basic(f"nobody-{n}", "whatever")) for n in range(5))
    assert 0.5 < unknown / wrong < 2, (unknown, wrong)


def test_a_password_over_72_bytes_is_read_as_bcrypt_reads_it():
    long_password = "x" * 100
    digest = bcrypt.hashpw(long_password[:72].encode(), bcrypt.gensalt(4))
    auth = BasicAuth({"prometheus": digest}, Verdicts(), cost=4)
    assert auth.check(basic("prometheus", long_password)) == ACCEPTED


# --- hash-password ----------------------------------------------------------------------------------------


def test_hash_password_prints_a_hash_the_web_config_takes(tmp_path):
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "hash-password", "--cost", "5"],
                          input=PASSWORD + "\n", cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    assert digest.startswith("$2y$05$") and len(digest) == 60 and PASSWORD not in done.stdout + done.stderr
    config = load_web_config(web_config(tmp_path, f"basic_auth_users:\n  prometheus: {digest}\n"))
    assert BasicAuth(config.users, Verdicts(), config.usual_cost).check(basic("prometheus", PASSWORD)) == ACCEPTED


@pytest.mark.parametrize("typed, message", [("", "error: empty password"),
                                            ("я" * 40, "error: the password is 80 bytes long; bcrypt reads only")])
def test_hash_password_refuses_what_bcrypt_cannot_hash(typed, message):
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "hash-password"], input=typed + "\n", cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.startswith(message), done.stderr


# --- the Authorization header, fuzzed against a real server socket ----------------------------------------

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=80)
BASE64_OF_ANYTHING = st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode())


def _raw_get(port: int, header_value: str | None) -> int:
    lines = ["GET /metrics HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if header_value is not None:
        lines.append(f"Authorization: {header_value}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_any_authorization_header_gets_200_or_401_and_the_server_serves_on(tmp_path):
    web = web_config(tmp_path, f"basic_auth_users:\n  prometheus: {password_hash()}\n  'иван': {password_hash()}\n")
    guard = WebGuard(web, MetricNames("test_auth_failures", "test_handshake_failures", "test_reload"), "test")
    calls = []

    def app(environ, start_response):
        calls.append(environ.get("PATH_INFO"))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]

    server = HttpServer("127.0.0.1:0", app, guard=guard)
    server.start()
    try:
        valid = basic("prometheus", PASSWORD)

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(st.one_of(
            st.none(), HEADER_TEXT,
            st.builds(lambda scheme, rest: f"{scheme} {rest}", st.sampled_from(["Basic", "basic", "BASIC", "Bearer"]),
                      HEADER_TEXT | BASE64_OF_ANYTHING),
            st.builds(lambda user, password: basic(user, password), st.sampled_from(["prometheus", "иван", "x", ""]),
                      st.text(max_size=90)),
            st.just(valid), st.just(valid + " "), st.just(valid[:-2])))
        def answered(header_value):
            status = _raw_get(server.port, header_value)
            assert status in (200, 401), (header_value, status)
            if header_value is not None and header_value.strip() == valid:
                assert status == 200

        answered()
        assert _raw_get(server.port, valid) == 200  # still serving, and the right password still passes
        assert _raw_get(server.port, basic("иван", PASSWORD)) == 200  # a UTF-8 name
    finally:
        server.stop()


def test_a_flood_of_wrong_passwords_never_pushes_out_the_right_users_remembered_acceptance():
    auth = BasicAuth({"prometheus": password_hash().encode()}, Verdicts(size=16), cost=4)
    assert auth.check(basic("prometheus", PASSWORD)) == ACCEPTED
    for number in range(100):  # far more refusals than the memory holds
        assert auth.check(basic("prometheus", f"guess-{number}")) == WRONG_PASSWORD
    assert auth.quick(basic("prometheus", PASSWORD)) == ACCEPTED  # still known without bcrypt


def test_while_the_line_for_bcrypt_is_full_new_credentials_are_refused_at_once_and_known_ones_pass():
    import threading

    verdicts = Verdicts(most_waiting=2)
    auth = BasicAuth({"prometheus": password_hash(cost=12).encode()}, verdicts, cost=12)  # ~250 ms a check
    assert auth.check(basic("prometheus", PASSWORD)) == ACCEPTED
    results: list[str] = []
    flood = [threading.Thread(target=lambda n=n: results.append(auth.check(basic("prometheus", f"g{n}"))))
             for n in range(6)]
    for thread in flood:
        thread.start()
    time.sleep(0.1)  # the line is full now: one check runs, one waits
    started = time.monotonic()
    assert auth.check(basic("prometheus", "one-more-guess")) == BUSY
    assert auth.check(basic("prometheus", PASSWORD)) == ACCEPTED  # remembered: no wait in the line
    assert time.monotonic() - started < 0.05
    for thread in flood:
        thread.join()
    assert results.count(BUSY) >= 4 and results.count(WRONG_PASSWORD) >= 1, results


def test_a_password_file_given_as_the_web_config_is_refused_without_printing_it(tmp_path):
    path = tmp_path / "prometheus.password"
    path.write_text("S3cretPassw0rd\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert "S3cretPassw0rd" not in str(caught.value) and "is this the web config?" in str(caught.value)


def test_exporter_toolkit_spellings_go_reads_as_text_are_taken(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  1234: '{password_hash()}'\nhttp_server_config:\n"
                    "  headers: {X-XSS-Protection: 1}\n", encoding="utf-8")
    config = load_web_config(path)
    assert "1234" in config.users and ("X-XSS-Protection", "1") in config.headers


def test_a_reload_never_switches_passwords_or_tls_off(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: '{password_hash()}'\n", encoding="utf-8")
    guard = WebGuard(str(path), MetricNames("test_auth_failures", "test_handshake_failures", "test_reload"), "test")
    path.write_text("", encoding="utf-8")  # an editor that truncates before it writes, or a mistake
    ok, message = guard.reload()
    assert not ok and "a reload does not switch them off" in message, message
    assert guard.auth_required
    assert guard.check(basic("prometheus", "wrong"), "127.0.0.1") == WRONG_PASSWORD
