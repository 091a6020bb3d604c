"""Keeps secret values out of log lines and error texts.

Every secret the program reads is registered here; `redact` replaces each occurrence in a text, and
`RedactingFilter` applies it to every log record, arguments and traceback included.
"""

from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
MASK = "<redacted>"
# user:password@ in URLs written into messages by HTTP libraries, and in an address written without its
# scheme (a config's "user:pass@pgw.example.ru:9091", echoed by the error that says the scheme is missing).
_URL_USERINFO = re.compile(r"(?:(?<=://)|(?<![^\s'\"=(\[,]))[^/@\s:'\"=(\[,]+:[^/@\s'\"]+@(?=[\w\[])")


def register(value: str) -> None:
    global _pattern
    if len(value) < 4:  # too short to mask without mangling ordinary words
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _URL_USERINFO.sub(MASK + "@", text)


class RedactingFilter(logging.Filter):
    """Formats the record's message early and masks secrets in it and in any exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
