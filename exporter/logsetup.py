"""Logging for sitewatch programs: one line per event, ``key=value`` fields, secrets masked."""

from __future__ import annotations

import logging
import sys

from exporter.redaction import RedactingFilter


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
