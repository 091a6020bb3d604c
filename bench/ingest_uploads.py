"""What sitewatch-ingest costs for a fleet: sustained uploads per second, CPU of 1,000 sites uploading every
15 minutes, and the same fleet's series in Debian's Pushgateway, which is what a user would run instead.

It writes an ingest config for a fleet and starts a real `sitewatch-ingest` (python -m ingest.cli) on a free
127.0.0.1 port, with its SQLite file in a temporary directory on the machine's disk. The fleet, as an office
taking over SMART.Status and getad-service would have it:

  Кодекс sites   --sites (1,000) smartstatus.bat clients of 8 distributors (each its own `dealer:` and
                 `?token=`). Three in four are configured sites (id, labels, `smartstatus.client`, the
                 server's address); every fourth is left to `derive_sites: true`, a client that is not in the
                 config yet (a real take-over has both). Every eighth client name is Russian, and its
                 file name goes in the ANSI code page (cp1251), as Windows curl sends it. Each upload is what
                 `curl -Ffile=@<client>.status` posts: multipart, the monitoring page of a server with six
                 catalogs (simulators/kodeks.py), every tenth with a bundle problem, every fiftieth with a
                 broken main page; half in the 2026 form (a `date:` line first), half in the 2023 form.
  getad sites    --registers (1,000) fiscal registers in cafés of two registers each, posted as
                 getad-service posts them (the register's JSON file, `X-API-Key`), made from the samples in
                 tests/ingest_data (АТОЛ, Mitsu, Штрих-М). Most come with the distributor's key and are matched
                 by their serial, one café in ten by its PCs' hostnames, one in ten has a key of its own.

It measures, in this order, on the same process:

  1. uploads/s   every site and register once (concurrency 8), which fills the store; then closed loops
                 of --concurrency (1, 4, 16) clients, each for --step-seconds (10), cycling through the fleet:
                 uploads/s, p50/p99 per source, the ingest's CPU per upload, and the SYNs the kernel dropped
                 because the ingest's accept queue was full (TcpExt ListenOverflows, machine-wide; a dropped
                 SYN is sent again after 1 s, which shows as a p99 of about a second). Every answer must be 200 with
                 the tool's own "ok" body; any other answer, or none within --timeout, counts as lost. At the
                 end /metrics must hold every site's series (6 catalogs per Кодекс site, every register, the
                 last-upload time per site and source), uploads_total the uploads sent, and no refusal.
  2. CPU         the process's utime+stime (/proc/PID/stat, every thread): idle for 10 s; 10 scrapes as
                 Prometheus sends them (its Accept, gzip), one at a time; a compressed schedule: every
                 Кодекс site once, spread evenly over --compressed-seconds (20), then 200 getad posts at the
                 same rate; from these, CPU per upload, per post and per scrape, scaled honestly to
                 --sites uploads per 900 s plus the registers' posts every 8 h (getad-service's interval) plus
                 a scrape every 15 s. Then measured directly: --seconds (60) at the real rates (--sites/900
                 uploads/s, --registers/28,800 posts/s, the schedule of bench/pushgateway_fleet.py) with a
                 Prometheus-style scrape every 15 s, its CPU over the window as % of one core. Also RSS, the
                 size of /metrics (text and gzip) and of the SQLite file (with its -wal).
  3. Pushgateway Debian's prometheus-pushgateway with its defaults (the consistency check on), holding the
                 same fleet's series: the ingest's /metrics split into one group per site, without the site
                 label (the grouping key carries it) and without the ingest's own families, as
                 sitewatch-pusher would push a site's kodeks or getad check. Filled through a seeding
                 Pushgateway without the check and its persistence file, as bench/pushgateway_fleet.py does.
                 Then the same --seconds window: the same schedule, one gzip PUT of the site's group per
                 upload, a scrape every 15 s; CPU per push (the window's CPU less its scrapes' measured
                 CPU), scrape time, RSS. --skip-pushgateway leaves it out.

Target (from the issue), printed with PASS or FAIL: 1,000 sites uploading every 15 minutes, with the
scrapes, cost under 5 % of one core, by both the scaled and the direct figure; and no upload refused or
lost, every site's series in /metrics. The sites run in this script (asyncio, a new connection per
upload, as curl and getad-service do, with their headers; no `Expect: 100-continue`, which curl sends only
for bodies over 1 MiB); its CPU is printed, not counted. Only 127.0.0.1 is used; every
process started is stopped by its pid, on errors, Ctrl-C and SIGTERM too. With the defaults the run takes
about 3.5 minutes on 2 CPUs.

    .venv/bin/python bench/ingest_uploads.py [--sites 1000] [--registers 1000] [--seconds 60]
                                             [--step-seconds 10] [--concurrency 1,4,16]
                                             [--compressed-seconds 20] [--timeout 10]
                                             [--skip-pushgateway] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.client
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pushgateway_fleet as pgwf  # noqa: E402
from benchkit import (ROOT, BenchError, Service, at_least_one, find_program, first_line,  # noqa: E402
                      free_loopback_port, percentile, positive, raise_system_exit)
from exporter_scrape import groups_by_site, scrape  # noqa: E402
from ingest.sitemap import site_id_from_client  # noqa: E402
from simulators.kodeks import Catalog, Scenario, metrics_text  # noqa: E402

TARGET_PERCENT = 5.0  # of one core, for 1,000 sites uploading every 15 minutes, scrapes included
SMARTSTATUS_INTERVAL = 900.0  # smartstatus.bat's scheduled task: every 15 minutes
GETAD_INTERVAL = 8 * 3600.0  # getad-service's validation_fn.interval as shipped
SCRAPE_EVERY = 15.0  # Prometheus' scrape_interval in prometheus/prometheus.yml
IDLE_SECONDS = 10.0
SCRAPES = 10
FILL_CONCURRENCY = 8
GETAD_COMPRESSED_POSTS = 200
SEED_IN_FLIGHT = 64
CATALOGS = ("/docs", "/kodeks", "/law", "/tech", "/snip", "/norma")
REGISTERS_PER_CAFE = 2
DEALERS = tuple(f"{name}{500 + k}" for k, name in enumerate(pgwf.DISTRIBUTORS))  # like "rogaikopita599"
BOUNDARY = "------------------------d74496d66958873e"  # curl's form: 24 dashes and 16 hex digits
DATA = ROOT / "tests" / "ingest_data"
REGISTER_SAMPLES = ("00123456790012.json", "065001234567890.json", "0000000000123456.json")  # АТОЛ, Mitsu, Штрих
SITE_LABEL = re.compile(rb'[{,]site="([^"]*)"')


def token_of(dealer: str) -> str:
    return f"tok-{dealer}-5f1c"


def key_of(dealer: str) -> str:
    return f"getad-{dealer}-77aa"


# -- the fleet ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KodeksSite:
    index: int
    dealer: str
    client: str  # the <client> of <client>.status
    site_id: str
    configured: bool  # in the config; else made by derive_sites


@dataclass(frozen=True)
class Cafe:
    index: int
    dealer: str
    site_id: str
    serials: tuple[str, ...]
    hostnames: tuple[str, ...]
    own_key: str | None  # the site's own getad key, else the distributor's is sent
    match: str  # serials, hostnames or key


def kodeks_sites(n: int) -> list[KodeksSite]:
    sites = []
    for i in range(n):
        dealer = DEALERS[i % len(DEALERS)]
        client = f"Клиент {i:04d}" if i % 8 == 5 else f"CLIENT{i:04d}"
        configured = i % 4 != 3
        site_id = f"kodeks-{i:04d}" if configured else site_id_from_client(client)
        sites.append(KodeksSite(i, dealer, client, site_id, configured))
    return sites


def register_serial(index: int) -> str:
    template = REGISTER_SAMPLES[index % len(REGISTER_SAMPLES)]
    width = len(template) - len(".json")  # АТОЛ 14 digits, Mitsu 15, Штрих 16
    return f"{9 * 10 ** (width - 1) + index:0{width}d}"


def cafes(registers: int) -> list[Cafe]:
    result = []
    for c in range(math.ceil(registers / REGISTERS_PER_CAFE)):
        dealer = DEALERS[c % len(DEALERS)]
        serials = tuple(register_serial(r) for r in range(c * REGISTERS_PER_CAFE,
                                                          min(registers, (c + 1) * REGISTERS_PER_CAFE)))
        hostnames = tuple(f"CAFE{c:04d}-KASSA-{k + 1}" for k in range(len(serials)))
        match = "key" if c % 10 == 0 else "hostnames" if c % 10 == 1 else "serials"
        result.append(Cafe(c, dealer, f"cafe-{c:04d}", serials, hostnames,
                           f"getad-own-{c:04d}-9e" if match == "key" else None, match))
    return result


def write_config(path: Path, fleet: list[KodeksSite], cafe_list: list[Cafe]) -> dict[str, str]:
    """The ingest config; returns the environment holding its secrets ({env: NAME} in the file)."""
    env: dict[str, str] = {}
    lines = ["storage: {path: ingest.db}", "distributors:"]
    for k, dealer in enumerate(DEALERS):
        name = pgwf.DISTRIBUTORS[k]
        env[f"BENCH_TOKEN_{k}"], env[f"BENCH_GETAD_{k}"] = token_of(dealer), key_of(dealer)
        lines += [f"  {dealer}:",
                  f"    token: {{env: BENCH_TOKEN_{k}}}",
                  f"    getad_api_key: {{env: BENCH_GETAD_{k}}}",
                  f"    labels: {{distributor: {name}, telegram_route: {name}}}",
                  "    timezone: Europe/Moscow",
                  "    derive_sites: true",
                  f"    max_derived_sites: {len(fleet)}"]
    lines.append("sites:")
    for site in fleet:
        if not site.configured:
            continue
        name = pgwf.DISTRIBUTORS[DEALERS.index(site.dealer)]
        lines += [f"  - id: {site.site_id}",
                  f"    distributor: {site.dealer}",
                  f"    labels: {{client: client-{site.index:04d}, telegram_route: {name}-kodeks}}",
                  f"    smartstatus: {{client: \"{site.client}\", "
                  f"server: \"http://10.{site.index // 250}.{site.index % 250}.5:8080\"}}"]
    for cafe in cafe_list:
        lines += [f"  - id: {cafe.site_id}",
                  f"    distributor: {cafe.dealer}",
                  f"    labels: {{client: cafe-chain-{cafe.index // 5:03d}}}"]
        if cafe.match == "key":
            env[f"BENCH_CAFE_KEY_{cafe.index}"] = cafe.own_key
            lines.append(f"    getad: {{api_key: {{env: BENCH_CAFE_KEY_{cafe.index}}}}}")
        elif cafe.match == "hostnames":
            lines.append(f"    getad: {{hostnames: [{', '.join(cafe.hostnames)}]}}")
        else:
            lines.append(f"    getad: {{serials: [{', '.join(json.dumps(s) for s in cafe.serials)}]}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return env


# -- what the tools send ----------------------------------------------------------------------------

def status_page(site: KodeksSite, now: float) -> bytes:
    """<client>.status as smartstatus.bat leaves it: the 2026 form has the server's date: line first."""
    catalogs = [Catalog(path) for path in CATALOGS]
    if site.index % 10 == 2:
        catalogs[2] = Catalog("/law", product_control_problem=True, statuses=["no required volume DB"])
    if site.index % 50 == 7:
        catalogs[4] = Catalog("/snip", main_page_problem=True)
    if site.index % 2:
        return metrics_text(Scenario(catalogs=catalogs), "Sysinfo metrics").encode("utf-8")
    date_line = f"date: {formatdate(now, usegmt=True)}\r\n"  # what `curl -i | find "date:"` kept
    return (date_line + metrics_text(Scenario(catalogs=catalogs), "Sysmon metrics")).encode("utf-8")


