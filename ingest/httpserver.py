"""The request handler the ingest gives the exporter's HTTP server, for requests with bodies.

Three things the exporter, which only answers GETs, never needed:

* ``Expect: 100-continue`` (curl sends it before a large body): "100 Continue" goes out only when the
  application first reads the body, so an upload refused from its headers alone (a wrong token, a
  Content-Length over the limit) is answered at once and its body is never sent;
* a client that sent a body nobody read (it was refused) would get a connection reset instead of the
  answer if the socket closed on unread data, so the unread rest is drained, for at most `LINGER` seconds,
  after the answer is complete (nginx's lingering close);
* a client that stops sending in the middle gives up its thread after `timeout` seconds, quietly.
"""

from __future__ import annotations

import socket
import time
from typing import Any, BinaryIO
from wsgiref.simple_server import WSGIRequestHandler

from exporter.server import HANDLER_ERRORS, HandlerErrors

LINGER = 2.0  # seconds an unread body is drained after the answer
READ_TIMEOUT = 30.0  # seconds a request may pause between two reads


class _Body:
    """wsgi.input: sends "100 Continue" before the first read when the client waits for it, and counts what
    was read, so the handler knows whether a body was left unread."""

    def __init__(self, stream: BinaryIO, handler: "UploadRequestHandler", expects_continue: bool):
        self._stream = stream
        self._handler = handler
        self._expects_continue = expects_continue
        self.read_bytes = 0

    def _before_read(self) -> None:
        if self._expects_continue:
            self._expects_continue = False
            self._handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._handler.wfile.flush()

    def read(self, size: int = -1) -> bytes:
        self._before_read()
        data = self._stream.read(size)
        self.read_bytes += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        self._before_read()
        data = self._stream.readline(size)
        self.read_bytes += len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class UploadRequestHandler(WSGIRequestHandler):
    # HTTP/1.1 only so that parse_request() hands Expect: 100-continue to handle_expect_100(); the answers
    # themselves are wsgiref's HTTP/1.0, one request per connection.
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT
    _body: _Body | None = None
    _expects_continue = False

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):  # a timeout, a reset, a peer gone: its thread ends, nothing to report
            self.close_connection = True

    def get_stderr(self) -> HandlerErrors:
        return HANDLER_ERRORS

    def handle_expect_100(self) -> bool:
        self._expects_continue = True  # answered by _Body when the application reads the body
        return True

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        self._body = _Body(self.rfile, self, self._expects_continue)
        environ["wsgi.input"] = self._body
        return environ

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        if self._left_unread():
            _linger(self.connection)

    def _left_unread(self) -> bool:
        headers = getattr(self, "headers", None)
        if headers is None or self._body is None:
            return False
        if self._expects_continue and self._body.read_bytes == 0:
            return False  # "100 Continue" never went out: the client sent no body
        if headers.get("Transfer-Encoding"):
            return True
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            return False
        return self._body.read_bytes < length

    def log_message(self, format: str, *args: Any) -> None:  # the ingest logs what it took and refused itself
        pass


def _linger(connection: socket.socket) -> None:
    """Ends our side, then reads and drops what the client still sends, until it closes or LINGER passes."""
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER
        while (left := deadline - time.monotonic()) > 0:
            connection.settimeout(left)
            if not connection.recv(65536):
                return
    except OSError:
        pass
