"""The one HTTP client set-up of the exporter: every check that fetches a page goes through `HttpClient`.

Each fetch opens a fresh connection (as a prober should: a pooled connection would hide a dead listener
and skip the TLS handshake), reads the body up to a size cap within one overall deadline, reads the
server certificate's expiry, and turns every failure into an `HttpFailure` with a short reason word and a
sentence a technician can act on. The blocking work runs on a bounded thread pool.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
from cryptography import x509

from exporter import __version__
from exporter import schema as s
from exporter.redaction import redact
from exporter.workers import BlockingWorkers

USER_AGENT = f"sitewatch/{__version__}"
# The `tls` options of every check that fetches pages.
TLS_OPTIONS = s.Field(s.struct({
    "verify": s.Field(s.boolean(), default=True),
    "ca_file": s.Field(s.existing_file("a PEM file of CA certificates")),
}), default={"verify": True, "ca_file": None})
# The certificates of the latest TLS connection this thread opened. They are read right after the
# handshake, because a server that answers "Connection: close" has the socket gone before the body is read.
_handshakes = threading.local()
# verify: false is the user's explicit choice; urllib3 would otherwise print a warning on every request.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class _CertificateRecordingConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _handshakes.expiry = _certificate_expiry(self.sock)


class _CertificateRecordingPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _CertificateRecordingConnection


class _ProbeAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                   "https": _CertificateRecordingPool}


@dataclass(frozen=True)
class HttpRequest:
    url: str
    timeout: float
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth: tuple[str, str] | None = None
    verify_tls: bool = True
    ca_file: str | None = None
    follow_redirects: bool = True
    max_redirects: int = 10
    body_size_limit: int = 10 * 1024 * 1024
    body: bytes | None = None
    proxy: str | None = None  # besides the usual HTTP(S)_PROXY variables, which are always honoured


@dataclass
class HttpResponse:
    status: int
    reason: str
    url: str
    headers: dict[str, str]
    body: bytes
    encoding: str | None
    elapsed: float
    redirects: int
    tls: bool
    cert_expiry: float | None = None  # unix time the earliest certificate seen in the chain expires

    def text(self) -> str:
        """The body as text: the declared charset, else UTF-8, else cp1251 (common on Russian servers)."""
        for encoding in filter(None, (self.encoding, "utf-8", "cp1251")):
            try:
                return self.body.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                continue
        return self.body.decode("utf-8", errors="replace")


class HttpFailure(Exception):
    def __init__(self, reason: str, message: str, response: HttpResponse | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = redact(message)
        self.response = response


class HttpClient:
    """Fetches pages for checks on the process's pool of blocking workers."""

    def __init__(self, workers: BlockingWorkers | None = None):
        self.workers = workers or BlockingWorkers()

    async def fetch(self, request: HttpRequest) -> HttpResponse:
        return await self.workers.run(fetch, request)

    def close(self) -> None:
        self.workers.close()


def fetch(request: HttpRequest, cookies: requests.cookies.RequestsCookieJar | None = None) -> HttpResponse:
    """Performs one request; raises HttpFailure with a reason word on any failure.

    With `cookies`, the jar is sent and takes the cookies the server sets, so a caller can keep a server
    session across fetches and runs.
    """
    deadline = time.monotonic() + request.timeout
    session = requests.Session()
    if cookies is not None:
        session.cookies = cookies
    session.mount("https://", _ProbeAdapter())
    session.max_redirects = request.max_redirects
    if request.proxy:
        session.proxies = {"http": request.proxy, "https": request.proxy}
    _handshakes.expiry = None
    headers = {"User-Agent": USER_AGENT, "Connection": "close", **dict(request.headers)}
    started = time.perf_counter()
    try:
        response = session.request(
            request.method, request.url, headers=headers, auth=request.basic_auth, data=request.body,
            verify=(request.ca_file or True) if request.verify_tls else False,
            allow_redirects=request.follow_redirects, stream=True, timeout=request.timeout,
        )
    except requests.exceptions.SSLError as err:
        raise HttpFailure("tls", f"TLS handshake with {_host(request.url)} failed: {_root_cause(err)}") from None
    except requests.exceptions.ConnectTimeout:
        raise HttpFailure("timeout", f"no connection to {_host(request.url)} within {request.timeout:g}s") from None
    except requests.exceptions.ReadTimeout:
        raise HttpFailure("timeout", f"{_host(request.url)} sent no answer within {request.timeout:g}s") from None
    except requests.exceptions.TooManyRedirects:
        raise HttpFailure("redirects", f"more than {request.max_redirects} redirects from {request.url}") from None
    except requests.exceptions.ConnectionError as err:
        raise _connection_failure(request.url, err) from None
    except requests.exceptions.RequestException as err:
        raise HttpFailure("connect", f"request to {request.url} failed: {_root_cause(err)}") from None
    try:
        cert_expiry = _handshakes.expiry if response.url.startswith("https:") else None
        body = _read_body(response, request, deadline)
    finally:
        response.close()
        session.close()
    content_type = response.headers.get("Content-Type", "")
    return HttpResponse(
        status=response.status_code, reason=response.reason or "", url=response.url,
        headers=dict(response.headers), body=body,
        encoding=requests.utils.get_encoding_from_headers(response.headers) if "charset" in content_type else None,
        elapsed=time.perf_counter() - started, redirects=len(response.history),
        tls=response.url.startswith("https:"), cert_expiry=cert_expiry,
    )


