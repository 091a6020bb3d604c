"""The getad-service `date` folder reader: the README's example file field by field, the no-register station
file, the Mitsu and shtrih-kkt variants, driver placeholders, a BOM, broken files beside good ones, and random
content that must never make the reader raise."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.kkt.getad import REGISTER_KEYS, GetadFile, parse_getad_record, read_getad_file, read_getad_folder
from exporter.kkt.metrics import state_samples
from exporter.kkt.model import FiscalDrive, KktError, KktState, Licence

MOSCOW = ZoneInfo("Europe/Moscow")

# The example from getad-service's README, exactly as printed there (the two leading spaces included).
README_EXAMPLE = """  {
    "modelName": "АТОЛ 22 v2 Ф",
    "serialNumber": "00123456790012",
    "RNM": "0000000001036518",
    "organizationName": "ООО Предприятие",
    "fn_serial": "7380440700067159",
    "datetime_reg": "2024-04-13 07:20:00",
    "dateTime_end": "2099-12-31 00:00:00",
    "ofdName": "ООО Эвотор ОФД",
    "bootVersion": "5.8.100",
    "ffdVersion": "105",
    "INN": "1111222233  ",
    "address": "г.Москва, Тверская ул, д.1, стр. 333",
    "attribute_excise": "True",
    "attribute_marked": "False",
    "fnExecution": "Эмулятор ФН с поддержкой ФФД 1.2",
    "installed_driver": "10.9.1.0",
    "licenses": {
        "1": {
            "name": "Фискальные функции",
            "dateFrom": "2018-11-21 00:00:00",
            "dateUntil": "2038-01-19 03:14:07"
        },
        "10": {
            "name": "ФФД 1.2",
            "dateFrom": "2019-12-26 00:00:00",
            "dateUntil": "2038-01-19 03:14:07"
        }
    },
    "hostname": "Isaac-LT",
    "url_rms": "https://resto.iiko.it:443/resto",
    "teamviewer_id": "111222333",
    "anydesk_id": "222333444",
    "litemanager_id": "ID_1111",
    "current_time": "2024-05-05 21:57:25",
    "v_time": "2024-05-05 21:57:25",
    "uuid": "6cb34107-cfb2-9ba1-b1ff-4823d63ea8d7"
}
"""

WORKSTATION = {"hostname": "KASSA-2", "url_rms": "https://cafe.iiko.it:443/resto", "teamviewer_id": "987654321",
               "anydesk_id": "123456789", "litemanager_id": "ID_2222", "current_time": "2025-12-27 10:15:02",
               "v_time": "2025-12-27 10:15:02", "vc": "2.3.2.2", "uuid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}

# What getad's Mitsu reader writes: model = DEV + T1188, dates from the REG and FN replies are date-only, and
# "None" where ATOL has licences.
MITSU_FILE = {"modelName": "MITSU-1-F 2.0", "serialNumber": "065001234567890", "RNM": "0000000002047629",
              "organizationName": "ИП Сидоров", "fn_serial": "9999078902014447", "datetime_reg": "2023-04-27",
              "dateTime_end": "2024-07-17", "ofdName": "ООО Такском", "bootVersion": "1.1.06",
              "ffdVersion": "120", "INN": "770123456789", "address": "г.Тверь, ул. Советская, д.5",
              "attribute_excise": "False", "attribute_marked": "True", "fnExecution": "ФН-1.2",
              "installed_driver": "1.2.3.4", "licenses": "None", **WORKSTATION}

# The shtrih-kkt plugin: the same keys, real JSON booleans, and the licence as a phrase.
SHTRIH_FILE = {"modelName": "ШТРИХ-М-01Ф", "serialNumber": "0000000000123456", "RNM": "0000000003058730",
               "organizationName": "ООО Ромашка", "fn_serial": "7281440500123456",
               "datetime_reg": "2025-02-01 10:00:00", "dateTime_end": "2028-02-01 00:00:00",
               "ofdName": "АО ПФ СКБ Контур", "bootVersion": "A4.0", "ffdVersion": "120", "INN": "5001234567",
               "address": "г.Москва, ул. Ленина, д.2", "attribute_excise": True, "attribute_marked": False,
               "fnExecution": "ФН-1.1М", "installed_driver": "4.15.0.0",
               "licenses": "Подписка до 4 квартала 2026 года", **WORKSTATION}


def moscow(*parts: int) -> float:
    return datetime(*parts, tzinfo=MOSCOW).timestamp()


def write_json(folder: Path, name: str, content: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(content, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


def test_the_readme_example_becomes_the_full_register_state(tmp_path):
    path = tmp_path / "date" / "00123456790012.json"
    path.parent.mkdir()
    path.write_text(README_EXAMPLE, encoding="utf-8")

    result = read_getad_file(path, MOSCOW)

    assert result.error is None and result.station is None
    assert result.state == KktState(
        vendor="atol", serial="00123456790012", source=str(path), model="АТОЛ 22 v2 Ф", firmware="5.8.100",
        rnm="0000000001036518", inn="1111222233", organization="ООО Предприятие", ofd="ООО Эвотор ОФД",
        ffd="1.05", address="г.Москва, Тверская ул, д.1, стр. 333", registered=True,
        registration_time=moscow(2024, 4, 13, 7, 20), clock=None, data_time=moscow(2024, 5, 5, 21, 57, 25),
        shift_expired=None,
        fn=FiscalDrive(serial="7380440700067159", expiry=moscow(2099, 12, 31),
                       edition="Эмулятор ФН с поддержкой ФФД 1.2"),
        licences=[Licence("1", "Фискальные функции", moscow(2018, 11, 21), moscow(2038, 1, 19, 3, 14, 7)),
                  Licence("10", "ФФД 1.2", moscow(2019, 12, 26), moscow(2038, 1, 19, 3, 14, 7))])
    # Moscow is UTC+3: 21:57:25 there is 18:57:25 UTC. ATOL's "unlimited" is 2^31-1 seconds in UTC, so in
    # Moscow it is three hours earlier.
    assert result.state.data_time == 1714935445
    assert result.state.licences[0].valid_until == 2**31 - 1 - 3 * 3600
    fn = result.state.fn
    assert (fn.phase, fn.flags, fn.unsent_documents, fn.first_unsent_time) == (None, None, None, None)


def test_the_file_time_is_what_the_data_timestamp_metric_shows(tmp_path):
    path = tmp_path / "date" / "00123456790012.json"
    path.parent.mkdir()
    path.write_text(README_EXAMPLE, encoding="utf-8")

    samples = {(s.name, s.labels): s.value for s in state_samples(read_getad_file(path, MOSCOW).state)}

    assert samples[("sitewatch_kkt_data_timestamp_seconds", (("kkt", "00123456790012"),))] == 1714935445
    assert samples[("sitewatch_fn_expiry_timestamp_seconds",
                    (("kkt", "00123456790012"), ("fn", "7380440700067159")))] == moscow(2099, 12, 31)
    assert samples[("sitewatch_kkt_licence_expiry_timestamp_seconds",
                    (("kkt", "00123456790012"), ("licence", "10"), ("name", "ФФД 1.2")))] == 2**31 - 1 - 3 * 3600
    # Phase, warnings and unsent documents are not in these files: no series rather than a guessed one.
    assert not any(name in ("sitewatch_fn_phase", "sitewatch_fn_warning", "sitewatch_fn_unsent_documents")
                   for name, _ in samples)


def test_the_no_register_file_gives_the_station_and_its_remote_access_ids(tmp_path):
    path = write_json(tmp_path / "date", "TV987654321_AD123456789.json", WORKSTATION)

    result = read_getad_file(path, MOSCOW)

    assert result.state is None and result.error is None
    assert result.station == {"hostname": "KASSA-2", "url_rms": "https://cafe.iiko.it:443/resto",
                              "teamviewer_id": "987654321", "anydesk_id": "123456789",
                              "time": moscow(2025, 12, 27, 10, 15, 2)}


def test_a_mitsu_file_has_no_licences_and_a_date_only_fn_expiry(tmp_path):
    path = write_json(tmp_path / "date", "065001234567890.json", MITSU_FILE)

    state = read_getad_file(path, MOSCOW).state

    assert (state.vendor, state.serial, state.model, state.firmware) == ("mitsu", "065001234567890",
                                                                        "MITSU-1-F 2.0", "1.1.06")
    assert state.ffd == "1.2"
    assert state.registration_time == moscow(2023, 4, 27)
    assert state.fn == FiscalDrive(serial="9999078902014447", expiry=moscow(2024, 7, 17), edition="ФН-1.2")
    assert state.licences == []
    assert state.data_time == moscow(2025, 12, 27, 10, 15, 2)


def test_a_shtrih_kkt_file_with_json_booleans_and_a_subscription_phrase_has_no_dated_licence(tmp_path):
    path = write_json(tmp_path / "date", "0000000000123456.json", SHTRIH_FILE)

    result = read_getad_file(path, MOSCOW)

    assert result.error is None
    state = result.state
    assert (state.vendor, state.serial, state.inn, state.ffd) == ("shtrih", "0000000000123456", "5001234567",
                                                                  "1.2")
    assert state.fn.expiry == moscow(2028, 2, 1)
    assert state.licences == []


def test_not_supported_placeholders_of_an_old_driver_become_empty_fields(tmp_path):
    placeholder = "Не поддерживается в текущей версии драйвера"
    content = json.loads(README_EXAMPLE) | {
        "bootVersion": placeholder, "fnExecution": placeholder, "ffdVersion": placeholder,
        "dateTime_end": placeholder, "address": "Not supported by this driver", "licenses": placeholder}
    path = write_json(tmp_path / "date", "00123456790012.json", content)

    state = read_getad_file(path, MOSCOW).state

    assert (state.firmware, state.ffd, state.address) == ("", "", "")
    assert state.fn == FiscalDrive(serial="7380440700067159", expiry=None, edition="")
    assert state.licences == []


def test_a_placeholder_instead_of_the_serial_is_a_parse_error(tmp_path):
    content = json.loads(README_EXAMPLE) | {"serialNumber": "Не поддерживается в текущей версии драйвера"}
    path = write_json(tmp_path / "date", "unknown.json", content)

    error = read_getad_file(path, MOSCOW).error

    assert error.reason == "parse"
    assert error.message.startswith("date/unknown.json: serialNumber is a placeholder")


def test_a_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "date" / "00123456790012.json"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + README_EXAMPLE.encode("utf-8"))

    result = read_getad_file(path, MOSCOW)

    assert result.error is None
    assert result.state.organization == "ООО Предприятие"


def test_a_broken_file_is_reported_by_name_and_the_good_ones_beside_it_are_read(tmp_path):
    folder = tmp_path / "date"
    write_json(folder, "00123456790012.json", json.loads(README_EXAMPLE))
    write_json(folder, "065001234567890.json", MITSU_FILE)
    (folder / "00555.json").write_text('{\n    "serialNumber": "00555",\n    "RNM": \n}\n', encoding="utf-8")
    (folder / "notes.txt").write_text("not a data file", encoding="utf-8")

    results = read_getad_folder(folder, MOSCOW)

    assert [r.path.name for r in results] == ["00123456790012.json", "00555.json", "065001234567890.json"]
    assert [r.state.serial for r in results if r.state] == ["00123456790012", "065001234567890"]
    broken = results[1]
    assert broken.state is None and broken.error.reason == "parse"
    assert broken.error.message.startswith("date/00555.json: not valid JSON at line 4 column 1")


def test_a_file_holding_a_json_list_is_a_parse_error(tmp_path):
    path = write_json(tmp_path / "date", "00123456790012.json", [json.loads(README_EXAMPLE)])

    error = read_getad_file(path, MOSCOW).error

    assert error.reason == "parse"
    assert error.message == "date/00123456790012.json: expected a JSON object, got a list"


def test_register_data_without_a_serial_is_a_parse_error_not_a_station(tmp_path):
    no_serial = {key: value for key, value in MITSU_FILE.items() if key != "serialNumber"}
    numeric_serial = MITSU_FILE | {"serialNumber": 65001234567890}

    missing = read_getad_file(write_json(tmp_path / "date", "a.json", no_serial), MOSCOW)
    number = read_getad_file(write_json(tmp_path / "date", "b.json", numeric_serial), MOSCOW)

    assert missing.station is None and missing.error.message == "date/a.json: no serialNumber in a register file"
    # A number has lost the serial's leading zeros: it would name a different register.
    assert number.error.message == "date/b.json: serialNumber is not a text but a number"


def test_a_missing_folder_is_not_found_and_named(tmp_path):
    folder = tmp_path / "getad" / "date"

    with pytest.raises(KktError) as caught:
        read_getad_folder(folder, MOSCOW)

    assert caught.value.reason == "not_found"
    assert str(folder) in caught.value.message


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
DATE_LIKE = st.from_regex(r"\A[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,2}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?\Z")
JSON_VALUES = st.recursive(JSON_SCALARS | DATE_LIKE,
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=12)
KNOWN_KEYS = sorted(REGISTER_KEYS) + ["current_time", "hostname", "url_rms", "teamviewer_id", "anydesk_id"]
LICENCE_LIKE = st.dictionaries(st.text(max_size=4), st.dictionaries(
    st.sampled_from(["name", "dateFrom", "dateUntil"]), JSON_VALUES | DATE_LIKE, max_size=3), max_size=3)
RECORDS = st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=12),
                          JSON_VALUES | LICENCE_LIKE, max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=RECORDS | JSON_VALUES)
def test_random_content_gives_a_state_a_station_or_a_parse_error_and_never_raises(record):
    result = parse_getad_record(record, Path("date/random.json"), MOSCOW)

    assert isinstance(result, GetadFile)
    assert [result.state is not None, result.station is not None, result.error is not None].count(True) == 1
    if result.error is not None:
        assert result.error.reason == "parse"
        assert result.error.message.startswith("date/random.json: ")
    if result.state is not None:
        assert result.state.serial and isinstance(record, dict) and record["serialNumber"].strip()
        state_samples(result.state)  # whatever was read, the metrics can be made from it
