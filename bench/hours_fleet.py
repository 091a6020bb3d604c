"""What opening hours cost a fleet: the exporter's series per scrape, and Prometheus's rules, memory and series.

The alternative a user would otherwise pick is no hours at all: every site whose PC is switched off at
closing raises SiteNotReporting all night. So the baseline is the same fleet, with the same PCs off, and
without hours; every figure is printed for both.

The fleet: --sites (1,000) sites, and --also (300) as a second, smaller one (the first 300 of the same
sites; --also 0 leaves it out). Each site has one ping check and the site labels client, distributor and
telegram_route, and all name one shared hours definition, loaded with exporter.config.loader.load_config
as a user writes it: a lunch break on Sunday, a day that runs past midnight (Friday and Saturday until
02:00) and one whole-site maintenance window every night:

    mon-thu 10:00-23:00, fri-sat 10:00-02:00, sun 11:00-15:00 and 16:00-23:00; opening_grace 30m,
    closing_grace 15m; maintenance "Перезагрузка ПК" 03:00-03:30 daily

The sites are spread evenly over the 24 whole-hour zones Etc/GMT+11 .. Etc/GMT-12, so whenever the
benchmark runs, about the same share of them is closed (how many is printed); a real chain spans fewer
zones and is closed all at once, which changes which rules have output, not the series they read.

Part 1, the exporter (in this process, no network): the time to build the series per scrape, the median of
--repeats (7) runs each, for the sites of each fleet:

  checks       the check families of exporter.collector.CheckCollector without sites, one ping check per
               site, each with a CheckState that has recorded one passed run (loss and three round trips);
  hours        exporter.hours_metrics.hours_families(sites, now), the series hours add;
  collect      CheckCollector.collect() as the exporter registers it (with the sites, so with hours) and
               without the sites (no hours);
  /metrics     prometheus_client.generate_latest of a registry holding that collector: the text a scrape
               gets, with and without hours, and its size;

and the series per site the checks and the hours add. An exporter the sites push from serves one site, so
per site is what a pusher pays; an office exporter that checks every site itself pays the whole fleet's.

Part 2, Prometheus: Debian's prometheus on a free 127.0.0.1 port, in a temporary directory, with every
rule file of the project (prometheus/rules/*.yml) and scrape and evaluation intervals of --interval (5 s).
It scrapes, with honor_labels like the project's `pushgateway` job, a small HTTP server in this process on
another 127.0.0.1 port that serves a static exposition standing for a Pushgateway holding the fleet's
groups: for each site push_time_seconds and push_failure_time_seconds (0) with job="sitewatch", site and
an empty instance, as the Pushgateway adds them, and the site's pushed series with the same job label:
sitewatch_check_up and sitewatch_check_last_success_timestamp_seconds of its ping check and, in the run
with hours, its hours series from hours_families at its last push. A site closed by its hours switched
its PC off 5 minutes before closing, so its last push (and the hours series in it) are from then; every
100th site that is open now has not come back since its last closure; every other site pushed just now.
The run without hours serves the same fleet, the same push times, and no hours series.

Per fleet and run, after the first scrape has landed and one more evaluation interval, it reads
prometheus_rule_group_last_duration_seconds of every rule group from Prometheus's own /metrics after each
of --evaluations (4) evaluations, and each rule's evaluationTime from /api/v1/rules, and prints the
median per group and per rule (every rule of sitewatch-hours and the slowest others, to show a slow
expression), the CPU Prometheus used meanwhile (user + sys from /proc/PID/stat, scraping included),
process_resident_memory_bytes, prometheus_tsdb_head_series at the end, the alerts pending or firing (with
`for: 1m` they are still pending) and what the recording rules recorded. Prometheus evaluates its groups
side by side, so on 2 CPUs a group's wall time includes waiting for the others; the CPU is the sum of
everything. A rule evaluation failure stops the benchmark.

Everything runs on 127.0.0.1; Prometheus is stopped by its pid, also on errors, Ctrl-C and SIGTERM. With
the defaults the run takes just under 3 minutes on 2 CPUs.

    .venv/bin/python bench/hours_fleet.py [--sites 1000] [--also 300] [--interval 5] [--evaluations 4]
                                          [--repeats 7] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the exporter lives in the repo

from benchkit import (BenchError, Service, at_least_one, find_program, first_line, free_loopback_port,  # noqa: E402
                      http_get, positive, raise_system_exit)
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from exporter.checks.base import Result, Sample  # noqa: E402
from exporter.collector import CheckCollector, ExporterStatus  # noqa: E402
from exporter.config.loader import load_config  # noqa: E402
from exporter.config.model import Site  # noqa: E402
from exporter.hours import closures  # noqa: E402
from exporter.hours_metrics import hours_families  # noqa: E402
from exporter.scheduler import site_labels  # noqa: E402
from exporter.state import CheckState  # noqa: E402

DEFAULT_SITES = 1000
DEFAULT_ALSO = 300
DEFAULT_INTERVAL = 5.0
DEFAULT_EVALUATIONS = 4
DEFAULT_REPEATS = 7
MAX_SITES = 20000
PROMETHEUS_CANDIDATES = ("prometheus",)
RULE_FILES = ROOT / "prometheus" / "rules"
HOURS_GROUP = "sitewatch-hours"
OFF_BEFORE_CLOSING = 300.0  # the staff switch the PC off 5 minutes before closing
NOT_BACK_EVERY = 100  # every 100th site open now has not come back since its last closure
ZONES = tuple(f"Etc/GMT{offset:+d}" if offset else "Etc/GMT" for offset in range(11, -13, -1))
DISTRIBUTORS = ("north", "south", "east", "west", "volga", "ural", "siberia", "center")
SITES_PER_CLIENT = 4
DATA_TIMEOUT = 30.0  # for the first scrape to land in Prometheus
SHARED_HOURS = """hours:
  restaurant:
    open:
      mon-thu: "10:00-23:00"
      fri-sat: "10:00-02:00"
      sun: ["11:00-15:00", "16:00-23:00"]
    opening_grace: 30m
    closing_grace: 15m
    maintenance:
      - {name: "Перезагрузка ПК", time: "03:00-03:30"}
