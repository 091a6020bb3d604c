"""Asks Telegram, before any alert needs it, whether each bot's token works and each route's chat takes posts.

Used by ``sitewatch-receiver check-config`` (exit non-zero on a problem) and at start-up (logged, and
shown as ``sitewatch_receiver_route_usable``; the receiver still starts, so alerts are kept meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass

from alertmanager.config import ReceiverConfig, Route
from alertmanager.telegram import ApiAnswer, BotApi

# What a member with each status may do in a group; channels need an administrator who may post.
CANNOT_POST = {"left": "the bot is not a member of the chat", "kicked": "the bot was removed from the chat"}


@dataclass(frozen=True)
class Finding:
    what: str  # "bot duty" or "route shop-alerts"
    ok: bool
    detail: str


def check_telegram(config: ReceiverConfig, apis: dict[str, BotApi]) -> list[Finding]:
    findings: list[Finding] = []
    bot_ids: dict[str, int] = {}
    for name, api in apis.items():
        answer = api.call("getMe")
        if answer.ok and isinstance(answer.result, dict):
            bot_ids[name] = int(answer.result.get("id", 0))
            findings.append(Finding(f"bot {name}", True, f"@{answer.result.get('username', '?')}"))
        else:
            findings.append(Finding(f"bot {name}", False, _bot_problem(name, answer)))
    for name, route in config.routes.items():
        if route.bot not in bot_ids:
            findings.append(Finding(f"route {name}", False, f"not checked: its bot {route.bot!r} is not usable"))
            continue
        findings.append(_check_route(name, route, apis[route.bot], bot_ids[route.bot]))
    return findings


def _bot_problem(name: str, answer: ApiAnswer) -> str:
    if answer.kind == "unauthorized":
        return f"Telegram refused the token ({answer.description or answer.error_code}): check bots.{name}.token"
    if answer.network_error:
        return f"cannot reach the Bot API: {answer.network_error} (check telegram.api_url and telegram.proxy)"
    return f"getMe failed: HTTP {answer.error_code} {answer.description}"


def _check_route(name: str, route: Route, api: BotApi, bot_id: int) -> Finding:
    what = f"route {name}"
    chat = api.call("getChat", {"chat_id": route.chat_id})
    if not chat.ok:
        if chat.migrate_to_chat_id is not None:
            return Finding(what, False, f"the group became a supergroup: set routes.{name}.chat_id to "
                                        f"{chat.migrate_to_chat_id}")
        if chat.kind in ("chat_not_found", "forbidden"):
            return Finding(what, False, f"chat {route.chat_id}: {chat.description} (add the bot to the chat and "
                                        f"check routes.{name}.chat_id)")
        return Finding(what, False, f"getChat failed: {chat.network_error or chat.description or chat.error_code}")
    info = chat.result if isinstance(chat.result, dict) else {}
    kind = info.get("type", "?")
    title = info.get("title") or info.get("username") or info.get("first_name") or ""
    if route.thread_id and not info.get("is_forum"):
        return Finding(what, False, f"chat {route.chat_id} has no topics, so routes.{name}.thread_id cannot be used")
    if kind != "private":
        member = api.call("getChatMember", {"chat_id": route.chat_id, "user_id": bot_id})
        problem = _posting_problem(kind, member)
        if problem:
            return Finding(what, False, f"chat {route.chat_id} ({title}): {problem}")
    return Finding(what, True, f"{kind} {title!r}".strip())


def _posting_problem(kind: str, member: ApiAnswer) -> str:
    if not member.ok or not isinstance(member.result, dict):
        return f"cannot read the bot's membership: {member.description or member.network_error}"
    status = member.result.get("status", "")
    if status in CANNOT_POST:
        return CANNOT_POST[status]
    if kind == "channel" and (status not in ("administrator", "creator")
                              or member.result.get("can_post_messages") is False):
        return "the bot must be a channel administrator allowed to post messages"
    if status == "restricted" and not member.result.get("can_send_messages", False):
        return "the bot is not allowed to send messages there"
    return ""
