"""The ping engine: one thread and one ICMP socket per address family serve every ping in the process.

It works the way fping does: requests for all targets go out from one socket on a shared timetable,
replies are matched back to their target by sequence number and source address, and per-packet deadlines
sit in one heap. Thousands of targets therefore cost one thread, two sockets and a table entry per packet
in flight, not a socket or a task per target.

Sockets are opened through icmplib: unprivileged datagram ICMP where the OS allows it (Linux with
``net.ipv4.ping_group_range``, macOS), raw sockets otherwise (root, CAP_NET_RAW, Administrator).
"""

from __future__ import annotations

import errno
import functools
import heapq
import ipaddress
import itertools
import logging
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPLibError, SocketPermissionError

from exporter.icmp.packets import EchoCodec

log = logging.getLogger(__name__)

PERMISSION_HINT = (
    "ICMP needs privileges here: run as root (Administrator on Windows), or give the Python "
    "interpreter CAP_NET_RAW (setcap cap_net_raw+ep $(readlink -f $(which python3))), or allow "
    "unprivileged ping for the service's group with sysctl net.ipv4.ping_group_range='0 2147483647'"
)
_RECEIVE_BUFFER = 16 * 1024 * 1024
_SEND_BATCH = 256  # requests sent before replies are drained again, so the receive buffer never floods
# A request due within this many seconds goes out with those due now: thousands of targets then cost one
# wake-up of this thread per few requests, not one each. Never more than a tenth of the job's interval, so
# the requests to one target stay as far apart as configured, give or take 10 %.
_SEND_SLACK = 0.01
_RECEIVE_BATCH = 4096
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_ICMP_FILTER = 1  # Linux raw ICMP sockets: a bit mask of the types to drop
_SOL_RAW = 255
_ICMP6_FILTER = 1


@dataclass
class PingOutcome:
    """What one ping of `count` packets to one address came to."""

    address: str
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)
    error: str | None = None  # a send error such as "network unreachable", or a permission problem
    permission_denied: bool = False

    @property
    def loss_ratio(self) -> float:
        return 1.0 if self.sent == 0 else (self.sent - self.received) / self.sent


@functools.lru_cache(maxsize=65536)
def _address_family(address: str) -> tuple[str, int]:
    """The normal form and family of an IP literal; cached, as every ping check asks again for its address."""
    ip = ipaddress.ip_address(address)
    return str(ip), socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class _Job:
    __slots__ = ("outcome", "family", "count", "interval", "timeout", "callback", "next_index", "in_flight")

    def __init__(self, address: str, family: int, count: int, interval: float, timeout: float,
                 callback: Callable[[PingOutcome], None]):
        self.outcome = PingOutcome(address)
        self.family = family
        self.count = count
        self.interval = interval
        self.timeout = timeout
        self.callback = callback
        self.next_index = 0
        self.in_flight = 0


class _FamilySocket:
    """One ICMP socket with its codec, opened through icmplib."""

    def __init__(self, family: int, prefer_unprivileged: bool):
        opener = ICMPv4Socket if family == socket.AF_INET else ICMPv6Socket
        attempts = (False, True) if prefer_unprivileged else (True, False)
        last_error: Exception | None = None
        for privileged in attempts:
            try:
                self._icmplib_socket = opener(privileged=privileged)
                break
            except SocketPermissionError as err:
                last_error = err
            except ICMPLibError as err:  # e.g. no IPv6 on this host
                last_error = err
        else:
            raise PermissionError(PERMISSION_HINT) if isinstance(last_error, SocketPermissionError) \
                else OSError(str(last_error))
        self.sock: socket.socket = self._icmplib_socket.sock
        self.privileged = self._icmplib_socket.is_privileged
        self.sock.setblocking(False)
        self._grow_receive_buffer()
        if self.privileged:
            self._filter_echo_replies(family)
        ident = random.randrange(1, 0xFFFF)  # random, so parallel pingers and SNAT sessions do not clash
        if not self.privileged and sys.platform.startswith("linux"):
            ident = 0  # the kernel sets the identifier of datagram ICMP sockets and filters replies itself
        self.codec = EchoCodec(family, ident, ip_header_included=self.privileged)
        self.check_ident = self.privileged

    def _grow_receive_buffer(self) -> None:
        for option in (_SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, _RECEIVE_BUFFER)
                return
            except OSError:
                continue

    def _filter_echo_replies(self, family: int) -> None:
        # A raw socket sees every ICMP packet the host receives; let the kernel drop all but echo replies.
        if not sys.platform.startswith("linux"):
            return
        try:
            if family == socket.AF_INET:
                self.sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", ~(1 << 0) & 0xFFFFFFFF))
            else:
                blocked = bytearray(b"\xff" * 32)  # ICMP6_FILTER: a set bit blocks that type
                blocked[129 >> 3] &= ~(1 << (129 & 7)) & 0xFF
                self.sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, bytes(blocked))
        except OSError:
            pass

    def close(self) -> None:
        self._icmplib_socket.close()


