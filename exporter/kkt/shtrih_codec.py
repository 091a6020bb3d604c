"""The Shtrih-M "protocol 1" wire format, as pure functions: the ENQ/ACK/NAK handshake bytes, frames
`STX LEN CMD DATA LRC`, one- and two-byte (FFxx) command codes, the 4-byte password, Windows-1251 strings,
and the replies a state read needs. The driver and the simulator both build on it; nothing here touches a
port.

A reply's DATA starts with the error code (0 = OK); the decoders below take a `Reply` and read the bytes
after it. Multi-byte numbers are little-endian; a two-byte command code is big-endian (`FF 01`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

# --- link-layer bytes -------------------------------------------------------------------------------------

ENQ, STX, ACK, NAK = 0x05, 0x02, 0x06, 0x15
# Over TCP some units send one undocumented 0xFF after the host's ACK; a reader skips it.
STRAY = 0xFF
EXTENDED_PREFIX = 0xFF  # the first byte of a two-byte command code
ENCODING = "cp1251"
MAX_LEN = 0xFF  # LEN is one byte: command code(s) + data

# Default passwords: the operator's and the system administrator's. ФН queries take the administrator's.
OPERATOR_PASSWORD = 1
ADMIN_PASSWORD = 30

# --- command codes ----------------------------------------------------------------------------------------

SHORT_STATUS = 0x10
LONG_STATUS = 0x11
READ_TABLE = 0x1F
DEVICE_TYPE = 0xFC
FN_STATUS = 0xFF01
FN_SERIAL = 0xFF02
FN_EXPIRY = 0xFF03
FN_REGISTRATION = 0xFF09
OFD_STATUS = 0xFF39
FN_UNCONFIRMED = 0xFF3F

COMMAND_NAMES = {
    SHORT_STATUS: "short status", LONG_STATUS: "long status", READ_TABLE: "read table",
    DEVICE_TYPE: "device type", FN_STATUS: "ФН status", FN_SERIAL: "ФН serial", FN_EXPIRY: "ФН expiry",
    FN_REGISTRATION: "registration totals", OFD_STATUS: "OFD exchange status",
    FN_UNCONFIRMED: "documents without an OFD receipt",
}

# Table 18 ("fiscal storage"), field 1: the register's full serial (factory) number, as a string.
SERIAL_TABLE, SERIAL_ROW, SERIAL_FIELD = 18, 1, 1

# Long status (11h) mode byte: the low nibble is the mode number, the high nibble a status within some modes.
MODE_SHIFT_OPEN = 2
MODE_SHIFT_EXPIRED = 3  # shift open for more than 24 hours
MODE_SHIFT_CLOSED = 4
MODE_DOCUMENT_OPEN = 8

# "Not entered" markers in the long status.
_NO_SERIAL = 0xFFFFFFFF
_NO_INN = 0xFFFFFFFFFFFF
# A date of 00 00 00 in the long status means "none": an unfiscalised unit sends it as its fiscal-memory date
# (reference §10; pyshtrih, which builds a date from every field, fails on it).
_NO_DATE = bytes(3)


class ProtocolError(ValueError):
    """Bytes that are not a Shtrih message."""


class ChecksumError(ProtocolError):
    """A frame whose LRC does not match: a line fault worth a resend (NAK)."""


class IncompleteError(ProtocolError):
    """The frame stops early; more bytes could still make it whole."""


# --- the handshake --------------------------------------------------------------------------------------

class Handshake(enum.Enum):
    """What a byte answering the host's ENQ means."""

    READY = "ready"  # NAK: no answer held; send the command
    PENDING = "pending"  # ACK: an answer from an earlier command is waiting; read it first
    STRAY = "stray"  # the network link's extra 0xFF after an ACK: skip it
    NOISE = "noise"  # anything else


