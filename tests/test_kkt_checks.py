"""The kkt, getad and iiko_log checks as a user configures them: a Mitsu register on a real pty and on
loopback TCP, a getad folder, an iikoFront log with a swapped ФН, the one-shot table and the exporter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import (ROOT, copy_example_logs, copy_getad_example, run_check, value_of_metric, wait_until,
                      write_config)
from exporter.config import load_config
from simulators.mitsu import MitsuPtySimulator, MitsuScenario, MitsuTcpSimulator, hold_port

MOSCOW = ZoneInfo("Europe/Moscow")
EXAMPLES = ROOT / "examples"


def one_check(tmp_path, body: str, timezone: str = "Europe/Moscow"):
    config = write_config(tmp_path / "site.yml", "sites:\n  - id: shop\n    timezone: " + timezone +
                          "\n    checks:\n" + textwrap.indent(textwrap.dedent(body), "      "))
    return load_config(config).checks()[0]


def samples(result) -> dict[tuple[str, tuple], float]:
    return {(s.name, s.labels): s.value for s in result.samples}


@pytest.fixture
def mitsu_pty():
    with MitsuPtySimulator(MitsuScenario()) as simulator:
        yield simulator


def test_a_mitsu_register_on_a_pty_is_read_into_the_contract_metrics(tmp_path, mitsu_pty):
    # The register's dates are Moscow's: between 21:00 and 24:00 UTC the machine's date is a day behind.
    expiry = (datetime.now(MOSCOW).date() + timedelta(days=40)).isoformat()
    mitsu_pty.scenario.fn_expiry = expiry
    mitsu_pty.scenario.unsent = 4
    mitsu_pty.scenario.first_unsent = (datetime.now(MOSCOW) - timedelta(days=5)).strftime("%Y-%m-%d %H:%M")
    mitsu_pty.scenario.flags = 0x08
    check = one_check(tmp_path, f"""
        - name: till-1
          kkt: {{driver: mitsu, port: "{mitsu_pty.device}"}}
    """)
    assert check.schedule.interval == 3600  # the till shares the port: hourly unless configured
    result = run_check(check)
    assert result.success, result.message
    values = samples(result)
    kkt = (("kkt", "065001234567890"),)
    assert values[("sitewatch_kkt_up", kkt)] == 1.0
    fn_expiry = datetime.fromisoformat(expiry).replace(tzinfo=MOSCOW).timestamp()
    assert values[("sitewatch_fn_expiry_timestamp_seconds", (("kkt", "065001234567890"),
                                                              ("fn", "9999078902014447")))] == fn_expiry
    assert values[("sitewatch_fn_unsent_documents", kkt)] == 4
    oldest = values[("sitewatch_fn_oldest_unsent_document_timestamp_seconds", kkt)]
    assert 4.9 * 86400 < datetime.now().timestamp() - oldest < 5.1 * 86400
    assert values[("sitewatch_fn_warning", (("kkt", "065001234567890"), ("flag", "ofd_timeout")))] == 1.0
    assert values[("sitewatch_fn_warning", (("kkt", "065001234567890"), ("flag", "replace_urgent")))] == 0.0
    assert values[("sitewatch_fn_phase", kkt)] == 3
    assert values[("sitewatch_fn_registrations_remaining", kkt)] == 27
    assert abs(values[("sitewatch_kkt_clock_offset_seconds", kkt)]) < 5
    line = result.details[0]
    for text in ("MITSU-1-F", "№065001234567890", "ФН 9999078902014447", "(in 40 days)",
                 "4 unsent to the OFD, oldest 5 days old", "ofd_timeout"):
        assert text in line, line


def test_a_register_over_tcp_reads_the_same(tmp_path):
    with MitsuTcpSimulator(MitsuScenario()) as simulator:
        result = run_check(one_check(tmp_path, f"""
            - name: till-1
              kkt: {{driver: mitsu, port: "{simulator.url.replace('socket://', 'tcp://')}"}}
        """))
    assert result.success, result.message
    assert samples(result)[("sitewatch_kkt_up", (("kkt", "065001234567890"),))] == 1.0


def test_a_port_the_till_holds_fails_at_once_with_port_busy_and_keeps_the_last_reading(tmp_path, mitsu_pty):
    import asyncio

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    check = one_check(tmp_path, f"""
        - name: till-1
          kkt: {{driver: mitsu, port: "{mitsu_pty.device}", serial: "065001234567890"}}
    """)
    memory: dict = {}
    engine, http = PingEngine(), HttpClient()
    try:
        first = asyncio.run(run_once(check, engine, http, memory))
        with hold_port(mitsu_pty.device):
            busy = asyncio.run(run_once(check, engine, http, memory))
    finally:
        http.close()
    assert first.success
    assert not busy.success and busy.reason == "port_busy"
    assert busy.duration < 1.0  # no waiting on the till
    values = samples(busy)
    assert values[("sitewatch_kkt_up", (("kkt", "065001234567890"),))] == 0.0
    assert any(name == "sitewatch_fn_expiry_timestamp_seconds" for name, _ in values)  # still true
    assert busy.details[0].startswith("last read 0.0 h ago: MITSU-1-F")


def test_a_register_never_read_is_down_under_its_configured_serial_or_its_port(tmp_path, mitsu_pty):
    with hold_port(mitsu_pty.device):
        result = run_check(one_check(tmp_path, f"""
            - name: till-1
              kkt: {{driver: mitsu, port: "{mitsu_pty.device}"}}
        """))
    assert result.reason == "port_busy"
    assert samples(result) == {("sitewatch_kkt_up", (("kkt", mitsu_pty.device),)): 0.0}
    assert result.details == [f"register on {mitsu_pty.device} never read yet"]


def test_another_register_on_the_port_fails_with_wrong_device(tmp_path, mitsu_pty):
    result = run_check(one_check(tmp_path, f"""
        - name: till-1
          kkt: {{driver: mitsu, port: "{mitsu_pty.device}", serial: "065000000000001"}}
    """))
    assert result.reason == "wrong_device"
    assert "065001234567890" in result.message and "065000000000001" in result.message


def test_a_getad_folder_exports_every_register_and_its_licences(tmp_path):
    folder = tmp_path / "date"
    shutil.copytree(EXAMPLES / "getad-date", folder)
    result = run_check(one_check(tmp_path, f"""
        - name: getad
          getad: {{folder: "{folder}"}}
    """))
    assert result.success, result.message
    values = samples(result)
    kkt = "00123456790012"
    assert values[("sitewatch_kkt_up", (("kkt", kkt),))] == 1.0
    licence = values[("sitewatch_kkt_licence_expiry_timestamp_seconds", (("kkt", kkt), ("licence", "10"),
                                                                         ("name", "ФФД 1.2")))]
    assert licence == datetime(2027, 1, 15, tzinfo=MOSCOW).timestamp()
    assert values[("sitewatch_kkt_data_timestamp_seconds", (("kkt", kkt),))] == \
        datetime(2026, 11, 20, 21, 57, 25, tzinfo=MOSCOW).timestamp()
    assert any("licence 10 «ФФД 1.2» until 15.01.2027" in line for line in result.details)
    assert any("a station whose register did not answer" in line for line in result.details)


def test_a_broken_getad_file_fails_with_parse_and_the_others_still_count(tmp_path):
    folder = tmp_path / "date"
    shutil.copytree(EXAMPLES / "getad-date", folder)
    (folder / "00999.json").write_text('{"serialNumber": "00999", "modelName": ', encoding="utf-8")
    result = run_check(one_check(tmp_path, f"""
        - name: getad
          getad: {{folder: "{folder}"}}
    """))
    assert result.reason == "parse" and "00999.json" in result.message
    values = samples(result)
    assert values[("sitewatch_kkt_up", (("kkt", "00999"),))] == 0.0
    assert values[("sitewatch_kkt_up", (("kkt", "00123456790012"),))] == 1.0


def iiko_site(tmp_path) -> tuple:
    folder = tmp_path / "date"
    logs = tmp_path / "logs"
    fn_until, _ = copy_getad_example(folder)
    copy_example_logs("iiko-logs", logs)
    config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
        sites:
          - id: cafe
            labels: {{client: kofeinya}}
            timezone: Europe/Moscow
            checks:
              - name: getad
                interval: 1s
                getad: {{folder: "{folder}"}}
              - name: pos-log
                interval: 1s
                iiko_log: {{folder: "{logs}", format: atol}}
    """))
    return config, folder, logs, fn_until


