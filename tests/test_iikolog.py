"""POS plugin logs read backwards for the ФН each register serial last showed: iikoFront-style ATOL and Mitsu
logs with noise, CRLF and cp1251 fragments, a ФН replaced half way, keys cut by block boundaries, the newest
file by mask and time, and a log of a few hundred megabytes read in bounded memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from exporter.kkt.iikolog import ATOL, MITSU, LogPattern, last_fns, newest_log, require_newest_log
from exporter.kkt.model import KktError

ATOL_SERIAL, ATOL_SERIAL_2 = "00123456790012", "00106703456789"
MITSU_SERIAL, MITSU_SERIAL_2 = "065001234567890", "065009876543210"
OLD_FN, NEW_FN, OTHER_FN = "7380440700067159", "7380440700099999", "9999078902014447"

# "Смена открыта" / "Чек напечатан" as the cp1251 bytes some plugins write into a UTF-8 log.
CP1251_NOISE = "Смена открыта, чек напечатан".encode("cp1251")


def stamp(second: int) -> str:
    return f"2025-12-27 {10 + second // 3600 % 10:02d}:{second // 60 % 60:02d}:{second % 60:02d},{second % 1000:03d}"


def atol_status_line(second: int, serial: str, fn: str) -> bytes:
    return (f"{stamp(second)} [14] INFO  Resto.Front.Api.AtolFiscalRegister.AtolDriver - Статус ККТ: "
            f"model=АТОЛ 22 v2 Ф, serialNumber={serial}, shiftState=Opened, fnNumber={fn}, "
            f"fnState=FiscalMode\r\n").encode()


def noise_line(second: int) -> bytes:
    return (f"{stamp(second)} [9] DEBUG Resto.Front.Api.AtolFiscalRegister.AtolDriver - ".encode()
            + CP1251_NOISE + f" (order {second}, sum 1250.00)\r\n".encode())


def mitsu_ver_line(second: int, serial: str) -> bytes:
    return (f"{stamp(second)} [7] DEBUG Resto.Front.Api.MitsuCRPlugin - <- <OK VER='1.1.06' SIZE='295771' "
            f"CRC32='7E714C76' SERIAL='{serial}' MAC='00-22-00-48-00-51' STS='00000000'/>\n").encode()


def mitsu_fn_line(second: int, fn: str) -> bytes:
    return (f"{stamp(second)} [7] DEBUG Resto.Front.Api.MitsuCRPlugin - <- <OK FN='{fn}' FFD='1.2' "
            f"PHASE='0x03' REG='3|27' VALID='2026-07-17' LAST='80' DATE='2025-04-27' TIME='23:00' "
            f"FLAG='0x00'></OK>\n").encode()


def write(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


def atol_log(path: Path) -> Path:
    """Two registers; the first one's ФН is replaced half way through the day."""
    lines = []
    for second in range(200):
        lines.append(noise_line(second))
        if second % 20 == 0:
            lines.append(atol_status_line(second, ATOL_SERIAL, OLD_FN if second < 100 else NEW_FN))
        if second == 30:
            lines.append(atol_status_line(second, ATOL_SERIAL_2, OTHER_FN))
    return write(path, lines)


def test_an_atol_log_gives_each_serial_the_fn_of_its_last_line_after_a_replacement(tmp_path):
    log = atol_log(tmp_path / "logs" / "plugin-Resto.Front.Api.AtolFiscalRegister.log")

    assert last_fns(log, ATOL) == {ATOL_SERIAL: NEW_FN, ATOL_SERIAL_2: OTHER_FN}


