"""`make bench`: how fast sitewatch pings a fleet, next to fping and prometheus-blackbox-exporter.

For N loopback targets (1,000 and 5,000 unless --sizes says otherwise) it measures, for each tool, the
wall time, the CPU time (user + sys) and the peak resident memory of the process that does the pinging,
and counts the replies, so a fast figure cannot hide lost packets:

  sitewatch  exporter.icmp.engine.PingEngine.ping_many(), 3 packets per target, 200 ms apart, in a fresh
             Python process; wall, CPU and peak RSS cover that whole process (interpreter start-up and
             imports included), and the ping itself is timed separately inside it.
  fping      `fping -q -c 3 -p 200 -i 0`, Debian's fping at its fastest: 3 packets per target, no gap
             between targets.
  blackbox   prometheus-blackbox-exporter with an icmp module, one GET /probe per target, 50 in flight;
             wall time of the whole batch, CPU and peak RSS of the exporter process. It sends ONE packet
             per target per probe, so it does a third of the packets of the other two.

Every packet goes to 127.0.0.0/8 (targets 127.0.X.Y, Y in 1..250) and nowhere else. Needs root: fping
refuses `-i 0` to other users, and blackbox_exporter and the engine use raw ICMP sockets.

    .venv/bin/python bench/ping_fleet.py [--sizes 1000,5000] [--json FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1000, 5000)
COUNT = 3
INTERVAL = 0.2  # seconds between the packets to one target, as fping's -p 200
TIMEOUT = 1.0
HOSTS_PER_BLOCK = 250  # 127.0.X.1 .. 127.0.X.250
MAX_TARGETS = HOSTS_PER_BLOCK * 256
BLACKBOX_IN_FLIGHT = 50
BLACKBOX_CONFIG = """\
modules:
  icmp:
    prober: icmp
    timeout: 2s
    icmp:
      preferred_ip_protocol: ip4
