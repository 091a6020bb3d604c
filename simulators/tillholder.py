"""A till's POS program that holds a register's port open without any lock, as many do, and counts every
byte it hears on it: a driver that talks over the till shows up as bytes here.

    python -m simulators.tillholder /dev/pts/7 [--name frontol]

It prints `holding` once the port is open; on SIGTERM it prints how many bytes it received and exits.
`unlocked_holder(device)` runs it as a separate process for a test: `.pid`, `.name`, and `.received`
after the block.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

PR_SET_NAME = 15  # prctl: the name /proc/<pid>/comm shows


class HeldPort:
    """What a test learns of the holder: its pid and name, and after the block the bytes it received."""

    def __init__(self, pid: int, name: str):
        self.pid = pid
        self.name = name
        self.received: int | None = None


@contextlib.contextmanager
def unlocked_holder(device: str, name: str = "frontol") -> Iterator[HeldPort]:
    """Holds `device` open from another process, without a lock, for the duration of the block."""
    process = subprocess.Popen([sys.executable, "-m", "simulators.tillholder", device, "--name", name],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        if line != "holding":
            raise RuntimeError(f"the holder did not open {device}: {line!r}")
        held = HeldPort(process.pid, name)
        yield held
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    held.received = int(output.strip() or -1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.tillholder", description=__doc__.split("\n\n")[0])
    parser.add_argument("device")
    parser.add_argument("--name", default="frontol", help="the program name other processes see")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, args.name.encode()[:15], 0, 0, 0)
    fd = os.open(args.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)  # no flock, no TIOCEXCL: a careless till
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    received = 0
    print("holding", flush=True)
    while not stopped.is_set():
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                received += len(os.read(fd, 4096))
    os.close(fd)
    print(received, flush=True)


if __name__ == "__main__":
    main()
