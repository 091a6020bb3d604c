"""A fake Telegram Bot API server on loopback: `<url>/bot<TOKEN>/<method>` answers getMe, getChat, getChatMember,
sendMessage (with inline keyboards and replies), getUpdates (long polling), answerCallbackQuery,
editMessageText and editMessageReplyMarkup the way api.telegram.org does, including its errors, HTML checks
and flood limits.

Tests switch its failures (`fail_next`, `set_mode`, `block_bot`, `migrate_chat`, `forget_chat`, and
`answer_delay`: a slow API that shows a message at once but answers late) while it runs,
play the people in the chats (`user_says`, `press_button`, `delete_message`; `raw_update` for what Telegram
would never send) and read back what it accepted (`messages`, `wait_for_messages`, `callback_answers`,
`wait_for_callback_answer`, `pending_updates`, `requests`).

    python -m simulators.telegram --port 18090 [--enforce-limits] [--answer-delay SECONDS]
                                  [--token 123456:TEST-token-for-sitewatch]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import random
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
MAX_BUTTONS = 100  # in one inline keyboard, all rows together
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
# what a bot gets when it never said (or last said []) which updates it wants
NOT_SENT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message")
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
    reply_markup: dict | None = field(default=None, hash=False)  # the inline keyboard now, after any edits
    reply_to_message_id: int | None = None  # the message it replies to
    edits: int = 0  # times its text was edited (editMessageText): `text` is the latest
    date: float = field(default=0.0, compare=False)  # time.time() when accepted: the Message's "date"


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


# --- inline keyboards ------------------------------------------------------------------------------------------

def inline_markup(value: object) -> dict | None:
    """The inline keyboard a reply_markup parameter asks for, as Telegram keeps it; None for no buttons.

    The parameter comes as a JSON-serialized string (form fields, or a JSON body that nests it as a string) or as
    an object in a JSON body. Only url and callback_data buttons are taken, and a button must have exactly one
    of them: stricter than Telegram (which takes the first kind it finds), because a button that is both is a
    sender's mistake either way.
    """
    value = _json_param(value, "Bad Request: can't parse reply keyboard markup JSON object")
    if value is None:
        return None
    if isinstance(value, dict) and value.keys() & {"keyboard", "remove_keyboard", "force_reply"}:
        # real markups, but nothing in sitewatch sends them: say so rather than pretend to show them
        raise ApiError(400, "Bad Request: the fake Telegram takes only inline keyboards in reply_markup")
    if not isinstance(value, dict) or "inline_keyboard" not in value:
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    rows = value["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array '
                            "of Arrays")
    if sum(len(row) for row in rows) > MAX_BUTTONS:
        raise ApiError(400, "Bad Request: reply markup is too long")
    keyboard = [[_button(button) for button in row] for row in rows]
    keyboard = [row for row in keyboard if row]
    return {"inline_keyboard": keyboard} if keyboard else None


def _button(button: object) -> dict:
    """One button as Telegram keeps it (only its text and its one action), or the error it answers."""
    def refused(why: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse inline keyboard button: {why}")

    if not isinstance(button, dict):
        raise refused("InlineKeyboardButton must be an Object")
    text = button.get("text")
    if not isinstance(text, str):
        raise refused('Field "text" must be of type String')
    if not text.strip():
        raise refused("Text must be non-empty")
    actions = [name for name in ("url", "callback_data") if button.get(name) is not None]
    others = sorted(name for name in button if name not in ("text", "url", "callback_data"))
    if others:
        raise ApiError(400, f"Bad Request: the fake Telegram takes only url and callback_data buttons, not {others}")
    if not actions:
        raise refused("Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        raise refused("a button takes one of url and callback_data, not both")
    if actions == ["callback_data"]:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return {"text": text, "callback_data": data}
    url = button["url"]
    scheme = _SCHEME.match(url) if isinstance(url, str) else None
    if scheme is None or scheme.group(1).lower() not in URL_SCHEMES or len(url) == scheme.end():
        raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")
    return {"text": text, "url": url}


def buttons(markup: dict | None) -> list[dict]:
    """All the buttons of a keyboard, row after row."""
    return [button for row in (markup or {}).get("inline_keyboard", []) for button in row]


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
    deleted: set[int] = field(default_factory=set)  # message ids deleted (by a test: delete_message)

    def has_message(self, message_id: int) -> bool:
        """Whether a message with this id is in the chat (a bot's or a person's)."""
        return 0 < message_id <= self.last_message_id and message_id not in self.deleted

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


@dataclass
class _Updates:
    """One bot's incoming updates: those getUpdates has not confirmed yet, and who polls for them."""

    next_id: int
    pending: deque = field(default_factory=deque)
    allowed: frozenset[str] | None = None  # the last allowed_updates it asked for; None: Telegram's default
    poller: int = 0  # counts getUpdates calls: one that sees the count move on was overtaken by a newer call

    def wants(self, kind: str) -> bool:
        return kind in self.allowed if self.allowed is not None else kind not in NOT_SENT_BY_DEFAULT

    def confirm(self, offset: int) -> None:
        """getUpdates' offset: ids below it are confirmed and gone; -N keeps only the last N."""
        if offset < 0:
            while len(self.pending) > -offset:
                self.pending.popleft()
            return
        while self.pending and self.pending[0]["update_id"] < offset:
            self.pending.popleft()


