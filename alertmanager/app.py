"""The receiver's Flask application, built by `create_app(config)`.

``POST /alert/<route>`` takes Alertmanager's webhook, commits its alerts to the outbox and only then
answers 200; every refusal is a 4xx with a JSON error that names the problem (a 5xx only when the outbox
itself cannot be written, so Alertmanager keeps the alerts and retries).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hmac
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from alertmanager.botpoll import CommandPoller
from alertmanager.chatcommands import ChatCommands
from alertmanager.config import ReceiverConfig
from alertmanager.intake import take_in
from alertmanager.metrics import ReceiverMetrics
from alertmanager.outbox import Outbox, Webhook
from alertmanager.render import Renderer
from alertmanager.sender import Sender
from alertmanager.silences import AlertmanagerApi
from alertmanager.webhook import PayloadError, parse_body
from alertmanager.writer import OutboxWriter

log = logging.getLogger("sitewatch.receiver")
EXTENSION = "sitewatch-receiver"


class Receiver:
    """Everything behind the routes: config, renderers, outbox, metrics and the sender."""

    def __init__(self, config: ReceiverConfig, dry_run: bool = False):
        self.config = config
        self.renderers = {name: renderer_for(config, route.language, route.template_file, route.timezone)
                          for name, route in config.routes.items()}
        self.outbox = Outbox(config.outbox_path)
        self.writer = OutboxWriter(self.outbox)
        self.metrics = ReceiverMetrics(self.outbox, list(config.routes))
        self.sender = Sender(config, self.outbox, self.renderers, renderer_for(config, "ru", None, config.timezone),
                             self.metrics, dry_run=dry_run)
        self._complaints: dict[str, float] = {}
        self._complaints_lock = threading.Lock()
        self._routes_seen = self.outbox.receiver_routes()
        self.poller = None
        if config.commands is not None and not dry_run:
            # Read afresh for each command: another process sharing the outbox may have learnt a pair.
            commands = ChatCommands(config, config.commands,
                                    AlertmanagerApi(config.commands.alertmanager_url, timeout=5.0),
                                    self.outbox.receiver_routes)
            self.poller = CommandPoller(config.commands, self.sender.apis[config.commands.bot], commands,
                                        self.outbox, self.metrics, lambda: self.sender.active)

    def learn_route(self, alertmanager_receiver: str, route: str) -> None:
        """Remembers that an Alertmanager receiver posts to this route, for /status (written once per pair)."""
        pair = (alertmanager_receiver, route)
        if pair in self._routes_seen:
            return
        self._routes_seen.add(pair)  # set.add is atomic: Flask's threads may race here, and both write once
        try:
            self.outbox.note_receiver_route(alertmanager_receiver, route)
        except sqlite3.Error as err:  # only /status's filtering suffers; the alerts are safe
            log.warning("event=receiver_route_not_saved error=%r", str(err))

    def start(self) -> None:
        self.sender.start()
        if self.poller is not None:
            self.poller.start()

    def complain(self, key: str, text: str, *args: Any) -> None:
        """Logs a rejected request, but the same complaint at most once a minute: a misconfigured
        Alertmanager retries forever and must not drown the log."""
        now = time.monotonic()
        with self._complaints_lock:
            if now - self._complaints.get(key, -3600.0) < 60.0:
                return
            self._complaints[key] = now
        log.warning(text, *args)

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        self.sender.stop()
        self.writer.close()
        self.outbox.close()


def renderer_for(config: ReceiverConfig, language: str, template_file: Path | None,
                 timezone: ZoneInfo | None) -> Renderer:
    """A route's renderer; a broken template raises TemplateProblem here, at start-up."""
    return Renderer(language=language, template_file=template_file, timezone=timezone or config.timezone,
                    grafana_url=config.grafana_url, alertmanager_url=config.alertmanager_url)


def receiver_of(app: Flask) -> Receiver:
    return app.extensions[EXTENSION]