"""


# -- the fleet ------------------------------------------------------------------------------------------

def load_fleet(folder: Path, n: int):
    """The fleet's config as a user writes it, loaded and checked the way the exporter loads it."""
    sites = "".join(
        f"  - id: shop-{i:05d}\n"
        f"    timezone: {ZONES[i % len(ZONES)]}\n"
        f"    labels: {{client: client-{i // SITES_PER_CLIENT:04d}, distributor: {DISTRIBUTORS[i % 8]}, "
        f"telegram_route: {DISTRIBUTORS[i % 8]}-support}}\n"
        f"    hours: restaurant\n"
        f"    checks:\n"
        f"      - {{name: pc, ping: {{host: 10.{i // 250 % 256}.{i % 250}.1}}}}\n"
        for i in range(n))
    path = folder / "fleet.yml"
    path.write_text(SHARED_HOURS + "sites:\n" + sites, encoding="utf-8")
    return load_config(path, read_secrets=False)


def without_hours(sites: list[Site]) -> list[Site]:
    return [Site(id=s.id, labels=s.labels, timezone=s.timezone, checks=s.checks, relay=s.relay) for s in sites]


def passed_states(config, sites: list[Site], now: float) -> list[CheckState]:
    """One CheckState per check that has recorded a passed ping: loss 0, three round trips."""
    states = []
    for site in sites:
        for check in site.checks:
            state = CheckState(check, site_labels(config, check))
            rtt = 0.012 + (len(states) % 50) / 1000
            samples = [Sample("sitewatch_ping_loss_ratio", 0.0)] + [
                Sample("sitewatch_ping_rtt_seconds", rtt * factor, (("stat", stat),))
                for stat, factor in (("min", 1.0), ("avg", 1.2), ("max", 1.6))]
            state.record(Result(True, figures="5/5 replies", samples=samples, duration=4.02, finished_at=now - 7))
            states.append(state)
    return states


