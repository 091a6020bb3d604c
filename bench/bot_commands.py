"""How fast the bot's commands, its silence buttons and device management are, against what a user does without them.

One run starts Debian's Alertmanager, sitewatch-receiver with a `commands:` section (default poll_timeout, 25 s),
a fake Telegram that enforces the Bot FAQ's flood limits (simulators/telegram.py), and a central
sitewatch-exporter whose config has a targets_file. It then measures, one after the other:

  1. /silence round trips in a private chat, and /status with 1,000 active alerts in Alertmanager (with a
     button pressed in a group chat while its parts go out);
  2. a press of a "silence 1 h" button under a firing message, until it is answered and the silence is in
     Alertmanager's API;
  3. the same silence made with `amtool silence add` from a shell (what a user does without the bot);
  4. `sitewatch-exporter targets add` until the running exporter reports the new device's check, and 200 adds
     one after another to a targets file;
  5. the receiver's peak RSS.

    .venv/bin/python bench/bot_commands.py [--commands 30] [--alerts 1000] [--buttons 20] [--amtool 20]
                                           [--devices 10] [--bulk-adds 200]

Everything listens on 127.0.0.1; every program started here is stopped by its pid before the script exits.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the fake Telegram lives in the repo

from benchkit import (BenchError, Service, at_least_one, find_program, first_line, free_loopback_port, http_get,  # noqa: E402
                      http_request, percentile, raise_system_exit)
from simulators.telegram import (
    DEFAULT_TOKEN,
    MAX_TEXT_LENGTH,
    FakeTelegram,
    parse_html,
    utf16_length,
)

USER = 424_242_424  # the duty engineer: on allowed_users; a private chat's id is its user's id
GROUP_CHATS = [-1_001_900_000_000 - n for n in range(5)]  # routes duty-0..duty-4; the button samples rotate
WEBHOOK_TOKEN = "bot-commands-bench-webhook-token"
ALERTMANAGER_CANDIDATES = ("prometheus-alertmanager", "alertmanager")
ANSWER_TIMEOUT = 60.0  # a command answered later than this counts as lost
PACE = 1.0  # seconds between an answer and the next command: Telegram allows one message a second per chat
RUN_LIMIT = 600  # the whole run is stopped after this many seconds
WATCH_INTERVAL = 2.0  # exporter/app.py: how often the exporter looks at its config and targets file
FIRST_RUN_SPREAD = 2.0  # exporter/scheduler.py: a new check's first run waits crc32(key) of this much
SITES_PER_ALERTNAME = 250
BULK_ALERTNAMES = ("PcUnreachable", "PortDown", "KktUnreachable", "HttpCheckFailed")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exporter_command() -> list[str]:
    """`sitewatch-exporter` as installed in this virtual environment, as a user runs it."""
    script = Path(sys.executable).parent / "sitewatch-exporter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "exporter.cli"]


def timed_run(argv: list[str], what: str) -> tuple[float, str]:
    """Wall time of a whole process, spawn to exit; BenchError unless it exits 0."""
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"{what} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}")
    return took, done.stdout


# -- the stack ----------------------------------------------------------------------------------------------

def alertmanager_config(receiver_port: int, token_file: Path) -> str:
    # The button samples carry bench_chat=K and go to route duty-K; everything else (the 1,000 alerts for
    # /status) goes to a receiver with no integration, so it does not flood the chats while /status is timed.
    lines = ["route:", "  receiver: nowhere", "  group_by: [alertname, site]", "  group_wait: 0s",
             "  group_interval: 1s", "  repeat_interval: 4h", "  routes:"]
    for n in range(len(GROUP_CHATS)):
        lines += [f"    - matchers: ['bench_chat=\"{n}\"']", f"      receiver: telegram-duty-{n}"]
    lines += ["receivers:", "  - name: nowhere"]
    for n in range(len(GROUP_CHATS)):
        lines += [f"  - name: telegram-duty-{n}", "    webhook_configs:",
                  f"      - url: http://127.0.0.1:{receiver_port}/alert/duty-{n}", "        send_resolved: false",
                  "        http_config:", "          authorization:", f"            credentials_file: {token_file}"]
    return "\n".join(lines) + "\n"


def receiver_config(folder: Path, api_url: str, alertmanager_url: str, exporter_config: Path) -> Path:
    (folder / "bot.token").write_text(DEFAULT_TOKEN + "\n", encoding="utf-8")
    routes = "".join(f"\n  duty-{n}:\n    bot: main\n    chat_id: {chat}" for n, chat in enumerate(GROUP_CHATS))
    # poll_timeout is left out on purpose: its default (25 s) is what is measured.
    path = folder / "receiver.yml"
    path.write_text(f"""telegram:
  api_url: {api_url}
