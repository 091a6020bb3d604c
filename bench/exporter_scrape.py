"""How one central exporter serves a big fleet: /metrics time, size and lines, idle CPU, and a reload to twice
the checks; beside Debian's Pushgateway serving the same series, which is what a user would run otherwise.

It writes a config of --sites (5,000) sites, each with the site labels client, distributor and
telegram_route and one ping check with the check type's defaults (5 echo requests 1 s apart, every
--interval, 60 s) to an address of its own in 127.0.0.0/8, and starts `sitewatch-exporter run` on a free
127.0.0.1 port. Once /-/ready says every check has finished its first run, it measures:

  idle CPU   the exporter's user + sys seconds over --idle-seconds (60, one check interval, so every check
             runs about once in it) with nobody scraping: what running the checks and keeping their state
             costs, as % of one core (from /proc/PID/stat, every thread);
  scrape     --scrapes (10) GET /metrics one after the other, each timed from the request to the last byte,
             plain (as curl sends it) and as Prometheus 2.x sends it (its Accept header, gzip): p50, p99,
             and the CPU the exporter spent per scrape; the size of the text, its lines and series. The text
             is checked, not only timed: prometheus_client's parser must read it, every family must have one
             HELP and one TYPE and its samples in one block, and `promtool check metrics` (if installed)
             must find no error in it;
  reload     the config rewritten with --reload-sites (10,000) sites (the running ones unchanged, the rest
             new), then POST /-/reload timed until it answers, and that it answered success.

The alternative: sites behind NAT push their series to a Pushgateway and Prometheus scrapes that. So in the
same run, Debian's prometheus-pushgateway is started on another free 127.0.0.1 port (with
--push.disable-consistency-check, which only speeds up the filling) and given the same series the
exporter served: one group per site under job="sitewatch", the site in the grouping key, as
sitewatch-pusher pushes them. Its /metrics is then measured the same way (plain and as Prometheus asks), and
its CPU when idle over the same window. It serves two more series per group (push_time_seconds and
push_failure_time_seconds), as it always does.

Targets: /metrics of --sites sites under 0.2 s (p50, plain) and the reload under 5 s; each is printed with
PASS or FAIL. Every packet goes to 127.0.0.0/8 and nowhere else; ping needs root or
net.ipv4.ping_group_range. Every process the script starts is stopped by its pid, on errors, Ctrl-C and
SIGTERM too. With the defaults the run takes about 5 minutes on 2 CPUs.

    .venv/bin/python bench/exporter_scrape.py [--sites 5000] [--reload-sites 10000] [--scrapes 10]
                                              [--interval 60] [--idle-seconds 60] [--no-pushgateway]
                                              [--json FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import (BenchError, Service, at_least_one, find_program, first_line, free_loopback_port,  # noqa: E402
                      percentile, positive, raise_system_exit)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

SCRAPE_TARGET_S = 0.2
RELOAD_TARGET_S = 5.0
HOSTS_PER_BLOCK = 250  # 127.X.Y.1 .. 127.X.Y.250
MAX_SITES = HOSTS_PER_BLOCK * 250 * 250
READY_TIMEOUT = 300.0  # the first start of a big config: loading it, then every check's first run
PUSH_IN_FLIGHT = 16
# What Prometheus 2.x sends when it scrapes, so each server picks the format and compression it would.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
DISTRIBUTORS = ("north", "south", "east", "west", "volga", "ural", "siberia", "center")


# -- the fleet --------------------------------------------------------------------------------------

def loopback_address(index: int) -> str:
    # Linux answers every address of 127.0.0.0/8 itself: N targets cost no network at all.
    return f"127.{index // (HOSTS_PER_BLOCK * 250)}.{index // HOSTS_PER_BLOCK % 250}.{index % HOSTS_PER_BLOCK + 1}"


def write_config(path: Path, sites: int, interval: float) -> None:
    lines = [f"defaults: {{interval: {interval:g}s}}", "sites:"]
    for i in range(sites):
        distributor = DISTRIBUTORS[i % len(DISTRIBUTORS)]
        lines += [f"  - id: shop-{i:05d}",
                  f"    labels: {{client: client-{i // 4:04d}, distributor: {distributor}, "
                  f"telegram_route: {distributor}-support}}",
                  "    checks:",
                  f"      - {{name: pc, ping: {{host: {loopback_address(i)}}}}}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- HTTP -------------------------------------------------------------------------------------------

@dataclass
class Scrape:
    seconds: float
    wire_bytes: int
    text: bytes
    content_type: str


def scrape(port: int, as_prometheus: bool) -> Scrape:
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"} if as_prometheus else {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        wire = response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"GET /metrics on port {port} answered {response.status}")
    text = gzip.decompress(wire) if response.getheader("Content-Encoding") == "gzip" else wire
    return Scrape(elapsed, len(wire), text, response.getheader("Content-Type", ""))


def post(port: int, path: str, timeout: float = 600.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


def put(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("PUT", path, body, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(service: Service, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"{service.name} exited: {service.log_tail()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
            connection.request("GET", "/-/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise BenchError(f"{service.name} was not ready within {limit:.0f} s: {service.log_tail()}")


# -- what the text must be --------------------------------------------------------------------------

def exposition_problems(text: str) -> list[str]:
    """What is wrong with `text` as Prometheus text format: parse errors, a family's HELP or TYPE written
    twice, or its samples split into more than one block."""
    problems = []
    try:
        # (name, type): the parser names a counter without its _total, which may be another family's name
        # (the Go client's go_memstats_alloc_bytes gauge beside go_memstats_alloc_bytes_total)
        names = [(family.name, family.type) for family in text_string_to_metric_families(text)]
    except ValueError as err:
        return [f"prometheus_client cannot parse it: {err}"]
    if len(names) != len(set(names)):
        repeated = sorted({name for name, kind in names if names.count((name, kind)) > 1})
        problems.append(f"families read more than once (split): {', '.join(repeated[:5])}")
    seen_help, seen_type, finished, current = set(), {}, set(), None
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            name = line.split(" ", 3)[2]
            kind = seen_help if line.startswith("# HELP ") else seen_type
            if name in kind:
                problems.append(f"{line[:6]} of {name} written twice")
            if isinstance(kind, set):
                kind.add(name)
            else:
                kind[name] = line.rsplit(" ", 1)[1]
            if name != current:
                if current is not None:
                    finished.add(current)
                if name in finished:
                    problems.append(f"family {name} appears in two places")
                current = name
        elif line and not line.startswith("#"):
            sample = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            if current is None or not (sample == current or sample.startswith(current + "_")):
                problems.append(f"sample {sample} outside its family's block (in {current})")
    return problems[:10]


def promtool_verdict(text: bytes) -> str:
    """`promtool check metrics` on the text: its own words when it finds something, 'ok' otherwise."""
    promtool = next((path for path in ("/usr/bin/promtool",) if Path(path).exists()), None)
    if promtool is None:
        return "promtool not installed"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace").strip()
    if done.returncode == 0:
        return "ok"
    # promtool reports its lint findings (names, HELP texts) and parse errors the same way: show them.
    lines = output.splitlines()
    return f"exit {done.returncode}: " + "; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "")


# -- measuring one server ---------------------------------------------------------------------------

def measure_scrapes(service: Service, count: int) -> dict:
    figures: dict = {}
    for label, as_prometheus in (("plain", False), ("prometheus", True)):
        scrapes, cpu = [], []
        for _ in range(count):
            before = service.cpu_seconds()
            scrapes.append(scrape(service.port, as_prometheus))
            cpu.append(service.cpu_seconds() - before)
            time.sleep(0.2)  # one scrape at a time, as Prometheus does; let the server settle in between
        times = [s.seconds for s in scrapes]
        last = scrapes[-1]
        figures[label] = {"p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99), "max_s": max(times),
                          "cpu_per_scrape_s": sum(cpu) / len(cpu), "wire_bytes": last.wire_bytes,
                          "content_type": last.content_type}
        if label == "plain":
            text = last.text.decode("utf-8")
            figures["text_bytes"] = len(last.text)
            figures["lines"] = text.count("\n")
            figures["series"] = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            figures["problems"] = exposition_problems(text)
            figures["promtool"] = promtool_verdict(last.text)
            figures["text"] = text
    return figures


def idle_cpu(service: Service, seconds: float) -> dict:
    before, started = service.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = service.cpu_seconds() - before, time.monotonic() - started
    return {"cpu_s": cpu, "wall_s": wall, "percent_of_one_core": 100 * cpu / wall}


# -- the exporter -----------------------------------------------------------------------------------

def run_exporter(workdir: Path, arguments: argparse.Namespace) -> dict:
    config = workdir / "fleet.yml"
    write_config(config, arguments.sites, arguments.interval)
    port = free_loopback_port()
    argv = [sys.executable, "-m", "exporter.cli", "run", "--config", str(config),
            "--web.listen-address", f"127.0.0.1:{port}"]
    result: dict = {}
    started = time.monotonic()
    # /-/healthy answers once the config is loaded and the server listens; ready means every first run ended.
    with Service("sitewatch-exporter", argv, port, workdir / "exporter.log", ready_path="/-/healthy") as exporter:
        wait_ready(exporter, READY_TIMEOUT)
        result["start_to_ready_s"] = time.monotonic() - started
        print(f"exporter: ready after {result['start_to_ready_s']:.1f} s; idle for {arguments.idle_seconds:g} s ...",
              flush=True)
        result["idle"] = idle_cpu(exporter, arguments.idle_seconds)
        print(f"exporter: {arguments.scrapes} scrapes of each kind ...", flush=True)
        result["scrape"] = measure_scrapes(exporter, arguments.scrapes)
        write_config(config, arguments.reload_sites, arguments.interval)
        print(f"exporter: reload to {arguments.reload_sites:,} checks ...", flush=True)
        began = time.perf_counter()
        status, body = post(port, "/-/reload")
        result["reload"] = {"seconds": time.perf_counter() - began, "status": status, "answer": body.strip()[:300],
                            "checks": arguments.reload_sites}
        result["after_reload_scrape_s"] = scrape(port, False).seconds
        result["rss_mib"] = exporter.status_mib("VmRSS")
    return result


# -- the Pushgateway with the same series -----------------------------------------------------------

SITE_LABEL = re.compile(r'site="((?:[^"\\]|\\.)*)",?')


def groups_by_site(text: str) -> dict[str, bytes]:
    """The exporter's check series split into one push per site, without the site label, which the grouping
    key carries (as sitewatch-pusher sends them); the exporter's own and the process families stay out."""
    groups: dict[str, dict[str, list[str]]] = {}
    heads: dict[str, list[str]] = {}
    family = None
    for line in text.splitlines():
        if line.startswith("# "):
            family = line.split(" ", 3)[2]
            heads.setdefault(family, []).append(line)
            continue
        match = SITE_LABEL.search(line)
        if not line or match is None or family is None:
            continue
        sample = line[:match.start()] + line[match.end():]
        sample = sample.replace(",}", "}").replace("{}", "")
        groups.setdefault(match.group(1), {}).setdefault(family, []).append(sample)
    return {site: ("\n".join(line for name, samples in families.items() for line in heads[name] + samples)
                   + "\n").encode() for site, families in groups.items()}


