"""The Mitsu 1-F driver: its wire format against the reference byte vectors, and `read_state` against the
simulator through a real pseudo-terminal and a real loopback TCP socket, one scenario knob at a time.
"""

from __future__ import annotations

import os
import socket
import termios
import threading
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.kkt import mitsu_codec as codec
from exporter.kkt import speeds, transport
from exporter.kkt.mitsu import read_state
from exporter.kkt.model import FiscalDrive, KktError
from simulators.mitsu import MitsuPtySimulator, MitsuScenario, MitsuTcpSimulator, hold_port
from simulators.tillholder import unlocked_holder

MOSCOW = ZoneInfo("Europe/Moscow")
FAST = {"timeout": 3.0, "command_timeout": 0.5, "timezone": MOSCOW}
MARGIN = 0.3  # what a deadline may overshoot by: one read slice, thread wake-ups


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


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
    started: list[MitsuPtySimulator | MitsuTcpSimulator] = []

    def start(scenario: MitsuScenario | None = None, kind: str = "pty", baudrate: int = 115200):
        scenario = scenario or MitsuScenario()
        simulator = MitsuPtySimulator(scenario, baudrate) if kind == "pty" else MitsuTcpSimulator(scenario)
        started.append(simulator.start())
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def port_of(simulator) -> str:
    return simulator.device if isinstance(simulator, MitsuPtySimulator) else simulator.url


@pytest.fixture(params=["pty", "tcp"])
def register(request, simulators):
    """A register on either link: returns its port string for a scenario."""

    def start(scenario: MitsuScenario | None = None) -> str:
        return port_of(simulators(scenario, request.param))

    return start


def healthy_scenario(**changes) -> MitsuScenario:
    values = {"fn_expiry": "2027-03-31", "last_document_time": "2026-11-20 23:00",
              "registration_time": "2023-02-10 18:39", "unsent": 4, "first_unsent_number": 18,
              "first_unsent": "2026-11-18 16:19", "fn_edition": "ФН-1.2"}
    return MitsuScenario(**{**values, **changes})


def read_error(port: str, **options) -> KktError:
    with pytest.raises(KktError) as caught:
        read_state(port, **{**FAST, **options})
    return caught.value


# --- the wire format -------------------------------------------------------------------------------------

def test_command_frame_matches_the_vendor_vector_for_date_and_time():
    assert codec.command_frame("<GET DATE='?' TIME='?'/>") == hex_bytes(
        "02 18 00 3C 47 45 54 20 44 41 54 45 3D 27 3F 27 20 54 49 4D 45 3D 27 3F 27 2F 3E 03 63")


@pytest.mark.parametrize("command, head, tail", [
    ("<GET DEV='?'/>", "02 0E 00", "03 01"),
    ("<GET VER='?'/>", "02 0E 00", "03 17"),
    ("<GET REG='?'/>", "02 0E 00", "03 06"),
    ("<GET INFO='F'/>", "02 0F 00", "03 20"),
    ("<GET INFO='OFD'/>", "02 11 00", "03 35"),
])
def test_command_frame_has_little_endian_length_and_xor_of_stx_to_etx(command, head, tail):
    frame = codec.command_frame(command)
    assert frame[:3] == hex_bytes(head) and frame[-2:] == hex_bytes(tail)
    assert frame[3:-2] == command.encode("cp1251")


def test_dev_command_frame_is_byte_exact():
    assert codec.command_frame("<GET DEV='?'/>") == hex_bytes(
        "02 0E 00 3C 47 45 54 20 44 45 56 3D 27 3F 27 2F 3E 03 01")


def test_serial_reply_checksum_is_the_xor_of_the_data_and_etx():
    frame = codec.reply_frame("<OK DEV='MITSU-1-F'/>")
    assert frame == b"<OK DEV='MITSU-1-F'/>" + hex_bytes("03 41")
    assert codec.serial_reply_end(frame + b"rest") == len(frame)
    assert codec.decode_serial_reply(frame) == "<OK DEV='MITSU-1-F'/>"


def test_serial_reply_with_a_wrong_checksum_is_a_checksum_error():
    with pytest.raises(codec.ChecksumError):
        codec.decode_serial_reply(codec.reply_frame("<OK DEV='MITSU-1-F'/>", corrupt=True))


