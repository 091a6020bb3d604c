"""What the benchmarks share: the programs they start on loopback ports, plain HTTP, and percentiles.

Each program runs in a session of its own, so a Ctrl-C reaches only the benchmark, which then stops the
program by its pid.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_GRACE = 10.0


class BenchError(RuntimeError):
    """A program or the set-up failed in a way that makes the figures meaningless."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """A program on its own loopback port with its log in a file; `start()` waits for its ready page,
    `stop()` (or the end of a `with` block) stops it by its pid."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path, ready_path: str = "/-/ready",
                 env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.ready_path = ready_path
        self.env = env
        self.process: subprocess.Popen | None = None

    def start(self) -> "Service":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.process.returncode}): {self.log_tail()}")
            try:
                if self._ready_status() == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} was not ready within {START_TIMEOUT:g} s: {self.log_tail()}")

    def _ready_status(self) -> int:
        """The status of the ready page; a service that asks for credentials sends them here."""
        return http_get(self.port, self.ready_path, timeout=2)[0]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def child_pids(self) -> list[int]:
        """The service's own child processes (the receiver's delivery process)."""
        found: list[int] = []
        try:
            for children in Path(f"/proc/{self.pid}/task").glob("*/children"):
                found += [int(pid) for pid in children.read_text().split()]
        except OSError:
            pass
        return found

    def status_mib(self, key: str, pid: int | None = None) -> float | None:
        """A /proc/<pid>/status figure in MiB, such as VmHWM (peak RSS), of the service or one of its children."""
        try:
            for line in Path(f"/proc/{pid or self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def cpu_seconds(self, pid: int | None = None) -> float:
        """User and system CPU seconds of the service, or of one of its children."""
        try:
            stat = Path(f"/proc/{pid or self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may itself contain spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self.log_text()[-2000:] or "(no log)"


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 timeout: float = 10.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    return http_request(port, "GET", path, timeout=timeout)


def percentile(values: list[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def find_program(names: tuple[str, ...], missing: str) -> str:
    """The first of `names` on PATH or in /usr/bin or /usr/sbin; exits with `missing` when none is."""
    for name in names:
        found = shutil.which(name) or next((f"{folder}/{name}" for folder in ("/usr/bin", "/usr/sbin")
                                            if Path(f"{folder}/{name}").exists()), None)
        if found:
            return found
    sys.exit(missing)


def first_line(argv: list[str]) -> str:
    """The first line a program prints, such as its --version."""
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    return ((done.stdout or done.stderr).strip().splitlines() or ["?"])[0]


def raise_system_exit(signum: int, _frame) -> None:
    """A SIGTERM handler: an exception, so the finally blocks stop the programs the benchmark started."""
    raise SystemExit(128 + signum)


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value
