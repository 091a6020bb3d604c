"""The ``kodeks`` check: a Кодекс/Техэксперт server's own monitoring page, its catalogs' main pages and
its registration (licence) file, read directly, as SMART.Status reads them but without the round trip.

One run reads ``/sysmon/metrics`` (basic auth, newer servers) or ``/sysinfo/metrics`` (older ones), then
every virtual catalog's main page (maintenance mode, service messages), then ``/admin/title`` (licence date,
registration number, version, sessions). All requests of a run go one after the other over one cookie jar
kept between runs, so the server sees one session, as with SMART's ``cookies.txt``, and never two at once.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests

from exporter import schema as s
from exporter.checks.base import CheckContext, MetricSpec, Result, Sample
from exporter.httpclient import TLS_OPTIONS, HttpFailure, HttpRequest, HttpResponse, fetch, public_url

log = logging.getLogger(__name__)

NAME = "kodeks"
SYSMON_PATH = "/sysmon/metrics"
SYSINFO_PATH = "/sysinfo/metrics"
DEFAULT_MAINTENANCE_MARKERS = [r"(?i)режим\w*\s+(технического\s+)?обслуживания", r"(?i)технически\w+\s+работ",
                               r"(?i)профилактик"]
DEFAULT_SERVICE_MESSAGE_MARKERS = [r"(?i)служебное\s+сообщение", r"(?i)требуется\s+обслуживание",
                                   r"(?i)обратит\w*\s+к\s+администратору"]


def _base_url(value: Any, path: str) -> str:
    text = s.string(what="the server's base URL, such as http://10.0.0.5:8080")(value, path)
    if not re.fullmatch(r"https?://[^/\s?#]+/?", text):
        raise s.Invalid(path, "the server's base URL: http(s)://ADDRESS:PORT with no path", value)
    return text.rstrip("/")


def _page_path(value: Any, path: str) -> str:
    text = s.string(what="auto, or a path on the server such as /sysmon/metrics")(value, path)
    if text != "auto" and not text.startswith("/"):
        raise s.Invalid(path, "auto, or a path on the server starting with /", value)
    return text


OPTIONS = s.struct({
    "url": s.Field(_base_url, required=True),
    "username": s.Field(s.string(what="the monitoring user's name, such as smartlogin")),
    "password": s.Field(s.secret()),
    "metrics_path": s.Field(_page_path, default="auto"),
    "main_pages": s.Field(s.boolean(), default=True),
    "licence": s.Field(s.boolean(), default=True),
    "maintenance_markers": s.Field(s.one_or_list_of(s.regex()), default=None),
    "service_message_markers": s.Field(s.one_or_list_of(s.regex()), default=None),
    "tls": TLS_OPTIONS,
    "body_size_limit": s.Field(s.size(minimum=1), default=4 * 1024 * 1024),
})
METRICS = (
    MetricSpec("sitewatch_kodeks_main_page_ok", "1 when the server reports the catalog's main page built correctly.",
               ("catalog",)),
    MetricSpec("sitewatch_kodeks_product_control_ok",
               "1 when the catalog's bundle (комплект) control reports no problem.", ("catalog",)),
    MetricSpec("sitewatch_kodeks_catalog_status_info", "1 for each status the server reports for a catalog.",
               ("catalog", "status")),
    MetricSpec("sitewatch_kodeks_maintenance", "1 while the server is in maintenance mode."),
    MetricSpec("sitewatch_kodeks_service_message", "1 while a catalog's main page shows a service message.",
               ("catalog",)),
    MetricSpec("sitewatch_kodeks_licence_expiry_timestamp_seconds",
               "When the server's registration (licence) file runs out, from /admin/title."),
    MetricSpec("sitewatch_kodeks_info", "The server's registration number and version; always 1.",
               ("registration_number", "version")),
    MetricSpec("sitewatch_kodeks_sessions", "Sessions (connections) in use, from /admin/title."),
    MetricSpec("sitewatch_kodeks_sessions_limit", "Sessions the registration file allows, from /admin/title."),
)


def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: the server's address, without credentials or query."""
    return public_url(options["url"])


def validate(options: dict[str, Any], check_timeout: float, path: str) -> None:
    if bool(options["username"]) != bool(options["password"]):
        raise s.Invalid(s.join(path, "kodeks"), "username and password together, or neither")


# -- the monitoring page ---------------------------------------------------------------------------

