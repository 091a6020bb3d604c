"""The ATOL wire format (protocol 3.1 over the "v3" transport), as pure functions: the FE-framed packets
with their escaping and CRC-8, the task buffer (ADD / ACK / REQ / ABORT and the status answers) inside a
packet, the command layer (a BCD password in front of the command code) and decoders for the answers a
state read needs. The driver and the simulator both build on it; nothing here touches a port.

Transport frame::

    FE | len & 0x7F | len >> 7 | packet id | escaped data | escaped CRC

The CRC is CRC-8 (polynomial 0x31, init 0xFF, MSB first, no final XOR) over the packet id and the
unescaped data. Inside the data and the CRC, FE is sent as FD EE and FD as FD ED. The register answers
a packet with the same packet id; its own asynchronous messages come with id F0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

# --- transport -------------------------------------------------------------------------------------------

STX = 0xFE
ESC = 0xFD
TSTX = 0xEE  # FD EE stands for FE
TESC = 0xED  # FD ED stands for FD
MAX_ID = 0xDF  # host packet and task ids run 0x00..0xDF and wrap
ASYNC_ID = 0xF0  # packets the register sends on its own (asynchronous task results)
MAX_LENGTH = 0x3FFF  # what two 7-bit length bytes can say
DEFAULT_MAX_LENGTH = 1024  # a reader's limit unless told otherwise: state answers are far shorter
ENCODING = "cp866"  # ATOL's "external" code page agrees with cp866 for Cyrillic


class ProtocolError(ValueError):
    """Bytes that are not an ATOL message."""


class ChecksumError(ProtocolError):
    """A frame whose CRC does not match its id and data: a line fault."""


class EscapeError(ProtocolError):
    """FD followed by something other than EE or ED, or a raw FE inside a frame."""


class IncompleteError(ProtocolError):
    """The bytes stop before the frame does."""


class DeviceError(Exception):
    """The register carried out the command and answered with a non-zero error code."""

    def __init__(self, code: int):
        super().__init__(f"error 0x{code:02X}: {error_meaning(code)}")
        self.code = code


def _crc_table() -> list[int]:
    table = []
    for value in range(256):
        crc = value
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc8(data: bytes, crc: int = 0xFF) -> int:
    """CRC-8, polynomial 0x31, init 0xFF, MSB first, no reflection, no final XOR."""
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def escape(data: bytes) -> bytes:
    """FE → FD EE, FD → FD ED; every other byte as it is."""
    return bytes(data).replace(bytes([ESC]), bytes([ESC, TESC])).replace(bytes([STX]), bytes([ESC, TSTX]))


def unescape(data: bytes) -> bytes:
    """The inverse of `escape`; EscapeError for a raw FE or an FD not followed by EE/ED."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == STX:
            raise EscapeError(f"a raw FE at byte {index}")
        if byte == ESC:
            if index + 1 >= len(data):
                raise IncompleteError("the data ends in the middle of an escape")
            following = data[index + 1]
            if following not in (TSTX, TESC):
                raise EscapeError(f"FD followed by {following:02X} at byte {index}")
            out.append(STX if following == TSTX else ESC)
            index += 2
        else:
            out.append(byte)
            index += 1
    return bytes(out)


def encode_frame(packet_id: int, data: bytes, corrupt: bool = False) -> bytes:
    """One transport packet. `corrupt` sends a wrong CRC (for simulating line faults)."""
    data = bytes(data)
    if not 0 <= packet_id <= 0xFF or packet_id in (STX, ESC):
        raise ValueError(f"packet id 0x{packet_id:X} cannot be sent")
    if len(data) > MAX_LENGTH:
        raise ValueError(f"{len(data)} bytes do not fit a packet (at most {MAX_LENGTH})")
    crc = crc8(bytes([packet_id]) + data) ^ (0xFF if corrupt else 0)
    return bytes([STX, len(data) & 0x7F, len(data) >> 7, packet_id]) + escape(data) + escape(bytes([crc]))


@dataclass(frozen=True)
class Frame:
    packet_id: int
    data: bytes