@dataclass
class _Query:
    """A callback query a button press made, until the bot answers it."""

    bot_id: int
    at: float  # time.monotonic() of the press
    answered: bool = False


class FakeTelegram:
    """The Bot API on a loopback port; `url` is what replaces https://api.telegram.org."""

    def __init__(self, bots: dict[str, int] | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 enforce_limits: bool = False, hang_seconds: float = 30.0, limits: RateLimits | None = None,
                 on_message: Callable[[SentMessage], None] | None = None,
                 on_callback_answer: Callable[[dict], None] | None = None, answer_delay: float = 0.0):
        self.bots = dict(bots) if bots is not None else {DEFAULT_TOKEN: DEFAULT_BOT_ID}
        self.enforce_limits = enforce_limits
        self.limits = limits or RateLimits()
        self.hang_seconds = hang_seconds
        # sendMessage and editMessageText show the message (or its new text) in the chat at once, then answer
        # this many seconds later (an overloaded API): a client that gives up before then cannot know.
        # Settable while it runs.
        self.answer_delay = answer_delay
        self.on_message = on_message  # called in the request's thread after a message is accepted
        self.on_callback_answer = on_callback_answer  # likewise after answerCallbackQuery, with the answer
        self.callback_answer_timeout = 15.0  # seconds a bot has to answer a button press, as Telegram gives
        self.requests: list[tuple[str, str, int]] = []
        self.callback_answers: list[dict] = []  # {callback_query_id, text, show_alert}
        self.rate_limited = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._updates_arrived = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._chats: dict[str, Chat] = {}
        self._messages: list[SentMessage] = []
        self._returned: dict[tuple[int, int], dict] = {}  # (chat id, message id) -> the Message the API gave
        self._updates: dict[int, _Updates] = {}  # bot id ->
        self._queries: dict[str, _Query] = {}
        self._next_query_id = random.randrange(10**18, 9 * 10**18)  # they look like Telegram's, big numbers
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
        with self._lock:
            self._updates_arrived.notify_all()  # and long polls, which answer []
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
        """The next `count` sendMessage or editMessageText calls (to that chat, or to any) fail with `kind`;
        "reject_html" counts only the calls it rejects, those in HTML parse mode."""
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
        """Forgets messages, requests, failures, the mode, the flood history, pending updates and callback
        queries; chats and bots stay, and so do update ids and message ids, which only go up."""
        with self._lock:
            self._messages.clear()
            self._returned.clear()
            for updates in self._updates.values():
                updates.pending.clear()
            self._queries.clear()
            self.callback_answers.clear()
            self.requests.clear()
            self._failures.clear()
            self._mode = None
            self._sent.clear()
            self.rate_limited = 0

    def delete_message(self, chat_id: int | str, message_id: int) -> None:
        """Someone deletes a message in the chat: it is gone from `messages`, cannot be edited ("message to
        edit not found") and a reply to it is refused unless it allows sending without the reply."""
        with self._lock:
            chat = self._known_chat(chat_id)
            if not chat.has_message(message_id):
                raise ValueError(f"no message {message_id} in chat {chat_id}")
            chat.deleted.add(message_id)
            index = self._message_index(chat, message_id)
            if index is not None:
                del self._messages[index]
            self._returned.pop((chat.id, message_id), None)

    # --- the people in the chats ---

    def user_says(self, chat_id: int | str, text: str, *, user_id: int | None = None,
                  username: str | None = "duty_engineer", first_name: str = "Иван",
                  message_thread_id: int | None = None, bot_token: str | None = None,
                  sent_ago: float = 0.0) -> dict:
        """Someone writes `text` in a chat set up with add_chat: a `message` update for the bot (`bot_token`,
        or the first bot). A text starting with a command gets its bot_command entity. `user_id` defaults to
        555, or in a private chat to the chat's id, which is its user's. Returns the update as getUpdates will
        give it (with no update_id when the bot's allowed_updates leave messages out: Telegram drops it).
        `sent_ago` backdates it: a message typed while the bot was not polling."""
        bot_id = self._bot_id(bot_token)
        with self._lock:
            chat = self._known_chat(chat_id)
            if chat.type == "channel":
                raise ValueError(f"chat {chat_id} is a channel: people post there as the channel, not as users")
            if message_thread_id is not None and not chat.is_forum:
                raise ValueError(f"chat {chat_id} has no topics (add_chat(..., is_forum=True))")
            chat.last_message_id += 1
            message = {"message_id": chat.last_message_id,
                       "from": _person(chat, user_id, username, first_name), "chat": chat.describe(),
                       "date": int(time.time() - sent_ago), "text": text}
            if message_thread_id is not None:
                message |= {"message_thread_id": message_thread_id, "is_topic_message": True}
            command = _COMMAND.match(text)
            if command:
                message["entities"] = [{"offset": 0, "length": utf16_length(command.group(0)),
                                        "type": "bot_command"}]
            return copy.deepcopy(self._queue(bot_id, "message", message))

    def press_button(self, chat_id: int | str, message_id: int, callback_data: str, *, user_id: int | None = None,
                     username: str | None = "duty_engineer", first_name: str = "Иван") -> str:
        """Someone presses a button of a bot's message: a `callback_query` update for the bot that sent it.
        Only a button the message shows now can be pressed. Returns the callback query id."""
        with self._lock:
            chat = self._known_chat(chat_id)
            index = self._message_index(chat, message_id)
            if index is None:
                raise ValueError(f"no message {message_id} from a bot in chat {chat_id}")
            message = self._messages[index]
            if not any(button.get("callback_data") == callback_data for button in buttons(message.reply_markup)):
                shown = [button.get("callback_data") for button in buttons(message.reply_markup)]
                raise ValueError(f"message {message_id} in chat {chat_id} has no button {callback_data!r}; "
                                 f"its buttons: {shown}")
            query_id = str(self._next_query_id)
            self._next_query_id += 1
            self._queries[query_id] = _Query(message.bot_id, time.monotonic())
            self._queue(message.bot_id, "callback_query", {
                "id": query_id, "from": _person(chat, user_id, username, first_name),
                "message": copy.deepcopy(self._returned[(chat.id, message.message_id)]),
                "chat_instance": str(7_000_000_000_000_000_000 - chat.id), "data": callback_data})
            return query_id

    def raw_update(self, kind: str, body: dict, *, bot_token: str | None = None) -> dict:
        """An update of `kind` ("message", "callback_query") with `body` exactly as given, for the bot: what a
        client does with one Telegram would never send (a string message id, no chat). A callback query's "id"
        can be answered. Returns the update."""
        bot_id = self._bot_id(bot_token)
        with self._lock:
            if kind == "callback_query" and body.get("id") is not None:
                self._queries[str(body["id"])] = _Query(bot_id, time.monotonic())
            return copy.deepcopy(self._queue(bot_id, kind, copy.deepcopy(body)))

    # --- what tests read ---

    def pending_updates(self, bot_token: str | None = None) -> int:
        """Updates for the bot that getUpdates has not confirmed yet."""
        bot_id = self._bot_id(bot_token)
        with self._lock:
            return len(self._updates_of(bot_id).pending)

    def wait_for_callback_answer(self, callback_query_id: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._answered:
            while True:
                for answer in self.callback_answers:
                    if answer["callback_query_id"] == callback_query_id:
                        return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"callback query {callback_query_id} was not answered within {timeout} s")
                self._answered.wait(left)

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

    # --- bots, chats and updates, under the lock ---

    def _bot_id(self, bot_token: str | None) -> int:
        if bot_token is None:
            return next(iter(self.bots.values()))
        if bot_token not in self.bots:
            raise ValueError(f"no bot with token {bot_token!r}")
        return self.bots[bot_token]

    def _updates_of(self, bot_id: int) -> _Updates:
        # Telegram's ids start anywhere: a client that counts from 0 or 1 finds out here
        return self._updates.setdefault(bot_id, _Updates(next_id=random.randrange(100_000, 1_000_000)))

    def _queue(self, bot_id: int, kind: str, body: dict) -> dict:
        """An update for the bot, if it wants that kind; the update either way."""
        updates = self._updates_of(bot_id)
        if not updates.wants(kind):
            return {kind: body}
        update = {"update_id": updates.next_id, kind: body}
        updates.next_id += 1
        updates.pending.append(update)
        self._updates_arrived.notify_all()
        return update

    def _known_chat(self, chat_id: int | str) -> Chat:
        chat = self._chats.get(chat_key(chat_id))
        if chat is None:
            raise ValueError(f"no chat {chat_id}: add_chat it first")
        return chat

    def _message_index(self, chat: Chat, message_id: int) -> int | None:
        """Where a bot's message in the chat is in `_messages`."""
        for index in range(len(self._messages) - 1, -1, -1):
            message = self._messages[index]
            if message.message_id == message_id and chat_key(message.chat_id) in chat.keys:
                return index
        return None


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
        markup = inline_markup(params.get("reply_markup"))
        text = "" if params.get("text") is None else str(params["text"])
        thread_id = _thread_id(params.get("message_thread_id"))
        reply_to, without_reply = _reply_parameters(params)
        with self._lock:
            now = time.monotonic()
            if self.enforce_limits:
                self._check_limits(bot_id, chat, now)
            visible = self._visible_text(text, html, "Bad Request: message is too long")
            if thread_id is not None and not chat.is_forum:
                raise ApiError(400, "Bad Request: message thread not found")
            if reply_to is not None and not chat.has_message(reply_to):
                if not without_reply:
                    raise ApiError(400, "Bad Request: message to be replied not found")
                reply_to = None
            chat.last_message_id += 1
            message = SentMessage(chat.last_message_id, bot_id, chat_id_param(params["chat_id"]), text,
                                  parse_mode, thread_id, _flag(params.get("disable_notification")), now, markup,
                                  reply_to, date=time.time())
            self._messages.append(message)
            result = self._returned[(chat.id, message.message_id)] = _returned(message, chat, visible)
            if reply_to is not None:
                replied = self._returned.get((chat.id, reply_to)) or {"message_id": reply_to, "chat": chat.describe()}
                result["reply_to_message"] = {k: v for k, v in replied.items() if k != "reply_to_message"}
            self._remember_sent(bot_id, chat, now)
            self._arrived.notify_all()
        if self.on_message:
            self.on_message(message)
        if self.answer_delay > 0 and self._stopping.wait(self.answer_delay):
            raise _Dropped(0, "server stopped")
        return result

    @staticmethod
    def _visible_text(text: str, html: bool, too_long: str) -> str:
        """The text a message shows, or the error Telegram gives for it (empty, bad HTML, too long)."""
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
            raise ApiError(400, too_long)
        return visible

    def get_updates(self, bot_id: int, params: dict) -> list[dict]:
        """Pending updates from `offset` on, after confirming those below it; with none and a timeout, waits
        for one (a long poll) until a newer getUpdates of the same bot terminates it with 409."""
        offset = _integer(params.get("offset"), 0, "offset")
        limit = min(max(_integer(params.get("limit"), 100, "limit"), 1), 100)  # Telegram clamps it
        timeout = max(_integer(params.get("timeout"), 0, "timeout"), 0)
        allowed = _allowed_updates(params.get("allowed_updates"))
        deadline = time.monotonic() + timeout
        with self._lock:
            updates = self._updates_of(bot_id)
            updates.poller += 1
            me = updates.poller
            self._updates_arrived.notify_all()  # an older call still waiting gives way
            if allowed is not None:  # absent keeps the last setting; [] goes back to the default
                updates.allowed = frozenset(allowed) or None
            updates.confirm(offset)
            while not updates.pending and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._updates_arrived.wait(left)
                if updates.poller != me:
                    raise ApiError(409, POLL_CONFLICT)
            return list(updates.pending)[:limit]

    def answer_callback_query(self, bot_id: int, params: dict) -> bool:
        """Once per query, by the bot whose message it came from, within callback_answer_timeout."""
        query_id = str(params.get("callback_query_id") or "")
        text = None if params.get("text") is None else str(params["text"])
        with self._lock:
            query = self._queries.get(query_id)
            if (query is None or query.bot_id != bot_id or query.answered
                    or time.monotonic() - query.at > self.callback_answer_timeout):
                raise ApiError(400, QUERY_INVALID)
            if text is not None and utf16_length(text) > MAX_CALLBACK_ANSWER_LENGTH:
                raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
            query.answered = True
            answer = {"callback_query_id": query_id, "text": text, "show_alert": _flag(params.get("show_alert"))}
            self.callback_answers.append(answer)
            self._answered.notify_all()
        if self.on_callback_answer:
            self.on_callback_answer(answer)
        return True

    def edit_message_reply_markup(self, bot_id: int, params: dict) -> dict:
        """New buttons for a bot's own message, or none: the edited Message."""
        markup = inline_markup(params.get("reply_markup"))
        if params.get("message_id") in (None, ""):
            raise ApiError(400, "Bad Request: message identifier is not specified")
        try:
            message_id = int(str(params["message_id"]).strip())
        except ValueError:
            raise ApiError(400, "Bad Request: message to edit not found") from None
        with self._lock:
            chat = self._reachable_chat(params, bot_id, kicked_answers=True)
            index = self._message_index(chat, message_id)
            if index is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            message = self._messages[index]
            if message.bot_id != bot_id:
                raise ApiError(400, "Bad Request: message can't be edited")
            if markup == message.reply_markup:
                raise ApiError(400, NOT_MODIFIED)
            self._messages[index] = dataclasses.replace(message, reply_markup=markup)
            key = (chat.id, message_id)
            edited = {name: value for name, value in self._returned[key].items() if name != "reply_markup"}
            edited["edit_date"] = int(time.time())
            if markup is not None:
                edited["reply_markup"] = copy.deepcopy(markup)
            self._returned[key] = edited  # replaced, never changed: updates made before keep what they showed
            return edited

    def edit_message_text(self, bot_id: int, params: dict) -> dict:
        """A bot's own message gets a new text, and the keyboard given (none given: the buttons are removed,
        as Telegram does): the edited Message. Only chat_id + message_id messages, not inline ones."""
        if params.get("inline_message_id") not in (None, ""):
            raise ApiError(400, "Bad Request: the fake Telegram edits only messages named by chat_id and message_id")
        with self._lock:
            chat = self._reachable_chat(params, bot_id, kicked_answers=True)
            parse_mode = params.get("parse_mode") or None
            html = str(parse_mode).lower() == "html"
            failure = self._take_failure(chat, html)
        if failure is not None:
            raise self._failure_error(failure)
        if parse_mode is not None and str(parse_mode).lower() not in ("html", "markdown", "markdownv2"):
            raise ApiError(400, "Bad Request: unsupported parse_mode")
        if params.get("message_id") in (None, ""):
            raise ApiError(400, "Bad Request: message identifier is not specified")
        try:
            message_id = int(str(params["message_id"]).strip())
        except ValueError:
            raise ApiError(400, "Bad Request: message to edit not found") from None
        markup = inline_markup(params.get("reply_markup"))
        text = "" if params.get("text") is None else str(params["text"])
        with self._lock:
            now = time.monotonic()
            if self.enforce_limits:
                self._check_limits(bot_id, chat, now)
            visible = self._visible_text(text, html, "Bad Request: MESSAGE_TOO_LONG")
            index = self._message_index(chat, message_id)
            if index is None:
                if chat.has_message(message_id):  # a person's message: a bot edits only its own
                    raise ApiError(400, "Bad Request: message can't be edited")
                raise ApiError(400, "Bad Request: message to edit not found")
            message = self._messages[index]
            if message.bot_id != bot_id:
                raise ApiError(400, "Bad Request: message can't be edited")
            if text == message.text and (parse_mode or None) == message.parse_mode and markup == message.reply_markup:
                raise ApiError(400, NOT_MODIFIED)
            message = dataclasses.replace(message, text=text, parse_mode=parse_mode, reply_markup=markup,
                                          edits=message.edits + 1)
            self._messages[index] = message
            key = (chat.id, message_id)
            edited = {name: value for name, value in self._returned[key].items() if name != "reply_markup"}
            edited |= {"text": visible, "edit_date": int(time.time())}
            if markup is not None:
                edited["reply_markup"] = copy.deepcopy(markup)
            self._returned[key] = edited
            self._remember_sent(bot_id, chat, now)
            self._arrived.notify_all()
        # A slow API is slow for edits too: the chat shows the new text before the bot hears back.
        if self.answer_delay > 0 and self._stopping.wait(self.answer_delay):
            raise _Dropped(0, "server stopped")
        return edited

    # Telegram takes method names in any case; requests records them as the documentation spells them
    METHODS: ClassVar[dict] = {"getme": ("getMe", get_me), "getchat": ("getChat", get_chat),
                               "getchatmember": ("getChatMember", get_chat_member),
                               "sendmessage": ("sendMessage", send_message),
                               "getupdates": ("getUpdates", get_updates),
                               "answercallbackquery": ("answerCallbackQuery", answer_callback_query),
                               "editmessagetext": ("editMessageText", edit_message_text),
                               "editmessagereplymarkup": ("editMessageReplyMarkup", edit_message_reply_markup)}

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