def run_pushgateway(workdir: Path, exposition: str, arguments: argparse.Namespace) -> dict:
    binary = find_program(("prometheus-pushgateway", "pushgateway"),
                          "exporter_scrape: prometheus-pushgateway is missing: apt-get install prometheus-pushgateway")
    port = free_loopback_port()
    # Its own persistence file: Debian's build otherwise shares one between every instance.
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={workdir / 'pgw.data'}",
            "--push.disable-consistency-check"]
    groups = groups_by_site(exposition)
    result: dict = {"groups": len(groups), "version": first_line([binary, "--version"])}
    with Service("prometheus-pushgateway", argv, port, workdir / "pushgateway.log") as pgw:
        print(f"pushgateway: pushing {len(groups):,} groups ...", flush=True)
        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(PUSH_IN_FLIGHT) as pool:
            statuses = list(pool.map(lambda item: put(port, f"/metrics/job/sitewatch/site/{item[0]}", item[1]),
                                     groups.items()))
        result["fill_s"] = time.perf_counter() - began
        refused = [status for status in statuses if status not in (200, 202)]
        if refused:
            raise BenchError(f"the Pushgateway refused {len(refused)} of {len(groups)} pushes ({refused[0]})")
        # Accepted pushes are applied in the background: wait until the last group is served.
        deadline = time.monotonic() + 120
        while scrape(port, False).text.count(b"push_time_seconds{") < len(groups):
            if time.monotonic() > deadline:
                raise BenchError("the Pushgateway did not serve every pushed group within 120 s")
            time.sleep(1)
        print(f"pushgateway: idle for {arguments.idle_seconds:g} s, then the scrapes ...", flush=True)
        result["idle"] = idle_cpu(pgw, arguments.idle_seconds)
        result["scrape"] = measure_scrapes(pgw, arguments.scrapes)
        result["rss_mib"] = pgw.status_mib("VmRSS")
    return result


