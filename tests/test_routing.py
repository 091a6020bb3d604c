"""The shipped Prometheus and Alertmanager configs: they load, every alert reaches the chat it should,
and inhibition turns one outage into one message, checked with amtool, promtool and a real Alertmanager."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import ROOT, http_get, wait_until

ALERTMANAGER_YML = ROOT / "alertmanager" / "alertmanager.yml"
RECEIVER_YML = ROOT / "alertmanager" / "receiver.yml"
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
TARGETS = sorted((ROOT / "prometheus" / "targets").glob("*.yml"))

ALERT_NAMES = {
    "SiteNotReporting", "SitePushFailing", "ExporterDown", "IngestDown", "PcUnreachable", "PcPacketLoss", "PortDown",
    "MainPageBroken", "KodeksMainPageError", "KodeksBundleProblem", "KodeksMaintenanceLong",
    "KodeksLicenceExpiring", "TlsCertificateExpiring", "KktNotAnswering", "KktDataStale", "FnExpiring",
    "FnUnsentDocuments", "FnWarning", "FnRegistrationsLow", "FnReplacedNotReread", "KktClockOff",
    "KktLicenceExpiring", "KktShiftExpired", "Watchdog", "PageMaintenanceLong", "KodeksServerDown", "CheckDown",
    "SiteNotBackAfterOpening",
}

MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run 'make test', which installs Debian's {package}")
    return path


def load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def routes_of(route: dict):
    """Every route of the tree under `route`, itself included."""
    yield route
    for child in route.get("routes") or []:
        yield from routes_of(child)


def matchers_of(entry: dict, key: str = "matchers") -> list[tuple[str, str, str]]:
    parsed = []
    for text in entry.get(key) or []:
        match = MATCHER.match(text)
        assert match, f"cannot read the matcher {text!r}"
        parsed.append(match.groups())
    return parsed


def amtool_routes_test(expected: str, labels: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([binary("amtool", "prometheus-alertmanager"), "config", "routes", "test",
                           f"--config.file={ALERTMANAGER_YML}", f"--verify.receivers={expected}", *labels],
                          capture_output=True, text=True, timeout=60)


# --- Alertmanager: the file, the tree, the receivers ---------------------------------------------------

def test_alertmanager_config_passes_amtool_check_config():
    result = subprocess.run([binary("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_YML)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


ROUTING_CASES = [
    # (what it shows, expected receivers in match order, labels)
    ("watchdog", "watchdog", ["alertname=Watchdog", "severity=none"]),
    ("watchdog before any distributor", "watchdog", ["alertname=Watchdog", "distributor=kodeks-spb"]),
    ("kodeks-spb warning: its chat and our duty chat", "telegram-kodeks-spb,telegram-duty",
     ["alertname=KodeksBundleProblem", "site=office-3", "distributor=kodeks-spb", "severity=warning"]),
    ("kodeks-spb critical", "telegram-kodeks-spb,telegram-duty",
     ["alertname=KodeksMainPageError", "site=office-3", "distributor=kodeks-spb", "severity=critical"]),
    ("kodeks-spb info: its chat and our info chat", "telegram-kodeks-spb,telegram-info",
     ["alertname=KodeksLicenceExpiring", "site=office-3", "distributor=kodeks-spb", "severity=info"]),
    ("pos-service register: its chat and our kkt topic", "telegram-pos,telegram-kkt",
     ["alertname=FnExpiring", "site=shop-01", "distributor=pos-service", "severity=critical"]),
    ("pos-service other alert", "telegram-pos,telegram-duty",
     ["alertname=PortDown", "site=shop-01", "distributor=pos-service", "severity=warning"]),
    ("Fn alert", "telegram-kkt", ["alertname=FnUnsentDocuments", "site=shop-01", "severity=warning"]),
    ("Kkt alert", "telegram-kkt", ["alertname=KktNotAnswering", "site=shop-01", "severity=critical"]),
    ("Kkt info stays in the kkt topic", "telegram-kkt",
     ["alertname=KktLicenceExpiring", "site=shop-01", "severity=info"]),
    ("critical", "telegram-duty", ["alertname=PcUnreachable", "site=shop-01", "severity=critical"]),
    ("info", "telegram-info", ["alertname=TlsCertificateExpiring", "site=shop-01", "severity=info"]),
    ("default: warning", "telegram-duty", ["alertname=PcPacketLoss", "site=shop-01", "severity=warning"]),
    ("default: no severity", "telegram-duty", ["alertname=SitePushFailing", "site=shop-01"]),
    ("an unknown distributor gets our chats only", "telegram-duty",
     ["alertname=PortDown", "site=shop-9", "distributor=north-it", "severity=warning"]),
    ("an alert named like a register alert only by its middle is not one", "telegram-duty",
     ["alertname=NotFnExpiring", "site=shop-01", "severity=warning"]),
]


@pytest.mark.parametrize("expected,labels", [(c[1], c[2]) for c in ROUTING_CASES], ids=[c[0] for c in ROUTING_CASES])
def test_alerts_are_routed_to_the_expected_receivers(expected, labels):
    result = amtool_routes_test(expected, labels)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(ALERT_NAMES))
def test_every_alert_of_the_rules_reaches_a_chat(name):
    expected = ("watchdog" if name == "Watchdog" else
                "telegram-kkt" if name.startswith(("Fn", "Kkt")) else "telegram-duty")
    result = amtool_routes_test(expected, [f"alertname={name}", "site=shop-01", "severity=warning"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_routing_expectation_fails():
    result = amtool_routes_test("telegram-duty", ["alertname=FnExpiring", "site=shop-01", "severity=critical"])
    assert result.returncode != 0, result.stdout + result.stderr
    assert "telegram-kkt" in result.stdout + result.stderr


def test_severity_timings_and_the_night_mute_are_the_same_in_every_branch():
    config = load(ALERTMANAGER_YML)
    root = config["route"]
    assert root["group_by"] == ["alertname", "site"]
    assert "mute_time_intervals" not in root
    critical = info = 0
    for route in routes_of(root):
        severities = [value for name, op, value in matchers_of(route) if name == "severity" and op == "="]
        if severities == ["critical"]:
            critical += 1
            assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("10s", "1m", "1h")
        elif severities == ["info"]:
            info += 1
            assert (route["group_wait"], route["repeat_interval"]) == ("5m", "24h")
            assert route["mute_time_intervals"] == ["nightly"]
    # one per distributor, one under the register topic, one at the top
    assert critical == 4 and info == 4

    nightly = {entry["name"]: entry for entry in config["time_intervals"]}["nightly"]["time_intervals"]
    assert nightly == [{"times": [{"start_time": "22:00", "end_time": "24:00"},
                                  {"start_time": "00:00", "end_time": "08:00"}],
                        "location": "Europe/Moscow"}]

    watchdog = next(r for r in routes_of(root) if ("alertname", "=", "Watchdog") in matchers_of(r))
    assert (watchdog["receiver"], watchdog["group_wait"], watchdog["repeat_interval"]) == ("watchdog", "0s", "1m")
    assert not watchdog.get("continue")


def test_every_webhook_posts_to_a_route_of_the_receiver_with_a_token_file():
    routes = set(load(RECEIVER_YML)["routes"])
    for receiver in load(ALERTMANAGER_YML)["receivers"]:
        assert receiver.keys() == {"name", "webhook_configs"}, f"{receiver['name']}: only webhooks to the receiver"
        for webhook in receiver["webhook_configs"]:
            route = webhook["url"].rsplit("/alert/", 1)[1]
            assert route in routes, f"{receiver['name']}: the receiver has no route {route!r}"
            assert webhook["http_config"]["authorization"]["credentials_file"]
            if receiver["name"] != "telegram-info":
                assert webhook["send_resolved"] is True, receiver["name"]


def test_inhibition_rules_name_only_alerts_the_rules_define():
    rules = load(ALERTMANAGER_YML)["inhibit_rules"]
    assert rules
    for rule in rules:
        # Per site; only IngestDown, which has no site, mutes every site sitewatch-ingest holds.
        if rule["equal"] != ["site"] and "site" not in rule["equal"]:
            assert rule["source_matchers"] == ['alertname="IngestDown"'] and rule["equal"] == []
            assert 'job="sitewatch-ingest"' in rule["target_matchers"]
        for key in ("source_matchers", "target_matchers"):
            for name, op, value in matchers_of(rule, key):
                if name != "alertname":
                    continue
                for alternative in value.split("|") if op in ("=~", "!~") else [value]:
                    pattern = re.compile(alternative if op in ("=~", "!~") else re.escape(alternative))
                    assert any(pattern.fullmatch(known) for known in ALERT_NAMES), \
                        f"{key} {name}{op}{value!r}: {alternative!r} names no alert of the rules"


def test_the_watchdog_can_never_be_inhibited():
    for rule in load(ALERTMANAGER_YML)["inhibit_rules"]:
        if "alertname" in rule["equal"]:
            continue  # only another Watchdog could inhibit it there
        targets = matchers_of(rule, "target_matchers")
        names = [(op, value) for name, op, value in targets if name == "alertname"]
        assert names, f"{rule}: a rule without an alertname on the target side could hit the Watchdog"
        for op, value in names:
            hits = re.fullmatch(value, "Watchdog") if op in ("=~", "!~") else value == "Watchdog"
            assert bool(hits) == (op in ("!~", "!=")), f"{rule} can inhibit the Watchdog"


# --- Prometheus: the file and the targets -------------------------------------------------------------

def test_prometheus_config_passes_promtool(tmp_path):
    """The config and its target files, without the rules (they have their own tests)."""
    config = load(PROMETHEUS_YML)
    assert config["rule_files"] == ["rules/*.yml"]
    config.pop("rule_files")
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(PROMETHEUS_YML.parent / pattern) for pattern in sd["files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([binary("promtool", "prometheus"), "check", "config", str(copy)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_with_its_rule_files_passes_promtool():
    result = subprocess.run([binary("promtool", "prometheus"), "check", "config", str(PROMETHEUS_YML)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_monitoring_stack_and_alerts_to_alertmanager():
    config = load(PROMETHEUS_YML)
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"pushgateway", "sitewatch-exporter", "sitewatch-ingest", "alertmanager", "sitewatch-receiver",
                         "prometheus"}
    assert jobs["sitewatch-ingest"]["honor_labels"] is True  # its series carry each site's own labels
    assert jobs["sitewatch-ingest"]["static_configs"][0]["targets"] == ["127.0.0.1:9817"]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["127.0.0.1:9091"]
    assert jobs["sitewatch-receiver"]["static_configs"][0]["targets"] == ["127.0.0.1:9816"]
    assert jobs["sitewatch-exporter"]["file_sd_configs"] == [{"files": ["targets/*.yml"], "refresh_interval": "1m"}]


def test_every_exporter_target_names_its_site():
    assert TARGETS, "prometheus/targets/ has no target file"
    for path in TARGETS:
        groups = load(path)
        assert isinstance(groups, list) and groups, path.name
        for group in groups:
            assert group["targets"] and all(re.fullmatch(r"[^\s:/]+:\d+", t) for t in group["targets"]), group
            assert group["labels"].get("site"), f"{path.name}: {group['targets']} has no site label"


# --- A real Alertmanager: inhibition -------------------------------------------------------------------

class WebhookRecorder:
    """A loopback HTTP server that answers 200 to every POST and keeps (path, Authorization, body)."""

    def __init__(self):
        self.posts: list[tuple[str, str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.posts.append((self.path, self.headers.get("Authorization", ""), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def notified(self) -> set[tuple[str, str]]:
        """(alertname, site) of every firing alert notified so far."""
        return {(a["labels"]["alertname"], a["labels"].get("site", "")) for _, _, body in self.posts
                for a in body["alerts"] if a["status"] == "firing"}


def fast_copy_of_the_config(webhook_base: str, token_file) -> str:
    """alertmanager.yml with every webhook sent to `webhook_base` and every wait down to a second."""
    config = load(ALERTMANAGER_YML)
    for route in routes_of(config["route"]):
        for key in ("group_wait", "group_interval"):
            route[key] = "1s"
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = webhook_base + "/alert/" + webhook["url"].rsplit("/alert/", 1)[1]
            webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return yaml.safe_dump(config)


def test_an_unreachable_pc_inhibits_its_sites_port_alert_but_not_another_sites(alertmanager, tmp_path):
    token = tmp_path / "receiver.token"
    token.write_text("webhook-secret\n", encoding="utf-8")
    with WebhookRecorder() as recorder:
        url = alertmanager(fast_copy_of_the_config(recorder.url, token))
        now = datetime.now(timezone.utc)
        alerts = [{"labels": labels, "startsAt": now.isoformat(),
                   "endsAt": (now + timedelta(minutes=10)).isoformat()}
                  for labels in ({"alertname": "PcUnreachable", "site": "a", "severity": "critical"},
                                 {"alertname": "PortDown", "site": "a", "severity": "warning", "check": "rdp"},
                                 {"alertname": "PortDown", "site": "b", "severity": "warning", "check": "rdp"})]
        post = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post, timeout=10) as response:
            assert response.status == 200

        wait_until(lambda: {("PcUnreachable", "a"), ("PortDown", "b")} <= recorder.notified(), 20,
                   what="notifications of PcUnreachable for a and PortDown for b")
        # Several more group_interval flushes: the inhibited alert must stay unsent through all of them.
        time.sleep(4)
        assert ("PortDown", "a") not in recorder.notified(), recorder.posts
        status, body = http_get(url + "/api/v2/alerts?inhibited=true&active=false&silenced=false")
        inhibited = [a for a in json.loads(body) if a["status"]["state"] == "suppressed"]
        assert status == 200 and [(a["labels"]["alertname"], a["labels"]["site"]) for a in inhibited] == [("PortDown", "a")]

    assert {path for path, _, _ in recorder.posts} == {"/alert/duty"}
    assert {auth for _, auth, _ in recorder.posts} == {"Bearer webhook-secret"}


def test_one_cause_is_told_once_the_alert_that_says_more_stays(alertmanager, tmp_path):
    """A ФН nearly out raises FnExpiring and the ФН's replace_urgent flag: one message, the one with the date.
    The same for an OFD backlog and its flag, a register unread for days, and a POS log showing a new ФН."""
    token = tmp_path / "receiver.token"
    token.write_text("webhook-secret\n", encoding="utf-8")
    till = {"site": "a", "kkt": "001", "check": "till-1"}
    sources = [{"alertname": "FnExpiring", "severity": "critical", "fn": "F1", **till},
               {"alertname": "FnUnsentDocuments", "severity": "warning", **till},
               {"alertname": "KktDataStale", "severity": "warning", **till},
               {"alertname": "FnReplacedNotReread", "severity": "warning", "site": "a", "kkt": "002",
                "check": "pos-log", "fn": "F2", "log_fn": "F3"}]
    hidden = [{"alertname": "FnWarning", "severity": "critical", "flag": "replace_urgent", **till},
              {"alertname": "FnWarning", "severity": "warning", "flag": "ofd_timeout", **till},
              {"alertname": "KktNotAnswering", "severity": "warning", **till},
              {"alertname": "CheckDown", "severity": "warning", "site": "a", "check": "pos-log"}]
    # the same alerts of another register are not hidden by these, nor by an info expiry 30-60 days off
    other = {"alertname": "FnWarning", "severity": "critical", "flag": "replace_urgent", "site": "a",
             "kkt": "009", "check": "till-9"}
    sources.append({"alertname": "FnExpiring", "severity": "info", "fn": "F9", "site": "a", "kkt": "009",
                    "check": "till-9"})
    with WebhookRecorder() as recorder:
        url = alertmanager(fast_copy_of_the_config(recorder.url, token))
        now = datetime.now(timezone.utc)
        alerts = [{"labels": labels, "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}
                  for labels in sources + hidden + [other]]
        post = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                      headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(post, timeout=10) as response:
            assert response.status == 200

        def sent() -> set[tuple[str, str]]:
            return {(a["labels"]["alertname"], a["labels"].get("flag", a["labels"].get("kkt", "")))
                    for _, _, body in recorder.posts for a in body["alerts"] if a["status"] == "firing"}

        wait_until(lambda: {("FnExpiring", "001"), ("FnUnsentDocuments", "001"), ("KktDataStale", "001"),
                            ("FnReplacedNotReread", "002"), ("FnWarning", "replace_urgent")} <= sent(), 20,
                   what="notifications of the alerts that explain the others")
        time.sleep(4)  # several group_interval flushes: the hidden ones must stay unsent through all of them
        status, body = http_get(url + "/api/v2/alerts?inhibited=true&active=false&silenced=false")
        suppressed = sorted((a["labels"]["alertname"], a["labels"].get("flag", ""), a["labels"].get("kkt", ""))
                            for a in json.loads(body) if a["status"]["state"] == "suppressed")
    assert suppressed == [("CheckDown", "", ""), ("FnWarning", "ofd_timeout", "001"),
                          ("FnWarning", "replace_urgent", "001"), ("KktNotAnswering", "", "001")]
    firing_kkts = {a["labels"].get("kkt") for _, _, body in recorder.posts for a in body["alerts"]
                   if a["labels"]["alertname"] == "FnWarning"}
    assert firing_kkts == {"009"}
