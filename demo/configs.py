"""The demo stack's config files, made from the project's own: prometheus/, alertmanager/, examples/.

Only what cannot stay as in production is changed: ports (the demo's sit 10000 above the standard ones,
so a Prometheus already running on this machine is left alone), paths into the demo's work folder,
waits (demo.timing), so that alerts reach the console within about two minutes instead of a quarter of
an hour, and the dates of the example getad-service files, kept as far from today as when they were
written, so that the demo tells the same story whenever it runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from demo import timing

ROOT = Path(__file__).resolve().parent.parent
SHOP_SITE = ROOT / "examples" / "demo.yml"
GETAD_EXAMPLE = ROOT / "examples" / "getad-date"
GETAD_REGISTER = "00123456790012.json"  # the example register whose ФН and «ФФД 1.2» licence run out
CENTRAL_SITES = ROOT / "examples" / "demo-central.yml"
UNREACHABLE_SITE = "demo-branch"  # in demo-central.yml; needs the network namespace, so root

PUSH_INTERVAL = "15s"
SCRAPE_INTERVAL = "5s"
FOR_DIVISOR = 10  # for: 10m -> 60 s, 2m -> 12 s
SILENT_AFTER = 38  # a site whose last push is older is silent (150 s in production, 2.5 push intervals)
GATE_AFTER = 68  # its alerts stop being evaluated (270 s in production, 4.5 push intervals)
ROUTING_TIMINGS = {"group_wait": "5s", "group_interval": "30s", "repeat_interval": "4h"}

# Where the pushes go and what evaluates the rules: a Pushgateway scraped by Prometheus (the default), or
# VictoriaMetrics, which takes the pushes through nginx and scrapes the rest, with vmalert.
BACKEND_ENV = "DEMO_BACKEND"
BACKENDS = ("pushgateway", "victoriametrics")


def backend() -> str:
    """The backend DEMO_BACKEND names; a clear error for anything else."""
    chosen = (os.environ.get(BACKEND_ENV) or "pushgateway").strip().lower()
    if chosen == "prometheus":
        chosen = "pushgateway"
    if chosen not in BACKENDS:
        raise SystemExit(f"demo: {BACKEND_ENV}={os.environ.get(BACKEND_ENV)!r} is not a backend: "
                         f"{' or '.join(BACKENDS)} (default pushgateway)")
    return chosen


# With a bot token and a chat id the receiver posts to that chat; without, it prints the messages.
BOT_TOKEN_ENV = "SITEWATCH_DEMO_BOT_TOKEN"
CHAT_ID_ENV = "SITEWATCH_DEMO_CHAT_ID"
API_URL_ENV = "SITEWATCH_DEMO_TELEGRAM_API"  # a self-hosted Bot API server, or a fake one


@dataclass(frozen=True)
class Ports:
    prometheus: int = 19090
    pushgateway: int = 19091
    alertmanager: int = 19093
    exporter: int = 19815
    receiver: int = 19816
    ingress_push: int = 19443  # nginx: where the pusher pushes, over TLS with the site's credential
    ingress_prometheus: int = 19444  # nginx: the office side, each behind the office credential
    ingress_alertmanager: int = 19445
    ingress_receiver: int = 19446
    vmalert: int = 19880  # DEMO_BACKEND=victoriametrics: VictoriaMetrics takes Prometheus' port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self, name)}"


@dataclass(frozen=True)
class Telegram:
    """Where the receiver's messages go: printed (dry run) or to one real chat."""
    token_set: bool
    chat_id: str | None
    api_url: str

    @classmethod
    def from_environment(cls) -> "Telegram":
        chat = os.environ.get(CHAT_ID_ENV, "").strip() or None
        return cls(bool(os.environ.get(BOT_TOKEN_ENV, "").strip()), chat,
                   os.environ.get(API_URL_ENV, "").strip() or "https://api.telegram.org")

    @property
    def dry_run(self) -> bool:
        return not (self.token_set and self.chat_id)


