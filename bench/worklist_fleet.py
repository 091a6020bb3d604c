"""The morning worklist for a fleet: how long it takes to make, what it costs, and what a dispatcher gets.

The fleets: --sites (1,000 and 5,000), each site with a PC (a ping check), --registers (3) fiscal
registers (a Mitsu, an ATOL and a Shtrih-M, each read by a kkt check of its own) and, on every tenth site,
a Кодекс server with two catalogs; the smaller fleet is the first sites of the bigger one. A day and a
half of their series, a sample every --step (900) seconds, is written as OpenMetrics and backfilled into
Debian's Prometheus with `promtool tsdb create-blocks-from openmetrics`, as tests/test_worklist.py does.
The series are those the worklist and the Grafana board read, labelled as a site's pushed series are (job,
site, client, distributor, check, type, kkt...), not the rest of what a site exports. The problems, drawn
with a fixed seed, in realistic shares:

  ФН                3 % of registers expire within 30 days (a few expired already); the rest in 1-18 months
  OFD backlog       1 % of registers have documents waiting 1.5-25 days; 2 % more, a few minutes (no work)
  silent sites      1 % of sites stopped reporting 26-60 hours ago (what they last said stays as it was)
  checks down       2 % of checks down for 25-60 hours (at most one a site), 1 % more for 1-6 hours (no work)
  licences          1 % of ATOL licences and 5 % of Кодекс registration files end within 30 days
  catalogs          3 % of Кодекс servers have a catalog whose main page is built with an error

Each fleet's items are counted as planted, with the worklist's rules (one cause, one line), and the run
fails when `collect` finds another number of any kind: a fast list that is wrong would be no figure.

The worklist is made in a process of its own, as the receiver makes it, whose peak RSS (VmHWM) is the
figure: `collect` with the project's receiver config (alertmanager/receiver.yml, its `worklist:`
section) against that Prometheus, at the last sample's time, --repeats (3) times (the first run is
reported on its own, the median of the others), and each of its questions (`alertmanager.worklist.queries`)
on its own; `RouteFinder.from_yaml` with the project's
alertmanager/alertmanager.yml and `for_routes`; `render` for each route that gets a list. For the
Telegram side nothing is sent: the messages of each chat are paced with the receiver's own RateLimiter
on a simulated clock (Telegram's limits as the receiver keeps them: 20 a minute per group, of which a
list may use 18, one a second per chat), so the time until a chat has read its whole list is computed.
The duty and kkt routes of receiver.yml post to one group (kkt is a topic of it) and share its limit.

What a dispatcher would use instead is the Grafana board «Что сделать сегодня»
(grafana/dashboards/today.json): each of its panel queries is sent to the same Prometheus's
/api/v1/query at the same moment, as Grafana sends them with «All» chosen in its filters ($distributor
and $client as ".*"), one after the other (the median of --repeats), and the whole board as a browser
opens it (every query at once); with the rows each returns and the CPU Prometheus spends per board.

Everything runs on 127.0.0.1; Prometheus and promtool are stopped by their pids, also on errors, Ctrl-C
and SIGTERM. With the defaults the run takes about 1.5 minutes on 2 CPUs, most of it backfilling, and
promtool needs about 4.3 GiB of memory for the 5,000 sites' 3.3 GiB of text.

    .venv/bin/python bench/worklist_fleet.py [--sites 1000 5000] [--registers 3] [--step 900]
                                             [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the receiver lives in the repo

import requests  # noqa: E402
from benchkit import (BenchError, Service, at_least_one, find_program, first_line, free_loopback_port,  # noqa: E402
                      raise_system_exit)

from alertmanager import maintenance  # noqa: E402
from alertmanager.config import load_receiver_config  # noqa: E402
from alertmanager.outbox import Chat  # noqa: E402
from alertmanager.prometheus_query import instant_query  # noqa: E402
from alertmanager.ratelimit import RateLimiter  # noqa: E402
from alertmanager.telegram_html import MESSAGE_LIMIT, message_length  # noqa: E402
from alertmanager.worklist import RouteFinder, collect, for_routes, queries  # noqa: E402
from alertmanager.worklist_text import render  # noqa: E402

DEFAULT_SITES = (1000, 5000)
DEFAULT_REGISTERS = 3
DEFAULT_STEP = 900
DEFAULT_REPEATS = 3
MAX_SITES = 10000  # promtool holds the whole file in memory: about 0.9 GiB per 1,000 sites
HOUR, DAY = 3600, 86400
HISTORY = 36 * HOUR  # a day and a half, so `offset 1d` and the board's `[1d]` see a day before now
SEED = 20261204
ZONE = ZoneInfo("Europe/Moscow")  # where the registers' ФН and licence dates fall at midnight
TITLE = "Что сделать сегодня"  # as the morning list is titled
RECEIVER_CONFIG = ROOT / "alertmanager" / "receiver.yml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
BOARD = ROOT / "grafana" / "dashboards" / "today.json"
# A promtool block range longer than the history, so the whole of it is one block (promtool parses the
# whole file once per block) and Prometheus has nothing to compact while it is measured.
BLOCK_DURATION = "162h"
BACKFILL_TIMEOUT = 600.0

# The fleet: labels, and who the sites belong to. Alertmanager's tree sends pos-service's and kodeks-spb's
# alerts to their own chats as well as ours.
DISTRIBUTORS = ("north", "pos-service", "south", "kodeks-spb", "east", "west", "volga", "ural")
SITES_PER_CLIENT = 5
KODEKS_EVERY = 10  # a Кодекс server on every tenth site
CATALOGS = ("/docs", "/docs2")
REGISTER_MODELS = (  # vendor, model, serial prefix
    ("mitsu", "MITSU-1-F 001", "0650012"),
    ("atol", "АТОЛ 30Ф", "0010610"),
    ("shtrih", "ШТРИХ-М-01Ф", "0004970"),
)
ATOL_UNLIMITED = 2147472847  # ATOL's "unlimited" licence: 2038-01-19, which the worklist ignores

# The problems' shares (see the module's docstring).
FN_SOON = 0.03
OFD_BACKLOG = 0.01
DOCUMENTS_ON_THEIR_WAY = 0.02
SILENT = 0.01
DOWN_LONG = 0.02
DOWN_BRIEFLY = 0.01
KKT_LICENCE_SOON = 0.01
KODEKS_LICENCE_SOON = 0.05
CATALOG_ERROR = 0.03
REASONS = {
    "ping": ("timeout", "unreachable"),
    "kkt": ("port_busy", "timeout", "protocol", "not_found"),
    "kodeks": ("timeout", "refused", "status"),
}

# What Grafana puts in place of the board's variables: «All» of a multi-value filter is ".*".
RANGE_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
ALL_VALUES = re.compile(r'=~"\$\{?\w+\}?"')


# -- the fleet's day and a half -------------------------------------------------------------------------

FRESH = "fresh"  # a value that is the sample's own time: a site that reports, a check that passes


class History:
    """Writes series as OpenMetrics lines: one sample every `step` seconds from `now - HISTORY` to `now`."""

    def __init__(self, now: int, step: int):
        self.now = now
        self.times = range(now - HISTORY, now + 1, step)
        self._stamps = [f" {t}\n" for t in self.times]
        self._fresh = [str(t) for t in self.times]
        self.series = 0
        self.samples = 0

    def lines(self, name: str, labels: str, value) -> str:
        """`value`: a number (the same at every sample), FRESH, or a function of the time (None: no sample)."""
        prefix = f"{name}{{{labels}}} "
        self.series += 1
        if value is FRESH:
            self.samples += len(self.times)
            return "".join([prefix + v + s for v, s in zip(self._fresh, self._stamps)])
        if not callable(value):
            text = prefix + _number(value)
            self.samples += len(self.times)
            return "".join([text + s for s in self._stamps])
        parts = []
        for moment, stamp in zip(self.times, self._stamps):
            sample = value(moment)
            if sample is not None:
                parts.append(prefix + _number(sample) + stamp)
        self.samples += len(parts)
        return "".join(parts)

    def midnight_in(self, days: int) -> int:
        """00:00 of the date `days` after now's, in the sites' zone: how ФН and licence ends are exported."""
        day = datetime.fromtimestamp(self.now, ZONE).date() + timedelta(days=days)
        return int(datetime(day.year, day.month, day.day, tzinfo=ZONE).timestamp())


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.17g}"


def site_lines(i: int, registers: int, rng: random.Random, h: History, planted: Counter) -> str:
    """Site i's series, and in `planted` the worklist items they hold, by kind."""
    now = h.now
    site = f"shop-{i:05d}"
    base = (f'job="sitewatch",site="{site}",client="client-{i // SITES_PER_CLIENT:04d}",'
            f'distributor="{DISTRIBUTORS[i % len(DISTRIBUTORS)]}"')
    silent_since = int(now - rng.uniform(26, 60) * HOUR) if rng.random() < SILENT else None
    said_at = silent_since if silent_since is not None else now  # what the site last told is from then
    out: list[str] = []

    def add(name: str, labels: str, value) -> None:
        if silent_since is not None and value is FRESH:
            value = (lambda t: min(t, silent_since))
        elif silent_since is not None and callable(value):
            value = (lambda t, told=value: told(min(t, silent_since)))
        out.append(h.lines(name, labels, value))

    add("sitewatch:site_last_report_timestamp_seconds", base, FRESH)
    if silent_since is not None:
        planted["site_silent"] += 1

    has_kodeks = i % KODEKS_EVERY == KODEKS_EVERY - 1
    catalog_error = has_kodeks and rng.random() < CATALOG_ERROR
    checks = [("pc", "ping")] + [(f"kkt-{r + 1}", "kkt") for r in range(registers)]
    checks += [("kodeks", "kodeks")] if has_kodeks else []
    down: dict[str, tuple[int, str]] = {}  # check -> (down since, reason)
    for name, kind in checks:
        roll = rng.random()
        if name == "kodeks" and catalog_error:  # its check fails on the broken catalog, not the server
            down[name] = (int(now - rng.uniform(2, 40) * HOUR), "main_page")
        elif roll < DOWN_LONG and silent_since is None and not any(
                since < now - DAY for since, _ in down.values()):
            down[name] = (int(now - rng.uniform(25, 60) * HOUR), rng.choice(REASONS[kind]))
        elif DOWN_LONG <= roll < DOWN_LONG + DOWN_BRIEFLY and silent_since is None:
            down[name] = (int(now - rng.uniform(1, 6) * HOUR), rng.choice(REASONS[kind]))
    long_down = {name for name, (since, _) in down.items() if since < now - DAY}
    pc_unreachable = "pc" in long_down

    for name, kind in checks:
        labels = f'{base},check="{name}",type="{kind}"'
        if name in down:
            since, reason = down[name]
            add("sitewatch_check_up", labels, lambda t, since=since: 1 if t < since else 0)
            add("sitewatch_check_last_success_timestamp_seconds", labels, lambda t, since=since: min(t, since))
            add("sitewatch_check_failure_info", f'{labels},reason="{reason}"',
                lambda t, since=since: 1 if t >= since else None)
            if name in long_down and kind != "kkt" and reason != "main_page":
                planted["check_down"] += 1  # a register check down says so as a register not read
        else:
            add("sitewatch_check_up", labels, 1)
            add("sitewatch_check_last_success_timestamp_seconds", labels, FRESH)

    for r in range(registers):
        vendor, model, prefix = REGISTER_MODELS[r % len(REGISTER_MODELS)]
        check = f"kkt-{r + 1}"
        serial = f"{prefix}{i:06d}{r}"
        fn = f"99604407{i:06d}{r}{r}"
        labels = f'{base},check="{check}",type="kkt",kkt="{serial}"'
        add("sitewatch_kkt_info", f'{labels},vendor="{vendor}",model="{model}",fn="{fn}",ffd="1.2"', 1)
        if check in down:
            since = down[check][0]
            add("sitewatch_kkt_data_timestamp_seconds", labels, lambda t, since=since: min(t, since))
            if check in long_down:
                planted["kkt_not_read"] += 1
        else:
            add("sitewatch_kkt_data_timestamp_seconds", labels, FRESH)
        if rng.random() < FN_SOON:
            expiry = h.midnight_in(rng.randint(-2, 30))
            planted["fn_expiry"] += 1
        else:
            expiry = h.midnight_in(rng.randint(31, 540))
        add("sitewatch_fn_expiry_timestamp_seconds", f'{labels},fn="{fn}"', expiry)
        roll = rng.random()
        if roll < OFD_BACKLOG + DOCUMENTS_ON_THEIR_WAY:
            backlog = roll < OFD_BACKLOG
            oldest = int(now - (rng.uniform(1.5, 25) * DAY if backlog else rng.uniform(2, 40) * 60))
            count = rng.randint(2, 400) if backlog else rng.randint(1, 3)
            add("sitewatch_fn_unsent_documents", labels, lambda t, o=oldest, c=count: c if t >= o else 0)
            add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", labels,
                lambda t, o=oldest: o if t >= o else 0)
            if backlog and oldest <= said_at:
                planted["ofd_backlog"] += 1
        else:
            add("sitewatch_fn_unsent_documents", labels, 0)
            add("sitewatch_fn_oldest_unsent_document_timestamp_seconds", labels, 0)
        if vendor == "atol":
            soon = rng.random() < KKT_LICENCE_SOON
            until = h.midnight_in(rng.randint(-1, 30) if soon else rng.randint(31, 700))
            planted["kkt_licence"] += soon
            add("sitewatch_kkt_licence_expiry_timestamp_seconds", f'{labels},licence="10",name="ФФД 1.2"', until)
            add("sitewatch_kkt_licence_expiry_timestamp_seconds", f'{labels},licence="11",name="Маркировка"',
                ATOL_UNLIMITED)

    if has_kodeks:
        labels = f'{base},check="kodeks",type="kodeks"'
        since, reason = down.get("kodeks", (None, ""))
        read = since is None or reason == "main_page"  # an unreachable server's page was not read: no series

        def while_read(value):
            return value if read else (lambda t: value if t < since else None)

        add("sitewatch_kodeks_maintenance", labels, while_read(0))
        for catalog in CATALOGS:
            broken = catalog_error and catalog == CATALOGS[-1]
            add("sitewatch_kodeks_main_page_ok", f'{labels},catalog="{catalog}"', while_read(0 if broken else 1))
            add("sitewatch_kodeks_product_control_ok", f'{labels},catalog="{catalog}"', while_read(1))
        if catalog_error and silent_since is None and not pc_unreachable:
            planted["catalog_error"] += 1
        soon = rng.random() < KODEKS_LICENCE_SOON
        add("sitewatch_kodeks_licence_expiry_timestamp_seconds", labels,
            while_read(h.midnight_in(rng.randint(-1, 30) if soon else rng.randint(31, 365))))
        planted["kodeks_licence"] += int(soon and read)  # a server not read now says no date
    return "".join(out)