def test_an_atol_line_with_the_fn_before_the_serial_or_a_key_without_digits_is_not_a_pair(tmp_path):
    log = write(tmp_path / "AtolFiscalRegister.log", [
        atol_status_line(1, ATOL_SERIAL, OLD_FN),
        f"{stamp(2)} INFO fnNumber={NEW_FN}, serialNumber={ATOL_SERIAL}\n".encode(),
        f"{stamp(3)} INFO serialNumber=, fnNumber={NEW_FN}\n".encode(),
        # cp1251 bytes right against the keys
        CP1251_NOISE + f"serialNumber={ATOL_SERIAL_2}, ".encode() + CP1251_NOISE
        + f"fnNumber={OTHER_FN}\n".encode(),
    ])

    assert last_fns(log, ATOL) == {ATOL_SERIAL: OLD_FN, ATOL_SERIAL_2: OTHER_FN}


def test_a_mitsu_log_gives_a_serial_the_first_fn_line_after_it_unless_another_serial_comes_first(tmp_path):
    log = write(tmp_path / "Resto.Front.Api.MitsuCRPlugin.log", [
        mitsu_ver_line(1, MITSU_SERIAL), noise_line(2), mitsu_fn_line(3, OLD_FN), mitsu_fn_line(4, OTHER_FN),
        mitsu_ver_line(5, MITSU_SERIAL_2), noise_line(6), mitsu_fn_line(7, OTHER_FN),
        # the ФН was replaced: the register is read again
        mitsu_ver_line(8, MITSU_SERIAL), noise_line(9), mitsu_fn_line(10, NEW_FN),
        # this serial's reply is followed by another serial's before any ФН: it gets nothing from here
        mitsu_ver_line(11, MITSU_SERIAL), mitsu_ver_line(12, MITSU_SERIAL_2), mitsu_fn_line(13, OTHER_FN),
        mitsu_ver_line(14, MITSU_SERIAL),  # no ФН after it at all
    ])

    assert last_fns(log, MITSU) == {MITSU_SERIAL: NEW_FN, MITSU_SERIAL_2: OTHER_FN}


def test_only_the_wanted_serials_are_returned(tmp_path):
    log = atol_log(tmp_path / "AtolFiscalRegister.log")

    assert last_fns(log, ATOL, serials=[ATOL_SERIAL]) == {ATOL_SERIAL: NEW_FN}
    assert last_fns(log, ATOL, serials=["00000000000000"]) == {}


def test_max_bytes_reads_only_the_end_of_the_log_and_never_a_cut_line(tmp_path):
    log = write(tmp_path / "AtolFiscalRegister.log", [
        atol_status_line(1, ATOL_SERIAL_2, OTHER_FN), noise_line(2), atol_status_line(3, ATOL_SERIAL, NEW_FN)])
    last_line = len(atol_status_line(3, ATOL_SERIAL, NEW_FN))
    size = log.stat().st_size

    assert last_fns(log, ATOL, max_bytes=last_line) == {ATOL_SERIAL: NEW_FN}
    # A line whose start is cut off is not used, even when its keys survive the cut.
    assert last_fns(log, ATOL, max_bytes=last_line - 1) == {}
    assert last_fns(log, ATOL, max_bytes=size - 1) == {ATOL_SERIAL: NEW_FN}
    assert last_fns(log, ATOL, max_bytes=size) == {ATOL_SERIAL: NEW_FN, ATOL_SERIAL_2: OTHER_FN}


@pytest.mark.parametrize("pattern", [ATOL, MITSU], ids=["atol", "mitsu"])
def test_every_block_boundary_position_gives_the_same_answer(tmp_path, pattern):
    if pattern is ATOL:
        lines = [atol_status_line(1, ATOL_SERIAL, OLD_FN), noise_line(2),
                 atol_status_line(3, ATOL_SERIAL_2, OTHER_FN), atol_status_line(4, ATOL_SERIAL, NEW_FN),
                 noise_line(5)]
        expected = {ATOL_SERIAL: NEW_FN, ATOL_SERIAL_2: OTHER_FN}
    else:
        lines = [mitsu_ver_line(1, MITSU_SERIAL), mitsu_fn_line(2, OLD_FN), mitsu_ver_line(3, MITSU_SERIAL_2),
                 noise_line(4), mitsu_fn_line(5, OTHER_FN), mitsu_ver_line(6, MITSU_SERIAL), mitsu_fn_line(7, NEW_FN)]
        expected = {MITSU_SERIAL: NEW_FN, MITSU_SERIAL_2: OTHER_FN}
    log = write(tmp_path / "plugin.log", lines)
    size = log.stat().st_size

    # Block sizes 1 … 400 put a boundary at every offset of the keys, the digits and the line ends, and
    # between a Mitsu serial line and its ФН line.
    for block_size in [*range(1, 401), size - 1, size, size + 1]:
        assert last_fns(log, pattern, block_size=block_size) == expected, f"block size {block_size}"


