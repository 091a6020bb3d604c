"""Checks a fleet of fake Кодекс servers once with sitewatch, and fetches the same monitoring pages with the
curl command the SMART.Status script runs, and prints wall time, CPU time and peak memory of each.

sitewatch does more per server than the script: it reads /sysmon/metrics, opens every catalog's main page
and reads /admin/title (5 requests with the fake server's 3 catalogs), and parses and judges it all.
The script fetches one page and judges nothing. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulators.kodeks import PASSWORD, USERNAME, FakeKodeksServer  # noqa: E402


def write_config(folder: Path, urls: list[str]) -> Path:
    checks = "\n".join(
        f"      - {{name: k{i}, kodeks: {{url: '{url}', username: {USERNAME}, "
        f"password: {{env: BENCH_KODEKS_PASSWORD}}}}}}" for i, url in enumerate(urls))
    path = folder / "fleet.yml"
    path.write_text(f"defaults: {{timeout: 60s, interval: 60s}}\nsites:\n  - id: fleet\n    checks:\n{checks}\n",
                    encoding="utf-8")
    return path


def peak_rss_mib(pid: int, process: subprocess.Popen) -> float:
    """Samples VmHWM while the process runs (wait4's ru_maxrss would include the parent's memory)."""
    peak = 0
    while process.poll() is None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.005)
    return peak / 1024


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss = peak_rss_mib(process.pid, process)
    process.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=100, help="fake servers to check (default 100)")
    args = parser.parse_args()
    servers = [FakeKodeksServer().start() for _ in range(args.servers)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = write_config(Path(folder), [server.url for server in servers])
            env = {**os.environ, "BENCH_KODEKS_PASSWORD": PASSWORD}
            ours = measure([sys.executable, "-m", "exporter.cli", "check", "--config", str(config)], env)
            requests_made = sum(len(server.scenario.requests) for server in servers)
            # SMART.Status: one curl per server, one after the other, as a scheduled .bat runs them.
            script = Path(folder) / "smartstatus.sh"
            script.write_text("\n".join(
                f"curl -s -A smartdownload -k -L -c {folder}/c{i}.txt -b {folder}/c{i}.txt "
                f"-u {USERNAME}:$BENCH_KODEKS_PASSWORD -o {folder}/s{i}.status {server.url}/sysmon/metrics"
                for i, server in enumerate(servers)) + "\n")
            theirs = measure(["sh", str(script)], env)
    finally:
        for server in servers:
            server.stop()
    print(f"{args.servers} fake Kodeks servers on 127.0.0.1, checked once")
    print(f"{'tool':40} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    print(f"{'sitewatch-exporter check (' + str(requests_made) + ' requests)':40} "
          f"{ours[0]:8.2f} {ours[1]:8.2f} {ours[2]:13.1f}")
    print(f"{'curl per server, as SMART.Status (' + str(args.servers) + ')':40} "
          f"{theirs[0]:8.2f} {theirs[1]:8.2f} {'(one curl)':>13}")
    print(f"sitewatch per server: {ours[0] / args.servers * 1000:.1f} ms wall, "
          f"{ours[1] / args.servers * 1000:.1f} ms CPU; curl per server: {theirs[0] / args.servers * 1000:.1f} ms wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
