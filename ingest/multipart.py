"""Takes the file out of a multipart/form-data body, as ``curl -Ffile=@<client>.status`` sends it.

The body is already in memory (its size was checked against the limit before it was read), so werkzeug's
sans-IO decoder reads it in one go. curl on Windows writes a file name in the ANSI code page (cp1251)
where werkzeug expects UTF-8; part headers that are not UTF-8 are read as cp1251, so a Cyrillic client
name still arrives whole. Anything the decoder cannot read is refused as ``bad_multipart``, never raised.
"""

from __future__ import annotations

import logging
import re

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from ingest.refusals import Refusal

log = logging.getLogger("sitewatch.ingest")

MAX_PARTS = 100  # curl sends one; a form of thousands is not an upload


def file_field(body: bytes, content_type: str, name: str = "file") -> tuple[str, bytes]:
    """(file name, content) of the form's file field `name`; raises Refusal when there is none."""
    mime, options = parse_options_header(content_type or "")
    if mime.lower() != "multipart/form-data":
        raise Refusal(415, "not_multipart", f"the body is {mime or 'of no stated type'}, not multipart/form-data "
                                            f"(smartstatus.bat uploads with curl -F{name}=@<client>.status)")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise Refusal(400, "bad_multipart", "the multipart/form-data Content-Type has no usable boundary")
    try:
        found = _find(_utf8_part_headers(body, boundary.encode("latin-1")), boundary.encode("latin-1"), name)
    except Refusal:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the decoder makes of a broken body is the sender's fault
        log.debug("event=multipart_unreadable error=%r", err)
        raise Refusal(400, "bad_multipart", f"the multipart body cannot be read ({_plain(err)})") from None
    if found is None:
        raise Refusal(422, "no_file", f"the form has no {name} field with a file (smartstatus.bat sends "
                                      f"-F{name}=@<client>.status)")
    return found


def _find(body: bytes, boundary: bytes, name: str) -> tuple[str, bytes] | None:
    decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
    decoder.receive_data(body)
    decoder.receive_data(None)
    current: File | Field | None = None
    chunks: list[bytes] = []
    while True:
        event = decoder.next_event()
        if isinstance(event, (File, Field)):
            current, chunks = event, []
        elif isinstance(event, Data):
            chunks.append(event.data)
            if not event.more_data and current is not None and current.name == name:
                if isinstance(current, File) and current.filename:
                    return current.filename, b"".join(chunks)
                raise Refusal(422, "no_file", f"the form's {name} field is a value, not a file with a name "
                                              f"(curl -F{name}=@<client>.status sends the file)")
        elif isinstance(event, Epilogue):
            return None
        elif isinstance(event, NeedData):
            raise Refusal(400, "bad_multipart", "the multipart body ends before its closing boundary")


# Part headers longer than this are not recoded (curl's are under 200 bytes); the bound keeps the scan linear.
HEADERS_MOST = 16 * 1024
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _utf8_part_headers(body: bytes, boundary: bytes) -> bytes:
    """The body with every part's headers in UTF-8: those that are not are read as cp1251 (Windows curl).

    A scan from each delimiter to the blank line after it, at most MAX_PARTS + 1 parts and HEADERS_MOST bytes
    each: a regular expression over the whole body took quadratic time on a body of bare delimiters."""
    delimiter = b"--" + boundary
    pieces: list[bytes] = []
    copied = pos = 0
    parts = 0
    while parts <= MAX_PARTS:
        start = body.find(delimiter, pos)
        if start < 0:
            break
        after = start + len(delimiter)
        newline = 2 if body.startswith(b"\r\n", after) else 1 if body.startswith(b"\n", after) else 0
        if not newline:
            pos = after
            continue
        parts += 1
        head = after + newline
        blank = _BLANK_LINE.search(body, head, head + HEADERS_MOST)
        if blank is None:
            pos = head
            continue
        headers = body[head:blank.start()]
        try:
            headers.decode("utf-8")
        except UnicodeDecodeError:
            pieces += [body[copied:head], headers.decode("cp1251", errors="replace").encode("utf-8")]
            copied = blank.start()
        pos = blank.end()
    pieces.append(body[copied:])
    return b"".join(pieces)


def _plain(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]
