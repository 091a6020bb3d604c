"""An ATOL register (protocol 3.1 over the "v3" transport) on a pseudo-terminal or a loopback TCP port.

`AtolPtySimulator` answers on a pty (`.device` is the path to give pyserial) at its own line speed: bytes
the driver sends at another speed are noise to it and get no answer, and its answers go out at the baud
rate, 10 bits a byte. `AtolTcpSimulator` answers the same frames on 127.0.0.1 (`.url` is
`socket://127.0.0.1:PORT`). An `AtolScenario` sets what the register reports and how it misbehaves;
tests may change it while a simulator runs.

The task buffer keeps each result until the host acks it (C2) or clears the buffer (C4), so a result
can be asked for again (C3). Commands named in `async_commands` are answered "in progress" (A2) and their
result comes later in a packet with id F0 (`A6 TID answer`).

    python -m simulators.atol --pty [--baudrate 57600] [--fn-expiry 2026-01-31] [--unsent 5 ...]
    python -m simulators.atol --tcp 127.0.0.1:5555

`hold_port(device)` opens the pty the way the till's POS program would, so the register reads as busy.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from exporter.kkt import atol_codec as codec
from simulators.mitsu import hold_port
from simulators.ptyline import PtyLine
from simulators.tcpserver import LoopbackTcpServer

__all__ = ["AtolDevice", "AtolPtySimulator", "AtolScenario", "AtolTcpSimulator", "answer", "hold_port"]

# The reference has no error code for an unknown command; 0x01 is this simulator's.
UNKNOWN_COMMAND = 0x01
WRONG_PASSWORD = 0x8C


def _days_from_now(days: float, with_time: bool = False) -> str:
    moment = datetime.now() + timedelta(days=days)
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def command_key(code: bytes) -> str:
    """How scenarios and the command log name a command: '3F', 'A4 30'."""
    return bytes(code).hex(" ").upper()


@dataclass
class AtolScenario:
    """What the simulated register reports, and how it misbehaves. Dates are the register's local time."""

    model_name: str = "Казначей ФА"
    model_id: int = 0x4C
    protocol_version: int = 0x01
    device_type: int = 0x01
    version: bytes = bytes.fromhex("0300002195")  # A5: major, minor, language, build (BCD): "3.0.2195"
    serial: str = "00123456"  # 3F holds 8 BCD digits
    bcd_byte_order: str = "big"  # of the 3F serial, receipt and shift numbers
    password: int = 0  # commands with another password get error 0x8C
    fn_serial: str = "9999078902014447"
    phase: int = 0x03
    flags: int = 0x00
    fn_expiry: str = field(default_factory=lambda: _days_from_now(300))  # YYYY-MM-DD
    registrations_done: int = 1
    registrations_remaining: int = 29
    last_document: int = 80
    last_document_time: str = field(default_factory=lambda: _days_from_now(-0.1, with_time=True))
    unsent: int = 0
    first_unsent_number: int = 78
    first_unsent: str = field(default_factory=lambda: _days_from_now(-0.2, with_time=True))  # YYYY-MM-DD HH:MM
    ofd_connected: bool = True
    registered: bool = True  # False: 3F flag off, zero dates in the ФН answers, as an unregistered unit
    rnm: str = "0000123456029024"  # A4 43 (layout inferred)
    inn: str = "7704849611"
    registration_time: str = "2023-02-10 18:39"
    shift_open: bool = True
    shift_number: int = 42
    receipt_number: int = 12
    mode: int = 0x01  # 3F mode (low nibble) and sub-mode (high nibble)
    timezone: str = "Europe/Moscow"  # the zone the register's clock runs in
    clock_offset: float = 0.0  # seconds the register's clock is ahead of true time
    errors: dict[str, int] = field(default_factory=dict)  # {"A4 30": 0xD4}: that command answers this code
    task_status: dict[str, int] = field(default_factory=dict)  # {"3F": 0xB1}: its ADD gets only this status
    async_commands: set[str] = field(default_factory=set)  # answered A2, result in a later F0 packet; "*": all
    async_delay: float = 0.05  # how long an asynchronous task takes
    lose_async: bool = False  # the F0 packet never comes: only C3 gets the result
    resend_requests: int = 0  # how many of the next packets are answered empty (send it again)
    bad_crc: int = 0  # how many of the next frames go out with a wrong CRC
    bad_crc_after: int = 0  # how many frames go out intact before those
    bad_escape: int = 0  # how many of the next frames go out with a broken escape (FD 01)
    silent: bool = False  # read packets, never answer
    delay: float = 0.0  # seconds before each answer
    garbage: bytes | None = None  # sent instead of every answer
    commands: list[str] = field(default_factory=list)  # each command queued as a task: "3F", "A4 30"
    requests: list[str] = field(default_factory=list)  # each packet: "C4", "C1 3F", "C3", "C2", "" (empty)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# --- command answers -------------------------------------------------------------------------------------

