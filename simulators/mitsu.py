"""A Mitsu 1-F register that speaks the real wire protocol, on a pseudo-terminal or a loopback TCP port.

`MitsuPtySimulator` answers framed commands on a pty (`.device` is the path to give pyserial) at its own line
speed: commands sent at another speed are noise to it, and its replies go out at its baud rate, 10 bits a byte.
`MitsuTcpSimulator` answers raw XML on 127.0.0.1 (`.url` is `socket://127.0.0.1:PORT`), splits replies
into 535-byte ETB packets and, as the real unit does, closes the connection after each reply. A
`MitsuScenario` sets what the register reports and how it misbehaves; tests may change it while a
simulator runs.

    python -m simulators.mitsu --pty [--baudrate 9600] [--fn-expiry 2026-01-31] [--unsent 5 ...]
    python -m simulators.mitsu --tcp 127.0.0.1:8200

`hold_port(device)` opens the pty the way the till's POS program would, so the register reads as busy.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import random
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import serial

from exporter.kkt import mitsu_codec as codec
from simulators.ptyline import PtyLine
from simulators.tcpserver import LoopbackTcpServer

# The manual's code for a malformed or unknown command is not in our reference; 1 is this simulator's.
UNKNOWN_COMMAND = 1
PLACEHOLDER_DATE = "2000-00-00"
# The manual gives no inter-byte timeout; 0.5 s of silence inside a frame ends it here, as on Shtrih-M units.
FRAME_GAP = 0.5


def _days_from_now(days: float, with_time: bool = False) -> str:
    moment = datetime.now() + timedelta(days=days)
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


@dataclass
class MitsuScenario:
    """What the simulated register reports, and how it misbehaves. Dates are the register's local time."""

    model: str = "MITSU-1-F"
    model_version: str = "001"  # T1188; empty leaves it out
    serial: str = "065001234567890"
    firmware: str = "1.2.18"
    fn_serial: str = "9999078902014447"
    fn_ffd: str = "1.2"
    ffd_tag: str = "4"  # T1209: 4 = ФФД 1.2
    fn_edition: str = ""  # EDITION of newer firmware, e.g. "ФН-1.2"; empty leaves it out
    fn_expiry: str = field(default_factory=lambda: _days_from_now(300))  # VALID, YYYY-MM-DD
    phase: int = 0x03
    flags: int = 0x00
    registrations_done: int = 3
    registrations_remaining: int = 27
    last_document: int = 80
    last_document_time: str = field(default_factory=lambda: _days_from_now(-0.1, with_time=True))
    unsent: int = 0
    first_unsent_number: int = 78
    first_unsent: str = field(default_factory=lambda: _days_from_now(-0.2, with_time=True))  # YYYY-MM-DD HH:MM
    registered: bool = True  # False: REG='0', T1037='', placeholder dates, as an unregistered unit answers
    registration_number: int = 7
    registration_time: str = "2023-02-10 18:39"
    rnm: str = "0000123456029024"
    inn: str = "7704849611 "  # real units pad INN to 12 characters
    organization: str = ' ООО "Ромашка"'
    address: str = "123456, г.Москва, ул.Ленина, д.1"
    place: str = "Магазин"
    ofd_name: str = "АтласКарт"
    ofd_inn: str = "7714731464"
    shift_state: int = 1  # INFO='0' STATE: 0 closed, 1 open, 9 open over 24 hours
    shift_number: int = 42
    timezone: str = "Europe/Moscow"  # the zone the register's clock runs in
    clock_offset: float = 0.0  # seconds the register's clock is ahead of true time
    errors: dict[str, int | tuple[int, int]] = field(default_factory=dict)  # {"INFO='F'": 69}, or (No, FSE)
    bad_checksum: int = 0  # how many of the next serial replies get a wrong LRC
    silent: bool = False  # read commands, never answer
    delay: float = 0.0  # seconds before each answer
    garbage: bytes | None = None  # sent instead of every answer
    shuffle_attributes: bool = False
    double_quotes: bool = False
    lowercase: bool = False  # <ok dev='…'/>: names in the other case
    no_spaces: bool = False  # <OK FN='…'FFD='…'/>: no space between attributes, as real units send
    keep_connection: bool = False  # network: answer on one connection for ever (real units close after each reply)
    commands: list[str] = field(default_factory=list)  # every command received, in order
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# --- answers ---------------------------------------------------------------------------------------------

