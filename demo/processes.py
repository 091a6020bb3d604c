"""The demo's daemons: started in their own sessions, waited for, and stopped by their own pids.

Each runs in a session of its own, so the Ctrl-C typed into the demo's terminal reaches only the demo,
which then stops them in the reverse order of starting (the pusher before the Pushgateway it pushes to).
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


class StartFailed(RuntimeError):
    """A daemon exited or never became ready; the message holds the end of its log."""


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    def __init__(self, logs: Path):
        self.logs = logs
        self.daemons: list[Daemon] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], *, ready_url: str | None = None, ready_port: int | None = None,
              env: dict | None = None, cwd: Path | None = None, stdout_to_console: bool = False,
              timeout: float = 30) -> Daemon:
        """Starts `args`; with `ready_url`, waits until it answers 200. Its log goes to logs/<name>.log
        (only the standard error when `stdout_to_console`)."""
        log = self.logs / f"{name}.log"
        handle = log.open("w", encoding="utf-8")
        process = subprocess.Popen(args, stdout=None if stdout_to_console else handle,
                                   stderr=handle, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                   start_new_session=True)
        handle.close()  # the child holds its own copy
        daemon = Daemon(name, process, log)
        self.daemons.append(daemon)
        if ready_url:
            _wait(daemon, lambda: _answers(ready_url), f"was not ready at {ready_url}", timeout)
        if ready_port:
            _wait(daemon, lambda: _listens(ready_port), f"did not listen on 127.0.0.1:{ready_port}", timeout)
        return daemon

    def exited(self) -> list[Daemon]:
        return [d for d in self.daemons if d.process.poll() is not None]

    def stop_all(self, grace: float = 10) -> list[str]:
        """Stops every daemon, newest first: SIGTERM, then SIGKILL after `grace` seconds. Returns the
        names of those that had to be killed."""
        killed = []
        for daemon in reversed(self.daemons):
            if daemon.process.poll() is None:
                daemon.process.terminate()
                try:
                    daemon.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    daemon.process.kill()
                    daemon.process.wait()
                    killed.append(daemon.name)
        self.daemons.clear()
        return killed


def _wait(daemon: Daemon, ready, failure: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise StartFailed(f"{daemon.name} exited with {daemon.process.returncode}:\n{daemon.tail()}")
        if ready():
            return
        time.sleep(0.2)
    raise StartFailed(f"{daemon.name} {failure} after {timeout:g}s:\n{daemon.tail()}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
