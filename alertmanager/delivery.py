"""The delivery process: `sitewatch-receiver run` sends to Telegram from a child process of its own.

Composing messages and talking to Telegram is CPU work in Python; in the process that answers webhooks
it holds the interpreter's lock in slices that every webhook then waits behind (a storm's p99 went from
milliseconds to seconds). So the web process only reads webhooks and commits them to the outbox, and a
child started from the same command line and config composes and sends, as the outbox's one sender (its
lease already keeps two processes on one outbox from both sending).

The two talk over a socket pair that the child inherits:

* ``w``: the web process stored new alerts, look now (coalesced: one wake-up covers any number);
* ``m`` + 4-byte sequence number: send your metrics; the child answers with the same number, a 4-byte
  length and the text exposition of its families (Telegram calls, messages sent, commands), which the
  web process appends to its own ``/metrics``;
* end of file: the web process is gone (stopped or killed), so the child drops its lease and exits.

A child that dies is started again (after 1 s, doubling to at most 30 s while it keeps dying), logged once
with its exit status and counted in ``sitewatch_receiver_delivery_restarts_total``.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Callable

from prometheus_client import Counter, Gauge, generate_latest

log = logging.getLogger("sitewatch.receiver")
WAKE = b"w"
METRICS = b"m"
HEADER = struct.Struct(">II")  # sequence number, length
RESTART_FIRST = 1.0
RESTART_MOST = 30.0
METRICS_TIMEOUT = 1.0
# At most this often: a storm's hundreds of wake-ups a second would fill the socket's buffer for nothing.
WAKE_EVERY = 0.01
STOP_TIMEOUT = 10.0


class DeliveryProcess:
    """The web process's side: starts the child, keeps it running, wakes it and reads its metrics."""

    def __init__(self, argv: list[str], metrics_registry):
        self.argv = argv
        self.process: subprocess.Popen | None = None
        self.socket: socket.socket | None = None
        self._lock = threading.Lock()  # one metrics exchange at a time
        self._sequence = 0
        self._woken_at = float("-inf")
        self._complained_at = float("-inf")
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="receiver-delivery-watch", daemon=True)
        self.restarts = Counter("sitewatch_receiver_delivery_restarts",
                                "Times the delivery process (which sends to Telegram) died and was started again.",
                                registry=metrics_registry)
        self.up = Gauge("sitewatch_receiver_delivery_up",
                        "1 when the delivery process answered the last scrape with its metrics.",
                        registry=metrics_registry)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.process = subprocess.Popen([*self.argv, "--control-fd", str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        old, self.socket = self.socket, ours
        if old is not None:
            old.close()
        log.info("event=delivery_started pid=%d", self.process.pid)

    def _watch(self) -> None:
        delay = RESTART_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            status = self.process.wait()
            if self._stopping.is_set():
                return
            self.restarts.inc()
            log.error("event=delivery_exited pid=%d status=%s action=restart_in_%gs", self.process.pid,
                      _status_text(status), delay)
            if self._stopping.wait(delay):
                return
            delay = RESTART_FIRST if time.monotonic() - started > 10 * RESTART_MOST else min(2 * delay, RESTART_MOST)
            self._spawn()

    def wake(self) -> None:
        now = time.monotonic()
        if now - self._woken_at < WAKE_EVERY:
            return  # the wake-up just sent covers this one too: the child scans everything committed by then
        self._woken_at = now
        try:
            self.socket.send(WAKE)
        except (BlockingIOError, OSError):
            pass  # a full buffer holds wake-ups enough; a dead child is being restarted and looks anyway

    def metrics_text(self) -> bytes:
        """The child's exposition, or b"" (and delivery_up 0) when it does not answer in time. A scrape that
        finds another one already waiting for the child does not wait too: a stuck child costs each
        scrape at most METRICS_TIMEOUT, and only one of them."""
        if not self._lock.acquire(blocking=False):
            self.up.set(0)
            return b""
        try:
            self._sequence = (self._sequence + 1) % 2**32
            sequence = self._sequence
            try:
                self.socket.send(METRICS + struct.pack(">I", sequence))
                text = _read_answer(self.socket, sequence, time.monotonic() + METRICS_TIMEOUT)
            except (OSError, TimeoutError) as err:
                now = time.monotonic()
                if now - self._complained_at > 60:  # once a minute, however often it is scraped
                    self._complained_at = now
                    log.warning("event=delivery_metrics_missing error=%r", str(err) or type(err).__name__)
                self.up.set(0)
                return b""
        finally:
            self._lock.release()
        self.up.set(1)
        return text

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        self._stopping.set()
        if self.socket is not None:
            self.socket.close()  # end of file: the child finishes the message in hand and exits
        if self.process is not None:
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _read_answer(sock: socket.socket, sequence: int, deadline: float) -> bytes:
    """Reads answers until the one numbered `sequence`; an older one was a request that timed out."""
    while True:
        got, length = HEADER.unpack(_read_exactly(sock, HEADER.size, deadline))
        text = _read_exactly(sock, length, deadline)
        if got == sequence:
            return text


def _read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise TimeoutError("the delivery process did not answer in time")
        try:
            chunk = sock.recv(count - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise OSError("the delivery process closed its end")
        data += chunk
    return bytes(data)


def _status_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed_by_{signal.Signals(-status).name}"
        except ValueError:
            return f"killed_by_signal_{-status}"
    return f"exit_{status}"


def serve_control(control_fd: int, wake: Callable[[], None], registry, stop: Callable[[], None]) -> None:
    """The child's side, run on a thread of its own: wake-ups, metrics requests, and end of file."""
    sock = socket.socket(fileno=control_fd)
    pending = bytearray()
    while True:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            log.info("event=delivery_stopping reason=web_process_gone pid=%d", os.getpid())
            stop()
            return
        pending += data
        woken = False
        while pending:
            if pending[:1] == WAKE:
                woken = True
                del pending[:1]
            elif pending[:1] == METRICS:
                if len(pending) < 5:
                    break
                sequence = struct.unpack(">I", pending[1:5])[0]
                del pending[:5]
                text = generate_latest(registry)
                sock.sendall(HEADER.pack(sequence, len(text)) + text)
            else:
                log.error("event=delivery_control_garbage byte=%r", bytes(pending[:1]))
                del pending[:1]
        if woken:
            wake()

