"""The ingress on real parts: Debian's nginx rendered by `sitewatch-ingress`, two real Pushgateways, the real
`sitewatch-pusher` pushing over TLS with its site's credential, Prometheus scraping both Pushgateways, the
receiver behind the office side, two real VictoriaMetrics behind the import path, and a real
`sitewatch-ingest` behind the upload paths, reached by smartstatus.bat's own curl line."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import os
import re
import shutil
import ssl
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port, is_root, value_of_metric, wait_until, write_config
from ingest_data.ingest_kit import (DEALER, GETAD_KEY, TOKEN, IngestProcess, data_file,  # noqa: F401
                                    ingest_process, monitoring_page)
from receiver_kit import write_receiver_config

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE_A, SITE_B, SITE_C = "shop-a", "shop-b", "shop-c"
IMPORT_PATH = "/api/v1/import/prometheus"


@dataclass
class Ingress:
    folder: Path
    config: Path
    push_url: str
    office: dict[str, str]
    gateways: dict[str, str]
    ca: Path
    nginx: subprocess.Popen
    vms: dict[str, str] = field(default_factory=dict)  # import endpoint name -> VictoriaMetrics URL
    passwords: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    ingest: IngestProcess | None = None  # sitewatch-ingest behind the upload paths
    http_url: str = ""  # the plain-HTTP listener for the upload paths, when the config has one

    def cli(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(self.config), *args], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        self.outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
        return result

    def issue(self, kind: str, name: str, *extra: str) -> str:
        password_file = self.folder / f"{kind}-{name}.password"
        self.cli("issue", kind, name, *extra, "--password-file", str(password_file))
        self.passwords[f"{kind}/{name}"] = password_file.read_text().strip()
        return str(password_file)

    def push(self, user: str, site: str, method: str = "PUT", body: bytes = b"sitewatch_demo 1\n",
             path: str | None = None) -> requests.Response:
        url = f"{self.push_url}{path or f'/metrics/job/sitewatch/site/{site}'}"
        return requests.request(method, url, data=body, auth=(user, self.passwords[user]), verify=str(self.ca),
                                timeout=10)

    def import_(self, user: str, query: str = "", body: bytes = b"sitewatch_demo 1\n", method: str = "POST",
                password: str | None = None) -> requests.Response:
        """A hand-made request to the import path, gzip as the pusher sends it; `query` exactly as written."""
        return requests.request(method, f"{self.push_url}{IMPORT_PATH}{'?' + query if query else ''}",
                                data=gzip.compress(body), headers={"Content-Encoding": "gzip"},
                                auth=(user, password or self.passwords[user]), verify=str(self.ca), timeout=10)

    def raw_push(self, user: str | None, password: str | None, path: str, method: str = "PUT") -> int:
        """A request with `path` sent exactly as written (requests would tidy away `..` and `%2F`)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        host, port = self.push_url.removeprefix("https://").split(":")
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        headers = {"Content-Type": "text/plain"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            connection.request(method, path, body=b"sitewatch_demo 1\n", headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    def groups(self, gateway: str) -> set[str]:
        data = requests.get(f"{self.gateways[gateway]}/api/v1/metrics", timeout=5).json()["data"]
        return {group["labels"].get("site") for group in data}

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in (self.folder / "logs").glob("*.log"))

    def upload(self, token: str = TOKEN, content: bytes | None = None, base: str | None = None,
               method: str = "POST") -> requests.Response:
        """smartstatus.bat's upload (see IngestProcess.upload), to the ingress instead of the ingest."""
        return requests.request(method, f"{base or self.push_url}/upload", params={"token": token},
                                headers={"upload": "yes", "dealer": DEALER}, verify=str(self.ca), timeout=10,
                                files={"file": ("GORDUMA.status", monitoring_page() if content is None else content,
                                                "application/octet-stream")})

    def post_getad(self, key: str = GETAD_KEY, base: str | None = None) -> requests.Response:
        return requests.post(f"{base or self.push_url}/api/submit_json", data=data_file("00123456790012.json"),
                             headers={"Content-Type": "application/json", "X-API-Key": key}, verify=str(self.ca),
                             timeout=10)

    def exported(self, vm: str, match: str) -> list[dict]:
        """The series matching `match` in VictoriaMetrics `vm`, read directly (not through nginx)."""
        requests.get(self.vms[vm] + "/internal/force_flush", timeout=5)
        answer = requests.get(self.vms[vm] + "/api/v1/export", params={"match[]": match}, timeout=5)
        assert answer.status_code == 200, answer.text
        return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def pusher_config(folder: Path, ingress: Ingress, site: str, user: str, password_file: str,
                  to_import: bool = False) -> Path:
    destination = f"import_url: {ingress.push_url}{IMPORT_PATH}" if to_import else f"gateway: {ingress.push_url}"
    return write_config(folder / f"{site}-as-{user.replace('/', '-')}.yml", f"""
push:
  {destination}
  basic_auth: {{username: {user}, password: {{file: {password_file}}}}}
  tls: {{ca_file: {ingress.ca}}}
sites:
  - id: {site}
    checks:
      - name: closed-port
        tcp: {{host: 127.0.0.1, port: 1}}
""")


def run_pusher(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pusher.cli", "--config", str(config), "--once", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def ingress(tmp_path, pushgateway, receiver_process):
    with running_ingress(tmp_path, pushgateway, receiver_process) as run:
        yield run


@pytest.fixture
def import_ingress(tmp_path, pushgateway, receiver_process, victoriametrics):
    """The ingress with two VictoriaMetrics behind its import path, sharded like the Pushgateways."""
    vms = {"main": victoriametrics(), "second": victoriametrics()}
    with running_ingress(tmp_path, pushgateway, receiver_process, vms) as run:
        yield run


@pytest.fixture
def ingest_ingress(tmp_path, pushgateway, receiver_process, ingest_process):
    """The ingress with a real sitewatch-ingest behind its upload paths, on the TLS push port and on a plain-HTTP
    listener; an import path too, with nothing behind it (its credential check is all that is asked of it)."""
    ingest = ingest_process()
    nothing = {name: f"http://127.0.0.1:{free_port()}" for name in ("main", "second")}
    with running_ingress(tmp_path, pushgateway, receiver_process, nothing, ingest=ingest) as run:
        yield run


@contextlib.contextmanager
def running_ingress(tmp_path, pushgateway, receiver_process, vms: dict[str, str] | None = None,
                    ingest: IngestProcess | None = None):
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: run 'make test', which installs Debian's package")
    gateways = {"main": pushgateway(), "second": pushgateway()}
    imports = ""
    if vms:
        endpoints = ", ".join(f"{name}: {url.removeprefix('http://')}" for name, url in vms.items())
        imports = f"  import_endpoints: {{{endpoints}}}\n  import_shards: {{kodeks-spb: second}}\n"
    http_port = free_port()
    if ingest:
        # A small burst, so that the rate test runs out of it; the other tests stay well inside.
        imports += (f"  ingest_endpoint: 127.0.0.1:{ingest.port}\n  ingest_rate: 60r/m\n  ingest_burst: 25\n"
                    f"  ingest_http_listen: 127.0.0.1:{http_port}\n")
    receiver = receiver_process(write_receiver_config(tmp_path, "http://127.0.0.1:9"), "--dry-run")
    push_port, office_gateway, office_receiver = free_port(), free_port(), free_port()
    folder = tmp_path / "ingress"
    config = write_config(tmp_path / "ingress.yml", f"""
folder: {folder}
tls: {{certificate: {folder}/tls/cert.pem, key: {folder}/tls/key.pem}}
nginx:
  pid_file: {folder}/nginx.pid
  log_folder: {folder}/logs
{"  user: root" if is_root() else ""}
push:
  listen: 127.0.0.1:{push_port}
  max_body: 64KiB
  rate: 600r/m
  burst: 50
  pushgateways:
    main: {gateways["main"].removeprefix("http://")}
    second: {gateways["second"].removeprefix("http://")}
  shards: {{kodeks-spb: second}}
{imports}office:
  pushgateway: {{listen: 127.0.0.1:{office_gateway}, upstream: {gateways["main"].removeprefix("http://")}}}
  receiver: {{listen: 127.0.0.1:{office_receiver}, upstream: 127.0.0.1:{receiver.port}}}
""")
    run = Ingress(folder, config, f"https://127.0.0.1:{push_port}",
                  {"pushgateway": f"https://127.0.0.1:{office_gateway}", "receiver": f"https://127.0.0.1:{office_receiver}"},
                  gateways, folder / "tls" / "cert.pem", None, dict(vms or {}),  # type: ignore[arg-type]
                  ingest=ingest, http_url=f"http://127.0.0.1:{http_port}" if ingest else "")
    run.cli("cert", "--host", "127.0.0.1", "--host", "localhost")
    run.cli("render")
    run.nginx = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=(folder / "nginx.out").open("w"))
    try:
        def listening():
            if run.nginx.poll() is not None:
                raise AssertionError(f"nginx exited: {(folder / 'nginx.out').read_text()}")
            return (folder / "nginx.pid").exists() and (folder / "nginx.pid").read_text().strip()
        wait_until(listening, 15, what="nginx to start")
        run.issue("site", SITE_A, "--distributor", "pos-service")
        run.issue("site", SITE_B, "--distributor", "kodeks-spb")
        run.cli("register", SITE_C, "--distributor", "kodeks-spb")
        run.issue("distributor", "kodeks-spb")
        run.issue("office", "ivanov")
        wait_until(lambda: run.push(f"site/{SITE_A}", SITE_A).status_code == 200, 10, what="the first push")
        yield run
    finally:
        if run.nginx.poll() is None:
            run.nginx.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                run.nginx.wait(15)
            except subprocess.TimeoutExpired:
                run.nginx.kill()
                run.nginx.wait()


def test_the_pusher_pushes_its_site_over_tls_with_its_credential(ingress, tmp_path):
    config = pusher_config(tmp_path, ingress, SITE_A, f"site/{SITE_A}", str(ingress.folder / f"site-{SITE_A}.password"))
    result = run_pusher(config)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = requests.get(f"{ingress.gateways['main']}/api/v1/metrics", timeout=5).json()["data"]
    [group] = [g for g in metrics if g["labels"].get("site") == SITE_A]
    assert "sitewatch_check_up" in group and group["labels"]["job"] == "sitewatch"
    assert SITE_A not in ingress.groups("second")


def test_a_site_credential_cannot_write_delete_or_read_what_is_not_its_own(ingress, tmp_path):
    user = f"site/{SITE_A}"
    assert ingress.push(user, SITE_B).status_code == 403
    assert ingress.push(user, SITE_B, method="POST").status_code == 403
    assert ingress.push(user, SITE_B, method="DELETE").status_code == 403
    for sneaky in (f"/metrics/job/sitewatch/site/{SITE_A}/instance/x",  # an extra label: another group
                   "/metrics/job/other/site/" + SITE_A,                # another job
                   "/metrics/job/sitewatch/site@base64/c2hvcC1i",      # shop-b, base64-encoded
                   f"/metrics/job/sitewatch/site/{SITE_A}/../{SITE_B}",
                   f"/metrics/job/sitewatch/site/{SITE_A}/%2e%2e/{SITE_B}",
                   f"/metrics/job/sitewatch/site/{SITE_A}%2F..%2F{SITE_B}",
                   f"/metrics/job/sitewatch/site/{SITE_B.upper()}"):
        assert ingress.raw_push(user, ingress.passwords[user], sneaky) == 403, sneaky
    # Without the right password nothing is revealed, not even whose group it would be.
    assert ingress.raw_push(user, "wrong-password", f"/metrics/job/sitewatch/site/{SITE_B}") == 401
    assert ingress.raw_push(user, "wrong-password", f"/metrics/job/sitewatch/site/{SITE_A}") == 401
    assert ingress.raw_push(None, None, f"/metrics/job/sitewatch/site/{SITE_A}") == 401
    assert ingress.push(user, SITE_A, method="GET").status_code == 403  # no reads on the push side
    assert requests.get(f"{ingress.push_url}/api/v1/metrics", auth=(user, ingress.passwords[user]),
                        verify=str(ingress.ca), timeout=5).status_code == 403
    # The office side does not know site credentials at all.
    office = ingress.office["pushgateway"]
    assert requests.get(f"{office}/api/v1/metrics", auth=(user, ingress.passwords[user]), verify=str(ingress.ca),
                        timeout=5).status_code == 401
    assert requests.get(f"{office}/api/v1/metrics", verify=str(ingress.ca), timeout=5).status_code == 401
    reading = requests.get(f"{office}/api/v1/metrics", auth=("ivanov", ingress.passwords["office/ivanov"]),
                           verify=str(ingress.ca), timeout=5)
    assert reading.status_code == 200 and SITE_A in {g["labels"].get("site") for g in reading.json()["data"]}
    assert SITE_B not in ingress.groups("main") and SITE_B not in ingress.groups("second")
    # The real pusher with site A's credential, configured as site B, is refused and says so.
    config = pusher_config(tmp_path, ingress, SITE_B, user, str(ingress.folder / f"site-{SITE_A}.password"))
    result = run_pusher(config)
    assert result.returncode != 0 and "403" in result.stdout + result.stderr
    deleting = run_pusher(config, "--delete")
    assert deleting.returncode != 0
    # The refusals are in nginx's log with the credential's name, never its password.
    assert f'{user} ' in ingress.logs() and '"PUT /metrics/job/sitewatch/site/shop-b" 403' in ingress.logs()


def test_a_distributor_credential_covers_exactly_its_sites(ingress):
    user = "distributor/kodeks-spb"
    assert ingress.push(user, SITE_B).status_code == 200
    assert ingress.push(user, SITE_C).status_code == 200
    assert ingress.push(user, SITE_A).status_code == 403  # pos-service's site
    assert ingress.push(user, "shop-unknown").status_code == 403  # a site nobody registered
    assert ingress.push(user, SITE_C.upper()).status_code == 403  # no phantom group in other letters
    assert ingress.push(user, SITE_C, method="DELETE").status_code in (200, 202)
    assert SITE_C.upper() not in ingress.groups("second")


def test_sites_map_changes_are_checked_and_a_forgotten_site_stops(ingress):
    ingress.cli("forget", SITE_B)
    # Its credential alone is not enough, once nginx's new workers (a moment after the reload) answer.
    wait_until(lambda: ingress.push(f"site/{SITE_B}", SITE_B).status_code == 403, 5, interval=0.5,
               what="the forgotten site to be refused")
    refused = ingress.cli("register", "Shop-A", "--distributor", "kodeks-spb", expect=1)
    assert "differs from the registered site shop-a only in case" in refused.stderr
    long_site = "s" * 63  # the longest id a site may have
    ingress.issue("site", long_site, "--distributor", "pos-service")
    wait_until(lambda: ingress.push(f"site/{long_site}", long_site).status_code == 200, 5, interval=0.5,
               what="the new site's push")
    # A sites.map nginx cannot load is refused before nginx is told, and the running config keeps working.
    site_map = ingress.folder / "sites.map"
    site_map.write_text(site_map.read_text() + "broken line without a semicolon\n")
    broken = ingress.cli("reload", expect=1)
    assert "nginx refuses" in broken.stderr
    assert ingress.push(f"site/{SITE_A}", SITE_A).status_code == 200


def test_credentials_are_stored_as_2y_bcrypt_and_password_files_are_private(ingress):
    lines = (ingress.folder / "push.htpasswd").read_text().splitlines()
    assert lines and all(line.split(":", 1)[1].startswith("$2y$06$") for line in lines)
    loose = ingress.folder / "loose.password"
    loose.write_text("old\n")
    loose.chmod(0o644)
    ingress.cli("issue", "site", SITE_A, "--password-file", str(loose))
    assert loose.stat().st_mode & 0o777 == 0o600


def test_a_render_nginx_refuses_leaves_the_running_config_alone(ingress):
    before = (ingress.folder / "nginx.conf").read_text()
    text = ingress.config.read_text()
    ingress.config.write_text(text.replace("tls/cert.pem", "tls/missing.pem"))
    result = ingress.cli("render", expect=1)
    assert "nginx refuses" in result.stderr
    assert (ingress.folder / "nginx.conf").read_text() == before
    ingress.config.write_text(text)
    assert ingress.push(f"site/{SITE_A}", SITE_A).status_code == 200


def test_two_distributors_land_on_two_pushgateways_and_prometheus_sees_both(ingress, tmp_path, prometheus):
    for site in (SITE_A, SITE_B):
        config = pusher_config(tmp_path, ingress, site, f"site/{site}", str(ingress.folder / f"site-{site}.password"))
        result = run_pusher(config)
        assert result.returncode == 0, result.stdout + result.stderr
    assert SITE_A in ingress.groups("main") and SITE_A not in ingress.groups("second")
    assert SITE_B in ingress.groups("second") and SITE_B not in ingress.groups("main")
    url = prometheus([ingress.gateways["main"].removeprefix("http://"),
                      ingress.gateways["second"].removeprefix("http://")], honor_labels=True)

    def sites():
        answer = requests.get(f"{url}/api/v1/query", params={"query": 'push_time_seconds{job="sitewatch"}'},
                              timeout=5).json()
        return {series["metric"]["site"] for series in answer["data"]["result"]}

    wait_until(lambda: {SITE_A, SITE_B} <= sites(), 20, what="Prometheus to see both sites")


def test_a_revoked_credential_stops_after_the_reload_and_nobody_else_is_disturbed(ingress):
    results: list[int] = []
    stop = threading.Event()

    def keep_pushing():
        while not stop.is_set():
            results.append(ingress.push(f"site/{SITE_B}", SITE_B).status_code)
            time.sleep(0.6)  # within the test's 120 pushes a minute per credential

    pusher = threading.Thread(target=keep_pushing)
    pusher.start()
    try:
        time.sleep(0.5)
        output = ingress.cli("revoke", "site", SITE_A).stdout
        assert f"revoked site/{SITE_A}" in output and "nginx reloaded" in output
        wait_until(lambda: ingress.push(f"site/{SITE_A}", SITE_A).status_code == 401, 10, interval=0.5,
                   what="the revocation")
        time.sleep(1.5)
    finally:
        stop.set()
        pusher.join()
    assert results and set(results) == {200}, f"site B's pushes during the reload: {sorted(set(results))}"
    assert ingress.nginx.poll() is None


def test_an_oversized_body_and_a_burst_are_refused(ingress):
    assert ingress.push(f"site/{SITE_A}", SITE_A, body=b"x" * 100_000).status_code == 413
    codes = [ingress.push(f"site/{SITE_A}", SITE_A).status_code for _ in range(120)]
    assert 429 in codes and codes[0] == 200, codes  # burst 50 at 10 a second


def test_refused_and_guessing_requests_are_rate_limited_too(ingress):
    user = f"site/{SITE_A}"
    foreign = [ingress.push(user, SITE_B).status_code for _ in range(120)]
    assert 403 in foreign and 429 in foreign, foreign
    guesses = [ingress.raw_push(f"site/{SITE_C}", "guess", f"/metrics/job/sitewatch/site/{SITE_C}")
               for _ in range(120)]
    assert 401 in guesses and 429 in guesses, guesses


def test_the_office_side_cannot_write_the_pushgateway_or_stop_anything(ingress):
    office = ingress.office["pushgateway"]
    auth = ("ivanov", ingress.passwords["office/ivanov"])
    for method, path in (("PUT", "/api/v1/admin/wipe"), ("PUT", f"/metrics/job/sitewatch/site/{SITE_A}"),
                         ("DELETE", f"/metrics/job/sitewatch/site/{SITE_A}"), ("POST", "/-/quit")):
        answer = requests.request(method, f"{office}{path}", auth=auth, data=b"x 1\n", verify=str(ingress.ca),
                                  timeout=5)
        assert answer.status_code == 403, (method, path, answer.status_code)
    assert SITE_A in ingress.groups("main")


def test_the_receivers_webhook_and_metrics_are_not_served_to_the_office(ingress):
    office = ingress.office["receiver"]
    auth = ("ivanov", ingress.passwords["office/ivanov"])
    assert requests.get(f"{office}/", verify=str(ingress.ca), timeout=5).status_code == 401
    assert requests.get(f"{office}/", auth=auth, verify=str(ingress.ca), timeout=5).status_code == 200
    assert requests.post(f"{office}/alert/duty", auth=auth, json={}, verify=str(ingress.ca),
                         timeout=5).status_code == 403
    assert requests.get(f"{office}/metrics", auth=auth, verify=str(ingress.ca), timeout=5).status_code == 403


def test_no_credential_appears_in_any_log(ingress, tmp_path):
    for site in (SITE_A, SITE_B):
        run_pusher(pusher_config(tmp_path, ingress, site, f"site/{SITE_A}",
                                 str(ingress.folder / f"site-{SITE_A}.password")))
    ingress.push(f"site/{SITE_A}", SITE_A)
    requests.put(f"{ingress.push_url}/metrics/job/sitewatch/site/{SITE_A}", auth=(f"site/{SITE_A}", "wrong-guess-123"),
                 data=b"x 1\n", verify=str(ingress.ca), timeout=5)
    texts = ingress.logs() + "".join(ingress.outputs)
    for path in tmp_path.glob("pushgateway-*.log"):
        texts += path.read_text(errors="replace")
    for password in ingress.passwords.values():
        assert password not in texts
    assert "wrong-guess-123" not in texts


def imported(ingress: Ingress, vm: str, match: str, count: int) -> list[dict]:
    """The series matching `match` once there are at least `count` of them: VictoriaMetrics makes a new
    series searchable a moment after it answered the import."""
    def enough():
        found = ingress.exported(vm, match)
        return found if len(found) >= count else None
    return wait_until(enough, 15, interval=0.3, what=f"{count} series {match} in VictoriaMetrics {vm}")


def sites_and_jobs(series: list[dict]) -> list[tuple[str, str]]:
    return sorted((s["metric"].get("site", ""), s["metric"].get("job", "")) for s in series)


def mark(ingress: Ingress, user: str, vm: str, query: str = "") -> None:
    """Writes a marker through the ingress and waits for it in `vm`: whatever was sent before it has had its
    chance to land there, so its absence means something."""
    name = f"sitewatch_marker_{len(ingress.outputs)}_{int(time.time() * 1000)}"
    assert ingress.import_(user, query, f"{name} 1\n".encode()).status_code == 204
    imported(ingress, vm, name, 1)


def test_the_pusher_imports_its_site_through_the_ingress_into_its_distributors_victoriametrics(import_ingress,
                                                                                                tmp_path):
    ingress = import_ingress
    for site, user in ((SITE_A, f"site/{SITE_A}"), (SITE_B, f"site/{SITE_B}"), (SITE_C, "distributor/kodeks-spb")):
        password_file = str(ingress.folder / f"{user.replace('/', '-')}.password")
        result = run_pusher(pusher_config(tmp_path, ingress, site, user, password_file, to_import=True))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"series to {ingress.push_url}{IMPORT_PATH}" in result.stdout
    # kodeks-spb's sites go to its shard, whether pushed with the site's credential or the distributor's.
    second = imported(ingress, "second", "sitewatch_check_up", 2)
    assert sites_and_jobs(second) == [(SITE_B, "sitewatch"), (SITE_C, "sitewatch")]
    [check] = imported(ingress, "main", "sitewatch_check_up", 1)
    assert sites_and_jobs([check]) == [(SITE_A, "sitewatch")]
    assert check["metric"]["check"] == "closed-port" and check["values"] == [0]
    # `issue` tells the site where the import path is.
    assert f"import_url: https://<this server's name>:{ingress.push_url.rsplit(':', 1)[1]}{IMPORT_PATH}" in \
        "".join(ingress.outputs)


def test_a_site_credential_imports_only_as_its_own_site(import_ingress):
    ingress = import_ingress
    user = f"site/{SITE_A}"
    forged = (b'sitewatch_forged{site="other",job="evil"} 1\n'
              b'sitewatch_forged_b{site="shop-b"} 2\n'
              b'sitewatch_forged_c{instance="x"} 3\n')
    # The body's site and job labels and the client's own arguments lose to the ones nginx sets.
    for query in ("", f"extra_label=site={SITE_A}&extra_label=job=evil",
                  f"extra_label=job%3Dsitewatch&extra_label=site%3D{SITE_A}&extra_label=client%3Dx&timeout=1s"):
        assert ingress.import_(user, query, forged).status_code == 204, query
    # A query naming another site is refused, as the Pushgateway path refuses another site's group.
    for query in ("extra_label=site=other", f"extra_label=site={SITE_B}", f"extra_label=site%3D{SITE_B}",
                  f"extra_label=site={SITE_A}&extra_label=site={SITE_B}", f"extra_label=site={SITE_A.upper()}",
                  f"extra_label=site={SITE_A}.x"):
        answer = ingress.import_(user, query, b'sitewatch_refused{site="other"} 1\n')
        assert answer.status_code == 403 and "may not write" in answer.text, (query, answer.status_code)
    series = imported(ingress, "main", '{__name__=~"sitewatch_forged.*"}', 3)
    assert {s["metric"]["__name__"] for s in series} == {"sitewatch_forged", "sitewatch_forged_b",
                                                         "sitewatch_forged_c"}
    assert sites_and_jobs(series) == [(SITE_A, "sitewatch")] * 3
    assert all("client" not in s["metric"] for s in series), series
    mark(ingress, user, "main")
    mark(ingress, f"site/{SITE_B}", "second")
    for vm in ("main", "second"):
        assert ingress.exported(vm, '{site="other"}') == [] and ingress.exported(vm, "sitewatch_refused") == []
        assert ingress.exported(vm, '{job="evil"}') == []
    assert ingress.exported("second", '{__name__=~"sitewatch_forged.*"}') == []
    # Without the right password, 401 and nothing else; a forgotten site's credential writes nothing.
    assert ingress.import_(user, password="wrong-password").status_code == 401
    ingress.cli("forget", SITE_A)
    wait_until(lambda: ingress.import_(user).status_code == 403, 5, interval=0.5, what="the forgotten site's 403")


def test_a_distributor_credential_imports_exactly_its_sites(import_ingress):
    ingress = import_ingress
    user = "distributor/kodeks-spb"
    body = b'sitewatch_by_distributor{site="shop-a"} 1\n'
    assert ingress.import_(user, f"extra_label=site={SITE_B}", body).status_code == 204
    assert ingress.import_(user, f"extra_label=job%3Dx&extra_label=site%3D{SITE_C}", body).status_code == 204
    for query in ("",                                                  # which site: nginx does not guess
                  f"extra_label=site={SITE_A}",                        # pos-service's site
                  "extra_label=site=shop-unknown",                     # a site nobody registered
                  f"extra_label=site={SITE_C.upper()}",                # no phantom site in other letters
                  f"extra_label=site={SITE_B}&extra_label=site={SITE_A}",  # two sites: which one?
                  f"extra_label=site={SITE_B}%26extra_label%3Dsite%3D{SITE_A}",
                  f"site={SITE_B}"):
        answer = ingress.import_(user, query, b"sitewatch_refused 1\n")
        assert answer.status_code == 403, (query, answer.status_code)
    # An encoding nginx does not read is no site (sent raw: requests would decode "%2D" to "-").
    encoded = f"{IMPORT_PATH}?extra_label=site=shop%2Db"
    assert ingress.raw_push(user, ingress.passwords[user], encoded, method="POST") == 403
    assert ingress.import_(user, f"extra_label=site={SITE_B}", password="wrong-password").status_code == 401
    series = imported(ingress, "second", "sitewatch_by_distributor", 2)
    assert sites_and_jobs(series) == [(SITE_B, "sitewatch"), (SITE_C, "sitewatch")]
    mark(ingress, user, "second", f"extra_label=site={SITE_B}")
    mark(ingress, f"site/{SITE_A}", "main")
    for vm in ("main", "second"):
        assert ingress.exported(vm, "sitewatch_refused") == []
    assert ingress.exported("main", "sitewatch_by_distributor") == []


def test_the_push_side_serves_no_victoriametrics_reads_or_deletions(import_ingress):
    ingress = import_ingress
    ingress.import_(f"site/{SITE_A}", body=b"sitewatch_kept 1\n")
    for user in (f"site/{SITE_A}", "distributor/kodeks-spb"):
        auth = (user, ingress.passwords[user])
        for method, path in (("GET", "/api/v1/query?query=sitewatch_kept"), ("GET", "/api/v1/export?match[]=up"),
                             ("POST", "/api/v1/export"), ("GET", "/api/v1/labels"), ("GET", "/api/v1/series"),
                             ("POST", "/api/v1/admin/tsdb/delete_series?match[]=sitewatch_kept"),
                             ("GET", "/prometheus/api/v1/query?query=up"), ("GET", "/federate"),
                             ("POST", "/api/v1/import"), ("POST", "/api/v1/import/csv"),
                             ("POST", "/api/v1/write"), ("GET", "/internal/force_flush"), ("GET", "/vmui/"),
                             ("GET", "/-/reload"), ("POST", f"{IMPORT_PATH}/metrics/job/sitewatch/site/{SITE_A}")):
            answer = requests.request(method, f"{ingress.push_url}{path}", auth=auth, data=b"x 1\n",
                                      verify=str(ingress.ca), timeout=5)
            assert answer.status_code == 403, (user, method, path, answer.status_code)
        for method in ("GET", "HEAD", "PUT", "DELETE"):
            answer = ingress.import_(user, f"extra_label=site={SITE_B}", method=method)
            assert answer.status_code == 405 and answer.headers.get("Allow") == "POST", (user, method)
    # The path is matched decoded: an encoded '?' or '/' does not smuggle a query or another path in.
    user = f"site/{SITE_A}"
    for sneaky in (f"{IMPORT_PATH}%3Fextra_label=site={SITE_B}", f"{IMPORT_PATH}/", f"{IMPORT_PATH}%2F",
                   "/api/v1/import/x/../../query?query=up"):
        assert ingress.raw_push(user, ingress.passwords[user], sneaky, method="POST") == 403, sneaky
    assert [s["metric"]["site"] for s in imported(ingress, "main", "sitewatch_kept", 1)] == [SITE_A]


def test_imports_share_the_push_size_and_rate_limits(import_ingress):
    ingress = import_ingress
    user = f"site/{SITE_A}"
    # The limit is on the body as sent, gzip-compressed: ~100 KiB that gzip cannot shrink, over the test's 64 KiB.
    incompressible = bytes(range(256)) * 400
    answer = requests.post(f"{ingress.push_url}{IMPORT_PATH}", data=incompressible, verify=str(ingress.ca),
                           auth=(user, ingress.passwords[user]), headers={"Content-Encoding": "gzip"}, timeout=10)
    assert answer.status_code == 413
    # One budget per credential, whichever path it pushes on: both run out.
    imports, pushes = [], []
    for _ in range(60):
        imports.append(ingress.import_(user).status_code)
        pushes.append(ingress.push(user, SITE_A).status_code)
    assert imports[0] == 204 and 429 in imports and 429 in pushes, (imports, pushes)


def test_without_import_endpoints_the_import_path_is_closed(ingress):
    assert ingress.import_(f"site/{SITE_A}").status_code == 403
    assert IMPORT_PATH not in (ingress.folder / "nginx.conf").read_text()


def test_no_credential_or_query_appears_in_any_log_on_the_import_path(import_ingress, tmp_path):
    ingress = import_ingress
    user = f"site/{SITE_A}"
    run_pusher(pusher_config(tmp_path, ingress, SITE_A, user, str(ingress.folder / f"site-{SITE_A}.password"),
                             to_import=True))
    ingress.import_(user, "extra_label=site=secret-query-value")
    ingress.import_(user, password="wrong-guess-123")
    ingress.import_("distributor/kodeks-spb", f"extra_label=site={SITE_A}")
    texts = ingress.logs() + "".join(ingress.outputs)
    for path in tmp_path.glob("victoriametrics-*.log"):
        texts += path.read_text(errors="replace")
    for password in ingress.passwords.values():
        assert password not in texts
    assert "wrong-guess-123" not in texts and "secret-query-value" not in texts
    assert f'{user} ' in ingress.logs() and f'"POST {IMPORT_PATH}" 403' in ingress.logs()


def test_bad_ingress_configs_name_the_file_and_the_path(tmp_path):
    config = write_config(tmp_path / "ingress.yml", """
folder: x
tls: {certificate: c.pem, key: k.pem}
push:
  listen: 9443
  pushgateways: {main: 127.0.0.1:9091}
  shards: {kodeks-spb: nowhere}
""")
    result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{config}: line 5: push.listen: expected where sites push: host:port" in result.stderr
    config.write_text(config.read_text().replace("listen: 9443", "listen: 0.0.0.0:9443"))
    result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "push.shards.kodeks-spb: expected one of the Pushgateways" in result.stderr



def test_bad_import_settings_name_the_file_and_the_path(tmp_path):
    base = """
folder: x
tls: {certificate: c.pem, key: k.pem}
push:
  listen: 0.0.0.0:9443
  pushgateways: {main: 127.0.0.1:9091}
"""
    for extra, message in (
            ("  import_endpoints: {vm: 8428}\n",
             "push.import_endpoints.vm: expected a VictoriaMetrics or vmagent address: host:port"),
            ("  import_endpoints: {vm: 127.0.0.1:8428}\n  import_shards: {kodeks-spb: second}\n",
             "push.import_shards.kodeks-spb: expected one of the import endpoints in push.import_endpoints (vm)"),
            ("  import_shards: {kodeks-spb: vm}\n",
             "push.import_shards.kodeks-spb: expected one of the import endpoints in push.import_endpoints, which "
             "lists none"),
            ("  imports: {vm: 127.0.0.1:8428}\n", "push.imports")):
        config = write_config(tmp_path / "ingress.yml", base + extra)
        result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), "list"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and re.search(rf"{re.escape(str(config))}: line [78]: {re.escape(message)}",
                                                    result.stderr), result.stderr