def upload_request(port: int, site: KodeksSite, now: float) -> bytes:
    """The whole HTTP request of `curl -H "upload: yes" -H "dealer: …" -Ffile=@<client>.status URL?token=…`."""
    file_name = f"{site.client}.status"
    # Windows curl writes the file name in the ANSI code page; the ingest reads part headers that are not UTF-8
    # as cp1251.
    encoded_name = file_name.encode("cp1251")
    body = (f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition: form-data; name="file"; filename="'
            + encoded_name + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + status_page(site, now) + f"\r\n--{BOUNDARY}--\r\n".encode())
    head = (f"POST /upload?token={token_of(site.dealer)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"User-Agent: curl/8.4.0\r\nAccept: */*\r\nupload: yes\r\ndealer: {site.dealer}\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n")
    return head.encode("latin-1") + body


def register_file(index: int, cafe: Cafe) -> bytes:
    """The register's JSON file as getad-service writes it (indented, Russian text as is)."""
    record = json.loads((DATA / REGISTER_SAMPLES[index % len(REGISTER_SAMPLES)]).read_text(encoding="utf-8-sig"))
    k = index - cafe.index * REGISTERS_PER_CAFE
    record.update({"serialNumber": register_serial(index), "fn_serial": f"{7281440500000000 + index}",
                   "RNM": f"{index:010d}036518", "hostname": cafe.hostnames[k],
                   "url_rms": f"https://cafe{cafe.index:04d}.iiko.it:443/resto", "dateTime_end": "2027-06-30",
                   "organizationName": f"ООО Кафе {cafe.index:04d}",
                   "uuid": f"6cb34107-cfb2-9ba1-b1ff-{index:012d}"})
    text = json.dumps(record, ensure_ascii=False, indent=4)
    return ("\ufeff" + text if index % 3 == 0 else text).encode("utf-8")  # some are written with a BOM


def post_request(port: int, index: int, cafe: Cafe) -> bytes:
    body = register_file(index, cafe)
    key = cafe.own_key or key_of(cafe.dealer)
    head = (f"POST /api/submit_json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: python-requests/2.31.0\r\n"
            f"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n"
            f"Content-Type: application/json\r\nX-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


# -- sending ------------------------------------------------------------------------------------------

@dataclass
class Upload:
    source: str  # smartstatus, getad, or push (to the Pushgateway)
    index: int
    started: float
    finished: float | None = None
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        return self.finished - self.started if self.ok else math.inf


async def send(port: int, request: bytes, source: str, index: int, timeout: float) -> Upload:
    """One request on a new connection; the ingest answers and closes (one request per connection)."""
    loop = asyncio.get_running_loop()
    record = Upload(source, index, loop.time())

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    try:
        answer = await asyncio.wait_for(exchange(), timeout)
        parts = answer.split(b" ", 2)
        record.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        body = answer.partition(b"\r\n\r\n")[2]
        accepted = b'"ok":true' in body if source == "smartstatus" else b'"status":"success"' in body
        if record.status != 200 or not accepted:
            record.error = f"HTTP {record.status}: {body[:120].decode('utf-8', 'replace')}"
    except asyncio.TimeoutError:
        record.error = f"no answer within {timeout:g} s"
    except OSError as err:
        record.error = f"{type(err).__name__}: {err}"
    record.finished = loop.time()
    return record


class Fleet:
    """Every site's and register's request, built once (the pages' date: lines stay within a day)."""

    def __init__(self, port: int, sites: list[KodeksSite], cafe_list: list[Cafe], registers: int):
        now = time.time()
        self.port = port
        self.sites, self.cafes, self.registers = sites, cafe_list, registers
        self.uploads = [upload_request(port, site, now) for site in sites]
        self.posts = [post_request(port, r, cafe_list[r // REGISTERS_PER_CAFE]) for r in range(registers)]

    def send(self, item: tuple[str, int], timeout: float) -> Awaitable[Upload]:
        source, index = item
        request = self.uploads[index] if source == "smartstatus" else self.posts[index]
        return send(self.port, request, source, index, timeout)

    def items(self) -> list[tuple[str, int]]:
        return [("smartstatus", i) for i in range(len(self.sites))] + [("getad", r) for r in range(self.registers)]


@dataclass
class Window:
    uploads: list[Upload]
    scrapes: list[dict]
    cpu_seconds: float
    wall_seconds: float
    client_cpu_seconds: float
    listen_overflows: int = 0


async def closed_loop(fleet: Fleet, service: Service, order: list[tuple[str, int]], concurrency: int,
                      seconds: float | None, timeout: float) -> Window:
    """`concurrency` clients, each sending its next upload when the last one is answered; for `seconds`,
    or (None) until every item of `order` has gone once."""
    loop = asyncio.get_running_loop()
    results: list[Upload] = []
    counter = iter(range(10 ** 9))
    end = None if seconds is None else loop.time() + seconds

    async def client() -> None:
        while True:
            k = next(counter)
            if (end is None and k >= len(order)) or (end is not None and loop.time() >= end):
                return
            results.append(await fleet.send(order[k % len(order)], timeout))

    cpu, client_cpu, started, overflows = service.cpu_seconds(), time.process_time(), loop.time(), listen_overflows()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Window(results, [], service.cpu_seconds() - cpu, loop.time() - started, time.process_time() - client_cpu,
                  listen_overflows() - overflows)


async def open_loop(events: list[tuple[float, Callable[[], Awaitable[Upload]]]], start: float, seconds: float,
                    cpu_of: Callable[[], float], scrape_port: int | None) -> Window:
    """Sends each event at its due time (loop time), whatever the answers; with `scrape_port`, scrapes it as
    Prometheus does every SCRAPE_EVERY from half an interval in, one at a time, from a thread of its own."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = []
    scrapes: list[dict] = []
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scrape")

    async def scraper() -> None:
        due = start + min(SCRAPE_EVERY, seconds) / 2
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            scrapes.append(await loop.run_in_executor(pool, timed_scrape, scrape_port, None))
            due += SCRAPE_EVERY

    try:
        await asyncio.sleep(max(0.0, start - loop.time()))
        cpu, client_cpu = cpu_of(), time.process_time()
        scraping = asyncio.create_task(scraper()) if scrape_port else None
        for due, make in events:
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(make()))
        await asyncio.sleep(max(0.0, start + seconds - loop.time()))
        uploads = list(await asyncio.gather(*tasks))  # the last answers, so they are counted
        if scraping:
            await scraping
        cpu, wall = cpu_of() - cpu, loop.time() - start
        client_cpu = time.process_time() - client_cpu
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return Window(uploads, scrapes, cpu, wall, client_cpu)


def real_schedule(start: float, sites: int, registers: int, seconds: float, scale: float = 1.0
                  ) -> list[tuple[float, tuple[str, int]]]:
    """(due, item) over `seconds`: every site once per 15 minutes and every register once per 8 hours, their
    offsets spread evenly over the interval (pushgateway_fleet.push_schedule); `scale` < 1 compresses both."""
    events = [(due, ("smartstatus", i)) for due, i in
              pgwf.push_schedule(start, sites, SMARTSTATUS_INTERVAL * scale, seconds)]
    events += [(due, ("getad", r)) for due, r in pgwf.push_schedule(start, registers, GETAD_INTERVAL * scale, seconds)]
    return sorted(events)


def timed_scrape(port: int, cpu_of: Callable[[], float] | None) -> dict:
    """One scrape as Prometheus sends it (gzip); with `cpu_of`, the server's CPU for it too."""
    before = cpu_of() if cpu_of else 0.0
    try:
        done = scrape(port, True)
    except (OSError, http.client.HTTPException, BenchError) as err:
        return {"seconds": None, "error": f"{type(err).__name__}: {err}"}
    figures = {"seconds": done.seconds, "wire_bytes": done.wire_bytes, "text_bytes": len(done.text),
               "series": series_count(done.text), "error": None}
    if cpu_of:
        figures["cpu_seconds"] = cpu_of() - before
    return figures


def series_count(text: bytes) -> int:
    lines = text.count(b"\n") + (0 if text.endswith(b"\n") else 1)
    return lines - text.count(b"\n#") - text.startswith(b"#")


def measure_scrapes(port: int, cpu_of: Callable[[], float], count: int) -> dict:
    scrapes = []
    for _ in range(count):
        scrapes.append(timed_scrape(port, cpu_of))
        time.sleep(0.2)  # one at a time, as Prometheus does
    good = [s for s in scrapes if s["error"] is None]
    if not good:
        raise BenchError(f"no scrape of port {port} succeeded: {scrapes[0]['error']}")
    times = [s["seconds"] for s in good]
    return {"count": count, "failed": count - len(good), "p50_s": percentile(times, 0.5), "max_s": max(times),
            "cpu_per_scrape_s": sum(s["cpu_seconds"] for s in good) / len(good),
            "wire_bytes": good[-1]["wire_bytes"], "text_bytes": good[-1]["text_bytes"], "series": good[-1]["series"]}


# -- figures ------------------------------------------------------------------------------------------

def latency_figures(uploads: list[Upload]) -> dict:
    latencies = [u.latency for u in uploads]

    def ms(value: float) -> float | None:
        return None if math.isinf(value) else value * 1000

    errors: dict[str, int] = {}
    for upload in uploads:
        if upload.error:
            errors[upload.error] = errors.get(upload.error, 0) + 1
    return {"sent": len(uploads), "ok": sum(1 for u in uploads if u.ok), "lost": sum(1 for u in uploads if not u.ok),
            "p50_ms": ms(percentile(latencies, 0.5)) if latencies else None,
            "p99_ms": ms(percentile(latencies, 0.99)) if latencies else None,
            "max_ms": ms(max(latencies)) if latencies else None, "errors": dict(list(errors.items())[:5])}


def window_figures(window: Window) -> dict:
    by_source = {source: latency_figures([u for u in window.uploads if u.source == source])
                 for source in sorted({u.source for u in window.uploads})}
    ok = sum(1 for u in window.uploads if u.ok)
    return {"uploads": len(window.uploads), "ok": ok, "lost": len(window.uploads) - ok,
            "per_s": ok / window.wall_seconds if window.wall_seconds else 0.0,
            "wall_s": window.wall_seconds, "cpu_s": window.cpu_seconds,
            "cpu_ms_per_upload": 1000 * window.cpu_seconds / ok if ok else None,
            "client_cpu_s": window.client_cpu_seconds, "listen_overflows": window.listen_overflows,
            "by_source": by_source,
            "all": latency_figures(window.uploads)}


def scrapes_in_window(window: Window) -> dict:
    times = [s["seconds"] for s in window.scrapes if s["error"] is None]
    return {"count": len(window.scrapes), "failed": sum(1 for s in window.scrapes if s["error"]),
            "p50_s": percentile(times, 0.5) if times else None, "max_s": max(times) if times else None}


def listen_overflows() -> int:
    """TcpExt ListenOverflows: connections the kernel could not queue for accept() (the SYN is dropped and the
    client sends it again after 1 s). Counted for the whole machine; on loopback here, mostly this script's."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return 0


def file_mib(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 2 ** 20


# -- what /metrics must hold ----------------------------------------------------------------------------

def metrics_problems(text: bytes, fleet: Fleet, sent: dict[str, int]) -> list[str]:
    """Every site's series: its catalogs or registers, its check, and its last upload; the counters."""
    per_family: dict[bytes, dict[str, int]] = {}
    for line in text.split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        name = line[:line.find(b"{")] if b"{" in line else line.split(b" ", 1)[0]
        match = SITE_LABEL.search(line)
        if match:
            sites = per_family.setdefault(name, {})
            key = match.group(1).decode()
            sites[key] = sites.get(key, 0) + 1
    problems = []

    def expect(family: bytes, site_ids: list[str], count: int, what: str) -> None:
        found = per_family.get(family, {})
        missing = [s for s in site_ids if found.get(s, 0) < count]
        if missing:
            problems.append(f"{len(missing)} of {len(site_ids)} sites lack {what} ({family.decode()}), "
                            f"first {missing[0]}")

    kodeks_ids = [s.site_id for s in fleet.sites]
    cafe_ids = [c.site_id for c in fleet.cafes]
    expect(b"sitewatch_kodeks_main_page_ok", kodeks_ids, len(CATALOGS), f"{len(CATALOGS)} catalogs")
    expect(b"sitewatch_kodeks_product_control_ok", kodeks_ids, len(CATALOGS), f"{len(CATALOGS)} catalogs")
    expect(b"sitewatch_check_up", kodeks_ids + cafe_ids, 1, "the check")
    expect(b"sitewatch_ingest_last_upload_timestamp_seconds", kodeks_ids + cafe_ids, 1, "the last upload")
    registers = {c.site_id: len(c.serials) for c in fleet.cafes}
    kkt = per_family.get(b"sitewatch_kkt_up", {})
    short = [site for site, count in registers.items() if kkt.get(site, 0) < count]
    if short:
        problems.append(f"{len(short)} cafés lack a register's sitewatch_kkt_up, first {short[0]}")
    extra = set(per_family.get(b"sitewatch_check_up", {})) - set(kodeks_ids) - set(cafe_ids)
    if extra:
        problems.append(f"{len(extra)} sites nobody uploaded for, first {sorted(extra)[0]}")
    for source, count in sent.items():
        pattern = rb'sitewatch_ingest_uploads_total\{source="' + source.encode() + rb'"\} (\S+)'
        match = re.search(pattern, text)
        if match is None or float(match.group(1)) != count:
            problems.append(f"uploads_total{{source={source}}} is {match and match.group(1).decode()}, "
                            f"{count} were accepted")
    refused = re.findall(rb"^sitewatch_ingest_refused_total\{.*$", text, re.MULTILINE)
    if refused:
        problems.append(f"refusals: {b'; '.join(refused[:3]).decode()}")
    return problems


# -- the phases ---------------------------------------------------------------------------------------

def run_ingest(workdir: Path, arguments: argparse.Namespace) -> tuple[dict, bytes, Fleet]:
    sites = kodeks_sites(arguments.sites)
    cafe_list = cafes(arguments.registers)
    config = workdir / "ingest.yml"
    secrets = write_config(config, sites, cafe_list)
    port = free_loopback_port()
    argv = [sys.executable, "-m", "ingest.cli", "--config", str(config), "--web.listen-address", f"127.0.0.1:{port}"]
    result: dict = {"sites": len(sites), "configured": sum(1 for s in sites if s.configured),
                    "derived": sum(1 for s in sites if not s.configured), "cafes": len(cafe_list),
                    "registers": arguments.registers}
    rng = random.Random(7)
    started = time.monotonic()
    with Service("sitewatch-ingest", argv, port, workdir / "ingest.log", env={**os.environ, **secrets}) as ingest:
        result["start_s"] = time.monotonic() - started
        fleet = Fleet(port, sites, cafe_list, arguments.registers)
        result["upload_bytes"] = sum(map(len, fleet.uploads)) / max(1, len(fleet.uploads))
        result["post_bytes"] = sum(map(len, fleet.posts)) / max(1, len(fleet.posts))
        order = fleet.items()
        rng.shuffle(order)

        # 1. Throughput.
        print(f"ingest: every site and register once ({len(order):,} uploads, {FILL_CONCURRENCY} clients) ...",
              flush=True)
        fill = asyncio.run(closed_loop(fleet, ingest, order, FILL_CONCURRENCY, None, arguments.timeout))
        result["fill"] = window_figures(fill)
        windows = [fill]
        result["steps"] = []
        for concurrency in arguments.concurrency:
            print(f"ingest: {concurrency} clients for {arguments.step_seconds:g} s ...", flush=True)
            window = asyncio.run(closed_loop(fleet, ingest, order, concurrency, arguments.step_seconds,
                                             arguments.timeout))
            windows.append(window)
            result["steps"].append({"concurrency": concurrency, **window_figures(window)})

        # 2. CPU.
        print(f"ingest: idle {IDLE_SECONDS:g} s, {SCRAPES} scrapes, the compressed schedule ...", flush=True)
        before, began = ingest.cpu_seconds(), time.monotonic()
        time.sleep(IDLE_SECONDS)
        result["idle"] = {"cpu_s": ingest.cpu_seconds() - before, "wall_s": time.monotonic() - began}
        result["scrape"] = measure_scrapes(port, ingest.cpu_seconds, SCRAPES)
        plain = scrape(port, False)
        result["scrape"]["plain_s"] = plain.seconds

        def run_window(events: list[tuple[float, tuple[str, int]]], seconds: float, start: float,
                       scraping: bool) -> Window:
            made = [(due, (lambda item=item: fleet.send(item, arguments.timeout))) for due, item in events]
            return asyncio.run(open_loop(made, start, seconds, ingest.cpu_seconds, port if scraping else None))

        seconds = arguments.compressed_seconds
        start = time.monotonic() + 0.3
        compressed = [(due, ("smartstatus", i)) for due, i in pgwf.push_schedule(start, len(sites), seconds, seconds)]
        window = run_window(compressed, seconds, start, False)
        windows.append(window)
        result["compressed_smartstatus"] = window_figures(window)
        getad_seconds = seconds * min(GETAD_COMPRESSED_POSTS, arguments.registers) / max(1, len(sites))
        start = time.monotonic() + 0.3
        posts = [(due, ("getad", r)) for due, r in
                 pgwf.push_schedule(start, min(GETAD_COMPRESSED_POSTS, arguments.registers), getad_seconds,
                                    getad_seconds)]
        window = run_window(posts, getad_seconds, start, False)
        windows.append(window)
        result["compressed_getad"] = window_figures(window)

        print(f"ingest: {arguments.seconds:g} s at the real rates, scraped every {SCRAPE_EVERY:g} s ...", flush=True)
        start = time.monotonic() + 0.3
        events = real_schedule(start, len(sites), arguments.registers, arguments.seconds)
        window = run_window(events, arguments.seconds, start, True)
        windows.append(window)
        result["real"] = window_figures(window)
        result["real"]["scrapes"] = scrapes_in_window(window)

        text = scrape(port, False).text
        sent = {source: sum(1 for w in windows for u in w.uploads if u.source == source and u.ok)
                for source in ("smartstatus", "getad")}
        result["lost"] = sum(1 for w in windows for u in w.uploads if not u.ok)
        result["accepted"] = sent
        result["metrics_problems"] = metrics_problems(text, fleet, sent)
        result["rss_mib"] = ingest.status_mib("VmRSS")
        result["peak_rss_mib"] = ingest.status_mib("VmHWM")
        db = workdir / "ingest.db"
        result["sqlite_mib"] = file_mib(db)
        result["sqlite_wal_mib"] = file_mib(Path(f"{db}-wal"), Path(f"{db}-shm"))
        result["log_errors"] = [line for line in ingest.log_text().splitlines()
                                if "level=ERROR" in line or "Traceback" in line][:5]
    result["cost"] = cost_figures(result, arguments)
    return result, text, fleet


def cost_figures(result: dict, arguments: argparse.Namespace) -> dict:
    """CPU per upload, per post and per scrape, and what --sites and --registers cost per 15 minutes."""
    idle = result["idle"]
    idle_rate = idle["cpu_s"] / idle["wall_s"]
    sm, gd = result["compressed_smartstatus"], result["compressed_getad"]
    per_upload = max(0.0, sm["cpu_s"] - idle_rate * sm["wall_s"]) / max(1, sm["ok"])
    per_post = max(0.0, gd["cpu_s"] - idle_rate * gd["wall_s"]) / max(1, gd["ok"])
    per_scrape = result["scrape"]["cpu_per_scrape_s"]
    period = SMARTSTATUS_INTERVAL
    parts = {"idle": idle_rate * period, "uploads": arguments.sites * per_upload,
             "posts": arguments.registers * period / GETAD_INTERVAL * per_post,
             "scrapes": period / SCRAPE_EVERY * per_scrape}
    real = result["real"]
    scrapes = real["scrapes"]["count"]
    real_uploads = real["ok"]
    real_net = max(0.0, real["cpu_s"] - scrapes * per_scrape - idle_rate * real["wall_s"])
    return {"idle_percent": 100 * idle_rate, "cpu_ms_per_upload": 1000 * per_upload,
            "cpu_ms_per_post": 1000 * per_post, "cpu_ms_per_scrape": 1000 * per_scrape,
            "per_15_min_s": parts, "scaled_percent": 100 * sum(parts.values()) / period,
            "direct_percent": 100 * real["cpu_s"] / real["wall_s"],
            "direct_cpu_ms_per_upload": 1000 * real_net / real_uploads if real_uploads else None}


def run_pushgateway(workdir: Path, text: bytes, fleet: Fleet, arguments: argparse.Namespace) -> dict:
    binary = find_program(pgwf.PGW_CANDIDATES, "ingest_uploads: prometheus-pushgateway is missing: apt-get install "
                                               "prometheus-pushgateway (or --skip-pushgateway)")
    # The check's series per site as the pusher pushes them: the ingest's own families stay out.
    kept, skipping = [], False
    for line in text.decode("utf-8").splitlines():
        if line.startswith("# HELP "):
            skipping = line.split(" ", 3)[2].startswith("sitewatch_ingest_")
        if not skipping:
            kept.append(line)
    groups = groups_by_site("\n".join(kept) + "\n")
    ids = list(groups)
    sites = [pgwf.Site(id=site_id, client="", distributor="", telegram_route="", serial="") for site_id in ids]
    bodies = [pgwf.gzip_body(groups[site_id].decode("utf-8")) for site_id in ids]
    position = {site_id: k for k, site_id in enumerate(ids)}
    result: dict = {"version": first_line([binary, "--version"]), "groups": len(groups),
                    "series_pushed": sum(series_count(body) for body in groups.values()),
                    "push_bytes": sum(map(len, bodies)) / max(1, len(bodies))}
    seed = workdir / "seed.data"
    print(f"pushgateway: seeding {len(groups):,} groups (without the consistency check) ...", flush=True)
    with pgwf.Pushgateway(binary, workdir, seed, ("--push.disable-consistency-check",)) as seeder:
        pushes = asyncio.run(pgwf.push_all(seeder.port, sites, bodies, in_flight=SEED_IN_FLIGHT, timeout=60))
        failed = [p for p in pushes if not p.accepted]
        if failed:
            raise BenchError(f"seeding the Pushgateway: {len(failed)} pushes failed, first: {failed[0].error}")
        seeder.stop(grace=120)  # writes the persistence file
    measured = workdir / "measured.data"
    shutil.copyfile(seed, measured)
    with pgwf.Pushgateway(binary, workdir, measured) as pgw:
        result["rss_idle_mib"] = pgw.status_mib("VmRSS")
        result["scrape"] = measure_scrapes(pgw.port, pgw.cpu_seconds, 3)
        expected = result["series_pushed"] + 2 * len(groups)
        if result["scrape"]["series"] < expected:
            raise BenchError(f"the Pushgateway serves {result['scrape']['series']} series, expected at least "
                             f"{expected}")
        print(f"pushgateway: {arguments.seconds:g} s at the same schedule, scraped every {SCRAPE_EVERY:g} s ...",
              flush=True)
        site_of = {("smartstatus", s.index): s.site_id for s in fleet.sites}
        site_of.update({("getad", r): fleet.cafes[r // REGISTERS_PER_CAFE].site_id for r in range(fleet.registers)})
        start = time.monotonic() + 0.3
        schedule = real_schedule(start, len(fleet.sites), fleet.registers, arguments.seconds)

        def make(item: tuple[str, int]) -> Callable[[], Awaitable[Upload]]:
            k = position[site_of[item]]

            async def push() -> Upload:
                done = await pgwf.push_once(pgw.port, sites[k], k, bodies[k], 0.0, arguments.timeout)
                return Upload("push", k, done.started, done.finished, done.status, done.error)
            return push

        window = asyncio.run(open_loop([(due, make(item)) for due, item in schedule], start, arguments.seconds,
                                       pgw.cpu_seconds, pgw.port))
        result["real"] = window_figures(window)
        result["real"]["scrapes"] = scrapes_in_window(window)
        per_scrape = result["scrape"]["cpu_per_scrape_s"]
        pushes_ok = result["real"]["ok"]
        result["cpu_ms_per_push"] = (1000 * max(0.0, window.cpu_seconds - len(window.scrapes) * per_scrape) / pushes_ok
                                     if pushes_ok else None)
        result["direct_percent"] = 100 * window.cpu_seconds / window.wall_seconds
        result["rss_mib"] = pgw.status_mib("VmRSS")
        result["peak_rss_mib"] = pgw.status_mib("VmHWM")
        # What a scrape every 15 s and --sites pushes per 15 minutes cost, as for the ingest.
        result["scaled_percent"] = 100 * ((result["cpu_ms_per_push"] or 0) / 1000 * (
            len(fleet.sites) + fleet.registers * SMARTSTATUS_INTERVAL / GETAD_INTERVAL)
            + SMARTSTATUS_INTERVAL / SCRAPE_EVERY * per_scrape) / SMARTSTATUS_INTERVAL
    result["persistence_mib"] = file_mib(seed)
    return result


# -- reporting ----------------------------------------------------------------------------------------

def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "load_average_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def fmt_ms(value: float | None) -> str:
    return "lost" if value is None else f"{value:,.1f}"


def print_report(report: dict, arguments: argparse.Namespace) -> None:
    ingest, pgw = report["ingest"], report.get("pushgateway")
    cost = ingest["cost"]
    print()
    print(f"== fleet: {ingest['sites']:,} Кодекс sites ({ingest['configured']:,} configured, {ingest['derived']:,} "
          f"made by derive_sites), {ingest['registers']:,} registers in {ingest['cafes']:,} cafés; upload "
          f"{ingest['upload_bytes']:,.0f} B, post {ingest['post_bytes']:,.0f} B; ingest ready in "
          f"{ingest['start_s']:.1f} s ==")
    print("\n1. uploads per second (closed loop; latency from connect to the answer's last byte)")
    print(f"{'clients':>8} {'uploads':>8} {'lost':>5} {'per s':>7} {'smartstatus p50/p99 ms':>23} "
          f"{'getad p50/p99 ms':>17} {'CPU ms/upload':>14} {'client CPU s':>13} {'SYNs dropped':>13}")
    rows = [("fill " + str(FILL_CONCURRENCY), ingest["fill"])] + [(str(s["concurrency"]), s) for s in ingest["steps"]]
    for label, row in rows:
        sm = row["by_source"].get("smartstatus", {})
        gd = row["by_source"].get("getad", {})
        print(f"{label:>8} {row['uploads']:>8,} {row['lost']:>5} {row['per_s']:>7.1f} "
              f"{fmt_ms(sm.get('p50_ms')) + ' / ' + fmt_ms(sm.get('p99_ms')):>23} "
              f"{fmt_ms(gd.get('p50_ms')) + ' / ' + fmt_ms(gd.get('p99_ms')):>17} "
              f"{row['cpu_ms_per_upload'] or 0:>14.2f} {row['client_cpu_s']:>13.1f} {row['listen_overflows']:>13,}")
    sm, gd = ingest["compressed_smartstatus"], ingest["compressed_getad"]
    print(f"\n2. CPU of the ingest (idle {cost['idle_percent']:.2f} % of a core)")
    print(f"   compressed: {sm['ok']:,} uploads in {sm['wall_s']:.1f} s ({sm['per_s']:.0f}/s): "
          f"{cost['cpu_ms_per_upload']:.2f} ms CPU each, p50/p99 {fmt_ms(sm['all']['p50_ms'])} / "
          f"{fmt_ms(sm['all']['p99_ms'])} ms; {gd['ok']:,} getad posts in {gd['wall_s']:.1f} s: "
          f"{cost['cpu_ms_per_post']:.2f} ms each")
    parts = cost["per_15_min_s"]
    print(f"   per 15 minutes: {ingest['sites']:,} uploads {parts['uploads']:.2f} s + "
          f"{ingest['registers'] * SMARTSTATUS_INTERVAL / GETAD_INTERVAL:.0f} getad posts {parts['posts']:.2f} s + "
          f"{SMARTSTATUS_INTERVAL / SCRAPE_EVERY:.0f} scrapes {parts['scrapes']:.2f} s + idle {parts['idle']:.2f} s "
          f"= {sum(parts.values()):.2f} s of 900 s = {cost['scaled_percent']:.2f} % of a core")
    real = ingest["real"]
    print(f"   direct: {real['ok']:,} uploads and posts in {real['wall_s']:.1f} s at the real rates, "
          f"{real['scrapes']['count']} scrapes: {real['cpu_s']:.2f} s CPU = {cost['direct_percent']:.2f} % of a core"
          + (f" ({cost['direct_cpu_ms_per_upload']:.2f} ms per upload net of scrapes and idle)"
             if cost["direct_cpu_ms_per_upload"] is not None else ""))

    print("\n3. side by side, the same fleet and schedule for --seconds, a scrape every 15 s")
    columns = [("sitewatch-ingest", ingest)] + ([(f"Pushgateway ({pgw['groups']:,} groups)", pgw)] if pgw else [])
    width = 34

    def row(title: str, values: list[str]) -> None:
        print(f"{title:<34}" + "".join(f"  {v[:width - 2]:>{width - 2}}" for v in values))

    row("", [name for name, _ in columns])
    row("uploads / pushes, lost", [f"{c['real']['ok']:,}, {c['real']['lost']}" for _, c in columns])
    row("latency p50 / p99", [f"{fmt_ms(c['real']['all']['p50_ms'])} / {fmt_ms(c['real']['all']['p99_ms'])} ms"
                              for _, c in columns])
    row("CPU, % of one core (direct)", [f"{cost['direct_percent']:.2f} %"]
        + ([f"{pgw['direct_percent']:.2f} %"] if pgw else []))
    row("CPU per upload / push", [f"{cost['cpu_ms_per_upload']:.2f} ms"]
        + ([f"{pgw['cpu_ms_per_push'] or 0:.1f} ms"] if pgw else []))
    row("CPU per scrape", [f"{c['scrape']['cpu_per_scrape_s'] * 1000:.1f} ms" for _, c in columns])
    row("scrape p50 (idle) / in the window", [f"{c['scrape']['p50_s']:.3f} / {c['real']['scrapes']['p50_s'] or 0:.3f} s"
                                              for _, c in columns])
    row("/metrics text, gzip, series", [f"{c['scrape']['text_bytes'] / 2**20:.2f} MiB, "
                                        f"{c['scrape']['wire_bytes'] / 1024:.0f} KiB, {c['scrape']['series']:,}"
                                        for _, c in columns])
    row("RSS at the end (peak)", [f"{c['rss_mib']:.0f} MiB ({c['peak_rss_mib']:.0f})" for _, c in columns])
    row("on disk", [f"SQLite {ingest['sqlite_mib']:.2f} MiB + wal {ingest['sqlite_wal_mib']:.2f}"]
        + ([f"persistence {pgw['persistence_mib']:.2f} MiB"] if pgw else []))
    row("scaled: per 15 min, % of a core", [f"{cost['scaled_percent']:.2f} %"]
        + ([f"{pgw['scaled_percent']:.2f} %"] if pgw else []))
    if pgw:
        print(f"Pushgateway: {pgw['version']}, defaults (consistency check on); {pgw['series_pushed']:,} series "
              f"pushed in {pgw['groups']:,} groups, {pgw['push_bytes']:,.0f} B gzip per push")
    problems = ingest["metrics_problems"]
    if problems:
        print("/metrics problems:\n  " + "\n  ".join(problems))
    if ingest["log_errors"]:
        print("errors in the ingest's log:\n  " + "\n  ".join(ingest["log_errors"]))

    print()
    label = f"{ingest['sites']:,} sites every 15 min + scrapes every 15 s under {TARGET_PERCENT:g} % of a core"
    print(f"target: {label}, scaled: {cost['scaled_percent']:.2f} % {verdict(cost['scaled_percent'] < TARGET_PERCENT)}")
    print(f"target: {label}, direct: {cost['direct_percent']:.2f} % {verdict(cost['direct_percent'] < TARGET_PERCENT)}")
    accepted = sum(ingest["accepted"].values())
    print(f"target: no upload refused or lost: {accepted:,} accepted, {ingest['lost']} lost "
          f"{verdict(ingest['lost'] == 0)}")
    print(f"target: /metrics holds every site's series: "
          f"{'yes' if not problems else f'{len(problems)} problem(s)'} {verdict(not problems)}")


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 1 or v > 256 for v in values):
        raise argparse.ArgumentTypeError("each from 1 to 256")
    return values


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure sitewatch-ingest taking a fleet's smartstatus uploads "
                                                 "and getad posts (uploads/s, CPU per 15 minutes), beside a "
                                                 "Pushgateway holding the same series.")
    parser.add_argument("--sites", type=at_least_one, default=1000, help="Кодекс sites (default 1000)")
    parser.add_argument("--registers", type=int, default=1000, help="getad registers, two per café (default 1000)")
    parser.add_argument("--seconds", type=positive, default=60.0,
                        help="the window at the real rates, for the ingest and the Pushgateway each (default 60)")
    parser.add_argument("--step-seconds", type=positive, default=10.0,
                        help="each closed-loop step of the throughput phase (default 10)")
    parser.add_argument("--concurrency", type=parse_concurrency, default=[1, 4, 16],
                        help="clients of the closed-loop steps, comma-separated (default 1,4,16)")
    parser.add_argument("--compressed-seconds", type=positive, default=20.0,
                        help="the window every site uploads once in, for the CPU per upload (default 20)")
    parser.add_argument("--timeout", type=positive, default=10.0,
                        help="seconds an upload waits for its answer before it counts as lost (default 10)")
    parser.add_argument("--skip-pushgateway", action="store_true", help="measure the ingest alone")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    arguments = parser.parse_args()
    if arguments.registers < 0:
        parser.error("--registers cannot be negative")
    return arguments


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    raise_file_limit(4096)
    report: dict = {"machine": machine(), "settings": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(arguments).items()}}
    m = report["machine"]
    load = m["load_average_at_start"]
    print(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}, "
          f"{m['date']}; load at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-uploads-", dir=os.environ.get("BENCH_TMPDIR")) as tmp:
            report["ingest"], text, fleet = run_ingest(Path(tmp), arguments)
            if not arguments.skip_pushgateway:
                report["pushgateway"] = run_pushgateway(Path(tmp), text, fleet, arguments)
    except (BenchError, pgwf.BenchError) as err:
        sys.exit(f"ingest_uploads: {err}")
    except KeyboardInterrupt:
        print("\ningest_uploads: interrupted", file=sys.stderr)
        sys.exit(130)
    report["runtime_s"] = time.monotonic() - started
    print_report(report, arguments)
    print(f"\ntotal {report['runtime_s']:.0f} s; load at the end {os.getloadavg()[0]:.2f}")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
        print(f"figures written to {arguments.json}")


if __name__ == "__main__":
    main()
