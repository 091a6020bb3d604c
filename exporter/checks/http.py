"""The ``http`` check ("main page"): status code, body markers, response time and certificate expiry.

``must_contain`` catches a page that answers 200 but is not the real page (a proxy's or a web server's
default page); ``must_not_contain`` catches an error banner or a maintenance notice on a 200 page.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from exporter import schema as s
from exporter.checks.base import CheckContext, MetricSpec, Result, Sample
from exporter.httpclient import TLS_OPTIONS, HttpFailure, HttpRequest, HttpResponse, public_url
from exporter.secrets import SecretValue

NAME = "http"


def _url(value: Any, path: str) -> str:
    text = s.string(what="an http:// or https:// URL")(value, path)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise s.Invalid(path, "an http:// or https:// URL with a host", value)
    if parts.password:
        raise s.Invalid(path, "a URL without a password in it (use basic_auth with a secret)", "a URL with a password")
    return text


def _status_codes(value: Any, path: str) -> list[tuple[int, int]]:
    """Codes as 200, "2xx" or "200-399"; kept as inclusive ranges."""
    items = value if isinstance(value, list) else [value]
    expected = "HTTP status codes such as 200, \"2xx\" or \"200-399\""
    ranges = []
    for index, item in enumerate(items):
        where = s.join(path, index) if isinstance(value, list) else path
        text = str(item) if isinstance(item, (int, str)) and not isinstance(item, bool) else ""
        if re.fullmatch(r"[1-5]\d\d", text):
            ranges.append((int(text), int(text)))
        elif re.fullmatch(r"[1-5]xx", text, re.IGNORECASE):
            ranges.append((int(text[0]) * 100, int(text[0]) * 100 + 99))
        elif (match := re.fullmatch(r"([1-5]\d\d)\s*-\s*([1-5]\d\d)", text)) and match[1] <= match[2]:
            ranges.append((int(match[1]), int(match[2])))
        else:
            raise s.Invalid(where, expected, item)
    return ranges


OPTIONS = s.struct({
    "url": s.Field(_url, required=True),
    "method": s.Field(s.choice("GET", "HEAD", "POST", "PUT", "OPTIONS"), default="GET"),
    "valid_status_codes": s.Field(_status_codes, default=[(200, 299)]),
    "must_contain": s.Field(s.one_or_list_of(s.regex()), default=[]),
    "must_not_contain": s.Field(s.one_or_list_of(s.regex()), default=[]),
    # a banner such as "режим обслуживания": planned work, not a broken page (reason maintenance)
    "maintenance_text": s.Field(s.one_or_list_of(s.regex()), default=[]),
    "max_duration": s.Field(s.duration(minimum=0.001)),
    "follow_redirects": s.Field(s.boolean(), default=True),
    "max_redirects": s.Field(s.integer(0, 50), default=10),
    "basic_auth": s.Field(s.struct({
        "username": s.Field(s.string(), required=True),
        "password": s.Field(s.secret(), required=True),
    })),
    "headers": s.Field(s.mapping_of(s.string(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", "an HTTP header name"),
                                    s.text_or_secret()), default={}),
    "body": s.Field(s.string(what="the request body to send (text)")),
    "tls": TLS_OPTIONS,
    "body_size_limit": s.Field(s.size(minimum=1), default=10 * 1024 * 1024),
})
METRICS = (
    MetricSpec("sitewatch_http_status_code", "HTTP status of the latest response (0 when none came)."),
    MetricSpec("sitewatch_http_duration_seconds", "Whole request time of the latest run, body included."),
    MetricSpec("sitewatch_tls_cert_expiry_timestamp_seconds",
               "When the earliest-expiring certificate the server sent runs out (unix time)."),
)


def target(options: dict[str, Any]) -> str:
    """What the check looks at, for people: the URL without credentials, query or fragment."""
    return public_url(options["url"])


def build_request(options: dict[str, Any], timeout: float) -> HttpRequest:
    auth = options["basic_auth"]
    tls = options["tls"] or {}
    return HttpRequest(
        url=options["url"], timeout=timeout, method=options["method"],
        headers=tuple((name, value.reveal() if isinstance(value, SecretValue) else value)
                      for name, value in options["headers"].items()),
        body=options["body"].encode("utf-8") if options["body"] else None,
        basic_auth=(auth["username"], auth["password"].reveal()) if auth else None,
        verify_tls=tls.get("verify", True), ca_file=tls.get("ca_file"),
        follow_redirects=options["follow_redirects"], max_redirects=options["max_redirects"],
        body_size_limit=options["body_size_limit"],
    )


def _describe_codes(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


async def run(options: dict[str, Any], context: CheckContext) -> Result:
    # Leave a little of the check's timeout so the client reports its own, more precise, timeout.
    request = build_request(options, max(0.05, context.timeout * 0.95))
    try:
        response = await context.http.fetch(request)
    except HttpFailure as failure:
        return Result.failed(failure.reason, failure.message, samples=[Sample("sitewatch_http_status_code", 0)])
    samples = [
        Sample("sitewatch_http_status_code", response.status),
        Sample("sitewatch_http_duration_seconds", response.elapsed),
    ]
    figures = f"HTTP {response.status} in {response.elapsed * 1000:.0f} ms, {len(response.body)} bytes"
    if response.cert_expiry is not None:
        samples.append(Sample("sitewatch_tls_cert_expiry_timestamp_seconds", response.cert_expiry))
        until = datetime.fromtimestamp(response.cert_expiry, timezone.utc).strftime("%Y-%m-%d")
        figures += f", certificate until {until}"
    return _judge(options, response, samples, figures)


def _judge(options: dict[str, Any], response: HttpResponse, samples: list[Sample], figures: str) -> Result:
    status = response.status
    # first of all: a maintenance page is often served as 503, and is planned work all the same
    for pattern in options["maintenance_text"]:
        if match := pattern.search(response.text()):
            return Result.failed("maintenance", f"the page shows maintenance: {match.group(0)[:80]!r}", figures,
                                 samples)
    if not any(low <= status <= high for low, high in options["valid_status_codes"]):
        reason = "auth" if status in (401, 403) else "status"
        hint = {401: " (wrong or missing credentials)", 403: " (access denied for this user)",
                404: " (wrong address or path?)", 503: " (the service is unavailable or in maintenance)"}
        return Result.failed(
            reason,
            f"HTTP {status} {response.reason} from {response.url}{hint.get(status, '')}; "
            f"expected {_describe_codes(options['valid_status_codes'])}",
            figures, samples)
    max_duration = options["max_duration"]
    if max_duration is not None and response.elapsed > max_duration:
        return Result.failed("slow", f"the page took {response.elapsed:.2f}s, more than the {max_duration:g}s "
                                     "allowed (max_duration)", figures, samples)
    if options["must_contain"] or options["must_not_contain"]:
        text = response.text()
        for pattern in options["must_contain"]:
            if not pattern.search(text):
                return Result.failed("body", f"the page does not contain /{pattern.pattern}/", figures, samples)
        for pattern in options["must_not_contain"]:
            if match := pattern.search(text):
                found = match.group(0)[:80]
                return Result.failed("body", f"the page contains /{pattern.pattern}/: {found!r}", figures, samples)
    return Result(True, figures=figures, samples=samples)
