"""Logging for sitewatch programs: one line per event, ``key=value`` fields, secrets masked.

Lines go to standard error, or with ``--log.file`` to a file that is rotated by size: a site agent started
by Windows' Task Scheduler has no console, and nobody on a till PC trims a log that grows for years.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import re
import sys
import time
from pathlib import Path

from exporter.redaction import RedactingFilter, redact

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
# After a failed rotation (on Windows a reader that opened the file without delete sharing blocks the
# rename) the file grows on, and rotation is tried again this much later, not at every line.
ROTATION_RETRY_SECONDS = 60.0


class LogFileError(Exception):
    """The log file cannot be opened; `str()` names it and why."""


def add_log_options(command: argparse.ArgumentParser) -> None:
    """``--log.level``, ``--log.file``, ``--log.file.max-size`` and ``--log.file.max-files``."""
    command.add_argument("--log.level", dest="log_level", default="info",
                         choices=["debug", "info", "warning", "error"])
    command.add_argument("--log.file", dest="log_file", metavar="PATH",
                         help="write the log to this file instead of standard error, rotated by size")
    command.add_argument("--log.file.max-size", dest="log_max_size", type=parse_size, default=DEFAULT_MAX_SIZE,
                         metavar="SIZE", help="rotate the log file at this size (default 10MiB; e.g. 500KiB, 20MiB)")
    command.add_argument("--log.file.max-files", dest="log_max_files", type=_max_files, default=DEFAULT_MAX_FILES,
                         metavar="N", help=f"rotated files to keep besides the current one (default {DEFAULT_MAX_FILES})")


_SIZE = re.compile(r"(\d{1,12})\s*([kmg]i?b?|b)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Reads ``10MiB``, ``500KiB``, ``10MB`` (also binary: a log size is not a disk's) or a number of bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 10MiB, 500KiB or a number of bytes, got {text!r}")
    unit = (match.group(2) or "b").lower()[0]
    size = int(match.group(1)) * {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit]
    if size < 4096:
        raise argparse.ArgumentTypeError(f"expected a size of at least 4KiB, got {text!r}")
    return size


def _max_files(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"expected a number of files from 1 to 100, got {text!r}")
    return int(text)


def configure(level: str = "info", file: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
              max_files: int = DEFAULT_MAX_FILES) -> None:
    """Sends the log to standard error, or to `file` rotated at `max_size`; raises LogFileError."""
    handler: logging.Handler
    if file:
        handler = _file_handler(Path(file), max_size, max_files)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S%z"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_from(args: argparse.Namespace) -> bool:
    """`configure` from the options `add_log_options` adds; False, after saying why on standard error, when
    the log file cannot be written (the caller exits with its usage status)."""
    log_file, config = getattr(args, "log_file", None), getattr(args, "config", None)
    if log_file and config and _same_file(log_file, config):
        # Log lines appended to the config would make the exporter reload it every few seconds, and the next
        # start fail.
        sys.stderr.write(f"cannot start: --log.file {log_file} is the config file itself; give the log a file "
                         "of its own, e.g. logs/sitewatch-exporter.log\n")
        return False
    try:
        configure(getattr(args, "log_level", "info"), log_file,
                  getattr(args, "log_max_size", DEFAULT_MAX_SIZE), getattr(args, "log_max_files", DEFAULT_MAX_FILES))
    except LogFileError as err:
        sys.stderr.write(f"cannot start: {err}\n")
        return False
    return True


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # a log file that does not exist yet is not the config
        return os.path.abspath(one) == os.path.abspath(other)


def fatal(text: str) -> None:
    """Says why the program stops: on standard error, and also in the log file when there is one (a task
    started at boot has no console, so a config error would otherwise be seen nowhere)."""
    text = redact(text)
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
    if any(isinstance(handler, logging.FileHandler) for handler in logging.getLogger().handlers):
        quoted = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        logging.getLogger("sitewatch").error('event=stopped_by_error error="%s"', quoted)


def _file_handler(path: Path, max_size: int, max_files: int) -> logging.Handler:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened now, not at the first line: a path that cannot be written is an error at start, not a
        # silence found out weeks later.
        return SizeRotatingFileHandler(path, max_size, max_files)
    except OSError as err:
        raise LogFileError(f"cannot write the log file {path}: {err.strerror or err}") from None


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that survives a rotation it cannot do.

    The standard handler retries a failed rename at every line and prints a traceback each time. This one
    goes on writing to the current file, says once in the file why it could not rotate, and tries again a
    minute later.
    """

    def __init__(self, path: Path, max_size: int, max_files: int):
        super().__init__(path, maxBytes=max_size, backupCount=max_files, encoding="utf-8")
        self._retry_at = 0.0
        self._failure_said = False
        self._write_failure_said = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - the base class's name
        # A full disk fails every line; the standard handler prints a traceback for each. Once is enough.
        self._say_write_failure(sys.exc_info()[1])

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            self._say_write_failure(err)

    def close(self) -> None:
        try:
            super().close()
        except OSError as err:  # what was buffered cannot be written either
            self._say_write_failure(err)

    def _say_write_failure(self, error: BaseException | None) -> None:
        if not self._write_failure_said:
            self._write_failure_said = True
            sys.stderr.write(f"sitewatch: cannot write the log file {self.baseFilename}: {error}; "
                             "lines are lost until it can be written again\n")

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - the base class's name
        if time.monotonic() < self._retry_at:
            return False
        # The base class reopens the stream to test a file that is not a regular file (os.devnull); a
        # size check is all a log on disk needs.
        if self.stream is None:
            self.stream = self._open()
        return self.stream.tell() + len(self.format(record)) + 1 >= self.maxBytes

    def doRollover(self) -> None:  # noqa: N802 - the base class's name
        try:
            super().doRollover()
        except OSError as err:
            self._retry_at = time.monotonic() + ROTATION_RETRY_SECONDS
            if self.stream is None:
                self.stream = self._open()
            if not self._failure_said:
                self._failure_said = True
                self.stream.write(f"ts={time.strftime('%Y-%m-%dT%H:%M:%S%z')} level=WARNING logger=sitewatch.log "
                                  f"event=log_rotation_failed file={os.path.basename(self.baseFilename)} "
                                  f"error=\"{err.strerror or err}\" retry_every={ROTATION_RETRY_SECONDS:.0f}s\n")
                self.stream.flush()
        else:
            self._failure_said = False
