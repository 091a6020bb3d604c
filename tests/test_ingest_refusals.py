"""Bad uploads: each gets its 4xx naming the problem, is counted by source and reason, and leaves every other
site's series as they were; a 50 MB body is refused before it is read; no token or key ever reaches the
log, an answer or the pages; a flood of one kind of refusal gives one log line a minute, with the count."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import time

import requests

from ingest.refusals import Refusal, Refusals
from ingest_data.ingest_kit import (DEALER, GETAD_KEY, OTHER_DEALER, OTHER_TOKEN, SECRETS, TOKEN,  # noqa: F401
                                    data_file, ingest_process, monitoring_page)

WRONG_TOKEN = "wrong-token-8c1f2e77"
WRONG_KEY = "wrong-getad-key-31d0aa"
FIFTY_MB = 50 * 1024 * 1024


def series_of(text: str, site: str) -> list[str]:
    return sorted(line for line in text.splitlines() if f'site="{site}"' in line)


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "XyZ123") -> tuple[bytes, str]:
    parts = []
    for name, file_name, content in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def raw_upload(ingest, body: bytes, content_type: str, dealer: str = DEALER, token: str = TOKEN):
    return requests.post(f"{ingest.url}/upload", params={"token": token}, data=body,
                         headers={"dealer": dealer, "upload": "yes", "Content-Type": content_type}, timeout=10)


def test_every_kind_of_bad_upload_gets_its_4xx_is_counted_and_leaves_the_other_sites_alone(ingest_process):
    ingest = ingest_process()
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200
    assert ingest.post_getad(data_file("00123456790012.json")).status_code == 200
    before = ingest.metrics()
    register = json.loads(data_file("00123456790012.json"))
    good_form, good_type = multipart([("file", "GORDUMA.status", monitoring_page())])

    cases = [
        # (source, what is sent, status, reason, a word the answer must say)
        ("smartstatus", lambda: ingest.upload("GORDUMA.status", monitoring_page(), token=WRONG_TOKEN),
         403, "bad_token", "wrong token"),
        ("smartstatus", lambda: ingest.upload("GORDUMA.status", monitoring_page(), token=""), 403, "bad_token",
         "no ?token="),
        ("smartstatus", lambda: ingest.upload("GORDUMA.status", monitoring_page(), dealer="9999nobody"),
         403, "unknown_dealer", "9999nobody"),
        ("smartstatus", lambda: raw_upload(ingest, monitoring_page(), "text/plain"), 415, "not_multipart",
         "multipart/form-data"),
        ("smartstatus", lambda: raw_upload(ingest, *multipart([("other", "GORDUMA.status", b"x")])), 422, "no_file",
         "no file field"),
        ("smartstatus", lambda: raw_upload(ingest, *multipart([("file", None, monitoring_page())])), 422, "no_file",
         "not a file"),
        ("smartstatus", lambda: raw_upload(ingest, b"--XyZ123\r\ngarbage", good_type), 400, "bad_multipart",
         "cannot be read"),
        ("smartstatus", lambda: raw_upload(ingest, good_form[:40], good_type), 400, "bad_multipart", ""),
        ("smartstatus", lambda: ingest.upload("GORDUMA.txt", monitoring_page()), 422, "bad_file_name", ".status"),
        ("smartstatus", lambda: ingest.upload("STRANGER.status", monitoring_page()), 422, "unknown_client",
         "STRANGER"),
        ("smartstatus", lambda: ingest.upload("OTHER.status", b"<html>Welcome to nginx!</html>", OTHER_DEALER,
                                              OTHER_TOKEN), 422, "not_monitoring_page", "Welcome to nginx"),
        ("smartstatus", lambda: requests.get(f"{ingest.url}/upload", timeout=5), 405, "method", "POST"),
        ("getad", lambda: ingest.post_getad(register, key=WRONG_KEY), 403, "bad_key", "X-API-Key"),
        ("getad", lambda: ingest.post_getad(register, key=""), 403, "bad_key", "no X-API-Key"),
        ("getad", lambda: ingest.post_getad(data_file("00123456790012.json")[:300]), 400, "bad_json", "truncated"),
        ("getad", lambda: ingest.post_getad(b'{"serialNumber": "1", "x": "\xff\xfe"}'), 400, "not_utf8", "UTF-8"),
        ("getad", lambda: ingest.post_getad(b"[1, 2, 3]"), 422, "bad_record", "not an object"),
        ("getad", lambda: ingest.post_getad({"colour": "green"}), 422, "bad_record", "neither register data"),
        ("getad", lambda: ingest.post_getad({**register, "serialNumber": ""}), 422, "bad_record", "serialNumber"),
        ("getad", lambda: requests.post(f"{ingest.url}/api/submit_json", headers={"X-API-Key": GETAD_KEY,
                                        "Transfer-Encoding": "chunked"}, data=iter([b"{}"]), timeout=5),
         411, "length_required", "Content-Length"),
    ]
    expected: dict[tuple[str, str], int] = {}
    for source, send, status, reason, word in cases:
        response = send()
        assert response.status_code == status, (reason, response.status_code, response.text)
        answer = response.json()
        assert answer["reason"] == reason, answer
        assert word in (answer.get("error") or answer.get("message")), (word, answer)
        expected[(source, reason)] = expected.get((source, reason), 0) + 1

    after = ingest.metrics()
    for (source, reason), count in expected.items():
        pattern = f'sitewatch_ingest_refused_total{{reason="{reason}",source="{source}"}} {float(count)}'
        assert pattern in after, pattern
    for site in ("gorduma-kodeks", "isaac-cafe"):
        assert series_of(after, site) == series_of(before, site), site
    assert 'sitewatch_ingest_uploads_total{source="smartstatus"} 1.0' in after
    assert 'sitewatch_ingest_uploads_total{source="getad"} 1.0' in after


def test_a_50_mb_body_is_refused_with_413_before_it_is_read(ingest_process):
    ingest = ingest_process()
    started = time.monotonic()
    response = ingest.upload("GORDUMA.status", b"0" * FIFTY_MB)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
    assert "over this server's limit of 8388608" in response.json()["error"]
    response = ingest.post_getad(b"{" * FIFTY_MB)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
    if shutil.which("curl"):
        # curl asks first (Expect: 100-continue) and is answered 413 without sending the 50 MB at all.
        run = subprocess.run(["curl", "-sv", "-H", f"X-API-Key: {GETAD_KEY}", "--data-binary", "@-",
                              f"{ingest.url}/api/submit_json"], input=b"{" * FIFTY_MB, capture_output=True,
                             timeout=30)
        assert b"Expect: 100-continue" in run.stderr and b"< HTTP/1.0 413" in run.stderr
        assert b"100 Continue" not in run.stderr
    # A client that sends the whole body without asking first: the body is drained, not cut off, so its
    # sending ends without a broken pipe and it reads the 413 (clients that stop at a send error see nothing).
    with socket.create_connection(("127.0.0.1", ingest.port), timeout=20) as sock:
        sock.sendall(f"POST /upload?token={TOKEN} HTTP/1.1\r\nHost: x\r\ndealer: {DEALER}\r\n"
                     f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {FIFTY_MB}\r\n\r\n".encode())
        chunk = b"0" * 65536
        for _ in range(FIFTY_MB // len(chunk)):
            sock.sendall(chunk)
        assert sock.recv(100).startswith(b"HTTP/1.0 413 Content Too Large\r\n")
    assert time.monotonic() - started < 20
    assert ingest.value("sitewatch_ingest_refused_total", source="smartstatus", reason="too_large") == 2
    # The process did not take the bodies in: far below 50 MB of resident memory more than at rest.
    assert ingest.value("process_resident_memory_bytes") < 150 * 1024 * 1024
    # And it still takes a proper upload.
    assert ingest.upload("GORDUMA.status", monitoring_page()).json() == {"ok": True, "path": "/files/GORDUMA.status"}


def test_no_token_or_key_reaches_the_log_the_answers_or_the_pages(ingest_process):
    ingest = ingest_process()
    answers = [ingest.upload("GORDUMA.status", monitoring_page(), token=WRONG_TOKEN).text,
               ingest.upload("GORDUMA.status", monitoring_page()).text,
               ingest.upload("NOBODY.status", monitoring_page()).text,
               ingest.post_getad(data_file("00123456790012.json"), key=WRONG_KEY).text,
               ingest.post_getad(data_file("00123456790012.json")).text,
               requests.post(f"{ingest.url}/upload?token={TOKEN}", data=b"x", timeout=5).text]
    pages = ingest.metrics() + requests.get(ingest.url + "/", timeout=5).text
    ingest.stop()
    for secret in [*SECRETS.values(), WRONG_TOKEN, WRONG_KEY]:
        assert secret not in ingest.log_text(), secret
        assert all(secret not in answer for answer in answers), secret
        assert secret not in pages, secret
    assert "event=upload_refused" in ingest.log_text()


def test_a_flood_of_bad_uploads_gives_one_log_line_per_kind_and_minute(ingest_process):
    ingest = ingest_process()
    for _ in range(100):
        ingest.upload("GORDUMA.status", monitoring_page(), token=WRONG_TOKEN)
        ingest.post_getad(b"{", key=GETAD_KEY)
    assert ingest.value("sitewatch_ingest_refused_total", source="smartstatus", reason="bad_token") == 100
    assert ingest.value("sitewatch_ingest_refused_total", source="getad", reason="bad_json") == 100
    lines = [line for line in ingest.log_text().splitlines() if "event=upload_refused" in line]
    assert len(lines) == 2, lines
    assert {re.search(r"reason=(\w+)", line).group(1) for line in lines} == {"bad_token", "bad_json"}


def test_after_the_minute_the_next_line_says_how_many_came_since(caplog):
    refusals = Refusals(every=0.2)
    refusal = Refusal(403, "bad_token", "wrong token for dealer d1")
    with caplog.at_level(logging.WARNING, logger="sitewatch.ingest"):
        for _ in range(50):
            refusals.note("smartstatus", refusal, "10.0.0.7")
        time.sleep(0.25)
        refusals.note("smartstatus", refusal, "10.0.0.7")
        refusals.note("getad", Refusal(403, "bad_key", "wrong X-API-Key"), "10.0.0.8")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3, lines
    assert "reason=bad_token" in lines[0] and "count_since_last_line=1" in lines[0]
    assert "reason=bad_token" in lines[1] and "count_since_last_line=50" in lines[1]
    assert "reason=bad_key" in lines[2] and "count_since_last_line=1" in lines[2]
    assert refusals.counts() == {("smartstatus", "bad_token"): 51, ("getad", "bad_key"): 1}


def test_a_lone_surrogate_in_a_post_is_refused_and_leaves_the_store_writable(ingest_process):
    """It once got 500 and left the SQLite transaction open: every later upload of every site got 503."""
    ingest = ingest_process()
    poison = b'{"serialNumber": "00123456790012", "hostname": "isaac-lt\\udc80"}'
    answer = ingest.post_getad(poison)
    assert answer.status_code == 400 and "surrogate" in answer.text
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200
    assert ingest.post_getad(data_file("00123456790012.json")).status_code == 200


def test_a_placeholder_date_of_year_one_is_taken_as_unknown_not_a_crash(ingest_process):
    ingest = ingest_process()
    record = json.loads(data_file("00123456790012.json"))
    record["dateTime_end"] = "0001-01-01 00:00:00"
    record["licenses"]["1"]["dateUntil"] = "0001-01-01 00:00:00"
    assert ingest.post_getad(record).status_code == 200
    text = ingest.metrics()
    assert "sitewatch_fn_expiry_timestamp_seconds{" not in text
    assert 'licence="1"' not in text.split("sitewatch_kkt_licence_expiry_timestamp_seconds", 1)[-1].split("# HELP")[0]


def test_pathological_bodies_are_read_in_linear_time(ingest_process):
    """A date line of spaces and a body of bare multipart delimiters once took quadratic time, holding the
    whole process (health checks and other uploads) meanwhile."""
    ingest = ingest_process()
    started = time.monotonic()
    spaces = b"date: a" + b" " * 60_000 + b"b\n" + monitoring_page()
    assert ingest.upload("GORDUMA.status", spaces).status_code in (200, 422)
    boundary = "XyZ"
    body = (f"--{boundary}\n" * 40_000).encode()
    answer = requests.post(f"{ingest.url}/upload", params={"token": TOKEN}, data=body, timeout=30,
                           headers={"upload": "yes", "dealer": DEALER,
                                    "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= answer.status_code < 500
    assert time.monotonic() - started < 5


def test_a_site_takes_a_bounded_number_of_registers(ingest_process):
    from ingest.intake import MOST_ITEMS_PER_SITE

    ingest = ingest_process()
    record = json.loads(data_file("00123456790012.json"))
    for number in range(MOST_ITEMS_PER_SITE):
        record["serialNumber"] = f"{number:014d}"
        assert ingest.post_getad(record).status_code == 200
    record["serialNumber"] = "99999999999999"
    refused = ingest.post_getad(record)
    assert refused.status_code == 422 and "isaac-cafe" in refused.text
    record["serialNumber"] = f"{0:014d}"  # one it has: still taken
    assert ingest.post_getad(record).status_code == 200
    assert ingest.value("sitewatch_ingest_refused_total", source="getad", reason="too_many_items") == 1


def test_an_unreadable_rms_address_or_a_date_past_9000_is_not_a_server_error(ingest_process):
    ingest = ingest_process()
    record = json.loads(data_file("00123456790012.json"))
    record["url_rms"] = "http://[resto"
    record["dateTime_end"] = "9999-12-31 23:59:59"
    assert ingest.post_getad(record).status_code == 200  # still the site of its hostname
    assert "sitewatch_fn_expiry_timestamp_seconds{" not in ingest.metrics()


def test_a_page_with_an_endless_line_or_endless_tags_is_refused_at_once(ingest_process):
    """A label with no closing quote on a 40 KB line once held the whole process for 19 s."""
    ingest = ingest_process()
    started = time.monotonic()
    endless_label = b'kserver_main_page{service="kodweb",path="/docs' + b"a" * 40_000 + b"\n"
    assert ingest.upload("GORDUMA.status", endless_label).status_code == 422
    assert ingest.upload("GORDUMA.status", b"<" * 200_000).status_code == 422
    assert ingest.upload("GORDUMA.status", b"x\n" * 200_000).status_code == 413
    assert time.monotonic() - started < 5
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200