class Backfill:
    """Writes the fleets' history (the smaller fleets are the first sites of the biggest: each site's text
    is made once) and turns each file into a TSDB block with promtool, the smaller ones in the background
    while the biggest is still being written."""

    def __init__(self, promtool: str, workdir: Path, sizes: list[int], registers: int, step: int):
        self.promtool = promtool
        self.workdir = workdir
        self.sizes = sorted(sizes)
        self.registers = registers
        self.history = History(int(time.time()) // step * step, step)
        self.planted: dict[int, Counter] = {}
        self.counts: dict[int, tuple[int, int]] = {}  # sites -> (series, samples)
        self.processes: dict[int, subprocess.Popen] = {}
        self._started: dict[int, float] = {}
        self.write_seconds = 0.0
        self.promtool_seconds: dict[int, float] = {}

    def tsdb(self, n: int) -> Path:
        return self.workdir / f"tsdb-{n}"

    def run(self) -> None:
        started = time.monotonic()
        rng = random.Random(SEED)
        planted: Counter = Counter()
        files = {n: open(self.workdir / f"fleet-{n}.om", "w", encoding="utf-8") for n in self.sizes}
        try:
            for i in range(self.sizes[-1]):
                text = site_lines(i, self.registers, rng, self.history, planted)
                for n, file in files.items():
                    if i < n:
                        file.write(text)
                if i + 1 in files:
                    n = i + 1
                    files[n].write("# EOF\n")
                    files.pop(n).close()
                    self.planted[n] = Counter(planted)
                    self.counts[n] = (self.history.series, self.history.samples)
                    self.write_seconds = time.monotonic() - started
                    self._start_promtool(n)
        finally:
            for file in files.values():
                file.close()
        self._wait_for_promtool()

    def _start_promtool(self, n: int) -> None:
        argv = [self.promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
                f"--max-block-duration={BLOCK_DURATION}", str(self.workdir / f"fleet-{n}.om"), str(self.tsdb(n))]
        with open(self.workdir / f"promtool-{n}.log", "wb") as log:
            self.processes[n] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        self._started[n] = time.monotonic()

    def _wait_for_promtool(self) -> None:
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        while len(self.promtool_seconds) < len(self.processes):
            for n, process in self.processes.items():
                if n in self.promtool_seconds or process.poll() is None:
                    continue
                self.promtool_seconds[n] = time.monotonic() - self._started[n]
                (self.workdir / f"fleet-{n}.om").unlink()  # gigabytes of text no longer needed
                if process.returncode != 0:
                    log = (self.workdir / f"promtool-{n}.log").read_text(errors="replace")[-2000:]
                    raise BenchError(f"promtool could not backfill {n:,} sites (exit {process.returncode}): {log}")
            if time.monotonic() > deadline:
                raise BenchError(f"promtool did not backfill the fleets within {BACKFILL_TIMEOUT:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stops the promtool runs still going (an error or Ctrl-C), each by its pid."""
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def prometheus_on(binary: str, tsdb: Path, folder: Path) -> Service:
    """Debian's Prometheus on a free loopback port, holding the backfilled block; nothing to scrape."""
    config = folder / "prometheus.yml"
    config.write_text("global: {evaluation_interval: 1h}\n", encoding="utf-8")
    port = free_loopback_port()
    return Service("Prometheus", [binary, f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
                                  "--storage.tsdb.retention.time=30d", f"--web.listen-address=127.0.0.1:{port}"],
                   port, folder / "prometheus.log")


# -- the worklist, in a process of its own ---------------------------------------------------------------

def placeholder_environment() -> dict[str, str]:
    """receiver.yml names its bot token and webhook token as environment variables: placeholders stand for
    them (nothing here talks to Telegram or takes webhooks), so the shipped config loads as it is."""
    names = re.findall(r"\{\s*env:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}",
                       "\n".join(line.split("#", 1)[0] for line in RECEIVER_CONFIG.read_text("utf-8").splitlines()))
    return {**os.environ, **{name: "123456:placeholder" for name in names}}


def run_worker(url: str, now: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", url, str(now), str(repeats)],
                          env=placeholder_environment(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BenchError(f"the worklist process failed (exit {done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout)


def worker(url: str, now: int, repeats: int) -> dict:
    """Makes the worklist as the receiver does, timing each part; the figures, for JSON."""
    config = load_receiver_config(RECEIVER_CONFIG)
    settings = replace(config.worklist, prometheus_url=url)
    figures: dict = {"rss_before_mib": own_status_mib("VmHWM")}

    collect_seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        items = collect(settings, now)
        collect_seconds.append(time.perf_counter() - started)
    figures["collect_s"] = collect_seconds
    figures["kinds"] = dict(Counter(item.kind for item in items))
    figures["items"] = len(items)
    figures["sites"] = len({item.site for item in items})

    questions = {name: " ".join(expr.split()) for name, expr in queries(settings).items()}
    per_query: dict[str, list[float]] = {name: [] for name in questions}
    rows: dict[str, int] = {}
    with requests.Session() as session:
        for _ in range(repeats):
            for name, expr in questions.items():
                started = time.perf_counter()
                answer = instant_query(url, expr, at=now, timeout=settings.timeout, session=session)
                per_query[name].append(time.perf_counter() - started)
                rows[name] = len(answer)
    figures["query_s"] = per_query
    figures["query_rows"] = rows

    tree = ALERTMANAGER_CONFIG.read_text(encoding="utf-8")
    tree_seconds, split_seconds = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        finder = RouteFinder.from_yaml(tree, set(config.routes), str(ALERTMANAGER_CONFIG))
        tree_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        split = for_routes(items, finder, now)
        split_seconds.append(time.perf_counter() - started)
    figures["tree_s"], figures["for_routes_s"] = tree_seconds, split_seconds

    routes: dict[str, dict] = {}
    render_seconds = []
    for _ in range(repeats):
        total = 0.0
        for name, route in config.routes.items():
            entry = routes.setdefault(name, {"items": len(split.get(name, [])),
                                             "sites": len({item.site for item in split.get(name, [])}),
                                             "worklist": route.worklist is not None,
                                             "chat": f"{route.bot}|{route.chat_id}",
                                             "group": Chat(route.bot, str(route.chat_id), route.thread_id).is_group})
            if route.worklist is None:
                continue
            zone = route.timezone or config.timezone or maintenance.DEFAULT_ZONE
            started = time.perf_counter()
            texts = render(split.get(name, []), zone, now, title=TITLE)
            total += time.perf_counter() - started
            lengths = [message_length(text) for text in texts]
            if max(lengths) > MESSAGE_LIMIT:
                raise SystemExit(f"worklist_fleet: a message of route {name} is {max(lengths)} long, over "
                                 f"Telegram's {MESSAGE_LIMIT}")
            entry.update(messages=len(texts), longest=max(lengths))
        render_seconds.append(total)
    figures["render_s"] = render_seconds
    figures["routes"] = routes
    figures["delivery"] = paced(routes, config.rate_limits)
    figures["rss_peak_mib"] = own_status_mib("VmHWM")
    return figures


def paced(routes: dict[str, dict], limits) -> dict[str, float]:
    """Seconds from the moment every route's list is queued (all at the same time, as at 08:30) to its last
    message leaving, each message sent the moment the receiver's RateLimiter allows, on a simulated clock
    (no network time). Routes that post to one chat share its limits, taking turns."""
    clock = [0.0]
    limiter = RateLimiter(limits, clock=lambda: clock[0])
    waiting = {name: entry["messages"] for name, entry in routes.items() if entry.get("messages")}
    finished: dict[str, float] = {}
    while waiting:
        moments = {name: limiter.ready_at(*_chat(routes[name]), urgent=False) for name in waiting}
        name = min(moments, key=lambda key: (moments[key], finished.get(key, -1.0)))
        clock[0] = max(clock[0], moments[name])
        bot, chat_id, is_group = _chat(routes[name])
        limiter.reserve(bot)
        limiter.record(bot, chat_id, is_group)
        limiter.answered(bot, chat_id, is_group)
        finished[name] = clock[0]
        waiting[name] -= 1
        if not waiting[name]:
            del waiting[name]
    return finished


def _chat(entry: dict) -> tuple[str, str, bool]:
    bot, chat_id = entry["chat"].split("|", 1)
    return bot, chat_id, entry["group"]


def own_status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- what a dispatcher would use instead: the Grafana board ---------------------------------------------

def board_queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every target of the «today» board, as Grafana sends it."""
    board = json.loads(BOARD.read_text(encoding="utf-8"))
    found = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", ""), target.get("refId", ""), as_grafana_sends(target["expr"])))
            walk(panel.get("panels", []))

    walk(board.get("panels", []))
    if not found:
        raise BenchError(f"{BOARD}: no panel queries found")
    return found


def as_grafana_sends(expr: str) -> str:
    for variable, value in RANGE_VARIABLES.items():
        expr = expr.replace(variable, value)
    return ALL_VALUES.sub('=~".*"', expr)


def time_board(server: Service, now: int, repeats: int) -> dict:
    url = f"http://127.0.0.1:{server.port}/api/v1/query"
    panels = board_queries()
    local = threading.local()

    def ask(expr: str) -> tuple[float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(url, data={"query": expr, "time": str(now)}, timeout=60)
        answer = response.json()
        seconds = time.perf_counter() - started
        if answer.get("status") != "success":
            raise BenchError(f"Prometheus refused a board query ({answer.get('error')}): {expr[:200]}")
        return seconds, len(answer["data"]["result"])

    per_query: dict[str, list[float]] = {f"{title} [{ref}]": [] for title, ref, _ in panels}
    rows: dict[str, int] = {}
    panel_rows: dict[str, int] = {}  # a panel's targets are columns of one table: its rows are the most of theirs
    cpu_before = server.cpu_seconds()
    for _ in range(repeats):
        for title, ref, expr in panels:
            seconds, found = ask(expr)
            per_query[f"{title} [{ref}]"].append(seconds)
            rows[f"{title} [{ref}]"] = found
            panel_rows[title] = max(found, panel_rows.get(title, 0))
    cpu_sequential = (server.cpu_seconds() - cpu_before) / repeats
    whole = []
    with ThreadPoolExecutor(max_workers=len(panels)) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(lambda panel: ask(panel[2]), panels))
            whole.append(time.perf_counter() - started)
    return {"query_s": per_query, "rows": rows, "panel_rows": panel_rows, "board_parallel_s": whole,
            "cpu_per_board_s": cpu_sequential}


# -- one fleet --------------------------------------------------------------------------------------------

def measure(binary: str, backfill: Backfill, n: int, repeats: int) -> dict:
    folder = backfill.workdir / f"prometheus-{n}"
    folder.mkdir()
    with prometheus_on(binary, backfill.tsdb(n), folder) as server:
        url = f"http://127.0.0.1:{server.port}"
        rss_idle = server.status_mib("VmRSS")
        cpu_before = server.cpu_seconds()
        worklist = run_worker(url, backfill.history.now, repeats)
        worklist_cpu = (server.cpu_seconds() - cpu_before) / (2 * repeats)  # collect, then each question alone
        peak_after_worklist = server.status_mib("VmHWM")
        board = time_board(server, backfill.history.now, repeats)
        peak_after_board = server.status_mib("VmHWM")
    series, samples = backfill.counts[n]
    return {
        "sites": n, "series": series, "samples": samples, "planted": dict(backfill.planted[n]),
        "promtool_s": backfill.promtool_seconds[n], "worklist": worklist, "board": board,
        "prometheus": {"rss_idle_mib": rss_idle, "peak_after_worklist_mib": peak_after_worklist,
                       "peak_after_board_mib": peak_after_board, "cpu_per_worklist_s": worklist_cpu},
    }


# -- reporting --------------------------------------------------------------------------------------------

def median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def warm(values: list[float]) -> list[float]:
    """The runs after the first, when there are any."""
    return values[1:] or values


def print_rows(heads: list[str], rows: list[tuple[str, list[str]]]) -> None:
    width = max(len(label) for label, _ in rows) + 2
    columns = [max(len(heads[i + 1]), *(len(values[i]) for _, values in rows)) + 2 for i in range(len(heads) - 1)]
    print(f"{heads[0]:<{width}}" + "".join(f"{head:>{columns[i]}}" for i, head in enumerate(heads[1:])))
    for label, values in rows:
        print(f"{label:<{width}}" + "".join(f"{value:>{columns[i]}}" for i, value in enumerate(values)))


def print_report(results: list[dict]) -> bool:
    heads = ["", *[f"{r['sites']:,} sites" for r in results]]
    print("\n== the worklist (ms; median of the runs after the first) ==")
    rows = [
        ("series / samples backfilled", [f"{r['series']:,} / {r['samples'] / 1e6:.1f} M" for r in results]),
        ("collect(), first run", [f"{1000 * r['worklist']['collect_s'][0]:.0f}" for r in results]),
        ("collect()", [f"{median_ms(warm(r['worklist']['collect_s'])):.0f}" for r in results]),
    ]
    names = list(results[0]["worklist"]["query_s"])
    rows += [(f"  {name}", [f"{median_ms(r['worklist']['query_s'][name]):.1f} ({r['worklist']['query_rows'][name]:,})"
                            for r in results]) for name in names]
    rows += [
        ("  the questions one by one, sum", [f"{sum(median_ms(v) for v in r['worklist']['query_s'].values()):.0f}"
                                             for r in results]),
        ("RouteFinder.from_yaml", [f"{median_ms(r['worklist']['tree_s']):.1f}" for r in results]),
        ("for_routes", [f"{median_ms(r['worklist']['for_routes_s']):.0f}" for r in results]),
        ("render, every route's list", [f"{median_ms(r['worklist']['render_s']):.0f}" for r in results]),
        ("peak RSS of the process (VmHWM) MiB", [f"{r['worklist']['rss_peak_mib']:.0f} (from "
                                                 f"{r['worklist']['rss_before_mib']:.0f})" for r in results]),
        ("Prometheus CPU per round of questions", [f"{1000 * r['prometheus']['cpu_per_worklist_s']:.0f}"
                                                   for r in results]),
        ("Prometheus RSS MiB: idle / peak", [f"{r['prometheus']['rss_idle_mib']:.0f} / "
                                              f"{r['prometheus']['peak_after_worklist_mib']:.0f}" for r in results]),
    ]
    print_rows(heads, rows)
    print("(a question's figure is followed by the rows it returned)")

    print("\n== items found (as planted) ==")
    kinds = sorted({kind for r in results for kind in (*r["planted"], *r["worklist"]["kinds"])})
    right = True
    kind_rows = []
    for kind in kinds:
        cells = []
        for r in results:
            found, planted = r["worklist"]["kinds"].get(kind, 0), r["planted"].get(kind, 0)
            right &= found == planted
            cells.append(f"{found:,}" + ("" if found == planted else f" (planted {planted:,}!)"))
        kind_rows.append((kind, cells))
    kind_rows.append(("all items / sites with work", [f"{r['worklist']['items']:,} / {r['worklist']['sites']:,}"
                                                      for r in results]))
    print_rows(heads, kind_rows)

    print("\n== per route: items, messages, and when the chat has read the whole list ==")
    route_names = list(results[0]["worklist"]["routes"])
    route_rows = []
    for name in route_names:
        cells = []
        for r in results:
            entry = r["worklist"]["routes"][name]
            if not entry["worklist"]:
                cells.append(f"{entry['items']:,} items, no list")
                continue
            done = r["worklist"]["delivery"].get(name, 0.0)
            cells.append(f"{entry['items']:,} items, {entry['messages']} msg, {done:.0f} s")
        route_rows.append((name, cells))
    print_rows(heads, route_rows)
    for r in results:
        chats: dict[str, list[str]] = {}
        for name, entry in r["worklist"]["routes"].items():
            if entry["worklist"]:
                chats.setdefault(entry["chat"], []).append(name)
        for names in chats.values():
            if len(names) > 1:
                messages = sum(r["worklist"]["routes"][name]["messages"] for name in names)
                last = max(r["worklist"]["delivery"].get(name, 0.0) for name in names)
                print(f"{r['sites']:,} sites: {' and '.join(names)} post to one group, which shares its 20 messages "
                      f"a minute (2 kept for critical alerts): {messages} messages, the last after {last:.0f} s")

    print("\n== instead: the Grafana board «Что сделать сегодня», the same Prometheus, the same moment (ms) ==")
    titles = list(results[0]["board"]["query_s"])
    board_rows = [(title, [f"{median_ms(r['board']['query_s'][title]):.1f} ({r['board']['rows'][title]:,})"
                           for r in results]) for title in titles]
    board_rows += [
        ("every query one by one, sum", [f"{sum(median_ms(v) for v in r['board']['query_s'].values()):.0f}"
                                         for r in results]),
        ("the board, all queries at once", [f"{median_ms(r['board']['board_parallel_s']):.0f}" for r in results]),
        ("rows in the board's tables", [f"{sum(r['board']['panel_rows'].values()):,}" for r in results]),
        ("Prometheus CPU per board", [f"{1000 * r['board']['cpu_per_board_s']:.0f}" for r in results]),
        ("Prometheus peak RSS after it, MiB", [f"{r['prometheus']['peak_after_board_mib']:.0f}" for r in results]),
    ]
    print_rows(heads, board_rows)
    return right


# -- the run --------------------------------------------------------------------------------------------

def fleet_size(text: str) -> int:
    value = at_least_one(text)
    if value > MAX_SITES:
        raise argparse.ArgumentTypeError(f"goes up to {MAX_SITES:,}, not {text}")
    return value


def step_seconds(text: str) -> int:
    value = int(text)
    if value < 15 or value > 3600 or DAY % value:
        raise argparse.ArgumentTypeError(f"must be from 15 to 3600 seconds and divide a day, not {text}")
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The morning worklist for a fleet backfilled into a real "
                                                 "Prometheus: collect, routing, rendering, memory and Telegram "
                                                 "pacing, against the Grafana board a dispatcher would open.")
    parser.add_argument("--sites", type=fleet_size, nargs="+", default=list(DEFAULT_SITES),
                        help="fleet sizes (default: 1000 5000)")
    parser.add_argument("--registers", type=at_least_one, default=DEFAULT_REGISTERS,
                        help="fiscal registers per site (default: 3)")
    parser.add_argument("--step", type=step_seconds, default=DEFAULT_STEP,
                        help="seconds between the backfilled samples (default: 900)")
    parser.add_argument("--repeats", type=at_least_one, default=DEFAULT_REPEATS,
                        help="runs of each measurement (default: 3)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    return parser.parse_args()


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:  # the worklist's own process (run_worker)
        url, now, repeats = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(worker(url, now, repeats)))
        return 0
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    missing = "worklist_fleet: cannot measure: {} is missing: apt-get install prometheus (or make debs)"
    binary = find_program(("prometheus",), missing.format("prometheus"))
    promtool = find_program(("promtool",), missing.format("promtool"))
    sizes = sorted(set(arguments.sites))
    machine = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(),
               "python": platform.python_version(), "prometheus": first_line([binary, "--version"]),
               "load_average_at_start": os.getloadavg()[0]}
    print(f"machine: {machine['nproc']} CPUs, Linux {machine['kernel']}, Python {machine['python']}, "
          f"load {machine['load_average_at_start']:.2f}; {machine['prometheus']}")
    print(f"fleets of {' and '.join(f'{n:,}' for n in sizes)} sites, {arguments.registers} registers each, Кодекс on "
          f"every {KODEKS_EVERY}th; {HISTORY // HOUR} hours of samples every {arguments.step} s")
    report = {"machine": machine, "settings": {key: str(value) if isinstance(value, Path) else value
                                               for key, value in vars(arguments).items()}}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="worklist-fleet-") as tmp:
            backfill = Backfill(promtool, Path(tmp), sizes, arguments.registers, arguments.step)
            print("backfilling ...", flush=True)
            try:
                backfill.run()
            finally:
                backfill.stop()
            print(f"  written in {backfill.write_seconds:.0f} s; promtool "
                  + ", ".join(f"{n:,} sites {backfill.promtool_seconds[n]:.0f} s" for n in sizes), flush=True)
            results = []
            for n in sizes:
                print(f"{n:,} sites: the worklist {arguments.repeats} times, then the board ...", flush=True)
                results.append(measure(binary, backfill, n, arguments.repeats))
    except BenchError as err:
        print(f"worklist_fleet: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The with-blocks and finally clauses have stopped Prometheus and promtool by now.
        print("\nworklist_fleet: interrupted", file=sys.stderr)
        return 130
    right = print_report(results)
    report.update(results=results, runtime_s=time.monotonic() - started)
    print(f"\ntotal {report['runtime_s']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {arguments.json}")
    if not right:
        print("worklist_fleet: the worklist did not find what was planted (above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