def last_push(site: Site, index: int, now: float) -> tuple[float, str]:
    """When the site last pushed, and why then: its PC was switched off before the current closure, or
    before the last one and it has not come back (every NOT_BACK_EVERY-th site), or it is on."""
    spans = closures(site.hours, site.timezone, now)
    current = [start for start, end in spans if start <= now < end]
    if current:
        return current[0] - OFF_BEFORE_CLOSING, "closed"
    if index % NOT_BACK_EVERY == NOT_BACK_EVERY // 2:
        past = [start for start, end in spans if end <= now]
        if past:
            return past[-1] - OFF_BEFORE_CLOSING, "not back"
    return now, "open"


# -- part 1: the exporter's series per scrape -----------------------------------------------------------

def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def count_samples(families) -> int:
    return sum(len(family.samples) for family in families)


def measure_exporter(config, sites: list[Site], repeats: int) -> dict:
    now = time.time()
    states = passed_states(config, sites, now)
    bare = without_hours(sites)
    status = ExporterStatus()
    checks_only = CheckCollector(lambda: states, status)
    with_hours = CheckCollector(lambda: states, status, lambda: sites)
    without = CheckCollector(lambda: states, status, lambda: bare)
    registries = {}
    for name, collector in (("with", with_hours), ("without", without)):
        registries[name] = CollectorRegistry()
        registries[name].register(collector)

    hours = hours_families(sites, now)
    per_site = Counter()
    for family in hours:
        for sample in family.samples:
            per_site[sample.labels["site"]] += 1
    own = count_samples(list(CheckCollector(lambda: [], status).collect()))  # the exporter's own 4 series
    check_series = count_samples(list(checks_only.collect())) - own
    body = {name: generate_latest(registry) for name, registry in registries.items()}
    return {
        "sites": len(sites),
        "checks_ms": 1000 * median_seconds(lambda: list(checks_only.collect()), repeats),
        "hours_ms": 1000 * median_seconds(lambda: hours_families(sites, time.time()), repeats),
        "collect_without_ms": 1000 * median_seconds(lambda: list(without.collect()), repeats),
        "collect_with_ms": 1000 * median_seconds(lambda: list(with_hours.collect()), repeats),
        "render_without_ms": 1000 * median_seconds(lambda: generate_latest(registries["without"]), repeats),
        "render_with_ms": 1000 * median_seconds(lambda: generate_latest(registries["with"]), repeats),
        "bytes_without": len(body["without"]),
        "bytes_with": len(body["with"]),
        "check_series_per_site": check_series / len(sites),
        "hours_series_per_site": count_samples(hours) / len(sites),
        "hours_series_min": min(per_site.values()),
        "hours_series_max": max(per_site.values()),
    }


# -- part 2: the exposition Prometheus scrapes ----------------------------------------------------------

def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{escape(value)}"' for name, value in labels.items())


def exposition(sites: list[Site], hours: bool, now: float) -> tuple[bytes, Counter]:
    """The fleet's groups as a Pushgateway exposes them (job and instance on every series, families
    together), and how many sites are in each state. The sites' hours decide when each last pushed, also
    when `hours` is false: then their PCs are off just the same, but no hours series are served."""
    help_of: dict[str, str] = {
        "push_time_seconds": "Last Unix time when changing this group in the Pushgateway succeeded.",
        "push_failure_time_seconds": "Last Unix time when changing this group in the Pushgateway failed.",
        "sitewatch_check_up": "Debounced state of the check.",
        "sitewatch_check_last_success_timestamp_seconds": "When a run last passed (0 if never).",
    }
    lines: dict[str, list[str]] = {name: [] for name in help_of}
    states: Counter = Counter()
    for index, site in enumerate(sites):
        pushed, state = last_push(site, index, now)
        states[state] += 1
        group = {"instance": "", "job": "sitewatch", "site": site.id}
        lines["push_time_seconds"].append(f"push_time_seconds{{{label_text(group)}}} {pushed:.3f}")
        lines["push_failure_time_seconds"].append(f"push_failure_time_seconds{{{label_text(group)}}} 0")
        for check in site.checks:
            labels = {**group, **dict(site.labels), "check": check.name, "type": check.type}
            lines["sitewatch_check_up"].append(f"sitewatch_check_up{{{label_text(labels)}}} 1")
            lines["sitewatch_check_last_success_timestamp_seconds"].append(
                f"sitewatch_check_last_success_timestamp_seconds{{{label_text(labels)}}} {pushed - 7:.3f}")
        if hours:
            for family in hours_families([site], pushed):  # as the site's last push carried them
                help_of.setdefault(family.name, family.documentation)
                for sample in family.samples:
                    lines.setdefault(family.name, []).append(
                        f"{sample.name}{{{label_text({**group, **sample.labels})}}} {sample.value!r}")
    text = []
    for name, samples in lines.items():
        text += [f"# HELP {name} {help_of[name]}", f"# TYPE {name} gauge", *samples]
    return ("\n".join(text) + "\n").encode(), states


