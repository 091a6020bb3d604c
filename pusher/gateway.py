"""Talks to a Prometheus Pushgateway: PUT a site's group (vanished series go), DELETE it, with retries.

Transport failures and 5xx are retried with exponential backoff and jitter inside a time budget; a 4xx
is the Pushgateway's verdict on this push and is reported at once with its own words.
"""

from __future__ import annotations

import base64
import gzip
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from exporter.httpclient import HttpFailure, HttpRequest, HttpResponse, fetch

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class PushOutcome:
    ok: bool
    attempts: int
    elapsed: float
    reason: str = ""  # dns, refused, timeout, tls, auth, rejected, status ...
    message: str = ""


def group_path(job: str, site: str) -> str:
    """`/metrics/job/<job>/site/<id>`; values with a `/` go base64-encoded, as the Pushgateway expects."""
    def part(name: str, value: str) -> str:
        if "/" in value or not value:
            encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
            return f"/{name}@base64/{encoded}"
        return f"/{name}/{quote(value, safe='')}"

    return "/metrics" + part("job", job) + part("site", site)


class Gateway:
    def __init__(self, settings: dict[str, Any]):
        self.url = settings["gateway"]
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

    def push(self, site: str, exposition: bytes, budget: float) -> PushOutcome:
        body = gzip.compress(exposition)
        headers = self.headers + (("Content-Type", CONTENT_TYPE), ("Content-Encoding", "gzip"))
        return self._send("PUT", site, body, headers, budget)

    def delete(self, site: str, budget: float) -> PushOutcome:
        return self._send("DELETE", site, None, self.headers, budget)

    def _send(self, method: str, site: str, body: bytes | None, headers: tuple[tuple[str, str], ...],
              budget: float) -> PushOutcome:
        started = time.monotonic()
        deadline = started + budget
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            timeout = max(0.2, min(self.timeout, deadline - time.monotonic()))
            outcome = self._attempt(method, site, body, headers, timeout)
            outcome.attempts, outcome.elapsed = attempt, time.monotonic() - started
            if outcome.ok or not _worth_retrying(outcome):
                return outcome
            pause = delay * random.uniform(0.8, 1.2)  # jitter: a fleet back from an outage does not stampede
            if time.monotonic() + pause + 0.2 >= deadline:
                return outcome
            time.sleep(pause)
            delay = min(delay * 2, 30.0)

    def _attempt(self, method: str, site: str, body: bytes | None, headers: tuple[tuple[str, str], ...],
                 timeout: float) -> PushOutcome:
        request = HttpRequest(url=self.url + group_path(self.job, site), timeout=timeout, method=method,
                              headers=headers, basic_auth=self.basic_auth, verify_tls=self.verify_tls,
                              ca_file=self.ca_file, body=body, proxy=self.proxy, follow_redirects=False,
                              body_size_limit=64 * 1024)
        try:
            response = fetch(request)
        except HttpFailure as failure:
            return PushOutcome(False, 0, 0.0, failure.reason, failure.message)
        return _judge(response)


def _judge(response: HttpResponse) -> PushOutcome:
    if response.status in (200, 202):
        return PushOutcome(True, 0, 0.0)
    said = " ".join(response.text().split())[:1000]  # its reason comes last, after a dump of the series
    if response.status in (401, 403):
        return PushOutcome(False, 0, 0.0, "auth", f"the Pushgateway refused the credentials (HTTP {response.status})")
    if response.status == 400:
        return PushOutcome(False, 0, 0.0, "rejected", f"the Pushgateway rejected the push (HTTP 400): {said}")
    return PushOutcome(False, 0, 0.0, "status", f"the Pushgateway answered HTTP {response.status} "
                                                f"{response.reason}: {said}")


def _worth_retrying(outcome: PushOutcome) -> bool:
    if outcome.reason in ("auth", "rejected", "tls"):
        return False
    return outcome.reason != "status" or outcome.message.startswith("the Pushgateway answered HTTP 5")
