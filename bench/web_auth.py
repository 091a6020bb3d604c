"""What `--web.config.file` (TLS and basic auth) costs the sitewatch exporter, and what a flood of wrong
passwords does to it; beside node_exporter, whose exporter-toolkit is what a user would otherwise run.

It makes a CA of its own and a server certificate for 127.0.0.1 (EC P-256), a random password for the user
`prometheus` and its bcrypt hash of cost 10, and one web config with both. Then it starts, on free 127.0.0.1
ports and with that same web config:

  sitewatch   `sitewatch-exporter run` with three tcp checks on closed loopback ports (a small page);
  node        Debian's prometheus-node-exporter with --collector.disable-defaults --collector.time (a small
              page too), its exporter-toolkit being the one a user would put in front of a plain exporter.

And measures each, phase by phase, one server after the other (so both see the same machine):

  right       --requests (500) GET /metrics with the right password, one after the other: over a new TLS
              connection each (as Prometheus with keep-alive off) and over one keep-alive connection
              (http.client opens a new one whenever the server closes it; the connections opened are
              counted): p50, p99, and the server's CPU seconds (/proc/PID/stat) per 100 requests;
  wrong       the same with a wrong password, a new one each time (what someone guessing sends; a password
              already refused is remembered by both servers and costs no bcrypt check), over new
              connections and over keep-alive; and a single wrong password sent again and again. The CPU
              per 100 requests is the cost an attacker can impose;
  flood       --flooders (32) clients in --flood-processes (4) processes of their own, each sending a new
              wrong password as soon as the last was answered, for --flood-seconds (10), while one
              legitimate client scrapes /metrics every second over a new TLS connection, with Prometheus'
              default scrape timeout (10 s): its worst and median time and whether every scrape came back
              200; the wrong passwords answered per second and the server's CPU over the window;
  memory      resident memory (and its peak) of each server at the end.

Each phase first sends 5 requests with the right password that are not counted, so a phase starts with the
right password's check remembered. Statuses are checked, not assumed: a right password must get 200 with
the server's own families in the page, a wrong one 401; any other answer is counted and fails the run.

Target: during the flood, every legitimate scrape of the sitewatch exporter answered 200 within the scrape
timeout. Printed with PASS or FAIL; the exit status is 0 when it is met and every answer was the expected
one, 1 otherwise. Every packet goes to 127.0.0.1; every process the script starts is stopped by its pid, on
errors, Ctrl-C and SIGTERM too. The password is never printed. With the defaults the run takes about
4 minutes on 2 CPUs.

    .venv/bin/python bench/web_auth.py [--requests 500] [--flooders 32] [--flood-processes 4]
                                       [--flood-seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import json
import multiprocessing
import os
import platform
import queue
import secrets
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bcrypt  # noqa: E402
from benchkit import (BenchError, Service, at_least_one, find_program, first_line, free_loopback_port,  # noqa: E402
                      percentile, positive, raise_system_exit)
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

USER = "prometheus"
BCRYPT_COST = 10  # what `sitewatch-exporter hash-password` and htpasswd -B make by default
SCRAPE_TIMEOUT = 10.0  # Prometheus' default scrape_timeout
FLOOD_REQUEST_TIMEOUT = 60.0  # a flooder waits this long for its 401 before it counts an error
WARM_UP = 5  # right-password requests before each phase, not counted


# -- the certificate and the web config -------------------------------------------------------------

@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certificates(folder: Path) -> Tls:
    """A CA of this run and a server certificate it signed for 127.0.0.1, valid for a day."""
    now = datetime.now(timezone.utc)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("web_auth bench CA")).issuer_name(_name("web_auth bench CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    tls = Tls(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    tls.key.chmod(0o600)
    return tls


def write_web_config(folder: Path, tls: Tls, password: str) -> Path:
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    path = folder / "web-config.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {tls.cert}\n  key_file: {tls.key}\n"
                    f"basic_auth_users:\n  {USER}: {digest}\n", encoding="utf-8")
    return path


def site_config(folder: Path) -> Path:
    """Three tcp checks on loopback ports nobody listens on: refused at once, a page of a few dozen lines."""
    lines = ["sites:", "  - id: shop", "    checks:"]
    for number in range(3):
        lines.append(f"      - {{name: port-{number}, interval: 15s, timeout: 1s, "
                     f"tcp: {{host: 127.0.0.1, port: {free_loopback_port()}}}}}")
    path = folder / "site.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- HTTPS ------------------------------------------------------------------------------------------

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class CountedConnection(http.client.HTTPSConnection):
    """An HTTPS connection that counts the TCP + TLS connections it opens (it opens a new one by itself
    after the server closed the last)."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float):
        super().__init__("127.0.0.1", port, context=context, timeout=timeout)
        self.opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