def reference_last_fns(text: str, pattern: LogPattern) -> dict[str, str]:
    """The rule read forwards, line by line, as getad-service applies it: later pairs overwrite earlier ones."""
    serial_re = re.compile(re.escape(pattern.serial_key) + "([0-9]+)")
    fn_re = re.compile(re.escape(pattern.fn_key) + "([0-9]+)")
    pair_re = re.compile(serial_re.pattern + ".*?" + fn_re.pattern)
    result, pending = {}, None
    for line in text.split("\n"):
        if not pattern.multiline:
            if match := pair_re.search(line):
                result[match[1]] = match[2]
        elif match := serial_re.search(line):
            pending = match[1]
        elif (match := fn_re.search(line)) and pending is not None:
            result[pending], pending = match[1], None
    return result


LOG_PIECES = st.sampled_from([
    b"SERIAL='11'", b"SERIAL='22'", b"SERIAL=''", b"FN='501'", b"FN='502'", b"FN='", b"serialNumber=11, ",
    b"serialNumber=22,", b"fnNumber=601", b"fnNumber=602 ", b"fnNumber=", b"\n", b"\r\n", b"\n", b" noise ",
    b"\xd1\xec\xe5\xed\xe0", b"\xe2\x80", b"7",
])


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(LOG_PIECES, max_size=60), block_size=st.integers(1, 40),
       pattern=st.sampled_from([ATOL, MITSU]))
def test_reading_backwards_in_blocks_agrees_with_reading_forwards_line_by_line(tmp_path_factory, pieces,
                                                                               block_size, pattern):
    data = b"".join(pieces)
    log = tmp_path_factory.mktemp("log") / "random.log"
    log.write_bytes(data)

    assert last_fns(log, pattern, block_size=block_size) == reference_last_fns(
        data.decode("utf-8", "replace"), pattern)


def test_a_line_longer_than_the_line_limit_is_read_in_pieces(tmp_path):
    log = write(tmp_path / "AtolFiscalRegister.log", [
        atol_status_line(1, ATOL_SERIAL, OLD_FN), b"x" * (3 << 20), b"\n",
        atol_status_line(2, ATOL_SERIAL_2, OTHER_FN)])

    assert last_fns(log, ATOL, block_size=64 << 10) == {ATOL_SERIAL: OLD_FN, ATOL_SERIAL_2: OTHER_FN}


def test_the_newest_log_is_the_latest_modified_file_with_the_mask_ending_in_log(tmp_path):
    logs = tmp_path / "CashServer" / "logs"
    files = {  # name: minutes ago
        "plugin-Resto.Front.Api.AtolFiscalRegister.log": 30,
        "plugin-Resto.Front.Api.AtolFiscalRegister.2025-12-26.log": 60 * 24,
        "plugin-Resto.Front.Api.AtolFiscalRegister.log.1": 1,  # rotated copy: not a .log
        "plugin-Resto.Front.Api.MitsuCRPlugin.log": 2,
        "cash-server.log": 0,
    }
    for name, minutes_ago in files.items():
        path = write(logs / name, [noise_line(1)])
        moment = 1_766_800_000 - minutes_ago * 60
        os.utime(path, (moment, moment))
    (logs / "old-AtolFiscalRegister.log").mkdir()  # a folder, however named, is no log

    assert newest_log(logs, ATOL) == logs / "plugin-Resto.Front.Api.AtolFiscalRegister.log"
    assert newest_log(logs, MITSU) == logs / "plugin-Resto.Front.Api.MitsuCRPlugin.log"
    assert newest_log(logs, LogPattern("Shtrih", "a", "b", multiline=False)) is None
    assert require_newest_log(logs, ATOL) == logs / "plugin-Resto.Front.Api.AtolFiscalRegister.log"


