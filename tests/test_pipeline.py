"""The whole alerting path on real binaries, all on loopback.

A site with a fake Кодекс server (a catalog whose main page is broken), a simulated Mitsu register (its
ФН expires in 2 days, its oldest unsent document is 25 days old) and a PC that never answers (an address
in a network namespace) is checked by `sitewatch-pusher`, which pushes to Debian's Pushgateway. Debian's
Prometheus scrapes it and evaluates the project's rules; Debian's Alertmanager routes with the project's
alertmanager.yml; `sitewatch-receiver` delivers to a fake Telegram.

Time is compressed, the rules and the routing are otherwise the project's own:

- every rule's `for:` is divided by 60 (2m -> 2s, 5m -> 5s, 10m -> 10s, SiteNotReporting's 1m -> 1s),
  which keeps the order the rules were written for (PcUnreachable fires before KodeksMainPageError, so
  the inhibition has its source in place first);
- a site is silent after 12 s instead of 150 s, and the freshness gate closes after 22 s instead of
  270 s (the pusher pushes every 5 s, the shortest interval it accepts, instead of every 60 s): as in
  production, SiteNotReporting (12 s plus its `for:`) fires before the gate ends the site's frozen
  alerts, so Alertmanager mutes their ends;
- Prometheus re-sends firing alerts every second (`--rules.alert.resend-delay=1s`, 1m by default): an
  alert evaluated before Prometheus has its Alertmanager in place is dropped, and would otherwise only
  be sent again a minute later;
- Alertmanager's group_wait / group_interval / repeat_interval become 1s / 2s / 1h, and the nightly mute
  of info alerts is dropped (it may be night now).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from alertmanager.wording import WORDINGS, title
from conftest import ROOT, Daemons, free_port, http_get, wait_until, write_config
from demo import timing
from receiver_kit import write_receiver_config
from simulators.kodeks import PASSWORD, USERNAME, Catalog, FakeKodeksServer, Scenario
from simulators.mitsu import MitsuScenario, MitsuTcpSimulator

TITLE = {name: title(name) for name in WORDINGS}  # what messages call the rules' alerts

SITE = "shop-e2e"
PUSH_INTERVAL = "5s"  # the shortest the pusher accepts
SILENT_AFTER = 12  # seconds: SiteNotReporting's threshold (150 s in the rules)
GATE_AFTER = 22  # seconds: the freshness gate (270 s in the rules)
FOR_DIVISOR = 60

CHATS = {
    "duty": -1002000000001,
    "kkt": -1002000000002,
    "info": -1002000000003,
    "watchdog": -1002000000004,
    "kodeks-spb": -1002000000005,
    "pos": -1002000000006,
}
KKT_THREAD = 77
RULES = ROOT / "prometheus" / "rules"
ALERTMANAGER_YML = ROOT / "alertmanager" / "alertmanager.yml"


# --- the project's configs, time-compressed ---

def compressed_rules(folder: Path) -> list[Path]:
    return timing.compress_rules(RULES, folder, divisor=FOR_DIVISOR, silent_after=SILENT_AFTER,
                                 gate_after=GATE_AFTER)


def compressed_alertmanager_config(receiver_url: str, token_file: Path) -> str:
    document = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    timing.compress_routing(document, {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"})
    webhooks = timing.point_webhooks(document, receiver_url, token_file)
    assert webhooks == len(CHATS), "every receiver route of alertmanager.yml needs a chat in this test"
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def receiver_routes() -> str:
    lines = []
    for route, chat in CHATS.items():
        lines += [f"  {route}:", "    bot: main", f"    chat_id: {chat}"]
        if route == "kkt":
            lines.append(f"    thread_id: {KKT_THREAD}")
    return "\n" + "\n".join(lines) + "\n"


def site_head(push: str) -> str:
    """The config's start, up to the site's checks or its hours: checks every 2 s, one failure is down.
    `push` is the push section's destination: `gateway: "<url>"` or `import_url: "<url>"`."""
    return f"""
push: {{{push}}}
defaults: {{interval: 2s, timeout: 2s, failure_threshold: 1, success_threshold: 1, jitter: 0}}
sites:
  - id: {SITE}
    labels: {{client: romashka}}
    timezone: Europe/Moscow
"""


