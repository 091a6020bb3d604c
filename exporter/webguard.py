"""The web config in force for one program's HTTP server, and what it enforces.

A `WebGuard` holds the `WebConfig` read from ``--web.config.file`` with its basic-auth users, answers the
servers' questions (the TLS context for a new connection, whether a request's credentials pass, which
headers to add) and counts and logs what it refuses: in ``<program>_http_auth_failures_total{reason}``
and ``<program>_tls_handshake_failures_total{reason}``, a log line at most once a minute per reason,
never with the password or the Authorization header. A user name is logged only for a wrong password (it
is then a configured name): an unknown one may be a password typed into the wrong field.

The file is read again when it or a file it names (certificate, key, client CA) changes: each new
connection looks at their size, time and inode, at most once a second, so a renewed certificate or a
changed password is in force within a second or two. `reload()` reads it at once (SIGHUP, ``/-/reload``);
`read_at_next_connection()` has the next connection read it (SIGHUP where the program's own handler runs).
A file that cannot be used then is logged once and the config in force stays; at start-up it is an error.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter.config import ConfigError
from exporter.httpauth import (ACCEPTED, BUSY, REFUSALS, UNKNOWN_USER, WRONG_PASSWORD, BasicAuth, Verdicts,
                               parse_basic)
from exporter.webconfig import TlsSettings, WebConfig, load_web_config

log = logging.getLogger("sitewatch.web")

LOOK_EVERY = 1.0  # seconds between two looks at the files' states
LOG_EVERY = 60.0  # seconds between two log lines of one kind of refusal
HANDSHAKE_TIMEOUT = 10.0  # seconds a client has for the whole TLS handshake
# Why a TLS handshake failed: no handshake within HANDSHAKE_TIMEOUT; a plain HTTP request on the TLS port;
# a client certificate missing, not signed by the client CA, or without an allowed SAN; the client left
# (a port check, a scanner); anything else in the protocol (no common version or cipher, not TLS at all).
HANDSHAKE_FAILURES = ("timeout", "plain_http", "client_certificate", "closed", "protocol")
_CLIENT_CERTIFICATE_REASONS = {"PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED",
                               "NO_CERTIFICATE_RETURNED", "CERTIFICATE_REQUIRED"}

FileStates = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True)
class MetricNames:
    """The program's own names (a literal per program, so docs/metrics.md can be checked against them)."""

    auth_failures: str  # counter, without _total
    handshake_failures: str
    reload_successful: str  # gauge


def handshake_failure(err: BaseException) -> str:
    """One of HANDSHAKE_FAILURES for what a TLS handshake raised."""
    if isinstance(err, (TimeoutError, ConnectionAbortedError)):
        return "timeout"  # asyncio aborts a handshake past its timeout with ConnectionAbortedError
    if isinstance(err, ssl.SSLCertVerificationError):
        return "client_certificate"
    if isinstance(err, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError, EOFError)):
        return "closed"
    reason = getattr(err, "reason", None)
    if reason == "HTTP_REQUEST":
        return "plain_http"
    if reason in _CLIENT_CERTIFICATE_REASONS:
        return "client_certificate"
    if not isinstance(err, ssl.SSLError) and isinstance(err, OSError):
        return "closed"
    return "protocol"