def create_app(config: ReceiverConfig, *, dry_run: bool = False, start_sender: bool = True) -> Flask:
    receiver = Receiver(config, dry_run=dry_run)
    app = Flask("sitewatch-receiver")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.json.ensure_ascii = False
    app.extensions[EXTENSION] = receiver
    metrics = receiver.metrics

    def refuse(status: int, result: str, message: str, **extra: Any) -> Response:
        metrics.webhooks.labels(result).inc()
        response = jsonify({"status": "error", "error": result, "message": message, **extra})
        response.status_code = status
        return response

    @app.post("/alert/<route>")
    def alert(route: str) -> Response:
        started = time.monotonic()
        try:
            if not _authorized(config, request.headers.get("Authorization", "")):
                receiver.complain("unauthorized", "event=webhook_refused reason=unauthorized remote=%s route=%s",
                                  request.remote_addr, route)
                response = refuse(401, "unauthorized", "missing or wrong credentials")
                response.headers["WWW-Authenticate"] = 'Basic realm="sitewatch-receiver"' \
                    if config.basic_auth else 'Bearer realm="sitewatch-receiver"'
                return response
            if route not in config.routes:
                receiver.complain(f"route:{route}", "event=webhook_refused reason=unknown_route route=%r known=%s",
                                  route, ",".join(config.routes))
                return refuse(404, "unknown_route", f"no route named {route!r}", routes=sorted(config.routes))
            try:
                notification = parse_body(request.get_data(cache=False))
            except PayloadError as err:
                receiver.complain(f"payload:{err.reason}", "event=webhook_refused reason=%s route=%s detail=%r",
                                  err.reason, route, err.message)
                return refuse(400, err.reason, err.message)
            receiver.learn_route(notification.receiver, route)
            intake = take_in(notification, route, config)
            for label_route, count in intake.unknown_routes.items():
                metrics.route_fallbacks.inc(count)
                receiver.complain(f"label:{label_route}", "event=unknown_label_route telegram_route=%r alerts=%d "
                                  "sent_to=%s", label_route, count, route)
            try:
                stored = receiver.writer.store(Webhook(tuple(intake.batches), intake.dedup_key, config.dedup_window))
            except (sqlite3.Error, concurrent.futures.TimeoutError) as err:
                log.error("event=outbox_write_failed file=%s error=%r action=answer_503_so_alertmanager_retries",
                          receiver.outbox.path, str(err))
                return refuse(503, "outbox_error", "the outbox cannot be written; Alertmanager will retry")
            if stored.duplicate:
                metrics.webhooks.labels("duplicate").inc()
                return jsonify({"status": "duplicate", "alerts": len(notification.alerts)})
            for (name, status), count in intake.alerts.items():
                metrics.alerts_queued.labels(name, status).inc(count)
            if stored.cancelled:
                metrics.alerts_cancelled.labels(route).inc(stored.cancelled)
            if stored.already_told:
                metrics.alerts_already_told.labels(route).inc(stored.already_told)
            metrics.webhooks.labels("accepted").inc()
            receiver.sender.wake()
            return jsonify({"status": "queued", "alerts": len(notification.alerts), "queued": stored.queued,
                            "cancelled": stored.cancelled})
        finally:
            metrics.webhook_duration.observe(time.monotonic() - started)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: HTTPException) -> Response:
        receiver.complain("too_large", "event=webhook_refused reason=too_large limit=%d", config.max_body)
        return refuse(413, "too_large", f"the body is over the limit of {config.max_body} bytes "
                                        "(webhook.max_body; or set max_alerts in Alertmanager's webhook_configs)")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        response = jsonify({"status": "error", "error": (err.name or "error").lower().replace(" ", "_"),
                            "message": err.description})
        response.status_code = err.code or 500
        return response

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/-/healthy")
    def healthy() -> Response:
        return Response("Healthy.\n", mimetype="text/plain")

    @app.get("/-/ready")
    def ready() -> Response:
        try:
            receiver.outbox.depth()
        except sqlite3.Error as err:
            return Response(f"Not ready: the outbox cannot be read: {err}\n", status=503, mimetype="text/plain")
        return Response("Ready.\n", mimetype="text/plain")

    @app.get("/")
    def index() -> Response:
        count, oldest = receiver.outbox.depth()
        lines = ["sitewatch receiver", "",
                 f"outbox: {count} waiting" + (f", oldest {time.time() - oldest:.0f}s" if oldest else ""),
                 f"sender: {'active' if receiver.sender.active else 'standby (another process sends)'}"
                 + (" (dry run)" if receiver.sender.dry_run else ""), "", "routes:"]
        lines += [f"  POST /alert/{name}  ->  bot {route.bot}, chat {route.chat_id}"
                  + (f", thread {route.thread_id}" if route.thread_id else "")
                  for name, route in config.routes.items()]
        lines += ["", "/metrics  /-/healthy  /-/ready"]
        return Response("\n".join(lines) + "\n", mimetype="text/plain")

    if start_sender:
        receiver.start()
    return app


def _authorized(config: ReceiverConfig, header: str) -> bool:
    if not config.auth_required:
        return True
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and config.bearer_token is not None:
        return hmac.compare_digest(credentials.strip().encode(), config.bearer_token.reveal().encode())
    if scheme == "basic" and config.basic_auth is not None:
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected_user, expected_password = config.basic_auth
        # Compare both in full, so the time taken says nothing about which part was wrong.
        same_user = hmac.compare_digest(user.encode(), expected_user.encode())
        same_password = hmac.compare_digest(password.encode(), expected_password.reveal().encode())
        return same_user and same_password
    return False
