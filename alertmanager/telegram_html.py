"""What Telegram's HTML parse mode accepts, how long a text is by Telegram's count, and plain text for when
Telegram refuses the HTML anyway.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

MESSAGE_LIMIT = 4096  # Telegram's limit for one message's text
CUT_MARK = "…"
# Longer links are not worth a message's room (and are usually a label gone wrong).
URL_LIMIT = 2048
_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f]")
# What Telegram's HTML parse mode accepts; anything else makes it refuse the whole message.
TELEGRAM_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
                           "tg-spoiler", "tg-emoji", "blockquote"})


def message_length(text: str) -> int:
    """UTF-16 code units of the HTML as written: Telegram counts UTF-16 after parsing, which is never longer."""
    return len(text.encode("utf-16-le")) // 2


def http_url(value: str) -> str:
    """`value` when it is an http(s) URL Telegram will take as a link, else ""."""
    value = value.strip()
    if not value or len(value) > URL_LIMIT or _NOT_IN_URL.search(value):
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


_TOKEN = re.compile(r"<[^<>]*>|&[^&<>\s;]*;?|[<>]")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z][a-zA-Z0-9-]*(?:=\"[^\"]*\"|='[^']*')?)*)\s*>")
_HREF = re.compile(r"""\bhref=(?:"([^"]*)"|'([^']*)')""")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")


def markup_problem(line: str) -> str:
    """Why Telegram would refuse this one line of HTML (a tag it does not know, unbalanced tags, a bare & or <),
    or "" when it is fine."""
    stack: list[str] = []
    for token in _TOKEN.finditer(line):
        text = token.group()
        if text.startswith("&"):
            if not _ENTITY.fullmatch(text):
                return f"{text[:20]!r} is neither an entity Telegram knows nor an escaped &"
            continue
        tag = _TAG.fullmatch(text)
        if tag is None:
            return f"{text[:40]!r} is not a tag (text needs &lt; and &gt; for < and >)"
        closing, name = tag.group(1), tag.group(2).lower()
        if name not in TELEGRAM_TAGS:
            return f"<{name}> is not a tag Telegram accepts"
        if name == "a" and not closing:
            href = _HREF.search(tag.group(3))
            if href is None or not http_url(html.unescape(href.group(1) or href.group(2))):
                return "a link needs an http:// or https:// href (Telegram refuses other links)"
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return f"</{name}> closes a tag that is not open"
    if stack:
        return f"<{stack[-1]}> is not closed on the same line"
    return ""


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[str, int]] = []  # open <a>: its href and where its text starts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            self._close_link()

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def _close_link(self) -> None:
        href, start = self.links.pop()
        if href and href != "".join(self.parts[start:]).strip():
            self.parts.append(f" ({href})")

    def text(self) -> str:
        while self.links:
            self._close_link()
        return "".join(self.parts)


def html_to_text(text: str) -> str:
    """Plain text of Telegram HTML: tags removed, links as "text (URL)", entities unescaped."""
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    return parser.text()


def fit_lines(text: str, limit: int) -> str:
    """`text` when it fits in `limit`; else its first lines and a "…", cut between lines so tags stay balanced.

    A line that does not fit is replaced by its visible text, cut to the room left.
    """
    if message_length(text) <= limit:
        return text
    room = limit - len("\n" + CUT_MARK)
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        size = message_length(line) + (1 if kept else 0)
        if used + size <= room:
            kept.append(line)
            used += size
            continue
        free = limit - used - (1 if kept else 0)
        if not kept or free >= 40:  # a few words of the line say more than a bare "…"
            kept.append(_plain_prefix(line, free))
            return "\n".join(kept)
        break
    kept.append(CUT_MARK)
    return "\n".join(kept)


def _plain_prefix(line: str, limit: int) -> str:
    """The escaped visible text of one line of HTML, cut to fit in `limit` with a closing "…"."""
    pieces = []
    used = len(CUT_MARK)
    for char in html_to_text(line):
        piece = html.escape(char, quote=False)
        size = message_length(piece)
        if used + size > limit:
            break
        pieces.append(piece)
        used += size
    return "".join(pieces).rstrip() + CUT_MARK
