"""Reads a Shtrih-M register's state and its ФН's over a serial port or the network: `read_state`.

Protocol 1 on a port opened for this poll only (`COM7`, `/dev/ttyUSB0`, `socket://host:7778`,
`tcp://host:7778`). Every command goes through the handshake: ENQ; NAK means the register is ready, ACK
that it still holds an answer from before, which is read (and acknowledged) first. The register ACKs the
command frame (a NAK asks for it again), then sends its answer, which is acknowledged in turn. An answer
with a wrong checksum is NAKed, and then asked for again with ENQ: the register does not resend on the NAK
alone, it answers the ENQ with ACK ("I still hold an answer") and sends the frame again (reference §10;
the vendor's `PrinterProtocol_1.readAnswer`, pyshtrih's `protocol.py`). A stray 0xFF, which some units
send over TCP after the host's ACK, is skipped.

Commands: FCh (model), 11h (mode, clock, firmware), 1Fh table 18 field 1 (full serial number), FF01h (ФН
serial, phase, flags), FF03h (expiry, re-registrations), FF09h (RNM, INN), FF39h (unsent documents).
Everything that goes wrong comes out as a `KktError` with a fixed reason: those of `transport`, and
``timeout``, ``protocol``, ``device_error`` and ``disconnected``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import serial

from exporter.kkt import shtrih_codec as codec
from exporter.kkt import speeds, transport
from exporter.kkt.model import FiscalDrive, KktError, KktState

# Bounded retries: command frames the register NAKs, answers with a bad checksum, answers left pending.
MAX_SENDS = 3
MAX_CHECKSUM_TRIES = 3  # answer frames read in all, the first included: two bad ones are survived
MAX_PENDING = 3
MAX_STRAYS = 4  # 0xFF bytes skipped while waiting for one answer; more of them are noise
MAX_NOISE = 64  # bytes that are neither a control byte nor a frame before giving up on the line
READ_SLICE = 0.05  # see mitsu.READ_SLICE: each read returns when a byte is there or after this long

# Error codes with a ФН fitted: the low range is the ФН's own (reference §3.2 and §4.3).
FN_ERROR_MEANINGS = {
    0x01: "unknown command or bad format", 0x02: "wrong ФН state", 0x03: "ФН failure",
    0x04: "crypto module failure", 0x05: "ФН lifetime ended", 0x06: "ФН archive full", 0x07: "wrong date/time",
    0x08: "no data", 0x09: "bad parameters", 0x10: "TLV too large", 0x11: "no transport connection",
    0x12: "crypto module resource exhausted", 0x14: "storage resource exhausted",
    0x15: "documents waited too long for the OFD (30-day block)", 0x16: "shift over 24 hours",
    0x17: "wrong time difference between operations", 0x20: "OFD message cannot be accepted",
}
# The register's own codes a state read can meet (pyshtrih's table).
ERROR_MEANINGS = {
    0x33: "bad parameters in the command", 0x34: "no data", 0x37: "command not supported by this model",
    0x4E: "shift over 24 hours", 0x4F: "wrong password", 0x50: "still printing the previous command",
    0x5D: "table not defined", 0x72: "command not supported in this sub-mode",
    0x73: "command not supported in this mode", 0x8F: "register not fiscalised",
}
PASSWORD_ERROR = 0x4F


def error_meaning(code: int) -> str:
    return FN_ERROR_MEANINGS.get(code) or ERROR_MEANINGS.get(code) or "not in the driver's table"


class _Link:
    """One open port and the poll's deadlines: runs the handshake and one command, or raises KktError."""

    def __init__(self, port_object: serial.SerialBase, port: str, deadline: float, command_timeout: float,
                 timeout: float):
        self.port_object = port_object
        self.port = port
        self.network = transport.is_network(port)
        self.deadline = deadline
        self.command_timeout = command_timeout
        self.timeout = timeout
        self.buffer = bytearray()
        self.pending_answers = 0  # answers left from before this poll, read and dropped

    def _error(self, reason: str, text: str) -> KktError:
        return KktError(reason, f"SHTRIH on {self.port} {text}")

    # --- bytes ---

    def _write(self, data: bytes, stage: str) -> None:
        try:
            self.port_object.write(data)
        except serial.SerialTimeoutException:
            raise self._error("timeout", f"could not send {stage} within {self.port_object.write_timeout:g}s") \
                from None
        except (serial.SerialException, OSError) as err:
            raise self._error("disconnected", f"went away while sending {stage}: {err}") from None

    def _byte(self, stage: str) -> int | None:
        """The next byte; None when nothing comes for `command_timeout`. Never waits past the deadline."""
        quiet_until = time.monotonic() + self.command_timeout
        while True:
            now = time.monotonic()
            if now >= self.deadline:  # checked for every byte: a unit that never stops sending cannot hold us
                raise self._error("timeout", f"took over {self.timeout:g}s reading the state (stopped at {stage})")
            if self.buffer:
                break
            if now >= quiet_until:
                return None
            try:
                chunk = self.port_object.read(max(1, self.port_object.in_waiting))
            except (serial.SerialException, OSError) as err:
                raise self._error("disconnected", f"went away during {stage}: {err}") from None
            self.buffer += chunk
        byte = self.buffer[0]
        del self.buffer[0]
        return byte

    def _expect(self, stage: str, wanted: set[int]) -> int:
        """The first of `wanted` to arrive, skipping stray 0xFF bytes; noise and silence are errors."""
        noise = bytearray()
        strays = 0
        while True:
            byte = self._byte(stage)
            if byte is None:
                if noise:
                    hint = "" if self.network else " (wrong baud rate?)"
                    raise self._error("protocol", f"sent {len(noise)} bytes that are not a Shtrih answer to "
                                                  f"{stage}{hint}: {bytes(noise[:40])!r}")
                raise self._error("timeout", f"did not answer {stage} within {self.command_timeout:g}s")
            if byte in wanted:
                return byte
            if byte == codec.STRAY and strays < MAX_STRAYS:
                strays += 1
                continue
            noise.append(byte)
            if len(noise) > MAX_NOISE:
                raise self._error("protocol", f"sent over {MAX_NOISE} bytes that are not a Shtrih answer to "
                                              f"{stage}: {bytes(noise[:40])!r}")

    def _frame(self, stage: str) -> bytes:
        """One frame's bytes, from STX to LRC."""
        self._expect(stage, {codec.STX})
        data = bytearray([codec.STX])
        while True:
            end = codec.frame_end(data)
            if end is not None and len(data) >= end:
                return bytes(data)
            byte = self._byte(stage)
            if byte is None:
                raise self._error("timeout", f"stopped answering {stage} after {len(data)} bytes of its frame "
                                             f"(nothing more for {self.command_timeout:g}s)")
            data.append(byte)

    def _answer(self, stage: str) -> codec.Reply:
        """Reads an answer frame and ACKs it; one with a bad checksum is NAKed and asked for again."""
        for attempt in range(1, MAX_CHECKSUM_TRIES + 1):
            data = self._frame(stage)
            try:
                reply = codec.decode_reply(data)
            except codec.ChecksumError:
                self._write(bytes([codec.NAK]), f"NAK for {stage}")
                if attempt < MAX_CHECKSUM_TRIES:  # after the last try the answer stays with the register
                    self._ask_again(stage)
                continue
            except codec.ProtocolError as err:
                raise self._error("protocol", f"answered {stage} with a frame that is not a Shtrih answer "
                                              f"({err}): {data[:40]!r}") from None
            self._write(bytes([codec.ACK]), f"ACK for {stage}")
            return reply
        raise self._error("protocol", f"answered {stage} with a bad checksum {MAX_CHECKSUM_TRIES} times")

    def _ask_again(self, stage: str) -> None:
        """After a NAKed answer: ENQ, and the register's ACK says it still holds the answer, which comes next.

        A register does not resend on the NAK alone (a host that just waits times out), so the ENQ is what
        brings the frame back. A NAK to this ENQ means the register no longer holds the answer; as the vendor
        driver does, that ends the read rather than sending the command again.
        """
        asking = f"ENQ asking for {stage} again"
        self._write(bytes([codec.ENQ]), asking)
        if self._expect(asking, {codec.ACK, codec.NAK}) == codec.NAK:
            raise self._error("protocol", f"no longer held its answer to {stage} after a bad checksum "
                                          f"(ENQ got NAK, not ACK)")

    # --- the handshake and commands ---

    def handshake(self, name: str) -> None:
        """ENQ until the register says it is ready (NAK), taking any answer it still holds (ACK) first."""
        try:
            self.port_object.reset_input_buffer()  # nothing late from before may pass as an answer
        except (serial.SerialException, OSError) as err:
            raise self._error("disconnected", f"went away before {name}: {err}") from None
        self.buffer.clear()
        for _ in range(MAX_PENDING + 1):
            self._write(bytes([codec.ENQ]), f"ENQ before {name}")
            byte = self._expect(f"ENQ before {name}", {codec.ACK, codec.NAK})
            if codec.handshake_answer(byte) is codec.Handshake.READY:
                return
            # ACK: an answer to an earlier command (the till's?) is waiting; read it so the register is free
            self._answer(f"the answer left pending before {name}")
            self.pending_answers += 1
        raise self._error("protocol", f"kept answering ENQ with ACK (an answer pending) {MAX_PENDING + 1} times")

    def ask(self, code: int, data: bytes = b"", optional: bool = False) -> codec.Reply | None:
        """The answer to one command; None for an error answer to an `optional` command."""
        name = codec.command_name(code)
        message = codec.frame(code, data)
        self.handshake(name)
        for _ in range(MAX_SENDS):
            self._write(message, name)
            byte = self._expect(name, {codec.ACK, codec.NAK, codec.STX})
            if byte == codec.NAK:
                continue  # the register could not read the frame: send it again
            if byte == codec.STX:
                self.buffer[:0] = bytes([codec.STX])  # the answer came without the ACK before it
            break
        else:
            raise self._error("protocol", f"refused {name} {MAX_SENDS} times (NAK): a line fault?")
        reply = self._answer(name)
        if reply.command != code:
            raise self._error("protocol", f"answered {name} with an answer to {codec.command_name(reply.command)}")
        if reply.ok:
            return reply
        if optional:
            return None
        raise self._error("device_error", f"answered {name} with error 0x{reply.error:02X}: "
                                          f"{error_meaning(reply.error)}")

    def decode(self, decoder, reply: codec.Reply, *args):
        try:
            return decoder(reply, *args)
        except codec.ProtocolError as err:
            raise self._error("protocol", f"sent an answer to {codec.command_name(reply.command)} that cannot be "
                                          f"read: {err}") from None


