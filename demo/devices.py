"""The simulated sites of the demo: a web application's pages, a Кодекс server and three fiscal registers.

Their ports are the ones examples/demo.yml and examples/demo-office.yml check; everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

from simulators import atol, kodeks, mitsu, shtrih

WEB = ("127.0.0.1", 18080)
KODEKS_PORT = 18081
MITSU_PORT = 18200
ATOL_PORT = 15555
SHTRIH_PORT = 17778
POS_LOGS = Path(__file__).resolve().parent.parent / "examples" / "iiko-logs"

PAGES = {
    "/": "<html><body><h1>Главная страница</h1><p>Кодекс: все каталоги на месте.</p></body></html>",
    "/docs": "<html><body><h1>Каталог /docs</h1>"
             "<p>Сервер переведён в режим обслуживания, зайдите позже.</p></body></html>",
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path)
        data = (body or "not found").encode("utf-8")
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class Devices:
    """Starts every simulated device in threads of this process; `stop()` ends them all."""

    def __init__(self) -> None:
        self.web = ThreadingHTTPServer(WEB, _Pages)
        # The registers keep Moscow time, as the demo's sites do; the machine's clock may be UTC.
        now = datetime.now(ZoneInfo("Europe/Moscow"))
        # The Кодекс server's registration file runs out in 20 days: a licence to renew on the boards and
        # the morning list, whenever the demo runs.
        self.kodeks = kodeks.FakeKodeksServer(kodeks.Scenario(
            licence_until=(now + timedelta(days=20)).strftime("%d.%m.%Y")), port=KODEKS_PORT)
        # A Mitsu with 4 documents the OFD has not taken, the oldest 5 days old, and the "OFD timeout" flag.
        self.mitsu = mitsu.MitsuTcpSimulator(mitsu.MitsuScenario(
            fn_expiry=(now + timedelta(days=25)).strftime("%Y-%m-%d"), unsent=4, flags=0x08,
            first_unsent=(now - timedelta(days=5)).strftime("%Y-%m-%d %H:%M")), port=MITSU_PORT)
        # An ATOL whose ФН runs out in 2 days (urgent-replacement flag), and a healthy Shtrih-M.
        self.atol = atol.AtolTcpSimulator(atol.AtolScenario(
            fn_expiry=(now + timedelta(days=2)).strftime("%Y-%m-%d"), flags=0x01), port=ATOL_PORT)
        self.shtrih = shtrih.ShtrihTcpSimulator(shtrih.ShtrihScenario(), port=SHTRIH_PORT)
        self.started = False

    def start(self) -> "Devices":
        self.started = True
        threading.Thread(target=self.web.serve_forever, name="demo-pages", daemon=True).start()
        for device in (self.kodeks, self.mitsu, self.atol, self.shtrih):
            device.start()
        for log in POS_LOGS.glob("*.log"):
            try:
                log.touch()  # the POS "is running": its log was just written
            except OSError:
                pass  # a checkout owned by someone else: the check may call the log stale, which is true
        return self

    def describe(self) -> str:
        return (f"web pages at http://{WEB[0]}:{WEB[1]}/, a fake Кодекс server at {self.kodeks.url}, "
                f"simulated Mitsu, ATOL and Shtrih-M registers at tcp://127.0.0.1:{MITSU_PORT}, "
                f":{ATOL_PORT} and :{SHTRIH_PORT}")

    def stop(self) -> None:
        if self.started:  # shutdown() waits for a serve_forever() that must have begun
            self.web.shutdown()
            for device in (self.kodeks, self.mitsu, self.atol, self.shtrih):
                device.stop()
        self.web.server_close()