@dataclass
class Answer:
    status: int
    seconds: float
    body: bytes


def get(connection: http.client.HTTPConnection, authorization: str) -> Answer:
    """GET /metrics on `connection`, timed from the request (with the connection's opening, if it must open
    one) to the answer's last byte."""
    started = time.perf_counter()
    connection.request("GET", "/metrics", headers={"Authorization": authorization})
    response = connection.getresponse()
    body = response.read()
    return Answer(response.status, time.perf_counter() - started, body)


def get_once(port: int, context: ssl.SSLContext, authorization: str, timeout: float) -> Answer:
    """GET /metrics over a connection of its own, closed afterwards."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        return get(connection, authorization)
    finally:
        connection.close()


# -- the two servers --------------------------------------------------------------------------------

class TlsService(Service):
    """A server behind the web config: ready once GET of its ready path over TLS with the password is 200."""

    def __init__(self, *args, context: ssl.SSLContext, authorization: str, marker: bytes, **kwargs):
        super().__init__(*args, **kwargs)
        self.context = context
        self.authorization = authorization
        self.marker = marker  # what the right password's /metrics page must hold

    def _ready_status(self) -> int:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=2)
        try:
            connection.request("GET", self.ready_path, headers={"Authorization": self.authorization})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def cpu_seconds(self, pid: int | None = None) -> float:
        # The benchmark's figures are only meaningful while the server runs: a dead one is an error here.
        if not self.alive():
            raise BenchError(f"{self.name} exited during the run: {self.log_tail()}")
        return super().cpu_seconds(pid)


def sitewatch_service(workdir: Path, web: Path, context: ssl.SSLContext, authorization: str) -> TlsService:
    port = free_loopback_port()
    argv = [sys.executable, "-m", "exporter.cli", "run", "--config", str(site_config(workdir)),
            "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web)]
    return TlsService("sitewatch-exporter", argv, port, workdir / "sitewatch.log", ready_path="/-/healthy",
                      context=context, authorization=authorization, marker=b"sitewatch_")


def node_exporter_service(binary: str, workdir: Path, web: Path, context: ssl.SSLContext,
                          authorization: str) -> TlsService:
    port = free_loopback_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}",
            "--collector.disable-defaults", "--collector.time"]
    return TlsService("node_exporter", argv, port, workdir / "node-exporter.log", ready_path="/metrics",
                      context=context, authorization=authorization, marker=b"node_time_seconds")


# -- one request after the other --------------------------------------------------------------------

@dataclass
class Series:
    """Requests sent one after the other to one server."""

    count: int
    p50_s: float
    p99_s: float
    max_s: float
    cpu_per_100_s: float
    connections: int
    unexpected: dict[str, int]  # "status 500": 2, "error ConnectionResetError": 1
    page_bytes: int = 0


def warm_up(service: TlsService) -> None:
    for _ in range(WARM_UP):
        answer = get_once(service.port, service.context, service.authorization, SCRAPE_TIMEOUT)
        if answer.status != 200:
            raise BenchError(f"{service.name} answered {answer.status} to the right password")


def sequential(service: TlsService, count: int, authorization: Callable[[], str], expected: int,
               keep_alive: bool) -> Series:
    warm_up(service)
    times: list[float] = []
    unexpected: Counter[str] = Counter()
    opened = 0
    page = b""
    kept = CountedConnection(service.port, service.context, SCRAPE_TIMEOUT) if keep_alive else None
    cpu_before = service.cpu_seconds()
    try:
        for _ in range(count):
            try:
                if kept is not None:
                    answer = get(kept, authorization())
                else:
                    answer = get_once(service.port, service.context, authorization(), SCRAPE_TIMEOUT)
                    opened += 1
            except (OSError, http.client.HTTPException) as err:
                unexpected[f"error {type(err).__name__}"] += 1
                if kept is not None:
                    kept.close()
                continue
            times.append(answer.seconds)
            if answer.status != expected:
                unexpected[f"status {answer.status}"] += 1
            elif expected == 200:
                if page == b"" and service.marker not in answer.body:
                    unexpected["a page without the server's own families"] += 1
                page = answer.body
    finally:
        if kept is not None:
            opened = kept.opened
            kept.close()
    cpu = service.cpu_seconds() - cpu_before
    if not times:
        raise BenchError(f"{service.name} answered none of {count} requests: {dict(unexpected)}")
    return Series(count, percentile(times, 0.5), percentile(times, 0.99), max(times), 100 * cpu / count, opened,
                  dict(unexpected), len(page))


def new_wrong_password() -> str:
    return basic(USER, "wrong-" + secrets.token_urlsafe(12))


# -- the flood --------------------------------------------------------------------------------------

def flood_process(port: int, ca: str, threads: int, start_at: float, stop_at: float, results) -> None:
    """In a process of its own (spawned): `threads` clients, each sending a new wrong password as soon as
    its last one was answered, from `start_at` to `stop_at` (wall-clock time, the same in every process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops this process by its pid
    context = client_context(Path(ca))
    tally: Counter[str] = Counter()
    lock = threading.Lock()

    def flooder() -> None:
        connection = CountedConnection(port, context, FLOOD_REQUEST_TIMEOUT)
        mine: Counter[str] = Counter()
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            try:
                mine[f"status {get(connection, new_wrong_password()).status}"] += 1
            except (OSError, http.client.HTTPException) as err:
                mine[f"error {type(err).__name__}"] += 1
                connection.close()
        mine["connections"] += connection.opened
        connection.close()
        with lock:
            tally.update(mine)

    workers = [threading.Thread(target=flooder, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(dict(tally))


@dataclass
class Flood:
    seconds: float
    flooders: int
    wrong_answered: int  # 401s
    wrong_per_s: float
    flood_connections: int
    flood_unexpected: dict[str, int]
    scrapes: list[tuple[float, int | str]] = field(default_factory=list)  # (seconds, status or error)
    cpu_s: float = 0.0

    @property
    def legit_ok(self) -> int:
        return sum(1 for seconds, status in self.scrapes if status == 200 and seconds <= SCRAPE_TIMEOUT)

    @property
    def legit_worst_s(self) -> float:
        return max(seconds for seconds, _ in self.scrapes)

    @property
    def legit_p50_s(self) -> float:
        return percentile([seconds for seconds, _ in self.scrapes], 0.5)


def flood(service: TlsService, ca: Path, arguments: argparse.Namespace) -> Flood:
    warm_up(service)
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    start_at = time.time() + 3.0  # a spawned process takes a second or so to import
    stop_at = start_at + arguments.flood_seconds
    shares = [arguments.flooders // arguments.flood_processes + (1 if i < arguments.flooders %
                                                                 arguments.flood_processes else 0)
              for i in range(arguments.flood_processes)]
    processes = [spawn.Process(target=flood_process, args=(service.port, str(ca), share, start_at, stop_at, results),
                               daemon=True) for share in shares if share]
    scrapes: list[tuple[float, int | str]] = []
    reported = False
    try:
        for process in processes:
            process.start()
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before, began = service.cpu_seconds(), time.monotonic()
        next_scrape = time.monotonic() + 0.5  # let the flood fill the server's queue first
        while next_scrape < began + arguments.flood_seconds:
            time.sleep(max(0.0, next_scrape - time.monotonic()))
            started = time.perf_counter()
            try:
                answer = get_once(service.port, service.context, service.authorization, SCRAPE_TIMEOUT)
                scrapes.append((answer.seconds, answer.status))
            except (OSError, http.client.HTTPException) as err:
                scrapes.append((time.perf_counter() - started, type(err).__name__))
            next_scrape = max(next_scrape + 1.0, time.monotonic())  # a late scrape delays the next, no overlap
        time.sleep(max(0.0, began + arguments.flood_seconds - time.monotonic()))
        cpu = service.cpu_seconds() - cpu_before
        tally: Counter[str] = Counter()
        for _ in processes:
            try:
                tally.update(results.get(timeout=FLOOD_REQUEST_TIMEOUT + 30))
            except queue.Empty:
                raise BenchError("a flood process sent no figures") from None
        reported = True
    finally:
        for process in processes:
            if reported:  # each has sent its figures and is ending; on an error or a signal, no waiting
                process.join(timeout=5)
            if process.is_alive():
                process.kill()  # by its pid
            process.join()
    connections = tally.pop("connections", 0)
    wrong = tally.pop("status 401", 0)
    return Flood(arguments.flood_seconds, arguments.flooders, wrong, wrong / arguments.flood_seconds, connections,
                 dict(tally), scrapes, cpu)


# -- the run ----------------------------------------------------------------------------------------

PHASES = (
    ("right_new", "right password, new TLS connection each"),
    ("right_kept", "right password, keep-alive"),
    ("wrong_new", "wrong password (new each), new connection each"),
    ("wrong_kept", "wrong password (new each), keep-alive"),
    ("wrong_same", "one wrong password repeated, keep-alive"),
)


def run(workdir: Path, arguments: argparse.Namespace, binary: str) -> dict:
    tls = write_certificates(workdir)
    password = secrets.token_urlsafe(18)  # never printed
    web = write_web_config(workdir, tls, password)
    context, authorization = client_context(tls.ca), basic(USER, password)
    repeated_wrong = new_wrong_password()
    servers = [sitewatch_service(workdir, web, context, authorization),
               node_exporter_service(binary, workdir, web, context, authorization)]
    results: dict[str, dict] = {server.name: {} for server in servers}
    started: list[TlsService] = []
    try:
        for server in servers:
            started.append(server.start())
        kinds = {"right_new": (lambda: authorization, 200, False), "right_kept": (lambda: authorization, 200, True),
                 "wrong_new": (new_wrong_password, 401, False), "wrong_kept": (new_wrong_password, 401, True),
                 "wrong_same": (lambda: repeated_wrong, 401, True)}
        for key, title in PHASES:
            for server in servers:
                print(f"{server.name}: {arguments.requests} requests, {title} ...", flush=True)
                how, expected, keep_alive = kinds[key]
                results[server.name][key] = sequential(server, arguments.requests, how, expected, keep_alive)
        for server in servers:
            print(f"{server.name}: {arguments.flooders} clients sending wrong passwords for "
                  f"{arguments.flood_seconds:g} s, one scraping every second ...", flush=True)
            results[server.name]["flood"] = flood(server, tls.ca, arguments)
        for server in servers:
            results[server.name]["rss_mib"] = server.status_mib("VmRSS")
            results[server.name]["peak_rss_mib"] = server.status_mib("VmHWM")
    finally:
        for server in started:
            server.stop()
    for server in servers:
        if password in server.log_text():
            raise BenchError(f"{server.name} wrote the password to its log")
    return results


# -- reporting --------------------------------------------------------------------------------------

def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "load_average_at_start": os.getloadavg()}


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}" if seconds < 10 else f"{seconds * 1000:,.0f}"