def handshake_answer(byte: int) -> Handshake:
    """The host's reading of one byte received after its ENQ."""
    if byte == NAK:
        return Handshake.READY
    if byte == ACK:
        return Handshake.PENDING
    if byte == STRAY:
        return Handshake.STRAY
    return Handshake.NOISE


def enq_reply(answer_pending: bool) -> bytes:
    """The device's reply to ENQ: ACK while it holds an unread answer (which it sends next), else NAK."""
    return bytes([ACK if answer_pending else NAK])


# --- frames -----------------------------------------------------------------------------------------------

def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def command_bytes(code: int) -> bytes:
    """A command code on the wire: one byte, or two big-endian bytes for the extended FFxx commands."""
    if not isinstance(code, int) or code < 0:
        raise ProtocolError(f"{code!r} is not a command code")
    if code <= 0xFF:
        if code == EXTENDED_PREFIX:
            raise ProtocolError("0xFF alone is the prefix of the extended commands, not a command")
        return bytes([code])
    if code >> 8 == EXTENDED_PREFIX and code <= 0xFFFF:
        return code.to_bytes(2, "big")
    raise ProtocolError(f"0x{code:X} is neither a one-byte command nor an extended FFxx one")


def command_name(code: int) -> str:
    """'FF01h (ФН status)', for messages."""
    text = f"{code:02X}h" if code <= 0xFF else f"{code:04X}h"
    name = COMMAND_NAMES.get(code)
    return f"{text} ({name})" if name else text


def password_bytes(password: int) -> bytes:
    """A password as its 4 little-endian bytes."""
    if not isinstance(password, int) or not 0 <= password <= 0xFFFFFFFF:
        raise ProtocolError(f"a password is a number from 0 to 4294967295, not {password!r}")
    return password.to_bytes(4, "little")


def frame(code: int, data: bytes = b"", corrupt: bool = False) -> bytes:
    """STX, LEN (code and data bytes), the code, the data, and the LRC: XOR of LEN, code and data.

    Commands and replies share the layout (a reply's data begins with its error code). `corrupt` spoils
    the LRC, for the simulator's line faults.
    """
    body = command_bytes(code) + bytes(data)
    if len(body) > MAX_LEN:
        raise ProtocolError(f"a frame of {len(body)} bytes does not fit the one-byte length")
    head = bytes([len(body)]) + body
    return bytes([STX]) + head + bytes([lrc(head) ^ (0xFF if corrupt else 0)])


def request(code: int, password: int | None = ADMIN_PASSWORD, params: bytes = b"") -> bytes:
    """A command frame: the password first in DATA (None: a command without one, such as FCh)."""
    data = (b"" if password is None else password_bytes(password)) + bytes(params)
    return frame(code, data)


def table_params(table: int, row: int, field: int) -> bytes:
    """1Fh's parameters after the password: table(1), row(2), field(1)."""
    if not (0 <= table <= 0xFF and 0 <= row <= 0xFFFF and 0 <= field <= 0xFF):
        raise ProtocolError(f"table {table}, row {row}, field {field} is out of range")
    return bytes([table]) + row.to_bytes(2, "little") + bytes([field])


def read_table_request(table: int, row: int, field: int, password: int = ADMIN_PASSWORD) -> bytes:
    """1Fh: password(4), table(1), row(2), field(1)."""
    return request(READ_TABLE, password, table_params(table, row, field))


def frame_end(buffer: bytes) -> int | None:
    """Where the frame starting at buffer[0] (an STX) ends, or None until its LEN byte is there."""
    if len(buffer) < 2:
        return None
    return 2 + buffer[1] + 1


