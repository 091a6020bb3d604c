"""The Pushgateway (consistency check on and off) and VictoriaMetrics side by side, for the same fleet.

For each fleet size N (1,000, 3,000 and 10,000 unless --sizes says otherwise) and each backend, a fresh
server on a free 127.0.0.1 port receives the pushes of N simulated sites for --seconds (60):

  pushgateway          Debian's prometheus-pushgateway with its defaults (the consistency check on);
  pushgateway-nocheck  the same with --push.disable-consistency-check;
  victoriametrics      Debian's victoria-metrics (single node) with -search.latencyOffset=1s, receiving
                       the pushes on its import endpoint.

Every site pushes once per --interval (60 s), the sites' start times spread evenly over the interval, so
N sites offer N/60 pushes a second, each on a new connection. The body is the one
bench/pushgateway_fleet.py builds (60 series: the checks, ping, tcp/http/TLS, Кодекс and a fiscal
register), plus the pusher's own three series (sitewatch_pusher_build_info,
sitewatch_pusher_last_success_timestamp_seconds, sitewatch_pusher_series), so 63 series, gzip-compressed
text exposition. One site in 100 has its web page check down (sitewatch_check_up 0), so the fleet
board's queries find something. To the Pushgateway a site PUTs it without timestamps to
/metrics/job/sitewatch/site/<id>, as the pusher does; to VictoriaMetrics it POSTs it with the push time
in milliseconds on every sample to /api/v1/import/prometheus?extra_label=job=sitewatch&extra_label=site=<id>,
as the pusher does with push.import_url. A push that gets no answer within --timeout (10 s, the pusher's
push.timeout) counts as failed and as slower than every answered one; the pusher's retries are not
simulated.

Every backend starts holding the whole fleet, like a server that has been running for a while. The
Pushgateways load a persistence file that a seeding Pushgateway without the check wrote, after one push
per site (as bench/pushgateway_fleet.py does); VictoriaMetrics gets one push per site before the clock
starts, and the benchmark waits until its queries see all N sites.

Per size and backend it reports:

  pushes   accepted per minute while the sites push, the share of the pushes sent that were answered
           within the timeout, and latency p50/p99/max from request to answer;
  CPU      the server's user + sys seconds while the sites push (from /proc/PID/stat, all threads), as %
           of one core. The board's reads (below) run meanwhile: the ingest's CPU rate is taken from the
           stretches of the window when no read was in progress, over the whole window that is the
           ingest's CPU, given per accepted push and per million samples, and the rest is the reads';
           the sites run in this script, so their CPU is not in it (it is printed beside, and so is what
           the rest of the machine used meanwhile, from /proc/stat, to show a disturbed run);
  memory   the server's RSS holding the fleet before the pushing, at its end, and its peak (VmHWM); for
           VictoriaMetrics also the RSS of the empty process, so the memory per active series follows;
  board    what a fleet board costs to read, measured three times on the idle server and every 15 s while
           the sites push. The two backends are read differently, and the output says which is which:
           for a Pushgateway, the time of GET /metrics as Prometheus scrapes it (Prometheus must do that
           every scrape interval before any dashboard can query it; its own query time is not included);
           for VictoriaMetrics, the six instant queries of the fleet board in BOARD_QUERIES, one after
           another, and their sum. Each read also gives the server CPU it cost.

Then, for VictoriaMetrics, the cost per sample the arithmetic for a cluster needs: CPU seconds per
million samples ingested, and bytes of RSS per active series.

Only 127.0.0.1 is used. Every server is stopped by its pid when its phase ends, also on errors, Ctrl-C and
SIGTERM. With the defaults the run takes about 14 minutes on 2 CPUs (805–840 s measured): 9 phases of
60 s of pushing, up to 10 s more for answers still awaited, the idle reads (a Pushgateway's /metrics
takes about 10 s to scrape at 10,000 sites) and the seeding.

    .venv/bin/python bench/backends_fleet.py [--sizes 1000,3000,10000] [--seconds 60] [--interval 60]
                                             [--timeout 10] [--backends pushgateway,pushgateway-nocheck,
                                             victoriametrics] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from benchkit import (  # noqa: E402
    BenchError,
    Service,
    find_program,
    free_loopback_port,
    http_get,
    positive,
    raise_system_exit,
)
from pushgateway_fleet import (  # noqa: E402
    ACCEPTED,
    DEFAULT_INTERVAL,
    DEFAULT_SECONDS,
    DEFAULT_TIMEOUT,
    IDLE_SCRAPES,
    PGW_CANDIDATES,
    PGW_SERIES_PER_GROUP,
    PROMETHEUS_SCRAPE_TIMEOUT,
    SCRAPE_EVERY,
    SEED_IN_FLIGHT,
    Push,
    Pushgateway,
    Site,
    count_errors,
    exposition,
    gzip_body,
    machine_description,
    make_sites,
    parse_sizes,
    percentile,
    push_all,
    push_schedule,
    scrape,
)
from pushgateway_fleet import BenchError as PushgatewayError  # noqa: E402

from exporter import __version__  # noqa: E402

DEFAULT_SIZES = (1000, 3000, 10000)
BACKENDS = ("pushgateway", "pushgateway-nocheck", "victoriametrics")
BACKEND_TITLES = {
    "pushgateway": "Pushgateway, consistency check on (Debian's defaults)",
    "pushgateway-nocheck": "Pushgateway with --push.disable-consistency-check",
    "victoriametrics": "VictoriaMetrics single node, import endpoint",
}
TARGET_SITES = 10000  # the target: 10,000 sites pushing every 60 s, all accepted, p99 under 100 ms
TARGET_P99_MS = 100.0
VM_CANDIDATES = ("victoria-metrics", "victoriametrics")
VM_ACCEPTED = (204,)
VM_SEED_TIMEOUT = 60.0
VM_VISIBLE_WITHIN = 60.0  # seconds VictoriaMetrics may take to show the seeded samples to queries
QUERY_TIMEOUT = 30.0
IDLE_CPU_SECONDS = 5.0  # the server's own background work, measured before the pushing starts
DOWN_EVERY = 100  # one site in 100 has its web page check down
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The fleet board's instant queries, with Grafana's "All" for its variables where the dashboard has them.
BOARD_QUERIES = (
    ("checks down", "count(sitewatch_check_up == 0)"),
    ("checks down by distributor", "count by (distributor) (sitewatch_check_up == 0)"),
    ("longest silent sites", "topk(15, time() - sitewatch_pusher_last_success_timestamp_seconds)"),
    ("sites up", 'count(min by (site) (sitewatch_check_up{type="ping", distributor=~".*", client=~".*"}) == 1) '
                 "or vector(0)"),
    ("down checks table", 'min by (site, client, distributor, check) '
                          '(sitewatch_check_up{distributor=~".*", client=~".*"}) == 0'),
    ("worst ping loss", 'topk(10, max by (site) (sitewatch_ping_loss_ratio{distributor=~".*", client=~".*"}))'),
)


# -- what a site pushes ------------------------------------------------------------------------------

PUSHER_FAMILIES = (
    ("sitewatch_pusher_build_info", "Version of the sitewatch pusher; always 1."),
    ("sitewatch_pusher_last_success_timestamp_seconds",
     "When this push was made: the group shows it only once the push has succeeded."),
    ("sitewatch_pusher_series", "Series in this push, besides the pusher's own."),
)


def down_line(site: Site, name: str) -> str:
    """The sample of the site's web page check that a down site reports as 0 (as exposition() writes it)."""
    return (f'{name}{{site="{site.id}",client="{site.client}",distributor="{site.distributor}",'
            f'telegram_route="{site.telegram_route}",check="site",type="http"}} ')