def site_config_text(push: str, void_address: str, kodeks_url: str, mitsu_port: int) -> str:
    return site_head(push) + f"""\
    checks:
      - name: pc
        ping: {{host: {void_address}, count: 1, timeout: 500ms}}
      - name: kodeks
        kodeks: {{url: "{kodeks_url}", username: {USERNAME}, password: {{env: KODEKS_E2E_PASSWORD}}}}
      - name: till-1
        interval: 2s
        kkt: {{driver: mitsu, port: "tcp://127.0.0.1:{mitsu_port}"}}
"""


def local_time(days: float, with_time: bool) -> str:
    moment = datetime.now() + timedelta(days=days)
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def firing(message) -> bool:
    return message.text.lstrip().startswith("🔥")


def resolved(message) -> bool:
    return message.text.lstrip().startswith("✅")


# --- the running pipeline ---

@dataclass
class Pipeline:
    tmp_path: Path
    telegram: object
    kodeks: FakeKodeksServer
    mitsu: MitsuTcpSimulator
    prometheus_url: str  # the rule evaluator: Prometheus, or vmalert
    alertmanager_url: str
    receiver: object
    pusher: subprocess.Popen
    pusher_log: Path
    stopped: list = field(default_factory=list)

    def messages(self, route: str):
        return self.telegram.messages(CHATS[route])

    def all_messages(self):
        return {route: self.messages(route) for route in CHATS}

    def prometheus_alerts(self) -> list[dict]:
        status, body = http_get(self.prometheus_url + "/api/v1/alerts", timeout=5)
        return json.loads(body)["data"]["alerts"] if status == 200 else []

    def prometheus_firing(self, alertname: str) -> list[dict]:
        return [a for a in self.prometheus_alerts()
                if a["labels"].get("alertname") == alertname and a["state"] == "firing"]

    def alertmanager_alerts(self) -> list[dict]:
        status, body = http_get(self.alertmanager_url + "/api/v2/alerts", timeout=5)
        return json.loads(body) if status == 200 else []

    def stop_pusher(self) -> None:
        if self.pusher.poll() is None:
            self.pusher.send_signal(signal.SIGTERM)
            try:
                self.pusher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.pusher.kill()
                self.pusher.wait()

    def report(self) -> str:
        """What every stage holds, for assertion messages."""
        chats = {route: [m.text[:160] for m in messages] for route, messages in self.all_messages().items()}
        prometheus = sorted((a["labels"].get("alertname"), a["state"]) for a in self.prometheus_alerts())
        alertmanager = sorted((a["labels"].get("alertname"), a["status"]["state"],
                               bool(a["status"].get("inhibitedBy"))) for a in self.alertmanager_alerts())
        return (f"\nchats: {json.dumps(chats, ensure_ascii=False, indent=1)}\nprometheus: {prometheus}"
                f"\nalertmanager (name, state, inhibited): {alertmanager}"
                f"\npusher log tail: {self.pusher_log.read_text(errors='replace')[-1500:]}"
                f"\nreceiver log tail: {self.receiver.log_text()[-1500:]}")

    def wait(self, predicate, timeout: float, what: str):
        try:
            return wait_until(predicate, timeout, interval=0.2, what=what)
        except AssertionError as err:
            raise AssertionError(f"{err}{self.report()}") from None


