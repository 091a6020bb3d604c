"""Alertmanager's API v2, the part the bot commands need: active alerts, and silences made, listed, expired.

Errors become `AlertmanagerError` with a sentence a chat can show ("Alertmanager не отвечает: ..."); the
bot never shows a traceback or a URL with credentials in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests

from exporter import redaction


class AlertmanagerError(Exception):
    """Alertmanager could not be asked, or refused; str() says why, in Russian, for the chat."""


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[tuple[str, str, bool, bool], ...]  # (name, value, is_regex, is_equal)
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str  # active, pending or expired

    def matchers_text(self) -> str:
        def one(name: str, value: str, regex: bool, equal: bool) -> str:
            operator = ("=~" if regex else "=") if equal else ("!~" if regex else "!=")
            return f'{name}{operator}"{value}"'
        return ", ".join(one(*matcher) for matcher in self.matchers)

    def equalities(self) -> dict[str, str] | None:
        """The labels the silence asks to equal, when it asks nothing else (no regex, no "not equal")."""
        if any(regex or not equal for _, _, regex, equal in self.matchers):
            return None
        return {name: value for name, value, _, _ in self.matchers}


def equal_matcher(name: str, value: str) -> dict[str, Any]:
    """A matcher for label `name` equal to `value`, as API v2 takes it."""
    return {"name": name, "value": value, "isRegex": False, "isEqual": True}


def exact_matchers(labels: dict[str, str]) -> list[dict[str, Any]]:
    """Matchers that select exactly the alert with these labels (every label, compared for equality)."""
    return [equal_matcher(name, value) for name, value in sorted(labels.items())]


class AlertmanagerApi:
    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def alerts(self) -> list[dict[str, Any]]:
        """Every active alert Alertmanager holds, silenced and inhibited ones included (see `status`)."""
        return self._call("GET", "/api/v2/alerts", params={
            "active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"})

    def silences(self) -> list[Silence]:
        """Active and pending silences, the soonest to end first."""
        found = [_silence(raw) for raw in self._call("GET", "/api/v2/silences")]
        return sorted((s for s in found if s.state in ("active", "pending")), key=lambda s: s.ends_at)

    def create_silence(self, matchers: list[dict[str, Any]], ends_at: datetime, created_by: str,
                       comment: str) -> str:
        body = {"matchers": matchers, "startsAt": _iso(datetime.now(timezone.utc)), "endsAt": _iso(ends_at),
                "createdBy": created_by, "comment": comment}
        answer = self._call("POST", "/api/v2/silences", json=body)
        return str(answer.get("silenceID", ""))

    def expire_silence(self, silence_id: str) -> None:
        self._call("DELETE", f"/api/v2/silence/{silence_id}")

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise AlertmanagerError(f"Alertmanager не ответил за {self.timeout:g} с") from None
        except requests.RequestException as err:
            cause = "соединение не установлено" if isinstance(err, requests.ConnectionError) else "ошибка связи"
            raise AlertmanagerError(f"Alertmanager недоступен ({cause})") from None
        if response.status_code >= 400:
            detail = redaction.redact(response.text.strip().replace("\n", " ")[:200])
            raise AlertmanagerError(f"Alertmanager отказал: HTTP {response.status_code} {detail}".rstrip())
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise AlertmanagerError("Alertmanager ответил непонятно: это не ответ его программного интерфейса") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _silence(raw: dict[str, Any]) -> Silence:
    matchers = tuple((m["name"], m["value"], bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                     for m in raw.get("matchers", []))
    return Silence(id=raw["id"], matchers=matchers, starts_at=_time(raw["startsAt"]), ends_at=_time(raw["endsAt"]),
                   created_by=raw.get("createdBy", ""), comment=raw.get("comment", ""),
                   state=raw.get("status", {}).get("state", ""))