# --- sitewatch-ingest behind the push side ------------------------------------------------------------------

def upload_line(url: str) -> str:
    """smartstatus.bat's upload line as the script has it, with only the host (and scheme) changed."""
    return f'curl -H "upload: yes" -H "dealer: {DEALER}" -v -Ffile=@GORDUMA.status "{url}/upload?token={TOKEN}"'


def run_line(line: str, folder: Path, ca_bundle: Path | None = None) -> subprocess.CompletedProcess:
    """The line run by the real curl in the script's folder. `ca_bundle` plays the curl-ca-bundle.crt that the
    Windows curl beside smartstatus.bat reads from its own folder (Debian's curl reads CURL_CA_BUNDLE instead)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    if ca_bundle is not None:
        env["CURL_CA_BUNDLE"] = str(ca_bundle)
    return subprocess.run(line, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=30)


def ingest_value(ingress: Ingress, name: str, **labels: str) -> float:
    return value_of_metric(ingress.ingest.metrics(), name, **labels) or 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")
def test_smartstatus_bats_upload_line_over_tls_reaches_the_ingest_and_gets_the_smart_servers_answer(
        ingest_ingress, tmp_path):
    ingress = ingest_ingress
    folder = tmp_path / "smartstatus"
    folder.mkdir()
    (folder / "GORDUMA.status").write_bytes(monitoring_page())
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    public_cas = system.read_text() if system.exists() else ""
    # The bundle as shipped (public CAs only) does not know a self-signed certificate: the upload line has no
    # -k, so curl refuses the server (exit 60) and sends nothing.
    (folder / "curl-ca-bundle.crt").write_text(public_cas)
    refused = run_line(upload_line(ingress.push_url), folder, folder / "curl-ca-bundle.crt")
    assert refused.returncode == 60, refused.stderr
    assert ingest_value(ingress, "sitewatch_ingest_uploads_total", source="smartstatus") == 0
    # With the office's certificate added to that bundle, the unchanged line goes through nginx to the ingest,
    # and the script's window shows the SMART server's own answer.
    (folder / "curl-ca-bundle.crt").write_text(public_cas + ingress.ca.read_text())
    done = run_line(upload_line(ingress.push_url), folder, folder / "curl-ca-bundle.crt")
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"ok":true,"path":"/files/GORDUMA.status"}'
    assert "HTTP/1.1 200" in done.stderr and "SSL certificate verify ok" in done.stderr
    # Or --cacert on the upload line, with the certificate alone.
    (folder / "office.pem").write_text(ingress.ca.read_text())
    line = upload_line(ingress.push_url).replace(" -v ", " -v --cacert office.pem ")
    assert run_line(line, folder).stdout == '{"ok":true,"path":"/files/GORDUMA.status"}'
    text = ingress.ingest.metrics()
    assert value_of_metric(text, "sitewatch_ingest_uploads_total", source="smartstatus") == 2
    assert value_of_metric(text, "sitewatch_check_up", site="gorduma-kodeks", check="kodeks") is not None
    # getad-service's post, with its X-API-Key, the same way.
    posted = ingress.post_getad()
    assert posted.status_code == 200, posted.text
    assert posted.json()["status"] == "success" and "isaac-cafe" in posted.json()["message"]
    assert ingest_value(ingress, "sitewatch_ingest_uploads_total", source="getad") == 1


def test_a_wrong_token_or_key_is_refused_by_the_ingest_and_the_refusal_reaches_the_sender(ingest_ingress):
    ingress = ingest_ingress
    wrong = ingress.upload(token="not-the-token")
    assert wrong.status_code == 403 and wrong.json()["reason"] == "bad_token", wrong.text
    assert ingress.upload(token="").json()["reason"] == "bad_token"
    bad_key = ingress.post_getad(key="not-the-key")
    assert bad_key.status_code == 403 and bad_key.json()["reason"] == "bad_key", bad_key.text
    # The ingest refused them (nginx has no notion of these tokens): its counters say so.
    text = ingress.ingest.metrics()
    assert value_of_metric(text, "sitewatch_ingest_refused_total", source="smartstatus", reason="bad_token") == 2
    assert value_of_metric(text, "sitewatch_ingest_refused_total", source="getad", reason="bad_key") == 1
    assert (value_of_metric(text, "sitewatch_ingest_uploads_total", source="smartstatus") or 0) == 0


def test_nothing_else_of_the_ingest_or_the_push_side_is_reachable_without_a_push_credential(ingest_ingress):
    ingress = ingest_ingress
    reloaded = ingest_value(ingress, "sitewatch_ingest_config_last_reload_success_timestamp_seconds")
    for base in (ingress.push_url, ingress.http_url):
        for method, path in (("GET", "/metrics"), ("GET", "/"), ("GET", "/index.html"), ("POST", "/-/reload"),
                             ("GET", "/-/reload"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
                             ("POST", "/upload/"), ("POST", "/UPLOAD"), ("POST", "/uploads"),
                             ("POST", "/api/submit_json/x"), ("POST", "/api/submit_json.php")):
            answer = requests.request(method, f"{base}{path}", params={"token": TOKEN}, data=b"x",
                                      verify=str(ingress.ca), timeout=5)
            assert answer.status_code == 403, (base, method, path, answer.status_code)
        # Paths sent as written: nginx normalises them before it matches, and rebuilds the upload path.
        for path in ("/upload/../-/reload", "/upload/%2e%2e/metrics", "/api/submit_json/../../metrics",
                     "/upload%2F..%2F-%2Freload"):
            assert raw_request(base, ingress.ca, "POST", path) == 403, (base, path)
    # The push side's own paths still want their credential on the TLS port, and are not served in clear.
    assert raw_request(ingress.push_url, ingress.ca, "POST", IMPORT_PATH) == 401
    assert raw_request(ingress.push_url, ingress.ca, "PUT", f"/metrics/job/sitewatch/site/{SITE_A}") == 401
    auth = (f"site/{SITE_A}", ingress.passwords[f"site/{SITE_A}"])
    assert requests.put(f"{ingress.http_url}/metrics/job/sitewatch/site/{SITE_A}", data=b"x 1\n", auth=auth,
                        timeout=5).status_code == 403
    assert ingress.push(f"site/{SITE_A}", SITE_A).status_code == 200  # and the push route works as before
    # Only POST reaches the ingest: nginx answers the other methods itself.
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        for path in ("/upload", "/api/submit_json"):
            answer = requests.request(method, f"{ingress.push_url}{path}", verify=str(ingress.ca), timeout=5)
            assert answer.status_code == 405 and answer.headers.get("Allow") == "POST", (method, path)
    text = ingress.ingest.metrics()
    assert value_of_metric(text, "sitewatch_ingest_refused_total", reason="method") is None
    assert ingest_value(ingress, "sitewatch_ingest_config_last_reload_success_timestamp_seconds") == reloaded


def raw_request(base: str, ca: Path, method: str, path: str) -> int:
    """A request with `path` sent exactly as written, over TLS or plain HTTP as `base` says."""
    host, port = base.split("://")[1].split(":")
    if base.startswith("https://"):
        connection = http.client.HTTPSConnection(host, int(port), timeout=10,
                                                 context=ssl.create_default_context(cafile=str(ca)))
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=b"x", headers={"Content-Type": "text/plain"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_an_oversized_upload_is_refused_by_nginx_and_a_burst_from_one_address_is_limited(ingest_ingress):
    ingress = ingest_ingress
    big = ingress.upload(content=b"x" * 100_000)  # over the test's max_body of 64 KiB
    assert big.status_code == 413 and "nginx" in big.text, big.text  # nginx's page, not the ingest's JSON
    assert value_of_metric(ingress.ingest.metrics(), "sitewatch_ingest_refused_total", reason="too_large") is None
    # 25 at once from one address, then one a second: past that, 429, and the ingest sees nothing of them.
    codes = [ingress.upload(token="wrong").status_code for _ in range(45)]
    assert codes[0] == 403 and 429 in codes, codes
    assert ingest_value(ingress, "sitewatch_ingest_refused_total", source="smartstatus",
                        reason="bad_token") == codes.count(403)
    assert ingress.post_getad().status_code == 429  # one budget per address, both paths


def test_plain_http_serves_the_upload_paths_when_configured(ingest_ingress):
    # smartstatus.bat's line left on http:// (the token in clear: off unless push.ingest_http_listen is set).
    answer = ingest_ingress.upload(base=ingest_ingress.http_url)
    assert answer.status_code == 200 and answer.json() == {"ok": True, "path": "/files/GORDUMA.status"}
    assert ingest_ingress.post_getad(base=ingest_ingress.http_url).status_code == 200


def test_without_ingest_endpoint_there_is_no_upload_route_and_no_plain_http_server(ingress):
    text = (ingress.folder / "nginx.conf").read_text()
    assert "sitewatch_ingest" not in text and "location = /upload" not in text
    assert re.findall(r"listen (\S+);", text) == [f"unix:{ingress.folder}/tmp/refused.sock"]
    assert ingress.upload().status_code == 403


def test_the_token_never_appears_in_nginxs_logs(ingest_ingress, tmp_path):
    ingress = ingest_ingress
    assert ingress.upload().status_code == 200
    assert ingress.upload(base=ingress.http_url).status_code == 200
    assert ingress.upload(token="wrong-token-in-the-url").status_code == 403
    assert ingress.upload(content=b"x" * 100_000).status_code == 413
    assert ingress.upload(method="GET").status_code == 405
    ingress.ingest.stop()  # the ingest gone: nginx's 502, which it would log with the request line
    assert ingress.upload().status_code == 502
    assert ingress.post_getad().status_code == 502
    codes = [ingress.upload(token="wrong-token-in-the-url").status_code for _ in range(40)]
    assert 429 in codes
    logs = ingress.logs() + (ingress.folder / "nginx.out").read_text(errors="replace")
    assert TOKEN not in logs and "wrong-token-in-the-url" not in logs and GETAD_KEY not in logs
    assert "token=" not in logs
    for line in ('"POST /upload" 200', '"POST /upload" 403', '"POST /upload" 413', '"GET /upload" 405',
                 '"POST /upload" 429', '"POST /upload" 502', '"POST /api/submit_json" 502'):
        assert line in logs, line  # every outcome is still in the access log, by its path


def test_bad_ingest_settings_name_the_file_and_the_path(tmp_path):
    base = """