bots:
  main:
    token: {{file: bot.token}}
routes:{routes}
auth:
  bearer_token: {{file: webhook.token}}
outbox:
  path: {folder / 'outbox.db'}
timezone: Europe/Moscow
commands:
  alertmanager_url: {alertmanager_url}
  allowed_chats: [{', '.join(str(chat) for chat in GROUP_CHATS)}]
  allowed_users: [{USER}]
  exporter_config: {exporter_config}
""", encoding="utf-8")
    return path


@dataclass
class Stack:
    telegram: FakeTelegram
    alertmanager: Service
    receiver: Service
    exporter: Service
    workdir: Path
    central: Path
    answered: dict[str, float] = field(default_factory=dict)  # callback query id -> when the bot answered

    def check_alive(self) -> None:
        for service in (self.alertmanager, self.receiver, self.exporter):
            if not service.alive():
                raise BenchError(f"{service.name} exited: {service.log_tail()}")

    # Alertmanager

    def post_alerts(self, alerts: list[dict]) -> None:
        status, text = http_request(self.alertmanager.port, "POST", "/api/v2/alerts",
                                    json.dumps(alerts, ensure_ascii=False).encode(), timeout=30)
        if status != 200:
            raise BenchError(f"POST /api/v2/alerts: HTTP {status}: {text[:300]}")

    def am_json(self, path: str) -> list[dict]:
        status, text = http_get(self.alertmanager.port, path, timeout=10)
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {text[:300]}")
        return json.loads(text)

    def active_silence_sites(self) -> set[str]:
        sites = set()
        for silence in self.am_json("/api/v2/silences"):
            if silence["status"]["state"] == "active":
                sites |= {m["value"] for m in silence["matchers"] if m["name"] == "site"}
        return sites

    # the chat

    def say(self, text: str, chat: int = USER) -> tuple[int, float]:
        """Types `text` in `chat`: (how many messages the chat had before, when it was typed)."""
        before = len(self.telegram.messages(chat))
        said = time.monotonic()
        self.telegram.user_says(chat, text, user_id=USER)
        return before, said

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.005)
        self.check_alive()
        raise BenchError(f"no {what} within {timeout:g} s; receiver log: {self.receiver.log_tail()}")

    def answer_to(self, before: int, chat: int = USER, timeout: float = ANSWER_TIMEOUT):
        return self.wait_for(lambda: self.telegram.messages(chat)[before:], timeout, f"answer in chat {chat}")[0]


def start_stack(workdir: Path, binary: str, services: list[Service], fakes: list[FakeTelegram]) -> Stack:
    stack_answers: dict[str, float] = {}
    telegram = FakeTelegram(enforce_limits=True,
                            on_callback_answer=lambda a: stack_answers.setdefault(a["callback_query_id"],
                                                                                  time.monotonic()))
    fakes.append(telegram.start())
    telegram.add_chat(USER, type="private")
    for n, chat in enumerate(GROUP_CHATS):
        telegram.add_chat(chat, type="supergroup", title=f"duty-{n}")

    central = workdir / "central" / "central.yml"
    central.parent.mkdir()
    central.write_text("defaults: {interval: 10s}\ntargets_file: targets.yml\n", encoding="utf-8")
    exporter_port = free_loopback_port()
    exporter = Service("sitewatch-exporter", [*exporter_command(), "run", "--config", str(central),
                                              "--web.listen-address", f"127.0.0.1:{exporter_port}"],
                       exporter_port, workdir / "exporter.log", env={**os.environ, "PYTHONPATH": str(ROOT)})
    services.append(exporter.start())

    token_file = workdir / "webhook.token"
    token_file.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    receiver_port = free_loopback_port()
    am_folder = workdir / "alertmanager"
    am_folder.mkdir()
    (am_folder / "alertmanager.yml").write_text(alertmanager_config(receiver_port, token_file), encoding="utf-8")
    am_port = free_loopback_port()
    # --cluster.listen-address= turns clustering off: no gossip port, nothing leaves loopback.
    alertmanager = Service("Alertmanager", [binary, f"--config.file={am_folder / 'alertmanager.yml'}",
                                            f"--storage.path={am_folder / 'data'}",
                                            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                           am_port, workdir / "alertmanager.log")
    services.append(alertmanager.start())

    rx_folder = workdir / "receiver"
    rx_folder.mkdir()
    shutil.copy(token_file, rx_folder / "webhook.token")
    config = receiver_config(rx_folder, telegram.url, f"http://127.0.0.1:{am_port}", central)
    receiver = Service("sitewatch-receiver", [sys.executable, "-m", "alertmanager.cli", "run", "--config",
                                              str(config), "--web.listen-address", f"127.0.0.1:{receiver_port}"],
                       receiver_port, workdir / "receiver.log", env={**os.environ, "PYTHONPATH": str(ROOT)})
    services.append(receiver.start())
    return Stack(telegram, alertmanager, receiver, exporter, workdir, central, stack_answers)


# -- 1. commands ------------------------------------------------------------------------------------------

@dataclass
class Distribution:
    name: str
    values: list[float]  # seconds
    note: str = ""


def warm_up(stack: Stack) -> float:
    """/help once, not counted: the poller starts once the receiver holds the outbox's sender lease."""
    before, said = stack.say("/help")
    return stack.answer_to(before).at - said


