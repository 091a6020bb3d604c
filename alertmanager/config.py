"""The receiver's config file: Telegram bots, routes (name -> bot and chat), webhook auth and the outbox.

It is read and validated like the exporter's config (same validators, same secrets, same error shape:
``FILE: line 12: routes.duty.chat_id: expected ...``), and nothing starts half-configured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from exporter import schema as s
from exporter.config import ConfigError
from exporter.config.hours import day_spec
from exporter.config.loader import invalid_config, resolve_secrets
from exporter.config.push import http_url
from exporter.config.yamlfile import YamlError, parse_yaml, read_text
from exporter.config.yamllines import Lines
from exporter.secrets import KeySource, SecretValue, secrets_in

PUBLIC_API_URL = "https://api.telegram.org"
ROUTE_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
ROUTE_NAME_TEXT = "a route name of letters, digits, '.', '_' or '-' (it becomes part of the URL /alert/<route>)"
LANGUAGES = ("ru", "en")
RESOLVED_MODES = ("edit", "reply", "both", "separate")
HELPDESK_FORMATS = ("generic", "bitrix24")
WORKING_DAYS = frozenset(range(5))


@dataclass(frozen=True)
class RateLimits:
    """Telegram's limits (Bot FAQ): about one message a second per chat, 20 a minute per group, 30 a second per bot."""

    chat_interval: float = 1.0
    group_per_minute: int = 20
    bot_per_second: int = 30


@dataclass(frozen=True)
class Bot:
    name: str
    token: SecretValue


@dataclass(frozen=True)
class WorklistTime:
    """When a route's morning worklist goes out: a time of day on some weekdays, in the route's zone."""

    at: int = 8 * 3600 + 30 * 60  # seconds after local midnight
    days: frozenset[int] = WORKING_DAYS  # 0 = Monday


@dataclass(frozen=True)
class Helpdesk:
    """A route's outgoing webhook for worklist items that need a visit (docs/helpdesk.md)."""

    url: SecretValue  # a Bitrix24 incoming webhook's URL holds its secret code
    format: str = "generic"
    bearer_token: SecretValue | None = None
    responsible_id: int | None = None  # Bitrix24: who the task is given to
    timeout: float = 10.0


@dataclass(frozen=True)
class Route:
    name: str
    bot: str
    chat_id: int | str  # a number, or "@channelname"
    thread_id: int | None = None
    send_resolved: bool = True
    silent_resolved: bool = False
    language: str = "ru"
    template_file: Path | None = None
    timezone: ZoneInfo | None = None
    max_messages: int = 5
    resolved_mode: str = "separate"  # edit | reply | both | separate: what a resolved alert does in the chat
    worklist: WorklistTime | None = None  # None: this route gets no morning worklist
    helpdesk: Helpdesk | None = None


@dataclass(frozen=True)
class WorklistConfig:
    """The morning worklist: where its data comes from and what counts as work (docs/worklist.md)."""

    prometheus_url: str
    alertmanager_url: str | None  # whose routing tree tells which route a site's items go to
    schedule: WorklistTime = field(default_factory=WorklistTime)
    fn_days: int = 30  # a ФН expiring within this many days is to be replaced
    licence_days: int = 30
    down_for: float = 86400.0  # a check or site down longer than this needs a visit
    late_by: float = 3 * 3600.0  # a worklist missed (receiver down at the time) still goes out this late
    timeout: float = 30.0


@dataclass(frozen=True)
class CommandsConfig:
    """Bot commands and silence buttons: who may use them, and where silences and devices go."""

    bot: str
    alertmanager_url: str
    allowed_chats: frozenset[int] = frozenset()
    allowed_users: frozenset[int] = frozenset()
    exporter_config: Path | None = None  # the central exporter's config, which names its targets file
    silence_buttons: tuple[float, ...] = (3600.0, 4 * 3600.0, 24 * 3600.0)
    max_silence: float = 30 * 86400.0
    poll_timeout: float = 25.0
    take_button: bool = True  # "✋ Беру" under firing messages
    take_silence: float = 0.0  # seconds a press also silences the message's alerts; 0: no silence


@dataclass(frozen=True)
class ReceiverConfig:
    source: Path
    bots: dict[str, Bot]
    routes: dict[str, Route]
    outbox_path: Path
    api_url: str = PUBLIC_API_URL
    request_timeout: float = 10.0
    proxy: str | None = None
    senders: int = 4
    max_retry_interval: float = 60.0
    rate_limits: RateLimits = field(default_factory=RateLimits)
    bearer_token: SecretValue | None = None
    basic_auth: tuple[str, SecretValue] | None = None
    max_age: float = 86400.0
    dedup_window: float = 600.0
    max_body: int = 16 * 1024 * 1024
    grafana_url: str | None = None
    alertmanager_url: str | None = None
    timezone: ZoneInfo | None = None
    commands: CommandsConfig | None = None
    worklist: WorklistConfig | None = None

    @property
    def auth_required(self) -> bool:
        return self.bearer_token is not None or self.basic_auth is not None