"""
CHILD_TIMEOUT = 300.0  # a run that takes longer than this is broken, not slow
GOAL_SIZE = 5000
GOAL_FPING_FACTOR = 3.0
GOAL_RSS_MIB = 200.0
FPING_CANDIDATES = ("fping",)
BLACKBOX_CANDIDATES = ("prometheus-blackbox-exporter", "blackbox_exporter")


@dataclass
class Result:
    tool: str
    targets: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    received: int
    expected: int
    ping_wall_s: float | None = None  # sitewatch only: ping_many() alone, without interpreter start-up
    ping_cpu_s: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ProcessUsage:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    exit_code: int
    stdout: str
    stderr: str


class BenchError(RuntimeError):
    """A tool failed in a way that makes its figures meaningless."""


# -- targets ----------------------------------------------------------------------------------------

def loopback_targets(n: int) -> list[str]:
    # Linux answers every address of 127.0.0.0/8 itself, so N distinct targets cost no real network.
    if not 0 < n <= MAX_TARGETS:
        raise ValueError(f"between 1 and {MAX_TARGETS} targets fit in 127.0.0.0/16 this way, not {n}")
    return [f"127.0.{i // HOSTS_PER_BLOCK}.{i % HOSTS_PER_BLOCK + 1}" for i in range(n)]


# -- the sitewatch child ----------------------------------------------------------------------------

def child_sitewatch(n: int) -> None:
    """Runs inside the fresh child process: pings N targets and prints what it saw as one JSON line."""
    sys.path.insert(0, str(ROOT))  # measure this working tree even where sitewatch is not pip-installed
    from exporter.icmp.engine import PingEngine

    addresses = loopback_targets(n)
    engine = PingEngine()
    mode = engine.open()
    if mode == "none":
        print(json.dumps({"error": engine.permission_problem or "no ICMP socket"}))
        sys.exit(2)
    engine.start()
    try:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        outcomes = engine.ping_many(addresses, count=COUNT, interval=INTERVAL, timeout=TIMEOUT)
        wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    finally:
        engine.stop()
    print(json.dumps({
        "mode": mode,
        "vmhwm_kib": proc_status_kib(os.getpid(), "VmHWM"),
        "ping_wall_s": wall,
        "ping_cpu_s": cpu,
        "sent": sum(o.sent for o in outcomes),
        "received": sum(o.received for o in outcomes),
        "errors": sum(1 for o in outcomes if o.error),
    }))


# -- measuring a short-lived process ----------------------------------------------------------------

def run_measured(argv: list[str], timeout: float = CHILD_TIMEOUT) -> ProcessUsage:
    """Runs argv to completion and returns its own wall time, CPU time and peak RSS."""
    # CPU comes from wait4, which reports exactly this child. Peak RSS cannot: Linux carries the
    # high-water mark of the memory a child had before exec() (a copy of this Python process) into its
    # ru_maxrss, so a 2 MiB fping would show up as big as this script. VmHWM in /proc/PID/status belongs
    # to the program after exec(), and being a high-water mark, sampling it often enough loses nothing
    # but growth in the last few milliseconds.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        file_actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
        ]
        started = time.perf_counter()
        # posix_spawn returns only once the child has exec()ed, so the first sample is already the tool's.
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=file_actions)
        sampler = HighWaterSampler(pid)
        try:
            wall, status, usage, timed_out = _wait_for_exit(pid, timeout, started)
        finally:
            sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if timed_out:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f} s and was killed")
    return ProcessUsage(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=sampler.peak_kib / 1024,
        exit_code=os.waitstatus_to_exitcode(status),
        stdout=stdout,
        stderr=stderr,
    )


class HighWaterSampler:
    """Follows VmHWM of a running process until stop(), keeping the highest value seen."""

    PERIOD = 0.005

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kib = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vmhwm-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stopping.wait(self.PERIOD):
                return

    def _sample(self) -> None:
        try:
            self.peak_kib = max(self.peak_kib, proc_status_kib(self.pid, "VmHWM"))
        except (OSError, BenchError):
            pass  # exiting: a zombie has no memory left to report

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _wait_for_exit(pid: int, timeout: float, started: float):
    lock = threading.Lock()
    state = {"exited": False, "killed": False}

    def kill_if_still_running() -> None:
        with lock:
            if not state["exited"]:
                os.kill(pid, signal.SIGKILL)
                state["killed"] = True

    timer = threading.Timer(timeout, kill_if_still_running)
    timer.start()
    try:
        # WNOWAIT leaves the child a zombie, so its pid cannot be reused before the timer and the
        # sampler are done with it.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        wall = time.perf_counter() - started
        with lock:
            state["exited"] = True
    except BaseException:
        kill_if_still_running()
        os.wait4(pid, 0)
        raise
    finally:
        timer.cancel()
    _, status, usage = os.wait4(pid, 0)
    return wall, status, usage, state["killed"]


# -- the three tools --------------------------------------------------------------------------------

def measure_sitewatch(n: int) -> Result:
    usage = run_measured([sys.executable, str(Path(__file__).resolve()), "--child-sitewatch", str(n)])
    lines = usage.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    if usage.exit_code != 0 or "error" in report:
        raise BenchError(f"sitewatch child failed ({usage.exit_code}): {report.get('error') or usage.stderr[-2000:]}")
    notes = [f"ICMP socket: {report['mode']}"]
    if report["sent"] != n * COUNT:
        notes.append(f"sent {report['sent']:,}")
    if report["errors"]:
        notes.append(f"{report['errors']} targets reported send errors")
    # The child's own VmHWM, read after the ping, is exact; the sample only adds the shutdown.
    peak_rss_mib = max(usage.peak_rss_mib, report["vmhwm_kib"] / 1024)
    return Result("sitewatch", n, usage.wall_s, usage.cpu_s, peak_rss_mib,
                  received=report["received"], expected=n * COUNT,
                  ping_wall_s=report["ping_wall_s"], ping_cpu_s=report["ping_cpu_s"], notes=notes)


FPING_SUMMARY = re.compile(r"xmt/rcv/%loss = (\d+)/(\d+)/")


def measure_fping(fping: str, targets: list[str]) -> Result:
    with tempfile.NamedTemporaryFile("w", prefix="ping-fleet-", suffix=".txt") as target_file:
        target_file.write("\n".join(targets) + "\n")
        target_file.flush()
        usage = run_measured([fping, "-q", "-c", str(COUNT), "-p", str(int(INTERVAL * 1000)), "-i", "0",
                              "-f", target_file.name])
    if usage.exit_code not in (0, 1):  # 1 only means some target did not answer, which the count shows
        raise BenchError(f"fping failed ({usage.exit_code}): {usage.stderr[-2000:]}")
    summaries = FPING_SUMMARY.findall(usage.stderr)
    if len(summaries) != len(targets):
        raise BenchError(f"fping summarised {len(summaries)} of {len(targets)} targets: {usage.stderr[-2000:]}")
    sent = sum(int(xmt) for xmt, _ in summaries)
    received = sum(int(rcv) for _, rcv in summaries)
    notes = [] if sent == len(targets) * COUNT else [f"fping sent {sent}"]
    return Result("fping", len(targets), usage.wall_s, usage.cpu_s, usage.peak_rss_mib,
                  received=received, expected=len(targets) * COUNT, notes=notes)


def measure_blackbox(blackbox: str, targets: list[str]) -> Result:
    # A fresh exporter per size, so its peak RSS belongs to this batch and not to a bigger earlier one.
    with tempfile.TemporaryDirectory(prefix="ping-fleet-") as workdir:
        config = Path(workdir) / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        port = free_loopback_port()
        log_path = Path(workdir) / "blackbox.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [blackbox, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_answering(process, port, log_path)
            idle_rss_mib = proc_status_kib(process.pid, "VmRSS") / 1024
            cpu_before = proc_cpu_seconds(process.pid)
            client_cpu_before = time.process_time()
            started = time.perf_counter()
            successes = probe_all(port, targets)
            wall = time.perf_counter() - started
            client_cpu = time.process_time() - client_cpu_before
            cpu = proc_cpu_seconds(process.pid) - cpu_before
            peak_rss_mib = proc_status_kib(process.pid, "VmHWM") / 1024
        finally:
            stop_process(process)
    notes = [
        "1 packet per target per probe (the others send 3)",
        f"RSS when idle before the batch: {idle_rss_mib:.1f} MiB",
        f"CPU of this script's HTTP client, not counted above: {client_cpu:.2f} s",
    ]
    return Result("blackbox", len(targets), wall, cpu, peak_rss_mib,
                  received=successes, expected=len(targets), notes=notes)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(process: subprocess.Popen, port: int, log_path: Path, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"blackbox_exporter exited ({process.returncode}): {log_path.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"blackbox_exporter did not answer on 127.0.0.1:{port} within {limit:.0f} s")


def probe_all(port: int, targets: list[str]) -> int:
    """Sends one /probe per target, BLACKBOX_IN_FLIGHT at a time, and counts probe_success 1."""
    local = threading.local()
    connections: list[http.client.HTTPConnection] = []
    connections_lock = threading.Lock()

    def connection() -> http.client.HTTPConnection:
        # One kept-alive connection per worker thread, as a Prometheus server scraping would hold.
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with connections_lock:
                connections.append(local.connection)
        return local.connection

    def probe(target: str) -> bool:
        for attempt in range(2):
            try:
                conn = connection()
                conn.request("GET", f"/probe?module=icmp&target={target}")
                response = conn.getresponse()
                body = response.read().decode()
                return response.status == 200 and re.search(r"^probe_success 1$", body, re.M) is not None
            except (OSError, http.client.HTTPException):
                local.connection.close()
                local.connection = None
                if attempt:
                    raise
        return False

    pool = concurrent.futures.ThreadPoolExecutor(BLACKBOX_IN_FLIGHT)
    try:
        return sum(pool.map(probe, targets))
    finally:
        # On an interruption, drop the probes not yet sent instead of waiting for thousands of them.
        pool.shutdown(wait=True, cancel_futures=True)
        for conn in connections:
            conn.close()


def proc_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may itself contain spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- prerequisites and the machine ------------------------------------------------------------------

def find_tools() -> tuple[str, str]:
    """Returns the paths of fping and blackbox_exporter, or exits saying what is missing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root: fping refuses -i 0 to other users, and the engine and "
                        "blackbox_exporter need raw ICMP sockets")
    fping = next(filter(None, map(shutil.which, FPING_CANDIDATES)), None)
    blackbox = next(filter(None, map(shutil.which, BLACKBOX_CANDIDATES)), None)
    if fping is None:
        problems.append("fping is missing: apt-get install fping")
    if blackbox is None:
        problems.append("blackbox_exporter is missing: apt-get install prometheus-blackbox-exporter")
    if not problems:
        icmp_problem = sitewatch_icmp_problem()
        if icmp_problem:
            problems.append(f"sitewatch cannot open an ICMP socket: {icmp_problem}")
    if problems:
        sys.exit("ping_fleet: cannot measure:\n  - " + "\n  - ".join(problems))
    return fping, blackbox


