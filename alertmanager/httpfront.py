"""The receiver's HTTP server: one event loop that reads every connection, and deadlines for each.

Why not a thread-per-request WSGI server: Alertmanager must be answered within a second whatever else
holds a connection, and a storm of webhooks must cost little CPU per request. Here

* a request head must arrive whole within `head_timeout` of its first byte, and a body within
  `body_timeout` of its head: a client that dribbles a header line every few seconds is cut off;
* when `max_connections` are open, a new connection is still accepted: the connection that has been idle
  or half-sent the longest is closed to make room (one being answered never is). Alertmanager's
  requests arrive whole, so they are answered, while a flood of idle sockets only evicts itself;
* ``POST /alert/<route>`` is read, checked, routed and committed to the outbox on the loop, in one
  commit with every webhook that arrived with it (desk.py); everything else (``/metrics``, the status
  page, health) goes to the Flask application on a small thread pool.

Failures of the connection itself (a timeout, an eviction, a malformed head) are counted by reason in
``sitewatch_receiver_http_refused_total`` and logged at most once a minute per reason.

With a web config (``--web.config.file``, exporter.webguard) a connection is first upgraded to TLS on the loop
(`loop.start_tls`, with a deadline for the whole handshake), and every request's credentials are checked as
soon as its head is in, before any body is read. Known credentials cost a lookup on the loop; only the first
sight of new ones waits for a bcrypt check, on a thread of its own, while the loop serves the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import logging
import re
import resource
import signal
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

from alertmanager.desk import Answer, Ticket, WebhookDesk
from alertmanager.httphead import Head, HeadProblem, parse_head
from alertmanager.outbox import EnqueueResult
from alertmanager.writer import commit_each
from exporter.httpauth import ACCEPTED
from exporter.webconfig import TlsSettings
from exporter.webguard import HANDSHAKE_TIMEOUT, WebGuard

log = logging.getLogger("sitewatch.receiver")
WEBHOOK_PATH = re.compile(r"/alert/([^/]+)")
# A body this large is read and checked off the loop, so a 16 MiB payload does not pause the others.
LARGE_BODY = 256 * 1024
# Bodies of requests other than webhooks (none is expected): enough for any form, small enough to hold.
OTHER_BODY_LIMIT = 64 * 1024
SWEEP_EVERY = 0.25
# How long a commit on the loop waits for another writer (an operator's sqlite3 shell, a backup) before
# the webhooks are answered 503 and retried by Alertmanager: the loop serves everyone meanwhile.
LOCK_PATIENCE = 0.5
UNREAD_ANSWERS_LIMIT = 1024 * 1024
# bcrypt checks of new credentials that may wait for the auth thread (about 60 ms each): beyond them a new
# password is refused unchecked, so a flood neither grows memory nor delays webhooks by more than a second.
MOST_AUTH_WAITING = 16
FDS_BESIDES_CONNECTIONS = 64  # the outbox, logs, the Telegram clients' sockets, the thread pool


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    head_timeout: float = 10.0  # from the first byte of a request to the blank line that ends its head
    body_timeout: float = 30.0  # from the end of the head to the last byte of the body
    idle_timeout: float = 120.0  # a keep-alive connection with no request
    max_head: int = 64 * 1024
    max_body: int = 16 * 1024 * 1024


class Connection(asyncio.Protocol):
    """One client connection: reads requests one at a time and answers them in order."""

    def __init__(self, front: "FrontServer"):
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.remote = ""
        self.buffer = bytearray()
        self.head: Head | None = None
        self.state = "idle"  # idle -> head -> body -> busy -> idle (keep-alive) or closed
        self.since = time.monotonic()  # when the current state began
        self.request_started = self.since
        self.opened_at = self.since
        self.closed = False
        self.answered = 0  # requests answered on this connection
        self.eof = False  # the client has shut down its sending side
        self.webhook = False  # busy with a webhook (never evicted), not a status page or a scrape
        self.waiting: tuple[Head, Ticket] | None = None  # read, waiting for its commit
        self.securing = False  # in its TLS handshake: what arrives waits in the buffer
        self.tls = False  # served over TLS

    # --- asyncio's callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else ""
        self.front.opened(self)
        self.front.secure(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.front.closed(self)

    def eof_received(self) -> bool:
        """The client is done sending: answer what it sent whole (a pipeline), then close."""
        self.eof = True
        if self.tls:
            return False  # asyncio's TLS layer closes on the client's end of sending whatever the answer
        return self.state in ("busy", "auth") or (self.state == "head" and b"\r\n\r\n" in self.buffer)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.securing:
            return  # the first request may come with the handshake's last bytes, before the TLS transport is ours
        if self.state in ("busy", "auth"):
            # One request at a time; the next waits in the buffer (not by pausing the socket: two system
            # calls a request). A client that piles up more than a request's worth meanwhile is cut off.
            if len(self.buffer) > self.front.limits.max_head + self.front.limits.max_body:
                self.abort("not_reading")
            return
        if self.state == "idle":
            self._enter("head")
        self._advance()

    # --- reading -------------------------------------------------------------------------------------

    def _enter(self, state: str) -> None:
        self.state = state
        self.since = time.monotonic()
        if state == "head":
            self.request_started = self.since  # the webhook's duration is counted from here

    def _advance(self) -> None:
        if self.closed:
            return
        if self.state == "head":
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > self.front.limits.max_head:
                    self.refuse(HeadProblem(431, "head_too_large", "the request head is over 64 KiB"))
                elif self.eof:
                    self._close()
                return
            if end > self.front.limits.max_head:
                self.refuse(HeadProblem(431, "head_too_large", "the request head is over 64 KiB"))
                return
            try:
                self.head = parse_head(bytes(self.buffer[:end].lstrip(b"\r\n")))
            except HeadProblem as problem:
                self.refuse(problem)
                return
            del self.buffer[:end + 4]
            if not self.front.authorized(self, self.head) or not self._head_accepted():
                return
        if self.state == "body":
            assert self.head is not None
            if len(self.buffer) < self.head.content_length:
                if self.eof:
                    self._close()
                return
            body = bytes(self.buffer[:self.head.content_length])
            del self.buffer[:self.head.content_length]
            self._enter("busy")
            self.front.dispatch(self, self.head, body)

    def _head_accepted(self) -> bool:
        """After the head's credentials pass: whether its body is worth reading (state "body"), else answered."""
        assert self.head is not None
        webhook = WEBHOOK_PATH.fullmatch(self.head.path) is not None
        if webhook and self.head.method == "POST" and self.front.refuse_before_body(self, self.head):
            return False
        limit = self.front.limits.max_body if webhook else OTHER_BODY_LIMIT
        if self.head.content_length > limit:
            if webhook:
                self.front.refuse_webhook_too_large(self)
            else:
                self.refuse(HeadProblem(413, "too_large", f"the body is over {limit} bytes"))
            return False
        if self.head.expects_continue and self.head.content_length and len(self.buffer) == 0:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._enter("body")
        return True

    def authorized_later(self, verdict: str) -> None:
        """The bcrypt check of this connection's request is over (on the loop again)."""
        if self.closed or self.state != "auth":
            return
        if verdict != ACCEPTED:
            self.front.challenge(self)
            return
        if self._head_accepted():
            self._advance()

    def secured(self, transport: asyncio.Transport) -> None:
        """The TLS handshake is over: from now on the TLS transport carries the requests."""
        self.transport = transport
        self.securing = False
        self.tls = True
        if self.buffer:
            self.data_received(b"")

    # --- answering -----------------------------------------------------------------------------------

    def respond(self, status: int, body: bytes, headers: list[tuple[str, str]], keep_alive: bool) -> None:
        if self.closed:
            return
        reason = _reason(status)
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
        lines += [f"{name}: {value}" for name, value in self.front.extra_headers]
        lines.append(f"Content-Length: {len(body)}")
        if not keep_alive:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if self.transport.get_write_buffer_size() > UNREAD_ANSWERS_LIMIT:
            self.abort("not_reading")  # pipelines requests but never reads the answers
            return
        if not keep_alive or (self.eof and not self.buffer):
            self.transport.close()
            self.closed = True
            return
        self.head = None
        self.webhook = False
        self.answered += 1
        self._enter("idle")
        if self.buffer:  # a pipelined request arrived with the last one: read it on the loop's next turn,
            self._enter("head")  # not from here, where a long pipeline would recurse answer by answer
            self.front.loop.call_soon(self._advance)

    def respond_json(self, status: int, document: dict[str, Any], keep_alive: bool,
                     headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self.respond(status, body, [("Content-Type", "application/json"), *(headers or {}).items()], keep_alive)

    def refuse(self, problem: HeadProblem) -> None:
        """A request the connection cannot carry on from: answer it and close."""
        self.front.count_refusal(problem.reason, self.remote, problem.message)
        self.respond_json(problem.status, {"status": "error", "error": problem.reason, "message": problem.message},
                          keep_alive=False)

    def _close(self) -> None:
        self.closed = True
        self.transport.close()

    def abort(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()
            self.front.count_refusal(reason, self.remote, "")


class FrontServer:
    def __init__(self, desk: WebhookDesk, wsgi_app: Callable, limits: Limits, threads: int = 4,
                 guard: WebGuard | None = None):
        """`guard`: the web config in force (TLS, basic auth, headers), or None for plain HTTP without it."""
        self.desk = desk
        self.wsgi_app = wsgi_app
        self.limits = limits
        self.guard = guard
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="receiver-web")
        # bcrypt checks and web config reads: slow, rare, and never in the way of the status page's threads
        self.auth_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-auth")
        self.auth_waiting = 0  # checks submitted to auth_pool and not yet answered
        self.connections: set[Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._stopped: asyncio.Event | None = None
        self._to_commit: list[Connection] = []
        metrics = desk.metrics
        self.refused = metrics.http_refused
        metrics.connections_open.set_function(lambda: len(self.connections))

    # --- life cycle ----------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # Bound the backlog by what is served anyway; a full backlog makes clients retry their SYN.
        self.server = await self.loop.create_server(lambda: Connection(self), host or None, port,
                                                    backlog=min(4096, self.limits.max_connections), reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        self.loop.create_task(self._sweep())

    async def serve_until_stopped(self) -> None:
        assert self._stopped is not None
        for name in ("SIGTERM", "SIGINT"):
            if hasattr(signal, name):
                self.loop.add_signal_handler(getattr(signal, name), self._stopped.set)
        if self.guard is not None and hasattr(signal, "SIGHUP"):
            self.loop.add_signal_handler(signal.SIGHUP, self.reload_web_config)
        await self._stopped.wait()
        self.server.close()
        # Answer what is being answered (each waits at most for its commit), then drop the rest.
        deadline = time.monotonic() + 5.0
        while any(c.state == "busy" for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort("shutdown")
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.auth_pool.shutdown(wait=False, cancel_futures=True)

    # --- connections ---------------------------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        if len(self.connections) >= self.limits.max_connections:
            victim = self._least_useful()
            if victim is not None:
                victim.abort("evicted")
            # With none to evict, every connection is committing a webhook: a moment's excess is harmless.
        self.connections.add(connection)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)

    def _least_useful(self) -> Connection | None:
        """Whom a new connection replaces: a keep-alive connection idle longest; failing that, the oldest
        connection that is not committing a webhook: one still sending its request (a new one that sent
        nothing yet included) or one being answered a status page or a scrape. Alertmanager's requests
        arrive whole within milliseconds of connecting, so a stream of fresh or dribbling sockets, or of
        pipelined scrapes, replaces itself and not Alertmanager's connection."""
        kept_alive, others = [], []
        for connection in self.connections:
            if connection.closed or connection.webhook and connection.state == "busy":
                continue
            (kept_alive if connection.state == "idle" and connection.answered else others).append(connection)
        if kept_alive:
            return min(kept_alive, key=lambda c: c.since)
        return min(others, key=lambda c: c.opened_at) if others else None

    async def _sweep(self) -> None:
        limits = self.limits
        timeouts = {"idle": limits.idle_timeout, "head": limits.head_timeout, "body": limits.body_timeout}
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            now = time.monotonic()
            for connection in list(self.connections):
                allowed = timeouts.get(connection.state)
                if allowed is not None and not connection.closed and now - connection.since > allowed:
                    reason = "idle_timeout" if connection.state == "idle" else f"{connection.state}_timeout"
                    if connection.state == "idle":
                        connection.closed = True
                        connection.transport.close()  # a keep-alive that ran out is no refusal
                    else:
                        connection.abort(reason)

    # --- the web config: TLS, basic auth, headers -------------------------------------------------------

    @property
    def extra_headers(self) -> tuple[tuple[str, str], ...]:
        return self.guard.headers if self.guard is not None else ()

    def reload_web_config(self) -> None:
        """SIGHUP: the web config file is read again on the auth thread; the loop serves on meanwhile."""
        self.auth_pool.submit(self._reload_web_config)

    def _reload_web_config(self) -> None:
        try:
            self.guard.reload()
        except Exception:  # a surprise in a reload must not go unseen in a thread nobody waits for
            log.exception("event=web_config_reload_failed")

    def secure(self, connection: Connection) -> None:
        """A new connection: its TLS handshake starts, when the web config asks for TLS."""
        if self.guard is None:
            return
        if self.guard.changed():
            self.reload_web_config()  # this connection is served by the config in force; the next ones by the new
        tls = self.guard.tls
        if tls is None:
            return
        connection.securing = True
        connection.transport.pause_reading()  # the ClientHello is for the TLS layer, not for the request reader
        self.loop.create_task(self._handshake(connection, tls))

    async def _handshake(self, connection: Connection, tls: TlsSettings) -> None:
        raw = connection.transport
        try:
            transport = await self.loop.start_tls(raw, connection, tls.context, server_side=True,
                                                  ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - whatever a client makes a handshake raise, the loop serves on
            # The connection ends here; asyncio tells a protocol nothing of one lost during its handshake.
            if not connection.closed:
                self.guard.handshake_failed(err, connection.remote)
                connection.closed = True
            raw.abort()
            self.closed(connection)
            return
        if transport is None or connection.closed:  # evicted or shut down while it shook hands
            if transport is not None:
                transport.abort()
            return
        if not tls.peer_allowed(transport.get_extra_info("peercert")):
            self.guard.counted_handshake_failure("client_certificate", connection.remote,
                                                 "no allowed SAN in the client certificate")
            connection.closed = True
            transport.abort()
            self.closed(connection)
            return
        connection.secured(transport)

    def authorized(self, connection: Connection, head: Head) -> bool:
        """Whether the request's credentials pass now. False: it was answered 401, or (state "auth") its
        credentials are new and a bcrypt check on the auth thread will tell (Connection.authorized_later)."""
        guard = self.guard
        if guard is None or not guard.auth_required:
            return True
        header = head.header("authorization")
        verdict = guard.quick(header, connection.remote)
        if verdict == ACCEPTED:
            return True
        if verdict is not None:
            self.challenge(connection)
            return False
        if self.auth_waiting >= MOST_AUTH_WAITING:
            # A flood of new passwords: each queued check would hold its connection (and TLS buffers) until
            # its turn, and delay webhooks behind it; refused at once, unchecked, like the exporter does.
            guard.refuse_busy(header, connection.remote)
            self.challenge(connection)
            return False
        connection.state = "auth"
        self.auth_waiting += 1
        future = self.auth_pool.submit(self._check_if_open, guard, header, connection)
        future.add_done_callback(lambda done: self._call_on_loop(self._checked, connection, done))
        return False

    @staticmethod
    def _check_if_open(guard: Any, header: str, connection: Connection) -> str | None:
        # A client that went away while its check waited needs none: bcrypt's time goes to those still there.
        return None if connection.closed else guard.check(header, connection.remote)

    def _call_on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed at shutdown: nobody waits for the answer
            pass

    def _checked(self, connection: Connection, future: concurrent.futures.Future) -> None:
        self.auth_waiting -= 1
        if future.cancelled() or connection.closed:  # shutting down, or the client left
            return
        try:
            verdict = future.result()
        except Exception:  # a fault of ours: refused, and the log says why
            log.exception("event=auth_check_failed")
            verdict = "error"
        if verdict is None:
            return
        connection.authorized_later(verdict)

    def challenge(self, connection: Connection) -> None:
        """401 with the Basic challenge; the connection closes, as a body may follow that is never read."""
        body = b"Unauthorized: this server asks for a user and password (HTTP basic auth).\n"
        connection.respond(401, body, [("Content-Type", "text/plain; charset=utf-8"),
                                       ("WWW-Authenticate", self.guard.challenge)], keep_alive=False)

    def count_refusal(self, reason: str, remote: str, message: str) -> None:
        self.refused.labels(reason).inc()
        if reason != "shutdown":
            self.desk.receiver.complain(f"http:{reason}", "event=connection_refused reason=%s remote=%s detail=%r",
                                        reason, remote, message)

    def refuse_before_body(self, connection: Connection, head: Head) -> bool:
        """Wrong credentials or an unknown route are answered as soon as the head is in: a body of up to
        webhook.max_body is read only for a request that may be stored."""
        match = WEBHOOK_PATH.fullmatch(head.path)
        answer = self.desk.precheck(_route_of(match), head.header("authorization"), connection.remote)
        if answer is None:
            return False
        connection.respond_json(answer.status, answer.body, keep_alive=False, headers=answer.headers)
        return True

    def refuse_webhook_too_large(self, connection: Connection) -> None:
        answer = self.desk.too_large()
        connection.respond_json(answer.status, answer.body, keep_alive=False, headers=answer.headers)

    # --- requests ------------------------------------------------------------------------------------

    def dispatch(self, connection: Connection, head: Head, body: bytes) -> None:
        match = WEBHOOK_PATH.fullmatch(head.path) if head.method == "POST" else None
        if match is None:
            self._to_wsgi(connection, head, body)
            return
        connection.webhook = True
        route = _route_of(match)
        authorization = head.header("authorization")
        if len(body) > LARGE_BODY:
            future = self.pool.submit(self.desk.prepare, route, authorization, body, connection.remote,
                                      connection.request_started)
            future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(self._prepared, connection, head, f))
            return
        self._prepared_now(connection, head, self.desk.prepare(route, authorization, body, connection.remote,
                                                               connection.request_started))

    def _prepared(self, connection: Connection, head: Head, future: concurrent.futures.Future) -> None:
        """A large webhook, read on a thread, is back on the loop."""
        try:
            outcome = future.result()
        except Exception:  # a fault of ours, not the sender's: say so, and Alertmanager retries
            log.exception("event=webhook_failed")
            connection.respond_json(500, {"status": "error", "error": "internal", "message": "see the receiver's log"},
                                    keep_alive=False)
            return
        self._prepared_now(connection, head, outcome)

    def _prepared_now(self, connection: Connection, head: Head, outcome: Answer | Ticket) -> None:
        if isinstance(outcome, Answer):
            connection.respond_json(outcome.status, outcome.body, head.keep_alive, outcome.headers)
            return
        connection.waiting = (head, outcome)
        self._to_commit.append(connection)
        if len(self._to_commit) == 1:
            # After every request that arrived with this one has been read: they share one commit.
            self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        """Commits the webhooks read so far, on the loop's own thread.

        A writer thread would let the loop read on during the fsync, but every hand-over of the
        interpreter's lock between the two then cost up to its switch interval (5 ms): a storm's p99 was
        several times that of this, where the fsync blocks the loop and the requests that arrive meanwhile
        wait in the kernel for the next commit, which they all share."""
        group, self._to_commit = self._to_commit, []
        webhooks = [connection.waiting[1].webhook for connection in group]
        outcomes = commit_each(self.desk.receiver.outbox, webhooks, patience=LOCK_PATIENCE)
        for connection, outcome in zip(group, outcomes):
            self._conclude(connection, outcome)

    def _conclude(self, connection: Connection, outcome: EnqueueResult | BaseException) -> None:
        if connection.waiting is None:
            return
        head, ticket = connection.waiting
        connection.waiting = None
        answer = self.desk.conclude(ticket, outcome)
        connection.respond_json(answer.status, answer.body, head.keep_alive, answer.headers)

    def _to_wsgi(self, connection: Connection, head: Head, body: bytes) -> None:
        environ = _environ(head, body, connection.remote, self.port)
        if connection.tls:
            environ["wsgi.url_scheme"] = "https"
        future = self.pool.submit(_call_wsgi, self.wsgi_app, environ)
        future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(self._wsgi_done, connection, head, f))

    def _wsgi_done(self, connection: Connection, head: Head, future: concurrent.futures.Future) -> None:
        try:
            status, headers, body = future.result()
        except Exception:
            log.exception("event=request_failed path=%r", head.path[:80])
            status, headers, body = 500, [("Content-Type", "text/plain")], b"internal error; see the receiver's log\n"
        connection.respond(status, body if head.method != "HEAD" else b"", headers, head.keep_alive)


def _route_of(match: re.Match) -> str:
    return match.group(1).encode("latin-1").decode("utf-8", errors="replace")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _environ(head: Head, body: bytes, remote: str, port: int) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method, "SCRIPT_NAME": "", "PATH_INFO": head.path, "QUERY_STRING": head.query,
        "SERVER_NAME": "sitewatch-receiver", "SERVER_PORT": str(port), "SERVER_PROTOCOL": head.version,
        "REMOTE_ADDR": remote, "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": head.header("content-type"),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in head.headers:
        if name in ("content-type", "content-length"):
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _call_wsgi(app: Callable, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
        started[:] = [int(status.split(" ", 1)[0]), headers]
        return lambda data: None  # the write() callable of WSGI, which Flask never uses

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    status, headers = started
    return status, headers, body


def raise_open_files_limit(connections: int) -> int:
    """Lifts the soft limit on open files so `connections` fit; returns how many connections can be held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FDS_BESIDES_CONNECTIONS
    if soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    return max(16, min(connections, soft - FDS_BESIDES_CONNECTIONS))