class WebGuard:
    def __init__(self, path: str | Path, names: MetricNames, realm: str,
                 fits: Callable[[WebConfig], None] | None = None):
        """Reads the file now: ConfigError when it cannot be used. `fits` may refuse a config for reasons of
        the program's own (raising ConfigError), at start-up and at every reload."""
        self.path = Path(path)
        self.realm = realm
        self.challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self._fits = fits
        self.verdicts = Verdicts()
        self.auth_failures = Counter(names.auth_failures, "Requests refused for their credentials, by reason "
                                     "(missing, malformed, unknown_user, wrong_password, busy).", ["reason"], registry=None)
        self.handshake_failures = Counter(names.handshake_failures, "TLS handshakes that failed, by reason "
                                          "(timeout, plain_http, client_certificate, closed, protocol).", ["reason"],
                                          registry=None)
        self.reload_successful = Gauge(names.reload_successful, "1 if the web config file was last read "
                                       "successfully; 0 while a changed one is refused and the previous one stays.",
                                       registry=None)
        for reason in REFUSALS:
            self.auth_failures.labels(reason)
        for reason in HANDSHAKE_FAILURES:
            self.handshake_failures.labels(reason)
        self._reload_lock = threading.Lock()
        self._logged: dict[str, float] = {}
        self._log_lock = threading.Lock()
        self._last_problem: str | None = None
        self._next_look = 0.0
        self._asked = False
        before = _states((self.path,))
        config, auth = self._load()
        self._use(config, auth, _states_since(before, (self.path,), config.files))
        self.reload_successful.set(1)

    def register(self, registry: CollectorRegistry) -> None:
        for metric in (self.auth_failures, self.handshake_failures, self.reload_successful):
            registry.register(metric)

    # --- the config in force ---------------------------------------------------------------------------

    @property
    def config(self) -> WebConfig:
        return self._config

    @property
    def tls(self) -> TlsSettings | None:
        return self._config.tls

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._config.headers

    def _load(self) -> tuple[WebConfig, BasicAuth]:
        config = load_web_config(self.path)
        if self._fits is not None:
            self._fits(config)
        return config, BasicAuth(config.users, self.verdicts, config.usual_cost)

    def _no_protection_dropped(self, config: WebConfig) -> None:
        """A reload may not switch TLS or passwords off: an editor that truncates the file while it writes,
        or a file emptied by mistake, would otherwise open every endpoint to the LAN within a second.
        Turning them off takes a restart, which is a decision, not an accident."""
        dropped = [what for what, was, now in (("TLS", self._config.tls is not None, config.tls is not None),
                                               ("basic auth", bool(self._config.users), bool(config.users)))
                   if was and not now]
        if dropped:
            raise ConfigError(self.path, f"expected {' and '.join(dropped)} as before: a reload does not switch "
                                         "them off (restart the program to serve without them)")

    def _use(self, config: WebConfig, auth: BasicAuth, states: FileStates) -> None:
        self._config, self._auth, self._states = config, auth, states
        expires = ""
        if config.tls is not None and config.tls.not_after is not None:
            expires = time.strftime(" certificate_expires=%Y-%m-%dT%H:%M:%SZ", time.gmtime(config.tls.not_after))
            if config.tls.not_after < time.time():
                log.error("event=web_certificate_expired file=%s", config.files[1])
        log.info("event=web_config_loaded file=%s tls=%s users=%d%s", self.path,
                 "off" if config.tls is None else "on", len(config.users), expires)

    def changed(self) -> bool:
        """Whether the file or one it names changed since it was read (cheap: a stat per file, at most once
        a second; False in between), or a signal asked for it to be read again."""
        if self._asked:
            self._asked = False
            return True
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + LOOK_EVERY
        return _states(self._config.files) != self._states

    def read_at_next_connection(self) -> None:
        """For a signal handler (it takes no lock): the next connection reads the file again, changed or not."""
        self._asked = True

    def refresh(self) -> None:
        """Reads the file again if it changed; for a server's new connection, in a thread that may wait.
        While another thread reads it, the config in force serves."""
        if not self._reload_lock.locked() and self.changed():
            self.reload()

    def reload(self) -> tuple[bool, str]:
        """Reads the file now. A file that cannot be used is logged (once while it stays the same) and the
        config in force stays; the answer says which."""
        with self._reload_lock:
            known = self._config.files
            before = _states(known)  # taken before reading: an edit made while it is read is seen next time
            try:
                config, auth = self._load()
                self._no_protection_dropped(config)
            except ConfigError as err:
                self._states = before  # these versions are judged: the next look waits for another change
                self.reload_successful.set(0)
                if str(err) != self._last_problem:
                    self._last_problem = str(err)
                    log.error("event=web_config_rejected error=%r kept=previous_web_config", str(err))
                return False, f"web config rejected, the previous one stays in force: {err}"
            self._last_problem = None
            self._use(config, auth, _states_since(before, known, config.files))
            self.reload_successful.set(1)
            return True, f"web config reloaded: {config.describe()}"

    # --- requests ---------------------------------------------------------------------------------------

    @property
    def auth_required(self) -> bool:
        return self._auth.required

    def quick(self, header: str, remote: str) -> str | None:
        """ACCEPTED, a refusal (counted and logged), or None when only `check()` can tell (bcrypt)."""
        verdict = self._auth.quick(header)
        if verdict is not None and verdict != ACCEPTED:
            self._refused(verdict, header, remote)
        return verdict

    def check(self, header: str, remote: str) -> str:
        """ACCEPTED or the refusal (counted and logged); may take a bcrypt check's time."""
        verdict = self._auth.check(header)
        if verdict != ACCEPTED:
            self._refused(verdict, header, remote)
        return verdict

    def refuse_busy(self, header: str, remote: str) -> str:
        """BUSY, counted and logged: a server that holds its own line of checks refuses past its length."""
        self._refused(BUSY, header, remote)
        return BUSY

    def _refused(self, reason: str, header: str, remote: str) -> None:
        self.auth_failures.labels(reason).inc()
        if not self._may_log(f"auth:{reason}"):
            return
        user = ""
        if reason == WRONG_PASSWORD:
            parsed = parse_basic(header)
            user = f" user={getattr(parsed, 'user', None)!r}"
        hint = " hint=no_such_user_in_basic_auth_users" if reason == UNKNOWN_USER else ""
        log.warning("event=http_auth_refused reason=%s remote=%s%s%s", reason, remote, user, hint)

    def handshake_failed(self, err: BaseException, remote: str) -> str:
        reason = handshake_failure(err)
        self.counted_handshake_failure(reason, remote, _detail(err))
        return reason

    def counted_handshake_failure(self, reason: str, remote: str, detail: str) -> None:
        self.handshake_failures.labels(reason).inc()
        if self._may_log(f"tls:{reason}"):
            level = logging.INFO if reason == "closed" else logging.WARNING
            log.log(level, "event=tls_handshake_failed reason=%s remote=%s detail=%r", reason, remote, detail)

    def _may_log(self, key: str) -> bool:
        now = time.monotonic()
        with self._log_lock:
            if now - self._logged.get(key, -LOG_EVERY) < LOG_EVERY:
                return False
            self._logged[key] = now
        return True


def _detail(err: BaseException) -> str:
    text = getattr(err, "reason", None) or getattr(err, "verify_message", None) or str(err) or type(err).__name__
    return str(text)[:200]


def _states(files: tuple[Path, ...] | list[Path]) -> FileStates:
    found = []
    for file in files:
        try:
            info = os.stat(file)
        except OSError:
            found.append(None)
            continue
        found.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(found)


def _states_since(before: FileStates, known: tuple[Path, ...], files: tuple[Path, ...]) -> FileStates:
    """The states of `files` for the next look: those taken before reading for the files known then, the
    others now."""
    if files[:len(known)] == known:
        return before + _states(files[len(known):])
    return _states(files)
