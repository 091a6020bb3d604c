"""Reads an ATOL register's state and its ФН's over a serial port or the network: `read_state`, and `probe`
for telling an ATOL on a port from other registers.

Protocol 3.1 over the "v3" transport (`atol_codec`): the task buffer is cleared (C4), then each state
command is queued as a task (C1), its result taken (at once, or from a later F0 packet when the register
answers "in progress") and acknowledged (C2). Given several speeds (`baudrate: auto`), a serial port is
asked at each in turn until the register answers (`speeds`: 115200, 57600, then the others). Replies are
matched to requests by packet id; a broken frame (bad CRC or escaping) is recovered by asking for the
task's result again (C3).

Everything that goes wrong comes out as a `KktError` with a fixed reason: those of `transport`, and
``timeout``, ``protocol``, ``device_error`` and ``disconnected``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

import serial

from exporter.kkt import atol_codec as codec
from exporter.kkt import speeds, transport
from exporter.kkt.model import FiscalDrive, KktError, KktState

# Each read returns as soon as a byte is there, or after this long, so the deadlines are checked often.
READ_SLICE = 0.05
MAX_REPLY = 512  # the longest packet a state answer needs; a longer length field is line noise
MAX_GARBAGE = 4096  # bytes that are not frames, in answer to one packet, before giving up at once
MAX_LINE_FAULTS = 2  # broken frames in answer to one command that are recovered by asking again
MAX_RESENDS = 3  # times one packet is sent again when the register asks for it (an empty reply)
POLL_INTERVAL = 0.2  # how long to wait for an asynchronous result before asking for it (C3)
TASK_FLAGS = codec.NEED_RESULT | codec.IGNORE_ERROR
FISCAL_PHASES = (0x03, 0x07)  # the ФН's validity and OFD queue only mean something in these phases

T = TypeVar("T")


class _LineFault(Exception):
    """A frame with a bad CRC or escaping: the line garbled it."""


class _NoAnswer(KktError):
    """Nothing that could be this register's answer: silence, or bytes that are not frames."""


