"""What a smartstatus.bat upload says: its client, its time, and the Кодекс monitoring page judged as the
exporter's kodeks check judges the page it reads itself.

The file is the page curl saved: in the 2023 form the ``/sysinfo/metrics`` page alone; in the 2026 form first
the ``date:`` line(s) that ``curl -i ... | find "date:"`` kept of the server's answer (the server's clock, in
GMT), then the ``/sysmon/metrics`` page. The page is read by the kodeks check's own parser and judged by its
own `judge`, so the same series and failure reasons come out; only the page is there (no catalog main pages,
no /admin/title), so the series that need those are absent. An empty page means the script's curl got
nothing from the server: it is kept as a failed run (reason ``connect``), as SMART takes it for "PC down".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import timezone

from exporter.checks.base import Result
from exporter.checks.kodeks import (DEFAULT_MAINTENANCE_MARKERS, SYSINFO_PATH, SYSMON_PATH, PageFormatError, Reading,
                                    first_match, judge, page_text, parse_metrics_page)
from ingest.refusals import Refusal, shown

SUFFIX = ".status"
_MAINTENANCE = [re.compile(pattern) for pattern in DEFAULT_MAINTENANCE_MARKERS]
# A header line as curl -i prints it, kept by find "date:" (Windows) or grep -i "date:" (Linux).
# The value is stripped in code: a lazy group before `\s*$` backtracks quadratically on a line of spaces.
_HEADER_LINE = re.compile(r"^\s*([A-Za-z0-9-]+):(.*)$")


@dataclass
class StatusFile:
    """One uploaded <client>.status file, read."""

    client: str
    page: str  # the monitoring page, without the date: lines
    server_date: float | None  # the last date: line's time, if the file has one (the 2026 form)

    @property
    def metrics_path(self) -> str:
        """The page the script fetched: /sysmon/metrics carries the date: lines (and says so), /sysinfo not."""
        head = self.page.lstrip()[:40].lower()
        if head.startswith("# sysmon") or (self.server_date is not None and not head.startswith("# sysinfo")):
            return SYSMON_PATH
        return SYSINFO_PATH


def client_of(file_name: str) -> str:
    """`ROMASHKA.status` -> `ROMASHKA`; any other file name is refused, naming what is expected."""
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name.lower().endswith(SUFFIX) or len(name) == len(SUFFIX):
        raise Refusal(422, "bad_file_name", f"the file field's name is {shown(name)}, not <client>.status "
                                            "(smartstatus.bat uploads -Ffile=@<client>.status)")
    client = name[:-len(SUFFIX)].strip()
    if len(client) > 200 or not client.isprintable():
        raise Refusal(422, "bad_file_name", "the client part of the file name is not a usable name")
    return client


# A monitoring page is two short lines per catalog (a few hundred bytes each for a server with dozens of
# catalogs). Bounds far above that keep a hostile page from costing the parser's regular expressions
# seconds per line, and /metrics a series per invented catalog.
PAGE_MOST = 256 * 1024
LINE_MOST = 4096
CATALOGS_MOST = 500


def read_status_file(file_name: str, data: bytes) -> StatusFile:
    client = client_of(file_name)
    if len(data) > PAGE_MOST:
        raise Refusal(413, "page_too_big", f"the file holds {len(data):,} bytes; a monitoring page is a few "
                                           f"kilobytes (at most {PAGE_MOST:,} taken)")
    longest = max((len(line) for line in data.split(b"\n")), default=0)
    if longest > LINE_MOST:
        raise Refusal(422, "not_monitoring_page", f"a line of {longest:,} bytes: a monitoring page's lines are "
                                                  f"short (at most {LINE_MOST:,} taken)")
    # The page is UTF-8; a stray byte (a Windows code page in a comment) must not cost the catalog lines.
    text = data.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    server_date = None
    taken = 0
    for line in lines:
        header = _HEADER_LINE.match(line)
        if header is None or "date:" not in line.lower():
            break
        taken += 1
        if header.group(1).lower() == "date":
            server_date = _http_date(header.group(2).strip()) or server_date  # with -L, the last answer's counts
    return StatusFile(client=client, page="\n".join(lines[taken:]), server_date=server_date)


def _http_date(text: str) -> float | None:
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


# The page is fetched moments before the upload; a date: later than arrival by more than this is a fast clock.
FUTURE_MOST = 60.0


def upload_time(server_date: float | None, arrival: float, tolerance: float) -> tuple[float, bool]:
    """When the page was taken: the file's date: line, or arrival when it has none. A date more than
    `tolerance` before arrival, or later than arrival, is not believed (a server clock off would make the
    site look silent at once, or hide a real silence), and the second value says so."""
    if server_date is None:
        return arrival, False
    if server_date > arrival + FUTURE_MOST or arrival - server_date > tolerance:
        return arrival, True
    return server_date, False


def read_page(status: StatusFile) -> Reading:
    """The page as the kodeks check would read it: maintenance on the page, or its catalogs, or a failure."""
    reading = Reading(metrics_path=status.metrics_path)
    if not status.page.strip():
        reading.failure = Result.failed(
            "connect", f"the uploaded {status.client}{SUFFIX} holds no page: smartstatus.bat's curl got nothing "
                       f"from the Кодекс server's {reading.metrics_path} (the server is off, or unreachable from "
                       f"the script's PC)")
        return reading
    if (where := first_match(_MAINTENANCE, page_text(status.page))) is not None:
        reading.maintenance, reading.maintenance_where = True, f"{reading.metrics_path}: {where}"
        return reading
    try:
        reading.catalogs = parse_metrics_page(status.page)
        if len(reading.catalogs) > CATALOGS_MOST:
            raise PageFormatError(f"{len(reading.catalogs):,} catalogs, more than a server has "
                                  f"(at most {CATALOGS_MOST} taken)")
    except PageFormatError as err:
        start = status.page.strip()[:80]
        reading.failure = Result.failed(
            "parse", f"the uploaded {status.client}{SUFFIX} is not the server's monitoring page ({err}), starting "
                     f"{start!r}: a login or error page? check the script's address and its -u LOGIN:PASSWORD")
    return reading


def judge_status_file(status: StatusFile) -> Result:
    """The kodeks check's verdict and series for the page, through the check's own `judge`."""
    return judge(read_page(status))


def is_monitoring_page(result: Result) -> bool:
    """False when the file was something other than the page (the upload is then answered 422)."""
    return result.reason != "parse"

