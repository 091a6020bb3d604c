"""How many sitewatch sites one Prometheus Pushgateway serves: push latency, CPU, memory, scrape, burst.

For each fleet size N (100, 1,000 and 3,000 unless --sizes says otherwise) it runs Debian's
prometheus-pushgateway on a free 127.0.0.1 port and lets N simulated sites push to it the way the
sitewatch pusher does: every site PUTs its whole state, about 60 series (check results, ping round trips,
a fiscal register), gzip-compressed text exposition without timestamps, to
/metrics/job/sitewatch/site/<id> once per --interval (60 s). The sites' start times are spread evenly
over the interval, as real sites drift apart, so N sites offer N/60 pushes per second.

Per size it reports:

  pushes     latency p50/p90/p99/max from sending the request to the answer, and the pushes that failed
             (a push that gets no answer within --timeout, 10 s like the pusher's push.timeout, counts
             as failed and as slower than every answered one; the pusher's retries are not simulated);
  CPU        the Pushgateway's user + sys seconds over the --seconds of pushing (from /proc/PID/stat),
             and that as % of one core; the sites run in this script, so their CPU is not in it;
  memory     the Pushgateway's RSS holding N groups before the pushing, at its end, and its peak (VmHWM);
  scrape     time and size of GET /metrics as Prometheus sends it (its Accept header, gzip), three times
             on the idle Pushgateway and every 15 s while the sites push, and the series it exposes;
  burst      all N sites pushing at the same moment, as after a network outage, on a fresh Pushgateway
             holding the N groups: the time until all are accepted, or how many were within
             --burst-seconds, 20 s (then the time for all at the rate measured is printed as an estimate).

Every measurement uses a Pushgateway that already holds all N groups, like one that has been running
for a while. Filling one by pushing would take minutes at 1,000 sites (each push is checked against every
series already there), so the groups are pushed once into a seeding Pushgateway started with
--push.disable-consistency-check, which writes them to a persistence file in a temporary directory when
it stops; each measured Pushgateway loads a copy of that file at start-up. The measured ones run with
Debian's defaults otherwise (the consistency check on). They would write the file back only every 5
minutes, which is longer than they live, so persistence costs nothing during a measurement. Each phase
gets a fresh Pushgateway, so a backlog one phase leaves behind cannot slow the next.

Only 127.0.0.1 is used. With the defaults the run takes about 4.5 minutes: 3 sizes x 60 s of pushing,
plus up to --timeout for the answers still awaited when the pushing stops, up to 20 s of burst per size
and the set-up. See --help for the knobs; --no-consistency-check runs the measured Pushgateways with
--push.disable-consistency-check, to show what the check costs.

    .venv/bin/python bench/pushgateway_fleet.py [--sizes 100,1000,3000] [--seconds 60] [--interval 60]
                                                [--timeout 10] [--burst-seconds 20] [--json FILE]
                                                [--no-consistency-check]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gzip
import http.client
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_SIZES = (100, 1000, 3000)
MAX_SITES = 20000
DEFAULT_SECONDS = 60.0
DEFAULT_INTERVAL = 60.0  # the pusher's default: one push per site per minute
DEFAULT_TIMEOUT = 10.0  # the pusher's push.timeout: one attempt gives up after 10 s
DEFAULT_BURST_SECONDS = 20.0
SCRAPE_EVERY = 15.0  # a Prometheus scraping the Pushgateway with scrape_interval: 15s
IDLE_SCRAPES = 3
SCRAPE_CLIENT_TIMEOUT = 60.0  # long enough to measure a scrape Prometheus would already have given up on
PROMETHEUS_SCRAPE_TIMEOUT = 10.0  # Prometheus' default scrape_timeout, printed beside the scrape times
SEED_IN_FLIGHT = 64
STOP_GRACE = 1.0  # a Pushgateway with a backlog keeps working through it after SIGTERM; no need to wait
PGW_CANDIDATES = ("prometheus-pushgateway", "pushgateway")
# What Prometheus 2.x sends when it scrapes, so the Pushgateway picks the format and compression it would.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
ACCEPTED = (200, 202)  # 202 only with --push.disable-consistency-check


class BenchError(RuntimeError):
    """The Pushgateway or the set-up failed in a way that makes the figures meaningless."""


# -- the simulated sites ----------------------------------------------------------------------------

# (check name, type) of a typical site: the router and the server pinged, the Кодекс server, the web
# page, RDP, and the fiscal register at the till.
CHECKS = (("router", "ping"), ("server", "ping"), ("kodeks", "kodeks"), ("site", "http"), ("rdp", "tcp"),
          ("kkt", "kkt"))
CHECK_FAMILIES = (  # every check has these seven, as the exporter's /metrics does
    ("sitewatch_check_success", "gauge", "1 if the latest run of the check passed, else 0."),
    ("sitewatch_check_up", "gauge", "Debounced state of the check."),
    ("sitewatch_check_duration_seconds", "gauge", "How long the latest run took."),
    ("sitewatch_check_last_run_timestamp_seconds", "gauge", "When the latest run finished."),
    ("sitewatch_check_last_success_timestamp_seconds", "gauge", "When a run last passed."),
    ("sitewatch_check_runs_total", "counter", "Runs of the check since the exporter started."),
    ("sitewatch_check_failures_total", "counter", "Failed runs of the check since the exporter started."),
)
DISTRIBUTORS = ("north", "south", "east", "west", "volga", "ural", "siberia", "center")
SITES_PER_CLIENT = 4


@dataclass(frozen=True)
class Site:
    id: str
    client: str
    distributor: str
    telegram_route: str
    serial: str  # the fiscal register's factory number

    @property
    def path(self) -> str:
        return f"/metrics/job/sitewatch/site/{self.id}"


def make_sites(n: int) -> list[Site]:
    sites = []
    for i in range(n):
        distributor = DISTRIBUTORS[i % len(DISTRIBUTORS)]
        sites.append(Site(id=f"shop-{i:05d}", client=f"client-{i // SITES_PER_CLIENT:04d}", distributor=distributor,
                          telegram_route=f"{distributor}-support", serial=f"{20000000000000 + i:014d}"))
    return sites


def exposition(site: Site, run: int, now: float, rng: random.Random) -> str:
    """The site's whole state as the exporter would expose it after `run` runs of every check.

    60 series: 7 per check for 6 checks, ping loss and round trips, the TCP, HTTP and TLS figures, the
    Кодекс catalog and two register series. No timestamps: the Pushgateway rejects pushes that carry them.
    """
    base = (f'site="{site.id}",client="{site.client}",distributor="{site.distributor}",'
            f'telegram_route="{site.telegram_route}"')
    labels = {name: f'{base},check="{name}",type="{kind}"' for name, kind in CHECKS}
    failures = {name: run // (20 + i) for i, (name, _) in enumerate(CHECKS)}  # a few failed runs each
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{{{label_text}}} {value!r}" for label_text, value in samples)

    per_check = {
        "sitewatch_check_success": lambda c: 1.0,
        "sitewatch_check_up": lambda c: 1.0,
        "sitewatch_check_duration_seconds": lambda c: round(rng.uniform(0.005, 0.8), 6),
        "sitewatch_check_last_run_timestamp_seconds": lambda c: round(now - rng.uniform(0, 60), 3),
        "sitewatch_check_last_success_timestamp_seconds": lambda c: round(now - rng.uniform(0, 60), 3),
        "sitewatch_check_runs_total": lambda c: float(run),
        "sitewatch_check_failures_total": lambda c: float(failures[c]),
    }
    for name, kind, help_text in CHECK_FAMILIES:
        family(name, kind, help_text, [(labels[check], per_check[name](check)) for check, _ in CHECKS])

    pinged = [check for check, kind in CHECKS if kind == "ping"]
    family("sitewatch_ping_loss_ratio", "gauge", "Lost / sent echo requests in the latest run.",
           [(labels[check], 0.0) for check in pinged])
    rtt = {check: rng.uniform(0.01, 0.06) for check in pinged}
    family("sitewatch_ping_rtt_seconds", "gauge", "Round-trip times of the replies in the latest run.",
           [(f'{labels[check]},stat="{stat}"', round(rtt[check] * factor, 6))
            for check in pinged for stat, factor in (("min", 1.0), ("avg", 1.2), ("max", 1.6))])
    family("sitewatch_tcp_connect_seconds", "gauge", "Time to open the TCP connection in the latest run.",
           [(labels["rdp"], round(rng.uniform(0.01, 0.1), 6))])
    family("sitewatch_http_status_code", "gauge", "HTTP status code of the latest response.",
           [(labels["site"], 200.0)])
    family("sitewatch_http_duration_seconds", "gauge", "Whole request time of the latest run.",
           [(labels["site"], round(rng.uniform(0.05, 1.5), 6))])
    family("sitewatch_tls_cert_expiry_timestamp_seconds", "gauge", "When the earliest-expiring certificate runs out.",
           [(labels["site"], 1798761600.0)])
    family("sitewatch_kodeks_main_page_ok", "gauge", "1 when the catalog's main page built correctly.",
           [(f'{labels["kodeks"]},catalog="/docs"', 1.0)])
    family("sitewatch_kodeks_product_control_ok", "gauge", "1 when the catalog's bundle control reports no problem.",
           [(f'{labels["kodeks"]},catalog="/docs"', 1.0)])
    family("sitewatch_kodeks_maintenance", "gauge", "1 while the server is in maintenance mode.",
           [(labels["kodeks"], 0.0)])
    register = f'{labels["kkt"]},kkt="{site.serial}"'
    family("sitewatch_kkt_up", "gauge", "1 if the register was read successfully in the latest run.",
           [(register, 1.0)])
    fn = f"7281440500{site.serial[-6:]}"
    family("sitewatch_kkt_info", "gauge", "The register's identity as last read.",
           [((f'{register},vendor="atol",model="АТОЛ 30Ф",firmware="5.8.14",'
              f'rnm="{site.serial[:10]}000001",inn="7700000000",organization="ООО Ромашка",ofd="Такском",'
              f'ffd="1.2",fn="{fn}"'), 1.0)])
    family("sitewatch_fn_expiry_timestamp_seconds", "gauge", "The ФН's own expiry date.",
           [(f'{register},fn="{fn}"', 1811462400.0)])
    return "\n".join(lines) + "\n"


SERIES_PER_SITE = sum(1 for line in exposition(make_sites(1)[0], 1, 0.0, random.Random(0)).splitlines()
                      if not line.startswith("#"))
PGW_SERIES_PER_GROUP = 2  # push_time_seconds and push_failure_time_seconds, added by the Pushgateway


def gzip_body(text: str) -> bytes:
    # mtime=0 keeps the bodies reproducible; level 6 is what gzip and Python's client default to.
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


# -- pushing and scraping over HTTP -----------------------------------------------------------------

@dataclass
class Push:
    site: int
    due: float  # loop time the site meant to push at
    started: float
    finished: float | None = None
    status: int | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED

    @property
    def latency(self) -> float:
        # Failed pushes sort after every answered one: a site that got no answer waited at least that long.
        return self.finished - self.started if self.accepted else math.inf


async def http_put(port: int, path: str, body: bytes, timeout: float) -> int:
    """One PUT on a new connection, no keep-alive (a site pushes once a minute); returns the status."""

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Encoding: gzip\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            await reader.read()  # headers and the (short) body, up to the close the server does
            parts = status_line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise ConnectionError(f"bad status line {status_line[:80]!r}")
            return int(parts[1])
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def push_once(port: int, site: Site, index: int, body: bytes, due: float, timeout: float) -> Push:
    loop = asyncio.get_running_loop()
    record = Push(site=index, due=due, started=loop.time())
    try:
        record.status = await http_put(port, site.path, body, timeout)
        if not record.accepted:
            record.error = f"HTTP {record.status}"
    except asyncio.TimeoutError:
        record.error = f"no answer within {timeout:g} s"
    except (OSError, ConnectionError) as err:
        record.error = f"{type(err).__name__}: {err}"
    record.finished = loop.time()
    return record


@dataclass
class Scrape:
    seconds: float | None
    wire_bytes: int = 0
    text_bytes: int = 0
    series: int = 0
    site_series: int = 0
    content_type: str = ""
    error: str | None = None


def scrape(port: int) -> Scrape:
    """GET /metrics as Prometheus sends it; times the whole transfer, then counts the series."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SCRAPE_CLIENT_TIMEOUT)
    started = time.perf_counter()
    try:
        connection.request("GET", "/metrics", headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        response = connection.getresponse()
        wire = response.read()
        elapsed = time.perf_counter() - started
    except (OSError, http.client.HTTPException) as err:
        return Scrape(None, error=f"{type(err).__name__}: {err}")
    finally:
        connection.close()
    if response.status != 200:
        return Scrape(elapsed, error=f"HTTP {response.status}")
    text = gzip.decompress(wire) if response.getheader("Content-Encoding") == "gzip" else wire
    # Counted with bytes.count, not line by line: splitting 100 MiB in Python would hold the GIL for
    # half a second and delay the simulated sites' pushes, which run in this process.
    lines = text.count(b"\n") + (0 if text.endswith(b"\n") else 1)
    comments = text.count(b"\n#") + text.startswith(b"#")
    return Scrape(elapsed, wire_bytes=len(wire), text_bytes=len(text), series=lines - comments,
                  site_series=text.count(b'job="sitewatch"'), content_type=response.getheader("Content-Type", ""))


# -- the Pushgateway process ------------------------------------------------------------------------

class Pushgateway:
    """One prometheus-pushgateway on a free loopback port, stopped by pid when the block ends."""

    def __init__(self, binary: str, workdir: Path, persistence_file: Path, extra_flags: tuple[str, ...] = ()):
        self.port = free_loopback_port()
        self.log_path = workdir / f"pushgateway-{self.port}.log"
        self.argv = [binary, f"--web.listen-address=127.0.0.1:{self.port}",
                     f"--persistence.file={persistence_file}", *extra_flags]
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_ready(self, limit: float = 60.0) -> None:
        # /-/ready answers once the persistence file is loaded, which takes a moment for 3,000 groups.
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"prometheus-pushgateway exited ({self.process.returncode}): {self.log_tail()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/-/ready")
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"prometheus-pushgateway did not get ready on 127.0.0.1:{self.port} within {limit:.0f} s")

    def stop(self, grace: float = STOP_GRACE) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may itself contain spaces
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), every thread
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"/proc/{self.pid}/status has no {key}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the phases -------------------------------------------------------------------------------------