def frame_payload(data: bytes) -> bytes:
    """The code-and-data bytes of one whole frame, after checking STX, LEN and the LRC."""
    data = bytes(data)
    if not data:
        raise IncompleteError("no bytes")
    if data[0] != STX:
        raise ProtocolError(f"a frame starts with STX (02), not {data[0]:02X}")
    end = frame_end(data)
    if end is None or len(data) < end:
        raise IncompleteError(f"the frame stops after {len(data)} bytes")
    if len(data) > end:
        raise ProtocolError(f"{len(data) - end} bytes after the frame")
    if data[1] == 0:
        raise ProtocolError("a frame of length 0 has no command code")
    head = data[1:-1]
    if lrc(head) != data[-1]:
        raise ChecksumError(f"LRC 0x{data[-1]:02X}, expected 0x{lrc(head):02X}")
    return head[1:]


def split_code(payload: bytes) -> tuple[int, bytes]:
    """(command code, the bytes after it) of a frame's payload."""
    payload = bytes(payload)
    if not payload:
        raise ProtocolError("no command code")
    if payload[0] == EXTENDED_PREFIX:
        if len(payload) < 2:
            raise ProtocolError("an extended command code without its second byte")
        return int.from_bytes(payload[:2], "big"), payload[2:]
    return payload[0], payload[1:]


@dataclass
class Reply:
    """One answer: the command it echoes, its error code (0 = OK) and the bytes after the error code."""

    command: int
    error: int
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.error == 0


def parse_reply_payload(payload: bytes) -> Reply:
    code, rest = split_code(payload)
    if not rest:
        raise ProtocolError(f"the answer to {command_name(code)} has no error code")
    return Reply(code, rest[0], rest[1:])


def decode_reply(data: bytes) -> Reply:
    """One whole reply frame `STX LEN CMD ERR DATA LRC`; ChecksumError for a bad LRC."""
    return parse_reply_payload(frame_payload(data))


def decode_command(data: bytes) -> tuple[int, bytes]:
    """One whole command frame: (code, data). The simulator's side of `request`."""
    return split_code(frame_payload(data))


# --- field readers --------------------------------------------------------------------------------------

def decode_text(raw: bytes) -> str:
    """A Windows-1251 string field, without the NULs and spaces that pad it."""
    try:
        text = bytes(raw).decode(ENCODING)
    except UnicodeDecodeError:
        raise ProtocolError("bytes that are not Windows-1251 text") from None
    return text.split("\x00", 1)[0].strip(" ")  # what follows a NUL is padding


def encode_text(text: str, size: int | None = None, pad: bytes = b" ") -> bytes:
    """`text` in Windows-1251, padded to `size` bytes (or cut to it)."""
    try:
        raw = text.encode(ENCODING)
    except UnicodeEncodeError:
        raise ProtocolError(f"{text!r} cannot be written in Windows-1251") from None
    if size is None:
        return raw
    return raw[:size].ljust(size, pad)


def _printable_text(raw: bytes) -> str:
    """A fixed-width ASCII field (a serial number, INN, RNM): control characters mean it is not one."""
    text = decode_text(raw)
    if any(ord(char) < 0x20 for char in text):
        raise ProtocolError(f"control characters in a number field: {bytes(raw)!r}")
    return text


def _date(year: int, month: int, day: int) -> date | None:
    """A date from its fields (year - 2000); None for the zeros of an empty record or a nonsense date."""
    try:
        return date(2000 + year, month, day)
    except ValueError:
        return None


