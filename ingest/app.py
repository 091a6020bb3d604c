"""The long-running ingest: config, store, intake and HTTP server wired together, with reloads and signals.

A reload (``POST /-/reload`` or SIGHUP) reads and checks the whole new config first; a bad one is rejected,
logged, and the running config stays in force. Reloads run one at a time (exporter.reloads). The listen
address, the storage path and the command-line options need a restart.
"""

from __future__ import annotations

import logging
import signal
import time

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

from exporter import __version__
from exporter.config import ConfigError
from exporter.reloads import Reloads
from exporter.server import HttpServer
from exporter.server import build_app as build_base_app
from ingest import statuspage, web
from ingest.config import IngestConfig, load_ingest_config
from ingest.httpserver import UploadRequestHandler
from ingest.intake import Intake
from ingest.metrics import IngestMetricsBody, IngestStatus
from ingest.refusals import Refusals
from ingest.store import Store

log = logging.getLogger("sitewatch.ingest")

TICK = 0.2  # how often the main thread acts on the signals it noted


class IngestApp:
    def __init__(self, config_path: str, listen: str, key_file: str | None = None):
        self.config_path = config_path
        self.key_file = key_file
        self.config: IngestConfig = load_ingest_config(config_path, key_file)  # ConfigError stops start-up
        self.store = Store(self.config.storage_path)  # StoreError stops start-up
        self.intake = Intake(self.config, self.store)
        self.refusals = Refusals()
        self.status = IngestStatus()
        self.metrics = IngestMetricsBody(self.intake, self.refusals, self.status)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.metrics.process_registry)
        fallback = build_base_app(self.metrics.response, self.reload, lambda: (True, "sitewatch ingest is ready."),
                                  lambda: statuspage.render(self.intake, self.refusals, str(self.config.source)))
        app = web.build_app(self.intake, self.refusals, lambda: self.config, fallback)
        self.server = HttpServer(listen, app, handler_class=UploadRequestHandler)
        self._reloads = Reloads(self._reload_now)
        self._stop_asked = False  # set by signal handlers (no locks there), acted on by serve_forever()
        self._reload_asked = False

    def start(self) -> None:
        self.server.start()
        log.info("event=started version=%s config=%s distributors=%d sites=%d storage=%s port=%d smartstatus_path=%s "
                 "getad_path=%s", __version__, self.config.source, len(self.config.distributors),
                 len(self.config.sites), self.config.storage_path, self.server.port, self.config.smartstatus.path,
                 self.config.getad.path)

    def reload(self) -> tuple[bool, str]:
        return self._reloads.run()

    def _reload_now(self) -> tuple[bool, str]:
        try:
            config = load_ingest_config(self.config_path, self.key_file)
        except ConfigError as err:
            self.status.reload_successful = False
            log.error("event=reload_rejected error=%r kept=previous_config", str(err))
            return False, f"config rejected, the previous one stays in force: {err}"
        if config.storage_path != self.config.storage_path:
            log.warning("event=reload_storage_path_ignored path=%s hint=%s", config.storage_path,
                        "storage.path changes at the next start")
        self.intake.apply(config)
        self.config = config
        self.status.reload_successful = True
        self.status.reload_success_at = time.time()
        log.info("event=reloaded distributors=%d sites=%d", len(config.distributors), len(config.sites))
        return True, f"config reloaded: {len(config.distributors)} distributor(s), {len(config.sites)} site(s)"

    def handle_signals(self) -> None:
        """SIGINT/SIGTERM stop, SIGHUP (where the OS has it) reloads; set before start(), as the exporter does."""
        def request_stop(signum, frame):
            self._stop_asked = True

        def request_reload(signum, frame):
            self._reload_asked = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, request_reload)

    def serve_forever(self) -> None:
        while not self._stop_asked:
            time.sleep(TICK)
            if self._reload_asked:
                self._reload_asked = False
                self._reloads.ask()
        log.info("event=stopping")
        self.stop()

    def stop(self) -> None:
        self.server.stop()
        self.store.close()