# -- reporting --------------------------------------------------------------------------------------

def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "load_average_at_start": os.getloadavg()}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_report(report: dict, arguments: argparse.Namespace) -> None:
    exporter, pgw = report["exporter"], report.get("pushgateway")
    sites = arguments.sites
    print()
    print(f"== {sites:,} sites, one ping check each; check interval {arguments.interval:g} s ==")
    columns = [("sitewatch exporter", exporter)] + ([(f"Pushgateway ({pgw['groups']:,} groups)", pgw)] if pgw else [])
    width = 34

    def row(title: str, values: list[str]) -> None:
        print(f"{title:<30}" + "".join(f"  {value[:width - 2]:>{width - 2}}" for value in values))

    row("", [name for name, _ in columns])
    for label, title in (("plain", "/metrics plain p50 / p99"), ("prometheus", "/metrics as Prometheus p50 / p99")):
        row(title, [f"{c['scrape'][label]['p50_s']:.3f} / {c['scrape'][label]['p99_s']:.3f} s" for _, c in columns])
    row("CPU per scrape plain / Prom.", [f"{c['scrape']['plain']['cpu_per_scrape_s']:.3f} / "
                                         f"{c['scrape']['prometheus']['cpu_per_scrape_s']:.3f} s" for _, c in columns])
    row("text size, lines, series", [f"{c['scrape']['text_bytes'] / 2**20:.1f} MiB, {c['scrape']['lines']:,}, "
                                     f"{c['scrape']['series']:,}" for _, c in columns])
    row("gzip size (as Prometheus)", [f"{c['scrape']['prometheus']['wire_bytes'] / 2**10:,.0f} KiB"
                                      for _, c in columns])
    row("idle CPU (% of one core)", [f"{c['idle']['percent_of_one_core']:.1f} % ({c['idle']['cpu_s']:.1f} s in "
                                     f"{c['idle']['wall_s']:.0f} s)" for _, c in columns])
    row("resident memory", [f"{c['rss_mib']:.0f} MiB" for _, c in columns])
    row("exposition problems", [("none" if not c["scrape"]["problems"] else "; ".join(c["scrape"]["problems"][:2]))
                                for _, c in columns])
    row("promtool check metrics", [c["scrape"]["promtool"][:width - 2] for _, c in columns])
    reload = exporter["reload"]
    print(f"\nexporter start to ready: {exporter['start_to_ready_s']:.1f} s; reload to {reload['checks']:,} checks: "
          f"{reload['seconds']:.2f} s (HTTP {reload['status']}: {reload['answer'][:100]}); "
          f"/metrics after it: {exporter['after_reload_scrape_s']:.3f} s")
    if pgw:
        print(f"Pushgateway: {pgw['version']}; filled in {pgw['fill_s']:.1f} s")
    if exporter["scrape"]["problems"]:
        print("exposition problems of the exporter:\n  " + "\n  ".join(exporter["scrape"]["problems"]))
    scrape_p50 = exporter["scrape"]["plain"]["p50_s"]
    print(f"\ntarget: /metrics of {sites:,} sites under {SCRAPE_TARGET_S:g} s (p50, plain): {scrape_p50:.3f} s "
          f"{verdict(scrape_p50 < SCRAPE_TARGET_S and not exporter['scrape']['problems'])}")
    print(f"target: reload to {reload['checks']:,} checks under {RELOAD_TARGET_S:g} s: {reload['seconds']:.2f} s "
          f"{verdict(reload['seconds'] < RELOAD_TARGET_S and reload['status'] == 200)}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure one sitewatch exporter serving a big fleet (/metrics, "
                                                 "idle CPU, reload), beside a Pushgateway serving the same series.")
    parser.add_argument("--sites", type=at_least_one, default=5000, help="sites, one ping check each (default 5000)")
    parser.add_argument("--reload-sites", type=at_least_one, default=10000,
                        help="sites (and checks) of the config the exporter reloads to (default 10000)")
    parser.add_argument("--scrapes", type=at_least_one, default=10, help="scrapes of each kind (default 10)")
    parser.add_argument("--interval", type=positive, default=60.0,
                        help="the checks' interval in seconds (default 60, the config's default)")
    parser.add_argument("--idle-seconds", type=positive, default=60.0,
                        help="how long the idle CPU is measured, per server (default 60)")
    parser.add_argument("--no-pushgateway", action="store_true", help="measure the exporter alone")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    arguments = parser.parse_args()
    if max(arguments.sites, arguments.reload_sites) > MAX_SITES:
        parser.error(f"at most {MAX_SITES:,} sites fit in 127.0.0.0/8 here")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    report: dict = {"machine": machine(), "settings": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(arguments).items()}}
    print(f"machine: {report['machine']['nproc']} CPUs ({report['machine']['cpu_model']}), Python "
          f"{report['machine']['python']}, load {report['machine']['load_average_at_start'][0]:.2f}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="exporter-scrape-") as tmp:
            report["exporter"] = run_exporter(Path(tmp), arguments)
            if not arguments.no_pushgateway:
                report["pushgateway"] = run_pushgateway(Path(tmp), report["exporter"]["scrape"]["text"], arguments)
    except BenchError as err:
        sys.exit(f"exporter_scrape: {err}")
    except KeyboardInterrupt:
        print("\nexporter_scrape: interrupted", file=sys.stderr)
        sys.exit(130)
    print_report(report, arguments)
    if arguments.json:
        for side in ("exporter", "pushgateway"):
            report.get(side, {}).get("scrape", {}).pop("text", None)
        arguments.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"figures written to {arguments.json}")


if __name__ == "__main__":
    main()