def test_the_one_shot_check_flags_a_fn_swapped_behind_the_registers_back(tmp_path):
    config, _, _, fn_until = iiko_site(tmp_path)
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "fn_mismatch" in out
    assert ("register №00123456790012: the POS log shows ФН 7380440700099999, but the register was last read "
            "with ФН 7380440700067159") in out
    assert ("00123456790012.json: АТОЛ 22 v2 Ф №00123456790012, ФН 7380440700067159, ФН expires "
            f"{fn_until:%d.%m.%Y}") in out


def test_the_exporter_exports_the_log_mismatch_with_site_labels(start_exporter, tmp_path):
    config, _, _, _ = iiko_site(tmp_path)
    exporter = start_exporter(config, wait_ready=False)

    def mismatch():
        return value_of_metric(exporter.metrics(), "sitewatch_fn_log_mismatch", kkt="00123456790012",
                               fn="7380440700067159", log_fn="7380440700099999", client="kofeinya")

    assert wait_until(mismatch, 15, what="the mismatch after the getad file was read") == 1.0


def test_a_stale_pos_log_is_reported_not_trusted(tmp_path):
    import os

    config, _, logs, _ = iiko_site(tmp_path)
    for log in logs.iterdir():
        os.utime(log, (0, datetime.now().timestamp() - 10 * 86400))
    check = load_config(config).checks()[1]
    result = run_check(check)
    assert result.reason == "stale" and "10.0 days ago" in result.message