def unexpected_answers(results: dict) -> list[str]:
    found = []
    for name, figures in results.items():
        for key, _title in PHASES:
            for what, count in figures[key].unexpected.items():
                found.append(f"{name}, {key}: {count} × {what}")
        for what, count in figures["flood"].flood_unexpected.items():
            found.append(f"{name}, flood: {count} × {what}")
    return found


def print_report(results: dict, arguments: argparse.Namespace, versions: dict[str, str]) -> bool:
    names = list(results)
    width = 30

    def row(title: str, values: list[str]) -> None:
        print(f"{title:<56}" + "".join(f"  {value:>{width}}" for value in values))

    print()
    print(f"== /metrics behind TLS and basic auth (bcrypt cost {BCRYPT_COST}); {arguments.requests} requests "
          f"per row, one after the other ==")
    row("", names)
    row("/metrics page with the right password", [f"{results[n]['right_new'].page_bytes:,} bytes" for n in names])
    for key, title in PHASES:
        row(f"{title}: p50 / p99", [f"{milliseconds(results[n][key].p50_s)} / {milliseconds(results[n][key].p99_s)} ms"
                                    for n in names])
        row("    server CPU per 100 requests; connections opened",
            [f"{results[n][key].cpu_per_100_s:.2f} s; {results[n][key].connections:,}" for n in names])
    print()
    print(f"== {arguments.flooders} clients sending wrong passwords for {arguments.flood_seconds:g} s, one "
          f"legitimate scrape every second (new TLS connection, timeout {SCRAPE_TIMEOUT:g} s) ==")
    row("", names)
    floods = {n: results[n]["flood"] for n in names}
    row("legitimate scrapes answered 200 in time", [f"{f.legit_ok} of {len(f.scrapes)}" for f in floods.values()])
    row("legitimate scrape p50 / worst", [f"{milliseconds(f.legit_p50_s)} / {milliseconds(f.legit_worst_s)} ms"
                                          for f in floods.values()])
    row("wrong passwords answered 401 per second", [f"{f.wrong_per_s:,.1f}" for f in floods.values()])
    row("connections the flood opened", [f"{f.flood_connections:,}" for f in floods.values()])
    row("server CPU in the window (% of one core)", [f"{100 * f.cpu_s / f.seconds:.0f} %" for f in floods.values()])
    row("resident memory at the end (peak)", [f"{results[n]['rss_mib']:.0f} ({results[n]['peak_rss_mib']:.0f}) MiB"
                                              for n in names])
    for name in names:
        print(f"{name} legitimate scrapes in the flood: "
              + ", ".join(f"{milliseconds(s)} ms" + ("" if status == 200 else f" ({status})")
                          for s, status in floods[name].scrapes))
    print("\n" + "; ".join(f"{name}: {version}" for name, version in versions.items()))

    problems = unexpected_answers(results)
    if problems:
        print("unexpected answers:\n  " + "\n  ".join(problems))
    ours, theirs = names
    mine, other = floods[ours], floods[theirs]
    met = mine.legit_ok == len(mine.scrapes) and not problems
    wrong_cost = results[ours]["wrong_new"].cpu_per_100_s / max(results[theirs]["wrong_new"].cpu_per_100_s, 1e-9)
    print(f"\ntarget: every legitimate scrape of {ours} during the flood answered 200 within {SCRAPE_TIMEOUT:g} s: "
          f"{mine.legit_ok} of {len(mine.scrapes)}, worst {milliseconds(mine.legit_worst_s)} ms "
          f"({theirs}: {other.legit_ok} of {len(other.scrapes)}, worst {milliseconds(other.legit_worst_s)} ms) "
          f"{'PASS' if met else 'FAIL'}")
    print(f"verdict: a right-password scrape over a new TLS connection takes "
          f"{milliseconds(results[ours]['right_new'].p50_s)} ms (p50) against "
          f"{milliseconds(results[theirs]['right_new'].p50_s)} ms; a wrong password costs {ours} "
          f"{results[ours]['wrong_new'].cpu_per_100_s:.2f} s of CPU per 100 ({wrong_cost:.1f} × {theirs}); "
          f"under the flood the right user's worst scrape took {milliseconds(mine.legit_worst_s)} ms "
          f"({theirs}: {milliseconds(other.legit_worst_s)} ms)")
    return met


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure the sitewatch exporter behind --web.config.file (TLS and "
                                                 "basic auth) beside node_exporter's exporter-toolkit: scrapes with "
                                                 "the right and wrong passwords, and a flood of wrong ones.")
    parser.add_argument("--requests", type=at_least_one, default=500,
                        help="requests per row, one after the other (default 500)")
    parser.add_argument("--flooders", type=at_least_one, default=32,
                        help="clients sending wrong passwords at once in the flood (default 32)")
    parser.add_argument("--flood-processes", type=at_least_one, default=4,
                        help="processes the flooders are spread over (default 4)")
    parser.add_argument("--flood-seconds", type=positive, default=10.0, help="how long the flood lasts (default 10)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    arguments = parser.parse_args()
    if arguments.flood_seconds < 1.5:
        parser.error("--flood-seconds must be at least 1.5: the legitimate client scrapes once a second")
    return arguments


def main() -> int:
    arguments = parse_arguments()
    binary = find_program(("prometheus-node-exporter", "node_exporter"),
                          "web_auth: prometheus-node-exporter is missing (/usr/bin/prometheus-node-exporter): "
                          "run scripts/install-debs.sh or apt-get install prometheus-node-exporter")
    signal.signal(signal.SIGTERM, raise_system_exit)
    report: dict = {"machine": machine(), "settings": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(arguments).items()}}
    versions = {"sitewatch-exporter": first_line([sys.executable, "-m", "exporter.cli", "--version"]),
                "node_exporter": first_line([binary, "--version"])}
    print(f"machine: {report['machine']['nproc']} CPUs ({report['machine']['cpu_model']}), Python "
          f"{report['machine']['python']}, load {report['machine']['load_average_at_start'][0]:.2f}", flush=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="web-auth-") as tmp:
            results = run(Path(tmp), arguments, binary)
    except BenchError as err:
        print(f"web_auth: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nweb_auth: interrupted", file=sys.stderr)
        return 130
    met = print_report(results, arguments, versions)
    print(f"\ntotal {time.monotonic() - started:.0f} s; load at the end {os.getloadavg()[0]:.2f}")
    if arguments.json:
        report["versions"] = versions
        report["results"] = {name: {key: (value.__dict__ if hasattr(value, "__dict__") else value)
                                    for key, value in figures.items()} for name, figures in results.items()}
        arguments.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"figures written to {arguments.json}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
