"""The Shtrih-M driver: its wire format against the reference byte vectors, and `read_state`/`probe` against
the simulator through a real pseudo-terminal and a real loopback TCP socket, one scenario knob at a time.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import date, datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.kkt import shtrih_codec as codec
from exporter.kkt.model import FiscalDrive, KktError
from exporter.kkt.shtrih import probe, read_state
from simulators import shtrih as sim
from simulators.mitsu import MitsuPtySimulator
from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario, ShtrihTcpSimulator, hold_port

MOSCOW = ZoneInfo("Europe/Moscow")
# the simulators here run at 115200 (not the factory 4800) to keep the protocol tests quick; speeds: test_kkt_checks
FAST = {"timeout": 3.0, "command_timeout": 0.5, "timezone": MOSCOW, "baudrate": 115200}
MARGIN = 0.3  # what a deadline may overshoot by: one read slice, thread wake-ups
ALL_COMMANDS = [0xFC, 0x11, 0x1F, 0xFF01, 0xFF03, 0xFF09, 0xFF39]


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def eventually(predicate, timeout: float = 1.0) -> bool:
    """The simulator reads the driver's last ACK a moment after the driver has closed the port."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


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
    started: list[ShtrihPtySimulator | ShtrihTcpSimulator] = []

    def start(scenario: ShtrihScenario | None = None, kind: str = "pty", baudrate: int = 115200):
        scenario = scenario or ShtrihScenario()
        simulator = ShtrihPtySimulator(scenario, baudrate) if kind == "pty" else ShtrihTcpSimulator(scenario)
        started.append(simulator.start())
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def port_of(simulator) -> str:
    return simulator.device if isinstance(simulator, ShtrihPtySimulator) else simulator.url


@pytest.fixture(params=["pty", "tcp"])
def register(request, simulators):
    """A register on either link: returns the running simulator for a scenario."""

    def start(scenario: ShtrihScenario | None = None):
        return simulators(scenario, request.param)

    return start


def healthy_scenario(**changes) -> ShtrihScenario:
    values = {"fn_expiry": "2027-03-31", "last_document_time": "2026-11-20 23:00",
              "registration_time": "2023-02-10 18:39", "unsent": 4, "first_unsent_number": 18,
              "first_unsent": "2026-11-18 16:19"}
    return ShtrihScenario(**{**values, **changes})


def read_error(port: str, **options) -> KktError:
    with pytest.raises(KktError) as caught:
        read_state(port, **{**FAST, **options})
    return caught.value


def reply(code: int, data: bytes, error: int = 0) -> codec.Reply:
    return codec.decode_reply(codec.frame(code, bytes([error]) + data))


# --- the wire format: the reference's vectors -----------------------------------------------------------

def test_long_status_request_matches_the_canonical_vector():
    assert codec.request(0x11, 30) == hex_bytes("02 05 11 1E 00 00 00 0A")
    assert codec.request(codec.LONG_STATUS) == hex_bytes("02 05 11 1E 00 00 00 0A")  # admin 30 by default


@pytest.mark.parametrize("code, vector", [
    (0xFF01, "02 06 FF 01 1E 00 00 00 E6"),
    (0xFF03, "02 06 FF 03 1E 00 00 00 E4"),
    (0xFF09, "02 06 FF 09 1E 00 00 00 EE"),
    (0xFF39, "02 06 FF 39 1E 00 00 00 DE"),
    (0xFF3F, "02 06 FF 3F 1E 00 00 00 D8"),
])
def test_extended_fn_requests_with_the_admin_password_match_the_reference(code, vector):
    assert codec.request(code, codec.ADMIN_PASSWORD) == hex_bytes(vector)


def test_device_type_request_has_no_password():
    assert codec.request(codec.DEVICE_TYPE, None) == hex_bytes("02 01 FC FD")


FF01_EXAMPLE = hex_bytes("02 21 FF 01 00 03 00 00 01 08 17 04 1B 17 00 39 39 39 39 30 37 38 39 30 32 30 31 34 34 34 "
                         "37 50 00 00 00 9C")


def test_fn_status_worked_example_decodes_field_by_field():
    answer = codec.decode_reply(FF01_EXAMPLE)
    assert (answer.command, answer.error, len(answer.data) + 1) == (0xFF01, 0, 31)
    status = codec.decode_fn_status(answer)
    assert status == codec.FnStatus(phase=0x03, document=0, document_data=0, shift_open=True, flags=0x08,
                                    last_document_time=datetime(2023, 4, 27, 23, 0), serial="9999078902014447",
                                    last_document_number=80)


def test_simulator_encodes_the_fn_status_worked_example_byte_for_byte():
    scenario = ShtrihScenario(phase=0x03, flags=0x08, last_document_time="2023-04-27 23:00",
                              fn_serial="9999078902014447", last_document=80, mode=codec.MODE_SHIFT_OPEN)
    assert sim.answer_frame(scenario, 0xFF01, codec.password_bytes(30)) == FF01_EXAMPLE


