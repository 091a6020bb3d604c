"""A fake Telegram Bot API server on loopback: `<url>/bot<TOKEN>/<method>` answers getMe, getChat, getChatMember
and sendMessage the way api.telegram.org does, including its errors, HTML checks and flood limits.

Tests switch its failures (`fail_next`, `set_mode`, `block_bot`, `migrate_chat`, `forget_chat`) while it runs
and read back what it accepted (`messages`, `wait_for_messages`, `requests`).

    python -m simulators.telegram --port 18090 [--enforce-limits] [--token 123456:TEST-token-for-sitewatch]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DEFAULT_TOKEN", "FakeTelegram", "HtmlError", "RateLimits", "SentMessage", "parse_html"]

DEFAULT_TOKEN = "123456:TEST-token-for-sitewatch"
DEFAULT_BOT_ID = 123456
MAX_TEXT_LENGTH = 4096  # UTF-16 code units of the visible text, as Telegram counts
FAILURE_KINDS = ("429", "500", "502", "hang", "reject_html")
STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
CHAT_TYPES = ("private", "group", "supergroup", "channel")
SUPERGROUP_IDS_BELOW = -1_000_000_000_000  # "-100…" ids belong to supergroups and channels
NGINX_PAGE = ("<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>\r\n"
              "<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n")


@dataclass(frozen=True)
class SentMessage:
    message_id: int
    bot_id: int
    chat_id: int | str  # as the API got it, int when it parses as int
    text: str
    parse_mode: str | None
    message_thread_id: int | None
    disable_notification: bool
    at: float  # time.monotonic() when accepted


@dataclass(frozen=True)
class RateLimits:
    """The Bot FAQ's flood limits; tests shrink the windows to see them trip quickly."""

    per_chat_interval: float = 0.9  # 1 message/s per chat, less a tolerance for a client that spaces by 1.0 s
    group_per_minute: int = 20  # accepted messages per group, supergroup or channel within group_window
    bot_per_second: int = 30  # accepted messages per bot within any second
    group_window: float = 60.0


class HtmlError(ValueError):
    """What Telegram says after "Bad Request: can't parse entities: "."""


# --- HTML parse mode -------------------------------------------------------------------------------------------

HTML_TAGS = {"a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "span",
             "tg-spoiler", "tg-emoji", "blockquote"}
URL_SCHEMES = {"http", "https", "tg"}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:#x([0-9a-fA-F]+)|#([0-9]+)|([a-zA-Z]+));?")
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)")  # "host:8080" is a port, not a scheme


def parse_html(html: str) -> str:
    """The visible text of an HTML-mode message, or HtmlError where Telegram refuses it.

    It follows Telegram's own parser (tdlib's parse_html) in what it reports and where, but is stricter in two
    places where Telegram forgives quietly: a ``&`` that starts no entity (Telegram keeps it as text) and a link
    whose scheme is not http, https or tg (Telegram drops the link). The Bot API documentation asks for both
    to be right, and a sender that gets them wrong should find out in tests.
    """
    visible: list[str] = []
    open_tags: list[tuple[str, str]] = []  # (tag, its argument: href, span class, emoji id)
    size = len(html)

    def offset(i: int) -> int:  # Telegram counts byte offsets in the UTF-8 text
        return len(html[:i].encode("utf-8"))

    i = 0
    while i < size:
        c = html[i]
        if c == "&":
            char, i = _entity_at(html, i, offset)
            visible.append(char)
            continue
        if c != "<":
            visible.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if i < size and html[i] == "/":
            if not open_tags:
                raise HtmlError(f"Unexpected end tag at byte offset {offset(begin)}")
            i += 1
            name_start = i
            while i < size and not html[i].isspace() and html[i] != ">":
                i += 1
            name = html[name_start:i].lower()
            while i < size and html[i].isspace():
                i += 1
            if i >= size or html[i] != ">":
                raise HtmlError(f"Unclosed end tag at byte offset {offset(begin)}")
            i += 1
            tag, argument = open_tags.pop()
            if name and name != tag:
                raise HtmlError(f'Unmatched end tag at byte offset {offset(begin)}, expected "</{tag}>", '
                                f'found "</{name}>"')
            if tag == "tg-emoji" and (not argument.isdigit() or int(argument) == 0):
                raise HtmlError("Invalid custom emoji identifier specified")
            continue
        while i < size and not html[i].isspace() and html[i] != ">":
            i += 1
        if i >= size:
            raise HtmlError(f"Unclosed start tag at byte offset {offset(begin)}")
        tag = html[begin + 1:i].lower()
        if tag not in HTML_TAGS:
            raise HtmlError(f'Unsupported start tag "{tag}" at byte offset {offset(begin)}')
        attributes, i = _attributes(html, i, tag, offset(begin))
        argument = ""
        if tag == "a":
            argument = attributes.get("href", "")
            scheme = _SCHEME.match(argument)
            if scheme and scheme.group(1).lower() not in URL_SCHEMES:
                raise HtmlError("Unsupported URL protocol")
        elif tag == "span":
            if attributes.get("class") != "tg-spoiler":
                raise HtmlError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset(begin)}')
        elif tag == "tg-emoji":
            argument = attributes.get("emoji-id", "")
        open_tags.append((tag, argument))
    if open_tags:
        raise HtmlError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1][0]}"')
    return "".join(visible)