def site_text(site: Site, index: int, run: int, now: float, rng: random.Random, stamp: bool) -> str:
    """pushgateway_fleet's exposition, every 100th site with its web page down, and the pusher's own series;
    with `stamp`, every sample carries `now` in milliseconds, as the pusher sends to an import endpoint."""
    text = exposition(site, run, now, rng)
    if index % DOWN_EVERY == 0:
        for name in ("sitewatch_check_success", "sitewatch_check_up"):
            text = text.replace(down_line(site, name) + "1.0", down_line(site, name) + "0.0")
    values = ((f'{{version="{__version__}"}}', 1.0), ("", round(now, 3)),
              ("", float(text.count("\n") - text.count("# "))))
    for (name, help_text), (labels, value) in zip(PUSHER_FAMILIES, values):
        text += f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name}{labels} {value!r}\n"
    if stamp:
        ms = f" {int(now * 1000)}"
        text = "\n".join(line if line.startswith("#") else line + ms for line in text.splitlines()) + "\n"
    return text


def series_in(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


SERIES_PER_SITE = series_in(site_text(make_sites(1)[0], 1, 1, 0.0, random.Random(0), stamp=False))


def down_sites(n: int) -> int:
    return len(range(0, n, DOWN_EVERY))


# -- pushing over HTTP --------------------------------------------------------------------------------

@dataclass
class Sent(Push):
    """A push to either backend; `ok` holds the statuses that mean accepted (VictoriaMetrics answers 204)."""

    ok: tuple[int, ...] = ACCEPTED

    @property
    def accepted(self) -> bool:
        return self.status in self.ok


async def http_send(port: int, method: str, path: str, body: bytes, timeout: float) -> int:
    """One request on a new connection, no keep-alive (a site pushes once a minute); returns the status."""

    async def exchange() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                    f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
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


async def send_once(target: "Target", index: int, body: bytes, due: float, timeout: float) -> Sent:
    loop = asyncio.get_running_loop()
    record = Sent(site=index, due=due, started=loop.time(), ok=target.ok)
    try:
        record.status = await http_send(target.port, target.method, target.path(index), body, timeout)
        if not record.accepted:
            record.error = f"HTTP {record.status}"
    except asyncio.TimeoutError:
        record.error = f"no answer within {timeout:g} s"
    except (OSError, ConnectionError) as err:
        record.error = f"{type(err).__name__}: {err}"
    record.finished = loop.time()
    return record


# -- reading the fleet board ------------------------------------------------------------------------

@dataclass
class Read:
    seconds: float | None  # the scrape, or the board's queries one after another
    error: str | None = None
    queries: dict[str, float] = field(default_factory=dict)  # VictoriaMetrics: seconds per query
    results: dict[str, int] = field(default_factory=dict)  # VictoriaMetrics: series per query's answer
    series: int = 0  # Pushgateway: series the scrape returned, and those from the sites
    site_series: int = 0
    wire_bytes: int = 0
    cpu_before: float = 0.0  # the server's CPU seconds when the read began and ended
    cpu_after: float = 0.0
    began: float = 0.0  # time.monotonic() (the event loop's clock) when the read began and ended
    ended: float = 0.0

    def cpu_seconds(self, baseline: float = 0.0) -> float:
        """The server's CPU during the read, less `baseline` CPU seconds per second it would have used anyway."""
        return max(0.0, self.cpu_after - self.cpu_before - baseline * (self.ended - self.began))


def read_pushgateway(port: int) -> Read:
    """GET /metrics as Prometheus scrapes it (pushgateway_fleet.scrape)."""
    done = scrape(port)
    return Read(done.seconds, done.error, series=done.series, site_series=done.site_series,
                wire_bytes=done.wire_bytes)


def instant_query(port: int, query: str) -> list:
    path = "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, text = http_get(port, path, timeout=QUERY_TIMEOUT)
    if status != 200:
        raise BenchError(f"{query}: HTTP {status}: {text[:200]}")
    answer = json.loads(text)
    if answer.get("status") != "success":
        raise BenchError(f"{query}: {text[:200]}")
    return answer["data"]["result"]


def read_board(port: int) -> Read:
    """The fleet board's instant queries, one after another, each timed from request to the whole answer."""
    read = Read(0.0)
    for name, query in BOARD_QUERIES:
        started = time.perf_counter()
        try:
            result = instant_query(port, query)
        except (OSError, ValueError, BenchError) as err:
            return Read(None, f"{name}: {type(err).__name__}: {err}")
        read.queries[name] = time.perf_counter() - started
        read.results[name] = len(result)
    read.seconds = sum(read.queries.values())
    return read


def count_query(port: int, query: str) -> int:
    result = instant_query(port, query)
    return int(float(result[0]["value"][1])) if result else 0


# -- one backend's phase ------------------------------------------------------------------------------

@dataclass
class Target:
    backend: str
    port: int
    server: Pushgateway | Service
    method: str
    ok: tuple[int, ...]
    stamp: bool  # samples carry the push time
    sites: list[Site]
    read: Callable[[int], Read]

    def path(self, index: int) -> str:
        site = self.sites[index]
        if self.backend == "victoriametrics":
            return ("/api/v1/import/prometheus?"
                    + urllib.parse.urlencode([("extra_label", "job=sitewatch"), ("extra_label", f"site={site.id}")]))
        return site.path

    def body(self, index: int, run: int, rng: random.Random) -> bytes:
        return gzip_body(site_text(self.sites[index], index, run, time.time(), rng, self.stamp))


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have been busy since boot (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # steal and guest are not this machine's work
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed_read(target: "Target") -> Read:
    """One read of the board, with the server's CPU before and after (what serving it cost)."""
    before, began = target.server.cpu_seconds(), time.monotonic()
    read = target.read(target.port)
    read.cpu_before, read.cpu_after = before, target.server.cpu_seconds()
    read.began, read.ended = began, time.monotonic()
    return read


@dataclass
class Phase:
    pushes: list[Sent]
    reads: list[Read]
    cpu_from: float  # the server's CPU seconds when the pushing began and when its window ended
    cpu_to: float
    start: float  # loop time the pushing began
    wall_seconds: float
    rss_end_mib: float
    client_cpu_seconds: float
    machine_busy_seconds: float  # every process on the machine, this one and the server included


async def steady_phase(target: Target, seconds: float, interval: float, timeout: float) -> Phase:
    """Every site pushes at its own offset in the interval, for `seconds`; the board is read meanwhile."""
    loop = asyncio.get_running_loop()
    rng = random.Random(2)
    n = len(target.sites)
    start = loop.time() + 0.2
    schedule = push_schedule(start, n, interval, seconds)
    tasks: list[asyncio.Task] = []
    reads: list[Read] = []
    # Its own thread (not asyncio's default executor, which asyncio.run() waits for on Ctrl-C).
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="board")

    async def read_loop() -> None:
        # One read at a time, every SCRAPE_EVERY from an offset, never overlapping, as Prometheus scrapes.
        due = start + min(SCRAPE_EVERY, seconds) / 2
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            reads.append(await loop.run_in_executor(reader, timed_read, target))
            due += SCRAPE_EVERY

    try:
        await asyncio.sleep(max(0.0, start - loop.time()))
        cpu_before, client_before = target.server.cpu_seconds(), time.process_time()
        busy_before = machine_busy_seconds()
        read_task = asyncio.create_task(read_loop())
        for due, index in schedule:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # A fresh state per push, stamped now, as the pusher sends it.
            body = target.body(index, 2 + int((due - start) // interval), rng)
            tasks.append(asyncio.create_task(send_once(target, index, body, due, timeout)))
        await asyncio.sleep(max(0.0, start + seconds - loop.time()))
        cpu_after = target.server.cpu_seconds()
        busy = machine_busy_seconds() - busy_before
        wall = loop.time() - start
        rss_end = target.server.status_mib("VmRSS")
        client_cpu = time.process_time() - client_before
        # Pushes still waiting get their full timeout, so the latency figures include them.
        pushes = await asyncio.gather(*tasks)
        await read_task
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
    return Phase(list(pushes), reads, cpu_before, cpu_after, start, wall, rss_end, client_cpu, busy)


async def seed_all(target: Target, in_flight: int, timeout: float) -> list[Sent]:
    """One push per site, at most `in_flight` at a time."""
    gate = asyncio.Semaphore(in_flight)
    rng = random.Random(1)
    now = asyncio.get_running_loop().time()

    async def one(index: int) -> Sent:
        async with gate:
            return await send_once(target, index, target.body(index, 1, rng), now, timeout)

    return await asyncio.gather(*(one(i) for i in range(len(target.sites))))


# -- the backends -------------------------------------------------------------------------------------

@dataclass
class Seed:
    seconds: float
    cpu_seconds: float


def seed_pushgateway(binary: str, workdir: Path, sites: list[Site]) -> tuple[Path, Seed]:
    """A persistence file holding one group per site, written by a Pushgateway without the check, as
    pushgateway_fleet.build_seed makes it (with this benchmark's body)."""
    path = workdir / "seed.data"
    with Pushgateway(binary, workdir, path, ("--push.disable-consistency-check",)) as seeder:
        rng = random.Random(1)
        bodies = [gzip_body(site_text(site, i, 1, time.time(), rng, stamp=False)) for i, site in enumerate(sites)]
        cpu_before, started = seeder.cpu_seconds(), time.monotonic()
        pushes = asyncio.run(push_all(seeder.port, sites, bodies, in_flight=SEED_IN_FLIGHT, timeout=60))
        seed = Seed(time.monotonic() - started, seeder.cpu_seconds() - cpu_before)
        failed = [p for p in pushes if not p.accepted]
        if failed:
            raise BenchError(f"seeding the Pushgateway: {len(failed)} of {len(sites)} pushes failed, "
                             f"first: {failed[0].error}")
        # SIGTERM makes the Pushgateway write its persistence file before it exits; give it the time.
        seeder.stop(grace=120)
    if not path.exists() or path.stat().st_size == 0:
        raise BenchError("the seeding Pushgateway wrote no persistence file")
    return path, seed


def measure_pushgateway(binary: str, workdir: Path, seed_file: Path, seed: Seed, sites: list[Site], backend: str,
                        arguments: argparse.Namespace) -> dict:
    extra = ("--push.disable-consistency-check",) if backend == "pushgateway-nocheck" else ()
    copy = workdir / f"{backend}.data"
    shutil.copyfile(seed_file, copy)
    with Pushgateway(binary, workdir, copy, extra) as pgw:
        target = Target(backend, pgw.port, pgw, "PUT", ACCEPTED, False, sites, read_pushgateway)
        rss_idle = pgw.status_mib("VmRSS")
        idle = [timed_read(target) for _ in range(IDLE_SCRAPES)]
        expected = len(sites) * (SERIES_PER_SITE + PGW_SERIES_PER_GROUP)
        if idle[0].error or idle[0].site_series != expected:
            raise BenchError(f"the Pushgateway exposed {idle[0].site_series} site series at start, expected "
                             f"{expected} ({idle[0].error or 'no error'})")
        idle_cpu = idle_cpu_percent(pgw)
        phase = asyncio.run(steady_phase(target, arguments.seconds, arguments.interval, arguments.timeout))
        peak = pgw.status_mib("VmHWM")
    return summarise(len(sites), backend, arguments, None, rss_idle, idle, phase, peak, seed,
                     {"idle_cpu_percent_of_one_core": idle_cpu})


def measure_victoriametrics(binary: str, workdir: Path, sites: list[Site], arguments: argparse.Namespace) -> dict:
    n = len(sites)
    port = free_loopback_port()
    data = workdir / f"vm-{n}"
    argv = [binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-search.latencyOffset=1s"]
    with Service("victoria-metrics", argv, port, workdir / f"victoria-metrics-{port}.log") as vm:
        target = Target("victoriametrics", port, vm, "POST", VM_ACCEPTED, True, sites, read_board)
        rss_empty = vm.status_mib("VmRSS")
        cpu_before, started = vm.cpu_seconds(), time.monotonic()
        pushes = asyncio.run(seed_all(target, SEED_IN_FLIGHT, VM_SEED_TIMEOUT))
        seed = Seed(time.monotonic() - started, vm.cpu_seconds() - cpu_before)
        failed = [p for p in pushes if not p.accepted]
        if failed:
            raise BenchError(f"seeding VictoriaMetrics: {len(failed)} of {n} pushes failed, first: {failed[0].error}")
        wait_until_visible(port, n)
        rss_idle = vm.status_mib("VmRSS")
        idle = [timed_read(target) for _ in range(IDLE_SCRAPES)]
        if any(r.error for r in idle):
            raise BenchError(f"the fleet board's queries failed: {next(r.error for r in idle if r.error)}")
        idle_cpu = idle_cpu_percent(vm)
        phase = asyncio.run(steady_phase(target, arguments.seconds, arguments.interval, arguments.timeout))
        peak = vm.status_mib("VmHWM")
        disk = dir_size(data)
    return summarise(n, "victoriametrics", arguments, rss_empty, rss_idle, idle, phase, peak, seed,
                     {"idle_cpu_percent_of_one_core": idle_cpu, "data_dir_mib": disk / 2**20})


def idle_cpu_percent(server: Pushgateway | Service) -> float:
    """The server's CPU while nothing reaches it, as % of one core (a Pushgateway's is about 0;
    VictoriaMetrics merges the parts the seeding wrote)."""
    before = server.cpu_seconds()
    time.sleep(IDLE_CPU_SECONDS)
    return 100 * (server.cpu_seconds() - before) / IDLE_CPU_SECONDS


def dir_size(path: Path) -> int:
    """Bytes in the files under `path`; VictoriaMetrics merges parts meanwhile, so files come and go."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def wait_until_visible(port: int, n: int) -> None:
    """Until the queries see every seeded site, and the sites that are down (which the board shows)."""
    deadline = time.monotonic() + VM_VISIBLE_WITHIN
    sites = down = 0
    while time.monotonic() < deadline:
        try:
            sites = count_query(port, "count(sitewatch_pusher_last_success_timestamp_seconds)")
            down = count_query(port, "count(sitewatch_check_up == 0)")
        except (OSError, ValueError) as err:
            raise BenchError(f"VictoriaMetrics' query API failed: {type(err).__name__}: {err}")
        if sites == n and down == down_sites(n):
            return
        time.sleep(0.5)
    raise BenchError(f"after seeding, VictoriaMetrics showed {sites} of {n} sites and {down} of {down_sites(n)} "
                     f"down checks within {VM_VISIBLE_WITHIN:g} s")


# -- figures --------------------------------------------------------------------------------------------

def read_figures(reads: list[Read], baseline: float = 0.0) -> dict:
    times = [r.seconds for r in reads if r.error is None]
    figures = {
        "count": len(reads),
        "server_cpu_s_p50": percentile([r.cpu_seconds(baseline) for r in reads], 0.5) if reads else None,
        "failed": sum(1 for r in reads if r.error),
        "p50_s": percentile(times, 0.5) if times else None,
        "max_s": max(times) if times else None,
        "errors": [r.error for r in reads if r.error],
    }
    per_query = [r.queries for r in reads if r.error is None and r.queries]
    if per_query:
        figures["query_p50_s"] = {name: percentile([q[name] for q in per_query], 0.5) for name, _ in BOARD_QUERIES}
        figures["query_results"] = next(r.results for r in reversed(reads) if r.error is None)
    return figures


def summarise(n: int, backend: str, arguments: argparse.Namespace, rss_empty: float | None, rss_idle: float,
              idle: list[Read], phase: Phase, peak: float, seed: Seed, extra: dict) -> dict:
    pushes = phase.pushes
    latencies = [p.latency for p in pushes]
    accepted = [p for p in pushes if p.accepted]
    # The rate counts only the answers within the pushing window; later ones are a backlog draining.
    in_window = [p for p in accepted if p.finished <= phase.start + phase.wall_seconds]
    lags = [p.started - p.due for p in pushes]
    samples = len(in_window) * SERIES_PER_SITE
    cpu = phase.cpu_to - phase.cpu_from
    # The board's reads run on the same server meanwhile. The ingest's rate is taken from the parts of the
    # window when no read was in progress, and what the server used beyond it is the reads' cost.
    end = phase.start + phase.wall_seconds
    during_reads = sum(max(0.0, min(r.cpu_after, phase.cpu_to) - max(r.cpu_before, phase.cpu_from))
                       for r in phase.reads)
    read_wall = sum(max(0.0, min(r.ended, end) - max(r.began, phase.start)) for r in phase.reads)
    if phase.wall_seconds - read_wall > 1.0:
        ingest_rate = max(0.0, cpu - during_reads) / (phase.wall_seconds - read_wall)
    else:  # reads the whole time: no clean stretch to measure the ingest on
        ingest_rate = max(0.0, cpu - during_reads) / phase.wall_seconds
    ingest_cpu = min(cpu, ingest_rate * phase.wall_seconds)
    read_cpu = cpu - ingest_cpu
    series = n * SERIES_PER_SITE
    good = [r for r in phase.reads + idle if r.error is None]

    def ms(value: float) -> float | None:
        return None if math.isinf(value) else value * 1000

    latency = {key: ms(percentile(latencies, share)) if latencies else None
               for key, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}
    result = {
        "sites": n,
        "backend": backend,
        "series_per_site": SERIES_PER_SITE + (0 if backend == "victoriametrics" else PGW_SERIES_PER_GROUP),
        "offered_per_min": 60 * n / arguments.interval,
        "pushes": {
            "sent": len(pushes),
            "accepted": len(accepted),
            "failed": len(pushes) - len(accepted),
            "share_accepted": len(accepted) / len(pushes) if pushes else 0.0,
            "accepted_per_min": 60 * len(in_window) / phase.wall_seconds,
            "errors": count_errors(pushes),
            "latency_ms": latency,
            "client_start_lag_ms_p99": percentile(lags, 0.99) * 1000 if lags else None,
        },
        "server": {
            "cpu_seconds": cpu,
            "wall_seconds": phase.wall_seconds,
            "cpu_percent_of_one_core": 100 * cpu / phase.wall_seconds,
            "read_cpu_seconds": read_cpu,
            "ingest_cpu_seconds": ingest_cpu,
            "ingest_cpu_percent_of_one_core": 100 * ingest_cpu / phase.wall_seconds,
            # Per push and per sample: the ingest CPU over the pushes accepted within the window.
            "cpu_ms_per_accepted_push": 1000 * ingest_cpu / len(in_window) if in_window else None,
            "cpu_s_per_million_samples": 1e6 * ingest_cpu / samples if samples else None,
            "rss_empty_mib": rss_empty,
            "rss_idle_mib": rss_idle,
            "rss_end_mib": phase.rss_end_mib,
            "peak_rss_mib": peak,
            # Bytes per active series: what holding the fleet adds to the process (or all of it, for a
            # Pushgateway, which was never measured empty).
            "rss_bytes_per_series_end": (phase.rss_end_mib - (rss_empty or 0.0)) * 2**20 / series,
            "rss_bytes_per_series_peak": (peak - (rss_empty or 0.0)) * 2**20 / series,
            **extra,
        },
        "board": {
            "what": ("6 instant queries of the fleet board, one after another" if backend == "victoriametrics"
                     else "GET /metrics as Prometheus scrapes it"),
            "idle": read_figures(idle),
            "under_push_load": read_figures(phase.reads, ingest_rate),
            "series": good[-1].series if good and backend != "victoriametrics" else None,
            "wire_bytes": good[-1].wire_bytes if good and backend != "victoriametrics" else None,
        },
        "seed": asdict(seed),
        "client_cpu_seconds": phase.client_cpu_seconds,
        # What the rest of the machine used meanwhile: a figure well above 0 means the run was disturbed.
        "others_cpu_percent_of_one_core": 100 * max(0.0, phase.machine_busy_seconds - cpu - phase.client_cpu_seconds)
                                          / phase.wall_seconds,
    }
    result["meets_target"] = (len(accepted) == len(pushes) and latency["p99"] is not None
                              and latency["p99"] < TARGET_P99_MS)
    return result


# -- one size -----------------------------------------------------------------------------------------

def measure_size(binaries: dict[str, str], n: int, arguments: argparse.Namespace) -> list[dict]:
    sites = make_sites(n)
    results = []
    with tempfile.TemporaryDirectory(prefix="backends-fleet-") as tmp:
        workdir = Path(tmp)
        seed_file = seed = None
        for backend in arguments.backends:
            print(f"\n{n:,} sites, {BACKEND_TITLES[backend]} ...", flush=True)
            if backend == "victoriametrics":
                result = measure_victoriametrics(binaries["victoriametrics"], workdir, sites, arguments)
            else:
                if seed_file is None:
                    seed_file, seed = seed_pushgateway(binaries["pushgateway"], workdir, sites)
                result = measure_pushgateway(binaries["pushgateway"], workdir, seed_file, seed, sites, backend,
                                             arguments)
            print_result(result, arguments)
            results.append(result)
    return results


# -- the machine, reporting -------------------------------------------------------------------------

def find_binaries(backends: list[str]) -> dict[str, str]:
    binaries = {}
    if any(b.startswith("pushgateway") for b in backends):
        binaries["pushgateway"] = find_program(PGW_CANDIDATES, "backends_fleet: cannot measure: prometheus-pushgateway"
                                               " is missing: apt-get install prometheus-pushgateway (or make debs)")
    if "victoriametrics" in backends:
        binaries["victoriametrics"] = find_program(VM_CANDIDATES, "backends_fleet: cannot measure: victoria-metrics "
                                                   "is missing: apt-get install victoria-metrics")
    return binaries


def raise_file_limit(sizes: list[int], arguments: argparse.Namespace) -> None:
    # Every push still awaiting its answer holds a connection, here and in the server (which inherits the
    # limit): at most what the sites offer within one timeout, or the seeding's in-flight pushes.
    needed = 2 * max(SEED_IN_FLIGHT, math.ceil(max(sizes) / arguments.interval * arguments.timeout)) + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"backends_fleet: cannot measure: {max(sizes):,} sites need {needed:,} open files, the hard "
                 f"limit is {hard:,} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def vm_version(binary: str) -> str:
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"], check=False,
                                 capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        version = ""
    return f"victoria-metrics {version or '(version unknown)'} ({binary})"


def print_machine(machine: dict, arguments: argparse.Namespace) -> None:
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB, "
          f"Linux {machine['kernel']}, Python {machine['python']}, "
          f"load {machine['load_average_at_start'][0]:.2f}")
    for key in ("pushgateway", "victoriametrics"):
        if machine.get(key):
            print(f"         {machine[key]}")
    print(f"each site pushes {SERIES_PER_SITE} series every {arguments.interval:g} s (the Pushgateway adds "
          f"{PGW_SERIES_PER_GROUP} per group); {arguments.seconds:g} s of pushing per size and backend; "
          f"push timeout {arguments.timeout:g} s; backends: {', '.join(arguments.backends)}")


def fmt_ms(value: float | None, timeout: float) -> str:
    return f">{timeout * 1000:,.0f}" if value is None else f"{value:,.1f}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_result(result: dict, arguments: argparse.Namespace) -> None:
    pushes, server, board = result["pushes"], result["server"], result["board"]
    latency = {key: fmt_ms(value, arguments.timeout) for key, value in pushes["latency_ms"].items()}
    print(f"pushes:   {pushes['sent']:,} sent, {pushes['accepted']:,} accepted within {arguments.timeout:g} s "
          f"({100 * pushes['share_accepted']:.1f}%), {pushes['accepted_per_min']:,.0f}/min while pushing "
          f"(offered {result['offered_per_min']:,.0f}/min)"
          + (f"; failed: {pushes['errors']}" if pushes["errors"] else ""))
    print(f"latency:  p50 {latency['p50']} ms, p90 {latency['p90']} ms, p99 {latency['p99']} ms, "
          f"max {latency['max']} ms (pushes started within {pushes['client_start_lag_ms_p99']:.1f} ms of "
          f"schedule, p99)")
    per_push = server["cpu_ms_per_accepted_push"]
    print(f"CPU:      {server['cpu_seconds']:.1f} s in {server['wall_seconds']:.1f} s = "
          f"{server['cpu_percent_of_one_core']:.0f}% of one core, {server['read_cpu_seconds']:.1f} s of it serving "
          f"the board's reads; idle before: {server['idle_cpu_percent_of_one_core']:.0f}% "
          f"(the simulated sites: {result['client_cpu_seconds']:.1f} s, not counted; other processes on the "
          f"machine: {result['others_cpu_percent_of_one_core']:.0f}% of one core)")
    print(f"ingest:   {server['ingest_cpu_percent_of_one_core']:.0f}% of one core without the reads"
          + (f", {per_push:.2f} ms per accepted push, {server['cpu_s_per_million_samples']:.1f} s per million "
             f"samples accepted" if per_push is not None else ", no push accepted"))
    print("memory:   RSS "
          + (f"{server['rss_empty_mib']:.0f} MiB empty, " if server["rss_empty_mib"] is not None else "")
          + f"{server['rss_idle_mib']:.0f} MiB holding the fleet before pushing, {server['rss_end_mib']:.0f} MiB "
            f"at the end, peak {server['peak_rss_mib']:.0f} MiB (VmHWM)"
          + (f"; data directory {server['data_dir_mib']:.1f} MiB" if "data_dir_mib" in server else ""))
    for label in ("idle", "under_push_load"):
        figures = board[label]
        print(f"board:    {board['what']}, {label.replace('_', ' ')}: p50 {fmt_s(figures['p50_s'])} s, "
              f"max {fmt_s(figures['max_s'])} s over {figures['count']}, server CPU "
              f"{fmt_s(figures['server_cpu_s_p50'])} s per read (p50)"
              + (f", {figures['failed']} failed {figures['errors']}" if figures["failed"] else ""))
    if board["series"] is not None:
        print(f"          {board['wire_bytes'] / 1024:,.0f} KiB gzip, {board['series']:,} series per scrape "
              f"(Prometheus' scrape_timeout is {PROMETHEUS_SCRAPE_TIMEOUT:g} s)")
    queries = board["idle"].get("query_p50_s")
    if queries:
        results = board["idle"]["query_results"]
        print("          idle p50 per query: " + "; ".join(f"{name} {1000 * seconds:.1f} ms ({results[name]} series)"
                                                     for name, seconds in queries.items()))
    if result["backend"] == "victoriametrics" and per_push is not None:
        print_vm_cost(result, arguments)


def print_vm_cost(result: dict, arguments: argparse.Namespace) -> None:
    server = result["server"]
    per_million = server["cpu_s_per_million_samples"]
    per_core = 1e6 / per_million  # samples a second one core ingests at this cost
    sites_per_core = per_core * arguments.interval / SERIES_PER_SITE
    print(f"per sample: {per_million:.1f} CPU s per million samples ingested ({per_million:.1f} µs per sample, "
          f"{server['cpu_ms_per_accepted_push']:.2f} ms per push of {SERIES_PER_SITE}); "
          f"RSS {server['rss_bytes_per_series_end']:,.0f} bytes per active series at the end "
          f"({server['rss_bytes_per_series_peak']:,.0f} at the peak), over the empty process")
    print(f"          a board read (the {len(BOARD_QUERIES)} queries) costs {fmt_s(result['board']['idle']['server_cpu_s_p50'])} "
          f"s of CPU idle, {fmt_s(result['board']['under_push_load']['server_cpu_s_p50'])} s while the sites push (p50)")
    print(f"          at that cost one core ingests about {per_core:,.0f} samples/s, i.e. about "
          f"{sites_per_core:,.0f} sites of {SERIES_PER_SITE} series every {arguments.interval:g} s")


def print_table(results: list[dict], arguments: argparse.Namespace) -> None:
    print("\nsummary (board: pushgateway* = time of GET /metrics as Prometheus scrapes it; victoriametrics = "
          f"the fleet board's {len(BOARD_QUERIES)} instant queries one after another)")
    header = (f"{'sites':>6}  {'backend':<20} {'accepted/min':>12} {'share':>6} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'CPU %':>6} {'ingest CPU s/M samples':>22} {'RSS idle/end/peak MiB':>22} "
              f"{'board idle / load p50 s':>24} {'others %':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        p, s, b = r["pushes"], r["server"], r["board"]
        lat = {key: fmt_ms(value, arguments.timeout) for key, value in p["latency_ms"].items()}
        per_million = s["cpu_s_per_million_samples"]
        rss = f"{s['rss_idle_mib']:.0f}/{s['rss_end_mib']:.0f}/{s['peak_rss_mib']:.0f}"
        board = f"{fmt_s(b['idle']['p50_s'])} / {fmt_s(b['under_push_load']['p50_s'])}"
        print(f"{r['sites']:>6,}  {r['backend']:<20} {p['accepted_per_min']:>12,.0f} "
              f"{100 * p['share_accepted']:>5.1f}% {lat['p50']:>8} {lat['p99']:>8} {lat['max']:>8} "
              f"{s['cpu_percent_of_one_core']:>6.0f} {'-' if per_million is None else f'{per_million:.1f}':>22} "
              f"{rss:>22} {board:>24} {r['others_cpu_percent_of_one_core']:>8.0f}")
    at_target = [r for r in results if r["sites"] >= TARGET_SITES]
    if at_target:
        print(f"\ntarget ({TARGET_SITES:,} sites every {arguments.interval:g} s, every push accepted within "
              f"{arguments.timeout:g} s, p99 under {TARGET_P99_MS:g} ms):")
        for r in at_target:
            p99 = fmt_ms(r["pushes"]["latency_ms"]["p99"], arguments.timeout)
            print(f"  {r['sites']:,} sites, {r['backend']}: {'met' if r['meets_target'] else 'NOT met'} "
                  f"({r['pushes']['accepted']:,} of {r['pushes']['sent']:,} accepted, p99 {p99} ms)")


# -- arguments and main -------------------------------------------------------------------------------

def parse_backends(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)}, not {text!r}")
    return chosen


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Let N simulated sitewatch sites push to a Pushgateway (check on "
                                                 "and off) and to VictoriaMetrics, one fresh server after another; "
                                                 "measure accepted pushes, latency, CPU, memory and the fleet "
                                                 "board's read time, and VictoriaMetrics' cost per sample.")
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="numbers of sites, comma-separated (default: 1000,3000,10000)")
    parser.add_argument("--seconds", type=positive, default=DEFAULT_SECONDS,
                        help="how long the sites push, per size and backend (default: 60)")
    parser.add_argument("--interval", type=positive, default=DEFAULT_INTERVAL,
                        help="seconds between two pushes of one site (default: 60, the pusher's default)")
    parser.add_argument("--timeout", type=positive, default=DEFAULT_TIMEOUT,
                        help="seconds a site waits for the answer to a push (default: 10, the pusher's "
                             "push.timeout)")
    parser.add_argument("--backends", type=parse_backends, default=list(BACKENDS),
                        help=f"which backends, comma-separated (default: {','.join(BACKENDS)})")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    binaries = find_binaries(arguments.backends)
    raise_file_limit(arguments.sizes, arguments)
    machine = machine_description(binaries["pushgateway"]) if "pushgateway" in binaries else {}
    if not machine:  # machine_description names the Pushgateway; without one, the rest of it
        machine = {**machine_description(sys.executable), "pushgateway": None}
    if "victoriametrics" in binaries:
        machine["victoriametrics"] = vm_version(binaries["victoriametrics"])
    print_machine(machine, arguments)
    report = {"machine": machine, "settings": {key: str(value) if isinstance(value, Path) else value
                                               for key, value in vars(arguments).items()},
              "series_per_site": SERIES_PER_SITE, "board_queries": dict(BOARD_QUERIES), "results": []}
    started = time.monotonic()
    try:
        for n in arguments.sizes:
            report["results"] += measure_size(binaries, n, arguments)
    except (BenchError, PushgatewayError) as err:
        sys.exit(f"backends_fleet: {err}")
    except KeyboardInterrupt:
        # The with-blocks have stopped the servers by now; a traceback would say nothing more.
        print("\nbackends_fleet: interrupted", file=sys.stderr)
        sys.exit(130)
    print_table(report["results"], arguments)
    report["runtime_s"] = time.monotonic() - started
    print(f"\ntotal {report['runtime_s']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {arguments.json}")


if __name__ == "__main__":
    main()