def test_lrc_is_the_xor_of_len_command_and_data_without_stx():
    frame = codec.frame(0xFF01, bytes([0x1E, 0, 0, 0]))
    assert frame[-1] == 0x06 ^ 0xFF ^ 0x01 ^ 0x1E
    assert codec.lrc(frame[1:-1]) == frame[-1] and codec.lrc(frame[:-1]) != frame[-1]


def test_command_codes_are_one_byte_or_two_bytes_big_endian():
    assert codec.command_bytes(0x11) == b"\x11" and codec.command_bytes(0xFF39) == b"\xff\x39"
    for bad in (0xFF, 0x1234, 0xFE01, -1, 0x10000):
        with pytest.raises(codec.ProtocolError):
            codec.command_bytes(bad)
    assert codec.command_name(0xFF01) == "FF01h (ФН status)" and codec.command_name(0x11) == "11h (long status)"


def test_password_is_four_bytes_little_endian():
    assert codec.password_bytes(30) == hex_bytes("1E 00 00 00")
    assert codec.password_bytes(0x01020304) == hex_bytes("04 03 02 01")
    for bad in (-1, 2 ** 32, "30"):
        with pytest.raises(codec.ProtocolError):
            codec.password_bytes(bad)


def test_read_table_request_carries_table_row_and_field():
    frame = codec.read_table_request(18, 1, 1)
    assert frame == codec.frame(0x1F, hex_bytes("1E 00 00 00 12 01 00 01"))
    assert codec.decode_command(frame) == (0x1F, hex_bytes("1E 00 00 00 12 01 00 01"))


def test_handshake_bytes():
    assert (codec.ENQ, codec.STX, codec.ACK, codec.NAK) == (0x05, 0x02, 0x06, 0x15)
    assert codec.handshake_answer(0x15) is codec.Handshake.READY
    assert codec.handshake_answer(0x06) is codec.Handshake.PENDING
    assert codec.handshake_answer(0xFF) is codec.Handshake.STRAY
    assert codec.handshake_answer(0x02) is codec.Handshake.NOISE
    assert codec.enq_reply(False) == b"\x15" and codec.enq_reply(True) == b"\x06"


def test_reply_with_an_error_code_and_no_data():
    answer = codec.decode_reply(hex_bytes("02 03 FF 01 4F") + bytes([0x03 ^ 0xFF ^ 0x01 ^ 0x4F]))
    assert (answer.command, answer.error, answer.data, answer.ok) == (0xFF01, 0x4F, b"", False)
    with pytest.raises(codec.ProtocolError):
        codec.decode_fn_status(answer)


@pytest.mark.parametrize("data, error", [
    (b"", codec.IncompleteError),
    (hex_bytes("02"), codec.IncompleteError),
    (hex_bytes("02 05 11 1E 00"), codec.IncompleteError),
    (hex_bytes("03 05 11 1E 00 00 00 0A"), codec.ProtocolError),
    (hex_bytes("02 05 11 1E 00 00 00 0B"), codec.ChecksumError),
    (hex_bytes("02 05 11 1E 00 00 00 0A 00"), codec.ProtocolError),
    (hex_bytes("02 00 00"), codec.ProtocolError),
    (hex_bytes("02 01 11 11"), codec.ProtocolError),  # no error code
    (hex_bytes("02 01 FF FF"), codec.ProtocolError),  # half an extended code
])
def test_malformed_frames_are_refused(data, error):
    with pytest.raises(error):
        codec.decode_reply(data)


def test_strings_are_windows_1251_without_padding():
    assert codec.decode_text("ШТРИХ-М-01Ф".encode("cp1251") + b"\x00\x00") == "ШТРИХ-М-01Ф"
    assert codec.decode_text(b"7704849611  ") == "7704849611"
    assert codec.encode_text("АБВ", 5) == "АБВ".encode("cp1251") + b"  "
    with pytest.raises(codec.ProtocolError):
        codec.decode_text(b"\x98")  # the one byte Windows-1251 leaves undefined
    with pytest.raises(codec.ProtocolError):
        codec.encode_text("\u20bf")


def test_device_type_gives_the_model_name():
    device = codec.decode_device_type(reply(0xFC, bytes([0, 0, 1, 0, 0x13, 0]) + "ШТРИХ-М-01Ф".encode("cp1251")))
    assert (device.model, device.name) == (0x13, "ШТРИХ-М-01Ф")


