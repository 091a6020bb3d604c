"""A small client for Prometheus's HTTP query API: instant queries, their samples, and why one failed.

`instant_query` POSTs the expression as a form to /api/v1/query (long expressions do not fit a URL), at
a given time, with a timeout Prometheus also applies to its own evaluation. Whatever goes wrong becomes a
PrometheusError whose text says what happened in a sentence fit for a log: unreachable, no answer in
time (the client's, or Prometheus's own evaluation timeout), not ready (HTTP 503 while it starts and
replays its log, or a proxy's 502/504), another HTTP status, Prometheus's own error (its errorType and
error), or an answer that is not the JSON of the query API. An answer that comes with `warnings` (data
Prometheus could only partly read) is used, and the warnings are kept with it for the caller to log.
URLs in these texts go through the code base's redaction, so a password written into the URL
(http://user:password@host:9090) never reaches a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import requests

from exporter.redaction import redact

DETAIL_LIMIT = 300  # characters of an unexpected answer quoted in an error
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\"\']+)")
NOT_READY = frozenset({502, 503, 504})  # Prometheus starting (503), or a proxy before it finding none


class PrometheusError(Exception):
    """The query got no usable answer. str() says why (English, log-safe); `cause` is one of
    unreachable, timeout, unavailable (not ready: HTTP 502/503/504), http, refused (Prometheus's own
    error), invalid (not the API's JSON)."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (or a scalar, with no labels): its labels and value."""

    labels: dict[str, str]
    value: float


class Vector(list[Sample]):
    """The samples of an answer, with the warnings Prometheus gave with it (partial data)."""

    def __init__(self, samples: list[Sample], warnings: tuple[str, ...] = ()):
        super().__init__(samples)
        self.warnings = warnings


def instant_query(base_url: str, expr: str, at: float | None = None, timeout: float = 30.0,
                  session: requests.Session | None = None) -> Vector:
    """Evaluates `expr` at unix time `at` (Prometheus's now when None); raises PrometheusError."""
    url = base_url.rstrip("/") + "/api/v1/query"
    # Seconds as a plain number: Prometheus reads "2.5" but refuses "2.5s" (its durations are whole units)
    form = {"query": expr, "timeout": f"{max(timeout, 0.001):.3f}"}
    if at is not None:
        form["time"] = f"{at:.3f}"
    where = f"Prometheus at {redact(base_url)}"
    try:
        response = (session or requests).post(url, data=form, timeout=timeout)
    except requests.Timeout:
        raise PrometheusError(f"{where} did not answer within {timeout:g} s", "timeout") from None
    except requests.RequestException as err:
        raise PrometheusError(f"{where} cannot be reached: {_connection_problem(err)}", "unreachable") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("status") == "error":
        kind = answer.get("errorType") or "error"
        if kind == "timeout":  # its own evaluation ran out of the time given
            raise PrometheusError(f"{where} gave up the query after {timeout:g} s (HTTP {response.status_code}): "
                                  f"{_quote(str(answer.get('error', '')))}", "timeout")
        raise PrometheusError(f"{where} refused the query ({kind}, HTTP {response.status_code}): "
                              f"{_quote(str(answer.get('error', '')))}", "refused")
    if response.status_code in NOT_READY:
        raise PrometheusError(f"{where} is not ready: HTTP {response.status_code} {response.reason or ''}".rstrip()
                              + f": {_quote(response.text)}", "unavailable")
    if response.status_code != 200:
        raise PrometheusError(f"{where} answered HTTP {response.status_code} {response.reason or ''}".rstrip()
                              + f": {_quote(response.text)}", "http")
    if not isinstance(answer, dict) or answer.get("status") != "success" or not isinstance(answer.get("data"), dict):
        raise PrometheusError(f"{where} answered with something that is not the query API's JSON: "
                              f"{_quote(response.text)}", "invalid")
    try:
        return Vector(_samples(answer["data"]), _warnings(answer))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise PrometheusError(f"{where} answered with a result this client cannot read ({err}): "
                              f"{_quote(response.text)}", "invalid") from None


def _samples(data: dict[str, Any]) -> list[Sample]:
    kind, result = data["resultType"], data["result"]
    if kind == "vector":
        return [Sample({str(k): str(v) for k, v in item["metric"].items()}, _number(item["value"][1]))
                for item in result]
    if kind == "scalar":
        return [Sample({}, _number(result[1]))]
    raise ValueError(f"a {kind} result, where an instant vector was expected")


def _warnings(answer: dict[str, Any]) -> tuple[str, ...]:
    warnings = answer.get("warnings")
    return tuple(_quote(str(warning)) for warning in warnings) if isinstance(warnings, list) else ()


def _number(text: Any) -> float:
    return float(text)  # Prometheus writes values as strings, "NaN" and "+Inf" among them; float() reads all


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > DETAIL_LIMIT:
        flat = flat[:DETAIL_LIMIT] + "…"
    return redact(flat) or "(empty)"


def _connection_problem(err: requests.RequestException) -> str:
    """The reason of a failed connection in a few words ("Connection refused"), without the pool's wording."""
    text = str(err)
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(1).rstrip(")\"' ")
    if "Failed to resolve" in text or "NameResolution" in text:
        return "the host name does not resolve"
    return type(err).__name__