class StaticExposition:
    """An HTTP server on a free 127.0.0.1 port that answers GET /metrics with one fixed body."""

    def __init__(self, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="exposition", daemon=True)

    def __enter__(self) -> "StaticExposition":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# -- part 2: Prometheus --------------------------------------------------------------------------------

def prometheus(binary: str, folder: Path, target_port: int, interval: float) -> Service:
    config = folder / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: {interval:g}s
  scrape_timeout: {interval:g}s
  evaluation_interval: {interval:g}s
rule_files:
  - {RULE_FILES}/*.yml
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:{target_port}']
""", encoding="utf-8")
    port = free_loopback_port()
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    return Service("Prometheus", argv, port, folder / "prometheus.log")


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def fetch(service: Service, path: str) -> str:
    try:
        status, text = http_get(service.port, path, timeout=10)
    except (OSError, http.client.HTTPException) as err:
        raise BenchError(f"Prometheus did not answer {path.split('?')[0]} ({err}): {service.log_tail()}") from None
    if status != 200:
        raise BenchError(f"Prometheus's {path.split('?')[0]} answered {status}: {text[:300]}")
    return text


def own_metrics(service: Service) -> list[tuple[str, dict[str, str], float]]:
    text = fetch(service, "/metrics")
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            samples.append((match["name"], dict(LABEL.findall(match["labels"] or "")), float(match["value"])))
    return samples


def metric(samples, name: str) -> float:
    return next(value for sample_name, _, value in samples if sample_name == name)


def by_group(samples, name: str) -> dict[str, float]:
    """{group name: value} of a per-group metric; its rule_group label is "<file>;<group>"."""
    return {labels["rule_group"].rsplit(";", 1)[1]: value for sample_name, labels, value in samples
            if sample_name == name and "rule_group" in labels}


def api(service: Service, path: str, **params: str):
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    return json.loads(fetch(service, path + query))["data"]


def instant(service: Service, query: str) -> list[dict]:
    return api(service, "/api/v1/query", query=query)["result"]


def wait_for_data(service: Service, n: int) -> None:
    deadline = time.monotonic() + DATA_TIMEOUT
    while time.monotonic() < deadline:
        result = instant(service, 'count(push_time_seconds{job="sitewatch"})')
        if result and int(float(result[0]["value"][1])) == n:
            return
        if not service.alive():
            raise BenchError(f"Prometheus exited: {service.log_tail()}")
        time.sleep(0.2)
    raise BenchError(f"the {n} sites' push_time_seconds were not in Prometheus within {DATA_TIMEOUT:g} s: "
                     f"{service.log_tail()}")


def measure_prometheus(binary: str, workdir: Path, sites: list[Site], hours: bool, arguments) -> dict:
    name = f"{len(sites)}-{'with' if hours else 'without'}"
    folder = workdir / name
    folder.mkdir()
    body, states = exposition(sites, hours, time.time())
    with StaticExposition(body) as served, prometheus(binary, folder, served.port, arguments.interval) as server:
        wait_for_data(server, len(sites))
        # Evaluations that began before the data was in, and the alert groups' first evaluation after it
        # (which may still read the hours group's empty results), do not count.
        counted_from = time.time() + arguments.interval
        deadline = time.monotonic() + (arguments.evaluations + 4) * arguments.interval + DATA_TIMEOUT
        cpu_before, wall_before = server.cpu_seconds(), time.monotonic()
        groups: dict[str, dict[float, float]] = {}
        rules: dict[str, dict[str, float]] = {}
        while True:
            time.sleep(arguments.interval / 2)
            if time.monotonic() > deadline:
                raise BenchError(f"the rule groups did not evaluate {arguments.evaluations} times in time: {groups}")
            samples = own_metrics(server)
            durations = by_group(samples, "prometheus_rule_group_last_duration_seconds")
            stamps = by_group(samples, "prometheus_rule_group_last_evaluation_timestamp_seconds")
            for group, stamp in stamps.items():
                if stamp >= counted_from:
                    groups.setdefault(group, {})[stamp] = durations[group]
            if time.time() - arguments.interval >= counted_from:  # every rule's last evaluation counts by now
                for group in api(server, "/api/v1/rules")["groups"]:
                    for index, rule in enumerate(group["rules"]):
                        key = f"{group['name']}/{index + 1:02d} {rule['name']}"  # alert names repeat in a group
                        rules.setdefault(key, {})[rule["lastEvaluation"]] = rule["evaluationTime"]
            if rules and stamps and all(len(groups.get(group, ())) >= arguments.evaluations for group in stamps):
                break
        cpu = server.cpu_seconds() - cpu_before
        wall = time.monotonic() - wall_before
        failures = by_group(samples, "prometheus_rule_evaluation_failures_total")
        if any(failures.values()):
            raise BenchError(f"rule evaluations failed: {failures}; {server.log_tail()}")
        alerts = Counter(f"{alert['labels']['alertname']} ({alert['state']})"
                         for alert in api(server, "/api/v1/alerts")["alerts"])
        recorded = {row["metric"]["__name__"]: int(float(row["value"][1]))
                    for row in instant(server, 'count by (__name__) ({__name__=~"sitewatch:.+"})')}
        final = own_metrics(server)
        return {
            "sites": len(sites),
            "hours": hours,
            "states": dict(states),
            "exposition_bytes": len(body),
            "group_ms": {group: 1000 * statistics.median(list(values.values())[-arguments.evaluations:])
                         for group, values in groups.items()},
            "group_max_ms": {group: 1000 * max(list(values.values())[-arguments.evaluations:])
                             for group, values in groups.items()},
            "rule_ms": {key: 1000 * statistics.median(values.values()) for key, values in rules.items()},
            "interval": arguments.interval,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "rss_mib": metric(final, "process_resident_memory_bytes") / 2**20,
            "peak_rss_mib": server.status_mib("VmHWM"),
            "head_series": int(metric(final, "prometheus_tsdb_head_series")),
            "alerts": dict(sorted(alerts.items())),
            "recorded": recorded,
        }


# -- reporting ------------------------------------------------------------------------------------------

def print_exporter(results: list[dict]) -> None:
    print("\n== exporter: the series per scrape, median of the runs (ms) ==")
    rows = [
        ("check families (1 ping check/site)", lambda r: f"{r['checks_ms']:.1f}"),
        ("hours series (hours_families)", lambda r: f"{r['hours_ms']:.1f}"),
        ("hours per site (us)", lambda r: f"{1000 * r['hours_ms'] / r['sites']:.0f}"),
        ("collect() without hours", lambda r: f"{r['collect_without_ms']:.1f}"),
        ("collect() with hours", lambda r: f"{r['collect_with_ms']:.1f}"),
        ("/metrics text without hours", lambda r: f"{r['render_without_ms']:.1f}"),
        ("/metrics text with hours", lambda r: f"{r['render_with_ms']:.1f}"),
        ("/metrics KiB without / with", lambda r: f"{r['bytes_without'] / 1024:,.0f} / {r['bytes_with'] / 1024:,.0f}"),
        ("series per site: checks", lambda r: f"{r['check_series_per_site']:.1f}"),
        ("series per site: hours (min-max)", lambda r: f"{r['hours_series_per_site']:.1f} "
                                                        f"({r['hours_series_min']}-{r['hours_series_max']})"),
    ]
    print_rows(["", *[f"{r['sites']:,} sites" for r in results]], [(label, [cell(r) for r in results])
                                                                    for label, cell in rows])


def print_prometheus(results: list[dict]) -> None:
    print("\n== Prometheus: rule groups (median of the counted evaluations, ms), memory, series ==")
    groups = sorted({group for r in results for group in r["group_ms"]}, key=lambda g: (g != HOURS_GROUP, g))
    heads = ["", *[f"{r['sites']:,} {'with' if r['hours'] else 'without'}" for r in results]]
    rows = [(group, [f"{r['group_ms'].get(group, 0):.2f} (max {r['group_max_ms'].get(group, 0):.2f})"
                     for r in results]) for group in groups]
    rows += [
        ("all groups", [f"{sum(r['group_ms'].values()):.2f}" for r in results]),
        ("Prometheus CPU ms per interval", [f"{1000 * r['cpu_seconds'] / r['wall_seconds'] * r['interval']:.0f}"
                                            for r in results]),
        ("Prometheus CPU, % of one core", [f"{100 * r['cpu_seconds'] / r['wall_seconds']:.1f}" for r in results]),
        ("process_resident_memory MiB", [f"{r['rss_mib']:.0f}" for r in results]),
        ("peak RSS (VmHWM) MiB", [f"{r['peak_rss_mib']:.0f}" for r in results]),
        ("prometheus_tsdb_head_series", [f"{r['head_series']:,}" for r in results]),
        ("exposition KiB", [f"{r['exposition_bytes'] / 1024:,.0f}" for r in results]),
        ("sites closed / open / not back", [f"{r['states'].get('closed', 0)} / {r['states'].get('open', 0)} / "
                                            f"{r['states'].get('not back', 0)}" for r in results]),
    ]
    print_rows(heads, rows)
    for r in results:
        label = f"{r['sites']:,} {'with' if r['hours'] else 'without'} hours"
        print(f"\n{label}: alerts " + (", ".join(f"{name} {count}" for name, count in r["alerts"].items()) or "none"))
        if r["recorded"]:
            print(f"{' ' * len(label)}  recorded " + ", ".join(f"{name} {count}"
                                                               for name, count in sorted(r["recorded"].items())))
    print_rules(results)
    pairs = [(a, b) for a in results for b in results if a["sites"] == b["sites"] and a["hours"] and not b["hours"]]
    for with_run, without_run in pairs:
        n = with_run["sites"]
        print(f"\n{n:,} sites, hours against none: head series +{with_run['head_series'] - without_run['head_series']:,}"
              f" ({(with_run['head_series'] - without_run['head_series']) / n:.1f} per site), resident memory "
              f"{with_run['rss_mib'] - without_run['rss_mib']:+.0f} MiB, all rule groups "
              f"{sum(with_run['group_ms'].values()) - sum(without_run['group_ms'].values()):+.2f} ms per evaluation")


def print_rules(results: list[dict], slowest: int = 10) -> None:
    """Per rule, for the biggest fleet with and without hours: every rule of sitewatch-hours, then the
    slowest alert rules (a rule is "group/position name")."""
    n = max(r["sites"] for r in results)
    runs = [r for r in results if r["sites"] == n]
    keys = {key for r in runs for key in r["rule_ms"]}
    hours_rules = sorted((k for k in keys if k.startswith(HOURS_GROUP + "/")),
                         key=lambda k: -max(r["rule_ms"].get(k, 0) for r in runs))
    others = sorted((k for k in keys if not k.startswith(HOURS_GROUP + "/")),
                    key=lambda k: -max(r["rule_ms"].get(k, 0) for r in runs))[:slowest]
    print(f"\nper rule at {n:,} sites (median of the counted evaluations, ms): every rule of {HOURS_GROUP}, then "
          f"the {slowest} slowest others")
    print_rows(["", *[f"{'with' if r['hours'] else 'without'}" for r in runs]],
               [(key, [f"{r['rule_ms'][key]:.2f}" if key in r["rule_ms"] else "-" for r in runs])
                for key in hours_rules + others])


def print_rows(heads: list[str], rows: list[tuple[str, list[str]]]) -> None:
    width = max(len(label) for label, _ in rows) + 2
    columns = [max(len(heads[i + 1]), *(len(values[i]) for _, values in rows)) + 2 for i in range(len(heads) - 1)]
    print(f"{heads[0]:<{width}}" + "".join(f"{head:>{columns[i]}}" for i, head in enumerate(heads[1:])))
    for label, values in rows:
        print(f"{label:<{width}}" + "".join(f"{value:>{columns[i]}}" for i, value in enumerate(values)))


# -- the run --------------------------------------------------------------------------------------------

def fleet_size(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_SITES:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SITES:,}, not {text}")
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What opening hours cost: the exporter's series per scrape, and "
                                                 "a real Prometheus's rule groups, memory and series for a fleet "
                                                 "with hours against the same fleet without.")
    parser.add_argument("--sites", type=at_least_one, default=DEFAULT_SITES, help="sites in the fleet (default: 1000)")
    parser.add_argument("--also", type=fleet_size, default=DEFAULT_ALSO,
                        help="a second, smaller fleet measured the same way (default: 300; 0 leaves it out)")
    parser.add_argument("--interval", type=positive, default=DEFAULT_INTERVAL,
                        help="Prometheus's scrape and evaluation interval in seconds (default: 5)")
    parser.add_argument("--evaluations", type=at_least_one, default=DEFAULT_EVALUATIONS,
                        help="evaluations of every rule group counted per run (default: 4)")
    parser.add_argument("--repeats", type=at_least_one, default=DEFAULT_REPEATS,
                        help="runs of each exporter measurement; the median is printed (default: 7)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    arguments = parser.parse_args()
    if arguments.sites > MAX_SITES:
        parser.error(f"--sites goes up to {MAX_SITES:,}")
    return arguments


def main() -> int:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    binary = find_program(PROMETHEUS_CANDIDATES, "hours_fleet: cannot measure: prometheus is missing: "
                                                 "apt-get install prometheus (or make debs)")
    sizes = sorted({arguments.sites, *([arguments.also] if arguments.also else [])})
    machine = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(),
               "python": platform.python_version(), "prometheus": first_line([binary, "--version"]),
               "load_average_at_start": os.getloadavg()[0]}
    print(f"machine: {machine['nproc']} CPUs, Linux {machine['kernel']}, Python {machine['python']}, "
          f"load {machine['load_average_at_start']:.2f}; {machine['prometheus']}")
    print(f"fleets of {' and '.join(f'{n:,}' for n in sizes)} sites, one ping check each, shared hours with a "
          f"lunch break, a day past midnight and a nightly window; Prometheus every {arguments.interval:g} s with "
          f"{', '.join(p.name for p in sorted(RULE_FILES.glob('*.yml')))}")
    report = {"machine": machine, "settings": {key: str(value) if isinstance(value, Path) else value
                                               for key, value in vars(arguments).items()}}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="hours-fleet-") as tmp:
            workdir = Path(tmp)
            config = load_fleet(workdir, max(sizes))
            fleets = {n: list(config.sites[:n]) for n in sizes}
            print(f"\nexporter: {arguments.repeats} runs of each measurement ...", flush=True)
            report["exporter"] = [measure_exporter(config, fleets[n], arguments.repeats) for n in sizes]
            report["prometheus"] = []
            for n in sizes:
                for hours in (True, False):
                    print(f"prometheus: {n:,} sites {'with' if hours else 'without'} hours, "
                          f"{arguments.evaluations} evaluations ...", flush=True)
                    report["prometheus"].append(measure_prometheus(binary, workdir, fleets[n], hours, arguments))
    except BenchError as err:
        print(f"hours_fleet: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The with-blocks have stopped Prometheus and the exposition server by now.
        print("\nhours_fleet: interrupted", file=sys.stderr)
        return 130
    print_exporter(report["exporter"])
    print_prometheus(report["prometheus"])
    report["runtime_s"] = time.monotonic() - started
    print(f"\ntotal {report['runtime_s']:.0f} s")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"figures written to {arguments.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
