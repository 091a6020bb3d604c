"""`make demo` end to end, and one exporter keeping thousands of ping checks on schedule."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, free_port, wait_until, write_config


def test_demo_prints_a_check_table_and_serves_metrics():
    port = free_port()
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "DEMO_SECONDS": "2", "DEMO_LISTEN": f"127.0.0.1:{port}"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "SITE" in out and "RESULT" in out
    for check, verdict in (("main-page", "OK"), ("web-port", "OK"), ("pc ", "OK"),
                           ("catalog-page", "FAIL"), ("admin-port", "FAIL"), ("kodeks", "FAIL")):
        row = next(line for line in out.splitlines() if line.startswith("demo-shop") and check in line)
        assert verdict in row, row
    assert "режим обслуживания" in out  # the failing page says what it found
    assert "  - catalog /docs2: the main page is not built correctly" in out  # the fake Kodeks server's catalogs
    assert "ФН 9999078902014447, ФН expires" in out and "4 unsent to the OFD, oldest 5 days old" in out  # Mitsu
    assert "the POS log shows ФН 7380440700099999" in out  # the iikoFront log against the getad file
    assert "Казначей ФА №123456" in out and "(in 2 days)" in out and "replace_urgent" in out  # ATOL
    assert "ШТРИХ-М-01Ф №0012345678901234" in out  # Shtrih-M, found by driver auto
    assert f"http://127.0.0.1:{port}/metrics" in out


def test_two_thousand_ping_checks_all_report_within_one_round(start_exporter, tmp_path):
    targets = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(2000)]
    checks = "\n".join(f"      - {{name: t{i}, ping: {{host: {address}, count: 2, interval: 200ms, timeout: 1s}}}}"
                       for i, address in enumerate(targets))
    config = write_config(tmp_path / "fleet.yml",
                          "defaults: {interval: 5s, timeout: 3s}\nsites:\n  - id: fleet\n    checks:\n" + checks + "\n")
    exporter = start_exporter(config, wait_ready=False)

    def all_reported():
        text = exporter.metrics()
        lines = [line for line in text.splitlines() if line.startswith("sitewatch_check_success{")]
        return lines if len(lines) == 2000 else None

    lines = wait_until(all_reported, 20, interval=0.5, what="all 2000 ping checks to report")
    assert all(line.endswith(" 1.0") for line in lines), [line for line in lines if not line.endswith(" 1.0")][:3]
