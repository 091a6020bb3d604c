"""The ATOL driver: its wire format against the reference byte vectors, and `read_state` against the
simulator through a real pseudo-terminal and a real loopback TCP socket, one scenario knob at a time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import termios
import threading
import time
from datetime import date, datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.kkt import atol_codec as codec
from exporter.kkt import speeds
from exporter.kkt.atol import probe, read_state
from exporter.kkt.model import FiscalDrive, KktError
from simulators.atol import AtolPtySimulator, AtolScenario, AtolTcpSimulator, hold_port
from simulators.mitsu import MitsuPtySimulator

MOSCOW = ZoneInfo("Europe/Moscow")
FAST = {"timeout": 3.0, "command_timeout": 0.5, "timezone": MOSCOW}
MARGIN = 0.3  # what a deadline may overshoot by: one read slice, thread wake-ups
STATE_READ = ["C4", "C1 A5", "C2", "C1 3F", "C2", "C1 A4 31", "C2", "C1 A4 30", "C2", "C1 A4 32", "C2",
              "C1 A4 20", "C2"]


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def byte_with_crc(target: int, packet_id: int = 1) -> int:
    """A data byte that makes the CRC of (packet_id, byte) equal `target`."""
    return next(b for b in range(256) if codec.crc8(bytes([packet_id, b])) == target)


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def nothing_left_open():
    """Every thread a test starts is joined and every descriptor it opens is closed by the end of it."""
    threads = set(threading.enumerate())
    fds = set(os.listdir("/proc/self/fd"))
    yield
    assert [t for t in threading.enumerate() if t not in threads] == []
    assert set(os.listdir("/proc/self/fd")) - fds == set()


@pytest.fixture
def simulators():
    """Starts simulators ("pty" or "tcp") on a scenario; stops each at the end of the test."""
    started: list = []

    def start(scenario: AtolScenario | None = None, kind: str = "pty", baudrate: int = 115200):
        scenario = scenario or AtolScenario()
        simulator = AtolPtySimulator(scenario, baudrate) if kind == "pty" else AtolTcpSimulator(scenario)
        started.append(simulator.start())
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def port_of(simulator) -> str:
    return simulator.device if isinstance(simulator, AtolPtySimulator) else simulator.url


@pytest.fixture(params=["pty", "tcp"])
def register(request, simulators):
    """A register on either link: returns its port string for a scenario."""

    def start(scenario: AtolScenario | None = None) -> str:
        return port_of(simulators(scenario, request.param))

    return start


def healthy_scenario(**changes) -> AtolScenario:
    values = {"fn_expiry": "2027-03-31", "last_document_time": "2026-11-20 23:00", "unsent": 4,
              "first_unsent_number": 18, "first_unsent": "2026-11-18 16:19", "serial": "00123456"}
    return AtolScenario(**{**values, **changes})


def read_error(port: str, **options) -> KktError:
    with pytest.raises(KktError) as caught:
        read_state(port, **{**FAST, **options})
    assert type(caught.value) is KktError
    return caught.value


# --- transport frames ------------------------------------------------------------------------------------

REFERENCE_VECTORS = [
    (0x01, "", "FE 00 00 01 9D"),  # empty data
    (0x06, "C4", "FE 01 00 06 C4 58"),  # abort
    (0x07, "C1 01 02 00 00 A5", "FE 06 00 07 C1 01 02 00 00 A5 8D"),  # add: flags 1, TID 2, password 0, A5
    (0x08, "C3 02", "FE 02 00 08 C3 02 FC"),  # req TID 2
    (0x09, "C3 02", "FE 02 00 09 C3 02 BA"),
    (0x0A, "C3 02", "FE 02 00 0A C3 02 70"),
    (0x01, "C1 01 01 00 00 A4 30", "FE 07 00 01 C1 01 01 00 00 A4 30 C4"),  # the reference's computed example
]


@pytest.mark.parametrize("packet_id, data, frame", REFERENCE_VECTORS)
def test_frames_match_the_reference_vectors_byte_for_byte(packet_id, data, frame):
    assert codec.encode_frame(packet_id, hex_bytes(data)) == hex_bytes(frame)
    assert codec.decode_frame(hex_bytes(frame)) == codec.Frame(packet_id, hex_bytes(data))


def test_task_layer_builds_the_reference_packets():
    assert codec.add_task(0x02, codec.command(codec.DEVICE_INFO)) == hex_bytes("C1 01 02 00 00 A5")
    assert codec.add_task(0x01, codec.command(codec.FN_STATUS)) == hex_bytes("C1 01 01 00 00 A4 30")
    assert codec.request_task(0x02) == hex_bytes("C3 02")
    assert codec.abort_tasks() == hex_bytes("C4")
    assert codec.ack_task(0x02) == hex_bytes("C2 02")
    assert codec.ack_add_task(0x02, 0x03, codec.command(codec.DEVICE_STATUS)) == hex_bytes("C5 02 01 03 00 00 3F")
    with pytest.raises(ValueError):
        codec.request_task(0xE0)


def test_crc_is_poly_0x31_msb_first_with_init_ff():
    assert codec.crc8(b"\x01", 0) == 0x31  # the table's first entry
    assert codec.crc8(b"\x01") == 0x9D
    bitwise = 0xFF
    for byte in b"\x07\xc1\x01\x02\x00\x00\xa5":
        bitwise ^= byte
        for _ in range(8):
            bitwise = ((bitwise << 1) ^ 0x31) & 0xFF if bitwise & 0x80 else (bitwise << 1) & 0xFF
    assert bitwise == 0x8D == codec.crc8(b"\x07\xc1\x01\x02\x00\x00\xa5")


def test_fe_and_fd_in_the_data_are_escaped_and_the_length_counts_them_once():
    frame = codec.encode_frame(0x05, hex_bytes("A3 FE 01 FD 02"))
    crc = codec.crc8(hex_bytes("05 A3 FE 01 FD 02"))
    assert frame[:9] == hex_bytes("FE 05 00 05 A3 FD EE 01 FD") and frame[9:12] == hex_bytes("ED 02") + bytes([crc])
    assert codec.decode_frame(frame) == codec.Frame(0x05, hex_bytes("A3 FE 01 FD 02"))
    assert codec.escape(hex_bytes("FE FD FD FE")) == hex_bytes("FD EE FD ED FD ED FD EE")
    assert codec.unescape(hex_bytes("FD EE FD ED 41")) == hex_bytes("FE FD 41")


@pytest.mark.parametrize("crc, escaped", [(0xFE, "FD EE"), (0xFD, "FD ED")])
def test_a_crc_of_fe_or_fd_is_escaped_like_data(crc, escaped):
    data = bytes([byte_with_crc(crc, 0x01)])
    frame = codec.encode_frame(0x01, data)
    assert frame.endswith(hex_bytes(escaped))
    assert codec.decode_frame(frame) == codec.Frame(0x01, data)
    reader = codec.FrameReader()
    for index in range(len(frame)):  # one byte at a time: the escape pair of the CRC may come split
        reader.feed(frame[index:index + 1])
        got = reader.next()
        assert (got is None) == (index < len(frame) - 1)
    assert got == codec.Frame(0x01, data)


def test_the_length_is_two_seven_bit_halves():
    frame = codec.encode_frame(0x10, bytes(200))
    assert frame[1:3] == bytes([200 & 0x7F, 200 >> 7]) == hex_bytes("48 01")
    assert codec.decode_frame(frame).data == bytes(200)


def test_reader_skips_noise_reads_back_to_back_frames_and_survives_broken_ones():
    good1 = codec.encode_frame(0x01, hex_bytes("A3 55 00"))
    good2 = codec.encode_frame(0xF0, hex_bytes("A6 02 55 00"))
    bad_crc = codec.encode_frame(0x03, hex_bytes("A3"), corrupt=True)
    bad_escape = hex_bytes("FE 02 00 04 A3 FD 41 00")
    cut_short = hex_bytes("FE 05 00 05 A3 55")  # a new frame starts before this one ends
    reader = codec.FrameReader()
    reader.feed(b"\x00\x11noise" + good1 + bad_crc + good2 + bad_escape + cut_short + good1)
    assert reader.next() == codec.Frame(0x01, hex_bytes("A3 55 00"))
    assert reader.skipped == 7
    with pytest.raises(codec.ChecksumError):
        reader.next()
    assert reader.next() == codec.Frame(0xF0, hex_bytes("A6 02 55 00"))
    with pytest.raises(codec.EscapeError):
        reader.next()
    with pytest.raises(codec.EscapeError):
        reader.next()
    assert reader.next() == codec.Frame(0x01, hex_bytes("A3 55 00"))
    assert reader.next() is None and reader.pending == 0


def test_reader_waits_for_the_rest_of_a_frame():
    frame = codec.encode_frame(0x07, hex_bytes("A3 FE FD"))
    reader = codec.FrameReader()
    reader.feed(frame[:-1])
    assert reader.next() is None and reader.pending == len(frame) - 1
    reader.feed(frame[-1:])
    assert reader.next() == codec.Frame(0x07, hex_bytes("A3 FE FD"))


def test_reader_drops_start_bytes_that_head_no_frame():
    reader = codec.FrameReader(max_length=100)
    frame = codec.encode_frame(0x01, b"\xa3")
    reader.feed(hex_bytes("FE 80 00 01") + hex_bytes("FE 7F 7F 01") + frame)  # bit 7 set; longer than allowed
    assert reader.next() == codec.Frame(0x01, b"\xa3")
    assert reader.skipped == 8


@pytest.mark.parametrize("frame, error", [
    ("FE 01 00 06 C4", codec.IncompleteError), ("FE 01 00 06 C4 58 00", codec.ProtocolError),
    ("FE 01 00 06 C4 59", codec.ChecksumError), ("FE 01 00 06 FD 00 58", codec.EscapeError),
    ("00 FE 01 00 06 C4 58", codec.ProtocolError), ("", codec.ProtocolError),
])
def test_decode_frame_refuses_anything_but_one_whole_frame(frame, error):
    with pytest.raises(error):
        codec.decode_frame(hex_bytes(frame))


# --- task buffer and command layer -----------------------------------------------------------------------

def test_task_replies_are_read_by_status():
    assert codec.parse_task_reply(hex_bytes("A3 55 00 01")) == codec.TaskReply(codec.RESULT, hex_bytes("55 00 01"))
    assert codec.parse_task_reply(hex_bytes("A2")) == codec.TaskReply(codec.IN_PROGRESS)
    assert codec.parse_task_reply(hex_bytes("A6 02 B1 B2 B3")) == codec.TaskReply(codec.ASYNC_RESULT,
                                                                                    hex_bytes("B1 B2 B3"), 0x02)
    assert codec.parse_task_reply(hex_bytes("A7 05 55 D4")).tid == 5
    assert codec.parse_task_reply(hex_bytes("A5 09")).tid == 9
    assert codec.parse_task_reply(hex_bytes("B3")).name == "task not found"
    assert codec.parse_task_reply(b"").resend
    for data in ("00", "55 00", "A6"):
        with pytest.raises(codec.ProtocolError):
            codec.parse_task_reply(hex_bytes(data))
    assert codec.task_reply(codec.ASYNC_RESULT, hex_bytes("55 00"), 3) == hex_bytes("A6 03 55 00")


def test_task_requests_are_read_back_by_the_register():
    request = codec.parse_task_request(hex_bytes("C1 01 02 00 00 A5"))
    assert (request.op, request.flags, request.tid, request.command) == (codec.ADD, 1, 2, hex_bytes("00 00 A5"))
    assert codec.parse_task_request(hex_bytes("C5 02 03 04 00 00 3F")).ack_tid == 2
    assert codec.parse_task_request(hex_bytes("C4")).op == codec.ABORT
    for data in ("", "C1 01", "C2", "C3 01 02", "99"):
        with pytest.raises(codec.ProtocolError):
            codec.parse_task_request(hex_bytes(data))


@pytest.mark.parametrize("password, encoded", [(0, "00 00"), (30, "00 30"), (1234, "12 34"), (9999, "99 99")])
def test_the_password_is_two_bcd_bytes_before_the_command(password, encoded):
    assert codec.password_bcd(password) == hex_bytes(encoded)
    assert codec.command(codec.FN_STATUS, password=password) == hex_bytes(encoded + "A4 30")
    assert codec.split_command(codec.command(codec.FN_STATUS, password=password)) == (password, codec.FN_STATUS)


def test_passwords_outside_four_digits_are_refused():
    for password in (-1, 10000):
        with pytest.raises(ValueError):
            codec.password_bcd(password)


def test_bcd_in_both_byte_orders():
    assert codec.int_to_bcd(12345678, 4) == hex_bytes("12 34 56 78")
    assert codec.int_to_bcd(12345678, 4, "little") == hex_bytes("78 56 34 12")
    assert codec.bcd_to_int(hex_bytes("78 56 34 12"), "little") == 12345678
    assert codec.bcd_digits(hex_bytes("00 12 34 56")) == "00123456"
    with pytest.raises(codec.ProtocolError):
        codec.bcd_to_int(hex_bytes("1A"))


# --- answers ---------------------------------------------------------------------------------------------

KAZNACHEY = hex_bytes("8A A0 A7 AD A0 E7 A5 A9 20 94 80")


def test_the_a5_dump_decodes_to_its_model_name_and_version():
    assert KAZNACHEY.decode("cp866") == "Казначей ФА"
    info = codec.decode_device_info(hex_bytes("00 01 01 4C 10 00 03 00 00 21 95") + KAZNACHEY)
    assert (info.protocol, info.device_type, info.model_id, info.mode) == (1, 1, 0x4C, 0x0010)
    assert (info.name, info.firmware) == ("Казначей ФА", "3.0.2195")
    with pytest.raises(codec.DeviceError) as caught:
        codec.decode_device_info(hex_bytes("8C"))
    assert caught.value.code == 0x8C


def status_3f(serial: str = "12 34 56 78", flags: int = 0x4B) -> bytes:
    return (hex_bytes("44 01 02 26 11 20 23 59 07") + bytes([flags]) + hex_bytes(serial) +
            hex_bytes("4C 03 00 21 00 12 00 42 00 0000000000 02 01"))


def test_device_status_3f_reads_bcd_clock_flags_serial_and_mode():
    status = codec.decode_device_status(status_3f())
    assert status.clock == datetime(2026, 11, 20, 23, 59, 7)
    assert (status.cashier, status.hall_number, status.flags) == (1, 2, 0x4B)
    assert status.registered and status.shift_open and status.fn_activated
    assert (status.serial, status.model_id, status.version) == ("12345678", 0x4C, (3, 0))
    assert (status.mode, status.submode) == (1, 2)
    assert (status.receipt_number, status.shift_number, status.receipt_state, status.interface) == (12, 42, 0, 1)
    little = codec.decode_device_status(status_3f(), byte_order="little")
    assert (little.serial, little.receipt_number, little.shift_number) == ("78563412", 1200, 4200)
    assert codec.decode_device_status(status_3f("00 12 34 56", flags=0x08)).serial == "123456"
    closed = codec.decode_device_status(status_3f(flags=0x08))
    assert not closed.registered and not closed.shift_open


def test_device_status_errors_and_malformed_answers():
    with pytest.raises(codec.DeviceError) as caught:
        codec.decode_device_status(hex_bytes("55 8C"))
    assert caught.value.code == 0x8C and "wrong password" in str(caught.value)
    for answer in (status_3f()[:17], b"\x45" + status_3f()[1:], hex_bytes("55 00"),
                   status_3f("1A 34 56 78"), b""):
        with pytest.raises(codec.ProtocolError):
            codec.decode_device_status(answer)


def test_fn_status_a4_30_reads_phase_flags_last_document_and_serial():
    # the ФН fields of the reference's worked FF01 example, behind 55 00
    answer = hex_bytes("55 00 03 00 00 01 08 17 04 1B 17 00") + b"9999078902014447" + hex_bytes("50 00 00 00")
    status = codec.decode_fn_status(answer)
    assert (status.phase, status.document, status.document_data, status.shift_open, status.flags) == \
        (0x03, 0, 0, True, 0x08)
    assert status.last_document_time == datetime(2023, 4, 27, 23, 0)
    assert (status.serial, status.last_document_number) == ("9999078902014447", 80)
    assert codec.decode_fn_status(answer[:28]).last_document_number is None
    with pytest.raises(codec.DeviceError):
        codec.decode_fn_status(hex_bytes("55 D4"))
    with pytest.raises(codec.ProtocolError):
        codec.decode_fn_status(answer[:20])


def test_fn_serial_validity_and_ofd_status():
    assert codec.decode_fn_serial(hex_bytes("55 00") + b"9999078902014447") == "9999078902014447"
    validity = codec.decode_fn_validity(hex_bytes("55 00 1B 03 1F 1D 01"))
    assert validity == codec.FnValidity(date(2027, 3, 31), 29, 1)
    assert codec.decode_fn_validity(hex_bytes("55 00 00 00 00 1E 00")).expiry is None
    ofd = codec.decode_ofd_status(hex_bytes("55 00 03 00 3F 00 12 00 00 00 1A 0A 17 12 0F"))
    assert (ofd.status, ofd.reading, ofd.unsent, ofd.first_unsent_number) == (0x03, 0, 63, 18)
    assert ofd.first_unsent_time == datetime(2026, 10, 23, 18, 15)
    empty = codec.decode_ofd_status(hex_bytes("55 00 01 00 00 00 00 00 00 00 00 00 00 00 00"))
    assert (empty.unsent, empty.first_unsent_time) == (0, None)
    with pytest.raises(codec.DeviceError) as caught:
        codec.decode_ofd_status(hex_bytes("55 EB"))
    assert "30-day" in str(caught.value)


def test_error_meanings_come_from_the_reference_table():
    assert codec.error_meaning(0xD7) == "ФН lifetime ended"
    assert codec.error_meaning(0x88) == "shift over 24 hours"
    assert codec.error_meaning(0x42) == "not in the reference's table"


FRAME_SETTINGS = settings(max_examples=300, deadline=500, database=None)
DATA = st.binary(max_size=120) | st.lists(st.sampled_from([0xFE, 0xFD, 0xEE, 0xED, 0x00, 0xA3]),
                                          max_size=60).map(bytes)
IDS = st.integers(0, codec.MAX_ID) | st.just(codec.ASYNC_ID)


@FRAME_SETTINGS
@given(IDS, DATA, st.binary(max_size=30).map(lambda b: b.replace(b"\xfe", b"")), st.data())
def test_any_frame_comes_back_whole_after_noise_and_in_any_chunks(packet_id, data, noise, draw):
    frame = codec.encode_frame(packet_id, data)
    assert codec.STX not in frame[1:]
    stream = noise + frame
    reader = codec.FrameReader(codec.MAX_LENGTH)
    got = None
    position = 0
    while position < len(stream):
        step = draw.draw(st.integers(1, 8))
        reader.feed(stream[position:position + step])
        position += step
        got = reader.next() or got
    assert got == codec.Frame(packet_id, data)
    assert reader.skipped == len(noise) and reader.pending == 0


@FRAME_SETTINGS
@given(st.binary(max_size=400), st.integers(1, 64))
def test_random_bytes_make_the_reader_raise_protocol_errors_only_and_always_finish(data, chunk):
    reader = codec.FrameReader()
    for start in range(0, len(data), chunk):
        reader.feed(data[start:start + chunk])
        for _ in range(len(data) + 2):  # each call consumes bytes or stops: never more calls than bytes
            try:
                frame = reader.next()
            except codec.ProtocolError:
                continue
            if frame is None:
                break
            assert codec.encode_frame(frame.packet_id, frame.data) in data
        else:
            pytest.fail("the reader kept returning frames without consuming bytes")


@FRAME_SETTINGS
@given(IDS, DATA, st.data())
def test_truncated_frames_are_incomplete_never_a_frame(packet_id, data, draw):
    frame = codec.encode_frame(packet_id, data)
    cut = draw.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(codec.ProtocolError):
        codec.decode_frame(frame[:cut])
    reader = codec.FrameReader(codec.MAX_LENGTH)
    reader.feed(frame[:cut])
    assert reader.next() is None


@FRAME_SETTINGS
@given(IDS, DATA, st.data())
def test_a_wrong_escape_anywhere_in_the_body_is_an_escape_error(packet_id, data, draw):
    frame = codec.encode_frame(packet_id, data)
    where = draw.draw(st.integers(4, len(frame) - 1))
    follower = draw.draw(st.integers(0, 255).filter(lambda b: b not in (codec.TSTX, codec.TESC)))
    broken = frame[:where] + bytes([codec.ESC, follower]) + frame[where:]
    with pytest.raises(codec.EscapeError):
        codec.decode_frame(broken)


@FRAME_SETTINGS
@given(st.binary(max_size=60))
def test_random_answers_make_the_decoders_raise_protocol_or_device_errors_only(data):
    decoders = (codec.decode_device_info, codec.decode_device_status, codec.decode_fn_status,
                codec.decode_fn_serial, codec.decode_fn_validity, codec.decode_ofd_status,
                codec.decode_fn_registration, codec.parse_task_reply, codec.parse_task_request)
    for decode in decoders:
        try:
            decode(data)
        except (codec.ProtocolError, codec.DeviceError):
            pass


# --- read_state against the simulator --------------------------------------------------------------------

def test_healthy_registered_unit_reports_every_field(register):
    port = register(healthy_scenario())
    before = time.time()
    state = read_state(port, **FAST)
    after = time.time()
    assert (state.vendor, state.serial, state.source) == ("atol", "123456", port)
    assert (state.model, state.firmware) == ("Казначей ФА", "3.0.2195")
    assert (state.rnm, state.inn, state.organization, state.ofd, state.ffd) == ("", "", "", "", "")
    assert state.registered is True and state.registration_time is None
    assert before <= state.data_time <= after
    assert abs(state.clock - state.data_time) < 2  # the clock has whole seconds
    assert state.shift_expired is None  # open: 3F does not say for how long
    assert state.licences == []
    assert state.fn == FiscalDrive(
        serial="9999078902014447", phase=0x03, flags=0x00, expiry=at(MOSCOW, 2027, 3, 31),
        registrations_done=1, registrations_remaining=29, last_document_number=None,
        last_document_time=at(MOSCOW, 2026, 11, 20, 23, 0), unsent_documents=4, first_unsent_number=18,
        first_unsent_time=at(MOSCOW, 2026, 11, 18, 16, 19))


def test_the_state_read_is_the_reference_sequence_with_an_ack_after_each_result(simulators):
    simulator = simulators(healthy_scenario())
    read_state(simulator.device, **FAST)
    assert simulator.scenario.requests == STATE_READ
    assert simulator.scenario.commands == ["A5", "3F", "A4 31", "A4 30", "A4 32", "A4 20"]


def test_fn_expiry_is_midnight_of_the_validity_date_in_the_sites_zone(register):
    port = register(AtolScenario(fn_expiry="2026-12-01"))
    yekaterinburg = ZoneInfo("Asia/Yekaterinburg")
    assert read_state(port, **FAST).fn.expiry == at(dt_timezone.utc, 2026, 11, 30, 21, 0)
    assert read_state(port, **{**FAST, "timezone": yekaterinburg}).fn.expiry == at(yekaterinburg, 2026, 12, 1)


@pytest.mark.parametrize("phase", [0x07, 0x0F, 0x01])
def test_fn_phase_is_read(register, phase):
    assert read_state(register(AtolScenario(phase=phase)), **FAST).fn.phase == phase


@pytest.mark.parametrize("flags, warnings", [
    (0x08, ["ofd_timeout"]),
    (0x01 | 0x02, ["replace_urgent", "resource_exhausted"]),
    (0x04 | 0x80, ["archive_full", "critical"]),
])
def test_fn_warning_flags_are_read(register, flags, warnings):
    fn = read_state(register(AtolScenario(flags=flags)), **FAST).fn
    assert fn.flags == flags and fn.warnings() == warnings


def test_unsent_documents_come_with_the_first_unsents_number_and_date(register):
    port = register(AtolScenario(unsent=63, first_unsent_number=18, first_unsent="2026-10-23 18:15"))
    fn = read_state(port, **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number) == (63, 18)
    assert fn.first_unsent_time == at(MOSCOW, 2026, 10, 23, 18, 15)


def test_nothing_unsent_leaves_no_first_unsent_time(register):
    fn = read_state(register(AtolScenario(unsent=0)), **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number, fn.first_unsent_time) == (0, None, None)


def test_registrations_remaining_and_done_come_from_a4_32(register):
    fn = read_state(register(AtolScenario(registrations_remaining=2, registrations_done=10)), **FAST).fn
    assert (fn.registrations_remaining, fn.registrations_done) == (2, 10)


def test_unregistered_unit_reads_as_not_registered_with_zero_dates_as_none(register):
    state = read_state(register(AtolScenario(registered=False, phase=0x01)), **FAST)
    assert state.registered is False
    assert state.clock is not None
    assert (state.fn.phase, state.fn.expiry, state.fn.last_document_time) == (0x01, None, None)
    assert state.fn.registrations_done == 0 and state.fn.first_unsent_time is None


def test_a_closed_shift_is_not_expired(register):
    assert read_state(register(AtolScenario(shift_open=False)), **FAST).shift_expired is False


def test_register_clock_offset_is_kept(register):
    state = read_state(register(AtolScenario(clock_offset=-300)), **FAST)
    assert -302 < state.clock - state.data_time < -298


def test_error_code_from_the_fn_status_is_a_device_error_with_its_meaning(register):
    err = read_error(register(AtolScenario(errors={"A4 30": 0xD4})))
    assert err.reason == "device_error"
    assert "ФН status (A4 30)" in err.message and "error 0xD4 (212): wrong ФН state" in err.message


def test_error_code_from_the_device_info_is_read_from_its_first_byte(register):
    err = read_error(register(AtolScenario(errors={"A5": 0xD5})))
    assert err.reason == "device_error" and "0xD5 (213): unrecoverable ФН error" in err.message


def test_fn_lifetime_ended_on_validity_is_a_device_error_in_fiscal_mode(register):
    err = read_error(register(AtolScenario(errors={"A4 32": 0xD7})))
    assert err.reason == "device_error" and "ФН lifetime ended" in err.message


def test_validity_and_ofd_errors_outside_fiscal_mode_leave_those_fields_unknown(register):
    port = register(AtolScenario(phase=0x01, registered=False, errors={"A4 32": 0xD4, "A4 20": 0xD4}))
    fn = read_state(port, **FAST).fn
    assert (fn.phase, fn.expiry, fn.registrations_remaining, fn.unsent_documents) == (0x01, None, None, None)


def test_wrong_password_is_a_device_error_and_the_right_one_reads(register):
    port = register(AtolScenario(password=30))
    err = read_error(port)
    assert err.reason == "device_error" and "0x8C (140): wrong password" in err.message
    assert read_state(port, **FAST, password=30).serial == "123456"


def test_a_password_outside_four_digits_is_refused_before_opening_the_port():
    err = read_error("/dev/ttyATOL-not-here", password=10000)
    assert err.reason == "error" and "0..9999" in err.message


@pytest.mark.parametrize("order", ["big", "little"])
def test_the_3f_bcd_byte_order_is_one_choice_shared_by_simulator_and_driver(register, order):
    port = register(AtolScenario(serial="12345678", bcd_byte_order=order))
    assert read_state(port, **FAST, bcd_byte_order=order).serial == "12345678"
    other = "little" if order == "big" else "big"
    assert read_state(port, **FAST, bcd_byte_order=other).serial == "78563412"


def test_registration_totals_are_read_only_when_asked(simulators):
    simulator = simulators(AtolScenario(rnm="0000123456029024", inn="7704849611",
                                        registration_time="2023-02-10 18:39"))
    state = read_state(simulator.device, **FAST)
    assert (state.rnm, state.inn, state.registration_time) == ("", "", None)
    assert "A4 43" not in simulator.scenario.commands
    state = read_state(simulator.device, **FAST, read_registration=True)
    assert (state.rnm, state.inn) == ("0000123456029024", "7704849611")
    assert state.registration_time == at(MOSCOW, 2023, 2, 10, 18, 39)


def test_an_error_to_the_unverified_registration_query_leaves_rnm_unknown(register):
    state = read_state(register(AtolScenario(errors={"A4 43": 0x01})), **FAST, read_registration=True)
    assert (state.rnm, state.inn, state.registration_time) == ("", "", None)
    assert state.fn.phase == 0x03


def test_last_document_number_is_read_only_when_asked(register):
    port = register(AtolScenario(last_document=80))
    assert read_state(port, **FAST).fn.last_document_number is None
    assert read_state(port, **FAST, read_last_document_number=True).fn.last_document_number == 80


# --- the task buffer and line faults ---------------------------------------------------------------------

def test_an_async_result_arrives_in_an_f0_packet_after_in_progress(register):
    scenario = healthy_scenario(async_commands={"A4 30"}, async_delay=0.05)
    state = read_state(register(scenario), **FAST)
    assert state.fn.phase == 0x03 and state.fn.serial == "9999078902014447"
    assert scenario.requests == STATE_READ  # the F0 packet came before a poll was needed


def test_every_command_can_go_the_async_way(register):
    scenario = healthy_scenario(async_commands={"*"}, async_delay=0.02)
    assert read_state(register(scenario), **FAST).fn.unsent_documents == 4


def test_a_lost_async_result_is_fetched_with_a_request(register):
    scenario = healthy_scenario(async_commands={"3F"}, async_delay=0.05, lose_async=True)
    state = read_state(register(scenario), **FAST)
    assert state.serial == "123456"
    index = scenario.requests.index("C1 3F")
    assert scenario.requests[index + 1] == "C3" and "C2" in scenario.requests[index + 1:index + 4]


def test_an_async_error_is_a_device_error(register):
    err = read_error(register(AtolScenario(async_commands={"A4 31"}, errors={"A4 31": 0xE9})))
    assert err.reason == "device_error" and "0xE9 (233): no transport connection to the ФН" in err.message


def test_an_async_task_that_never_finishes_times_out_within_the_command_timeout(register):
    port = register(AtolScenario(async_commands={"A5"}, async_delay=30, lose_async=True))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.4)
    assert err.reason == "timeout" and "did not finish device info (A5) within 0.4s" in err.message
    assert time.monotonic() - started < 0.4 + 0.2 + MARGIN


def test_one_bad_crc_is_recovered_by_asking_for_the_result_again(simulators):
    simulator = simulators(healthy_scenario(bad_crc=1, bad_crc_after=1))  # the answer to the A5 task
    state = read_state(simulator.device, **FAST)
    assert state.model == "Казначей ФА"
    assert simulator.scenario.requests[:5] == ["C4", "C1 A5", "C3", "C2", "C1 3F"]
    assert simulator.scenario.commands.count("A5") == 1  # asked for the kept result, not run again


def test_a_bad_crc_on_the_abort_answer_is_survived_by_sending_it_again(register):
    scenario = healthy_scenario(bad_crc=1)
    assert read_state(register(scenario), **FAST).serial == "123456"
    assert scenario.requests[:3] == ["C4", "C4", "C1 A5"]


def test_a_broken_escape_is_recovered_like_a_bad_crc(register):
    scenario = healthy_scenario(bad_escape=2)
    assert read_state(register(scenario), **FAST).fn.unsent_documents == 4


def test_bad_crc_every_time_is_a_protocol_error(simulators):
    simulator = simulators(AtolScenario(bad_crc=1000, bad_crc_after=1))  # every answer after the abort's
    err = read_error(simulator.device)
    assert err.reason == "protocol" and "3 broken frames in answer to device info (A5)" in err.message
    assert simulator.scenario.requests == ["C4", "C1 A5", "C3", "C3"]


def test_the_register_asking_for_a_packet_again_gets_it_again(register):
    scenario = healthy_scenario(resend_requests=2)
    assert read_state(register(scenario), **FAST).serial == "123456"
    assert scenario.requests[:4] == ["C4", "C4", "C4", "C1 A5"]


def test_a_register_that_always_asks_again_is_a_protocol_error(register):
    err = read_error(register(AtolScenario(resend_requests=1000)))
    assert err.reason == "protocol" and "asked for abort (C4) again 4 times" in err.message


@pytest.mark.parametrize("status, words", [(0xB1, "0xB1 (task buffer overflow)"), (0xB4, "0xB4 (illegal value)")])
def test_task_buffer_errors_are_protocol_errors(register, status, words):
    err = read_error(register(AtolScenario(task_status={"3F": status})))
    assert err.reason == "protocol" and f"answered device status (3F) with {words}" in err.message


def test_a_stopped_buffer_is_cleared_and_the_task_queued_once_more(simulators):
    simulator = simulators(AtolScenario(task_status={"A5": codec.STOPPED}))
    err = read_error(simulator.device)
    assert err.reason == "protocol" and "0xA5 (stopped)" in err.message
    assert simulator.scenario.requests == ["C4", "C1 A5", "C4", "C1 A5"]


def test_silent_register_times_out_within_the_command_timeout(register):
    port = register(AtolScenario(silent=True))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    elapsed = time.monotonic() - started
    assert err.reason == "timeout" and elapsed < 0.3 + MARGIN
    assert err.message == f"ATOL on {port} did not answer abort (C4) within 0.3s"


def test_slow_replies_within_the_command_timeout_are_read(register):
    state = read_state(register(AtolScenario(delay=0.05)), **{**FAST, "command_timeout": 0.4})
    assert state.fn.phase == 0x03


def test_whole_read_stops_at_its_timeout_even_when_each_reply_is_in_time(register):
    port = register(AtolScenario(delay=0.1))
    started = time.monotonic()
    err = read_error(port, timeout=0.5, command_timeout=1.0)
    assert err.reason == "timeout" and "took over 0.5s" in err.message
    assert time.monotonic() - started < 0.5 + MARGIN


def test_a_frame_cut_short_times_out_instead_of_hanging(register):
    port = register(AtolScenario(garbage=codec.encode_frame(1, hex_bytes("A3 55 00 01 02"))[:6]))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "timeout" and "stopped answering abort (C4) after" in err.message
    assert time.monotonic() - started < 0.3 + MARGIN


def test_bytes_that_are_not_frames_are_a_protocol_error(register):
    port = register(AtolScenario(garbage=b"Hello, this is not ATOL"))
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "protocol" and "not ATOL frames" in err.message


def test_a_well_framed_answer_that_is_not_the_command_answer_is_a_protocol_error(register):
    scenario = AtolScenario(model_id=0x4C)
    port = register(scenario)
    scenario.errors = {"3F": 0x00}  # "55 00": no error, yet no 0x44 status either
    err = read_error(port)
    assert err.reason == "protocol" and "device status (3F)" in err.message


# --- line speed ------------------------------------------------------------------------------------------

def test_a_register_at_57600_is_found_after_115200_gets_no_answer(simulators):
    simulator = simulators(healthy_scenario(), baudrate=57600)
    started = time.monotonic()
    state = read_state(simulator.device, speeds.search_order("atol", speeds.AUTO), **FAST)
    assert state.serial == "123456" and state.fn.unsent_documents == 4 and state.baudrate == 57600
    assert simulator.bytes_ignored > 0  # the first abort went out at 115200: noise to the register
    assert simulator.scenario.requests == STATE_READ
    assert time.monotonic() - started < speeds.PROBE_TIMEOUT + 1.0


@pytest.mark.parametrize("speed", [4800, 9600, 38400])
def test_a_register_left_at_a_slow_speed_is_found_in_the_vendors_order(simulators, speed):
    simulator = simulators(healthy_scenario(), baudrate=speed)
    state = read_state(simulator.device, speeds.search_order("atol", speeds.AUTO), **{**FAST, "timeout": 6.0})
    assert state.baudrate == speed and state.serial == "123456"
    order = speeds.VENDOR_ORDER["atol"]
    assert simulator.speeds_seen == [getattr(termios, f"B{each}") for each in order[:order.index(speed) + 1]]


def test_a_fixed_speed_is_the_only_speed_asked(simulators):
    simulator = simulators(baudrate=57600)
    err = read_error(simulator.device, baudrate=115200)
    assert err.reason == "timeout" and "did not answer abort (C4)" in err.message
    assert simulator.speeds_seen == [termios.B115200]


def test_a_register_at_no_speed_of_the_search_is_named_in_the_error(simulators):
    simulator = simulators(baudrate=9600)
    err = read_error(simulator.device, baudrate=(115200, 57600), command_timeout=0.2)
    assert err.reason == "timeout" and "answered at none of 115200, 57600 baud" in err.message


# --- ports -----------------------------------------------------------------------------------------------

def test_network_link_keeps_one_connection_for_the_whole_read(simulators):
    simulator = simulators(kind="tcp")
    state = read_state(simulator.url.replace("socket://", "tcp://"), **FAST)
    assert state.vendor == "atol" and simulator.connections == 1
    assert simulator.scenario.requests == STATE_READ


def test_port_held_by_another_program_is_port_busy(simulators):
    simulator = simulators()
    with hold_port(simulator.device):
        err = read_error(simulator.device)
    assert err.reason == "port_busy"
    assert read_state(simulator.device, **FAST).serial == "123456"  # free again once the till lets go


def test_port_is_free_for_the_till_after_a_read_and_after_a_failed_one(simulators):
    simulator = simulators()
    read_state(simulator.device, **FAST)
    with hold_port(simulator.device):
        pass
    simulator.scenario.silent = True
    read_error(simulator.device, command_timeout=0.1)
    with hold_port(simulator.device):
        pass


def test_missing_device_is_not_found():
    err = read_error("/dev/ttyATOL-not-here")
    assert err.reason == "not_found" and "/dev/ttyATOL-not-here" in err.message


def test_closed_tcp_port_is_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    for port in (f"socket://127.0.0.1:{free}", f"tcp://127.0.0.1:{free}"):
        err = read_error(port)
        assert err.reason == "refused" and f"127.0.0.1:{free}" in err.message


# --- probe -----------------------------------------------------------------------------------------------

def test_probe_says_yes_to_an_atol_on_either_link(register):
    assert probe(register(AtolScenario()), 115200, 1.0) == 115200


def test_probe_finds_an_atol_at_another_speed_of_the_search(simulators):
    assert probe(simulators(baudrate=57600).device, speeds.search_order("atol", speeds.AUTO), 1.0) == 57600


def test_probe_asks_nothing_but_device_info(simulators):
    simulator = simulators()
    probe(simulator.device, 115200, 1.0)
    assert simulator.scenario.commands == ["A5"] and "C4" not in simulator.scenario.requests


def test_probe_says_no_to_silence_and_to_a_mitsu_and_names_a_port_that_cannot_be_used():
    silent = AtolPtySimulator(AtolScenario(silent=True)).start()
    mitsu = MitsuPtySimulator().start()
    try:
        started = time.monotonic()
        assert probe(silent.device, 115200, 0.4) is None
        assert time.monotonic() - started < 0.4 + MARGIN
        assert probe(mitsu.device, 115200, 0.4) is None
    finally:
        silent.stop()
        mitsu.stop()
    # no vendor could answer there: the reason is the port's, not "nothing answered"
    for port, reason in [("/dev/ttyATOL-not-here", "not_found"), ("socket://127.0.0.1:1", "refused"),
                         ("socket://no-such-host.invalid:5555", "dns")]:
        with pytest.raises(KktError) as caught:
            probe(port, 115200, 0.2)
        assert caught.value.reason == reason


# --- random bytes from the register ----------------------------------------------------------------------

def test_random_bytes_from_the_register_fail_as_protocol_or_timeout_in_time(simulators):
    scenario = AtolScenario()
    ports = [port_of(simulators(scenario, "pty")), port_of(simulators(scenario, "tcp"))]

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(garbage=st.binary(min_size=1, max_size=64) | st.lists(
        st.sampled_from([0xFE, 0xFD, 0xEE, 0xED, 0x00, 0x01, 0xA3, 0x55]), min_size=1, max_size=40).map(bytes),
        which=st.sampled_from([0, 1]))
    def check(garbage, which):
        scenario.garbage = garbage
        started = time.monotonic()
        err = read_error(ports[which], timeout=0.6, command_timeout=0.1)
        assert err.reason in ("protocol", "timeout"), err.message
        assert time.monotonic() - started < 0.6 + MARGIN

    check()


def test_valid_frames_with_wrong_escapes_or_crcs_fail_as_protocol_or_timeout_in_time(simulators):
    scenario = AtolScenario()
    port = port_of(simulators(scenario, "tcp"))

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        frame = codec.encode_frame(data.draw(st.integers(0, codec.MAX_ID)), data.draw(DATA))
        where = data.draw(st.integers(4, len(frame) - 1))
        damaged = frame[:where] + bytes([codec.ESC, data.draw(st.integers(0, 0xEC))]) + frame[where:]
        scenario.garbage = data.draw(st.sampled_from([damaged, frame[:-1] + bytes([frame[-1] ^ 0x01])]))
        started = time.monotonic()
        err = read_error(port, timeout=0.6, command_timeout=0.1)
        assert err.reason in ("protocol", "timeout"), err.message
        assert time.monotonic() - started < 0.6 + MARGIN

    check()


# --- the simulator's command line ------------------------------------------------------------------------

def test_the_simulator_runs_from_the_command_line_on_loopback_tcp():
    command = [sys.executable, "-m", "simulators.atol", "--tcp", "127.0.0.1:0", "--unsent", "7", "--phase", "0x07",
               "--flags", "0x08", "--async", "A4 20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:")
        fn = read_state(url, **FAST).fn
        assert (fn.unsent_documents, fn.phase, fn.warnings()) == (7, 0x07, ["ofd_timeout"])
    finally:
        process.terminate()
        process.wait(5)
        process.stdout.close()
    assert process.returncode == 0