def test_simulator_side_reads_back_a_command_frame_after_noise():
    frame = codec.command_frame("<GET INFO='OFD'/>")
    buffer = b"\xff\x00" + frame
    command, used = codec.split_command_frame(buffer)
    assert (command, used) == (None, 2)
    assert codec.split_command_frame(buffer[used:]) == ("<GET INFO='OFD'/>", len(frame))
    assert codec.split_command_frame(frame[:-1]) == (None, 0)


@pytest.mark.parametrize("text", [
    "<OK FN='9999078902014447' PHASE='0x03' FLAG='0x08'/>",
    '<OK FLAG="0x08" FN="9999078902014447" PHASE="0x03"/>',
    "<ok phase=0x03 flag='0x08' Fn=\"9999078902014447\" />",
    "  <Ok  Phase = '0x03'\tFLAG='0x08' FN='9999078902014447'></oK>  ",
])
def test_parse_reply_reads_attributes_in_any_order_case_and_quoting(text):
    reply = codec.parse_reply(text)
    assert reply.ok
    assert reply.attrs == {"fn": "9999078902014447", "phase": "0x03", "flag": "0x08"}
    assert reply.get("PHASE") == "0x03"


@pytest.mark.parametrize("text", ["<OK HOLDS='0'PENDING='1'/>", '<OK HOLDS="0"PENDING="1"/>',
                                  "<OK HOLDS='0'  PENDING='1'/>", "<ok holds='0'pending='1'></ok>"])
def test_parse_reply_reads_attributes_run_together_as_real_units_send_them(text):
    assert codec.parse_reply(text).attrs == {"holds": "0", "pending": "1"}


def test_parse_reply_decodes_child_tags_and_entities():
    reply = codec.parse_reply("<OK REG='7' T1037='0000123456029024'><T1048> ООО &quot;АБВГД&quot;</T1048>"
                              "<t1009>Москва, ул. Труда &amp; Мира</t1009><T1046>АтласКарт</T1046></OK>")
    assert reply.children == {"t1048": ' ООО "АБВГД"', "t1009": "Москва, ул. Труда & Мира", "t1046": "АтласКарт"}
    assert reply.child("T1046") == "АтласКарт" and reply.get("t1037") == "0000123456029024"


def test_parse_reply_reads_the_error_fields():
    reply = codec.parse_reply("<ERROR No='40' FSE='0x02' TAG='' PAR='INFO'/>")
    assert not reply.ok
    assert (reply.error_code, reply.fse, reply.error_tag, reply.error_par) == (40, "0x02", "", "INFO")


@pytest.mark.parametrize("text", [
    "", "OK", "<OK", "<OK DEV='x'", "<OK DEV='x'/", "<OK><T1048>x</T1048>", "<OK></ERROR>", "<OK/><OK/>",
    "<DOC/>", "<ERROR No='x'/>", "<ERROR/>", "<OK DEV='a<b'/>", "<OK DEV='\x01'/>", "<OK DEV=x'DATE='y'/>",
])
def test_parse_reply_refuses_malformed_text(text):
    with pytest.raises(codec.ProtocolError):
        codec.parse_reply(text)


def test_tcp_messages_are_535_byte_packets_separated_by_etb():
    data = ("<OK>" + "Я" * 1200 + "</OK>").encode("cp1251")
    message = codec.tcp_split(data)
    packets = message.split(b"\x17")
    assert [len(p) for p in packets] == [535, 535, len(data) - 1070]
    assert codec.tcp_join(message) == data
    assert codec.decode_tcp_reply(message) == data.decode("cp1251")


def test_tcp_reply_waits_for_a_whole_root_element():
    assert codec.tcp_reply(b"<OK DEV='MIT") is None
    assert codec.tcp_reply(b"<OK>" + b"x" * 535 + b"\x17") is None
    assert codec.tcp_reply(b"<OK REG='1'><T1048>x</T1048>") is None
    assert codec.tcp_reply(b"<OK REG='1'><T1048>x</T1048></OK>") == "<OK REG='1'><T1048>x</T1048></OK>"
    with pytest.raises(codec.ProtocolError):
        codec.tcp_reply(b"HTTP/1.1 400 Bad Request")