def silence_commands(stack: Stack, count: int, prefix: str) -> list[float]:
    times = []
    last_answer = max((m.at for m in stack.telegram.messages(USER)), default=0.0)
    for n in range(count):
        time.sleep(max(0.0, last_answer + PACE - time.monotonic()))
        site = f"{prefix}-{n + 1:02d}"
        before, said = stack.say(f"/silence {site} 1h bench")
        answer = stack.answer_to(before)
        if "заглушил(а)" not in answer.text:
            raise BenchError(f"/silence {site} was answered with: {answer.text[:300]}")
        times.append(answer.at - said)
        last_answer = answer.at
    made = stack.active_silence_sites()
    missing = [f"{prefix}-{n + 1:02d}" for n in range(count) if f"{prefix}-{n + 1:02d}" not in made]
    if missing:
        raise BenchError(f"answered, but no silence in Alertmanager for {missing}")
    return times


def bulk_alerts(count: int) -> list[dict]:
    now = datetime.now(timezone.utc)
    alerts = []
    for n in range(count):
        name = BULK_ALERTNAMES[n // SITES_PER_ALERTNAME % len(BULK_ALERTNAMES)]
        site = f"bulk-{n % SITES_PER_ALERTNAME:03d}"
        alerts.append({"labels": {"alertname": name, "site": site, "severity": ("critical", "warning")[n % 2],
                                  "check": f"{site}-{name.lower()}-{n}", "client": f"client-{n % 37}"},
                       "annotations": {"summary": f"{site}: {name} горит"},
                       # endsAt an hour ahead: Alertmanager would resolve them after resolve_timeout otherwise.
                       "startsAt": iso(now - timedelta(minutes=5)), "endsAt": iso(now + timedelta(hours=1))})
    return alerts


@dataclass
class StatusResult:
    alerts_in_am: int
    first_s: float
    all_s: float
    messages: int
    longest_visible: int  # characters as Telegram counts them (UTF-16 units of the text without tags)
    longest_html: int
    alert_lines: int
    sites: int
    rate_limited: int
    quiet_note: str
    press_answered_s: float | None  # a button pressed right after /status was typed: when it was answered
    press_silenced: bool  # and whether its silence was made
    press_ignored_logged: bool  # the receiver logged it as too old to act on


def fire_with_buttons(stack: Stack, site: str, chat_index: int):
    """Fires one alert through Alertmanager to group chat `chat_index`; its firing message with buttons."""
    chat = GROUP_CHATS[chat_index]
    now = datetime.now(timezone.utc)
    stack.post_alerts([{"labels": {"alertname": "PcUnreachable", "site": site, "severity": "critical",
                                   "bench_chat": str(chat_index)},
                        "annotations": {"summary": f"{site}: компьютер не отвечает"},
                        "startsAt": iso(now), "endsAt": iso(now + timedelta(hours=1))}])

    def with_buttons():
        return [m for m in stack.telegram.messages(chat) if site in m.text and m.reply_markup]
    return stack.wait_for(with_buttons, ANSWER_TIMEOUT, f"firing message for {site} with buttons")[0]


def status_with_alerts(stack: Stack, count: int) -> StatusResult:
    busy_chat = GROUP_CHATS[0]
    busy_message = fire_with_buttons(stack, "btn-busy", 0)
    stack.post_alerts(bulk_alerts(count))
    stack.wait_for(lambda: len(stack.am_json("/api/v2/alerts?active=true")) >= count, 30,
                   f"{count} alerts in Alertmanager")
    in_am = len(stack.am_json("/api/v2/alerts"))
    time.sleep(PACE)  # the chat's per-second allowance is not used up by the last answer
    refused_before = sum(1 for method, chat, status in stack.telegram.requests
                         if method == "sendMessage" and chat == str(USER) and status == 429)
    before, said = stack.say("/status")
    # A /help typed right after it is answered after every part of /status: the poller handles updates in order.
    stack.telegram.user_says(USER, "/help", user_id=USER)
    # Someone in the duty group presses a button while the bot is still sending /status.
    time.sleep(0.5)
    pressed = time.monotonic()
    query = stack.telegram.press_button(busy_chat, busy_message.message_id,
                                        busy_message.reply_markup["inline_keyboard"][0][0]["callback_data"],
                                        user_id=USER)

    def help_seen():
        return any("Команды sitewatch" in m.text for m in stack.telegram.messages(USER)[before:])
    stack.wait_for(help_seen, 180, "answer to /help after /status")
    sent = stack.telegram.messages(USER)[before:]
    parts = sent[:next(i for i, m in enumerate(sent) if "Команды sitewatch" in m.text)]
    if not parts:
        raise BenchError("/status got no answer")
    visible = [parse_html(m.text) for m in parts]
    refused = sum(1 for method, chat, status in stack.telegram.requests
                  if method == "sendMessage" and chat == str(USER) and status == 429) - refused_before
    joined = "\n".join(visible)
    quiet = re.search(r"Заглушено или подавлено: \d+", joined)
    time.sleep(2 * PACE)  # the press, read after /help, has been handled by now
    answered = stack.answered.get(query)
    return StatusResult(
        alerts_in_am=in_am, first_s=parts[0].at - said, all_s=parts[-1].at - said, messages=len(parts),
        longest_visible=max(utf16_length(text) for text in visible), longest_html=max(len(m.text) for m in parts),
        alert_lines=sum(1 for line in joined.splitlines() if line and line[0] in "🔴🟠🔵⚪"),
        sites=len(set(re.findall(r"\bbulk-\d{3}\b", joined))), rate_limited=refused,
        quiet_note=quiet.group(0) if quiet else "",
        press_answered_s=None if answered is None else answered - pressed,
        press_silenced="btn-busy" in stack.active_silence_sites(),
        press_ignored_logged="event=button_ignored reason=too_old" in stack.receiver.log_text())


# -- 2. buttons -------------------------------------------------------------------------------------------

@dataclass
class ButtonSample:
    fired_to_message: float
    answered: float  # press -> answerCallbackQuery reached Telegram (the receiver answers before silencing)
    in_alertmanager: float  # press -> the silence is listed by GET /api/v2/silences
    notice: float  # press -> the "… заглушил(а) …" line in the chat


def silence_poller(stack: Stack, site: str, found: list[float], halt: threading.Event) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stack.alertmanager.port, timeout=10)
    try:
        while not halt.is_set():
            connection.request("GET", "/api/v2/silences")
            response = connection.getresponse()
            body = json.loads(response.read())
            for silence in body:
                if silence["status"]["state"] == "active" and any(
                        m["name"] == "site" and m["value"] == site for m in silence["matchers"]):
                    found.append(time.monotonic())
                    return
            time.sleep(0.002)
    finally:
        connection.close()