class _Link:
    """One open port, the task-buffer exchange and the poll's deadlines. Raises KktError."""

    def __init__(self, port_object: serial.SerialBase, port: str, deadline: float, command_timeout: float,
                 timeout: float, password: int):
        self.port_object = port_object
        self.port = port
        self.network = transport.is_network(port)
        self.deadline = deadline
        self.command_timeout = command_timeout
        self.timeout = timeout
        self.password = password
        self.reader = codec.FrameReader(MAX_REPLY)
        # ids start anywhere, so a late answer to an earlier poll is not taken for one of this poll's
        self.packet_id = random.randrange(codec.MAX_ID + 1)
        self.tid = random.randrange(codec.MAX_ID + 1)
        self.async_results: dict[int, codec.TaskReply] = {}
        self.quiet_until = 0.0
        self.skipped_before = 0
        self.answered = False  # a well-formed answer to one of our packets came back

    def reset(self) -> None:
        """Forget what was read (after a change of line speed)."""
        self.reader = codec.FrameReader(MAX_REPLY)
        self.async_results.clear()

    def _next_packet_id(self) -> int:
        self.packet_id = (self.packet_id + 1) % (codec.MAX_ID + 1)
        return self.packet_id

    def _next_tid(self) -> int:
        self.tid = (self.tid + 1) % (codec.MAX_ID + 1)
        return self.tid

    # --- packets ---

    def _write(self, frame: bytes, what: str) -> None:
        try:
            self.port_object.write(frame)
        except serial.SerialTimeoutException:
            raise KktError("timeout", f"ATOL on {self.port}: could not send {what} within "
                                      f"{self.port_object.write_timeout:g}s") from None
        except (serial.SerialException, OSError) as err:
            raise KktError("disconnected", f"ATOL on {self.port} went away while sending {what}: {err}") from None
        self.quiet_until = time.monotonic() + self.command_timeout
        self.skipped_before = self.reader.skipped

    def _frame(self, what: str, until: float | None = None) -> codec.Frame | None:
        """The next whole frame; None if `until` passes first. Raises _LineFault for a broken frame."""
        while True:
            try:
                frame = self.reader.next()
            except codec.ProtocolError as err:
                raise _LineFault(str(err)) from None
            if frame is not None:
                return frame
            now = time.monotonic()
            if now >= self.deadline:
                raise KktError("timeout", f"ATOL on {self.port}: reading the state took over {self.timeout:g}s "
                                          f"(stopped at {what})")
            if until is not None and now >= until:
                return None
            if now >= self.quiet_until:
                raise self._silence(what)
            garbage = self.reader.skipped - self.skipped_before
            if garbage > MAX_GARBAGE:
                raise _NoAnswer("protocol", f"ATOL on {self.port} sent over {MAX_GARBAGE} bytes that are not ATOL "
                                            f"frames in answer to {what}{self._hint()}")
            try:
                chunk = self.port_object.read(max(1, self.port_object.in_waiting))
            except (serial.SerialException, OSError) as err:
                raise KktError("disconnected", f"ATOL on {self.port} went away while answering {what}: "
                                               f"{err}") from None
            if chunk:
                self.reader.feed(chunk)
                self.quiet_until = time.monotonic() + self.command_timeout

    def _hint(self) -> str:
        return "" if self.network else " (wrong baud rate?)"

    def _silence(self, what: str) -> KktError:
        garbage = self.reader.skipped - self.skipped_before
        if self.reader.pending:
            return _NoAnswer("timeout", f"ATOL on {self.port} stopped answering {what} after {self.reader.pending} "
                                        f"bytes of a frame (nothing more for {self.command_timeout:g}s)")
        if garbage:
            return _NoAnswer("protocol", f"ATOL on {self.port} sent {garbage} bytes that are not ATOL frames in "
                                         f"answer to {what}{self._hint()}")
        return _NoAnswer("timeout", f"ATOL on {self.port} did not answer {what} within {self.command_timeout:g}s")

    def _note_async(self, frame: codec.Frame) -> None:
        try:
            reply = codec.parse_task_reply(frame.data)
        except codec.ProtocolError:
            return
        if reply.status in (codec.ASYNC_RESULT, codec.ASYNC_ERROR) and reply.tid is not None:
            self.async_results[reply.tid] = reply

    def _exchange(self, data: bytes, what: str) -> codec.TaskReply:
        """Sends one packet; its answer (the packet with the same id), after any resends it asks for."""
        frame = codec.encode_frame(self._next_packet_id(), data)
        packet_id = frame[3]
        self._write(frame, what)
        resends = 0
        while True:
            got = self._frame(what)
            if got.packet_id == codec.ASYNC_ID:
                self._note_async(got)
                continue
            if got.packet_id != packet_id:
                continue  # a late answer to an earlier packet
            try:
                reply = codec.parse_task_reply(got.data)
            except codec.ProtocolError as err:
                raise KktError("protocol", f"ATOL on {self.port} answered {what} with "
                                           f"{got.data[:16].hex(' ').upper()}: {err}") from None
            self.answered = True
            if not reply.resend:
                return reply
            resends += 1
            if resends > MAX_RESENDS:
                raise KktError("protocol", f"ATOL on {self.port} asked for {what} again {resends} times")
            self._write(frame, what)

    # --- the task buffer ---

    def abort(self) -> None:
        """C4: clears the task buffer; the register answers A3."""
        what = "abort (C4)"
        fault = None
        for _ in range(MAX_LINE_FAULTS + 1):
            try:
                reply = self._exchange(codec.abort_tasks(), what)
            except _LineFault as err:
                fault = err
                continue
            if reply.status != codec.RESULT:
                raise KktError("protocol", f"ATOL on {self.port} answered {what} with {reply.name}, not a result")
            self.async_results.clear()
            return
        raise _NoAnswer("protocol", f"ATOL on {self.port} sent {MAX_LINE_FAULTS + 1} broken frames in answer to "
                                    f"{what} ({fault}){self._hint()}")

    def run(self, code: bytes, what: str) -> bytes:
        """Queues the command as a task and returns the command's answer (the bytes after the status)."""
        payload = codec.command(code, password=self.password)
        tid = self._next_tid()
        request = codec.add_task(tid, payload, TASK_FLAGS)
        faults = 0
        recovered = False
        waiting_since: float | None = None
        while True:
            reply = self.async_results.pop(tid, None)
            if reply is None:
                try:
                    reply = self._exchange(request, what)
                except _LineFault as fault:
                    faults += 1
                    if faults > MAX_LINE_FAULTS:
                        raise KktError("protocol", f"ATOL on {self.port} sent {faults} broken frames in answer to "
                                                   f"{what} ({fault})") from None
                    request = codec.request_task(tid)  # the register keeps the result until acked: ask for it
                    continue
            status = reply.status
            if status in (codec.ASYNC_RESULT, codec.ASYNC_ERROR) and reply.tid != tid:
                request = codec.request_task(tid)
                continue
            if status in (codec.RESULT, codec.ERROR, codec.ASYNC_RESULT, codec.ASYNC_ERROR):
                self._ack(tid, what)
                if status in (codec.ERROR, codec.ASYNC_ERROR) and not reply.answer:
                    raise KktError("device_error", f"ATOL on {self.port} could not carry out {what} (task "
                                                   f"{reply.name}, no error code)")
                return reply.answer
            if status in (codec.PENDING, codec.IN_PROGRESS, codec.WAITING):
                now = time.monotonic()
                waiting_since = now if waiting_since is None else waiting_since
                left = waiting_since + self.command_timeout - now
                if left <= 0:
                    raise KktError("timeout", f"ATOL on {self.port} did not finish {what} within "
                                              f"{self.command_timeout:g}s (task {reply.name})")
                self._await_async(tid, what, min(POLL_INTERVAL, left))
                request = codec.request_task(tid)
                continue
            if not recovered and status in (codec.STOPPED, codec.NOT_FOUND, codec.ALREADY_EXISTS):
                recovered = True  # once: clear a stopped buffer, or queue the task again under a new id
                if status == codec.STOPPED:
                    self.abort()
                tid = self._next_tid()
                request = codec.add_task(tid, payload, TASK_FLAGS)
                continue
            raise KktError("protocol", f"ATOL on {self.port}: the task buffer answered {what} with "
                                       f"0x{status:02X} ({reply.name})")

    def _await_async(self, tid: int, what: str, wait: float) -> None:
        """Reads packets for up to `wait` seconds, or until the task's F0 result is in."""
        until = time.monotonic() + max(0.0, wait)
        self.quiet_until = max(self.quiet_until, until + self.command_timeout)  # no answer is due meanwhile
        while tid not in self.async_results:
            try:
                got = self._frame(what, until=until)
            except _LineFault:
                continue
            if got is None:
                return
            if got.packet_id == codec.ASYNC_ID:
                self._note_async(got)

    def _ack(self, tid: int, what: str) -> None:
        """C2: the result is in; the register may drop it. What it answers does not matter."""
        try:
            self._exchange(codec.ack_task(tid), f"the ack (C2) of {what}")
        except _LineFault:
            pass

    def query(self, code: bytes, decode: Callable[[bytes], T], tolerate: bool = False) -> T | None:
        """The decoded answer to one state command. `tolerate`: an error code (or, for commands whose layout
        is not verified, an answer that does not decode) leaves the result unknown (None)."""
        what = codec.COMMAND_NAMES.get(code, code.hex(" ").upper())
        answer = self.run(code, what)
        try:
            return decode(answer)
        except codec.DeviceError as err:
            if tolerate:
                return None
            raise KktError("device_error", f"ATOL on {self.port} answered {what} with error 0x{err.code:02X} "
                                           f"({err.code}): {codec.error_meaning(err.code)}") from None
        except codec.ProtocolError as err:
            if tolerate and code == codec.FN_REGISTRATION:
                return None
            raise KktError("protocol", f"ATOL on {self.port} answered {what} with something that is not its "
                                       f"answer ({err}): {answer[:40].hex(' ').upper()}") from None