LONG_REPLY = "<OK REG='7'><T1048>" + "ООО «Очень длинное название» " * 30 + "</T1048></OK>"
VALID_REPLIES = [
    "<OK DEV='MITSU-1-F'/>",
    ("<OK FN='9999078902014447' FFD='1.2' PHASE='0x03' REG='3|27' VALID='2024-07-17' LAST='80' DATE='2023-04-27' "
     "TIME='23:00' FLAG='0x08'> </OK>"),
    "<ERROR No='40' FSE='0x02' TAG='' PAR='INFO'/>",
    LONG_REPLY,
]
PARSER_SETTINGS = settings(max_examples=300, deadline=500, database=None)


@PARSER_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_make_the_reply_readers_raise_protocol_error_only(data):
    for reader in (codec.decode_serial_reply, codec.decode_tcp_reply, codec.tcp_reply,
                   lambda raw: codec.parse_reply(raw.decode("cp1251", "replace"))):
        try:
            reader(data)
        except codec.ProtocolError:
            pass


@PARSER_SETTINGS
@given(st.text(alphabet="<>/='\" \tOKERRO=Nno1x&;#T10483", max_size=80))
def test_random_xml_like_text_makes_parse_reply_raise_protocol_error_only(text):
    try:
        reply = codec.parse_reply(text)
    except codec.ProtocolError:
        return
    assert reply.ok == (reply.error_code is None)


@PARSER_SETTINGS
@given(st.sampled_from(VALID_REPLIES), st.data())
def test_truncated_valid_replies_are_protocol_errors(text, data):
    frame = codec.reply_frame(text)
    with pytest.raises(codec.ProtocolError):
        codec.decode_serial_reply(frame[:data.draw(st.integers(0, len(frame) - 1))])
    message = codec.tcp_split(text.encode("cp1251"))
    cut = data.draw(st.integers(0, len(message) - 1))
    with pytest.raises(codec.ProtocolError):
        codec.decode_tcp_reply(message[:cut])
    assert codec.tcp_reply(message[:cut]) is None
    with pytest.raises(codec.ProtocolError):
        codec.parse_reply(text[:data.draw(st.integers(0, len(text) - 1))])


def test_network_ports_are_told_apart_and_tcp_becomes_socket():
    assert transport.is_network("socket://10.0.0.9:8200") and transport.is_network("TCP://10.0.0.9:8200")
    assert not transport.is_network("COM7") and not transport.is_network("/dev/ttyUSB0")
    assert transport.network_url("tcp://10.0.0.9:8200") == "socket://10.0.0.9:8200"


# --- read_state against the simulator --------------------------------------------------------------------

def test_healthy_registered_unit_reports_every_field(register):
    port = register(healthy_scenario())
    before = time.time()
    state = read_state(port, **FAST)
    after = time.time()
    assert (state.vendor, state.serial, state.source) == ("mitsu", "065001234567890", port)
    assert (state.model, state.firmware, state.ffd) == ("MITSU-1-F 001", "1.2.18", "1.2")
    assert (state.rnm, state.inn, state.organization) == ("0000123456029024", "7704849611", 'ООО "Ромашка"')
    assert (state.ofd, state.address) == ("АтласКарт", "123456, г.Москва, ул.Ленина, д.1")
    assert state.registered is True
    assert state.registration_time == at(MOSCOW, 2023, 2, 10, 18, 39)
    assert state.registration_time == at(dt_timezone.utc, 2023, 2, 10, 15, 39)  # Moscow is UTC+3
    assert before <= state.data_time <= after
    assert abs(state.clock - state.data_time) < 2  # the clock has whole seconds
    assert state.shift_expired is False
    assert state.licences == []
    assert state.fn == FiscalDrive(
        serial="9999078902014447", phase=0x03, flags=0x00, expiry=at(MOSCOW, 2027, 3, 31), ffd="1.2",
        edition="ФН-1.2", registrations_done=3, registrations_remaining=27, last_document_number=80,
        last_document_time=at(MOSCOW, 2026, 11, 20, 23, 0), unsent_documents=4, first_unsent_number=18,
        first_unsent_time=at(MOSCOW, 2026, 11, 18, 16, 19))


def test_fn_expiry_is_midnight_of_the_validity_date_in_the_sites_zone(register):
    port = register(MitsuScenario(fn_expiry="2026-12-01"))
    yekaterinburg = ZoneInfo("Asia/Yekaterinburg")
    assert read_state(port, **FAST).fn.expiry == at(dt_timezone.utc, 2026, 11, 30, 21, 0)
    assert read_state(port, **{**FAST, "timezone": yekaterinburg}).fn.expiry == at(yekaterinburg, 2026, 12, 1)