def button_samples(stack: Stack, count: int) -> list[ButtonSample]:
    samples = []
    for n in range(count):
        chat_index = n % len(GROUP_CHATS)
        chat = GROUP_CHATS[chat_index]
        site = f"btn-{n + 1:02d}"
        now = datetime.now(timezone.utc)
        fired = time.monotonic()
        stack.post_alerts([{"labels": {"alertname": "PcUnreachable", "site": site, "severity": "critical",
                                       "bench_chat": str(chat_index)},
                            "annotations": {"summary": f"{site}: компьютер не отвечает"},
                            "startsAt": iso(now), "endsAt": iso(now + timedelta(hours=1))}])

        def with_buttons(chat=chat, site=site):
            return [m for m in stack.telegram.messages(chat) if site in m.text and m.reply_markup]
        message = stack.wait_for(with_buttons, ANSWER_TIMEOUT, f"firing message for {site} with buttons")[0]
        button = message.reply_markup["inline_keyboard"][0][0]  # "🔕 Заглушить на 1 ч"
        time.sleep(max(0.0, message.at + PACE - time.monotonic()))  # the notice may follow at once
        before = len(stack.telegram.messages(chat))
        found: list[float] = []
        halt = threading.Event()
        poller = threading.Thread(target=silence_poller, args=(stack, site, found, halt), daemon=True)
        poller.start()
        try:
            pressed = time.monotonic()
            query = stack.telegram.press_button(chat, message.message_id, button["callback_data"], user_id=USER)
            answer = stack.telegram.wait_for_callback_answer(query, timeout=ANSWER_TIMEOUT)
            # The receiver answers the press at once ("⏳ Глушу на 1 ч…"), then makes the silence; an alert-style
            # answer is a refusal.
            if answer.get("show_alert"):
                raise BenchError(f"button for {site} was answered with {answer}")
            notice = stack.answer_to(before, chat)
            poller.join(timeout=10)
        finally:
            halt.set()
            poller.join(timeout=10)
        if not found:
            raise BenchError(f"the button's silence for {site} never appeared in Alertmanager")
        samples.append(ButtonSample(message.at - fired, stack.answered[query] - pressed, found[0] - pressed,
                                    notice.at - pressed))
    return samples


