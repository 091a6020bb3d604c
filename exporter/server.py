"""The exporter's HTTP endpoints: ``/metrics``, ``/-/healthy``, ``/-/ready``, ``/-/reload`` and ``/``."""

from __future__ import annotations

import json
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

log = logging.getLogger(__name__)

Reload = Callable[[], tuple[bool, str]]
Ready = Callable[[], tuple[bool, str]]
Page = Callable[[], str]
# The /metrics body and its headers, given the request's Accept-Encoding (exporter.exposition.MetricsBody).
Metrics = Callable[[str], tuple[bytes, list[tuple[str, str]]]]


def parse_listen_address(text: str) -> tuple[str, int]:
    """Reads ``:9815``, ``127.0.0.1:9815`` or ``[::1]:9815``; raises ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5) or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {text!r} is not HOST:PORT (for example :9815 or 127.0.0.1:9815)")
    return host.strip("[]"), int(port)


def build_app(metrics: Metrics, reload: Reload, ready: Ready, page: Page):
    def respond(start_response, status: str, body: str, content_type: str = "text/plain; charset=utf-8",
                extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
        data = body.encode("utf-8")
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *extra])
        return [data]

    def app(environ: dict[str, Any], start_response):
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                return respond(start_response, "405 Method Not Allowed", "Use GET for the metrics.\n",
                               extra=[("Allow", "GET, HEAD")])
            body, headers = metrics(environ.get("HTTP_ACCEPT_ENCODING", ""))
            start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
            return [b""] if method == "HEAD" else [body]
        if path == "/-/healthy":
            return respond(start_response, "200 OK", "sitewatch exporter is healthy.\n")
        if path == "/-/ready":
            is_ready, text = ready()
            return respond(start_response, "200 OK" if is_ready else "503 Service Unavailable", text + "\n")
        if path == "/-/reload":
            if method not in ("POST", "PUT"):
                return respond(start_response, "405 Method Not Allowed", "Use POST to reload the config.\n",
                               extra=[("Allow", "POST, PUT")])
            ok, text = reload()
            body = json.dumps({"status": "success" if ok else "error", "message": text}, ensure_ascii=False)
            return respond(start_response, "200 OK" if ok else "500 Internal Server Error", body + "\n",
                           "application/json")
        if path in ("/", "/index.html"):
            return respond(start_response, "200 OK", page(), "text/html; charset=utf-8")
        return respond(start_response, "404 Not Found", "Not found. Try /, /metrics, /-/healthy, /-/ready.\n")

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape would drown the log
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog is 5: sites whose scheduled tasks all fire on the quarter hour (uploads
    # to sitewatch-ingest), or many scrapers at once, would see connections dropped and retried a second
    # later. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class HttpServer:
    def __init__(self, listen: str, app, handler_class: type[WSGIRequestHandler] = _QuietHandler):
        # handler_class: sitewatch-ingest takes uploads, and answers Expect: 100-continue in its own handler
        host, port = parse_listen_address(listen)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(host or "0.0.0.0", port, app, server_class=server_class,
                                   handler_class=handler_class)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
