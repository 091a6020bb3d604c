"""The long-running exporter: config, ping engine, HTTP client, scheduler and HTTP server wired together.

Reloads (``POST /-/reload``, SIGHUP, or a change to the config file or its targets file, which are polled
every 2 s) load the whole new config first; a bad one is rejected, logged with its cause, and the running
config stays in force. They run one at a time (exporter.reloads), and signals are throttled besides: a burst
of SIGHUPs gives one reload at once and one more at the end of the burst. SIGHUP and ``/-/reload`` read the
web config file (``--web.config.file``) again as well; it is also read again within a second or two of a
change to it or its certificate, key or CA files (exporter.webguard).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__, exposition, statuspage
from exporter.collector import ExporterStatus
from exporter.config import Config, ConfigError, load_config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.reloads import Reloads
from exporter.scheduler import Scheduler
from exporter.server import HttpServer, build_app
from exporter.webguard import MetricNames, WebGuard

log = logging.getLogger("sitewatch.exporter")

WEB_METRICS = MetricNames(auth_failures="sitewatch_exporter_http_auth_failures",
                          handshake_failures="sitewatch_exporter_tls_handshake_failures",
                          reload_successful="sitewatch_exporter_web_config_last_reload_successful")

WATCH_INTERVAL = 2.0  # seconds between looks at the config file and the targets file
SIGNAL_GAP = 2.0  # seconds between the starts of two reloads asked for by SIGHUP
TICK = 0.2  # how often the main thread acts on the signals it noted

FileState = tuple[int, int, int] | None


def _file_state(path: str | os.PathLike[str]) -> FileState:
    try:
        info = os.stat(path)
    except OSError:
        return None  # missing (a missing targets file means no targets) or unreadable: reload tells which
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class ExporterApp:
    def __init__(self, config_path: str, listen: str, key_file: str | None = None, web_config: str | None = None):
        """`web_config`: the ``--web.config.file`` (TLS, basic auth), read again when it changes and on reloads."""
        self.config_path = config_path
        self.key_file = key_file
        config_state = _file_state(config_path)  # before reading: an edit made while it is read is seen
        self.config: Config = load_config(config_path, key_file)  # ConfigError stops start-up here
        # Its ConfigError stops start-up too; read before the port is opened.
        self.web = WebGuard(web_config, WEB_METRICS, "sitewatch-exporter") if web_config else None
        self.status = ExporterStatus()
        self.status.reload_success_at = time.time()
        self.ping_engine = PingEngine()
        self.http = HttpClient()
        # Each check's series are rendered when its run ends, so a scrape only joins them.
        self.scheduler = Scheduler(self.ping_engine, self.http, on_result=exposition.refresh)
        self.metrics = exposition.MetricsBody(self.scheduler.snapshot, self.status, lambda: self.config.sites)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.metrics.process_registry)
        if self.web is not None:
            self.web.register(self.metrics.process_registry)
        app = build_app(self.metrics.response, self.reload, self.ready,
                        lambda: statuspage.render(self.scheduler.snapshot(), str(self.config.source)))
        self.server = HttpServer(listen, app, guard=self.web)
        self._reloads = Reloads(self._reload_now)
        # Set by signal handlers, read by the main loop. Plain attributes: a handler can be interrupted by the
        # next signal, so it must not take a lock (an Event does) that it might already hold.
        self._stop_asked = False
        self._reload_asked = False
        self._signals_handled = False
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._seen = {**self._file_states(), str(config_path): config_state}

    def start(self) -> None:
        mode = self.ping_engine.open()
        self.status.icmp_permitted = mode != "none"
        has_ping = any(check.type == "ping" for check in self.config.checks())
        if mode == "none" and has_ping:
            log.error("event=icmp_unavailable problem=%r", self.ping_engine.permission_problem or "no ICMP socket")
        else:
            log.info("event=icmp_ready mode=%s", mode)
        self.ping_engine.start()
        self.scheduler.apply(self.config)
        self.scheduler.start()
        self.server.start()
        self._watcher = threading.Thread(target=self._watch, name="config-watch", daemon=True)
        self._watcher.start()
        log.info("event=started version=%s config=%s sites=%d checks=%d port=%d", __version__,
                 self.config.source, len(self.config.sites), len(self.config.checks()), self.server.port)

    def reload(self) -> tuple[bool, str]:
        """Reloads the config (or joins a reload that has not started yet) and returns its outcome; the web
        config too, when there is one. A web config that cannot be used fails the answer, not the config."""
        ok, text = self._reloads.run()
        if self.web is None:
            return ok, text
        web_ok, web_text = self.web.reload()
        return ok and web_ok, f"{text}; {web_text}"

    def _reload_now(self) -> tuple[bool, str]:
        started = time.perf_counter()
        config_state = _file_state(self.config_path)  # before reading, as at start-up
        try:
            config = load_config(self.config_path, self.key_file)
        except ConfigError as err:
            self.status.reload_successful = False
            self._note_read(config_state)
            log.error("event=reload_rejected error=%r kept=previous_config", str(err))
            return False, f"config rejected, the previous one stays in force: {err}"
        except Exception:
            self.status.reload_successful = False  # whatever went wrong, the metric must not claim success
            raise
        self.config = config
        self._note_read(config_state)
        self.scheduler.apply(config)
        self.status.reload_successful = True
        self.status.reload_success_at = time.time()
        checks = len(config.checks())
        log.info("event=reloaded sites=%d checks=%d seconds=%.3f", len(config.sites), checks,
                 time.perf_counter() - started)
        return True, f"config reloaded: {len(config.sites)} site(s), {checks} check(s)"

    def _note_read(self, config_state: FileState) -> None:
        # The watcher need not read again what a reload has just read (after a SIGHUP or POST for an edit).
        self._seen = {**self._file_states(), str(self.config_path): config_state}

    def _file_states(self) -> dict[str, FileState]:
        files = [self.config_path]
        for extra in (self.config.targets_file, self.config.hours_file):
            if extra is not None:
                files.append(str(extra))
        return {str(file): _file_state(file) for file in files}

    def _watch(self) -> None:
        """Reloads when the config file, its targets file or its hours file changes (mtime, size or inode)."""
        while not self._watch_stop.wait(WATCH_INTERVAL):
            now, seen = self._file_states(), self._seen
            if now == seen:
                continue
            changed = [file for file in now if now[file] != seen.get(file)] or list(seen)
            log.info("event=config_changed files=%s", ",".join(changed))
            self._seen = now  # taken before the reload: a change during it is seen on the next look
            try:
                self._reloads.run()  # the web config watches its own files (exporter.webguard)
            except Exception:  # the watcher must outlive any surprise in a reload
                log.exception("event=reload_failed")

    def ready(self) -> tuple[bool, str]:
        pending = self.scheduler.pending()
        if pending:
            return False, f"not ready: {pending} check(s) have not finished their first run"
        return True, "sitewatch exporter is ready."

    def handle_signals(self) -> None:
        """Notes SIGINT/SIGTERM (stop) and, where the OS has it, SIGHUP (reload) for serve_forever() to act on.

        Called before start(): once /-/healthy answers, a SIGHUP must reload, not end the process as its
        default action would."""
        def request_stop(signum, frame):
            self._stop_asked = True

        def request_reload(signum, frame):
            self._reload_asked = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, request_reload)
        self._signals_handled = True

    def serve_forever(self) -> None:
        """Blocks until SIGINT/SIGTERM; SIGHUP reloads where the OS has it."""
        if not self._signals_handled:
            self.handle_signals()
        last_signalled = -SIGNAL_GAP
        while not self._stop_asked:
            time.sleep(TICK)
            # The first signal of a burst reloads at once; the rest of the burst gives one more reload, when
            # SIGNAL_GAP has passed, so the config in force is the one written last.
            if self._reload_asked and time.monotonic() - last_signalled >= SIGNAL_GAP:
                self._reload_asked = False
                last_signalled = time.monotonic()
                self._reloads.ask()
                if self.web is not None:
                    self.web.reload()  # a file that cannot be used is logged; the one in force stays
        log.info("event=stopping")
        self.stop()

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=WATCH_INTERVAL + 5)
        self.server.stop()
        self.scheduler.stop()
        self.ping_engine.stop()
        self.http.close()
