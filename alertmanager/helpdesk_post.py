"""One request to a route's helpdesk: where it goes, what it carries, and what the answer means.

A `Destination` is a route's helpdesk, its URL checked when the receiver starts. Its URL is a secret (a
Bitrix24 webhook's holds its code): it is only ever used, never shown; the log names the host. `post`
sends one item and sums the answer up as an `Answer`: taken, refused (given up at once), or worth a retry
(no connection, no answer in time, 5xx, 408, 429; Retry-After read as seconds or as an HTTP date).

A request never takes longer than twice the helpdesk's timeout, however slowly the helpdesk trickles its
answer (helpdesk_deadline.py), and the caller may cut it short.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import timezone, tzinfo
from html.parser import HTMLParser
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import requests

from alertmanager import maintenance
from alertmanager.config import Helpdesk, ReceiverConfig, Route
from alertmanager.helpdesk_body import bitrix24_body, delivery_id, generic_body
from alertmanager.helpdesk_deadline import Deadline
from alertmanager.render import shorten
from alertmanager.telegram import network_reason
from alertmanager.workitem import WorkItem
from exporter import __version__, redaction
from exporter.config import ConfigError
from exporter.config.yamlfile import YamlError, read_text
from exporter.config.yamllines import Lines

# Bitrix24 takes two requests a second from a portal (its REST limits); a generic helpdesk gets them as
# fast as it answers.
MIN_INTERVAL = {"bitrix24": 0.5, "generic": 0.0}
RETRY_AFTER_MOST = 3600.0
DETAIL_LIMIT = 300  # of a refusal's answer in the log
QUERY_SECRET_LENGTH = 8  # a query value this long may be a key: kept out of the log
ANSWER_READ = 64 * 1024  # of an answer's body: enough for any REST answer, and nothing of a flood
REQUEST_RESULTS = ("ok", "rejected", "server_error", "rate_limited", "timeout", "network")
RETRIED = frozenset({"server_error", "rate_limited", "timeout", "network"})
_CREDENTIALS = ("the helpdesk refused the credentials: check routes.{route}.helpdesk.url (a Bitrix24 webhook's "
                "code) and bearer_token, and that a Bitrix24 webhook has the tasks scope")
REFUSAL_HINTS = {
    401: _CREDENTIALS,
    403: _CREDENTIALS,
    404: "nothing answers at that address: check routes.{route}.helpdesk.url",
    "redirect": "the helpdesk answered with a redirect, which is not followed: put the final address "
                "(https://...) in routes.{route}.helpdesk.url",
    "rejected": "the helpdesk refused the item itself; see the detail",
    "not_bitrix24": "the answer is not Bitrix24's REST answer, so no task was made: check that "
                    "routes.{route}.helpdesk.url is the incoming webhook's address as Bitrix24 shows it "
                    "(https://<portal>/rest/<user>/<code>/)",
}


@dataclass(frozen=True)
class Answer:
    """What one post came to: a result for the metrics, an HTTP status (0: none), a cause for the log."""

    result: str  # one of REQUEST_RESULTS
    status: int = 0
    cause: str = ""
    retry_after: float | None = None
    hint: str = ""  # for a refusal: what to check


class Destination:
    """A route's helpdesk: where and how its items are posted. The URL is only ever used, never shown."""

    def __init__(self, route: Route, helpdesk: Helpdesk, zone: tzinfo):
        self.route = route.name
        self.helpdesk = helpdesk
        self.zone = zone
        url = helpdesk.url.reveal().strip()
        self.url = bitrix24_endpoint(url) if helpdesk.format == "bitrix24" else url
        self.host = _host(urlsplit(self.url))  # what the log names: never the path
        self.responsible_id = helpdesk.responsible_id if helpdesk.responsible_id is not None else webhook_user(url)
        self.min_interval = MIN_INTERVAL.get(helpdesk.format, 0.0)
        # The whole URL is a secret (the config registered its text); so are its path, which the HTTP
        # library's debug lines show on their own, and the secret parts an answer may echo alone.
        for secret in (self.url, url, _path_of(self.url), _path_of(url), *_secret_parts(url)):
            redaction.register(secret)

    def body(self, item: WorkItem, created_at: float) -> bytes:
        if self.helpdesk.format == "bitrix24":
            document = bitrix24_body(self.route, item, self.zone, created_at, self.responsible_id)
        else:
            document = generic_body(self.route, item, self.zone, created_at)
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def headers(self, item: WorkItem) -> dict[str, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "Accept": "application/json",
                   "User-Agent": f"sitewatch-receiver/{__version__}",
                   "Idempotency-Key": delivery_id(self.route, item)}
        if self.helpdesk.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.helpdesk.bearer_token.reveal()}"
        return headers

    def post(self, session: requests.Session, item: WorkItem, created_at: float,
             cancel: threading.Event | None = None) -> Answer:
        """Posts one item with a session from helpdesk_deadline.session(); setting `cancel` cuts the
        request short."""
        timeout = self.helpdesk.timeout
        with Deadline(2 * timeout, cancel) as deadline:
            try:
                response = session.post(self.url, data=self.body(item, created_at), headers=self.headers(item),
                                        timeout=(timeout, timeout), allow_redirects=False, stream=True)
                with response:
                    answer = self._read(response)
            except requests.ConnectTimeout:  # nothing was sent
                answer = Answer("network", cause=f"no connection within {timeout:g}s")
            except requests.Timeout:  # sent: the helpdesk may have taken it (docs/helpdesk.md#the-id)
                answer = Answer("timeout", cause=f"no answer within {timeout:g}s")
            except requests.RequestException as err:
                answer = Answer("network", cause=self.scrub(network_reason(err)))
        if deadline.cut:  # whatever was read of the answer, it was not the whole of it
            cause = "stopped while waiting for the answer" if deadline.cancelled \
                else f"no whole answer within {2 * timeout:g}s"
            return Answer("timeout", cause=cause)
        return answer

    def _read(self, response: requests.Response) -> Answer:
        status = response.status_code
        bitrix24 = self.helpdesk.format == "bitrix24"
        if 200 <= status < 300 and not bitrix24:
            return Answer("ok", status)  # any 2xx is taken: what else it says is not needed
        document, text = self._said(response)
        error = _rest_error(document)
        if 200 <= status < 300:
            # Bitrix24 may say a REST error with 200; and an answer without a result (a login page, say)
            # made no task.
            if error:
                return Answer("rejected", status, self._short(error), hint=self._hint("rejected"))
            if isinstance(document, dict) and document.get("result"):
                return Answer("ok", status)
            return Answer("rejected", status, f"HTTP {status}, not a Bitrix24 answer" + (f": {text}" if text else ""),
                          hint=self._hint("not_bitrix24"))
        detail = self._short(error) if error else text
        cause = f"HTTP {status}" + (f": {detail}" if detail else "")
        if 300 <= status < 400:
            cause = f"HTTP {status} to {self._where(response.headers.get('Location'))}, not followed"
            return Answer("rejected", status, cause, hint=self._hint("redirect"))
        if status >= 500 or status in (408, 429):  # Bitrix24 says QUERY_LIMIT_EXCEEDED with 503
            return Answer("rate_limited" if status == 429 else "server_error", status, cause,
                          retry_after(response.headers.get("Retry-After")))
        return Answer("rejected", status, cause, hint=self._hint(status if status in REFUSAL_HINTS else "rejected"))

    def _said(self, response: requests.Response) -> tuple[Any, str]:
        """(the answer's JSON, or None; its text in short, free of the URL's secret: an HTML page by its
        title)."""
        body = b""
        try:
            for piece in response.iter_content(ANSWER_READ):
                body += piece
                if len(body) >= ANSWER_READ:
                    break
        except requests.RequestException:
            pass  # what came is what there is
        text = body[:ANSWER_READ].decode("utf-8", "replace")
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if document is None and ("html" in response.headers.get("Content-Type", "") or text.lstrip()[:1] == "<"):
            text = _page_text(text)
        return document, self._short(text)

    def _short(self, text: str) -> str:
        return shorten(self.scrub(" ".join(text.split())), DETAIL_LIMIT)

    def _where(self, location: str | None) -> str:
        """Where a redirect points, without the path (which may carry the webhook's code)."""
        if not location:
            return "nowhere"
        parts = urlsplit(urljoin(self.url, location.strip()))
        return self.scrub(f"{parts.scheme}://{_host(parts)}")

    def _hint(self, key: Any) -> str:
        return REFUSAL_HINTS[key].format(route=self.route)

    def scrub(self, text: str) -> str:
        text = text.replace(self.url, self.host).replace(self.helpdesk.url.reveal(), self.host)
        return redaction.redact(text)


