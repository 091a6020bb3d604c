"""Shared fixtures: real processes (the exporter, Prometheus), a silent host in a network namespace.

Every process a fixture starts is stopped by the same fixture, by its own pid; every namespace it makes
it removes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VOID_NETNS_SCRIPT = ROOT / "scripts" / "void-netns.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8")


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root() or shutil.which("ip") is None,
                                reason="needs root and iproute2 for network namespaces")


@pytest.fixture(scope="session")
def void_address():
    """An IPv4 address in a namespace this fixture creates, behind which no host ever answers."""
    if not is_root() or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"swtest-{os.getpid()}"
    address = subprocess.run([str(VOID_NETNS_SCRIPT), "up", name], check=True, capture_output=True,
                             text=True).stdout.strip()
    yield address
    subprocess.run([str(VOID_NETNS_SCRIPT), "down", name], check=False)


@dataclass
class RunningExporter:
    process: subprocess.Popen
    port: int
    config: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return http_get(self.url + "/metrics")[1]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def start_exporter(tmp_path):
    """Starts `sitewatch-exporter` on a config; returns a RunningExporter once it serves HTTP."""
    started: list[RunningExporter] = []

    def start(config: Path, wait_ready: bool = True, env: dict[str, str] | None = None) -> RunningExporter:
        port = free_port()
        log = tmp_path / f"exporter-{port}.log"
        handle = log.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "--config", str(config),
             "--web.listen-address", f"127.0.0.1:{port}"],
            stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})
        exporter = RunningExporter(process, port, config, log)
        started.append(exporter)

        def serving():
            if process.poll() is not None:
                raise AssertionError(f"exporter exited with {process.returncode}:\n{exporter.log_text()}")
            try:
                return http_get(exporter.url + ("/-/ready" if wait_ready else "/-/healthy"), timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(serving, 30, what="the exporter to serve")
        return exporter

    yield start
    for exporter in started:
        if exporter.process.poll() is None:
            exporter.process.send_signal(signal.SIGTERM)
            try:
                exporter.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                exporter.process.kill()
                exporter.process.wait()


class Daemons:
    """Prometheus-family servers a fixture started: each waited for on its /-/ready, each stopped by pid."""

    def __init__(self):
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], log_path: Path, port: int) -> str:
        process = subprocess.Popen(args, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited: {log_path.read_text()}")
            try:
                return http_get(url + "/-/ready", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, 30, what=f"{name} to be ready")
        return url

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def prometheus(tmp_path):
    """Starts Debian's Prometheus on a loopback port, scraping the given targets every second."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("prometheus is not installed: run 'make test', which installs Debian's package")
    daemons = Daemons()

    def start(targets: list[str], honor_labels: bool = False) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        target_list = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sitewatch\n    honor_labels: {str(honor_labels).lower()}\n"
            f"    static_configs: [{{targets: [{target_list}]}}]\n",
            encoding="utf-8")
        return daemons.start("Prometheus", [binary, f"--config.file={config}",
                                            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                            f"--web.listen-address=127.0.0.1:{port}"],
                             tmp_path / "prometheus.log", port)

    yield start
    daemons.stop_all()


@pytest.fixture
def victoriametrics(tmp_path):
    """Starts Debian's single-node VictoriaMetrics on a loopback port, with its own data directory.

    Queries see samples up to 1 s old (the default hides the last 30 s, for clients whose samples arrive
    late), and `extra_args` adds flags such as -promscrape.config."""
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        pytest.fail("victoria-metrics is not installed: run 'make test', which installs Debian's package")
    daemons = Daemons()

    def start(extra_args: tuple[str, ...] = ()) -> str:
        port = free_port()
        return daemons.start("VictoriaMetrics", [binary, f"-storageDataPath={tmp_path / f'vm-{port}'}",
                                                 f"-httpListenAddr=127.0.0.1:{port}", "-search.latencyOffset=1s",
                                                 *extra_args],
                             tmp_path / f"victoriametrics-{port}.log", port)

    yield start
    daemons.stop_all()


