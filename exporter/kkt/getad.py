"""Reads the per-register JSON files that getad-service (POSRelayd), its Mitsu reader and the shtrih-kkt plugin
write into their `date` folder, and turns each into a `KktState` (or, for the no-register `TV…_AD….json` file,
the station's remote-access data).

The files carry no zone: their dates are the site's local time, so every date goes through `local_timestamp`
with the site's zone (None: the zone of the host reading them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from exporter.kkt.model import FFD_BY_GETAD_NUMBER, FiscalDrive, KktError, KktState, Licence, local_timestamp

# Keys only a register file has; one of them without a usable serialNumber makes the file broken, not a
# station file.
REGISTER_KEYS = frozenset({
    "serialNumber", "modelName", "RNM", "organizationName", "fn_serial", "datetime_reg", "dateTime_end",
    "ofdName", "bootVersion", "ffdVersion", "INN", "address", "attribute_excise", "attribute_marked",
    "fnExecution", "licenses",
})
STATION_KEYS = ("hostname", "url_rms", "teamviewer_id", "anydesk_id")

# getad writes "Не поддерживается в текущей версии драйвера" into fields an old ATOL driver cannot read;
# such a value means "unknown", never a model name or an INN.
_NOT_SUPPORTED = re.compile(r"не\s+поддерживается|not\s+supported|unsupported", re.IGNORECASE)

# Values past this are not register data, and str() of a huge int raises on Python 3.11+.
_LARGEST_NUMBER_AS_TEXT = 10 ** 20

_VENDOR_BY_MODEL_WORD = (("АТОЛ", "atol"), ("ATOL", "atol"), ("MITSU", "mitsu"), ("ШТРИХ", "shtrih"),
                         ("SHTRIH", "shtrih"))


@dataclass
class GetadFile:
    """One JSON file of the folder: exactly one of `state`, `station` and `error` is set."""

    path: Path
    state: KktState | None = None
    station: dict | None = None  # hostname, url_rms, teamviewer_id, anydesk_id, time (a timestamp or None)
    error: KktError | None = None


def read_getad_folder(folder: Path, timezone: ZoneInfo | None) -> list[GetadFile]:
    """Every `*.json` file of the folder, sorted by name; a broken file is reported in its own entry."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise KktError("not_found", f"getad data folder {folder} {what}")
    try:
        paths = sorted((path for path in folder.iterdir() if path.suffix.lower() == ".json" and path.is_file()),
                       key=lambda path: path.name)
    except OSError as err:
        raise KktError("io", f"getad data folder {folder} cannot be listed: {err.strerror or err}") from err
    return [read_getad_file(path, timezone) for path in paths]


