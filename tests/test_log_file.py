"""``--log.file``: a site agent without a console writes its log to a file that is rotated by size."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from conftest import ROOT, free_port, http_get, wait_until, write_config
from exporter import logsetup

SITE = """
push: {{gateway: "http://127.0.0.1:{gateway_port}"}}
sites:
  - id: shop-12
    checks:
      - name: admin-port
        tcp: {{host: 127.0.0.1, port: {closed_port}}}
        interval: 200ms
        timeout: 200ms
"""


def _site(tmp_path):
    return write_config(tmp_path / "site.yml", SITE.format(gateway_port=free_port(), closed_port=free_port()))


def test_the_exporter_logs_to_the_file_and_nothing_to_standard_error(tmp_path):
    config = _site(tmp_path)
    log_file = tmp_path / "logs" / "exporter.log"  # the folder does not exist yet: the exporter makes it
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "run", "--config", str(config), "--web.listen-address",
         f"127.0.0.1:{port}", "--log.file", str(log_file), "--log.level", "debug"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: log_file.exists() and "event=started" in log_file.read_text(encoding="utf-8"), timeout=20,
                   what="the exporter's start in its log file")
        assert http_get(f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    text = log_file.read_text(encoding="utf-8")
    assert "level=INFO logger=sitewatch" in text and "event=started" in text
    assert "level=" not in stderr, stderr


def test_the_pusher_rotates_its_log_at_the_size_given_and_keeps_the_number_of_files_given(tmp_path, pushgateway):
    gateway = pushgateway()
    config = write_config(tmp_path / "site.yml", SITE.replace('"http://127.0.0.1:{gateway_port}"', gateway)
                          .format(closed_port=free_port()))
    log_file = tmp_path / "pusher.log"
    for _ in range(30):  # a run every 15 minutes from Task Scheduler, appending to one log
        result = subprocess.run(
            [sys.executable, "-m", "pusher.cli", "--config", str(config), "--once", "--log.level", "debug",
             "--log.file", str(log_file), "--log.file.max-size", "4KiB", "--log.file.max-files", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "level=" not in result.stderr, result.stderr  # log lines went to the file only
        assert result.stdout.startswith("shop-12: pushed ")  # the verdict stays on standard output
    files = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("pusher.log"))
    assert files == ["pusher.log", "pusher.log.1", "pusher.log.2"], files
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 4096, (name, size)
        assert "event=check_failed site=shop-12 check=admin-port" in (tmp_path / name).read_text(encoding="utf-8")


def test_a_log_file_that_cannot_be_written_stops_the_start_with_a_clear_error(tmp_path):
    config = _site(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be\n")
    result = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "validate", "--config", str(config), "--log.file",
         str(blocker / "exporter.log")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"cannot start: cannot write the log file {blocker / 'exporter.log'}: ")


def test_a_bad_size_is_a_usage_error_naming_the_option(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pusher.cli", "--config", str(_site(tmp_path)), "--once",
                             "--log.file", str(tmp_path / "p.log"), "--log.file.max-size", "ten megabytes"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--log.file.max-size: expected a size such as 10MiB" in result.stderr


def test_a_rotation_that_fails_goes_on_writing_says_so_once_and_retries_later(tmp_path, monkeypatch):
    # On Windows a reader that opened the log without delete sharing makes the rename fail; here the
    # backup's name is taken by a folder, which makes removing it fail the same way.
    log_file = tmp_path / "exporter.log"
    (tmp_path / "exporter.log.1").mkdir()
    (tmp_path / "exporter.log.1" / "keep").write_text("x")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logsetup.configure("info", str(log_file), max_size=4096, max_files=1)
        logger = logging.getLogger("sitewatch.test")
        for number in range(200):
            logger.info("event=line number=%d padding=%s", number, "x" * 40)
        text = log_file.read_text(encoding="utf-8")
        assert text.count("event=log_rotation_failed") == 1
        assert "number=199 " in text  # nothing lost while rotation is impossible
        (tmp_path / "exporter.log.1" / "keep").unlink()
        (tmp_path / "exporter.log.1").rmdir()
        monkeypatch.setattr(logsetup, "ROTATION_RETRY_SECONDS", 0.0)
        root.handlers[0]._retry_at = 0.0  # the minute has passed
        logger.info("event=after")
        assert (tmp_path / "exporter.log.1").is_file()
        assert "number=199 " in (tmp_path / "exporter.log.1").read_text(encoding="utf-8")
        assert os.path.getsize(log_file) < 4096
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)


def test_secrets_are_masked_in_the_log_file_as_on_standard_error(tmp_path):
    from exporter import redaction

    log_file = tmp_path / "exporter.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        redaction.register("pgw-s3cret-in-file")
        logsetup.configure("info", str(log_file))
        logging.getLogger("sitewatch.test").warning("event=push_failed url=https://u:pgw-s3cret-in-file@h/")
        for handler in root.handlers:
            handler.flush()
        text = log_file.read_text(encoding="utf-8")
        assert "event=push_failed" in text and "pgw-s3cret-in-file" not in text
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)


def test_size_option_reads_the_usual_spellings():
    assert logsetup.parse_size("10MiB") == 10 * 1024 * 1024
    assert logsetup.parse_size("500KiB") == 500 * 1024
    assert logsetup.parse_size("20mb") == 20 * 1024 * 1024
    assert logsetup.parse_size("65536") == 65536


def test_a_config_error_reaches_the_log_file_too(tmp_path):
    # A task started at boot has no console: the reason it stopped must be where the technician looks.
    config = write_config(tmp_path / "site.yml", "sites:\n  - id: shop-12\n    checks: []\n    colour: red\n")
    log_file = tmp_path / "pusher.log"
    result = subprocess.run([sys.executable, "-m", "pusher.cli", "--config", str(config), "--once",
                             "--log.file", str(log_file)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("config error: ")
    text = log_file.read_text(encoding="utf-8")
    assert "level=ERROR" in text and "event=stopped_by_error" in text and "colour" in text


def test_an_exporter_that_cannot_listen_says_why_in_its_log_file(tmp_path):
    import socket

    config = _site(tmp_path)
    log_file = tmp_path / "exporter.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "exporter.cli", "run", "--config", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}", "--log.file", str(log_file)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    text = log_file.read_text(encoding="utf-8")
    assert "event=stopped_by_error" in text and f"cannot listen on 127.0.0.1:{port}" in text


def test_sitewatch_ingest_writes_why_it_cannot_start_into_its_log_file(tmp_path):
    config = write_config(tmp_path / "ingest.yml", "distributors: {}\n")
    log_file = tmp_path / "ingest.log"
    result = subprocess.run([sys.executable, "-m", "ingest.cli", "run", "--config", str(config),
                             "--web.listen-address", "127.0.0.1:0", "--log.file", str(log_file)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("config error: "), result.stderr
    assert "event=stopped_by_error" in log_file.read_text(encoding="utf-8")


def test_the_config_file_itself_is_refused_as_the_log_file(tmp_path):
    config = _site(tmp_path)
    before = config.read_bytes()
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "validate", "--config", str(config),
                             "--log.file", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "is the config file itself" in result.stderr
    assert config.read_bytes() == before


def test_a_full_disk_is_said_once_not_at_every_line(tmp_path, capfd):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logsetup.configure("info", "/dev/full")
        for number in range(20):
            logging.getLogger("sitewatch.test").warning("event=line number=%d", number)
        err = capfd.readouterr().err
        assert err.count("cannot write the log file /dev/full") == 1 and "Traceback" not in err, err
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], level = saved
        root.setLevel(level)
