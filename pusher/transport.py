"""What both destinations of a push share: credentials, TLS and proxy from the ``push:`` section, retries
with backoff inside a time budget, and the server's clock read from each answer's ``Date`` header.

Transport failures and 5xx are retried with exponential backoff and jitter; a 4xx is the server's verdict
on this push and is reported at once in its own words.
"""

from __future__ import annotations

import gzip
import random
import time
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

from exporter.httpclient import HttpFailure, HttpRequest, HttpResponse, fetch

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The Date header has whole seconds: a smaller difference says nothing about the site's clock.
CLOCK_RESOLUTION = 2.0
# A till's clock can be a year off (a flat CMOS battery); a Date further off than that is not a clock.
MAX_CLOCK_OFFSET = 400 * 86400


@dataclass
class PushOutcome:
    ok: bool
    attempts: int
    elapsed: float
    reason: str = ""  # dns, refused, timeout, tls, auth, rejected, status ...
    message: str = ""


class Transport:
    """One destination's HTTP side. `server` names it in messages ("the Pushgateway")."""

    server = "the server"

    def __init__(self, settings: dict[str, Any], url: str):
        self.url = url
        self.job = settings["job"]
        self.timeout = settings["timeout"]
        auth = settings.get("basic_auth")
        self.basic_auth = (auth["username"], auth["password"].reveal()) if auth else None
        token = settings.get("bearer_token")
        self.headers: tuple[tuple[str, str], ...] = (("Authorization", f"Bearer {token.reveal()}"),) if token else ()
        tls = settings.get("tls") or {}
        self.verify_tls = tls.get("verify", True)
        self.ca_file = tls.get("ca_file")
        self.proxy = settings.get("proxy")
        # Seconds to add to this machine's clock to get the server's, from the last answer; None until one.
        self.clock_offset: float | None = None

    method = "POST"

    def push_url(self, site: str) -> str:
        raise NotImplementedError

    def push(self, site: str, exposition: bytes, budget: float) -> PushOutcome:
        """Sends one site's exposition, gzip-compressed, retrying within `budget` seconds."""
        headers = (("Content-Type", CONTENT_TYPE), ("Content-Encoding", "gzip"))
        return self.send(self.method, self.push_url(site), gzip.compress(exposition), headers, budget)

    def now(self) -> float:
        """The time to stamp a push with: the server's clock where an answer has told it."""
        offset = self.clock_offset or 0.0
        return time.time() + (offset if abs(offset) >= CLOCK_RESOLUTION else 0.0)

    def send(self, method: str, url: str, body: bytes | None, headers: tuple[tuple[str, str], ...],
             budget: float) -> PushOutcome:
        started = time.monotonic()
        deadline = started + budget
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            timeout = max(0.2, min(self.timeout, deadline - time.monotonic()))
            outcome = self._attempt(method, url, body, headers, timeout)
            outcome.attempts, outcome.elapsed = attempt, time.monotonic() - started
            if outcome.ok or not _worth_retrying(outcome, self.server):
                return outcome
            pause = delay * random.uniform(0.8, 1.2)  # jitter: a fleet back from an outage does not stampede
            if time.monotonic() + pause + 0.2 >= deadline:
                return outcome
            time.sleep(pause)
            delay = min(delay * 2, 30.0)

    def _attempt(self, method: str, url: str, body: bytes | None, headers: tuple[tuple[str, str], ...],
                 timeout: float) -> PushOutcome:
        request = HttpRequest(url=url, timeout=timeout, method=method, headers=self.headers + headers,
                              basic_auth=self.basic_auth, verify_tls=self.verify_tls, ca_file=self.ca_file,
                              body=body, proxy=self.proxy, follow_redirects=False, body_size_limit=64 * 1024)
        sent = time.time()
        try:
            response = fetch(request)
        except HttpFailure as failure:
            return PushOutcome(False, 0, 0.0, failure.reason, failure.message)
        self._read_clock(response, sent, time.time())
        return self.judge(response)

    def _read_clock(self, response: HttpResponse, sent: float, received: float) -> None:
        # Only an accepting answer is the server's own: a proxy's or a balancer's error page has its clock.
        if not 200 <= response.status < 300:
            return
        date = next((value for name, value in response.headers.items() if name.lower() == "date"), None)
        if not date:
            return
        try:
            moment = parsedate_to_datetime(date)
            if moment.tzinfo is None:  # asctime and "-0000" forms: HTTP dates are GMT all the same
                moment = moment.replace(tzinfo=timezone.utc)
            server_time = moment.timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if abs(server_time - received) > MAX_CLOCK_OFFSET:
            return  # a date like 31 Dec 9999 says nothing about the time
        # The header is truncated to the second: compare it with the middle of the exchange, plus half a second.
        self.clock_offset = server_time + 0.5 - (sent + received) / 2

    def judge(self, response: HttpResponse) -> PushOutcome:
        if 200 <= response.status < 300:
            return PushOutcome(True, 0, 0.0)
        said = " ".join(response.text().split())[:1000]  # a Pushgateway's reason comes after a dump of series
        if response.status in (401, 403):
            return PushOutcome(False, 0, 0.0, "auth",
                               f"{self.server} refused the credentials (HTTP {response.status})")
        if response.status in (400, 413, 422):
            return PushOutcome(False, 0, 0.0, "rejected",
                               f"{self.server} rejected the push (HTTP {response.status}): {said}")
        return PushOutcome(False, 0, 0.0, "status", f"{self.server} answered HTTP {response.status} "
                                                    f"{response.reason}: {said}")


def _worth_retrying(outcome: PushOutcome, server: str) -> bool:
    if outcome.reason in ("auth", "rejected", "tls"):
        return False
    return outcome.reason != "status" or outcome.message.startswith(f"{server} answered HTTP 5")