def destinations(config: ReceiverConfig) -> dict[str, Destination]:
    """The helpdesks of the config's routes, by route; ConfigError for a URL or token no request can use."""
    return {name: Destination(route, route.helpdesk, _zone(config, route))
            for name, route in config.routes.items()
            if route.helpdesk is not None and _checked(config, name, route.helpdesk)}


def bitrix24_endpoint(url: str) -> str:
    """The tasks.task.add address of a Bitrix24 incoming webhook, given either the webhook's own URL (as
    Bitrix24 shows it: https://portal/rest/1/code/) or the method's."""
    parts = urlsplit(url)
    if re.search(r"/tasks\.task\.add(\.json)?$", parts.path):
        return url
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/tasks.task.add.json"))


def webhook_user(url: str) -> int | None:
    """The user a Bitrix24 incoming webhook acts as (/rest/<user>/<code>/): its tasks go to that user
    unless responsible_id says otherwise."""
    match = re.search(r"/rest/(\d+)/[^/]+", urlsplit(url).path)
    return int(match.group(1)) if match else None


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now, from 0 to an hour: a number, or an HTTP date (always GMT, even
    when written without a zone); None for anything else."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = moment.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_MOST) if math.isfinite(seconds) else None


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _secret_parts(url: str) -> list[str]:
    """The parts of a URL an answer may echo alone that are secrets: a Bitrix24 webhook's code, a
    password, and a query's values long enough to be keys (masked everywhere in the log, "json" would not
    be a secret worth hiding every word of)."""
    parts = urlsplit(url)
    found = [value for _, value in parse_qsl(parts.query) if len(value) >= QUERY_SECRET_LENGTH]
    code = re.search(r"/rest/\d+/([^/]+)", parts.path)
    if code:
        found.append(code.group(1))
    if parts.password:
        found.append(parts.password)
    return found