class FrameReader:
    """Frames out of a byte stream. Bytes before a frame start are skipped (and counted in `skipped`);
    `next()` gives the next whole frame, None while one is still coming, and raises ChecksumError or
    EscapeError for a broken frame after dropping its bytes, so the stream goes on behind it."""

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH):
        self.max_length = min(max_length, MAX_LENGTH)
        self.skipped = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        self._buffer.clear()

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not yet whole."""
        return len(self._buffer)

    def _skip(self, count: int) -> None:
        self.skipped += count
        del self._buffer[:count]

    def next(self) -> Frame | None:
        buffer = self._buffer
        while True:
            start = buffer.find(STX)
            if start < 0:
                self._skip(len(buffer))
                return None
            if start:
                self._skip(start)
            if len(buffer) < 4:
                return None
            low, high, packet_id = buffer[1], buffer[2], buffer[3]
            length = low | high << 7
            if low & 0x80 or high & 0x80 or packet_id in (STX, ESC) or length > self.max_length:
                self._skip(1)  # not a frame header: look for the next start byte
                continue
            return self._body(length, packet_id)

    def _body(self, length: int, packet_id: int) -> Frame | None:
        buffer = self._buffer
        out = bytearray()
        index = 4
        while len(out) < length + 1:  # the data, then the CRC byte
            if index >= len(buffer):
                return None
            byte = buffer[index]
            if byte == STX:
                del buffer[:index]  # keep the new start byte: the next frame begins there
                raise EscapeError(f"a frame cut short by a new FE after {len(out)} of its {length + 1} bytes")
            if byte == ESC:
                if index + 1 >= len(buffer):
                    return None
                following = buffer[index + 1]
                if following not in (TSTX, TESC):
                    del buffer[:index + 1]  # the byte after FD may start the next frame: keep it
                    raise EscapeError(f"FD followed by {following:02X} inside a frame")
                out.append(STX if following == TSTX else ESC)
                index += 2
            else:
                out.append(byte)
                index += 1
        del buffer[:index]
        data, crc = bytes(out[:-1]), out[-1]
        expected = crc8(bytes([packet_id]) + data)
        if crc != expected:
            raise ChecksumError(f"CRC 0x{crc:02X}, expected 0x{expected:02X} (packet id 0x{packet_id:02X})")
        return Frame(packet_id, data)


def decode_frame(frame: bytes, max_length: int = MAX_LENGTH) -> Frame:
    """Exactly one whole frame, nothing before or after it."""
    frame = bytes(frame)
    if not frame or frame[0] != STX:
        raise ProtocolError("a frame must start with FE")
    reader = FrameReader(max_length)
    reader.feed(frame)
    result = reader.next()
    if reader.skipped:
        raise ProtocolError("not a frame header")
    if result is None:
        raise IncompleteError(f"the frame stops early ({len(frame)} bytes)")
    if reader.pending:
        raise ProtocolError(f"{reader.pending} bytes after the frame")
    return result


# --- task buffer -----------------------------------------------------------------------------------------

ADD, ACK, REQ, ABORT, ACK_ADD = 0xC1, 0xC2, 0xC3, 0xC4, 0xC5
NEED_RESULT, IGNORE_ERROR, WAIT_ASYNC_DATA = 0x01, 0x02, 0x04

PENDING, IN_PROGRESS, RESULT, ERROR, STOPPED = 0xA1, 0xA2, 0xA3, 0xA4, 0xA5
ASYNC_RESULT, ASYNC_ERROR, WAITING = 0xA6, 0xA7, 0xA8
OVERFLOW, ALREADY_EXISTS, NOT_FOUND, ILLEGAL_VALUE = 0xB1, 0xB2, 0xB3, 0xB4

STATUS_NAMES = {
    PENDING: "pending", IN_PROGRESS: "in progress", RESULT: "result", ERROR: "error", STOPPED: "stopped",
    ASYNC_RESULT: "async result", ASYNC_ERROR: "async error", WAITING: "waiting for external data",
    OVERFLOW: "task buffer overflow", ALREADY_EXISTS: "task id already exists", NOT_FOUND: "task not found",
    ILLEGAL_VALUE: "illegal value",
}
REQUEST_NAMES = {ADD: "add", ACK: "ack", REQ: "req", ABORT: "abort", ACK_ADD: "ack+add"}


def _tid(tid: int) -> int:
    if not 0 <= tid <= MAX_ID:
        raise ValueError(f"task id 0x{tid:X} is outside 0x00..0x{MAX_ID:X}")
    return tid


def add_task(tid: int, command: bytes, flags: int = NEED_RESULT) -> bytes:
    """`C1 flags TID command…`: queue a task."""
    return bytes([ADD, flags & 0xFF, _tid(tid)]) + bytes(command)


def ack_task(tid: int) -> bytes:
    """`C2 TID`: the result arrived; the register may drop it."""
    return bytes([ACK, _tid(tid)])


def request_task(tid: int) -> bytes:
    """`C3 TID`: the task's status (and its result once there is one)."""
    return bytes([REQ, _tid(tid)])


