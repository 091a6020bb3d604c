"""A small Telegram Bot API client: one call, one `ApiAnswer`, and never the token in an error.

The Bot API puts the token in the URL, so every text that leaves this module (answers, exceptions
turned into reasons) is built here from known parts, and the token is registered with the log redactor.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import requests

from exporter import redaction
from exporter.secrets import SecretValue

if TYPE_CHECKING:
    from alertmanager.config import ReceiverConfig


@dataclass(frozen=True)
class ApiAnswer:
    """What one Bot API call came to. `error_code` 0 with `network_error` set: no answer at all.

    `timed_out`: the request went out but its answer did not come in time, so Telegram may have carried
    it out (a message may be in the chat although we never heard so).
    """

    ok: bool
    result: Any = None
    error_code: int = 0
    description: str = ""
    retry_after: float | None = None
    migrate_to_chat_id: int | None = None
    network_error: str = ""
    duration: float = 0.0
    timed_out: bool = False

    @property
    def kind(self) -> str:
        """A short token for logs and metrics."""
        if self.ok:
            return "ok"
        if self.timed_out:
            return "timeout"
        if self.network_error:
            return "network"
        if self.error_code == 429:
            return "rate_limited"
        if self.migrate_to_chat_id is not None:
            return "migrated"
        if self.error_code == 401 or self.error_code == 404:
            return "unauthorized"
        if self.error_code == 403:
            return "forbidden"
        if self.error_code == 400 and "chat not found" in self.description.lower():
            return "chat_not_found"
        if self.error_code == 400 and "can't parse entities" in self.description.lower():
            return "parse_error"
        if self.error_code >= 500:
            return "server_error"
        return "rejected"


@dataclass
class BotApi:
    """Calls one bot's methods. Thread-safe: each thread keeps its own keep-alive session."""

    base_url: str
    token: SecretValue | str
    timeout: float = 10.0
    proxy: str | None = None
    observe: Callable[[str, str, float], None] | None = None  # (method, answer kind, seconds)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        redaction.register(self._token())

    def _token(self) -> str:
        return self.token.reveal() if isinstance(self.token, SecretValue) else self.token

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self.proxy:
                session.proxies = {"http": self.proxy, "https": self.proxy}
            self._local.session = session
        return session

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None, *,
             read_timeout: float | None = None) -> ApiAnswer:
        """`timeout` bounds connecting and, unless `read_timeout` is given, waiting for the answer."""
        url = f"{self.base_url}/bot{self._token()}/{method}"
        connect = timeout or self.timeout
        read = read_timeout or connect
        started = time.monotonic()
        try:
            response = self._session().post(url, json=params or {}, timeout=(connect, read))
        except requests.ConnectTimeout:  # nothing was sent: no doubt about what Telegram did
            answer = ApiAnswer(False, network_error=f"no connection within {connect:g}s")
        except requests.Timeout:
            answer = ApiAnswer(False, network_error=f"no answer within {read:g}s", timed_out=True)
        except requests.RequestException as err:
            answer = ApiAnswer(False, network_error=network_reason(err))
        else:
            answer = _read_answer(response)
        answer = dataclasses.replace(answer, duration=time.monotonic() - started)
        if self.observe is not None:
            self.observe(method, answer.kind, answer.duration)
        return answer

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def network_reason(err: requests.RequestException) -> str:
    # The exception's text carries the URL, token included: name the failure by its type and cause only.
    cause = err.__context__ or err.__cause__
    while cause is not None and (cause.__context__ or cause.__cause__) is not None and not isinstance(cause, OSError):
        cause = cause.__context__ or cause.__cause__
    kind = type(err).__name__
    if isinstance(cause, OSError) and cause.strerror:
        return redaction.redact(f"{kind}: {cause.strerror}")
    return kind


def _read_answer(response: requests.Response) -> ApiAnswer:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        # A proxy or load balancer answering for Telegram (502 pages and the like).
        return ApiAnswer(False, error_code=response.status_code or 502,
                         description=f"HTTP {response.status_code} without a Bot API answer")
    if document.get("ok") is True:
        return ApiAnswer(True, result=document.get("result"))
    parameters = document.get("parameters") if isinstance(document.get("parameters"), dict) else {}
    retry_after = parameters.get("retry_after")
    migrate = parameters.get("migrate_to_chat_id")
    return ApiAnswer(
        False,
        error_code=int(document.get("error_code") or response.status_code),
        description=redaction.redact(str(document.get("description") or "")),
        retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
        migrate_to_chat_id=int(migrate) if isinstance(migrate, int) else None,
    )


def bot_apis(config: ReceiverConfig, observe: Callable[[str, str, float], None] | None = None) -> dict[str, BotApi]:
    """One client per configured bot, set up from the config's ``telegram`` section."""
    return {name: BotApi(config.api_url, bot.token, config.request_timeout, config.proxy, observe=observe)
            for name, bot in config.bots.items()}