def test_a_wrong_register_is_exported_but_not_remembered_as_ours(tmp_path, mitsu_pty):
    import asyncio

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    check = one_check(tmp_path, f"""
        - name: till-1
          kkt: {{driver: mitsu, port: "{mitsu_pty.device}", serial: "065000000000001"}}
    """)
    memory: dict = {}
    site: dict = {}
    engine, http = PingEngine(), HttpClient()
    try:
        wrong = asyncio.run(run_once(check, engine, http, memory, site))
        with hold_port(mitsu_pty.device):
            busy = asyncio.run(run_once(check, engine, http, memory, site))
    finally:
        http.close()
    assert wrong.reason == "wrong_device"
    assert busy.details == [f"register on {mitsu_pty.device} never read yet"]
    assert samples(busy) == {("sitewatch_kkt_up", (("kkt", "065000000000001"),)): 0.0}
    assert site.get("fn_by_kkt", {}) == {}


def test_a_getad_folder_with_only_the_station_file_says_no_register_answered(tmp_path):
    folder = tmp_path / "date"
    folder.mkdir()
    shutil.copy(EXAMPLES / "getad-date" / "TV111222333_AD222333444.json", folder)
    result = run_check(one_check(tmp_path, f"""
        - name: getad
          getad: {{folder: "{folder}"}}
    """))
    assert result.reason == "not_found" and "found no register" in result.message


def test_register_label_names_are_reserved_for_the_register(tmp_path):
    from exporter.config import ConfigError

    config = write_config(tmp_path / "site.yml", "sites:\n  - id: shop\n    labels: {inn: '7704849611'}\n"
                                                 "    checks:\n      - {name: p, tcp: {host: 127.0.0.1, port: 1}}\n")
    with pytest.raises(ConfigError, match=r"sites\[0\]\.labels\.inn: expected a label name that sitewatch does not"):
        load_config(config)


def test_the_mitsu_probe_answers_only_for_a_mitsu(mitsu_pty):
    import os

    from exporter.kkt import mitsu

    assert mitsu.probe(mitsu_pty.device, 115200, 1.0)
    master, slave = os.openpty()  # a port where nothing answers
    try:
        assert not mitsu.probe(os.ttyname(slave), 115200, 0.3)
    finally:
        os.close(master)
        os.close(slave)


# -- ATOL and Shtrih-M through the same check ----------------------------------------------------------

def _vendor_simulators():
    from simulators.atol import AtolPtySimulator, AtolScenario
    from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario

    return {
        "mitsu": (lambda: MitsuPtySimulator(MitsuScenario()), "065001234567890"),
        "atol": (lambda: AtolPtySimulator(AtolScenario()), "123456"),  # 3F: 8 BCD digits, zeros stripped
        "shtrih": (lambda: ShtrihPtySimulator(ShtrihScenario()), "0012345678901234"),
    }