def _stamp(moment: date | datetime | None, timezone: ZoneInfo | None) -> float | None:
    """A register's local date (00:00) or date and time as a timestamp in the site's zone."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return moment.replace(tzinfo=timezone).timestamp()


def read_state(port: str, baudrate: int | Sequence[int] = 4800, timeout: float = 10.0,
               timezone: ZoneInfo | None = None, command_timeout: float = 2.0,
               password: int = codec.ADMIN_PASSWORD, *, status_serial_high: bool = False) -> KktState:
    """Reads the register on `port` (COM7, /dev/ttyUSB0, socket://host:7778, tcp://host:7778) once.

    `baudrate` is the serial speed (4800 from the factory), or speeds to try in order
    (`speeds.search_order`); the state says which one answered.
    `timeout` bounds the whole read, `command_timeout` the wait for each answer (and each gap within one).
    `password` is the system administrator's (30 by default), sent with every command but FCh.
    Register dates carry no zone: they are read in `timezone`, the site's.

    `status_serial_high`: when the register's serial cannot be read from table 18, build it from the long
    status's 4 bytes plus the 2 bytes some firmware is said to append after the INN (not confirmed; off by
    default, which uses the 4 bytes alone).
    """
    deadline = time.monotonic() + timeout
    try:
        secret = codec.password_bytes(password)
    except codec.ProtocolError as err:
        raise KktError("error", f"SHTRIH on {port}: {err}") from None
    try:
        candidates = speeds.as_speeds(baudrate)
        with transport.open_port(port, candidates[0], min(command_timeout, timeout)) as port_object:
            port_object.timeout = READ_SLICE
            link = _Link(port_object, port, deadline, command_timeout, timeout)
            speed = _find_speed(link, candidates) if len(candidates) > 1 and not link.network else candidates[0]
            state = _read(link, port, timezone, secret, status_serial_high)
            state.baudrate = None if link.network else speed
            return state
    except KktError:
        raise
    except Exception as err:  # the exporter must get a reason, whatever a driver bug or an OS raises
        raise KktError("error", f"SHTRIH on {port}: {type(err).__name__}: {err}") from err


def _find_speed(link: _Link, candidates: Sequence[int]) -> int:
    """The first of `candidates` at which the register answers ENQ (the vendor's own search asks the same)."""
    full = link.command_timeout
    link.command_timeout = min(full, speeds.PROBE_TIMEOUT)
    try:
        return speeds.find(link.port_object, candidates, lambda: link.handshake("the speed search"),
                           f"SHTRIH on {link.port}", link.deadline)
    finally:
        link.command_timeout = full


def _read(link: _Link, port: str, timezone: ZoneInfo | None, secret: bytes, status_serial_high: bool) -> KktState:
    device = link.decode(codec.decode_device_type, link.ask(codec.DEVICE_TYPE))
    status = link.decode(codec.decode_long_status, link.ask(codec.LONG_STATUS, secret), status_serial_high)
    data_time = time.time()  # beside the clock reading, so the clock offset is the register's own drift
    table = link.ask(codec.READ_TABLE, secret + codec.table_params(codec.SERIAL_TABLE, codec.SERIAL_ROW,
                                                                   codec.SERIAL_FIELD), optional=True)
    fn_status = link.decode(codec.decode_fn_status, link.ask(codec.FN_STATUS, secret))
    expiry = link.decode(codec.decode_fn_expiry, link.ask(codec.FN_EXPIRY, secret))
    registration_reply = link.ask(codec.FN_REGISTRATION, secret, optional=True)  # refused before registration
    ofd = link.decode(codec.decode_ofd_status, link.ask(codec.OFD_STATUS, secret))

    serial_number = link.decode(codec.decode_table_text, table) if table is not None else ""
    serial_number = serial_number or status.serial
    if not serial_number:
        raise KktError("protocol", f"SHTRIH on {port} reported no factory number (table 18 and the long status)")
    registration = None
    if registration_reply is not None:
        registration = link.decode(codec.decode_registration, registration_reply)
    rnm = registration.rnm if registration else ""
    registered = bool(rnm) if registration else bool(fn_status.phase & 0x02)  # b1: fiscal mode opened
    unsent = ofd.unsent
    fn = FiscalDrive(
        serial=fn_status.serial,
        phase=fn_status.phase,
        flags=fn_status.flags,
        expiry=_stamp(expiry.expiry, timezone),
        registrations_done=expiry.registrations_done,
        registrations_remaining=expiry.registrations_remaining,
        last_document_number=fn_status.last_document_number,
        last_document_time=_stamp(fn_status.last_document_time, timezone),
        unsent_documents=unsent,
        first_unsent_number=ofd.first_unsent_number if unsent else None,
        first_unsent_time=_stamp(ofd.first_unsent_time, timezone) if unsent else None,
    )
    model = device.name or f"Shtrih model {device.model}"
    return KktState(
        vendor="shtrih",
        serial=serial_number,
        source=port,
        model=model,
        firmware=status.firmware,
        rnm=rnm,
        inn=(registration.inn if registration and registration.inn else status.inn),
        registered=registered,
        registration_time=_stamp(registration.time, timezone) if registration else None,
        clock=_stamp(status.clock, timezone),
        data_time=data_time,
        shift_expired=status.shift_expired,
        fn=fn,
        licences=[],
    )


def probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    """The speed at which a Shtrih answers the handshake on `port` (for `driver: auto`), trying `baudrate`
    or each of the speeds given within `timeout` (a network port: the first speed given); None when none
    answers. Raises KktError only when the port itself cannot be used (`transport.PORT_FAULTS`).

    Sends ENQ twice and wants NAK (ready) both times; an answer left pending (ACK) is read and acknowledged,
    as the protocol asks. No command is sent.
    """
    return transport.probe_answer(lambda: _probe(port, baudrate, timeout))


def _probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    candidates, each = speeds.probe_plan(baudrate, timeout, transport.is_network(port))
    with transport.open_port(port, candidates[0], timeout) as port_object:
        port_object.timeout = READ_SLICE
        link = _Link(port_object, port, deadline, each, timeout)
        speed = speeds.find(port_object, candidates, lambda: link.handshake("the probe"), f"SHTRIH on {port}",
                            deadline)
        link.handshake("the probe")
        return speed
