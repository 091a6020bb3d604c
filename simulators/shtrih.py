"""A Shtrih-M register that speaks protocol 1, on a pseudo-terminal or a loopback TCP port.

`ShtrihPtySimulator` answers on a pty (`.device` is the path to give pyserial) at its own line speed, 4800
baud unless told otherwise, as the units ship: bytes sent at another speed are noise to it, and its own go
out at its speed, 10 bits a byte. `ShtrihTcpSimulator`
answers on 127.0.0.1 (`.url` is `socket://127.0.0.1:PORT`) with the same frames and handshake. Both
follow the link layer: ENQ gets NAK when idle and ACK when an answer is pending (which is then sent);
a command frame gets ACK (NAK when its LRC is wrong), then its answer, which is held until the host ACKs it.
A NAK from the host is not answered: the held answer is sent again only after the host's next ENQ (ACK,
then the frame), as the protocol description says. A `ShtrihScenario` sets what the register reports and
how it misbehaves; tests may change it while a simulator runs.

    python -m simulators.shtrih --pty [--baudrate 9600] [--fn-expiry 2026-01-31] [--unsent 5 ...]
    python -m simulators.shtrih --tcp 127.0.0.1:7778 [--stray-ff] [--pending]

`hold_port(device)` (from simulators.mitsu) opens the pty the way the till's POS program would.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from exporter.kkt import shtrih_codec as codec
from simulators.mitsu import hold_port  # noqa: F401  (re-exported for tests and the demo)
from simulators.ptyline import PtyLine
from simulators.tcpserver import LoopbackTcpServer

# Codes this simulator answers with. 0x4F is the wrong-password code of pyshtrih's table; 0x37 "command
# not supported" and 0x33 "bad parameters" come from the same table; 0x02 "wrong ФН state" is the ФН's.
PASSWORD_ERROR = 0x4F
UNSUPPORTED = 0x37
BAD_PARAMETERS = 0x33
WRONG_FN_STATE = 0x02
# A command frame must arrive whole within this long; a real unit drops a partial frame after a pause too.
FRAME_GAP = 0.5


def _days_from_now(days: float, with_time: bool = False) -> str:
    moment = datetime.now() + timedelta(days=days)
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def _parse_moment(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not YYYY-MM-DD [HH:MM]")


@dataclass
class ShtrihScenario:
    """What the simulated register reports, and how it misbehaves. Dates are the register's local time."""

    model_name: str = "ШТРИХ-М-01Ф"
    model_code: int = 0x13
    device_type: int = 0
    device_subtype: int = 0
    serial: str = "0012345678901234"  # table 18 field 1; the long status carries its low 4 bytes
    firmware_version: str = "C1"
    firmware_build: int = 34115
    firmware_date: str = "2023-12-15"
    # 11h "fiscal memory" software date. An unfiscalised unit sends 00 00 00 there instead (reference §10).
    fm_date: str = "2018-05-14"
    fn_serial: str = "9999078902014447"
    fn_expiry: str = field(default_factory=lambda: _days_from_now(300))  # YYYY-MM-DD
    phase: int = 0x03
    flags: int = 0x00
    current_document: int = 0x00
    registrations_done: int = 3
    registrations_remaining: int = 27
    last_document: int = 80
    last_document_time: str = field(default_factory=lambda: _days_from_now(-0.1, with_time=True))
    unsent: int = 0
    first_unsent_number: int = 78
    first_unsent: str = field(default_factory=lambda: _days_from_now(-0.2, with_time=True))  # YYYY-MM-DD HH:MM
    ofd_status: int | None = None  # FF39 status bits; None: b1 "message pending" when something is unsent
    registered: bool = True  # False: FF09 refused, INN not entered, ФН dates and the 11h fiscal-memory date zero
    unregistered_error: int = WRONG_FN_STATE  # what FF09 answers before registration (not confirmed)
    registration_time: str = "2023-02-10 18:39"
    rnm: str = "0000123456029024"
    inn: str = "7704849611"
    ofd_inn: str = "7714731464"
    ffd: str = "1.2"  # FF09 layout: "1.05" the short one, anything else the long 1.1+ one
    tax_systems: int = 0x01
    work_mode: int = 0x00
    mode: int = codec.MODE_SHIFT_OPEN  # long status mode byte: 2 open, 3 open over 24 h, 4 closed
    shift_number: int = 42
    status_serial_high: bool = False  # append the serial's high 2 bytes after the INN in 11h
    unconfirmed_width: int = 2  # FF3F count: 2 or 4 bytes
    unconfirmed: int = 0
    timezone: str = "Europe/Moscow"  # the zone the register's clock runs in
    clock_offset: float = 0.0  # seconds the register's clock is ahead of true time
    password: int = codec.ADMIN_PASSWORD  # the system administrator's: every command but FCh accepts it
    operator_password: int = codec.OPERATOR_PASSWORD  # also accepted by 10h and 11h
    password_error: int = PASSWORD_ERROR  # the code for a wrong password (configurable: not confirmed)
    errors: dict[int, int] = field(default_factory=dict)  # {0xFF01: 0x02}: answer that command with that code
    pending_command: int | None = None  # at start, hold an unread answer to this command (e.g. 0x10)
    stray_ff: bool = False  # TCP: send 0xFF after each ACK from the host
    bad_checksum: int = 0  # how many of the next answer frames (resends included) get a wrong LRC
    reject_frames: int = 0  # how many of the next command frames get NAK, as if garbled on the line
    silent: bool = False  # read everything, answer nothing (not even ENQ)
    no_answer: bool = False  # ACK commands, never send their answers
    delay: float = 0.0  # seconds between a command's ACK and its answer
    garbage: bytes | None = None  # sent instead of every answer frame (after the ACK)
    enq_reply: bytes | None = None  # sent instead of NAK/ACK to every ENQ
    commands: list[int] = field(default_factory=list)  # every command code received, in order
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# --- answers ---------------------------------------------------------------------------------------------