_INFO_ALIASES = {"FN": "F", "O": "OFD"}


def _tokens(element: codec.Element) -> dict[str, str]:
    """A command's requests as {NAME: VALUE}, upper-cased, INFO aliases folded ('FN' is 'F')."""
    tokens = {}
    for name, value in element.attrs.items():
        value = value.strip().upper()
        if name == "info":
            value = _INFO_ALIASES.get(value, value)
        tokens[name.upper()] = value
    return tokens


def _configured_error(scenario: MitsuScenario, tokens: dict[str, str]) -> tuple[int, int | None] | None:
    for key, code in scenario.errors.items():
        try:
            wanted = _tokens(codec.parse_element(f"<GET {key}/>"))
        except codec.ProtocolError:
            continue
        if wanted and all(name in tokens and value in ("", "?", tokens[name]) for name, value in wanted.items()):
            return (code, None) if isinstance(code, int) else (code[0], code[1])
    return None


def _render(scenario: MitsuScenario, tag: str, attrs: list[tuple[str, str]],
            children: list[tuple[str, str]] | None = None) -> str:
    quote = '"' if scenario.double_quotes else "'"
    attrs = list(attrs)
    if scenario.shuffle_attributes:
        random.Random(len(scenario.commands)).shuffle(attrs)

    def name(text: str) -> str:
        return text.lower() if scenario.lowercase else text

    def value(text: str) -> str:
        return html.escape(text, quote=False).replace(quote, "&#39;" if quote == "'" else "&quot;")

    pairs = [f"{name(k)}={quote}{value(v)}{quote}" for k, v in attrs]
    head = "<" + name(tag) + (" " + ("" if scenario.no_spaces else " ").join(pairs) if pairs else "")
    if children is None:
        return head + "/>"
    inner = "".join(f"<{name(k)}>{html.escape(v, quote=False)}</{name(k)}>" for k, v in children)
    return f"{head}>{inner}</{name(tag)}>"


def _date_time(text: str, registered: bool = True) -> tuple[str, str]:
    if not registered or not text:
        return PLACEHOLDER_DATE, "00:00"
    date, _, clock = text.partition(" ")
    return date, clock or "00:00"


def answer(scenario: MitsuScenario, command: str) -> str:
    """The register's reply to one command's XML."""
    with scenario.lock:
        scenario.commands.append(command)
    try:
        element = codec.parse_element(command)
    except codec.ProtocolError:
        return _render(scenario, "ERROR", [("No", str(UNKNOWN_COMMAND))])
    tokens = _tokens(element)
    if element.tag != "get":
        return _render(scenario, "ERROR", [("No", str(UNKNOWN_COMMAND)), ("TAG", element.tag.upper())])
    error = _configured_error(scenario, tokens)
    if error is not None:
        code, fse = error
        par = next(iter(tokens), "")
        return _render(scenario, "ERROR", [("No", str(code)), ("FSE", f"0x{fse or 0:02X}"), ("TAG", ""),
                                           ("PAR", par)])
    s = scenario
    if not tokens or "DEV" in tokens:
        return _render(s, "OK", [("DEV", s.model)])
    if "VER" in tokens:
        return _render(s, "OK", [("VER", s.firmware), ("SIZE", "295771"), ("CRC32", "7E714C76"),
                                 ("SERIAL", s.serial), ("MAC", "00-22-00-48-00-51"), ("STS", "00000000")])
    if "DATE" in tokens or "TIME" in tokens:
        now = datetime.now(ZoneInfo(s.timezone)) + timedelta(seconds=s.clock_offset)
        attrs = [("DATE", now.strftime("%Y-%m-%d"))] if "DATE" in tokens else []
        attrs += [("TIME", now.strftime("%H:%M:%S"))] if "TIME" in tokens else []
        return _render(s, "OK", attrs)
    if "REG" in tokens:
        return _registration(s)
    info = tokens.get("INFO")
    if info == "F":
        date, clock = _date_time(s.last_document_time, s.registered)
        attrs = [("FN", s.fn_serial), ("FFD", s.fn_ffd), ("PHASE", f"0x{s.phase:02X}"),
                 ("REG", f"{s.registrations_done if s.registered else 0}|{s.registrations_remaining}"),
                 ("VALID", s.fn_expiry if s.registered else PLACEHOLDER_DATE),
                 ("LAST", str(s.last_document if s.registered else 0)), ("DATE", date), ("TIME", clock),
                 ("FLAG", f"0x{s.flags:02X}")]
        if s.fn_edition:
            attrs.append(("EDITION", s.fn_edition))
        return _render(s, "OK", attrs, [])
    if info == "OFD":
        waiting = s.unsent > 0
        date, clock = _date_time(s.first_unsent, waiting)
        return _render(s, "OK", [("FN", s.fn_serial), ("COUNT", str(s.unsent)),
                                 ("FIRST", str(s.first_unsent_number if waiting else 0)), ("DATE", date),
                                 ("TIME", clock)], [])
    if info == "0":
        return _render(s, "OK", [("SHIFT", str(s.shift_number)), ("STATE", str(s.shift_state)), ("COUNT", "12"),
                                 ("KeyValid", "365")])
    return _render(s, "ERROR", [("No", str(UNKNOWN_COMMAND)), ("PAR", next(iter(tokens), ""))])