@pytest.mark.parametrize("vendor", ["mitsu", "atol", "shtrih"])
def test_each_vendor_is_read_by_its_driver_into_the_same_metrics(tmp_path, vendor):
    make, serial = _vendor_simulators()[vendor]
    with make() as simulator:
        result = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: {vendor}, port: "{simulator.device}"}}
        """))
    assert result.success, result.message
    values = samples(result)
    assert values[("sitewatch_kkt_up", (("kkt", serial),))] == 1.0
    assert values[("sitewatch_fn_expiry_timestamp_seconds", (("kkt", serial), ("fn", "9999078902014447")))] > 0
    assert ("sitewatch_fn_unsent_documents", (("kkt", serial),)) in values
    info = next(labels for name, labels in values if name == "sitewatch_kkt_info")
    assert dict(info)["vendor"] == vendor


@pytest.mark.parametrize("vendor", ["mitsu", "atol", "shtrih"])
def test_driver_auto_finds_the_vendor_and_remembers_it(tmp_path, vendor):
    import asyncio

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    make, serial = _vendor_simulators()[vendor]
    memory: dict = {}
    with make() as simulator:
        check = one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: auto, port: "{simulator.device}"}}
        """)
        engine, http = PingEngine(), HttpClient()
        try:
            result = asyncio.run(run_once(check, engine, http, memory))
        finally:
            http.close()
    assert result.success, result.message
    assert memory["vendor"] == vendor
    assert samples(result)[("sitewatch_kkt_up", (("kkt", serial),))] == 1.0


def test_driver_auto_on_a_silent_port_says_nothing_answered(tmp_path):
    import os

    master, slave = os.openpty()
    try:
        result = run_check(one_check(tmp_path, f"""
            - name: till
              timeout: 5s
              kkt: {{driver: auto, port: "{os.ttyname(slave)}", command_timeout: 300ms}}
        """))
    finally:
        os.close(master)
        os.close(slave)
    assert result.reason == "not_found" and "no Mitsu, ATOL or Shtrih-M register answered" in result.message


def test_a_shtrih_password_from_the_config_reaches_the_register(tmp_path):
    from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario

    with ShtrihPtySimulator(ShtrihScenario(password=12345)) as simulator:
        wrong = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: shtrih, port: "{simulator.device}"}}
        """))
        right = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: shtrih, port: "{simulator.device}", password: 12345}}
        """))
    assert wrong.reason == "device_error" and "password" in wrong.message
    assert right.success, right.message


# -- line speed: `baudrate: auto`, the default ---------------------------------------------------------

def _at_speed(vendor: str, speed: int):
    from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario

    if vendor == "mitsu":
        return MitsuPtySimulator(MitsuScenario(), speed), "065001234567890"
    return ShtrihPtySimulator(ShtrihScenario(), speed), "0012345678901234"


@pytest.mark.parametrize("speed", [4800, 9600, 57600, 115200])
@pytest.mark.parametrize("vendor", ["shtrih", "mitsu"])
def test_a_register_at_any_common_speed_is_read_with_the_default_config_and_its_speed_remembered(
        tmp_path, vendor, speed):
    import asyncio

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    simulator, serial = _at_speed(vendor, speed)
    memory: dict = {}
    with simulator:
        check = one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: {vendor}, port: "{simulator.device}"}}
        """)
        engine, http = PingEngine(), HttpClient()
        try:
            first = asyncio.run(run_once(check, engine, http, memory))
            speeds_first = list(simulator.speeds_seen)
            simulator.speeds_seen.clear()
            second = asyncio.run(run_once(check, engine, http, memory))
        finally:
            http.close()
            engine.stop()
    assert first.success and second.success, (first.message, second.message)
    assert samples(first)[("sitewatch_kkt_up", (("kkt", serial),))] == 1.0
    assert f"answered at {speed} baud" in first.details[0]
    assert memory["baudrate"] == speed
    assert len(speeds_first) >= 1 and simulator.speeds_seen == [speeds_first[-1]]  # no search the second time


def test_the_one_shot_check_says_at_which_speed_a_shtrih_left_at_4800_answered(tmp_path):
    from simulators.shtrih import ShtrihPtySimulator, ShtrihScenario

    with ShtrihPtySimulator(ShtrihScenario(), 4800) as simulator:
        config = write_config(tmp_path / "site.yml", textwrap.dedent(f"""
            sites:
              - id: shop
                checks:
                  - name: till
                    kkt: {{driver: shtrih, port: "{simulator.device}"}}
        """))
        result = subprocess.run([sys.executable, "-m", "exporter.cli", "check", "--config", str(config)],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "№0012345678901234, answered at 4800 baud, ФН 9999078902014447" in result.stdout


def test_driver_auto_with_speed_auto_finds_a_mitsu_left_at_9600(tmp_path):
    with MitsuPtySimulator(MitsuScenario(), 9600) as simulator:
        result = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: auto, port: "{simulator.device}"}}
        """))
    assert result.success, result.message
    assert "answered at 9600 baud" in result.details[0]


