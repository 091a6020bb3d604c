"""The ping check and its engine on real ICMP: loopback answers, a namespaced silent address does not,
and an account without ICMP rights gets reason `permission` and a start-up hint instead of a traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, needs_root, write_config
from exporter.config import load_config
from exporter.httpclient import HttpClient
from exporter.icmp.engine import PingEngine
from exporter.icmp.packets import EchoCodec
from exporter.runner import run_once


@pytest.fixture(scope="module")
def engine():
    ping_engine = PingEngine()
    if ping_engine.open() == "none":
        pytest.fail(f"this test account cannot send ICMP: {ping_engine.permission_problem}")
    ping_engine.start()
    yield ping_engine
    ping_engine.stop()


def run_ping_check(tmp_path: Path, engine: PingEngine, options: str, timeout: str = "5s"):
    config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: shop
            checks:
              - name: pc
                timeout: {timeout}
                ping: {options}
    """))
    check = load_config(config).checks()[0]
    http = HttpClient()
    try:
        return asyncio.run(run_once(check, engine, http))
    finally:
        http.close()


def samples(result) -> dict[tuple[str, tuple], float]:
    return {(s.name, s.labels): s.value for s in result.samples}


def test_ping_to_loopback_passes_with_no_loss_and_rtt_figures(tmp_path, engine):
    result = run_ping_check(tmp_path, engine, "{host: 127.0.0.1, count: 3, interval: 100ms, timeout: 1s}")
    assert result.success, result.message
    values = samples(result)
    assert values[("sitewatch_ping_loss_ratio", ())] == 0.0
    rtt = {stat: values[("sitewatch_ping_rtt_seconds", (("stat", stat),))] for stat in ("min", "avg", "max")}
    assert 0 < rtt["min"] <= rtt["avg"] <= rtt["max"] < 0.5
    assert result.figures.startswith("3/3 replies")


def test_host_name_is_resolved_before_pinging(tmp_path, engine):
    result = run_ping_check(tmp_path, engine, "{host: localhost, count: 2, interval: 100ms, timeout: 1s, "
                                              "ip_version: '4'}")
    assert result.success, result.message


def test_unresolvable_name_fails_with_reason_dns(tmp_path, engine):
    result = run_ping_check(tmp_path, engine, "{host: no-such-host.invalid, count: 1, timeout: 1s}")
    assert not result.success
    assert result.reason == "dns"
    assert "no-such-host.invalid" in result.message


@needs_root
def test_silent_address_fails_with_full_loss_within_its_timeout(tmp_path, engine, void_address):
    started = time.monotonic()
    result = run_ping_check(tmp_path, engine, f"{{host: {void_address}, count: 3, interval: 200ms, timeout: 1s}}")
    elapsed = time.monotonic() - started
    assert not result.success
    assert result.reason in ("timeout", "unreachable")
    assert samples(result)[("sitewatch_ping_loss_ratio", ())] == 1.0
    # 3 packets 0.2 s apart with a 1 s packet timeout end after about 1.4 s, well inside the check timeout.
    assert elapsed < 2.5
    assert not any(name == "sitewatch_ping_rtt_seconds" for name, _ in samples(result))


@needs_root
def test_loss_within_max_loss_passes_and_above_fails(engine, void_address):
    # Half the targets answer and half do not: each ping's own loss decides, not the batch's.
    outcomes = engine.ping_many(["127.0.0.1", void_address], count=2, interval=0.1, timeout=0.5)
    from exporter.checks.ping import judge

    assert judge(outcomes[0], "127.0.0.1", max_loss=0.0).success
    failed = judge(outcomes[1], void_address, max_loss=0.5)
    assert not failed.success and failed.reason in ("timeout", "unreachable")


def test_replies_are_matched_to_their_own_targets_across_many_addresses(engine):
    addresses = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(600)]
    outcomes = engine.ping_many(addresses, count=2, interval=0.05, timeout=1.0)
    assert [o.address for o in outcomes] == addresses
    assert all(o.sent == 2 and o.received == 2 and len(o.rtts) == 2 for o in outcomes)


