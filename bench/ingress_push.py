"""What the ingress (nginx in front of the Pushgateway) costs per push, against what a user would do instead.

One run starts, on 127.0.0.1 only and in a temporary directory:

  - two Debian `prometheus-pushgateway`s on plain HTTP, each with its own --persistence.file: "direct",
    which the sites push to with no TLS and no credential, and "upstream", which sits behind the ingress;
  - Debian's nginx with the config `sitewatch-ingress render` writes (a self-signed certificate from
    `sitewatch-ingress cert`, push.rate 6000r/m, burst 1000, address_rate 1000r/s, so nothing throttles
    the benchmark), and --sites (200) site credentials issued at the ingress's bcrypt cost
    (ingress.credentials.BCRYPT_COST), each site registered under one of 8 distributors;
  - two more Pushgateways with their own --web.config.file: TLS with the same certificate and
    `basic_auth_users` holding the same 200 sites' passwords, hashed at cost 10 (the Prometheus web-config
    docs' examples) and at the ingress's cost. This is what a user would set up without the ingress. It
    cannot scope a user to a group: any listed user can write, overwrite or delete any site's group. The
    ingress exists for that scoping; the figures show what it costs.

The Pushgateways run with --push.disable-consistency-check, so that the figures show the transport and
the authentication rather than the check: at 200 groups the check costs each push about 40 ms of CPU and
would hide everything else (bench/pushgateway_fleet.py, docs/scaling.md). One extra row pushes to a
Pushgateway with Debian's defaults, to show that figure; --consistency-check runs every Pushgateway with
the defaults instead (and takes several times longer).

Each site pushes its whole state as the pusher does: about 60 series of sitewatch metrics (the same
exposition bench/pushgateway_fleet.py builds), gzip-compressed, PUT to /metrics/job/sitewatch/site/<id>.
Before the first way of pushing to a Pushgateway, and before every keep-alive way, one unmeasured push
per site (the Pushgateway then holds the 200 groups, and the keep-alive connections are open); then:

  sequential   --sequential (500) pushes one after the other, cycling over the sites;
  concurrent   every site --rounds (3) times, from --threads (16) threads; site i belongs to thread i % 16.

The ways of pushing:

  keep-alive   one requests.Session per site, kept for the whole run (TLS handshake once per site);
  new conn     a new connection (and TLS handshake) for every push, through exporter.httpclient.fetch, the
               same code and `Connection: close` the sitewatch pusher uses for every push (in its loop
               as well as with --once).

For each: latency p50/p95/p99/max from request to answer, pushes/s, the statuses that were not 200 or 202, the
CPU (user+sys from /proc/PID/stat) of nginx's master and workers and of the Pushgateway (all threads,
plus reaped children), the TCP connections the Pushgateway saw opened (distinct connections in
/proc/net/tcp with its port; through the ingress they show whether nginx keeps its upstream connections
alive), nginx's workers' peak RSS (VmHWM), and this script's own CPU (the client, on the same 2 CPUs).

Then the credential management: the wall time of `sitewatch-ingress issue site ... --distributor ...
--password-file ...` run --issues (50) times as a user runs it (a new interpreter each time: the lock, the
bcrypt hash, the atomic rewrite of push.htpasswd and sites.map, the SIGHUP to nginx), beside `sitewatch-
ingress list` (the interpreter and imports alone); and the time nginx takes to apply a reload: from the
SIGHUP until a just-revoked site credential gets 401, and until a site just added to sites.map is
accepted with its distributor's credential (sites.map is read only when nginx starts or reloads).

Every process it starts is stopped by its pid before it exits, also on errors, Ctrl-C and SIGTERM. With
the defaults the run takes about 3 minutes on 2 CPUs.

    .venv/bin/python bench/ingress_push.py [--sites 200] [--sequential 500] [--rounds 3] [--threads 16]
                                          [--issues 50] [--reloads 5] [--consistency-check] [--json FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import requests
import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from benchkit import BenchError, at_least_one, find_program, first_line, raise_system_exit  # noqa: E402
from pushgateway_fleet import (  # noqa: E402
    SERIES_PER_SITE,
    cpu_model,
    exposition,
    free_loopback_port,
    gzip_body,
    make_sites,
    percentile,
)

from exporter.httpclient import HttpFailure, HttpRequest, fetch
from ingress.credentials import BCRYPT_COST, Credential, CredentialStore
from pusher.gateway import CONTENT_TYPE

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
PGW_CANDIDATES = ("prometheus-pushgateway", "pushgateway")
DOCS_BCRYPT_COST = 10  # the cost in the examples of the Prometheus web-config docs (exporter-toolkit)
TIMEOUT = 10.0  # the pusher's push.timeout
PUSH_HEADERS = {"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}
ISSUE_DISTRIBUTOR = "north"
ACCEPTED = ("200", "202")  # 202 from a Pushgateway with --push.disable-consistency-check
NO_CHECK = "--push.disable-consistency-check"
ANCHOR_PUSHES = 100


# -- processes --------------------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from proc(5)'s field 3 on


def cpu_of(pid: int, children: bool = True) -> float:
    """utime + stime of every thread, plus the reaped children's, in seconds."""
    fields = proc_stat(pid)
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(proc_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return found


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Pushgateway:
    """One prometheus-pushgateway on a free loopback port with its own persistence file."""

    def __init__(self, binary: str, workdir: Path, name: str, web_config: Path | None = None,
                 ca: Path | None = None, flags: tuple[str, ...] = ()):
        self.name = name
        self.port = free_loopback_port()
        self.scheme = "https" if web_config else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.ca = ca
        self.log_path = workdir / f"pushgateway-{name}.log"
        self.argv = [binary, f"--web.listen-address=127.0.0.1:{self.port}",
                     f"--persistence.file={workdir / f'pushgateway-{name}.data'}"]
        if web_config:
            self.argv.append(f"--web.config.file={web_config}")
        self.argv += flags
        self.warm = False  # holds every site's group
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"pushgateway {self.name} exited: {self.log_path.read_text(errors='replace')[-1500:]}")
            try:
                # With basic_auth_users every path needs a credential: a 401 also says it is up.
                status = requests.get(self.url + "/-/ready", verify=str(self.ca) if self.ca else True, timeout=2).status_code
                if status in (200, 401):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise BenchError(f"pushgateway {self.name} did not get ready within 30 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_of(self.pid)

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, grace=10)


