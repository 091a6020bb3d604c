"""One HTTP/1.x request head, read strictly: a `Head` or a `HeadProblem` that names what is wrong.

Strict because the receiver faces whatever can reach its port: a request line of exactly three parts, no
folded or nameless header lines, one Content-Length of digits only, and no Transfer-Encoding (Alertmanager,
curl and every HTTP library send a Content-Length for a body they hold; a chunked body is refused with
411 instead of being read by a second, rarely used code path).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MOST_HEADER_LINES = 100
# More digits than any body the receiver accepts could need; int() of a long run of digits costs time.
MOST_LENGTH_DIGITS = 12
TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HeadProblem(Exception):
    """`status` is the HTTP answer; `reason` a short token for metrics and logs."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class Head:
    method: str
    target: str  # as sent: path and query, still percent-encoded
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]]  # names lower-cased, values latin-1 as WSGI wants them
    content_length: int

    def header(self, name: str, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def path(self) -> str:
        """The path, percent-decoded, as WSGI's PATH_INFO (bytes as latin-1)."""
        return unquote_to_bytes(self.target.partition("?")[0]).decode("latin-1")

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in self.header("connection").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def expects_continue(self) -> bool:
        return self.header("expect").lower() == "100-continue"


def parse_head(data: bytes) -> Head:
    """`data` is the head up to, not including, the blank line that ends it."""
    lines = data.split(b"\r\n")
    request_line, header_lines = lines[0], lines[1:]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= TOKEN:
        raise HeadProblem(400, "bad_request", "the request line is not METHOD TARGET HTTP/1.1")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HeadProblem(505 if version.startswith(b"HTTP/") else 400, "bad_version",
                          "only HTTP/1.0 and HTTP/1.1 are served")
    if not target.startswith(b"/") or any(byte <= 0x20 or byte == 0x7F for byte in target):
        raise HeadProblem(400, "bad_request", "the request target must be a path such as /alert/duty")
    if len(header_lines) > MOST_HEADER_LINES:
        raise HeadProblem(431, "head_too_large", f"more than {MOST_HEADER_LINES} header lines")
    headers = [_header(line) for line in header_lines]
    return Head(method.decode("ascii"), target.decode("latin-1"), version.decode("ascii"), headers,
                _content_length(headers))


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not name or not set(name) <= TOKEN:
        # A space before the colon or a folded line is how requests are smuggled past proxies.
        raise HeadProblem(400, "bad_request", "a header line is not NAME: VALUE")
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        raise HeadProblem(400, "bad_request", "a header value holds a control character")
    return name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")


def _content_length(headers: list[tuple[str, str]]) -> int:
    if any(name == "transfer-encoding" for name, _ in headers):
        raise HeadProblem(411, "length_required", "send the body with a Content-Length, not chunked")
    lengths = {value for name, value in headers if name == "content-length"}
    if not lengths:
        return 0
    if len(lengths) > 1:
        raise HeadProblem(400, "bad_request", "Content-Length is given twice with different values")
    text = lengths.pop()
    if not text.isascii() or not text.isdigit() or len(text) > MOST_LENGTH_DIGITS:
        raise HeadProblem(400, "bad_request", "Content-Length is not a number of bytes")
    return int(text)
