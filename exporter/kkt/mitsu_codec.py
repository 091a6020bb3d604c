"""The Mitsu 1-F wire format, as pure functions: the serial frame around a command, the reply's ETX + LRC
tail, the ETB-separated chunks of the network link, and the XML-like replies. The driver and the simulator
both build on it; nothing here touches a port.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

STX, ETX, ETB = 0x02, 0x03, 0x17
ENCODING = "cp1251"
TCP_CHUNK = 535  # data bytes per network packet; every packet but the last is followed by ETB
# The manual allows 2040 bytes of XML; a reply far longer than that is noise, not a slow device.
MAX_REPLY = 16384

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
_SPACE = " \t\r\n"
# The manual forbids control characters inside messages, so one means the bytes are not a reply.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ProtocolError(ValueError):
    """Bytes that are not a Mitsu message."""


class ChecksumError(ProtocolError):
    """A serial reply whose LRC does not match: a line fault worth one resend."""


class IncompleteError(ProtocolError):
    """The message stops early; more bytes could still make it whole."""


def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def _encode(xml: str) -> bytes:
    try:
        return xml.encode(ENCODING)
    except UnicodeEncodeError:
        raise ProtocolError(f"{xml!r} cannot be written in Windows-1251") from None


def _decode(data: bytes) -> str:
    try:
        text = data.decode(ENCODING)
    except UnicodeDecodeError:
        raise ProtocolError("bytes that are not Windows-1251 text") from None
    if _CONTROL.search(text):
        raise ProtocolError("a control character inside the message")
    return text


# --- serial (COM/USB) link ---------------------------------------------------------------------------------

def command_frame(xml: str) -> bytes:
    """STX, the XML's length (2 bytes, little-endian), the XML in Windows-1251, ETX, and the XOR of all of it."""
    payload = _encode(xml)
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"a command of {len(payload)} bytes does not fit the 2-byte length")
    body = bytes([STX]) + len(payload).to_bytes(2, "little") + payload + bytes([ETX])
    return body + bytes([lrc(body)])


def split_command_frame(buffer: bytes) -> tuple[str | None, int]:
    """The first whole command frame in `buffer`: (its XML, bytes used). (None, n) skips n bytes of noise or a
    frame with a bad LRC; (None, 0) waits for more bytes."""
    start = buffer.find(STX)
    if start < 0:
        return None, len(buffer)
    if start > 0:
        return None, start
    if len(buffer) < 3:
        return None, 0
    length = int.from_bytes(buffer[1:3], "little")
    if length > MAX_REPLY:
        return None, 1
    end = 3 + length + 2
    if len(buffer) < end:
        return None, 0
    if buffer[end - 2] != ETX or lrc(buffer[:end - 1]) != buffer[end - 1]:
        return None, 1  # resynchronise on the next STX
    try:
        return _decode(bytes(buffer[3:3 + length])), end
    except ProtocolError:
        return None, end


def reply_frame(xml: str, corrupt: bool = False) -> bytes:
    """A reply as the register sends it on a serial link: XML, ETX, LRC of both (no STX, no length)."""
    body = _encode(xml) + bytes([ETX])
    return body + bytes([lrc(body) ^ (0xFF if corrupt else 0)])


def serial_reply_end(buffer: bytes) -> int | None:
    """Where the first reply in `buffer` ends (just after the LRC byte that follows ETX), or None if not yet."""
    etx = buffer.find(ETX)
    if etx < 0 or etx + 1 >= len(buffer):
        return None
    return etx + 2


def could_be_reply_start(data: bytes) -> bool:
    """Whether `data` could still grow into a reply (False for line noise, or a line at the wrong baud rate)."""
    try:
        parse_element(_decode(tcp_join(data)))
    except IncompleteError:
        return True
    except ProtocolError:
        return False
    return True