def value_of_metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of `name` in exposition `text` that has all of `labels`."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def run_check(check):
    """Runs one configured check once, the way the exporter's scheduler does, with fresh engines."""
    import asyncio

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    engine, client = PingEngine(), HttpClient()
    try:
        return asyncio.run(run_once(check, engine, client))
    finally:
        client.close()
        engine.stop()


@pytest.fixture
def pushgateway(tmp_path):
    """Starts Debian's Pushgateway on a loopback port; optionally with a --web.config.file."""
    binary = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
    if not Path(binary).exists():
        pytest.fail("prometheus-pushgateway is not installed: run 'make test', which installs Debian's package")
    processes: list[subprocess.Popen] = []

    def start(web_config: str | None = None) -> str:
        port = free_port()
        # Debian's build persists to one shared file by default: each instance gets its own, or groups
        # pushed by one test (or a benchmark) would turn up in the next.
        args = [binary, f"--web.listen-address=127.0.0.1:{port}",
                f"--persistence.file={tmp_path / f'pushgateway-{port}.data'}"]
        if web_config:
            config = tmp_path / f"pgw-web-{port}.yml"
            config.write_text(web_config, encoding="utf-8")
            args.append(f"--web.config.file={config}")
        log = (tmp_path / f"pushgateway-{port}.log").open("w")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def up():
            if process.poll() is not None:
                raise AssertionError(f"pushgateway exited: {(tmp_path / f'pushgateway-{port}.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(up, 20, what="the Pushgateway to listen")
        return url

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copy_example_logs(name: str, folder: Path) -> Path:
    """examples/<name> copied into `folder` as freshly written files: a check that calls a log older than
    a few days stale must see the copy as new, not as old as the checkout."""
    copied = Path(shutil.copytree(ROOT / "examples" / name, folder))
    now = time.time()
    for path in copied.rglob("*"):
        os.utime(path, (now, now))
    return copied


def copy_getad_example(folder: Path, fn_in_days: int = 220, licence_in_days: int = 42) -> tuple[date, date]:
    """examples/getad-date copied into `folder` as the demo copies it: its register's ФН and «ФФД 1.2»
    licence running out `fn_in_days` and `licence_in_days` from today; returns their last days."""
    from demo.configs import getad_example

    return getad_example(folder, fn_in_days, licence_in_days)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def fake_telegram():
    """A fake Telegram Bot API on a loopback port (see simulators/telegram.py)."""
    from simulators.telegram import FakeTelegram

    fakes: list[FakeTelegram] = []

    def start(**options) -> FakeTelegram:
        fake = FakeTelegram(**options).start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


@pytest.fixture
def receiver_app(tmp_path):
    """Builds receiver apps in this process (`create_app`), each stopped (sender included) afterwards."""
    from alertmanager.app import create_app, receiver_of
    from alertmanager.config import load_receiver_config

    apps = []

    def build(config_path: Path, **options):
        app = create_app(load_receiver_config(config_path), **options)
        apps.append(app)
        return app

    yield build
    for app in apps:
        receiver_of(app).close()


@pytest.fixture
def receiver_process(tmp_path):
    """Starts `sitewatch-receiver run` processes; kills what is left by pid afterwards."""
    from receiver_kit import ReceiverProcess

    started: list[ReceiverProcess] = []

    def start(config: Path, *extra_args: str) -> ReceiverProcess:
        process = ReceiverProcess(config, tmp_path / f"receiver-{len(started)}.log", extra_args).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def alertmanager(tmp_path):
    """Starts Debian's Alertmanager on loopback with the given config text; returns its URL."""
    binary = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    if not Path(binary).exists():
        pytest.fail("prometheus-alertmanager is not installed: run 'make test', which installs Debian's package")
    daemons = Daemons()

    def start(config_text: str) -> str:
        port = free_port()
        config = tmp_path / f"alertmanager-{port}.yml"
        config.write_text(config_text, encoding="utf-8")
        data = tmp_path / f"alertmanager-{port}-data"
        data.mkdir()
        # --cluster.listen-address= turns clustering off: no gossip port, nothing leaves loopback.
        return daemons.start("Alertmanager", [binary, f"--config.file={config}", f"--storage.path={data}",
                                              f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                             tmp_path / f"alertmanager-{port}.log", port)

    yield start
    daemons.stop_all()