def test_long_status_is_48_bytes_with_mode_clock_serial_and_inn():
    scenario = ShtrihScenario(mode=3, serial="0000000123456789", inn="7704849611", firmware_version="C1",
                              firmware_build=34115, clock_offset=0)
    frame = sim.answer_frame(scenario, 0x11, codec.password_bytes(30))
    assert frame[1] == 48  # LEN: code, error code and 46 bytes
    status = codec.decode_long_status(codec.decode_reply(frame))
    assert status.mode == 3 and status.mode_number == 3 and status.shift_expired
    assert status.serial_number == 123456789 and status.serial == "123456789"
    assert status.inn == "7704849611" and status.firmware == "C.1 build 34115"
    now = datetime.now(MOSCOW).replace(tzinfo=None)
    assert abs((status.clock - now).total_seconds()) < 2


def test_long_status_mode_number_is_the_low_nibble():
    data = bytearray(sim.long_status(ShtrihScenario()))
    data[13] = 0x38  # mode 8 (document open) with a status in the high nibble
    status = codec.decode_long_status(reply(0x11, bytes(data)))
    assert status.mode_number == 8 and not status.shift_expired


def test_long_status_not_entered_serial_and_inn_read_as_empty():
    data = bytearray(sim.long_status(ShtrihScenario(registered=False)))
    data[30:34] = b"\xff" * 4
    status = codec.decode_long_status(reply(0x11, bytes(data)))
    assert (status.serial_number, status.serial, status.inn) == (None, "", "")


def test_long_status_fiscal_memory_date_of_zeros_is_none_and_not_an_error():
    data = bytearray(sim.long_status(ShtrihScenario()))
    data[20:23] = bytes(3)  # DD MM YY all zero: an unfiscalised unit's fiscal-memory date
    status = codec.decode_long_status(reply(0x11, bytes(data)))
    assert status.fm_date is None
    assert status.clock is not None and status.inn == "7704849611" and status.mode_number == 2


def test_long_status_impossible_fiscal_memory_date_still_reads_as_unknown():
    data = bytearray(sim.long_status(ShtrihScenario()))
    data[20:23] = bytes([14, 13, 23])  # 14.13.23: month 13, as before a date that cannot be is None
    assert codec.decode_long_status(reply(0x11, bytes(data))).fm_date is None
    data[20:23] = bytes([14, 5, 18])
    assert codec.decode_long_status(reply(0x11, bytes(data))).fm_date == date(2018, 5, 14)


def test_simulator_sends_a_fiscal_memory_date_only_for_a_fiscalised_unit():
    fiscal = sim.long_status(ShtrihScenario(fm_date="2018-05-14"))
    assert fiscal[20:23] == bytes([14, 5, 18])
    assert codec.decode_long_status(reply(0x11, fiscal)).fm_date == date(2018, 5, 14)
    unfiscalised = sim.long_status(ShtrihScenario(registered=False, fm_date="2018-05-14"))
    assert unfiscalised[20:23] == bytes(3)
    assert codec.decode_long_status(reply(0x11, unfiscalised)).fm_date is None


def test_long_status_serial_high_bytes_only_when_asked():
    scenario = ShtrihScenario(serial="0012345678901234", status_serial_high=True)
    answer = reply(0x11, sim.long_status(scenario))
    assert codec.decode_long_status(answer).serial == str(12345678901234 & 0xFFFFFFFF)
    assert codec.decode_long_status(answer, serial_high_in_tail=True).serial == "12345678901234"
    short = reply(0x11, sim.long_status(ShtrihScenario(serial="0012345678901234")))
    assert codec.decode_long_status(short, serial_high_in_tail=True).serial_high is None


def test_fn_expiry_date_is_binary_year_month_day():
    expiry = codec.decode_fn_expiry(reply(0xFF03, hex_bytes("1B 03 1F 1B 03")))
    assert expiry == codec.FnExpiry(date(2027, 3, 31), registrations_remaining=27, registrations_done=3)
    assert codec.decode_fn_expiry(reply(0xFF03, hex_bytes("1B 03 1F"))).registrations_remaining is None
    assert codec.decode_fn_expiry(reply(0xFF03, bytes(5))).expiry is None  # an empty date


@pytest.mark.parametrize("ffd, size", [("1.05", 47), ("1.2", 64)])
def test_registration_totals_give_inn_and_rnm_in_both_layouts(ffd, size):
    scenario = ShtrihScenario(ffd=ffd, inn="7704849611", rnm="0000123456029024")
    data = sim.registration(scenario)
    assert len(data) == size  # frame lengths 50 and 67 with the code and error bytes
    totals = codec.decode_registration(reply(0xFF09, data))
    assert (totals.inn, totals.rnm, totals.time) == ("7704849611", "0000123456029024", datetime(2023, 2, 10, 18, 39))


def test_ofd_exchange_status_gives_the_queue():
    data = hex_bytes("02 00 3F 00 12 00 00 00 1A 0A 17 12 0F")
    status = codec.decode_ofd_status(reply(0xFF39, data))
    assert status == codec.OfdStatus(status=0x02, read_state=0, unsent=63, first_unsent_number=18,
                                     first_unsent_time=datetime(2026, 10, 23, 18, 15))