def decode_serial_reply(frame: bytes) -> str:
    """The XML of one serial reply `data + ETX + LRC`, after checking the LRC (XOR of data and ETX)."""
    frame = bytes(frame)
    if len(frame) < 2 or frame[-2] != ETX:
        raise IncompleteError("the reply does not end in ETX and a checksum byte")
    body = frame[:-1]
    if ETX in body[:-1]:
        raise ProtocolError("ETX inside the reply")
    if lrc(body) != frame[-1]:
        raise ChecksumError(f"checksum 0x{frame[-1]:02X}, expected 0x{lrc(body):02X}")
    if len(body) - 1 > MAX_REPLY:
        raise ProtocolError(f"a reply of {len(body) - 1} bytes")
    return _decode(body[:-1])


# --- network (TCP) link ------------------------------------------------------------------------------------

def tcp_split(data: bytes) -> bytes:
    """Raw XML as the network link carries it: chunks of at most 535 bytes, each but the last followed by ETB."""
    chunks = [data[i:i + TCP_CHUNK] for i in range(0, len(data), TCP_CHUNK)] or [b""]
    return bytes([ETB]).join(chunks)


def tcp_join(data: bytes) -> bytes:
    """The message without its ETB separators (the XML holds no control characters, so ETB is never data)."""
    return bytes(data).replace(bytes([ETB]), b"")


def tcp_reply(buffer: bytes) -> str | None:
    """The reply text once `buffer` holds a whole root element; None while it is still coming."""
    buffer = bytes(buffer)
    if buffer.endswith(bytes([ETB])):
        data = tcp_join(buffer)
        if len(data) > MAX_REPLY:
            raise ProtocolError(f"a reply of over {MAX_REPLY} bytes")
        _check_start(_decode(data))
        return None
    try:
        return decode_tcp_reply(buffer)
    except IncompleteError:
        return None


def decode_tcp_reply(buffer: bytes) -> str:
    """The reply text of a whole network message; IncompleteError if it stops early."""
    buffer = bytes(buffer)
    if buffer.endswith(bytes([ETB])):
        raise IncompleteError("the last packet ends in ETB: more should follow")
    data = tcp_join(buffer)
    if len(data) > MAX_REPLY:
        raise ProtocolError(f"a reply of over {MAX_REPLY} bytes")
    text = _decode(data)
    parse_element(text)
    return text


def _check_start(text: str) -> None:
    stripped = text.lstrip(_SPACE)
    if stripped and not stripped.startswith("<"):
        raise ProtocolError(f"the message starts with {stripped[:10]!r}, not '<'")


# --- the XML-like messages ---------------------------------------------------------------------------------

@dataclass
class Element:
    """One message: tag, attributes and child tags' text, names lower-cased (Mitsu names ignore case)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass
class Reply:
    """An `<OK …>` or `<ERROR …>` answer. For an ERROR, `error_code` is `No`, and `fse` the ФН's own code."""

    ok: bool
    attrs: dict[str, str] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)
    error_code: int | None = None
    fse: str = ""
    error_tag: str = ""
    error_par: str = ""

    def get(self, name: str, default: str = "") -> str:
        return self.attrs.get(name.lower(), default)

    def child(self, name: str, default: str = "") -> str:
        return self.children.get(name.lower(), default)


