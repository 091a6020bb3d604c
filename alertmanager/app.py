"""The receiver's Flask application, built by `create_app(config)`.

``POST /alert/<route>`` takes Alertmanager's webhook, commits its alerts to the outbox and only then
answers 200; every refusal is a 4xx with a JSON error that names the problem (a 5xx only when the outbox
itself cannot be written, so Alertmanager keeps the alerts and retries). The webhook's logic lives in
desk.py, shared with the receiver's own HTTP server, which takes webhooks without a trip through Flask.
"""

from __future__ import annotations

import concurrent.futures
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
from alertmanager.delivery import DeliveryProcess
from alertmanager.desk import Answer, WebhookDesk
from alertmanager.helpdesk import HandOff
from alertmanager.metrics import ReceiverMetrics
from alertmanager.morning import Morning
from alertmanager.outbox import Outbox
from alertmanager.render import Renderer
from alertmanager.sender import Sender
from alertmanager.silences import AlertmanagerApi
from alertmanager.writer import OutboxWriter

log = logging.getLogger("sitewatch.receiver")
EXTENSION = "sitewatch-receiver"
ROLE_PARTS = {"both": ("intake", "delivery"), "web": ("intake",), "delivery": ("delivery",)}


class Receiver:
    """Everything behind the routes: config, renderers, outbox, metrics and the sender."""

    def __init__(self, config: ReceiverConfig, dry_run: bool = False, role: str = "both"):
        """`role`: "web" answers webhooks and leaves sending to a delivery process (delivery.py),
        "delivery" only sends, "both" does both in one process (tests, and embedding the Flask app)."""
        self.config = config
        self.role = role
        self.delivery: DeliveryProcess | None = None  # set by `run` in the web process
        self.renderers = {name: renderer_for(config, route.language, route.template_file, route.timezone)
                          for name, route in config.routes.items()}
        # The delivery process's claims and sent marks are held for a moment less: see Outbox.
        self.outbox = Outbox(config.outbox_path, durable_commits=role != "delivery")
        self._writer: OutboxWriter | None = None
        self._writer_lock = threading.Lock()
        self.metrics = ReceiverMetrics(self.outbox, list(config.routes), ROLE_PARTS[role])
        self.sender = Sender(config, self.outbox, self.renderers, renderer_for(config, "ru", None, config.timezone),
                             self.metrics, dry_run=dry_run)
        self._complaints: dict[str, float] = {}
        self._complaints_lock = threading.Lock()
        self._routes_seen = self.outbox.receiver_routes()
        self.desk = WebhookDesk(self)
        self._chores = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-chores")
        self.poller = None
        if config.commands is not None and not dry_run and role != "web":
            # Read afresh for each command: another process sharing the outbox may have learnt a pair.
            commands = ChatCommands(config, config.commands,
                                    AlertmanagerApi(config.commands.alertmanager_url, timeout=5.0),
                                    self.outbox.receiver_routes)
            self.poller = CommandPoller(config.commands, self.sender.apis[config.commands.bot], commands,
                                        self.outbox, self.metrics, lambda: self.sender.active)
        self.morning = None
        self.handoff = None
        if config.worklist is not None and role != "web":
            # A dry run sends nothing anywhere: no tasks in the helpdesk either (the lists are printed).
            if not dry_run and any(route.helpdesk is not None for route in config.routes.values()):
                self.handoff = HandOff(config, config.outbox_path, self.metrics.registry)
            self.morning = Morning(config, self.outbox, lambda: self.sender.active, registry=self.metrics.registry,
                                   handoff=self.handoff, wake=self.sender.wake)

    def learn_route(self, alertmanager_receiver: str, route: str) -> None:
        """Remembers that an Alertmanager receiver posts to this route, for /status (written once per pair,
        on a thread of its own: the webhook is not held up by a write that only /status reads)."""
        pair = (alertmanager_receiver, route)
        if pair in self._routes_seen:
            return
        self._routes_seen.add(pair)  # set.add is atomic: threads may race here, and both write once
        self._chores.submit(self._note_route, pair)

    def _note_route(self, pair: tuple[str, str]) -> None:
        try:
            self.outbox.note_receiver_route(*pair)
        except sqlite3.Error as err:  # only /status's filtering suffers; the alerts are safe
            log.warning("event=receiver_route_not_saved error=%r", str(err))

    @property
    def writer(self) -> OutboxWriter:
        """The commit thread of the Flask route, started on its first webhook: the receiver's own server
        commits on its loop, and the delivery process commits no webhooks."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = OutboxWriter(self.outbox)
            return self._writer

    def wake_sender(self) -> None:
        if self.delivery is not None:
            self.delivery.wake()
        else:
            self.sender.wake()

    def metrics_text(self) -> bytes:
        # The delivery process first: asking it sets sitewatch_receiver_delivery_up for this very scrape.
        theirs = self.delivery.metrics_text() if self.delivery is not None else b""
        return generate_latest(self.metrics.registry) + theirs

    def sender_text(self) -> str:
        if self.delivery is not None:
            return f"delivery process, pid {self.delivery.pid}"
        return "active" if self.sender.active else "standby (another process sends)"

    def start(self) -> None:
        if self.role == "web":
            return
        self.sender.start()
        if self.poller is not None:
            self.poller.start()
        if self.morning is not None:
            self.morning.start()
        if self.handoff is not None:
            self.handoff.start(lambda: self.sender.active)

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
        if self.morning is not None:
            self.morning.stop()
        if self.handoff is not None:
            self.handoff.stop()
            self.handoff.close()
        self.sender.stop()
        self._chores.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()
        self.outbox.close()


def renderer_for(config: ReceiverConfig, language: str, template_file: Path | None,
                 timezone: ZoneInfo | None) -> Renderer:
    """A route's renderer; a broken template raises TemplateProblem here, at start-up."""
    return Renderer(language=language, template_file=template_file, timezone=timezone or config.timezone,
                    grafana_url=config.grafana_url, alertmanager_url=config.alertmanager_url)


