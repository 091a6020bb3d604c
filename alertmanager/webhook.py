"""Alertmanager's webhook payload (version 4), read strictly: a `Notification` or a `PayloadError`.

Every field the receiver relies on is checked, and a problem names the field's path inside the JSON
(``alerts[3].labels.site``), so the answer tells whoever wrote the payload exactly what to fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# Alertmanager writes this for a firing alert's endsAt: "no end yet".
_ZERO_TIME_PREFIX = "0001-01-01"
# \uD800 to \uDFFF as JSON escapes; a raw one cannot get past the strict UTF-8 decoding.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)
# truncatedAlerts is stored as a SQLite integer; a real count is far below this.
_MOST_ALERTS = 2**31 - 1


class PayloadError(Exception):
    """The body is not a usable webhook payload; `reason` is a short token for metrics."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Alert:
    status: str  # "firing" or "resolved": the per-alert status is the one to act on
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str
    fingerprint: str

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def to_json(self) -> str:
        """The alert as the outbox keeps it until its message is composed."""
        return json.dumps({"status": self.status, "labels": self.labels, "annotations": self.annotations,
                           "startsAt": self.starts_at.isoformat() if self.starts_at else "",
                           "endsAt": self.ends_at.isoformat() if self.ends_at else "",
                           "generatorURL": self.generator_url, "fingerprint": self.fingerprint},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Alert":
        return _alert(json.loads(text), "alert")


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: tuple[Alert, ...]


def parse_body(body: bytes) -> Notification:
    try:
        # Decoded strictly first: json.loads(bytes) lets UTF-8-encoded surrogates (ED A0 80) through.
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError("bad_json", f"the body is not UTF-8: byte {err.start} ({body[err.start:err.start + 1]!r}) "
                                       "cannot start or continue a character") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise PayloadError("bad_json", f"the body is not JSON: {err}") from None
    except RecursionError:
        raise PayloadError("bad_json", "the body nests arrays or objects too deeply to be a webhook payload") from None
    except ValueError as err:  # an integer of more than 4,300 digits: Python refuses to convert it
        raise PayloadError("bad_json", f"the body holds a number too long to read: {err}") from None
    if SURROGATE_ESCAPE.search(text):
        try:
            _refuse_lone_surrogates(document, "")
        except RecursionError:
            raise PayloadError("bad_json", "the body nests arrays or objects too deeply to be a webhook "
                                           "payload") from None
    return parse_notification(document)


def _refuse_lone_surrogates(value: Any, path: str) -> None:
    """A lone surrogate ("\\ud800") is valid JSON but no text: it cannot be stored, rendered or sent.
    Only a body that escapes a surrogate can hold one, so most bodies are never walked."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise PayloadError("bad_payload", f"{path or 'the body'}: character {err.start} is a lone UTF-16 "
                                              f"surrogate (U+{ord(value[err.start]):04X}), not text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, f"{path} (a name)" if path else "a name")
            _refuse_lone_surrogates(item, _where(path, key[:80]))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{path}[{index}]")


def parse_notification(document: Any) -> Notification:
    if not isinstance(document, dict):
        raise PayloadError("bad_payload", "expected a JSON object (Alertmanager's webhook payload)")
    version = document.get("version")
    if version != "4":
        raise PayloadError("wrong_version", f'version: expected "4" (Alertmanager\'s webhook payload), got {version!r}')
    alerts = _field(document, "alerts", list, "a list of alerts")
    return Notification(
        receiver=_field(document, "receiver", str, "a string"),
        status=_status(document, "status"),
        group_key=_field(document, "groupKey", str, "a string"),
        group_labels=_string_map(document, "groupLabels", required=False),
        common_labels=_string_map(document, "commonLabels", required=False),
        common_annotations=_string_map(document, "commonAnnotations", required=False),
        external_url=_optional_string(document, "externalURL"),
        truncated_alerts=_count(document, "truncatedAlerts"),
        alerts=tuple(_alert(raw, f"alerts[{index}]") for index, raw in enumerate(alerts)),
    )


def _alert(raw: Any, path: str) -> Alert:
    if not isinstance(raw, dict):
        raise PayloadError("bad_payload", f"{path}: expected an object (an alert)")
    labels = _string_map(raw, "labels", path=path)
    return Alert(
        status=_status(raw, "status", path),
        labels=labels,
        annotations=_string_map(raw, "annotations", path=path, required=False),
        starts_at=_time(raw, "startsAt", path),
        ends_at=_time(raw, "endsAt", path, required=False),
        generator_url=_optional_string(raw, "generatorURL", path),
        fingerprint=_optional_string(raw, "fingerprint", path) or label_fingerprint(labels),
    )


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable id for an alert whose sender left out the fingerprint (hand-written payloads, tests)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field(document: dict[str, Any], key: str, kind: type, what: str, path: str = "") -> Any:
    if key not in document:
        raise PayloadError("bad_payload", f"{_where(path, key)}: missing (expected {what})")
    value = document[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError("bad_payload", f"{_where(path, key)}: expected {what}, got {type(value).__name__}")
    return value


def _status(document: dict[str, Any], key: str, path: str = "") -> str:
    value = _field(document, key, str, '"firing" or "resolved"', path)
    if value not in ("firing", "resolved"):
        raise PayloadError("bad_payload", f'{_where(path, key)}: expected "firing" or "resolved", got {value!r}')
    return value


def _optional_string(document: dict[str, Any], key: str, path: str = "") -> str:
    if document.get(key) is None:
        return ""
    return _field(document, key, str, "a string", path)


def _count(document: dict[str, Any], key: str) -> int:
    value = document.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MOST_ALERTS:
        raise PayloadError("bad_payload", f"{key}: expected a count (an integer from 0 to {_MOST_ALERTS})")
    return value


def _string_map(document: dict[str, Any], key: str, path: str = "", required: bool = True) -> dict[str, str]:
    if not required and document.get(key) is None:
        return {}
    value = _field(document, key, dict, "an object of strings", path)
    for name, item in value.items():
        if not isinstance(item, str):
            raise PayloadError("bad_payload", f"{_where(path, key)}.{name[:80]}: expected a string, "
                                              f"got {type(item).__name__}")
    return value


def _time(document: dict[str, Any], key: str, path: str, required: bool = True) -> datetime | None:
    if not document.get(key) and (not required or document.get(key) == ""):
        return None
    text = _field(document, key, str, "an RFC 3339 time", path)
    if text.startswith(_ZERO_TIME_PREFIX):
        return None
    try:
        # Alertmanager writes nanoseconds; Python reads at most microseconds.
        stamp = _trim_fraction(text.replace("Z", "+00:00").replace("z", "+00:00"))
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise PayloadError("bad_payload",
                           f"{_where(path, key)}: expected an RFC 3339 time, got {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    # Near year 1 or 9999 a time cannot be moved to another zone: the message could never be composed.
    if not _EARLIEST <= moment <= _LATEST:
        raise PayloadError("bad_payload", f"{_where(path, key)}: expected a time between 1970 and 9000, "
                                          f"got {text[:40]!r}")
    return moment


def _trim_fraction(stamp: str) -> str:
    if "." not in stamp:
        return stamp
    head, rest = stamp.split(".", 1)
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[:min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