def read_getad_file(path: Path, timezone: ZoneInfo | None) -> GetadFile:
    """One file; what cannot be read or decoded becomes the entry's error, never an exception."""
    path = Path(path)
    name = display_name(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        # getad deletes and rebuilds the whole folder on every start: a file may vanish after the listing.
        return GetadFile(path, error=KktError("not_found", f"{name}: the file disappeared while being read"))
    except OSError as err:
        return GetadFile(path, error=KktError("io", f"{name}: cannot be read: {err.strerror or err}"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return GetadFile(path, error=KktError(
            "parse", f"{name}: not UTF-8 text (byte 0x{raw[err.start]:02X} at offset {err.start})"))
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        return GetadFile(path, error=KktError(
            "parse", f"{name}: not valid JSON at line {err.lineno} column {err.colno} ({err.msg})"))
    except (ValueError, RecursionError) as err:  # numbers too long to convert, absurd nesting
        return GetadFile(path, error=KktError("parse", f"{name}: not usable JSON ({err})"))
    return parse_getad_record(record, path, timezone)


def parse_getad_record(record: object, path: Path, timezone: ZoneInfo | None) -> GetadFile:
    """Maps one decoded file. Never raises: whatever the content, the result holds a state, a station or an
    error with reason "parse"."""
    name = display_name(path)
    if not isinstance(record, dict):
        return GetadFile(path, error=KktError("parse", f"{name}: expected a JSON object, got {_json_kind(record)}"))
    if REGISTER_KEYS.isdisjoint(record):
        if any(key in record for key in STATION_KEYS):
            return GetadFile(path, station=_station(record, timezone))
        return GetadFile(path, error=KktError(
            "parse", f"{name}: neither register data (serialNumber) nor station data (hostname, teamviewer_id, "
                     f"anydesk_id)"))
    serial_value = record.get("serialNumber")
    # A serial written as a JSON number has lost its leading zeros ("00123…"), so it would name another label.
    serial = _text(serial_value) if isinstance(serial_value, str) else ""
    if not serial:
        if "serialNumber" not in record:
            problem = "no serialNumber in a register file"
        else:
            problem = f"serialNumber is {_describe_unusable(serial_value)}"
        return GetadFile(path, error=KktError("parse", f"{name}: {problem}"))
    model = _text(record.get("modelName"))
    fn_serial = _text(record.get("fn_serial"))
    fn_expiry = _timestamp(record.get("dateTime_end"), timezone)
    fn_edition = _text(record.get("fnExecution"))
    state = KktState(
        vendor=vendor_of_model(model),
        serial=serial,
        source=str(path),
        model=model,
        firmware=_text(record.get("bootVersion")),
        rnm=_text(record.get("RNM")),
        inn=_text(record.get("INN")),
        organization=_text(record.get("organizationName")),
        ofd=_text(record.get("ofdName")),
        ffd=_ffd(_text(record.get("ffdVersion"))),
        address=_text(record.get("address")),
        registration_time=_timestamp(record.get("datetime_reg"), timezone),
        data_time=_timestamp(record.get("current_time"), timezone),
        fn=(FiscalDrive(serial=fn_serial, expiry=fn_expiry, edition=fn_edition)
            if fn_serial or fn_expiry is not None or fn_edition else None),
        licences=_licences(record.get("licenses"), timezone),
    )
    return GetadFile(path, state=state)


def vendor_of_model(model: str) -> str:
    """getad's files do not name the vendor; the model name does: "АТОЛ 22 v2 Ф", "MITSU-1-F 2.0", "ШТРИХ-М-01Ф"."""
    upper = model.upper()
    for word, vendor in _VENDOR_BY_MODEL_WORD:
        if word in upper:
            return vendor
    return "unknown"


def display_name(path: Path) -> str:
    """'date/00123.json': the folder and the file, enough for an engineer to find it on the site."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _station(record: dict, timezone: ZoneInfo | None) -> dict:
    station: dict = {key: _text(record.get(key)) for key in STATION_KEYS}
    station["time"] = _timestamp(record.get("current_time"), timezone)
    return station


def _text(value: object) -> str:
    """A field as text: getad writes strings, other writers may write numbers; anything else is unknown."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int) and -_LARGEST_NUMBER_AS_TEXT < value < _LARGEST_NUMBER_AS_TEXT:
        return str(value)
    if not isinstance(value, str):
        return ""
    value = value.strip()  # ATOL's INN comes padded with spaces: "1111222233  "
    return "" if _NOT_SUPPORTED.search(value) else value


LATEST_BELIEVED = 221_845_392_000.0  # 9000-01-01 UTC


def _timestamp(value: object, timezone: ZoneInfo | None) -> float | None:
    text = _text(value)
    if not text:
        return None
    try:
        moment = local_timestamp(text, timezone=timezone)
    except (OverflowError, OSError, ValueError):  # years a clock cannot express (OSError: Windows before 1970)
        return None
    # A date before 1970 or after 9000 is a placeholder ("0001-01-01", "9999-12-31" for a field the driver
    # could not read), not a moment: said as a date it would fall outside years 1-9999 in some zones and
    # break every text that shows it.
    return moment if moment is not None and 0 <= moment < LATEST_BELIEVED else None


def _ffd(number: str) -> str:
    """getad writes the FFD as "105"; a writer that already gives "1.05" is taken as is; anything else is
    unknown rather than guessed."""
    if number in FFD_BY_GETAD_NUMBER:
        return FFD_BY_GETAD_NUMBER[number]
    return number if number in FFD_BY_GETAD_NUMBER.values() else ""


def _licences(value: object, timezone: ZoneInfo | None) -> list[Licence]:
    """ATOL: {code: {name, dateFrom, dateUntil}}. Mitsu files say "None" and shtrih-kkt a phrase such as
    "Подписка до 4 квартала 2026 года": no date to alert on, so no licence."""
    if not isinstance(value, dict):
        return []
    licences = []
    for code, entry in value.items():
        if not isinstance(entry, dict):
            continue
        licences.append(Licence(code=str(code).strip(), name=_text(entry.get("name")),
                                valid_from=_timestamp(entry.get("dateFrom"), timezone),
                                # "2038-01-19 03:14:07" is ATOL's "unlimited"; it is a real date and alerts
                                # simply never reach it.
                                valid_until=_timestamp(entry.get("dateUntil"), timezone)))
    return licences


def _describe_unusable(value: object) -> str:
    if isinstance(value, str):
        return "empty" if not value.strip() else f"a placeholder: {value.strip()!r}"
    return f"not a text but {_json_kind(value)}"


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)
