"""Telling the running nginx to pick up changed files: SIGHUP to the pid in its pid file.

On SIGHUP nginx checks the new configuration, starts new workers with it and lets the old ones finish
their requests, so no connection is dropped; a configuration it cannot load is logged and the old one
stays in force.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


class ReloadProblem(Exception):
    """nginx was not told, or refused; str() says why."""


def check(nginx_conf: Path, nginx: str = "nginx") -> None:
    """`nginx -t` on the rendered file; ReloadProblem with nginx's own words when it is refused."""
    try:
        result = subprocess.run([nginx, "-t", "-q", "-c", str(nginx_conf)], capture_output=True, text=True,
                                timeout=30)
    except FileNotFoundError:
        raise ReloadProblem(f"{nginx} not found: install nginx (Debian: apt-get install nginx)") from None
    if result.returncode != 0:
        raise ReloadProblem(f"nginx refuses {nginx_conf}: {result.stderr.strip()}")


def running(pid_file: Path) -> int | None:
    """The pid of the nginx `pid_file` names, if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def reload(pid_file: Path, nginx_conf: Path | None = None, nginx: str = "nginx") -> int | None:
    """Signals the nginx whose pid `pid_file` holds, after `nginx -t` on `nginx_conf` accepts the files it
    includes (a refused change would otherwise leave the old config running, silently); None when no
    nginx runs (the files apply at its start)."""
    if nginx_conf is not None and running(pid_file) is not None:
        check(nginx_conf, nginx)
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    if not text:  # `nginx -t` leaves an empty pid file behind: nothing runs
        return None
    try:
        pid = int(text)
    except ValueError:
        raise ReloadProblem(f"{pid_file} does not hold a pid") from None
    if not hasattr(signal, "SIGHUP"):
        raise ReloadProblem("reloading by signal needs a POSIX system: run `nginx -s reload` instead")
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None  # a stale pid file: nothing runs
    except PermissionError:
        raise ReloadProblem(f"not allowed to signal nginx (pid {pid}): run as root or nginx's user") from None
    return pid