def _start(link: _Link, candidates: Sequence[int]) -> int:
    """Clears the task buffer (C4) at the first of `candidates` that gets an answer; returns that speed."""
    if link.network or len(candidates) == 1:
        link.port_object.reset_input_buffer()  # nothing left from before this poll may pass as an answer
        link.abort()
        return candidates[0]
    full = link.command_timeout
    link.command_timeout = min(full, speeds.PROBE_TIMEOUT)

    def ask() -> None:
        link.reset()
        link.abort()

    try:
        return speeds.find(link.port_object, candidates, ask, f"ATOL on {link.port}", link.deadline)
    finally:
        link.command_timeout = full


def _stamp(moment: datetime | None, timezone: ZoneInfo | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=timezone).timestamp()


def _day(day: date | None, timezone: ZoneInfo | None) -> float | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=timezone).timestamp()


def read_state(port: str, baudrate: int | Sequence[int] = 115200, timeout: float = 10.0,
               timezone: ZoneInfo | None = None, command_timeout: float = 2.0, password: int = 0, *,
               bcd_byte_order: str = "big", read_registration: bool = False,
               read_last_document_number: bool = False) -> KktState:
    """Reads the register on `port` (COM7, /dev/ttyUSB0, socket://host:5555, tcp://host:5555) once.

    `baudrate` is the serial speed, or speeds to try in order (`speeds.search_order`); the state says which
    one answered. `timeout` bounds the whole read, `command_timeout` the wait for each answer (and each gap
    within one). Register dates carry no zone: they are read in `timezone`, the site's. `password` is the
    register's access password (0..9999).

    Options for what the sources leave open, off by default:
    `bcd_byte_order` ("big" or "little") for the 3F serial, receipt and shift numbers;
    `read_registration` asks A4 43 for RNM, INN and the registration time (layout inferred, not verified);
    `read_last_document_number` takes the last document number from bytes 28..31 of A4 30 (not verified).
    """
    if bcd_byte_order not in ("big", "little"):
        raise KktError("error", f"bcd_byte_order is 'big' or 'little', not {bcd_byte_order!r}")
    if not isinstance(password, int) or not 0 <= password <= 9999:
        raise KktError("error", f"an ATOL password is a number 0..9999, not {password!r}")
    deadline = time.monotonic() + timeout
    try:
        candidates = speeds.as_speeds(baudrate)
        with transport.open_port(port, candidates[0], min(command_timeout, timeout)) as port_object:
            port_object.timeout = READ_SLICE
            link = _Link(port_object, port, deadline, command_timeout, timeout, password)
            speed = _start(link, candidates)
            state = _read(link, port, timezone, bcd_byte_order, read_registration, read_last_document_number)
            state.baudrate = None if link.network else speed
            return state
    except KktError as err:
        if type(err) is not KktError:
            raise KktError(err.reason, err.message) from None
        raise
    except Exception as err:  # the exporter must get a reason, whatever a driver bug or an OS raises
        raise KktError("error", f"ATOL on {port}: {type(err).__name__}: {err}") from err