def _host(parts) -> str:
    """host[:port] of a split URL, an IPv6 address in brackets."""
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return host + (f":{parts.port}" if _port_is_valid(parts) and parts.port else "")


def _port_is_valid(parts) -> bool:
    try:
        parts.port
        return True
    except ValueError:  # out of range, or not a number
        return False


def _rest_error(document: Any) -> str:
    """A REST error's code and text ({"error": ..., "error_description": ...}), or ""."""
    if not isinstance(document, dict) or not document.get("error"):
        return ""
    description = document.get("error_description")
    return f"{document['error']}: {description}" if description else str(document["error"])


def _page_text(page: str) -> str:
    """An HTML page in words: its title, or else its text (a maintenance page's markup says nothing)."""
    reader = _PageReader()
    try:
        reader.feed(page)
        reader.close()
    except AssertionError:  # markup the parser gives up on: what it read so far
        pass
    title = " ".join(reader.title)
    return title if title.strip() else " ".join(reader.text)


class _PageReader(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.text: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("title", "script", "style"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._in:
            del self._in[self._in.index(tag):]

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title.append(data)
        elif not self._in:
            self.text.append(data)


def _zone(config: ReceiverConfig, route: Route) -> tzinfo:
    return route.timezone or config.timezone or maintenance.DEFAULT_ZONE


def _checked(config: ReceiverConfig, name: str, helpdesk: Helpdesk) -> bool:
    """True for an http(s) URL with a host and a port that can be, and a bearer token an HTTP header can
    carry; ConfigError naming the file, line and path otherwise (never the value: it is a secret)."""
    parts = urlsplit(helpdesk.url.reveal().strip())
    if not (parts.scheme in ("http", "https") and parts.hostname and _port_is_valid(parts)):
        example = ("https://<portal>.bitrix24.ru/rest/<user>/<code>/" if helpdesk.format == "bitrix24"
                   else "https://helpdesk.example.ru/hooks/sitewatch")
        _refuse(config, f"routes.{name}.helpdesk.url", f"an http:// or https:// URL such as {example}", helpdesk.url)
    token = helpdesk.bearer_token
    if token is not None and not re.fullmatch(r"[\x21-\x7e]+", token.reveal()):
        # An HTTP header carries Latin-1 at most; a letter pasted from another alphabet would fail each post.
        _refuse(config, f"routes.{name}.helpdesk.bearer_token", "a token of printable ASCII characters, without "
                "spaces", token)
    return True


def _refuse(config: ReceiverConfig, path: str, expected: str, secret) -> NoReturn:
    try:
        line = Lines(read_text(config.source)).of(path)
    except (OSError, YamlError):
        line = None
    raise ConfigError(config.source, f"{path}: expected {expected} (read from {secret.describe_source()})",
                      line=line)