def start_prometheus_backend(tmp_path: Path, daemons: Daemons, pushgateway, rule_files: list[Path],
                             alertmanager_url: str) -> tuple[str, str]:
    """A Pushgateway scraped by Prometheus, which evaluates the rules: (push destination, Prometheus URL)."""
    prometheus_binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(prometheus_binary).exists():
        pytest.fail("prometheus is not installed: run 'make test', which installs Debian's package")
    gateway = pushgateway()
    prometheus_port = free_port()
    prometheus_config = write_config(tmp_path / "prometheus-e2e.yml", yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "pushgateway", "honor_labels": True,
                            "static_configs": [{"targets": [gateway.removeprefix("http://")]}]}],
    }, sort_keys=False))
    prometheus_url = daemons.start("Prometheus", [
        prometheus_binary, f"--config.file={prometheus_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}", "--rules.alert.resend-delay=1s"],
        tmp_path / "prometheus-e2e.log", prometheus_port)
    return f'gateway: "{gateway}"', prometheus_url


def start_victoriametrics_backend(tmp_path: Path, daemons: Daemons, victoriametrics, rule_files: list[Path],
                                  alertmanager_url: str) -> tuple[str, str]:
    """VictoriaMetrics taking the pushes, vmalert evaluating the same rules against it and writing its
    recording rules and alert states back: (push destination, vmalert URL)."""
    vmalert_binary = shutil.which("vmalert") or "/usr/bin/vmalert"
    if not Path(vmalert_binary).exists():
        pytest.fail("vmalert is not installed: run 'make test', which installs Debian's victoria-metrics")
    vm = victoriametrics()
    port = free_port()
    vmalert_url = daemons.start("vmalert", [
        vmalert_binary, *[f"-rule={path}" for path in rule_files], f"-datasource.url={vm}",
        f"-remoteWrite.url={vm}", f"-remoteRead.url={vm}", f"-notifier.url={alertmanager_url}",
        "-evaluationInterval=1s", "-remoteWrite.flushInterval=200ms",
        "-disableAlertgroupLabel", f"-httpListenAddr=127.0.0.1:{port}"],
        tmp_path / "vmalert-e2e.log", port)
    return f'import_url: "{vm}/api/v1/import/prometheus"', vmalert_url


@contextlib.contextmanager
def running_pipeline(tmp_path, backends: dict, alertmanager, receiver_process, fake_telegram, *,
                     site_yaml, kodeks_scenario: Scenario, mitsu_scenario: MitsuScenario,
                     backend: str = "pushgateway"):
    """Starts every stage for the site `site_yaml(push, kodeks_url, mitsu_port)` describes, pushing to
    `backend` (a Pushgateway scraped by Prometheus, or VictoriaMetrics with vmalert); yields a Pipeline;
    stops what it started itself."""
    telegram = fake_telegram()
    for route, chat in CHATS.items():
        if route == "kkt":
            telegram.add_chat(chat, type="supergroup", is_forum=True)
        else:
            telegram.add_chat(chat, type="group")
    receiver_folder = tmp_path / "receiver"
    receiver_folder.mkdir()
    receiver = receiver_process(write_receiver_config(receiver_folder, telegram.url, routes=receiver_routes()))
    alertmanager_url = alertmanager(compressed_alertmanager_config(receiver.url,
                                                                   receiver_folder / "webhook.token"))
    rules_folder = tmp_path / "rules"
    rules_folder.mkdir()
    rule_files = compressed_rules(rules_folder)
    daemons = Daemons()
    kodeks = FakeKodeksServer(kodeks_scenario).start()
    mitsu = MitsuTcpSimulator(mitsu_scenario).start()
    pusher = None
    try:
        start = start_victoriametrics_backend if backend == "victoriametrics" else start_prometheus_backend
        push, evaluator_url = start(tmp_path, daemons, backends[backend], rule_files, alertmanager_url)
        config = write_config(tmp_path / "site.yml", site_yaml(push, kodeks.url, mitsu.port))
        pusher_log = tmp_path / "pusher.log"
        pusher = subprocess.Popen(
            [sys.executable, "-m", "pusher.cli", "--config", str(config), "--interval", PUSH_INTERVAL],
            stdout=pusher_log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "KODEKS_E2E_PASSWORD": PASSWORD})
        time.sleep(1)
        if pusher.poll() is not None:
            pytest.fail(f"sitewatch-pusher exited with {pusher.returncode}: {pusher_log.read_text()}")
        yield Pipeline(tmp_path, telegram, kodeks, mitsu, evaluator_url, alertmanager_url, receiver,
                       pusher, pusher_log)
    finally:
        if pusher is not None and pusher.poll() is None:
            pusher.send_signal(signal.SIGTERM)
            try:
                pusher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pusher.kill()
                pusher.wait()
        daemons.stop_all()
        mitsu.stop()
        kodeks.stop()