def test_a_fixed_baudrate_is_the_only_speed_tried(tmp_path):
    import termios

    with MitsuPtySimulator(MitsuScenario(), 9600) as simulator:
        result = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: mitsu, port: "{simulator.device}", baudrate: 115200, command_timeout: 300ms}}
        """))
        assert simulator.speeds_seen == [termios.B115200]
    assert result.reason == "timeout"


def test_a_port_held_without_a_lock_is_busy_through_the_check(tmp_path, mitsu_pty):
    from simulators.tillholder import unlocked_holder

    with unlocked_holder(mitsu_pty.device, "frontol") as till:
        result = run_check(one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: auto, port: "{mitsu_pty.device}"}}
        """))
    assert result.reason == "port_busy" and f"frontol (pid {till.pid})" in result.message
    assert till.received == 0 and mitsu_pty.bytes_received == 0


def test_driver_auto_and_baudrate_auto_read_a_mitsu_at_4800_within_the_default_time(tmp_path):
    import asyncio
    import time

    from exporter.httpclient import HttpClient
    from exporter.icmp.engine import PingEngine
    from exporter.runner import run_once

    memory: dict = {}
    with MitsuPtySimulator(MitsuScenario(), 4800) as simulator:
        check = one_check(tmp_path, f"""
            - name: till
              kkt: {{driver: auto, port: "{simulator.device}"}}
        """)
        engine, http = PingEngine(), HttpClient()
        try:
            started = time.monotonic()
            result = asyncio.run(run_once(check, engine, http, memory))
            elapsed = time.monotonic() - started
        finally:
            http.close()
            engine.stop()
    assert result.success, result.message
    assert elapsed < 9.0  # the check's default timeout is 10 s; the driver has 90 % of it
    assert memory["vendor"] == "mitsu" and memory["baudrate"] == 4800


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run "
                    "the scan as another user")
def test_a_scan_that_cannot_see_other_users_processes_says_so(tmp_path, mitsu_pty):
    from simulators.tillholder import unlocked_holder

    script = ("import sys; from exporter.kkt import transport as t; "
              "print(t.port_holders(sys.argv[1]), t.unseen_processes(sys.argv[1]))")
    with unlocked_holder(mitsu_pty.device, "frontol") as till:
        as_nobody = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                    sys.executable, "-c", script, mitsu_pty.device],
                                   capture_output=True, text=True, timeout=30, cwd=ROOT)
        as_root = subprocess.run([sys.executable, "-c", script, mitsu_pty.device],
                                 capture_output=True, text=True, timeout=30, cwd=ROOT)
        with_caps = {}
        for caps in ("+dac_read_search", "+dac_read_search,+sys_ptrace"):
            with_caps[caps] = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", f"--inh-caps={caps}",
                 f"--ambient-caps={caps}", sys.executable, "-c", script, mitsu_pty.device],
                capture_output=True, text=True, timeout=30, cwd=ROOT).stdout
    holders, unseen = as_nobody.stdout.rsplit(" ", 1)
    assert holders == "[]" and int(unseen) > 0, as_nobody.stdout + as_nobody.stderr  # blind, and it knows
    assert as_root.stdout.startswith(f"[({till.pid}, 'frontol')]")
    # listing alone is not enough: the links need CAP_SYS_PTRACE, and a scan that lacks it says so
    assert with_caps["+dac_read_search"].startswith("[] ") and int(with_caps["+dac_read_search"].split()[-1]) > 0
    # the two capabilities the systemd unit documents are enough
    assert with_caps["+dac_read_search,+sys_ptrace"].startswith(f"[({till.pid}, 'frontol')]")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run "
                    "the check as another user")
def test_the_check_run_as_another_user_says_its_busy_port_scan_was_incomplete(mitsu_pty):
    import tempfile

    from simulators.tillholder import unlocked_holder

    with tempfile.TemporaryDirectory() as folder, unlocked_holder(mitsu_pty.device, "frontol"):
        os.chmod(folder, 0o755)
        config = write_config(Path(folder) / "site.yml", textwrap.dedent(f"""
            sites:
              - id: shop
                checks:
                  - name: till
                    kkt: {{driver: mitsu, port: "{mitsu_pty.device}"}}
        """))
        os.chmod(config, 0o644)
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 sys.executable, "-m", "exporter.cli", "check", "--config", str(config)],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "could not look into" in result.stdout and "CAP_SYS_PTRACE" in result.stdout, \
        result.stdout + result.stderr
