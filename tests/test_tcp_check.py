"""The ``tcp`` check end to end: a YAML config loaded as users write it, run against real local sockets.

Listeners are real sockets on 127.0.0.1 with ephemeral ports, closed by the fixture that opened them;
a "closed" port is one the OS just handed out and nothing listens on. The only other network activity
is the resolution of a ``.invalid`` name, which fails locally or at the resolver by definition.

There is no timeout case: making a connect hang needs a host that drops SYNs, and a listener with a full
backlog on loopback is not deterministic (Linux may still complete or retry the handshake), so it is
left out rather than made flaky.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.checks.base import Result
from exporter.config import load_config
from exporter.config.model import CheckConfig
from conftest import run_check as run


def load_tcp_check(folder: Path, options: dict[str, Any], timeout: str = "2s") -> CheckConfig:
    """The check as `load_config` builds it from YAML a user would write."""
    config = folder / "sitewatch.yml"
    raw = {"sites": [{"id": "shop", "checks": [{"name": "web-port", "timeout": timeout, "tcp": options}]}]}
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (check,) = load_config(config).checks()
    return check




def values(result: Result) -> dict[str, float]:
    return {sample.name: sample.value for sample in result.samples}


@pytest.fixture
def listener() -> socket.socket:
    """A socket listening on 127.0.0.1; the kernel completes handshakes without anyone calling accept()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released, so the OS just handed it out)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_open_port_passes_with_the_connect_time_sample(tmp_path, listener):
    port = listener.getsockname()[1]

    result = run(load_tcp_check(tmp_path, {"host": "127.0.0.1", "port": port}))

    assert result.success, result.message
    assert result.reason is None
    assert [sample.name for sample in result.samples] == ["sitewatch_tcp_connect_seconds"]
    assert 0 <= values(result)["sitewatch_tcp_connect_seconds"] < 1
    assert result.figures.startswith("connected in ")
    assert result.duration < 1


def test_the_check_really_connects_to_the_listener(tmp_path, listener):
    port = listener.getsockname()[1]

    result = run(load_tcp_check(tmp_path, {"host": "127.0.0.1", "port": port}))

    assert result.success, result.message
    listener.settimeout(1)
    connection, (peer_host, _) = listener.accept()  # the handshake the check made waits in the backlog
    connection.close()
    assert peer_host == "127.0.0.1"


def test_a_closed_port_fails_with_reason_refused_naming_host_and_port(tmp_path):
    port = free_port()

    result = run(load_tcp_check(tmp_path, {"host": "127.0.0.1", "port": port}))

    assert not result.success
    assert result.reason == "refused"
    assert f"127.0.0.1:{port}" in result.message
    assert "refused" in result.message
    assert result.samples == []
    assert result.duration < 1


def test_a_host_name_that_does_not_resolve_fails_with_reason_dns(tmp_path):
    result = run(load_tcp_check(tmp_path, {"host": "no-such-pc.sitewatch-test.invalid", "port": 443}))

    assert not result.success
    assert result.reason == "dns"
    assert "cannot resolve no-such-pc.sitewatch-test.invalid" in result.message
    assert result.samples == []