@pytest.fixture(params=["pushgateway", "victoriametrics"])
def pipeline(request, tmp_path, void_address, pushgateway, victoriametrics, alertmanager, receiver_process,
             fake_telegram):
    """Every stage with the broken site of the module's docstring, on each backend."""
    kodeks = Scenario(catalogs=[Catalog("/docs"), Catalog("/docs2", main_page_problem=True)],
                      licence_until="31.12.2030")
    mitsu = MitsuScenario(fn_expiry=local_time(2, with_time=False), unsent=5, first_unsent_number=60,
                          first_unsent=local_time(-25, with_time=True))
    with running_pipeline(tmp_path, {"pushgateway": pushgateway, "victoriametrics": victoriametrics},
                          alertmanager, receiver_process, fake_telegram,
                          site_yaml=lambda push, kodeks_url, mitsu_port: site_config_text(
                              push, void_address, kodeks_url, mitsu_port),
                          kodeks_scenario=kodeks, mitsu_scenario=mitsu, backend=request.param) as running:
        yield running


def texts(messages) -> str:
    return "\n".join(m.text for m in messages)


def wait_for_site_alerts(pipe: Pipeline) -> None:
    """PcUnreachable in the duty chat, FnExpiring and FnUnsentDocuments in the kkt topic, all firing."""
    def arrived():
        duty = texts(m for m in pipe.messages("duty") if firing(m))
        kkt = texts(m for m in pipe.messages("kkt") if firing(m))
        return TITLE["PcUnreachable"] in duty and TITLE["FnExpiring"] in kkt and TITLE["FnUnsentDocuments"] in kkt

    pipe.wait(arrived, 60, "PcUnreachable in the duty chat and FnExpiring, FnUnsentDocuments in the kkt topic")