# -- 3. amtool ---------------------------------------------------------------------------------------------

def amtool_samples(stack: Stack, count: int) -> list[float]:
    amtool = shutil.which("amtool")
    if amtool is None:
        raise BenchError("amtool is missing: apt-get install prometheus-alertmanager")
    times = []
    for n in range(count):
        took, out = timed_run([amtool, "silence", "add", f"--alertmanager.url=http://127.0.0.1:{stack.alertmanager.port}",
                               f"site=amtool-{n + 1:02d}", "--duration=1h", "--comment=bench: the same silence"],
                              "amtool silence add")
        if not re.fullmatch(r"[0-9a-f-]{36}", out.strip()):
            raise BenchError(f"amtool silence add printed {out!r}, not a silence id")
        times.append(took)
    return times


# -- 4. devices --------------------------------------------------------------------------------------------

@dataclass
class DeviceSample:
    name: str
    cli: float  # the add command's wall time
    loaded: float  # add started -> the exporter lists the check (sitewatch_check_runs_total)
    checked: float  # add started -> sitewatch_check_up{check=…} is in /metrics
    up: float  # its value
    spread: float  # the first-run delay exporter/scheduler.py gives this check (crc32 of its key)
    duration: float  # sitewatch_check_duration_seconds of that first run


def series(text: str, name: str, check: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and f'check="{check}"' in line:
            return line
    return None


def first_run_spread(site: str, check: str, interval: float = 10.0) -> float:
    return zlib.crc32(f"{site}/{check}".encode()) / 0xFFFFFFFF * min(interval, FIRST_RUN_SPREAD)


def device_samples(stack: Stack, count: int) -> list[DeviceSample]:
    command = exporter_command()
    samples = []
    for n in range(count):
        name = f"dev-{n + 1}"
        started = time.monotonic()
        cli, _ = timed_run([*command, "targets", "add", "--config", str(stack.central), "127.0.0.1", name],
                           "sitewatch-exporter targets add")
        loaded = checked = None
        deadline = started + 60
        while checked is None and time.monotonic() < deadline:
            status, text = http_get(stack.exporter.port, "/metrics")
            now = time.monotonic()
            if status == 200:
                if loaded is None and series(text, "sitewatch_check_runs_total", name):
                    loaded = now
                up_line = series(text, "sitewatch_check_up", name)
                if up_line:
                    checked = now
                    duration_line = series(text, "sitewatch_check_duration_seconds", name)
            time.sleep(0.02)
        if checked is None:
            stack.check_alive()
            raise BenchError(f"{name} was not checked within 60 s: {stack.exporter.log_tail()}")
        samples.append(DeviceSample(name, cli, (loaded or checked) - started, checked - started,
                                    float(up_line.rpartition(" ")[2]), first_run_spread(name, name),
                                    float(duration_line.rpartition(" ")[2]) if duration_line else math.nan))
        # 127.0.0.1 is free again for the next one (the file refuses two ping targets on one address).
        timed_run([*command, "targets", "del", "--config", str(stack.central), name], "sitewatch-exporter targets del")
    return samples


@dataclass
class BulkAdds:
    times: list[float]
    size_bytes: int
    lines: int


def bulk_adds(workdir: Path, count: int) -> BulkAdds:
    """`targets add` COUNT times to a targets file no exporter watches: the command's own cost as the file grows."""
    folder = workdir / "bulk"
    folder.mkdir()
    config = folder / "central.yml"
    config.write_text("defaults: {interval: 60s}\ntargets_file: targets.yml\n", encoding="utf-8")
    command = exporter_command()
    times = []
    for n in range(count):
        address = f"127.1.{n // 250}.{n % 250 + 1}"
        took, _ = timed_run([*command, "targets", "add", "--config", str(config), address, f"kassa-{n + 1:03d}",
                             "--client", f"client-{n % 20}"], "sitewatch-exporter targets add")
        times.append(took)
    text = (folder / "targets.yml").read_text(encoding="utf-8")
    if text.count("- id:") != count:
        raise BenchError(f"{count} adds left {text.count('- id:')} targets in the file")
    return BulkAdds(times, (folder / "targets.yml").stat().st_size, text.count("\n"))


# -- printing ---------------------------------------------------------------------------------------------

def ms(value: float) -> str:
    return f"{value * 1000:,.0f} ms" if value < 10 else f"{value:,.1f} s"


def distribution_row(name: str, values: list[float]) -> tuple[str, str, str, str, str]:
    return (name, f"{len(values)}", ms(percentile(values, 0.5)), ms(percentile(values, 0.95)), ms(max(values)))


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}" for i, cell in enumerate(header)))
    for row in rows:
        print("  ".join(f"{cell:<{widths[i]}}" if i == 0 else f"{cell:>{widths[i]}}" for i, cell in enumerate(row)))


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        print(f"{(name + ':') if name else '':<{width}} {value}")