class PingEngine:
    """Multiplexes echo requests for any number of targets over one socket per address family."""

    def __init__(self, prefer_unprivileged: bool = True):
        self._prefer_unprivileged = prefer_unprivileged
        self._sockets: dict[int, _FamilySocket] = {}
        self._socket_errors: dict[int, Exception] = {}
        self._incoming: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._send_heap: list[tuple[float, int, _Job]] = []
        self._deadline_heap: list[tuple[float, int, int]] = []
        self._in_flight: dict[tuple[int, int], tuple[_Job, float]] = {}
        self._order = itertools.count()
        self._next_sequence = random.randrange(0, 0x10000)
        self._thread: threading.Thread | None = None
        self._running = False

    # -- set-up -------------------------------------------------------------------------------------

    def open(self) -> str:
        """Opens the IPv4 socket now, so start-up can report the ICMP mode or what is missing."""
        sock = self._socket(socket.AF_INET)
        if sock is None:
            return "none"
        return "raw" if sock.privileged else "unprivileged"

    @property
    def permission_problem(self) -> str | None:
        error = self._socket_errors.get(socket.AF_INET)
        return str(error) if isinstance(error, PermissionError) else None

    def _socket(self, family: int) -> _FamilySocket | None:
        if family in self._sockets:
            return self._sockets[family]
        if family in self._socket_errors:
            return None
        try:
            self._sockets[family] = _FamilySocket(family, self._prefer_unprivileged)
        except OSError as err:
            self._socket_errors[family] = err
            return None
        return self._sockets[family]

    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="ping-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._wake_read.close()
        self._wake_write.close()

    # -- submitting ---------------------------------------------------------------------------------

    def ping(self, address: str, count: int, interval: float, timeout: float,
             callback: Callable[[PingOutcome], None]) -> None:
        """Queues `count` echo requests to `address` (an IP literal); `callback` gets the outcome.

        The callback runs on the engine's thread and must return quickly.
        """
        normal, family = _address_family(address)
        job = _Job(normal, family, count, interval, timeout, callback)
        with self._lock:
            # One wake-up (a syscall) per batch: if jobs are queued already, the engine has been woken for
            # them and takes this one with them.
            wake = not self._incoming
            self._incoming.append(job)
        if wake:
            self._wake()

    def ping_many(self, addresses: list[str], count: int, interval: float, timeout: float) -> list[PingOutcome]:
        """Pings every address at once and waits for all outcomes (for one-shot runs and benchmarks)."""
        done = threading.Event()
        outcomes: dict[int, PingOutcome] = {}
        remaining = [len(addresses)]
        guard = threading.Lock()

        def collect(index: int) -> Callable[[PingOutcome], None]:
            def store(outcome: PingOutcome) -> None:
                outcomes[index] = outcome
                with guard:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
            return store

        if not addresses:
            return []
        for index, address in enumerate(addresses):
            self.ping(address, count, interval, timeout, collect(index))
        done.wait()
        return [outcomes[i] for i in range(len(addresses))]

    def _wake(self) -> None:
        try:
            self._wake_write.send(b"\x00")
        except (BlockingIOError, OSError):
            pass  # already awake, or stopping

    # -- the loop -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while self._running:
            self._accept_new_jobs()
            now = time.monotonic()
            self._send_due(now)
            self._expire(time.monotonic())
            self._wait_and_receive()

    def _accept_new_jobs(self) -> None:
        with self._lock:
            jobs, self._incoming = self._incoming, deque()
        now = time.monotonic()
        for job in jobs:
            if self._socket(job.family) is None:
                error = self._socket_errors[job.family]
                job.outcome.error = str(error)
                job.outcome.permission_denied = isinstance(error, PermissionError)
                self._finish(job)
                continue
            heapq.heappush(self._send_heap, (now, next(self._order), job))

    def _send_due(self, now: float) -> None:
        sent = 0
        while self._send_heap:
            due, _, job = self._send_heap[0]
            if due > now + min(_SEND_SLACK, job.interval * 0.1):
                break
            heapq.heappop(self._send_heap)
            self._send_one(job)
            sent += 1
            if sent % _SEND_BATCH == 0:
                self._receive_all()
                now = time.monotonic()

    def _send_one(self, job: _Job) -> None:
        family_socket = self._sockets[job.family]
        sequence = self._allocate_sequence(job.family)
        if sequence is None:  # 65,536 requests already in flight on this family: try again shortly
            heapq.heappush(self._send_heap, (time.monotonic() + 0.01, next(self._order), job))
            return
        packet = family_socket.codec.request(sequence)
        try:
            sent_at = time.perf_counter()
            family_socket.sock.sendto(packet, (job.outcome.address, 0))
        except (BlockingIOError, InterruptedError):
            heapq.heappush(self._send_heap, (time.monotonic() + 0.001, next(self._order), job))
            return
        except OSError as err:
            if err.errno == errno.ENOBUFS:
                heapq.heappush(self._send_heap, (time.monotonic() + 0.001, next(self._order), job))
                return
            job.outcome.error = os.strerror(err.errno) if err.errno else str(err)
            sent_at = None
        job.outcome.sent += 1
        job.next_index += 1
        if sent_at is not None:
            self._in_flight[(job.family, sequence)] = (job, sent_at)
            heapq.heappush(self._deadline_heap, (time.monotonic() + job.timeout, job.family, sequence))
            job.in_flight += 1
        if job.next_index < job.count:
            heapq.heappush(self._send_heap, (time.monotonic() + job.interval, next(self._order), job))
        elif job.in_flight == 0:
            self._finish(job)

    def _allocate_sequence(self, family: int) -> int | None:
        for _ in range(0x10000):
            sequence = self._next_sequence
            self._next_sequence = (sequence + 1) & 0xFFFF
            if (family, sequence) not in self._in_flight:
                return sequence
        return None

    def _expire(self, now: float) -> None:
        heap = self._deadline_heap
        while heap and heap[0][0] <= now:
            _, family, sequence = heapq.heappop(heap)
            entry = self._in_flight.pop((family, sequence), None)
            if entry is not None:
                self._settle(entry[0])

    def _settle(self, job: _Job) -> None:
        job.in_flight -= 1
        if job.in_flight == 0 and job.next_index >= job.count:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        try:
            job.callback(job.outcome)
        except Exception:  # a broken callback must not stop pings for everyone else
            log.exception("event=ping_callback_failed address=%s", job.outcome.address)

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        candidates = [1.0]
        if self._send_heap:
            candidates.append(self._send_heap[0][0] - now)
        if self._deadline_heap:
            candidates.append(self._deadline_heap[0][0] - now)
        return max(0.0, min(candidates))

    def _wait_and_receive(self) -> None:
        readable_sockets = [s.sock for s in self._sockets.values()]
        try:
            readable, _, _ = select.select(readable_sockets + [self._wake_read], [], [], self._next_wakeup())
        except OSError:
            return
        if self._wake_read in readable:
            try:
                while self._wake_read.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        if len(readable) > (self._wake_read in readable):
            self._receive_all()

    def _receive_all(self) -> None:
        for family, family_socket in self._sockets.items():
            sock, codec = family_socket.sock, family_socket.codec
            for _ in range(_RECEIVE_BATCH):
                try:
                    packet, source = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. an ICMP error queued on the socket; the deadline accounts for the packet
                received_at = time.perf_counter()
                parsed = codec.parse_reply(packet)
                if parsed is None:
                    continue
                ident, sequence = parsed
                if family_socket.check_ident and ident != codec.ident:
                    continue  # another pinger's reply, seen because raw sockets see everything
                entry = self._in_flight.get((family, sequence))
                if entry is None or entry[0].outcome.address != source[0]:
                    continue
                del self._in_flight[(family, sequence)]
                job, sent_at = entry
                job.outcome.received += 1
                job.outcome.rtts.append(received_at - sent_at)
                self._settle(job)