def _dump(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def getad_example(folder: Path, fn_in_days: int = 220, licence_in_days: int = 42) -> tuple[date, date]:
    """examples/getad-date copied into `folder` as just written, its register's ФН and «ФФД 1.2» licence
    running out `fn_in_days` and `licence_in_days` from today, Moscow time (the example's own dates pass
    one day); returns the two last days."""
    shutil.copytree(GETAD_EXAMPLE, folder)
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()
    fn_until, licence_until = today + timedelta(days=fn_in_days), today + timedelta(days=licence_in_days)
    path = folder / GETAD_REGISTER
    register = json.loads(path.read_text(encoding="utf-8"))
    register["dateTime_end"] = f"{fn_until} 00:00:00"
    register["licenses"]["10"]["dateUntil"] = f"{licence_until} 00:00:00"
    path.write_text(json.dumps(register, ensure_ascii=False, indent=4), encoding="utf-8")
    for copied in folder.iterdir():
        os.utime(copied)
    return fn_until, licence_until


def shop_site(work: Path) -> Path:
    """examples/demo.yml, its getad-service folder a copy in the work folder with dates as far from today
    as the example's were when written (getad_example), its other folders the examples'."""
    document = yaml.safe_load(SHOP_SITE.read_text(encoding="utf-8"))
    getad_example(work / "getad-date")
    for site in document["sites"]:
        for check in site.get("checks", []):
            if "getad" in check:
                check["getad"]["folder"] = str(work / "getad-date")
            if "iiko_log" in check:
                check["iiko_log"]["folder"] = str(SHOP_SITE.parent / check["iiko_log"]["folder"])
    return _dump(work / "demo.yml", document)


def central_sites(work: Path, with_unreachable_site: bool) -> Path:
    """demo-central.yml with a targets file in the work folder (devices added with /add or
    `sitewatch-exporter targets add` go there), without the site that needs a network namespace when
    there is none."""
    document = yaml.safe_load(CENTRAL_SITES.read_text(encoding="utf-8"))
    if not with_unreachable_site:
        document["sites"] = [site for site in document["sites"] if site["id"] != UNREACHABLE_SITE]
    document["targets_file"] = str(work / "targets.yml")
    return _dump(work / "demo-central.yml", document)


def prometheus(work: Path, ports: Ports, central: Path, with_pushgateway: bool = True) -> Path:
    """prometheus/prometheus.yml with the demo's ports, shortened rules and a target file for the
    central exporter (with the labels of the sites it serves); without the Pushgateway's job when the
    pushes go to VictoriaMetrics."""
    document = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    if not with_pushgateway:
        document["scrape_configs"] = [job for job in document["scrape_configs"] if job["job_name"] != "pushgateway"]
    document["global"] = {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL}
    rules = work / "prometheus" / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    timing.compress_rules(ROOT / "prometheus" / "rules", rules, divisor=FOR_DIVISOR,
                          silent_after=SILENT_AFTER, gate_after=GATE_AFTER)
    document["rule_files"] = [str(rules / "*.yml")]
    standard = {"127.0.0.1:9090": ports.prometheus, "127.0.0.1:9091": ports.pushgateway,
                "127.0.0.1:9093": ports.alertmanager, "127.0.0.1:9816": ports.receiver}

    def moved(targets: list[str]) -> list[str]:
        return [f"127.0.0.1:{standard[t]}" if t in standard else t for t in targets]

    for group in document["alerting"]["alertmanagers"]:
        for static in group["static_configs"]:
            static["targets"] = moved(static["targets"])
    for job in document["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = moved(static["targets"])
        for file_sd in job.get("file_sd_configs", []):
            file_sd["files"] = [str(work / "prometheus" / "targets" / "*.yml")]
            file_sd["refresh_interval"] = "5s"
    first_site = yaml.safe_load(central.read_text(encoding="utf-8"))["sites"][0]
    _dump(work / "prometheus" / "targets" / "central.yml", [{
        "targets": [f"127.0.0.1:{ports.exporter}"],
        "labels": {"site": first_site["id"], **first_site.get("labels", {})}}])
    return _dump(work / "prometheus" / "prometheus.yml", document)


def webhook_token(work: Path) -> Path:
    """A fresh random token shared by Alertmanager (credentials_file) and the receiver (auth)."""
    path = work / "receiver" / "webhook.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
    path.chmod(0o600)
    return path


def alertmanager(work: Path, ports: Ports, token_file: Path) -> Path:
    """alertmanager/alertmanager.yml posting to the demo's receiver, with the demo's timings."""
    document = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    timing.compress_routing(document, ROUTING_TIMINGS)
    document.pop("time_intervals", None)
    timing.point_webhooks(document, ports.url("receiver"), token_file)
    return _dump(work / "alertmanager" / "alertmanager.yml", document)


def receiver(work: Path, ports: Ports, token_file: Path, telegram: Telegram, central: Path | None = None) -> Path:
    """alertmanager/receiver.yml with the demo's outbox and links; every route to the given chat when a
    real bot is used (its token stays in the environment)."""
    document = yaml.safe_load((ROOT / "alertmanager" / "receiver.yml").read_text(encoding="utf-8"))
    document["telegram"]["api_url"] = telegram.api_url
    for bot in document["bots"].values():
        bot["token"] = {"env": BOT_TOKEN_ENV}
    if not telegram.dry_run:
        for route in document["routes"].values():
            route["chat_id"] = telegram.chat_id
            route.pop("thread_id", None)  # the chat may have no topics
    if "commands" in document:  # the bot's commands and buttons act on the demo's Alertmanager
        document["commands"]["alertmanager_url"] = ports.url("alertmanager")
        if central is not None:
            document["commands"]["exporter_config"] = str(central)
        if not telegram.dry_run and telegram.chat_id.lstrip("-").isdigit():
            document["commands"]["allowed_chats"] = [int(telegram.chat_id)]
    if "worklist" in document:  # the morning list reads the demo's Prometheus (or VictoriaMetrics)
        document["worklist"]["prometheus_url"] = ports.url("prometheus")
        # Started after 08:30, the demo would send the day's list before Prometheus holds any reading; it
        # sends one of its own once the readings are in (demo/__main__.py).
        document["worklist"]["late_by"] = "0s"
    document["auth"] = {"bearer_token": {"file": str(token_file)}}
    document["outbox"]["path"] = str(work / "receiver" / "outbox.db")
    # No links: the demo runs no Grafana, and Debian's Alertmanager has no web UI, so a dashboard or silence
    # link would open an error page. Silences go through the buttons under firing messages (a real bot).
    document.pop("links", None)
    return _dump(work / "receiver" / "receiver.yml", document)


def ingress(work: Path, ports: Ports, backend: str = "pushgateway") -> Path:
    """An ingress config for nginx on loopback: the push port in front of the Pushgateway (and of
    VictoriaMetrics' import path, which listens on Prometheus' port, for that backend), and the office
    ports in front of Prometheus (or VictoriaMetrics), Alertmanager and the receiver's status page."""
    folder = work / "ingress"
    office = {"prometheus": (ports.ingress_prometheus, ports.prometheus),
              "alertmanager": (ports.ingress_alertmanager, ports.alertmanager),
              "receiver": (ports.ingress_receiver, ports.receiver)}
    document = {
        "folder": str(folder),
        "tls": {"certificate": str(folder / "tls" / "cert.pem"), "key": str(folder / "tls" / "key.pem")},
        "nginx": {"pid_file": str(folder / "nginx.pid"), "log_folder": str(folder / "logs"),
                  **({"user": "root"} if hasattr(os, "geteuid") and os.geteuid() == 0 else {})},
        "push": {"listen": f"127.0.0.1:{ports.ingress_push}",
                 "pushgateways": {"main": f"127.0.0.1:{ports.pushgateway}"},
                 **({"import_endpoints": {"vm": f"127.0.0.1:{ports.prometheus}"}}
                    if backend == "victoriametrics" else {})},
        "office": {name: {"listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}"}
                   for name, (listen, upstream) in office.items()},
    }
    return _dump(work / "ingress.yml", document)