def _read(link: _Link, port: str, timezone: ZoneInfo | None, bcd_byte_order: str, read_registration: bool,
          read_last_document_number: bool) -> KktState:
    info = link.query(codec.DEVICE_INFO, codec.decode_device_info)
    status = link.query(codec.DEVICE_STATUS, lambda answer: codec.decode_device_status(answer, bcd_byte_order))
    data_time = time.time()  # beside the clock reading, so the clock offset is the register's own drift
    fn_serial = link.query(codec.FN_SERIAL, codec.decode_fn_serial)
    fn_status = link.query(codec.FN_STATUS, codec.decode_fn_status)
    # outside fiscal mode a ФН may refuse these; the fields then stay unknown instead of failing the read
    fiscal = fn_status.phase in FISCAL_PHASES
    validity = link.query(codec.FN_VALIDITY, codec.decode_fn_validity, tolerate=not fiscal)
    ofd = link.query(codec.FN_OFD_STATUS, codec.decode_ofd_status, tolerate=not fiscal)
    registration = None
    if read_registration:
        registration = link.query(codec.FN_REGISTRATION, codec.decode_fn_registration, tolerate=True)

    if not status.serial:
        raise KktError("protocol", f"ATOL on {port} reported no factory number (3F serial is zero)")
    waiting = ofd is not None and ofd.unsent > 0
    fn = FiscalDrive(
        serial=fn_serial or fn_status.serial,
        phase=fn_status.phase,
        flags=fn_status.flags,
        expiry=_day(validity.expiry, timezone) if validity else None,
        registrations_done=validity.registrations_done if validity else None,
        registrations_remaining=validity.registrations_remaining if validity else None,
        last_document_number=fn_status.last_document_number if read_last_document_number else None,
        last_document_time=_stamp(fn_status.last_document_time, timezone),
        unsent_documents=ofd.unsent if ofd is not None else None,
        first_unsent_number=ofd.first_unsent_number if waiting else None,
        first_unsent_time=_stamp(ofd.first_unsent_time, timezone) if waiting else None,
    )
    return KktState(
        vendor="atol",
        serial=status.serial,
        source=port,
        model=info.name,
        firmware=info.firmware,
        rnm=registration.rnm if registration else "",
        inn=registration.inn if registration else "",
        registered=status.registered,
        registration_time=_stamp(registration.time, timezone) if registration else None,
        clock=_stamp(status.clock, timezone),
        data_time=data_time,
        # 3F tells a closed shift from an open one, not how long it has been open
        shift_expired=False if not status.shift_open else None,
        fn=fn,
        licences=[],
    )


def probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    """The speed at which an ATOL answers the harmless device-info query (A5) on `port` (for `driver:
    auto`), trying `baudrate` or each of the speeds given within `timeout` (a network port: the first speed
    given); None when none answers. Raises KktError only when the port itself cannot be used
    (`transport.PORT_FAULTS`)."""
    return transport.probe_answer(lambda: _probe(port, baudrate, timeout))


def _probe(port: str, baudrate: int | Sequence[int], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    candidates, each = speeds.probe_plan(baudrate, timeout, transport.is_network(port))
    with transport.open_port(port, candidates[0], timeout) as port_object:
        port_object.timeout = READ_SLICE
        link = _Link(port_object, port, deadline, each, timeout, 0)

        def ask() -> None:
            link.reset()
            try:
                link.run(codec.DEVICE_INFO, "device info (A5)")
            except KktError:
                pass
            if not link.answered:
                raise KktError("timeout", f"ATOL on {port} did not answer device info (A5)")

        return speeds.find(port_object, candidates, ask, f"ATOL on {port}", deadline)