def _chat_id(value: Any, path: str) -> int | str:
    # Accept a number written either way: Alertmanager's own telegram_configs refuse a quoted chat id,
    # and users trip over it.
    expected = "a chat id: a number such as -1001234567890, or a channel's @username"
    if isinstance(value, bool):
        raise s.Invalid(path, expected, value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if text.startswith("@") and len(text) > 1:
            return text
    raise s.Invalid(path, expected, value)


def _time_of_day(value: Any, path: str) -> int:
    expected = "a time of day such as \"08:30\""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise s.Invalid(path, expected, value)
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


def _worklist_time(defaults: WorklistTime) -> s.Validator:
    fields = s.struct({"at": s.Field(_time_of_day), "days": s.Field(day_spec)})

    def check(value: Any, path: str) -> WorklistTime | None:
        if value is False:
            return None
        if value is True or value is None:
            return defaults
        options = fields(value, path)
        return WorklistTime(at=options["at"] if options["at"] is not None else defaults.at,
                            days=options["days"] or defaults.days)

    return check


def _numeric_chat_id(value: Any, path: str) -> int:
    chat = _chat_id(value, path)
    if not isinstance(chat, int):
        raise s.Invalid(path, "a numeric chat id (updates name chats by number, not by @username)", value)
    return chat


_ROUTE = s.struct({
    "bot": s.Field(s.string(what="the name of a bot from the bots section"), required=True),
    "chat_id": s.Field(_chat_id, required=True),
    "thread_id": s.Field(s.integer(1), default=None),
    "send_resolved": s.Field(s.boolean(), default=True),
    "silent_resolved": s.Field(s.boolean(), default=False),
    "language": s.Field(s.choice(*LANGUAGES), default="ru"),
    "template": s.Field(s.existing_file("a Jinja template file")),
    "timezone": s.Field(s.timezone()),
    "max_messages": s.Field(s.integer(1, 50), default=5),
    "resolved": s.Field(s.choice(*RESOLVED_MODES), default="separate"),
    "worklist": s.Field(lambda value, path: value),  # checked against the top-level worklist in _build
    "helpdesk": s.Field(s.struct({
        "url": s.Field(s.secret(), required=True),
        "format": s.Field(s.choice(*HELPDESK_FORMATS), default="generic"),
        "bearer_token": s.Field(s.secret()),
        "responsible_id": s.Field(s.integer(1)),
        "timeout": s.Field(s.duration(minimum=0.5, maximum=120), default=10.0),
    })),
})
_TOP = s.struct({
    "telegram": s.Field(s.struct({
        "api_url": s.Field(http_url("the Bot API's base URL, such as https://api.telegram.org"),
                           default=PUBLIC_API_URL),
        "timeout": s.Field(s.duration(minimum=0.5, maximum=120), default=10.0),
        "proxy": s.Field(http_url("a proxy URL such as http://proxy.local:3128")),
        "senders": s.Field(s.integer(1, 32), default=4),
        "max_retry_interval": s.Field(s.duration(minimum=0.1, maximum=3600), default=60.0),
        "rate_limits": s.Field(s.struct({
            "chat_interval": s.Field(s.duration(minimum=0, maximum=60), default=RateLimits.chat_interval),
            "group_per_minute": s.Field(s.integer(1, 10000), default=RateLimits.group_per_minute),
            "bot_per_second": s.Field(s.integer(1, 10000), default=RateLimits.bot_per_second),
        })),
    })),
    "bots": s.Field(s.mapping_of(s.string(ROUTE_NAME, "a bot name of letters, digits, '.', '_' or '-'"),
                                 s.struct({"token": s.Field(s.secret(), required=True)}),
                                 what="a mapping of bot names to {token: ...}"), required=True),
    "routes": s.Field(s.mapping_of(s.string(ROUTE_NAME, ROUTE_NAME_TEXT), _ROUTE,
                                   what="a mapping of route names to {bot, chat_id, ...}"), required=True),
    "auth": s.Field(s.struct({
        "bearer_token": s.Field(s.secret()),
        "basic_auth": s.Field(s.struct({
            "username": s.Field(s.string(), required=True),
            "password": s.Field(s.secret(), required=True),
        })),
    })),
    "outbox": s.Field(s.struct({
        "path": s.Field(s.file_path(what="a path for the outbox database file"), default="sitewatch-receiver.db"),
        "max_age": s.Field(s.duration(minimum=1, maximum=30 * 86400), default=86400.0),
        "dedup_window": s.Field(s.duration(minimum=0, maximum=86400), default=600.0),
    })),
    "webhook": s.Field(s.struct({
        "max_body": s.Field(s.size(minimum=1024), default=16 * 1024 * 1024),
    })),
    "links": s.Field(s.struct({
        "grafana_url": s.Field(http_url("Grafana's base URL, such as https://grafana.example.ru")),
        "alertmanager_url": s.Field(http_url("Alertmanager's base URL, such as https://alertmanager.example.ru")),
    })),
    "timezone": s.Field(s.timezone()),
    "key_file": s.Field(s.file_path(what="a path to the key file for enc: values")),
    "commands": s.Field(s.struct({
        "bot": s.Field(s.string(what="the name of a bot from the bots section")),
        "alertmanager_url": s.Field(http_url("Alertmanager's URL for its API, such as http://127.0.0.1:9093"),
                                    required=True),
        "allowed_chats": s.Field(s.list_of(_numeric_chat_id), default=[]),
        "allowed_users": s.Field(s.list_of(s.integer(1)), default=[]),
        "exporter_config": s.Field(s.string(what="the central exporter's config file (it names the targets_file)")),
        "silence_buttons": s.Field(s.list_of(s.duration(minimum=60, maximum=30 * 86400)),
                                   default=[3600.0, 4 * 3600.0, 24 * 3600.0]),
        "max_silence": s.Field(s.duration(minimum=60, maximum=366 * 86400), default=30 * 86400.0),
        "poll_timeout": s.Field(s.duration(minimum=1, maximum=50), default=25.0),
        "take_button": s.Field(s.boolean(), default=True),
        "take_silence": s.Field(s.duration(minimum=0, maximum=30 * 86400), default=0.0),
    })),
    "worklist": s.Field(s.struct({
        "prometheus_url": s.Field(http_url("Prometheus's URL for its query API, such as http://127.0.0.1:9090"),
                                  required=True),
        "alertmanager_url": s.Field(http_url("Alertmanager's URL, whose routing tree sends each site's items to "
                                             "its routes, such as http://127.0.0.1:9093")),
        "at": s.Field(_time_of_day),
        "days": s.Field(day_spec),
        "fn_days": s.Field(s.integer(1, 366), default=30),
        "licence_days": s.Field(s.integer(1, 366), default=30),
        "down_for": s.Field(s.duration(minimum=60, maximum=30 * 86400), default=86400.0),
        "late_by": s.Field(s.duration(minimum=0, maximum=86400), default=3 * 3600.0),
        "timeout": s.Field(s.duration(minimum=1, maximum=300), default=30.0),
    })),
})


def load_receiver_config(path: str | os.PathLike[str], key_file: str | None = None) -> ReceiverConfig:
    """Reads, validates and resolves (tokens included) the receiver config at `path`; raises ConfigError."""
    file = Path(path)
    try:
        text = read_text(file)
        raw = parse_yaml(text)
    except YamlError as err:
        raise ConfigError.from_yaml(file, err) from None
    lines = Lines(text)
    folder = s.config_folder.set(file.parent)
    try:
        top = _TOP(raw, "")
        config = _build(file, top)
    except s.Invalid as err:
        raise invalid_config(file, err, lines) from None
    finally:
        s.config_folder.reset(folder)
    key_source = KeySource(key_file, str(file.parent / top["key_file"]) if top["key_file"] else None)
    resolve_secrets(file, list(secrets_in(top)), key_source, lines=lines)
    return config


def _build(file: Path, top: dict[str, Any]) -> ReceiverConfig:
    bots = {name: Bot(name, options["token"]) for name, options in top["bots"].items()}
    if not bots:
        raise s.Invalid("bots", "at least one bot")
    if not top["routes"]:
        raise s.Invalid("routes", "at least one route")
    worklist = _worklist(top)
    routes = {}
    for name, options in top["routes"].items():
        route_worklist = None
        if worklist is not None:
            route_worklist = _worklist_time(worklist.schedule)(options["worklist"], f"routes.{name}.worklist")
        elif options["worklist"] not in (None, False):
            raise s.Invalid(f"routes.{name}.worklist", "no worklist here without the top-level worklist section "
                                                       "(its prometheus_url says where the data comes from)",
                            options["worklist"])
        helpdesk = options["helpdesk"]
        if helpdesk is not None and route_worklist is None:
            raise s.Invalid(f"routes.{name}.helpdesk", "a route with a worklist: the helpdesk gets the "
                                                       "worklist's items that need a visit")
        if options["bot"] not in bots:
            raise s.Invalid(f"routes.{name}.bot", f"one of the bots defined in bots ({', '.join(bots)})",
                            options["bot"])
        routes[name] = Route(
            name=name, bot=options["bot"], chat_id=options["chat_id"], thread_id=options["thread_id"],
            send_resolved=options["send_resolved"], silent_resolved=options["silent_resolved"],
            language=options["language"],
            template_file=Path(options["template"]) if options["template"] else None,
            timezone=options["timezone"] or top["timezone"], max_messages=options["max_messages"],
            resolved_mode=options["resolved"], worklist=route_worklist,
            helpdesk=Helpdesk(url=helpdesk["url"], format=helpdesk["format"], bearer_token=helpdesk["bearer_token"],
                              responsible_id=helpdesk["responsible_id"], timeout=helpdesk["timeout"])
            if helpdesk else None)
    commands = _commands(top["commands"], bots, file) if top["commands"] else None
    telegram = top["telegram"] or {}
    limits = telegram.get("rate_limits") or {}
    auth = top["auth"] or {}
    outbox = top["outbox"] or {}
    links = top["links"] or {}
    basic = auth.get("basic_auth")
    outbox_path = Path(outbox.get("path") or "sitewatch-receiver.db").expanduser()
    return ReceiverConfig(
        source=file,
        bots=bots,
        routes=routes,
        outbox_path=outbox_path if outbox_path.is_absolute() else file.parent / outbox_path,
        api_url=(telegram.get("api_url") or PUBLIC_API_URL).rstrip("/"),
        request_timeout=telegram.get("timeout") or 10.0,
        proxy=telegram.get("proxy"),
        senders=telegram.get("senders") or 4,
        max_retry_interval=telegram.get("max_retry_interval") or 60.0,
        rate_limits=RateLimits(**{k: v for k, v in limits.items() if v is not None}),
        bearer_token=auth.get("bearer_token"),
        basic_auth=(basic["username"], basic["password"]) if basic else None,
        max_age=outbox.get("max_age") or 86400.0,
        dedup_window=outbox["dedup_window"] if outbox.get("dedup_window") is not None else 600.0,
        max_body=(top["webhook"] or {}).get("max_body") or 16 * 1024 * 1024,
        grafana_url=links.get("grafana_url"),
        alertmanager_url=links.get("alertmanager_url"),
        timezone=top["timezone"],
        commands=commands,
        worklist=worklist,
    )


def _worklist(top: dict[str, Any]) -> WorklistConfig | None:
    options = top["worklist"]
    if not options:
        return None
    alertmanager = options["alertmanager_url"] or (top["commands"] or {}).get("alertmanager_url")
    schedule = WorklistTime(at=options["at"] if options["at"] is not None else WorklistTime.at,
                            days=options["days"] or WORKING_DAYS)
    return WorklistConfig(
        prometheus_url=options["prometheus_url"].rstrip("/"),
        alertmanager_url=alertmanager.rstrip("/") if alertmanager else None, schedule=schedule,
        fn_days=options["fn_days"], licence_days=options["licence_days"], down_for=options["down_for"],
        late_by=options["late_by"], timeout=options["timeout"])


def _commands(options: dict[str, Any], bots: dict[str, Bot], file: Path) -> CommandsConfig:
    bot = options["bot"]
    if bot is None:
        if len(bots) > 1:
            raise s.Invalid("commands.bot", f"the bot that takes commands, one of {', '.join(bots)} "
                                            "(several bots are defined)")
        bot = next(iter(bots))
    elif bot not in bots:
        raise s.Invalid("commands.bot", f"one of the bots defined in bots ({', '.join(bots)})", bot)
    if not options["allowed_chats"] and not options["allowed_users"]:
        raise s.Invalid("commands", "allowed_chats or allowed_users with at least one chat or user: nobody "
                                    "else may command the bot, so with neither nobody could")
    if options["silence_buttons"] and max(options["silence_buttons"]) > options["max_silence"]:
        raise s.Invalid("commands.silence_buttons", f"durations no longer than commands.max_silence "
                                                    f"({options['max_silence']:g}s)", options["silence_buttons"])
    exporter = options["exporter_config"]
    exporter_path = Path(exporter).expanduser() if exporter else None
    if exporter_path is not None and not exporter_path.is_absolute():
        exporter_path = file.parent / exporter_path
    return CommandsConfig(
        bot=bot, alertmanager_url=options["alertmanager_url"].rstrip("/"),
        allowed_chats=frozenset(options["allowed_chats"]), allowed_users=frozenset(options["allowed_users"]),
        exporter_config=exporter_path, silence_buttons=tuple(options["silence_buttons"]),
        max_silence=options["max_silence"], poll_timeout=options["poll_timeout"],
        take_button=options["take_button"], take_silence=options["take_silence"])