def abort_tasks() -> bytes:
    """`C4`: cancel every task and clear the buffer."""
    return bytes([ABORT])


def ack_add_task(ack_tid: int, tid: int, command: bytes, flags: int = NEED_RESULT) -> bytes:
    """`C5 TID_ack flags TID command…`: ack one result and queue the next task in one packet."""
    return bytes([ACK_ADD, _tid(ack_tid), flags & 0xFF, _tid(tid)]) + bytes(command)


@dataclass(frozen=True)
class TaskReply:
    """What the register answered to a task-buffer request. `status` None: an empty packet, which asks
    for the host's packet again. `tid` is set for the asynchronous answers (A6, A7) and for A5."""

    status: int | None
    answer: bytes = b""
    tid: int | None = None

    @property
    def resend(self) -> bool:
        return self.status is None

    @property
    def name(self) -> str:
        return "resend request" if self.status is None else STATUS_NAMES.get(self.status, f"0x{self.status:02X}")


def parse_task_reply(data: bytes) -> TaskReply:
    data = bytes(data)
    if not data:
        return TaskReply(None)
    status = data[0]
    if status not in STATUS_NAMES:
        raise ProtocolError(f"0x{status:02X} is not a task-buffer status")
    if status in (ASYNC_RESULT, ASYNC_ERROR):
        if len(data) < 2:
            raise ProtocolError(f"an asynchronous answer (0x{status:02X}) without a task id")
        return TaskReply(status, data[2:], data[1])
    if status == STOPPED:
        return TaskReply(status, data[2:], data[1] if len(data) > 1 else None)
    return TaskReply(status, data[1:])


def task_reply(status: int, answer: bytes = b"", tid: int | None = None) -> bytes:
    """A register's task-buffer answer: status, the task id for A5/A6/A7, then the command's answer."""
    head = bytes([status]) if tid is None else bytes([status, _tid(tid)])
    return head + bytes(answer)


@dataclass(frozen=True)
class TaskRequest:
    """A host's task-buffer request, as the register reads it."""

    op: int
    tid: int | None = None
    flags: int = 0
    command: bytes = b""
    ack_tid: int | None = None


def parse_task_request(data: bytes) -> TaskRequest:
    data = bytes(data)
    if not data:
        raise IncompleteError("an empty request")
    op = data[0]
    if op == ABORT:
        return TaskRequest(op)
    if op in (ACK, REQ):
        if len(data) != 2:
            raise ProtocolError(f"{REQUEST_NAMES[op]} takes exactly a task id")
        return TaskRequest(op, tid=data[1])
    if op == ADD:
        if len(data) < 4:
            raise ProtocolError("add without flags, task id or command")
        return TaskRequest(op, tid=data[2], flags=data[1], command=data[3:])
    if op == ACK_ADD:
        if len(data) < 5:
            raise ProtocolError("ack+add without both task ids, flags or command")
        return TaskRequest(op, tid=data[3], flags=data[2], command=data[4:], ack_tid=data[1])
    raise ProtocolError(f"0x{op:02X} is not a task-buffer request")