folder: x
tls: {certificate: c.pem, key: k.pem}
push:
  listen: 0.0.0.0:9443
  pushgateways: {main: 127.0.0.1:9091}
"""
    ingest = "  ingest_endpoint: 127.0.0.1:9817\n"
    for extra, message in (
            ("  ingest_endpoint: 9817\n", "push.ingest_endpoint: expected sitewatch-ingest's address: host:port"),
            (ingest + "  ingest_paths: [upload]\n", "push.ingest_paths[0]: expected a URL path"),
            (ingest + "  ingest_paths: [/upload?token=x]\n", "push.ingest_paths[0]: expected a URL path"),
            (ingest + "  ingest_paths: [/a/../metrics]\n", "push.ingest_paths[0]: expected a URL path"),
            (ingest + "  ingest_paths: [/metrics]\n",
             "push.ingest_paths[0]: expected an upload path, not the push side's own"),
            (ingest + "  ingest_paths: [/upload, /-/reload]\n", "push.ingest_paths[1]: expected an upload path"),
            (ingest + "  ingest_paths: [/metrics/job/sitewatch/site/x]\n", "push.ingest_paths[0]: expected an upload"),
            (ingest + "  ingest_paths: [/upload, /upload]\n", "push.ingest_paths[1]: expected a path not listed twice"),
            (ingest + "  ingest_paths: []\n", "push.ingest_paths: expected a list of URL paths with at least 1"),
            (ingest + "  ingest_rate: fast\n", "push.ingest_rate: expected a request rate"),
            ("  ingest_http_listen: 0.0.0.0:80\n",
             "push.ingest_http_listen: expected nothing without push.ingest_endpoint"),
            (ingest + "  ingest_http_listen: 0.0.0.0:9443\n",
             "push.ingest_http_listen: expected a port of its own (port 9443 is push.listen's, with TLS)"),
            (ingest + "  ingest_path: [/upload]\n", "push.ingest_path")):
        config = write_config(tmp_path / "ingress.yml", base + extra)
        result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), "list"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and re.search(rf"{re.escape(str(config))}: line \d+: {re.escape(message)}",
                                                    result.stderr), (extra, result.stderr)