def _registration(s: MitsuScenario) -> str:
    registered = s.registered
    date, clock = _date_time(s.registration_time, registered)
    attrs = [("REG", str(s.registration_number if registered else 0)), ("FD", "13" if registered else "0"),
             ("DATE", date), ("TIME", clock), ("BASE", ""), ("T1013", s.serial)]
    if s.model_version:
        attrs.append(("T1188", s.model_version))
    attrs += [("T1189", s.ffd_tag if registered else ""), ("T1190", s.ffd_tag if registered else ""),
              ("T1209", s.ffd_tag if registered else ""), ("T1037", s.rnm if registered else ""),
              ("T1018", s.inn if registered else ""), ("T1017", s.ofd_inn if registered else ""), ("T1036", ""),
              ("T1062", "0,1" if registered else ""), ("MODE", "0"), ("ExtMODE", "0"),
              ("T1041", s.fn_serial if registered else "")]
    children = [("T1048", s.organization), ("T1009", s.address), ("T1187", s.place), ("T1046", s.ofd_name),
                ("T1117", "noreply@ofd.ru"), ("T1060", "www.nalog.gov.ru")]
    if not registered:
        children = [(tag, "") for tag, _ in children]
    return _render(s, "OK", attrs, children)


# --- the serial line on a pty ----------------------------------------------------------------------------

class MitsuPtySimulator(PtyLine):
    """The register on a pseudo-terminal at `baudrate`; `.device` is the path a driver opens."""

    thread_name = "mitsu-pty"

    def __init__(self, scenario: MitsuScenario | None = None, baudrate: int = 115200):
        super().__init__(baudrate)
        self.scenario = scenario or MitsuScenario()
        self._buffer = bytearray()
        self._first_byte_at = 0.0
        self._last_byte_at = 0.0

    def _received(self, data: bytes, arrived: float) -> None:
        if self._buffer and arrived - self._last_byte_at > FRAME_GAP:
            # a frame cut short (or noise that looked like STX and a length) is dropped after a pause, as
            # a unit does, so a stray 0x02 from another vendor's probe cannot swallow the next command
            self._buffer.clear()
        self._last_byte_at = arrived
        if not self._buffer:
            self._first_byte_at = arrived
        self._buffer += data
        while self._buffer:
            command, used = codec.split_command_frame(bytes(self._buffer))
            if used == 0:
                break
            del self._buffer[:used]
            if command is not None:
                # a real line delivers the command at the baud rate before the device can act on it
                self._sleep_until(self._first_byte_at + used * self.byte_time)
                self._reply(command)
            self._first_byte_at = time.monotonic()

    def _reply(self, command: str) -> None:
        scenario = self.scenario
        text = answer(scenario, command)
        if scenario.silent:
            return
        if scenario.delay:
            self._stop.wait(scenario.delay)
        if scenario.garbage is not None:
            self._send(scenario.garbage)
            return
        with scenario.lock:
            corrupt = scenario.bad_checksum > 0
            if corrupt:
                scenario.bad_checksum -= 1
        self._send(codec.reply_frame(text, corrupt=corrupt))