# --- command layer ---------------------------------------------------------------------------------------

DEVICE_STATUS = bytes([0x3F])  # Запрос состояния ККТ
DEVICE_INFO = bytes([0xA5])  # device type, model, version and name
FN_OFD_STATUS = bytes([0xA4, 0x20])
FN_STATUS = bytes([0xA4, 0x30])
FN_SERIAL = bytes([0xA4, 0x31])
FN_VALIDITY = bytes([0xA4, 0x32])
FN_REGISTRATION = bytes([0xA4, 0x43])  # registration totals: inferred from the ФН command set, not verified

COMMAND_NAMES = {
    DEVICE_STATUS: "device status (3F)", DEVICE_INFO: "device info (A5)", FN_OFD_STATUS: "OFD exchange status (A4 20)",
    FN_STATUS: "ФН status (A4 30)", FN_SERIAL: "ФН serial (A4 31)", FN_VALIDITY: "ФН validity (A4 32)",
    FN_REGISTRATION: "ФН registration totals (A4 43)",
}

ANSWER_OK = 0x55  # 'U': most answers start with it, then the error code
STATUS_ANSWER = 0x44  # 'D': the 3F answer

# Error codes a state read can meet, from the reference's table.
ERROR_MEANINGS = {
    0x66: "command not allowed in this mode", 0x67: "no paper", 0x88: "shift over 24 hours",
    0x8C: "wrong password", 0xD4: "wrong ФН state", 0xD5: "unrecoverable ФН error", 0xD7: "ФН lifetime ended",
    0xD8: "ФН archive full", 0xE9: "no transport connection to the ФН",
    0xEA: "crypto module (КС) resource exhausted",
    0xEB: "storage for documents awaiting the OFD exhausted (30-day limit)", 0xEC: "OFD message rejected",
}
SHIFT_OVER_24H = 0x88


def error_meaning(code: int) -> str:
    return ERROR_MEANINGS.get(code, "not in the reference's table")


def int_to_bcd(value: int, size: int, byte_order: str = "big") -> bytes:
    """`value` as `size` bytes of packed BCD, most significant byte first unless byte_order is "little"."""
    if value < 0 or value >= 10 ** (size * 2):
        raise ValueError(f"{value} does not fit {size} BCD bytes")
    digits = f"{value:0{size * 2}d}"
    data = bytes(int(digits[i:i + 2], 16) for i in range(0, len(digits), 2))
    return data[::-1] if byte_order == "little" else data


def bcd_digits(data: bytes, byte_order: str = "big") -> str:
    """The decimal digits of packed BCD bytes (leading zeros kept); ProtocolError for a nibble over 9."""
    data = bytes(data)[::-1] if byte_order == "little" else bytes(data)
    text = data.hex()
    if not text.isdigit():
        raise ProtocolError(f"{data.hex(' ').upper()} is not BCD")
    return text


def bcd_to_int(data: bytes, byte_order: str = "big") -> int:
    return int(bcd_digits(data, byte_order) or "0")


def password_bcd(password: int) -> bytes:
    """The 2-byte BCD access password in front of every command (0 → 00 00, 30 → 00 30)."""
    if not 0 <= password <= 9999:
        raise ValueError(f"an ATOL password is 0..9999, not {password}")
    return int_to_bcd(password, 2)


def command(code: bytes, params: bytes = b"", password: int = 0) -> bytes:
    """password (2 bytes BCD) + command code + parameters: what goes inside an ADD."""
    return password_bcd(password) + bytes(code) + bytes(params)


def split_command(data: bytes) -> tuple[int, bytes]:
    """(password, command code and parameters) of a command as the register reads it."""
    data = bytes(data)
    if len(data) < 3:
        raise ProtocolError("a command needs a 2-byte password and a code")
    return bcd_to_int(data[:2]), data[2:]


def decode_text(data: bytes) -> str:
    """A cp866 string, without the NULs and spaces that pad fixed-width fields."""
    return bytes(data).decode(ENCODING).strip("\x00 ")