def test_site_alerts_reach_their_chats_inhibited_ones_do_not_and_fixing_resolves(pipeline):
    pipe = pipeline
    started = time.monotonic()
    wait_for_site_alerts(pipe)
    fired_after = time.monotonic() - started

    duty = [m for m in pipe.messages("duty") if firing(m) and TITLE["PcUnreachable"] in m.text]
    assert len(duty) == 1, pipe.report()
    assert f"площадка {SITE}" in duty[0].text and "не отвечает на ping" in duty[0].text, duty[0].text
    assert "клиент romashka" in duty[0].text

    kkt = [m for m in pipe.messages("kkt") if firing(m)]
    assert all(m.message_thread_id == KKT_THREAD for m in pipe.messages("kkt")), pipe.report()
    kkt_text = texts(kkt)
    assert f"площадка {SITE}" in kkt_text
    # the receiver's words: the date and calendar days, the count and the age, no decimal point
    assert re.search(r"ФН 9999078902014447 кассы 065001234567890 истекает \d\d\.\d\d\.\d{4}, (сегодня|завтра|"
                     r"через \d+ (день|дня|дней))\.", kkt_text), kkt_text
    assert re.search(r"Касса 065001234567890 не передаёт документы в ОФД: ждут \d+ документ(а|ов)?; самый старый от "
                     r"\d\d\.\d\d\.\d{4}, 2[4-6] (дня|дней) назад", kkt_text), kkt_text
    assert "критично" in kkt_text
    # Fn* go only to the topic, PcUnreachable only to duty.
    duty_text = texts(pipe.messages("duty"))
    assert TITLE["FnExpiring"] not in duty_text and TITLE["FnUnsentDocuments"] not in duty_text, pipe.report()
    assert TITLE["PcUnreachable"] not in kkt_text

    # KodeksMainPageError fires in Prometheus, reaches Alertmanager, and is silenced there by PcUnreachable.
    pipe.wait(lambda: pipe.prometheus_firing("KodeksMainPageError"), 30, "KodeksMainPageError to fire")

    def inhibited_in_alertmanager():
        return [a for a in pipe.alertmanager_alerts() if a["labels"].get("alertname") == "KodeksMainPageError"
                and a["status"]["state"] == "suppressed" and a["status"].get("inhibitedBy")]

    pipe.wait(inhibited_in_alertmanager, 15, "Alertmanager to hold KodeksMainPageError as inhibited")
    time.sleep(4)  # two group intervals: had it not been inhibited, it would have been sent by now
    everything = pipe.all_messages()
    assert not any(TITLE["KodeksMainPageError"] in m.text for ms in everything.values() for m in ms), pipe.report()
    assert not any("Кодекс" in m.text for ms in everything.values() for m in ms), pipe.report()
    assert everything["kodeks-spb"] == [] and everything["pos"] == [], pipe.report()

    # The register gets a fresh ФН and the OFD takes the documents: both alerts resolve in the topic.
    pipe.mitsu.scenario.fn_expiry = local_time(300, with_time=False)
    pipe.mitsu.scenario.unsent = 0
    fixed_at = time.monotonic()

    def resolved_in_topic():
        done = texts(m for m in pipe.messages("kkt") if resolved(m))
        return TITLE["FnExpiring"] in done and TITLE["FnUnsentDocuments"] in done

    pipe.wait(resolved_in_topic, 60, "resolved FnExpiring and FnUnsentDocuments in the kkt topic")
    resolved_after = time.monotonic() - fixed_at
    done = [m for m in pipe.messages("kkt") if resolved(m)]
    assert all(m.message_thread_id == KKT_THREAD for m in done)
    assert "Восстановлено" in texts(done) or "восстановлени" in texts(done), texts(done)
    assert f"площадка {SITE}" in texts(done)
    # The PC is still unreachable: its alert does not resolve.
    assert not any(resolved(m) and TITLE["PcUnreachable"] in m.text for m in pipe.messages("duty")), pipe.report()
    print(f"alerts delivered {fired_after:.1f}s after start, resolved {resolved_after:.1f}s after the fix")


def test_a_silent_site_sends_one_site_not_reporting_and_no_storm_from_frozen_values(pipeline):
    pipe = pipeline
    wait_for_site_alerts(pipe)
    pipe.wait(lambda: pipe.prometheus_firing("KodeksMainPageError"), 30, "KodeksMainPageError to fire")

    # Let the chats settle: nothing new for 3 s.
    def quiet():
        count = sum(len(ms) for ms in pipe.all_messages().values())
        time.sleep(3)
        return count == sum(len(ms) for ms in pipe.all_messages().values())

    pipe.wait(quiet, 30, "the chats to settle")
    before = {route: len(ms) for route, ms in pipe.all_messages().items()}

    pipe.stop_pusher()
    stopped_at = time.monotonic()

    def site_not_reporting():
        return [m for m in pipe.messages("duty")[before["duty"]:] if firing(m) and TITLE["SiteNotReporting"] in m.text]

    [message] = pipe.wait(site_not_reporting, 40, "SiteNotReporting in the duty chat")
    arrived_after = time.monotonic() - stopped_at
    assert f"площадка {SITE}" in message.text and "не присылает данные" in message.text, message.text

    # Past SiteNotReporting's for: and the freshness gate, with margin: any alert the frozen values could
    # raise, or resolve, would have been sent by then.
    horizon = GATE_AFTER + 15
    time.sleep(max(0.0, stopped_at + horizon - time.monotonic()))

    new = {route: ms[before[route]:] for route, ms in pipe.all_messages().items()}
    new_firing = [(route, m.text[:120]) for route, ms in new.items() for m in ms if firing(m)]
    assert new_firing == [("duty", message.text[:120])], f"firing messages after the stop: {new_firing}" \
        + pipe.report()
    assert len([m for m in new["duty"] if TITLE["SiteNotReporting"] in m.text]) == 1, pipe.report()
    # The frozen alerts are not resolved to the chats either: SiteNotReporting covers the site.
    new_resolved = [(route, m.text[:120]) for route, ms in new.items() for m in ms if resolved(m)]
    assert new_resolved == [], f"resolved messages after the stop: {new_resolved}" + pipe.report()
    assert pipe.prometheus_firing("SiteNotReporting"), pipe.report()
    print(f"SiteNotReporting delivered {arrived_after:.1f}s after the pusher stopped")


