"""The state of a fiscal register and its fiscal drive, as every source reports it.

Drivers and file readers fill these objects; `exporter.kkt.metrics` is the one place that turns them into
metrics. Dates here are unix timestamps: register clocks and ФН dates carry no zone, so each source turns
them into timestamps with the site's time zone (`local_timestamp`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

# ФН life phases (the ФН's own phase byte).
PHASE_NAMES = {0x00: "set-up", 0x01: "ready for registration", 0x03: "fiscal mode",
               0x07: "fiscal mode closed, sending to the OFD", 0x0F: "archive only"}

# ФН warning flags: bit mask -> the `flag` label of sitewatch_fn_warning.
WARNING_FLAGS = {0x01: "replace_urgent", 0x02: "resource_exhausted", 0x04: "archive_full",
                 0x08: "ofd_timeout", 0x80: "critical"}


class KktError(Exception):
    """A register or its data could not be read. `reason` is a short fixed word for the metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Licence:
    code: str  # the vendor's licence number, e.g. ATOL "10"
    name: str
    valid_from: float | None = None
    valid_until: float | None = None


@dataclass
class FiscalDrive:
    serial: str = ""
    phase: int | None = None
    flags: int | None = None  # the ФН warning-flag byte
    expiry: float | None = None  # when the ФН stops working: 00:00 of its validity date, site time
    ffd: str = ""
    edition: str = ""  # ФН "исполнение", e.g. "ФН-1.2"
    registrations_done: int | None = None
    registrations_remaining: int | None = None
    last_document_number: int | None = None
    last_document_time: float | None = None
    unsent_documents: int | None = None
    first_unsent_number: int | None = None
    first_unsent_time: float | None = None  # None when nothing waits for the OFD

    def warnings(self) -> list[str]:
        return [name for bit, name in WARNING_FLAGS.items() if self.flags is not None and self.flags & bit]


@dataclass
class KktState:
    """One register as last read. `serial` is the register's factory number: the `kkt` label."""

    vendor: str  # mitsu, atol, shtrih
    serial: str
    source: str  # where it came from: a port, a file
    baudrate: int | None = None  # the serial speed that answered; None over the network or from a file
    model: str = ""
    firmware: str = ""
    rnm: str = ""
    inn: str = ""
    organization: str = ""
    ofd: str = ""
    ffd: str = ""  # e.g. "1.2"
    address: str = ""
    registered: bool = True
    registration_time: float | None = None
    clock: float | None = None  # the register's own clock when it was read
    data_time: float | None = None  # when the data was read (for files: the time written in the file)
    shift_expired: bool | None = None  # shift open for more than 24 h: the register will not sell
    fn: FiscalDrive | None = None
    licences: list[Licence] = field(default_factory=list)


_PLACEHOLDER_DATES = ("2000-00-00", "0000-00-00", "")


def local_timestamp(date_text: str, time_text: str = "", timezone: ZoneInfo | None = None) -> float | None:
    """Turns a register's 'YYYY-MM-DD' (and 'HH:MM' or 'HH:MM:SS') in the site's zone into a timestamp.

    Placeholders of an unregistered unit ('2000-00-00') and anything unreadable become None.
    """
    date_text = (date_text or "").strip()
    if date_text in _PLACEHOLDER_DATES:
        return None
    match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", date_text)
    if not match:
        return None
    year, month, day = int(match[1]), int(match[2]), int(match[3])
    hour = minute = second = 0
    if match[4] is not None:
        hour, minute, second = int(match[4]), int(match[5]), int(match[6] or 0)
    elif time_text.strip():
        parts = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", time_text.strip())
        if parts:
            hour, minute, second = int(parts[1]), int(parts[2]), int(parts[3] or 0)
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone).timestamp()
    except ValueError:  # 2000-00-00 style zeros inside, or 24:00
        return None


# FFD version numbers as tag 1209 carries them, and as getad writes them ("105").
FFD_BY_TAG_1209 = {"1": "1.0", "2": "1.05", "3": "1.1", "4": "1.2"}
FFD_BY_GETAD_NUMBER = {"100": "1.0", "105": "1.05", "110": "1.1", "120": "1.2"}