@pytest.mark.parametrize("phase", [0x07, 0x0F, 0x01])
def test_fn_phase_is_read_from_its_hex_attribute(register, phase):
    assert read_state(register(MitsuScenario(phase=phase)), **FAST).fn.phase == phase


@pytest.mark.parametrize("flags, warnings", [
    (0x08, ["ofd_timeout"]),
    (0x01 | 0x02, ["replace_urgent", "resource_exhausted"]),
])
def test_fn_warning_flags_are_read_from_their_hex_attribute(register, flags, warnings):
    fn = read_state(register(MitsuScenario(flags=flags)), **FAST).fn
    assert fn.flags == flags and fn.warnings() == warnings


def test_unsent_documents_come_with_the_first_unsents_number_and_date(register):
    port = register(MitsuScenario(unsent=63, first_unsent_number=18, first_unsent="2026-10-23 18:15"))
    fn = read_state(port, **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number) == (63, 18)
    assert fn.first_unsent_time == at(MOSCOW, 2026, 10, 23, 18, 15)


def test_nothing_unsent_leaves_no_first_unsent_time(register):
    fn = read_state(register(MitsuScenario(unsent=0)), **FAST).fn
    assert (fn.unsent_documents, fn.first_unsent_number, fn.first_unsent_time) == (0, None, None)


def test_unregistered_unit_reads_as_not_registered_with_placeholders_as_none(register):
    state = read_state(register(MitsuScenario(registered=False, phase=0x01)), **FAST)
    assert state.registered is False
    assert (state.rnm, state.inn, state.organization, state.ofd, state.ffd) == ("", "", "", "", "1.2")
    assert state.registration_time is None
    assert state.clock is not None
    assert (state.fn.phase, state.fn.expiry, state.fn.last_document_time) == (0x01, None, None)
    assert (state.fn.registrations_done, state.fn.last_document_number) == (0, 0)
    assert state.fn.first_unsent_time is None


def test_error_reply_to_the_fn_query_is_a_device_error_with_its_meaning(register):
    port = register(MitsuScenario(errors={"INFO='F'": 69}))
    err = read_error(port)
    assert err.reason == "device_error"
    assert "error 69" in err.message and "ФН not ready or absent" in err.message and "INFO='F'" in err.message


def test_device_error_names_the_fn_code_too(simulators):
    port = port_of(simulators(MitsuScenario(errors={"INFO='OFD'": (40, 0x02)})))
    err = read_error(port)
    assert err.reason == "device_error"
    assert "error 40: ФН error while reading counters" in err.message and "0x02: wrong ФН state" in err.message


def test_error_replies_to_clock_and_shift_leave_those_fields_unknown(register):
    state = read_state(register(MitsuScenario(errors={"DATE='?'": 600, "INFO='0'": 69})), **FAST)
    assert state.clock is None and state.shift_expired is None
    assert state.fn.serial == "9999078902014447"


def test_shift_open_over_24_hours_is_reported(register):
    assert read_state(register(MitsuScenario(shift_state=9)), **FAST).shift_expired is True


def test_register_clock_offset_is_kept(register):
    state = read_state(register(MitsuScenario(clock_offset=-300)), **FAST)
    assert -302 < state.clock - state.data_time < -298


def test_one_bad_checksum_is_survived_by_one_resend(simulators):
    simulator = simulators(healthy_scenario(bad_checksum=1))
    state = read_state(simulator.device, **FAST)
    assert state.serial == "065001234567890"
    assert simulator.scenario.commands[:2] == ["<GET DEV='?'/>", "<GET DEV='?'/>"]
    assert len(simulator.scenario.commands) == 8


def test_bad_checksum_every_time_is_a_protocol_error(simulators):
    simulator = simulators(MitsuScenario(bad_checksum=1000))
    err = read_error(simulator.device)
    assert err.reason == "protocol" and "bad checksum twice" in err.message
    assert simulator.scenario.commands == ["<GET DEV='?'/>", "<GET DEV='?'/>"]


