"""A fake Кодекс/Техэксперт server: monitoring pages, catalog main pages and the admin title page.

It serves what a real server does, from realistic fixtures: ``/sysmon/metrics`` (basic auth) and the older
``/sysinfo/metrics`` in the server's Prometheus-style format, where 0 means fine and 1 a problem; a main
page per virtual catalog; ``/admin/title`` with the registration number, version, the registration file's
"до DD.MM.YYYY" and the sessions in use. It sets a session cookie and counts the sessions it opened, and
its `Scenario` switches maintenance, service messages, a missing ``/sysmon``, garbage and so on.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date

from flask import Flask, Response, request
from werkzeug.serving import make_server

USERNAME = "smartlogin"
PASSWORD = "smart-Pa55"
MAIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Техэксперт</title></head>
<body><div id="header">Техэксперт: Главная страница</div>
<div class="news">Новое в законодательстве</div>{banner}</body></html>"""
MAINTENANCE_BANNER = "<div class='alert'>Сервер находится в режиме технического обслуживания. Зайдите позже.</div>"
SERVICE_BANNER = "<div class='alert'>Служебное сообщение: необходимо обратиться к администратору системы.</div>"


@dataclass
class Catalog:
    path: str
    main_page_problem: bool = False
    product_control_problem: bool = False
    statuses: list[str] = field(default_factory=list)  # status="..." labels on the catalog's lines


def default_catalogs() -> list[Catalog]:
    return [
        Catalog("/docs"),
        Catalog("/docs2", main_page_problem=True),
        Catalog("/law", product_control_problem=True, statuses=["no required volume DB"]),
    ]


@dataclass
class Scenario:
    catalogs: list[Catalog] = field(default_factory=default_catalogs)
    sysmon: bool = True  # False: an older server with only /sysinfo
    maintenance: bool = False
    service_message_on: str | None = None  # a catalog path whose main page shows a service message
    garbage: bool = False  # the metrics page is something else entirely
    admin_title: bool = True  # False: the monitoring user may not open /admin/title
    # A registration file valid to the end of next year, whenever the simulator runs: far enough ahead not
    # to be news (a fixed date would run out under the demo and the tests one day).
    licence_until: str = field(default_factory=lambda: f"31.12.{date.today().year + 1}")
    registration_number: str = "123-456-789"
    version: str = "6.4.5.127"
    sessions: tuple[int, int] | None = (7, 25)
    delay: float = 0.0  # seconds before every answer
    sessions_opened: int = 0  # requests that came without the session cookie
    in_flight: int = 0
    most_in_flight: int = 0  # the most requests it ever served at the same time
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def metrics_text(scenario: Scenario, header: str) -> str:
    lines = [f"# {header}"]
    for catalog in scenario.catalogs:
        lines.append(f"# Path {catalog.path}")
        status = "".join(f',status="{s}"' for s in catalog.statuses[:1])
        lines.append(f'kserver_main_page{{service="kodweb",path="{catalog.path}"{status}}} '
                     f"{int(catalog.main_page_problem)}")
        lines.append(f'kserver_product_control{{service="kodweb",path="{catalog.path}"{status}}} '
                     f"{int(catalog.product_control_problem)}")
        for extra in catalog.statuses[1:]:
            lines.append(f'kserver_product_control{{service="kodweb",path="{catalog.path}",status="{extra}"}} 1')
    lines.append("# End")
    return "\n".join(lines) + "\n"


def create_app(scenario: Scenario) -> Flask:
    app = Flask(__name__)

    def authorized() -> bool:
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        return request.headers.get("Authorization") == expected

    def denied() -> Response:
        return Response("Доступ запрещён", 401, {"WWW-Authenticate": 'Basic realm="Kodeks"'})

    @app.before_request
    def before() -> None:
        with scenario.lock:
            scenario.requests.append(request.path)
            if "KodeksData" not in request.cookies:
                scenario.sessions_opened += 1
            scenario.in_flight += 1
            scenario.most_in_flight = max(scenario.most_in_flight, scenario.in_flight)
        if scenario.delay:
            time.sleep(scenario.delay)

    @app.after_request
    def after(response: Response) -> Response:
        response.headers["Server"] = "WWW-Kodeks/6.4"
        response.headers["X-Powered-By"] = "Express"
        if "KodeksData" not in request.cookies:
            response.set_cookie("KodeksData", secrets.token_hex(8), path="/")
            response.set_cookie("Kodeks", str(int(time.time())), path="/")
        return response

    @app.teardown_request
    def finished(error: BaseException | None) -> None:
        with scenario.lock:
            scenario.in_flight -= 1

    def metrics_page(header: str) -> Response:
        if scenario.garbage:
            return Response("<html><body>Welcome to nginx!</body></html>", 200, {"Content-Type": "text/html"})
        if scenario.maintenance:
            return Response(MAIN_PAGE.format(banner=MAINTENANCE_BANNER), 503,
                            {"Content-Type": "text/html; charset=utf-8"})
        return Response(metrics_text(scenario, header), 200,
                        {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    @app.get("/sysmon/metrics")
    def sysmon() -> Response:
        if not scenario.sysmon:
            return Response("Not found", 404)
        if not authorized():
            return denied()
        return metrics_page("Sysmon metrics")

    @app.get("/sysinfo/metrics")
    def sysinfo() -> Response:
        return metrics_page("Sysinfo metrics")

    @app.get("/admin/title")
    def admin_title() -> Response:
        if not authorized():
            return denied()
        if not scenario.admin_title:
            return Response("Недостаточно прав", 403)
        sessions = ""
        if scenario.sessions:
            used, limit = scenario.sessions
            sessions = f"<tr><td>Всего соединений (сессии):</td><td>{used} из {limit}</td></tr>"
        page = (f"<html><head><meta charset='windows-1251'></head><body><h1>Администрирование</h1><table>"
                f"<tr><td>Версия:</td><td>{scenario.version}</td></tr>"
                f"<tr><td>Регистрационный номер:</td><td>{scenario.registration_number}</td></tr>"
                f"<tr><td>Ограничение рег. файла:</td><td>до {scenario.licence_until}</td></tr>"
                f"{sessions}</table></body></html>")
        return Response(page.encode("cp1251"), 200, {"Content-Type": "text/html; charset=windows-1251"})

    @app.get("/<path:catalog>")
    def catalog_page(catalog: str) -> Response:
        path = "/" + catalog
        if not any(c.path == path for c in scenario.catalogs):
            return Response("Not found", 404)
        banner = ""
        if scenario.maintenance:
            banner = MAINTENANCE_BANNER
        elif scenario.service_message_on == path:
            banner = SERVICE_BANNER
        return Response(MAIN_PAGE.format(banner=banner), 200, {"Content-Type": "text/html; charset=utf-8"})

    return app


class FakeKodeksServer:
    """Runs the fake server on a loopback port in a thread; `stop()` ends it."""

    def __init__(self, scenario: Scenario | None = None, host: str = "127.0.0.1", port: int = 0):
        self.scenario = scenario or Scenario()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server = make_server(host, port, create_app(self.scenario), threaded=True)
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kodeks", daemon=True)

    def start(self) -> "FakeKodeksServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


if __name__ == "__main__":
    import sys

    server = FakeKodeksServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080).start()
    print(f"fake Kodeks server at {server.url} (user {USERNAME})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