def _now(s: ShtrihScenario) -> datetime:
    return datetime.now(ZoneInfo(s.timezone)).replace(tzinfo=None) + timedelta(seconds=s.clock_offset)


def _day(text: str) -> date | None:
    moment = _parse_moment(text)
    return moment.date() if moment else None


def _serial_number(s: ShtrihScenario) -> int:
    digits = "".join(ch for ch in s.serial if ch.isdigit())
    return int(digits) if digits else 0xFFFFFFFF


def long_status(s: ShtrihScenario) -> bytes:
    """11h data after the error code: the 46-byte layout (48 with the 2 optional serial bytes)."""
    now = _now(s)
    number = _serial_number(s)
    inn = int(s.inn) if s.registered and s.inn.strip().isdigit() else 0xFFFFFFFFFFFF
    data = bytearray()
    data.append(30)  # operator
    data += codec.encode_text(s.firmware_version, 2)
    data += s.firmware_build.to_bytes(2, "little")
    data += codec.encode_dmy(_day(s.firmware_date))
    data.append(1)  # number in the hall
    data += (s.last_document % 0x10000).to_bytes(2, "little")
    data += (0x0002).to_bytes(2, "little")  # flags
    data.append(s.mode)
    data.append(0)  # sub-mode
    data.append(0)  # port
    data += codec.encode_text("00", 2)  # fiscal-memory version
    data += (0).to_bytes(2, "little")
    data += codec.encode_dmy(_day(s.fm_date) if s.registered else None)  # 00 00 00 before fiscalisation
    data += bytes([now.day, now.month, now.year - 2000, now.hour, now.minute, now.second])
    data.append(0)  # fiscal-memory flags
    data += (number & 0xFFFFFFFF).to_bytes(4, "little")
    data += ((s.shift_number - 1) % 0x10000).to_bytes(2, "little")
    data += (0).to_bytes(2, "little")  # free fiscal-memory records
    data.append(s.registrations_done if s.registered else 0)
    data.append(s.registrations_remaining)
    data += inn.to_bytes(6, "little")
    if s.status_serial_high:
        data += ((number >> 32) & 0xFFFF).to_bytes(2, "little")
    return bytes(data)


def fn_status(s: ShtrihScenario) -> bytes:
    shift_open = (s.mode & 0x0F) in (codec.MODE_SHIFT_OPEN, codec.MODE_SHIFT_EXPIRED, codec.MODE_DOCUMENT_OPEN)
    last_time = _parse_moment(s.last_document_time) if s.registered else None
    return (bytes([s.phase, s.current_document, 0, 1 if shift_open else 0, s.flags])
            + codec.encode_ymdhm(last_time) + codec.encode_text(s.fn_serial, 16)
            + (s.last_document if s.registered else 0).to_bytes(4, "little"))


def fn_expiry(s: ShtrihScenario) -> bytes:
    expiry = _day(s.fn_expiry) if s.registered else None
    return codec.encode_ymd(expiry) + bytes([s.registrations_remaining, s.registrations_done if s.registered else 0])