def test_silent_register_times_out_within_the_command_timeout(register):
    port = register(MitsuScenario(silent=True))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    elapsed = time.monotonic() - started
    assert err.reason == "timeout" and elapsed < 0.3 + MARGIN
    assert err.message == f"MITSU on {port} did not answer <GET DEV='?'/> within 0.3s"


def test_slow_replies_within_the_command_timeout_are_read(register):
    state = read_state(register(MitsuScenario(delay=0.1)), **{**FAST, "command_timeout": 0.4})
    assert state.fn.phase == 0x03


def test_whole_read_stops_at_its_timeout_even_when_each_reply_is_in_time(register):
    port = register(MitsuScenario(delay=0.2))
    started = time.monotonic()
    err = read_error(port, timeout=0.5, command_timeout=1.0)
    assert err.reason == "timeout" and "took over 0.5s" in err.message
    assert time.monotonic() - started < 0.5 + MARGIN


def test_a_reply_cut_short_times_out_instead_of_hanging(register):
    port = register(MitsuScenario(garbage=b"<OK DEV='MITSU", keep_connection=True))
    started = time.monotonic()
    err = read_error(port, command_timeout=0.3)
    assert err.reason == "timeout" and "stopped answering" in err.message
    assert time.monotonic() - started < 0.3 + MARGIN


def test_a_connection_closed_mid_reply_is_a_protocol_error_at_once(simulators):
    simulator = simulators(MitsuScenario(garbage=b"<OK DEV='MITSU"), "tcp")
    started = time.monotonic()
    err = read_error(simulator.url, command_timeout=2.0)
    assert err.reason == "protocol" and "closed the connection in the middle of its reply" in err.message
    assert time.monotonic() - started < 1.0  # the close ends the wait, not the command timeout


def test_bytes_that_are_not_xml_are_a_protocol_error(register):
    scenario = MitsuScenario()
    port = register(scenario)
    text = "Hello, this is not XML"
    # on the serial link the noise comes correctly framed, so it is the XML that fails, not the checksum
    scenario.garbage = text.encode() if transport.is_network(port) else codec.reply_frame(text)
    err = read_error(port)
    assert err.reason == "protocol" and "not a Mitsu reply" in err.message


@pytest.mark.parametrize("variant", [
    {"shuffle_attributes": True}, {"double_quotes": True}, {"lowercase": True},
    {"shuffle_attributes": True, "double_quotes": True, "lowercase": True},
])
def test_attribute_order_quotes_and_case_do_not_change_the_reading(register, variant):
    expected = read_state(register(healthy_scenario()), **FAST)
    state = read_state(register(healthy_scenario(**variant)), **FAST)
    assert state.fn == expected.fn
    assert (state.serial, state.model, state.rnm, state.organization, state.ofd, state.registered) == \
        (expected.serial, expected.model, expected.rnm, expected.organization, expected.ofd, expected.registered)


def test_replies_longer_than_535_bytes_are_reassembled(register):
    name = "ООО «" + "Очень длинное название организации, " * 25 + "»"
    state = read_state(register(MitsuScenario(organization=name)), **FAST)
    assert state.organization == name and len(name.encode("cp1251")) > 900


def test_network_link_opens_one_connection_per_command(simulators):
    simulator = simulators(kind="tcp")
    read_state(simulator.url.replace("socket://", "tcp://"), **FAST)
    assert simulator.connections == 7 and len(simulator.scenario.commands) == 7


def test_the_network_simulator_closes_after_each_reply_as_the_unit_does(simulators):
    """What a driver keeping one connection meets: the reply, then the end of the connection."""
    simulator = simulators(kind="tcp")
    with socket.create_connection((simulator.host, simulator.port), timeout=2) as sock:
        sock.sendall(b"<GET DEV='?'/>")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        assert received == b"<OK DEV='MITSU-1-F'/>"
        with pytest.raises(OSError):  # a second command on the same connection goes nowhere
            for _ in range(20):
                sock.sendall(b"<GET VER='?'/>")
                time.sleep(0.01)
    assert simulator.scenario.commands == ["<GET DEV='?'/>"]


def test_a_connection_closed_without_a_reply_is_disconnected(simulators):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = f"socket://127.0.0.1:{server.getsockname()[1]}"
        thread = threading.Thread(target=lambda: server.accept()[0].close())
        thread.start()
        err = read_error(port)
        thread.join()
    assert err.reason == "disconnected" and "closed the connection without answering <GET DEV='?'/>" in err.message