def build_seed(binary: str, workdir: Path, sites: list[Site]) -> Path:
    """Returns a persistence file holding one group per site, written by a Pushgateway without the check."""
    seed = workdir / "seed.data"
    with Pushgateway(binary, workdir, seed, ("--push.disable-consistency-check",)) as seeder:
        rng = random.Random(1)
        bodies = [gzip_body(exposition(site, 1, time.time(), rng)) for site in sites]
        pushes = asyncio.run(push_all(seeder.port, sites, bodies, in_flight=SEED_IN_FLIGHT, timeout=60))
        failed = [p for p in pushes if not p.accepted]
        if failed:
            raise BenchError(f"seeding: {len(failed)} of {len(sites)} pushes failed, first: {failed[0].error}")
        # SIGTERM makes the Pushgateway write its persistence file before it exits; give it the time.
        seeder.stop(grace=120)
    if not seed.exists() or seed.stat().st_size == 0:
        raise BenchError("the seeding Pushgateway wrote no persistence file")
    return seed


async def push_all(port: int, sites: list[Site], bodies: list[bytes], in_flight: int, timeout: float) -> list[Push]:
    """Pushes every site once, at most `in_flight` at a time (in_flight >= len(sites): all at once)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(in_flight)
    now = loop.time()

    async def one(index: int) -> Push:
        async with gate:
            return await push_once(port, sites[index], index, bodies[index], now, timeout)

    return await asyncio.gather(*(one(i) for i in range(len(sites))))


@dataclass
class SteadyRun:
    pushes: list[Push]
    scrapes: list[Scrape]
    cpu_seconds: float
    start: float  # loop time the pushing began
    wall_seconds: float
    rss_end_mib: float
    client_cpu_seconds: float


def push_schedule(start: float, n: int, interval: float, seconds: float) -> list[tuple[float, int]]:
    """(due time, site index) of every push in `seconds` from `start`, in order: offsets spread evenly
    over the interval, site i pushing at start + i*interval/n + k*interval."""
    return sorted((start + i * interval / n + k * interval, i)
                  for i in range(n) for k in range(math.ceil(seconds / interval) + 1)
                  if i * interval / n + k * interval < seconds)


async def steady_phase(pgw: Pushgateway, sites: list[Site], seconds: float, interval: float,
                       timeout: float) -> SteadyRun:
    """Every site pushes at its own offset in the interval, for `seconds`; Prometheus scrapes meanwhile."""
    loop = asyncio.get_running_loop()
    rng = random.Random(2)
    n = len(sites)
    start = loop.time() + 0.2
    schedule = push_schedule(start, n, interval, seconds)
    tasks: list[asyncio.Task] = []
    scrapes: list[Scrape] = []
    # Its own thread, not asyncio's default executor: asyncio.run() waits for that one on Ctrl-C, and a
    # scrape can take many seconds, while the Pushgateway it waits for is only stopped after run() returns.
    scrape_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scrape")

    async def scraper() -> None:
        # Like Prometheus: one scrape at a time, every SCRAPE_EVERY from an offset, never overlapping;
        # a short quick run still gets one.
        due = start + min(SCRAPE_EVERY, seconds) / 2
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            scrapes.append(await loop.run_in_executor(scrape_thread, scrape, pgw.port))
            due += SCRAPE_EVERY

    try:
        await asyncio.sleep(max(0.0, start - loop.time()))
        cpu_before, client_before = pgw.cpu_seconds(), time.process_time()
        scrape_task = asyncio.create_task(scraper())
        for due, index in schedule:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            site = sites[index]
            # A fresh state per push, as the pusher sends; generating it costs this script ~0.3 ms.
            body = gzip_body(exposition(site, 2 + int((due - start) // interval), time.time(), rng))
            tasks.append(asyncio.create_task(push_once(pgw.port, site, index, body, due, timeout)))
        await asyncio.sleep(max(0.0, start + seconds - loop.time()))
        cpu = pgw.cpu_seconds() - cpu_before
        wall = loop.time() - start
        rss_end = pgw.status_mib("VmRSS")
        client_cpu = time.process_time() - client_before
        # Pushes still waiting get their full timeout, so the latency figures include them.
        pushes = await asyncio.gather(*tasks)
        await scrape_task
    finally:
        scrape_thread.shutdown(wait=False, cancel_futures=True)
    return SteadyRun(list(pushes), scrapes, cpu, start, wall, rss_end, client_cpu)


@dataclass
class BurstRun:
    sites: int
    accepted: int
    failed: int
    seconds: float  # until the last accepted push was answered, or the deadline
    all_accepted: bool
    rate_per_s: float
    estimate_all_s: float | None
    cpu_seconds: float
    peak_rss_mib: float
    errors: dict[str, int] = field(default_factory=dict)


async def burst_phase(pgw: Pushgateway, sites: list[Site], deadline: float) -> BurstRun:
    """All sites push at the same moment, each waiting up to `deadline` for its answer."""
    rng = random.Random(3)
    # Built before the clock starts, so the script's own work does not delay the first pushes.
    bodies = [gzip_body(exposition(site, 1000, time.time(), rng)) for site in sites]
    loop = asyncio.get_running_loop()
    cpu_before = pgw.cpu_seconds()
    started = loop.time()
    pushes = await push_all(pgw.port, sites, bodies, in_flight=len(sites), timeout=deadline)
    cpu = pgw.cpu_seconds() - cpu_before
    accepted = [p for p in pushes if p.accepted]
    all_accepted = len(accepted) == len(sites)
    last = max((p.finished for p in accepted), default=started)
    seconds = last - started if all_accepted else deadline
    rate = len(accepted) / seconds if seconds > 0 else 0.0
    # Every push in a burst meets the same N groups, so each costs the Pushgateway about the same and the
    # rate holds until the last: the time for all at that rate is a fair estimate.
    estimate = None if all_accepted or rate == 0 else len(sites) / rate
    return BurstRun(len(sites), len(accepted), len(pushes) - len(accepted), seconds, all_accepted, rate,
                    estimate, cpu, pgw.status_mib("VmHWM"), count_errors(pushes))


def count_errors(pushes: list[Push]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for push in pushes:
        if push.error:
            errors[push.error] = errors.get(push.error, 0) + 1
    return errors


# -- one size, from start to end --------------------------------------------------------------------

def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; inf (a failed push) stays inf."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def measure_size(binary: str, n: int, arguments: argparse.Namespace) -> dict:
    sites = make_sites(n)
    extra = ("--push.disable-consistency-check",) if arguments.no_consistency_check else ()
    with tempfile.TemporaryDirectory(prefix="pushgateway-fleet-") as tmp:
        workdir = Path(tmp)
        seed = build_seed(binary, workdir, sites)

        # The steady state, on a Pushgateway that holds every site's group from the start.
        steady_copy = workdir / "steady.data"
        shutil.copyfile(seed, steady_copy)
        with Pushgateway(binary, workdir, steady_copy, extra) as pgw:
            rss_idle = pgw.status_mib("VmRSS")
            idle_scrapes = [scrape(pgw.port) for _ in range(IDLE_SCRAPES)]
            check_groups(n, idle_scrapes)
            steady = asyncio.run(steady_phase(pgw, sites, arguments.seconds, arguments.interval, arguments.timeout))
            peak_rss = pgw.status_mib("VmHWM")

        # The burst, on a fresh one, so the steady phase's backlog (if any) cannot slow it.
        burst_copy = workdir / "burst.data"
        shutil.copyfile(seed, burst_copy)
        with Pushgateway(binary, workdir, burst_copy, extra) as pgw:
            burst = asyncio.run(burst_phase(pgw, sites, arguments.burst_seconds))

    return summarise(n, arguments, rss_idle, idle_scrapes, steady, peak_rss, burst)


def check_groups(n: int, idle_scrapes: list[Scrape]) -> None:
    # The first scrape proves the Pushgateway loaded every group before the clock started.
    first = idle_scrapes[0]
    expected = n * (SERIES_PER_SITE + PGW_SERIES_PER_GROUP)
    if first.error or first.site_series != expected:
        raise BenchError(f"the Pushgateway exposed {first.site_series} site series at start, expected {expected} "
                         f"({first.error or 'no error'})")


def scrape_figures(scrapes: list[Scrape]) -> dict:
    times = [s.seconds for s in scrapes if s.error is None]
    return {
        "count": len(scrapes),
        "failed": sum(1 for s in scrapes if s.error),
        "p50_s": percentile(times, 0.5) if times else None,
        "max_s": max(times) if times else None,
        "over_prometheus_timeout": sum(1 for t in times if t > PROMETHEUS_SCRAPE_TIMEOUT),
        "errors": [s.error for s in scrapes if s.error],
    }


def summarise(n: int, arguments: argparse.Namespace, rss_idle: float, idle_scrapes: list[Scrape],
              steady: SteadyRun, peak_rss: float, burst: BurstRun) -> dict:
    pushes = steady.pushes
    latencies = [p.latency for p in pushes]
    accepted = [p for p in pushes if p.accepted]
    # Throughput counts only the answers within the pushing window; later ones are the backlog draining.
    in_window = [p for p in accepted if p.finished <= steady.start + steady.wall_seconds]
    lags = [p.started - p.due for p in pushes]
    last_good = next((s for s in reversed(steady.scrapes + idle_scrapes) if s.error is None), idle_scrapes[0])

    def ms(value: float) -> float | None:
        return None if math.isinf(value) else value * 1000

    return {
        "sites": n,
        "series_per_site": SERIES_PER_SITE + PGW_SERIES_PER_GROUP,
        "offered_pushes_per_s": n / arguments.interval,
        "pushes": {
            "sent": len(pushes),
            "accepted": len(accepted),
            "failed": len(pushes) - len(accepted),
            "errors": count_errors(pushes),
            "accepted_per_s_in_window": len(in_window) / steady.wall_seconds,
            "latency_ms": {key: ms(percentile(latencies, share)) if latencies else None
                           for key, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
            "client_start_lag_ms_p99": percentile(lags, 0.99) * 1000 if lags else None,
        },
        "pushgateway": {
            "cpu_seconds": steady.cpu_seconds,
            "wall_seconds": steady.wall_seconds,
            "cpu_percent_of_one_core": 100 * steady.cpu_seconds / steady.wall_seconds,
            "cpu_ms_per_accepted_push": 1000 * steady.cpu_seconds / len(accepted) if accepted else None,
            "rss_idle_mib": rss_idle,
            "rss_end_mib": steady.rss_end_mib,
            "peak_rss_mib": peak_rss,
        },
        "scrape": {
            "idle": scrape_figures(idle_scrapes),
            "under_push_load": scrape_figures(steady.scrapes),
            "wire_bytes": last_good.wire_bytes,
            "text_bytes": last_good.text_bytes,
            "series": last_good.series,
            "site_series": last_good.site_series,
            "content_type": last_good.content_type,
        },
        "burst": asdict(burst),
        "client_cpu_seconds": steady.client_cpu_seconds,
    }


# -- prerequisites, the machine, reporting ----------------------------------------------------------

def find_pushgateway() -> str:
    binary = next(filter(None, map(shutil.which, PGW_CANDIDATES)), None)
    if binary is None:
        sys.exit("pushgateway_fleet: cannot measure:\n  - prometheus-pushgateway is missing: "
                 "apt-get install prometheus-pushgateway (or make debs)")
    return binary


def raise_file_limit(sites: int) -> None:
    # In a burst every site holds a connection, and the Pushgateway one more for each; the Pushgateway
    # inherits this limit.
    needed = 2 * sites + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"pushgateway_fleet: cannot measure:\n  - {sites:,} sites need {needed:,} open files, "
                 f"the hard limit is {hard:,} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def machine_description(binary: str) -> dict:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pushgateway": first_line([binary, "--version"]),
        "load_average_at_start": os.getloadavg(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def first_line(argv: list[str]) -> str:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def print_machine(machine: dict, arguments: argparse.Namespace) -> None:
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB, "
          f"Linux {machine['kernel']}, Python {machine['python']}, "
          f"load {machine['load_average_at_start'][0]:.2f}")
    print(f"         {machine['pushgateway']}"
          + ("; with --push.disable-consistency-check" if arguments.no_consistency_check else ""))
    print(f"each site pushes {SERIES_PER_SITE} series (+{PGW_SERIES_PER_GROUP} the Pushgateway adds) every "
          f"{arguments.interval:g} s; {arguments.seconds:g} s of pushing per size; "
          f"push timeout {arguments.timeout:g} s; burst deadline {arguments.burst_seconds:g} s")


def fmt_ms(value: float | None, timeout: float) -> str:
    return f">{timeout * 1000:,.0f}" if value is None else f"{value:,.1f}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_size(result: dict, arguments: argparse.Namespace) -> None:
    pushes, pgw, scraped, burst = result["pushes"], result["pushgateway"], result["scrape"], result["burst"]
    latency = {key: fmt_ms(value, arguments.timeout) for key, value in pushes["latency_ms"].items()}
    print()
    print(f"== {result['sites']:,} sites, {result['series_per_site']} series each "
          f"({result['sites'] * result['series_per_site']:,}), "
          f"{result['offered_pushes_per_s']:.1f} pushes/s offered ==")
    print(f"pushes:   {pushes['sent']:,} sent, {pushes['accepted']:,} accepted "
          f"({pushes['accepted_per_s_in_window']:.1f}/s while pushing), "
          f"{pushes['failed']:,} failed" + (f" {pushes['errors']}" if pushes["errors"] else ""))
    print(f"latency:  p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} ms, "
          f"max {latency['max']} ms (this script started its pushes within "
          f"{pushes['client_start_lag_ms_p99']:.1f} ms of schedule, p99)")
    per_push = pgw["cpu_ms_per_accepted_push"]
    print(f"CPU:      {pgw['cpu_seconds']:.1f} s user+sys in {pgw['wall_seconds']:.1f} s = "
          f"{pgw['cpu_percent_of_one_core']:.0f}% of one core"
          + (f", {per_push:.1f} ms per accepted push" if per_push is not None else "")
          + f" (this script: {result['client_cpu_seconds']:.1f} s, not counted)")
    print(f"memory:   RSS {pgw['rss_idle_mib']:.0f} MiB holding the groups before pushing, "
          f"{pgw['rss_end_mib']:.0f} MiB at the end, peak {pgw['peak_rss_mib']:.0f} MiB (VmHWM)")
    for label in ("idle", "under_push_load"):
        figures = scraped[label]
        print(f"scrape:   {label.replace('_', ' ')}: p50 {fmt_s(figures['p50_s'])} s, "
              f"max {fmt_s(figures['max_s'])} s over {figures['count']} scrapes"
              + (f", {figures['over_prometheus_timeout']} over Prometheus' {PROMETHEUS_SCRAPE_TIMEOUT:g} s timeout"
                 if figures["over_prometheus_timeout"] else "")
              + (f", {figures['failed']} failed {figures['errors']}" if figures["failed"] else ""))
    print(f"          {scraped['wire_bytes'] / 1024:,.0f} KiB gzip, {scraped['text_bytes'] / 2**20:.1f} MiB text, "
          f"{scraped['series']:,} series ({scraped['site_series']:,} from the sites), {scraped['content_type']}")
    if burst["all_accepted"]:
        print(f"burst:    all {burst['sites']:,} at once: all accepted in {burst['seconds']:.1f} s "
              f"({burst['rate_per_s']:.1f}/s)", end="")
    else:
        print(f"burst:    all {burst['sites']:,} at once: {burst['accepted']:,} accepted within "
              f"{burst['seconds']:g} s ({burst['rate_per_s']:.1f}/s; all would take about "
              f"{burst['estimate_all_s'] or 0:.0f} s at that rate)", end="")
    print(f"; Pushgateway CPU {burst['cpu_seconds']:.1f} s, peak RSS {burst['peak_rss_mib']:.0f} MiB")


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    for size in sizes:
        if not 0 < size <= MAX_SITES:
            raise argparse.ArgumentTypeError(f"sizes go from 1 to {MAX_SITES:,}, not {size}")
    return sizes


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Let N simulated sitewatch sites push to one Prometheus "
                                                 "Pushgateway; measure push latency, its CPU and memory, the "
                                                 "scrape of its /metrics, and a burst of all N at once.")
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="numbers of sites, comma-separated (default: 100,1000,3000)")
    parser.add_argument("--seconds", type=positive, default=DEFAULT_SECONDS,
                        help="how long the sites push, per size (default: 60)")
    parser.add_argument("--interval", type=positive, default=DEFAULT_INTERVAL,
                        help="seconds between two pushes of one site (default: 60, the pusher's default; "
                             "lower it for a quick run)")
    parser.add_argument("--timeout", type=positive, default=DEFAULT_TIMEOUT,
                        help="seconds a site waits for the answer to a push (default: 10, the pusher's "
                             "push.timeout)")
    parser.add_argument("--burst-seconds", type=positive, default=DEFAULT_BURST_SECONDS,
                        help="how long the burst may take before it is cut short (default: 20)")
    parser.add_argument("--no-consistency-check", action="store_true",
                        help="run the measured Pushgateways with --push.disable-consistency-check")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    return parser.parse_args()


def raise_system_exit(signum: int, _frame) -> None:
    # Turns SIGTERM into an exception so the with-blocks stop the Pushgateways this script started.
    raise SystemExit(128 + signum)


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    binary = find_pushgateway()
    raise_file_limit(max(arguments.sizes))
    machine = machine_description(binary)
    print_machine(machine, arguments)
    report = {"machine": machine, "settings": {key: str(value) if isinstance(value, Path) else value
                                               for key, value in vars(arguments).items()}, "sizes": []}
    started = time.monotonic()
    try:
        for n in arguments.sizes:
            result = measure_size(binary, n, arguments)
            print_size(result, arguments)
            report["sizes"].append(result)
    except BenchError as err:
        sys.exit(f"pushgateway_fleet: {err}")
    except KeyboardInterrupt:
        # The with-blocks have stopped the Pushgateways by now; a traceback would say nothing more.
        print("\npushgateway_fleet: interrupted", file=sys.stderr)
        sys.exit(130)
    report["runtime_s"] = time.monotonic() - started
    print(f"\ntotal {report['runtime_s']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {arguments.json}")


if __name__ == "__main__":
    main()