def _entity_at(html: str, i: int, offset: Callable[[int], int]) -> tuple[str, int]:
    """The character an entity at html[i] stands for and where the text goes on."""
    match = _ENTITY.match(html, i)
    if match:
        hex_code, decimal_code, name = match.groups()
        if name is not None:
            if name in NAMED_ENTITIES:
                return NAMED_ENTITIES[name], match.end()
        elif match.end() - i < 10:  # Telegram's own bound on a numeric entity's length
            code = int(hex_code, 16) if hex_code is not None else int(decimal_code)
            if 0xD800 <= code <= 0xDFFF:
                raise HtmlError("Text contains invalid Unicode characters after decoding HTML entities, "
                                "check for unmatched surrogate code units")
            if 0 < code < 0x10FFFF:
                return chr(code), match.end()
    shown = html[i:html.find(";", i, i + 12) + 1] if ";" in html[i:i + 12] else "&"
    raise HtmlError(f'Unsupported HTML entity "{shown}" at byte offset {offset(i)}')


def _attributes(html: str, i: int, tag: str, tag_offset: int) -> tuple[dict[str, str], int]:
    """The attributes of a start tag from just after its name; returns them and the index past its ">"."""
    size = len(html)
    attributes: dict[str, str] = {}
    while True:
        while i < size and html[i].isspace():
            i += 1
        if i < size and html[i] == ">":
            return attributes, i + 1
        name_start = i
        while i < size and not html[i].isspace() and html[i] not in "=>":
            i += 1
        name = html[name_start:i].lower()
        if i >= size:
            raise HtmlError(f'Unclosed start tag "{tag}" at byte offset {tag_offset}')
        if not name:
            raise HtmlError(f'Empty attribute name in the tag "{tag}" at byte offset {tag_offset}')
        while i < size and html[i].isspace():
            i += 1
        if tag == "blockquote" and name == "expandable" and (i >= size or html[i] != "="):
            attributes[name] = ""  # the one attribute Telegram takes without a value
            continue
        if i >= size or html[i] != "=":
            raise HtmlError(f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                            f"at byte offset {tag_offset}")
        i += 1
        while i < size and html[i].isspace():
            i += 1
        if i >= size:
            raise HtmlError(f'Unclosed start tag "{tag}" at byte offset {tag_offset}')
        if html[i] in "\"'":
            quote = html[i]
            end = html.find(quote, i + 1)
            if end < 0:
                raise HtmlError(f"Unclosed start tag at byte offset {tag_offset}")
            attributes[name] = _decode_entities_leniently(html[i + 1:end])
            i = end + 1
        else:
            value_start = i
            while i < size and (html[i].isalnum() or html[i] in ".-"):
                i += 1
            if i < size and not html[i].isspace() and html[i] != ">":
                raise HtmlError(f"Unexpected end of name token at byte offset {len(html[:value_start].encode())}")
            attributes[name] = html[value_start:i].lower()
        if i >= size:
            raise HtmlError(f"Unclosed start tag at byte offset {tag_offset}")


