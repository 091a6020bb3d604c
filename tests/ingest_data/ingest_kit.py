"""What the sitewatch-ingest tests share: a real `sitewatch-ingest` process (started by a fixture, stopped by
its own pid), a config writer with the test secrets in the environment, and reading its metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port, http_get, value_of_metric, wait_until

DATA = Path(__file__).resolve().parent
DEALER = "rogaikopita599"
TOKEN = "ZDvet451dfdggd-test-token"
GETAD_KEY = "getad-distributor-key-5b1c9e"
SITE_KEY = "getad-site-key-77aa01"
OTHER_DEALER = "0420otherdist"
OTHER_TOKEN = "other-distributor-token-9q"
SECRETS = {"INGEST_TEST_TOKEN": TOKEN, "INGEST_TEST_GETAD_KEY": GETAD_KEY, "INGEST_TEST_SITE_KEY": SITE_KEY,
           "INGEST_TEST_OTHER_TOKEN": OTHER_TOKEN}

# Two distributors; a Кодекс site, a café matched by hostname, one by its register's serial, one by its RMS
# address, one with its own getad key, and a Кодекс site of the other distributor.
CONFIG = f"""
storage: {{path: ingest.db}}
distributors:
  {DEALER}:
    token: {{env: INGEST_TEST_TOKEN}}
    getad_api_key: {{env: INGEST_TEST_GETAD_KEY}}
    labels: {{distributor: rogaikopita, telegram_route: rogaikopita}}
    timezone: Europe/Moscow
  {OTHER_DEALER}:
    token: {{env: INGEST_TEST_OTHER_TOKEN}}
    labels: {{distributor: other, telegram_route: other-kodeks}}
sites:
  - id: gorduma-kodeks
    distributor: {DEALER}
    labels: {{client: gorodskaya-duma, telegram_route: rogaikopita-kodeks}}
    smartstatus: {{client: GORDUMA}}
  - id: isaac-cafe
    distributor: {DEALER}
    labels: {{client: isaac}}
    getad: {{hostnames: [isaac-lt]}}
  - id: mitsu-cafe
    distributor: {DEALER}
    labels: {{client: mitsu-owner}}
    getad: {{serials: ["065001234567890"]}}
  - id: rms-cafe
    distributor: {DEALER}
    labels: {{client: cafe-chain}}
    getad: {{url_rms: ["https://cafe.iiko.it/resto/"]}}
  - id: own-key-cafe
    distributor: {DEALER}
    labels: {{client: own-key}}
    getad: {{api_key: {{env: INGEST_TEST_SITE_KEY}}}}
  - id: other-kodeks
    distributor: {OTHER_DEALER}
    labels: {{client: other-client}}
    smartstatus: {{client: OTHER}}
"""


def write_ingest_config(folder: Path, text: str = CONFIG, name: str = "ingest.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@dataclass
class IngestProcess:
    config: Path
    log: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "IngestProcess":
        handle = self.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "--config", str(self.config),
             "--web.listen-address", f"127.0.0.1:{self.port}"],
            stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **SECRETS, **self.env})

        def serving():
            if self.process.poll() is not None:
                raise AssertionError(f"sitewatch-ingest exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                return http_get(self.url + "/-/ready", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(serving, 30, what="sitewatch-ingest to serve")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> "IngestProcess":
        self.stop()
        return self.start()

    def metrics(self) -> str:
        return http_get(self.url + "/metrics")[1]

    def value(self, name: str, **labels: str) -> float | None:
        return value_of_metric(self.metrics(), name, **labels)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    # --- what the seed tools send ---------------------------------------------------------------------------

    def upload(self, file_name: str, content: bytes, dealer: str = DEALER, token: str = TOKEN) -> requests.Response:
        """smartstatus.bat's upload, as curl -H "upload: yes" -H "dealer: ..." -Ffile=@<file> sends it."""
        return requests.post(f"{self.url}/upload", params={"token": token},
                             headers={"upload": "yes", "dealer": dealer},
                             files={"file": (file_name, content, "application/octet-stream")}, timeout=10)

    def post_getad(self, body: bytes | str | dict, key: str = GETAD_KEY) -> requests.Response:
        """getad-service's POST of one JSON file, with its two headers."""
        if isinstance(body, dict):
            body = json.dumps(body, ensure_ascii=False, indent=4)
        if isinstance(body, str):
            body = body.encode("utf-8")
        return requests.post(f"{self.url}/api/submit_json", data=body,
                             headers={"Content-Type": "application/json", "X-API-Key": key}, timeout=10)


@pytest.fixture
def ingest_process(tmp_path):
    """Starts `sitewatch-ingest` on a config (written from CONFIG by default); each is stopped by its pid."""
    started: list[IngestProcess] = []

    def start(config: Path | None = None, **env: str) -> IngestProcess:
        config = config or write_ingest_config(tmp_path)
        process = IngestProcess(config, tmp_path / f"ingest-{len(started)}.log", env=env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def data_file(name: str) -> bytes:
    return (DATA / name).read_bytes()


def monitoring_page(header: str = "Sysinfo metrics") -> bytes:
    """A Кодекс monitoring page as the simulator serves it: /docs fine, /law with a bundle problem."""
    from simulators.kodeks import Catalog, Scenario, metrics_text

    scenario = Scenario(catalogs=[Catalog("/docs"), Catalog("/law", product_control_problem=True,
                                                            statuses=["no required volume DB"])])
    return metrics_text(scenario, header).encode("utf-8")



def series_value(text: str, metric: str, labels: dict[str, str]) -> float | None:
    """conftest.value_of_metric with the labels as a dict: register licences have a label called `name`."""
    for line in text.splitlines():
        if line.startswith((metric + "{", metric + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None