@contextlib.contextmanager
def hold_port(device: str) -> Iterator[serial.Serial]:
    """Holds `device` the way the till's POS program does (an exclusive pyserial handle) while in the block."""
    port = serial.Serial(device, 115200, exclusive=True)
    try:
        yield port
    finally:
        port.close()


# --- the network link ------------------------------------------------------------------------------------

class MitsuTcpSimulator(LoopbackTcpServer):
    """The register on a loopback TCP port; `.url` is the `socket://` address a driver opens.

    Like the real unit, it answers one command per connection and closes the connection after the reply
    (serty2005/mitsu-dto opens a socket per request for that reason); a second command sent on the same
    connection meets a closed socket. `scenario.keep_connection` keeps it open instead.
    """

    def __init__(self, scenario: MitsuScenario | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port, "mitsu-tcp")
        self.scenario = scenario or MitsuScenario()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if not ready:
                continue
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return  # the driver closed the connection at the end of its poll
            buffer += data
            try:
                command = codec.tcp_reply(bytes(buffer))
            except codec.ProtocolError:
                command = bytes(buffer).decode(codec.ENCODING, "replace")
            if command is None:
                continue
            buffer.clear()
            if not self._reply(conn, command):
                return
            if not self.scenario.keep_connection and not self.scenario.silent:
                self._close(conn)
                return

    def _close(self, conn: socket.socket) -> None:
        """Ends the connection as the unit does once its reply is out."""
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self._lock:
            if conn in self._sockets:
                self._sockets.remove(conn)
        conn.close()

    def _reply(self, conn: socket.socket, command: str) -> bool:
        scenario = self.scenario
        text = answer(scenario, command)
        if scenario.silent:
            return True
        if scenario.delay:
            self._stop.wait(scenario.delay)
        message = scenario.garbage if scenario.garbage is not None else text.encode(codec.ENCODING)
        packets = codec.tcp_split(message).split(bytes([codec.ETB]))
        try:
            for index, packet in enumerate(packets):
                last = index == len(packets) - 1
                conn.sendall(packet if last else packet + bytes([codec.ETB]))
                if not last:
                    self._stop.wait(0.002)  # separate packets, so the driver reassembles across reads
        except OSError:
            return False
        return True


# --- command line ----------------------------------------------------------------------------------------

def _scenario_from(args: argparse.Namespace) -> MitsuScenario:
    scenario = MitsuScenario()
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
    if args.unregistered:
        scenario.registered = False
        scenario.phase = 0x01 if not args.phase else scenario.phase
    return scenario


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.mitsu", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal; prints its path")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on this TCP address (keep it on 127.0.0.1)")
    parser.add_argument("--baudrate", type=int, default=115200, help="the register's line speed on the pty")
    parser.add_argument("--fn-expiry", metavar="YYYY-MM-DD", help="the ФН's validity date")
    parser.add_argument("--unsent", type=int, help="documents waiting for the OFD")
    parser.add_argument("--first-unsent", metavar="YYYY-MM-DD", help="date of the oldest of them")
    parser.add_argument("--phase", metavar="0x03", help="ФН life phase")
    parser.add_argument("--flags", metavar="0x08", help="ФН warning flags")
    parser.add_argument("--unregistered", action="store_true", help="a unit never registered with the tax office")
    args = parser.parse_args(argv)
    scenario = _scenario_from(args)
    if args.pty:
        simulator: MitsuPtySimulator | MitsuTcpSimulator = MitsuPtySimulator(scenario, args.baudrate).start()
        print(simulator.device, flush=True)
    else:
        host, _, port = args.tcp.rpartition(":")
        simulator = MitsuTcpSimulator(scenario, host or "127.0.0.1", int(port)).start()
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