def _read_body(response: requests.Response, request: HttpRequest, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        # read1 returns what one receive brought, so a server dripping a byte at a time still meets the
        # deadline check instead of holding this thread until a 64 KiB chunk fills.
        while chunk := response.raw.read1(65536, decode_content=True):
            chunks.append(chunk)
            size += len(chunk)
            if size > request.body_size_limit:
                raise HttpFailure("body_size", f"the body of {response.url} is larger than the "
                                               f"{request.body_size_limit} bytes allowed (body_size_limit)")
            if time.monotonic() > deadline:
                raise HttpFailure("timeout", f"{_host(request.url)} was still sending the body after "
                                             f"{request.timeout:g}s")
    except (urllib3.exceptions.ReadTimeoutError, socket.timeout):
        raise HttpFailure("timeout", f"{_host(request.url)} stopped sending the body "
                                     f"(no data within {request.timeout:g}s)") from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise HttpFailure("connect", f"reading the body of {response.url} failed: {_root_cause(err)}") from None
    return b"".join(chunks)


def _certificate_expiry(sock: Any) -> float | None:
    """The earliest expiry among the certificates the server sent (the leaf alone before Python 3.13)."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    chain: list[bytes] = []
    get_chain = getattr(sock, "get_unverified_chain", None)
    if get_chain is not None:
        chain = [cert if isinstance(cert, bytes) else cert.public_bytes(ssl.Encoding.DER)  # type: ignore[attr-defined]
                 for cert in (get_chain() or [])]
    if not chain:
        leaf = sock.getpeercert(binary_form=True)
        chain = [leaf] if leaf else []
    expiries = []
    for der in chain:
        try:
            expiries.append(x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp())
        except ValueError:
            continue
    return min(expiries) if expiries else None


def _connection_failure(url: str, err: Exception) -> HttpFailure:
    cause = err
    while cause is not None:
        if isinstance(cause, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return HttpFailure("dns", f"cannot resolve {_host(url)}: the name is unknown to DNS or to the hosts file")
        if isinstance(cause, ConnectionRefusedError):
            return HttpFailure("refused", f"connection refused by {_host(url)}: the web server is not running, "
                                          "or listens on another port")
        if isinstance(cause, urllib3.exceptions.NewConnectionError) and "refused" in str(cause).lower():
            return HttpFailure("refused", f"connection refused by {_host(url)}: the web server is not running, "
                                          "or listens on another port")
        if isinstance(cause, (urllib3.exceptions.ConnectTimeoutError, socket.timeout)):
            return HttpFailure("timeout", f"no connection to {_host(url)} in time")
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            return HttpFailure("timeout", f"{_host(url)} sent no answer in time")
        if isinstance(cause, urllib3.exceptions.MaxRetryError):
            cause = cause.reason
            continue
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], Exception) else None)
    return HttpFailure("connect", f"cannot talk to {_host(url)}: {_root_cause(err)}")


def _root_cause(err: BaseException) -> str:
    seen = err
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        if inner is None or inner is seen:
            break
        seen = inner
    if isinstance(seen, urllib3.exceptions.MaxRetryError) and seen.reason:
        seen = seen.reason
    text = getattr(seen, "reason", None) if isinstance(seen, ssl.SSLError) else None
    return redact(str(text or seen))


def _host(url: str) -> str:
    try:
        parsed = urllib3.util.parse_url(url)
        return f"{parsed.host}:{parsed.port}" if parsed.port else str(parsed.host)
    except ValueError:
        return "the server"


def public_url(url: str) -> str:
    """`url` fit to show in alerts and labels: no user:password@, no ?query (tokens live there), no #part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number: the check reports that; here it is left out
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