def test_a_network_read_stays_within_its_timeout_across_connections(simulators):
    simulator = simulators(MitsuScenario(delay=0.15), "tcp")
    started = time.monotonic()
    err = read_error(simulator.url, timeout=0.5, command_timeout=1.0)
    assert err.reason == "timeout" and "took over 0.5s" in err.message
    assert time.monotonic() - started < 0.5 + MARGIN


def expected_reading(scenario: MitsuScenario) -> dict:
    """Every field the check reports, as the simulator was told it (not as another read saw it)."""
    def moment(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=MOSCOW).timestamp()

    return {
        "serial": scenario.serial, "model": f"{scenario.model} {scenario.model_version}",
        "firmware": scenario.firmware, "rnm": scenario.rnm, "inn": scenario.inn.strip(),
        "organization": scenario.organization.strip(), "ofd": scenario.ofd_name, "address": scenario.address,
        "registered": scenario.registered, "registration_time": moment(scenario.registration_time),
        "ffd": scenario.fn_ffd, "shift_expired": scenario.shift_state == 9,
        "fn": FiscalDrive(
            serial=scenario.fn_serial, phase=scenario.phase, flags=scenario.flags,
            expiry=datetime.fromisoformat(scenario.fn_expiry).replace(tzinfo=MOSCOW).timestamp(),
            ffd=scenario.fn_ffd, edition=scenario.fn_edition, registrations_done=scenario.registrations_done,
            registrations_remaining=scenario.registrations_remaining, last_document_number=scenario.last_document,
            last_document_time=moment(scenario.last_document_time), unsent_documents=scenario.unsent,
            first_unsent_number=scenario.first_unsent_number, first_unsent_time=moment(scenario.first_unsent)),
    }


@pytest.mark.parametrize("variant", [
    {}, {"no_spaces": True}, {"no_spaces": True, "shuffle_attributes": True},
    {"no_spaces": True, "double_quotes": True, "lowercase": True},
    {"shuffle_attributes": True, "double_quotes": True, "lowercase": True, "no_spaces": True},
])
def test_a_networked_unit_is_read_completely_whatever_its_spelling(simulators, variant):
    scenario = healthy_scenario(flags=0x08, phase=0x03, shift_state=9, **variant)
    simulator = simulators(scenario, "tcp")
    state = read_state(simulator.url.replace("socket://", "tcp://"), **FAST)
    got = {name: getattr(state, name) for name in expected_reading(scenario)}
    assert got == expected_reading(scenario)
    assert state.baudrate is None and simulator.connections == 7


def test_port_held_by_another_program_is_port_busy(simulators):
    simulator = simulators()
    with hold_port(simulator.device):
        err = read_error(simulator.device)
    assert err.reason == "port_busy"
    assert err.message == (f"{simulator.device} is in use by another program (the till?); "
                           f"will try again next interval")
    assert read_state(simulator.device, **FAST).serial == "065001234567890"  # free again once the till lets go


def test_port_a_till_holds_without_a_lock_is_busy_and_hears_nothing(simulators):
    simulator = simulators()
    with unlocked_holder(simulator.device, "frontol") as till:
        started = time.monotonic()
        err = read_error(simulator.device)
        elapsed = time.monotonic() - started
    assert err.reason == "port_busy"
    assert f"held open by frontol (pid {till.pid})" in err.message and "Nothing was sent" in err.message
    assert till.received == 0  # the till heard nothing of a conversation
    assert simulator.bytes_received == 0 and simulator.bytes_ignored == 0  # the driver sent not one byte
    assert simulator.speeds_seen == []  # nor touched the line's speed
    assert elapsed < 0.5
    assert read_state(simulator.device, **FAST).serial == "065001234567890"  # read again once the till lets go


def test_port_holders_names_other_processes_only(simulators):
    simulator = simulators()
    assert transport.port_holders(simulator.device) == []  # the simulator holds only the pty's master
    with open(simulator.device, "rb", buffering=0):  # this process itself: its polls meet the lock instead
        assert transport.port_holders(simulator.device) == []
    with unlocked_holder(simulator.device, "iikofront") as till:
        assert transport.port_holders(simulator.device) == [(till.pid, "iikofront")]