def _moment(text: str) -> tuple[int, int, int, int, int]:
    """'YYYY-MM-DD[ HH:MM]' as YY MM DD hh mm numbers."""
    stamp = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M" if " " in text.strip() else "%Y-%m-%d")
    return stamp.year - 2000, stamp.month, stamp.day, stamp.hour, stamp.minute


def _ok(data: bytes) -> bytes:
    return bytes([codec.ANSWER_OK, 0]) + data


def _error(code: bytes, error: int) -> bytes:
    return bytes([error]) if code == codec.DEVICE_INFO else bytes([codec.ANSWER_OK, error])


def _ascii(text: str, size: int) -> bytes:
    return text.encode(codec.ENCODING)[:size].ljust(size, b" ")


def answer(scenario: AtolScenario, command: bytes) -> tuple[bytes, bool]:
    """The register's answer to one command (password + code + parameters), and whether it is an error."""
    try:
        password, code = codec.split_command(command)
    except codec.ProtocolError:
        return bytes([codec.ANSWER_OK, UNKNOWN_COMMAND]), True
    key = command_key(code)
    with scenario.lock:
        scenario.commands.append(key)
    if password != scenario.password:
        return _error(code, WRONG_PASSWORD), True
    if key in scenario.errors:
        return _error(code, scenario.errors[key]), True
    s = scenario
    registered = s.registered
    if code == codec.DEVICE_INFO:
        return bytes([0, s.protocol_version, s.device_type, s.model_id, 0x10, 0x00]) + bytes(s.version) + \
            s.model_name.encode(codec.ENCODING), False
    if code == codec.DEVICE_STATUS:
        return _device_status(s), False
    if code == codec.FN_SERIAL:
        return _ok(_ascii(s.fn_serial, 16)), False
    if code == codec.FN_STATUS:
        when = _moment(s.last_document_time) if registered else (0, 0, 0, 0, 0)
        return _ok(bytes([s.phase, 0, 0, 1 if s.shift_open else 0, s.flags]) + bytes(when) +
                   _ascii(s.fn_serial, 16) + (s.last_document if registered else 0).to_bytes(4, "little")), False
    if code == codec.FN_VALIDITY:
        expiry = _moment(s.fn_expiry)[:3] if registered else (0, 0, 0)
        return _ok(bytes(expiry) + bytes([s.registrations_remaining, s.registrations_done if registered else 0])), \
            False
    if code == codec.FN_OFD_STATUS:
        waiting = s.unsent > 0
        bits = (codec.OFD_CONNECTED if s.ofd_connected else 0) | (codec.OFD_MESSAGE_PENDING if waiting else 0)
        when = _moment(s.first_unsent) if waiting else (0, 0, 0, 0, 0)
        return _ok(bytes([bits, 0]) + s.unsent.to_bytes(2, "little") +
                   (s.first_unsent_number if waiting else 0).to_bytes(4, "little") + bytes(when)), False
    if code == codec.FN_REGISTRATION:
        if not registered:
            return _error(code, 0xD4), True
        return _ok(bytes(_moment(s.registration_time)) + _ascii(s.inn, 12) + _ascii(s.rnm, 20) +
                   bytes([0x01, 0x00]) + (1).to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")), False
    return _error(code, UNKNOWN_COMMAND), True


def _device_status(s: AtolScenario) -> bytes:
    now = datetime.now(ZoneInfo(s.timezone)) + timedelta(seconds=s.clock_offset)
    flags = codec.FLAG_PAPER
    flags |= codec.FLAG_REGISTERED if s.registered else 0
    flags |= codec.FLAG_SHIFT_OPEN if s.shift_open else 0
    flags |= codec.FLAG_FN_ACTIVATED if s.phase in (0x03, 0x07, 0x0F) else 0
    clock = b"".join(codec.int_to_bcd(value, 1) for value in
                     (now.year - 2000, now.month, now.day, now.hour, now.minute, now.second))
    order = s.bcd_byte_order
    return (bytes([codec.STATUS_ANSWER]) + codec.int_to_bcd(1, 1) + bytes([1]) + clock + bytes([flags]) +
            codec.int_to_bcd(int(s.serial or "0"), 4, order) + bytes([s.model_id, s.version[0], s.version[1]]) +
            bytes([s.mode & 0xFF]) + codec.int_to_bcd(s.receipt_number, 2, order) +
            codec.int_to_bcd(s.shift_number, 2, order) + bytes([0]) + codec.int_to_bcd(0, 5) + bytes([2, 1]))


# --- the task buffer -------------------------------------------------------------------------------------

@dataclass
class _Task:
    answer: bytes
    error: bool
    ready_at: float


class AtolDevice:
    """The register behind the link: the task buffer and the answers. Links (the pty, each TCP connection)
    pass it the data of each packet; it returns the answer's data and any F0 packets to send later."""

    def __init__(self, scenario: AtolScenario):
        self.scenario = scenario
        self.tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()

    def handle(self, data: bytes) -> tuple[bytes | None, list[tuple[float, bytes]]]:
        """(the answer's data, or None for no answer; [(when, data of an F0 packet)])."""
        s = self.scenario
        try:
            request = codec.parse_task_request(data)
        except codec.ProtocolError:
            request = None
        with s.lock:
            label = f"{data[0]:02X}" if data else ""
            if request is not None and request.op in (codec.ADD, codec.ACK_ADD):
                label += " " + command_key(request.command[2:])
            s.requests.append(label)
            if s.resend_requests > 0:
                s.resend_requests -= 1
                return b"", []
        if request is None:
            return codec.task_reply(codec.ILLEGAL_VALUE), []
        with self._lock:
            if request.op == codec.ABORT:
                self.tasks.clear()
                return codec.task_reply(codec.RESULT), []
            if request.op == codec.ACK:
                return codec.task_reply(codec.RESULT if self.tasks.pop(request.tid, None) else codec.NOT_FOUND), []
            if request.op == codec.REQ:
                task = self.tasks.get(request.tid)
                if task is None:
                    return codec.task_reply(codec.NOT_FOUND), []
                if time.monotonic() < task.ready_at:
                    return codec.task_reply(codec.IN_PROGRESS), []
                return codec.task_reply(codec.ERROR if task.error else codec.RESULT, task.answer), []
            if request.op == codec.ACK_ADD:
                self.tasks.pop(request.ack_tid, None)
            return self._add(request)

    def _add(self, request: codec.TaskRequest) -> tuple[bytes, list[tuple[float, bytes]]]:
        s = self.scenario
        if request.tid in self.tasks:
            return codec.task_reply(codec.ALREADY_EXISTS), []
        key = command_key(request.command[2:])
        if key in s.task_status:
            with s.lock:
                s.commands.append(key)
            return codec.task_reply(s.task_status[key]), []
        result, error = answer(s, request.command)
        if "*" in s.async_commands or key in s.async_commands:
            ready_at = time.monotonic() + s.async_delay
            self.tasks[request.tid] = _Task(result, error, ready_at)
            later = [] if s.lose_async else [
                (ready_at, codec.task_reply(codec.ASYNC_ERROR if error else codec.ASYNC_RESULT, result, request.tid))]
            return codec.task_reply(codec.IN_PROGRESS), later
        self.tasks[request.tid] = _Task(result, error, 0.0)
        return codec.task_reply(codec.ERROR if error else codec.RESULT, result), []

    def wire(self, packet_id: int, data: bytes) -> bytes:
        """The bytes that go out for one answer, with the scenario's line faults."""
        s = self.scenario
        if s.garbage is not None:
            return bytes(s.garbage)
        with s.lock:
            corrupt = s.bad_crc > 0 and s.bad_crc_after <= 0
            if corrupt:
                s.bad_crc -= 1
            elif s.bad_crc > 0:
                s.bad_crc_after -= 1
            broken = not corrupt and s.bad_escape > 0
            if broken:
                s.bad_escape -= 1
        frame = codec.encode_frame(packet_id, data, corrupt=corrupt)
        if broken:
            frame = frame[:4] + bytes([codec.ESC, 0x01]) + frame[4:]
        return frame


class _Session:
    """One link to the device: reads the host's frames, answers them, holds F0 packets until they are due."""

    def __init__(self, device: AtolDevice):
        self.device = device
        self.reader = codec.FrameReader(codec.MAX_LENGTH)
        self.scheduled: list[tuple[float, bytes]] = []
        self.last_answers: dict[int, bytes] = {}

    def receive(self, data: bytes) -> list[bytes]:
        self.reader.feed(data)
        out = []
        while True:
            try:
                frame = self.reader.next()
            except codec.ProtocolError:
                continue  # a garbled packet gets no answer; the host sends it again
            if frame is None:
                return out
            if self.device.scenario.silent:
                self.device.handle(frame.data)
                continue
            if not frame.data and frame.packet_id in self.last_answers:
                out.append(self.device.wire(frame.packet_id, self.last_answers[frame.packet_id]))
                continue  # the host asks for the last answer again
            reply, later = self.device.handle(frame.data)
            self.scheduled += later
            if reply is not None:
                self.last_answers[frame.packet_id] = reply
                out.append(self.device.wire(frame.packet_id, reply))

    def due(self, now: float) -> list[bytes]:
        ready = [data for when, data in self.scheduled if when <= now]
        self.scheduled = [(when, data) for when, data in self.scheduled if when > now]
        if self.device.scenario.silent:
            return []
        return [self.device.wire(codec.ASYNC_ID, data) for data in ready]

    def wait(self, longest: float) -> float:
        """How long the link may sleep before the next F0 packet is due."""
        if not self.scheduled:
            return longest
        return max(0.0, min(longest, min(when for when, _ in self.scheduled) - time.monotonic()))


# --- the serial line on a pty ----------------------------------------------------------------------------

class AtolPtySimulator(PtyLine):
    """The register on a pseudo-terminal at `baudrate`; `.device` is the path a driver opens."""

    thread_name = "atol-pty"

    def __init__(self, scenario: AtolScenario | None = None, baudrate: int = 115200):
        super().__init__(baudrate)
        self.scenario = scenario or AtolScenario()
        self._session: _Session | None = None

    def start(self) -> AtolPtySimulator:
        self._session = _Session(AtolDevice(self.scenario))
        return super().start()

    def _next_due(self, longest: float) -> float:
        return self._session.wait(longest)

    def _due(self) -> None:
        for data in self._session.due(time.monotonic()):
            self._send(data)

    def _received(self, data: bytes, arrived: float) -> None:
        # a real line delivers the packet at the baud rate before the register can act on it
        self._sleep_until(arrived + len(data) * self.byte_time)
        replies = self._session.receive(data)
        if replies and self.scenario.delay:
            self._stop.wait(self.scenario.delay)
        for reply in replies:
            self._send(reply)


# --- the network link ------------------------------------------------------------------------------------

class AtolTcpSimulator(LoopbackTcpServer):
    """The register on a loopback TCP port; `.url` is the `socket://` address a driver opens."""

    def __init__(self, scenario: AtolScenario | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port, "atol-tcp")
        self.scenario = scenario or AtolScenario()
        self.device = AtolDevice(self.scenario)

    def _serve(self, conn: socket.socket) -> None:
        session = _Session(self.device)
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], session.wait(0.05))
            try:
                for data in session.due(time.monotonic()):
                    conn.sendall(data)
                if not ready:
                    continue
                data = conn.recv(4096)
                if not data:
                    return  # the driver closed the connection at the end of its poll
                replies = session.receive(data)
                if replies and self.scenario.delay:
                    self._stop.wait(self.scenario.delay)
                for reply in replies:
                    conn.sendall(reply)
            except OSError:
                return


