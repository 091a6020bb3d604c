"""The ingress on real parts: Debian's nginx rendered by `sitewatch-ingress`, two real Pushgateways, the real
`sitewatch-pusher` pushing over TLS with its site's credential, Prometheus scraping both Pushgateways, and
the receiver behind the office side."""

from __future__ import annotations

import base64
import http.client
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

from conftest import ROOT, free_port, is_root, wait_until, write_config
from receiver_kit import write_receiver_config

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE_A, SITE_B, SITE_C = "shop-a", "shop-b", "shop-c"


@dataclass
class Ingress:
    folder: Path
    config: Path
    push_url: str
    office: dict[str, str]
    gateways: dict[str, str]
    ca: Path
    nginx: subprocess.Popen
    passwords: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

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


def pusher_config(folder: Path, ingress: Ingress, site: str, user: str, password_file: str) -> Path:
    return write_config(folder / f"{site}-as-{user.replace('/', '-')}.yml", f"""
push:
  gateway: {ingress.push_url}
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
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: run 'make test', which installs Debian's package")
    gateways = {"main": pushgateway(), "second": pushgateway()}
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
office:
  pushgateway: {{listen: 127.0.0.1:{office_gateway}, upstream: {gateways["main"].removeprefix("http://")}}}
  receiver: {{listen: 127.0.0.1:{office_receiver}, upstream: 127.0.0.1:{receiver.port}}}
""")
    run = Ingress(folder, config, f"https://127.0.0.1:{push_port}",
                  {"pushgateway": f"https://127.0.0.1:{office_gateway}", "receiver": f"https://127.0.0.1:{office_receiver}"},
                  gateways, folder / "tls" / "cert.pem", None)  # type: ignore[arg-type]
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
    assert requests.post(f"{office}/alert/duty", auth=auth, json={}, verify=str(ingress.ca), timeout=5).status_code == 403
    assert requests.get(f"{office}/metrics", auth=auth, verify=str(ingress.ca), timeout=5).status_code == 403


def test_no_credential_appears_in_any_log(ingress, tmp_path):
    for site in (SITE_A, SITE_B):
        run_pusher(pusher_config(tmp_path, ingress, site, f"site/{SITE_A}", str(ingress.folder / f"site-{SITE_A}.password")))
    ingress.push(f"site/{SITE_A}", SITE_A)
    requests.put(f"{ingress.push_url}/metrics/job/sitewatch/site/{SITE_A}", auth=(f"site/{SITE_A}", "wrong-guess-123"),
                 data=b"x 1\n", verify=str(ingress.ca), timeout=5)
    texts = ingress.logs() + "".join(ingress.outputs)
    for path in tmp_path.glob("pushgateway-*.log"):
        texts += path.read_text(errors="replace")
    for password in ingress.passwords.values():
        assert password not in texts
    assert "wrong-guess-123" not in texts


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
    assert f"{config}: push.listen: expected where sites push: host:port" in result.stderr
    (tmp_path / "ingress.yml").write_text((tmp_path / "ingress.yml").read_text().replace("listen: 9443", "listen: 0.0.0.0:9443"))
    result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "push.shards.kodeks-spb: expected one of the Pushgateways" in result.stderr
