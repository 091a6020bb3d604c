"""Fuzz (hypothesis) of what the receiver reads from the network: any request head, any body, any headers.

The readers themselves give a value or their own kind of refusal; the running receiver answers every
fuzzed request with something other than a 5xx, while valid webhooks sent at the same time are all stored.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver_kit import WEBHOOK_TOKEN, alert, payload, post, write_receiver_config

from alertmanager.httphead import HeadProblem, parse_head
from alertmanager.webhook import PayloadError, parse_body

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
HEADER_NAMES = st.sampled_from(["Authorization", "Content-Type", "Content-Length", "Transfer-Encoding", "Expect",
                                "Connection", "Host", "X-Any"]) | st.text("abcXYZ-_!~", min_size=1, max_size=12)
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


def _mutated_webhook(data) -> bytes:
    """A real webhook with one field somewhere replaced by any JSON value."""
    document = payload([alert(site="shop-1"), alert(site="shop-2")])
    target = data.draw(st.sampled_from(["top", "alert", "labels"]))
    holder = {"top": document, "alert": document["alerts"][0], "labels": document["alerts"][0]["labels"]}[target]
    key = data.draw(st.sampled_from(sorted(holder)) | st.text(max_size=8))
    holder[key] = data.draw(JSON_VALUES)
    return json.dumps(document, ensure_ascii=data.draw(st.booleans())).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_request_head_is_read_or_refused_with_a_status(data):
    try:
        head = parse_head(data)
    except HeadProblem as problem:
        assert 400 <= problem.status < 600 and problem.reason and problem.message
        return
    assert head.method and head.target.startswith("/") and head.content_length >= 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_body_is_read_or_refused_as_a_payload(data):
    body = data.draw(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES)
                     | st.builds(_mutated_webhook, st.data()))
    try:
        notification = parse_body(body)
    except PayloadError as err:
        assert err.reason in ("bad_json", "bad_payload", "wrong_version") and err.message
        return
    for one in notification.alerts:  # what was accepted can be stored and sent as text
        one.to_json().encode("utf-8")


@pytest.fixture(scope="module")
def live_receiver(tmp_path_factory):
    from receiver_kit import ReceiverProcess
    from simulators.telegram import FakeTelegram

    folder = tmp_path_factory.mktemp("fuzz")
    fake = FakeTelegram().start()
    process = ReceiverProcess(write_receiver_config(folder, fake.url), folder / "receiver.log").start()
    yield process
    process.stop()
    fake.stop()


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    return bytes(answer)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_the_running_receiver_never_answers_5xx_and_valid_webhooks_beside_the_fuzz_are_stored(live_receiver, data):
    headers = data.draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6))
    body = data.draw(st.binary(max_size=400) | st.builds(_mutated_webhook, st.data()))
    path = data.draw(st.sampled_from(["/alert/duty", "/alert/other", "/alert/nope", "/alert/%FF", "/", "/metrics",
                                      "/-/ready", "/alert/duty?x=1"]))
    method = data.draw(st.sampled_from(["POST", "GET", "HEAD", "PUT", "OPTIONS"]))
    if data.draw(st.booleans()):
        headers.append(("Authorization", f"Bearer {WEBHOOK_TOKEN}"))
    head = f"{method} {path} HTTP/1.1\r\nHost: fuzz\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    if not any(name.lower() == "content-length" for name, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
    valid_answers: list[int] = []
    beside = threading.Thread(target=lambda: valid_answers.append(
        post(f"{live_receiver.url}/alert/duty", payload([alert(site="shop-ok")], group_key="beside")).status_code))
    beside.start()
    answer = _raw_exchange(live_receiver.port, head.encode("latin-1") + b"\r\n" + body)
    beside.join(15)
    if answer:  # a head the server cut off (a timeout, a length it will not wait for) may get no answer
        status = int(answer.split(b" ", 2)[1])
        assert status < 500 or status == 503, answer[:300]
    assert valid_answers == [200]
    assert "Traceback" not in live_receiver.log_text()