def registration(s: ShtrihScenario) -> bytes:
    data = (codec.encode_ymdhm(_parse_moment(s.registration_time)) + codec.encode_text(s.inn, 12)
            + codec.encode_text(s.rnm, 20) + bytes([s.tax_systems, s.work_mode]))
    if s.ffd != "1.05":  # FFD 1.1+: extended mode and the OFD's INN, then the reason code
        data += bytes([0]) + codec.encode_text(s.ofd_inn, 12) + (0).to_bytes(4, "little")
    return data + (13).to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")  # FD number, fiscal sign


def ofd_status(s: ShtrihScenario) -> bytes:
    waiting = s.unsent > 0
    status = s.ofd_status if s.ofd_status is not None else (0x02 if waiting else 0x00)
    first = _parse_moment(s.first_unsent) if waiting else None
    return (bytes([status, 0]) + s.unsent.to_bytes(2, "little")
            + (s.first_unsent_number if waiting else 0).to_bytes(4, "little") + codec.encode_ymdhm(first))


def device_type(s: ShtrihScenario) -> bytes:
    return bytes([s.device_type, s.device_subtype, 1, 0, s.model_code, 0]) + codec.encode_text(s.model_name)


def short_status(s: ShtrihScenario) -> bytes:
    return bytes([30]) + (0x0002).to_bytes(2, "little") + bytes([s.mode, 0]) + bytes(11)


def _read_table(s: ShtrihScenario, params: bytes) -> tuple[int, bytes]:
    if len(params) != 4:
        return BAD_PARAMETERS, b""
    table, row, number = params[0], int.from_bytes(params[1:3], "little"), params[3]
    if (table, row, number) == (codec.SERIAL_TABLE, codec.SERIAL_ROW, codec.SERIAL_FIELD):
        return 0, codec.encode_text(s.serial, 16, b"\x00")
    return BAD_PARAMETERS, b""


def answer(s: ShtrihScenario, code: int, data: bytes) -> tuple[int, bytes]:
    """The register's (error code, data) for one command, which is recorded in `s.commands`."""
    with s.lock:
        s.commands.append(code)
    return respond(s, code, data)


def respond(s: ShtrihScenario, code: int, data: bytes) -> tuple[int, bytes]:
    """The register's (error code, data) for one command."""
    if code != codec.DEVICE_TYPE:
        accepted = {s.password}
        if code in (codec.SHORT_STATUS, codec.LONG_STATUS):
            accepted.add(s.operator_password)
        if len(data) < 4 or int.from_bytes(data[:4], "little") not in accepted:
            return s.password_error, b""
    if code in s.errors:
        return s.errors[code], b""
    params = data[4:]
    if code == codec.DEVICE_TYPE:
        return 0, device_type(s)
    if code == codec.SHORT_STATUS:
        return 0, short_status(s)
    if code == codec.LONG_STATUS:
        return 0, long_status(s)
    if code == codec.READ_TABLE:
        return _read_table(s, params)
    if code == codec.FN_STATUS:
        return 0, fn_status(s)
    if code == codec.FN_SERIAL:
        return 0, codec.encode_text(s.fn_serial, 16)
    if code == codec.FN_EXPIRY:
        return 0, fn_expiry(s)
    if code == codec.FN_REGISTRATION:
        return (0, registration(s)) if s.registered else (s.unregistered_error, b"")
    if code == codec.OFD_STATUS:
        return 0, ofd_status(s)
    if code == codec.FN_UNCONFIRMED:
        return 0, s.unconfirmed.to_bytes(s.unconfirmed_width, "little")
    return UNSUPPORTED, b""


def answer_frame(s: ShtrihScenario, code: int, data: bytes) -> bytes:
    """The whole (good-LRC) answer frame to one command."""
    error, payload = answer(s, code, data)
    return codec.frame(code, bytes([error]) + payload)


# --- the link layer, shared by both links ----------------------------------------------------------------

class _Register:
    """The unit behind the link: the answer it holds, and counters for tests. Shared by all connections."""

    def __init__(self, scenario: ShtrihScenario):
        self.scenario = scenario
        self.lock = threading.Lock()
        self.pending: bytes | None = None  # the last answer frame, until the host ACKs it
        self.enqs = self.acks = self.naks = self.strays_sent = self.pending_served = 0
        if scenario.pending_command is not None:  # the till's last answer, never collected
            code = scenario.pending_command
            error, payload = respond(scenario, code, codec.password_bytes(scenario.password))
            self.pending = codec.frame(code, bytes([error]) + payload)


