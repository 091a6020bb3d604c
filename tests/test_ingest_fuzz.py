"""Whatever is sent to the live sitewatch-ingest (any body, headers, query, token, or raw bytes on the
socket), it never answers 5xx, and a proper upload sent right after is still taken."""

from __future__ import annotations

import json
import socket

import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.kkt.getad import REGISTER_KEYS, STATION_KEYS
from ingest_data.ingest_kit import (DEALER, GETAD_KEY, SITE_KEY, TOKEN, data_file,  # noqa: F401
                                    ingest_process, monitoring_page)

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=80)
tokens = st.one_of(st.sampled_from([TOKEN, GETAD_KEY, SITE_KEY, "", " "]), header_text)
header_names = st.one_of(st.sampled_from(["Content-Type", "dealer", "upload", "X-API-Key", "Expect", "Accept-Encoding",
                                          "Content-Disposition", "Cookie"]),
                         st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True))
content_types = st.one_of(st.sampled_from(["multipart/form-data; boundary=XyZ", "multipart/form-data",
                                           "application/json",
                                           "multipart/form-data; boundary=", "text/plain",
                                           'multipart/form-data; boundary="a b"; charset=utf-8']), header_text)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=12)
records = st.dictionaries(st.sampled_from(sorted(REGISTER_KEYS | set(STATION_KEYS) | {"current_time", "v_time"})),
                          st.one_of(json_values, st.sampled_from(["Isaac-LT", "KASSA-2", "065001234567890",
                                                                  "2026-12-31 23:59:59", "9999-12-31", "0"])),
                          max_size=12)


def multipart_body(name: str, file_name: str, content: bytes) -> bytes:
    return (f'--XyZ\r\nContent-Disposition: form-data; name="{name}"; filename="{file_name}"\r\n\r\n'.encode("utf-8",
            "surrogatepass") + content + b"\r\n--XyZ--\r\n")


bodies = st.one_of(
    st.binary(max_size=3000),
    st.builds(multipart_body, st.sampled_from(["file", "File", "", "x"]),
              st.one_of(st.sampled_from(["GORDUMA.status", "OTHER.status", ".status", "a/b.status"]),
                        st.text(max_size=30)),
              st.one_of(st.binary(max_size=2000), st.just(monitoring_page()),
                        st.builds(lambda b: monitoring_page()[:b], st.integers(0, 400)))),
    records.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(lambda cut: data_file("00123456790012.json")[:cut], st.integers(0, 1500)),
)


def assert_still_takes_uploads(ingest) -> None:
    answer = ingest.upload("GORDUMA.status", monitoring_page())
    assert answer.status_code == 200 and answer.json() == {"ok": True, "path": "/files/GORDUMA.status"}, answer.text
    answer = ingest.post_getad(data_file("065001234567890.json"))
    assert answer.status_code == 200, answer.text


@st.composite
def uploads(draw) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    """(path, method, query, headers, body): mostly with the right credentials, so the fuzz gets past them to
    the body, which is then anything from random bytes to a real file cut short."""
    path = draw(st.sampled_from(["/upload", "/api/submit_json"]))
    method = draw(st.sampled_from(["POST"] * 6 + ["PUT", "GET"]))
    credentials = draw(st.sampled_from(["right"] * 3 + ["random"]))
    headers = draw(st.dictionaries(header_names, header_text, max_size=4))
    if credentials == "right":
        token, dealer, key = TOKEN, draw(st.sampled_from([DEALER, DEALER.upper()])), draw(st.sampled_from([GETAD_KEY,
                                                                                                      SITE_KEY]))
    else:
        token, dealer, key = draw(tokens), draw(header_text), draw(tokens)
    body = draw(bodies)
    content_type = draw(st.one_of(st.just("multipart/form-data; boundary=XyZ"), st.just("application/json"),
                                  content_types))
    headers.update({"Content-Type": content_type, "dealer": dealer, "X-API-Key": key})
    return path, method, {"token": token}, headers, body


def test_any_request_to_either_endpoint_never_gets_a_5xx_and_proper_uploads_still_go_in(ingest_process):
    ingest = ingest_process()
    statuses: set[int] = set()

    json_with_key = {"Content-Type": "application/json", "dealer": DEALER, "X-API-Key": GETAD_KEY}

    # The three kinds the assertion below wants, whatever the random examples of a run happen to be.
    @FUZZ
    @given(upload=uploads())
    @example(upload=("/api/submit_json", "POST", {"token": TOKEN}, json_with_key, b"[]"))  # 422: not an object
    @example(upload=("/api/submit_json", "POST", {"token": TOKEN}, json_with_key, b"{"))  # 400: cut short
    @example(upload=("/api/submit_json", "POST", {"token": TOKEN}, {**json_with_key, "X-API-Key": "x"}, b"{}"))
    def one(upload):
        path, method, query, headers, body = upload
        try:
            response = requests.request(method, ingest.url + path, params=query, headers=headers, data=body,
                                        timeout=10)
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
            return  # requests itself will not send such a header
        statuses.add(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text)
        assert_still_takes_uploads(ingest)

    one()
    assert {400, 403, 422} <= statuses  # the fuzz got past the credentials and into the bodies
    assert "Traceback" not in ingest.log_text()
    assert ingest.process.poll() is None


def test_raw_bytes_on_the_socket_never_get_a_5xx_and_proper_uploads_still_go_in(ingest_process):
    ingest = ingest_process()

    @FUZZ
    @given(head=st.one_of(st.binary(max_size=300),
                          st.builds(lambda line, rest: line + rest,
                                    st.sampled_from([b"POST /upload?token=" + TOKEN.encode() + b" HTTP/1.1\r\n",
                                                     b"POST /api/submit_json HTTP/1.1\r\n",
                                                     b"POST /upload HTTP/1.0\r\n"]),
                                    st.binary(max_size=400))))
    def one(head):
        with socket.create_connection(("127.0.0.1", ingest.port), timeout=10) as sock:
            sock.sendall(head)
            sock.shutdown(socket.SHUT_WR)  # all there is: the server must not wait for more
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        status_line = answer.split(b"\r\n", 1)[0]
        assert not status_line.startswith((b"HTTP/1.0 5", b"HTTP/1.1 5")), (head, answer[:300])
        assert_still_takes_uploads(ingest)

    one()
    assert "Traceback" not in ingest.log_text()