# --- command line ----------------------------------------------------------------------------------------

def _scenario_from(args: argparse.Namespace) -> AtolScenario:
    scenario = AtolScenario()
    if args.fn_expiry:
        scenario.fn_expiry = args.fn_expiry
    if args.unsent is not None:
        scenario.unsent = args.unsent
    if args.first_unsent:
        scenario.first_unsent = args.first_unsent if " " in args.first_unsent else args.first_unsent + " 09:00"
    if args.phase:
        scenario.phase = int(args.phase, 16)
    if args.flags:
        scenario.flags = int(args.flags, 16)
    if args.serial:
        scenario.serial = args.serial
    if args.model:
        scenario.model_name = args.model
    if args.unregistered:
        scenario.registered = False
        scenario.phase = 0x01 if not args.phase else scenario.phase
    scenario.shift_open = not args.shift_closed
    scenario.async_commands = set(args.async_command or [])
    scenario.bad_crc = args.bad_crc
    scenario.resend_requests = args.resend
    scenario.delay = args.delay
    scenario.silent = args.silent
    for item in args.error or []:
        key, _, code = item.partition("=")
        scenario.errors[key.strip().upper()] = int(code, 16)
    return scenario


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.atol", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal; prints its path")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on this TCP address (keep it on 127.0.0.1)")
    parser.add_argument("--baudrate", type=int, default=115200, help="the register's line speed on the pty")
    parser.add_argument("--fn-expiry", metavar="YYYY-MM-DD", help="the ФН's validity date")
    parser.add_argument("--unsent", type=int, help="documents waiting for the OFD")
    parser.add_argument("--first-unsent", metavar="YYYY-MM-DD", help="date of the oldest of them")
    parser.add_argument("--phase", metavar="0x03", help="ФН life phase")
    parser.add_argument("--flags", metavar="0x08", help="ФН warning flags")
    parser.add_argument("--serial", metavar="DIGITS", help="factory number in 3F (up to 8 digits)")
    parser.add_argument("--model", metavar="NAME", help="device name in A5")
    parser.add_argument("--unregistered", action="store_true", help="a unit never registered with the tax office")
    parser.add_argument("--shift-closed", action="store_true", help="report the shift closed")
    parser.add_argument("--async", dest="async_command", action="append", metavar="CMD",
                        help="answer this command (e.g. 'A4 30', or '*') with A2 and an F0 result later")
    parser.add_argument("--error", action="append", metavar="CMD=CODE",
                        help="answer a command with an error code, e.g. 'A4 30=D4'")
    parser.add_argument("--bad-crc", type=int, default=0, metavar="N", help="send the next N frames with a bad CRC")
    parser.add_argument("--resend", type=int, default=0, metavar="N", help="ask for the next N packets again")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="seconds before each answer")
    parser.add_argument("--silent", action="store_true", help="never answer")
    args = parser.parse_args(argv)
    scenario = _scenario_from(args)
    if args.pty:
        simulator: AtolPtySimulator | AtolTcpSimulator = AtolPtySimulator(scenario, args.baudrate).start()
        print(simulator.device, flush=True)
    else:
        host, _, port = args.tcp.rpartition(":")
        simulator = AtolTcpSimulator(scenario, host or "127.0.0.1", int(port)).start()
        print(simulator.url, flush=True)
    stopped = threading.Event()
    # a service manager (or `make demo`) ends it with SIGTERM; a person with Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main()