def test_echo_request_checksum_verifies():
    codec = EchoCodec(socket.AF_INET, ident=0x1234)
    packet = codec.request(sequence=7)
    # A packet whose checksum is right sums to 0xFFFF in ones' complement arithmetic.
    total = sum(int.from_bytes(packet[i:i + 2], "big") for i in range(0, len(packet), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF
    reply = bytes([0, 0]) + packet[2:]
    assert codec.parse_reply(reply) == (0x1234, 7)
    assert codec.parse_reply(b"\x03\x01" + packet[2:]) is None  # not an echo reply


def test_ping_timing_that_does_not_fit_the_check_timeout_is_a_config_error(tmp_path):
    from exporter.config import ConfigError

    config = write_config(tmp_path / "site.yml", textwrap.dedent("""
        sites:
          - id: shop
            checks:
              - name: pc
                timeout: 3s
                ping: {host: 127.0.0.1, count: 5, interval: 1s, timeout: 2s}
    """))
    with pytest.raises(ConfigError) as error:
        load_config(config)
    assert "sites[0].checks[0].timeout" in str(error.value)
    assert "at least 6s" in str(error.value)


# -- privileges: a fresh network namespace and the 'nobody' account --------------------------------

@pytest.fixture
def private_netns():
    name = f"swperm-{os.getpid()}-{time.monotonic_ns() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def run_as_nobody(netns: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    command = ["ip", "netns", "exec", netns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=-all", sys.executable, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def shared_dir():
    """A folder the 'nobody' account can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="sitewatch-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


@needs_root
def test_without_icmp_rights_the_check_fails_with_reason_permission_and_says_what_to_do(private_netns, shared_dir):
    # A new namespace has ping_group_range "1 0" (no unprivileged ICMP) and 'nobody' has no CAP_NET_RAW.
    config = write_config(shared_dir / "site.yml", "sites:\n  - id: shop\n    checks:\n"
                                                   "      - name: pc\n        ping: {host: 127.0.0.1, count: 1}\n")
    config.chmod(0o644)
    result = run_as_nobody(private_netns, ["-m", "exporter.cli", "check", "--config", str(config)], ROOT)
    if "No module named" in result.stderr:
        pytest.skip("the 'nobody' account cannot read the virtual environment here")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "permission" in result.stdout
    assert "ping_group_range" in result.stdout and "CAP_NET_RAW" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@needs_root
def test_unprivileged_icmp_sockets_are_used_where_the_os_allows_them(private_netns, shared_dir):
    subprocess.run(["ip", "netns", "exec", private_netns, "sysctl", "-q", "-w",
                    "net.ipv4.ping_group_range=0 2147483647"], check=True)
    probe = shared_dir / "probe.py"
    probe.write_text(textwrap.dedent("""
        from exporter.icmp.engine import PingEngine
        engine = PingEngine()
        print("mode", engine.open())
        engine.start()
        outcome = engine.ping_many(["127.0.0.1", "127.0.0.2"], count=2, interval=0.05, timeout=1.0)
        print("received", sum(o.received for o in outcome))
        engine.stop()
    """))
    probe.chmod(0o644)
    result = run_as_nobody(private_netns, [str(probe)], ROOT)
    if "No module named" in result.stderr:
        pytest.skip("the 'nobody' account cannot read the virtual environment here")
    assert "mode unprivileged" in result.stdout, result.stdout + result.stderr
    assert "received 4" in result.stdout


def test_ipv6_loopback_answers_through_its_own_socket(tmp_path, engine):
    result = run_ping_check(tmp_path, engine, "{host: '::1', count: 2, interval: 100ms, timeout: 1s}")
    assert result.success, result.message
    assert samples(result)[("sitewatch_ping_loss_ratio", ())] == 0.0