def test_table_text_and_unconfirmed_count_of_either_width():
    assert codec.decode_table_text(reply(0x1F, b"0012345678901234\x00\x00")) == "0012345678901234"
    assert codec.decode_unconfirmed_count(reply(0xFF3F, hex_bytes("05 01"))) == 0x105
    assert codec.decode_unconfirmed_count(reply(0xFF3F, hex_bytes("05 01 00 00"))) == 0x105
    with pytest.raises(codec.ProtocolError):
        codec.decode_unconfirmed_count(reply(0xFF3F, hex_bytes("05 01 00")))


@pytest.mark.parametrize("decoder, code, size", [
    (codec.decode_device_type, 0xFC, 6), (codec.decode_long_status, 0x11, 46), (codec.decode_fn_status, 0xFF01, 30),
    (codec.decode_fn_expiry, 0xFF03, 3), (codec.decode_registration, 0xFF09, 37),
    (codec.decode_ofd_status, 0xFF39, 13),
])
def test_decoders_refuse_short_data_and_answers_to_other_commands(decoder, code, size):
    with pytest.raises(codec.ProtocolError):
        decoder(reply(code, bytes(size - 1)))
    with pytest.raises(codec.ProtocolError):
        decoder(reply(0x10, bytes(size + 20)))


DECODERS = [codec.decode_device_type, codec.decode_long_status, codec.decode_fn_status, codec.decode_fn_expiry,
            codec.decode_registration, codec.decode_ofd_status, codec.decode_table_text,
            codec.decode_unconfirmed_count]
CODEC_SETTINGS = settings(max_examples=300, deadline=500, database=None)


@CODEC_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_make_the_frame_reader_raise_protocol_error_only(data):
    try:
        codec.decode_reply(data)
    except codec.ProtocolError:
        pass
    try:
        codec.decode_command(data)
    except codec.ProtocolError:
        pass


@CODEC_SETTINGS
@given(st.sampled_from([0xFC, 0x11, 0x1F, 0xFF01, 0xFF03, 0xFF09, 0xFF39, 0xFF3F]), st.integers(0, 255),
       st.binary(max_size=80))
def test_random_answers_make_every_decoder_raise_protocol_error_only(code, error, data):
    answer = reply(code, data, error)
    for decoder in DECODERS:
        try:
            decoder(answer)
        except codec.ProtocolError:
            pass


VALID_FRAMES = [FF01_EXAMPLE, codec.request(0x11)] + [
    sim.answer_frame(ShtrihScenario(unsent=3), code, codec.password_bytes(30))
    for code in (0xFC, 0x11, 0xFF03, 0xFF09, 0xFF39)]