class _Session:
    """One link's byte stream: the handshake, frame assembly, ACK/NAK and resends."""

    def __init__(self, register: _Register, send: Callable[[bytes], None], wait: Callable[[float], None],
                 byte_time: float = 0.0, network: bool = False):
        self.register = register
        self.scenario = register.scenario
        self.send = send
        self.wait = wait
        self.byte_time = byte_time
        self.network = network
        self.buffer = bytearray()
        self.first_byte_at = 0.0

    def feed(self, data: bytes) -> None:
        now = time.monotonic()
        if self.buffer and now - self.first_byte_at > FRAME_GAP:
            self.buffer.clear()  # a partial frame left too long: dropped, as a unit drops it
        if not self.buffer:
            self.first_byte_at = now
        self.buffer += data
        while self.buffer:
            byte = self.buffer[0]
            if byte == codec.STX:
                end = codec.frame_end(self.buffer)
                if end is None or len(self.buffer) < end:
                    return
                frame = bytes(self.buffer[:end])
                del self.buffer[:end]
                # a real line delivers the frame at the baud rate before the unit can act on it
                self.wait(self.first_byte_at + end * self.byte_time - time.monotonic())
                self._command(frame)
            else:
                del self.buffer[0]
                self.wait(self.first_byte_at + self.byte_time - time.monotonic())  # a control byte takes its time too
                if byte == codec.ENQ:
                    self._enq()
                elif byte == codec.ACK:
                    self._ack()
                elif byte == codec.NAK:
                    self._nak()
                # anything else is line noise
            self.first_byte_at = time.monotonic()

    def _enq(self) -> None:
        s, r = self.scenario, self.register
        with r.lock:
            r.enqs += 1
            pending = r.pending
        if s.silent:
            return
        if s.enq_reply is not None:
            self.send(s.enq_reply)
            return
        if pending is None:
            self.send(codec.enq_reply(False))
            return
        with r.lock:
            r.pending_served += 1
        self.send(codec.enq_reply(True))
        self._send_answer(pending)

    def _ack(self) -> None:
        r = self.register
        with r.lock:
            r.acks += 1
            r.pending = None
            stray = self.network and self.scenario.stray_ff and not self.scenario.silent
            if stray:
                r.strays_sent += 1
        if stray:
            self.send(bytes([codec.STRAY]))

    def _nak(self) -> None:
        # The host could not read the answer. The unit keeps it but does not send it again on its own: the
        # protocol description (quoted in the docstring of rosix-ru/shtrihm-fr's `BaseKKT`, and in a comment of a
        # PHP driver's `ShtrihM_HiLevel::writecmd`) says an answer that gets NAK is not repeated and the unit
        # waits for ENQ to repeat it. The vendor's Java driver (`PrinterProtocol_1.readAnswer`) and pyshtrih
        # (`Protocol.handle_response`) both follow NAK with ENQ and expect ACK before the frame; neither waits
        # for a resend after the NAK alone, and none of these sources names a model that resends on NAK.
        # So `_enq` below does the resend: ACK, then the held frame.
        r = self.register
        with r.lock:
            r.naks += 1

    def _command(self, frame: bytes) -> None:
        s, r = self.scenario, self.register
        if s.silent:
            try:
                answer(s, *codec.decode_command(frame))  # recorded, never answered
            except codec.ProtocolError:
                pass
            return
        try:
            code, data = codec.decode_command(frame)
        except codec.ProtocolError:
            self.send(bytes([codec.NAK]))  # garbled on the line: the host sends it again
            return
        with s.lock:
            rejected = s.reject_frames > 0
            if rejected:
                s.reject_frames -= 1
        if rejected:
            with s.lock:
                s.commands.append(code)
            self.send(bytes([codec.NAK]))
            return
        self.send(bytes([codec.ACK]))
        reply = answer_frame(s, code, data)
        if s.no_answer:
            return
        if s.delay:
            self.wait(s.delay)
        with r.lock:
            r.pending = reply
        self._send_answer(reply)

    def _send_answer(self, reply: bytes) -> None:
        s = self.scenario
        if s.garbage is not None:
            self.send(s.garbage)
            return
        with s.lock:
            corrupt = s.bad_checksum > 0
            if corrupt:
                s.bad_checksum -= 1
        self.send(reply[:-1] + bytes([reply[-1] ^ 0xFF]) if corrupt else reply)


