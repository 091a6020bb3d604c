"""What the receiver's tests share: Alertmanager-shaped payloads, a config writer, and a receiver process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from conftest import ROOT, free_port, wait_until

BOT_TOKEN = "123456:TEST-token-for-sitewatch"
WEBHOOK_TOKEN = "webhook-bearer-for-tests"
GROUP_CHAT = -1001000000001
OTHER_CHAT = -1001000000002


def alert(name: str = "SiteDown", status: str = "firing", site: str = "shop-1", fingerprint: str | None = None,
          starts_at: datetime | None = None, **labels: str) -> dict:
    starts = starts_at or datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    all_labels = {"alertname": name, "site": site, "severity": "critical", **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} на {site}", "description": f"{site}: проверка не проходит"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": (starts + timedelta(minutes=7)).isoformat().replace("+00:00", "Z")
        if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": fingerprint or f"fp-{name}-{site}-{'-'.join(f'{k}={v}' for k, v in sorted(labels.items()))}",
    }


def payload(alerts: list[dict], group_key: str | None = None, receiver: str = "telegram") -> dict:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    first = (alerts[0]["labels"] or {}) if alerts else {}
    return {
        "version": "4",
        "groupKey": group_key or f'{{}}:{{alertname="{first.get("alertname", "")}", site="{first.get("site", "")}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": first.get("alertname", ""), "site": first.get("site", "")},
        "commonLabels": first,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": alerts,
    }


def write_receiver_config(folder: Path, api_url: str, *, routes: str | None = None, extra: str = "",
                          telegram_extra: str = "", outbox: str | None = None, outbox_extra: str = "") -> Path:
    """A receiver config with one bot and the routes `duty` (a group) and `other`, tuned for tests."""
    (folder / "bot.token").write_text(BOT_TOKEN + "\n", encoding="utf-8")
    (folder / "webhook.token").write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    routes = routes or f"""
  duty:
    bot: main
    chat_id: {GROUP_CHAT}
  other:
    bot: main
    chat_id: {OTHER_CHAT}
    silent_resolved: true
"""
    text = f"""
telegram:
  api_url: {api_url}
  timeout: 2s
  max_retry_interval: 1s
{telegram_extra}
bots:
  main:
    token: {{file: bot.token}}
routes:{routes}
auth:
  bearer_token: {{file: webhook.token}}
outbox:
  path: {outbox or folder / 'outbox.db'}
{outbox_extra}
timezone: Europe/Moscow
{extra}
"""
    path = folder / "receiver.yml"
    path.write_text(text, encoding="utf-8")
    return path


def post(url: str, body: dict | bytes, token: str | None = WEBHOOK_TOKEN, timeout: float = 10) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, data=data, headers={**headers, "Content-Type": "application/json"}, timeout=timeout)


class ReceiverProcess:
    """`sitewatch-receiver` as a user runs it: its own process, its own port, its log in a file."""

    def __init__(self, config: Path, log_file: Path, extra_args: tuple[str, ...] = ()):
        self.config = config
        self.log_file = log_file
        self.port = free_port()
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ReceiverProcess":
        log = self.log_file.open("a")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alertmanager.cli", "run", "--config", str(self.config),
             "--web.listen-address", f"127.0.0.1:{self.port}", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the receiver exited: {self.log_text()}")
            try:
                return requests.get(self.url + "/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 30, what="the receiver to be ready")
        return self

    def children(self) -> list[int]:
        """The receiver's own child processes: its delivery process."""
        found: list[int] = []
        if self.process is None:
            return found
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                found += [int(pid) for pid in children.read_text().split()]
            except OSError:
                pass
        return found

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            children = self.children()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            _wait_gone(children)  # the delivery process sees its parent's socket close and stops by itself

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            children = self.children()
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            _wait_gone(children)

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text


def _wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    """Waits for these processes to end; kills by pid whatever is left (a test leaves nothing running)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and "State:\tZ" not in _status(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists() and "State:\tZ" not in _status(pid):
            os.kill(pid, signal.SIGKILL)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def sites_in(messages) -> list[str]:
    """The shop-N sites the chat shows, message by message, each once per message (a block names its
    site more than once: header, summary, description)."""
    return [site for message in messages for site in dict.fromkeys(re.findall(r"\bshop-\d+\b", message.text))]


def wait_for(predicate, timeout: float, what: str):
    return wait_until(predicate, timeout, interval=0.05, what=what)


def started_at(minutes: int) -> datetime:
    return datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc) + timedelta(minutes=minutes)



def resolved_at(moment: datetime, sent: float, zone: str = "Europe/Moscow") -> str:
    """How a resolution line names its moment: "в 10:42", with the day in front ("04.12 в 23:43") when that
    is not the day its firing message was `sent` (unix time; SentMessage.date), as a run near midnight sees."""
    local = moment.astimezone(ZoneInfo(zone))
    if local.date() == datetime.fromtimestamp(sent, ZoneInfo(zone)).date():
        return f"в {local:%H:%M}"
    return f"{local:%d.%m} в {local:%H:%M}"