def _decode_entities_leniently(value: str) -> str:
    """Attribute values: Telegram decodes the entities it knows and keeps anything else as it is."""
    def one(match: re.Match) -> str:
        hex_code, decimal_code, name = match.groups()
        if name is not None:
            return NAMED_ENTITIES.get(name, match.group(0))
        code = int(hex_code, 16) if hex_code is not None else int(decimal_code)
        return chr(code) if 0 < code < 0x10FFFF and not 0xD800 <= code <= 0xDFFF else match.group(0)
    return _ENTITY.sub(one, value)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- chats -----------------------------------------------------------------------------------------------------

class ApiError(Exception):
    """An answer other than ok: its HTTP status, description and `parameters`."""

    def __init__(self, status: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def chat_key(chat_id: int | str) -> str:
    """One spelling per chat: -100 and "-100" are the same chat, and so are "@Alerts" and "@alerts"."""
    text = str(chat_id).strip()
    if text.startswith("@"):
        return text.lower()
    try:
        return str(int(text))
    except ValueError:
        return text


def chat_id_param(value: object) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


@dataclass
class Chat:
    id: int
    type: str
    title: str
    username: str | None
    is_forum: bool
    members: dict[int, str]  # bot id -> status
    rights: dict[int, dict[str, bool]]  # bot id -> can_post_messages / can_send_messages overrides
    migrated_to: int | None = None
    forgotten: bool = False
    blocked: bool = False
    last_message_id: int = 0

    @property
    def keys(self) -> set[str]:
        return {str(self.id)} | ({"@" + self.username.lower()} if self.username else set())

    def kicked(self, bot_id: int) -> bool:
        return self.blocked or self.status_of(bot_id) == "kicked"

    def status_of(self, bot_id: int) -> str:
        return self.members.get(bot_id, "administrator" if self.type == "channel" else "member")

    def describe(self) -> dict:
        chat: dict = {"id": self.id, "type": self.type}
        if self.type == "private":
            chat["first_name"] = self.title
        else:
            chat["title"] = self.title
        if self.username:
            chat["username"] = self.username
        if self.is_forum:
            chat["is_forum"] = True
        return chat

    def kicked_error(self) -> ApiError:
        if self.type == "private":
            return ApiError(403, "Forbidden: bot was blocked by the user")
        if self.type == "channel":
            return ApiError(403, "Forbidden: bot is not a member of the channel chat")
        return ApiError(403, f"Forbidden: bot was kicked from the {self.type} chat")


# --- the server ------------------------------------------------------------------------------------------------

@dataclass
class _Failure:
    kind: str
    retry_after: int
    chat: str | None  # a chat key, or None for any chat
    remaining: int = 1


@dataclass
class _Sent:
    """The flood-limit history of one bot."""

    last_to_chat: dict[int, float] = field(default_factory=dict)
    to_group: dict[int, deque] = field(default_factory=dict)
    all: deque = field(default_factory=deque)


class FakeTelegram:
    """The Bot API on a loopback port; `url` is what replaces https://api.telegram.org."""

    def __init__(self, bots: dict[str, int] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 enforce_limits: bool = False, hang_seconds: float = 30.0, limits: RateLimits | None = None,
                 on_message: Callable[[SentMessage], None] | None = None):
        self.bots = dict(bots) if bots is not None else {DEFAULT_TOKEN: DEFAULT_BOT_ID}
        self.enforce_limits = enforce_limits
        self.limits = limits or RateLimits()
        self.hang_seconds = hang_seconds
        self.on_message = on_message  # called in the request's thread after a message is accepted
        self.requests: list[tuple[str, str, int]] = []
        self.rate_limited = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._chats: dict[str, Chat] = {}
        self._messages: list[SentMessage] = []
        self._failures: list[_Failure] = []
        self._mode: _Failure | None = None
        self._sent: dict[int, _Sent] = {}
        self._next_channel_id = -1_009_000_000_000
        self._server = _Server((host, port), _Handler, self)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-telegram", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeTelegram:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests that hang, and they leave without an answer
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what tests set up ---

    def add_chat(self, chat_id: int | str, type: str = "group", title: str = "",
                 members: dict[int, str] | None = None, is_forum: bool = False,
                 rights: dict[int, dict[str, bool]] | None = None) -> None:
        """A chat as the bots see it. `rights` overrides can_post_messages (channel administrators, default
        true) or can_send_messages (restricted members, default false) for a bot."""
        if type not in CHAT_TYPES:
            raise ValueError(f"chat type {type!r} is not one of {CHAT_TYPES}")
        for status in (members or {}).values():
            if status not in STATUSES:
                raise ValueError(f"member status {status!r} is not one of {STATUSES}")
        with self._lock:
            self._add_chat(chat_id, type, title, members, is_forum, rights)

    def migrate_chat(self, old_chat_id: int | str, new_chat_id: int) -> None:
        with self._lock:
            old = self._chat(old_chat_id)
            new = self._chats.get(chat_key(new_chat_id))
            if new is None:
                new = self._add_chat(new_chat_id, "supergroup", old.title, dict(old.members), old.is_forum,
                                     dict(old.rights))
            new.type = "supergroup"
            old.migrated_to = new.id

    def block_bot(self, chat_id: int | str) -> None:
        with self._lock:
            self._chat(chat_id).blocked = True

    def forget_chat(self, chat_id: int | str) -> None:
        with self._lock:
            self._chat(chat_id).forgotten = True

    def fail_next(self, count: int, kind: str, *, chat_id: int | str | None = None, retry_after: int = 3) -> None:
        """The next `count` sendMessage calls (to that chat, or to any) fail with `kind`; "reject_html" counts
        only the calls it rejects, those in HTML parse mode."""
        _check_kind(kind)
        with self._lock:
            key = None if chat_id is None else chat_key(chat_id)
            self._failures.append(_Failure(kind, retry_after, key, count))

    def set_mode(self, kind: str | None, *, retry_after: int = 3) -> None:
        """Every sendMessage fails with `kind` until set_mode(None): Telegram is down."""
        if kind is not None:
            _check_kind(kind)
        with self._lock:
            self._mode = _Failure(kind, retry_after, None) if kind else None

    def reset(self) -> None:
        """Forgets messages, requests, failures, the mode and the flood history; chats and bots stay."""
        with self._lock:
            self._messages.clear()
            self.requests.clear()
            self._failures.clear()
            self._mode = None
            self._sent.clear()
            self.rate_limited = 0

    # --- what tests read ---

    def messages(self, chat_id: int | str | None = None) -> list[SentMessage]:
        with self._lock:
            return self._messages_for(chat_id)

    def wait_for_messages(self, count: int, chat_id: int | str | None = None,
                          timeout: float = 10.0) -> list[SentMessage]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(found := self._messages_for(chat_id)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    where = "" if chat_id is None else f" to chat {chat_id}"
                    texts = [m.text[:80] for m in found]
                    raise AssertionError(f"expected {count} messages{where} within {timeout} s, "
                                         f"{len(found)} arrived: {texts}")
                self._arrived.wait(left)
            return found

    def _messages_for(self, chat_id: int | str | None) -> list[SentMessage]:
        if chat_id is None:
            return list(self._messages)
        chat = self._chats.get(chat_key(chat_id))
        keys = chat.keys if chat else {chat_key(chat_id)}
        return [m for m in self._messages if chat_key(m.chat_id) in keys]

    # --- chats, under the lock ---

    def _add_chat(self, chat_id, type, title, members, is_forum, rights) -> Chat:
        key = chat_key(chat_id)
        username = None
        if key.startswith("@"):
            username = str(chat_id).strip()[1:]
            numeric = self._next_channel_id
            self._next_channel_id -= 1
        else:
            numeric = int(key)
        if not title:
            title = "Test user" if type == "private" else f"Test {type} {username or numeric}"
        chat = Chat(numeric, type, title, username, is_forum, dict(members or {}), dict(rights or {}))
        for alias in chat.keys:
            self._chats[alias] = chat
        return chat

    def _chat(self, chat_id: int | str) -> Chat:
        """The chat, made on first use the way it looks to a bot in it."""
        key = chat_key(chat_id)
        chat = self._chats.get(key)
        if chat is not None:
            return chat
        if key.startswith("@") and len(key) > 1:
            return self._add_chat(chat_id, "channel", "", None, False, None)
        try:
            numeric = int(key)
        except ValueError:
            raise ApiError(400, "Bad Request: chat not found") from None
        if numeric == 0:
            raise ApiError(400, "Bad Request: chat not found")
        kind = "private" if numeric > 0 else "supergroup" if numeric < SUPERGROUP_IDS_BELOW else "group"
        return self._add_chat(numeric, kind, "", None, False, None)

    def _reachable_chat(self, params: dict, bot_id: int, *, kicked_answers: bool) -> Chat:
        chat_id = chat_id_param(params.get("chat_id"))
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self._chat(chat_id)
        if kicked_answers and chat.kicked(bot_id):
            raise chat.kicked_error()
        if chat.forgotten:
            raise ApiError(400, "Bad Request: chat not found")
        if chat.migrated_to is not None:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           {"migrate_to_chat_id": chat.migrated_to})
        return chat

    # --- methods ---

    def get_me(self, bot_id: int, params: dict) -> dict:
        return _bot_user(bot_id) | {"can_join_groups": True, "can_read_all_group_messages": False,
                                    "supports_inline_queries": False}

    def get_chat(self, bot_id: int, params: dict) -> dict:
        with self._lock:
            chat = self._reachable_chat(params, bot_id, kicked_answers=False)
            if chat.kicked(bot_id) and chat.type != "private":  # a blocked user still shows the bot the chat
                raise ApiError(403, f"Forbidden: bot was kicked from the {chat.type} chat")
            return chat.describe() | {"accent_color_id": 0, "max_reaction_count": 11}

    def get_chat_member(self, bot_id: int, params: dict) -> dict:
        try:
            user_id = int(str(params.get("user_id", "")).strip())
        except ValueError:
            raise ApiError(400, "Bad Request: invalid user_id specified") from None
        with self._lock:
            chat = self._reachable_chat(params, bot_id, kicked_answers=False)
            bots = set(self.bots.values())
            if user_id in bots:
                status = "kicked" if chat.blocked else chat.status_of(user_id)
            else:
                status = "member" if chat.type == "private" and user_id == chat.id else "left"
            user = _bot_user(user_id) if user_id in bots else {"id": user_id, "is_bot": False,
                                                               "first_name": "Test user"}
            member: dict = {"status": status, "user": user}
            rights = chat.rights.get(user_id, {})
            if status == "administrator":
                member |= {"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                           "can_delete_messages": True, "can_restrict_members": True}
                if chat.type == "channel":
                    member["can_post_messages"] = rights.get("can_post_messages", True)
            elif status == "restricted":
                member |= {"is_member": True, "until_date": 0,
                           "can_send_messages": rights.get("can_send_messages", False)}
            elif status == "kicked":
                member["until_date"] = 0
            return member

    def send_message(self, bot_id: int, params: dict) -> dict:
        with self._lock:
            chat = self._reachable_chat(params, bot_id, kicked_answers=True)
            _may_post(chat, bot_id)
            parse_mode = params.get("parse_mode") or None
            html = str(parse_mode).lower() == "html"
            failure = self._take_failure(chat, html)
        if failure is not None:
            raise self._failure_error(failure)
        if parse_mode is not None and str(parse_mode).lower() not in ("html", "markdown", "markdownv2"):
            raise ApiError(400, "Bad Request: unsupported parse_mode")
        text = "" if params.get("text") is None else str(params["text"])
        thread_id = _thread_id(params.get("message_thread_id"))
        with self._lock:
            now = time.monotonic()
            if self.enforce_limits:
                self._check_limits(bot_id, chat, now)
            if not text.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            visible = text
            if html:
                try:
                    visible = parse_html(text)
                except HtmlError as err:
                    raise ApiError(400, f"Bad Request: can't parse entities: {err}") from None
                if not visible.strip():
                    raise ApiError(400, "Bad Request: message text is empty")
            if utf16_length(visible) > MAX_TEXT_LENGTH:
                raise ApiError(400, "Bad Request: message is too long")
            if thread_id is not None and not chat.is_forum:
                raise ApiError(400, "Bad Request: message thread not found")
            chat.last_message_id += 1
            message = SentMessage(chat.last_message_id, bot_id, chat_id_param(params["chat_id"]), text,
                                  parse_mode, thread_id, _flag(params.get("disable_notification")), now)
            self._messages.append(message)
            self._remember_sent(bot_id, chat, now)
            self._arrived.notify_all()
        if self.on_message:
            self.on_message(message)
        result = {"message_id": message.message_id, "date": int(time.time()), "chat": chat.describe(),
                  "text": visible}
        if chat.type == "channel":
            result["sender_chat"] = chat.describe()
        else:
            result["from"] = _bot_user(bot_id)
        if thread_id is not None:
            result |= {"message_thread_id": thread_id, "is_topic_message": True}
        return result

    # Telegram takes method names in any case; requests records them as the documentation spells them
    METHODS: ClassVar[dict] = {"getme": ("getMe", get_me), "getchat": ("getChat", get_chat),
                               "getchatmember": ("getChatMember", get_chat_member),
                               "sendmessage": ("sendMessage", send_message)}

    # --- failures and limits ---

    def _take_failure(self, chat: Chat, html: bool) -> _Failure | None:
        for failure in self._failures:
            if failure.chat is not None and failure.chat not in chat.keys:
                continue
            if failure.kind == "reject_html" and not html:
                continue
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failures.remove(failure)
            return failure
        if self._mode and (self._mode.kind != "reject_html" or html):
            return self._mode
        return None

    def _failure_error(self, failure: _Failure) -> ApiError:
        if failure.kind == "429":
            return _too_many_requests(failure.retry_after)
        if failure.kind == "500":
            return ApiError(500, "Internal Server Error")
        if failure.kind == "502":
            return _ProxyError(502, "502 Bad Gateway")
        if failure.kind == "reject_html":
            return ApiError(400, "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0")
        # "hang": answer nothing for hang_seconds, then what a proxy says when its upstream never did
        # (the message is not delivered, so a client's retry is the only copy)
        if self._stopping.wait(self.hang_seconds):
            return _Dropped(0, "server stopped")
        return _ProxyError(504, "504 Gateway Time-out")

    def _check_limits(self, bot_id: int, chat: Chat, now: float) -> None:
        limits, sent = self.limits, self._sent.get(bot_id, _Sent())
        waits = []
        last = sent.last_to_chat.get(chat.id)
        if last is not None and now - last < limits.per_chat_interval:
            waits.append(last + limits.per_chat_interval - now)
        if chat.type != "private":
            window = _trimmed(sent.to_group.get(chat.id, deque()), now - limits.group_window)
            if len(window) >= limits.group_per_minute:
                waits.append(window[len(window) - limits.group_per_minute] + limits.group_window - now)
        recent = _trimmed(sent.all, now - 1.0)
        if len(recent) >= limits.bot_per_second:
            waits.append(recent[len(recent) - limits.bot_per_second] + 1.0 - now)
        if waits:
            self.rate_limited += 1
            raise _too_many_requests(max(1, math.ceil(max(waits))))

    def _remember_sent(self, bot_id: int, chat: Chat, now: float) -> None:
        sent = self._sent.setdefault(bot_id, _Sent())
        sent.last_to_chat[chat.id] = now
        if chat.type != "private":
            _trimmed(sent.to_group.setdefault(chat.id, deque()), now - self.limits.group_window).append(now)
        _trimmed(sent.all, now - 1.0).append(now)

    # --- a request, from the handler ---

    def answer(self, path: str, params: dict) -> tuple[int, str, bytes]:
        """The status, content type and body for one call, recorded in `requests`."""
        match = re.fullmatch(r"/bot([^/]*)/([^/]*)", urlsplit(path).path)
        method = match.group(2) if match else urlsplit(path).path
        chat = chat_id_param(params.get("chat_id"))
        try:
            if match is None:
                raise ApiError(404, "Not Found")
            bot_id = self.bots.get(match.group(1))
            if bot_id is None:
                raise ApiError(401, "Unauthorized")
            name, handler = self.METHODS.get(method.lower(), (method, None))
            method = name
            if handler is None:
                raise ApiError(404, "Not Found")
            status, body = 200, {"ok": True, "result": handler(self, bot_id, params)}
        except _Dropped:
            raise
        except _ProxyError as err:
            self._record(method, chat, err.status)
            return err.status, "text/html", NGINX_PAGE.format(status=err.description).encode()
        except ApiError as err:
            status = err.status
            body = {"ok": False, "error_code": err.status, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
        self._record(method, chat, status)
        return status, "application/json", json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def _record(self, method: str, chat: int | str | None, status: int) -> None:
        with self._lock:
            self.requests.append((method, "" if chat is None else str(chat), status))


class _ProxyError(ApiError):
    """Answered by the web server in front of the API: an HTML page, not JSON."""


class _Dropped(ApiError):
    """The server is stopping while the request hangs: the connection closes with no answer."""


def _check_kind(kind: str) -> None:
    if kind not in FAILURE_KINDS:
        raise ValueError(f"failure kind {kind!r} is not one of {FAILURE_KINDS}")


def _may_post(chat: Chat, bot_id: int) -> None:
    status = chat.status_of(bot_id)
    if status == "left" and chat.type != "private":
        raise ApiError(403, f"Forbidden: bot is not a member of the {chat.type} chat")
    rights = chat.rights.get(bot_id, {})
    if chat.type == "channel" and (status not in ("creator", "administrator")
                                   or not rights.get("can_post_messages", True)):
        raise ApiError(400, "Bad Request: need administrator rights in the channel chat")
    if status == "restricted" and not rights.get("can_send_messages", False):
        raise ApiError(400, "Bad Request: not enough rights to send text messages to the chat")


def _too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def _trimmed(times: deque, since: float) -> deque:
    while times and times[0] <= since:
        times.popleft()
    return times


def _bot_user(bot_id: int) -> dict:
    username = "sitewatch_test_bot" if bot_id == DEFAULT_BOT_ID else f"bot{bot_id}_bot"
    return {"id": bot_id, "is_bot": True, "first_name": "sitewatch test", "username": username}


def _thread_id(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(400, "Bad Request: message thread not found") from None


def _flag(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


# --- HTTP ------------------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, telegram: FakeTelegram):
        self.telegram = telegram
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            if self.telegram._stopping.is_set():
                connection.shutdown(socket.SHUT_RDWR)  # accepted just as stop() began: the handler sees EOF
                return
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Keep-alive connections would otherwise hold their threads until the client goes away."""
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections.clear()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up mid-answer is no news; a bug shows in the tests' answers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the body goes out right behind the headers, not after a delayed ACK
    timeout = 120  # an idle keep-alive connection is closed, as nginx does
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_GET

    def version_string(self) -> str:
        return "nginx/1.18.0"  # what api.telegram.org says it is

    def log_message(self, format: str, *args) -> None:
        pass  # tests read `requests`; a line per request would bury their output

    def _answer(self) -> None:
        try:
            params = self._params()
        except ValueError:
            params = None
        try:
            if params is None:
                status, content_type, body = 400, "application/json", json.dumps(
                    {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"}).encode()
            else:
                status, content_type, body = self.server.telegram.answer(self.path, params)
        except _Dropped:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _params(self) -> dict:
        params: dict = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and content_type == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            params.update(data)
        elif body and content_type == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return params


# --- standalone ------------------------------------------------------------------------------------------------

def _print_message(message: SentMessage) -> None:
    lines = message.text.splitlines() or [""]
    more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    print(f"chat {message.chat_id} [{message.parse_mode or 'plain'}] {lines[0][:120]}{more}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.telegram", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="keep it on loopback")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--enforce-limits", action="store_true", help="answer 429 past Telegram's flood limits")
    parser.add_argument("--token", action="append", help=f"a bot token it accepts (default {DEFAULT_TOKEN})")
    args = parser.parse_args(argv)
    bots = None
    if args.token:
        bots = {}
        for number, token in enumerate(args.token):
            prefix = token.split(":", 1)[0]
            bots[token] = int(prefix) if prefix.isdigit() else DEFAULT_BOT_ID + number
    server = FakeTelegram(bots, host=args.host, port=args.port, enforce_limits=args.enforce_limits,
                          on_message=_print_message).start()
    print(f"fake Telegram Bot API at {server.url}, tokens: {', '.join(server.bots)}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())  # a script stops it as cleanly as Ctrl-C does
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    main()
