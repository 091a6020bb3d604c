"""The latest uploads outlive the process: after a restart the series and last-upload times are the same; a
damaged database is moved aside and a fresh one started, both logged; one that cannot be used stops the
start with a clear message; a reload (POST or SIGHUP) takes a new config without losing data."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from conftest import ROOT, http_get, value_of_metric, wait_until
from ingest_data.ingest_kit import (OTHER_DEALER, OTHER_TOKEN, SECRETS, SITE_KEY, data_file,  # noqa: F401
                                    ingest_process, monitoring_page, write_ingest_config)

# Counted since the process started, like every sitewatch counter of a process (use rate()/increase()).
PER_PROCESS = ("sitewatch_ingest_uploads_total", "sitewatch_ingest_refused_total",
               "sitewatch_ingest_dates_ignored_total",
               "sitewatch_ingest_config_last_reload_success_timestamp_seconds")


def site_series(text: str) -> list[str]:
    return sorted(line for line in text.splitlines()
                  if line.startswith("sitewatch_") and not line.startswith(PER_PROCESS))


def test_after_a_restart_the_metrics_and_last_upload_times_are_the_same(ingest_process):
    ingest = ingest_process()
    an_hour_ago = int(time.time()) - 300  # within date_tolerance (10m): the date: line is believed
    dated = f"date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(an_hour_ago))}\r\n".encode()
    assert ingest.upload("GORDUMA.status", dated + monitoring_page("Sysmon metrics")).status_code == 200
    assert ingest.upload("GORDUMA.status", dated + monitoring_page("Sysmon metrics")).status_code == 200
    assert ingest.upload("OTHER.status", b"Access denied", OTHER_DEALER, OTHER_TOKEN).status_code == 422
    for name in ("00123456790012.json", "065001234567890.json"):
        assert ingest.post_getad(data_file(name)).status_code == 200
    for name in ("0000000000123456.json", "TV987654321_AD123456789.json"):
        assert ingest.post_getad(data_file(name), key=SITE_KEY).status_code == 200
    before = ingest.metrics()

    ingest.restart()

    after = ingest.metrics()
    assert site_series(after) == site_series(before)
    assert value_of_metric(after, "sitewatch_ingest_last_upload_timestamp_seconds",
                           site="gorduma-kodeks") == an_hour_ago
    assert value_of_metric(after, "sitewatch_check_runs_total", site="gorduma-kodeks") == 2
    assert value_of_metric(after, "sitewatch_check_failure_info", site="other-kodeks", reason="parse") == 1
    assert value_of_metric(after, "sitewatch_kkt_up", site="own-key-cafe", kkt="0000000000123456") == 1
    assert len([line for line in site_series(after) if line.startswith("sitewatch_kkt_up{")]) == 3
    assert "event=feeds_loaded feeds=6 with_uploads=5" in ingest.log_text()


def test_a_damaged_database_is_moved_aside_and_a_fresh_one_started(tmp_path, ingest_process):
    (tmp_path / "ingest.db").write_bytes(b"this is not an SQLite database, it is a text file" * 100)
    ingest = ingest_process()
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200
    log = ingest.log_text()
    assert "level=ERROR" in log and "event=storage_corrupt" in log and "action=fresh_start" in log
    aside = list(tmp_path.glob("ingest.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not an SQLite")
    ingest.restart()  # the fresh database holds what came after
    assert ingest.value("sitewatch_check_runs_total", site="gorduma-kodeks") == 1


def test_a_missing_database_and_its_folder_are_created(tmp_path, ingest_process):
    config = write_ingest_config(tmp_path, textwrap.dedent("""
        storage: {path: state/deeper/ingest.db}
        distributors:
          d1: {token: {env: INGEST_TEST_TOKEN}}
        sites:
          - {id: s1, distributor: d1, smartstatus: {client: C1}}
    """))
    ingest = ingest_process(config)
    assert (tmp_path / "state" / "deeper" / "ingest.db").is_file()
    assert "event=storage_created" in ingest.log_text()


def run_cli(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ingest.cli", "--config", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, env={**SECRETS, "PATH": "/usr/bin:/bin"})


def test_a_database_that_cannot_be_used_stops_the_start_with_a_clear_message(tmp_path):
    (tmp_path / "ingest.db").mkdir()  # a folder where the file should be
    result = run_cli(write_ingest_config(tmp_path), "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"cannot start: storage: cannot open {tmp_path / 'ingest.db'}")

    newer = tmp_path / "newer"
    newer.mkdir()
    with sqlite3.connect(newer / "ingest.db") as db:
        db.execute("CREATE TABLE about (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO about VALUES ('schema_version', '99')")
    result = run_cli(write_ingest_config(newer), "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 2 and "written by a newer sitewatch-ingest (schema 99" in result.stderr


def test_a_reload_takes_a_new_config_keeps_the_data_and_a_bad_one_is_refused(tmp_path, ingest_process):
    config = write_ingest_config(tmp_path)
    ingest = ingest_process(config)
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200
    config.write_text(config.read_text().replace("telegram_route: rogaikopita-kodeks", "telegram_route: duty"))
    status, body = http_get(ingest.url + "/-/reload", method="POST")
    assert status == 200 and '"success"' in body
    assert ingest.value("sitewatch_kodeks_main_page_ok", site="gorduma-kodeks", telegram_route="duty",
                        catalog="/docs") == 1

    config.write_text(config.read_text().replace("smartstatus: {client: GORDUMA}", "smartstatus: {client: 7}x: ["))
    status, body = http_get(ingest.url + "/-/reload", method="POST")
    assert status == 500 and "the previous one stays in force" in body
    assert ingest.value("sitewatch_ingest_config_last_reload_successful") == 0
    assert ingest.upload("GORDUMA.status", monitoring_page()).status_code == 200

    config.write_text(config.read_text().replace("smartstatus: {client: 7}x: [", "smartstatus: {client: GORDUMA}")
                      .replace("telegram_route: duty", "telegram_route: night"))
    ingest.process.send_signal(signal.SIGHUP)
    wait_until(lambda: ingest.value("sitewatch_check_runs_total", site="gorduma-kodeks", telegram_route="night") == 2,
               10, what="SIGHUP to reload the config")
    assert ingest.value("sitewatch_ingest_config_last_reload_successful") == 1
    assert ingest.process.poll() is None
