"""What a getad-service post says: one JSON file of its `date` folder, read by the getad check's own parser,
and a site's verdict from all the files its getad-services have posted.

getad-service posts each file of its folder on its own: ``{serialNumber}.json`` per register and, when no
register answered it, ``TV{teamviewer}_AD{anydesk}.json`` with only the workstation's data. A site's getad
check therefore looks at the latest post of each register and station together, as the exporter's getad
check looks at the files of a folder, and gives the same series (``sitewatch_kkt_*``, ``sitewatch_fn_*``).
A post that is not such a file is refused before anything is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

from exporter.checks.base import Result, Sample
from exporter.kkt import metrics as kkt_metrics
from exporter.kkt.getad import GetadFile, parse_getad_record
from ingest.refusals import Refusal


def decode_post(body: bytes) -> dict:
    """The posted JSON object; a body that is not one is refused with what is wrong with it."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Refusal(400, "not_utf8", f"the body is not UTF-8 text (byte 0x{body[err.start]:02X} at offset "
                                       f"{err.start}); getad-service posts its JSON files as UTF-8") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        # Cut short in transfer: the error is at the very end, or a string runs to it.
        cut = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        what = "truncated" if cut else "not valid JSON"
        raise Refusal(400, "bad_json", f"the body is {what}: line {err.lineno} column {err.colno} ({err.msg})") \
            from None
    except (ValueError, RecursionError) as err:  # absurd numbers or nesting
        raise Refusal(400, "bad_json", f"the body is not usable JSON ({type(err).__name__})") from None
    try:
        # Only a body that spells an escape in the surrogate range (\ud800-\udfff) can hold one: the others
        # are not serialised a second time.
        if "\\ud" in text.lower():
            json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" escapes are valid JSON but not text; nothing downstream can keep them
        raise Refusal(400, "bad_json", "the body holds a lone surrogate escape (such as \\ud800), which is not "
                                       "text") from None
    if not isinstance(record, dict):
        raise Refusal(422, "bad_record", f"the body is JSON but not an object (getad posts one register's or "
                                         f"station's file), got {type(record).__name__}")
    return record


def file_name(record: dict) -> str:
    """The name getad-service gave the file, for messages: 00123456790012.json or TV111_AD222.json."""
    serial = record.get("serialNumber")
    if isinstance(serial, str) and serial.strip():
        return f"{serial.strip()}.json"
    return f"TV{_text(record.get('teamviewer_id'))}_AD{_text(record.get('anydesk_id'))}.json"


def read_record(record: dict, timezone: ZoneInfo | None) -> GetadFile:
    """The register or station the record holds; a record of the wrong shape is refused naming the problem."""
    read = parse_getad_record(record, Path("posted") / file_name(record), timezone)
    if read.error is not None:
        raise Refusal(422, "bad_record", read.error.message)
    return read


def identity(record: dict) -> tuple[str, str, str]:
    """(serial, hostname, url_rms) as written, for matching the post to a site."""
    return _text(record.get("serialNumber")), _text(record.get("hostname")), _text(record.get("url_rms"))


def item_of(read: GetadFile) -> str:
    """What a later post replaces: the same register, or the same workstation's station file."""
    if read.state is not None:
        return f"kkt:{read.state.serial}"
    station = read.station or {}
    return f"station:{(station.get('hostname') or '').casefold() or read.path.name}"


def judge_posts(posts: list[GetadFile], timezone: ZoneInfo | None) -> Result:
    """A site's getad verdict from the latest post of each register and station, like the getad check's
    from a folder: its registers' series; failed (``not_found``) while only station files came."""
    samples: list[Sample] = []
    details: list[str] = []
    registers = 0
    hosts: list[str] = []
    for post in posts:
        if post.state is not None:
            registers += 1
            samples += kkt_metrics.state_samples(post.state)
            details.append(f"{post.path.name}: {kkt_metrics.summary(post.state, timezone)}")
        elif post.station is not None:
            hosts.append(post.station.get("hostname") or "?")
            details.append(f"{post.path.name}: a station whose register did not answer getad-service "
                           f"(host {hosts[-1]})")
    figures = f"{registers} register(s) posted by getad-service"
    if registers == 0:
        return Result.failed("not_found", f"getad-service found no register on {', '.join(hosts) or 'the PC'}: it "
                                          "posts only its station file, written when no register answers",
                             figures, samples, details)
    return Result(True, figures=figures, samples=samples, details=details)


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""