def _datetime(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime | None:
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        return None


def date_ymd(raw: bytes) -> date | None:
    """YY MM DD, binary (the ФН's layout)."""
    return _date(raw[0], raw[1], raw[2])


def datetime_ymdhm(raw: bytes) -> datetime | None:
    """YY MM DD hh mm, binary (ФН document dates)."""
    return _datetime(raw[0], raw[1], raw[2], raw[3], raw[4])


def encode_ymdhm(moment: datetime | None) -> bytes:
    if moment is None:
        return bytes(5)
    return bytes([moment.year - 2000, moment.month, moment.day, moment.hour, moment.minute])


def encode_ymd(day: date | None) -> bytes:
    return bytes(3) if day is None else bytes([day.year - 2000, day.month, day.day])


def encode_dmy(day: date | None) -> bytes:
    return bytes(3) if day is None else bytes([day.day, day.month, day.year - 2000])


def _need(reply: Reply, code: int, size: int) -> bytes:
    if reply.command != code:
        raise ProtocolError(f"the answer is to {command_name(reply.command)}, not {command_name(code)}")
    if not reply.ok:
        raise ProtocolError(f"{command_name(code)} answered with error 0x{reply.error:02X}")
    if len(reply.data) < size:
        raise ProtocolError(f"{command_name(code)} answered {len(reply.data)} bytes after the error code, "
                            f"at least {size} expected")
    return reply.data


# --- the replies a state read needs ---------------------------------------------------------------------

@dataclass
class DeviceType:
    """FCh: what the unit is."""

    type: int
    subtype: int
    protocol_version: int
    protocol_subversion: int
    model: int
    language: int
    name: str


def decode_device_type(reply: Reply) -> DeviceType:
    data = _need(reply, DEVICE_TYPE, 6)
    return DeviceType(data[0], data[1], data[2], data[3], data[4], data[5], decode_text(data[6:]))


LONG_STATUS_SIZE = 46  # bytes after the error code (the frame's LEN is 48 with the code and error bytes)


@dataclass
class LongStatus:
    """11h. `serial_number` and `inn` are None when the unit reports them as not entered (all FF); the dates
    are None when they are 00 00 00 (not set, e.g. `fm_date` before fiscalisation) or not a date at all."""

    operator: int
    firmware_version: str  # two characters
    firmware_build: int
    firmware_date: date | None
    hall_number: int
    document_number: int
    flags: int
    mode: int  # the whole mode byte
    submode: int
    port: int
    fm_version: str
    fm_build: int
    fm_date: date | None
    clock: datetime | None  # the register's own date and time
    fm_flags: int
    serial_number: int | None  # the low 4 bytes; with `serial_high`, the 6-byte number
    last_shift: int
    free_fm_records: int
    registrations_done: int
    registrations_remaining: int
    inn: str
    serial_high: int | None = None  # only when asked for: the tail layout is not confirmed

    @property
    def mode_number(self) -> int:
        return self.mode & 0x0F

    @property
    def shift_expired(self) -> bool:
        return self.mode_number == MODE_SHIFT_EXPIRED

    @property
    def firmware(self) -> str:
        version = self.firmware_version
        shown = f"{version[0]}.{version[1]}" if len(version) == 2 and version.isprintable() else version
        return f"{shown} build {self.firmware_build}".strip()

    @property
    def serial(self) -> str:
        """The factory number as the long status gives it ("" when not entered)."""
        if self.serial_number is None:
            return ""
        number = self.serial_number if self.serial_high is None else (self.serial_high << 32) | self.serial_number
        return str(number)


def decode_long_status(reply: Reply, serial_high_in_tail: bool = False) -> LongStatus:
    """11h. With `serial_high_in_tail`, the two bytes after the INN (when present) are taken as the serial
    number's high bytes, which some newer firmware is said to append (one source, not confirmed)."""
    d = _need(reply, LONG_STATUS, LONG_STATUS_SIZE)

    def u16(at: int) -> int:
        return int.from_bytes(d[at:at + 2], "little")

    def dmy(at: int) -> date | None:
        if d[at:at + 3] == _NO_DATE:
            return None  # no such date yet, which is no fault of the answer
        return _date(d[at + 2], d[at + 1], d[at])  # an impossible one (month 13) reads as unknown, None too

    serial_low = int.from_bytes(d[30:34], "little")
    inn_number = int.from_bytes(d[40:46], "little")
    serial_high = None
    if serial_high_in_tail and len(d) >= LONG_STATUS_SIZE + 2 and serial_low != _NO_SERIAL:
        high = u16(46)
        serial_high = None if high == 0xFFFF else high
    return LongStatus(
        operator=d[0],
        firmware_version=decode_text(d[1:3]),
        firmware_build=u16(3),
        firmware_date=dmy(5),
        hall_number=d[8],
        document_number=u16(9),
        flags=u16(11),
        mode=d[13],
        submode=d[14],
        port=d[15],
        fm_version=decode_text(d[16:18]),
        fm_build=u16(18),
        fm_date=dmy(20),
        clock=_datetime(d[25], d[24], d[23], d[26], d[27], d[28]),
        fm_flags=d[29],
        serial_number=None if serial_low == _NO_SERIAL else serial_low,
        last_shift=u16(34),
        free_fm_records=u16(36),
        registrations_done=d[38],
        registrations_remaining=d[39],
        inn="" if inn_number in (_NO_INN, 0) else str(inn_number),
        serial_high=serial_high,
    )


@dataclass
class FnStatus:
    """FF01h."""

    phase: int
    document: int  # current document: 00 none, 01 registration report, 02 shift open, 04 receipt, ...
    document_data: int
    shift_open: bool
    flags: int  # the ФН warning flags
    last_document_time: datetime | None
    serial: str
    last_document_number: int


def decode_fn_status(reply: Reply) -> FnStatus:
    d = _need(reply, FN_STATUS, 30)
    return FnStatus(phase=d[0], document=d[1], document_data=d[2], shift_open=bool(d[3]), flags=d[4],
                    last_document_time=datetime_ymdhm(d[5:10]), serial=_printable_text(d[10:26]),
                    last_document_number=int.from_bytes(d[26:30], "little"))


@dataclass
class FnExpiry:
    """FF03h. The date is binary YY MM DD (the vendor's comment says BCD; its own code reads binary)."""

    expiry: date | None
    registrations_remaining: int | None
    registrations_done: int | None


def decode_fn_expiry(reply: Reply) -> FnExpiry:
    d = _need(reply, FN_EXPIRY, 3)
    return FnExpiry(date_ymd(d[0:3]), d[3] if len(d) > 3 else None, d[4] if len(d) > 4 else None)


@dataclass
class Registration:
    """FF09h: the last registration's totals. INN and RNM lead both the FFD 1.05 and the longer 1.1+ layout."""

    time: datetime | None
    inn: str
    rnm: str
    tax_systems: int | None
    work_mode: int | None


def decode_registration(reply: Reply) -> Registration:
    d = _need(reply, FN_REGISTRATION, 37)
    return Registration(time=datetime_ymdhm(d[0:5]), inn=_printable_text(d[5:17]), rnm=_printable_text(d[17:37]),
                        tax_systems=d[37] if len(d) > 37 else None, work_mode=d[38] if len(d) > 38 else None)


@dataclass
class OfdStatus:
    """FF39h: the queue of documents waiting for the OFD."""

    status: int  # b0 connected, b1 message pending, b2 waiting for a receipt, ...
    read_state: int
    unsent: int
    first_unsent_number: int
    first_unsent_time: datetime | None


def decode_ofd_status(reply: Reply) -> OfdStatus:
    d = _need(reply, OFD_STATUS, 13)
    return OfdStatus(status=d[0], read_state=d[1], unsent=int.from_bytes(d[2:4], "little"),
                     first_unsent_number=int.from_bytes(d[4:8], "little"),
                     first_unsent_time=datetime_ymdhm(d[8:13]))


def decode_table_text(reply: Reply) -> str:
    """1Fh with a string field: its text."""
    return decode_text(_need(reply, READ_TABLE, 0))


def decode_unconfirmed_count(reply: Reply) -> int:
    """FF3Fh: documents without an OFD receipt. Sources disagree on 2 or 4 bytes; both are read."""
    d = _need(reply, FN_UNCONFIRMED, 2)
    if len(d) not in (2, 4):
        raise ProtocolError(f"{command_name(FN_UNCONFIRMED)} answered {len(d)} bytes, 2 or 4 expected")
    return int.from_bytes(d, "little")