def receiver_problems(stack: Stack) -> list[str]:
    return [line[:200] for line in stack.receiver.log_text().splitlines()
            if re.search(r"level=(WARNING|ERROR|CRITICAL)", line) or line.startswith("Traceback")][:5]


# -- the run ----------------------------------------------------------------------------------------------

def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time the bot's commands and silence buttons, amtool doing the "
                                                 "same silence, and devices added to a running central exporter.")
    parser.add_argument("--commands", type=at_least_one, default=30, help="/silence round trips (default: 30)")
    parser.add_argument("--alerts", type=at_least_one, default=1000, help="active alerts for /status (default: 1000)")
    parser.add_argument("--buttons", type=at_least_one, default=20, help="button presses, one alert each (default: 20)")
    parser.add_argument("--amtool", type=at_least_one, default=20, help="amtool silence add runs (default: 20)")
    parser.add_argument("--devices", type=at_least_one, default=10, help="devices added to the running exporter "
                                                                   "(default: 10)")
    parser.add_argument("--bulk-adds", type=at_least_one, default=200, help="targets added one after another "
                                                                      "(default: 200)")
    return parser.parse_args()


def run(arguments: argparse.Namespace, binary: str, workdir: Path) -> None:
    services: list[Service] = []
    fakes: list[FakeTelegram] = []
    try:
        stack = start_stack(workdir, binary, services, fakes)
        print(f"started: Alertmanager pid {stack.alertmanager.pid}, receiver pid {stack.receiver.pid}, "
              f"exporter pid {stack.exporter.pid}, fake Telegram on port {stack.telegram.port}", flush=True)
        warm = warm_up(stack)

        print(f"1. {arguments.commands} x /silence in a private chat, {PACE:g} s after each answer ...", flush=True)
        commands = silence_commands(stack, arguments.commands, "shop")

        print(f"2. {arguments.buttons} button presses, each under its own alert ...", flush=True)
        buttons = button_samples(stack, arguments.buttons)

        print(f"3. {arguments.amtool} x amtool silence add ...", flush=True)
        amtool = amtool_samples(stack, arguments.amtool)

        print(f"4. /status with {arguments.alerts:,} alerts posted to Alertmanager ...", flush=True)
        status = status_with_alerts(stack, arguments.alerts)
        time.sleep(PACE)
        loaded_commands = silence_commands(stack, 5, "busy")

        print(f"5. {arguments.devices} devices added to the running exporter, each until it is checked ...",
              flush=True)
        devices = device_samples(stack, arguments.devices)

        print(f"6. {arguments.bulk_adds} x sitewatch-exporter targets add to one file ...", flush=True)
        bulk = bulk_adds(workdir, arguments.bulk_adds)

        peak_rx = stack.receiver.status_mib("VmHWM")
        peak_exporter = stack.exporter.status_mib("VmHWM")
        problems = receiver_problems(stack)
        rate_limited = stack.telegram.rate_limited
    finally:
        for service in reversed(services):
            service.stop()
        for fake in fakes:
            fake.stop()

    print()
    print("== chat vs shell: times from the user's action (nearest-rank percentiles) ==")
    rows = [distribution_row("/silence shop-N 1h: typed -> answer in the chat", commands),
            distribution_row(f"  same, with {status.alerts_in_am:,} alerts in Alertmanager", loaded_commands),
            distribution_row("button pressed -> silence in /api/v2/silences", [b.in_alertmanager for b in buttons]),
            distribution_row("button pressed -> callback answered (spinner stops)", [b.answered for b in buttons]),
            distribution_row("button pressed -> notice line in the chat", [b.notice for b in buttons]),
            distribution_row("alert POSTed to Alertmanager -> message with buttons", [b.fired_to_message for b in buttons]),
            distribution_row("amtool silence add (whole process)", amtool)]
    print_table(rows, ("", "samples", "p50", "p95", "max"))
    print(f"(warm-up /help, not counted: {ms(warm)}; poll_timeout is the default 25 s; a command is typed "
          f"{PACE:g} s after the previous answer)")

    print()
    print(f"== /status with {arguments.alerts:,} alerts posted ({status.alerts_in_am:,} active in Alertmanager) ==")
    print_rows([
        ("first message after", ms(status.first_s)),
        ("all messages after", ms(status.all_s)),
        ("messages", f"{status.messages}"),
        ("longest message", (f"{status.longest_visible:,} characters as Telegram counts them (limit "
                             f"{MAX_TEXT_LENGTH:,}: {'all within' if status.longest_visible <= MAX_TEXT_LENGTH else 'OVER'}),"
                             f" {status.longest_html:,} with the HTML tags")),
        ("alerts listed", f"{status.alert_lines:,} lines over {status.sites} sites; {status.quiet_note or 'none quiet'}"),
        ("429s from Telegram", f"{status.rate_limited} while sending it (one message a second per chat)"),
        ("button pressed meanwhile", ("in another chat 0.5 s after /status was typed: "
                                      + ("answered after " + ms(status.press_answered_s)
                                         if status.press_answered_s is not None else "NOT answered")
                                      + (", silence made" if status.press_silenced else ", NO silence made")
                                      + (" (receiver log: event=button_ignored reason=too_old)"
                                         if status.press_ignored_logged else ""))),
    ])

    print()
    print(f"== devices: sitewatch-exporter targets add 127.0.0.1 dev-N to a running exporter "
          f"(defaults: {{interval: 10s}}, looks at its files every {WATCH_INTERVAL:g} s) ==")
    rows = [distribution_row("targets add: whole process", [d.cli for d in devices]),
            distribution_row("add started -> check loaded (runs_total in /metrics)", [d.loaded for d in devices]),
            distribution_row("add started -> sitewatch_check_up in /metrics", [d.checked for d in devices]),
            distribution_row("  its first-run spread (crc32 of the check's key)", [d.spread for d in devices]),
            distribution_row("  its first ping run (check_duration_seconds)", [d.duration for d in devices])]
    print_table(rows, ("", "samples", "p50", "p95", "max"))
    print("per device (s): " + ", ".join(f"{d.name} {d.checked:.1f} (spread {d.spread:.1f}, up={d.up:g})"
                                          for d in devices))
    tenth = max(1, len(bulk.times) // 10)
    print_rows([
        (f"{len(bulk.times)} adds one after another", (f"{sum(bulk.times):.1f} s, {ms(sum(bulk.times) / len(bulk.times))} "
                                                      f"per add (p50 {ms(percentile(bulk.times, 0.5))}, max "
                                                      f"{ms(max(bulk.times))})")),
        ("first vs last tenth", (f"{ms(sum(bulk.times[:tenth]) / tenth)} vs {ms(sum(bulk.times[-tenth:]) / tenth)} "
                                 f"per add")),
        ("targets file at the end", f"{bulk.size_bytes:,} bytes, {bulk.lines:,} lines"),
    ])

    print()
    print_rows([
        ("receiver peak RSS", f"{peak_rx:.0f} MiB (VmHWM)" if peak_rx else "unknown"),
        ("exporter peak RSS", f"{peak_exporter:.0f} MiB (VmHWM)" if peak_exporter else "unknown"),
        ("429s from Telegram, whole run", f"{rate_limited}"),
        ("receiver warnings", "none" if not problems else problems[0]),
        *[("", line) for line in problems[1:]],
    ])
    print("Alertmanager's own telegram_configs has no commands and no buttons: without the receiver, a silence is "
          "made with amtool or the web UI.")


def main() -> int:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGALRM, raise_system_exit)
    binary = find_program(ALERTMANAGER_CANDIDATES, "bot_commands: needs Alertmanager and amtool: apt-get install prometheus-alertmanager")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}; "
          f"{first_line([binary, '--version'])}; {first_line(['amtool', '--version'])}")
    started = time.monotonic()
    signal.alarm(RUN_LIMIT)
    try:
        with tempfile.TemporaryDirectory(prefix="bot-commands-") as tmp:
            run(arguments, binary, Path(tmp))
    except BenchError as err:
        print(f"bot_commands: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The finally blocks have stopped every program by now; a traceback would say nothing more.
        print("\nbot_commands: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