class Nginx:
    def __init__(self, binary: str, conf: Path, folder: Path):
        self.binary, self.conf, self.folder = binary, conf, folder
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        out = (self.folder / "nginx.out").open("w")
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf), "-g", "daemon off;"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"nginx exited: {(self.folder / 'nginx.out').read_text()}")
            pid_file = self.folder / "nginx.pid"
            if pid_file.exists() and pid_file.read_text().strip() and self.workers():
                return
            time.sleep(0.05)
        raise BenchError("nginx did not start within 15 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        return children_of(self.pid)

    def cpu(self) -> float:
        """Master (with reaped workers) + live workers."""
        total = cpu_of(self.pid)
        for worker in self.workers():
            try:
                total += cpu_of(worker, children=False)
            except OSError:
                pass
        return total

    def worker_hwm_mib(self) -> list[float]:
        sizes = []
        for worker in self.workers():
            try:
                sizes.append(status_kib(worker, "VmHWM") / 1024)
            except OSError:
                pass
        return sizes

    def reload(self) -> float:
        started = time.perf_counter()
        os.kill(self.pid, signal.SIGHUP)
        return started

    def stop(self) -> None:
        stop_process(self.process, signal.SIGQUIT, grace=15)  # graceful stop, then SIGKILL


def tcp_connections(port: int) -> set[frozenset]:
    """Distinct TCP connections (any state but LISTEN) with `port` at one end, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state = parts[1], parts[2], parts[3]
        if state == "0A":  # LISTEN
            continue
        if int(local.split(":")[1], 16) == port or int(remote.split(":")[1], 16) == port:
            found.add(frozenset((local, remote)))
    return found


# -- pushing ----------------------------------------------------------------------------------------

@dataclass
class Target:
    """Where and how a set of pushes goes."""
    label: str
    base: str  # https://127.0.0.1:port or http://...
    auth: bool
    keep_alive: bool
    ca: Path | None
    pushgateway: Pushgateway
    nginx: Nginx | None = None


@dataclass
class Run:
    target: str
    kind: str  # sequential / concurrent
    latencies: list[float]
    statuses: dict[str, int]
    wall: float
    nginx_cpu: float | None
    pgw_cpu: float
    client_cpu: float
    pgw_connections: int | None
    nginx_workers_hwm_mib: list[float] = field(default_factory=list)

    def figures(self) -> dict:
        ok = sum(self.statuses.get(status, 0) for status in ACCEPTED)
        pct = {key: percentile(self.latencies, share) * 1000 for key, share in
               (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))}
        server = self.pgw_cpu + (self.nginx_cpu or 0.0)
        return {"target": self.target, "kind": self.kind, "pushes": len(self.latencies), "ok": ok,
                "statuses": self.statuses, "latency_ms": pct, "wall_s": self.wall,
                "pushes_per_s": len(self.latencies) / self.wall, "nginx_cpu_s": self.nginx_cpu,
                "pushgateway_cpu_s": self.pgw_cpu, "server_cpu_ms_per_push": 1000 * server / len(self.latencies),
                "client_cpu_s": self.client_cpu, "pushgateway_tcp_connections": self.pgw_connections,
                "nginx_workers_hwm_mib": self.nginx_workers_hwm_mib}


class Pusher:
    def __init__(self, target: Target, sites, passwords: dict[str, str], bodies: dict[str, bytes]):
        self.target = target
        self.sites = sites
        self.passwords = passwords
        self.bodies = bodies
        self.sessions: dict[str, requests.Session] = {}
        # Per request: a Session's own .verify loses to $REQUESTS_CA_BUNDLE in requests' settings merge.
        self.verify = str(target.ca) if target.ca else True

    def session(self, site_id: str) -> requests.Session:
        session = self.sessions.get(site_id)
        if session is None:
            session = self.sessions[site_id] = requests.Session()
            if self.target.auth:
                session.auth = (f"site/{site_id}", self.passwords[site_id])
        return session

    def push(self, site_id: str) -> tuple[float, str]:
        url = f"{self.target.base}/metrics/job/sitewatch/site/{site_id}"
        body = self.bodies[site_id]
        started = time.perf_counter()
        if self.target.keep_alive:
            try:
                response = self.session(site_id).put(url, data=body, headers=PUSH_HEADERS, timeout=TIMEOUT,
                                                    verify=self.verify)
                response.content  # noqa: B018 - read the answer, so the connection goes back to the pool
                status = str(response.status_code)
            except requests.RequestException as err:
                status = type(err).__name__
        else:
            request = HttpRequest(url=url, timeout=TIMEOUT, method="PUT", headers=tuple(PUSH_HEADERS.items()),
                                  basic_auth=(f"site/{site_id}", self.passwords[site_id]) if self.target.auth else None,
                                  ca_file=str(self.target.ca) if self.target.ca else None, body=body,
                                  follow_redirects=False, body_size_limit=64 * 1024)
            try:
                status = str(fetch(request).status)
            except HttpFailure as failure:
                status = failure.reason
        return time.perf_counter() - started, status

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()

    def warm_up(self, threads: int) -> None:
        """One push per site, not measured: the groups exist and keep-alive connections are open."""
        if not self.target.keep_alive and self.target.pushgateway.warm:
            return
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda site: self.push(site.id)[1], self.sites))
        bad = [r for r in results if r not in ACCEPTED]
        if bad:
            raise BenchError(f"{self.target.label}: warm-up pushes failed: {sorted(set(bad))}")
        self.target.pushgateway.warm = True

    def measure(self, kind: str, jobs_per_thread: list[list[str]]) -> Run:
        target = self.target
        connections_before = tcp_connections(target.pushgateway.port)
        nginx_before = target.nginx.cpu() if target.nginx else None
        pgw_before = target.pushgateway.cpu()
        client_before = time.process_time()
        results: list[list[tuple[float, str]]] = [[] for _ in jobs_per_thread]

        def work(index: int) -> None:
            for site_id in jobs_per_thread[index]:
                results[index].append(self.push(site_id))

        started = time.perf_counter()
        if len(jobs_per_thread) == 1:
            work(0)
        else:
            threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs_per_thread))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        pgw_cpu = target.pushgateway.cpu() - pgw_before
        nginx_cpu = target.nginx.cpu() - nginx_before if target.nginx else None
        # A TLS connection the client closes with the server's close_notify unread ends in a reset, which
        # leaves no TIME_WAIT entry behind: the count is only reliable for plain-HTTP Pushgateways.
        connections = (len(tcp_connections(target.pushgateway.port) - connections_before)
                       if target.pushgateway.scheme == "http" else None)
        flat = [result for part in results for result in part]
        statuses: dict[str, int] = {}
        for _, status in flat:
            statuses[status] = statuses.get(status, 0) + 1
        return Run(target.label, kind, [latency for latency, _ in flat], statuses, wall, nginx_cpu, pgw_cpu,
                   client_cpu, connections, target.nginx.worker_hwm_mib() if target.nginx else [])


def measure_target(target: Target, sites, passwords, bodies, arguments, sequential_only: int = 0) -> list[Run]:
    pusher = Pusher(target, sites, passwords, bodies)
    try:
        pusher.warm_up(arguments.threads)
        ids = [site.id for site in sites]
        sequential = [[ids[i % len(ids)] for i in range(sequential_only or arguments.sequential)]]
        # Round-robin inside a thread: round r of all its sites before round r+1.
        concurrent_jobs = [[ids[i] for r in range(arguments.rounds) for i in range(t, len(ids), arguments.threads)]
                           for t in range(arguments.threads)]
        runs = [pusher.measure("sequential", sequential)]
        if not sequential_only:
            runs.append(pusher.measure(f"{arguments.threads} threads", concurrent_jobs))
    finally:
        pusher.close()
    for run in runs:
        print_run(run)
    return runs


# -- credentials and reloads ------------------------------------------------------------------------

def cli(config: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "ingress.cli", "-c", str(config), *args], check=False,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise BenchError(f"sitewatch-ingress {' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return wall, result


def one_push(base: str, ca: Path, user: str, password: str, site_id: str, body: bytes) -> str:
    """A push on a new connection, as the pusher sends it; returns the status or the failure's reason."""
    request = HttpRequest(url=f"{base}/metrics/job/sitewatch/site/{site_id}", timeout=TIMEOUT, method="PUT",
                          headers=tuple(PUSH_HEADERS.items()), basic_auth=(user, password), ca_file=str(ca),
                          body=body, follow_redirects=False, body_size_limit=64 * 1024)
    try:
        return str(fetch(request).status)
    except HttpFailure as failure:
        return failure.reason


def poll_until(check, wanted: tuple[str, ...], limit: float = 10.0) -> tuple[float, int]:
    """Calls check() until it returns one of `wanted`; (seconds since the call, attempts)."""
    started = time.perf_counter()
    attempts = 0
    while time.perf_counter() - started < limit:
        attempts += 1
        if check() in wanted:
            return time.perf_counter() - started, attempts
    raise BenchError(f"no {'/'.join(wanted)} within {limit:g} s")


def wait_for_old_workers(nginx: Nginx, expected: int, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and len(nginx.workers()) > expected:
        time.sleep(0.05)


def measure_management(config: Path, store: CredentialStore, nginx: Nginx, base: str, ca: Path, folder: Path,
                       sites, passwords, bodies, distributor_password: str, arguments) -> dict:
    workers = len(nginx.workers())
    list_walls = [cli(config, "list")[0] for _ in range(5)]
    issue_walls = []
    cpu_before = nginx.cpu()
    for i in range(arguments.issues):
        wall, result = cli(config, "issue", "site", f"cli-{i:03d}", "--distributor", ISSUE_DISTRIBUTOR,
                           "--password-file", str(folder / f"cli-{i:03d}.password"))
        if "nginx reloaded" not in result.stdout:
            raise BenchError(f"issue did not reload nginx: {result.stdout}")
        issue_walls.append(wall)
    # The last one pushes as soon as nginx has applied the reload that `issue` sent.
    last = f"cli-{arguments.issues - 1:03d}"
    password = (folder / f"{last}.password").read_text().strip()
    after_last, _ = poll_until(lambda: one_push(base, ca, f"site/{last}", password, last, bodies[sites[0].id]), ACCEPTED)
    wait_for_old_workers(nginx, workers)
    issue_nginx_cpu = nginx.cpu() - cpu_before

    hashes = [bcrypt.hashpw(b"x" * 32, bcrypt.gensalt(BCRYPT_COST)) for _ in range(3)]
    started = time.perf_counter()
    for digest in hashes * 5:
        bcrypt.checkpw(b"x" * 32, digest)
    check_cost_ms = (time.perf_counter() - started) / 15 * 1000

    revoked, added = [], []
    for k in range(arguments.reloads):
        # Revoke: only push.htpasswd changes, which nginx reads on every request.
        site = sites[k]
        store.revoke(Credential("site", site.id))
        before = one_push(base, ca, f"site/{site.id}", passwords[site.id], site.id, bodies[site.id])
        hup = nginx.reload()
        _, attempts = poll_until(
            lambda site=site: one_push(base, ca, f"site/{site.id}", passwords[site.id], site.id, bodies[site.id]),
            ("401",))
        revoked.append({"status_before_sighup": before, "seconds": time.perf_counter() - hup, "attempts": attempts})
        wait_for_old_workers(nginx, workers)
        # A site added to sites.map: needs the reload, and its distributor's credential then covers it.
        new_site = f"reload-{k}"
        store.register_site(new_site, ISSUE_DISTRIBUTOR)
        body = bodies[sites[0].id]
        before = one_push(base, ca, f"distributor/{ISSUE_DISTRIBUTOR}", distributor_password, new_site, body)
        old_workers = set(nginx.workers())
        hup = nginx.reload()
        while not set(nginx.workers()) - old_workers and time.perf_counter() - hup < 10:
            time.sleep(0.001)
        new_workers = time.perf_counter() - hup
        poll_until(lambda new_site=new_site, body=body: one_push(base, ca, f"distributor/{ISSUE_DISTRIBUTOR}",
                                                                 distributor_password, new_site, body), ACCEPTED)
        added.append({"status_before_sighup": before, "seconds": time.perf_counter() - hup,
                      "new_workers_seconds": new_workers})
        wait_for_old_workers(nginx, workers)
    return {
        "list_wall_s": list_walls,
        "issue_wall_s": issue_walls,
        "issue_then_first_push_s": after_last,
        "issue_nginx_cpu_s": issue_nginx_cpu,
        "bcrypt_check_ms_at_ingress_cost": check_cost_ms,
        "revoke": revoked,
        "map_change": added,
        "htpasswd_lines": len(store.push_file.read_text().splitlines()),
    }


# -- set-up -----------------------------------------------------------------------------------------

def write_ingress_config(tmp: Path, push_port: int, upstream: Pushgateway) -> Path:
    folder = tmp / "ingress"
    user = "  user: root\n" if os.geteuid() == 0 else ""
    config = tmp / "ingress.yml"
    config.write_text(f"""folder: {folder}
tls: {{certificate: {folder}/tls/cert.pem, key: {folder}/tls/key.pem}}
nginx:
  pid_file: {folder}/nginx.pid
  log_folder: {folder}/logs
{user}push:
  listen: 127.0.0.1:{push_port}
  rate: 6000r/m
  burst: 1000
  address_rate: 1000r/s
  pushgateways:
    main: 127.0.0.1:{upstream.port}
""")
    return config


def write_web_config(path: Path, cert: Path, key: Path, hashes: dict[str, str]) -> Path:
    users = "".join(f'  "site/{site}": "{digest}"\n' for site, digest in hashes.items())
    path.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n{users}")
    return path


def hash_all(passwords: dict[str, str], cost: int) -> dict[str, str]:
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # bcrypt releases the GIL
        digests = pool.map(lambda p: bcrypt.hashpw(p.encode(), bcrypt.gensalt(cost)).decode(), passwords.values())
        return dict(zip(passwords, digests))


def run(arguments, started: float) -> dict:
    nginx_binary = find_program(NGINX_CANDIDATES, "ingress_push: cannot measure: nginx is missing (make debs)")
    pgw_binary = find_program(PGW_CANDIDATES, "ingress_push: cannot measure: prometheus-pushgateway is missing (make debs)")
    machine = {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(), "kernel": platform.release(),
        "python": platform.python_version(), "nginx": first_line([nginx_binary, "-v"]),
        "pushgateway": first_line([pgw_binary, "--version"]), "requests": requests.__version__,
        "urllib3": urllib3.__version__, "bcrypt": bcrypt.__version__,
    }
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Linux {machine['kernel']}, "
          f"Python {machine['python']} (requests {machine['requests']}, urllib3 {machine['urllib3']}, "
          f"bcrypt {machine['bcrypt']})")
    print(f"         {machine['nginx']}; {machine['pushgateway']}")
    sites = make_sites(arguments.sites)
    print(f"{len(sites)} sites under 8 distributors, {SERIES_PER_SITE} series each "
          f"({len(gzip_body(exposition(sites[0], 1, time.time(), random.Random(0))))} bytes gzip); "
          f"sequential {arguments.sequential}, concurrent {arguments.rounds} rounds x {len(sites)} sites from "
          f"{arguments.threads} threads; the client runs in this process, on the same CPUs")

    processes: list = []
    with tempfile.TemporaryDirectory(prefix="ingress-push-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            rng = random.Random(1)
            bodies = {site.id: gzip_body(exposition(site, 2, time.time(), rng)) for site in sites}
            flags = () if arguments.consistency_check else (NO_CHECK,)
            direct = Pushgateway(pgw_binary, tmp, "direct", flags=flags)
            upstream = Pushgateway(pgw_binary, tmp, "upstream", flags=flags)
            anchor = None if arguments.consistency_check else Pushgateway(pgw_binary, tmp, "debian-default")
            for pgw in filter(None, (direct, upstream, anchor)):
                processes.append(pgw)
                pgw.start()

            push_port = free_loopback_port()
            config = write_ingress_config(tmp, push_port, upstream)
            folder = tmp / "ingress"
            cert, key = folder / "tls" / "cert.pem", folder / "tls" / "key.pem"
            cli(config, "cert", "--host", "127.0.0.1")
            cli(config, "render")
            store = CredentialStore(folder / "push.htpasswd", folder / "office.htpasswd", folder / "sites.map")
            passwords = {}
            for site in sites:
                store.register_site(site.id, site.distributor)
                passwords[site.id] = store.issue(Credential("site", site.id))
            distributor_password = store.issue(Credential("distributor", ISSUE_DISTRIBUTOR))
            nginx = Nginx(nginx_binary, folder / "nginx.conf", folder)
            processes.append(nginx)
            nginx.start()
            ingress_base = f"https://127.0.0.1:{push_port}"

            print(f"\nweb-config users: hashing {len(sites)} passwords at cost {DOCS_BCRYPT_COST} ...", flush=True)
            hashes_docs = hash_all(passwords, DOCS_BCRYPT_COST)
            own = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in store.push_file.read_text().splitlines()}
            hashes_ingress = {site.id: own[f"site/{site.id}"] for site in sites}  # the very same hashes nginx checks
            tls_docs = Pushgateway(pgw_binary, tmp, f"webconfig-cost{DOCS_BCRYPT_COST}",
                                   write_web_config(tmp / "web-docs.yml", cert, key, hashes_docs), ca=cert,
                                   flags=flags)
            tls_ingress_cost = Pushgateway(pgw_binary, tmp, f"webconfig-cost{BCRYPT_COST}",
                                           write_web_config(tmp / "web-ingress.yml", cert, key, hashes_ingress),
                                           ca=cert, flags=flags)
            for pgw in (tls_docs, tls_ingress_cost):
                processes.append(pgw)
                pgw.start()

            targets = [
                Target("direct HTTP, keep-alive", direct.url, False, True, None, direct),
                Target("direct HTTP, new conn", direct.url, False, False, None, direct),
                Target("ingress TLS+auth, keep-alive", ingress_base, True, True, cert, upstream, nginx),
                Target("ingress TLS+auth, new conn", ingress_base, True, False, cert, upstream, nginx),
                Target(f"PGW web-config cost {DOCS_BCRYPT_COST}, keep-alive", tls_docs.url, True, True, cert, tls_docs),
                Target(f"PGW web-config cost {DOCS_BCRYPT_COST}, new conn", tls_docs.url, True, False, cert, tls_docs),
                Target(f"PGW web-config cost {BCRYPT_COST}, keep-alive", tls_ingress_cost.url, True, True, cert,
                       tls_ingress_cost),
                Target(f"PGW web-config cost {BCRYPT_COST}, new conn", tls_ingress_cost.url, True, False, cert,
                       tls_ingress_cost),
            ]
            print_header(arguments)
            runs = []
            if anchor:
                runs += measure_target(Target("direct HTTP, k-a, Debian default", anchor.url, False, True, None,
                                              anchor), sites, passwords, bodies, arguments, ANCHOR_PUSHES)
            for target in targets:
                runs += measure_target(target, sites, passwords, bodies, arguments)
            print(f"\nnginx: {len(nginx.workers())} workers, peak RSS (VmHWM) per worker "
                  f"{', '.join(f'{m:.1f}' for m in nginx.worker_hwm_mib())} MiB; master "
                  f"{status_kib(nginx.pid, 'VmHWM') / 1024:.1f} MiB")
            print("note: the Pushgateway's own web-config users cannot be scoped to a group: any user in "
                  "basic_auth_users may write, overwrite or delete any site's group. The ingress lets "
                  "site/<id> write only <id>; the difference in the rows above is what that scoping costs.")

            print(f"\n== credential management (nginx running, {len(sites)} sites in push.htpasswd) ==", flush=True)
            management = measure_management(config, store, nginx, ingress_base, cert, folder, sites, passwords,
                                            bodies, distributor_password, arguments)
            print_management(management)
            errors = [line for line in (folder / "logs" / "error.log").read_text(errors="replace").splitlines()
                      if "[emerg]" in line or "[alert]" in line or "[crit]" in line]
            if errors:
                print(f"nginx error.log: {len(errors)} serious lines, first: {errors[0]}")
            if nginx.process.poll() is not None:
                raise BenchError("nginx died during the run")
        finally:
            for process in reversed(processes):
                process.stop()
    return {"machine": machine, "settings": vars(arguments) | {"json": str(arguments.json)},
            "runs": [r.figures() for r in runs], "management": management,
            "runtime_s": time.monotonic() - started}


# -- reporting --------------------------------------------------------------------------------------

COLUMNS = (f"{'target':<34} {'run':<11} {'pushes':>6} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>7} {'push/s':>7} "
           f"{'nginx':>6} {'PGW':>6} {'srv ms':>6} {'client':>6} {'PGW':>5}")


def print_header(arguments) -> None:
    if not arguments.consistency_check:
        print(f"\nEvery Pushgateway but the first row's runs with {NO_CHECK}, so that the rows show the")
        print("transport and the authentication, not the check every push pays (the first row: Debian's defaults,")
        print(f"{ANCHOR_PUSHES} pushes); --consistency-check runs them all with the check")
    print("\nlatency in ms; CPU in seconds of user+sys over the run (nginx: master + workers; PGW: the Pushgateway);")
    print("srv ms = (nginx + PGW CPU) per push; client = this script's CPU; PGW conns = TCP connections the")
    print("Pushgateway saw opened during the run (plain-HTTP Pushgateways only; through the ingress: nginx's")
    print("upstream connections)")
    print(f"\n{'':<34} {'':<11} {'':>6} {'':>6} {'':>6} {'':>6} {'':>7} {'':>7} {'CPU s':>6} {'CPU s':>6} "
          f"{'/push':>6} {'CPU s':>6} {'conns':>5}")
    print(COLUMNS)


def print_run(run: Run) -> None:
    f = run.figures()
    lat = f["latency_ms"]
    nginx = "-" if f["nginx_cpu_s"] is None else f"{f['nginx_cpu_s']:.2f}"
    conns = "-" if f["pushgateway_tcp_connections"] is None else f["pushgateway_tcp_connections"]
    print(f"{f['target']:<34} {f['kind']:<11} {f['pushes']:>6} {lat['p50']:>6.1f} {lat['p95']:>6.1f} {lat['p99']:>6.1f} "
          f"{lat['max']:>7.1f} {f['pushes_per_s']:>7.0f} {nginx:>6} {f['pushgateway_cpu_s']:>6.2f} "
          f"{f['server_cpu_ms_per_push']:>6.2f} {f['client_cpu_s']:>6.2f} {conns:>5}"
          + ("" if f["ok"] == f["pushes"] else f"  NOT 200: {f['statuses']}"), flush=True)


def print_management(m: dict) -> None:
    issues, lists = m["issue_wall_s"], m["list_wall_s"]
    print(f"`sitewatch-ingress issue site` x{len(issues)} (a new interpreter each, bcrypt cost {BCRYPT_COST}, SIGHUP): "
          f"total {sum(issues):.1f} s, p50 {percentile(issues, 0.5) * 1000:.0f} ms, max {max(issues) * 1000:.0f} ms; "
          f"`list` (interpreter + imports only) p50 {percentile(lists, 0.5) * 1000:.0f} ms")
    print(f"  nginx CPU for those {len(issues)} reloads: {m['issue_nginx_cpu_s']:.2f} s; the last issued site's first "
          f"push accepted {m['issue_then_first_push_s'] * 1000:.0f} ms after its `issue` returned; push.htpasswd "
          f"now {m['htpasswd_lines']} lines")
    print(f"  one bcrypt check at cost {BCRYPT_COST} (Python's bcrypt, this machine): {m['bcrypt_check_ms_at_ingress_cost']:.2f} ms")
    revoke = [r["seconds"] for r in m["revoke"]]
    before = sorted({r["status_before_sighup"] for r in m["revoke"]})
    print(f"revoke (push.htpasswd edited): a push before any SIGHUP already got {', '.join(before)}; from SIGHUP to "
          f"the first 401: p50 {percentile(revoke, 0.5) * 1000:.1f} ms, max {max(revoke) * 1000:.1f} ms "
          f"({len(revoke)} times)")
    added = [r["seconds"] for r in m["map_change"]]
    workers = [r["new_workers_seconds"] for r in m["map_change"]]
    before = sorted({r["status_before_sighup"] for r in m["map_change"]})
    print(f"site added to sites.map: before the SIGHUP its distributor's push got {', '.join(before)}; from SIGHUP to "
          f"the first accepted push: p50 {percentile(added, 0.5) * 1000:.1f} ms, max {max(added) * 1000:.1f} ms "
          f"({len(added)} times); new workers appeared after p50 {percentile(workers, 0.5) * 1000:.1f} ms")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The ingress's cost per push (nginx, TLS, per-site bcrypt "
                                                 "credentials) against pushing directly and against the "
                                                 "Pushgateway's own --web.config.file.")
    parser.add_argument("--sites", type=at_least_one, default=200, help="site credentials (default 200)")
    parser.add_argument("--sequential", type=at_least_one, default=500, help="sequential pushes per way (default 500)")
    parser.add_argument("--rounds", type=at_least_one, default=3, help="concurrent rounds over all sites (default 3)")
    parser.add_argument("--threads", type=at_least_one, default=16, help="threads for the concurrent run (default 16)")
    parser.add_argument("--issues", type=at_least_one, default=50, help="`sitewatch-ingress issue` runs (default 50)")
    parser.add_argument("--reloads", type=at_least_one, default=5, help="timed reloads of each kind (default 5)")
    parser.add_argument("--consistency-check", action="store_true",
                        help=f"run every Pushgateway with Debian's defaults (default: {NO_CHECK}, and one row with "
                             "the defaults); slower: at 200 groups the check costs each push ~35 ms of CPU")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    started = time.monotonic()
    try:
        report = run(arguments, started)
    except BenchError as err:
        sys.exit(f"ingress_push: {err}")
    except KeyboardInterrupt:
        print("\ningress_push: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"\ntotal {report['runtime_s']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {arguments.json}")


if __name__ == "__main__":
    main()
