"""Reads a Mitsu 1-F register's state and its ФН's over a serial port or the network: `read_state`.

Seven GET commands (DEV, VER, REG, INFO='F', INFO='OFD', DATE/TIME, INFO='0'): on a serial port opened for
this poll only, at the configured speed or the first of the vendor's speeds that answers; over the network on
a connection of their own each, since the register closes the connection after every reply. Replies are
parsed by attribute name, since the order and spacing differ between firmware builds.
Everything that goes wrong comes out as a `KktError` with a fixed reason: those of `transport`, and
``timeout``, ``protocol``, ``device_error`` and ``disconnected``.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import serial

from exporter.kkt import mitsu_codec as codec
from exporter.kkt import speeds, transport
from exporter.kkt.model import FFD_BY_TAG_1209, FiscalDrive, KktError, KktState, local_timestamp

DEV = "<GET DEV='?'/>"
VER = "<GET VER='?'/>"
REG = "<GET REG='?'/>"
FN = "<GET INFO='F'/>"
OFD = "<GET INFO='OFD'/>"
CLOCK = "<GET DATE='?' TIME='?'/>"
SHIFT = "<GET INFO='0'/>"

# The manual's Appendix 1, for the codes a state read can meet.
ERROR_MEANINGS = {
    20: "shift open", 21: "shift closed", 26: "documents not yet confirmed by the OFD",
    38: "shift time expired", 40: "ФН error while reading counters", 69: "ФН not ready or absent",
    70: "ФН response timeout", 418: "ФН resource exhausted", 420: "ФН resource limit reached",
    422: "shift duration exceeded", 500: "no paper", 501: "printer cover open", 506: "paper near end",
    600: "real-time clock error", 601: "real-time clock error", 602: "real-time clock error",
}
# What the ФН itself answered (the FSE attribute), from the ФН protocol.
FN_ERROR_MEANINGS = {
    0x01: "unknown command or bad format", 0x02: "wrong ФН state", 0x03: "ФН failure", 0x04: "crypto module failure",
    0x05: "ФН lifetime ended", 0x06: "ФН archive full", 0x07: "wrong date/time", 0x08: "no data",
    0x09: "bad parameters", 0x10: "TLV too large", 0x11: "no transport connection",
    0x12: "crypto module resource exhausted", 0x14: "storage resource exhausted",
    0x15: "documents waited too long for the OFD (30-day block)", 0x16: "shift over 24 hours",
    0x17: "wrong time difference between operations", 0x20: "OFD message cannot be accepted",
}
SHIFT_EXPIRED = 9  # INFO='0' STATE: the shift has been open over 24 hours
# Each read returns as soon as a byte is there, or after this long, so the deadlines are checked often
# without changing the port's timeout (a reconfiguration of the serial line) before every read.
READ_SLICE = 0.05


def error_meaning(code: int) -> str:
    if code in ERROR_MEANINGS:
        return ERROR_MEANINGS[code]
    if 500 <= code <= 511:
        return "printer fault"
    return "not in the manual's table"


class _Link:
    """The poll's deadlines and one way to reach the register: sends a command, returns its reply, or raises
    KktError. `_SerialLink` and `_NetworkLink` say how the bytes travel."""

    def __init__(self, port: str, deadline: float, command_timeout: float, timeout: float):
        self.port = port
        self.deadline = deadline
        self.command_timeout = command_timeout
        self.timeout = timeout

    def ask(self, command: str, optional: bool = False) -> codec.Reply | None:
        """The reply to `command`; None for an ERROR to an `optional` command."""
        try:
            text = self._exchange(command)
        except codec.ChecksumError:
            # a line fault; the device answers the same command again (the manual does not define the
            # reply checksum, so one resend rather than failing on a single corrupted byte)
            try:
                text = self._exchange(command)
            except codec.ChecksumError as err:
                raise KktError("protocol", f"MITSU on {self.port} answered {command} with a bad checksum twice "
                                           f"({err})") from None
        try:
            reply = codec.parse_reply(text)
        except codec.ProtocolError as err:
            raise KktError("protocol", f"MITSU on {self.port} answered {command} with something that is not a "
                                       f"Mitsu reply ({err}): {text[:60]!r}") from None
        if reply.ok:
            return reply
        if optional:
            return None
        code = reply.error_code
        message = f"MITSU on {self.port} answered {command} with error {code}: {error_meaning(code)}"
        fse = _hex(reply.fse)
        if fse:  # 0x00 means the ФН had nothing to add
            message += f" (ФН code 0x{fse:02X}: {FN_ERROR_MEANINGS.get(fse, 'unknown')})"
        raise KktError("device_error", message)

    def _exchange(self, command: str) -> str:
        raise NotImplementedError

    def _timed_out(self, command: str, received: int) -> KktError:
        return KktError("timeout", f"MITSU on {self.port}: reading the state took over {self.timeout:g}s "
                                   f"(stopped at {command}, {received} bytes of its reply)")

    def _silent(self, command: str, received: int) -> KktError:
        if received:
            return KktError("timeout", f"MITSU on {self.port} stopped answering {command} after {received} bytes "
                                       f"(nothing more for {self.command_timeout:g}s)")
        return KktError("timeout", f"MITSU on {self.port} did not answer {command} within {self.command_timeout:g}s")

    def _not_a_reply(self, err: codec.ProtocolError, buffer: bytes) -> KktError:
        return KktError("protocol", f"MITSU on {self.port} sent something that is not a Mitsu reply ({err}): "
                                    f"{bytes(buffer[:40])!r}")


class _SerialLink(_Link):
    """A COM or USB port held open for the whole poll: framed commands, replies ending in ETX and LRC."""

    def __init__(self, port_object: serial.SerialBase, port: str, deadline: float, command_timeout: float,
                 timeout: float):
        super().__init__(port, deadline, command_timeout, timeout)
        self.port_object = port_object

    def _exchange(self, command: str) -> str:
        try:
            self.port_object.reset_input_buffer()  # nothing late from an earlier command may pass as this reply
            self.port_object.write(codec.command_frame(command))
        except serial.SerialTimeoutException:
            raise KktError("timeout", f"MITSU on {self.port}: could not send {command} within "
                                      f"{self.port_object.write_timeout:g}s") from None
        except (serial.SerialException, OSError) as err:
            raise KktError("disconnected", f"MITSU on {self.port} went away while sending {command}: "
                                           f"{err}") from None
        buffer = bytearray()
        quiet_until = time.monotonic() + self.command_timeout
        while True:
            text = self._reply_in(buffer)
            if text is not None:
                return text
            now = time.monotonic()
            if now >= self.deadline:
                raise self._timed_out(command, len(buffer))
            if now >= quiet_until:
                if buffer and not codec.could_be_reply_start(bytes(buffer)):
                    raise KktError("protocol", f"MITSU on {self.port} sent {len(buffer)} bytes that are not a Mitsu "
                                               f"reply to {command} (wrong baud rate?): {bytes(buffer[:40])!r}")
                raise self._silent(command, len(buffer))
            try:
                chunk = self.port_object.read(max(1, self.port_object.in_waiting))
            except (serial.SerialException, OSError) as err:
                raise KktError("disconnected", f"MITSU on {self.port} went away while answering {command}: "
                                               f"{err}") from None
            if chunk:
                buffer += chunk
                quiet_until = time.monotonic() + self.command_timeout
            if len(buffer) > codec.MAX_REPLY + 2:
                raise KktError("protocol", f"MITSU on {self.port} sent over {codec.MAX_REPLY} bytes for "
                                           f"{command} without ending the reply")

    def _reply_in(self, buffer: bytearray) -> str | None:
        end = codec.serial_reply_end(buffer)
        if end is None:
            return None
        try:
            return codec.decode_serial_reply(buffer[:end])
        except codec.ChecksumError:
            raise
        except codec.ProtocolError as err:
            raise self._not_a_reply(err, buffer) from None


class _NetworkLink(_Link):
    """A networked register: one TCP connection per command, which the register closes after its reply
    (serty2005/mitsu-dto does the same; a second command on one connection meets "connection reset").
    A reply is whole when its root element is, or when the register closes the connection after it."""

    def _exchange(self, command: str) -> str:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out(command, 0)
        with transport.connect(self.port, min(self.command_timeout, remaining)) as sock:
            sock.setblocking(False)
            try:
                sock.sendall(codec.tcp_split(command.encode(codec.ENCODING)))
            except BlockingIOError:
                raise KktError("timeout", f"MITSU on {self.port} took no command {command}") from None
            except OSError as err:
                raise KktError("disconnected", f"MITSU on {self.port} closed the connection before taking "
                                               f"{command}: {err}") from None
            return self._read_reply(sock, command)

    def _read_reply(self, sock: socket.socket, command: str) -> str:
        buffer = bytearray()
        quiet_until = time.monotonic() + self.command_timeout
        while True:
            try:
                text = codec.tcp_reply(buffer)
            except codec.ProtocolError as err:
                raise self._not_a_reply(err, buffer) from None
            if text is not None:
                return text
            now = time.monotonic()
            if now >= self.deadline:
                raise self._timed_out(command, len(buffer))
            if now >= quiet_until:
                raise self._silent(command, len(buffer))
            ready, _, _ = select.select([sock], [], [], max(0.0, min(quiet_until, self.deadline) - now))
            if not ready:
                continue
            try:
                chunk = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                chunk = b""  # a reset after the reply is the register's way of closing; judged below
                reset = err
            else:
                reset = None
            if not chunk:
                return self._at_close(buffer, command, reset)
            buffer += chunk
            quiet_until = time.monotonic() + self.command_timeout
            if len(buffer) > codec.MAX_REPLY + codec.MAX_REPLY // codec.TCP_CHUNK + 1:
                raise KktError("protocol", f"MITSU on {self.port} sent over {codec.MAX_REPLY} bytes for "
                                           f"{command} without ending the reply")

    def _at_close(self, buffer: bytearray, command: str, reset: OSError | None) -> str:
        """The reply once the register has closed the connection: what came must be a whole reply."""
        if not buffer:
            why = f" ({reset})" if reset else ""
            raise KktError("disconnected", f"MITSU on {self.port} closed the connection without answering "
                                           f"{command}{why}")
        try:
            return codec.decode_tcp_reply(buffer)
        except codec.IncompleteError:
            raise KktError("protocol", f"MITSU on {self.port} closed the connection in the middle of its reply "
                                       f"to {command} after {len(buffer)} bytes: {bytes(buffer[:40])!r}") from None
        except codec.ProtocolError as err:
            raise self._not_a_reply(err, buffer) from None


def _int(text: str) -> int | None:
    text = (text or "").strip()
    try:
        return int(text)
    except ValueError:
        return None


def _hex(text: str) -> int | None:
    """'0x03' (or '03') as a number; None if absent or unreadable."""
    text = (text or "").strip()
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _pair(text: str) -> tuple[int | None, int | None]:
    """REG='3|27' in INFO='F': re-registrations done | remaining."""
    done, _, remaining = (text or "").partition("|")
    return _int(done), _int(remaining)


def read_state(port: str, baudrate: int | Sequence[int] = 115200, timeout: float = 10.0,
               timezone: ZoneInfo | None = None, command_timeout: float = 2.0) -> KktState:
    """Reads the register on `port` (COM7, /dev/ttyUSB0, socket://host:8200, tcp://host:8200) once.

    `baudrate` is the serial speed, or speeds to try in order (`speeds.search_order`); the state says which
    one answered. `timeout` bounds the whole read, `command_timeout` the wait for each reply (and each gap
    within one). Register dates carry no zone: they are read in `timezone`, the site's.
    """
    deadline = time.monotonic() + timeout
    try:
        if transport.is_network(port):
            return _read(_NetworkLink(port, deadline, command_timeout, timeout), port, timezone, None)
        candidates = speeds.as_speeds(baudrate)
        with transport.open_port(port, candidates[0], min(command_timeout, timeout)) as port_object:
            port_object.timeout = READ_SLICE
            link = _SerialLink(port_object, port, deadline, command_timeout, timeout)
            speed = candidates[0]
            if len(candidates) > 1:
                speed = _find_speed(port_object, port, deadline, command_timeout, timeout, candidates)
            return _read(link, port, timezone, speed)
    except KktError:
        raise
    except Exception as err:  # the exporter must get a reason, whatever a driver bug or an OS raises
        raise KktError("error", f"MITSU on {port}: {type(err).__name__}: {err}") from err


def _find_speed(port_object: serial.SerialBase, port: str, deadline: float, command_timeout: float,
                timeout: float, candidates: Sequence[int]) -> int:
    """The first of `candidates` at which the register answers DEV (an ERROR is an answer too)."""
    probe_link = _SerialLink(port_object, port, deadline, min(command_timeout, speeds.PROBE_TIMEOUT), timeout)
    return speeds.find(port_object, candidates, lambda: probe_link.ask(DEV, optional=True), f"MITSU on {port}",
                       deadline)


def _read(link: _Link, port: str, timezone: ZoneInfo | None, baudrate: int | None) -> KktState:
    dev = link.ask(DEV)
    ver = link.ask(VER)
    reg = link.ask(REG)
    fn_reply = link.ask(FN)
    ofd = link.ask(OFD)
    clock = link.ask(CLOCK, optional=True)
    data_time = time.time()  # beside the clock reading, so the clock offset is the register's own drift
    shift = link.ask(SHIFT, optional=True)

    serial_number = ver.get("serial").strip() or reg.get("t1013").strip()
    if not serial_number:
        raise KktError("protocol", f"MITSU on {port} reported no factory number (VER SERIAL and REG T1013 empty)")
    model = dev.get("dev").strip()
    if reg.get("t1188").strip():
        model = f"{model} {reg.get('t1188').strip()}"
    rnm = reg.get("t1037").strip()
    done, remaining = _pair(fn_reply.get("reg"))
    unsent = _int(ofd.get("count"))
    first_unsent_time = None
    if unsent:
        first_unsent_time = local_timestamp(ofd.get("date"), ofd.get("time"), timezone)
    fn_ffd = fn_reply.get("ffd").strip()
    fn = FiscalDrive(
        serial=fn_reply.get("fn").strip(),
        phase=_hex(fn_reply.get("phase")),
        flags=_hex(fn_reply.get("flag")),
        expiry=local_timestamp(fn_reply.get("valid"), "", timezone),
        ffd=fn_ffd,
        edition=fn_reply.get("edition").strip(),
        registrations_done=done,
        registrations_remaining=remaining,
        last_document_number=_int(fn_reply.get("last")),
        last_document_time=local_timestamp(fn_reply.get("date"), fn_reply.get("time"), timezone),
        unsent_documents=unsent,
        first_unsent_number=_int(ofd.get("first")) if unsent else None,
        first_unsent_time=first_unsent_time,
    )
    state_word = _int(shift.get("state")) if shift is not None else None
    return KktState(
        vendor="mitsu",
        serial=serial_number,
        source=port,
        baudrate=baudrate,
        model=model,
        firmware=ver.get("ver").strip(),
        rnm=rnm,
        inn=reg.get("t1018").strip(),
        organization=reg.child("t1048").strip(),
        ofd=reg.child("t1046").strip(),
        ffd=FFD_BY_TAG_1209.get(reg.get("t1209").strip(), fn_ffd),
        address=reg.child("t1009").strip(),
        registered=(_int(reg.get("reg")) or 0) > 0 and bool(rnm),
        registration_time=local_timestamp(reg.get("date"), reg.get("time"), timezone),
        clock=local_timestamp(clock.get("date"), clock.get("time"), timezone) if clock is not None else None,
        data_time=data_time,
        shift_expired=None if state_word is None else state_word == SHIFT_EXPIRED,
        fn=fn,
        licences=[],
    )


def probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    """The speed at which a Mitsu answers the harmless model query on `port` (for `driver: auto`), trying
    `baudrate` or each of the speeds given within `timeout` (a network port: the first speed given); None
    when none answers. Raises KktError only when the port itself cannot be used (`transport.PORT_FAULTS`)."""
    return transport.probe_answer(lambda: _probe(port, baudrate, timeout))


def _probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    candidates, each = speeds.probe_plan(baudrate, timeout, transport.is_network(port))
    if transport.is_network(port):
        _NetworkLink(port, deadline, timeout, timeout).ask(DEV, optional=True)  # an ERROR is a Mitsu's answer too
        return candidates[0]
    with transport.open_port(port, candidates[0], timeout) as port_object:
        port_object.timeout = READ_SLICE
        link = _SerialLink(port_object, port, deadline, each, timeout)
        return speeds.find(port_object, candidates, lambda: link.ask(DEV, optional=True), f"MITSU on {port}",
                           deadline)