_LINE = re.compile(r"^(kserver_main_page|kserver_product_control)\{([^}]*)\}\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class CatalogState:
    path: str
    main_page_problem: bool = False
    product_control_problem: bool = False
    statuses: list[str] = field(default_factory=list)


class PageFormatError(Exception):
    pass


def parse_metrics_page(text: str) -> dict[str, CatalogState]:
    """Reads the ``kserver_*`` lines per catalog; other lines are ignored. 0 means fine, 1 a problem."""
    catalogs: dict[str, CatalogState] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.match(line.strip())
        if not match:
            continue
        metric, labels_text, value_text = match.groups()
        labels = {key: value.replace('\\"', '"').replace("\\\\", "\\") for key, value in _LABEL.findall(labels_text)}
        if "path" not in labels:
            raise PageFormatError(f"line {number} has no path label: {line.strip()[:120]!r}")
        if value_text not in ("0", "1", "0.0", "1.0"):
            raise PageFormatError(f"line {number} has the value {value_text!r} where 0 or 1 was expected")
        catalog = catalogs.setdefault(labels["path"], CatalogState(labels["path"]))
        problem = float(value_text) == 1
        if metric == "kserver_main_page":
            catalog.main_page_problem |= problem
        else:
            catalog.product_control_problem |= problem
        status = labels.get("status")
        if status and status not in catalog.statuses:
            catalog.statuses.append(status)
    if not catalogs:
        raise PageFormatError("no kserver_main_page or kserver_product_control lines")
    return catalogs


# -- the admin title page --------------------------------------------------------------------------

@dataclass
class Registration:
    number: str | None = None
    version: str | None = None
    expiry: float | None = None
    valid_through: str | None = None  # the date as the page writes it
    sessions: int | None = None
    sessions_limit: int | None = None


# `<[^<>]*>`, not `<[^>]+>`: with unclosed tags the latter scans to the end from every "<" (quadratic).
_TAGS = re.compile(r"<[^<>]*>")
_REG_NUMBER = re.compile(r"Регистрационный\s+номер:?\s*([\w./-]+)", re.IGNORECASE)
_VERSION = re.compile(r"Версия:?\s*(\d+(?:\.\d+)+)", re.IGNORECASE)
# Only the registration file's own line: other "до DD.MM.YYYY" dates on the page (support contracts,
# news) are not the licence.
_EXPIRY = re.compile(r"Ограничение\s+рег\w*\.?\s*файла:?[^.\d]{0,40}?до\s+(\d{1,2})\.(\d{1,2})\.(\d{4})",
                     re.IGNORECASE)
_SESSIONS = re.compile(r"Всего\s+соединений\s*\(сессии\):?\s*(\d+)(?:\s*(?:из|/)\s*(\d+))?", re.IGNORECASE)


def page_text(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(_TAGS.sub(" ", markup)))


def parse_admin_title(markup: str, timezone: ZoneInfo | None) -> Registration:
    """Takes what the page shows; what it does not show stays None, with a debug line naming the marker."""
    text = page_text(markup)
    found = Registration()
    if match := _REG_NUMBER.search(text):
        found.number = match.group(1)
    if match := _VERSION.search(text):
        found.version = match.group(1)
    if match := _EXPIRY.search(text):
        day, month, year = (int(part) for part in match.groups())
        try:
            # The file is valid "до" (through) that date: it runs out when the next day begins, site time.
            next_day = date(year, month, day) + timedelta(days=1)
            found.expiry = datetime(next_day.year, next_day.month, next_day.day, tzinfo=timezone).timestamp()
            found.valid_through = f"{day:02d}.{month:02d}.{year}"
        except ValueError:
            log.debug("event=kodeks_title_bad_date date=%s", match.group(0))
    if match := _SESSIONS.search(text):
        found.sessions = int(match.group(1))
        found.sessions_limit = int(match.group(2)) if match.group(2) else None
    for marker, value in (("Регистрационный номер", found.number), ("Версия", found.version),
                          ("Ограничение рег. файла: до", found.expiry), ("Всего соединений (сессии)", found.sessions)):
        if value is None:
            log.debug("event=kodeks_title_marker_missing marker=%r", marker)
    return found


# -- one run ---------------------------------------------------------------------------------------

# One lock per server: two checks of the same server never hold two sessions at once.
_server_locks: dict[str, threading.Lock] = {}
_server_locks_guard = threading.Lock()


def _server_lock(url: str) -> threading.Lock:
    with _server_locks_guard:
        return _server_locks.setdefault(url.lower(), threading.Lock())


@dataclass
class Reading:
    metrics_path: str = ""
    catalogs: dict[str, CatalogState] = field(default_factory=dict)
    maintenance: bool = False
    maintenance_where: str = ""
    main_pages_checked: bool = False
    service_messages: dict[str, str] = field(default_factory=dict)  # catalog -> what the page says
    page_failures: dict[str, HttpFailure] = field(default_factory=dict)  # catalog -> why its page failed
    registration: Registration | None = None
    registration_problem: str | None = None  # why /admin/title gave nothing
    failure: Result | None = None  # the run could not read the server at all


class _Server:
    """The fetches of one run, sharing a cookie jar and one deadline."""

    def __init__(self, options: dict[str, Any], jar: requests.cookies.RequestsCookieJar, deadline: float):
        self.options = options
        self.jar = jar
        self.deadline = deadline
        password = options["password"]
        self.auth = (options["username"], password.reveal()) if password is not None else None
        tls = options["tls"] or {}
        self.verify = tls.get("verify", True)
        self.ca_file = tls.get("ca_file")

    def get(self, path: str) -> HttpResponse:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0.05:
            raise HttpFailure("timeout", f"the check's time ran out before {path} was read")
        return fetch(HttpRequest(
            url=self.options["url"] + path, timeout=remaining, basic_auth=self.auth, verify_tls=self.verify,
            ca_file=self.ca_file, body_size_limit=self.options["body_size_limit"]), cookies=self.jar)


def _markers(options: dict[str, Any], key: str, defaults: list[str]) -> list[re.Pattern[str]]:
    configured = options[key]
    return configured if configured is not None else [re.compile(p) for p in defaults]


def _first_match(patterns: list[re.Pattern[str]], text: str) -> str | None:
    """The sentence around the first marker found, to quote to a person."""
    for pattern in patterns:
        if match := pattern.search(text):
            start = max(text.rfind(".", 0, match.start()), text.rfind(">", 0, match.start())) + 1
            if match.start() - start > 80:  # a long sentence: start on a word near the marker
                start = text.find(" ", match.start() - 80, match.start()) + 1 or match.start()
            end = text.find(".", match.end())
            end = len(text) if end == -1 or end - match.end() > 120 else end + 1
            return text[start:end].strip()
    return None


first_match = _first_match  # public: sitewatch-ingest finds maintenance on uploaded pages with the same markers


def read_server(options: dict[str, Any], jar: requests.cookies.RequestsCookieJar, deadline: float,
                timezone: ZoneInfo | None) -> Reading:
    """Everything one run reads, in order, under the server's lock. Runs on a worker thread."""
    with _server_lock(options["url"]):
        return _read_server(_Server(options, jar, deadline), timezone)


def _read_server(server: _Server, timezone: ZoneInfo | None) -> Reading:
    options = server.options
    maintenance_markers = _markers(options, "maintenance_markers", DEFAULT_MAINTENANCE_MARKERS)
    reading = Reading()
    try:
        response, reading.metrics_path = _metrics_response(server)
    except HttpFailure as failure:
        reading.failure = Result.failed(failure.reason, failure.message)
        return reading
    text = response.text()
    if response.status in (401, 403):
        who = f"user {options['username']!r}" if options["username"] else "no user (set username and password)"
        reading.failure = Result.failed("auth", f"the server refused {reading.metrics_path} to {who} "
                                                f"(HTTP {response.status}): check the monitoring user and password")
        return reading
    if (where := _first_match(maintenance_markers, page_text(text))) is not None:
        reading.maintenance, reading.maintenance_where = True, f"{reading.metrics_path}: {where}"
        return reading
    if response.status != 200:
        reading.failure = Result.failed("status", f"{reading.metrics_path} answered HTTP {response.status} "
                                                  f"{response.reason}")
        return reading
    try:
        reading.catalogs = parse_metrics_page(text)
    except PageFormatError as err:
        content_type = response.headers.get("Content-Type", "no content type")
        reading.failure = Result.failed(
            "parse", f"{reading.metrics_path} is not the server's monitoring page ({err}); got {content_type}, "
                     f"starting {text[:80]!r}")
        return reading
    if options["main_pages"]:
        _read_main_pages(server, reading, maintenance_markers)
    if options["licence"] and not reading.maintenance:
        reading.registration, reading.registration_problem = _read_registration(server, timezone)
    return reading


def _metrics_response(server: _Server) -> tuple[HttpResponse, str]:
    configured = server.options["metrics_path"]
    if configured != "auto":
        return server.get(configured), configured
    response = server.get(SYSMON_PATH)
    if response.status == 404:  # an older server: the sysmon module is not there, sysinfo is
        return server.get(SYSINFO_PATH), SYSINFO_PATH
    return response, SYSMON_PATH


def _read_main_pages(server: _Server, reading: Reading, maintenance_markers: list[re.Pattern[str]]) -> None:
    service_markers = _markers(server.options, "service_message_markers", DEFAULT_SERVICE_MESSAGE_MARKERS)
    reading.main_pages_checked = True
    for path in reading.catalogs:
        try:
            page = server.get(path)
        except HttpFailure as failure:
            reading.page_failures[path] = failure
            continue
        text = page_text(page.text())
        if (where := _first_match(maintenance_markers, text)) is not None:
            reading.maintenance, reading.maintenance_where = True, f"{path}: {where}"
        elif (where := _first_match(service_markers, text)) is not None:
            reading.service_messages[path] = where
        elif page.status >= 400:
            reading.page_failures[path] = HttpFailure("main_page", f"HTTP {page.status} {page.reason}")


def _read_registration(server: _Server, timezone: ZoneInfo | None) -> tuple[Registration | None, str | None]:
    try:
        page = server.get("/admin/title")
    except HttpFailure as failure:
        return None, f"/admin/title could not be read: {failure.message}"
    if page.status != 200:
        return None, f"/admin/title answered HTTP {page.status} (the monitoring user may lack rights to it)"
    return parse_admin_title(page.text(), timezone), None


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    jar = context.memory.setdefault("cookies", requests.cookies.RequestsCookieJar())
    deadline = time.monotonic() + context.timeout * 0.95
    reading = await context.workers.run(read_server, options, jar, deadline, context.timezone)
    if reading.registration_problem != context.memory.get("registration_problem"):
        if reading.registration_problem:  # once per change: the check still passes, but licence figures are gone
            log.warning("event=kodeks_licence_unreadable url=%s problem=%r", options["url"],
                        reading.registration_problem)
        context.memory["registration_problem"] = reading.registration_problem
    return judge(reading)


# The reason a run reports when several things are wrong: the one that explains the most comes first.
_REASON_ORDER = ("maintenance", "timeout", "main_page", "product_control", "service_message")


def judge(reading: Reading) -> Result:
    """Turns what was read into samples and a verdict in words a support engineer can act on."""
    if reading.failure is not None:
        return reading.failure
    samples = [Sample("sitewatch_kodeks_maintenance", 1.0 if reading.maintenance else 0.0)]
    problems: list[tuple[str, str]] = []  # (reason, sentence)
    if reading.maintenance:
        problems.append(("maintenance", f"the server is in maintenance mode ({reading.maintenance_where})"))
    for path, catalog in reading.catalogs.items():
        labels = (("catalog", path),)
        samples.append(Sample("sitewatch_kodeks_main_page_ok", 0.0 if catalog.main_page_problem else 1.0, labels))
        samples.append(Sample("sitewatch_kodeks_product_control_ok",
                              0.0 if catalog.product_control_problem else 1.0, labels))
        samples += [Sample("sitewatch_kodeks_catalog_status_info", 1.0, (("catalog", path), ("status", status)))
                    for status in catalog.statuses]
        statuses = f" (status: {', '.join(catalog.statuses)})" if catalog.statuses else ""
        if catalog.main_page_problem:
            problems.append(("main_page", f"catalog {path}: the main page is not built correctly{statuses}"))
        if catalog.product_control_problem:
            problems.append(("product_control", f"catalog {path}: the bundle (комплект) control reports a problem, "
                                                f"check the set of databases{statuses}"))
        if reading.main_pages_checked:
            samples.append(Sample("sitewatch_kodeks_service_message",
                                  1.0 if path in reading.service_messages else 0.0, labels))
    for path, where in reading.service_messages.items():
        problems.append(("service_message", f"catalog {path}: the main page shows a service message: {where!r}"))
    for path, failure in reading.page_failures.items():
        reason = "timeout" if failure.reason == "timeout" else "main_page"
        problems.append((reason, f"catalog {path}: the main page could not be opened: {failure.message}"))
    problems.sort(key=lambda problem: _REASON_ORDER.index(problem[0]))  # stable: catalogs keep their order
    figures = [f"{len(reading.catalogs)} catalog(s) via {reading.metrics_path}"] if reading.catalogs else []
    registration = reading.registration
    if registration is not None:
        samples += _registration_samples(registration, figures)
    if not problems:
        return Result(True, figures=", ".join(figures), samples=samples)
    reason = problems[0][0]
    # One line per problem: the one-shot table lists them under the check, the log joins them.
    return Result.failed(reason, "\n".join(sentence for _, sentence in problems), ", ".join(figures), samples)


def _registration_samples(registration: Registration, figures: list[str]) -> list[Sample]:
    samples = []
    if registration.expiry is not None:
        samples.append(Sample("sitewatch_kodeks_licence_expiry_timestamp_seconds", registration.expiry))
        figures.append(f"licence until {registration.valid_through}")
    if registration.number or registration.version:
        samples.append(Sample("sitewatch_kodeks_info", 1.0, (("registration_number", registration.number or ""),
                                                             ("version", registration.version or ""))))
    if registration.sessions is not None:
        samples.append(Sample("sitewatch_kodeks_sessions", float(registration.sessions)))
        limit = ""
        if registration.sessions_limit is not None:
            samples.append(Sample("sitewatch_kodeks_sessions_limit", float(registration.sessions_limit)))
            limit = f"/{registration.sessions_limit}"
        figures.append(f"sessions {registration.sessions}{limit}")
    return samples