def _returned(message: SentMessage, chat: Chat, visible: str) -> dict:
    """The Message sendMessage answers with, which a callback query later carries too."""
    result = {"message_id": message.message_id, "date": int(message.date), "chat": chat.describe(), "text": visible}
    if chat.type == "channel":
        result["sender_chat"] = chat.describe()
    else:
        result["from"] = _bot_user(message.bot_id)
    if message.message_thread_id is not None:
        result |= {"message_thread_id": message.message_thread_id, "is_topic_message": True}
    if message.reply_markup is not None:
        result["reply_markup"] = copy.deepcopy(message.reply_markup)
    return result


def _person(chat: Chat, user_id: int | None, username: str | None, first_name: str) -> dict:
    """A user as updates show them; in a private chat the user is the chat."""
    if user_id is None:
        user_id = chat.id if chat.type == "private" else 555
    user = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        user["username"] = username
    return user


def _integer(value: object, default: int, name: str) -> int:
    if value is None or value == "":
        return default
    try:
        return int(float(str(value).strip()))  # 20.0 from a client that keeps seconds as floats is 20
    except (ValueError, OverflowError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _json_param(value: object, error: str) -> object:
    """A structured parameter as clients send it: an object in a JSON body, or JSON-serialized in a string
    (form fields, or a JSON body that nests it); None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, error) from None
    return value


def _allowed_updates(value: object) -> list[str] | None:
    """getUpdates' allowed_updates: a list, or that list JSON-serialized; None when not given."""
    value = _json_param(value, "Bad Request: can't parse allowed updates JSON array")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise ApiError(400, "Bad Request: allowed_updates must be an Array of String")
    return value


def _reply_parameters(params: dict) -> tuple[int | None, bool]:
    """The message a sendMessage replies to, and whether it may go without the reply when that message is
    gone: from reply_parameters, or the older reply_to_message_id and allow_sending_without_reply."""
    value = _json_param(params.get("reply_parameters"), "Bad Request: can't parse reply parameters JSON object")
    if value is None:
        if params.get("reply_to_message_id") in (None, ""):
            return None, False
        return _integer(params["reply_to_message_id"], 0, "reply_to_message_id"), \
            _flag(params.get("allow_sending_without_reply"))
    if not isinstance(value, dict) or value.get("message_id") in (None, ""):
        raise ApiError(400, "Bad Request: can't parse reply parameters JSON object")
    if value.get("chat_id") not in (None, "") and chat_key(value["chat_id"]) != chat_key(params.get("chat_id")):
        raise ApiError(400, "Bad Request: the fake Telegram takes replies only within the same chat")
    return _integer(value["message_id"], 0, "message_id"), _flag(value.get("allow_sending_without_reply"))


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
    keys = [button["text"] for button in buttons(message.reply_markup)]
    shown = f" buttons {keys}" if keys else ""
    print(f"chat {message.chat_id} [{message.parse_mode or 'plain'}] {lines[0][:120]}{more}{shown}", flush=True)


def _print_callback_answer(answer: dict) -> None:
    alert = " (alert)" if answer["show_alert"] else ""
    print(f"callback {answer['callback_query_id']} answered{alert}: {answer['text'] or ''}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.telegram", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="keep it on loopback")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--enforce-limits", action="store_true", help="answer 429 past Telegram's flood limits")
    parser.add_argument("--token", action="append", help=f"a bot token it accepts (default {DEFAULT_TOKEN})")
    parser.add_argument("--answer-delay", type=float, default=0.0, metavar="SECONDS",
                        help="show each sent or edited message at once but answer this much later")
    args = parser.parse_args(argv)
    bots = None
    if args.token:
        bots = {}
        for number, token in enumerate(args.token):
            prefix = token.split(":", 1)[0]
            bots[token] = int(prefix) if prefix.isdigit() else DEFAULT_BOT_ID + number
    server = FakeTelegram(bots, host=args.host, port=args.port, enforce_limits=args.enforce_limits,
                          on_message=_print_message, on_callback_answer=_print_callback_answer,
                          answer_delay=args.answer_delay).start()
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
