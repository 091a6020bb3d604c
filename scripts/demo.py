"""`make demo`: serve a demo site's web page, run the exporter's one-shot check, then the exporter itself.

Stops on Ctrl-C, or after $DEMO_SECONDS seconds when that is set. Everything it starts it stops, the
network namespace included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from simulators import atol, kodeks, mitsu, shtrih  # noqa: E402 - the project's root is not on the path of a script

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "demo.yml"
NAMESPACE = "sitewatch-demo"
VOID_CHECK = "pc-behind-dead-link"
WEB = ("127.0.0.1", 18080)
KODEKS_PORT = 18081
MITSU_PORT = 18200
ATOL_PORT = 15555
SHTRIH_PORT = 17778
POS_LOGS = ROOT / "examples" / "iiko-logs"
LISTEN = os.environ.get("DEMO_LISTEN", "127.0.0.1:9815")
EXPORTER = [sys.executable, "-m", "exporter.cli"]

PAGES = {
    "/": "<html><body><h1>Главная страница</h1><p>Кодекс: все каталоги на месте.</p></body></html>",
    "/docs": "<html><body><h1>Каталог /docs</h1>"
             "<p>Сервер переведён в режим обслуживания, зайдите позже.</p></body></html>",
}


class DemoPages(BaseHTTPRequestHandler):
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


def prepare_config(workdir: Path) -> Path:
    """With root, makes the silent namespace; without, drops the check that needs it."""
    if os.geteuid() == 0 if hasattr(os, "geteuid") else False:
        subprocess.run([str(ROOT / "scripts" / "void-netns.sh"), "up", NAMESPACE], check=True,
                       stdout=subprocess.DEVNULL)
        return CONFIG
    print(f"(not root: skipping the check {VOID_CHECK!r}, which needs a network namespace)")
    document = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    for site in document["sites"]:
        site["checks"] = [c for c in site["checks"] if c["name"] != VOID_CHECK]
        for check in site["checks"]:  # the copy lives elsewhere: its folders must not be relative
            for kind in ("getad", "iiko_log"):
                if kind in check:
                    check[kind]["folder"] = str(CONFIG.parent / check[kind]["folder"])
    path = workdir / "demo.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def main() -> int:
    web = ThreadingHTTPServer(WEB, DemoPages)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    kodeks_server = kodeks.FakeKodeksServer(port=KODEKS_PORT).start()
    now = datetime.now()
    register = mitsu.MitsuTcpSimulator(mitsu.MitsuScenario(
        fn_expiry=(now + timedelta(days=25)).strftime("%Y-%m-%d"), unsent=4, flags=0x08,
        first_unsent=(now - timedelta(days=5)).strftime("%Y-%m-%d %H:%M")), port=MITSU_PORT).start()
    # An ATOL whose ФН runs out in 2 days (urgent-replacement flag), and a healthy Shtrih-M.
    atol_register = atol.AtolTcpSimulator(atol.AtolScenario(
        fn_expiry=(now + timedelta(days=2)).strftime("%Y-%m-%d"), flags=0x01), port=ATOL_PORT).start()
    shtrih_register = shtrih.ShtrihTcpSimulator(shtrih.ShtrihScenario(), port=SHTRIH_PORT).start()
    for log in POS_LOGS.glob("*.log"):
        try:
            log.touch()  # the POS "is running": its log was just written
        except OSError:
            pass  # a checkout owned by someone else: the check may then call the log stale, which is true
    os.environ["KODEKS_DEMO_PASSWORD"] = kodeks.PASSWORD  # inherited by the exporter processes
    exporter = None
    with tempfile.TemporaryDirectory() as workdir:
        try:
            config = prepare_config(Path(workdir))
            print(f"== demo web page at http://{WEB[0]}:{WEB[1]}/, fake Kodeks server at {kodeks_server.url}, "
                  f"simulated Mitsu, ATOL and Shtrih-M registers at tcp://127.0.0.1:{MITSU_PORT}, :{ATOL_PORT} "
                  f"and :{SHTRIH_PORT}\n"
                  f"== one-shot check: "
                  f"sitewatch-exporter check --config {config.relative_to(ROOT) if config == CONFIG else config}\n",
                  flush=True)
            subprocess.run([*EXPORTER, "check", "--config", str(config)], cwd=ROOT)
            exporter = subprocess.Popen([*EXPORTER, "--config", str(config), "--web.listen-address", LISTEN],
                                        cwd=ROOT)
            url = f"http://{LISTEN}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.3)
            print(f"\n== exporter running: metrics at {url}/metrics, status page at {url}/")
            seconds = float(os.environ.get("DEMO_SECONDS", "0"))
            print("== press Ctrl-C to stop" if not seconds else f"== stopping in {seconds:g}s", flush=True)
            try:
                if seconds:
                    time.sleep(seconds)
                else:
                    signal.pause() if hasattr(signal, "pause") else time.sleep(10**9)
            except KeyboardInterrupt:
                pass
            return 0 if exporter.poll() is None else 1
        finally:
            if exporter is not None and exporter.poll() is None:
                exporter.terminate()
                exporter.wait(timeout=10)
            web.shutdown()
            kodeks_server.stop()
            register.stop()
            atol_register.stop()
            shtrih_register.stop()
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                subprocess.run([str(ROOT / "scripts" / "void-netns.sh"), "down", NAMESPACE], check=False)


if __name__ == "__main__":
    sys.exit(main())
