"""How sitewatch-receiver copes with an alert storm, and how it compares with Alertmanager's own Telegram integration.

Part 1 fires an open-loop webhook storm at the receiver and follows every alert until a fake Telegram that
enforces the real flood limits has shown it; part 2 sends 100 alert groups for one group chat through two
Debian Alertmanagers, one using the receiver and one its native telegram_configs, and times both.

    .venv/bin/python bench/receiver_storm.py [--rate 500] [--alerts 5] [--seconds 10] [--chats 50]
                                             [--skip-storm] [--skip-groups] [--skip-native] [--web-auth]

With --web-auth the storm's receiver runs behind a web config's basic auth (--web.config.file, a bcrypt hash
of cost 10) instead of its own bearer token, so its figures show what checking a password costs each webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the fake Telegram lives in the repo

from benchkit import (BenchError, Service, find_program, first_line, free_loopback_port,  # noqa: E402
                      http_get, percentile, positive, raise_system_exit)
from simulators.telegram import DEFAULT_TOKEN, FakeTelegram

DEFAULT_RATE = 500.0
DEFAULT_ALERTS = 5
DEFAULT_SECONDS = 10.0
DEFAULT_CHATS = 50
DEFAULT_CONNECTIONS = 64
DEFAULT_RECEIVER_THREADS = 16
DEFAULT_DRAIN_TIMEOUT = 300.0
DEFAULT_NATIVE_TIMEOUT = 420.0
REQUEST_TIMEOUT = 10.0  # an answer later than this counts as an error (and is 200 times the p99 target)
ANSWER_GRACE = 1.0  # answers this long after the load still count towards the rate; later ones are backlog
LATENCY_TARGET_MS = 50.0
GROUPS_TARGET_S = 30.0
GROUP_COUNT = 100
SAMPLE_EVERY = 1.0
WEBHOOK_TOKEN = "storm-bench-webhook-token"
WEB_USER = "alertmanager"  # with --web-auth: the web config's user, whose password is WEBHOOK_TOKEN
PRIVATE_CHAT_BASE = 700_000_000  # private chats have positive ids
GROUP_CHAT_BASE = -1_001_700_000_000  # "-100…": supergroups, 20 messages a minute each
COMPARED_GROUP_CHAT = -1_001_800_000_001
ALERTMANAGER_CANDIDATES = ("prometheus-alertmanager", "alertmanager")
ALERT_NAMES = ("SiteDown", "KktUnreachable", "PingLoss", "HttpCheckFailed", "FnExpiresSoon")
STORM_MARKER = re.compile(r"\bs-(\d+)\b")
GROUP_MARKER = re.compile(r"\bg-(\d+)\b")


def metric_values(text: str) -> dict[str, float]:
    """Prometheus text exposition as {"name{labels}": value}."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            try:
                values[series] = float(value)
            except ValueError:
                pass
    return values


