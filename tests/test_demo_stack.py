"""`make demo` end to end, and every Grafana panel's query against the data the running demo produced.

One demo runs for the whole module (`python -m demo`, as `make demo` starts it): the check tables, the
first Telegram messages on the console within two minutes, every dashboard query answered with data by
its Prometheus, and a clean stop on Ctrl-C (SIGINT) that leaves no process, port or namespace behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from alertmanager.wording import WORDINGS, title
from conftest import ROOT, http_get, is_root, wait_until
from demo import configs
from demo.__main__ import DEVICE_PORTS, NAMESPACE
from test_dashboards import DASHBOARD_FILES, LABEL_VALUES, all_panels, load

TITLE = {name: title(name) for name in WORDINGS}  # what messages call the rules' alerts

PORTS = configs.Ports()
STACK_PORTS = [getattr(PORTS, name) for name in vars(PORTS)]
# Panels whose query has nothing to show while the demo is healthy in that respect; each says why.
EMPTY_BY_DESIGN = {
    ("sitewatch.json", "Отказы доставки (получатель)", "A"):
        "the dry run delivers every message: no failure series exists",
    ("today.json", "Не работают больше суток", "A"):
        "the demo runs for minutes: nothing has been down for a day (tests/test_dashboards.py checks the query on a "
        "made-up day and a half)",
}
# Grafana's variables, as a user would pick them: the shop for the site board, everything elsewhere.
RANGE_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class RunningDemo:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None):
        self.output = tmp / "demo.out"
        self.process = subprocess.Popen([sys.executable, "-m", "demo"], cwd=ROOT, stdin=subprocess.DEVNULL,
                                        stdout=self.output.open("w"), stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.up_at: float | None = None

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, predicate, timeout: float, what: str):
        def check():
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited with {self.process.returncode}:\n{self.text()[-3000:]}")
            return predicate(self.text())
        try:
            return wait_until(check, timeout, interval=0.5, what=what)
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- demo output (end) ---\n{self.text()[-3000:]}") from None

    def messages(self) -> list[tuple[str, str]]:
        """(header, text) of every Telegram message the dry run printed."""
        blocks = re.split(r"^──── Telegram → (.*) ────$", self.text(), flags=re.MULTILINE)
        return [(blocks[i], blocks[i + 1]) for i in range(1, len(blocks) - 1, 2)]

    def stop(self, how: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    taken = [port for port in [*STACK_PORTS, *DEVICE_PORTS] if port_taken(port)]
    if taken:
        pytest.fail(f"the demo's ports are taken on this machine: {taken}; stop what uses them")
    running = RunningDemo(tmp_path_factory.mktemp("demo"))
    try:
        # The block of addresses ends with the note on shortened waits; the lines before it are printed as
        # each part is found to answer, which takes a moment on a busy machine.
        running.wait_for(lambda text: "== the stack is up" in text and "== waits are shortened" in text, 150,
                         "the demo's stack to start and its addresses to be printed")
        running.up_at = time.monotonic()
        yield running
    finally:
        running.stop(signal.SIGTERM)


def prometheus_query(expr: str) -> list[dict]:
    status, body = http_get(f"{PORTS.url('prometheus')}/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                            timeout=10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", f"{expr}\n-> {status} {body[:500]}"
    return answer["data"]["result"]


def test_the_demo_prints_both_check_tables_and_the_stack_urls(demo):
    out = demo.text()
    assert "SITE" in out and "RESULT" in out
    for site, check, verdict in (("demo-shop", "main-page", "OK"), ("demo-shop", "web-port", "OK"),
                                 ("demo-shop", "catalog-page", "FAIL"), ("demo-shop", "admin-port", "FAIL"),
                                 ("demo-shop", "kodeks", "FAIL"), ("demo-office", "pc ", "OK"),
                                 ("demo-office", "main-page", "OK")):
        row = next(line for line in out.splitlines() if line.startswith(site) and f" {check}" in line)
        assert verdict in row, row
    assert "  - catalog /docs2: the main page is not built correctly" in out  # the fake Кодекс server
    assert "ФН 9999078902014447, ФН expires" in out and "4 unsent to the OFD, oldest 5 days old" in out  # Mitsu
    assert "the POS log shows ФН 7380440700099999" in out  # the iikoFront log against the getad file
    assert "Казначей ФА №123456" in out and "(in 2 days)" in out and "replace_urgent" in out  # ATOL
    assert "ШТРИХ-М-01Ф №0012345678901234" in out  # Shtrih-M, found by driver auto
    if is_root():
        assert re.search(r"^demo-branch\s+pc\s+ping\s+FAIL\s+timeout", out, re.MULTILINE), out
    for name in ("prometheus", "alertmanager", "pushgateway", "receiver", "exporter"):
        assert PORTS.url(name) in out, f"the URL of {name} is not printed"
    assert "docker compose up -d" in out  # how to see the Grafana boards
    # What was printed is what runs, and every address printed opens.
    for name in ("prometheus", "alertmanager", "pushgateway", "receiver", "exporter"):
        assert http_get(PORTS.url(name) + "/-/ready")[0] == 200, name
    printed = re.findall(r"^   (?:Prometheus|Alertmanager|Pushgateway|sitewatch-receiver|sitewatch-exporter)\s+(\S+)",
                         out, re.MULTILINE)
    assert len(printed) == 5, out
    for url in printed:
        assert http_get(url)[0] == 200, f"the printed {url} does not open"


def test_the_first_telegram_messages_reach_the_console_within_two_minutes(demo):
    def alerts_printed(text):
        return "ФН истекает" in text and "Ошибка главной страницы каталога" in text and (
            "Компьютер не отвечает" in text or not is_root())

    demo.wait_for(alerts_printed, 150 - (time.monotonic() - demo.up_at), "alerts in the console")
    arrived_after = time.monotonic() - demo.up_at
    messages = demo.messages()
    assert messages, demo.text()[-2000:]
    by_route: dict[str, str] = {}
    for header, text in messages:
        route = header.split(":")[0].removeprefix("route ")
        by_route[route] = by_route.get(route, "") + text
        assert "<b>" not in text and "&lt;" not in text, text  # printed as a reader sees it
    # The project's routing: ФН alerts in the POS team's topic, the shop's distributor gets its copy.
    assert any(h.startswith("route kkt: chat -1001234567890, topic 42") for h, _ in messages), messages
    assert "ФН истекает" in by_route["kkt"] and "ФН истекает" not in by_route.get("duty", "")
    assert "площадка demo-shop" in by_route["pos"]
    assert "Ошибка главной страницы каталога" in by_route["duty"]
    # The broken catalog page is not reported as a dead Кодекс server, the maintenance banner not as a broken page.
    assert "Сервер Кодекс не отвечает" not in demo.text() and "«catalog-page»" not in demo.text()
    if is_root():
        assert re.search(r"Компьютер не отвечает.*\n.*площадка demo-branch", by_route["duty"]), by_route["duty"][:2000]
        assert "198.18." in by_route["duty"]  # the PC's address, not the exporter's
    # Every message says what failed in words a reader knows, and carries no link to what the demo does not run.
    for header, text in messages:
        assert "instance" not in text and "sitewatch_" not in text, text
        assert "Панель площадки" not in text and "Заглушить (" not in text, text  # no link to what does not run
    print(f"first alerts printed {arrived_after:.0f}s after the stack came up")


def test_the_morning_worklist_reaches_the_console_at_start_up(demo):
    def printed(text):
        return text.count("Что сделать сегодня") >= 2  # the POS team's topic and the duty group

    demo.wait_for(printed, 180 - (time.monotonic() - demo.up_at), "the start-up worklist in the console")
    lists: dict[str, str] = {}
    for header, text in demo.messages():
        if "Что сделать сегодня" in text:
            route = header.split(":")[0].removeprefix("route ")
            lists[route] = lists.get(route, "") + text
    # Routed as the alerts are: the registers to the POS team's topic and the shop's distributor, the Кодекс
    # catalogs to the duty group; no list for the info channel or the watchdog's.
    assert "info" not in lists and "watchdog" not in lists, list(lists)
    kkt = lists["kkt"]
    assert "demo-shop" in kkt and "ФН" in kkt and "ОФД" in kkt, kkt
    assert "ФН" in lists["pos"], lists["pos"]
    assert "/docs2" in lists["duty"] and "ФН" not in lists["duty"], lists["duty"]
    for text in lists.values():
        assert "sitewatch_" not in text and "site=" not in text and "<b>" not in text, text


def test_the_worklist_finds_the_demos_work_in_its_prometheus(demo):
    from alertmanager.config import WorklistConfig
    from alertmanager.worklist import collect

    demo.wait_for(lambda text: TITLE["FnExpiring"] in text, 150, "the first ФН alert")
    items = collect(WorklistConfig(prometheus_url=PORTS.url("prometheus"), alertmanager_url=None, timeout=10),
                    time.time())
    found = {(i.kind, i.site, i.labels.get("kkt") or i.labels.get("catalog", "")) for i in items}
    assert {("fn_expiry", "demo-shop", "065001234567890"), ("fn_expiry", "demo-shop", "123456"),
            ("ofd_backlog", "demo-shop", "065001234567890"), ("catalog_error", "demo-shop", "/docs2")} <= found, found


def dashboard_queries() -> list[tuple[str, str, str, str]]:
    """(file, panel title, refId, PromQL) of every panel target, and the variables' queries."""
    found = []
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        for panel in all_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((path.name, panel.get("title"), target.get("refId"), target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                query = query.get("query", "") if isinstance(query, dict) else query
                match = LABEL_VALUES.match(query)
                found.append((path.name, f"variable {variable['name']}", "-", match.group(1) if match else query))
    return found


def as_grafana_sends(expr: str) -> str:
    for variable, value in RANGE_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r'=~"\$\{?\w+\}?"', '=~".*"', expr)  # "All" in a multi-value filter
    return re.sub(r'\$\{?site\}?', "demo-shop", expr)


def test_every_dashboard_query_returns_data_from_the_running_demo(demo):
    queries = dashboard_queries()
    assert len(queries) > 40
    # The stack has run long enough for rates and alerts when the previous test passed; give the
    # slowest series (alerts, rates over a minute) a little more in case this test runs alone.
    demo.wait_for(lambda text: TITLE["FnExpiring"] in text, 150, "the first ФН alert")

    def all_answered():
        return [(name, title, ref) for name, title, ref, expr in queries
                if (name, title, ref) not in EMPTY_BY_DESIGN and not prometheus_query(as_grafana_sends(expr))]

    empty = all_answered()
    deadline = time.monotonic() + 60
    while empty and time.monotonic() < deadline:
        time.sleep(5)
        empty = all_answered()
    assert not empty, f"panels with no data though the demo produces it: {empty}"
    for key, why in EMPTY_BY_DESIGN.items():
        assert key in {(n, t, r) for n, t, r, _ in queries}, f"{key} is no longer a panel: drop it ({why})"

    def value(name: str, title: str) -> float:
        (expr,) = [e for n, t, _, e in queries if (n, t) == (name, title)]
        return float(prometheus_query(as_grafana_sends(expr))[0]["value"][1])

    # What the boards show matches the demo's sites.
    assert value("fleet.json", "Площадки в сети") >= 2  # demo-shop, demo-office
    assert value("fleet.json", "Площадки недоступны") == (1 if is_root() else 0)  # demo-branch
    assert value("kkt.json", "Касс") == 3 + 1  # Mitsu, ATOL, Shtrih-M and getad-service's register
    assert value("kkt.json", "ФН истекает за 30 дней") == 2  # Mitsu in 25 days, ATOL in 2
    assert value("kkt.json", "С неотправленными документами") == 1  # the Mitsu
    assert value("sitewatch.json", "Площадок отправляют") == 1  # demo-shop, through the pusher
    sites = {series["metric"]["site"] for series in prometheus_query("group by (site) (sitewatch_check_up)")}
    assert {"demo-shop", "demo-office"} <= sites and ("demo-branch" in sites) == is_root()


def test_the_shop_pushes_through_nginx_and_the_office_side_needs_its_credential(demo):
    work = Path(re.search(r"configs and logs\s+(\S+)", demo.text()).group(1))
    ca = str(work / "ingress" / "tls" / "cert.pem")

    def pushed_through_nginx():
        log = (work / "ingress" / "logs" / "access.log").read_text(errors="replace")
        return '"PUT /metrics/job/sitewatch/site/demo-shop" 200' in log and "site/demo-shop" in log

    wait_until(pushed_through_nginx, 60, what="the pusher's push in nginx's access log")
    office = f"https://127.0.0.1:{PORTS.ingress_prometheus}/api/v1/query"
    password = (work / "office.password").read_text().strip()
    assert requests.get(office, params={"query": "up"}, verify=ca, timeout=5).status_code == 401
    answer = requests.get(office, params={"query": 'push_time_seconds{site="demo-shop"}'}, auth=("demo", password),
                          verify=ca, timeout=5)
    assert answer.status_code == 200 and answer.json()["data"]["result"], answer.text[:300]
    receiver = f"https://127.0.0.1:{PORTS.ingress_receiver}"
    assert requests.post(f"{receiver}/alert/duty", json={}, auth=("demo", password), verify=ca,
                         timeout=5).status_code == 403
    assert password not in demo.text()  # the console names the file, never the password


def test_the_generated_configs_pass_promtool_and_amtool(demo):
    work = Path(re.search(r"configs and logs\s+(\S+)", demo.text()).group(1))
    promtool = subprocess.run(["promtool", "check", "config", str(work / "prometheus" / "prometheus.yml")],
                              capture_output=True, text=True, timeout=60)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    amtool = subprocess.run(["amtool", "check-config", str(work / "alertmanager" / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=60)
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr


def test_ctrl_c_stops_every_process_and_leaves_nothing_behind(demo):
    assert demo.stop(signal.SIGINT) == 0, demo.text()[-2000:]
    out = demo.text()
    assert re.search(r"== demo stopped: 7 processes(, network namespace removed)?$", out, re.MULTILINE), out[-1500:]
    assert "had to be killed" not in out
    taken = [port for port in [*STACK_PORTS, *DEVICE_PORTS] if port_taken(port)]
    assert not taken, f"ports still in use after the demo stopped: {taken}"
    if is_root():
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert NAMESPACE not in namespaces


def test_on_victoriametrics_the_shop_pushes_through_nginx_and_its_alerts_reach_the_console(tmp_path):
    """DEMO_BACKEND=victoriametrics: VictoriaMetrics on Prometheus' port, vmalert with the same rules; runs
    after the default demo has stopped (the ports are the same)."""
    wait_until(lambda: not any(port_taken(port) for port in [*STACK_PORTS, *DEVICE_PORTS]), 30,
               what="the default demo's ports to be free")
    running = RunningDemo(tmp_path, {configs.BACKEND_ENV: "victoriametrics"})
    try:
        running.wait_for(lambda text: "== waits are shortened" in text, 150, "the VictoriaMetrics stack to start")
        out = running.text()
        assert "== backend: victoriametrics" in out
        assert re.search(r"^   VictoriaMetrics\s+http://127\.0\.0\.1:19090/vmui/", out, re.MULTILINE), out
        assert re.search(r"^   vmalert\s+http://127\.0\.0\.1:19880/", out, re.MULTILINE), out
        assert not re.search(r"^   (Pushgateway|Prometheus)\s", out, re.MULTILINE), out
        # The shop's alerts come from its pushes, through nginx's import path, VictoriaMetrics and vmalert.
        running.wait_for(lambda text: "ФН истекает" in text and "Ошибка главной страницы каталога" in text, 150,
                         "the shop's alerts in the console")
        heartbeat = prometheus_query('sitewatch_pusher_last_success_timestamp_seconds{site="demo-shop"}')
        assert [series["metric"].get("job") for series in heartbeat] == ["sitewatch"], heartbeat
        assert prometheus_query('sitewatch:site_last_report_timestamp_seconds{site="demo-shop"}'), \
            "vmalert's recording rules are not written back"
    finally:
        code = running.stop(signal.SIGINT)
    assert code == 0, running.text()[-2000:]
    assert re.search(r"== demo stopped: 7 processes", running.text()), running.text()[-1500:]
    taken = [port for port in [*STACK_PORTS, *DEVICE_PORTS] if port_taken(port)]
    assert not taken, f"ports still in use after the demo stopped: {taken}"


def test_an_unknown_demo_backend_is_refused_in_a_sentence():
    result = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, configs.BACKEND_ENV: "influx"})
    assert result.returncode != 0
    assert "DEMO_BACKEND='influx' is not a backend: pushgateway or victoriametrics" in result.stdout + result.stderr


def test_with_a_bot_token_every_route_posts_to_the_given_chat_and_the_token_stays_out_of_files(
        tmp_path, monkeypatch):
    monkeypatch.setenv(configs.BOT_TOKEN_ENV, "123456:AAE-secret-token-value")
    monkeypatch.setenv(configs.CHAT_ID_ENV, "-1009999")
    telegram = configs.Telegram.from_environment()
    assert not telegram.dry_run
    path = configs.receiver(tmp_path, PORTS, configs.webhook_token(tmp_path), telegram)
    text = path.read_text(encoding="utf-8")
    assert "secret-token-value" not in text
    document = yaml.safe_load(text)
    assert {route["chat_id"] for route in document["routes"].values()} == {"-1009999"}
    assert all("thread_id" not in route for route in document["routes"].values())
    assert document["bots"]["duty"]["token"] == {"env": configs.BOT_TOKEN_ENV}
    check = subprocess.run([sys.executable, "-m", "alertmanager.cli", "check-config", "--offline", "-c", str(path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "secret-token-value" not in check.stdout + check.stderr
    monkeypatch.delenv(configs.CHAT_ID_ENV)
    assert configs.Telegram.from_environment().dry_run  # a token alone does not say where to post
