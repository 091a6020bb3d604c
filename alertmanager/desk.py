"""The webhook desk: one ``POST /alert/<route>`` from its raw parts to the answer, in two halves.

`prepare` does everything before the outbox (credentials, route, payload, routing of each alert) and
gives either the final answer or a `Ticket` holding the webhook to commit; `conclude` turns the commit's
outcome into the answer. The Flask route runs both halves on its thread; the receiver's own HTTP server
runs `prepare` on its event loop and awaits the commit without tying up a thread (see httpfront.py).

Every refusal is a 4xx naming the problem; the only deliberate 5xx is 503 when the outbox cannot be
written, so Alertmanager keeps the alerts and retries. A webhook whose content cannot be stored (the
payload reader let something through that SQLite refuses) is answered 400 on its own: the writer commits
the others of its group without it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hmac
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alertmanager.config import ReceiverConfig
from alertmanager.intake import Intake, shared_chat_routes, take_in
from alertmanager.outbox import EnqueueResult, Webhook
from alertmanager.webhook import Notification, PayloadError, parse_body

if TYPE_CHECKING:
    from alertmanager.app import Receiver

log = logging.getLogger("sitewatch.receiver")
COMMIT_TIMEOUT = 30.0  # a commit this late means the disk is stuck: 503, and Alertmanager retries


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Ticket:
    """A webhook read and routed, waiting for its commit."""

    route: str
    notification: Notification
    intake: Intake
    webhook: Webhook
    started: float


class WebhookDesk:
    def __init__(self, receiver: "Receiver"):
        self.receiver = receiver
        self.config: ReceiverConfig = receiver.config
        self.metrics = receiver.metrics
        self.shared_chat_routes = shared_chat_routes(self.config)

    def handle(self, route: str, authorization: str, body: bytes, remote: str | None) -> Answer:
        """Both halves, blocking until the commit (the Flask route)."""
        ticket = self.prepare(route, authorization, body, remote)
        if isinstance(ticket, Answer):
            return ticket
        try:
            outcome: EnqueueResult | BaseException = self.receiver.writer.store(ticket.webhook, COMMIT_TIMEOUT)
        except Exception as err:
            outcome = err
        return self.conclude(ticket, outcome)

    def precheck(self, route: str, authorization: str, remote: str | None,
                 started: float | None = None) -> Answer | None:
        """The refusals that need no body (credentials, route), or None when the body is worth reading."""
        started = time.monotonic() if started is None else started
        if not authorized(self.config, authorization):
            self.receiver.complain("unauthorized", "event=webhook_refused reason=unauthorized remote=%s route=%r",
                                   remote, route[:80])
            realm = "Basic" if self.config.basic_auth else "Bearer"
            return self.refuse(401, "unauthorized", "missing or wrong credentials", started,
                               headers={"WWW-Authenticate": f'{realm} realm="sitewatch-receiver"'})
        if route not in self.config.routes:
            self.receiver.complain(f"route:{route[:80]}", "event=webhook_refused reason=unknown_route route=%r "
                                   "known=%s", route[:80], ",".join(self.config.routes))
            return self.refuse(404, "unknown_route", f"no route named {route[:80]!r}", started,
                               routes=sorted(self.config.routes))
        return None

    def prepare(self, route: str, authorization: str, body: bytes, remote: str | None,
                started: float | None = None) -> Answer | Ticket:
        """`started`: when the request's first byte arrived, if the server knows (time.monotonic())."""
        started = time.monotonic() if started is None else started
        refused = self.precheck(route, authorization, remote, started)
        if refused is not None:
            return refused
        if len(body) > self.config.max_body:
            return self.too_large(started)
        try:
            notification = parse_body(body)
        except PayloadError as err:
            self.receiver.complain(f"payload:{err.reason}", "event=webhook_refused reason=%s route=%s detail=%r",
                                   err.reason, route, err.message[:300])
            return self.refuse(400, err.reason, err.message, started)
        self.receiver.learn_route(notification.receiver, route)
        intake = take_in(notification, route, self.config, self.shared_chat_routes)
        for label_route, count in intake.unknown_routes.items():
            self.metrics.route_fallbacks.inc(count)
            self.receiver.complain(f"label:{label_route[:80]}", "event=unknown_label_route telegram_route=%r "
                                   "alerts=%d sent_to=%s", label_route[:80], count, route)
        webhook = Webhook(tuple(intake.batches), intake.dedup_key, self.config.dedup_window)
        return Ticket(route, notification, intake, webhook, started)

    def conclude(self, ticket: Ticket, outcome: EnqueueResult | BaseException) -> Answer:
        """The answer once the commit is over: its result, or the exception it raised (or a TimeoutError)."""
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            stored = outcome
        except (sqlite3.Error, concurrent.futures.TimeoutError, TimeoutError, OSError) as err:
            log.error("event=outbox_write_failed file=%s error=%r action=answer_503_so_alertmanager_retries",
                      self.receiver.outbox.path, str(err))
            return self.refuse(503, "outbox_error", "the outbox cannot be written; Alertmanager will retry",
                               ticket.started)
        except (ValueError, OverflowError, TypeError) as err:
            # What it carried passed the payload reader but not SQLite: only this webhook is refused.
            self.receiver.complain(f"unstorable:{type(err).__name__}", "event=webhook_refused reason=unstorable "
                                   "route=%s error=%r", ticket.route, str(err)[:300])
            return self.refuse(400, "unstorable", f"the payload cannot be stored: {str(err)[:300]}", ticket.started)
        notification, intake = ticket.notification, ticket.intake
        if stored.duplicate:
            self.metrics.webhooks.labels("duplicate").inc()
            return self._answered(ticket.started, 200, {"status": "duplicate", "alerts": len(notification.alerts)})
        for (name, status), count in intake.alerts.items():
            self.metrics.alerts_queued.labels(name, status).inc(count)
        if stored.cancelled:
            self.metrics.alerts_cancelled.labels(ticket.route).inc(stored.cancelled)
        if stored.already_told:
            self.metrics.alerts_already_told.labels(ticket.route).inc(stored.already_told)
        self.metrics.webhooks.labels("accepted").inc()
        self.receiver.wake_sender()
        return self._answered(ticket.started, 200, {"status": "queued", "alerts": len(notification.alerts),
                                                    "queued": stored.queued, "cancelled": stored.cancelled})

    def too_large(self, started: float | None = None) -> Answer:
        self.receiver.complain("too_large", "event=webhook_refused reason=too_large limit=%d", self.config.max_body)
        return self.refuse(413, "too_large", f"the body is over the limit of {self.config.max_body} bytes "
                                             "(webhook.max_body; or set max_alerts in Alertmanager's webhook_configs)",
                           started)

    def refuse(self, status: int, result: str, message: str, started: float | None = None,
               headers: dict[str, str] | None = None, **extra: Any) -> Answer:
        self.metrics.webhooks.labels(result).inc()
        answer = {"status": "error", "error": result, "message": message, **extra}
        return self._answered(started, status, answer, headers)

    def _answered(self, started: float | None, status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> Answer:
        if started is not None:
            self.metrics.webhook_duration.observe(time.monotonic() - started)
        return Answer(status, body, headers or {})


def authorized(config: ReceiverConfig, header: str) -> bool:
    if not config.auth_required:
        return True
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and config.bearer_token is not None:
        return hmac.compare_digest(credentials.strip().encode(errors="replace"),
                                   config.bearer_token.reveal().encode())
    if scheme == "basic" and config.basic_auth is not None:
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected_user, expected_password = config.basic_auth
        # Compare both in full, so the time taken says nothing about which part was wrong.
        same_user = hmac.compare_digest(user.encode(errors="replace"), expected_user.encode())
        same_password = hmac.compare_digest(password.encode(errors="replace"), expected_password.reveal().encode())
        return same_user and same_password
    return False