def receiver_of(app: Flask) -> Receiver:
    return app.extensions[EXTENSION]


def create_app(config: ReceiverConfig, *, dry_run: bool = False, start_sender: bool = True,
               role: str = "both") -> Flask:
    receiver = Receiver(config, dry_run=dry_run, role=role)
    app = Flask("sitewatch-receiver")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    app.json.ensure_ascii = False
    app.extensions[EXTENSION] = receiver
    desk = receiver.desk

    def reply(answer: Answer) -> Response:
        response = jsonify(answer.body)
        response.status_code = answer.status
        response.headers.update(answer.headers)
        return response

    @app.post("/alert/<route>")
    def alert(route: str) -> Response:
        return reply(desk.handle(route, request.headers.get("Authorization", ""), request.get_data(cache=False),
                                 request.remote_addr))

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: HTTPException) -> Response:
        return reply(desk.too_large())

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        response = jsonify({"status": "error", "error": (err.name or "error").lower().replace(" ", "_"),
                            "message": err.description})
        response.status_code = err.code or 500
        return response

    @app.get("/metrics")
    def metrics_page() -> Response:
        return Response(receiver.metrics_text(), content_type=CONTENT_TYPE_LATEST)

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
                 f"sender: {receiver.sender_text()}"
                 + (" (dry run)" if receiver.sender.dry_run else ""), "", "routes:"]
        lines += [f"  POST /alert/{name}  ->  bot {route.bot}, chat {route.chat_id}"
                  + (f", thread {route.thread_id}" if route.thread_id else "")
                  for name, route in config.routes.items()]
        lines += ["", "/metrics  /-/healthy  /-/ready"]
        return Response("\n".join(lines) + "\n", mimetype="text/plain")

    if start_sender:
        receiver.start()
    return app