def metric_sum(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for series, value in values.items():
        named = series == name or series.startswith(name + "{")
        if named and all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
            total += value
    return total


def authorization(web_auth: bool) -> str:
    """The Authorization header of every request to the receiver: its bearer token, or with --web-auth the
    web config's basic auth."""
    if web_auth:
        return "Basic " + base64.b64encode(f"{WEB_USER}:{WEBHOOK_TOKEN}".encode()).decode()
    return f"Bearer {WEBHOOK_TOKEN}"


def authorized_get(port: int, path: str, header: str, timeout: float = 5.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Authorization": header})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


class AuthorizedService(Service):
    """A Service whose every path, its ready page included, asks for credentials (the receiver with --web-auth)."""

    def __init__(self, *args, authorization: str, **options):
        super().__init__(*args, **options)
        self.authorization = authorization

    def _ready_status(self) -> int:
        return authorized_get(self.port, self.ready_path, self.authorization, timeout=2)[0]


def receiver(workdir: Path, name: str, api_url: str, routes: dict[str, int], threads: int,
             web_auth: bool = False) -> Service:
    """sitewatch-receiver as a user runs it, with a config holding these routes (name -> chat id); with
    `web_auth`, behind a web config's basic auth instead of its own bearer token."""
    folder = workdir / name
    folder.mkdir()
    (folder / "bot.token").write_text(DEFAULT_TOKEN + "\n", encoding="utf-8")
    (folder / "webhook.token").write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    route_text = "".join(f"\n  {route}:\n    bot: main\n    chat_id: {chat_id}" for route, chat_id in routes.items())
    own_auth = "" if web_auth else "auth:\n  bearer_token: {file: webhook.token}"
    # Everything else is the receiver's default: its senders, timeouts and limits are what is measured.
    (folder / "receiver.yml").write_text(f"""telegram:
  api_url: {api_url}
bots:
  main:
    token: {{file: bot.token}}
routes:{route_text}
{own_auth}
outbox:
  path: {folder / 'outbox.db'}
  dedup_window: 10m
timezone: Europe/Moscow
""", encoding="utf-8")
    port = free_loopback_port()
    argv = [sys.executable, "-m", "alertmanager.cli", "run", "--config", str(folder / "receiver.yml"),
            "--web.listen-address", f"127.0.0.1:{port}", "--threads", str(threads)]
    service_name, log_path = f"sitewatch-receiver ({name})", workdir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not web_auth:
        return Service(service_name, argv, port, log_path, env=env)
    import bcrypt  # a dependency of sitewatch itself

    digest = bcrypt.hashpw(WEBHOOK_TOKEN.encode(), bcrypt.gensalt(10)).decode()
    (folder / "web.yml").write_text(f"basic_auth_users:\n  {WEB_USER}: '{digest}'\n", encoding="utf-8")
    return AuthorizedService(service_name, argv + ["--web.config.file", str(folder / "web.yml")], port, log_path,
                             env=env, authorization=authorization(True))


def receiver_log_summary(service: Service) -> tuple[Counter, list[str]]:
    """Warnings and errors, counted by kind, and the first line of each kind as written."""
    kinds: Counter = Counter()
    first_lines: dict[str, str] = {}
    for line in service.log_text().splitlines():
        # Also two kinds of info line: a 429 means the receiver's own limiter let a message through too early,
        # and the web server saying it stopped accepting connections explains a stall no figure shows.
        notable = (re.search(r"level=(WARNING|ERROR|CRITICAL)", line) or "event=rate_limited" in line
                   or "connection limit" in line)
        if not notable and not line.startswith("Traceback"):
            continue
        event = re.search(r"\bevent=(\S+)", line)
        if event:
            kind = event.group(1)
        else:
            logger = re.search(r"\blogger=(\S+) (.*)", line)
            # "Task queue depth is 7" and "... is 8" are one kind of line.
            kind = re.sub(r"\d+", "N", f"{logger.group(1)}: {logger.group(2)}" if logger else line)[:90]
        kinds[kind] += 1
        first_lines.setdefault(kind, line[:240])
    return kinds, list(first_lines.values())[:6]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def markers_by_message(messages, pattern: re.Pattern) -> list[tuple[float, set[int]]]:
    # A block names its site more than once (and a header may too): count each marker once per message.
    return [(message.at, {int(number) for number in pattern.findall(message.text)}) for message in messages]


# -- part 1: the webhook storm ---------------------------------------------------------------------------

@dataclass
class Webhook:
    index: int
    due: float  # monotonic time it was scheduled for
    started: float = 0.0
    finished: float = 0.0
    status: int | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None

    @property
    def latency(self) -> float:
        # From the scheduled time, so time spent waiting for a free connection counts too; failures sort last.
        return self.finished - self.due if self.accepted else math.inf


def storm_routes(chats: int) -> dict[str, int]:
    privates = chats // 2
    routes = {f"private-{n:02d}": PRIVATE_CHAT_BASE + n for n in range(privates)}
    routes |= {f"group-{n:02d}": GROUP_CHAT_BASE - n for n in range(chats - privates)}
    return routes


def storm_bodies(count: int, alerts_each: int, route_names: list[str]) -> list[tuple[str, bytes]]:
    """(path, body) of every webhook; alert k of the storm is site s-k, so each delivered alert can be told apart."""
    started = iso(datetime.now(timezone.utc) - timedelta(minutes=3))
    bodies = []
    for index in range(count):
        name = ALERT_NAMES[index % len(ALERT_NAMES)]
        alerts = []
        for k in range(index * alerts_each, (index + 1) * alerts_each):
            site = f"s-{k}"
            alerts.append({
                "status": "firing",
                "labels": {"alertname": name, "site": site, "severity": "critical", "client": f"client-{k // 20}"},
                "annotations": {"summary": f"{name} на {site}", "description": f"{site}: проверка не проходит"},
                "startsAt": started, "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph",
                "fingerprint": f"{k:016x}",
            })
        document = {
            "version": "4", "groupKey": f'{{}}:{{alertname="{name}", storm="{index}"}}', "truncatedAlerts": 0,
            "status": "firing", "receiver": "telegram", "groupLabels": {"alertname": name},
            "commonLabels": {"alertname": name, "severity": "critical"}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.local:9093", "alerts": alerts,
        }
        bodies.append((f"/alert/{route_names[index % len(route_names)]}",
                       json.dumps(document, ensure_ascii=False).encode()))
    return bodies


class LoadProcess:
    """The storm's sender: a process of its own with one event loop. Python threads sharing this process
    with the fake Telegram would wait for each other's lock, and that wait would count as the receiver's
    latency. Started before the clock starts, so its start-up is not counted either."""

    def __enter__(self) -> "LoadProcess":
        self.pool = multiprocessing.get_context("spawn").Pool(1)
        self.pool.apply(time.monotonic)  # up and imported
        return self

    def __exit__(self, *_exc) -> None:
        self.pool.close()
        self.pool.join()

    def send_storm(self, port: int, bodies: list[tuple[str, bytes]], rate: float, connections: int,
                   start: float, header: str) -> list[Webhook]:
        """Open loop: webhook i is due at start + i/rate whatever happened to the others. `start` is
        time.monotonic(), one clock for every process on Linux; `header` is the Authorization sent."""
        return self.pool.apply(_storm_in_this_process, (port, bodies, rate, connections, start, header))


def _storm_in_this_process(port: int, bodies: list[tuple[str, bytes]], rate: float, connections: int,
                           start: float, header: str) -> list[Webhook]:
    return asyncio.run(_storm(port, bodies, rate, connections, start, header))


async def _storm(port: int, bodies: list[tuple[str, bytes]], rate: float, connections: int,
                 start: float, header: str) -> list[Webhook]:
    due_now: asyncio.Queue[Webhook | None] = asyncio.Queue()
    results: list[Webhook] = []

    async def schedule() -> None:
        for index in range(len(bodies)):
            record = Webhook(index, start + index / rate)
            delay = record.due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due_now.put_nowait(record)
        for _ in range(connections):
            due_now.put_nowait(None)

    async def connection() -> None:
        reader = writer = None
        while (record := await due_now.get()) is not None:
            record.started = time.monotonic()
            path, body = bodies[record.index]
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                    f"Authorization: {header}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(head + body)
                record.status, closes, answer = await asyncio.wait_for(_read_answer(reader), REQUEST_TIMEOUT)
                if record.status != 200:
                    record.error = f"HTTP {record.status}"
                elif (outcome := json.loads(answer).get("status")) != "queued":
                    record.error = f"200 but {outcome!r}"  # "duplicate" would mean its alerts were not stored
                if closes:
                    writer.close()
                    writer = None
            except asyncio.TimeoutError:
                record.error = f"no answer within {REQUEST_TIMEOUT:g} s"
            except (OSError, ValueError, asyncio.IncompleteReadError) as err:
                record.error = type(err).__name__
            if record.error and record.status is None and writer is not None:
                writer.close()
                writer = None
            record.finished = time.monotonic()
            results.append(record)
        if writer is not None:
            writer.close()

    await asyncio.gather(schedule(), *(connection() for _ in range(connections)))
    return sorted(results, key=lambda record: record.index)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, whether the server closes the connection, body) of one HTTP/1.1 answer."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:])}
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() == "close", body


class OutboxSampler(threading.Thread):
    """Reads the receiver's /metrics every second: the outbox depth over time."""

    def __init__(self, port: int, start: float, header: str):
        super().__init__(name="outbox-sampler", daemon=True)
        self.port = port
        self.header = header
        self.start_time = start
        self.samples: list[tuple[float, int | None]] = []  # (seconds since the load began, items waiting)
        self.halt = threading.Event()

    def run(self) -> None:
        tick = 1
        while not self.halt.is_set():
            due = self.start_time + tick * SAMPLE_EVERY
            if self.halt.wait(max(0.0, due - time.monotonic())):
                return
            try:
                status, text = authorized_get(self.port, "/metrics", self.header, timeout=5)
                depth = int(metric_values(text)["sitewatch_receiver_outbox_messages"]) if status == 200 else None
            except (OSError, http.client.HTTPException, KeyError, ValueError):
                depth = None
            self.samples.append((time.monotonic() - self.start_time, depth))
            tick = max(tick + 1, math.floor((time.monotonic() - self.start_time) / SAMPLE_EVERY) + 1)

    def latest(self) -> int | None:
        return self.samples[-1][1] if self.samples else None


@dataclass
class StormRun:
    """What the storm left behind, before any figure is worked out."""

    webhooks: list[Webhook]
    start: float  # monotonic time the first webhook was due
    load_span: float  # from then until the last answer
    receiver_cpu: float  # its user + sys seconds over load_span: the web process that answers webhooks
    delivery_cpu: float  # its delivery process's, over the same span: composing and sending to Telegram
    script_cpu: float  # this process's, over the same span: the load generator and the fake Telegram
    samples: list[tuple[float, int | None]]
    drained: bool
    messages: list
    rate_limited_private: int
    rate_limited_group: int
    peak_rss_mib: float | None
    server: dict[str, float]  # the receiver's /metrics at the end


@dataclass
class StormResult:
    sent: int
    accepted: int
    errors: dict[str, int]
    accepted_per_s: float  # answered "queued" by the end of the load + ANSWER_GRACE, per second of load
    overall_per_s: float  # all accepted over the whole span until the last answer
    latency_ms: dict[str, float]
    start_lag_ms_p99: float
    last_answer_s: float
    receiver_cpu: float
    delivery_cpu: float
    script_cpu: float
    depth_series: list[tuple[float, int | None]]
    drained: bool
    drained_at_s: float | None  # the last message that reached Telegram, since the load began
    messages: int
    alerts_sent: int  # in webhooks answered "queued"
    alerts_delivered: int
    alerts_lost: int
    alerts_extra: int  # delivered although their webhook got no "queued" answer
    duplicates: int
    most_alerts_in_a_message: int
    rate_limited_private: int
    rate_limited_group: int
    receiver_saw_429: float
    peak_rss_mib: float | None
    server_under_target: float | None  # the receiver's own histogram: share answered within the latency target
    server_webhooks: float
    log_events: Counter = field(default_factory=Counter)
    log_lines: list[str] = field(default_factory=list)


def run_storm(arguments: argparse.Namespace, workdir: Path) -> StormResult:
    count = max(1, round(arguments.rate * arguments.seconds))
    routes = storm_routes(arguments.chats)
    bodies = storm_bodies(count, arguments.alerts, list(routes))
    telegram = FakeTelegram(enforce_limits=True).start()
    try:
        header = authorization(arguments.web_auth)
        with receiver(workdir, "storm", telegram.url, routes, arguments.receiver_threads,
                      arguments.web_auth) as service, LoadProcess() as load:
            start = time.monotonic() + 0.5
            sampler = OutboxSampler(service.port, start, header)
            sampler.start()
            try:
                time.sleep(max(0.0, start - time.monotonic()))
                delivery = service.child_pids()[:1]
                receiver_before, script_before = service.cpu_seconds(), time.process_time()
                delivery_before = sum(service.cpu_seconds(pid) for pid in delivery)
                webhooks = load.send_storm(service.port, bodies, arguments.rate, arguments.connections, start,
                                           header)
                span = max(arguments.seconds, max(w.finished for w in webhooks) - start)
                receiver_cpu, script_cpu = service.cpu_seconds() - receiver_before, time.process_time() - script_before
                delivery_cpu = sum(service.cpu_seconds(pid) for pid in delivery) - delivery_before
                drained = wait_for_drain(service, sampler, start + span + arguments.drain_timeout)
                status, text = authorized_get(service.port, "/metrics", header)
                server = metric_values(text) if status == 200 else {}
                peak_rss = service.status_mib("VmHWM")
            finally:
                sampler.halt.set()
                sampler.join(timeout=10)
        # Stopped: no message can still be on its way to the fake now.
        refused = [chat for method, chat, status in telegram.requests if method == "sendMessage" and status == 429]
        run = StormRun(webhooks, start, span, receiver_cpu, delivery_cpu, script_cpu, list(sampler.samples), drained,
                       telegram.messages(), sum(1 for chat in refused if not chat.startswith("-")),
                       sum(1 for chat in refused if chat.startswith("-")), peak_rss, server)
    finally:
        telegram.stop()
    return summarise_storm(arguments, run, service)


def wait_for_drain(service: Service, sampler: OutboxSampler, deadline: float) -> bool:
    # The load is over, so every accepted alert is in the outbox: the first 0 after it means all were sent.
    seen = len(sampler.samples)
    while time.monotonic() < deadline:
        if not service.alive():
            raise BenchError(f"the receiver exited during the storm: {service.log_tail()}")
        if len(sampler.samples) > seen and sampler.latest() == 0:
            return True
        time.sleep(0.1)
    return False


def summarise_storm(arguments: argparse.Namespace, run: StormRun, service: Service) -> StormResult:
    webhooks, start = run.webhooks, run.start
    accepted = [w for w in webhooks if w.accepted]
    in_time = [w for w in accepted if w.finished <= start + arguments.seconds + ANSWER_GRACE]
    latencies = [w.latency for w in webhooks]

    per_message = markers_by_message(run.messages, STORM_MARKER)
    seen_in: Counter = Counter()
    for _at, markers in per_message:
        seen_in.update(markers)
    queued = {k for w in accepted for k in range(w.index * arguments.alerts, (w.index + 1) * arguments.alerts)}
    delivered = set(seen_in)
    last_message = max((at for at, _ in per_message), default=None)

    server = run.server
    bucket = metric_sum(server, "sitewatch_receiver_webhook_duration_seconds_bucket", le=f"{LATENCY_TARGET_MS / 1000}")
    total = metric_sum(server, "sitewatch_receiver_webhook_duration_seconds_count")
    events, lines = receiver_log_summary(service)
    return StormResult(
        sent=len(webhooks), accepted=len(accepted), errors=dict(Counter(w.error for w in webhooks if w.error)),
        accepted_per_s=len(in_time) / arguments.seconds, overall_per_s=len(accepted) / run.load_span,
        latency_ms={key: percentile(latencies, share) * 1000
                    for key, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        start_lag_ms_p99=percentile([w.started - w.due for w in webhooks], 0.99) * 1000,
        last_answer_s=max(w.finished for w in webhooks) - start,
        receiver_cpu=run.receiver_cpu, delivery_cpu=run.delivery_cpu, script_cpu=run.script_cpu,
        depth_series=run.samples, drained=run.drained,
        drained_at_s=(last_message - start) if run.drained and last_message is not None else None,
        messages=len(run.messages), alerts_sent=len(queued), alerts_delivered=len(delivered & queued),
        alerts_lost=len(queued - delivered), alerts_extra=len(delivered - queued),
        duplicates=sum(1 for times in seen_in.values() if times > 1),
        most_alerts_in_a_message=max((len(markers) for _, markers in per_message), default=0),
        rate_limited_private=run.rate_limited_private, rate_limited_group=run.rate_limited_group,
        receiver_saw_429=metric_sum(server, "sitewatch_receiver_telegram_requests_total", method="sendMessage",
                                    result="rate_limited"),
        peak_rss_mib=run.peak_rss_mib,
        server_under_target=bucket / total if total else None, server_webhooks=total,
        log_events=events, log_lines=lines)


# -- part 2: 100 alert groups for one group chat, through Alertmanager --------------------------------------

ALERTMANAGER_ROUTE = """route:
  receiver: chat
  group_by: [alertname, site]
  group_wait: 1s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: chat
"""


def alertmanager(binary: str, workdir: Path, name: str, receiver_text: str) -> Service:
    folder = workdir / name
    folder.mkdir()
    (folder / "alertmanager.yml").write_text(ALERTMANAGER_ROUTE + receiver_text, encoding="utf-8")
    port = free_loopback_port()
    argv = [binary, f"--config.file={folder / 'alertmanager.yml'}", f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    return Service(f"Alertmanager ({name})", argv, port, workdir / f"{name}.log")


def group_alerts() -> list[dict]:
    now = datetime.now(timezone.utc)
    # endsAt an hour ahead: without it Alertmanager resolves them after resolve_timeout (5 min), mid-measurement.
    return [{"labels": {"alertname": "SiteDown", "site": f"g-{n:03d}", "severity": "critical"},
             "annotations": {"summary": f"SiteDown на g-{n:03d}", "description": f"g-{n:03d}: проверка не проходит"},
             "startsAt": iso(now), "endsAt": iso(now + timedelta(hours=1)),
             "generatorURL": "http://prometheus.local:9090/graph"} for n in range(GROUP_COUNT)]


@dataclass
class GroupsResult:
    name: str
    posted: bool
    post_error: str | None
    readable: int  # alerts whose marker was seen in the chat
    readable_in_target: int  # of those, seen within GROUPS_TARGET_S of the POST
    all_readable_s: float | None  # from the POST until the last of the 100 was readable
    first_readable_s: float | None
    messages: int
    rate_limited: int
    failed_attempts: float | None  # Alertmanager's failed notification requests
    waited_s: float
    log_events: Counter = field(default_factory=Counter)
    log_lines: list[str] = field(default_factory=list)


@dataclass
class Side:
    """One way from Alertmanager to the chat: its Alertmanager, its fake Telegram, what it delivered."""

    name: str
    manager: Service
    telegram: FakeTelegram
    integration: str
    extra: Service | None = None  # the receiver, for the side that uses it
    posted_at: float | None = None
    post_error: str | None = None

    def arrivals(self) -> dict[int, float]:
        first: dict[int, float] = {}
        for at, markers in markers_by_message(self.telegram.messages(COMPARED_GROUP_CHAT), GROUP_MARKER):
            for marker in markers:
                first.setdefault(marker, at)
        return first


def post_alerts(side: Side, body: bytes, barrier: threading.Barrier) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", side.manager.port, timeout=30)
    try:
        barrier.wait()
        side.posted_at = time.monotonic()
        connection.request("POST", "/api/v2/alerts", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            side.post_error = f"HTTP {response.status}: {answer[:200]!r}"
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as err:
        side.post_error = f"{type(err).__name__}: {err}"
    finally:
        connection.close()


def run_groups(arguments: argparse.Namespace, workdir: Path, binary: str) -> list[GroupsResult]:
    token_file = workdir / "groups-webhook.token"
    token_file.write_text(WEBHOOK_TOKEN + "\n", encoding="utf-8")
    fakes: list[FakeTelegram] = []
    services: list[Service] = []
    sides: list[Side] = []
    try:
        receiver_telegram = FakeTelegram(enforce_limits=True).start()
        fakes.append(receiver_telegram)
        bridge = receiver(workdir, "groups-receiver", receiver_telegram.url, {"duty": COMPARED_GROUP_CHAT},
                          arguments.receiver_threads)
        services.append(bridge.__enter__())
        webhook_text = f"""    webhook_configs:
      - url: http://127.0.0.1:{bridge.port}/alert/duty
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {token_file}
"""
        manager = alertmanager(binary, workdir, "am-receiver", webhook_text)
        services.append(manager.__enter__())
        sides.append(Side("receiver", manager, receiver_telegram, "webhook", extra=bridge))
        if not arguments.skip_native:
            native_telegram = FakeTelegram(enforce_limits=True).start()
            fakes.append(native_telegram)
            telegram_text = f"""    telegram_configs:
      - api_url: {native_telegram.url}
        bot_token: {DEFAULT_TOKEN}
        chat_id: {COMPARED_GROUP_CHAT}
        parse_mode: HTML
        send_resolved: true
"""
            native = alertmanager(binary, workdir, "am-native", telegram_text)
            services.append(native.__enter__())
            sides.append(Side("native", native, native_telegram, "telegram"))

        body = json.dumps(group_alerts(), ensure_ascii=False).encode()
        barrier = threading.Barrier(len(sides))
        posters = [threading.Thread(target=post_alerts, args=(side, body, barrier)) for side in sides]
        for thread in posters:
            thread.start()
        for thread in posters:
            thread.join()
        origin = min(side.posted_at or time.monotonic() for side in sides)
        deadline = origin + arguments.native_timeout
        announced: set[str] = set()
        while time.monotonic() < deadline:
            pending = [side for side in sides if side.post_error is None and len(side.arrivals()) < GROUP_COUNT]
            for side in sides:
                if side not in pending and side.name not in announced:
                    announced.add(side.name)
                    print(f"  {side.name}: done after {time.monotonic() - side.posted_at:.0f} s", flush=True)
            if not pending:
                break
            for service in services:
                if not service.alive():
                    raise BenchError(f"{service.name} exited: {service.log_tail()}")
            time.sleep(0.25)
        waited = time.monotonic() - origin
        results = []
        for side in sides:
            arrivals = side.arrivals()
            failed = None
            try:
                status, text = http_get(side.manager.port, "/metrics")
                if status == 200:
                    failed = metric_sum(metric_values(text), "alertmanager_notification_requests_failed_total",
                                        integration=side.integration)
            except (OSError, http.client.HTTPException):
                pass
            events, lines = receiver_log_summary(side.extra) if side.extra else (Counter(), [])
            complete = len(arrivals) >= GROUP_COUNT
            results.append(GroupsResult(
                name=side.name, posted=side.post_error is None, post_error=side.post_error, readable=len(arrivals),
                readable_in_target=sum(1 for at in arrivals.values() if at - side.posted_at <= GROUPS_TARGET_S),
                all_readable_s=max(arrivals.values()) - side.posted_at if complete else None,
                first_readable_s=min(arrivals.values()) - side.posted_at if arrivals else None,
                messages=len(side.telegram.messages(COMPARED_GROUP_CHAT)), rate_limited=side.telegram.rate_limited,
                failed_attempts=failed, waited_s=waited, log_events=events, log_lines=lines))
        return results
    finally:
        for service in reversed(services):
            service.stop()
        for fake in fakes:
            fake.stop()


# -- printing ---------------------------------------------------------------------------------------------

def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def fmt_ms(value: float) -> str:
    return f">{REQUEST_TIMEOUT * 1000:,.0f}" if math.isinf(value) else f"{value:,.1f}"


def depth_series_text(samples: list[tuple[float, int | None]], load_seconds: float) -> list[str]:
    # Every sample while the load runs and just after, then every tenth: a drain of minutes stays readable.
    shown = [(t, depth) for n, (t, depth) in enumerate(samples)
             if t <= load_seconds + 5 or n % 10 == 9 or n == len(samples) - 1]
    parts = [f"t={t:.0f}s {'?' if depth is None else f'{depth:,}'}" for t, depth in shown]
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) + 2 > 96:
            lines.append(line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    if line:
        lines.append(line)
    return lines


def print_storm(result: StormResult, arguments: argparse.Namespace) -> list[tuple[str, bool]]:
    print()
    print(f"== webhook storm: {arguments.rate:g} webhooks/s x {arguments.alerts} alerts for {arguments.seconds:g} s "
          f"to {arguments.chats} chats, open loop over {arguments.connections} keep-alive connections"
          + (", behind a web config's basic auth ==" if arguments.web_auth else " =="))
    rate_ok = result.accepted_per_s >= arguments.rate and result.accepted == result.sent
    p99_ok = result.latency_ms["p99"] < LATENCY_TARGET_MS
    lost_ok = result.alerts_lost == 0 and result.alerts_sent == result.sent * arguments.alerts
    latency = result.latency_ms
    rows = [
        ("webhooks sent", f"{result.sent:,}"),
        ("accepted (200 queued)", f"{result.accepted:,}"),
        ("errors", ", ".join(f"{kind}: {n:,}" for kind, n in sorted(result.errors.items())) or "none"),
        ("accepted webhooks/s", f"{result.accepted_per_s:,.1f}   target >= {arguments.rate:g}: {verdict(rate_ok)}"),
        ("", (f"(answered by the load's end + {ANSWER_GRACE:g} s, per second of load; all {result.accepted:,} "
              f"took until {result.last_answer_s:.1f} s = {result.overall_per_s:,.1f}/s)")),
        ("latency ms", (f"p50 {fmt_ms(latency['p50'])}, p90 {fmt_ms(latency['p90'])}, p99 {fmt_ms(latency['p99'])}, "
                        f"max {fmt_ms(latency['max'])}   target p99 < {LATENCY_TARGET_MS:g}: {verdict(p99_ok)}")),
        ("", (f"(from each webhook's scheduled time; p99 wait for a free connection before sending: "
              f"{result.start_lag_ms_p99:,.1f} ms, included)")),
    ]
    if result.server_under_target is not None:
        rows.append(("receiver's own histogram", (f"{result.server_under_target:.1%} of {result.server_webhooks:,.0f} "
                                                  f"answered within {LATENCY_TARGET_MS:g} ms of reaching its handler")))
    span = max(arguments.seconds, result.last_answer_s)
    rows.append(("CPU while loaded", (f"receiver's web process {result.receiver_cpu:.1f} s in {span:.1f} s "
                                      f"({100 * result.receiver_cpu / span:.0f}% of one core), its delivery process "
                                      f"{result.delivery_cpu:.1f} s ({100 * result.delivery_cpu / span:.0f}%),")))
    rows.append(("", f"this script (load and fake Telegram) {result.script_cpu:.1f} s "
                     f"({100 * result.script_cpu / span:.0f}%); {os.cpu_count()} CPUs"))
    series = depth_series_text(result.depth_series, arguments.seconds)
    rows.append(("outbox depth", series[0] if series else "(no samples)"))
    rows += [("", line) for line in series[1:]]
    if result.drained and result.drained_at_s is not None:
        drained = (f"{result.drained_at_s:.1f} s after the load began ({result.drained_at_s - arguments.seconds:.1f} s "
                   f"after its end), when the last message reached Telegram")
    elif result.drained:
        drained = "empty, and no message was needed"
    else:
        left = result.depth_series[-1][1] if result.depth_series else None
        drained = f"NOT within --drain-timeout {arguments.drain_timeout:g} s after the load ({left} still waiting)"
    rows += [
        ("outbox drained", drained),
        ("telegram messages", f"{result.messages:,} (up to {result.most_alerts_in_a_message} alerts in one)"),
        ("alerts delivered / sent", (f"{result.alerts_delivered:,} / {result.alerts_sent:,}, lost "
                                     f"{result.alerts_lost:,}   target none lost: {verdict(lost_ok)}")),
    ]
    if result.alerts_extra:
        rows.append(("", f"{result.alerts_extra:,} more delivered from webhooks that got no 'queued' answer"))
    rows += [
        ("duplicates", f"{result.duplicates:,} alerts seen in more than one message"),
        ("429s from Telegram", (f"{result.rate_limited_private + result.rate_limited_group:,} "
                                f"({result.rate_limited_private:,} to private chats, {result.rate_limited_group:,} to "
                                f"groups; the receiver counted {result.receiver_saw_429:,.0f})")),
        ("receiver peak RSS", f"{result.peak_rss_mib:.0f} MiB (VmHWM)" if result.peak_rss_mib is not None
                              else "unknown"),
    ]
    rows += log_rows(result.log_events, result.log_lines)
    print_rows(rows)
    return [("storm: accepted webhooks/s", rate_ok), ("storm: p99 latency", p99_ok), ("storm: none lost", lost_ok)]


def log_rows(events: Counter, lines: list[str]) -> list[tuple[str, str]]:
    if not events:
        return [("receiver log", "no warnings or errors")]
    rows = [("receiver log" if n == 0 else "", f"{count:>6,} x {kind}") for n, (kind, count) in
            enumerate(events.most_common())]
    rows += [("first of each kind" if n == 0 else "", line) for n, line in enumerate(lines)]
    return rows


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        print(f"{(name + ':') if name else '':<{width}} {value}")


def print_groups(results: list[GroupsResult], arguments: argparse.Namespace) -> list[tuple[str, bool]]:
    print()
    print(f"== {GROUP_COUNT} alert groups for one group chat through Alertmanager (group_by [alertname, site], "
          f"group_wait 1s): receiver vs native telegram_configs ==")

    def seconds(value: float | None, result: GroupsResult) -> str:
        if not result.posted:
            return "POST failed"
        return f"{value:.1f} s" if value is not None else f"not all in {result.waited_s:.0f} s"

    rows = [("", [r.name for r in results]),
            ("all 100 readable after", [seconds(r.all_readable_s, r) for r in results]),
            ("alerts readable", [f"{r.readable}/{GROUP_COUNT}" for r in results]),
            (f"readable within {GROUPS_TARGET_S:g} s", [f"{r.readable_in_target}/{GROUP_COUNT}" for r in results]),
            ("first readable after", [seconds(r.first_readable_s, r) for r in results]),
            ("telegram messages", [f"{r.messages:,}" for r in results]),
            ("429s from Telegram", [f"{r.rate_limited:,}" for r in results]),
            ("failed requests (AM)", ["-" if r.failed_attempts is None else f"{r.failed_attempts:,.0f}"
                                      for r in results])]
    width = max(len(name) for name, _ in rows) + 2
    for name, values in rows:
        print(f"{(name + ':') if name else '':<{width}}" + "".join(f"{value:>22}" for value in values))
    for result in results:
        if result.post_error:
            print(f"{result.name}: POST /api/v2/alerts failed: {result.post_error}")
    mine = next(r for r in results if r.name == "receiver")
    print_rows(log_rows(mine.log_events, mine.log_lines))
    passed = mine.all_readable_s is not None and mine.all_readable_s <= GROUPS_TARGET_S
    print(f"target receiver <= {GROUPS_TARGET_S:g} s: {verdict(passed)}")
    return [("groups: receiver within 30 s", passed)]


# -- the run ----------------------------------------------------------------------------------------------

def whole(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Storm sitewatch-receiver with webhooks and follow every alert "
                                                 "to a rate-limited fake Telegram; then compare it with "
                                                 "Alertmanager's native Telegram integration on 100 alert groups.")
    parser.add_argument("--rate", type=positive, default=DEFAULT_RATE, help="webhooks per second (default: 500)")
    parser.add_argument("--alerts", type=whole, default=DEFAULT_ALERTS, help="alerts per webhook (default: 5)")
    parser.add_argument("--seconds", type=positive, default=DEFAULT_SECONDS, help="how long the storm lasts "
                                                                                   "(default: 10)")
    parser.add_argument("--chats", type=whole, default=DEFAULT_CHATS,
                        help="routes, half private chats and half group chats (default: 50)")
    parser.add_argument("--connections", type=whole, default=DEFAULT_CONNECTIONS,
                        help="keep-alive connections sending the storm (default: 64)")
    parser.add_argument("--receiver-threads", type=whole, default=DEFAULT_RECEIVER_THREADS,
                        help="the receiver's --threads (default: 16)")
    parser.add_argument("--drain-timeout", type=positive, default=DEFAULT_DRAIN_TIMEOUT,
                        help="how long after the storm to wait for the outbox to empty (default: 300)")
    parser.add_argument("--native-timeout", type=positive, default=DEFAULT_NATIVE_TIMEOUT,
                        help="how long to wait for all 100 groups in the chat (default: 420)")
    parser.add_argument("--skip-storm", action="store_true", help="leave out part 1, the webhook storm")
    parser.add_argument("--skip-groups", action="store_true", help="leave out part 2, the 100 groups")
    parser.add_argument("--skip-native", action="store_true",
                        help="part 2 without the native Alertmanager (its side takes about 5 minutes)")
    parser.add_argument("--web-auth", action="store_true",
                        help="part 1 with the receiver behind --web.config.file basic auth (bcrypt, cost 10) "
                             "instead of its bearer token")
    return parser.parse_args()


def find_alertmanager() -> str:
    return find_program(ALERTMANAGER_CANDIDATES, "receiver_storm: part 2 needs Alertmanager: apt-get install "
                                                 "prometheus-alertmanager (or --skip-groups)")


def main() -> int:
    arguments = parse_arguments()
    signal.signal(signal.SIGTERM, raise_system_exit)
    binary = None if arguments.skip_groups else find_alertmanager()
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}"
          + (f"; {first_line([binary, '--version'])}" if binary else ""))
    targets: list[tuple[str, bool]] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="receiver-storm-") as tmp:
            workdir = Path(tmp)
            if not arguments.skip_storm:
                print(f"storm: {arguments.rate * arguments.seconds:,.0f} webhooks, then waiting up to "
                      f"{arguments.drain_timeout:g} s for the outbox to drain ...", flush=True)
                targets += print_storm(run_storm(arguments, workdir), arguments)
            if not arguments.skip_groups:
                print(f"\ngroups: posting {GROUP_COUNT} alerts to "
                      f"{'one Alertmanager' if arguments.skip_native else 'both Alertmanagers'}, waiting up to "
                      f"{arguments.native_timeout:g} s ...", flush=True)
                targets += print_groups(run_groups(arguments, workdir, binary), arguments)
    except BenchError as err:
        print(f"receiver_storm: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The finally blocks have stopped every program by now; a traceback would say nothing more.
        print("\nreceiver_storm: interrupted", file=sys.stderr)
        return 130
    print(f"\ntotal {time.monotonic() - started:.0f} s; targets: "
          + ", ".join(f"{name} {verdict(passed)}" for name, passed in targets))
    return 0 if all(passed for _, passed in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