@CODEC_SETTINGS
@given(st.sampled_from(VALID_FRAMES), st.data())
def test_truncated_frames_are_incomplete_and_altered_ones_are_refused(frame, data):
    with pytest.raises(codec.IncompleteError):
        codec.decode_reply(frame[:data.draw(st.integers(0, len(frame) - 1))])
    at_byte = data.draw(st.integers(1, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(frame)
    changed[at_byte] ^= flip
    with pytest.raises(codec.ProtocolError):
        codec.decode_reply(bytes(changed))


# --- read_state against the simulator --------------------------------------------------------------------

def test_healthy_registered_unit_reports_every_field(register):
    simulator = register(healthy_scenario())
    port = port_of(simulator)
    before = time.time()
    state = read_state(port, **FAST)
    after = time.time()
    assert (state.vendor, state.serial, state.source) == ("shtrih", "0012345678901234", port)
    assert (state.model, state.firmware) == ("ШТРИХ-М-01Ф", "C.1 build 34115")
    assert (state.rnm, state.inn, state.registered) == ("0000123456029024", "7704849611", True)
    assert (state.organization, state.ofd, state.ffd, state.address) == ("", "", "", "")
    assert state.registration_time == at(MOSCOW, 2023, 2, 10, 18, 39)
    assert before <= state.data_time <= after
    assert abs(state.clock - state.data_time) < 2  # the clock has whole seconds
    assert state.shift_expired is False
    assert state.licences == []
    assert state.fn == FiscalDrive(
        serial="9999078902014447", phase=0x03, flags=0x00, expiry=at(MOSCOW, 2027, 3, 31),
        registrations_done=3, registrations_remaining=27, last_document_number=80,
        last_document_time=at(MOSCOW, 2026, 11, 20, 23, 0), unsent_documents=4, first_unsent_number=18,
        first_unsent_time=at(MOSCOW, 2026, 11, 18, 16, 19))
    assert simulator.scenario.commands == ALL_COMMANDS
    assert eventually(lambda: simulator.acks == 7) and simulator.naks == 0


def test_fn_expiry_is_midnight_of_the_validity_date_in_the_sites_zone(register):
    port = port_of(register(ShtrihScenario(fn_expiry="2026-12-01")))
    yekaterinburg = ZoneInfo("Asia/Yekaterinburg")
    assert read_state(port, **FAST).fn.expiry == at(dt_timezone.utc, 2026, 11, 30, 21, 0)
    assert read_state(port, **{**FAST, "timezone": yekaterinburg}).fn.expiry == at(yekaterinburg, 2026, 12, 1)


@pytest.mark.parametrize("phase", [0x01, 0x07, 0x0F])
def test_fn_phase_is_read(register, phase):
    assert read_state(port_of(register(ShtrihScenario(phase=phase))), **FAST).fn.phase == phase


@pytest.mark.parametrize("flags, warnings", [
    (0x08, ["ofd_timeout"]),
    (0x01 | 0x02 | 0x80, ["replace_urgent", "resource_exhausted", "critical"]),
])
def test_fn_warning_flags_are_read(register, flags, warnings):
    fn = read_state(port_of(register(ShtrihScenario(flags=flags))), **FAST).fn
    assert fn.flags == flags and fn.warnings() == warnings


def test_registrations_remaining_come_from_the_expiry_query(register):
    fn = read_state(port_of(register(ShtrihScenario(registrations_remaining=2, registrations_done=28))), **FAST).fn
    assert (fn.registrations_remaining, fn.registrations_done) == (2, 28)


def test_unsent_documents_come_with_the_first_unsents_number_and_date(register):
    scenario = ShtrihScenario(unsent=63, first_unsent_number=18, first_unsent="2026-10-23 18:15")
    fn = read_state(port_of(register(scenario)), **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number) == (63, 18)
    assert fn.first_unsent_time == at(MOSCOW, 2026, 10, 23, 18, 15)


def test_nothing_unsent_leaves_no_first_unsent_time(register):
    fn = read_state(port_of(register(ShtrihScenario(unsent=0))), **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number, fn.first_unsent_time) == (0, None, None)


def test_unregistered_unit_reads_as_not_registered_with_empty_dates(register):
    state = read_state(port_of(register(ShtrihScenario(registered=False, phase=0x01))), **FAST)
    assert state.registered is False
    assert (state.rnm, state.inn, state.registration_time) == ("", "", None)
    assert (state.fn.phase, state.fn.expiry, state.fn.last_document_time) == (0x01, None, None)
    assert state.fn.registrations_remaining == 27 and state.clock is not None


def test_unfiscalised_unit_with_a_zero_fiscal_memory_date_in_the_long_status_reads_fully(register):
    scenario = ShtrihScenario(registered=False, phase=0x01)
    assert sim.long_status(scenario)[20:23] == bytes(3)  # what the driver gets in 11h
    simulator = register(scenario)
    state = read_state(port_of(simulator), **FAST)
    assert (state.registered, state.registration_time, state.rnm) == (False, None, "")
    assert state.serial == "0012345678901234" and state.model == "ШТРИХ-М-01Ф" and state.clock is not None
    assert state.firmware == "C.1 build 34115" and state.fn.serial == "9999078902014447"
    assert simulator.scenario.commands == ALL_COMMANDS  # every command asked and answered: nothing failed


def test_refused_registration_query_on_a_fiscal_fn_still_reads_as_registered(register):
    state = read_state(port_of(register(ShtrihScenario(errors={0xFF09: 0x08}))), **FAST)
    assert state.registered is True and state.rnm == "" and state.inn == "7704849611"  # INN from 11h


def test_ffd_105_registration_layout_is_read(register):
    state = read_state(port_of(register(ShtrihScenario(ffd="1.05"))), **FAST)
    assert (state.rnm, state.inn) == ("0000123456029024", "7704849611")


@pytest.mark.parametrize("mode, expired", [(3, True), (2, False), (4, False), (0x18, False)])
def test_shift_over_24_hours_is_mode_3(register, mode, expired):
    assert read_state(port_of(register(ShtrihScenario(mode=mode))), **FAST).shift_expired is expired


def test_register_clock_offset_is_kept(register):
    state = read_state(port_of(register(ShtrihScenario(clock_offset=-300))), **FAST)
    assert -302 < state.clock - state.data_time < -298


def test_error_answer_is_a_device_error_with_its_code_and_meaning(register):
    err = read_error(port_of(register(ShtrihScenario(errors={0xFF01: 0x02}))))
    assert err.reason == "device_error"
    assert "FF01h (ФН status) with error 0x02: wrong ФН state" in err.message


def test_error_answer_with_a_code_outside_the_table_names_the_code(register):
    err = read_error(port_of(register(ShtrihScenario(errors={0xFF39: 0xC8}))))
    assert err.reason == "device_error" and "FF39h (OFD exchange status) with error 0xC8" in err.message


def test_wrong_password_is_a_device_error(register):
    simulator = register(ShtrihScenario(password=1234))
    err = read_error(port_of(simulator))
    assert err.reason == "device_error"
    assert "11h (long status) with error 0x4F: wrong password" in err.message
    assert simulator.scenario.commands == [0xFC, 0x11]


def test_the_password_is_configurable_and_so_is_the_code_for_a_wrong_one(register):
    simulator = register(ShtrihScenario(password=1234, password_error=0x55))
    assert read_state(port_of(simulator), password=1234, **FAST).serial == "0012345678901234"
    err = read_error(port_of(simulator), password=30)
    assert err.reason == "device_error" and "error 0x55" in err.message


def test_a_password_out_of_range_is_an_error_without_touching_the_port(register):
    simulator = register()
    err = read_error(port_of(simulator), password=2 ** 32)
    assert err.reason == "error" and simulator.scenario.commands == []


def test_model_and_serial_come_from_the_scenario(register):
    scenario = ShtrihScenario(model_name="ШТРИХ-ЛАЙТ-02Ф", serial="0987654321")
    state = read_state(port_of(register(scenario)), **FAST)
    assert (state.model, state.serial) == ("ШТРИХ-ЛАЙТ-02Ф", "0987654321")


def test_serial_falls_back_to_the_long_status_when_table_18_is_refused(register):
    port = port_of(register(ShtrihScenario(serial="0012345678901234", errors={0x1F: 0x5D},
                                           status_serial_high=True)))
    assert read_state(port, **FAST).serial == str(12345678901234 & 0xFFFFFFFF)
    assert read_state(port, status_serial_high=True, **FAST).serial == "12345678901234"


def test_pending_answer_is_read_and_acknowledged_before_the_first_command(register):
    simulator = register(healthy_scenario(pending_command=0x10))
    assert simulator.pending is not None
    state = read_state(port_of(simulator), **FAST)
    assert state.fn.serial == "9999078902014447"
    assert simulator.pending_served == 1 and simulator.enqs == 8
    assert simulator.scenario.commands == ALL_COMMANDS  # the pending answer's command came from before
    assert eventually(lambda: simulator.acks == 8 and simulator.pending is None)


def test_stray_ff_after_each_ack_over_tcp_is_skipped(simulators):
    simulator = simulators(healthy_scenario(stray_ff=True, pending_command=0x10), "tcp")
    state = read_state(simulator.url, **FAST)
    assert state.serial == "0012345678901234" and state.fn.unsent_documents == 4
    assert simulator.strays_sent >= 7


def read_frame(line: serial.SerialBase) -> bytes:
    head = line.read(2)
    assert len(head) == 2 and head[0] == codec.STX, head
    return head + line.read(head[1] + 1)


def test_simulator_holds_a_naked_answer_until_enq_then_acks_and_sends_it_again(register):
    """The register's side of a bad checksum, byte by byte: NAK alone brings nothing back (a host that only
    waits times out); ENQ brings ACK and the same answer, which the host's ACK then clears."""
    simulator = register(ShtrihScenario(bad_checksum=1))
    good = sim.answer_frame(ShtrihScenario(), 0xFC, b"")
    with serial.serial_for_url(port_of(simulator), baudrate=115200, timeout=1.0) as line:
        line.write(bytes([codec.ENQ]))
        assert line.read(1) == bytes([codec.NAK])
        line.write(codec.request(0xFC, None))
        assert line.read(1) == bytes([codec.ACK])
        with pytest.raises(codec.ChecksumError):
            codec.decode_reply(read_frame(line))
        line.write(bytes([codec.NAK]))
        line.timeout = 0.4
        assert line.read(1) == b""  # no resend on NAK: the old driver waited here until its timeout
        assert simulator.pending == good  # still held
        line.timeout = 1.0
        line.write(bytes([codec.ENQ]))
        assert line.read(1) == bytes([codec.ACK])  # "I still hold an answer"
        assert read_frame(line) == good
        line.write(bytes([codec.ACK]))
        assert eventually(lambda: simulator.pending is None)
    assert simulator.naks == 1 and simulator.enqs == 2 and simulator.pending_served == 1
    assert simulator.scenario.commands == [0xFC]  # the command ran once; only its answer was sent twice


@pytest.mark.parametrize("bad", [1, 2])
def test_bad_checksums_are_survived_by_nak_then_enq(register, bad):
    simulator = register(healthy_scenario(bad_checksum=bad))
    state = read_state(port_of(simulator), **FAST)
    assert state.serial == "0012345678901234" and state.fn.unsent_documents == 4
    assert simulator.naks == bad and simulator.pending_served == bad
    assert simulator.enqs == len(ALL_COMMANDS) + bad  # one handshake a command, one ENQ a bad frame
    assert simulator.scenario.commands == ALL_COMMANDS  # nothing was asked twice
    assert eventually(lambda: simulator.acks == len(ALL_COMMANDS) and simulator.pending is None)


def test_a_bad_checksum_in_an_answer_left_pending_is_recovered_the_same_way(register):
    simulator = register(healthy_scenario(pending_command=0x10, bad_checksum=1))
    assert read_state(port_of(simulator), **FAST).fn.serial == "9999078902014447"
    assert simulator.naks == 1 and simulator.pending_served == 2
    assert simulator.scenario.commands == ALL_COMMANDS


def test_bad_checksum_every_time_is_a_protocol_error(register):
    simulator = register(ShtrihScenario(bad_checksum=1000))
    err = read_error(port_of(simulator))
    assert err.reason == "protocol" and "FCh (device type) with a bad checksum 3 times" in err.message
    assert eventually(lambda: simulator.naks == 3)
    assert simulator.enqs == 1 + 2  # the handshake, then one ENQ after each bad frame but the last


def test_a_register_that_drops_its_answer_after_a_bad_checksum_is_a_protocol_error(register):
    # enq_reply NAK: every ENQ says "ready", so the one after the bad frame says the answer is gone
    simulator = register(ShtrihScenario(bad_checksum=1, enq_reply=bytes([codec.NAK])))
    err = read_error(port_of(simulator))
    assert err.reason == "protocol"
    assert "no longer held its answer to FCh (device type) after a bad checksum (ENQ got NAK" in err.message
    assert simulator.naks == 1 and simulator.scenario.commands == [0xFC]


def test_a_command_frame_the_register_naks_is_sent_again(register):
    simulator = register(healthy_scenario(reject_frames=2))
    assert read_state(port_of(simulator), **FAST).fn.phase == 0x03
    assert simulator.scenario.commands == [0xFC, 0xFC] + ALL_COMMANDS


def test_a_command_refused_every_time_is_a_protocol_error(register):
    simulator = register(ShtrihScenario(reject_frames=100))
    err = read_error(port_of(simulator))
    assert err.reason == "protocol" and "refused FCh (device type) 3 times" in err.message
    assert simulator.scenario.commands == [0xFC] * 3


def test_silent_register_times_out_within_the_command_timeout(register):
    port = port_of(register(ShtrihScenario(silent=True)))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "timeout" and time.monotonic() - started < 0.3 + MARGIN
    assert err.message == f"SHTRIH on {port} did not answer ENQ before FCh (device type) within 0.3s"


def test_register_that_acks_but_never_answers_times_out(register):
    port = port_of(register(ShtrihScenario(no_answer=True)))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "timeout" and time.monotonic() - started < 0.3 + MARGIN
    assert err.message == f"SHTRIH on {port} did not answer FCh (device type) within 0.3s"


def test_slow_answers_within_the_command_timeout_are_read(register):
    state = read_state(port_of(register(ShtrihScenario(delay=0.1))), **{**FAST, "command_timeout": 0.4})
    assert state.fn.phase == 0x03


def test_whole_read_stops_at_its_timeout_even_when_each_answer_is_in_time(register):
    port = port_of(register(ShtrihScenario(delay=0.2)))
    started = time.monotonic()
    err = read_error(port, timeout=0.5, command_timeout=1.0)
    assert err.reason == "timeout" and "took over 0.5s" in err.message
    assert time.monotonic() - started < 0.5 + MARGIN


def test_an_answer_cut_short_times_out_instead_of_hanging(register):
    cut = sim.answer_frame(ShtrihScenario(), 0xFC, b"")[:-3]
    port = port_of(register(ShtrihScenario(garbage=cut)))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "timeout" and "stopped answering FCh" in err.message
    assert time.monotonic() - started < 0.3 + MARGIN


def test_noise_instead_of_an_answer_is_a_protocol_error(register):
    err = read_error(port_of(register(ShtrihScenario(garbage=b"Hello, this is not Shtrih"))), command_timeout=0.3)
    assert err.reason == "protocol" and "not a Shtrih answer to FCh" in err.message


def test_a_flood_of_ff_bytes_is_noise_not_an_endless_wait(register):
    started = time.monotonic()
    err = read_error(port_of(register(ShtrihScenario(garbage=b"\xff" * 2000))), command_timeout=0.3)
    assert err.reason == "protocol" and "not a Shtrih answer to FCh" in err.message
    assert time.monotonic() - started < 1.0


def test_noise_instead_of_the_handshake_is_a_protocol_error(register):
    err = read_error(port_of(register(ShtrihScenario(enq_reply=b"\x00\x01"))), command_timeout=0.3)
    assert err.reason == "protocol" and "not a Shtrih answer to ENQ" in err.message


def test_an_answer_to_another_command_is_a_protocol_error(register):
    stale = sim.answer_frame(ShtrihScenario(), 0x10, codec.password_bytes(30))
    err = read_error(port_of(register(ShtrihScenario(garbage=stale))))
    assert err.reason == "protocol" and "answer to 10h (short status)" in err.message


def test_an_answer_too_short_to_decode_is_a_protocol_error(register):
    err = read_error(port_of(register(ShtrihScenario(garbage=codec.frame(0xFC, bytes(3))))))
    assert err.reason == "protocol" and "cannot be read" in err.message


def test_network_link_keeps_one_connection_for_the_whole_read(simulators):
    simulator = simulators(kind="tcp")
    read_state(simulator.url.replace("socket://", "tcp://"), **FAST)
    assert simulator.connections == 1 and simulator.scenario.commands == ALL_COMMANDS


def test_port_held_by_another_program_is_port_busy(simulators):
    simulator = simulators()
    with hold_port(simulator.device):
        err = read_error(simulator.device)
    assert err.reason == "port_busy"
    assert read_state(simulator.device, **FAST).serial == "0012345678901234"  # free again once the till lets go


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
    err = read_error("/dev/ttySHTRIH-not-here")
    assert err.reason == "not_found" and "/dev/ttySHTRIH-not-here" in err.message


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_closed_tcp_port_is_refused_with_the_shtrih_default_port_in_the_hint():
    free = free_tcp_port()
    for port in (f"socket://127.0.0.1:{free}", f"tcp://127.0.0.1:{free}"):
        err = read_error(port)
        assert err.reason == "refused" and f"127.0.0.1:{free}" in err.message and "7778" in err.message


# --- probe ---------------------------------------------------------------------------------------------

def test_probe_finds_a_shtrih_on_either_link_without_sending_a_command(register):
    simulator = register()
    assert probe(port_of(simulator), 115200, 0.5) == 115200
    assert simulator.scenario.commands == [] and simulator.enqs == 2


def test_probe_takes_a_pending_answer(register):
    simulator = register(ShtrihScenario(pending_command=0x10))
    assert probe(port_of(simulator), 115200, 0.5) == 115200
    assert simulator.pending_served == 1


@pytest.mark.parametrize("changes", [{"silent": True}, {"enq_reply": b"\x00"}, {"enq_reply": b"\x06"}])
def test_probe_says_no_to_a_unit_that_does_not_handshake_and_in_time(register, changes):
    port = port_of(register(ShtrihScenario(**changes)))
    started = time.monotonic()
    assert probe(port, 115200, 0.3) is None
    assert time.monotonic() - started < 0.3 + MARGIN


def test_probe_says_no_to_a_mitsu_and_names_a_port_that_cannot_be_used():
    with MitsuPtySimulator() as mitsu:
        assert probe(mitsu.device, 115200, 0.3) is None
    assert probe("socket://bad url", 115200, 0.3) is None
    for port, reason in [("/dev/ttySHTRIH-not-here", "not_found"),
                         (f"socket://127.0.0.1:{free_tcp_port()}", "refused")]:
        with pytest.raises(KktError) as caught:
            probe(port, 115200, 0.3)
        assert caught.value.reason == reason


# --- random bytes from the register ----------------------------------------------------------------------

def test_random_bytes_from_the_register_fail_as_protocol_or_timeout_in_time(simulators):
    scenario = ShtrihScenario()
    ports = [port_of(simulators(scenario, "pty")), port_of(simulators(scenario, "tcp"))]
    valid = [sim.answer_frame(ShtrihScenario(), code, codec.password_bytes(30)) for code in (0xFC, 0x11, 0xFF01)]

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(garbage=st.one_of(st.binary(min_size=1, max_size=64),
                             st.builds(lambda frame, cut: frame[:cut], st.sampled_from(valid), st.integers(1, 40))),
           which=st.sampled_from([0, 1]))
    def check(garbage, which):
        scenario.garbage, scenario.enq_reply = garbage, None
        started = time.monotonic()
        err = read_error(ports[which], timeout=0.6, command_timeout=0.1)
        assert err.reason in ("protocol", "timeout"), err.message
        assert time.monotonic() - started < 0.6 + MARGIN

    check()


def test_random_bytes_instead_of_the_handshake_fail_as_protocol_or_timeout_in_time(simulators):
    scenario = ShtrihScenario()
    ports = [port_of(simulators(scenario, "pty")), port_of(simulators(scenario, "tcp"))]

    # a NAK anywhere in it would be a correct "ready", so the noise has none
    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(noise=st.binary(min_size=1, max_size=64).filter(lambda b: codec.NAK not in b),
           which=st.sampled_from([0, 1]))
    def check(noise, which):
        scenario.enq_reply = noise
        started = time.monotonic()
        err = read_error(ports[which], timeout=0.6, command_timeout=0.1)
        assert err.reason in ("protocol", "timeout"), err.message
        assert time.monotonic() - started < 0.6 + MARGIN
        assert probe(ports[which], 115200, 0.2) is None

    check()