def sitewatch_icmp_problem() -> str | None:
    sys.path.insert(0, str(ROOT))
    from exporter.icmp.engine import PingEngine

    engine = PingEngine()
    try:
        if engine.open() == "none":
            return engine.permission_problem or "no ICMP socket"
        return None
    finally:
        engine.stop()


def machine_description(fping: str, blackbox: str) -> dict:
    return {
        "cpus": os.cpu_count(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "fping": first_line([fping, "-v"]),
        "blackbox_exporter": first_line([blackbox, "--version"]),
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
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip().splitlines()[0]


# -- reporting --------------------------------------------------------------------------------------

def ratios(results: dict[str, Result]) -> dict[str, float]:
    sitewatch, fping, blackbox = results["sitewatch"], results["fping"], results["blackbox"]
    return {
        "sitewatch_wall_over_fping_wall": sitewatch.wall_s / fping.wall_s,
        "sitewatch_ping_wall_over_fping_wall": sitewatch.ping_wall_s / fping.wall_s,
        "sitewatch_wall_over_blackbox_wall": sitewatch.wall_s / blackbox.wall_s,
        "sitewatch_peak_rss_mib": sitewatch.peak_rss_mib,
    }


def goals(results: dict[str, Result]) -> dict[str, bool]:
    # Whole-process wall time for sitewatch, interpreter start-up included: the stricter comparison.
    sitewatch, fping, blackbox = results["sitewatch"], results["fping"], results["blackbox"]
    return {
        f"within {GOAL_FPING_FACTOR:g}x of fping's wall time": sitewatch.wall_s <= GOAL_FPING_FACTOR * fping.wall_s,
        f"peak RSS under {GOAL_RSS_MIB:g} MiB": sitewatch.peak_rss_mib < GOAL_RSS_MIB,
        "faster than blackbox_exporter": sitewatch.wall_s < blackbox.wall_s,
        "no reply lost": sitewatch.received == sitewatch.expected,
    }


def print_machine(machine: dict) -> None:
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Linux {machine['kernel']}, "
          f"Python {machine['python']}")
    print(f"         {machine['fping']}; {machine['blackbox_exporter']}")


def print_size(n: int, results: dict[str, Result]) -> None:
    print()
    print(f"== {n:,} targets in 127.0.0.0/8, {COUNT} packets each ({n * COUNT:,} echo requests) ==")
    print(f"{'tool':<10} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'replies':>15}")
    for result in results.values():
        print(f"{result.tool:<10} {result.wall_s:>8.2f} {result.cpu_s:>8.2f} {result.peak_rss_mib:>13.1f} "
              f"{f'{result.received:,}/{result.expected:,}':>15}")
    sitewatch = results["sitewatch"]
    print(f"  sitewatch: ping_many() alone {sitewatch.ping_wall_s:.2f} s wall, {sitewatch.ping_cpu_s:.2f} s CPU; "
          f"the rest is interpreter start-up, imports and engine set-up; " + "; ".join(sitewatch.notes))
    for tool in ("fping", "blackbox"):
        if results[tool].notes:
            print(f"  {tool}: " + "; ".join(results[tool].notes))
    figures = ratios(results)
    print(f"  sitewatch wall / fping wall:    {figures['sitewatch_wall_over_fping_wall']:.2f}"
          f"  (ping_many() alone: {figures['sitewatch_ping_wall_over_fping_wall']:.2f})")
    print(f"  sitewatch wall / blackbox wall: {figures['sitewatch_wall_over_blackbox_wall']:.2f}")
    print(f"  sitewatch peak RSS:             {figures['sitewatch_peak_rss_mib']:.1f} MiB")
    label = "targets" if n == GOAL_SIZE else f"targets (set for {GOAL_SIZE:,}; shown for reference)"
    print(f"  {label}:")
    for goal, met in goals(results).items():
        print(f"    {'PASS' if met else 'MISS'}  {goal}")


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    for size in sizes:
        if not 0 < size <= MAX_TARGETS:
            raise argparse.ArgumentTypeError(f"sizes go from 1 to {MAX_TARGETS:,}, not {size}")
    return sizes


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ping N loopback targets with sitewatch, fping and "
                                                 "blackbox_exporter; compare wall time, CPU and peak RSS.")
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="numbers of targets, comma-separated (default: 1000,5000)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the figures to FILE as JSON")
    parser.add_argument("--child-sitewatch", metavar="N", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def raise_system_exit(signum: int, _frame) -> None:
    # Turns SIGTERM into an exception so the finally blocks stop what this script started.
    raise SystemExit(128 + signum)


def main() -> None:
    arguments = parse_arguments()
    if arguments.child_sitewatch is not None:
        child_sitewatch(arguments.child_sitewatch)
        return
    signal.signal(signal.SIGTERM, raise_system_exit)
    fping, blackbox = find_tools()
    machine = machine_description(fping, blackbox)
    print_machine(machine)
    report = {"machine": machine, "count": COUNT, "interval_s": INTERVAL, "sizes": []}
    try:
        for n in arguments.sizes:
            targets = loopback_targets(n)
            results = {
                "sitewatch": measure_sitewatch(n),
                "fping": measure_fping(fping, targets),
                "blackbox": measure_blackbox(blackbox, targets),
            }
            print_size(n, results)
            report["sizes"].append({
                "targets": n,
                "results": [asdict(result) for result in results.values()],
                "ratios": ratios(results),
                "goals": goals(results),
            })
    except BenchError as err:
        sys.exit(f"ping_fleet: {err}")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nfigures written to {arguments.json}")


if __name__ == "__main__":
    main()