class _Simulator:
    def __init__(self, scenario: ShtrihScenario | None):
        self.scenario = scenario or ShtrihScenario()
        self.register = _Register(self.scenario)

    @property
    def pending(self) -> bytes | None:
        return self.register.pending

    @property
    def enqs(self) -> int:
        return self.register.enqs

    @property
    def acks(self) -> int:
        return self.register.acks

    @property
    def naks(self) -> int:
        return self.register.naks

    @property
    def strays_sent(self) -> int:
        return self.register.strays_sent

    @property
    def pending_served(self) -> int:
        return self.register.pending_served


# --- the serial line on a pty ----------------------------------------------------------------------------

class ShtrihPtySimulator(_Simulator, PtyLine):
    """The register on a pseudo-terminal at `baudrate`; `.device` is the path a driver opens."""

    thread_name = "shtrih-pty"

    def __init__(self, scenario: ShtrihScenario | None = None, baudrate: int = 4800):
        _Simulator.__init__(self, scenario)
        PtyLine.__init__(self, baudrate)
        self._session: _Session | None = None

    def start(self) -> ShtrihPtySimulator:
        self._session = _Session(self.register, self._send, self._wait, self.byte_time)
        return PtyLine.start(self)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def _received(self, data: bytes, arrived: float) -> None:
        self._session.feed(data)


# --- the network link ------------------------------------------------------------------------------------

class ShtrihTcpSimulator(_Simulator, LoopbackTcpServer):
    """The register on a loopback TCP port; `.url` is the `socket://` address a driver opens."""

    def __init__(self, scenario: ShtrihScenario | None = None, host: str = "127.0.0.1", port: int = 0):
        _Simulator.__init__(self, scenario)
        LoopbackTcpServer.__init__(self, host, port, "shtrih-tcp")

    def _serve(self, conn: socket.socket) -> None:
        closed = threading.Event()

        def send(data: bytes) -> None:
            if closed.is_set():
                return
            try:
                conn.sendall(data)
            except OSError:
                closed.set()

        def wait(seconds: float) -> None:
            if seconds > 0:
                self._stop.wait(seconds)

        session = _Session(self.register, send, wait, network=True)
        while not self._stop.is_set() and not closed.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if not ready:
                continue
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return  # the driver closed the connection at the end of its poll
            session.feed(data)


# --- command line ----------------------------------------------------------------------------------------

def _scenario_from(args: argparse.Namespace) -> ShtrihScenario:
    scenario = ShtrihScenario()
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
    if args.mode is not None:
        scenario.mode = args.mode
    if args.password is not None:
        scenario.password = args.password
    if args.unregistered:
        scenario.registered = False
        scenario.phase = 0x01 if not args.phase else scenario.phase
    scenario.stray_ff = args.stray_ff
    if args.pending:
        scenario.pending_command = codec.SHORT_STATUS
    return scenario


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.shtrih", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal; prints its path")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on this TCP address (keep it on 127.0.0.1)")
    parser.add_argument("--baudrate", type=int, default=4800,
                        help="the register's line speed on the pty (4800 from the factory)")
    parser.add_argument("--fn-expiry", metavar="YYYY-MM-DD", help="the ФН's validity date")
    parser.add_argument("--unsent", type=int, help="documents waiting for the OFD")
    parser.add_argument("--first-unsent", metavar="YYYY-MM-DD", help="date of the oldest of them")
    parser.add_argument("--phase", metavar="0x03", help="ФН life phase")
    parser.add_argument("--flags", metavar="0x08", help="ФН warning flags")
    parser.add_argument("--mode", type=int, help="long status mode: 2 shift open, 3 over 24 h, 4 closed")
    parser.add_argument("--password", type=int, help="the administrator password it accepts (30)")
    parser.add_argument("--unregistered", action="store_true", help="a unit never registered with the tax office")
    parser.add_argument("--stray-ff", action="store_true", help="TCP: send 0xFF after each ACK from the host")
    parser.add_argument("--pending", action="store_true", help="start with an unread answer pending")
    args = parser.parse_args(argv)
    scenario = _scenario_from(args)
    if args.pty:
        simulator: ShtrihPtySimulator | ShtrihTcpSimulator = ShtrihPtySimulator(scenario, args.baudrate).start()
        print(simulator.device, flush=True)
    else:
        host, _, port = args.tcp.rpartition(":")
        simulator = ShtrihTcpSimulator(scenario, host or "127.0.0.1", int(port)).start()
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
