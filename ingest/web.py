"""The ingest's HTTP endpoints: smartstatus.bat's upload, getad-service's post, and the exporter's own
``/metrics``, ``/-/healthy``, ``/-/ready``, ``/-/reload`` and ``/`` for everything else.

An upload is checked in the order that costs least: its credentials from the headers and query, then its
Content-Length against the limit (a bigger one is answered 413 before a byte of the body is read), then the
body. smartstatus.bat is answered exactly as the SMART server answers it, ``{"ok":true,"path":"/files/
<client>.status"}``; getad-service, which looks only at the status code, gets a short JSON like getad-db's.
A refusal is a 4xx with a JSON body naming the reason; a 5xx only when the upload could not be stored.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

from ingest import getad, multipart, smartstatus
from ingest.config import GETAD, SMARTSTATUS, IngestConfig
from ingest.intake import Intake
from ingest.refusals import Refusal, Refusals, shown
from ingest.store import StoreError

log = logging.getLogger("sitewatch.ingest")

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 408: "Request Timeout",
                411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
                422: "Unprocessable Content", 500: "Internal Server Error", 503: "Service Unavailable"}
READ_CHUNK = 256 * 1024

Answer = tuple[int, dict[str, Any]]


def build_app(intake: Intake, refusals: Refusals, config: Callable[[], IngestConfig], fallback: Callable):
    """The WSGI application: the two upload paths of the current config, else `fallback` (exporter.server)."""

    def app(environ: dict[str, Any], start_response):
        path = environ.get("PATH_INFO", "/")
        current = config()
        if path == current.smartstatus.path:
            return _answer(start_response, *_take(SMARTSTATUS, environ, current, intake, refusals))
        if path == current.getad.path:
            return _answer(start_response, *_take(GETAD, environ, current, intake, refusals))
        if path == "/-/healthy":
            body = b"sitewatch ingest is healthy.\n"
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return fallback(environ, start_response)

    return app


def _take(source: str, environ: dict[str, Any], config: IngestConfig, intake: Intake,
          refusals: Refusals) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    remote = environ.get("REMOTE_ADDR", "")
    try:
        if environ.get("REQUEST_METHOD") != "POST":
            raise Refusal(405, "method", f"use POST: {source} uploads are posted")
        if source == SMARTSTATUS:
            status, body = _smartstatus(environ, config, intake)
        else:
            status, body = _getad(environ, config, intake)
        intake.count_upload(source)
        return status, body, []
    except Refusal as refusal:
        refusals.note(source, refusal, remote, refusal.site)
        extra = [("Allow", "POST")] if refusal.status == 405 else []
        return refusal.status, _refusal_body(source, refusal), extra
    except StoreError as err:
        log.error("event=upload_not_stored source=%s problem=%r", source, str(err))
        refusal = Refusal(503, "storage", "the upload could not be stored; send it again later")
        refusals.note(source, refusal, remote)
        return 503, _refusal_body(source, refusal), []
    except Exception:  # noqa: BLE001 - a bug must cost this upload only, and be seen
        log.exception("event=upload_failed source=%s remote=%s", source, remote)
        return 500, {"status": "error", "reason": "internal", "message": "internal error; see the ingest's log"}, []


def _smartstatus(environ: dict[str, Any], config: IngestConfig, intake: Intake) -> Answer:
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    distributor = intake.map.smartstatus_distributor(_header(environ, "HTTP_DEALER"), (query.get("token") or [""])[0])
    body = read_body(environ, config.max_body)
    file_name, data = multipart.file_field(body, environ.get("CONTENT_TYPE", ""))
    status_file = smartstatus.read_status_file(file_name, data)
    site = intake.map.smartstatus_site(distributor, status_file.client,
                                       intake.derived_count_for(distributor.name))
    if intake.made_for_another(site) is not None:
        raise Refusal(422, "unknown_client", f"the client {shown(status_file.client)} would become site {site.id}, "
                                             f"which was made for another client: map it explicitly")
    arrival = time.time()
    when, ignored = smartstatus.upload_time(status_file.server_date, arrival, config.smartstatus.date_tolerance)
    meta = {"distributor": distributor.name, "client": status_file.client, "file_name": file_name,
            "derived": site.derived, "date_ignored": ignored, "server_date": status_file.server_date}
    result = intake.accept(site, SMARTSTATUS, "page", data, when, arrival, meta)
    if not smartstatus.is_monitoring_page(result):
        # Kept as a failed run of the site's check (reason parse), as the kodeks check keeps a server that
        # serves something else; the sender is told, should a person be running the script by hand.
        raise Refusal(422, "not_monitoring_page", result.message, site=site.id)
    # The SMART server's answer, byte for byte: the script's log shows it.
    return 200, {"ok": True, "path": f"/files/{file_name}"}


def _getad(environ: dict[str, Any], config: IngestConfig, intake: Intake) -> Answer:
    owner = intake.map.getad_owner(_header(environ, "HTTP_X_API_KEY"))
    body = read_body(environ, config.max_body)
    record = getad.decode_post(body)
    read = getad.read_record(record, None)  # its shape; its dates are read in the site's zone once it is known
    serial, hostname, url_rms = getad.identity(record)
    site = intake.map.getad_site(owner, serial, hostname, url_rms)
    arrival = time.time()
    name = getad.file_name(record)
    meta = {"distributor": owner.distributor.name, "file_name": name, "hostname": hostname, "url_rms": url_rms}
    intake.accept(site, GETAD, getad.item_of(read), body, arrival, arrival, meta)
    return 200, {"status": "success", "message": f"{name} stored for site {site.id}"}


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body, whole; refused before reading when it is over `limit` or of no stated length."""
    if _header(environ, "HTTP_TRANSFER_ENCODING"):
        raise Refusal(411, "length_required", "send the body with a Content-Length, not in chunks")
    text = (environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        raise Refusal(411, "length_required", "no Content-Length: the body's size must be stated")
    if not text.isdigit() or len(text) > 18:
        raise Refusal(400, "bad_request", "the Content-Length is not a number of bytes")
    length = int(text)
    if length > limit:
        raise Refusal(413, "too_large", f"the body is {length} bytes, over this server's limit of {limit} "
                                        "(limits.max_body)")
    stream = environ["wsgi.input"]
    chunks: list[bytes] = []
    got = 0
    try:
        while got < length:
            chunk = stream.read(min(READ_CHUNK, length - got))
            if not chunk:
                raise Refusal(400, "truncated_body", f"the body ended after {got} of its {length} bytes")
            chunks.append(chunk)
            got += len(chunk)
    except (socket.timeout, TimeoutError):
        raise Refusal(408, "body_timeout", f"the body stopped coming after {got} of its {length} bytes") from None
    except (ConnectionError, OSError) as err:
        raise Refusal(400, "truncated_body", f"the connection broke after {got} of {length} bytes ({err})") from None
    return b"".join(chunks)


def _header(environ: dict[str, Any], key: str) -> str:
    """A header as the client sent its bytes (WSGI gives them as latin-1), read as UTF-8 where it can be."""
    value = environ.get(key, "")
    try:
        return value.encode("latin-1").decode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return value


def _refusal_body(source: str, refusal: Refusal) -> dict[str, Any]:
    if source == SMARTSTATUS:  # SMART's shape: ok false, and why
        return {"ok": False, "reason": refusal.reason, "error": refusal.message}
    return {"status": "error", "reason": refusal.reason, "message": refusal.message}  # getad-db's shape


def _answer(start_response, status: int, document: dict[str, Any], extra: Iterable[tuple[str, str]] = ()):
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}",
                   [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body))),
                    *extra])
    return [body]