class _Scanner:
    """A small recursive reader for Mitsu's XML subset: no declarations, comments or CDATA, any quoting."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> ProtocolError:
        if self.pos >= len(self.text):
            return IncompleteError(f"the message stops early: expected {what}")
        return ProtocolError(f"expected {what} at character {self.pos}, found {self.text[self.pos:self.pos + 10]!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.pos):
            # a prefix of the literal at the very end may still be completed by more bytes
            rest = self.text[self.pos:]
            if literal.startswith(rest):
                self.pos = len(self.text)
            raise self.fail(repr(literal))
        self.pos += len(literal)

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("a name")
        self.pos = match.end()
        if self.pos >= len(self.text):  # the name may go on in the next packet
            raise self.fail("the end of a name")
        return match.group().lower()

    def value(self) -> str:
        if self.pos >= len(self.text):
            raise self.fail("a value")
        quote = self.text[self.pos]
        if quote in "'\"":
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                self.pos = len(self.text)
                raise self.fail(f"the closing {quote}")
            raw = self.text[self.pos + 1:end]
            self.pos = end + 1
        else:  # the manual's examples also show unquoted values: <GET DATE=? />
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in _SPACE + "<>'\"" \
                    and not self.text.startswith("/>", self.pos):
                self.pos += 1
            if self.pos >= len(self.text):
                raise self.fail("the end of a value")
            raw = self.text[start:self.pos]
            if not raw:
                raise self.fail("a value")
        if "<" in raw:
            raise ProtocolError("'<' inside an attribute value")
        return html.unescape(raw)

    def element(self, depth: int = 0) -> Element:
        if depth > 8:
            raise ProtocolError("elements nested too deep")
        self.expect("<")
        element = Element(self.name())
        after_quote = False
        while True:
            had_space = self.pos < len(self.text) and self.text[self.pos] in _SPACE
            self.skip_space()
            if self.text.startswith("/>", self.pos):
                self.pos += 2
                return element
            if self.text.startswith(">", self.pos):
                self.pos += 1
                break
            if self.pos >= len(self.text) or self.text[self.pos:] == "/":
                self.pos = len(self.text)
                raise self.fail("'/>' or '>'")
            # real units run attributes together after a closing quote (HOLDS='0'PENDING='1'); elsewhere a
            # missing space would make two names one, so it is still an error there
            if not had_space and not after_quote:
                raise self.fail("a space before an attribute")
            attr = self.name()
            self.skip_space()
            after_quote = False
            if self.text.startswith("=", self.pos):
                self.pos += 1
                self.skip_space()
                after_quote = self.pos < len(self.text) and self.text[self.pos] in "'\""
                element.attrs.setdefault(attr, self.value())
            else:
                element.attrs.setdefault(attr, "")
        texts = []
        while True:
            end = self.text.find("<", self.pos)
            if end < 0:
                self.pos = len(self.text)
                raise self.fail(f"</{element.tag}>")
            texts.append(self.text[self.pos:end])
            self.pos = end
            if self.text.startswith("</", self.pos):
                self.pos += 2
                closing = self.name()
                if closing != element.tag:
                    raise ProtocolError(f"</{closing}> closes <{element.tag}>")
                self.skip_space()
                self.expect(">")
                element.text = html.unescape("".join(texts))
                return element
            child = self.element(depth + 1)
            element.children.setdefault(child.tag, child.text)


def parse_element(text: str) -> Element:
    """One whole message (a command or a reply), with nothing but spaces around it."""
    if not isinstance(text, str):
        raise ProtocolError("a message must be text")
    if _CONTROL.search(text):
        raise ProtocolError("a control character inside the message")
    scanner = _Scanner(text)
    scanner.skip_space()
    if scanner.pos >= len(text):
        raise IncompleteError("an empty message")
    element = scanner.element()
    scanner.skip_space()
    if scanner.pos != len(text):
        raise ProtocolError(f"{text[scanner.pos:scanner.pos + 10]!r} after the message")
    return element


def parse_reply(text: str) -> Reply:
    """An `<OK …/>` or `<ERROR No='n' FSE='0x..' TAG='' PAR=''/>` reply; ProtocolError for anything else."""
    element = parse_element(text)
    if element.tag == "ok":
        return Reply(True, element.attrs, element.children)
    if element.tag == "error":
        code = element.attrs.get("no", "").strip()
        if not code.isdigit():
            raise ProtocolError(f"an ERROR reply without a numeric No: {code!r}")
        return Reply(False, element.attrs, element.children, error_code=int(code),
                     fse=element.attrs.get("fse", ""), error_tag=element.attrs.get("tag", ""),
                     error_par=element.attrs.get("par", ""))
    raise ProtocolError(f"<{element.tag.upper()}> is neither <OK> nor <ERROR>")