def test_a_missing_folder_or_no_matching_log_is_not_found_with_folder_and_mask(tmp_path):
    missing = tmp_path / "iiko" / "CashServer" / "logs"
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(KktError) as no_folder:
        require_newest_log(missing, MITSU)
    with pytest.raises(KktError) as no_file:
        require_newest_log(empty, MITSU)

    assert newest_log(missing, MITSU) is None
    assert no_folder.value.reason == no_file.value.reason == "not_found"
    assert str(missing) in no_folder.value.message
    assert str(empty) in no_file.value.message and "MitsuCRPlugin" in no_file.value.message


BIG_LOG_MIB = 300

# Run in a child so that its peak memory (VmHWM) belongs to this reading alone.
MEASURE_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from exporter.kkt.iikolog import ATOL, last_fns

    def status(field):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

    def bytes_read():
        with open("/proc/self/io") as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith("rchar:"))

    log, serials = Path(sys.argv[1]), json.loads(sys.argv[2])
    baseline, read_before, started = status("VmHWM"), bytes_read(), time.monotonic()
    found = last_fns(log, ATOL, serials=serials)
    print(json.dumps({"found": found, "seconds": time.monotonic() - started, "baseline": baseline,
                      "peak": status("VmHWM"), "read": bytes_read() - read_before}))
""")


@pytest.fixture
def big_atol_log(tmp_path):
    """~300 MB: another register near the start only, then hours of traffic where the first register shows
    its old ФН, and its new ФН in the last lines."""
    path = tmp_path / "plugin-Resto.Front.Api.AtolFiscalRegister.log"
    traffic = []
    for second in range(100_000):
        traffic.append(noise_line(second))
        if second % 50 == 0:
            traffic.append(atol_status_line(second, ATOL_SERIAL, OLD_FN))
        if sum(map(len, traffic)) >= 1 << 20:
            break
    block = b"".join(traffic)
    with open(path, "wb") as log:
        log.write(atol_status_line(0, ATOL_SERIAL_2, OTHER_FN))
        log.writelines(block for _ in range(BIG_LOG_MIB))
        log.write(atol_status_line(99_999, ATOL_SERIAL, NEW_FN) + noise_line(99_999) * 20)
    yield path
    path.unlink()


def measure_in_child(log: Path, serials: list[str] | None) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE_CHILD, str(log), json.dumps(serials)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")
def test_a_log_of_hundreds_of_megabytes_is_read_from_the_end_in_bounded_memory(big_atol_log):
    assert big_atol_log.stat().st_size > BIG_LOG_MIB << 20

    every_serial = measure_in_child(big_atol_log, None)
    one_serial = measure_in_child(big_atol_log, [ATOL_SERIAL])

    print(f"whole log: {every_serial['seconds']:.1f} s, peak memory "
          f"+{(every_serial['peak'] - every_serial['baseline']) / 2**20:.1f} MiB; one serial: "
          f"{one_serial['seconds']:.3f} s, {one_serial['read'] / 2**20:.1f} MiB read")
    assert every_serial["found"] == {ATOL_SERIAL: NEW_FN, ATOL_SERIAL_2: OTHER_FN}
    assert every_serial["peak"] - every_serial["baseline"] < 50 << 20
    assert every_serial["read"] >= BIG_LOG_MIB << 20
    # Wanted serials found: the reading stops at the end of the file.
    assert one_serial["found"] == {ATOL_SERIAL: NEW_FN}
    assert one_serial["read"] < 2 << 20