# --- opening hours and maintenance windows, through the whole pipeline ---

MOSCOW = ZoneInfo("Europe/Moscow")


def clock(moment: float) -> str:
    """`moment` as a time of day in Moscow, to the second, as a site config writes it."""
    return datetime.fromtimestamp(moment, MOSCOW).strftime("%H:%M:%S")


def hours_site_yaml(hours: str, checks: str):
    def site_yaml(push: str, kodeks_url: str, mitsu_port: int) -> str:
        return site_head(push) + f"""\
{hours}
    checks:
      - name: pc
        ping: {{host: 127.0.0.1, count: 1, timeout: 500ms}}
{checks.format(kodeks_url=kodeks_url, mitsu_port=mitsu_port)}
"""
    return site_yaml


def wall(message) -> float:
    """When the fake Telegram accepted `message`, as wall-clock time (it records the monotonic clock)."""
    return time.time() - (time.monotonic() - message.at)


def messages_between(pipe: Pipeline, route: str, start: float, end: float) -> list:
    return [m for m in pipe.messages(route) if start <= wall(m) < end]


def test_a_site_switched_off_at_closing_is_quiet_all_night_and_loud_when_it_does_not_come_back(
        tmp_path, pushgateway, alertmanager, receiver_process, fake_telegram):
    # Open now, closing in 30 s; closed for 75 s (the night); the PC is switched off 5 s before closing and
    # stays off. The register's oldest unsent document turns 3 days old at a minute inside the night.
    now = time.time()
    closing, opening = now + 30, now + 105
    hours = (f'    hours:\n      open: {{daily: ["{clock(now - 3600)}-{clock(closing)}", '
             f'"{clock(opening)}-{clock(opening + 5 * 3600)}"]}}\n'
             '      opening_grace: 20s\n      closing_grace: 20s')
    crossing = (int(closing + 5) // 60 + 1) * 60  # the first whole minute in the night
    first_unsent = datetime.fromtimestamp(crossing, MOSCOW) - timedelta(days=3)
    mitsu = MitsuScenario(fn_expiry=local_time(300, with_time=False), unsent=4, first_unsent_number=60,
                          first_unsent=first_unsent.strftime("%Y-%m-%d %H:%M"))
    checks = ('      - name: till-1\n        interval: 2s\n'
              '        kkt: {{driver: mitsu, port: "tcp://127.0.0.1:{mitsu_port}"}}')
    with running_pipeline(tmp_path, {"pushgateway": pushgateway}, alertmanager, receiver_process, fake_telegram,
                          site_yaml=hours_site_yaml(hours, checks), kodeks_scenario=Scenario(),
                          mitsu_scenario=mitsu) as pipe:
        pipe.wait(lambda: time.time() >= closing - 5, 60, "the evening")
        assert pipe.messages("duty") == [] and pipe.messages("kkt") == [], pipe.report()
        pipe.stop_pusher()
        switched_off = time.time()

        # The night: past the freshness gate and SiteNotReporting's wait many times over, and past the
        # documents' 3-day mark. Nothing reaches any chat.
        pipe.wait(lambda: time.time() >= opening, 120, "the morning")
        night = {route: [m.text[:120] for m in ms if wall(m) >= switched_off]
                 for route, ms in pipe.all_messages().items() if route != "watchdog"}
        assert all(texts == [] for texts in night.values()), f"messages at night: {night}" + pipe.report()
        assert not pipe.prometheus_firing("SiteNotReporting"), pipe.report()

        # At opening: the documents' alert that waited for it, then, opening_grace later, the one loud alert.
        def unsent_in_topic():
            return [m for m in pipe.messages("kkt") if firing(m) and TITLE["FnUnsentDocuments"] in m.text]

        [unsent] = pipe.wait(unsent_in_topic, 40, "FnUnsentDocuments in the kkt topic after opening")
        assert wall(unsent) >= opening, "a non-critical date alert of the night was sent before opening"

        def not_back():
            return [m for m in pipe.messages("duty") if firing(m) and TITLE["SiteNotBackAfterOpening"] in m.text]

        [message] = pipe.wait(not_back, 60, "SiteNotBackAfterOpening in the duty chat")
        assert wall(message) >= opening + 20, "sent before the opening grace was over"
        assert f"площадка {SITE}" in message.text
        opened = datetime.fromtimestamp(opening, MOSCOW)
        # The day is named when the message comes on another day than the opening (an opening at 23:59).
        day = "" if opened.date() == datetime.fromtimestamp(wall(message), MOSCOW).date() else f"{opened:%d.%m.%Y} "
        assert f"после открытия {day}в {opened:%H:%M} МСК" in message.text, message.text
        time.sleep(4)  # two group intervals: nothing else follows
        everything = texts(m for route in ("duty", "kkt", "info") for m in pipe.messages(route))
        assert TITLE["SiteNotReporting"] not in everything, pipe.report()
        assert len(not_back()) == 1 and len(unsent_in_topic()) == 1, pipe.report()
        print(f"FnUnsentDocuments {wall(unsent) - opening:.1f}s after opening, "
              f"SiteNotBackAfterOpening {wall(message) - opening:.1f}s after opening")


def test_a_maintenance_window_holds_a_failure_and_releases_it_when_it_ends(
        tmp_path, pushgateway, alertmanager, receiver_process, fake_telegram):
    # A Кодекс window from 16 s to 28 s from now; the catalog's main page breaks at 18 s and stays broken.
    now = time.time()
    start, end = now + 16, now + 28
    hours = ('    hours: {opening_grace: 5s, closing_grace: 5s}\n'
             f'    maintenance:\n      - {{name: "Кодекс: перезапуск", time: "{clock(start)}-{clock(end)}", '
             'checks: [kodeks]}')
    checks = ('      - name: kodeks\n        kodeks: {{url: "{kodeks_url}", username: ' + USERNAME
              + ', password: {{env: KODEKS_E2E_PASSWORD}}}}')
    kodeks = Scenario(catalogs=[Catalog("/docs")], licence_until="31.12.2030")
    mitsu = MitsuScenario(fn_expiry=local_time(300, with_time=False))
    with running_pipeline(tmp_path, {"pushgateway": pushgateway}, alertmanager, receiver_process, fake_telegram,
                          site_yaml=hours_site_yaml(hours, checks), kodeks_scenario=kodeks,
                          mitsu_scenario=mitsu) as pipe:
        pipe.wait(lambda: time.time() >= start + 2, 60, "the window to begin")
        pipe.kodeks.scenario.catalogs[0].main_page_problem = True
        broken_at = time.time()

        def main_page_error():
            return [m for m in pipe.messages("duty") if firing(m) and TITLE["KodeksMainPageError"] in m.text]

        [message] = pipe.wait(main_page_error, end + 5 + 40 - time.time(), "KodeksMainPageError after the window")
        # held through the window and its 5 s grace (the default 15 min is shortened below), sent after its for:
        assert wall(message) >= end, f"sent {end - wall(message):.1f}s before the window ended"
        assert TITLE["KodeksMainPageError"] not in texts(messages_between(pipe, "duty", broken_at, end))
        print(f"KodeksMainPageError held {wall(message) - broken_at:.1f}s, "
              f"sent {wall(message) - end:.1f}s after the window")
