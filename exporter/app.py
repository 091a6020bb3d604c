"""The long-running exporter: config, ping engine, HTTP client, scheduler and HTTP server wired together.

Reloads (``POST /-/reload``, SIGHUP, or a change to the config file or its targets file, which are polled
every 2 s) load the whole new config first; a bad one is rejected, logged with its cause, and the running
config stays in force.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__, statuspage
from exporter.collector import CheckCollector, ExporterStatus
from exporter.config import Config, ConfigError, load_config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.scheduler import Scheduler
from exporter.server import HttpServer, build_app

log = logging.getLogger("sitewatch.exporter")

WATCH_INTERVAL = 2.0  # seconds between looks at the config file and the targets file

FileState = tuple[int, int, int] | None


def _file_state(path: str | os.PathLike[str]) -> FileState:
    try:
        info = os.stat(path)
    except OSError:
        return None  # missing (a missing targets file means no targets) or unreadable: reload tells which
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class ExporterApp:
    def __init__(self, config_path: str, listen: str, key_file: str | None = None):
        self.config_path = config_path
        self.key_file = key_file
        config_state = _file_state(config_path)  # before reading: an edit made while it is read is seen
        self.config: Config = load_config(config_path, key_file)  # ConfigError stops start-up here
        self.status = ExporterStatus()
        self.status.reload_success_at = time.time()
        self.ping_engine = PingEngine()
        self.http = HttpClient()
        self.scheduler = Scheduler(self.ping_engine, self.http)
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.registry.register(CheckCollector(self.scheduler.snapshot, self.status, lambda: self.config.sites))
        app = build_app(self.registry, self.reload, self.ready,
                        lambda: statuspage.render(self.scheduler.snapshot(), str(self.config.source)))
        self.server = HttpServer(listen, app)
        self._reload_lock = threading.Lock()
        self._stopped = threading.Event()
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
        with self._reload_lock:
            try:
                config = load_config(self.config_path, self.key_file)
            except ConfigError as err:
                self.status.reload_successful = False
                log.error("event=reload_rejected error=%r kept=previous_config", str(err))
                return False, f"config rejected, the previous one stays in force: {err}"
            self.config = config
            self.scheduler.apply(config)
            self.status.reload_successful = True
            self.status.reload_success_at = time.time()
            log.info("event=reloaded sites=%d checks=%d", len(config.sites), len(config.checks()))
            return True, f"config reloaded: {len(config.sites)} site(s), {len(config.checks())} check(s)"

    def _file_states(self) -> dict[str, FileState]:
        files = [self.config_path]
        for extra in (self.config.targets_file, self.config.hours_file):
            if extra is not None:
                files.append(str(extra))
        return {str(file): _file_state(file) for file in files}

    def _watch(self) -> None:
        """Reloads when the config file, its targets file or its hours file changes (mtime, size or inode)."""
        seen = self._seen
        while not self._watch_stop.wait(WATCH_INTERVAL):
            now = self._file_states()
            if now == seen:
                continue
            changed = [file for file in now if now[file] != seen.get(file)] or list(seen)
            log.info("event=config_changed files=%s", ",".join(changed))
            seen = now  # taken before the reload: a change during it is seen on the next look
            try:
                self.reload()
            except Exception:  # the watcher must outlive any surprise in a reload
                log.exception("event=reload_failed")

    def ready(self) -> tuple[bool, str]:
        pending = self.scheduler.pending()
        if pending:
            return False, f"not ready: {pending} check(s) have not finished their first run"
        return True, "sitewatch exporter is ready."

    def serve_forever(self) -> None:
        """Blocks until SIGINT/SIGTERM; SIGHUP reloads where the OS has it."""
        def request_stop(signum, frame):
            self._stopped.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda signum, frame: threading.Thread(target=self.reload).start())
        while not self._stopped.wait(0.5):
            pass
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