def _payload(answer: bytes, what: str, minimum: int) -> bytes:
    """The data after 55 + error code; DeviceError for a non-zero error code."""
    answer = bytes(answer)
    if len(answer) < 2:
        raise ProtocolError(f"a {what} answer of {len(answer)} bytes")
    if answer[0] != ANSWER_OK:
        raise ProtocolError(f"a {what} answer starting with 0x{answer[0]:02X}, not 0x55")
    if answer[1]:
        raise DeviceError(answer[1])
    if len(answer) - 2 < minimum:
        raise ProtocolError(f"a {what} answer with {len(answer) - 2} data bytes, expected at least {minimum}")
    return answer[2:]


def _datetime(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime | None:
    """A register date (two-digit year) as a naive datetime; None for zeros or an impossible date."""
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        return None


def binary_datetime(data: bytes) -> datetime | None:
    """YY MM DD [hh mm [ss]] as binary numbers (the ФН's own fields)."""
    return _datetime(*bytes(data))


def bcd_datetime(data: bytes) -> datetime | None:
    """YY MM DD [hh mm [ss]] as one BCD byte each (the register's legacy fields)."""
    return _datetime(*(bcd_to_int(bytes([byte])) for byte in bytes(data)))


# --- answers ---------------------------------------------------------------------------------------------

# 3F flags byte
FLAG_REGISTERED = 0x01
FLAG_SHIFT_OPEN = 0x02
FLAG_DRAWER_OPEN = 0x04
FLAG_PAPER = 0x08
FLAG_COVER_OPEN = 0x20
FLAG_FN_ACTIVATED = 0x40
FLAG_BATTERY = 0x80  # sources disagree on what a 1 here means


@dataclass
class DeviceStatus:
    """The 3F answer. Multi-byte BCD numbers (serial, receipt and shift numbers) are read in the byte order
    given to the decoder: the sources disagree on it."""

    cashier: int
    hall_number: int
    clock: datetime | None
    flags: int
    serial: str  # BCD digits, leading zeros removed; at most 8 digits, so possibly a truncated serial
    model_id: int
    version: tuple[int, int]
    mode: int
    submode: int
    receipt_number: int | None = None
    shift_number: int | None = None
    receipt_state: int | None = None
    interface: int | None = None

    @property
    def registered(self) -> bool:
        return bool(self.flags & FLAG_REGISTERED)

    @property
    def shift_open(self) -> bool:
        return bool(self.flags & FLAG_SHIFT_OPEN)

    @property
    def fn_activated(self) -> bool:
        return bool(self.flags & FLAG_FN_ACTIVATED)


def decode_device_status(answer: bytes, byte_order: str = "big") -> DeviceStatus:
    answer = bytes(answer)
    if answer[:1] == bytes([ANSWER_OK]):
        _payload(answer, "device status", 0)  # raises DeviceError for a code
        raise ProtocolError("a device status answer of 55 00 instead of the 0x44 status")
    if len(answer) < 18:
        raise ProtocolError(f"a device status answer of {len(answer)} bytes, expected at least 18")
    if answer[0] != STATUS_ANSWER:
        raise ProtocolError(f"a device status answer starting with 0x{answer[0]:02X}, not 0x44")
    status = DeviceStatus(
        cashier=bcd_to_int(answer[1:2]),
        hall_number=answer[2],
        clock=bcd_datetime(answer[3:9]),
        flags=answer[9],
        serial=bcd_digits(answer[10:14], byte_order).lstrip("0"),
        model_id=answer[14],
        version=(answer[15], answer[16]),
        mode=answer[17] & 0x0F,
        submode=answer[17] >> 4,
    )
    if len(answer) >= 22:
        status.receipt_number = bcd_to_int(answer[18:20], byte_order)
        status.shift_number = bcd_to_int(answer[20:22], byte_order)
    if len(answer) >= 23:
        status.receipt_state = answer[22]
    if len(answer) >= 30:
        status.interface = answer[29]
    return status


@dataclass
class DeviceInfo:
    """The A5 answer: protocol version, device type, model id, mode, version bytes and the device name."""

    protocol: int
    device_type: int
    model_id: int
    mode: int
    version: bytes  # major, minor, language, build (2 bytes), BCD
    name: str

    @property
    def firmware(self) -> str:
        """'3.0.2195' from 03 00 00 21 95: major.minor.build (the language byte left out)."""
        major, minor, _language = (f"{byte:X}" for byte in self.version[:3])
        build = self.version[3:].hex().upper().lstrip("0") or "0"
        return f"{major}.{minor}.{build}"


def decode_device_info(answer: bytes) -> DeviceInfo:
    answer = bytes(answer)
    if not answer:
        raise ProtocolError("an empty device info answer")
    if answer[0]:
        raise DeviceError(answer[0])
    if len(answer) < 11:
        raise ProtocolError(f"a device info answer of {len(answer)} bytes, expected at least 11")
    return DeviceInfo(protocol=answer[1], device_type=answer[2], model_id=answer[3],
                      mode=int.from_bytes(answer[4:6], "little"), version=answer[6:11],
                      name=decode_text(answer[11:]))


@dataclass
class FnStatus:
    """The A4 30 answer (the ФН's own status, command 30h)."""

    phase: int
    document: int
    document_data: int
    shift_open: bool
    flags: int
    last_document_time: datetime | None
    serial: str
    last_document_number: int | None = None  # bytes 28..31 as the ФН's 30h layout has them: not verified


def decode_fn_status(answer: bytes) -> FnStatus:
    data = _payload(answer, "ФН status", 26)
    status = FnStatus(phase=data[0], document=data[1], document_data=data[2], shift_open=bool(data[3]),
                      flags=data[4], last_document_time=binary_datetime(data[5:10]),
                      serial=decode_text(data[10:26]))
    if len(data) >= 30:
        status.last_document_number = int.from_bytes(data[26:30], "little")
    return status


def decode_fn_serial(answer: bytes) -> str:
    return decode_text(_payload(answer, "ФН serial", 16)[:16])


@dataclass
class FnValidity:
    """The A4 32 answer: the ФН's validity date, re-registrations remaining and done."""

    expiry: date | None
    registrations_remaining: int | None
    registrations_done: int | None


def decode_fn_validity(answer: bytes) -> FnValidity:
    data = _payload(answer, "ФН validity", 3)
    moment = binary_datetime(data[:3])
    return FnValidity(expiry=moment.date() if moment else None,
                      registrations_remaining=data[3] if len(data) > 3 else None,
                      registrations_done=data[4] if len(data) > 4 else None)


# A4 20 status bits
OFD_CONNECTED = 0x01
OFD_MESSAGE_PENDING = 0x02
OFD_AWAITING_RECEIPT = 0x04
OFD_COMMAND = 0x08
OFD_SETTINGS_CHANGED = 0x10
OFD_AWAITING_COMMAND_REPLY = 0x20


@dataclass
class OfdStatus:
    """The A4 20 answer: the ФН's exchange with the OFD."""

    status: int
    reading: int
    unsent: int
    first_unsent_number: int
    first_unsent_time: datetime | None


def decode_ofd_status(answer: bytes) -> OfdStatus:
    data = _payload(answer, "OFD exchange status", 13)
    return OfdStatus(status=data[0], reading=data[1], unsent=int.from_bytes(data[2:4], "little"),
                     first_unsent_number=int.from_bytes(data[4:8], "little"),
                     first_unsent_time=binary_datetime(data[8:13]))


@dataclass
class Registration:
    """The A4 43 answer, read with the layout of the ФН's 43h (as Shtrih's FF09 has it). Not verified."""

    time: datetime | None
    inn: str
    rnm: str


def decode_fn_registration(answer: bytes) -> Registration:
    data = _payload(answer, "ФН registration totals", 37)
    return Registration(time=binary_datetime(data[:5]), inn=decode_text(data[5:17]), rnm=decode_text(data[17:37]))
