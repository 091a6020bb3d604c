"""The exporter's HTTP endpoints: ``/metrics``, ``/-/healthy``, ``/-/ready``, ``/-/reload`` and ``/``.

With a web config (`HttpServer.protect`, exporter.webguard), every connection is served on a thread of its
own from its first byte: the TLS handshake happens there, with a deadline for the whole of it, so a client
that never finishes one holds up nobody else; and every request passes basic auth before the application
sees it.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter.httpauth import ACCEPTED
from exporter.webguard import HANDSHAKE_TIMEOUT, WebGuard

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


# How long a connection may take to send its request once it is open (and, with TLS, once the handshake is
# done): a client that opens a connection and sends nothing gives its thread back after this.
REQUEST_TIMEOUT = 30.0


class HandlerErrors:
    """Where wsgiref writes an answer's error: one log line a minute instead of a traceback on stderr.

    A client that closes before its answer is written (a 401 to a flood, a scrape that timed out) makes the
    TLS socket raise on write, and wsgiref prints twenty lines for each; the traceback stays at debug level.
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._said = 0.0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        self._text.append(text)

    def flush(self) -> None:
        text, self._text = "".join(self._text), []
        if not text.strip():
            return
        last = text.strip().splitlines()[-1]
        log.debug("event=http_answer_failed traceback=%r", text)
        with self._lock:
            if time.monotonic() - self._said < 60:
                return
            self._said = time.monotonic()
        log.warning("event=http_answer_failed error=%r note=%r", last[:200], "often a client that went away")


HANDLER_ERRORS = HandlerErrors()


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape would drown the log
        pass

    def get_stderr(self) -> HandlerErrors:
        return HANDLER_ERRORS


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog is 5: sites whose scheduled tasks all fire on the quarter hour (uploads
    # to sitewatch-ingest), or many scrapers at once, would see connections dropped and retried a second
    # later. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024
    guard: WebGuard | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback for whatever escapes a handler; a connection that timed out or was
        # reset is not worth one.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        HANDLER_ERRORS.write(traceback.format_exc())
        HANDLER_ERRORS.flush()

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake first, when the web config asks for TLS."""
        if self.guard is not None:
            request = _admitted(self.guard, request, str(client_address[0]))
            if request is None:
                return
        super().process_request_thread(request, client_address)


PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
                     b"This port speaks HTTPS: use https:// in the address.\n")


def _admitted(guard: WebGuard, connection: socket.socket, remote: str) -> socket.socket | None:
    """The connection to serve: itself without TLS, the TLS socket after a handshake, or None (closed)."""
    try:
        guard.refresh()
    except Exception:  # noqa: BLE001 - a surprise in a reload must not cost this connection; the old config serves
        log.exception("event=web_config_refresh_failed")
    tls = guard.tls
    if tls is None:
        return connection
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    secured: ssl.SSLSocket | None = None
    try:
        if _sends_plain_http(connection, deadline):
            guard.counted_handshake_failure("plain_http", remote, "a plain HTTP request on the TLS port")
            _answer_plain_http(connection)
            return None
        secured = tls.context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        _handshake(secured, deadline)
        if not tls.peer_allowed(secured.getpeercert()):
            guard.counted_handshake_failure("client_certificate", remote, "no allowed SAN in the client certificate")
            secured.close()
            return None
        secured.settimeout(None)  # as the plain connection was: the request handler sets its own timeout
        return secured
    except Exception as err:  # noqa: BLE001 - whatever a client makes a handshake raise, the server serves on
        guard.handshake_failed(err, remote)
        (secured or connection).close()
        return None


def _sends_plain_http(connection: socket.socket, deadline: float) -> bool:
    """Whether the client's first byte starts an HTTP request rather than a TLS record (0x16)."""
    connection.settimeout(max(0.0, deadline - time.monotonic()))
    first = connection.recv(1, socket.MSG_PEEK)
    if not first:
        raise ConnectionResetError("the client closed the connection before its TLS handshake")
    return first.isalpha()


def _answer_plain_http(connection: socket.socket) -> None:
    """Says in plain HTTP to use HTTPS (Prometheus shows it as the target's error), then closes. The request is
    read first: a socket closed with unread data is reset, and the client would see the reset, not the answer."""
    try:
        connection.recv(65536)
        connection.sendall(PLAIN_HTTP_ANSWER)
        connection.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        connection.close()


def _handshake(connection: ssl.SSLSocket, deadline: float) -> None:
    """Completes the server side of the handshake by `deadline`, however slowly the client sends."""
    connection.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(connection, selectors.EVENT_READ)
        while True:
            try:
                connection.do_handshake()
                return
            except ssl.SSLWantReadError:
                selector.modify(connection, selectors.EVENT_READ)
            except ssl.SSLWantWriteError:
                selector.modify(connection, selectors.EVENT_WRITE)
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise TimeoutError(f"no TLS handshake within {HANDSHAKE_TIMEOUT:g} s")


def guarded_app(app, guard: WebGuard):
    """`app` behind the web config's basic auth and headers: a 401 with a Basic challenge unless the
    credentials pass (bcrypt only the first time, see exporter.httpauth)."""

    def guarded(environ: dict[str, Any], start_response):
        headers = list(guard.headers)
        if guard.auth_required:
            verdict = guard.check(environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", ""))
            if verdict != ACCEPTED:
                body = b"Unauthorized: this server asks for a user and password (HTTP basic auth).\n"
                start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                    ("Content-Length", str(len(body))),
                                                    ("WWW-Authenticate", guard.challenge), *headers])
                return [body]
        if not headers:
            return app(environ, start_response)

        def with_headers(status: str, response_headers: list[tuple[str, str]], exc_info=None):
            return start_response(status, [*response_headers, *headers], exc_info)

        return app(environ, with_headers)

    return guarded


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class HttpServer:
    def __init__(self, listen: str, app, handler_class: type[WSGIRequestHandler] = _QuietHandler,
                 guard: WebGuard | None = None):
        # handler_class: sitewatch-ingest takes uploads, and answers Expect: 100-continue in its own handler
        host, port = parse_listen_address(listen)
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._app = app
        self._server = make_server(host or "0.0.0.0", port, app, server_class=server_class,
                                   handler_class=handler_class)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        if guard is not None:
            self.protect(guard)

    def protect(self, guard: WebGuard) -> None:
        """Serves behind `guard`'s web config (TLS, basic auth, headers) from now on; before start()."""
        self._server.guard = guard
        self._server.set_app(guarded_app(self._app, guard))

    @property
    def scheme(self) -> str:
        guard = self._server.guard
        return "https" if guard is not None and guard.tls is not None else "http"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