@pytest.mark.parametrize("speed", [4800, 9600, 57600, 115200])
def test_a_unit_at_any_speed_is_found_in_the_vendors_order_and_read(simulators, speed):
    simulator = simulators(healthy_scenario(), "pty", baudrate=speed)
    state = read_state(simulator.device, speeds.search_order("mitsu", speeds.AUTO), **{**FAST, "timeout": 8.0})
    assert state.baudrate == speed
    assert {name: getattr(state, name) for name in expected_reading(simulator.scenario)} == \
        expected_reading(simulator.scenario)
    order = speeds.VENDOR_ORDER["mitsu"]
    assert simulator.speeds_seen == [getattr(termios, f"B{each}") for each in order[:order.index(speed) + 1]]


def test_the_speed_that_answered_last_is_asked_first(simulators):
    simulator = simulators(baudrate=4800)
    state = read_state(simulator.device, speeds.search_order("mitsu", speeds.AUTO, remembered=4800), **FAST)
    assert state.baudrate == 4800 and simulator.speeds_seen == [termios.B4800]
    assert simulator.bytes_ignored == 0


def test_a_fixed_wrong_speed_is_not_searched_past(simulators):
    simulator = simulators(baudrate=4800)
    err = read_error(simulator.device, baudrate=115200)
    assert err.reason == "timeout" and simulator.speeds_seen == [termios.B115200] and simulator.bytes_ignored > 0


def test_a_unit_at_no_speed_of_the_search_names_every_speed_tried(simulators):
    simulator = simulators(baudrate=2400)
    err = read_error(simulator.device, baudrate=(115200, 9600))
    assert err.reason == "timeout" and "answered at none of 115200, 9600 baud" in err.message


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
    err = read_error("/dev/ttyMITSU-not-here")
    assert err.reason == "not_found" and "/dev/ttyMITSU-not-here" in err.message


def test_closed_tcp_port_is_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    for port in (f"socket://127.0.0.1:{free}", f"tcp://127.0.0.1:{free}"):
        err = read_error(port)
        assert err.reason == "refused" and f"127.0.0.1:{free}" in err.message


def test_random_bytes_from_the_register_fail_as_protocol_or_timeout_in_time(simulators):
    scenario = MitsuScenario()
    ports = [port_of(simulators(scenario, "pty")), port_of(simulators(scenario, "tcp"))]

    @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(garbage=st.binary(min_size=1, max_size=64), which=st.sampled_from([0, 1]))
    def check(garbage, which):
        scenario.garbage = garbage
        started = time.monotonic()
        err = read_error(ports[which], timeout=0.6, command_timeout=0.1)
        assert err.reason in ("protocol", "timeout"), err.message
        assert time.monotonic() - started < 0.6 + MARGIN

    check()


def test_the_search_stops_at_the_reads_deadline_and_names_only_the_speeds_asked(simulators):
    simulator = simulators(baudrate=2400)
    started = time.monotonic()
    err = read_error(simulator.device, baudrate=speeds.search_order("mitsu", speeds.AUTO), timeout=1.0)
    assert time.monotonic() - started < 1.0 + MARGIN
    assert err.reason == "timeout" and "2400" not in err.message
    assert "at 115200, 57600" in err.message and "did not answer <GET DEV='?'/> within 0.3s" in err.message
    assert termios.B2400 not in simulator.speeds_seen  # nothing written after the time was up


def test_a_register_that_answers_with_an_error_at_the_probe_is_found_at_that_speed(simulators):
    simulator = simulators(healthy_scenario(errors={"DEV": 69}), baudrate=9600)
    err = read_error(simulator.device, baudrate=speeds.search_order("mitsu", speeds.AUTO), timeout=6.0)
    assert err.reason == "device_error" and "error 69" in err.message  # the real fault, not "no answer"


def test_noise_that_starts_like_a_frame_does_not_swallow_the_next_command(simulators):
    """Another vendor's probe may send 0x02 and a large "length": the unit drops it after a pause."""
    simulator = simulators()
    with serial.Serial(simulator.device, 115200, timeout=0.1) as line:
        line.write(bytes([codec.STX, 0xFF, 0x3F, 0x41, 0x42]))  # "a frame of 16,383 bytes" that never comes
    time.sleep(0.7)
    assert read_state(simulator.device, **FAST).serial == "065001234567890"
